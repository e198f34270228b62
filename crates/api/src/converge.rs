//! `converge`: the convergence loop of [`rehearse_converge`] as a background
//! job, with the loop's progress lines as job events.

use std::sync::Arc;

use rehearse_converge::{ConvergeError, ConvergeReport, Verdict};
use rehearse_llm::{LlmError, Provider, Settings};
use rehearse_scenario::name_of;

use crate::error::ErrorCode;
use crate::jobs::Notes;
use crate::types::*;
use crate::{Api, ApiError, ProgressSink};

/// What the loop can still do without a model, for the model that called us.
const RULES_ONLY: &str = "without a model, converge can only run the task's starting `code` and patch it with the rules doctor's known fixes (install the package of a missing command, create a missing directory, start a service that is not running, wait for the apt lock, create a missing user) — bash only";

/// The model a request's `provider`, `model` and `base_url` select over the
/// server's environment, or `None` for rules-only mode.
pub(crate) fn connect(
    provider: &Option<String>,
    model: &Option<String>,
    base_url: &Option<String>,
) -> Result<Option<Box<dyn Provider>>, ApiError> {
    let mut settings = Settings::from_env();
    settings.provider = provider.clone().or(settings.provider);
    settings.model = model.clone().or(settings.model);
    settings.base_url = base_url.clone().or(settings.base_url);
    rehearse_llm::connect(&settings).map_err(|e| match e {
        LlmError::Config(_) => ApiError::invalid("provider", e.to_string()),
        _ => ApiError::new(
            ErrorCode::LlmUnavailable,
            format!("{e}; or pass provider/base_url/model in the call; {RULES_ONLY}"),
            false,
        ),
    })
}

fn converge_error(e: ConvergeError) -> ApiError {
    match &e {
        ConvergeError::NothingToRun => ApiError::new(
            ErrorCode::LlmUnavailable,
            format!("{e}; {RULES_ONLY}"),
            false,
        ),
        ConvergeError::Llm { source, .. } => {
            let retryable = matches!(
                source,
                LlmError::Unavailable { .. }
                    | LlmError::Timeout { .. }
                    | LlmError::Unreachable { .. }
            );
            ApiError::new(
                ErrorCode::LlmFailed,
                format!(
                    "{e}; {}",
                    if retryable {
                        "the model's server may be busy or down: call converge again later"
                    } else {
                        "check the provider, model and base_url (or the server's REHEARSE_LLM_* settings)"
                    }
                ),
                retryable,
            )
        }
        // The message names the secret and its source, never the value.
        ConvergeError::Secret(_) => ApiError::invalid("secrets", e.to_string()),
        ConvergeError::Io { .. } => ApiError::new(
            ErrorCode::Io,
            format!("{e}; this is a problem of the host running rehearse"),
            true,
        ),
    }
}

fn tokens(u: rehearse_llm::Usage) -> TokenUse {
    TokenUse {
        input: u.input_tokens,
        output: u.output_tokens,
        total: u.total(),
    }
}

/// The summary of a converge run that job_status shows.
fn result_of(report: &ConvergeReport) -> ConvergeResult {
    ConvergeResult {
        converged: report.verdict == Verdict::Converged,
        verdict: name_of(report.verdict),
        summary: report.summary.clone(),
        script: report.script.clone(),
        run_id: report.run_id.clone(),
        report_path: report.report_path.display().to_string(),
        model: report.model.clone(),
        rules_only: report.rules_only,
        iterations: report
            .iterations
            .iter()
            .map(|i| {
                let mut usage = rehearse_llm::Usage::default();
                for call in &i.llm_calls {
                    usage.add(call.usage);
                }
                ConvergeIteration {
                    number: i.number,
                    origin: i.origin.to_string(),
                    outcome: name_of(i.run.outcome),
                    path: i.path.map(name_of),
                    reason: i.reason.clone(),
                    commands: i.commands.len(),
                    tokens: tokens(usage),
                }
            })
            .collect(),
        review: report
            .review
            .iter()
            .map(|f| ReviewFinding {
                rule: f.rule.to_string(),
                text: f.text.clone(),
                reason: f.reason.to_string(),
            })
            .collect(),
        tokens: tokens(report.usage),
        cost_usd: report.cost_usd,
        wall_ms: report.wall_ms,
    }
}

/// A `converge` request read and checked: the task and the model.
pub(crate) struct ConvergeRun {
    task: rehearse_spec::task::Task,
    model: Option<Box<dyn Provider>>,
    /// Said before the loop starts (which platform of several, no model).
    notices: Vec<String>,
}

impl Api {
    /// Reads the task and connects the model; everything the loop would
    /// refuse is refused here, before any cluster starts.
    pub(crate) fn prepare_converge(&self, req: ConvergeRequest) -> Result<ConvergeRun, ApiError> {
        let mut task = crate::inputs::task_of(&req)?;
        let mut notices = Vec::new();
        // A task names several platforms for `eval`; one converge run
        // reaches the goal on the first of them.
        if let Some(first) = task.platforms.first().cloned() {
            if task.platforms.len() > 1 {
                notices.push(format!(
                    "the task names {} platforms: converging on the first, {first} (an evaluation runs them all)",
                    task.platforms.len()
                ));
            }
            task = task.on_platform(&first);
        }
        let model = connect(&req.provider, &req.model, &req.base_url)?;
        if model.is_none() {
            if task.code.is_none() {
                return Err(ApiError::new(
                    ErrorCode::LlmUnavailable,
                    format!("no LLM is configured on the server and the task has no starting `code`, so there is nothing to run; pass provider/base_url/model in the call (or set ANTHROPIC_API_KEY, OPENAI_API_KEY or REHEARSE_LLM_BASE_URL for the server), or add starting code to the task: {RULES_ONLY}"),
                    false,
                ));
            }
            notices.push("no LLM is configured (set ANTHROPIC_API_KEY, OPENAI_API_KEY or REHEARSE_LLM_BASE_URL): running the task's code with the rules doctor only".to_owned());
        }
        Ok(ConvergeRun {
            task,
            model,
            notices,
        })
    }

    /// Runs the loop to its end, reporting progress to `notes`; `cancel`
    /// stops it (its clusters destroyed, verdict stopped).
    pub(crate) fn converge(
        &self,
        run: ConvergeRun,
        notes: &Notes,
        cancel: Option<rehearse_scenario::Cancel>,
    ) -> Result<ConvergeReport, ApiError> {
        for notice in &run.notices {
            notes.note(notice.clone());
        }
        let note = |line: &str| notes.note(line);
        rehearse_converge::converge_with(
            &self.engine,
            &run.task,
            run.model.as_deref(),
            &note,
            self.recording_store(),
            cancel,
        )
        .map_err(converge_error)
    }

    /// A prepared converge run as a background job; job_kill stops it.
    pub(crate) fn start_converge(
        self: &Arc<Self>,
        run: ConvergeRun,
        progress: Option<ProgressSink>,
    ) -> JobStarted {
        let cancel = rehearse_scenario::Cancel::new();
        let stop = cancel.clone();
        self.spawn_job(
            "converge",
            Some(stop),
            progress,
            move |api, job, notes| match api.converge(run, notes, Some(cancel)) {
                Ok(report) => {
                    notes.note(format!("finished: {}", report.summary));
                    let result = result_of(&report);
                    job.finish(|end| {
                        end.exit_code = Some(if result.converged { 0 } else { 1 });
                        end.run_id = Some(result.run_id.clone());
                        end.outcome = Some(result.verdict.clone());
                        end.converge = Some(result);
                    });
                }
                Err(error) => {
                    notes.note(format!("failed: {}", error.message));
                    job.finish(|end| {
                        end.state = Some(JobState::Failed);
                        end.error = Some(error);
                    });
                }
            },
        )
    }
}
