//! Commands into a VM node go over SSH with the cluster's own key.
//!
//! Why SSH rather than a virtio-serial or vsock agent: every image already
//! runs sshd with the cluster's host key and the cluster's client key
//! authorised (seeded for containers too), so the guest needs nothing extra,
//! and the minimal init, which only starts sshd, is reachable the same way as a
//! full systemd boot. SSH carries stdin, stdout and stderr as separate streams
//! and the exit status, which an agent would have to re-invent over one serial
//! line; the host already reaches every node on its bridge. The cost is a
//! handshake per command (milliseconds with KVM).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::backend::{ExecIo, ExecOutcome, ExecRequest};
use crate::state::NodeState;
use crate::SandboxError;

const NODE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The host key alias the node's known_hosts file names: the node's host key
/// is checked, whatever address it answers on.
const HOST_ALIAS: &str = "rehearse-node";

/// Writes the known_hosts file SSH checks the node's host key against.
pub fn write_known_hosts(cluster_dir: &Path, node_dir: &Path) -> Result<(), SandboxError> {
    let public = cluster_dir.join("ssh/host_ed25519.pub");
    let key =
        std::fs::read_to_string(&public).map_err(|e| SandboxError::io("reading", &public, e))?;
    let key: Vec<&str> = key.split_whitespace().take(2).collect();
    let path = node_dir.join("known_hosts");
    std::fs::write(&path, format!("{HOST_ALIAS} {}\n", key.join(" ")))
        .map_err(|e| SandboxError::io("writing", &path, e))
}

/// The `ssh` command reaching `node` as root; `remote` is the command line
/// the node's shell runs. `stdin` says whether input is passed on.
pub fn ssh_command(
    cluster_dir: &Path,
    node_dir: &Path,
    node: &NodeState,
    stdin: bool,
    remote: &str,
) -> Command {
    let key: PathBuf = cluster_dir.join("ssh/id_ed25519");
    let mut cmd = Command::new("ssh");
    cmd.args(["-q", "-F", "/dev/null", "-i"])
        .arg(&key)
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            node_dir.join("known_hosts").display()
        ))
        .args([
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
        ])
        .arg(format!("HostKeyAlias={HOST_ALIAS}"))
        .args([
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=10",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=6",
            "-o",
            "LogLevel=ERROR",
            "-l",
            "root",
        ]);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root");
    if !stdin {
        cmd.arg("-n");
    }
    cmd.arg(node.ip().map(|ip| ip.to_string()).unwrap_or_default())
        .arg("--")
        .arg(remote);
    cmd
}

/// Runs a command on a VM node and streams its output.
pub fn exec(
    cluster_dir: &Path,
    node_dir: &Path,
    node: &NodeState,
    req: &ExecRequest,
    io: ExecIo<'_>,
) -> Result<ExecOutcome, SandboxError> {
    if req.argv.is_empty() {
        return Err(SandboxError::BadPath("no command given to run".into()));
    }
    let cmd = ssh_command(
        cluster_dir,
        node_dir,
        node,
        io.stdin.is_some(),
        &remote_command(req),
    );
    crate::nspawn::exec::supervise(cmd, "ssh", &node.name, req.timeout, io)
}

/// The command line the node's shell runs: the same clean environment a
/// container node's command gets, in the requested folder. With a timeout the
/// node enforces it too, so nothing outlives it when the connection is cut.
pub fn remote_command(req: &ExecRequest) -> String {
    let mut words: Vec<String> = Vec::new();
    if let Some(t) = req.timeout {
        words.extend([
            "timeout".into(),
            "-k".into(),
            "2".into(),
            format!("{}", t.as_secs() + 1),
        ]);
    }
    words.push("env".into());
    words.push("-i".into());
    words.push(format!(
        "--chdir={}",
        req.workdir.as_deref().unwrap_or("/root")
    ));
    for (k, v) in [
        ("PATH", NODE_PATH),
        ("HOME", "/root"),
        ("USER", "root"),
        ("LOGNAME", "root"),
        ("LANG", "C.UTF-8"),
    ] {
        words.push(format!("{k}={v}"));
    }
    words.push(format!(
        "TERM={}",
        std::env::var("TERM").unwrap_or_else(|_| "dumb".into())
    ));
    for (k, v) in &req.env {
        words.push(format!("{k}={v}"));
    }
    // No `--` here: after its assignments env takes the first word as the
    // command, `--` included.
    words.extend(req.argv.iter().cloned());
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// Single-quotes a word for a POSIX shell.
fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_=/.,:@%+".contains(c))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_survive_the_remote_shell_unchanged() {
        let req = ExecRequest {
            argv: vec!["sh".into(), "-c".into(), "echo 'a b' \"$X\"; exit 3".into()],
            env: vec![("X".into(), "it's".into())],
            workdir: Some("/tmp/my dir".into()),
            timeout: None,
        };
        let line = remote_command(&req);
        assert!(line.starts_with("env -i '--chdir=/tmp/my dir' "), "{line}");
        assert!(line.contains(r#"'X=it'\''s'"#), "{line}");
        assert!(
            line.ends_with(r#"'X=it'\''s' sh -c 'echo '\''a b'\'' "$X"; exit 3'"#),
            "{line}"
        );
    }

    #[test]
    fn a_timeout_is_enforced_on_the_node_too() {
        let req = ExecRequest {
            argv: vec!["true".into()],
            timeout: Some(std::time::Duration::from_secs(5)),
            ..Default::default()
        };
        assert!(remote_command(&req).starts_with("timeout -k 2 6 env -i"));
    }
}
