//! The one way the layers above reach into nodes: run a command, copy a host
//! path in. Behind a trait so step and check logic (timeouts, kill order,
//! error sentences) is testable without root or a cluster; [`Engine`] is the
//! real thing.

use std::io::Read;
use std::path::Path;

use crate::backend::{ExecIo, ExecOutcome, ExecRequest};
use crate::{Engine, SandboxError};

/// Runs commands on, and copies files to, the nodes of live clusters.
pub trait NodeExec: Sync {
    /// Runs a command on a node, streaming its output into `io`.
    fn exec(
        &self,
        cluster: &str,
        node: &str,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, SandboxError>;

    /// Copies a host file or folder to `dest` on a node.
    fn copy_to(
        &self,
        cluster: &str,
        node: &str,
        src: &Path,
        dest: &str,
    ) -> Result<(), SandboxError>;

    /// Runs a command, feeding it `stdin` when given, and collects its
    /// output as the bytes it wrote.
    fn capture_bytes(
        &self,
        cluster: &str,
        node: &str,
        req: &ExecRequest,
        stdin: Option<Box<dyn Read + Send + '_>>,
    ) -> Result<CapturedBytes, SandboxError> {
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let outcome = self.exec(
            cluster,
            node,
            req,
            ExecIo {
                stdin,
                stdout: &mut stdout,
                stderr: &mut stderr,
            },
        )?;
        Ok(CapturedBytes {
            outcome,
            stdout,
            stderr,
        })
    }

    /// [`NodeExec::capture_bytes`], the output lossily decoded as UTF-8.
    fn capture(
        &self,
        cluster: &str,
        node: &str,
        req: &ExecRequest,
        stdin: Option<Box<dyn Read + Send + '_>>,
    ) -> Result<Captured, SandboxError> {
        let c = self.capture_bytes(cluster, node, req, stdin)?;
        Ok(Captured {
            outcome: c.outcome,
            stdout: String::from_utf8_lossy(&c.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&c.stderr).into_owned(),
        })
    }
}

/// A finished command with its whole output, as written.
#[derive(Debug, Clone)]
pub struct CapturedBytes {
    pub outcome: ExecOutcome,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// A finished command with its whole output (lossily decoded as UTF-8).
#[derive(Debug, Clone)]
pub struct Captured {
    pub outcome: ExecOutcome,
    pub stdout: String,
    pub stderr: String,
}

impl Captured {
    pub fn exit_code(&self) -> i32 {
        self.outcome.exit_code
    }

    pub fn success(&self) -> bool {
        self.outcome.exit_code == 0
    }
}

impl NodeExec for Engine {
    fn exec(
        &self,
        cluster: &str,
        node: &str,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, SandboxError> {
        Engine::exec(self, cluster, node, req, io)
    }

    fn copy_to(
        &self,
        cluster: &str,
        node: &str,
        src: &Path,
        dest: &str,
    ) -> Result<(), SandboxError> {
        self.copy_to_node(cluster, node, src, dest)
    }
}
