//! Probes of a live cluster beyond checks: HTTP load driven from a node
//! (latencies measured where the load runs) and attack probes run from
//! another node. Both end in [`CheckResult`]s, so reports, JUnit and the run
//! store show them like any other check.

mod load;
mod probe;

pub use load::{run_load, LoadReport, Second};
pub use probe::{run_probe, ProbeReport};

use rehearse_checks::{CheckResult, Status};
use rehearse_sandbox::{Engine, ExecRequest, SandboxError};

/// Runs a Python agent on a node with one JSON argument and reads the JSON it
/// prints.
fn agent(
    engine: &Engine,
    cluster: &str,
    node: &str,
    script: &str,
    args: &serde_json::Value,
    timeout: std::time::Duration,
) -> Result<serde_json::Value, SandboxError> {
    let req = ExecRequest {
        argv: vec![
            "python3".into(),
            "-I".into(),
            "-c".into(),
            script.into(),
            args.to_string(),
        ],
        timeout: Some(timeout),
        ..Default::default()
    };
    let (outcome, out, err) = engine.exec_capture(cluster, node, &req)?;
    serde_json::from_str(out.trim()).map_err(|e| {
        SandboxError::Refused(format!(
            "the agent on {node} exited {} without a report ({e}): {}",
            outcome.exit_code,
            err.trim()
        ))
    })
}

/// What a load run or a probe found about one thing, to be reported as a
/// check result.
struct Finding<'a> {
    name: String,
    node: &'a str,
    kind: &'static str,
    subject: String,
    passed: bool,
    expected: serde_json::Value,
    actual: serde_json::Value,
    /// What is wrong; said only when it did not pass.
    message: String,
}

impl Finding<'_> {
    /// The check result, `duration_ms` after the run or probe began.
    fn check(self, duration_ms: u64) -> CheckResult {
        CheckResult {
            name: self.name,
            node: self.node.to_string(),
            kind: self.kind.to_string(),
            subject: self.subject,
            status: if self.passed {
                Status::Passed
            } else {
                Status::Failed
            },
            expected: self.expected,
            actual: self.actual,
            message: if self.passed {
                String::new()
            } else {
                self.message
            },
            attempts: 1,
            duration_ms,
        }
    }
}
