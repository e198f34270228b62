//! Attack probes: what an attacker on the cluster's network, or on the node
//! itself, would find.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use rehearse_checks::CheckResult;
use rehearse_sandbox::{ClusterState, Engine, SandboxError};
use rehearse_spec::confidence::ProbeSpec;

const PROBE: &str = include_str!("../agent/probe.py");

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

fn run(
    engine: &Engine,
    cluster: &str,
    node: &str,
    args: Value,
    timeout: Duration,
) -> Result<Value, SandboxError> {
    let out = super::agent(engine, cluster, node, PROBE, &args, timeout)?;
    if let Some(e) = out.get("error").and_then(Value::as_str) {
        return Err(SandboxError::Refused(format!(
            "the probe on {node} failed: {e}"
        )));
    }
    Ok(out)
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
    let t = Instant::now();
    let name = spec.describe();
    let ms = || t.elapsed().as_millis() as u64;
    let mut checks = Vec::new();
    match spec {
        ProbeSpec::Ports { target, from, open } => {
            for ip in ips(&state, target) {
                let out = run(
                    engine,
                    cluster,
                    from,
                    json!({"probe": "scan", "host": ip}),
                    Duration::from_secs(300),
                )?;
                let found: Vec<u16> =
                    serde_json::from_value(out["open"].clone()).unwrap_or_default();
                // Ports that neither accepted nor refused: all of them means
                // the address is unreachable from `from` (nothing is open to
                // an attacker there), which the report says.
                let silent = out["silent"].as_u64().unwrap_or(0);
                let extra: Vec<u16> = found
                    .iter()
                    .copied()
                    .filter(|p| !open.contains(p))
                    .collect();
                checks.push(super::result(
                    &format!("open ports of {target} ({ip}) seen from {from}"),
                    from,
                    "probe:ports",
                    &format!("{target} {ip}"),
                    extra.is_empty(),
                    json!({ "open": open }),
                    json!({ "open": found, "silent_ports": silent, "unreachable": found.is_empty() && silent >= 65535 }),
                    format!("ports open beyond those declared: {extra:?} (declared: {open:?})"),
                    ms(),
                ));
            }
        }
        ProbeSpec::SshPassword { target, from } => {
            let out = run(
                engine,
                cluster,
                from,
                json!({"probe": "ssh", "host": target}),
                Duration::from_secs(30),
            )?;
            let methods: Vec<String> =
                serde_json::from_value(out["methods"].clone()).unwrap_or_default();
            let weak: Vec<&String> = methods
                .iter()
                .filter(|m| *m == "password" || *m == "keyboard-interactive")
                .collect();
            checks.push(super::result(
                &format!("ssh on {target} refuses passwords"),
                from,
                "probe:ssh_password",
                target,
                !methods.is_empty() && weak.is_empty(),
                json!({ "methods_without": ["password", "keyboard-interactive"] }),
                json!({ "methods": methods, "answer": out["raw"] }),
                if methods.is_empty() {
                    format!("sshd on {target} did not list its methods: {}", out["raw"])
                } else {
                    format!("sshd on {target} offers {weak:?} login")
                },
                ms(),
            ));
        }
        ProbeSpec::Internal {
            target,
            port,
            network,
            from,
        } => {
            let outside: Vec<String> = if from.is_empty() {
                state
                    .nodes
                    .iter()
                    .filter(|n| n.name != *target && !n.nics.iter().any(|c| c.network == *network))
                    .map(|n| n.name.clone())
                    .collect()
            } else {
                from.clone()
            };
            if outside.is_empty() {
                return Err(SandboxError::Refused(format!(
                    "every node is on network {network}: there is no outside node to probe {target}:{port} from; add one to the topology or name one in `from`"
                )));
            }
            let hosts = ips(&state, target);
            for node in &outside {
                let out = run(
                    engine,
                    cluster,
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
                checks.push(super::result(
                    &format!("{target}:{port} unreachable from {node} (outside {network})"),
                    node,
                    "probe:internal",
                    &format!("{target}:{port}"),
                    reached.is_empty(),
                    json!({ "reachable_from_outside": false }),
                    json!({ "reached": reached }),
                    format!(
                        "{node}, which is not on {network}, reached {target}:{port} at {}",
                        reached.join(", ")
                    ),
                    ms(),
                ));
            }
        }
        ProbeSpec::Files { node } => {
            let upper = engine
                .cluster_dir(cluster)
                .join("nodes")
                .join(node)
                .join("upper");
            if !upper.is_dir() {
                return Err(SandboxError::Refused(format!(
                    "node {node} has no copy-on-write layer to compare with its image (the files probe needs the nspawn backend)"
                )));
            }
            let mut writable = Vec::new();
            let mut setid = Vec::new();
            walk(&upper, &upper, &mut writable, &mut setid);
            checks.push(super::result(
                &format!("no world-writable file added on {node}"),
                node,
                "probe:files",
                "world-writable",
                writable.is_empty(),
                json!({ "world_writable": [] }),
                json!({ "world_writable": writable }),
                format!("world-writable: {}", writable.join(", ")),
                ms(),
            ));
            checks.push(super::result(
                &format!("no setuid/setgid binary added on {node}"),
                node,
                "probe:files",
                "setuid",
                setid.is_empty(),
                json!({ "setuid_setgid": [] }),
                json!({ "setuid_setgid": setid }),
                format!("setuid/setgid: {}", setid.join(", ")),
                ms(),
            ));
        }
        ProbeSpec::Tls {
            target,
            from,
            port,
            hostname,
            min_days,
        } => {
            let hostname = hostname.clone().unwrap_or_else(|| target.clone());
            let min_days = min_days.unwrap_or(14) as f64;
            let out = run(
                engine,
                cluster,
                from,
                json!({"probe": "tls", "host": target, "port": port, "hostname": hostname}),
                Duration::from_secs(60),
            )?;
            let subject = format!("{target}:{port}");
            let days = out["days_left"].as_f64().unwrap_or(-1.0);
            checks.push(super::result(
                &format!("tls {subject}: certificate valid {min_days} more days"),
                from,
                "probe:tls",
                &subject,
                days >= min_days,
                json!({ "days_left_min": min_days }),
                json!({ "days_left": days, "not_after": out["not_after"] }),
                if days < 0.0 {
                    format!(
                        "the certificate expired {:.1} days ago ({})",
                        -days, out["not_after"]
                    )
                } else {
                    format!(
                        "the certificate expires in {days:.1} days ({}), fewer than {min_days}",
                        out["not_after"]
                    )
                },
                ms(),
            ));
            checks.push(super::result(
                &format!("tls {subject}: certificate names {hostname}"),
                from,
                "probe:tls",
                &subject,
                out["hostname_matches"].as_bool() == Some(true),
                json!({ "hostname": hostname }),
                json!({ "names": out["names"] }),
                format!("the certificate is for {}, not {hostname}", out["names"]),
                ms(),
            ));
            let old: Vec<String> =
                serde_json::from_value(out["old_protocols"].clone()).unwrap_or_default();
            checks.push(super::result(
                &format!("tls {subject}: no TLS 1.0/1.1"),
                from,
                "probe:tls",
                &subject,
                old.is_empty(),
                json!({ "old_protocols": [] }),
                json!({ "old_protocols": old, "negotiated": out["version"] }),
                format!("the server accepts {}", old.join(" and ")),
                ms(),
            ));
        }
    }
    Ok(ProbeReport {
        name,
        kind: spec.kind().to_string(),
        checks,
    })
}

fn ips(state: &ClusterState, node: &str) -> Vec<String> {
    state
        .node(node)
        .map(|n| n.nics.iter().map(|c| c.ip.to_string()).collect())
        .unwrap_or_default()
}

/// Files of the node's own layer (what changed since the image) that anyone
/// may write, and binaries that run as their owner or group.
fn walk(root: &Path, dir: &Path, writable: &mut Vec<String>, setid: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let shown = || format!("/{}", path.strip_prefix(root).unwrap_or(&path).display());
        if meta.is_dir() {
            // World-writable folders are fine with the sticky bit (/tmp).
            if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                writable.push(shown());
            }
            walk(root, &path, writable, setid);
        } else if meta.is_file() {
            if mode & 0o002 != 0 {
                writable.push(shown());
            }
            if mode & 0o6000 != 0 {
                setid.push(shown());
            }
        }
    }
}
