//! Writes a scenario run to the run store as it goes: the run when it starts,
//! the cluster once booted, each step as it ends, the check results of each
//! phase, the outcome and the whole report at the end. The store is a record,
//! not a dependency: a failure to write is logged and the run carries on.

use std::path::PathBuf;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use rehearse_checks::CheckResult;
use rehearse_runner::{AnsibleReport, HangState, NodeOutput, StepReport};
use rehearse_sandbox::ClusterState;
use rehearse_store::{CheckRow, ClusterRow, RunFinish, RunStart, RunStore, StepRow};

use crate::{Outcome, RunReport};

/// A converge run (or any other) that a scenario run is part of.
#[derive(Debug, Clone)]
pub struct ParentRun {
    pub run_id: String,
    /// The scenario run's part in it: `iteration 2`, `proof`.
    pub role: String,
}

/// Rewrites text before it leaves the run (secrets out).
#[derive(Clone)]
pub struct Redact(pub Arc<dyn Fn(&str) -> String + Send + Sync>);

impl std::fmt::Debug for Redact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Redact(..)")
    }
}

/// What the run store keeps of a step beyond its row (its `detail`): each
/// node's output, Ansible's report, and what hung nodes were doing.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StepDetail {
    pub nodes: Vec<NodeOutput>,
    pub ansible: Option<AnsibleReport>,
    pub hang_state: Vec<HangState>,
    pub log_dir: Option<PathBuf>,
}

pub(crate) struct Recorder {
    store: Option<Arc<RunStore>>,
    run_id: String,
    redact: Option<Redact>,
}

/// The name serde gives a unit variant, e.g. `after_reboot`.
pub fn name_of(value: impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// The store's row for a cluster that finished booting.
pub fn cluster_row(cluster: &ClusterState, run_id: Option<&str>, boot_ms: u64) -> ClusterRow {
    ClusterRow {
        id: cluster.id.clone(),
        run_id: run_id.map(str::to_owned),
        source: cluster.source.clone(),
        backend: cluster
            .nodes
            .first()
            .map(|n| n.backend.clone())
            .unwrap_or_default(),
        nodes: cluster.nodes.len() as u32,
        addresses: cluster
            .nodes
            .iter()
            .map(|n| match n.ip() {
                Some(ip) => format!("{}={ip}", n.name),
                None => n.name.clone(),
            })
            .collect(),
        created_at_ms: (cluster.created_at as i64) * 1000,
        boot_ms: cluster.boot_ms.unwrap_or(boot_ms),
        destroyed_at_ms: None,
        destroyed_reason: None,
        host: None,
    }
}

/// Records a cluster in `store`, for `up` outside a run.
pub fn record_cluster(store: &RunStore, cluster: &ClusterState) {
    if let Err(e) = store.record_cluster(&cluster_row(cluster, None, 0)) {
        tracing::warn!(cluster = %cluster.id, error = %e, "recording the cluster in the run store");
    }
}

/// Records in `store` that a cluster is gone.
pub fn record_cluster_destroyed(store: &RunStore, cluster_id: &str) {
    if let Err(e) = store.cluster_destroyed(cluster_id) {
        tracing::warn!(cluster = %cluster_id, error = %e, "recording the cluster's end in the run store");
    }
}

/// Records in `store` that `gc` or a reaper removed a cluster, and why.
pub fn record_cluster_removed(store: &RunStore, cluster_id: &str, reason: &str) {
    if let Err(e) = store.cluster_removed(cluster_id, reason) {
        tracing::warn!(cluster = %cluster_id, error = %e, "recording the cluster's end in the run store");
    }
}

impl Recorder {
    /// Records the run's start in `store`; without a store nothing of the
    /// run is recorded.
    pub fn start(
        store: Option<Arc<RunStore>>,
        report: &RunReport,
        parent: Option<&ParentRun>,
        redact: Option<Redact>,
    ) -> Recorder {
        let recorder = Recorder {
            store,
            run_id: report.run_id.clone(),
            redact,
        };
        let start = RunStart {
            id: report.run_id.clone(),
            kind: "scenario".into(),
            name: report.scenario.clone(),
            file: report.file.display().to_string(),
            parent_id: parent.map(|p| p.run_id.clone()),
            role: parent.map(|p| p.role.clone()),
        };
        recorder.write("recording the run's start", |store, _| {
            store.start_run(&start)
        });
        recorder
    }

    fn clean(&self, text: &str) -> String {
        match &self.redact {
            Some(r) => (r.0)(text),
            None => text.to_owned(),
        }
    }

    fn write(
        &self,
        what: &str,
        f: impl FnOnce(&RunStore, &str) -> Result<(), rehearse_store::StoreError>,
    ) {
        let Some(store) = self.store.as_ref() else {
            return;
        };
        if let Err(e) = f(store, &self.run_id) {
            tracing::warn!(run = %self.run_id, error = %e, "{what} in the run store");
        }
    }

    pub fn cluster(&self, cluster: &ClusterState, boot_ms: u64) {
        let row = cluster_row(cluster, Some(&self.run_id), boot_ms);
        self.write("recording the cluster", |store, id| {
            store.record_cluster(&row)?;
            store.set_run_cluster(id, &cluster.id)
        });
    }

    pub fn step(&self, step: &StepReport) {
        let detail = StepDetail {
            nodes: step.nodes.clone(),
            ansible: step.ansible.clone(),
            hang_state: step.hang_state.clone(),
            log_dir: step.log_dir.clone(),
        };
        let mut nodes: Vec<String> = step.nodes.iter().map(|n| n.node.clone()).collect();
        for task in step.ansible.iter().flat_map(|a| &a.tasks) {
            if !nodes.contains(&task.host) {
                nodes.push(task.host.clone());
            }
        }
        let row = StepRow {
            pass: name_of(step.pass),
            name: step.name.clone(),
            kind: step.kind.to_owned(),
            ok: step.ok,
            nodes,
            error: step.error.as_deref().map(|e| self.clean(e)),
            duration_ms: step.duration_ms,
            detail: self.clean(&serde_json::to_string(&detail).unwrap_or_default()),
        };
        self.write("recording a step", |store, id| store.record_step(id, &row));
    }

    pub fn checks(&self, phase: &str, results: &[CheckResult]) {
        let rows: Vec<CheckRow> = results
            .iter()
            .map(|c| CheckRow {
                phase: phase.to_owned(),
                node: c.node.clone(),
                name: c.name.clone(),
                kind: c.kind.clone(),
                subject: c.subject.clone(),
                status: name_of(c.status),
                expected: self.clean(&c.expected.to_string()),
                actual: self.clean(&c.actual.to_string()),
                message: self.clean(&c.message),
                attempts: c.attempts,
                duration_ms: c.duration_ms,
            })
            .collect();
        self.write("recording check results", |store, id| {
            store.record_checks(id, &rows)
        });
    }

    pub fn destroyed(&self, cluster_id: &str) {
        self.write("recording the cluster's end", |store, _| {
            store.cluster_destroyed(cluster_id)
        });
    }

    pub fn finish(&self, report: &RunReport) {
        let finish = RunFinish {
            outcome: name_of(report.outcome),
            summary: self.clean(&summary(report)),
            report: serde_json::to_string(report).ok().map(|r| self.clean(&r)),
            report_path: Some(report.work_dir.join("report.json").display().to_string()),
            ..RunFinish::default()
        };
        self.write("recording the run's outcome", |store, id| {
            store.finish_run(id, &finish)
        });
    }
}

/// One sentence: how the run ended, and the first thing that failed.
pub fn summary(report: &RunReport) -> String {
    let checks = report.all_checks();
    let passed = checks.iter().filter(|c| c.passed()).count();
    let counts = format!(
        "{} step(s), {passed}/{} check(s) passed",
        report.steps.len(),
        checks.len()
    );
    match report.outcome {
        Outcome::Passed => format!("passed: {counts}"),
        Outcome::Error => format!(
            "error: {}",
            report
                .error
                .as_deref()
                .unwrap_or("the run could not be carried out")
        ),
        Outcome::Failed => {
            if let Some(step) = report.steps.iter().find(|s| !s.ok) {
                format!(
                    "failed at step \"{}\": {} ({counts})",
                    step.name,
                    step.error.as_deref().unwrap_or("it failed")
                )
            } else if let Some(check) = checks
                .iter()
                .find(|c| !c.passed() && c.status == rehearse_checks::Status::Failed)
            {
                format!(
                    "failed: {} on {}: {} ({counts})",
                    check.name, check.node, check.message
                )
            } else if let Some(i) = report.idempotence.as_ref().filter(|i| !i.passed) {
                format!(
                    "failed idempotence: {} ({counts})",
                    crate::report::idempotence_headline(i)
                )
            } else {
                format!("failed ({counts})")
            }
        }
    }
}
