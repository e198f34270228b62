//! Running commands on nodes.

use std::io::Write;

use crate::backend::{ExecIo, ExecOutcome, ExecRequest};
use crate::kernel_guard;
use crate::SandboxError;

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
        let state = self.store.load(id)?;
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
        let mut out = Vec::new();
        let mut err = Vec::new();
        let outcome = self.exec(
            id,
            node,
            req,
            ExecIo {
                stdin: None,
                stdout: &mut out,
                stderr: &mut err,
            },
        )?;
        Ok((
            outcome,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        ))
    }
}
