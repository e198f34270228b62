//! The `Backend` trait: what a kind of node (a systemd-nspawn container, a QEMU
//! microVM) must provide. Everything above it (cluster lifecycle, networks,
//! scenarios, checks, converge, MCP) is written against this trait only.

use std::ffi::CString;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rehearse_image::Image;

use crate::host::ProcessId;
use crate::seed::SeedFile;
use crate::state::{ClusterState, NodeState};
use crate::SandboxError;

/// Everything a backend needs to start one node.
pub struct NodeLaunch<'a> {
    pub cluster: &'a ClusterState,
    pub node: &'a NodeState,
    /// A folder of the node's own under the cluster's folder.
    pub node_dir: PathBuf,
    pub image: &'a Image,
    pub seeds: &'a [SeedFile],
    /// `cgroup.procs` files the node's supervisor must start in.
    pub cgroup_procs: Vec<CString>,
}

/// A node that has been started and is booting.
pub struct Booting {
    pub supervisor: ProcessId,
    /// Backend-specific handle kept until the node is ready (a notify socket, ...).
    pub handle: Box<dyn std::any::Any + Send>,
}

/// A command to run inside a node.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    pub workdir: Option<String>,
}

impl ExecRequest {
    pub fn shell(script: &str) -> Self {
        ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            ..Default::default()
        }
    }
}

/// Where a command's streams go.
pub struct ExecIo<'a> {
    pub stdin: Option<Box<dyn Read + Send + 'a>>,
    pub stdout: &'a mut (dyn Write + Send),
    pub stderr: &'a mut (dyn Write + Send),
}

/// How a command ended.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ExecOutcome {
    /// The exit code; 128+N when killed by signal N.
    pub exit_code: i32,
    pub duration_ms: u64,
    pub timed_out: bool,
}

pub trait Backend: Send + Sync {
    /// The name recorded in cluster state (`nspawn`, `vm`).
    fn name(&self) -> &'static str;

    /// Prepares the node's root filesystem with its seed files and starts it.
    /// Returns as soon as the node is booting. Launching a node that ran before
    /// (a reboot) keeps its disk state; seeds are then empty.
    fn launch(&self, launch: &NodeLaunch<'_>) -> Result<Booting, SandboxError>;

    /// Waits until the node's init reports that boot finished. Returns the node's
    /// PID 1 (host view).
    fn wait_booted(
        &self,
        launch: &NodeLaunch<'_>,
        booting: Booting,
        deadline: Instant,
    ) -> Result<ProcessId, SandboxError>;

    /// Runs a command in the node, streaming its output, without SSH.
    fn exec(
        &self,
        cluster: &ClusterState,
        node: &NodeState,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, SandboxError>;

    /// The last lines the node printed while booting.
    fn boot_log_tail(&self, node_dir: &Path, lines: usize) -> String;

    /// Asks the node's init to power off cleanly (the caller waits for the
    /// supervisor to end, and kills the node's cgroup if it does not).
    fn request_poweroff(&self, node: &NodeState) -> Result<(), SandboxError>;

    /// Removes what the backend created for a cluster beyond processes (which die
    /// with the cluster's cgroup), bridges and firewall: mounts, disk images.
    /// Must work from the cluster folder alone, with or without a state file.
    fn teardown(&self, cluster_id: &str, cluster_dir: &Path) -> Result<(), SandboxError>;
}
