//! A warm pool: clusters booted ahead of demand, handed whole to the first
//! `up` (or run, converge, provision) whose topology is theirs.
//!
//! A pooled cluster is an ordinary cluster made by a keeper process (it
//! belongs to the keeper, so `gc` and its reaper remove it when the keeper
//! dies) with one more file in its folder, `pool`, naming the shape it waits
//! for. Claiming it, under the cluster registry's lock, removes that file and
//! gives the cluster to its new owner with the requested time to live: the
//! cluster keeps the id, addresses, bridges, key and machine identities it was
//! booted with, all of them its own and never seen by anyone before, so
//! nothing inside a claimed node tells it apart from a freshly booted one.
//!
//! Only topologies a pool can hold exactly are served from it: N nodes named
//! node1..nodeN of one image on the default network, with default limits (what
//! `up -n N`, `provision` with a count, and scenarios without a topology ask
//! for). Anything else boots fresh.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use rehearse_spec::Topology;

use super::{Engine, Ownership, UpRequest};
use crate::host::now_secs;
use crate::host::ProcessId;
use crate::state::{ClusterState, ClusterStatus};
use crate::SandboxError;

/// In a pooled cluster's folder: the shape it waits for.
const POOL_FILE: &str = "pool";

/// The pool's settings, in `<state dir>/pool.yaml`.
const CONFIG_FILE: &str = "pool.yaml";

/// Held by the one keeper of a state directory.
const KEEPER_LOCK: &str = "pool.keeper";

/// The source of a cluster the keeper boots, until it is claimed.
const POOL_SOURCE: &str = "pool ";

/// How long a pooled cluster may wait: the keeper's life bounds it anyway.
const POOLED_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// One shape the pool keeps ready: `size` clusters of `nodes` nodes of `image`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolEntry {
    pub image: String,
    pub nodes: usize,
    pub size: usize,
}

impl PoolEntry {
    /// The shape's name, also written in each pooled cluster's folder.
    pub fn shape(&self) -> String {
        shape_of(self.nodes, &self.image)
    }

    fn topology(&self) -> Result<Topology, SandboxError> {
        Ok(Topology::with_nodes(self.nodes, &self.image)?)
    }
}

fn shape_of(nodes: usize, image: &str) -> String {
    format!("{nodes}x{image}")
}

/// What the pool keeps ready. Empty: no pool (the default).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    #[serde(default)]
    pub entries: Vec<PoolEntry>,
}

impl PoolConfig {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(CONFIG_FILE)
    }

    /// The settings of a state directory; none written means no pool.
    pub fn load(state_dir: &Path) -> Result<PoolConfig, SandboxError> {
        let path = Self::path(state_dir);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_yaml::from_str(&text).map_err(|e| {
                SandboxError::Refused(format!(
                    "{}: {e}; fix the file or set the pool again with `rehearse pool set`",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(PoolConfig::default()),
            Err(e) => Err(SandboxError::io("reading", &path, e)),
        }
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), SandboxError> {
        let path = Self::path(state_dir);
        let tmp = state_dir.join(".pool.yaml.tmp");
        let text = format!(
            "# The warm pool of this state directory: clusters `rehearse pool keep` (or\n\
             # `rehearse serve --pool`) boots ahead of demand. Set with `rehearse pool set`.\n{}",
            serde_yaml::to_string(self).expect("pool settings serialise")
        );
        std::fs::create_dir_all(state_dir)
            .map_err(|e| SandboxError::io("creating", state_dir, e))?;
        std::fs::write(&tmp, text).map_err(|e| SandboxError::io("writing", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| SandboxError::io("writing", &path, e))
    }

    /// Sets how many clusters of a shape to keep (0 removes the shape).
    pub fn set(&mut self, image: &str, nodes: usize, size: usize) -> Result<(), SandboxError> {
        Topology::with_nodes(nodes, image)?;
        self.entries
            .retain(|e| !(e.image == image && e.nodes == nodes));
        if size > 0 {
            self.entries.push(PoolEntry {
                image: image.to_string(),
                nodes,
                size,
            });
        }
        Ok(())
    }
}

/// One cluster waiting in the pool.
#[derive(Debug, Clone, Serialize)]
pub struct Pooled {
    pub cluster: String,
    pub shape: String,
    pub nodes: usize,
    /// Memory its nodes use now, in bytes.
    pub memory_bytes: u64,
    /// CPU time its nodes used since they booted, in microseconds.
    pub cpu_usec: u64,
    /// Since when it waits (seconds since the epoch).
    pub ready_since: u64,
}

/// What `pool status` shows.
#[derive(Debug, Clone, Serialize)]
pub struct PoolStatus {
    pub config: PoolConfig,
    /// The keeper's pid, when one runs.
    pub keeper: Option<u32>,
    pub ready: Vec<Pooled>,
}

impl PoolStatus {
    pub fn memory_bytes(&self) -> u64 {
        self.ready.iter().map(|p| p.memory_bytes).sum()
    }
}

/// The shape a topology has if a pool can hold it exactly.
fn poolable_shape(topology: &Topology) -> Option<String> {
    let first = topology.nodes.first()?;
    let mut plain = Topology::with_nodes(topology.nodes.len(), &first.image).ok()?;
    plain.ttl = topology.ttl;
    (plain == *topology).then(|| shape_of(topology.nodes.len(), &first.image))
}

impl Engine {
    /// Takes a pooled cluster for `req` when one of its shape is ready; `None`
    /// when there is none (the caller boots a fresh one).
    pub(super) fn claim_pooled(
        &self,
        req: &UpRequest,
    ) -> Result<Option<ClusterState>, SandboxError> {
        let Some(shape) = poolable_shape(&req.topology) else {
            return Ok(None);
        };
        let t0 = Instant::now();
        let _lock = self.registry.lock()?;
        for id in self.registry.ids() {
            let marker = self.registry.dir(&id).join(POOL_FILE);
            if std::fs::read_to_string(&marker).ok().as_deref() != Some(shape.as_str()) {
                continue;
            }
            let Ok(mut state) = self.registry.load(&id) else {
                continue;
            };
            let keeper_alive = state.belongs_to.is_some_and(|k| k.is_alive());
            if state.status != ClusterStatus::Ready || state.owner.is_some() || !keeper_alive {
                continue;
            }
            if !self.images_current(&state) {
                continue;
            }
            let now = now_secs();
            state.belongs_to = (req.ownership == Ownership::ThisProcess).then(ProcessId::current);
            state.expires_at = now + req.topology.ttl.unwrap_or(req.ttl).as_secs();
            state.source = req.source.clone();
            state.created_at = now;
            state.boot_ms = Some(t0.elapsed().as_millis() as u64);
            self.registry.save(&state)?;
            std::fs::remove_file(&marker).map_err(|e| SandboxError::io("removing", &marker, e))?;
            tracing::debug!(cluster = %id, shape, "claimed from the pool");
            return Ok(Some(state));
        }
        Ok(None)
    }

    /// Whether every node of a pooled cluster boots the image its name stands
    /// for now (an image rebuilt since makes the cluster stale).
    fn images_current(&self, state: &ClusterState) -> bool {
        state.nodes.iter().all(|n| {
            let current = match rehearse_spec::builtin_image(&n.image) {
                Some(spec) => Some(rehearse_image::ImageStore::id_of(&spec)),
                None => self.images.by_name(&n.image).ok().flatten().map(|im| im.id),
            };
            current.as_deref() == Some(n.image_id.as_str())
        })
    }

    /// Whether a cluster is the pool's (waiting in it, or being booted for
    /// it by the keeper) and so nobody's yet.
    pub fn is_pooled(&self, id: &str) -> bool {
        if self.registry.dir(id).join(POOL_FILE).exists() {
            return true;
        }
        let Some(keeper) = keeper_pid(&self.state_dir) else {
            return false;
        };
        // Booting for the pool: the keeper's, with the source the keeper
        // gives (a server keeping a pool also owns its jobs' clusters).
        self.registry.load(id).is_ok_and(|s| {
            s.belongs_to.is_some_and(|b| b.pid as u32 == keeper)
                && s.source.starts_with(POOL_SOURCE)
        })
    }

    /// The pool's settings, its keeper, and every cluster waiting in it.
    pub fn pool_status(&self) -> Result<PoolStatus, SandboxError> {
        let config = PoolConfig::load(&self.state_dir)?;
        let keeper = keeper_pid(&self.state_dir);
        let mut ready = Vec::new();
        for state in self.registry.list() {
            let Ok(shape) = std::fs::read_to_string(self.registry.dir(&state.id).join(POOL_FILE))
            else {
                continue;
            };
            let memory_bytes = state
                .nodes
                .iter()
                .filter_map(|n| self.cgroups.node_memory_used(&state.id, &n.name))
                .sum();
            let cpu_usec = state
                .nodes
                .iter()
                .map(|n| self.cgroups.node_cpu_usage_usec(&state.id, &n.name))
                .sum();
            ready.push(Pooled {
                cluster: state.id.clone(),
                shape,
                nodes: state.nodes.len(),
                memory_bytes,
                cpu_usec,
                ready_since: state.created_at,
            });
        }
        Ok(PoolStatus {
            config,
            keeper,
            ready,
        })
    }

    /// Keeps the pool of this state directory filled as its settings say
    /// (read again every round, so `pool set` takes effect while it runs),
    /// until `stop` is set; then destroys every cluster still waiting in it.
    /// One keeper per state directory: a second one is refused.
    pub fn keep_pool(
        &self,
        stop: &AtomicBool,
        on_event: &(dyn Fn(&str) + Sync),
    ) -> Result<(), SandboxError> {
        let lock_path = self.state_dir.join(KEEPER_LOCK);
        let _keeper = crate::lock::try_exclusive(&lock_path)?.ok_or_else(|| {
            SandboxError::Refused(format!(
                "another keeper (pid {}) already keeps the pool of {}; stop it first",
                keeper_pid(&self.state_dir)
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "?".into()),
                self.state_dir.display()
            ))
        })?;
        let _ = std::fs::write(&lock_path, format!("{}\n", std::process::id()));
        let me = ProcessId::current();
        let mut backoff_until = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let config = match PoolConfig::load(&self.state_dir) {
                Ok(c) => c,
                Err(e) => {
                    on_event(&format!("reading the pool settings: {e}"));
                    PoolConfig::default()
                }
            };
            let mine: Vec<(String, String)> = self
                .registry
                .ids()
                .into_iter()
                .filter_map(|id| {
                    let shape =
                        std::fs::read_to_string(self.registry.dir(&id).join(POOL_FILE)).ok()?;
                    let state = self.registry.load(&id).ok()?;
                    (state.belongs_to == Some(me)).then_some((id, shape))
                })
                .collect();
            // Clusters of an image rebuilt since they booted: replaced.
            let (stale, mine): (Vec<_>, Vec<_>) = mine.into_iter().partition(|(id, _)| {
                self.registry
                    .load(id)
                    .is_ok_and(|state| !self.images_current(&state))
            });
            for (id, shape) in stale {
                if self.unpool(&id) {
                    let _ = self.down(&id);
                    on_event(&format!("removed {id} ({shape}): its image was rebuilt"));
                }
            }
            // Shapes no longer asked for, or more than asked: destroyed.
            for entry_shape in mine.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>() {
                let wanted = config
                    .entries
                    .iter()
                    .find(|e| e.shape() == entry_shape)
                    .map_or(0, |e| e.size);
                let extra: Vec<&String> = mine
                    .iter()
                    .filter(|(_, s)| *s == entry_shape)
                    .map(|(id, _)| id)
                    .skip(wanted)
                    .collect();
                for id in extra {
                    if self.unpool(id) {
                        let _ = self.down(id);
                        on_event(&format!("removed {id} ({entry_shape}): not asked for"));
                    }
                }
            }
            let missing = config
                .entries
                .iter()
                .find(|e| mine.iter().filter(|(_, s)| *s == e.shape()).count() < e.size);
            match missing {
                Some(entry) if Instant::now() >= backoff_until => match self.boot_pooled(entry) {
                    Ok(id) => on_event(&format!("{id} ({}) ready", entry.shape())),
                    Err(e) => {
                        on_event(&format!("booting a {} cluster: {e}", entry.shape()));
                        backoff_until = Instant::now() + Duration::from_secs(5);
                    }
                },
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
        // Draining: whatever still waits is destroyed; claimed clusters are
        // their owners' now and stay.
        for id in self.registry.ids() {
            let ours = self
                .registry
                .load(&id)
                .is_ok_and(|s| s.belongs_to == Some(me));
            if ours && self.unpool(&id) {
                let _ = self.down(&id);
                on_event(&format!("removed {id}: the keeper stops"));
            }
        }
        let _ = std::fs::remove_file(&lock_path);
        Ok(())
    }

    /// Takes a cluster out of the pool so nobody claims it any more; false if
    /// it was claimed meanwhile.
    fn unpool(&self, id: &str) -> bool {
        let Ok(_lock) = self.registry.lock() else {
            return false;
        };
        std::fs::remove_file(self.registry.dir(id).join(POOL_FILE)).is_ok()
    }

    /// Boots one cluster of `entry`'s shape into the pool.
    fn boot_pooled(&self, entry: &PoolEntry) -> Result<String, SandboxError> {
        let state = self.up_fresh(
            UpRequest {
                topology: entry.topology()?,
                ttl: POOLED_TTL,
                boot_timeout: Duration::from_secs(60),
                source: format!("{POOL_SOURCE}{}", entry.shape()),
                ownership: Ownership::ThisProcess,
            },
            &|_| {},
        )?;
        let marker = self.registry.dir(&state.id).join(POOL_FILE);
        let _lock = self.registry.lock()?;
        std::fs::write(&marker, entry.shape())
            .map_err(|e| SandboxError::io("writing", &marker, e))?;
        Ok(state.id)
    }
}

/// The pid of the keeper of a state directory, when one runs.
fn keeper_pid(state_dir: &Path) -> Option<u32> {
    let path = state_dir.join(KEEPER_LOCK);
    // Held: a keeper runs. Free: the file is what a dead one left.
    if crate::lock::try_exclusive(&path).ok()?.is_some() {
        return None;
    }
    std::fs::read_to_string(&path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_topologies_are_poolable() {
        let plain = Topology::with_nodes(3, "debian-12").unwrap();
        assert_eq!(poolable_shape(&plain).as_deref(), Some("3xdebian-12"));
        let mut named = plain.clone();
        named.nodes[0].name = "web".into();
        assert_eq!(poolable_shape(&named), None);
        let mut grouped = plain.clone();
        grouped.nodes[1].groups.push("db".into());
        assert_eq!(poolable_shape(&grouped), None);
        let mut timed = plain.clone();
        timed.ttl = Some(Duration::from_secs(60));
        assert_eq!(poolable_shape(&timed).as_deref(), Some("3xdebian-12"));
    }

    #[test]
    fn settings_replace_and_remove_a_shape() {
        let mut c = PoolConfig::default();
        c.set("debian-12", 4, 2).unwrap();
        c.set("debian-12", 4, 3).unwrap();
        c.set("debian-12", 1, 1).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert_eq!(c.entries.iter().find(|e| e.nodes == 4).unwrap().size, 3);
        c.set("debian-12", 1, 0).unwrap();
        assert_eq!(c.entries.len(), 1);
        assert!(c.set("debian-12", 0, 1).is_err());
    }
}
