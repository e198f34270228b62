//! Writes a converge run to the run store as it goes, from the same data the
//! report holds (already redacted): the run when it starts, each iteration
//! when it ends, the outcome at the end. The store is a record, not a
//! dependency: a failure to write is logged and the run carries on.

use std::sync::Arc;

use rehearse_store::{
    CheckRow, CommandRow, ConvergeEnd, ConvergeStart, IterationRecord, LlmCallRecord, RunFinish,
    RunStart, RunStore,
};

use rehearse_scenario::name_of;

use crate::{ConvergeReport, Iteration};

pub(crate) struct Recorder {
    store: Option<Arc<RunStore>>,
    run_id: String,
}

impl Recorder {
    /// Records the run's start in `store`; without a store nothing of the
    /// run is recorded.
    pub fn start(store: Option<Arc<RunStore>>, run: RunStart, converge: ConvergeStart) -> Recorder {
        let run_id = run.id.clone();
        let mut recorder = Recorder { store, run_id };
        recorder.write("recording the run's start", |store, _| {
            store.start_converge(&run, &converge)
        });
        recorder
    }

    /// The store the run records in, for its scenario runs to record in too.
    pub fn store(&self) -> Option<Arc<RunStore>> {
        self.store.clone()
    }

    fn write(
        &mut self,
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

    pub fn iteration(&mut self, iteration: &Iteration) {
        let record = iteration_record(iteration);
        self.write("recording an iteration", |store, id| {
            store.record_iteration(id, &record)
        });
    }

    pub fn finish(&mut self, report: &ConvergeReport) {
        let finish = RunFinish {
            outcome: name_of(report.verdict),
            summary: report.summary.clone(),
            report: serde_json::to_string(report).ok(),
            report_path: Some(report.report_path.display().to_string()),
            input_tokens: report.usage.input_tokens,
            output_tokens: report.usage.output_tokens,
            cost_usd: report.cost_usd,
        };
        let end = ConvergeEnd {
            converged: report.verdict == crate::Verdict::Converged,
            script: report.script.clone(),
            distilled: report.distilled.clone(),
            proof_outcome: report.proof.as_ref().map(|p| name_of(p.outcome)),
        };
        self.write("recording the run's outcome", |store, id| {
            store.finish_converge(id, &finish, &end)
        });
    }

    /// The run stopped on an error before it had a report.
    pub fn failed(&mut self, error: &str, usage: rehearse_llm::Usage, cost_usd: Option<f64>) {
        let finish = RunFinish {
            outcome: "error".into(),
            summary: error.to_owned(),
            input_tokens: usage.input_tokens,
            output_tokens: usage.output_tokens,
            cost_usd,
            ..RunFinish::default()
        };
        self.write("recording the run's error", |store, id| {
            store.finish_converge(id, &finish, &ConvergeEnd::default())
        });
    }
}

fn iteration_record(it: &Iteration) -> IterationRecord {
    IterationRecord {
        number: it.number,
        origin: it.origin.to_string(),
        code: it.code.clone(),
        outcome: name_of(it.run.outcome),
        scenario_run_id: it.run.run_id.clone(),
        failure: it.failure.as_ref().map(|f| f.describe()),
        recovery_path: it.path.map(name_of),
        reason: it.reason.clone(),
        fix_rule: it.fix.as_ref().map(|f| f.rule.to_owned()),
        duration_ms: it.duration_ms,
        llm_calls: it
            .llm_calls
            .iter()
            .map(|call| LlmCallRecord {
                purpose: call.purpose.to_owned(),
                prompt: serde_json::to_string(&call.request).unwrap_or_default(),
                response: call.response.clone(),
                input_tokens: call.usage.input_tokens,
                output_tokens: call.usage.output_tokens,
                latency_ms: call.latency_ms,
                cost_usd: call.cost_usd,
            })
            .collect(),
        commands: it
            .commands
            .iter()
            .map(|c| CommandRow {
                node: c.node.clone(),
                command: c.command.clone(),
                why: c.why.clone(),
                exit_code: c.exit_code,
                output: c.output.clone(),
                duration_ms: c.duration_ms,
                refused: c.refused.clone(),
            })
            .collect(),
        checks: it
            .run
            .all_checks()
            .into_iter()
            .map(|check| CheckRow {
                phase: "checks".into(),
                node: check.node.clone(),
                name: check.name.clone(),
                kind: check.kind.clone(),
                subject: check.subject.clone(),
                status: name_of(check.status),
                expected: check.expected.to_string(),
                actual: check.actual.to_string(),
                message: check.message.clone(),
                attempts: check.attempts,
                duration_ms: check.duration_ms,
            })
            .collect(),
    }
}
