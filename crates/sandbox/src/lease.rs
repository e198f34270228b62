//! Host-wide leases: what every rehearse process on the host must agree on,
//! whatever its state directory. Cluster ids name interfaces, cgroups and
//! firewall tables; subnets become routes; node UID ranges own the nodes'
//! files and processes. None of these may be handed out twice, so each cluster
//! holds a lease on its own: one JSON file per cluster under
//! `/run/rehearse/leases`, written under a host-wide lock together with the
//! cluster's state, and released when the cluster is gone.
//!
//! A lease is live while the kernel boot it was taken in lasts and its
//! cluster's folder exists; anything else is left over from a process killed
//! mid-teardown (or a deleted state directory) and is pruned.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use crate::SandboxError;

/// Where leases live on every host.
pub const HOST_LEASE_DIR: &str = "/run/rehearse/leases";

/// The first host UID of the node ranges. Above systemd's own container
/// range (which `systemd-nspawn --private-users=pick` draws from, up to
/// `0x6FFEFFFF`) and the images' range, below its foreign range (`0x7FFE0000`).
pub const NODE_UID_FIRST: u32 = 0x7000_0000;
/// One past the last host UID of the node ranges.
pub const NODE_UID_END: u32 = 0x7FFE_0000;
/// Size of a node's UID range (node UIDs and GIDs 0–65535).
pub const NODE_UID_COUNT: u32 = rehearse_image::UID_RANGE;

/// How many node UID ranges the host has.
pub fn node_range_capacity() -> usize {
    ((NODE_UID_END - NODE_UID_FIRST) / NODE_UID_COUNT) as usize
}

/// What a cluster holds on the host.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lease {
    pub cluster: String,
    /// The state directory the cluster lives in.
    pub state_dir: PathBuf,
    /// `/proc/sys/kernel/random/boot_id` when the lease was taken.
    pub boot_id: String,
    pub subnets: Vec<Ipv4Net>,
    /// First host UID of each node's range.
    pub uid_bases: Vec<u32>,
}

impl Lease {
    fn cluster_dir(&self) -> PathBuf {
        self.state_dir.join("clusters").join(&self.cluster)
    }
}

/// The host's lease folder.
#[derive(Debug, Clone)]
pub struct Leases {
    dir: PathBuf,
}

/// The host-wide allocation lock, held while leases are read and written.
pub struct HostLock(#[allow(dead_code)] Flock<fs::File>);

impl Leases {
    pub fn host() -> Self {
        Leases::at(Path::new(HOST_LEASE_DIR))
    }

    pub fn at(dir: &Path) -> Self {
        Leases {
            dir: dir.to_path_buf(),
        }
    }

    /// Takes the host-wide lock. Take it after a state directory's own lock,
    /// never before.
    pub fn lock(&self) -> Result<HostLock, SandboxError> {
        crate::lock::exclusive_in(&self.dir).map(HostLock)
    }

    fn path(&self, cluster: &str) -> PathBuf {
        self.dir.join(format!("{cluster}.json"))
    }

    /// Every live lease; leases that are no longer live are removed.
    pub fn live(&self, _held: &HostLock) -> Vec<Lease> {
        let boot = boot_id();
        let mut live = Vec::new();
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return live;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let lease: Option<Lease> = fs::read_to_string(&path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            match lease {
                Some(l) if l.boot_id == boot && l.cluster_dir().is_dir() => live.push(l),
                _ => {
                    tracing::debug!(lease = %path.display(), "pruning a stale lease");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        live.sort_by(|a, b| a.cluster.cmp(&b.cluster));
        live
    }

    /// Records a lease. The caller saves the cluster's state before it drops
    /// the lock, so the lease is never seen without its cluster folder.
    pub fn write(&self, lease: &Lease, _held: &HostLock) -> Result<(), SandboxError> {
        let path = self.path(&lease.cluster);
        let tmp = self.dir.join(format!(".{}.tmp", lease.cluster));
        let text = serde_json::to_string_pretty(lease).expect("a lease serialises");
        fs::write(&tmp, text).map_err(|e| SandboxError::io("writing", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| SandboxError::io("writing", &path, e))
    }

    /// Gives up the cluster's lease, if it is the one of `state_dir`.
    pub fn release(&self, cluster: &str, state_dir: &Path) -> Result<(), SandboxError> {
        let path = self.path(cluster);
        let Ok(text) = fs::read_to_string(&path) else {
            return Ok(());
        };
        let _lock = self.lock()?;
        match serde_json::from_str::<Lease>(&text) {
            Ok(l) if !same_dir(&l.state_dir, state_dir) => Ok(()),
            _ => match fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(SandboxError::io("removing", &path, e))
                }
                _ => Ok(()),
            },
        }
    }

    /// Ids of clusters that live in other state directories: their cgroups,
    /// interfaces and firewall tables are not strays of `state_dir`.
    pub fn held_elsewhere(&self, state_dir: &Path) -> Result<BTreeSet<String>, SandboxError> {
        let lock = self.lock()?;
        Ok(self
            .live(&lock)
            .into_iter()
            .filter(|l| !same_dir(&l.state_dir, state_dir))
            .map(|l| l.cluster)
            .collect())
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || matches!(
            (fs::canonicalize(a), fs::canonicalize(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

/// The current kernel boot.
pub fn boot_id() -> String {
    fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// `count` node UID ranges that no live lease holds, lowest first.
pub fn free_uid_bases(live: &[Lease], count: usize) -> Result<Vec<u32>, SandboxError> {
    let used: BTreeSet<u32> = live
        .iter()
        .flat_map(|l| l.uid_bases.iter().copied())
        .collect();
    let free: Vec<u32> = (NODE_UID_FIRST..NODE_UID_END)
        .step_by(NODE_UID_COUNT as usize)
        .filter(|b| !used.contains(b))
        .take(count)
        .collect();
    if free.len() < count {
        return Err(SandboxError::UidRangesExhausted {
            wanted: count,
            free: free.len(),
            total: node_range_capacity(),
        });
    }
    Ok(free)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_hand_out_distinct_ranges_and_prune_what_lost_its_cluster() {
        let tmp = tempfile::tempdir().unwrap();
        let leases = Leases::at(&tmp.path().join("leases"));
        let state_a = tmp.path().join("a");
        let state_b = tmp.path().join("b");
        let lock = leases.lock().unwrap();
        let first = free_uid_bases(&leases.live(&lock), 2).unwrap();
        assert_eq!(first, vec![NODE_UID_FIRST, NODE_UID_FIRST + NODE_UID_COUNT]);
        let lease = |cluster: &str, state: &Path, bases: Vec<u32>| Lease {
            cluster: cluster.into(),
            state_dir: state.to_path_buf(),
            boot_id: boot_id(),
            subnets: vec![],
            uid_bases: bases,
        };
        fs::create_dir_all(state_a.join("clusters/aaaaaa")).unwrap();
        leases
            .write(&lease("aaaaaa", &state_a, first.clone()), &lock)
            .unwrap();
        // Another state directory gets other ranges.
        let second = free_uid_bases(&leases.live(&lock), 1).unwrap();
        assert_eq!(second, vec![NODE_UID_FIRST + 2 * NODE_UID_COUNT]);
        // A lease whose cluster folder is gone is pruned; its ranges are free.
        leases
            .write(&lease("bbbbbb", &state_b, second.clone()), &lock)
            .unwrap();
        assert_eq!(leases.live(&lock).len(), 1);
        assert!(!leases.path("bbbbbb").exists());
        drop(lock);
        assert_eq!(
            leases.held_elsewhere(&state_b).unwrap(),
            BTreeSet::from(["aaaaaa".to_string()])
        );
        assert!(leases.held_elsewhere(&state_a).unwrap().is_empty());
        // Only its own state directory releases a lease.
        leases.release("aaaaaa", &state_b).unwrap();
        assert!(leases.path("aaaaaa").exists());
        leases.release("aaaaaa", &state_a).unwrap();
        assert!(!leases.path("aaaaaa").exists());
    }
}
