//! What a convergence run reports: how it ended, each iteration with the
//! code it ran and where that code came from, and the model calls made.

use std::path::PathBuf;

use rehearse_llm::{Message, Usage};
use rehearse_scenario::RunReport;
use rehearse_spec::task::Language;
use serde::Serialize;

use crate::failure::{Failure, Path};
use crate::session::CommandRecord;
use crate::{doctor, platform, policy, redact};

/// Where the code an iteration ran came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The task's starting code, run as given (rules-only mode).
    Task,
    /// The model's first answer.
    Model,
    /// The rules doctor's fix of the previous iteration's code.
    Rules,
    /// The model's rewrite after a failure.
    ModelRetry,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Task => "task",
            Origin::Model => "model",
            Origin::Rules => "rules",
            Origin::ModelRetry => "model-retry",
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// A script passed every check on a fresh cluster in one pass.
    Converged,
    /// The iteration, wall-time or token budget ran out first.
    BudgetExhausted,
    /// Without a model, the doctor had no rule for the failure.
    NoRuleApplies,
    /// Stopped on request (an MCP client's job_kill) before it converged.
    Stopped,
    /// The platform under the code kept failing (a node that did not boot,
    /// the package cache down, the host's disk full): the code was not judged.
    PlatformError,
    /// The run could not go on: the model could not be reached, or kept
    /// answering unusably after the corrective re-asks.
    Error,
}

#[derive(Clone, Debug, Serialize)]
pub struct LlmCall {
    pub purpose: &'static str,
    pub request: Vec<Message>,
    pub response: String,
    pub usage: Usage,
    pub latency_ms: u64,
    pub cost_usd: Option<f64>,
    /// Set when this call asked again because the previous answer was
    /// unusable: what was wrong with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reask: Option<String>,
}

/// One run of code on a fresh cluster and what followed from it.
#[derive(Clone, Debug, Serialize)]
pub struct Iteration {
    pub number: u32,
    /// Where the code came from.
    pub origin: Origin,
    pub code: String,
    pub run: RunReport,
    pub failure: Option<Failure>,
    pub path: Option<Path>,
    pub reason: Option<String>,
    pub fix: Option<doctor::Fix>,
    pub commands: Vec<CommandRecord>,
    pub llm_calls: Vec<LlmCall>,
    /// From the run on a fresh cluster to the recovery's end.
    pub duration_ms: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct ConvergeReport {
    pub run_id: String,
    pub task: String,
    pub goal: String,
    pub language: Language,
    pub verdict: Verdict,
    /// One sentence: how it ended and why.
    pub summary: String,
    /// `provider/model`, or `None` in rules-only mode.
    pub model: Option<String>,
    pub rules_only: bool,
    pub iterations: Vec<Iteration>,
    /// The distilled script, when troubleshooting led to one.
    pub distilled: Option<String>,
    /// The proof run of the final script on a fresh cluster.
    pub proof: Option<RunReport>,
    /// Runs spoiled by the platform and repeated without spending the
    /// iteration budget.
    pub platform_failures: Vec<platform::PlatformFailure>,
    /// Corrective re-asks after unusable answers, over the run.
    pub reasks: u32,
    /// Calls to the model that led to no run (a first answer that never
    /// became usable code).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub llm_calls: Vec<LlmCall>,
    /// The proven script; set only when converged.
    pub script: Option<String>,
    /// Forceful or destructive patterns in the final script, for review.
    pub review: Vec<policy::Finding>,
    /// The names of the secrets the code could read; their values are
    /// redacted from this report.
    pub secrets: Vec<String>,
    /// Secrets whose values are not redacted, and why.
    pub unredacted: Vec<redact::Unredacted>,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    pub wall_ms: u64,
    pub report_path: PathBuf,
}
