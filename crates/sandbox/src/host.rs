//! Small helpers around host processes: running a tool with a useful error, and
//! telling whether a PID still is the process we started.

use std::process::{Command, Stdio};

use crate::SandboxError;

/// The Debian package a host tool comes from (from `host-packages.txt`).
pub fn package_of(tool: &str) -> String {
    crate::packages::package_of(tool).unwrap_or_else(|| "(unknown)".to_string())
}

/// Runs a host command to completion; a failure carries its stderr.
pub fn run(what: &str, cmd: &mut Command) -> Result<String, SandboxError> {
    run_with_input(what, cmd, "")
}

/// Runs a host command with `input` on stdin; a failure carries its stderr.
pub fn run_with_input(what: &str, cmd: &mut Command, input: &str) -> Result<String, SandboxError> {
    use std::io::Write;
    let program = cmd.get_program().to_string_lossy().into_owned();
    let mut child = cmd
        .stdin(if input.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| spawn_error(&program, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(input.as_bytes());
    }
    let output = child
        .wait_with_output()
        .map_err(|e| SandboxError::io("waiting for", program.clone(), e))?;
    if !output.status.success() {
        return Err(SandboxError::Command {
            what: what.to_string(),
            command: describe(cmd),
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

pub fn spawn_error(program: &str, e: std::io::Error) -> SandboxError {
    if e.kind() == std::io::ErrorKind::NotFound {
        SandboxError::MissingTool {
            tool: program.to_string(),
            package: package_of(program),
        }
    } else {
        SandboxError::io("starting", program.to_string(), e)
    }
}

fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The kernel's start time of a process (clock ticks since boot), which together
/// with the PID identifies it even after the PID is reused.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    // A zombie has ended; it only waits for a parent that may never reap it.
    if rest.starts_with('Z') || rest.starts_with('X') {
        return None;
    }
    rest.split(' ').nth(19)?.parse().ok()
}

/// A process identified by PID and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProcessId {
    pub pid: i32,
    pub start_time: u64,
}

impl ProcessId {
    pub fn current() -> Self {
        let pid = std::process::id() as i32;
        ProcessId {
            pid,
            start_time: process_start_time(pid).unwrap_or(0),
        }
    }

    pub fn of(pid: i32) -> Option<Self> {
        Some(ProcessId {
            pid,
            start_time: process_start_time(pid)?,
        })
    }

    pub fn is_alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.start_time)
    }

    /// Asks the process to end (SIGTERM), if it is still the one identified.
    pub fn terminate(&self) {
        if self.is_alive() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Makes the command start in a session of its own, so it outlives the caller
/// and never gets the caller's terminal signals.
pub fn detach(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
}

/// Finds a program on PATH (and the sbin folders root uses).
pub fn which(tool: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .filter(|d| !d.is_empty())
        .map(|d| std::path::Path::new(d).join(tool))
        .find(|p| p.is_file());
    found
}

/// Fails with the package to install for the first missing tool.
pub fn require_tools(tools: &[&str]) -> Result<(), SandboxError> {
    match tools.iter().find(|t| which(t).is_none()) {
        Some(tool) => Err(SandboxError::MissingTool {
            tool: tool.to_string(),
            package: package_of(tool),
        }),
        None => Ok(()),
    }
}
