//! `evaluate`: how well a model converges a set of tasks — every task
//! converged on each of its platforms, several attempts each, with the pass
//! rate, iterations, recovery paths, time, tokens and cost.

use std::path::PathBuf;
use std::sync::Arc;

use rehearse_converge::eval::{self, EvalError, EvalOptions};
/// An evaluation's report, and its renderings for a terminal and for JUnit.
pub use rehearse_converge::eval::{junit, render, EvalReport};
use rehearse_llm::Provider;
use rehearse_spec::task::Task;
use schemars::JsonSchema;
use serde::Deserialize;

use crate::jobs::Notes;
use crate::types::JobStarted;
use crate::{Api, ApiError, ProgressSink};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EvaluateRequest {
    /// Task files, task folders (holding task.yaml), or folders of task
    /// folders, on the server's host.
    pub paths: Vec<String>,
    /// Converge runs per task and platform (1 to 100). Default 1.
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Attempts running at once (1 to 64). Default 1.
    #[serde(default)]
    pub jobs: Option<u64>,
    /// Run every task on these images instead of the platforms each task
    /// names (nodes that name their own image keep it).
    #[serde(default)]
    pub platforms: Vec<String>,
    /// The share of attempts (0 to 1) that must converge for the evaluation
    /// to pass. Default 1: every attempt.
    #[serde(default)]
    pub min_pass_rate: Option<f64>,
    /// The model, as for converge. Default: the server's.
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub base_url: Option<String>,
}

/// An `evaluate` request read and checked: the tasks, the model, the options.
pub(crate) struct EvalRun {
    tasks: Vec<Task>,
    model: Option<Box<dyn Provider>>,
    options: EvalOptions,
    notices: Vec<String>,
}

fn eval_error(e: EvalError) -> ApiError {
    let field = match e {
        EvalError::Platform(_) => "platforms",
        _ => "paths",
    };
    ApiError::invalid(field, e.to_string())
}

impl Api {
    /// Reads every task and checks every platform: an invalid task file or a
    /// platform no image answers to is refused here, before any attempt.
    pub(crate) fn prepare_eval(&self, req: EvaluateRequest) -> Result<EvalRun, ApiError> {
        if req.paths.is_empty() {
            return Err(ApiError::invalid(
                "paths",
                "name at least one task file or folder of tasks",
            ));
        }
        let attempts = req.attempts.unwrap_or(1);
        if !(1..=100).contains(&attempts) {
            return Err(ApiError::invalid("attempts", "attempts is 1 to 100"));
        }
        let jobs = req.jobs.unwrap_or(1);
        if !(1..=64).contains(&jobs) {
            return Err(ApiError::invalid("jobs", "jobs is 1 to 64"));
        }
        let min_pass_rate = req.min_pass_rate.unwrap_or(1.0);
        if !(0.0..=1.0).contains(&min_pass_rate) {
            return Err(ApiError::invalid(
                "min_pass_rate",
                "min_pass_rate is a share from 0 to 1 (0.8: four attempts in five)",
            ));
        }
        let paths: Vec<PathBuf> = req.paths.iter().map(PathBuf::from).collect();
        let tasks = eval::load_tasks(&paths).map_err(eval_error)?;
        // Every platform is an image this host has or can build, or nothing
        // starts: an unknown name would fail each of its attempts.
        let asked = req.platforms.iter().map(|p| (p, "asked".to_owned()));
        let listed = tasks
            .iter()
            .filter(|_| req.platforms.is_empty())
            .flat_map(|t| {
                t.platforms
                    .iter()
                    .map(move |p| (p, format!("listed by {} (platforms)", t.file.display())))
            });
        for (platform, from) in asked.chain(listed) {
            if let Err(e) = self.engine.images().spec_for(platform) {
                return Err(ApiError::invalid(
                    "platforms",
                    format!("platform \"{platform}\", {from}: {e}"),
                ));
            }
        }
        let model = crate::converge::connect(&req.provider, &req.model, &req.base_url)?;
        let mut notices = Vec::new();
        if model.is_none() {
            notices.push("no LLM is configured (set ANTHROPIC_API_KEY, OPENAI_API_KEY or REHEARSE_LLM_BASE_URL): each task runs its starting code with the rules doctor only".to_owned());
        }
        let store = self.recording_store();
        if store.is_none() {
            notices.push("the evaluation will not be in the run store".to_owned());
        }
        Ok(EvalRun {
            tasks,
            model,
            options: EvalOptions {
                attempts,
                jobs: jobs as usize,
                platforms: (!req.platforms.is_empty()).then_some(req.platforms),
                min_pass_rate,
                source: req.paths.join(" "),
                store,
            },
            notices,
        })
    }

    /// Runs every attempt to its end; progress to `notes`.
    pub(crate) fn evaluate(&self, run: EvalRun, notes: &Notes) -> Result<EvalReport, ApiError> {
        for notice in &run.notices {
            notes.note(notice.clone());
        }
        let progress = |label: &str, message: &str| notes.note(format!("{label}: {message}"));
        eval::evaluate(
            &self.engine,
            &run.tasks,
            run.model.as_deref(),
            &run.options,
            &progress,
        )
        .map_err(eval_error)
    }

    /// A prepared evaluation as a background job.
    pub(crate) fn start_eval(
        self: &Arc<Self>,
        run: EvalRun,
        progress: Option<ProgressSink>,
    ) -> JobStarted {
        self.spawn_job("evaluate", None, progress, move |api, job, notes| match api
            .evaluate(run, notes)
        {
            Ok(report) => {
                let outcome = if report.passed { "passed" } else { "failed" };
                notes.note(format!("finished: {outcome}"));
                job.finish(|end| {
                    end.exit_code = Some(if report.passed { 0 } else { 1 });
                    end.run_id = Some(report.run_id.clone());
                    end.outcome = Some(outcome.to_owned());
                    end.report = serde_json::to_value(&report).ok();
                });
            }
            Err(e) => {
                notes.note(format!("failed: {}", e.message));
                job.finish(|end| {
                    end.state = Some(crate::types::JobState::Failed);
                    end.exit_code = Some(2);
                    end.error = Some(e);
                });
            }
        })
    }
}
