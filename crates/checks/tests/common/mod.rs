//! A real cluster per test (as root), destroyed when the test ends, panics
//! included; and short ways to write checks.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rehearse_checks::{CheckResult, NodeChecks, Status};
use rehearse_sandbox::{Engine, ExecRequest, UpRequest};
use rehearse_spec::scenario::{Check, CheckKind};
use rehearse_spec::Topology;

pub struct TestCluster {
    pub engine: Engine,
    pub id: String,
    /// Node addresses by name.
    pub ips: BTreeMap<String, String>,
}

impl TestCluster {
    pub fn up(nodes: usize) -> TestCluster {
        let engine = Engine::new(&rehearse_image::state_dir()).expect("engine");
        let state = engine
            .up(
                UpRequest {
                    topology: Topology::with_nodes(nodes, "debian-12").expect("topology"),
                    ttl: Duration::from_secs(600),
                    boot_timeout: Duration::from_secs(60),
                    source: "checks-test".into(),
                    ownership: rehearse_sandbox::Ownership::User,
                },
                &|_| {},
            )
            .expect("cluster up");
        let ips = state
            .nodes
            .iter()
            .map(|n| (n.name.clone(), n.ip().expect("address").to_string()))
            .collect();
        TestCluster {
            engine,
            id: state.id,
            ips,
        }
    }

    /// Runs a shell script on a node and returns its stdout; panics unless it
    /// exits 0.
    pub fn sh(&self, node: &str, script: &str) -> String {
        let mut req = ExecRequest::shell(script);
        req.timeout = Some(Duration::from_secs(60));
        let (outcome, out, err) = self
            .engine
            .exec_capture(&self.id, node, &req)
            .unwrap_or_else(|e| panic!("{node}: {script}: {e}"));
        assert_eq!(outcome.exit_code, 0, "{node}: {script}: {err}");
        out
    }

    /// Starts a background process on a node that outlives the exec.
    pub fn spawn(&self, node: &str, script: &str) {
        self.sh(
            node,
            &format!("setsid sh -c '{script}' </dev/null >/dev/null 2>&1 &"),
        );
    }

    pub fn evaluate(&self, work: &[NodeChecks<'_>]) -> Vec<CheckResult> {
        rehearse_checks::evaluate(&self.engine, &self.id, work)
    }

    /// Evaluates checks on one node.
    pub fn evaluate_on(&self, node: &str, checks: &[Check]) -> Vec<CheckResult> {
        self.evaluate(&[on(node, checks)])
    }

    /// Waits until a node no longer answers (after a poweroff).
    pub fn wait_down(&self, node: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .engine
            .exec_capture(&self.id, node, &ExecRequest::shell("true"))
            .is_ok()
        {
            assert!(Instant::now() < deadline, "{node} still runs");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Err(e) = self.engine.down(&self.id) {
            eprintln!("destroying test cluster {}: {e}", self.id);
        }
    }
}

pub fn on<'a>(node: &str, checks: &'a [Check]) -> NodeChecks<'a> {
    NodeChecks {
        node: node.into(),
        checks: checks.iter().collect(),
    }
}

/// A check evaluated once (no retries).
pub fn once(name: &str, kind: CheckKind) -> Check {
    retried(name, Duration::ZERO, kind)
}

pub fn retried(name: &str, timeout: Duration, kind: CheckKind) -> Check {
    Check {
        name: name.into(),
        on: Vec::new(),
        timeout,
        skip_unless: None,
        kind,
    }
}

pub fn command(command: &str, exit_status: i32) -> CheckKind {
    CheckKind::Command {
        command: command.into(),
        exit_status,
        stdout: Vec::new(),
        stderr: Vec::new(),
    }
}

pub fn file_exists(path: &str) -> CheckKind {
    CheckKind::File {
        path: path.into(),
        exists: true,
        filetype: None,
        mode: None,
        owner: None,
        group: None,
        contains: Vec::new(),
    }
}

pub fn http(url: &str, status: u16, body: &[&str]) -> CheckKind {
    CheckKind::Http {
        url: url.into(),
        method: "GET".into(),
        status,
        body: strings(body),
        headers: BTreeMap::new(),
        insecure: false,
    }
}

pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The result of the check with this name.
pub fn result<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
    results
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no result named {name}"))
}

/// The result of the named check, asserted to have passed.
pub fn passed<'a>(results: &'a [CheckResult], name: &str) -> &'a CheckResult {
    let r = result(results, name);
    assert_eq!(r.status, Status::Passed, "{name}: {r:#?}");
    assert!(r.message.is_empty(), "{name}: {r:#?}");
    r
}

/// The result of the named check, asserted to have failed with a message
/// containing every fragment.
pub fn failed<'a>(results: &'a [CheckResult], name: &str, fragments: &[&str]) -> &'a CheckResult {
    let r = result(results, name);
    assert_eq!(r.status, Status::Failed, "{name}: {r:#?}");
    for f in fragments {
        assert!(
            r.message.contains(f),
            "{name}: {f:?} not in {:?}",
            r.message
        );
    }
    r
}
