//! Running commands on nodes.

use crate::backend::{ExecIo, ExecOutcome, ExecRequest};
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
        let outcome = self.backend.exec(&state, node, req, io)?;
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
