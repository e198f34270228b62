//! The cluster engine: `up`, `down`, `ls`, `extend`, `gc`, `exec`, `cp` over any
//! [`Backend`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use rehearse_image::ImageCache;
use rehearse_spec::Topology;

use crate::backend::Backend;
use crate::cgroup::Cgroups;
use crate::host::{now_secs, ProcessId};
use crate::pkgcache::PackageCache;
use crate::state::{ClusterRegistry, ClusterState};
use crate::SandboxError;

pub use pool::{PoolConfig, PoolEntry, PoolStatus, Pooled};
pub use snapshot::{Restored, RestoredNode};

mod copy;
mod down;
mod exec;
mod gc;
mod pool;
mod reboot;
mod snapshot;
mod up;

/// Length of a cluster id (hex digits). Short enough for interface names.
pub const CLUSTER_ID_LEN: usize = 6;

/// A node that came up: its supervisor, its PID 1, and how long it took (ms).
pub(super) type Booted = (ProcessId, ProcessId, u64);

/// Default time-to-live of a cluster.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 60);

/// What `up` reports while it works.
#[derive(Debug, Clone)]
pub enum Progress {
    Image(String),
    Booting {
        cluster: String,
        nodes: usize,
    },
    NodeReady {
        node: String,
        ms: u64,
    },
    /// The host has no room for the nodes yet; `up` waits for clusters to go.
    WaitingForCapacity {
        needed: u64,
        fits: u64,
        limited_by: String,
    },
    /// A node failed to boot and is booted again on a fresh root.
    NodeRetry {
        node: String,
        reason: String,
    },
}

/// Who a new cluster belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ownership {
    /// The user's (`up`, `provision`, a run asked to keep it): it lives until
    /// its time-to-live runs out or someone destroys it.
    #[default]
    User,
    /// The calling process's (a run, a converge loop, a server's job): it is
    /// destroyed as soon as that process is dead, by `gc` or the reaper.
    ThisProcess,
}

/// A request for a new cluster.
pub struct UpRequest {
    pub topology: Topology,
    pub ttl: Duration,
    pub boot_timeout: Duration,
    /// Where the topology came from, for `ls`.
    pub source: String,
    pub ownership: Ownership,
}

/// A cluster `gc` or the reaper removed, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Removed {
    pub cluster: String,
    pub reason: String,
}

/// What `gc` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub expired: Vec<String>,
    pub orphaned: Vec<String>,
    /// Every cluster removed, with the reason.
    pub removed: Vec<Removed>,
    /// Clusters whose restore or reboot died half-way, finished by this gc:
    /// every node back up, on the snapshot's layers when a restore had
    /// staged them.
    pub resumed: Vec<String>,
    pub stale_image_builds: usize,
}

/// Starts the reaper of a new cluster: a process of its own that outlives the
/// caller and destroys the cluster when its owner dies or it expires.
pub type SpawnReaper = Arc<dyn Fn(&str) + Send + Sync>;

/// Told of every cluster `gc` or a reaper removed (not `down`), with why.
pub type OnRemoved = Arc<dyn Fn(&Removed) + Send + Sync>;

pub struct Engine {
    state_dir: PathBuf,
    /// Where runs are recorded (run store, run folders, proofs).
    history_dir: PathBuf,
    registry: ClusterRegistry,
    images: ImageCache,
    cgroups: Cgroups,
    cache: PackageCache,
    /// The backend of nodes whose topology leaves the choice open.
    backend: Arc<dyn Backend>,
    /// Every backend a node may name, the default among them.
    backends: Vec<Arc<dyn Backend>>,
    spawn_reaper: Option<SpawnReaper>,
    on_removed: Option<OnRemoved>,
}

/// A node's use of the host, read from its cgroups.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeUsage {
    pub memory_used: Option<u64>,
    pub oom_kills: u64,
}

impl Engine {
    /// An engine over the state directory with the nspawn backend.
    pub fn new(state_dir: &Path) -> Result<Self, SandboxError> {
        Self::with_backend(state_dir, Arc::new(crate::nspawn::NspawnBackend))
    }

    /// An engine whose nodes run on `backend` unless their topology names
    /// another one (nspawn and vm are always available).
    pub fn with_backend(state_dir: &Path, backend: Arc<dyn Backend>) -> Result<Self, SandboxError> {
        let mut backends: Vec<Arc<dyn Backend>> = vec![backend.clone()];
        let standard: [Arc<dyn Backend>; 2] = [
            Arc::new(crate::nspawn::NspawnBackend),
            Arc::new(crate::vm::VmBackend::new(state_dir)),
        ];
        for b in standard {
            if b.name() != backend.name() {
                backends.push(b);
            }
        }
        Ok(Engine {
            state_dir: state_dir.to_path_buf(),
            history_dir: rehearse_image::history_dir_for(state_dir),
            registry: ClusterRegistry::new(state_dir),
            images: ImageCache::new(state_dir),
            cgroups: Cgroups::discover()?,
            cache: PackageCache::host(state_dir),
            backend,
            backends,
            spawn_reaper: None,
            on_removed: None,
        })
    }

    /// Every cluster this engine starts gets a reaper, started by `spawn` as
    /// soon as the cluster's state is written (so a cluster whose `up` is
    /// killed half-way is reaped too).
    pub fn with_reaper(mut self, spawn: SpawnReaper) -> Self {
        self.spawn_reaper = Some(spawn);
        self
    }

    /// `on_removed` hears of every cluster `gc` or a reaper removes.
    pub fn on_removed(mut self, on_removed: OnRemoved) -> Self {
        self.on_removed = Some(on_removed);
        self
    }

    /// Replaces the backend of the same name (a VM backend with other
    /// settings, say).
    pub fn with_node_backend(mut self, backend: Arc<dyn Backend>) -> Self {
        if self.backend.name() == backend.name() {
            self.backend = backend.clone();
        }
        self.backends.retain(|b| b.name() != backend.name());
        self.backends.push(backend);
        self
    }

    /// The backend running `node`.
    pub(crate) fn backend_for(&self, node: &crate::state::NodeState) -> &dyn Backend {
        self.backend_named(&node.backend)
    }

    fn backend_named(&self, name: &str) -> &dyn Backend {
        self.backends
            .iter()
            .find(|b| b.name() == name)
            .unwrap_or(&self.backend)
            .as_ref()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Where runs are recorded: the run store (SQLite), run folders and
    /// recipe proofs (`REHEARSE_HISTORY`, else the state directory).
    pub fn history_dir(&self) -> &Path {
        &self.history_dir
    }

    /// Records runs in `dir` instead.
    pub fn with_history_dir(mut self, dir: &Path) -> Self {
        self.history_dir = dir.to_path_buf();
        self
    }

    pub fn images(&self) -> &ImageCache {
        &self.images
    }

    pub fn package_cache(&self) -> &PackageCache {
        &self.cache
    }

    pub fn cluster_dir(&self, id: &str) -> PathBuf {
        self.registry.dir(id)
    }

    /// What a node uses of the host now: memory in bytes (none for a VM or a
    /// node that is down) and how many of its processes the kernel OOM-killed.
    pub fn node_usage(&self, cluster: &str, node: &str) -> NodeUsage {
        NodeUsage {
            memory_used: self.cgroups.node_memory_used(cluster, node),
            oom_kills: self.cgroups.node_oom_kills(cluster, node),
        }
    }

    pub fn list(&self) -> Vec<ClusterState> {
        self.registry.list()
    }

    pub fn get(&self, id: &str) -> Result<ClusterState, SandboxError> {
        self.registry.load(id)
    }

    /// Pushes the expiry of a cluster to `by` from now.
    pub fn extend(&self, id: &str, by: Duration) -> Result<ClusterState, SandboxError> {
        let _lock = self.registry.lock()?;
        let mut state = self.registry.load(id)?;
        state.expires_at = now_secs() + by.as_secs();
        self.registry.save(&state)?;
        Ok(state)
    }

    /// Hands a cluster made for this process over to the user: it outlives the
    /// process and lives until it expires (a run's cluster kept for a look).
    pub fn release(&self, id: &str) -> Result<ClusterState, SandboxError> {
        let _lock = self.registry.lock()?;
        let mut state = self.registry.load(id)?;
        state.belongs_to = None;
        self.registry.save(&state)?;
        Ok(state)
    }

    /// Kills every process of one node and waits until none is left.
    pub(crate) fn kill_node_processes(&self, id: &str, node: &str) -> Result<(), SandboxError> {
        self.cgroups.kill_node(id, node, Duration::from_secs(10))
    }

    /// The `cgroup.procs` files of the cgroup that holds the cluster's helper
    /// processes (link delayers): they die with the cluster like its nodes.
    pub(crate) fn helper_cgroup(&self, id: &str) -> Result<Vec<std::ffi::CString>, SandboxError> {
        self.cgroups
            .create_node(id, "_helpers", &rehearse_spec::NodeLimits::default())
    }

    /// Number of processes running in a cluster's cgroups.
    pub fn process_count(&self, id: &str) -> usize {
        self.cgroups.process_count(id)
    }
}
