//! What a check came to, and how it reads on a terminal.

use serde::{Deserialize, Serialize};

/// How a check ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Passed,
    Failed,
    /// The check's `skip_unless` precondition was unmet.
    Skipped,
}

impl Status {
    /// The mark a terminal report puts in front of the check.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Passed => "✔",
            Status::Failed => "✘",
            Status::Skipped => "○",
        }
    }
}

/// The result of one check on one node.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct CheckResult {
    pub name: String,
    pub node: String,
    /// The kind's key as written in files (`http`, `kernel-param`, ...).
    pub kind: String,
    /// What the check is about: the URL, path, unit, ...
    pub subject: String,
    pub status: Status,
    /// The properties the check states, e.g. `{"status": 200, "body": ["/web[12]/"]}`.
    pub expected: serde_json::Value,
    /// What the node showed for them at the last attempt, e.g.
    /// `{"status": 503, "body": "<first 2 KiB>"}`; `null` when nothing could be
    /// observed (the check was skipped, or the agent never reported).
    pub actual: serde_json::Value,
    /// Empty when passed; otherwise one sentence: what differed, or why skipped.
    pub message: String,
    /// How many times the check was evaluated; 0 when it never was.
    pub attempts: u32,
    pub duration_ms: u64,
}

impl CheckResult {
    pub fn passed(&self) -> bool {
        self.status == Status::Passed
    }
}

/// Longest name shown on a report line; longer ones (multi-line commands) are cut.
const LINE_NAME_CHARS: usize = 80;

/// One line of a terminal report:
/// `✔ node1 http http://lb/ (3 attempts, 1.2 s)` or
/// `✘ node1 http http://lb/: expected status 200, got 503 (41 attempts, 10.0 s)`.
pub fn render_line(r: &CheckResult) -> String {
    let name = if r.name.is_empty() {
        format!("{} {}", r.kind, r.subject)
    } else {
        r.name.clone()
    };
    let mut line = format!("{} {} {}", r.status.mark(), r.node, shorten(&name));
    if !r.message.is_empty() {
        line.push_str(": ");
        line.push_str(&r.message);
    }
    let attempts = match r.attempts {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    };
    line.push_str(&format!(
        " ({attempts}, {})",
        format_duration_ms(r.duration_ms)
    ));
    line
}

fn shorten(text: &str) -> String {
    let first = text.lines().next().unwrap_or_default();
    let cut: String = first.chars().take(LINE_NAME_CHARS).collect();
    if cut.len() < text.len() {
        format!("{}…", cut.trim_end())
    } else {
        cut
    }
}

fn format_duration_ms(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", ms as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn result(status: Status, message: &str, attempts: u32, duration_ms: u64) -> CheckResult {
        CheckResult {
            name: "http http://lb/".into(),
            node: "node1".into(),
            kind: "http".into(),
            subject: "http://lb/".into(),
            status,
            expected: json!({"status": 200}),
            actual: json!({"status": 503}),
            message: message.into(),
            attempts,
            duration_ms,
        }
    }

    #[test]
    fn passed_line_shows_attempts_and_time() {
        assert_eq!(
            render_line(&result(Status::Passed, "", 3, 1234)),
            "✔ node1 http http://lb/ (3 attempts, 1.2 s)"
        );
        assert_eq!(
            render_line(&result(Status::Passed, "", 1, 40)),
            "✔ node1 http http://lb/ (1 attempt, 40 ms)"
        );
    }

    #[test]
    fn failed_line_says_what_differed() {
        assert_eq!(
            render_line(&result(
                Status::Failed,
                "expected status 200, got 503",
                41,
                10_020
            )),
            "✘ node1 http http://lb/: expected status 200, got 503 (41 attempts, 10.0 s)"
        );
    }

    #[test]
    fn multi_line_names_are_cut_to_their_first_line() {
        let mut r = result(Status::Skipped, "precondition unmet: false exited 1", 0, 3);
        r.name = "command set -e\nsystemctl restart x".into();
        assert_eq!(
            render_line(&r),
            "○ node1 command set -e…: precondition unmet: false exited 1 (0 attempts, 3 ms)"
        );
    }

    #[test]
    fn status_is_lowercase_in_json() {
        let r = result(Status::Skipped, "x", 0, 0);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["status"], "skipped");
        let back: CheckResult = serde_json::from_value(v).unwrap();
        assert_eq!(back.status, Status::Skipped);
    }
}
