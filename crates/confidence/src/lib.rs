//! Confidence on a live cluster beyond checks: HTTP load driven from a node
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

/// A check result built from a finding.
#[allow(clippy::too_many_arguments)]
fn result(
    name: &str,
    node: &str,
    kind: &str,
    subject: &str,
    passed: bool,
    expected: serde_json::Value,
    actual: serde_json::Value,
    message: String,
    duration_ms: u64,
) -> CheckResult {
    CheckResult {
        name: name.to_string(),
        node: node.to_string(),
        kind: kind.to_string(),
        subject: subject.to_string(),
        status: if passed {
            Status::Passed
        } else {
            Status::Failed
        },
        expected,
        actual,
        message: if passed { String::new() } else { message },
        attempts: 1,
        duration_ms,
    }
}
