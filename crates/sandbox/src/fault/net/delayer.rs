//! The user-space delayer: `rehearse __netdelay`, started inside a node's
//! network namespace, holds queued packets for the latency asked for. Used
//! where the kernel has no `netem`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::cluster::Engine;
use crate::fault::invalid;
use crate::host::{self, ProcessId};
use crate::state::ClusterState;
use crate::SandboxError;

use super::leader;

/// The `rehearse` binary, which carries the delayer (`rehearse __netdelay`).
fn rehearse_exe() -> Result<std::path::PathBuf, SandboxError> {
    if let Ok(p) = std::env::var("REHEARSE_EXE") {
        return Ok(p.into());
    }
    if let Ok(exe) = std::env::current_exe() {
        if exe.file_name().is_some_and(|n| n == "rehearse") {
            return Ok(exe);
        }
    }
    host::which("rehearse").ok_or_else(|| {
        invalid("adding latency needs the `rehearse` binary for its delayer: put it on PATH or set REHEARSE_EXE")
    })
}

/// Starts a delayer for `queue` in `node`'s namespace and waits until it is
/// ready.
pub(super) fn spawn_delayer(
    engine: &Engine,
    state: &ClusterState,
    node: &str,
    queue: u16,
    delay: Duration,
    jitter: Duration,
) -> Result<ProcessId, SandboxError> {
    use std::os::unix::process::CommandExt;
    let pid = leader(state, node)?.pid.to_string();
    let exe = rehearse_exe()?;
    let log = engine
        .cluster_dir(&state.id)
        .join(format!("delayer-{node}-{queue}.log"));
    let log = std::fs::File::create(&log).map_err(|e| SandboxError::io("creating", &log, e))?;
    let procs = engine.helper_cgroup(&state.id)?;
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &pid, "-n", "--"])
        .arg(&exe)
        .arg("__netdelay")
        .arg(queue.to_string())
        .arg(delay.as_micros().to_string())
        .arg(jitter.as_micros().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // SAFETY: between fork and exec only setsid and the raw open/write/close
    // of `enter_raw`, on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            crate::cgroup::enter_raw(&procs)
        });
    }
    let mut child = cmd.spawn().map_err(|e| host::spawn_error("nsenter", e))?;
    let id = ProcessId::of(child.id() as i32).ok_or_else(|| {
        invalid(format!(
            "the delayer for {node} ended at once; see {}",
            exe.display()
        ))
    })?;
    let out = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    // Reap it whenever it ends, so a long-lived engine keeps no zombie.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(line) if line.trim() == "ready" => Ok(id),
        _ => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(id.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let log = engine
                .cluster_dir(&state.id)
                .join(format!("delayer-{node}-{queue}.log"));
            Err(invalid(format!(
                "the delayer for {node} did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default().trim()
            )))
        }
    }
}
