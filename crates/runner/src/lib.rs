//! Applies one scenario step to a live cluster and reports precisely what
//! happened: per node (exit code, output, files changed) for shell and copy
//! steps, per task and host (status, message, diff) for Ansible steps.
//!
//! [`apply`] never returns an error: whatever goes wrong ends up in the
//! [`StepReport`] as `ok: false` and one sentence in `error`, so a scenario run
//! can report every step the same way. A step that outlives its timeout is
//! killed after the state of the nodes it hung on is captured
//! ([`StepReport::hang_state`]).
//!
//! Running the same step twice ([`Pass::First`], then [`Pass::Second`]) and
//! reading [`StepReport::changed`] of the second pass is how a scenario tells
//! whether a step is idempotent.
//!
//! Nothing is written to `/tmp` or to home folders on the nodes: the runner's
//! own files live in `/run/rehearse` (a tmpfs) and are removed after each step.

mod ansible;
mod capture;
pub mod changes;
mod copy;
mod job;
mod nodes;
mod report;
mod shell;
mod workdir;

use std::path::Path;
use std::time::Instant;

use rehearse_sandbox::{ClusterState, Engine};
use rehearse_spec::scenario::{Step, StepAction};
use serde::{Deserialize, Serialize};

pub use ansible::{AnsibleReport, Diff, HostRecap, TaskResult, TaskStatus, UnfinishedTask};
pub use changes::{Change, ChangeKind, Detector, Scope, Snapshot};
pub use report::{HangState, NodeOutput, StepReport};

use nodes::ClusterNodes;

/// Longest stdout or stderr kept in a report per node and stream; the start of
/// longer output is cut (the whole output is in the step's log folder).
pub const OUTPUT_CAP: usize = 64 * 1024;

/// Most changed files listed per node; more are flagged `changed_files_truncated`.
pub const CHANGED_FILES_CAP: usize = 1000;

/// Where and against what a step runs.
pub struct RunContext<'a> {
    pub engine: &'a Engine,
    pub cluster: &'a ClusterState,
    /// The folder relative paths in steps are resolved against.
    pub scenario_dir: &'a Path,
    /// A host folder for this run's inventories, logs and Ansible files; every
    /// step gets a subfolder of its own ([`StepReport::log_dir`]).
    pub work_dir: &'a Path,
}

/// Which run of a step this is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pass {
    First,
    /// The idempotence re-run: anything it changes, the step changes every time.
    Second,
}

impl Pass {
    pub fn as_str(self) -> &'static str {
        match self {
            Pass::First => "first",
            Pass::Second => "second",
        }
    }
}

/// Applies `step` to `targets` (node names, already resolved from the step's
/// `on`; an empty list means every node of the cluster).
pub fn apply(ctx: &RunContext<'_>, step: &Step, targets: &[String], pass: Pass) -> StepReport {
    let started = Instant::now();
    let mut report = StepReport::new(step, pass);
    let mut targets: Vec<String> = if targets.is_empty() {
        ctx.cluster.nodes.iter().map(|n| n.name.clone()).collect()
    } else {
        targets.to_vec()
    };
    // A node named twice (directly and through a group) runs the step once.
    let mut seen = std::collections::HashSet::new();
    targets.retain(|t| seen.insert(t.clone()));
    if let Some(unknown) = targets.iter().find(|t| ctx.cluster.node(t).is_err()) {
        report.fail(format!(
            "step `{}` targets node \"{unknown}\", which cluster {} does not have (nodes: {})",
            step.name,
            ctx.cluster.id,
            node_names(ctx.cluster)
        ));
        return report.finish(started);
    }
    let log_dir = match workdir::step_dir(ctx.work_dir, &step.name, pass) {
        Ok(dir) => dir,
        Err(e) => {
            report.fail(e);
            return report.finish(started);
        }
    };
    report.log_dir = Some(log_dir.clone());
    let nodes = ClusterNodes::new(ctx.engine, &ctx.cluster.id);
    let step_ctx = StepContext {
        run: ctx,
        nodes: &nodes,
        step,
        targets: &targets,
        log_dir: &log_dir,
        token: workdir::token(),
    };
    match &step.action {
        StepAction::Shell { script, .. } => shell::run(&step_ctx, script, &mut report),
        StepAction::Copy { src, dest, mode } => {
            copy::run(&step_ctx, src, dest, mode.as_deref(), &mut report)
        }
        StepAction::Ansible {
            playbook,
            controller,
            extra_vars,
        } => ansible::run(
            &step_ctx,
            &ansible::Request {
                playbook,
                controller: controller.as_deref(),
                extra_vars,
            },
            &mut report,
        ),
    }
    report.finish(started)
}

/// Everything a step kind needs, resolved once.
pub(crate) struct StepContext<'a> {
    pub run: &'a RunContext<'a>,
    pub nodes: &'a ClusterNodes<'a>,
    pub step: &'a Step,
    pub targets: &'a [String],
    /// The host folder of this step's logs and generated files.
    pub log_dir: &'a Path,
    /// Unique per step run: names the step's files in `/run/rehearse` on nodes.
    pub token: String,
}

fn node_names(cluster: &ClusterState) -> String {
    cluster
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
