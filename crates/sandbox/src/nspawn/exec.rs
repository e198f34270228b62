//! Running commands in a node by entering its namespaces (no SSH involved).

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use crate::backend::{ExecIo, ExecOutcome, ExecRequest};
use crate::host::{self, ProcessId};
use crate::SandboxError;

const NODE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Runs `req` in the node whose PID 1 is `leader`; the command joins the
/// node's cgroups (`cgroup_procs`), so the node's limits hold for it.
pub fn run(
    leader: ProcessId,
    node: &str,
    cgroup_procs: &[std::ffi::CString],
    req: &ExecRequest,
    io: ExecIo<'_>,
) -> Result<ExecOutcome, SandboxError> {
    if req.argv.is_empty() {
        return Err(SandboxError::BadPath("no command given to run".into()));
    }
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--target={}", leader.pid))
        .args([
            "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup", "--user", "--root",
        ])
        // A path given to --wd would be opened on the host, before entering the
        // node; take PID 1's directory, then change to the wanted one inside.
        .arg("--wd")
        .arg("--")
        .arg("/usr/bin/env")
        .arg(format!(
            "--chdir={}",
            req.workdir.as_deref().unwrap_or("/root")
        ))
        .arg("--")
        .args(&req.argv);
    // The node's environment, not the host's: nothing of the caller leaks in.
    cmd.env_clear()
        .env("PATH", NODE_PATH)
        .env("HOME", "/root")
        .env("USER", "root")
        .env("LOGNAME", "root")
        .env("LANG", "C.UTF-8")
        .env(
            "TERM",
            std::env::var("TERM").unwrap_or_else(|_| "dumb".into()),
        );
    for (k, v) in &req.env {
        cmd.env(k, v);
    }
    let procs = cgroup_procs.to_vec();
    // SAFETY: enter_raw only opens, writes and closes files whose paths were
    // prepared before the fork.
    unsafe {
        cmd.pre_exec(move || crate::cgroup::enter_raw(&procs));
    }
    supervise(cmd, "nsenter", node, req.timeout, io)
}

/// Runs a host command that carries a command into a node (nsenter, ssh),
/// streaming its output and killing it (and all it started) at the timeout.
pub(crate) fn supervise(
    mut cmd: Command,
    program: &str,
    node: &str,
    timeout: Option<Duration>,
    io: ExecIo<'_>,
) -> Result<ExecOutcome, SandboxError> {
    let started = Instant::now();
    // A process group of its own, so a timeout kills everything it started.
    cmd.process_group(0)
        .stdin(if io.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| host::spawn_error(program, e))?;
    let pgid = Pid::from_raw(child.id() as i32);
    let mut child_stdin = child.stdin.take();
    let mut child_stdout = child.stdout.take().expect("piped");
    let mut child_stderr = child.stderr.take().expect("piped");
    let ExecIo {
        stdin,
        stdout,
        stderr,
    } = io;

    let mut timed_out = false;
    let status = std::thread::scope(|s| {
        if let (Some(mut input), Some(mut sink)) = (stdin, child_stdin.take()) {
            s.spawn(move || {
                let _ = std::io::copy(&mut input, &mut sink);
            });
        }
        let deadline = timeout.map(|t| started + t);
        let mut streams = Streams::new(&mut child_stdout, &mut child_stderr)?;
        let mut exited: Option<(std::process::ExitStatus, Instant)> = None;
        loop {
            let got_data = streams.pump(stdout, stderr, Duration::from_millis(5));
            if exited.is_none() {
                match child.try_wait() {
                    Ok(Some(status)) => exited = Some((status, Instant::now())),
                    Ok(None) => {}
                    Err(e) => return Err(SandboxError::io("waiting for", program.to_string(), e)),
                }
            }
            if let Some((status, at)) = exited {
                // Drain what is left; a background process that keeps the pipes
                // open must not hold the caller hostage.
                if streams.closed() || (!got_data && at.elapsed() > Duration::from_millis(100)) {
                    return Ok(status);
                }
            }
            if deadline.is_some_and(|d| Instant::now() > d) && !timed_out {
                timed_out = true;
                kill_group_but_leader(pgid);
            }
            // nsenter reaps the command once it is killed; if it does not follow
            // within a moment, it goes too.
            if timed_out
                && exited.is_none()
                && deadline.is_some_and(|d| d.elapsed() > Duration::from_secs(2))
            {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
        }
    })?;
    // Whatever the command left running in its group goes with it.
    if timed_out {
        kill_group_but_leader(pgid);
    }
    let exit_code = status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
    let outcome = ExecOutcome {
        exit_code,
        duration_ms: started.elapsed().as_millis() as u64,
        timed_out,
    };
    if timed_out {
        tracing::debug!(node, "command timed out");
    }
    Ok(outcome)
}

/// Kills every process of the command's group except nsenter itself, which
/// leads it. nsenter is the parent of the command and stays alive to reap it:
/// killed together, the command would be left a zombie of the host's PID 1,
/// which on some hosts never reaps.
fn kill_group_but_leader(pgid: Pid) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == pgid.as_raw() {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        // Fields after the command name: state, ppid, pgrp.
        if rest.split(' ').nth(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid.as_raw()) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// The command's stdout and stderr, read without blocking.
struct Streams<'a> {
    out: Option<&'a mut std::process::ChildStdout>,
    err: Option<&'a mut std::process::ChildStderr>,
}

impl<'a> Streams<'a> {
    fn new(
        out: &'a mut std::process::ChildStdout,
        err: &'a mut std::process::ChildStderr,
    ) -> Result<Self, SandboxError> {
        use std::os::fd::AsRawFd;
        for fd in [out.as_raw_fd(), err.as_raw_fd()] {
            // SAFETY: fcntl on a pipe descriptor we own.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
            }
        }
        Ok(Streams {
            out: Some(out),
            err: Some(err),
        })
    }

    fn closed(&self) -> bool {
        self.out.is_none() && self.err.is_none()
    }

    /// Waits up to `wait` for output and forwards what came. True if any did.
    fn pump(
        &mut self,
        stdout: &mut (dyn Write + Send),
        stderr: &mut (dyn Write + Send),
        wait: Duration,
    ) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds = Vec::new();
        if let Some(o) = &self.out {
            fds.push(PollFd::new(o.as_fd(), PollFlags::POLLIN));
        }
        if let Some(e) = &self.err {
            fds.push(PollFd::new(e.as_fd(), PollFlags::POLLIN));
        }
        if fds.is_empty() {
            std::thread::sleep(wait);
            return false;
        }
        let _ = poll(
            &mut fds,
            PollTimeout::try_from(wait.as_millis() as i32).unwrap_or(PollTimeout::ZERO),
        );
        drop(fds);
        let mut got = false;
        let mut buf = [0u8; 16384];
        if let Some(o) = self.out.as_mut() {
            match drain(*o, &mut buf, stdout) {
                Drain::Eof => self.out = None,
                Drain::Data => got = true,
                Drain::Empty => {}
            }
        }
        if let Some(e) = self.err.as_mut() {
            match drain(*e, &mut buf, stderr) {
                Drain::Eof => self.err = None,
                Drain::Data => got = true,
                Drain::Empty => {}
            }
        }
        got
    }
}

enum Drain {
    Eof,
    Data,
    Empty,
}

fn drain(from: &mut impl Read, buf: &mut [u8], to: &mut (dyn Write + Send)) -> Drain {
    let mut any = false;
    loop {
        match from.read(buf) {
            Ok(0) => return Drain::Eof,
            Ok(n) => {
                any = true;
                let _ = to.write_all(&buf[..n]);
                let _ = to.flush();
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return if any { Drain::Data } else { Drain::Empty };
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return Drain::Eof,
        }
    }
}
