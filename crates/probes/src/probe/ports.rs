//! Which ports of a node answer from another node, beyond those declared.

use std::time::Duration;

use serde_json::json;

use rehearse_checks::CheckResult;
use rehearse_sandbox::SandboxError;

use super::Probe;
use crate::Finding;

pub(super) fn probe(
    p: &Probe<'_>,
    target: &str,
    from: &str,
    open: &[u16],
) -> Result<Vec<CheckResult>, SandboxError> {
    let mut checks = Vec::new();
    for ip in p.ips(target) {
        let out = p.agent(
            from,
            json!({"probe": "scan", "host": ip}),
            Duration::from_secs(300),
        )?;
        let found: Vec<u16> = serde_json::from_value(out["open"].clone()).unwrap_or_default();
        // Ports that neither accepted nor refused: all of them means
        // the address is unreachable from `from` (nothing is open to
        // an attacker there), which the report says.
        let silent = out["silent"].as_u64().unwrap_or(0);
        let extra: Vec<u16> = found
            .iter()
            .copied()
            .filter(|p| !open.contains(p))
            .collect();
        checks.push(
            Finding {
                name: format!("open ports of {target} ({ip}) seen from {from}"),
                node: from,
                kind: "probe:ports",
                subject: format!("{target} {ip}"),
                passed: extra.is_empty(),
                expected: json!({ "open": open }),
                actual: json!({ "open": found, "silent_ports": silent, "unreachable": found.is_empty() && silent >= 65535 }),
                message: format!("ports open beyond those declared: {extra:?} (declared: {open:?})"),
            }
            .check(p.elapsed_ms()),
        );
    }
    Ok(checks)
}
