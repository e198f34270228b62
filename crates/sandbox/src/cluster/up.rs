//! `up`: a fresh cluster, every node booted, addressed and accepting SSH.

use std::collections::BTreeSet;
use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rand::Rng;

use rehearse_image::Image;
use rehearse_spec::Egress;

use crate::backend::NodeLaunch;
use crate::host::{self, now_secs, ProcessId};
use crate::lease::{self, Lease, Leases};
use crate::net::{self, Firewall};
use crate::pkgcache::CACHE_PORT;
use crate::seed;
use crate::ssh;
use crate::state::{ClusterState, ClusterStatus, Nic, NodeState};
use crate::SandboxError;

use super::{Booted, Engine, Progress, UpRequest};

/// How long `up` waits for room on the host before it gives up.
const ADMISSION_WAIT: Duration = Duration::from_secs(600);

impl Engine {
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
        if let Some(state) = self.claim_pooled(&req)? {
            // Its reaper watches it from now on as the new owner's cluster.
            return Ok(state);
        }
        self.up_fresh(req, progress)
    }

    /// [`Engine::up`], always booting new nodes (never from the pool).
    pub fn up_fresh(
        &self,
        req: UpRequest,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<ClusterState, SandboxError> {
        if !host::is_root() {
            return Err(SandboxError::NotRoot);
        }
        req.topology.validate()?;
        crate::capacity::check_fits_host(&req.topology)?;
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
        self.sweep(false)?;
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
        self.admit(req.topology.nodes.len() as u64, progress)?;
        tracing::debug!(ms = t0.elapsed().as_millis() as u64, "admitted");
        let started = Instant::now();
        let mut state = self.allocate(&req, &images)?;
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "allocated");
        if let Some(spawn) = &self.spawn_reaper {
            spawn(&state.id);
        }
        progress(Progress::Booting {
            cluster: state.id.clone(),
            nodes: state.nodes.len(),
        });
        match self.create(&mut state, &images, req.boot_timeout, progress) {
            Ok(()) => {
                state.status = ClusterStatus::Ready;
                state.owner = None;
                state.boot_ms = Some(started.elapsed().as_millis() as u64);
                self.registry.save(&state)?;
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

    /// Waits until the host has room for `needed` more nodes (clusters of
    /// others going away), or refuses at once when it never will: the nodes
    /// do not fit even counting the room every running node would free.
    fn admit(&self, needed: u64, progress: &(dyn Fn(Progress) + Sync)) -> Result<(), SandboxError> {
        let give_up = Instant::now() + ADMISSION_WAIT;
        loop {
            let running: u64 = {
                let leases = Leases::host();
                let lock = leases.lock()?;
                leases
                    .live(&lock)
                    .iter()
                    .map(|l| l.uid_bases.len() as u64)
                    .sum()
            };
            let mut capacity = crate::capacity::measure_for_admission(&self.state_dir, running);
            if capacity.fits < needed {
                capacity = crate::capacity::measure(&self.state_dir);
            }
            if capacity.fits >= needed {
                return Ok(());
            }
            let tightest = capacity.tightest();
            let refuse = |why: String| SandboxError::NoCapacity {
                needed,
                fits: capacity.fits,
                limit: tightest.name.clone(),
                detail: tightest.detail.clone(),
                fix: tightest.fix.clone(),
                why,
            };
            if capacity.fits + running < needed {
                return Err(refuse(String::new()));
            }
            if Instant::now() > give_up {
                return Err(refuse(format!(
                    "; waited {} s for other clusters to go",
                    ADMISSION_WAIT.as_secs()
                )));
            }
            progress(Progress::WaitingForCapacity {
                needed,
                fits: capacity.fits,
                limited_by: tightest.name.clone(),
            });
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Picks an id, subnets and node UID ranges, and records them (the
    /// cluster's state and its host-wide lease) before anything is created.
    /// The host-wide lock makes the choice atomic across every rehearse
    /// process on the host, whatever its state directory.
    fn allocate(&self, req: &UpRequest, images: &[Image]) -> Result<ClusterState, SandboxError> {
        let _lock = self.registry.lock()?;
        let leases = Leases::host();
        let host_lock = leases.lock()?;
        let live = leases.live(&host_lock);
        let existing = self.registry.list();
        let id = loop {
            let id = format!("{:06x}", rand::thread_rng().gen_range(0..0x100_0000u32));
            if !self.registry.dir(&id).exists()
                && !live.iter().any(|l| l.cluster == id)
                && !self.cgroups.cluster_exists(&id)
            {
                break id;
            }
        };
        let mut elsewhere: Vec<(ipnet::Ipv4Net, String)> = live
            .iter()
            .filter(|l| !existing.iter().any(|c| c.id == l.cluster))
            .flat_map(|l| {
                l.subnets.iter().map(move |n| {
                    (
                        *n,
                        format!(
                            "a network of cluster {} (state directory {})",
                            l.cluster,
                            l.state_dir.display()
                        ),
                    )
                })
            })
            .collect();
        elsewhere.extend(net::host_routes());
        let networks = net::allocate_networks(
            &id,
            &req.topology,
            &existing,
            &elsewhere,
            net::subnet_pool(),
        )?;
        let backends: Vec<String> = req
            .topology
            .nodes
            .iter()
            .map(|spec| {
                spec.backend
                    .map(|b| b.as_str().to_string())
                    .unwrap_or_else(|| self.backend.name().to_string())
            })
            .collect();
        // Each container node runs in a host UID range of its own: a process
        // that escaped one node owns nothing of another, and per-UID limits
        // (RLIMIT_NPROC) count per node.
        let mut free_ranges =
            lease::free_uid_bases(&live, backends.iter().filter(|b| *b == "nspawn").count())?
                .into_iter();
        let mut next_host = vec![2u32; networks.len()];
        let mut nodes = Vec::new();
        for (i, (spec, backend)) in req.topology.nodes.iter().zip(backends).enumerate() {
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
            let uid_base =
                (backend == "nspawn").then(|| free_ranges.next().expect("enough ranges"));
            let limits = if backend == "nspawn" {
                spec.limits.or(crate::capacity::default_node_limits())
            } else {
                spec.limits.or(crate::vm::default_limits())
            };
            nodes.push(NodeState {
                name: spec.name.clone(),
                index: i,
                image: spec.image.clone(),
                image_id: image.id.clone(),
                backend,
                groups: spec.groups.clone(),
                nics,
                machine: net::machine_name(&id, i),
                supervisor: None,
                leader: None,
                boot_ms: None,
                uid_base,
                boot_retried: None,
                limits,
            });
        }
        let now = now_secs();
        let state = ClusterState {
            id,
            status: ClusterStatus::Booting,
            created_at: now,
            expires_at: now + req.topology.ttl.unwrap_or(req.ttl).as_secs(),
            owner: Some(ProcessId::current()),
            belongs_to: (req.ownership == super::Ownership::ThisProcess).then(ProcessId::current),
            boot_id: lease::boot_id(),
            networks,
            nodes,
            boot_ms: None,
            source: req.source.clone(),
            from_pool: false,
        };
        leases.write(
            &Lease {
                cluster: state.id.clone(),
                state_dir: self.state_dir.clone(),
                boot_id: lease::boot_id(),
                subnets: state.networks.iter().map(|n| n.cidr).collect(),
                uid_bases: state.nodes.iter().filter_map(|n| n.uid_base).collect(),
            },
            &host_lock,
        )?;
        // Saved before the host lock is dropped: a lease is never seen
        // without its cluster's folder (which would make it stale).
        self.registry.save(&state)?;
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
        let dir = self.registry.dir(&state.id);
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
        let results: Vec<Result<(Booted, Option<String>), SandboxError>> = std::thread::scope(
            |s| {
                let handles: Vec<_> = frozen
                .nodes
                .iter()
                .map(|node| {
                    let keys = &keys;
                    let nameservers = &nameservers;
                    let frozen = &frozen;
                    let dir = &dir;
                    s.spawn(move || -> Result<(Booted, Option<String>), SandboxError> {
                        let node_dir = dir.join("nodes").join(&node.name);
                        let image = images.iter().find(|im| im.id == node.image_id).expect("image resolved");
                        let seeds = seed::node_seeds(frozen, node, keys, nameservers);
                        let backend = self.backend_for(node);
                        let attempt = |deadline: Instant| -> Result<Booted, SandboxError> {
                            let t0 = Instant::now();
                            let launch = NodeLaunch {
                                cluster: frozen,
                                node,
                                node_dir: node_dir.clone(),
                                image,
                                seeds: &seeds,
                                cgroup_procs: self.cgroups.create_node(&frozen.id, &node.name, &node.cgroup_limits())?,
                            };
                            let booting = backend.launch(&launch)?;
                            tracing::debug!(node = %node.name, ms = t0.elapsed().as_millis() as u64, "node launched");
                            let supervisor = booting.supervisor;
                            let leader = backend.wait_booted(&launch, booting, deadline)?;
                            tracing::debug!(node = %node.name, ms = t0.elapsed().as_millis() as u64, "node booted");
                            wait_for_ssh(node, deadline).map_err(|reason| SandboxError::BootFailed {
                                cluster: frozen.id.clone(),
                                node: node.name.clone(),
                                reason,
                                log_tail: backend.boot_log_tail(&launch.node_dir, 25),
                            })?;
                            Ok((supervisor, leader, t0.elapsed().as_millis() as u64))
                        };
                        let (booted, retried) = match attempt(deadline) {
                            Ok(b) => (b, None),
                            // One boot failure may be bad luck (a limit raced
                            // for, a transient error): the node is made
                            // afresh and booted once more.
                            Err(SandboxError::BootFailed { reason, .. })
                                if node.backend == "nspawn" && crate::nspawn::worth_retrying(&reason) =>
                            {
                                tracing::info!(cluster = %frozen.id, node = %node.name, %reason, "boot failed; retrying on a fresh node");
                                progress(Progress::NodeRetry {
                                    node: node.name.clone(),
                                    reason: reason.clone(),
                                });
                                self.cgroups.kill_node(&frozen.id, &node.name, Duration::from_secs(10))?;
                                self.cgroups.remove_node(&frozen.id, &node.name)?;
                                crate::nspawn::reset_node(node, &node_dir)?;
                                let again = attempt(Instant::now() + boot_timeout).map_err(|e| match e {
                                    SandboxError::BootFailed { cluster, node, reason: second, log_tail } => SandboxError::BootFailed {
                                        cluster,
                                        node,
                                        reason: format!("{second} (the second try, on a fresh node; the first failed with: {reason})"),
                                        log_tail,
                                    },
                                    other => other,
                                })?;
                                (again, Some(reason))
                            }
                            Err(e) => return Err(e),
                        };
                        progress(Progress::NodeReady {
                            node: node.name.clone(),
                            ms: booted.2,
                        });
                        Ok((booted, retried))
                    })
                })
                .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("node thread panicked"))
                    .collect()
            },
        );
        for (node, result) in state.nodes.iter_mut().zip(results) {
            let ((supervisor, leader, ms), retried) = result?;
            node.boot_retried = retried;
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
}

/// Waits until the node's sshd answers with its banner on port 22.
pub(super) fn wait_for_ssh(node: &NodeState, deadline: Instant) -> Result<(), String> {
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
