//! Whether a port meant for one network is reachable from nodes outside it.

use std::time::Duration;

use serde_json::json;

use rehearse_checks::CheckResult;
use rehearse_sandbox::SandboxError;

use super::Probe;
use crate::Finding;

/// Probes `target:port` from `from`, or from every node not on `network`.
pub(super) fn probe(
    p: &Probe<'_>,
    target: &str,
    port: u16,
    network: &str,
    from: &[String],
) -> Result<Vec<CheckResult>, SandboxError> {
    let outside: Vec<String> = if from.is_empty() {
        p.state
            .nodes
            .iter()
            .filter(|n| n.name != target && !n.nics.iter().any(|c| c.network == network))
            .map(|n| n.name.clone())
            .collect()
    } else {
        from.to_vec()
    };
    if outside.is_empty() {
        return Err(SandboxError::Refused(format!(
            "every node is on network {network}: there is no outside node to probe {target}:{port} from; add one to the topology or name one in `from`"
        )));
    }
    let hosts = p.ips(target);
    let mut checks = Vec::new();
    for node in &outside {
        let out = p.agent(
            node,
            json!({"probe": "connect", "hosts": hosts, "port": port}),
            Duration::from_secs(60),
        )?;
        let reached: Vec<String> = out["reached"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| v.as_bool() == Some(true))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        checks.push(
            Finding {
                name: format!("{target}:{port} unreachable from {node} (outside {network})"),
                node,
                kind: "probe:internal",
                subject: format!("{target}:{port}"),
                passed: reached.is_empty(),
                expected: json!({ "reachable_from_outside": false }),
                actual: json!({ "reached": reached }),
                message: format!(
                    "{node}, which is not on {network}, reached {target}:{port} at {}",
                    reached.join(", ")
                ),
            }
            .check(p.elapsed_ms()),
        );
    }
    Ok(checks)
}
