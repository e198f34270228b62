//! The loop, as a state machine. Each iteration runs code on a fresh cluster
//! and decides what comes next: more code to run (the doctor's fix, the
//! model's rewrite, or the same code again after a platform failure), a
//! candidate to prove, or the end.

use std::time::{Duration, Instant};

use rehearse_sandbox::Engine;
use rehearse_scenario::{Keep, Outcome, RunReport};
use rehearse_spec::task::Language;

use crate::proof::Candidate;
use crate::session::{self};
use crate::{
    chain, contents, doctor, failure, platform, ConvergeError, ConvergeReport, Converger, Failure,
    Iteration, LlmCall, Origin, Path, Verdict,
};

/// Code to run on a fresh cluster, and where it came from.
pub(crate) struct Attempt {
    pub code: String,
    pub origin: Origin,
}

/// Where the loop stands between two iterations.
pub(crate) enum State {
    /// Run this code as the next iteration.
    Run(Attempt),
    /// The loop is over.
    Done(Done),
}

/// How the loop ended.
pub(crate) enum Done {
    /// A script passed, or was distilled: prove it.
    Prove(Candidate),
    /// Stopped early: on request, by a budget, the platform, an error, or no
    /// rule of the doctor applying; the summary says which.
    Stopped(Verdict, String),
    /// Every iteration the budget allows ran and none passed.
    IterationsSpent,
}

/// A run the platform spoiled (a node that did not boot, the package cache
/// down, the host's disk full): what happens to the code it ran.
enum Spoiled {
    /// The same code runs again on a fresh cluster.
    Rerun,
    /// The platform failed too often: the loop ends.
    GiveUp(Done),
}

/// What the loop has gathered so far.
#[derive(Default)]
pub(crate) struct Ledger {
    pub iterations: Vec<Iteration>,
    pub platform_failures: Vec<platform::PlatformFailure>,
    /// Model calls not yet attached to an iteration (the first answer, until
    /// its code has run).
    pub pending_calls: Vec<LlmCall>,
    /// Calls that never led to a run (a first answer that never became
    /// usable code).
    pub unattached_calls: Vec<LlmCall>,
    /// The previous recovery was a troubleshooting session.
    pub troubleshot_before: bool,
    /// The number the next iteration gets.
    pub next: u32,
}

/// What a recovery by the model came to.
enum Recovered {
    /// New code, to run on a fresh cluster.
    Code(String),
    /// A distilled script, to prove.
    Candidate(String),
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
    pub(crate) fn run(&mut self) -> Result<ConvergeReport, ConvergeError> {
        if self.model.is_none() {
            self.say("no LLM is configured: only the rules doctor will try to fix failures");
        }
        let mut ledger = Ledger {
            next: 1,
            ..Ledger::default()
        };
        let mut state = self.first(&mut ledger)?;
        let done = loop {
            state = match state {
                State::Run(attempt) => self.iterate(attempt, &mut ledger)?,
                State::Done(done) => break done,
            };
        };
        self.conclude(done, ledger)
    }

    /// The first code: the task's in rules-only mode, else the model's.
    fn first(&mut self, ledger: &mut Ledger) -> Result<State, ConvergeError> {
        match (&self.task.code, self.model) {
            (Some(code), None) => Ok(State::Run(Attempt {
                code: code.clone(),
                origin: Origin::Task,
            })),
            (None, None) => Err(ConvergeError::NothingToRun),
            _ => {
                self.say("asking the model for code");
                match self.generate(&mut ledger.pending_calls) {
                    Ok(code) => Ok(State::Run(Attempt {
                        code,
                        origin: Origin::Model,
                    })),
                    Err(e) => {
                        ledger.unattached_calls = std::mem::take(&mut ledger.pending_calls);
                        Ok(State::Done(Done::Stopped(
                            Verdict::Error,
                            self.ended_by(&e),
                        )))
                    }
                }
            }
        }
    }

    /// One iteration: runs `attempt` on a fresh cluster and decides the next
    /// state from what happened.
    fn iterate(&mut self, attempt: Attempt, ledger: &mut Ledger) -> Result<State, ConvergeError> {
        let number = ledger.next;
        if number > self.task.budgets.max_iterations {
            return Ok(State::Done(Done::IterationsSpent));
        }
        if let Some((verdict, why)) = self.must_stop() {
            return Ok(State::Done(Done::Stopped(verdict, why)));
        }
        let began = Instant::now();
        self.say(&format!(
            "iteration {number}: running the code on a fresh cluster"
        ));
        let rerun = ledger
            .platform_failures
            .iter()
            .filter(|f| f.iteration == number)
            .count();
        let dir = self.work_dir.join(match rerun {
            0 => format!("iteration-{number}"),
            n => format!("iteration-{number}-rerun-{n}"),
        });
        let run = self.run_code(
            &attempt.code,
            &dir,
            Keep::OnFailure,
            format!("iteration {number}"),
        )?;
        if self.stopped() {
            // The run was cut short, and its cluster is gone: nothing to learn from it.
            return Ok(State::Done(Done::Stopped(
                Verdict::Stopped,
                format!("stopped on request during iteration {number}"),
            )));
        }
        let mut kept = KeptCluster {
            engine: self.engine,
            id: run.kept.then(|| run.cluster.clone()).flatten(),
        };
        match self.spoiled(&run, &mut kept, number, ledger) {
            Some(Spoiled::Rerun) => return Ok(State::Run(attempt)),
            Some(Spoiled::GiveUp(done)) => return Ok(State::Done(done)),
            None => {}
        }
        let Attempt { code, origin } = attempt;
        let iteration = Iteration {
            number,
            origin,
            code: self.redactor.redact(&code),
            run,
            failure: None,
            path: None,
            reason: None,
            fix: None,
            commands: Vec::new(),
            llm_calls: std::mem::take(&mut ledger.pending_calls),
            duration_ms: 0,
        };
        ledger.next += 1;
        if iteration.run.outcome == Outcome::Passed {
            self.say(&format!(
                "iteration {number}: every check passed on a fresh cluster"
            ));
            self.end_iteration(ledger, iteration, began);
            return Ok(State::Done(Done::Prove(Candidate::Passed(code))));
        }
        Ok(self.after_failure(iteration, code, kept, ledger, began))
    }

    /// Whether the platform, not the code, spoiled a run that failed: then
    /// the same code runs again on a fresh cluster without charging the
    /// iteration budget, up to a bound.
    fn spoiled(
        &mut self,
        run: &RunReport,
        kept: &mut KeptCluster<'_>,
        number: u32,
        ledger: &mut Ledger,
    ) -> Option<Spoiled> {
        if run.outcome == Outcome::Passed {
            return None;
        }
        let host = platform::Host {
            state_dir: self.engine.state_dir(),
        };
        let (kind, cause, detail) = platform::classify(run, &host)?;
        kept.release();
        ledger.platform_failures.push(platform::PlatformFailure {
            iteration: number,
            kind,
            cause: cause.clone(),
            detail: detail.clone(),
        });
        let spent = ledger.platform_failures.len() as u32;
        if spent > platform::PLATFORM_RETRIES {
            self.say(&format!("platform failure: {cause}: giving up"));
            return Some(Spoiled::GiveUp(Done::Stopped(
                Verdict::PlatformError,
                format!(
                    "the platform failed {spent} times, the code was never judged: {cause} ({})",
                    detail.lines().next().unwrap_or_default()
                ),
            )));
        }
        self.say(&format!(
            "platform failure: {cause}: running iteration {number} again on a fresh cluster ({spent} of {} reruns; the iteration budget is not charged)",
            platform::PLATFORM_RETRIES
        ));
        Some(Spoiled::Rerun)
    }

    /// The code of `iteration` failed: the rules doctor first, then (with a
    /// model, and iterations left) a recovery by the model.
    fn after_failure(
        &mut self,
        mut iteration: Iteration,
        code: String,
        mut kept: KeptCluster<'_>,
        ledger: &mut Ledger,
        began: Instant,
    ) -> State {
        let number = iteration.number;
        let mut failure = Failure::from_run(&iteration.run);
        if let Some(cluster) = &kept.id {
            failure.journal = self.unit_journals(cluster, &iteration.run, &failure);
        }
        self.say(&format!(
            "iteration {number}: failed ({} failing checks{})",
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
            let fixed = fix.apply(&code);
            iteration.fix = Some(fix);
            kept.release();
            self.end_iteration(ledger, iteration, began);
            return State::Run(Attempt {
                code: fixed,
                origin: Origin::Rules,
            });
        }
        if self.model.is_none() {
            iteration.reason =
                Some("no rule of the doctor matches this failure, and no LLM is configured".into());
            kept.release();
            self.end_iteration(ledger, iteration, began);
            return State::Done(Done::Stopped(
                Verdict::NoRuleApplies,
                format!("no rule of the doctor matches the failure of iteration {number} and no LLM is configured"),
            ));
        }
        if number == self.task.budgets.max_iterations {
            iteration.reason = Some(format!(
                "this was the last of {number} iterations the budget allows: no recovery was tried"
            ));
            kept.release();
            self.end_iteration(ledger, iteration, began);
            return State::Done(Done::IterationsSpent);
        }

        let (path, reason) =
            failure::choose(&failure, kept.id.is_some(), ledger.troubleshot_before);
        self.say(&format!("recovery: {path:?}: {reason}"));
        iteration.path = Some(path);
        iteration.reason = Some(reason);
        let mut calls = Vec::new();
        let result = self.recover(
            path,
            &kept,
            &code,
            &failure,
            &mut ledger.troubleshot_before,
            &mut iteration,
            &mut calls,
        );
        iteration.llm_calls.extend(calls);
        kept.release();
        self.end_iteration(ledger, iteration, began);
        match result {
            Ok(Recovered::Code(code)) => State::Run(Attempt {
                code,
                origin: Origin::ModelRetry,
            }),
            Ok(Recovered::Candidate(distilled)) => {
                State::Done(Done::Prove(Candidate::Distilled(distilled)))
            }
            Err(e) => State::Done(Done::Stopped(Verdict::Error, self.ended_by(&e))),
        }
    }

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
    fn end_iteration(&mut self, ledger: &mut Ledger, mut iteration: Iteration, began: Instant) {
        iteration.duration_ms = began.elapsed().as_millis() as u64;
        self.recorder.iteration(&iteration);
        ledger.iterations.push(iteration);
    }
}
