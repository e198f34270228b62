//! Attack probes: what an attacker on the cluster's network, or on the node
//! itself, would find. One file per kind of probe; each turns what its agent
//! run found into check results.

mod files;
mod internal;
mod ports;
mod ssh;
mod tls;

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use rehearse_checks::CheckResult;
use rehearse_sandbox::{ClusterState, Engine, SandboxError};
use rehearse_spec::trials::ProbeSpec;

const PROBE: &str = include_str!("../../agent/probe.py");

/// A probe and what it found, as checks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeReport {
    pub name: String,
    pub kind: String,
    pub checks: Vec<CheckResult>,
}

impl ProbeReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed())
    }
}

/// A probe under way on one live cluster.
struct Probe<'a> {
    engine: &'a Engine,
    cluster: &'a str,
    state: ClusterState,
    started: Instant,
}

impl Probe<'_> {
    /// Runs the probe agent on `node` and reads its report; an error it
    /// reports is the probe's error.
    fn agent(&self, node: &str, args: Value, timeout: Duration) -> Result<Value, SandboxError> {
        let out = super::agent(self.engine, self.cluster, node, PROBE, &args, timeout)?;
        if let Some(e) = out.get("error").and_then(Value::as_str) {
            return Err(SandboxError::Refused(format!(
                "the probe on {node} failed: {e}"
            )));
        }
        Ok(out)
    }

    /// Milliseconds since the probe began.
    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The addresses of a node, one per network it is on.
    fn ips(&self, node: &str) -> Vec<String> {
        self.state
            .node(node)
            .map(|n| n.nics.iter().map(|c| c.ip.to_string()).collect())
            .unwrap_or_default()
    }
}

/// Runs one probe. A finding is a failed check; an error is a probe that
/// could not be carried out.
pub fn run_probe(
    engine: &Engine,
    cluster: &str,
    spec: &ProbeSpec,
) -> Result<ProbeReport, SandboxError> {
    let state = engine.get(cluster)?;
    for n in spec.nodes() {
        state.node(n)?;
    }
    let probe = Probe {
        engine,
        cluster,
        state,
        started: Instant::now(),
    };
    let checks = match spec {
        ProbeSpec::Ports { target, from, open } => ports::probe(&probe, target, from, open)?,
        ProbeSpec::SshPassword { target, from } => ssh::probe(&probe, target, from)?,
        ProbeSpec::Internal {
            target,
            port,
            network,
            from,
        } => internal::probe(&probe, target, *port, network, from)?,
        ProbeSpec::Files { node } => files::probe(&probe, node)?,
        ProbeSpec::Tls {
            target,
            from,
            port,
            hostname,
            min_days,
        } => tls::probe(
            &probe,
            &tls::Target {
                target,
                from,
                port: *port,
                hostname: hostname.as_deref().unwrap_or(target),
                min_days: min_days.unwrap_or(14) as f64,
            },
        )?,
    };
    Ok(ProbeReport {
        name: spec.describe(),
        kind: spec.kind().to_string(),
        checks,
    })
}
