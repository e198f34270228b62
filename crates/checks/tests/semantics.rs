//! Retries, preconditions, ordering, and one agent run per node.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use rehearse_checks::{evaluate_nodes, NodeExec, Status};
use rehearse_sandbox::{ExecIo, ExecOutcome, ExecRequest, SandboxError};
use rehearse_spec::scenario::{Check, CheckKind};
use serde_json::json;

/// Counts the execs made through it.
struct Counting<'a> {
    inner: &'a dyn NodeExec,
    execs: AtomicUsize,
}

impl NodeExec for Counting<'_> {
    fn exec(
        &self,
        cluster: &str,
        node: &str,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, SandboxError> {
        self.execs.fetch_add(1, Ordering::SeqCst);
        self.inner.exec(cluster, node, req, io)
    }

    fn copy_to(
        &self,
        cluster: &str,
        node: &str,
        src: &std::path::Path,
        dest: &str,
    ) -> Result<(), SandboxError> {
        self.inner.copy_to(cluster, node, src, dest)
    }
}

fn skip_unless(mut check: Check, precondition: &str) -> Check {
    check.skip_unless = Some(precondition.into());
    check
}

#[test]
fn retries_preconditions_order_and_one_exec_per_node() {
    let cluster = TestCluster::up(2);
    // The files appear only once the check agent runs on the node (its
    // python3 is the node's only one), so no host load can make them early.
    let after_agent = |delay: &str, file: &str| {
        format!(
            "until grep -qs \"^python3\" /proc/[0-9]*/cmdline; do sleep 0.02; done; sleep {delay}; touch {file}"
        )
    };
    cluster.spawn("node1", &after_agent("0.5", "/run/ready"));
    cluster.spawn("node1", &after_agent("3", "/run/ready-too-late"));

    let node1 = vec![
        retried(
            "appears in time",
            Duration::from_secs(5),
            file_exists("/run/ready"),
        ),
        once("checked once", file_exists("/run/ready-too-late")),
        skip_unless(
            once("skipped", command("false", 0)),
            "test -e /etc/nonexistent",
        ),
        skip_unless(once("precondition met", command("true", 0)), "true"),
        once(
            "bad regex",
            CheckKind::Command {
                command: "true".into(),
                exit_status: 0,
                stdout: strings(&["/([/"]),
                stderr: vec![],
            },
        ),
        once(
            "bad port",
            CheckKind::Port {
                port: "tcp:http".into(),
                listening: true,
                ip: vec![],
            },
        ),
    ];
    // Many checks on node2: still one agent run.
    let node2: Vec<Check> = (0..40)
        .map(|i| once(&format!("n2-{i}"), command(&format!("test {} -ge 0", i), 0)))
        .collect();
    let work = [on("node2", &node2), on("node1", &node1)];
    let counting = Counting {
        inner: &cluster.engine,
        execs: AtomicUsize::new(0),
    };
    let reports = evaluate_nodes(&counting, &cluster.id, &work);

    assert_eq!(
        counting.execs.load(Ordering::SeqCst),
        2,
        "one exec per node"
    );
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].node, "node2");
    let agent2 = reports[0].agent.as_ref().expect("node2 agent reported");
    let agent1 = reports[1].agent.as_ref().expect("node1 agent reported");
    assert_eq!(agent2.checks, 40, "all of node2's checks in one process");
    assert_eq!(agent1.checks, node1.len());
    assert!(agent2.python.starts_with("3."));

    // Results come back in input order: node2's, then node1's.
    let results: Vec<_> = reports.iter().flat_map(|r| r.results.clone()).collect();
    let names: Vec<&str> = results.iter().map(|r| r.name.as_str()).collect();
    let wanted: Vec<&str> = node2
        .iter()
        .chain(node1.iter())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, wanted);
    assert!(results[..40]
        .iter()
        .all(|r| r.passed() && r.node == "node2"));

    let r = passed(&results, "appears in time");
    assert!(r.attempts > 1, "{r:#?}");
    assert_eq!(r.actual["exists"], true);
    let r = failed(
        &results,
        "checked once",
        &["expected /run/ready-too-late to exist, but it does not"],
    );
    assert_eq!(r.attempts, 1);
    assert_eq!(r.expected, json!({"exists": true}));
    assert_eq!(r.actual, json!({"exists": false}));

    let r = result(&results, "skipped");
    assert_eq!(r.status, Status::Skipped);
    assert_eq!(
        r.message,
        "precondition unmet: test -e /etc/nonexistent exited 1"
    );
    assert_eq!(r.attempts, 0);
    assert_eq!(r.expected, json!({"exit_status": 0}));
    assert_eq!(r.actual, json!(null));
    passed(&results, "precondition met");

    let r = failed(
        &results,
        "bad regex",
        &["invalid check: invalid regular expression /([/"],
    );
    assert_eq!(r.attempts, 0);
    assert_eq!(r.expected["command"], "true");
    failed(
        &results,
        "bad port",
        &["invalid check: port \"tcp:http\": the port must be a number"],
    );
}
