//! The cluster engine: `up`, `down`, `ls`, `extend`, `gc`, `exec`, `cp` over any
//! [`Backend`].

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::Serialize;

use rehearse_image::{Image, ImageStore};
use rehearse_spec::{Egress, Topology};

use crate::backend::{Backend, ExecIo, ExecOutcome, ExecRequest, NodeLaunch};
use crate::cgroup::Cgroups;
use crate::host::{self, now_secs, ProcessId};
use crate::net::{self, Firewall};
use crate::pkgcache::{PackageCache, CACHE_PORT};
use crate::seed;
use crate::ssh;
use crate::state::{ClusterState, ClusterStatus, ClusterStore, Nic, NodeState};
use crate::SandboxError;

/// Length of a cluster id (hex digits). Short enough for interface names.
pub const CLUSTER_ID_LEN: usize = 6;

/// A node that came up: its supervisor, its PID 1, and how long it took (ms).
type Booted = (ProcessId, ProcessId, u64);

/// Default time-to-live of a cluster.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30 * 60);

/// What `up` reports while it works.
#[derive(Debug, Clone)]
pub enum Progress {
    Image(String),
    Booting { cluster: String, nodes: usize },
    NodeReady { node: String, ms: u64 },
}

/// A request for a new cluster.
pub struct UpRequest {
    pub topology: Topology,
    pub ttl: Duration,
    pub boot_timeout: Duration,
    /// Where the topology came from, for `ls`.
    pub source: String,
}

/// What `gc` removed.
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub expired: Vec<String>,
    pub orphaned: Vec<String>,
    pub stale_image_builds: usize,
}

pub struct Engine {
    state_dir: PathBuf,
    store: ClusterStore,
    images: ImageStore,
    cgroups: Cgroups,
    cache: PackageCache,
    backend: Arc<dyn Backend>,
}

impl Engine {
    /// An engine over the state directory with the nspawn backend.
    pub fn new(state_dir: &Path) -> Result<Self, SandboxError> {
        Self::with_backend(state_dir, Arc::new(crate::nspawn::NspawnBackend))
    }

    pub fn with_backend(state_dir: &Path, backend: Arc<dyn Backend>) -> Result<Self, SandboxError> {
        Ok(Engine {
            state_dir: state_dir.to_path_buf(),
            store: ClusterStore::new(state_dir),
            images: ImageStore::new(state_dir),
            cgroups: Cgroups::discover()?,
            cache: PackageCache::new(state_dir),
            backend,
        })
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    pub fn images(&self) -> &ImageStore {
        &self.images
    }

    pub fn package_cache(&self) -> &PackageCache {
        &self.cache
    }

    pub fn cluster_dir(&self, id: &str) -> PathBuf {
        self.store.dir(id)
    }

    /// Creates a cluster and returns once every node is booted, addressed and
    /// accepting SSH. On any failure nothing of the cluster is left behind.
    pub fn up(
        &self,
        req: UpRequest,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<ClusterState, SandboxError> {
        if !host::is_root() {
            return Err(SandboxError::NotRoot);
        }
        req.topology.validate()?;
        // Every tool a cluster needs, checked before anything is created.
        host::require_tools(&[
            "systemd-nspawn",
            "nsenter",
            "ip",
            "nft",
            "ssh-keygen",
            "tar",
        ])?;
        if req
            .topology
            .networks
            .iter()
            .any(|n| n.egress != Egress::None)
        {
            host::require_tools(&["apt-cacher-ng"])?;
        }
        let t0 = Instant::now();
        self.gc()?;
        tracing::debug!(ms = t0.elapsed().as_millis() as u64, "gc done");

        let mut images: Vec<Image> = Vec::new();
        for name in req
            .topology
            .nodes
            .iter()
            .map(|n| n.image.as_str())
            .collect::<BTreeSet<_>>()
        {
            let spec = self.images.spec_for(name)?;
            let image = self
                .images
                .ensure(&spec, &|msg| progress(Progress::Image(msg.to_string())))?;
            images.push(image);
        }

        tracing::debug!(ms = t0.elapsed().as_millis() as u64, "images resolved");
        let started = Instant::now();
        let mut state = self.allocate(&req, &images)?;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "allocated");
        progress(Progress::Booting {
            cluster: state.id.clone(),
            nodes: state.nodes.len(),
        });
        match self.create(&mut state, &images, req.boot_timeout, progress) {
            Ok(()) => {
                state.status = ClusterStatus::Ready;
                state.owner = None;
                state.boot_ms = Some(started.elapsed().as_millis() as u64);
                self.store.save(&state)?;
                Ok(state)
            }
            Err(e) => {
                if let Err(cleanup) = self.teardown(&state.id) {
                    tracing::error!(cluster = %state.id, error = %cleanup, "cleanup after a failed up");
                }
                Err(e)
            }
        }
    }

    /// Picks an id and addresses, and records them before anything is created.
    fn allocate(&self, req: &UpRequest, images: &[Image]) -> Result<ClusterState, SandboxError> {
        let _lock = self.store.lock()?;
        let existing = self.store.list();
        let id = loop {
            let id = format!("{:06x}", rand::thread_rng().gen_range(0..0x100_0000u32));
            if !self.store.dir(&id).exists() {
                break id;
            }
        };
        let networks = net::allocate_networks(
            &id,
            &req.topology,
            &existing,
            &net::host_routes(),
            net::subnet_pool(),
        )?;
        let mut next_host = vec![2u32; networks.len()];
        let mut nodes = Vec::new();
        for (i, spec) in req.topology.nodes.iter().enumerate() {
            let image = images
                .iter()
                .find(|im| im.name == spec.image || im.spec.name == spec.image)
                .expect("image resolved");
            let mut nics = Vec::new();
            for (k, net_name) in spec.networks.iter().enumerate() {
                let n = networks
                    .iter()
                    .position(|n| &n.name == net_name)
                    .expect("validated network");
                let ip = net::alloc_nth_host(networks[n].cidr, next_host[n]);
                next_host[n] += 1;
                nics.push(Nic {
                    network: net_name.clone(),
                    ip,
                    iface: format!("eth{k}"),
                    host_iface: if k == 0 {
                        net::first_host_iface(&id, i)
                    } else {
                        net::extra_host_iface(&id, i, n)
                    },
                });
            }
            nodes.push(NodeState {
                name: spec.name.clone(),
                index: i,
                image: spec.image.clone(),
                image_id: image.id.clone(),
                backend: self.backend.name().to_string(),
                groups: spec.groups.clone(),
                nics,
                machine: net::machine_name(&id, i),
                supervisor: None,
                leader: None,
                boot_ms: None,
            });
        }
        let now = now_secs();
        let state = ClusterState {
            id,
            status: ClusterStatus::Booting,
            created_at: now,
            expires_at: now + req.topology.ttl.unwrap_or(req.ttl).as_secs(),
            owner: Some(ProcessId::current()),
            networks,
            nodes,
            boot_ms: None,
            source: req.source.clone(),
        };
        self.store.save(&state)?;
        Ok(state)
    }

    fn create(
        &self,
        state: &mut ClusterState,
        images: &[Image],
        boot_timeout: Duration,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<(), SandboxError> {
        let t0 = Instant::now();
        let dir = self.store.dir(&state.id);
        let needs_cache = state.networks.iter().any(|n| n.egress != Egress::None);
        // Independent host-side setup runs side by side; nodes need the keys and
        // the bridges and firewall, not the package cache (it is only waited for
        // before `up` returns).
        let (keys, cache) = std::thread::scope(|s| -> Result<_, SandboxError> {
            let keys = s.spawn(|| ssh::generate(&dir, &state.id));
            let cache = needs_cache.then(|| {
                std::thread::spawn({
                    let cache = self.cache.clone();
                    move || cache.ensure_running()
                })
            });
            for network in &state.networks {
                net::create_bridge(
                    &network.bridge,
                    &format!("{}/{}", network.gateway, network.cidr.prefix_len()),
                )?;
            }
            Firewall::apply(&state.id, &state.networks, CACHE_PORT)?;
            let keys = keys.join().expect("key thread panicked")?;
            Ok((keys, cache))
        })?;
        tracing::debug!(
            ms = t0.elapsed().as_millis() as u64,
            "keys, bridges and firewall ready"
        );
        let nameservers = seed::host_nameservers();
        let deadline = Instant::now() + boot_timeout;
        let frozen = state.clone();
        let results: Vec<Result<Booted, SandboxError>> = std::thread::scope(|s| {
            let handles: Vec<_> = frozen
                .nodes
                .iter()
                .map(|node| {
                    let keys = &keys;
                    let nameservers = &nameservers;
                    let frozen = &frozen;
                    let dir = &dir;
                    s.spawn(move || -> Result<Booted, SandboxError> {
                        let t0 = Instant::now();
                        let image = images.iter().find(|im| im.id == node.image_id).expect("image resolved");
                        let seeds = seed::node_seeds(frozen, node, keys, nameservers);
                        let launch = NodeLaunch {
                            cluster: frozen,
                            node,
                            node_dir: dir.join("nodes").join(&node.name),
                            image,
                            seeds: &seeds,
                            cgroup_procs: self.cgroups.create_node(&frozen.id, &node.name)?,
                        };
                        let booting = self.backend.launch(&launch)?;
                        tracing::debug!(node = %node.name, ms = t0.elapsed().as_millis() as u64, "node launched");
                        let supervisor = booting.supervisor;
                        let leader = self.backend.wait_booted(&launch, booting, deadline)?;
                        tracing::debug!(node = %node.name, ms = t0.elapsed().as_millis() as u64, "node booted");
                        wait_for_ssh(node, deadline).map_err(|reason| SandboxError::BootFailed {
                            cluster: frozen.id.clone(),
                            node: node.name.clone(),
                            reason,
                            log_tail: self.backend.boot_log_tail(&launch.node_dir, 25),
                        })?;
                        let ms = t0.elapsed().as_millis() as u64;
                        progress(Progress::NodeReady {
                            node: node.name.clone(),
                            ms,
                        });
                        Ok((supervisor, leader, ms))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("node thread panicked"))
                .collect()
        });
        for (node, result) in state.nodes.iter_mut().zip(results) {
            let (supervisor, leader, ms) = result?;
            node.supervisor = Some(supervisor);
            node.leader = Some(leader);
            node.boot_ms = Some(ms);
        }
        if let Some(cache) = cache {
            cache.join().expect("cache thread panicked")?;
        }
        ssh::write_host_config(&dir, state, &keys.host_public)?;
        Ok(())
    }

    /// Reboots nodes: each powers off cleanly (killed after `grace`), then boots
    /// again from its current disk state, and is ready again (systemd up,
    /// addressed, sshd answering) when this returns. Nodes reboot in parallel.
    pub fn reboot(
        &self,
        id: &str,
        nodes: &[String],
        grace: Duration,
        boot_timeout: Duration,
    ) -> Result<ClusterState, SandboxError> {
        let mut state = self.store.load(id)?;
        for name in nodes {
            state.node(name)?;
        }
        let images = self.images.list()?;
        let dir = self.store.dir(id);
        let frozen = state.clone();
        let results: Vec<(String, Result<Booted, SandboxError>)> = std::thread::scope(|s| {
            let handles: Vec<_> = frozen
                .nodes
                .iter()
                .filter(|n| nodes.contains(&n.name))
                .map(|node| {
                    let images = &images;
                    let frozen = &frozen;
                    let dir = &dir;
                    let handle = s.spawn(move || -> Result<Booted, SandboxError> {
                        let t0 = Instant::now();
                        self.backend.request_poweroff(node)?;
                        let deadline = Instant::now() + grace;
                        while node.supervisor.is_some_and(|p| p.is_alive())
                            && Instant::now() < deadline
                        {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        self.cgroups
                            .kill_node(&frozen.id, &node.name, Duration::from_secs(10))?;
                        let image =
                            images
                                .iter()
                                .find(|im| im.id == node.image_id)
                                .ok_or_else(|| SandboxError::ImageGone {
                                    node: node.name.clone(),
                                    image: node.image.clone(),
                                    id: node.image_id.clone(),
                                })?;
                        let launch = NodeLaunch {
                            cluster: frozen,
                            node,
                            node_dir: dir.join("nodes").join(&node.name),
                            image,
                            seeds: &[],
                            cgroup_procs: self.cgroups.create_node(&frozen.id, &node.name)?,
                        };
                        let boot_deadline = Instant::now() + boot_timeout;
                        let booting = self.backend.launch(&launch)?;
                        let supervisor = booting.supervisor;
                        let leader = self.backend.wait_booted(&launch, booting, boot_deadline)?;
                        wait_for_ssh(node, boot_deadline).map_err(|reason| {
                            SandboxError::BootFailed {
                                cluster: frozen.id.clone(),
                                node: node.name.clone(),
                                reason,
                                log_tail: self.backend.boot_log_tail(&launch.node_dir, 25),
                            }
                        })?;
                        Ok((supervisor, leader, t0.elapsed().as_millis() as u64))
                    });
                    (node.name.clone(), handle)
                })
                .collect();
            handles
                .into_iter()
                .map(|(name, h)| (name, h.join().expect("reboot thread panicked")))
                .collect()
        });
        let mut first_error = None;
        for (name, result) in results {
            match result {
                Ok((supervisor, leader, ms)) => {
                    if let Some(node) = state.nodes.iter_mut().find(|n| n.name == name) {
                        node.supervisor = Some(supervisor);
                        node.leader = Some(leader);
                        node.boot_ms = Some(ms);
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.store.save(&state)?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(state),
        }
    }

    /// Destroys a cluster.
    pub fn down(&self, id: &str) -> Result<(), SandboxError> {
        let mut state = self.store.load(id)?;
        state.status = ClusterStatus::Destroying;
        state.owner = Some(ProcessId::current());
        let _ = self.store.save(&state);
        self.teardown(id)
    }

    /// Removes every trace of a cluster, from its id alone: processes, mounts,
    /// interfaces, firewall, cgroups, files. Goes on past failures and reports
    /// the first.
    fn teardown(&self, id: &str) -> Result<(), SandboxError> {
        let dir = self.store.dir(id);
        let mut first_error: Option<SandboxError> = None;
        let mut keep = |r: Result<(), SandboxError>| {
            if let Err(e) = r {
                tracing::warn!(cluster = id, error = %e, "teardown step failed");
                first_error.get_or_insert(e);
            }
        };
        keep(self.cgroups.kill_cluster(id, Duration::from_secs(10)));
        keep(self.backend.teardown(id, &dir));
        keep(net::delete_cluster_links(id));
        keep(Firewall::remove(id));
        keep(self.cgroups.remove_cluster(id));
        keep(match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(SandboxError::io("removing", &dir, e))
            }
            _ => Ok(()),
        });
        self.cache.stop_if_unused(|| !self.store.ids().is_empty());
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn list(&self) -> Vec<ClusterState> {
        self.store.list()
    }

    pub fn get(&self, id: &str) -> Result<ClusterState, SandboxError> {
        self.store.load(id)
    }

    /// Pushes the expiry of a cluster to `by` from now.
    pub fn extend(&self, id: &str, by: Duration) -> Result<ClusterState, SandboxError> {
        let _lock = self.store.lock()?;
        let mut state = self.store.load(id)?;
        state.expires_at = now_secs() + by.as_secs();
        self.store.save(&state)?;
        Ok(state)
    }

    /// Removes every expired or orphaned cluster: state whose engine died before
    /// the cluster was ready, clusters whose nodes are all gone, and resources
    /// (cgroups, interfaces, firewall tables) no state accounts for.
    pub fn gc(&self) -> Result<GcReport, SandboxError> {
        let _lock = self.store.lock()?;
        let mut report = GcReport::default();
        let now = now_secs();
        let ids = self.store.ids();
        for id in &ids {
            let reason = match self.store.load(id) {
                Err(_) => Some(false),
                Ok(s) => {
                    let owner_alive = s.owner.is_some_and(|o| o.is_alive());
                    if s.status != ClusterStatus::Ready && owner_alive {
                        None
                    } else if now >= s.expires_at {
                        Some(true)
                    } else if s.status != ClusterStatus::Ready
                        || s.nodes
                            .iter()
                            .all(|n| !n.supervisor.is_some_and(|p| p.is_alive()))
                    {
                        Some(false)
                    } else {
                        None
                    }
                }
            };
            match reason {
                Some(true) => report.expired.push(id.clone()),
                Some(false) => report.orphaned.push(id.clone()),
                None => continue,
            }
            self.teardown(id)?;
        }
        let known: BTreeSet<String> = ids.into_iter().collect();
        let mut stray: BTreeSet<String> = BTreeSet::new();
        stray.extend(self.cgroups.cluster_ids());
        stray.extend(Firewall::cluster_ids());
        stray.extend(
            net::list_links()
                .iter()
                .filter_map(|l| net::cluster_of_iface(l)),
        );
        for id in stray.difference(&known) {
            report.orphaned.push(id.clone());
            self.teardown(id)?;
        }
        report.stale_image_builds = self.images.remove_stale_builds()?;
        self.cache.stop_if_unused(|| !self.store.ids().is_empty());
        Ok(report)
    }

    /// Waits until the cluster expires, then destroys it. Returns early when the
    /// cluster is gone. Extending the cluster meanwhile is honoured.
    pub fn reap_when_expired(&self, id: &str) -> Result<(), SandboxError> {
        loop {
            let state = match self.store.load(id) {
                Ok(s) => s,
                Err(SandboxError::ClusterNotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            let left = state.ttl_left();
            if left <= 0 {
                return match self.down(id) {
                    Err(SandboxError::ClusterNotFound(_)) => Ok(()),
                    other => other,
                };
            }
            std::thread::sleep(Duration::from_secs((left as u64).min(15)));
        }
    }

    /// Runs a command on a node, streaming its output.
    pub fn exec(
        &self,
        id: &str,
        node: &str,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, SandboxError> {
        let state = self.store.load(id)?;
        let node = state.node(node)?;
        let outcome = self.backend.exec(&state, node, req, io)?;
        if outcome.timed_out {
            return Err(SandboxError::Timeout {
                node: node.name.clone(),
                secs: req.timeout.map(|t| t.as_secs_f64()).unwrap_or_default(),
            });
        }
        Ok(outcome)
    }

    /// Runs a command and collects its output (for internal checks and tests).
    pub fn exec_capture(
        &self,
        id: &str,
        node: &str,
        req: &ExecRequest,
    ) -> Result<(ExecOutcome, String, String), SandboxError> {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let outcome = self.exec(
            id,
            node,
            req,
            ExecIo {
                stdin: None,
                stdout: &mut out,
                stderr: &mut err,
            },
        )?;
        Ok((
            outcome,
            String::from_utf8_lossy(&out).into_owned(),
            String::from_utf8_lossy(&err).into_owned(),
        ))
    }

    /// Copies a host file or folder into a node. If `dest` is an existing folder
    /// the source goes inside it, otherwise it is created under that name.
    pub fn copy_to_node(
        &self,
        id: &str,
        node: &str,
        src: &Path,
        dest: &str,
    ) -> Result<(), SandboxError> {
        std::fs::symlink_metadata(src).map_err(|e| SandboxError::io("reading", src, e))?;
        let (parent, name) = split_path(src)?;
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&parent)
            .arg("-cf")
            .arg("-")
            .arg("--")
            .arg(&name)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| host::spawn_error("tar", e))?;
        let stdout = tar.stdout.take().expect("piped");
        let script = r#"set -e
d="$1"; n="$2"
if [ -d "$d" ]; then tar -xf - -C "$d" --no-same-owner; exit 0; fi
p=$(dirname -- "$d"); mkdir -p -- "$p"
t=$(mktemp -d "$p/.rehearse-cp.XXXXXX")
trap 'rm -rf -- "$t"' EXIT
tar -xf - -C "$t" --no-same-owner
rm -rf -- "$d"; mv -- "$t/$n" "$d""#;
        let req = ExecRequest {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                script.into(),
                "rehearse-cp".into(),
                dest.into(),
                name.clone(),
            ],
            ..Default::default()
        };
        let mut err = Vec::new();
        let mut out = Vec::new();
        let outcome = self.exec(
            id,
            node,
            &req,
            ExecIo {
                stdin: Some(Box::new(stdout)),
                stdout: &mut out,
                stderr: &mut err,
            },
        )?;
        let tar_out = tar
            .wait_with_output()
            .map_err(|e| SandboxError::io("waiting for", "tar", e))?;
        if !tar_out.status.success() {
            return Err(SandboxError::BadPath(format!(
                "could not read {}: {}",
                src.display(),
                String::from_utf8_lossy(&tar_out.stderr).trim()
            )));
        }
        if outcome.exit_code != 0 {
            return Err(SandboxError::BadPath(format!(
                "could not write {node}:{dest}: {}",
                String::from_utf8_lossy(&err).trim()
            )));
        }
        Ok(())
    }

    /// Copies a node's file or folder to the host, with the same naming rule.
    pub fn copy_from_node(
        &self,
        id: &str,
        node: &str,
        src: &str,
        dest: &Path,
    ) -> Result<(), SandboxError> {
        let src_path = Path::new(src);
        let (parent, name) = split_path(src_path)?;
        let req = ExecRequest {
            argv: vec![
                "tar".into(),
                "-C".into(),
                parent.display().to_string(),
                "-cf".into(),
                "-".into(),
                "--".into(),
                name.clone(),
            ],
            ..Default::default()
        };
        let (target_dir, final_name) = if dest.is_dir() {
            (dest.to_path_buf(), None)
        } else {
            let p = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::fs::create_dir_all(p).map_err(|e| SandboxError::io("creating", p, e))?;
            (p.to_path_buf(), Some(dest.to_path_buf()))
        };
        let staging = tempdir_in(&target_dir)?;
        let mut untar = Command::new("tar")
            .arg("-xf")
            .arg("-")
            .arg("-C")
            .arg(&staging)
            .arg("--no-same-owner")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| host::spawn_error("tar", e))?;
        let mut sink = untar.stdin.take().expect("piped");
        let mut err = Vec::new();
        let result = self.exec(
            id,
            node,
            &req,
            ExecIo {
                stdin: None,
                stdout: &mut sink,
                stderr: &mut err,
            },
        );
        drop(sink);
        let untar_out = untar
            .wait_with_output()
            .map_err(|e| SandboxError::io("waiting for", "tar", e));
        let finish = (|| {
            let outcome = result?;
            if outcome.exit_code != 0 {
                return Err(SandboxError::BadPath(format!(
                    "could not read {node}:{src}: {}",
                    String::from_utf8_lossy(&err).trim()
                )));
            }
            let untar_out = untar_out?;
            if !untar_out.status.success() {
                return Err(SandboxError::BadPath(format!(
                    "could not write into {}: {}",
                    target_dir.display(),
                    String::from_utf8_lossy(&untar_out.stderr).trim()
                )));
            }
            let from = staging.join(&name);
            let to = final_name.unwrap_or_else(|| target_dir.join(&name));
            if to.is_dir() {
                let _ = std::fs::remove_dir_all(&to);
            }
            std::fs::rename(&from, &to).map_err(|e| SandboxError::io("moving into place", &to, e))
        })();
        let _ = std::fs::remove_dir_all(&staging);
        finish
    }

    /// Number of processes running in a cluster's cgroups.
    pub fn process_count(&self, id: &str) -> usize {
        self.cgroups.process_count(id)
    }
}

fn split_path(p: &Path) -> Result<(PathBuf, String), SandboxError> {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| SandboxError::BadPath(format!("{} names no file or folder", p.display())))?;
    let parent = p
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Ok((parent, name))
}

fn tempdir_in(dir: &Path) -> Result<PathBuf, SandboxError> {
    let path = dir.join(format!(
        ".rehearse-cp.{}.{}",
        std::process::id(),
        rand::thread_rng().gen::<u32>()
    ));
    std::fs::create_dir(&path).map_err(|e| SandboxError::io("creating", &path, e))?;
    Ok(path)
}

/// Waits until the node's sshd answers with its banner on port 22.
fn wait_for_ssh(node: &NodeState, deadline: Instant) -> Result<(), String> {
    let Some(ip) = node.ip() else { return Ok(()) };
    let addr = SocketAddr::from((ip, 22));
    let mut last = String::new();
    while Instant::now() < deadline {
        match ssh_banner(addr) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Err(format!("sshd on {ip}:22 did not answer: {last}"))
}

fn ssh_banner(addr: SocketAddr) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    while got.len() < 4 {
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed before the SSH banner".into());
        }
        got.extend_from_slice(&buf[..n]);
    }
    if got.starts_with(b"SSH-") {
        Ok(())
    } else {
        Err(format!(
            "unexpected banner {:?}",
            String::from_utf8_lossy(&got)
        ))
    }
}
