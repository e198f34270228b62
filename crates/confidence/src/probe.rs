//! Attack probes: what an attacker on the cluster's network, or on the node
//! itself, would find.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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
            // sshd may allow passwords to some users only (`Match User`):
            // ask as each account of the target that can log in, too.
            let users = login_users(engine, cluster, target)?;
            let out = run(
                engine,
                cluster,
                from,
                json!({"probe": "ssh", "host": target, "users": users}),
                Duration::from_secs(30 + 6 * users.len() as u64),
            )?;
            let methods: Vec<String> =
                serde_json::from_value(out["methods"].clone()).unwrap_or_default();
            let by_user: std::collections::BTreeMap<String, Vec<String>> =
                serde_json::from_value(out["by_user"].clone()).unwrap_or_default();
            let weak_method = |m: &String| m == "password" || m == "keyboard-interactive";
            let weak: Vec<&String> = methods.iter().filter(|m| weak_method(m)).collect();
            let weak_users: Vec<String> = by_user
                .iter()
                .filter(|(u, m)| *u != "rehearse-probe" && m.iter().any(weak_method))
                .map(|(u, _)| u.clone())
                .collect();
            checks.push(super::result(
                &format!("ssh on {target} refuses passwords"),
                from,
                "probe:ssh_password",
                target,
                !methods.is_empty() && weak.is_empty(),
                json!({ "methods_without": ["password", "keyboard-interactive"] }),
                json!({ "methods": methods, "by_user": by_user, "answer": out["raw"] }),
                if methods.is_empty() {
                    format!("sshd on {target} did not list its methods: {}", out["raw"])
                } else if weak_users.is_empty() {
                    format!("sshd on {target} offers {weak:?} login")
                } else {
                    format!(
                        "sshd on {target} offers {weak:?} login (to {})",
                        weak_users.join(", ")
                    )
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
            let node_dir = upper.parent().unwrap_or(&upper).to_path_buf();
            let (writable, setid) = added_files(&node_dir, &upper);
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

/// Accounts of a node that can log in: root and users (UID 1000 and up)
/// whose shell is not nologin/false; at most 20.
fn login_users(engine: &Engine, cluster: &str, node: &str) -> Result<Vec<String>, SandboxError> {
    let req = rehearse_sandbox::ExecRequest {
        argv: vec!["getent".into(), "passwd".into()],
        timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    let (_, out, _) = engine.exec_capture(cluster, node, &req)?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let uid: u32 = f.get(2)?.parse().ok()?;
            let shell = f.get(6)?;
            let can_log_in = !shell.ends_with("nologin") && !shell.ends_with("false");
            (can_log_in && (uid == 0 || (1000..65534).contains(&uid))).then(|| f[0].to_string())
        })
        .take(20)
        .collect())
}

fn ips(state: &ClusterState, node: &str) -> Vec<String> {
    state
        .node(node)
        .map(|n| n.nics.iter().map(|c| c.ip.to_string()).collect())
        .unwrap_or_default()
}

/// World-writable files (and folders without the sticky bit) and
/// setuid/setgid binaries that the node has now and its image did not: the
/// node's copy-on-write layers are walked, each candidate is taken as it is
/// now in the node's root, and compared with the same path in the image, so a
/// file merely copied up (touched, upgraded, chmod-ed to the same mode) is not
/// reported.
fn added_files(node_dir: &Path, upper: &Path) -> (Vec<String>, Vec<String>) {
    let root = node_dir.join("root");
    let lowers = lower_dirs(&root);
    // Layers of the node's own changes: its upper, and any snapshot layers
    // between it and the image (every lower but the last).
    let mut layers = vec![upper.to_path_buf()];
    if lowers.len() > 1 {
        layers.extend(lowers[..lowers.len() - 1].iter().cloned());
    }
    let image = lowers.last();
    let mounted = !lowers.is_empty();
    let mut candidates = std::collections::BTreeSet::new();
    for layer in &layers {
        walk(layer, layer, &mut candidates);
    }
    let mode_of = |base: &Path, rel: &Path| {
        std::fs::symlink_metadata(base.join(rel))
            .ok()
            .filter(|m| m.is_file() || m.is_dir())
            .map(|m| (m.is_dir(), m.permissions().mode()))
    };
    let mut writable = Vec::new();
    let mut setid = Vec::new();
    for rel in candidates {
        // As it is now; without the mounted root (node stopped), the layer's copy.
        let now = if mounted {
            mode_of(&root, &rel)
        } else {
            layers.iter().find_map(|l| mode_of(l, &rel))
        };
        let Some((dir, mode)) = now else { continue };
        let before = image.and_then(|i| mode_of(i, &rel)).map(|(_, m)| m);
        let shown = format!("/{}", rel.display());
        if is_writable(dir, mode) && !before.is_some_and(|b| is_writable(dir, b)) {
            writable.push(shown.clone());
        }
        if !dir && mode & 0o6000 != 0 && before.is_none_or(|b| b & 0o6000 != mode & 0o6000) {
            setid.push(shown);
        }
    }
    (writable, setid)
}

/// Anyone may write it: a file with the world-write bit, or a folder with it
/// and without the sticky bit (`/tmp` is fine).
fn is_writable(dir: bool, mode: u32) -> bool {
    mode & 0o002 != 0 && !(dir && mode & 0o1000 != 0)
}

/// The lower layers of the overlay mounted at `root`, top first (the image
/// last); empty when it is not mounted.
fn lower_dirs(root: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = root.to_string_lossy();
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.get(4).map(|p| unescape(p)) != Some(want.to_string()) {
            continue;
        }
        let Some(options) = fields.last() else {
            continue;
        };
        for opt in options.split(',') {
            if let Some(list) = opt.strip_prefix("lowerdir=") {
                return split_lowers(list).into_iter().map(PathBuf::from).collect();
            }
        }
    }
    Vec::new()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// `a:b\:c` → [a, b:c] (overlayfs escapes colons in layer paths).
fn split_lowers(list: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().unwrap().push(n);
                }
            }
            ':' => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter()
        .filter(|s| !s.is_empty())
        .map(|s| unescape(&s))
        .collect()
}

/// Paths (relative to the layer) of files and folders that have a
/// world-write, setuid or setgid bit in this layer.
fn walk(root: &Path, dir: &Path, found: &mut std::collections::BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let rel = || path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        if meta.is_dir() {
            if is_writable(true, mode) {
                found.insert(rel());
            }
            walk(root, &path, found);
        } else if meta.is_file() && (mode & 0o002 != 0 || mode & 0o6000 != 0) {
            found.insert(rel());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_lower_lists_are_split_and_unescaped() {
        assert_eq!(
            split_lowers("/a/snap\\:1:/images/x/rootfs"),
            ["/a/snap:1", "/images/x/rootfs"]
        );
        assert_eq!(split_lowers("/img"), ["/img"]);
        assert_eq!(unescape("/var/my\\040dir"), "/var/my dir");
    }

    #[test]
    fn sticky_folders_are_not_world_writable_findings() {
        assert!(!is_writable(true, 0o41777));
        assert!(is_writable(true, 0o40777));
        assert!(is_writable(false, 0o100666));
        assert!(!is_writable(false, 0o100644));
    }
}
