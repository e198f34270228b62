//! `rehearse run` end to end on real clusters: the examples, and purpose-built
//! fixtures for idempotence, hygiene, reboot, hangs and bad input.

mod common;

use std::path::{Path, PathBuf};

use serde_json::Value;

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// `rehearse --json run ARGS`: (exit code, report).
fn run_scenario(args: &[&str]) -> (i32, Value) {
    require_root();
    let mut all = vec!["run"];
    all.extend_from_slice(args);
    let (code, report) = run_json(&all);
    if let Some(cluster) = report["cluster"].as_str() {
        if report["kept"] != true {
            assert!(
                Leftovers::of(cluster).is_empty(),
                "the run left cluster {cluster} behind: {:?}",
                Leftovers::of(cluster)
            );
        }
    }
    (code, report)
}

fn checks(report: &Value) -> Vec<(String, String, String)> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["node"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap().to_string(),
                c["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn nginx_lb_example_passes_with_both_backends_behind_the_balancer() {
    let tmp = tempfile::tempdir().unwrap();
    let junit = tmp.path().join("junit.xml");
    let path = repo().join("examples/nginx-lb");
    let (code, report) =
        run_scenario(&[path.to_str().unwrap(), "--junit", junit.to_str().unwrap()]);
    assert_eq!(
        code,
        0,
        "{}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    assert_eq!(report["outcome"], "passed");
    let results = checks(&report);
    assert!(results.iter().all(|(_, _, s)| s == "passed"), "{results:?}");
    assert!(results
        .iter()
        .any(|(n, name, _)| n == "web2" && name == "both backends answer through the balancer"));
    assert_eq!(report["idempotence"]["passed"], true);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuite name=\"rehearse.nginx-lb\"") && xml.contains("failures=\"0\""),
        "{xml}"
    );
}

#[test]
fn ansible_lb_example_passes_from_a_controller_node() {
    let path = repo().join("examples/ansible-lb");
    let (code, report) = run_scenario(&[path.to_str().unwrap()]);
    assert_eq!(
        code,
        0,
        "{}",
        serde_json::to_string_pretty(&report).unwrap()
    );
    let step = &report["steps"][0];
    assert_eq!(step["kind"], "ansible");
    let tasks = step["ansible"]["tasks"]
        .as_array()
        .expect("structured ansible results");
    assert!(
        tasks
            .iter()
            .any(|t| t["status"] == "changed" && t["host"] == "lb"),
        "{tasks:?}"
    );
    assert_eq!(
        report["idempotence"]["passed"], true,
        "{}",
        report["idempotence"]
    );
}

#[test]
fn broken_nginx_example_fails_and_says_why() {
    let path = repo().join("examples/broken-nginx");
    let out = run(&["run", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAILED"), "{text}");
    assert!(
        text.contains("✘ nginx with the app site"),
        "the failing step is shown: {text}"
    );
    assert!(
        text.contains("invalid parameter \"root\" in /etc/nginx/sites-enabled/app:3"),
        "the command's output tail is shown: {text}"
    );
    assert!(
        text.contains("✘ client http http://web:8080/"),
        "the failing check is shown: {text}"
    );
    assert!(text.contains("what to look at"), "{text}");
}

/// The second run's real changes of one step: (node, path, summary, diff).
fn changes_of(report: &Value, step: &str) -> Vec<(String, String, String, String)> {
    report["idempotence"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["step"] == step)
        .flat_map(|s| s["changes"].as_array().unwrap().iter())
        .map(|c| {
            (
                c["node"].as_str().unwrap().to_string(),
                c["path"].as_str().unwrap().to_string(),
                c["summary"].as_str().unwrap().to_string(),
                c["diff"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[test]
fn a_shell_step_that_is_not_idempotent_fails_with_the_diff_of_its_second_run() {
    let (code, report) = run_scenario(&[&fixture("not-idempotent")]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["idempotence"]["passed"], false);
    let changes = changes_of(&report, "append a line");
    assert_eq!(changes.len(), 1, "{changes:?}");
    let (node, path, summary, diff) = &changes[0];
    assert_eq!((node.as_str(), path.as_str()), ("node1", "/etc/app.conf"));
    assert!(summary.contains("+1"), "{summary}");
    assert!(diff.contains("\n+max_connections = 100"), "{diff}");
}

#[test]
fn appending_on_every_run_fails_and_the_human_report_shows_the_added_line() {
    let out = run(&["run", &fixture("appends-every-run")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("✘ the second run of step \"set the proxy\" changed:"),
        "{text}"
    );
    assert!(
        text.contains("node1: /etc/environment: modified (+1 −0 lines)"),
        "{text}"
    );
    assert!(text.contains("+HTTP_PROXY=http://proxy:3128"), "{text}");
    // The check passed after the first run: only idempotence failed.
    assert!(text.contains("checks (1/1 passed)"), "{text}");
}

#[test]
fn rewriting_files_with_identical_bytes_changes_nothing() {
    let (code, report) = run_scenario(&[&fixture("rewrites-identical")]);
    assert_eq!(code, 0, "{report}");
    let idem = &report["idempotence"];
    assert_eq!(idem["passed"], true, "{idem}");
    assert_eq!(idem["changes"], serde_json::json!([]), "{idem}");
    assert_eq!(idem["changed"], serde_json::json!([]), "{idem}");
    assert_eq!(idem["allowed"], serde_json::json!([]), "{idem}");
    // The checks were evaluated again after the second run.
    assert_eq!(idem["checks"][0]["status"], "passed", "{idem}");
}

#[test]
fn a_failing_second_run_is_reported_as_such_with_its_error_line() {
    let tmp = tempfile::tempdir().unwrap();
    let junit = tmp.path().join("junit.xml");
    let out = run(&[
        "run",
        &fixture("second-run-fails"),
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("✘ the second run of step \"add the app upstream\" failed on node1 (exit 1)"),
        "{text}"
    );
    let emerg = text
        .lines()
        .find(|l| l.contains("[emerg]"))
        .unwrap_or_else(|| panic!("no [emerg] line: {text}"));
    assert!(emerg.contains("duplicate upstream \"app\""), "{emerg}");
    assert!(!text.contains("the second run changed things"), "{text}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains(
            "the second run of step &quot;add the app upstream&quot; failed on node1 (exit 1)"
        ) && xml.contains("[emerg]"),
        "{xml}"
    );
    // The stored run: its summary (the one `runs ls` shows) and its JSON report.
    let id = text
        .split("[run ")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_else(|| panic!("no run id: {text}"));
    let (code, detail) = run_json(&["runs", "show", id]);
    assert_eq!(code, 0, "{detail}");
    let summary = detail["run"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with("failed idempotence: the second run of step \"add the app upstream\" failed on node1 (exit 1)")
            && summary.contains("[emerg]"),
        "{summary}"
    );
    let report = &detail["report"];
    let failed = &report["idempotence"]["failed_runs"][0];
    assert_eq!(failed["exit_code"], 1, "{report}");
    assert!(
        failed["stderr_tail"][0]
            .as_str()
            .unwrap()
            .contains("[emerg]"),
        "{failed}"
    );
}

#[test]
fn a_check_broken_by_the_second_run_fails_idempotence_by_name() {
    let (code, report) = run_scenario(&[&fixture("breaks-a-check")]);
    assert_eq!(code, 1, "{report}");
    assert!(
        checks(&report).iter().all(|(_, _, s)| s == "passed"),
        "{report}"
    );
    let broken = report["idempotence"]["broken_checks"].to_string();
    assert!(
        broken.contains("the app is marked ready") && broken.contains("node1"),
        "{broken}"
    );
    // Its changes were allowed: the check alone failed the run.
    assert!(
        report["idempotence"]["allowed"]
            .to_string()
            .contains("/srv/app/ready"),
        "{report}"
    );
}

#[test]
fn allowed_churn_passes_and_is_listed() {
    let (code, report) = run_scenario(&[&fixture("allows-churn")]);
    assert_eq!(code, 0, "{report}");
    let idem = &report["idempotence"];
    assert_eq!(idem["passed"], true, "{idem}");
    let allowed: Vec<&str> = idem["allowed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(allowed.len(), 1, "{allowed:?}");
    assert!(
        allowed[0].contains("/var/lib/app/last-deploy")
            && allowed[0].contains("allowed by /var/lib/app/*"),
        "{allowed:?}"
    );
}

#[test]
fn regex_anchors_match_at_line_boundaries_and_negations_see_indented_lines() {
    let (code, report) = run_scenario(&[&fixture("matchers-multiline"), "--no-idempotence"]);
    assert_eq!(code, 1, "{report}");
    let results = checks(&report);
    let status = |name: &str| {
        results
            .iter()
            .find(|(_, n, _)| n == name)
            .map(|(_, _, s)| s.clone())
            .unwrap_or_else(|| panic!("{name}: {results:?}"))
    };
    assert_eq!(status("no backend in tcp mode"), "failed");
    assert_eq!(status("backend web is a line of its own"), "passed");
    assert_eq!(status("no unindented mode line"), "passed");
}

#[test]
fn an_ansible_task_that_always_changes_fails_idempotence_by_name() {
    let (code, report) = run_scenario(&[&fixture("ansible-always-changes")]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["idempotence"]["passed"], false);
    let changed = report["idempotence"]["changed"].to_string();
    assert!(changed.contains("record the deploy time"), "{changed}");
    assert!(
        !changed.contains("motd"),
        "the idempotent task did not change: {changed}"
    );
    assert!(checks(&report).iter().all(|(_, _, s)| s == "passed"));
}

#[test]
fn hygiene_reports_a_key_left_in_tmp_and_forceful_commands() {
    let (code, report) = run_scenario(&[&fixture("leaves-a-key")]);
    assert_eq!(code, 0, "hygiene findings are warnings: {report}");
    let findings = report["hygiene"].as_array().unwrap();
    let has = |kind: &str, text: &str| {
        findings
            .iter()
            .any(|f| f["kind"] == kind && f.to_string().contains(text))
    };
    assert!(has("leftover_file", "/tmp/deploy_key"), "{findings:?}");
    assert!(has("private_key", "/tmp/deploy_key"), "{findings:?}");
    assert!(has("forceful_command", "deploy.sh:2"), "{findings:?}");
}

#[test]
fn reboot_catches_a_firewall_rule_that_does_not_survive() {
    let (code, report) = run_scenario(&[&fixture("runtime-firewall"), "--reboot"]);
    assert_eq!(code, 1, "{report}");
    assert!(
        checks(&report).iter().all(|(_, _, s)| s == "passed"),
        "before the reboot the rule is there"
    );
    let after = report["reboot_checks"]
        .as_array()
        .expect("checks after reboot");
    assert_eq!(after[0]["status"], "failed", "{after:?}");
}

#[test]
fn a_hanging_step_is_killed_and_the_node_state_captured() {
    let (code, report) = run_scenario(&[&fixture("hangs")]);
    assert_eq!(code, 1);
    let step = &report["steps"][0];
    assert_eq!(step["ok"], false);
    assert_eq!(step["nodes"][0]["timed_out"], true);
    assert!(
        step["hang_state"][0]["processes"]
            .as_str()
            .unwrap()
            .contains("sleep 600"),
        "{step}"
    );
}

#[test]
fn bad_scenarios_are_refused_before_any_cluster_starts() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (
            "unknown-target.yaml",
            "nodes: [a, b]\nsteps:\n  - shell: echo hi\n    on: c\n",
            "unknown-target.yaml:4",
            "steps[0].on",
        ),
        (
            "missing-script.yaml",
            "nodes: 1\nsteps:\n  - shell: scripts/missing.sh\n",
            "missing-script.yaml:3",
            "missing.sh",
        ),
        (
            "bad-check-key.yaml",
            "nodes: 1\nchecks:\n  - http: http://node1/\n    statuss: 200\n",
            "bad-check-key.yaml:4",
            "statuss",
        ),
        (
            "bad-matcher.yaml",
            "nodes: 1\nchecks:\n  - command: 'true'\n    stdout: ['/(unclosed/']\n",
            "bad-matcher.yaml:4",
            "stdout",
        ),
        (
            "yaml-syntax.yaml",
            "nodes: 1\nsteps:\n  - shell: [\n",
            "yaml-syntax.yaml:",
            "",
        ),
    ];
    let (_, before) = run_json(&["ls"]);
    for (name, text, location, field) in cases {
        let path = write(tmp.path(), name, text);
        let out = run(&["run", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} ran");
        assert!(
            stderr.contains(location) && stderr.contains(field),
            "{name}: {stderr}"
        );
    }
    let (_, after) = run_json(&["ls"]);
    let runs = |v: &Value| {
        v["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| {
                c["source"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(tmp.path().to_str().unwrap())
            })
            .count()
    };
    assert_eq!(runs(&before), 0);
    assert_eq!(runs(&after), 0, "a refused scenario started a cluster");
}

#[test]
fn keep_on_failure_leaves_the_cluster_up_and_says_how_to_get_in() {
    let (code, report) = run_scenario(&[&fixture("hangs"), "--keep-on-failure"]);
    assert_eq!(code, 1);
    assert_eq!(report["kept"], true);
    let id = report["cluster"].as_str().unwrap().to_string();
    assert!(report["how_to_get_in"]
        .as_str()
        .unwrap()
        .contains(&format!("rehearse exec {id}")));
    let out = run(&["exec", &id, "node1", "--", "true"]);
    assert!(out.status.success(), "the kept cluster is usable");
    assert!(run(&["down", &id]).status.success());
    assert!(Leftovers::of(&id).is_empty());
}
