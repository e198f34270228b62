//! `run_scenario`: a whole scenario run, or one per platform side by side (a
//! matrix), on fresh clusters.

use std::sync::Arc;

use rehearse_scenario::{Cancel, Event, Keep, MatrixReport, RunOptions, RunReport};
use rehearse_spec::scenario::Scenario;
use serde::Serialize;

use crate::jobs::Notes;
use crate::types::*;
use crate::{Api, ApiError};

/// What a scenario run answers: its report, or with platforms one report per
/// platform. Serialized, the report itself.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ScenarioOutcome {
    Run(Box<RunReport>),
    Matrix(MatrixReport),
}

impl ScenarioOutcome {
    /// 0 passed, 1 failed, 2 could not be carried out.
    pub fn exit_code(&self) -> i32 {
        match self {
            ScenarioOutcome::Run(r) => r.exit_code(),
            ScenarioOutcome::Matrix(m) => m.exit_code(),
        }
    }

    pub fn run_id(&self) -> &str {
        match self {
            ScenarioOutcome::Run(r) => &r.run_id,
            ScenarioOutcome::Matrix(m) => &m.run_id,
        }
    }

    /// passed, failed or error.
    pub fn outcome(&self) -> rehearse_scenario::Outcome {
        match self {
            ScenarioOutcome::Run(r) => r.outcome,
            ScenarioOutcome::Matrix(m) => m.outcome,
        }
    }
}

/// A `run_scenario` request read and checked: what runs, how.
pub(crate) struct ScenarioRun {
    scenario: Scenario,
    platforms: Vec<String>,
    jobs: Option<usize>,
    opts: RunOptions,
}

impl Api {
    /// Every platform is an image this host has or can build, or nothing
    /// starts: an unknown name would fail each of its runs.
    pub(crate) fn known_platforms(&self, platforms: &[String]) -> Result<(), ApiError> {
        for platform in platforms {
            self.engine
                .images()
                .spec_for(platform)
                .map_err(|e| ApiError::invalid("platforms", e.to_string()))?;
        }
        Ok(())
    }

    /// Reads the scenario and the options; everything a run would refuse is
    /// refused here, before any cluster starts.
    pub(crate) fn prepare_scenario(
        &self,
        req: RunScenarioRequest,
    ) -> Result<ScenarioRun, ApiError> {
        let mut scenario = crate::inputs::scenario_of(&req)?;
        if let Some(backend) = &req.backend {
            let backend = backend
                .parse()
                .map_err(|e| ApiError::invalid("backend", format!("{e}")))?;
            scenario.topology.set_default_backend(backend);
        }
        let keep = match req.keep.as_deref() {
            None => Keep::Never,
            Some(keep) => keep.parse().map_err(|e| ApiError::invalid("keep", e))?,
        };
        let ttl = match req.ttl.as_deref() {
            None => RunOptions::default().ttl,
            Some(ttl) => crate::duration("ttl", ttl)?,
        };
        let platforms = if req.platforms.is_empty() {
            scenario.platforms.clone()
        } else {
            Scenario::validate_platforms(&req.platforms)
                .map_err(|e| ApiError::spec("platforms", &e))?;
            req.platforms
        };
        self.known_platforms(&platforms)?;
        let jobs = match req.jobs {
            Some(0) => return Err(ApiError::invalid("jobs", "jobs is at least 1")),
            jobs => jobs.map(|j| j as usize),
        };
        Ok(ScenarioRun {
            scenario,
            platforms,
            jobs,
            opts: RunOptions {
                reboot: req.reboot,
                idempotence: req.idempotence.unwrap_or(true),
                keep,
                ttl,
                store: self.recording_store(),
                ..RunOptions::default()
            },
        })
    }

    /// Runs a prepared scenario to its end, reporting progress to `notes`;
    /// `cancel` stops it between phases.
    pub(crate) fn run_scenario(
        &self,
        run: ScenarioRun,
        notes: &Notes,
        cancel: Option<Cancel>,
    ) -> ScenarioOutcome {
        let ScenarioRun {
            scenario,
            platforms,
            jobs,
            mut opts,
        } = run;
        opts.cancel = cancel;
        if !platforms.is_empty() {
            // Each platform's lines, named by it; check results are left to
            // its report (many platforms' checks side by side are noise).
            let events = |platform: &str, e: Event<'_>| {
                if matches!(e, Event::ChecksDone { .. }) {
                    return;
                }
                for (line, transient) in event_lines(&e) {
                    notes.send(format!("{platform}: {line}"), transient);
                }
            };
            return ScenarioOutcome::Matrix(rehearse_scenario::run_matrix(
                &self.engine,
                &scenario,
                &platforms,
                jobs,
                &opts,
                &events,
            ));
        }
        let events = |e: Event<'_>| {
            for (line, transient) in event_lines(&e) {
                if transient {
                    notes.phase(format!("{}: {line}", scenario.name));
                } else {
                    notes.note(line);
                }
            }
        };
        ScenarioOutcome::Run(Box::new(rehearse_scenario::run(
            &self.engine,
            &scenario,
            &opts,
            &events,
        )))
    }

    /// A prepared scenario run as a background job; job_kill stops it.
    pub(crate) fn start_scenario(
        self: &Arc<Self>,
        run: ScenarioRun,
        progress: Option<crate::ProgressSink>,
    ) -> JobStarted {
        let cancel = Cancel::new();
        let stop = cancel.clone();
        self.spawn_job("scenario", Some(stop), progress, move |api, job, notes| {
            let outcome = api.run_scenario(run, notes, Some(cancel));
            let word = rehearse_scenario::name_of(outcome.outcome());
            notes.note(format!("finished: {word}"));
            job.finish(|end| {
                end.exit_code = Some(outcome.exit_code());
                end.run_id = Some(outcome.run_id().to_string());
                end.outcome = Some(word);
                end.report = serde_json::to_value(&outcome).ok();
            });
        })
    }
}

/// What an event of a scenario run says, in the words every front end shows
/// (the terminal, job_status, a fleet job's progress): each line, and whether
/// it is a phase the next report replaces.
pub fn event_lines(e: &Event<'_>) -> Vec<(String, bool)> {
    match e {
        Event::Phase(p) => vec![(p.to_string(), true)],
        Event::ClusterReady { cluster, boot_ms } => {
            vec![(format!("cluster {cluster} ready in {boot_ms} ms"), false)]
        }
        Event::StepDone(step) => vec![(
            format!(
                "{} {} ({} run, {} ms)",
                if step.ok { "✔" } else { "✘" },
                step.name,
                step.pass.as_str(),
                step.duration_ms
            ),
            false,
        )],
        Event::ChecksDone { phase, results } => results
            .iter()
            .map(|r| {
                (
                    format!("  {phase}: {}", rehearse_checks::render_line(r)),
                    false,
                )
            })
            .collect(),
    }
}
