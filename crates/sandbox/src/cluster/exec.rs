//! Running commands on nodes.

use std::io::Write;

use crate::backend::{ExecIo, ExecOutcome, ExecRequest};
use crate::kernel_guard;
use crate::{NodeExec, SandboxError};

use super::Engine;

impl Engine {
    /// Runs a command on a node, streaming its output.
    pub fn exec(
        &self,
        id: &str,
        node: &str,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, SandboxError> {
        let state = self.registry.load(id)?;
        let node = state.node(node)?;
        let backend = self.backend_for(node);
        let outcome = if backend.name() == "nspawn" {
            // A container shares the host's kernel: say so when that is why
            // the command failed.
            let ExecIo {
                stdin,
                stdout,
                stderr,
            } = io;
            let mut watch = kernel_guard::Watch::new(stderr);
            let oom_before = self.cgroups.node_oom_kills(&state.id, &node.name);
            let outcome = backend.exec(
                &state,
                node,
                req,
                ExecIo {
                    stdin,
                    stdout,
                    stderr: &mut watch,
                },
            )?;
            watch.finish();
            if let (Some(refusal), true) = (watch.refusal.take(), outcome.exit_code != 0) {
                let _ = watch.write_all(kernel_guard::hint(&node.name, &refusal).as_bytes());
            }
            let oom = self
                .cgroups
                .node_oom_kills(&state.id, &node.name)
                .saturating_sub(oom_before);
            if oom > 0 {
                let _ = watch.write_all(oom_notice(&node.name, oom, &node.limits).as_bytes());
            }
            outcome
        } else {
            backend.exec(&state, node, req, io)?
        };
        if outcome.timed_out {
            return Err(SandboxError::Timeout {
                node: node.name.clone(),
                secs: req.timeout.map(|t| t.as_secs_f64()).unwrap_or_default(),
            });
        }
        Ok(outcome)
    }

    /// Runs a command and collects its output (for internal checks and tests).
    pub fn exec_capture(
        &self,
        id: &str,
        node: &str,
        req: &ExecRequest,
    ) -> Result<(ExecOutcome, String, String), SandboxError> {
        let c = NodeExec::capture(self, id, node, req, None)?;
        Ok((c.outcome, c.stdout, c.stderr))
    }
}

/// What is said when the kernel killed processes of a node because it
/// reached its memory limit.
fn oom_notice(node: &str, killed: u64, limits: &rehearse_spec::NodeLimits) -> String {
    let limit = limits
        .memory
        .map(rehearse_spec::limits::format_memory)
        .unwrap_or_else(|| "its memory limit".into());
    format!(
        "\nrehearse: node {node} reached its memory limit ({limit}): the kernel OOM-killed {killed} of its process(es); \
         other nodes are unaffected. Give the node more `memory` in the topology, or make the code use less.\n"
    )
}
