//! The runner's way into the nodes of one cluster: the sandbox's
//! [`NodeExec`] bound to a cluster id. Step logic (timeouts, kill order, error
//! sentences) takes a stand-in in unit tests, so it is testable without root.

use std::path::Path;
use std::time::Duration;

use rehearse_sandbox::{Captured, ExecIo, ExecOutcome, ExecRequest, NodeExec, SandboxError};

/// The nodes of one live cluster.
pub(crate) struct ClusterNodes<'a> {
    exec: &'a dyn NodeExec,
    cluster: &'a str,
}

impl<'a> ClusterNodes<'a> {
    pub fn new(exec: &'a dyn NodeExec, cluster: &'a str) -> Self {
        ClusterNodes { exec, cluster }
    }

    /// Runs a command on a node, streaming its output into `io`.
    pub fn exec(
        &self,
        node: &str,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, SandboxError> {
        self.exec.exec(self.cluster, node, req, io)
    }

    /// Copies a host file or folder to `dest` on a node.
    pub fn copy_to(&self, node: &str, src: &Path, dest: &str) -> Result<(), SandboxError> {
        self.exec.copy_to(self.cluster, node, src, dest)
    }
}

/// The last non-empty line of stderr (or stdout), for one-sentence errors.
pub(crate) fn last_line(c: &Captured) -> String {
    crate::report::last_line(&c.stderr)
        .or_else(|| crate::report::last_line(&c.stdout))
        .unwrap_or_else(|| format!("exit code {}", c.exit_code()))
}

/// Runs a helper script (`sh -c script _ args...`) on a node and collects its
/// output. `stdin` feeds the script when given. Errors are sentences.
pub(crate) fn sh(
    nodes: &ClusterNodes<'_>,
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
    nodes
        .exec
        .capture(
            nodes.cluster,
            node,
            &req,
            stdin.map(|s| Box::new(std::io::Cursor::new(s)) as Box<_>),
        )
        .map_err(|e| e.to_string())
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

    impl NodeExec for FakeNodes {
        fn exec(
            &self,
            _cluster: &str,
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

        fn copy_to(
            &self,
            _cluster: &str,
            node: &str,
            src: &Path,
            dest: &str,
        ) -> Result<(), SandboxError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("copy {} {node}:{dest}", src.display()));
            Ok(())
        }
    }
}
