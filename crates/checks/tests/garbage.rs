//! When the agent cannot report (it crashes, hangs, or its node is gone), every
//! check of that node fails with a message that says what happened.

mod common;

use std::time::Duration;

use common::*;
use rehearse_checks::Status;
use rehearse_sandbox::ExecRequest;
use serde_json::json;

#[test]
fn crashes_hangs_and_dead_nodes_fail_every_check_of_the_node() {
    let cluster = TestCluster::up(2);

    // A command check that interrupts the agent running it: Python dies with a
    // traceback on stderr.
    let crash = vec![
        once("kills the agent", command("kill -INT $PPID; sleep 5", 0)),
        once("innocent", file_exists("/etc/hostname")),
    ];
    // One that stops it, so that only the exec timeout ends it (short checks
    // keep that timeout short).
    let hang = vec![
        retried(
            "stops the agent",
            Duration::from_secs(1),
            command("kill -STOP $PPID", 0),
        ),
        // Would pass, but its result is lost with the agent.
        retried("bystander", Duration::from_secs(1), command("true", 0)),
    ];
    let lost = vec![once("on no node", file_exists("/etc/hostname"))];
    let results = cluster.evaluate(&[on("node1", &crash), on("node2", &hang), on("node9", &lost)]);
    assert_eq!(results.len(), 5);

    for name in ["kills the agent", "innocent"] {
        let r = failed(
            &results,
            name,
            &[
                "the check agent on node1 was killed by signal 2 with no report",
                "its stderr ends with: Traceback",
                "KeyboardInterrupt",
            ],
        );
        assert_eq!(r.node, "node1");
        assert_eq!(r.actual, json!(null));
        assert_eq!(r.attempts, 0);
    }
    assert_eq!(
        result(&results, "innocent").expected,
        json!({"path": "/etc/hostname", "exists": true})
    );

    for name in ["stops the agent", "bystander"] {
        let r = failed(
            &results,
            name,
            &[
                "the check agent on node2 did not finish within",
                "and was killed",
            ],
        );
        assert_eq!(r.node, "node2");
    }
    assert_eq!(
        result(&results, "stops the agent").expected,
        json!({"command": "kill -STOP $PPID", "exit_status": 0})
    );

    failed(
        &results,
        "on no node",
        &["checks could not run on node9", "has no node \"node9\""],
    );

    // Nothing of the agent runs on after it was killed. (Zombies do not count:
    // whether they are reaped is up to the host's init.)
    let left = cluster.sh(
        "node2",
        "ps -eo stat=,comm= | awk '$2 == \"python3\" && $1 !~ /^Z/' | wc -l",
    );
    assert_eq!(left.trim(), "0", "agent processes left on node2");

    // A node that went away.
    let _ = cluster.engine.exec_capture(
        &cluster.id,
        "node2",
        &ExecRequest::shell("systemctl poweroff --force --force"),
    );
    cluster.wait_down("node2");
    let checks = vec![once("on a dead node", file_exists("/etc/hostname"))];
    let results = cluster.evaluate(&[on("node2", &checks), on("node1", &crash[1..])]);
    let r = failed(
        &results,
        "on a dead node",
        &["checks could not run on node2", "is not running"],
    );
    assert_eq!(r.expected, json!({"path": "/etc/hostname", "exists": true}));
    assert_eq!(result(&results, "innocent").status, Status::Passed);
}
