//! A whole scenario run as a background job.

use std::sync::Arc;

use rehearse_scenario::{Event, Keep, RunOptions};

use crate::types::*;
use crate::ProgressSink;
use crate::{Api, ApiError};

impl Api {
    pub(crate) fn run_scenario(
        self: &Arc<Self>,
        req: RunScenarioRequest,
        progress: Option<ProgressSink>,
    ) -> Result<JobStarted, ApiError> {
        let scenario = crate::inputs::scenario_of(&req)?;
        let keep = match req.keep.as_deref() {
            None => Keep::Never,
            Some(keep) => keep.parse().map_err(|e| ApiError::invalid("keep", e))?,
        };
        let cancel = rehearse_scenario::Cancel::new();
        let opts = RunOptions {
            reboot: req.reboot,
            idempotence: req.idempotence.unwrap_or(true),
            keep,
            cancel: Some(cancel.clone()),
            store: self.recording_store(),
            ..RunOptions::default()
        };
        Ok(self.spawn_job(
            "scenario",
            Some(cancel),
            progress,
            move |api, job, notes| {
                let note = |line: String| notes.note(line);
                let events = |e: Event<'_>| match e {
                    Event::Phase(p) => note(format!("{}: {p}", scenario.name)),
                    Event::ClusterReady { cluster, boot_ms } => {
                        note(format!("cluster {cluster} ready in {boot_ms} ms"))
                    }
                    Event::StepDone(step) => note(format!(
                        "{} step {} ({} ms)",
                        if step.ok { "✔" } else { "✘" },
                        step.name,
                        step.duration_ms
                    )),
                    Event::ChecksDone { phase, results } => {
                        for r in results {
                            note(format!("{phase}: {}", rehearse_checks::render_line(r)));
                        }
                    }
                };
                let report = rehearse_scenario::run(&api.engine, &scenario, &opts, &events);
                let outcome = serde_json::to_value(report.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string));
                note(format!("finished: {}", outcome.clone().unwrap_or_default()));
                job.finish(|end| {
                    end.exit_code = Some(report.exit_code());
                    end.run_id = Some(report.run_id.clone());
                    end.outcome = outcome;
                    end.report = serde_json::to_value(&report).ok();
                });
            },
        ))
    }
}
