//! A scenario run, the main job of rehearse: a fresh cluster → steps → checks →
//! idempotence (the steps again) → optionally a reboot and the checks again →
//! hygiene → the cluster destroyed (or kept), and one report of all of it.

mod cancel;
mod confidence;
pub mod history;
mod hygiene;
mod idempotence;
mod matrix;
mod record;
mod report;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use rehearse_checks::{CheckResult, NodeChecks, Status};
use rehearse_runner::{Pass, RunContext, StepReport};
use rehearse_sandbox::{ClusterState, Engine, Ownership, SandboxError, UpRequest};
use rehearse_spec::scenario::Scenario;
use rehearse_store::RunStore;

pub use cancel::{Cancel, STOPPED};
pub use confidence::{ConfidenceReport, FaultOutcome};
pub use hygiene::{Finding, FindingKind};
pub use idempotence::{FailedRun, Idempotence, StepChanges};
pub use matrix::{
    host_slots, junit_matrix, matrix_summary, render_matrix, run_matrix, MatrixReport, MatrixRow,
    PlatformReport,
};
pub use record::{
    cluster_row, name_of, record_cluster, record_cluster_destroyed, record_cluster_removed,
    summary, ParentRun, Redact, StepDetail,
};
pub use report::{junit, render_human};

/// When to leave the cluster up after the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Keep {
    Never,
    Always,
    OnFailure,
}

impl std::str::FromStr for Keep {
    type Err = String;

    /// `never`, `always` or `on_failure`, as requests and jobs name it.
    fn from_str(s: &str) -> Result<Keep, String> {
        match s {
            "never" => Ok(Keep::Never),
            "always" => Ok(Keep::Always),
            "on_failure" => Ok(Keep::OnFailure),
            other => Err(format!(
                "keep \"{other}\" is not never, always or on_failure"
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub reboot: bool,
    pub idempotence: bool,
    pub keep: Keep,
    /// A cluster kept by [`Keep::OnFailure`] becomes the user's (it outlives
    /// this process until its time-to-live); false when the caller goes on
    /// using it and removes it itself (converge troubleshooting it).
    pub hand_over_kept: bool,
    /// Time to live of a cluster kept for the user.
    pub ttl: Duration,
    pub boot_timeout: Duration,
    /// The run this one is part of (a converge run's iteration or proof).
    pub parent: Option<ParentRun>,
    /// Applied to every text the run store receives.
    pub redact: Option<Redact>,
    /// Where the run is recorded as it goes; `None` records nothing. The
    /// caller owns the handle (one per process), the run only writes to it.
    pub store: Option<Arc<RunStore>>,
    /// Lets another thread stop the run between phases.
    pub cancel: Option<Cancel>,
    /// Compare the nodes' files by content (idempotence and hygiene). Off, the
    /// second pass is judged on exit codes and checks only and hygiene scans
    /// the nodes by modification time: for measuring what the detector costs.
    pub change_detection: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            reboot: false,
            idempotence: true,
            keep: Keep::Never,
            hand_over_kept: true,
            ttl: Duration::from_secs(30 * 60),
            boot_timeout: Duration::from_secs(60),
            parent: None,
            redact: None,
            store: None,
            cancel: None,
            change_detection: true,
        }
    }
}

/// What a run reports while it works.
#[derive(Debug, Clone)]
pub enum Event<'a> {
    Phase(&'a str),
    ClusterReady {
        cluster: &'a str,
        boot_ms: u64,
    },
    StepDone(&'a StepReport),
    ChecksDone {
        phase: &'a str,
        results: &'a [CheckResult],
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every step applied and every check passed.
    Passed,
    /// A step or a check failed.
    Failed,
    /// The run could not be carried out (no cluster, ...).
    Error,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Timings {
    pub boot_ms: u64,
    pub steps_ms: u64,
    pub checks_ms: u64,
    pub idempotence_ms: u64,
    pub reboot_ms: u64,
    pub hygiene_ms: u64,
    /// Of `idempotence_ms`: taking and comparing snapshots of the nodes' files.
    pub changes_ms: u64,
    pub teardown_ms: u64,
    pub total_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub run_id: String,
    pub scenario: String,
    pub file: PathBuf,
    pub outcome: Outcome,
    pub cluster: Option<String>,
    /// Whether the cluster was claimed from the warm pool rather than booted
    /// for the run.
    pub from_pool: bool,
    /// Whether the cluster was left up, and how to get in.
    pub kept: bool,
    pub how_to_get_in: Option<String>,
    pub nodes: Vec<NodeInfo>,
    pub steps: Vec<StepReport>,
    pub checks: Vec<CheckResult>,
    pub idempotence: Option<Idempotence>,
    pub reboot_checks: Option<Vec<CheckResult>>,
    /// Faults, loads and attack probes, when the scenario has any.
    pub confidence: Option<ConfidenceReport>,
    pub hygiene: Vec<Finding>,
    pub error: Option<String>,
    pub timings: Timings,
    pub work_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    /// The image the node booted.
    pub image: String,
    pub ip: Option<String>,
    pub groups: Vec<String>,
}

impl RunReport {
    /// Every check result of the run: the checks, idempotence and after-reboot.
    pub fn all_checks(&self) -> Vec<&CheckResult> {
        self.checks
            .iter()
            .chain(self.reboot_checks.iter().flatten())
            .chain(self.confidence.iter().flat_map(|c| c.checks()))
            .collect()
    }

    pub fn exit_code(&self) -> i32 {
        match self.outcome {
            Outcome::Passed => 0,
            Outcome::Failed => 1,
            Outcome::Error => 2,
        }
    }
}

/// A run id: the start second (so ids sort by time) and 32 random bits, so
/// runs started in the same second, in one process or many, never share one.
pub fn new_run_id() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs:x}{:08x}", rand::random::<u32>())
}

/// Runs a scenario on a fresh cluster.
pub fn run(
    engine: &Engine,
    scenario: &Scenario,
    opts: &RunOptions,
    events: &(dyn Fn(Event<'_>) + Sync),
) -> RunReport {
    let started = Instant::now();
    let run_id = new_run_id();
    let work_dir = engine.history_dir().join("runs").join(&run_id);
    let _ = std::fs::create_dir_all(&work_dir);
    let report = RunReport {
        run_id,
        scenario: scenario.name.clone(),
        file: scenario.file.clone(),
        outcome: Outcome::Error,
        cluster: None,
        from_pool: false,
        kept: false,
        how_to_get_in: None,
        nodes: Vec::new(),
        steps: Vec::new(),
        checks: Vec::new(),
        idempotence: None,
        reboot_checks: None,
        confidence: None,
        hygiene: Vec::new(),
        error: None,
        timings: Timings::default(),
        work_dir: work_dir.clone(),
    };
    // Every log line of the run carries its id.
    let span = tracing::info_span!("run", run_id = %report.run_id, scenario = %scenario.name);
    let _entered = span.enter();
    tracing::info!(file = %scenario.file.display(), "scenario run started");
    let recorder = record::Recorder::start(
        opts.store.clone(),
        &report,
        opts.parent.as_ref(),
        opts.redact.clone(),
    );
    let report = run_recorded(engine, scenario, opts, events, report, &recorder, started);
    recorder.finish(&report);
    tracing::info!(outcome = ?report.outcome, total_ms = report.timings.total_ms, "scenario run ended");
    report
}

fn run_recorded(
    engine: &Engine,
    scenario: &Scenario,
    opts: &RunOptions,
    events: &(dyn Fn(Event<'_>) + Sync),
    mut report: RunReport,
    recorder: &record::Recorder,
    started: Instant,
) -> RunReport {
    let work_dir = report.work_dir.clone();
    events(Event::Phase("starting a fresh cluster"));
    let t = Instant::now();
    let cluster = match engine.up(
        UpRequest {
            topology: scenario.topology.clone(),
            ttl: opts.ttl,
            boot_timeout: opts.boot_timeout,
            source: format!("run {} ({})", report.run_id, scenario.file.display()),
            // The cluster dies with this process unless the user asked to keep it.
            ownership: if opts.keep == Keep::Always {
                Ownership::User
            } else {
                Ownership::ThisProcess
            },
        },
        &|_| {},
    ) {
        Ok(c) => c,
        Err(e) => {
            report.error = Some(format!("could not start the cluster: {e}"));
            report.timings.total_ms = started.elapsed().as_millis() as u64;
            return report;
        }
    };
    report.timings.boot_ms = t.elapsed().as_millis() as u64;
    report.cluster = Some(cluster.id.clone());
    report.from_pool = cluster.from_pool;
    report.nodes = cluster
        .nodes
        .iter()
        .map(|n| NodeInfo {
            name: n.name.clone(),
            image: n.image.clone(),
            ip: n.ip().map(|i| i.to_string()),
            groups: n.groups.clone(),
        })
        .collect();
    events(Event::ClusterReady {
        cluster: &cluster.id,
        boot_ms: report.timings.boot_ms,
    });
    tracing::info!(cluster = %cluster.id, boot_ms = report.timings.boot_ms, "cluster ready");
    if let Some(cancel) = &opts.cancel {
        cancel.track(&cluster.id);
    }
    recorder.cluster(&cluster, report.timings.boot_ms);
    // Every step and check result reaches the store as it happens.
    let recording = |event: Event<'_>| {
        match &event {
            Event::Phase(phase) => tracing::info!(phase = %phase, "phase"),
            Event::StepDone(step) => recorder.step(step),
            Event::ChecksDone { phase, results } => recorder.checks(
                match *phase {
                    "checks" => "checks",
                    "after the second run" => "after_second_run",
                    _ => "after_reboot",
                },
                results,
            ),
            _ => {}
        }
        events(event);
    };
    let events: &(dyn Fn(Event<'_>) + Sync) = &recording;

    let failed = drive(
        engine,
        scenario,
        opts,
        &cluster,
        &work_dir,
        &mut report,
        events,
    );
    report.outcome = match (&report.error, failed) {
        (Some(_), _) => Outcome::Error,
        (None, true) => Outcome::Failed,
        (None, false) => Outcome::Passed,
    };

    let stopped = stopped(opts);
    let keep = !stopped
        && match opts.keep {
            Keep::Always => true,
            Keep::OnFailure => report.outcome != Outcome::Passed,
            Keep::Never => false,
        };
    let t = Instant::now();
    if keep {
        if opts.keep == Keep::OnFailure && opts.hand_over_kept {
            if let Err(e) = engine.release(&cluster.id) {
                report
                    .error
                    .get_or_insert(format!("keeping cluster {}: {e}", cluster.id));
            }
        }
        report.kept = true;
        let first = cluster
            .nodes
            .first()
            .map(|n| n.name.as_str())
            .unwrap_or("node1");
        report.how_to_get_in = Some(format!(
            "rehearse exec {id} {first} -- bash   |   ssh -F {cfg} {first}   |   rehearse down {id}",
            id = cluster.id,
            cfg = engine.cluster_dir(&cluster.id).join("ssh/config").display()
        ));
    } else {
        events(Event::Phase("destroying the cluster"));
        match engine.down(&cluster.id) {
            Ok(()) => recorder.destroyed(&cluster.id),
            // Whoever stopped the run destroyed it already.
            Err(SandboxError::ClusterNotFound(_)) if stopped => recorder.destroyed(&cluster.id),
            Err(e) => {
                report
                    .error
                    .get_or_insert(format!("destroying cluster {}: {e}", cluster.id));
            }
        }
    }
    if let Some(cancel) = &opts.cancel {
        cancel.untrack(&cluster.id);
    }
    report.timings.teardown_ms = t.elapsed().as_millis() as u64;
    report.timings.total_ms = started.elapsed().as_millis() as u64;
    let _ = std::fs::write(
        work_dir.join("report.json"),
        serde_json::to_string_pretty(&report).unwrap_or_default(),
    );
    report
}

fn stopped(opts: &RunOptions) -> bool {
    opts.cancel.as_ref().is_some_and(Cancel::is_cancelled)
}

/// Steps, checks, idempotence, reboot, hygiene. Returns whether anything failed.
fn drive(
    engine: &Engine,
    scenario: &Scenario,
    opts: &RunOptions,
    cluster: &ClusterState,
    work_dir: &std::path::Path,
    report: &mut RunReport,
    events: &(dyn Fn(Event<'_>) + Sync),
) -> bool {
    for node in &cluster.nodes {
        if let Err(e) = hygiene::mark(engine, &cluster.id, &node.name) {
            report.error = Some(format!("preparing node {}: {e}", node.name));
            return true;
        }
    }
    let hygiene_base = opts
        .change_detection
        .then(|| hygiene::baseline(engine, cluster));
    let ctx = RunContext {
        engine,
        cluster,
        scenario_dir: &scenario.dir,
        work_dir,
    };

    // Steps, in order; the first failure stops the steps (checks still run, to
    // show the state it left).
    let t = Instant::now();
    let mut steps_ok = true;
    for step in &scenario.steps {
        if stopped(opts) {
            report.error = Some(STOPPED.into());
            return true;
        }
        events(Event::Phase(&step.name));
        let targets = scenario.resolve(&step.on);
        let step_report = rehearse_runner::apply(&ctx, step, &targets, Pass::First);
        events(Event::StepDone(&step_report));
        steps_ok &= step_report.ok;
        report.steps.push(step_report);
        if !steps_ok {
            break;
        }
    }
    report.timings.steps_ms = t.elapsed().as_millis() as u64;
    // A step cut short by the stop is not a failure of the code.
    if stopped(opts) {
        report.error = Some(STOPPED.into());
        return true;
    }

    let t = Instant::now();
    events(Event::Phase("checks"));
    report.checks = evaluate(engine, scenario, &cluster.id);
    events(Event::ChecksDone {
        phase: "checks",
        results: &report.checks,
    });
    report.timings.checks_ms = t.elapsed().as_millis() as u64;
    if stopped(opts) {
        report.error = Some(STOPPED.into());
        return true;
    }

    if steps_ok && opts.idempotence && !scenario.steps.is_empty() {
        let t = Instant::now();
        events(Event::Phase("second run of every step (idempotence)"));
        let (idempotence, changes_ms) = idempotence::second_pass(
            &ctx,
            scenario,
            &report.checks,
            opts.change_detection,
            events,
            &|| evaluate(engine, scenario, &cluster.id),
        );
        report.idempotence = Some(idempotence);
        report.timings.changes_ms = changes_ms;
        report.timings.idempotence_ms = t.elapsed().as_millis() as u64;
    }

    if steps_ok
        && !(scenario.faults.is_empty() && scenario.loads.is_empty() && scenario.probes.is_empty())
    {
        events(Event::Phase("faults, load and probes"));
        let phase = |p: &str| events(Event::Phase(p));
        report.confidence = Some(confidence::run(engine, scenario, &cluster.id, &phase));
    }

    if steps_ok && opts.reboot {
        let t = Instant::now();
        events(Event::Phase("rebooting every node"));
        let names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
        match engine.reboot(
            &cluster.id,
            &names,
            Duration::from_secs(20),
            opts.boot_timeout,
        ) {
            Ok(_) => {
                events(Event::Phase("checks after reboot"));
                let results = evaluate(engine, scenario, &cluster.id);
                events(Event::ChecksDone {
                    phase: "after reboot",
                    results: &results,
                });
                report.reboot_checks = Some(results);
            }
            Err(e) => report.error = Some(format!("rebooting the nodes: {e}")),
        }
        report.timings.reboot_ms = t.elapsed().as_millis() as u64;
    }

    let t = Instant::now();
    events(Event::Phase("hygiene"));
    report.hygiene = hygiene::scan_code(scenario);
    report
        .hygiene
        .extend(hygiene::scan(engine, cluster, hygiene_base.as_ref()));
    report.timings.hygiene_ms = t.elapsed().as_millis() as u64;

    let checks_failed = report
        .all_checks()
        .iter()
        .any(|c| c.status == Status::Failed);
    let idempotence_failed = report.idempotence.as_ref().is_some_and(|i| !i.passed);
    let confidence_failed = report.confidence.as_ref().is_some_and(|c| c.failed());
    !steps_ok || checks_failed || idempotence_failed || confidence_failed
}

/// Evaluates a scenario's checks on the cluster, each on the nodes its `on` selects.
pub fn evaluate(engine: &Engine, scenario: &Scenario, cluster: &str) -> Vec<CheckResult> {
    let mut work: Vec<NodeChecks<'_>> = Vec::new();
    for node in &scenario.topology.nodes {
        let checks: Vec<_> = scenario
            .checks
            .iter()
            .filter(|c| scenario.resolve(&c.on).contains(&node.name))
            .collect();
        if !checks.is_empty() {
            work.push(NodeChecks {
                node: node.name.clone(),
                checks,
            });
        }
    }
    rehearse_checks::evaluate(engine, cluster, &work)
}

/// Errors of loading a scenario for a run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Spec(#[from] rehearse_spec::SpecError),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}
