//! What a failed run came to, in the terms the recovery rule, the doctor and the
//! model work with; and the rule that picks the recovery path.

use serde::Serialize;

use rehearse_checks::Status;
use rehearse_scenario::RunReport;

/// Bytes of step output kept for prompts and the doctor, from the end.
pub const OUTPUT_TAIL: usize = 4000;

#[derive(Clone, Debug, Serialize)]
pub struct FailedCheck {
    pub node: String,
    pub kind: String,
    pub subject: String,
    pub expected: serde_json::Value,
    pub actual: serde_json::Value,
    pub message: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    /// The code itself ran to the end on every node.
    pub step_ok: bool,
    pub step_error: Option<String>,
    pub timed_out: bool,
    /// The tail of the step's output on every node (or Ansible's).
    pub output: String,
    pub checks: Vec<FailedCheck>,
    /// The journal of units that failed, read from the kept cluster: where a
    /// service says why it did not start (a port in use, a bad config line).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub journal: String,
}

impl Failure {
    pub fn from_run(report: &RunReport) -> Failure {
        let step = report.steps.first();
        let mut output = String::new();
        if let Some(error) = &report.error {
            output.push_str(&format!("run error: {error}\n"));
        }
        if let Some(step) = step {
            for node in &step.nodes {
                let text = format!("{}{}", node.stdout, node.stderr);
                output.push_str(&format!(
                    "--- {} (exit {}) ---\n{}\n",
                    node.node,
                    node.exit_code.map_or("none".into(), |c| c.to_string()),
                    tail(&text, OUTPUT_TAIL)
                ));
            }
            if let Some(ansible) = &step.ansible {
                let text = serde_json::to_string_pretty(ansible).unwrap_or_default();
                output.push_str(&format!("--- ansible ---\n{}\n", tail(&text, OUTPUT_TAIL)));
            }
        }
        Failure {
            step_ok: step.is_some_and(|s| s.ok),
            step_error: step.and_then(|s| s.error.clone()),
            timed_out: step.is_some_and(|s| s.nodes.iter().any(|n| n.timed_out)),
            output,
            journal: String::new(),
            checks: report
                .checks
                .iter()
                .filter(|c| c.status == Status::Failed)
                .map(|c| FailedCheck {
                    node: c.node.clone(),
                    kind: c.kind.clone(),
                    subject: c.subject.clone(),
                    expected: c.expected.clone(),
                    actual: c.actual.clone(),
                    message: c.message.clone(),
                })
                .collect(),
        }
    }

    /// The failure in one line, for a summary.
    pub fn headline(&self) -> String {
        let step = match (&self.step_error, self.step_ok) {
            (_, true) => None,
            (Some(e), false) => Some(format!(
                "the code failed: {}",
                e.lines().next().unwrap_or_default()
            )),
            (None, false) => Some("the code failed".to_owned()),
        };
        let checks = match self.checks.len() {
            0 => None,
            1 => Some(format!("1 failing check ({})", self.checks[0].message)),
            n => Some(format!("{n} failing checks")),
        };
        match (step, checks) {
            (Some(s), Some(c)) => format!("{s}; {c}"),
            (Some(s), None) => s,
            (None, Some(c)) => c,
            (None, None) => "the run failed".to_owned(),
        }
    }

    /// The failure as the model reads it.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        match (&self.step_error, self.step_ok) {
            (_, true) => text.push_str("The code ran to the end without error.\n"),
            (Some(e), false) => text.push_str(&format!("The code failed: {e}\n")),
            (None, false) => text.push_str("The code failed.\n"),
        }
        if !self.checks.is_empty() {
            text.push_str("\nFailing checks (expected vs actual):\n");
            for c in &self.checks {
                text.push_str(&format!(
                    "- on {}: {} {}: {}\n  expected: {}\n  actual: {}\n",
                    c.node,
                    c.kind,
                    c.subject,
                    c.message,
                    c.expected,
                    tail(&c.actual.to_string(), 600)
                ));
            }
        }
        if !self.output.trim().is_empty() {
            text.push_str(&format!("\nOutput of the code (tail):\n{}", self.output));
        }
        if !self.journal.trim().is_empty() {
            text.push_str(&format!(
                "\nJournal of the units that failed:\n{}",
                self.journal
            ));
        }
        text
    }

    /// The systemd units the failure names: in "Job for X.service failed" and
    /// "X.service: Failed ..." lines of the output, and failing `service` checks.
    pub fn failed_units(&self) -> Vec<String> {
        static UNIT: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        let re = UNIT.get_or_init(|| {
            regex::Regex::new(
                r"(?:Job for |\b)([A-Za-z0-9@_.:-]+)\.service(?: failed|: (?:Failed|Main process exited|Control process exited))",
            )
            .expect("a valid pattern")
        });
        let mut units: Vec<String> = re
            .captures_iter(&self.output)
            .filter_map(|c| {
                c.get(1)
                    .map(|m| m.as_str().trim_start_matches("Job for ").to_owned())
            })
            .collect();
        for c in &self.checks {
            if c.kind == "service" {
                units.push(c.subject.trim_end_matches(".service").to_owned());
            }
        }
        let mut seen = Vec::new();
        for u in units {
            if !seen.contains(&u) && seen.len() < 3 {
                seen.push(u);
            }
        }
        seen
    }
}

/// The last `max` bytes of `text`, on a character boundary.
pub fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// How the engine recovers from a failed iteration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Path {
    /// The doctor patched the code; it runs again on a fresh cluster.
    Rules,
    /// The model rewrites the code, which runs on a fresh cluster.
    Retry,
    /// The model works on the failed cluster, one command at a time.
    Troubleshoot,
}

/// Signatures of code that is wrong as written: fixing the machine will not help.
const DESIGN_ERRORS: &[&str] = &[
    "syntax error",
    "unexpected EOF",
    "unexpected token",
    "ERROR! ",
    "is not a valid attribute",
    "couldn't resolve module",
    "Unsupported parameters for",
    "missing required arguments",
    "mapping values are not allowed",
];

/// Signatures of an environment that is one or two commands away from right.
const ENVIRONMENT_ERRORS: &[&str] = &[
    "command not found",
    ": not found",
    "No such file or directory",
    "Unable to locate package",
    "Permission denied",
    "Failed to start",
    "Job for ",
    "Address already in use",
    "Unit ",
    "is not running",
];

/// The recovery rule, in order:
/// 1. no cluster was kept (the run could not even start) → retry;
/// 2. the code timed out → retry (a hang is a design problem, and the node's
///    state is unreliable);
/// 3. the output shows the code is wrong as written (a syntax or playbook
///    error) → retry;
/// 4. the code ran to the end but checks fail → troubleshoot (the machine is
///    close; inspecting it is cheaper than a rewrite);
/// 5. the code stopped on an environment error (missing command, path,
///    package, permission, unit) → troubleshoot;
/// 6. a troubleshooting session already failed on this code → retry;
/// 7. anything else → retry.
///
/// Returns the path and the reason, which is recorded.
pub fn choose(failure: &Failure, cluster_kept: bool, troubleshot_before: bool) -> (Path, String) {
    if !cluster_kept {
        return (
            Path::Retry,
            "the failed cluster was not kept, so there is nothing to inspect".into(),
        );
    }
    if failure.timed_out {
        return (
            Path::Retry,
            "the code timed out: a hang is a design problem and the node's state is unreliable"
                .into(),
        );
    }
    let shows = |sig: &str| {
        failure.output.contains(sig)
            || failure
                .step_error
                .as_deref()
                .is_some_and(|e| e.contains(sig))
    };
    if let Some(sig) = DESIGN_ERRORS.iter().find(|s| shows(s)) {
        return (
            Path::Retry,
            format!("the output shows the code is wrong as written ({sig:?}): a rewrite is needed"),
        );
    }
    if troubleshot_before {
        return (
            Path::Retry,
            "a live troubleshooting session did not make this code pass: rewriting it".into(),
        );
    }
    if failure.step_ok {
        return (Path::Troubleshoot, "the code ran to the end but checks fail: the machine is close, inspecting it is cheaper than a rewrite".into());
    }
    if let Some(sig) = ENVIRONMENT_ERRORS
        .iter()
        .find(|s| failure.output.contains(*s))
    {
        return (Path::Troubleshoot, format!("the code stopped on an environment error ({sig:?}): cheap to diagnose and fix live"));
    }
    (
        Path::Retry,
        "the failure has no known environment signature: asking for a corrected version".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(step_ok: bool, output: &str) -> Failure {
        Failure {
            step_ok,
            step_error: None,
            timed_out: false,
            output: output.into(),
            checks: Vec::new(),
            journal: String::new(),
        }
    }

    #[test]
    fn failed_units_come_from_systemd_lines_and_service_checks() {
        let mut f = failure(
            false,
            "Job for nginx.service failed because the control process exited with error code.\n\
             See \"systemctl status nginx.service\" and \"journalctl -xeu nginx.service\" for details.\n\
             app@1.service: Main process exited, code=exited, status=1/FAILURE\n\
             Job for nginx.service failed again\n",
        );
        f.checks.push(FailedCheck {
            node: "web1".into(),
            kind: "service".into(),
            subject: "haproxy".into(),
            expected: serde_json::json!({"running": true}),
            actual: serde_json::json!({"running": false}),
            message: "not running".into(),
        });
        assert_eq!(f.failed_units(), ["nginx", "app@1", "haproxy"]);
        assert!(failure(false, "all fine").failed_units().is_empty());
    }

    #[test]
    fn the_rule() {
        assert_eq!(
            choose(&failure(false, "x: command not found"), false, false).0,
            Path::Retry
        );
        assert_eq!(
            choose(
                &failure(false, "line 3: syntax error near unexpected token `fi'"),
                true,
                false
            )
            .0,
            Path::Retry
        );
        assert_eq!(
            choose(&failure(true, ""), true, false).0,
            Path::Troubleshoot
        );
        assert_eq!(
            choose(
                &failure(false, "cp: cannot stat 'a': No such file or directory"),
                true,
                false
            )
            .0,
            Path::Troubleshoot
        );
        assert_eq!(choose(&failure(true, ""), true, true).0, Path::Retry);
        // A module given a parameter it does not have: the playbook is wrong.
        assert_eq!(
            choose(
                &failure(
                    false,
                    "\"msg\": \"Unsupported parameters for (ansible.legacy.copy) module: text.\""
                ),
                true,
                false
            )
            .0,
            Path::Retry
        );
        assert_eq!(
            choose(&failure(false, "exit 3"), true, false).0,
            Path::Retry
        );
        let mut hung = failure(true, "");
        hung.timed_out = true;
        assert_eq!(choose(&hung, true, false).0, Path::Retry);
    }
}
