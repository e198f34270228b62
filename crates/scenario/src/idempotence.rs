//! The idempotence pass: every step applied a second time, each judged on what
//! it really changed (the change detector, by content, step by step), on
//! whether its second run succeeded, and on whether the checks still hold
//! afterwards.
//!
//! Shell and copy steps fail on any real change their second run makes, except
//! paths their `idempotence.allow_changes` globs declare expected (listed as
//! allowed). Ansible steps are judged by Ansible's own per-task `changed`.
//! A check that passed after the first pass and fails after the second fails
//! idempotence by name.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use rehearse_checks::{CheckResult, Status};
use rehearse_runner::{Change, Detector, Pass, RunContext, Scope, Snapshot, StepReport};
use rehearse_spec::scenario::{Scenario, StepAction};

use crate::Event;

/// What the second pass showed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Idempotence {
    /// The steps' second run.
    pub steps: Vec<StepReport>,
    /// Second runs that did not succeed, per step and node.
    pub failed_runs: Vec<FailedRun>,
    /// Real changes the second runs made, per step; allowed ones carry the
    /// glob that allowed them.
    pub changes: Vec<StepChanges>,
    /// Every check evaluated again after the second pass.
    pub checks: Vec<CheckResult>,
    /// Checks that held after the first pass and fail after the second.
    pub broken_checks: Vec<String>,
    /// Nodes whose changes could not be compared by content, and why.
    pub unavailable: Vec<String>,
    /// Every reason idempotence failed, one line each.
    pub changed: Vec<String>,
    /// Changes declared expected by `allow_changes`, one line each.
    pub allowed: Vec<String>,
    pub passed: bool,
}

/// One step's second run that exited non-zero (or could not run, or timed out).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedRun {
    pub step: String,
    pub node: String,
    pub exit_code: Option<i32>,
    /// `the second run of step "X" failed on web1 (exit 1)`.
    pub message: String,
    /// The last meaningful lines of its stderr (else stdout), the lines
    /// naming an error (`[emerg]`, `error:`, ...) first.
    pub stderr_tail: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepChanges {
    pub step: String,
    pub changes: Vec<Change>,
}

impl StepChanges {
    /// The changes no `allow_changes` entry allows: what fails the pass.
    pub fn unallowed(&self) -> impl Iterator<Item = &Change> {
        self.changes.iter().filter(|c| c.allowed_by.is_none())
    }
}

/// Applies every step again and judges the result; also returns the time
/// spent detecting changes (ms). Without `detect`, changes are not looked for.
pub(crate) fn second_pass(
    ctx: &RunContext<'_>,
    scenario: &Scenario,
    first_checks: &[CheckResult],
    detect: bool,
    events: &(dyn Fn(Event<'_>) + Sync),
    evaluate: &dyn Fn() -> Vec<CheckResult>,
) -> (Idempotence, u64) {
    let mut detecting = Duration::ZERO;
    let t = Instant::now();
    let detector = detect.then(|| Detector::new(ctx.engine, ctx.cluster));
    let scope = Scope::everything();
    let snapshot = |previous: Option<&Snapshot>| match &detector {
        Some(d) => d.snapshot(previous, &scope),
        None => Snapshot::default(),
    };
    let mut before = snapshot(None);
    detecting += t.elapsed();
    let mut result = Idempotence {
        steps: Vec::new(),
        failed_runs: Vec::new(),
        changes: Vec::new(),
        checks: Vec::new(),
        broken_checks: Vec::new(),
        unavailable: before.unavailable(),
        changed: Vec::new(),
        allowed: Vec::new(),
        passed: true,
    };
    for step in &scenario.steps {
        events(Event::Phase(&step.name));
        let targets = scenario.resolve(&step.on);
        let report = rehearse_runner::apply(ctx, step, &targets, Pass::Second);
        events(Event::StepDone(&report));
        let t = Instant::now();
        let after = snapshot(Some(&before));
        // What the step's second run changed on the nodes it ran on (other
        // nodes change only through their own services meanwhile).
        let ran_on: Vec<String> = if targets.is_empty() {
            ctx.cluster.nodes.iter().map(|n| n.name.clone()).collect()
        } else {
            targets.clone()
        };
        let mut changes = rehearse_runner::changes::compare(&before, &after);
        changes.retain(|c| ran_on.contains(&c.node));
        before = after;
        detecting += t.elapsed();
        result.failed_runs.extend(failed_runs(&report));
        if matches!(step.action, StepAction::Ansible { .. }) {
            // Ansible says itself what it changed, task by task.
            result.changed.extend(
                report
                    .changed()
                    .into_iter()
                    .map(|c| format!("{}: {c}", report.name)),
            );
        } else {
            for change in &mut changes {
                change.allowed_by = step.idempotence.allowing(&change.path).map(str::to_owned);
                let line = format!("{}: {}", report.name, change.line());
                match &change.allowed_by {
                    Some(glob) => result.allowed.push(format!("{line} (allowed by {glob})")),
                    None => result.changed.push(line),
                }
            }
            if !changes.is_empty() {
                result.changes.push(StepChanges {
                    step: report.name.clone(),
                    changes,
                });
            }
        }
        result.steps.push(report);
    }
    result
        .changed
        .extend(result.failed_runs.iter().map(|f| f.message.clone()));

    events(Event::Phase("checks after the second run"));
    result.checks = evaluate();
    events(Event::ChecksDone {
        phase: "after the second run",
        results: &result.checks,
    });
    for check in &result.checks {
        let held = first_checks
            .iter()
            .any(|c| c.name == check.name && c.node == check.node && c.status == Status::Passed);
        if held && check.status == Status::Failed {
            let line = format!(
                "check \"{}\" on {} held after the first run and fails after the second: {}",
                check.name, check.node, check.message
            );
            result.broken_checks.push(line.clone());
            result.changed.push(line);
        }
    }
    result.passed = result.changed.is_empty();
    (result, detecting.as_millis() as u64)
}

fn failed_runs(report: &StepReport) -> Vec<FailedRun> {
    if report.ok {
        return Vec::new();
    }
    let message = |node: &str, exit: Option<i32>, timed_out: bool| {
        let how = match (exit, timed_out) {
            (_, true) => "timed out".to_string(),
            (Some(code), _) => format!("exit {code}"),
            (None, _) => "it could not run".to_string(),
        };
        format!(
            "the second run of step \"{}\" failed on {node} ({how})",
            report.name
        )
    };
    let mut out: Vec<FailedRun> = report
        .nodes
        .iter()
        .filter(|n| !n.ok())
        .map(|n| {
            let mut tail = stderr_tail(&n.stderr);
            if tail.is_empty() {
                tail = stderr_tail(&n.stdout);
            }
            if tail.is_empty() {
                tail.extend(n.error.clone());
            }
            FailedRun {
                step: report.name.clone(),
                node: n.node.clone(),
                exit_code: n.exit_code,
                message: message(&n.node, n.exit_code, n.timed_out),
                stderr_tail: tail,
            }
        })
        .collect();
    if out.is_empty() {
        // Ansible, or a failure before any node ran: the step's own sentence.
        let hosts: Vec<String> = report
            .ansible
            .iter()
            .flat_map(|a| &a.tasks)
            .filter(|t| t.status == rehearse_runner::TaskStatus::Failed)
            .map(|t| t.host.clone())
            .collect();
        let node = hosts.first().cloned().unwrap_or_else(|| "its nodes".into());
        out.push(FailedRun {
            step: report.name.clone(),
            node: node.clone(),
            exit_code: None,
            message: format!(
                "the second run of step \"{}\" failed on {node}",
                report.name
            ),
            stderr_tail: report.error.iter().cloned().collect(),
        });
    }
    out
}

/// Lines of output that name the failure, whatever the tool: nginx's
/// `[emerg]`, `error:`, `fatal`, ...
fn is_error_line(line: &str) -> bool {
    let lower = line.to_ascii_lowercase();
    [
        "[emerg]", "[crit]", "[alert]", "[error]", "error:", "error ", "fatal", "failed", "e: ",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

/// How many lines of a failed run's output a report quotes.
const TAIL_LINES: usize = 10;

/// The last meaningful lines of `text`, error lines first.
pub(crate) fn stderr_tail(text: &str) -> Vec<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|l| !l.trim().is_empty() && !l.starts_with("[rehearse: first"))
        .collect();
    let errors: Vec<&str> = lines.iter().copied().filter(|l| is_error_line(l)).collect();
    let mut out: Vec<String> = errors[errors.len().saturating_sub(TAIL_LINES / 2)..]
        .iter()
        .map(|l| l.to_string())
        .collect();
    for l in lines.iter().rev().take(TAIL_LINES).rev() {
        if out.len() >= TAIL_LINES {
            break;
        }
        if !out.iter().any(|o| o == l) {
            out.push(l.to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_come_first_in_a_tail() {
        let stderr = "starting\n2024/01/01 [emerg] 12#12: duplicate upstream \"app\" in /etc/nginx/conf.d/app.conf:8\nnginx: configuration file /etc/nginx/nginx.conf test failed\n\nbye\n";
        let tail = stderr_tail(stderr);
        assert!(tail[0].contains("[emerg]"), "{tail:?}");
        assert!(tail[1].contains("test failed"), "{tail:?}");
        assert_eq!(tail.len(), 4, "{tail:?}");
        assert!(tail.contains(&"bye".to_string()));
    }

    #[test]
    fn a_long_output_keeps_its_last_lines() {
        let text: String = (0..50).map(|i| format!("line {i}\n")).collect();
        let tail = stderr_tail(&text);
        assert_eq!(tail.len(), TAIL_LINES);
        assert_eq!(tail.last().unwrap(), "line 49");
    }
}
