//! Faults inside a node: a full disk, a stopped or killed service.

use std::time::Duration;

use crate::backend::ExecRequest;
use crate::cluster::Engine;
use crate::SandboxError;

use super::invalid;

fn sh(engine: &Engine, id: &str, node: &str, script: &str) -> Result<String, SandboxError> {
    let req = ExecRequest {
        timeout: Some(Duration::from_secs(60)),
        ..ExecRequest::shell(script)
    };
    let (outcome, out, err) = engine.exec_capture(id, node, &req)?;
    if outcome.exit_code != 0 {
        return Err(invalid(format!(
            "on {node}: {}",
            if err.trim().is_empty() {
                out.trim()
            } else {
                err.trim()
            }
        )));
    }
    Ok(out)
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Lays a small tmpfs over `path` (keeping its files, owner and mode) and
/// fills it, so writes under `path` fail with ENOSPC; the host's disk is not
/// used.
pub(super) fn fill_disk(
    engine: &Engine,
    id: &str,
    node: &str,
    path: &str,
    size_mb: u32,
) -> Result<String, SandboxError> {
    let p = quote(path);
    let script = format!(
        r#"set -e
p={p}
if grep -q "^rehearse-diskfull $p tmpfs " /proc/mounts; then echo "$p is already full" >&2; exit 3; fi
mkdir -p "$p"
keep=$(mktemp -d /run/rehearse-diskfull.XXXXXX)
cp -a "$p"/. "$keep"/ 2>/dev/null || true
owner=$(stat -c %u:%g "$p"); mode=$(stat -c %a "$p")
mount -t tmpfs -o size={size_mb}m,mode="$mode" rehearse-diskfull "$p"
chown "$owner" "$p"
cp -a "$keep"/. "$p"/ 2>/dev/null || true
rm -rf "$keep"
dd if=/dev/zero of="$p/.rehearse-fill" bs=64k 2>/dev/null || true
df -h "$p" | tail -1
"#
    );
    let df = sh(engine, id, node, &script)?;
    Ok(format!(
        "{size_mb} MiB tmpfs over {path} on {node}, filled ({})",
        df.split_whitespace().collect::<Vec<_>>().join(" ")
    ))
}

pub(super) fn unfill_disk(
    engine: &Engine,
    id: &str,
    node: &str,
    path: &str,
) -> Result<(), SandboxError> {
    if !node_up(engine, id, node) {
        return Ok(());
    }
    let p = quote(path);
    sh(
        engine,
        id,
        node,
        &format!(
            "p={p}; while grep -q \"^rehearse-diskfull $p tmpfs \" /proc/mounts; do umount -l \"$p\"; done"
        ),
    )
    .map(drop)
}

pub(super) fn stop_service(
    engine: &Engine,
    id: &str,
    node: &str,
    service: &str,
    kill: bool,
) -> Result<String, SandboxError> {
    let s = quote(service);
    let state = sh(
        engine,
        id,
        node,
        &format!("systemctl is-active {s} || true"),
    )?;
    if state.trim() != "active" {
        return Err(invalid(format!(
            "service {service} on {node} is {}, not active; there is nothing to {}",
            state.trim(),
            if kill { "kill" } else { "stop" }
        )));
    }
    if kill {
        sh(
            engine,
            id,
            node,
            &format!("systemctl kill --signal=SIGKILL {s}"),
        )?;
        Ok(format!("SIGKILL to every process of {service} on {node}"))
    } else {
        sh(engine, id, node, &format!("systemctl stop {s}"))?;
        Ok(format!("systemctl stop {service} on {node}"))
    }
}

pub(super) fn start_service(
    engine: &Engine,
    id: &str,
    node: &str,
    service: &str,
) -> Result<(), SandboxError> {
    if !node_up(engine, id, node) {
        return Ok(());
    }
    let s = quote(service);
    sh(
        engine,
        id,
        node,
        &format!("systemctl is-active -q {s} || {{ systemctl reset-failed {s} 2>/dev/null; systemctl start {s}; }}"),
    )
    .map(drop)
}

fn node_up(engine: &Engine, id: &str, node: &str) -> bool {
    engine
        .get(id)
        .ok()
        .and_then(|s| s.node(node).ok().and_then(|n| n.leader))
        .is_some_and(|l| l.is_alive())
}
