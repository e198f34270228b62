//! One agent run on one node: send the checks, read the report, and turn
//! anything else (an unreachable node, a crash, a timeout, garbage) into failed
//! results that say what happened.

use std::io::{Cursor, Write};
use std::time::Instant;

use rehearse_sandbox::{Engine, ExecIo, ExecOutcome, ExecRequest, SandboxError};
use rehearse_spec::scenario::Check;
use serde_json::Value;

use crate::agent::{self, AgentInfo};
use crate::result::{CheckResult, Status};

/// Runs a command on a cluster node: the [`Engine`], or a stand-in in tests.
pub trait NodeExec: Sync {
    fn exec(
        &self,
        cluster: &str,
        node: &str,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, SandboxError>;
}

impl NodeExec for Engine {
    fn exec(
        &self,
        cluster: &str,
        node: &str,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, SandboxError> {
        Engine::exec(self, cluster, node, req, io)
    }
}

/// The checks to evaluate on one node.
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
