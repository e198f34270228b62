//! The convergence loop: generate code → run it on a fresh cluster → if it
//! fails, recover by the rules doctor, a rewrite (retry) or a live
//! troubleshooting session → distill one clean script → prove it on a fresh
//! cluster in one pass. Only a proven script is reported as converged.
//!
//! Every iteration is recorded in a [`ConvergeReport`]: the code, the run's
//! report, the path chosen and why, the commands run and their output, and the
//! tokens the model used. Without a model the doctor is the whole engine.
//!
//! Where things live: [`report`] the report's types; `conversation` what the
//! model is asked and how its answers are read; `scenario` the scenario a
//! piece of code becomes; `iterate` the loop, a state machine from one
//! iteration to the next; `proof` the proof run and the report's end.

pub mod contents;
mod conversation;
pub mod doctor;
pub mod eval;
pub mod failure;
mod iterate;
pub mod platform;
pub mod policy;
mod prompts;
mod proof;
mod record;
pub mod redact;
pub mod report;
mod scenario;
mod session;

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rehearse_llm::{LlmError, Provider, Usage};
use rehearse_sandbox::Engine;
use rehearse_scenario::Cancel;
use rehearse_spec::task::{SecretError, Task};
use rehearse_store::RunStore;

use redact::Redactor;

pub use conversation::{code_block, MAX_REASKS};
pub use failure::{Failure, Path};
pub use report::{ConvergeReport, Iteration, LlmCall, Origin, Verdict};
pub use session::CommandRecord;

/// Commands a troubleshooting session may run.
pub const TROUBLESHOOT_STEPS: u32 = 8;

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
/// The run, its iterations and scenario runs are recorded in `store` as it
/// goes (nothing is recorded without one).
pub fn converge(
    engine: &Engine,
    task: &Task,
    model: Option<&dyn Provider>,
    progress: Progress<'_>,
    store: Option<Arc<RunStore>>,
) -> Result<ConvergeReport, ConvergeError> {
    converge_with(engine, task, model, progress, store, None)
}

/// [`converge`] that another thread can stop through `cancel`: the loop ends
/// at its next step with [`Verdict::Stopped`], and the clusters in use are
/// listed by the token for the stopper to destroy.
pub fn converge_with(
    engine: &Engine,
    task: &Task,
    model: Option<&dyn Provider>,
    progress: Progress<'_>,
    store: Option<Arc<RunStore>>,
    cancel: Option<Cancel>,
) -> Result<ConvergeReport, ConvergeError> {
    converge_in(engine, task, model, progress, store, cancel, None)
}

/// [`converge_with`] as a part of a larger run (an evaluation's attempt): the
/// run store records it under `parent`, with its role there.
pub fn converge_in(
    engine: &Engine,
    task: &Task,
    model: Option<&dyn Provider>,
    progress: Progress<'_>,
    store: Option<Arc<RunStore>>,
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
        store,
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

impl Converger<'_> {
    /// A progress line, redacted.
    fn say(&self, line: &str) {
        let line = self.redactor.redact(line);
        tracing::info!("{line}");
        (self.progress)(&line);
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
}

fn write(path: &FsPath, text: &str) -> Result<(), ConvergeError> {
    std::fs::write(path, text).map_err(|source| ConvergeError::Io {
        path: path.to_path_buf(),
        source,
    })
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
