//! Faults injected into a live cluster, and healing them.
//!
//! Every fault is recorded in `<cluster>/faults.json` before it takes effect,
//! with what undoes it, so `heal` can undo it later from another process and
//! `rehearse faults` can show it. Destroying the cluster undoes everything on
//! its own: network rules live in the nodes' network namespaces, disk fillers
//! in their mount namespaces, and delayer processes in the cluster's cgroup.

mod delay;
mod net;
mod node;

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use rehearse_spec::trials::FaultAction;

use crate::cluster::Engine;
use crate::host::ProcessId;
use crate::state::ClusterState;
use crate::SandboxError;

pub use delay::run_delayer;
pub use net::{impairment_support, Impairment};

/// Where a fault stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultStatus {
    /// In effect until healed.
    Active,
    /// Undone by `heal`.
    Healed,
    /// Over by itself (a reboot).
    Done,
}

/// What undoes a fault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "undo", rename_all = "snake_case")]
pub enum Undo {
    Nothing,
    /// Boot the crashed node again.
    Restart {
        node: String,
    },
    /// Delete an nftables table from these nodes' network namespaces, end a
    /// delayer, remove a qdisc from interfaces of `node`.
    Network {
        table: String,
        nodes: Vec<String>,
        #[serde(default)]
        delayer: Option<ProcessId>,
        #[serde(default)]
        qdisc_node: Option<String>,
        #[serde(default)]
        qdisc_ifaces: Vec<String>,
        /// An iptables mangle chain feeding the delayer.
        #[serde(default)]
        iptables: Option<String>,
    },
    /// Unmount the filesystem laid over `path`.
    Unmount {
        node: String,
        path: String,
    },
    /// Start a unit again.
    StartService {
        node: String,
        service: String,
    },
}

/// One fault of a cluster, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultRecord {
    pub id: u32,
    pub action: FaultAction,
    pub status: FaultStatus,
    /// Milliseconds since the epoch.
    pub injected_at: u64,
    pub healed_at: Option<u64>,
    /// What was done, in words (the mechanism used).
    pub detail: String,
    pub undo: Undo,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A request refused with a message that says why.
fn invalid(message: impl Into<String>) -> SandboxError {
    SandboxError::Refused(message.into())
}

impl Engine {
    fn faults_path(&self, id: &str) -> PathBuf {
        self.cluster_dir(id).join("faults.json")
    }

    /// Every fault of a cluster, in injection order.
    pub fn faults(&self, id: &str) -> Result<Vec<FaultRecord>, SandboxError> {
        self.get(id)?;
        let path = self.faults_path(id);
        match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| SandboxError::CorruptState {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(SandboxError::io("reading", path, e)),
        }
    }

    fn save_faults(&self, id: &str, faults: &[FaultRecord]) -> Result<(), SandboxError> {
        let path = self.faults_path(id);
        let tmp = path.with_extension("json.tmp");
        fs::write(
            &tmp,
            serde_json::to_string_pretty(faults).expect("faults serialise"),
        )
        .map_err(|e| SandboxError::io("writing", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| SandboxError::io("writing", &path, e))
    }

    fn fault_lock(&self, id: &str) -> Result<nix::fcntl::Flock<fs::File>, SandboxError> {
        let path = self.cluster_dir(id).join(".faults.lock");
        crate::lock::exclusive(&path)
    }

    /// Injects a fault and records it. Returns the record (status `active`, or
    /// `done` for a reboot).
    pub fn inject(&self, id: &str, action: FaultAction) -> Result<FaultRecord, SandboxError> {
        action.validate().map_err(invalid)?;
        let _lock = self.fault_lock(id)?;
        let state = self.get(id)?;
        for name in action.targets() {
            let is_group = matches!(action, FaultAction::Partition { .. })
                && state
                    .nodes
                    .iter()
                    .any(|n| n.groups.iter().any(|g| g == name));
            if !is_group {
                state.node(name)?;
            }
        }
        let mut faults = self.faults(id)?;
        let fault_id = faults.iter().map(|f| f.id).max().unwrap_or(0) + 1;

        // A crash or reboot gives the node a new network namespace: link
        // faults on it end with the old one, and their delayer must go first
        // (it would keep the old namespace, and its interfaces, alive).
        if let FaultAction::Crash { node } | FaultAction::Reboot { node } = &action {
            for f in faults
                .iter_mut()
                .filter(|f| f.status == FaultStatus::Active)
            {
                if let Undo::Network { nodes, .. } = &f.undo {
                    if nodes.contains(node) {
                        self.undo(&state, &f.undo)?;
                        f.status = FaultStatus::Healed;
                        f.healed_at = Some(now_ms());
                        f.detail += &format!(" (ended: {node} went down)");
                    }
                }
            }
            self.save_faults(id, &faults)?;
        }

        let (detail, undo, status) = match &action {
            FaultAction::Crash { node } => {
                let detail = self.crash(&state, node)?;
                (
                    detail,
                    Undo::Restart { node: node.clone() },
                    FaultStatus::Active,
                )
            }
            FaultAction::Reboot { node } => {
                self.reboot(
                    id,
                    std::slice::from_ref(node),
                    Duration::from_secs(20),
                    Duration::from_secs(60),
                )?;
                (
                    format!("{node} powered off and booted again"),
                    Undo::Nothing,
                    FaultStatus::Done,
                )
            }
            FaultAction::Partition { sides } => {
                let (detail, undo) = net::partition(&state, fault_id, sides)?;
                (detail, undo, FaultStatus::Active)
            }
            FaultAction::Link {
                node,
                peers,
                loss,
                delay,
                jitter,
                rate_kbit,
            } => {
                let taken = faults.iter().any(|f| {
                    f.status == FaultStatus::Active
                        && matches!(&f.undo, Undo::Network { qdisc_node: Some(n), .. } if n == node)
                });
                let link = net::LinkSpec {
                    node,
                    peers,
                    loss: *loss,
                    delay: delay.map(|d| d.0),
                    jitter: jitter.map(|j| j.0).unwrap_or_default(),
                    rate_kbit: *rate_kbit,
                };
                if taken && (rate_kbit.is_some() || delay.is_some() && net::has_netem()) {
                    return Err(invalid(format!(
                        "{node} already has a link fault that shapes its interfaces; heal it first"
                    )));
                }
                let (detail, undo) = net::impair(self, &state, fault_id, &link)?;
                (detail, undo, FaultStatus::Active)
            }
            FaultAction::DiskFull {
                node,
                path,
                size_mb,
            } => {
                let detail = node::fill_disk(self, id, node, path, size_mb.unwrap_or(8))?;
                (
                    detail,
                    Undo::Unmount {
                        node: node.clone(),
                        path: path.clone(),
                    },
                    FaultStatus::Active,
                )
            }
            FaultAction::StopService { node, service } => {
                let detail = node::stop_service(self, id, node, service, false)?;
                (
                    detail,
                    Undo::StartService {
                        node: node.clone(),
                        service: service.clone(),
                    },
                    FaultStatus::Active,
                )
            }
            FaultAction::KillService { node, service } => {
                let detail = node::stop_service(self, id, node, service, true)?;
                (
                    detail,
                    Undo::StartService {
                        node: node.clone(),
                        service: service.clone(),
                    },
                    FaultStatus::Active,
                )
            }
        };
        let record = FaultRecord {
            id: fault_id,
            action,
            status,
            injected_at: now_ms(),
            healed_at: (status == FaultStatus::Done).then(now_ms),
            detail,
            undo,
        };
        faults.push(record.clone());
        self.save_faults(id, &faults)?;
        Ok(record)
    }

    /// Heals one active fault, or every active one (newest first). Returns the
    /// faults healed. Goes on past a failure and reports the first.
    pub fn heal(&self, id: &str, fault: Option<u32>) -> Result<Vec<FaultRecord>, SandboxError> {
        let _lock = self.fault_lock(id)?;
        let state = self.get(id)?;
        let mut faults = self.faults(id)?;
        if let Some(want) = fault {
            match faults.iter().find(|f| f.id == want) {
                None => {
                    return Err(invalid(format!(
                        "cluster {id} has no fault {want}; the list of its faults names them"
                    )))
                }
                Some(f) if f.status != FaultStatus::Active => {
                    return Err(invalid(format!(
                        "fault {want} of cluster {id} is not active"
                    )))
                }
                Some(_) => {}
            }
        }
        let mut healed = Vec::new();
        let mut first_error = None;
        for f in faults.iter_mut().rev() {
            if f.status != FaultStatus::Active || fault.is_some_and(|want| want != f.id) {
                continue;
            }
            match self.undo(&state, &f.undo) {
                Ok(()) => {
                    f.status = FaultStatus::Healed;
                    f.healed_at = Some(now_ms());
                    healed.push(f.clone());
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.save_faults(id, &faults)?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(healed),
        }
    }

    fn undo(&self, state: &ClusterState, undo: &Undo) -> Result<(), SandboxError> {
        match undo {
            Undo::Nothing => Ok(()),
            Undo::Restart { node } => {
                self.reboot(
                    &state.id,
                    std::slice::from_ref(node),
                    Duration::from_secs(1),
                    Duration::from_secs(60),
                )?;
                Ok(())
            }
            Undo::Network { .. } => net::undo(state, undo),
            Undo::Unmount { node, path } => node::unfill_disk(self, &state.id, node, path),
            Undo::StartService { node, service } => {
                node::start_service(self, &state.id, node, service)
            }
        }
    }

    /// Kills the node's PID 1, so the node goes down as on a power cut.
    fn crash(&self, state: &ClusterState, name: &str) -> Result<String, SandboxError> {
        let node = state.node(name)?;
        let leader =
            node.leader
                .filter(|l| l.is_alive())
                .ok_or_else(|| SandboxError::NodeDown {
                    cluster: state.id.clone(),
                    node: name.to_string(),
                })?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(leader.pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .map_err(|e| SandboxError::io("killing PID 1 of", name, e.into()))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while node.supervisor.is_some_and(|s| s.is_alive()) && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.kill_node_processes(&state.id, name)?;
        Ok(format!(
            "SIGKILL to {name}'s PID 1 (host PID {})",
            leader.pid
        ))
    }
}
