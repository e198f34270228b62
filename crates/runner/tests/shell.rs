//! Shell steps on a real two-node cluster.

mod common;

use std::time::Duration;

use common::{cluster, dump, shell, two_nodes, Run};
use rehearse_runner::Pass;

fn run() -> Run {
    Run::new(cluster(two_nodes))
}

#[test]
fn a_script_runs_on_every_target_with_output_per_node() {
    let run = run();
    let mut step = shell(
        "greet",
        "echo \"hello from $(hostname)\"\necho \"greeting is $GREETING\" >&2\n",
    );
    step.env = vec![("GREETING".into(), "hi there".into())];
    let report = run.apply(&step, &["node1", "node2"], Pass::First);
    assert!(report.ok, "{}", dump(&report));
    assert_eq!(report.kind, "shell");
    assert_eq!(report.nodes.len(), 2);
    for (out, name) in report.nodes.iter().zip(["node1", "node2"]) {
        assert_eq!(out.node, name);
        assert_eq!(out.exit_code, Some(0));
        assert!(!out.timed_out);
        assert_eq!(out.stdout, format!("hello from {name}\n"));
        assert_eq!(out.stderr, "greeting is hi there\n");
    }
    assert!(report.error.is_none());
    // The whole output is also kept on the host.
    let log = report.log_dir.as_ref().unwrap().join("node2.stdout");
    assert_eq!(std::fs::read_to_string(log).unwrap(), "hello from node2\n");
}

#[test]
fn a_failure_on_one_node_names_that_node_and_keeps_its_exit_code() {
    let run = run();
    let step = shell(
        "break node2",
        "if [ \"$(hostname)\" = node2 ]; then echo 'disk on fire' >&2; exit 3; fi\necho fine\n",
    );
    let report = run.apply(&step, &[], Pass::First);
    assert!(!report.ok);
    let node = |n: &str| report.nodes.iter().find(|o| o.node == n).unwrap();
    assert_eq!(node("node1").exit_code, Some(0));
    assert_eq!(node("node1").stdout, "fine\n");
    assert_eq!(node("node2").exit_code, Some(3));
    let error = report.error.as_deref().unwrap();
    assert!(error.contains("node2"), "{error}");
    assert!(error.contains("exit code 3"), "{error}");
    assert!(error.contains("disk on fire"), "{error}");
    assert!(!error.contains("node1"), "{error}");
}

#[test]
fn scripts_stop_at_the_first_failing_command() {
    let run = run();
    let report = run.apply(
        &shell("set -e", "false\necho should not print\n"),
        &["node1"],
        Pass::First,
    );
    assert!(!report.ok);
    assert_eq!(report.nodes[0].exit_code, Some(1));
    assert_eq!(report.nodes[0].stdout, "");
}

#[test]
fn a_hanging_step_is_killed_after_its_state_is_captured() {
    let run = run();
    let mut step = shell("hang", "echo started\nsleep 4242\necho never\n");
    step.timeout = Duration::from_secs(2);
    let report = run.apply(&step, &["node1"], Pass::First);
    assert!(!report.ok, "{}", dump(&report));
    let out = &report.nodes[0];
    assert!(out.timed_out);
    assert_eq!(out.exit_code, None);
    assert_eq!(out.stdout, "started\n");
    let error = report.error.as_deref().unwrap();
    assert!(
        error.contains("timed out") && error.contains("node1"),
        "{error}"
    );
    assert_eq!(report.hang_state.len(), 1, "{}", dump(&report));
    let hang = &report.hang_state[0];
    assert_eq!(hang.node, "node1");
    // Captured while the script still ran...
    assert!(hang.processes.contains("sleep 4242"), "{}", hang.processes);
    assert!(
        hang.jobs.contains("jobs") || hang.jobs.contains("JOB"),
        "{}",
        hang.jobs
    );
    assert!(!hang.journal.trim().is_empty());
    // ...and killed afterwards, leaving none of the runner's files behind.
    let (code, _) = run.sh("node1", "pgrep -fx 'sleep 4242'");
    assert_eq!(code, 1, "the hanging script survived its timeout");
    let (_, left) = run.sh("node1", "ls -A /run/rehearse | grep '^step-' || true");
    assert_eq!(left, "", "runner files left in /run/rehearse");
}

#[test]
fn a_second_pass_lists_the_files_a_non_idempotent_step_touches() {
    let run = run();
    let step = shell(
        "append",
        "mkdir -p /srv/append\necho line >> /srv/append/log.txt\n",
    );
    let first = run.apply(&step, &[], Pass::First);
    assert!(first.ok, "{}", dump(&first));
    let second = run.apply(&step, &[], Pass::Second);
    assert!(second.ok, "{}", dump(&second));
    assert_eq!(second.pass, Pass::Second);
    for out in &second.nodes {
        assert_eq!(
            out.changed_files,
            vec!["/srv/append/log.txt"],
            "{}",
            dump(&second)
        );
    }
    let changed = second.changed();
    assert!(
        changed.contains(&"node1: /srv/append/log.txt".to_string()),
        "{changed:?}"
    );
    let (_, text) = run.sh("node2", "cat /srv/append/log.txt");
    assert_eq!(text, "line\nline\n");
}

#[test]
fn an_idempotent_step_changes_nothing_on_its_second_pass() {
    let run = run();
    let step = shell(
        "motd",
        "f=/srv/idem/motd\nmkdir -p /srv/idem\n[ \"$(cat $f 2>/dev/null)\" = hello ] || echo hello > $f\n",
    );
    let first = run.apply(&step, &[], Pass::First);
    assert!(first.ok, "{}", dump(&first));
    for out in &first.nodes {
        assert_eq!(
            out.changed_files,
            vec!["/srv/idem/motd"],
            "{}",
            dump(&first)
        );
    }
    let second = run.apply(&step, &[], Pass::Second);
    assert!(second.ok, "{}", dump(&second));
    assert_eq!(second.changed(), Vec::<String>::new(), "{}", dump(&second));
}

#[test]
fn a_script_with_its_own_interpreter_runs_and_leaves_tmp_and_home_alone() {
    let run = run();
    let listing = "ls -A /tmp /root; ls -A /run/rehearse | grep '^step-' || true";
    let (_, before) = run.sh("node2", listing);
    let step = shell(
        "python",
        "#!/usr/bin/python3\nimport socket, sys\nprint('python on', socket.gethostname())\nsys.exit(0)\n",
    );
    let report = run.apply(&step, &["node2"], Pass::First);
    assert!(report.ok, "{}", dump(&report));
    assert_eq!(report.nodes[0].stdout, "python on node2\n");
    let (_, after) = run.sh("node2", listing);
    assert_eq!(
        before, after,
        "the step left files in /tmp, /root or /run/rehearse"
    );
}

#[test]
fn an_unknown_target_is_refused_without_running_anything() {
    let run = run();
    let report = run.apply(&shell("x", "true"), &["node9"], Pass::First);
    assert!(!report.ok);
    let error = report.error.unwrap();
    assert!(
        error.contains("node9") && error.contains("node1, node2"),
        "{error}"
    );
    assert!(report.nodes.is_empty());
}
