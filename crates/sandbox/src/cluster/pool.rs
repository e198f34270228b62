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
//! A pool entry is a whole topology — node names, images, groups, networks,
//! limits, backends — and the keeper boots clusters of exactly that topology,
//! so hostnames, `/etc/hosts` and addresses are those of a fresh boot and
//! nothing is renamed inside a live node. A request is served when its
//! topology, the time to live aside, is equal to an entry's: both are reduced
//! to a canonical form and compared by a key of it (the entry's shape).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use rehearse_spec::{NodeBackend, Topology};

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

/// At most this much of the node names goes into a shape's name.
const SHAPE_NAMES_MAX: usize = 40;

/// One shape the pool keeps ready: `size` clusters of `topology`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "EntryFile", into = "EntryFile")]
pub struct PoolEntry {
    /// The topology's canonical form (see [`canonical`]).
    pub topology: Topology,
    pub size: usize,
}

/// An entry as `pool.yaml` holds it: `image` and `nodes` for the plain
/// shape node1..nodeN (what `pool set --nodes N` writes), else the whole
/// topology in its explicit form. `shape` is written for people reading the
/// file; it is computed again from the topology when read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shape: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    nodes: Option<usize>,
    size: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topology: Option<serde_yaml::Value>,
}

impl TryFrom<EntryFile> for PoolEntry {
    type Error = String;

    fn try_from(file: EntryFile) -> Result<PoolEntry, String> {
        let what = file
            .shape
            .as_deref()
            .map(|s| format!("the entry {s}"))
            .unwrap_or_else(|| "an entry".into());
        let topology = match (file.image, file.nodes, file.topology) {
            (image, Some(nodes), None) => Topology::with_nodes(
                nodes,
                image.as_deref().unwrap_or(rehearse_spec::DEFAULT_IMAGE),
            )
            .map_err(|e| format!("{what}: {e}"))?,
            (None, None, Some(value)) => {
                let text = serde_yaml::to_string(&value).map_err(|e| format!("{what}: {e}"))?;
                Topology::from_yaml(&text, "pool.yaml").map_err(|e| format!("{what}: {e}"))?
            }
            _ => {
                return Err(format!(
                    "{what} needs either `nodes` (with `image`) or `topology`, not both"
                ))
            }
        };
        Ok(PoolEntry {
            topology: canonical(&topology, NodeBackend::default()),
            size: file.size,
        })
    }
}

impl From<PoolEntry> for EntryFile {
    fn from(entry: PoolEntry) -> EntryFile {
        let shape = Some(entry.shape());
        match plain_shape(&entry.topology) {
            Some((nodes, image)) => EntryFile {
                shape,
                image: Some(image.to_string()),
                nodes: Some(nodes),
                size: entry.size,
                topology: None,
            },
            None => EntryFile {
                shape,
                image: None,
                nodes: None,
                size: entry.size,
                topology: Some(
                    serde_yaml::to_value(&entry.topology).expect("a topology serialises"),
                ),
            },
        }
    }
}

impl PoolEntry {
    /// The shape's name, also written in each pooled cluster's folder.
    pub fn shape(&self) -> String {
        shape_of(&self.topology)
    }

    /// `(nodes, image)` when the entry is the plain shape node1..nodeN.
    pub fn plain(&self) -> Option<(usize, &str)> {
        plain_shape(&self.topology)
    }
}

/// What decides whether a cluster serves a request: the topology without
/// its time to live, each node's backend resolved (`default` for nodes that
/// leave it open).
fn canonical(topology: &Topology, default: NodeBackend) -> Topology {
    let mut t = topology.clone();
    t.ttl = None;
    t.set_default_backend(default);
    t
}

/// `(nodes, image)` when a canonical topology is node1..nodeN of one image on
/// the default network with default limits (`up -n N`).
fn plain_shape(topology: &Topology) -> Option<(usize, &str)> {
    let first = topology.nodes.first()?;
    let plain = Topology::with_nodes(topology.nodes.len(), &first.image).ok()?;
    (canonical(&plain, NodeBackend::default()) == *topology)
        .then_some((topology.nodes.len(), first.image.as_str()))
}

/// The key of a canonical topology: `NxIMAGE` for the plain shape, else its
/// node names and a digest of its explicit form (equal for any two files that
/// describe the same cluster, whatever their key order or formatting).
fn shape_of(topology: &Topology) -> String {
    if let Some((nodes, image)) = plain_shape(topology) {
        return format!("{nodes}x{image}");
    }
    let explicit = serde_json::to_vec(topology).expect("a topology serialises");
    let digest = hex::encode(Sha256::digest(&explicit));
    let mut names = topology
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect::<Vec<_>>()
        .join(",");
    if names.len() > SHAPE_NAMES_MAX {
        names.truncate(SHAPE_NAMES_MAX);
        names.push_str("...");
    }
    format!("{names}@{}", &digest[..12])
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
                    "{}: {e}; fix the file or set the pool again",
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

    /// Sets how many clusters of N plain nodes to keep (0 removes the shape).
    pub fn set(&mut self, image: &str, nodes: usize, size: usize) -> Result<String, SandboxError> {
        self.set_topology(&Topology::with_nodes(nodes, image)?, size)
    }

    /// Sets how many clusters of `topology` to keep (0 removes the shape);
    /// its time to live is left out. Returns the shape's name.
    pub fn set_topology(
        &mut self,
        topology: &Topology,
        size: usize,
    ) -> Result<String, SandboxError> {
        topology.validate()?;
        if let Some(pinned) = topology.networks.iter().find(|n| n.cidr.is_some()) {
            if size > 1 {
                return Err(SandboxError::Refused(format!(
                    "network {} pins its subnet ({}), so only one cluster of this topology \
                     can exist at a time: keep at most one, or leave out its `cidr` so that \
                     each cluster gets a subnet of its own",
                    pinned.name,
                    pinned.cidr.map(|c| c.to_string()).unwrap_or_default()
                )));
            }
        }
        let entry = PoolEntry {
            topology: canonical(topology, NodeBackend::default()),
            size,
        };
        let shape = entry.shape();
        match self.entries.iter_mut().find(|e| e.shape() == shape) {
            Some(existing) => existing.size = size,
            None => self.entries.push(entry),
        }
        self.entries.retain(|e| e.size > 0);
        Ok(shape)
    }

    /// Sets how many clusters of an entry already there to keep, by its shape
    /// (0 removes it).
    pub fn set_shape(&mut self, shape: &str, size: usize) -> Result<(), SandboxError> {
        let Some(entry) = self.entries.iter_mut().find(|e| e.shape() == shape) else {
            let kept: Vec<String> = self.entries.iter().map(PoolEntry::shape).collect();
            return Err(SandboxError::Refused(format!(
                "the pool keeps no shape {shape}; it keeps {}",
                if kept.is_empty() {
                    "none".to_string()
                } else {
                    kept.join(", ")
                }
            )));
        };
        entry.size = size;
        self.entries.retain(|e| e.size > 0);
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

impl Engine {
    /// Takes a pooled cluster for `req` when one of its shape is ready; `None`
    /// when there is none (the caller boots a fresh one).
    pub(super) fn claim_pooled(
        &self,
        req: &UpRequest,
    ) -> Result<Option<ClusterState>, SandboxError> {
        let t0 = Instant::now();
        let default = match self.backend.name().parse::<NodeBackend>() {
            Ok(backend) => backend,
            Err(_) => return Ok(None),
        };
        // Without a live keeper nothing in the pool can be claimed: no lock
        // taken and nothing read on every `up` of a host that keeps no pool.
        if keeper_pid(self.state_dir()).is_none() {
            return Ok(None);
        }
        let shape = shape_of(&canonical(&req.topology, default));
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
            state.from_pool = true;
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
                Some(spec) => Some(rehearse_image::ImageCache::id_of(&spec)),
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
                topology: entry.topology.clone(),
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
    if !path.exists() {
        return None;
    }
    // Held: a keeper runs. Free: the file is what a dead one left.
    if crate::lock::try_exclusive(&path).ok()?.is_some() {
        return None;
    }
    std::fs::read_to_string(&path).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LB: &str = "
nodes:
  - name: lb
    groups: [balancer]
    networks: [front, back]
  - {name: web1, groups: [web], networks: [back], memory: 512M}
  - {name: web2, groups: [web], networks: [back], memory: 512M}
networks:
  - name: front
  - {name: back, egress: none}
ttl: 10m
";

    fn shape(yaml: &str) -> String {
        let t = Topology::from_yaml(yaml, "test").unwrap();
        shape_of(&canonical(&t, NodeBackend::Nspawn))
    }

    #[test]
    fn a_shape_is_the_topology_whatever_its_file_looks_like() {
        let lb = shape(LB);
        assert!(lb.starts_with("lb,web1,web2@"), "{lb}");
        // Other key order, flow style, another time to live, the backend
        // written out: the same cluster, so the same shape.
        let same = "
ttl: 2h
networks: [{egress: packages, name: front}, {egress: none, name: back}]
nodes:
  - {networks: [front, back], groups: [balancer], name: lb, backend: nspawn}
  - name: web1
    memory: 512M
    networks: [back]
    groups: [web]
  - {name: web2, groups: [web], networks: [back], memory: 512M}
";
        assert_eq!(shape(same), lb);
        // One field apart: another shape.
        for (from, to) in [
            ("name: web2", "name: web3"),
            (
                "memory: 512M}\n  - {name: web2",
                "memory: 1G}\n  - {name: web2",
            ),
            ("groups: [balancer]", "groups: [balancer, web]"),
            ("{name: back, egress: none}", "{name: back, egress: nat}"),
            ("networks: [front, back]", "networks: [back, front]"),
            (
                "groups: [balancer]",
                "groups: [balancer]\n    image: ubuntu-24.04",
            ),
            ("groups: [balancer]", "groups: [balancer]\n    backend: vm"),
        ] {
            let other = LB.replacen(from, to, 1);
            assert_ne!(other, LB, "{from}");
            assert_ne!(shape(&other), lb, "{from} -> {to}");
        }
        // A default backend of vm makes nodes that leave it open VMs.
        let t = Topology::from_yaml(LB, "test").unwrap();
        assert_ne!(shape_of(&canonical(&t, NodeBackend::Vm)), lb);
    }

    #[test]
    fn plain_topologies_keep_their_short_shape() {
        let plain = Topology::with_nodes(3, "debian-12").unwrap();
        assert_eq!(
            shape_of(&canonical(&plain, NodeBackend::Nspawn)),
            "3xdebian-12"
        );
        assert_eq!(shape("nodes: 3\nttl: 5m\n"), "3xdebian-12");
        let mut named = plain.clone();
        named.nodes[0].name = "web".into();
        assert!(shape_of(&canonical(&named, NodeBackend::Nspawn)).starts_with("web,node2,node3@"));
    }

    #[test]
    fn settings_replace_and_remove_a_shape() {
        let mut c = PoolConfig::default();
        c.set("debian-12", 4, 2).unwrap();
        c.set("debian-12", 4, 3).unwrap();
        c.set("debian-12", 1, 1).unwrap();
        let lb = c
            .set_topology(&Topology::from_yaml(LB, "test").unwrap(), 1)
            .unwrap();
        assert_eq!(c.entries.len(), 3);
        assert_eq!(
            c.entries
                .iter()
                .find(|e| e.plain() == Some((4, "debian-12")))
                .unwrap()
                .size,
            3
        );
        c.set("debian-12", 1, 0).unwrap();
        assert_eq!(c.entries.len(), 2);
        assert!(c.set("debian-12", 0, 1).is_err());
        let pinned = LB.replace(
            "{name: back, egress: none}",
            "{name: back, cidr: 10.213.77.0/24}",
        );
        let pinned = Topology::from_yaml(&pinned, "test").unwrap();
        let e = c.set_topology(&pinned, 2).unwrap_err().to_string();
        assert!(
            e.contains("network back pins its subnet (10.213.77.0/24)"),
            "{e}"
        );
        c.set_topology(&pinned, 1).unwrap();
        c.set_topology(&pinned, 0).unwrap();
        c.set_shape(&lb, 0).unwrap();
        assert_eq!(c.entries.len(), 1);
        let e = c.set_shape(&lb, 1).unwrap_err().to_string();
        assert!(
            e.contains(&format!("no shape {lb}; it keeps 4xdebian-12")),
            "{e}"
        );
    }

    #[test]
    fn pool_yaml_holds_plain_and_whole_topologies() {
        let dir = tempfile::tempdir().unwrap();
        // As `pool set --nodes` has always written it.
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "entries:\n- image: debian-12\n  nodes: 4\n  size: 2\n",
        )
        .unwrap();
        let mut c = PoolConfig::load(dir.path()).unwrap();
        assert_eq!(c.entries[0].shape(), "4xdebian-12");
        let lb = c
            .set_topology(&Topology::from_yaml(LB, "test").unwrap(), 1)
            .unwrap();
        c.save(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap();
        assert!(text.contains(&format!("shape: {lb}")), "{text}");
        assert!(!text.contains("ttl"), "{text}");
        assert_eq!(PoolConfig::load(dir.path()).unwrap(), c);

        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "entries:\n- nodes: 2\n  size: 1\n  topology: {nodes: 2}\n",
        )
        .unwrap();
        let e = PoolConfig::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("pool.yaml") && e.contains("not both"), "{e}");
    }
}
