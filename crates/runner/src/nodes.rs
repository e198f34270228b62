//! The runner's only way into nodes: run a command, copy a host path in. Behind
//! a trait so step logic (timeouts, kill order, error sentences) is testable
//! without root or a cluster.

use std::path::Path;
use std::time::Duration;

use rehearse_sandbox::{Engine, ExecIo, ExecOutcome, ExecRequest, SandboxError};

pub(crate) trait Nodes: Sync {
    /// Runs a command on a node, streaming its output into `io`.
    fn exec(
        &self,
        node: &str,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, SandboxError>;

    /// Copies a host file or folder to `dest` on a node (`Engine::copy_to_node`).
    fn copy_to(&self, node: &str, src: &Path, dest: &str) -> Result<(), SandboxError>;
}

/// The nodes of one live cluster.
pub(crate) struct ClusterNodes<'a> {
    engine: &'a Engine,
    cluster: &'a str,
}

impl<'a> ClusterNodes<'a> {
    pub fn new(engine: &'a Engine, cluster: &'a str) -> Self {
        ClusterNodes { engine, cluster }
    }
}

impl Nodes for ClusterNodes<'_> {
    fn exec(
        &self,
        node: &str,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, SandboxError> {
        self.engine.exec(self.cluster, node, req, io)
    }

    fn copy_to(&self, node: &str, src: &Path, dest: &str) -> Result<(), SandboxError> {
        self.engine.copy_to_node(self.cluster, node, src, dest)
    }
}

/// The outcome of a short helper command the runner itself issues.
pub(crate) struct Captured {
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// The last non-empty line of stderr (or stdout), for one-sentence errors.
    pub fn last_line(&self) -> String {
        crate::report::last_line(&self.stderr)
            .or_else(|| crate::report::last_line(&self.stdout))
            .unwrap_or_else(|| format!("exit code {}", self.exit_code))
    }
}

/// Runs a helper script (`sh -c script _ args...`) on a node and collects its
/// output. `stdin` feeds the script when given. Errors are sentences.
pub(crate) fn sh(
    nodes: &dyn Nodes,
    node: &str,
    script: &str,
    args: &[&str],
    stdin: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<Captured, String> {
    let mut argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        script.to_string(),
        "rehearse".to_string(),
    ];
    argv.extend(args.iter().map(|a| a.to_string()));
    let req = ExecRequest {
        argv,
        timeout: Some(timeout),
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let outcome = nodes
        .exec(
            node,
            &req,
            ExecIo {
                stdin: stdin.map(|s| Box::new(std::io::Cursor::new(s)) as Box<_>),
                stdout: &mut out,
                stderr: &mut err,
            },
        )
        .map_err(|e| e.to_string())?;
    Ok(Captured {
        exit_code: outcome.exit_code,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::{Condvar, Mutex};

    use super::*;

    /// Nodes that record every command and play scripted outcomes: the step
    /// command (recognised by its wrapper) may exit with a code, hang until a
    /// kill arrives, or the node may be down.
    #[derive(Default)]
    pub struct FakeNodes {
        calls: Mutex<Vec<String>>,
        step_exit: i32,
        hang: bool,
        down: bool,
        killed: Mutex<bool>,
        kill_signal: Condvar,
    }

    impl FakeNodes {
        pub fn with_step_exit(mut self, code: i32) -> Self {
            self.step_exit = code;
            self
        }

        pub fn hanging(mut self) -> Self {
            self.hang = true;
            self
        }

        pub fn down(mut self) -> Self {
            self.down = true;
            self
        }

        pub fn was_killed(&self) -> bool {
            *self.killed.lock().unwrap()
        }

        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().unwrap().clone()
        }
    }

    impl Nodes for FakeNodes {
        fn exec(
            &self,
            node: &str,
            req: &ExecRequest,
            _io: ExecIo<'_>,
        ) -> Result<ExecOutcome, SandboxError> {
            let line = req.argv.join(" ");
            self.calls.lock().unwrap().push(line.clone());
            if self.down {
                return Err(SandboxError::NodeDown {
                    cluster: "c0ffee".into(),
                    node: node.into(),
                });
            }
            let outcome = |exit_code| ExecOutcome {
                exit_code,
                duration_ms: 1,
                timed_out: false,
            };
            if line.contains("kill -KILL") {
                *self.killed.lock().unwrap() = true;
                self.kill_signal.notify_all();
                return Ok(outcome(0));
            }
            if line.contains("rehearse-step") {
                if self.hang {
                    let mut killed = self.killed.lock().unwrap();
                    while !*killed {
                        killed = self.kill_signal.wait(killed).unwrap();
                    }
                    return Ok(outcome(137));
                }
                return Ok(outcome(self.step_exit));
            }
            Ok(outcome(0))
        }

        fn copy_to(&self, node: &str, src: &Path, dest: &str) -> Result<(), SandboxError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("copy {} {node}:{dest}", src.display()));
            Ok(())
        }
    }
}
