//! The convergence loop: generate code → run it on a fresh cluster → if it
//! fails, recover by the rules doctor, a rewrite (retry) or a live
//! troubleshooting session → distill one clean script → prove it on a fresh
//! cluster in one pass. Only a proven script is reported as converged.
//!
//! Every iteration is recorded in a [`ConvergeReport`]: the code, the run's
//! report, the path chosen and why, the commands run and their output, and the
//! tokens the model used. Without a model the doctor is the whole engine.

pub mod contents;
pub mod doctor;
pub mod eval;
pub mod failure;
pub mod platform;
pub mod policy;
mod prompts;
mod record;
pub mod redact;
mod session;

use std::path::{Path as FsPath, PathBuf};
use std::time::{Duration, Instant};

use serde::Serialize;

use rehearse_llm::{LlmError, Message, Provider, Request, Usage};
use rehearse_sandbox::Engine;
use rehearse_scenario::{Cancel, Keep, Outcome, RunOptions, RunReport};
use rehearse_spec::scenario::{Scenario, Step, StepAction, DEFAULT_STEP_TIMEOUT};
use rehearse_spec::task::{Language, SecretError, Task};

use redact::Redactor;

pub use failure::{Failure, Path};
pub use session::CommandRecord;

/// Commands a troubleshooting session may run.
pub const TROUBLESHOOT_STEPS: u32 = 8;
/// Tokens the model may write per answer.
const MAX_ANSWER_TOKENS: u32 = 4096;
/// Corrective re-asks after an unusable answer, per question.
pub const MAX_REASKS: u32 = 2;

#[derive(Debug, thiserror::Error)]
pub enum ConvergeError {
    /// No model is configured and the task has no starting code.
    #[error("no LLM is configured and the task has no starting `code`, so there is nothing to run: set ANTHROPIC_API_KEY, OPENAI_API_KEY or REHEARSE_LLM_BASE_URL, or give the task starting code for the rules doctor")]
    NothingToRun,
    /// The model could not be asked, or answered unusably.
    #[error("asking the model to {purpose}")]
    Llm {
        purpose: &'static str,
        #[source]
        source: LlmError,
    },
    /// A secret of the task could not be read.
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("writing {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// How a convergence run ended.
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
    /// Where the code came from: `task`, `model`, `rules`, `model-retry`.
    pub origin: &'static str,
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

/// Progress, for a terminal.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

pub struct Converger<'a> {
    engine: &'a Engine,
    task: &'a Task,
    model: Option<&'a dyn Provider>,
    progress: Progress<'a>,
    started: Instant,
    run_id: String,
    work_dir: PathBuf,
    usage: Usage,
    cost: Option<f64>,
    /// The secrets' values, by name, given to the code as its environment.
    secret_env: Vec<(String, String)>,
    /// Everything that leaves the engine passes through it.
    redactor: Redactor,
    /// The run store, written as the run goes.
    recorder: record::Recorder,
    /// Set when someone asks the run to stop; also given to every scenario run.
    cancel: Option<Cancel>,
    /// Corrective re-asks so far.
    reasks: u32,
}

/// Converge runs share the scenario runs' id scheme, marked with a `c`: two
/// runs started in the same second by one process (as a server or a test
/// harness does) must not share an id, a work directory or store rows.
fn new_run_id() -> String {
    format!("c{}", rehearse_scenario::new_run_id())
}

/// Runs the loop for `task`. `model` is `None` for rules-only mode.
pub fn converge(
    engine: &Engine,
    task: &Task,
    model: Option<&dyn Provider>,
    progress: Progress<'_>,
) -> Result<ConvergeReport, ConvergeError> {
    converge_with(engine, task, model, progress, None)
}

/// [`converge`] that another thread can stop through `cancel`: the loop ends
/// at its next step with [`Verdict::Stopped`], and the clusters in use are
/// listed by the token for the stopper to destroy.
pub fn converge_with(
    engine: &Engine,
    task: &Task,
    model: Option<&dyn Provider>,
    progress: Progress<'_>,
    cancel: Option<Cancel>,
) -> Result<ConvergeReport, ConvergeError> {
    converge_in(engine, task, model, progress, cancel, None)
}

/// [`converge_with`] as a part of a larger run (an evaluation's attempt): the
/// run store records it under `parent`, with its role there.
pub fn converge_in(
    engine: &Engine,
    task: &Task,
    model: Option<&dyn Provider>,
    progress: Progress<'_>,
    cancel: Option<Cancel>,
    parent: Option<rehearse_scenario::ParentRun>,
) -> Result<ConvergeReport, ConvergeError> {
    if task.code.is_none() && model.is_none() {
        return Err(ConvergeError::NothingToRun);
    }
    let secret_env = task
        .secrets
        .iter()
        .map(|secret| Ok((secret.name.clone(), secret.value()?)))
        .collect::<Result<Vec<_>, SecretError>>()?;
    let redactor = Redactor::new(secret_env.iter().map(|(n, v)| (n.as_str(), v.as_str())));
    let run_id = new_run_id();
    let recorder = record::Recorder::start(
        engine.history_dir(),
        rehearse_store::RunStart {
            id: run_id.clone(),
            kind: "converge".into(),
            name: task.name.clone(),
            file: task.file.display().to_string(),
            parent_id: parent.as_ref().map(|p| p.run_id.clone()),
            role: parent.map(|p| p.role),
        },
        rehearse_store::ConvergeStart {
            goal: redactor.redact(&task.goal),
            language: task.language.as_str().to_owned(),
            model: model.map(|m| format!("{}/{}", m.name(), m.model())),
        },
    );
    // Every log line of the run, and of its scenario runs, carries its id.
    let span = tracing::info_span!("converge", converge_run_id = %run_id, task = %task.name);
    let _entered = span.enter();
    let work_dir = engine.history_dir().join("converge").join(&run_id);
    std::fs::create_dir_all(&work_dir).map_err(|source| ConvergeError::Io {
        path: work_dir.clone(),
        source,
    })?;
    let mut c = Converger {
        engine,
        task,
        model,
        progress,
        started: Instant::now(),
        run_id,
        work_dir,
        usage: Usage::default(),
        cost: None,
        secret_env,
        redactor,
        recorder,
        cancel,
        reasks: 0,
    };
    for unredacted in c.redactor.unredacted() {
        c.say(&format!(
            "warning: secret {} is not redacted: {}",
            unredacted.name, unredacted.reason
        ));
    }
    let result = c.run();
    if result.is_err() {
        // Nothing was written: no empty folder is left behind.
        let _ = std::fs::remove_dir(&c.work_dir);
    }
    match &result {
        Ok(report) => c.recorder.finish(report),
        Err(e) => c
            .recorder
            .failed(&c.redactor.redact(&e.to_string()), c.usage, c.cost),
    }
    result
}

/// `text` with paths under `state_dir` (host-only: run folders, step files,
/// playbooks) replaced by their file name.
fn visible(text: &str, state_dir: &FsPath) -> String {
    let root = state_dir.display().to_string();
    if root.len() < 2 || !text.contains(&root) {
        return text.to_owned();
    }
    let pattern = format!(r"{}/[^\s'\x22`:,)]*", regex::escape(&root));
    let re = regex::Regex::new(&pattern).expect("an escaped path is a valid pattern");
    re.replace_all(text, |c: &regex::Captures<'_>| {
        let path = FsPath::new(&c[0]);
        path.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
    .into_owned()
}

/// What a recovery by the model came to.
enum Recovered {
    /// New code, to run on a fresh cluster.
    Code(String),
    /// A distilled script, to prove.
    Candidate(String),
}

/// An error and its causes, each said once, in one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

/// Destroys a kept failed cluster however the loop leaves its scope.
struct KeptCluster<'a> {
    engine: &'a Engine,
    id: Option<String>,
}

impl KeptCluster<'_> {
    fn release(&mut self) {
        if let Some(id) = self.id.take() {
            if let Err(e) = self.engine.down(&id) {
                tracing::warn!(cluster = %id, error = %e, "destroying a kept cluster");
            }
        }
    }
}

impl Drop for KeptCluster<'_> {
    fn drop(&mut self) {
        self.release();
    }
}

impl Converger<'_> {
    /// The journal of each unit the failure names, from every node of the kept
    /// cluster that has entries for it (redacted, the tail only).
    fn unit_journals(&self, cluster: &str, run: &RunReport, failure: &Failure) -> String {
        let mut text = String::new();
        for unit in failure.failed_units() {
            for node in &run.nodes {
                let req = rehearse_sandbox::ExecRequest {
                    timeout: Some(std::time::Duration::from_secs(10)),
                    ..rehearse_sandbox::ExecRequest::shell(&format!(
                        "journalctl -u '{unit}.service' -n 25 --no-pager -o cat 2>/dev/null"
                    ))
                };
                let Ok((_, out, _)) = self.engine.exec_capture(cluster, &node.name, &req) else {
                    continue;
                };
                if out.trim().is_empty() || out.contains("-- No entries --") {
                    continue;
                }
                text.push_str(&format!(
                    "--- {unit}.service on {} ---\n{}\n",
                    node.name,
                    failure::tail(&self.redactor.redact(&out), 1500)
                ));
            }
        }
        text
    }

    /// A progress line, redacted.
    fn say(&self, line: &str) {
        let line = self.redactor.redact(line);
        tracing::info!("{line}");
        (self.progress)(&line);
    }

    /// What the model is told about secrets: their names, never their values.
    fn secrets_note(&self) -> String {
        if self.task.secrets.is_empty() {
            return String::new();
        }
        let names = self
            .task
            .secrets
            .iter()
            .map(|s| format!("${}", s.name))
            .collect::<Vec<_>>()
            .join(", ");
        prompts::fill(prompts::SECRETS, &[("names", &names)])
    }

    /// Which package provides a command, for the suite the nodes run (read
    /// from the kept cluster; the default image's when none was kept).
    fn command_index(
        &self,
        cluster: Option<&str>,
        run: &RunReport,
    ) -> std::sync::Arc<contents::CommandIndex> {
        let suite = cluster
            .zip(run.nodes.first())
            .and_then(|(cluster, node)| {
                let req = rehearse_sandbox::ExecRequest {
                    timeout: Some(Duration::from_secs(5)),
                    ..rehearse_sandbox::ExecRequest::shell(
                        ". /etc/os-release && [ \"$ID\" = debian ] && echo \"$VERSION_CODENAME\"",
                    )
                };
                let (outcome, out, _) = self.engine.exec_capture(cluster, &node.name, &req).ok()?;
                let suite = out.trim().to_owned();
                (outcome.exit_code == 0 && !suite.is_empty()).then_some(suite)
            })
            .unwrap_or_else(|| contents::DEFAULT_SUITE.to_owned());
        let index = contents::CommandIndex::load(self.engine.state_dir(), &suite);
        if let contents::Source::Fallback { why } = &index.source {
            self.say(&format!(
                "the doctor uses its small built-in command table: Debian's Contents index is unavailable ({why})"
            ));
        }
        index
    }

    /// The task's checks as its file writes them.
    pub(crate) fn checks_yaml(&self) -> String {
        self.task.checks_yaml.clone()
    }

    /// `text` with the host's paths (the state directory, where runs and
    /// their files live) taken out: the model can read only what is on the
    /// nodes.
    pub(crate) fn visible(&self, text: &str) -> String {
        let text = visible(text, self.engine.history_dir());
        visible(&text, self.engine.state_dir())
    }

    fn fence(&self) -> &'static str {
        match self.task.language {
            Language::Bash => "bash",
            Language::Ansible => "yaml",
        }
    }

    fn stopped(&self) -> bool {
        self.cancel.as_ref().is_some_and(Cancel::is_cancelled)
    }

    /// Why the loop must end now, if it must: stopped, or out of a budget.
    pub(crate) fn must_stop(&self) -> Option<(Verdict, String)> {
        if self.stopped() {
            return Some((Verdict::Stopped, "stopped on request".into()));
        }
        self.out_of_budget()
            .map(|why| (Verdict::BudgetExhausted, why))
    }

    fn out_of_budget(&self) -> Option<String> {
        let b = &self.task.budgets;
        if self.started.elapsed() >= b.max_wall {
            return Some(format!(
                "the wall-time budget of {} s ran out",
                b.max_wall.as_secs()
            ));
        }
        if let Some(max) = b.max_tokens {
            if self.usage.total() >= max {
                return Some(format!(
                    "the token budget of {max} ran out ({} used)",
                    self.usage.total()
                ));
            }
        }
        None
    }

    fn ask(
        &mut self,
        purpose: &'static str,
        messages: Vec<Message>,
        json: bool,
        reask: Option<String>,
        calls: &mut Vec<LlmCall>,
    ) -> Result<String, ConvergeError> {
        let model = self.model.expect("asked only with a model");
        let system = prompts::fill(
            prompts::SYSTEM,
            &[
                ("language", self.task.language.as_str()),
                ("secrets", &self.secrets_note()),
            ],
        );
        // The model never sees a value: whatever went into the prompt (logs,
        // outputs, starting code) is redacted on the way out.
        let messages: Vec<Message> = messages
            .into_iter()
            .map(|mut m| {
                self.redactor.scrub(&mut m.content);
                m
            })
            .collect();
        let request = Request {
            system: Some(system),
            messages: messages.clone(),
            max_tokens: MAX_ANSWER_TOKENS,
            json,
        };
        let mut response = model
            .complete(&request)
            .map_err(|source| ConvergeError::Llm { purpose, source })?;
        self.redactor.scrub(&mut response.text);
        self.usage.add(response.usage);
        if let Some(cost) = response.cost_usd {
            *self.cost.get_or_insert(0.0) += cost;
        }
        calls.push(LlmCall {
            purpose,
            request: messages,
            response: response.text.clone(),
            usage: response.usage,
            latency_ms: response.latency_ms,
            cost_usd: response.cost_usd,
            reask,
        });
        Ok(response.text)
    }

    /// Asks, and takes what `parse` makes of the answer. An unusable answer
    /// gets up to [`MAX_REASKS`] corrective re-asks that say what was wrong
    /// with it and what is expected; each is a call of its own in the report.
    /// Returns the usable answer's text beside the parsed value.
    fn ask_until<T>(
        &mut self,
        purpose: &'static str,
        mut messages: Vec<Message>,
        json: bool,
        expected: &str,
        calls: &mut Vec<LlmCall>,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<(T, String), ConvergeError> {
        let mut reask = None;
        for attempt in 0..=MAX_REASKS {
            let text = self.ask(purpose, messages.clone(), json, reask.take(), calls)?;
            let why = match parse(&text) {
                Ok(value) => return Ok((value, text)),
                Err(why) => why,
            };
            if attempt == MAX_REASKS {
                return Err(ConvergeError::Llm {
                    purpose,
                    source: LlmError::Garbage {
                        reason: format!("{why} (still, after {MAX_REASKS} corrective re-asks)"),
                        head: text.chars().take(200).collect(),
                    },
                });
            }
            self.reasks += 1;
            self.say(&format!(
                "the model's answer is unusable ({why}): asking again ({} of {MAX_REASKS})",
                attempt + 1
            ));
            messages.push(Message::assistant(text));
            messages.push(Message::user(prompts::fill(
                prompts::REASK,
                &[("why", &why), ("expected", expected)],
            )));
            reask = Some(why);
        }
        unreachable!("the last attempt returns")
    }

    /// Asks for code and takes it from the answer's fenced block.
    fn ask_code(
        &mut self,
        purpose: &'static str,
        prompt: String,
        calls: &mut Vec<LlmCall>,
    ) -> Result<String, ConvergeError> {
        let expected = format!(
            "the complete code in one fenced code block (```{}), and nothing after it",
            self.fence()
        );
        self.ask_until(
            purpose,
            vec![Message::user(prompt)],
            false,
            &expected,
            calls,
            |text| code_block(text).ok_or_else(|| "it has no fenced code block".to_owned()),
        )
        .map(|(code, _)| code)
    }

    fn generate(&mut self, calls: &mut Vec<LlmCall>) -> Result<String, ConvergeError> {
        let topology = self
            .task
            .topology
            .nodes
            .iter()
            .map(|n| {
                if n.groups.is_empty() {
                    format!("- {}", n.name)
                } else {
                    format!("- {} (groups: {})", n.name, n.groups.join(", "))
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let checks = self.checks_yaml();
        let starting = match &self.task.code {
            Some(code) => format!("Start from this code:\n```{}\n{code}\n```\n", self.fence()),
            None => String::new(),
        };
        let prompt = prompts::fill(
            prompts::GENERATE,
            &[
                ("language", self.task.language.as_str()),
                ("goal", &self.task.goal),
                ("topology", &topology),
                ("checks", &checks),
                ("starting_code", &starting),
                ("recipes", &prompts::recipes_for(&self.task.goal)),
                ("fence", self.fence()),
            ],
        );
        self.ask_code("write the code", prompt, calls)
    }

    /// The scenario that applies `code` to every node and evaluates the checks.
    fn scenario(&self, code: &str, dir: &FsPath) -> Result<Scenario, ConvergeError> {
        std::fs::create_dir_all(dir).map_err(|source| ConvergeError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let action = match self.task.language {
            Language::Bash => {
                let file = dir.join("code.sh");
                write(&file, &self.redactor.redact(code))?;
                StepAction::Shell {
                    script: code.to_owned(),
                    file: None,
                }
            }
            Language::Ansible => {
                // Ansible reads the playbook from this file, so it is written
                // as is; the model's code never holds a value it was not shown.
                let file = dir.join("playbook.yml");
                write(&file, code)?;
                StepAction::Ansible {
                    playbook: file,
                    controller: None,
                    extra_vars: Vec::new(),
                }
            }
        };
        let left = self
            .task
            .budgets
            .max_wall
            .saturating_sub(self.started.elapsed());
        Ok(Scenario {
            name: self.task.name.clone(),
            description: Some(self.task.goal.clone()),
            topology: self.task.topology.clone(),
            platforms: Vec::new(),
            pinned: Vec::new(),
            steps: vec![Step {
                idempotence: Default::default(),
                name: format!("{} code", self.task.language.as_str()),
                on: Vec::new(),
                timeout: DEFAULT_STEP_TIMEOUT.min(left.max(Duration::from_secs(30))),
                env: self.secret_env.clone(),
                action,
            }],
            checks: self.task.checks.clone(),
            faults: Vec::new(),
            loads: Vec::new(),
            probes: Vec::new(),
            dir: dir.to_path_buf(),
            file: self.task.file.clone(),
        })
    }

    /// Runs `code` on a fresh cluster as a scenario run of this converge run;
    /// `role` names its part (`iteration 2`, `proof`) in the run store.
    fn run_code(
        &self,
        code: &str,
        dir: &FsPath,
        keep: Keep,
        role: String,
    ) -> Result<RunReport, ConvergeError> {
        let scenario = self.scenario(code, dir)?;
        let redactor = self.redactor.clone();
        let options = RunOptions {
            idempotence: false,
            reboot: false,
            keep,
            parent: Some(rehearse_scenario::ParentRun {
                run_id: self.run_id.clone(),
                role,
            }),
            cancel: self.cancel.clone(),
            redact: Some(rehearse_scenario::Redact(std::sync::Arc::new(
                move |text| redactor.redact(text),
            ))),
            ..RunOptions::default()
        };
        let mut run = rehearse_scenario::run(self.engine, &scenario, &options, &|_| {});
        redact::scrub_run(&self.redactor, &mut run);
        redact::scrub_files(&self.redactor, &run.work_dir);
        redact::scrub_files(&self.redactor, dir);
        Ok(run)
    }

    fn run(&mut self) -> Result<ConvergeReport, ConvergeError> {
        let rules_only = self.model.is_none();
        if rules_only {
            self.say("no LLM is configured: only the rules doctor will try to fix failures");
        }
        let mut iterations: Vec<Iteration> = Vec::new();
        let mut platform_failures: Vec<platform::PlatformFailure> = Vec::new();
        let mut stop_reason: Option<(Verdict, String)> = None;
        let mut pending_calls = Vec::new();
        let mut unattached_calls = Vec::new();
        let first = match (&self.task.code, self.model) {
            (Some(code), _) if rules_only => Some((code.clone(), "task")),
            (None, None) => return Err(ConvergeError::NothingToRun),
            _ => {
                self.say("asking the model for code");
                match self.generate(&mut pending_calls) {
                    Ok(code) => Some((code, "model")),
                    Err(e) => {
                        stop_reason = Some((Verdict::Error, self.ended_by(&e)));
                        unattached_calls = std::mem::take(&mut pending_calls);
                        None
                    }
                }
            }
        };
        let mut troubleshot_before = false;
        let mut candidate: Option<(String, Option<String>)> = None; // (script, distilled)

        let (mut code, mut origin) = first.unwrap_or_default();
        let mut number = 1;
        while stop_reason.is_none() && number <= self.task.budgets.max_iterations {
            if let Some(stop) = self.must_stop() {
                stop_reason = Some(stop);
                break;
            }
            let began = Instant::now();
            self.say(&format!(
                "iteration {number}: running the code on a fresh cluster"
            ));
            let attempt = platform_failures
                .iter()
                .filter(|f| f.iteration == number)
                .count();
            let dir = self.work_dir.join(match attempt {
                0 => format!("iteration-{number}"),
                n => format!("iteration-{number}-rerun-{n}"),
            });
            let run = self.run_code(&code, &dir, Keep::OnFailure, format!("iteration {number}"))?;
            if self.stopped() {
                // The run was cut short, and its cluster is gone: nothing to learn from it.
                stop_reason = Some((
                    Verdict::Stopped,
                    format!("stopped on request during iteration {number}"),
                ));
                break;
            }
            let mut kept = KeptCluster {
                engine: self.engine,
                id: run.kept.then(|| run.cluster.clone()).flatten(),
            };
            if run.outcome != Outcome::Passed {
                let host = platform::Host {
                    state_dir: self.engine.state_dir(),
                };
                if let Some((kind, cause, detail)) = platform::classify(&run, &host) {
                    kept.release();
                    platform_failures.push(platform::PlatformFailure {
                        iteration: number,
                        kind,
                        cause: cause.clone(),
                        detail: detail.clone(),
                    });
                    let spent = platform_failures.len() as u32;
                    if spent > platform::PLATFORM_RETRIES {
                        self.say(&format!("platform failure: {cause}: giving up"));
                        stop_reason = Some((
                            Verdict::PlatformError,
                            format!(
                                "the platform failed {spent} times, the code was never judged: {cause} ({})",
                                detail.lines().next().unwrap_or_default()
                            ),
                        ));
                        break;
                    }
                    self.say(&format!(
                        "platform failure: {cause}: running iteration {number} again on a fresh cluster ({spent} of {} reruns; the iteration budget is not charged)",
                        platform::PLATFORM_RETRIES
                    ));
                    continue;
                }
            }
            let mut iteration = Iteration {
                number,
                origin,
                code: self.redactor.redact(&code),
                run,
                failure: None,
                path: None,
                reason: None,
                fix: None,
                commands: Vec::new(),
                llm_calls: std::mem::take(&mut pending_calls),
                duration_ms: 0,
            };
            number += 1;
            if iteration.run.outcome == Outcome::Passed {
                self.say(&format!(
                    "iteration {}: every check passed on a fresh cluster",
                    iteration.number
                ));
                candidate = Some((code.clone(), None));
                self.end_iteration(&mut iterations, iteration, began);
                break;
            }
            let this = iteration.number;
            let mut failure = Failure::from_run(&iteration.run);
            if let Some(cluster) = &kept.id {
                failure.journal = self.unit_journals(cluster, &iteration.run, &failure);
            }
            self.say(&format!(
                "iteration {this}: failed ({} failing checks{})",
                failure.checks.len(),
                failure
                    .step_error
                    .as_deref()
                    .map(|e| format!("; {e}"))
                    .unwrap_or_default()
            ));
            iteration.failure = Some(failure.clone());

            // The doctor first: a known signature needs no model.
            let fix = match self.task.language {
                Language::Bash => {
                    let commands = self.command_index(kept.id.as_deref(), &iteration.run);
                    doctor::diagnose(
                        &code,
                        &failure,
                        &doctor::Knowledge {
                            commands: &commands,
                        },
                    )
                }
                Language::Ansible => None,
            };
            if let Some(fix) = fix {
                self.say(&format!("rules doctor: {} ({})", fix.reason, fix.rule));
                iteration.path = Some(Path::Rules);
                iteration.reason = Some(format!(
                    "the rules doctor recognised a known signature: {} (rule {})",
                    fix.reason, fix.rule
                ));
                code = fix.apply(&code);
                origin = "rules";
                iteration.fix = Some(fix);
                kept.release();
                self.end_iteration(&mut iterations, iteration, began);
                continue;
            }
            if rules_only {
                iteration.reason = Some(
                    "no rule of the doctor matches this failure, and no LLM is configured".into(),
                );
                kept.release();
                self.end_iteration(&mut iterations, iteration, began);
                stop_reason = Some((
                    Verdict::NoRuleApplies,
                    format!("no rule of the doctor matches the failure of iteration {this} and no LLM is configured"),
                ));
                break;
            }
            if this == self.task.budgets.max_iterations {
                iteration.reason = Some(format!(
                    "this was the last of {this} iterations the budget allows: no recovery was tried"
                ));
                kept.release();
                self.end_iteration(&mut iterations, iteration, began);
                break;
            }

            let (path, reason) = failure::choose(&failure, kept.id.is_some(), troubleshot_before);
            self.say(&format!("recovery: {path:?}: {reason}"));
            iteration.path = Some(path);
            iteration.reason = Some(reason);
            let mut calls = Vec::new();
            let result = self.recover(
                path,
                &kept,
                &code,
                &failure,
                &mut troubleshot_before,
                &mut iteration,
                &mut calls,
            );
            iteration.llm_calls.extend(calls);
            kept.release();
            self.end_iteration(&mut iterations, iteration, began);
            match result {
                Ok(Recovered::Code(new_code)) => {
                    code = new_code;
                    origin = "model-retry";
                }
                Ok(Recovered::Candidate(distilled)) => {
                    candidate = Some((distilled.clone(), Some(distilled)));
                    break;
                }
                Err(e) => {
                    stop_reason = Some((Verdict::Error, self.ended_by(&e)));
                    break;
                }
            }
        }

        // The proof: the candidate on a fresh cluster, in one pass. A candidate
        // that already passed whole on a fresh cluster needs no second run.
        let mut proof = None;
        let mut script = None;
        let mut distilled = None;
        if let Some((candidate, was_distilled)) = candidate {
            match was_distilled {
                None => {
                    proof = iterations.last().map(|i| i.run.clone());
                    script = Some(self.redactor.redact(&candidate));
                }
                Some(d) => {
                    distilled = Some(self.redactor.redact(&d));
                    if let Some((verdict, why)) = self.must_stop() {
                        stop_reason = Some((verdict, format!("{why} before the proof run")));
                    } else {
                        self.say("proving the distilled script on a fresh cluster");
                        let run = self.run_code(
                            &d,
                            &self.work_dir.join("proof"),
                            Keep::Never,
                            "proof".into(),
                        )?;
                        if run.outcome == Outcome::Passed {
                            script = Some(self.redactor.redact(&d));
                        } else {
                            stop_reason = Some((
                                Verdict::BudgetExhausted,
                                "the distilled script failed its proof run on a fresh cluster"
                                    .into(),
                            ));
                        }
                        proof = Some(run);
                    }
                }
            }
        }
        let (verdict, summary) = match (&script, stop_reason) {
            (Some(_), _) => (
                Verdict::Converged,
                format!("converged in {} iteration(s); the script passed every check on a fresh cluster in one pass", iterations.len()),
            ),
            (None, Some(stop)) => stop,
            (None, None) => {
                let failures = iterations
                    .iter()
                    .filter_map(|i| Some(format!("iteration {}: {}", i.number, i.failure.as_ref()?.headline())))
                    .collect::<Vec<_>>()
                    .join("; ");
                (
                    Verdict::BudgetExhausted,
                    format!(
                        "the iteration budget ran out: {} of {} iterations ran and no code passed ({failures})",
                        iterations.len(),
                        self.task.budgets.max_iterations
                    ),
                )
            }
        };
        // Every rule of the doctor that fired is named, whatever the ending.
        let mut fired: Vec<&str> = Vec::new();
        for rule in iterations
            .iter()
            .filter_map(|i| i.fix.as_ref().map(|f| f.rule))
        {
            if !fired.contains(&rule) {
                fired.push(rule);
            }
        }
        let summary = match fired.as_slice() {
            [] => summary,
            rules => format!("{summary}; the rules doctor fixed: {}", rules.join(", ")),
        };
        let report_path = self.work_dir.join("report.json");
        let report = ConvergeReport {
            run_id: self.run_id.clone(),
            task: self.task.name.clone(),
            goal: self.task.goal.clone(),
            language: self.task.language,
            verdict,
            summary,
            model: self.model.map(|m| format!("{}/{}", m.name(), m.model())),
            rules_only,
            review: script.as_deref().map(policy::scan).unwrap_or_default(),
            secrets: self.task.secrets.iter().map(|s| s.name.clone()).collect(),
            unredacted: self.redactor.unredacted().to_vec(),
            iterations,
            distilled,
            proof,
            platform_failures,
            reasks: self.reasks,
            llm_calls: unattached_calls,
            script,
            usage: self.usage,
            cost_usd: self.cost,
            wall_ms: self.started.elapsed().as_millis() as u64,
            report_path: report_path.clone(),
        };
        // Every part was redacted as it was made; the file is redacted whole
        // once more so that a field added later cannot leak.
        let mut json = serde_json::to_value(&report).unwrap_or_default();
        self.redactor.redact_json(&mut json);
        write(
            &report_path,
            &serde_json::to_string_pretty(&json).unwrap_or_default(),
        )?;
        if let Some(script) = &report.script {
            let script = &self.redactor.redact(script);
            let name = match self.task.language {
                Language::Bash => "script.sh",
                Language::Ansible => "playbook.yml",
            };
            write(&self.work_dir.join(name), script)?;
        }
        Ok(report)
    }

    /// The summary of a run an error ended early: the error and its causes,
    /// each said once.
    fn ended_by(&self, e: &ConvergeError) -> String {
        let text = self.redactor.redact(&chain(e));
        self.say(&format!("ending the run: {text}"));
        text
    }

    /// The model's part of a recovery: a rewrite, or a troubleshooting session
    /// and, when it made the checks pass, the distilled script.
    #[allow(clippy::too_many_arguments)]
    fn recover(
        &mut self,
        path: Path,
        kept: &KeptCluster<'_>,
        code: &str,
        failure: &Failure,
        troubleshot_before: &mut bool,
        iteration: &mut Iteration,
        calls: &mut Vec<LlmCall>,
    ) -> Result<Recovered, ConvergeError> {
        match path {
            Path::Troubleshoot => {
                let cluster = kept.id.clone().unwrap_or_default();
                *troubleshot_before = true;
                let outcome = session::troubleshoot(self, &cluster, code, failure, calls);
                iteration.commands = outcome.commands;
                if let Some(e) = outcome.error {
                    return Err(e);
                }
                if outcome.passed {
                    self.say("troubleshooting made every check pass: distilling one script");
                    let distilled = self.distill(code, &iteration.commands, calls)?;
                    Ok(Recovered::Candidate(distilled))
                } else {
                    self.say("troubleshooting did not make the checks pass: asking for a rewrite");
                    Ok(Recovered::Code(self.retry(code, failure, calls)?))
                }
            }
            Path::Retry | Path::Rules => {
                self.say("asking the model for a corrected version");
                *troubleshot_before = false;
                Ok(Recovered::Code(self.retry(code, failure, calls)?))
            }
        }
    }

    /// An iteration is over: it goes into the report and the run store.
    fn end_iteration(
        &mut self,
        iterations: &mut Vec<Iteration>,
        mut iteration: Iteration,
        began: Instant,
    ) {
        iteration.duration_ms = began.elapsed().as_millis() as u64;
        self.recorder.iteration(&iteration);
        iterations.push(iteration);
    }

    fn retry(
        &mut self,
        code: &str,
        failure: &Failure,
        calls: &mut Vec<LlmCall>,
    ) -> Result<String, ConvergeError> {
        let prompt = prompts::fill(
            prompts::RETRY,
            &[
                ("goal", &self.task.goal),
                ("checks", &self.checks_yaml()),
                ("code", code),
                ("failure", &self.visible(&failure.describe())),
                ("fence", self.fence()),
            ],
        );
        self.ask_code("correct the code", prompt, calls)
    }

    fn distill(
        &mut self,
        code: &str,
        commands: &[CommandRecord],
        calls: &mut Vec<LlmCall>,
    ) -> Result<String, ConvergeError> {
        let listing = commands
            .iter()
            .filter(|c| c.refused.is_none())
            .map(|c| {
                format!(
                    "- {} (exit {}{}): {}",
                    c.node,
                    c.exit_code.map_or("none".into(), |e| e.to_string()),
                    if session::mattered(c) {
                        ""
                    } else {
                        ", diagnostic"
                    },
                    c.command
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        let prompt = prompts::fill(
            prompts::DISTILL,
            &[
                ("language", self.task.language.as_str()),
                ("goal", &self.task.goal),
                ("code", code),
                ("commands", &listing),
                ("fence", self.fence()),
            ],
        );
        self.ask_code("distill one script", prompt, calls)
    }
}

fn write(path: &FsPath, text: &str) -> Result<(), ConvergeError> {
    std::fs::write(path, text).map_err(|source| ConvergeError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The body of the first fenced code block of a model's answer.
pub fn code_block(text: &str) -> Option<String> {
    let open = text.find("```")?;
    let after = &text[open + 3..];
    let body_start = after.find('\n')? + 1;
    let body = &after[body_start..];
    let close = body.find("```").unwrap_or(body.len());
    let code = body[..close].trim_end().to_owned() + "\n";
    (!code.trim().is_empty()).then_some(code)
}

#[cfg(test)]
mod tests {
    #[test]
    fn host_paths_are_cut_to_file_names() {
        let text = "ERROR! the playbook: /var/lib/rehearse/converge/c1/iteration-1/playbook.yml could not be found\n\
                    see '/var/lib/rehearse/runs/ab/bash-code.1/node1.log', /etc/nginx/nginx.conf";
        let shown = super::visible(text, std::path::Path::new("/var/lib/rehearse"));
        assert_eq!(
            shown,
            "ERROR! the playbook: playbook.yml could not be found\nsee 'node1.log', /etc/nginx/nginx.conf"
        );
    }
}
