//! A real cluster shared by the tests of one file, destroyed when the last of
//! them ends, pass or fail.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rehearse_runner::{apply, Pass, RunContext, StepReport};
use rehearse_sandbox::{ClusterState, Engine, ExecRequest, UpRequest};
use rehearse_spec::scenario::{Step, StepAction};
use rehearse_spec::Topology;

pub struct TestCluster {
    pub engine: Engine,
    pub state: ClusterState,
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if let Err(e) = self.engine.down(&self.state.id) {
            eprintln!("could not destroy test cluster {}: {e}", self.state.id);
        }
    }
}

/// The cluster of this test binary: booted by the first test that asks, shared
/// with the tests running alongside, destroyed when the last one drops it.
pub fn cluster(topology: fn() -> Topology) -> Arc<TestCluster> {
    static SHARED: Mutex<Weak<TestCluster>> = Mutex::new(Weak::new());
    rehearse_testkit::require_root("runner tests");
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(c) = shared.upgrade() {
        return c;
    }
    let engine = Engine::new(&rehearse_image::state_dir()).expect("engine");
    let state = engine
        .up(
            UpRequest {
                topology: topology(),
                ttl: Duration::from_secs(600),
                boot_timeout: Duration::from_secs(60),
                source: "runner-test".into(),
                ownership: rehearse_sandbox::Ownership::User,
            },
            &|_| {},
        )
        .expect("cluster boots");
    let c = Arc::new(TestCluster { engine, state });
    *shared = Arc::downgrade(&c);
    c
}

pub fn two_nodes() -> Topology {
    Topology::with_nodes(2, "debian-12").expect("topology")
}

/// Tests of a file share one cluster, so they take turns: a step must only see
/// the files it wrote itself, not those of a test running beside it.
static SERIAL: Mutex<()> = Mutex::new(());

/// One test's scenario folder and work folder on the host.
pub struct Run {
    _turn: std::sync::MutexGuard<'static, ()>,
    pub cluster: Arc<TestCluster>,
    pub scenario: tempfile::TempDir,
    pub work: tempfile::TempDir,
}

impl Run {
    pub fn new(cluster: Arc<TestCluster>) -> Run {
        Run {
            _turn: SERIAL.lock().unwrap_or_else(|e| e.into_inner()),
            cluster,
            scenario: tempfile::tempdir().expect("scenario folder"),
            work: tempfile::tempdir().expect("work folder"),
        }
    }

    /// Writes a file of the scenario folder.
    pub fn file(&self, rel: &str, text: &str) -> PathBuf {
        let path = self.scenario.path().join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn apply(&self, step: &Step, targets: &[&str], pass: Pass) -> StepReport {
        let ctx = RunContext {
            engine: &self.cluster.engine,
            cluster: &self.cluster.state,
            scenario_dir: self.scenario.path(),
            work_dir: self.work.path(),
        };
        let targets: Vec<String> = targets.iter().map(|t| t.to_string()).collect();
        apply(&ctx, step, &targets, pass)
    }

    /// Runs a command on a node: (exit code, stdout).
    pub fn sh(&self, node: &str, script: &str) -> (i32, String) {
        let c = &self.cluster;
        let (outcome, out, err) = c
            .engine
            .exec_capture(&c.state.id, node, &ExecRequest::shell(script))
            .unwrap_or_else(|e| panic!("exec on {node}: {e}"));
        if !err.is_empty() {
            eprintln!("{node} stderr: {err}");
        }
        (outcome.exit_code, out)
    }

    pub fn scenario_dir(&self) -> &Path {
        self.scenario.path()
    }
}

pub fn step(name: &str, action: StepAction) -> Step {
    Step {
        idempotence: Default::default(),
        name: name.into(),
        on: vec![],
        timeout: Duration::from_secs(300),
        env: vec![],
        action,
    }
}

pub fn shell(name: &str, script: &str) -> Step {
    step(
        name,
        StepAction::Shell {
            script: script.into(),
            file: None,
        },
    )
}

pub fn ansible(name: &str, playbook: &str) -> Step {
    step(
        name,
        StepAction::Ansible {
            playbook: playbook.into(),
            controller: None,
            extra_vars: vec![],
        },
    )
}

/// The report as pretty JSON, for assertion messages.
pub fn dump(report: &StepReport) -> String {
    serde_json::to_string_pretty(report).unwrap()
}
