//! One agent run on one node: send the checks, read the report, and turn
//! anything else (an unreachable node, a crash, a timeout, garbage) into failed
//! results that say what happened.

use std::io::{Cursor, Write};
use std::time::Instant;

use rehearse_sandbox::{ExecIo, ExecRequest, NodeExec, SandboxError};
use rehearse_spec::scenario::Check;
use serde_json::Value;

use crate::agent::{self, AgentInfo};
use crate::result::{CheckResult, Status};

/// The checks to evaluate on one node. A check's `on` is not looked at here:
/// the caller has resolved it to nodes.
#[derive(Clone, Debug)]
pub struct NodeChecks<'a> {
    pub node: String,
    pub checks: Vec<&'a Check>,
}

/// The results of one node, with what the agent said about its run.
#[derive(Clone, Debug)]
pub struct NodeReport {
    pub node: String,
    /// One per check, in the order given.
    pub results: Vec<CheckResult>,
    /// `None` when the agent did not run or did not report (the results say why).
    pub agent: Option<AgentInfo>,
}

/// How much of the agent's stderr a failure message quotes.
const STDERR_TAIL_BYTES: usize = 1024;

/// Evaluates a node's checks in one agent run.
pub fn evaluate_node(exec: &dyn NodeExec, cluster: &str, work: &NodeChecks<'_>) -> NodeReport {
    let node = work.node.as_str();
    if work.checks.is_empty() {
        return NodeReport {
            node: node.to_string(),
            results: Vec::new(),
            agent: None,
        };
    }
    let started = Instant::now();
    let req = ExecRequest {
        argv: vec![
            "python3".into(),
            // Isolated: no PYTHON* variables, no user site, no module shadowing
            // from the working directory.
            "-I".into(),
            "-c".into(),
            agent::AGENT.into(),
        ],
        env: Vec::new(),
        timeout: Some(agent::exec_timeout(&work.checks)),
        workdir: Some("/".into()),
    };
    let mut stdout = Vec::new();
    let mut stderr = Tail::new(STDERR_TAIL_BYTES);
    let outcome = exec.exec(
        cluster,
        node,
        &req,
        ExecIo {
            stdin: Some(Box::new(Cursor::new(agent::request(&work.checks)))),
            stdout: &mut stdout,
            stderr: &mut stderr,
        },
    );
    let elapsed_ms = started.elapsed().as_millis() as u64;
    tracing::debug!(
        node,
        checks = work.checks.len(),
        ms = elapsed_ms,
        "check agent ran"
    );

    let failure = match outcome {
        Err(SandboxError::Timeout { secs, .. }) => format!(
            "the check agent on {node} did not finish within {secs:.0} s and was killed{}",
            stderr.quoted()
        ),
        Err(e) => format!("checks could not run on {node}: {e}"),
        Ok(outcome) => match agent::parse_report(&stdout) {
            Ok(report) => return assemble(work, report, elapsed_ms),
            Err(parse) => {
                let printed = if stdout.iter().all(u8::is_ascii_whitespace) {
                    "no report".to_string()
                } else {
                    format!("an unreadable report ({parse})")
                };
                let ended = match outcome.exit_code {
                    0 => "exited normally".to_string(),
                    code if code > 128 => format!("was killed by signal {}", code - 128),
                    code => format!("exited with status {code}"),
                };
                format!(
                    "the check agent on {node} {ended} with {printed}{}",
                    stderr.quoted()
                )
            }
        },
    };
    NodeReport {
        node: node.to_string(),
        results: work
            .checks
            .iter()
            .map(|c| unreported(c, node, failure.clone(), elapsed_ms))
            .collect(),
        agent: None,
    }
}

/// Matches the agent's results back to the checks; a check it left out fails.
fn assemble(work: &NodeChecks<'_>, report: agent::Report, elapsed_ms: u64) -> NodeReport {
    let node = work.node.as_str();
    let mut by_id: Vec<Option<agent::WireResult>> = work.checks.iter().map(|_| None).collect();
    for r in report.results {
        if let Some(slot) = by_id.get_mut(r.id) {
            *slot = Some(r);
        }
    }
    let results = work
        .checks
        .iter()
        .zip(by_id)
        .map(|(check, wire)| match wire {
            Some(w) => CheckResult {
                name: check.name.clone(),
                node: node.to_string(),
                kind: check.kind.key().to_string(),
                subject: check.kind.subject().to_string(),
                status: w.status,
                expected: match w.expected {
                    Value::Null => agent::stated_properties(&check.kind),
                    e => e,
                },
                actual: w.actual,
                message: w.message,
                attempts: w.attempts,
                duration_ms: w.duration_ms,
            },
            None => unreported(
                check,
                node,
                format!("the check agent on {node} reported no result for this check"),
                elapsed_ms,
            ),
        })
        .collect();
    NodeReport {
        node: node.to_string(),
        results,
        agent: Some(report.agent),
    }
}

fn unreported(check: &Check, node: &str, message: String, elapsed_ms: u64) -> CheckResult {
    CheckResult {
        name: check.name.clone(),
        node: node.to_string(),
        kind: check.kind.key().to_string(),
        subject: check.kind.subject().to_string(),
        status: Status::Failed,
        expected: agent::stated_properties(&check.kind),
        actual: Value::Null,
        message,
        attempts: 0,
        duration_ms: elapsed_ms,
    }
}

/// Keeps the last `limit` bytes written to it.
struct Tail {
    buf: Vec<u8>,
    limit: usize,
}

impl Tail {
    fn new(limit: usize) -> Self {
        Tail {
            buf: Vec::new(),
            limit,
        }
    }

    /// `; its stderr ends with: ...`, or nothing when it printed nothing.
    fn quoted(&self) -> String {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim();
        if text.is_empty() {
            "; it printed nothing on stderr".to_string()
        } else {
            format!("; its stderr ends with: {text}")
        }
    }
}

impl Write for Tail {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() > self.limit {
            let excess = self.buf.len() - self.limit;
            self.buf.drain(..excess);
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use rehearse_spec::scenario::CheckKind;
    use serde_json::json;

    use rehearse_sandbox::ExecOutcome;

    use super::*;

    /// Plays back a fixed exec: what it prints and how it ends.
    struct Scripted {
        stdout: String,
        stderr: String,
        end: fn() -> Result<ExecOutcome, SandboxError>,
        calls: AtomicUsize,
    }

    impl Scripted {
        fn new(stdout: &str, stderr: &str, end: fn() -> Result<ExecOutcome, SandboxError>) -> Self {
            Scripted {
                stdout: stdout.into(),
                stderr: stderr.into(),
                end,
                calls: AtomicUsize::new(0),
            }
        }
    }

    impl NodeExec for Scripted {
        fn exec(
            &self,
            _cluster: &str,
            _node: &str,
            req: &ExecRequest,
            io: ExecIo<'_>,
        ) -> Result<ExecOutcome, SandboxError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            assert!(
                req.timeout.is_some(),
                "the agent always runs with a timeout"
            );
            io.stdout.write_all(self.stdout.as_bytes()).unwrap();
            io.stderr.write_all(self.stderr.as_bytes()).unwrap();
            (self.end)()
        }

        fn copy_to(
            &self,
            _cluster: &str,
            _node: &str,
            _src: &std::path::Path,
            _dest: &str,
        ) -> Result<(), SandboxError> {
            unreachable!("checks copy no files to nodes")
        }
    }

    fn exited(code: i32) -> Result<ExecOutcome, SandboxError> {
        Ok(ExecOutcome {
            exit_code: code,
            duration_ms: 5,
            timed_out: false,
        })
    }

    fn checks() -> Vec<Check> {
        ["/etc/hostname", "/etc/hosts"]
            .iter()
            .map(|path| Check {
                name: format!("file {path}"),
                on: vec![],
                timeout: Duration::ZERO,
                skip_unless: None,
                kind: CheckKind::File {
                    path: path.to_string(),
                    exists: true,
                    filetype: None,
                    mode: None,
                    owner: None,
                    group: None,
                    contains: vec![],
                },
            })
            .collect()
    }

    fn run(exec: &Scripted, checks: &[Check]) -> NodeReport {
        let work = NodeChecks {
            node: "n1".into(),
            checks: checks.iter().collect(),
        };
        evaluate_node(exec, "c1", &work)
    }

    fn assert_all_failed(report: &NodeReport, message: &str) {
        assert_eq!(report.results.len(), 2);
        assert!(report.agent.is_none());
        for r in &report.results {
            assert_eq!(r.status, Status::Failed);
            assert_eq!(r.message, message);
            assert_eq!(r.actual, Value::Null);
            assert_eq!(r.attempts, 0);
            assert_eq!(r.node, "n1");
            assert_eq!(r.kind, "file");
        }
        assert_eq!(
            report.results[1].expected,
            json!({"path": "/etc/hosts", "exists": true})
        );
    }

    #[test]
    fn a_crash_fails_every_check_and_quotes_stderr() {
        let exec = Scripted::new(
            "",
            "Traceback (most recent call last):\nMemoryError\n",
            || exited(1),
        );
        assert_all_failed(
            &run(&exec, &checks()),
            "the check agent on n1 exited with status 1 with no report; its stderr ends with: \
             Traceback (most recent call last):\nMemoryError",
        );
    }

    #[test]
    fn garbage_on_stdout_is_not_a_report() {
        let exec = Scripted::new("hello\n", "", || exited(0));
        let report = run(&exec, &checks());
        let message = &report.results[0].message;
        assert!(
            message
                .starts_with("the check agent on n1 exited normally with an unreadable report ("),
            "{message}"
        );
        assert!(
            message.ends_with("; it printed nothing on stderr"),
            "{message}"
        );
        assert_all_failed(&report, message);
    }

    #[test]
    fn a_timeout_says_the_agent_was_killed() {
        let exec = Scripted::new("{\"agent\":", "started\n", || {
            Err(SandboxError::Timeout {
                node: "n1".into(),
                secs: 12.0,
            })
        });
        assert_all_failed(
            &run(&exec, &checks()),
            "the check agent on n1 did not finish within 12 s and was killed; its stderr ends with: started",
        );
    }

    #[test]
    fn an_unreachable_node_gives_the_engine_error() {
        let exec = Scripted::new("", "", || {
            Err(SandboxError::NodeDown {
                cluster: "c1".into(),
                node: "n1".into(),
            })
        });
        let report = run(&exec, &checks());
        let message = report.results[0].message.clone();
        assert!(
            message.starts_with("checks could not run on n1: node n1 of cluster c1 is not running")
        );
        assert_all_failed(&report, &message);
    }

    #[test]
    fn a_result_the_agent_left_out_fails() {
        let exec = Scripted::new(
            r#"{"agent": {"protocol": 1, "pid": 7, "python": "3.11.2", "checks": 2},
                "results": [{"id": 1, "status": "passed", "expected": {"exists": true},
                             "actual": {"exists": true}, "message": "", "attempts": 2,
                             "duration_ms": 300}]}"#,
            "",
            || exited(0),
        );
        let report = run(&exec, &checks());
        assert_eq!(report.agent.as_ref().unwrap().pid, 7);
        let [first, second] = &report.results[..] else {
            panic!()
        };
        assert_eq!(first.status, Status::Failed);
        assert_eq!(
            first.message,
            "the check agent on n1 reported no result for this check"
        );
        assert_eq!(second.status, Status::Passed);
        assert_eq!(second.name, "file /etc/hosts");
        assert_eq!(second.subject, "/etc/hosts");
        assert_eq!(second.attempts, 2);
        assert_eq!(second.actual, json!({"exists": true}));
    }

    #[test]
    fn stderr_quotes_are_bounded() {
        let noise = "x".repeat(10_000) + "the end";
        let exec = Scripted::new("", &noise, || exited(1));
        let report = run(&exec, &checks());
        let message = &report.results[0].message;
        assert!(message.ends_with("the end"));
        assert!(message.len() < STDERR_TAIL_BYTES + 200, "{}", message.len());
    }

    #[test]
    fn a_node_without_checks_is_not_contacted() {
        let exec = Scripted::new("", "", || exited(0));
        let report = run(&exec, &[]);
        assert!(report.results.is_empty());
        assert_eq!(exec.calls.load(Ordering::SeqCst), 0);
    }
}
