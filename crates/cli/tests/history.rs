//! A run as history: its JSON log lines carry its id, the run store holds it
//! whole (`rehearse runs ls|show`), and `runs rm` removes it with its folder.
//! A real scenario on a real cluster.

mod common;

use serde_json::Value;

#[test]
fn a_run_logs_with_its_id_and_is_kept_listed_shown_and_removed() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("scenario.yaml"),
        "name: history-marker\nnodes: 1\nsteps:\n  - name: write the marker\n    shell: |\n      echo kept > /etc/history-marker\n      echo wrote the marker\nchecks:\n  - file: /etc/history-marker\n    contains: [kept]\n  - file: /etc/history-marker\n    contains: [absent-on-purpose]\n",
    )
    .unwrap();
    let file = dir.path().join("scenario.yaml");
    let out = common::command()
        .args(["--json", "--log-format", "json", "-v", "run"])
        .arg(&file)
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON report");
    assert_eq!(report["outcome"], "failed", "one check fails on purpose");
    let id = report["run_id"].as_str().unwrap().to_owned();

    // Every stderr line is one JSON object; those inside the run carry its id.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut in_run = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        if let Some(span) = v.get("span") {
            assert_eq!(span["run_id"], id.as_str(), "{line}");
            in_run += 1;
        }
    }
    assert!(
        in_run >= 3,
        "the run's phases are logged with its id:\n{stderr}"
    );
    assert!(stderr.contains("cluster ready"), "{stderr}");

    // The store holds it: listed with its outcome, shown whole.
    let (code, list) = common::run_json(&[
        "runs",
        "ls",
        "--status",
        "failed",
        "--name",
        "history-marker",
    ]);
    assert_eq!(code, 0);
    assert!(
        list["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str()),
        "run {id} is not listed: {list}\nthe run's log:\n{stderr}"
    );
    let (code, shown) = common::run_json(&["runs", "show", &id]);
    assert_eq!(code, 0, "{shown}");
    assert_eq!(shown["run"]["outcome"], "failed");
    assert_eq!(shown["run"]["kind"], "scenario");
    assert_eq!(shown["steps"][0]["name"], "write the marker");
    assert!(shown["steps"][0]["detail"]
        .as_str()
        .unwrap()
        .contains("wrote the marker"));
    // Each phase keeps its own rows: the checks after the steps, and the same
    // checks again after the second run (idempotence).
    let rows = shown["checks"].as_array().unwrap();
    let in_phase =
        |phase: &str| -> Vec<&Value> { rows.iter().filter(|c| c["phase"] == phase).collect() };
    assert_eq!(in_phase("after_second_run").len(), 2, "{shown}");
    let checks = in_phase("checks");
    assert_eq!(checks.len(), 2, "{shown}");
    let failed = checks.iter().find(|c| c["status"] == "failed").unwrap();
    assert!(
        failed["expected"]
            .as_str()
            .unwrap()
            .contains("absent-on-purpose"),
        "{failed}"
    );
    assert!(
        failed["actual"].as_str().unwrap().contains("kept"),
        "{failed}"
    );
    assert_eq!(
        shown["report"]["run_id"],
        id.as_str(),
        "the whole report, as JSON"
    );
    let human = common::run(&["runs", "show", &id]);
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("expected:") && text.contains("actual:"),
        "{text}"
    );

    // Removed with its folder; a second removal says there is no such run.
    let folder = common::history_dir().join("runs").join(&id);
    assert!(folder.is_dir());
    let rm = common::run(&["runs", "rm", &id]);
    assert!(rm.status.success(), "{rm:?}");
    assert!(!folder.exists(), "the run's folder goes with it");
    let again = common::run(&["runs", "rm", &id]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains(&format!("no run {id}")));
    let (_, shown) = common::run_json(&["runs", "show", &id]);
    assert!(shown.to_string().contains("no run"), "{shown}");
}

#[test]
fn a_run_whose_cluster_is_kept_cannot_be_removed_until_it_is_down() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.yaml");
    std::fs::write(
        &file,
        "name: history-kept\nnodes: 1\nchecks:\n  - file: /etc/hostname\n",
    )
    .unwrap();
    let (_, report) = common::run_json(&["run", "--keep", file.to_str().unwrap()]);
    let id = report["run_id"].as_str().unwrap().to_owned();
    let cluster = report["cluster"].as_str().unwrap().to_owned();
    let refused = common::run(&["runs", "rm", &id]);
    assert!(!refused.status.success());
    let msg = String::from_utf8_lossy(&refused.stderr);
    assert!(
        msg.contains(&format!("its cluster {cluster} is still up")),
        "{msg}"
    );
    assert!(common::run(&["down", &cluster]).status.success());
    assert!(common::run(&["runs", "rm", &id]).status.success());
}
