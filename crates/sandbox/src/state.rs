//! On-disk cluster state under `<state>/clusters/<id>/cluster.json`.
//!
//! The state file is written before any resource is created, so a cluster whose
//! engine died at any point is still found by `gc`; every resource is also named
//! after the cluster id, so teardown works even from the id alone.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use rehearse_spec::Egress;

use crate::host::ProcessId;
use crate::SandboxError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClusterStatus {
    /// `up` is creating it (or `restore` booting its nodes again); `owner` is
    /// the process doing so.
    Booting,
    Ready,
    /// `down`, `gc` or the reaper is removing it; `owner` is the process doing so.
    Destroying,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkState {
    pub name: String,
    pub cidr: Ipv4Net,
    pub gateway: Ipv4Addr,
    pub bridge: String,
    pub egress: Egress,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Nic {
    pub network: String,
    pub ip: Ipv4Addr,
    /// Interface name inside the node (eth0, eth1, ...).
    pub iface: String,
    /// Host side of the veth pair.
    pub host_iface: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub index: usize,
    pub image: String,
    pub image_id: String,
    pub backend: String,
    pub groups: Vec<String>,
    pub nics: Vec<Nic>,
    /// Name the backend knows the node by (machine name, VM name).
    pub machine: String,
    /// The process supervising the node (systemd-nspawn, qemu).
    pub supervisor: Option<ProcessId>,
    /// The node's PID 1, as seen from the host.
    pub leader: Option<ProcessId>,
    pub boot_ms: Option<u64>,
    /// First host UID of the node's own UID range (leased host-wide); none
    /// for nodes that run in their image's range (clusters made before
    /// per-node ranges, VM nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid_base: Option<u32>,
    /// Why the node's first boot failed, when it was booted a second time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_retried: Option<String>,
    /// What the node may use of the host, as enforced (the topology's
    /// limits with the engine's defaults filled in).
    #[serde(default)]
    pub limits: rehearse_spec::NodeLimits,
}

impl NodeState {
    /// The limits written into the node's cgroups: a container's own; none
    /// for a VM, whose memory and CPUs are its machine's size.
    pub fn cgroup_limits(&self) -> rehearse_spec::NodeLimits {
        if self.backend == "nspawn" {
            self.limits
        } else {
            rehearse_spec::NodeLimits::default()
        }
    }

    /// The node's address on its first network.
    pub fn ip(&self) -> Option<Ipv4Addr> {
        self.nics.first().map(|n| n.ip)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterState {
    pub id: String,
    pub status: ClusterStatus,
    pub created_at: u64,
    pub expires_at: u64,
    /// The process working on the cluster while it is booting or being
    /// destroyed; nobody else may touch it while that process lives.
    pub owner: Option<ProcessId>,
    /// The process the cluster was made for (a scenario run, a converge loop,
    /// a server's job): it is destroyed as soon as that process is dead. None:
    /// the user's cluster (`up`, `provision`, a kept run), which lives until
    /// its time-to-live runs out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub belongs_to: Option<ProcessId>,
    /// The boot of the host the cluster was made in: after a reboot none of
    /// its processes, mounts or links exist any more.
    #[serde(default)]
    pub boot_id: String,
    pub networks: Vec<NetworkState>,
    pub nodes: Vec<NodeState>,
    pub boot_ms: Option<u64>,
    /// Where the topology came from (a file path, or `--nodes N`).
    pub source: String,
    /// Whether the cluster was claimed from the warm pool (booted ahead of
    /// demand) rather than booted for its request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_pool: bool,
}

impl ClusterState {
    pub fn node(&self, name: &str) -> Result<&NodeState, SandboxError> {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| SandboxError::NodeNotFound {
                cluster: self.id.clone(),
                node: name.to_string(),
                known: self
                    .nodes
                    .iter()
                    .map(|n| n.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    pub fn ttl_left(&self) -> i64 {
        self.expires_at as i64 - crate::host::now_secs() as i64
    }
}

/// The folder of all clusters, and its lock.
#[derive(Debug, Clone)]
pub struct ClusterRegistry {
    root: PathBuf,
}

impl ClusterRegistry {
    pub fn new(state_dir: &Path) -> Self {
        ClusterRegistry {
            root: state_dir.join("clusters"),
        }
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Takes the registry-wide lock: held while allocating ids and subnets and while
    /// `gc` decides what is orphaned.
    pub fn lock(&self) -> Result<Flock<fs::File>, SandboxError> {
        crate::lock::exclusive_in(&self.root)
    }

    pub fn save(&self, state: &ClusterState) -> Result<(), SandboxError> {
        let dir = self.dir(&state.id);
        fs::create_dir_all(&dir).map_err(|e| SandboxError::io("creating", &dir, e))?;
        let path = dir.join("cluster.json");
        let tmp = dir.join(".cluster.json.tmp");
        let text = serde_json::to_string_pretty(state).expect("cluster state serialises");
        fs::write(&tmp, text).map_err(|e| SandboxError::io("writing", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| SandboxError::io("writing", &path, e))
    }

    pub fn load(&self, id: &str) -> Result<ClusterState, SandboxError> {
        if id.is_empty() || id.contains('/') || id.starts_with('.') {
            return Err(SandboxError::ClusterNotFound(id.to_string()));
        }
        let path = self.dir(id).join("cluster.json");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SandboxError::ClusterNotFound(id.to_string()))
            }
            Err(e) => return Err(SandboxError::io("reading", &path, e)),
        };
        serde_json::from_str(&text).map_err(|e| SandboxError::CorruptState {
            path,
            reason: e.to_string(),
        })
    }

    /// Ids of every cluster folder, readable or not.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = fs::read_dir(&self.root)
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        ids.sort();
        ids
    }

    /// Every readable cluster state.
    pub fn list(&self) -> Vec<ClusterState> {
        let mut all: Vec<ClusterState> = self
            .ids()
            .iter()
            .filter_map(|id| self.load(id).ok())
            .collect();
        all.sort_by_key(|c| c.created_at);
        all
    }
}
