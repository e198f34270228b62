//! Disposable clusters of systemd nodes.
//!
//! [`Engine`] creates, lists, reaches into and destroys clusters; a [`Backend`]
//! provides the nodes (systemd-nspawn containers by default). Every resource a
//! cluster owns is named after its id and recorded before it is created, so
//! `gc` can remove what any crashed engine left behind.

mod backend;
pub mod capacity;
mod cgroup;
mod cluster;
mod error;
pub mod fault;
pub mod host;
pub mod hostcheck;
pub mod kernel_guard;
pub mod lease;
mod lock;
pub mod net;
mod node_exec;
pub mod nspawn;
pub mod packages;
mod pkgcache;
pub mod seed;
pub mod snapshot;
mod ssh;
mod state;
pub mod vm;

pub use backend::{Backend, Booting, ExecIo, ExecOutcome, ExecRequest, NodeLaunch};
pub use cluster::{
    Engine, GcReport, NodeUsage, OnRemoved, Ownership, PoolConfig, PoolEntry, PoolStatus, Pooled,
    Progress, Removed, Restored, RestoredNode, SpawnReaper, UpRequest, CLUSTER_ID_LEN, DEFAULT_TTL,
};
pub use error::SandboxError;
pub use fault::{FaultRecord, FaultStatus};
pub use node_exec::{Captured, CapturedBytes, NodeExec};
pub use pkgcache::{PackageCache, CACHE_PORT, SERVICE_BRIDGE};
pub use snapshot::{CopyMode, Snapshot, SnapshotNode};
pub use state::{ClusterState, ClusterStatus, NetworkState, Nic, NodeState};
