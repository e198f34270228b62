//! Snapshots of a whole cluster: taken with every node frozen, restored by
//! booting every node again from the captured layers; and images saved from a
//! node for later clusters.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::fcntl::Flock;
use serde::{Deserialize, Serialize};

use rehearse_image::Image;

use crate::cgroup::Cgroups;
use crate::host::{now_secs, ProcessId};
use crate::snapshot::{self, CopyMode, Snapshot, SnapshotNode, SNAPSHOTS_DIR};
use crate::state::{ClusterState, ClusterStatus, NodeState};
use crate::SandboxError;

use super::Engine;

/// How long freezing a node may take before the snapshot is given up.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);

/// What `restore` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Restored {
    pub cluster: String,
    pub snapshot: String,
    /// From the call to every node booted again (ms).
    pub took_ms: u64,
    /// Copying the snapshot's layers next to the nodes' (ms; nodes still running).
    pub copy_ms: u64,
    /// Stopping the nodes and swapping their layers (ms).
    pub stop_ms: u64,
    /// Booting every node to ready (ms).
    pub boot_ms: u64,
    /// Removing the layers that were replaced (ms).
    pub cleanup_ms: u64,
    pub nodes: Vec<RestoredNode>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RestoredNode {
    pub name: String,
    /// The node's boot after its layer was put back (ms).
    pub boot_ms: Option<u64>,
}

/// A cluster marked as booting by this process; ready again when dropped.
/// How long a node booted to finish an interrupted restore may take.
const RESUME_BOOT_TIMEOUT: Duration = Duration::from_secs(60);

struct Booting<'a> {
    engine: &'a Engine,
    id: String,
    owner: Option<ProcessId>,
}

impl Drop for Booting<'_> {
    fn drop(&mut self) {
        let registry = &self.engine.registry;
        let _lock = registry.lock();
        if let Ok(mut state) = registry.load(&self.id) {
            if state.status == ClusterStatus::Booting {
                state.status = ClusterStatus::Ready;
                state.owner = self.owner;
                if let Err(e) = registry.save(&state) {
                    tracing::error!(cluster = self.id, error = %e, "marking the cluster ready");
                }
            }
        }
    }
}

/// Thaws the nodes it froze when dropped, whatever happened in between.
struct Frozen<'a> {
    cgroups: &'a Cgroups,
    cluster: &'a str,
    nodes: Vec<&'a str>,
}

impl<'a> Frozen<'a> {
    fn freeze(&mut self, node: &'a str) -> Result<(), SandboxError> {
        self.nodes.push(node);
        self.cgroups
            .set_node_frozen(self.cluster, node, true, FREEZE_TIMEOUT)
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        for node in &self.nodes {
            if let Err(e) = self
                .cgroups
                .set_node_frozen(self.cluster, node, false, FREEZE_TIMEOUT)
            {
                tracing::error!(cluster = self.cluster, node, error = %e, "thawing a node");
            }
        }
    }
}

fn upper_dir(node_dir: &Path) -> PathBuf {
    node_dir.join("upper")
}

/// Snapshots capture overlay layers: nodes of other backends have none.
fn layered(state: &ClusterState, nodes: &[&NodeState]) -> Result<(), SandboxError> {
    match nodes.iter().find(|n| n.backend != "nspawn") {
        Some(n) => Err(SandboxError::Refused(format!(
            "node {} of cluster {} runs on the {} backend; snapshots and saved images capture the overlay layers of nspawn nodes only",
            n.name, state.id, n.backend
        ))),
        None => Ok(()),
    }
}

impl Engine {
    fn snapshots_dir(&self, id: &str) -> PathBuf {
        self.registry.dir(id).join(SNAPSHOTS_DIR)
    }

    fn node_dir(&self, id: &str, node: &str) -> PathBuf {
        self.registry.dir(id).join("nodes").join(node)
    }

    /// One snapshot operation at a time per cluster.
    fn snapshot_lock(&self, id: &str) -> Result<Flock<fs::File>, SandboxError> {
        let dir = self.snapshots_dir(id);
        let lock = crate::lock::exclusive_in(&dir)?;
        self.repair_snapshot_leftovers(id, &dir);
        Ok(lock)
    }

    /// Thaws the nodes and removes the half-written folders a snapshot or
    /// save killed mid-way left, unless a snapshot operation is under way.
    /// `gc` calls it for every cluster it keeps that has a frozen node.
    pub(super) fn repair_interrupted_snapshot(&self, id: &str) -> Result<(), SandboxError> {
        let dir = self.snapshots_dir(id);
        if !dir.is_dir() {
            return Ok(());
        }
        if let Some(_lock) = crate::lock::try_exclusive(&dir.join(".lock"))? {
            self.repair_snapshot_leftovers(id, &dir);
            tracing::info!(
                cluster = id,
                "thawed nodes a snapshot killed mid-way left frozen"
            );
        }
        Ok(())
    }

    /// With the snapshot lock held, no snapshot is being taken: a frozen
    /// node or a half-written folder was left by a process killed mid-way.
    fn repair_snapshot_leftovers(&self, id: &str, dir: &Path) {
        if let Ok(entries) = fs::read_dir(dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with(".new-") || name.starts_with(".save-") {
                    let merged = entry.path().join("merged");
                    let _ = nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH);
                    let _ = snapshot::remove_tree(&entry.path());
                }
            }
        }
        if let Ok(state) = self.registry.load(id) {
            for node in &state.nodes {
                let _ = self
                    .cgroups
                    .set_node_frozen(id, &node.name, false, FREEZE_TIMEOUT);
            }
        }
    }

    fn snapshot_not_found(&self, id: &str, name: &str) -> SandboxError {
        let known: Vec<String> = self
            .snapshots(id)
            .unwrap_or_default()
            .into_iter()
            .map(|s| s.name)
            .collect();
        SandboxError::SnapshotNotFound {
            cluster: id.to_string(),
            name: name.escape_default().to_string(),
            known: if known.is_empty() {
                "it has none".to_string()
            } else {
                format!("its snapshots: {}", known.join(", "))
            },
        }
    }

    /// Captures every node's disk at one instant: all nodes are frozen, their
    /// layers copied (cloned where the filesystem can), then thawed.
    pub fn snapshot(&self, id: &str, name: &str) -> Result<Snapshot, SandboxError> {
        let t0 = Instant::now();
        snapshot::validate_name("snapshot name", name)?;
        let state = self.registry.load(id)?;
        layered(&state, &state.nodes.iter().collect::<Vec<_>>())?;
        let _lock = self.snapshot_lock(id)?;
        let dir = self.snapshots_dir(id);
        let target = dir.join(name);
        if let Some(existing) = Snapshot::read(&target) {
            return Err(SandboxError::Refused(format!(
                "cluster {id} already has a snapshot \"{name}\" (taken {}s ago); remove it first or pick another name",
                now_secs().saturating_sub(existing.created_at)
            )));
        }
        let staging = dir.join(format!(".new-{name}-{}", std::process::id()));
        snapshot::remove_tree(&staging)?;
        snapshot::remove_tree(&target)?;
        fs::create_dir_all(&staging).map_err(|e| SandboxError::io("creating", &staging, e))?;
        let copy = if snapshot::reflink_supported(&staging) {
            CopyMode::Reflink
        } else {
            CopyMode::Copy
        };
        let captured = self.capture(&state, &staging);
        let frozen_ms = match captured {
            Ok(ms) => ms,
            Err(e) => {
                let _ = snapshot::remove_tree(&staging);
                return Err(e);
            }
        };
        let nodes: Vec<SnapshotNode> = state
            .nodes
            .iter()
            .map(|n| {
                let (bytes, files) = snapshot::tree_size(&Snapshot::node_dir(&staging, &n.name));
                SnapshotNode {
                    name: n.name.clone(),
                    image: n.image.clone(),
                    image_id: n.image_id.clone(),
                    bytes,
                    files,
                }
            })
            .collect();
        let manifest = Snapshot {
            name: name.to_string(),
            cluster: id.to_string(),
            created_at: now_secs(),
            frozen_ms,
            took_ms: t0.elapsed().as_millis() as u64,
            copy,
            bytes: nodes.iter().map(|n| n.bytes).sum(),
            nodes,
        };
        let finished = manifest.write(&staging).and_then(|()| {
            fs::rename(&staging, &target).map_err(|e| SandboxError::io("storing", &target, e))
        });
        if let Err(e) = finished {
            let _ = snapshot::remove_tree(&staging);
            return Err(e);
        }
        tracing::info!(cluster = id, snapshot = name, frozen_ms, "snapshot taken");
        Ok(manifest)
    }

    /// Freezes every node, copies each node's layer into `into/<node>`, thaws.
    /// Returns how long the nodes were frozen (ms).
    fn capture(&self, state: &ClusterState, into: &Path) -> Result<u64, SandboxError> {
        let mut frozen = Frozen {
            cgroups: &self.cgroups,
            cluster: &state.id,
            nodes: Vec::new(),
        };
        for node in &state.nodes {
            frozen.freeze(&node.name)?;
        }
        let t_frozen = Instant::now();
        // Frozen processes write nothing more; what they wrote is in the page
        // cache the copy reads. Syncing makes the snapshot itself durable.
        if let Ok(f) = fs::File::open(into) {
            use std::os::fd::AsRawFd;
            let _ = nix::unistd::syncfs(f.as_raw_fd());
        }
        let results: Vec<Result<(), SandboxError>> = std::thread::scope(|s| {
            let handles: Vec<_> = state
                .nodes
                .iter()
                .map(|node| {
                    let src = upper_dir(&self.node_dir(&state.id, &node.name));
                    let dst = Snapshot::node_dir(into, &node.name);
                    s.spawn(move || snapshot::copy_tree(&src, &dst))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("copy thread panicked"))
                .collect()
        });
        let ms = t_frozen.elapsed().as_millis() as u64;
        drop(frozen);
        results.into_iter().collect::<Result<Vec<()>, _>>()?;
        Ok(ms)
    }

    /// The cluster's snapshots, oldest first.
    pub fn snapshots(&self, id: &str) -> Result<Vec<Snapshot>, SandboxError> {
        self.registry.load(id)?;
        let mut found: Vec<Snapshot> = fs::read_dir(self.snapshots_dir(id))
            .map(|entries| {
                entries
                    .flatten()
                    .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                    .filter_map(|e| Snapshot::read(&e.path()))
                    .collect()
            })
            .unwrap_or_default();
        found.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.name.cmp(&b.name)));
        Ok(found)
    }

    /// Removes one snapshot of a cluster.
    pub fn remove_snapshot(&self, id: &str, name: &str) -> Result<Snapshot, SandboxError> {
        snapshot::validate_name("snapshot name", name)?;
        self.registry.load(id)?;
        let _lock = self.snapshot_lock(id)?;
        let dir = self.snapshots_dir(id).join(name);
        let manifest = Snapshot::read(&dir).ok_or_else(|| self.snapshot_not_found(id, name))?;
        // The manifest goes first: a half-removed snapshot never looks complete.
        let _ = fs::remove_file(dir.join("manifest.json"));
        snapshot::remove_tree(&dir)?;
        Ok(manifest)
    }

    /// Brings every node of the cluster back to a snapshot: the nodes are
    /// stopped, their layers replaced by the snapshot's (overlay work folders
    /// emptied), and booted again; ready (systemd up, sshd answering) when
    /// this returns.
    pub fn restore(
        &self,
        id: &str,
        name: &str,
        boot_timeout: Duration,
    ) -> Result<Restored, SandboxError> {
        let t0 = Instant::now();
        snapshot::validate_name("snapshot name", name)?;
        let state = self.registry.load(id)?;
        layered(&state, &state.nodes.iter().collect::<Vec<_>>())?;
        let _lock = self.snapshot_lock(id)?;
        let dir = self.snapshots_dir(id).join(name);
        let manifest = Snapshot::read(&dir).ok_or_else(|| self.snapshot_not_found(id, name))?;
        let active: Vec<String> = self
            .faults(id)?
            .iter()
            .filter(|f| f.status == crate::FaultStatus::Active)
            .map(|f| f.id.to_string())
            .collect();
        if !active.is_empty() {
            return Err(SandboxError::Refused(format!(
                "cluster {id} has active faults ({}); restoring would undo them behind their records: heal them first",
                active.join(", ")
            )));
        }
        for node in &state.nodes {
            match manifest.nodes.iter().find(|n| n.name == node.name) {
                Some(n) if n.image_id == node.image_id => {}
                Some(n) => {
                    return Err(SandboxError::Refused(format!(
                        "snapshot \"{name}\" holds node {} over image {} ({}) but the node now runs {} ({}); it cannot be restored on this cluster",
                        node.name, n.image, n.image_id, node.image, node.image_id
                    )))
                }
                None => {
                    return Err(SandboxError::Refused(format!(
                        "snapshot \"{name}\" has no layer for node {} of cluster {id}; it cannot be restored on this cluster",
                        node.name
                    )))
                }
            }
        }
        // Copy the layers next to the live ones while the nodes still run, so
        // they are down only for the swap and the boot.
        let staged: Vec<(PathBuf, PathBuf)> = state
            .nodes
            .iter()
            .map(|n| {
                let node_dir = self.node_dir(id, &n.name);
                (node_dir.join("upper.restore"), node_dir)
            })
            .collect();
        let copies: Vec<Result<(), SandboxError>> = std::thread::scope(|s| {
            let handles: Vec<_> = state
                .nodes
                .iter()
                .zip(&staged)
                .map(|(n, (restore, _))| {
                    let src = Snapshot::node_dir(&dir, &n.name);
                    s.spawn(move || {
                        snapshot::remove_tree(restore)?;
                        snapshot::copy_tree(&src, restore)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("copy thread panicked"))
                .collect()
        });
        if let Err(e) = copies.into_iter().collect::<Result<Vec<()>, _>>() {
            for (restore, _) in &staged {
                let _ = snapshot::remove_tree(restore);
            }
            return Err(e);
        }
        let copy_ms = t0.elapsed().as_millis() as u64;
        // While its nodes are down the cluster must not look orphaned to a
        // concurrent `gc` (every `up` runs one).
        let _booting = self.mark_booting(id)?;
        let t_stop = Instant::now();
        let swaps: Vec<Result<(), SandboxError>> = std::thread::scope(|s| {
            let handles: Vec<_> = state
                .nodes
                .iter()
                .zip(&staged)
                .map(|(node, (restore, node_dir))| {
                    s.spawn(move || self.swap_layer(id, &node.name, restore, node_dir))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("swap thread panicked"))
                .collect()
        });
        swaps.into_iter().collect::<Result<Vec<()>, _>>()?;
        let stop_ms = t_stop.elapsed().as_millis() as u64;
        let names: Vec<String> = state.nodes.iter().map(|n| n.name.clone()).collect();
        let t_boot = Instant::now();
        let booted = self.reboot(id, &names, Duration::ZERO, boot_timeout);
        let boot_ms = t_boot.elapsed().as_millis() as u64;
        // The layers replaced are removed once the nodes are back.
        let t_cleanup = Instant::now();
        std::thread::scope(|s| {
            for (_, node_dir) in &staged {
                s.spawn(move || snapshot::remove_tree(&node_dir.join("upper.old")));
            }
        });
        let cleanup_ms = t_cleanup.elapsed().as_millis() as u64;
        let booted = booted?;
        tracing::info!(cluster = id, snapshot = name, "snapshot restored");
        Ok(Restored {
            cluster: id.to_string(),
            snapshot: name.to_string(),
            took_ms: t0.elapsed().as_millis() as u64,
            copy_ms,
            stop_ms,
            boot_ms,
            cleanup_ms,
            nodes: booted
                .nodes
                .iter()
                .map(|n| RestoredNode {
                    name: n.name.clone(),
                    boot_ms: n.boot_ms,
                })
                .collect(),
        })
    }

    /// Finishes a restore or reboot whose process died half-way, on a
    /// cluster this process has claimed (status booting, owned by it):
    /// layers a restore staged are swapped in, every node that is down is
    /// booted, and the cluster is ready again. When that fails, the cluster
    /// is still ready, its nodes as they are (`heal` or `restore` again).
    pub(super) fn resume(&self, id: &str) {
        // A `restore` or `snapshot` started meanwhile waits for this.
        let _lock = match self.snapshot_lock(id) {
            Ok(lock) => Some(lock),
            Err(e) => {
                tracing::warn!(cluster = id, error = %e, "resuming without the snapshot lock");
                None
            }
        };
        let _ready = Booting {
            engine: self,
            id: id.to_string(),
            owner: None,
        };
        let result = (|| -> Result<usize, SandboxError> {
            let state = self.registry.load(id)?;
            for node in &state.nodes {
                let node_dir = self.node_dir(id, &node.name);
                let staged = node_dir.join("upper.restore");
                if staged.is_dir() {
                    self.swap_layer(id, &node.name, &staged, &node_dir)?;
                }
            }
            let down: Vec<String> = state
                .nodes
                .iter()
                .filter(|n| {
                    !n.leader.is_some_and(|l| l.is_alive())
                        || self.node_dir(id, &n.name).join("upper.old").exists()
                })
                .map(|n| n.name.clone())
                .collect();
            if !down.is_empty() {
                self.reboot(id, &down, Duration::ZERO, RESUME_BOOT_TIMEOUT)?;
            }
            for node in &state.nodes {
                snapshot::remove_tree(&self.node_dir(id, &node.name).join("upper.old"))?;
            }
            Ok(down.len())
        })();
        match result {
            Ok(booted) => tracing::info!(
                cluster = id,
                booted,
                "a restore or reboot died half-way: finished, the cluster is ready"
            ),
            Err(e) => tracing::warn!(
                cluster = id,
                error = %e,
                "a restore or reboot died half-way and could not be finished: the cluster is ready, its nodes as they are"
            ),
        }
    }

    /// Marks the cluster as booting, owned by this process, until the guard
    /// is dropped; then it is ready again.
    fn mark_booting(&self, id: &str) -> Result<Booting<'_>, SandboxError> {
        let _lock = self.registry.lock()?;
        let mut state = self.registry.load(id)?;
        let owner = state.owner;
        state.status = ClusterStatus::Booting;
        state.owner = Some(ProcessId::current());
        self.registry.save(&state)?;
        Ok(Booting {
            engine: self,
            id: id.to_string(),
            owner,
        })
    }

    /// Stops a node (every process killed: its disk state is about to be
    /// discarded) and puts the staged layer `restore` in place of its upper
    /// layer, with an empty work folder (overlayfs refuses one left from
    /// another upper layer). The replaced layer is left as `upper.old`.
    fn swap_layer(
        &self,
        id: &str,
        node: &str,
        restore: &Path,
        node_dir: &Path,
    ) -> Result<(), SandboxError> {
        self.cgroups.kill_node(id, node, Duration::from_secs(10))?;
        let root = node_dir.join("root");
        match nix::mount::umount2(&root, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
            Err(e) => return Err(SandboxError::io("unmounting", &root, e.into())),
        }
        let upper = upper_dir(node_dir);
        let old = node_dir.join("upper.old");
        snapshot::remove_tree(&old)?;
        if upper.exists() {
            fs::rename(&upper, &old).map_err(|e| SandboxError::io("moving", &upper, e))?;
        }
        fs::rename(restore, &upper).map_err(|e| SandboxError::io("moving", restore, e))?;
        snapshot::remove_tree(&node_dir.join("work"))
    }

    /// Turns a node's disk as it is now into a new image named `image_name`:
    /// the node's image with the node's changes applied, ready for `image:`
    /// in later topologies. The node keeps running (frozen for the copy of
    /// its layer only).
    pub fn save(&self, id: &str, node: &str, image_name: &str) -> Result<Image, SandboxError> {
        let state = self.registry.load(id)?;
        let node = state.node(node)?;
        layered(&state, &[node])?;
        let parent = self
            .images
            .list()?
            .into_iter()
            .find(|im| im.id == node.image_id)
            .ok_or_else(|| SandboxError::ImageGone {
                node: node.name.clone(),
                image: node.image.clone(),
                id: node.image_id.clone(),
            })?;
        rehearse_image::ImageSpec {
            name: image_name.to_string(),
            ..parent.spec.clone()
        }
        .validate()?;
        if let Some(existing) = self.images.by_name(image_name)? {
            return Err(rehearse_image::ImageError::NameTaken {
                name: image_name.to_string(),
                id: existing.id,
            }
            .into());
        }
        let _lock = self.snapshot_lock(id)?;
        let scratch = self
            .snapshots_dir(id)
            .join(format!(".save-{}", std::process::id()));
        snapshot::remove_tree(&scratch)?;
        fs::create_dir_all(&scratch).map_err(|e| SandboxError::io("creating", &scratch, e))?;
        let layer = scratch.join("upper");
        let result = (|| {
            {
                let mut frozen = Frozen {
                    cgroups: &self.cgroups,
                    cluster: &state.id,
                    nodes: Vec::new(),
                };
                frozen.freeze(&node.name)?;
                snapshot::copy_tree(&upper_dir(&self.node_dir(id, &node.name)), &layer)?;
            }
            let origin = format!("node {} of cluster {id}", node.name);
            self.images
                .add_saved(image_name, &parent, &origin, |rootfs| {
                    snapshot::copy_merged(&parent.rootfs(), &layer, &scratch.join("merged"), rootfs)
                })
        })();
        let cleaned = snapshot::remove_tree(&scratch);
        let image = result?;
        cleaned?;
        tracing::info!(
            cluster = id,
            node = node.name,
            image = image_name,
            "node saved as an image"
        );
        Ok(image)
    }

    /// Whether any of the cluster's cgroups is frozen (a snapshot in progress,
    /// or one that failed to thaw).
    pub fn frozen(&self, id: &str) -> bool {
        self.cgroups.any_frozen(id)
    }
}
