//! The VM backend: every node a QEMU `microvm` with its own Debian kernel, for
//! infrastructure code that needs a kernel of its own (modules, sysctls a
//! container cannot own, disks and filesystems, reboots that restart a
//! kernel) or VM isolation.
//!
//! A node boots the guest kernel directly (no firmware, no bootloader) with a
//! small initramfs that loads the virtio drivers, installs the node's seed
//! files and switches to the root disk: a qcow2 overlay over an ext4 base of
//! the golden image. Its network cards are taps on the cluster's bridges, so
//! VM and container nodes of one cluster reach each other; its readiness
//! comes from the guest over a virtio-serial port; commands reach it over SSH
//! (see `transport`). KVM is used when it can actually run the guest (probed
//! once, see `accel`), QEMU's TCG otherwise.

mod accel;
mod cpio;
mod disk;
mod guest;
mod initramfs;
mod kernel;
mod qemu;
mod transport;

use std::fs;
use std::io::Read;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::fcntl::Flock;

pub use accel::{Accelerator, Probe};
pub use kernel::{Kernel, DEFAULT_KERNEL_PACKAGE};

use crate::backend::{Backend, Booting, ExecIo, ExecOutcome, ExecRequest, NodeLaunch};
use crate::host::{self, ProcessId};
use crate::seed::SeedFile;
use crate::state::{ClusterState, NodeState};
use crate::SandboxError;

const CONSOLE_LOG: &str = "console.log";
const QEMU_LOG: &str = "qemu.log";
/// Files of a node the backend creates in the node's folder.
const NODE_FILES: &[&str] = &[
    "disk.qcow2",
    "initrd",
    "ready.sock",
    "known_hosts",
    CONSOLE_LOG,
    QEMU_LOG,
];
const MINIMAL_INIT_PATH: &str = "/usr/local/lib/rehearse/init-minimal";

/// What runs as PID 1 in the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestInit {
    /// The image's systemd, as on container nodes: everything works.
    Systemd,
    /// A shell script that mounts, addresses, starts sshd and waits: boots in
    /// seconds even without KVM, for commands and kernel work that need no units.
    Minimal,
}

impl GuestInit {
    fn path(self) -> &'static str {
        match self {
            GuestInit::Systemd => "/lib/systemd/systemd",
            GuestInit::Minimal => MINIMAL_INIT_PATH,
        }
    }
}

/// The kernel, the shared initramfs and the accelerator, resolved once.
#[derive(Clone)]
struct Prepared {
    kernel: Kernel,
    initrd: PathBuf,
    probe: Probe,
}

pub struct VmBackend {
    state_dir: PathBuf,
    init: GuestInit,
    prepared: Mutex<Option<Prepared>>,
}

/// A number from the environment, or `default`.
fn env_num(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|n| *n > 0)
        .unwrap_or(default)
}

/// The size of a VM node whose topology sets none: `REHEARSE_VM_MEMORY`
/// MiB (default 1024) and `REHEARSE_VM_CPUS` CPUs (default 1).
pub fn default_limits() -> rehearse_spec::NodeLimits {
    rehearse_spec::NodeLimits {
        memory: Some(u64::from(env_num("REHEARSE_VM_MEMORY", 1024)) << 20),
        millicpus: Some(env_num("REHEARSE_VM_CPUS", 1) * 1000),
        pids: None,
    }
}

/// Boot handle: the socket the guest's readiness port connects to.
struct ReadyWait {
    listener: UnixListener,
    launched: Instant,
}

impl VmBackend {
    /// A backend keeping its kernels under `state_dir`. The guest init is
    /// systemd unless `REHEARSE_VM_INIT=minimal`; a node's memory and CPUs
    /// are its topology's `memory` and `cpus`, else [`default_limits`].
    pub fn new(state_dir: &Path) -> Self {
        VmBackend {
            state_dir: state_dir.to_path_buf(),
            init: match std::env::var("REHEARSE_VM_INIT").as_deref() {
                Ok("minimal") => GuestInit::Minimal,
                _ => GuestInit::Systemd,
            },
            prepared: Mutex::new(None),
        }
    }

    pub fn with_init(mut self, init: GuestInit) -> Self {
        self.init = init;
        self
    }

    /// The accelerator VMs use here, probing the host on first call.
    pub fn accelerator(&self) -> Result<Probe, SandboxError> {
        Ok(self.prepare()?.probe)
    }

    /// The accelerator found by an earlier probe, without probing.
    pub fn cached_accelerator(state_dir: &Path) -> Option<Probe> {
        accel::cached(state_dir)
    }

    /// Takes the lock that serialises building shared VM files (kernel,
    /// initramfs, base disks) across engines.
    fn cache_lock(&self) -> Result<Flock<fs::File>, SandboxError> {
        crate::lock::exclusive_in(&self.state_dir.join("vm"))
    }

    fn prepare(&self) -> Result<Prepared, SandboxError> {
        let mut slot = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = slot.as_ref() {
            return Ok(p.clone());
        }
        host::require_tools(&[qemu::QEMU, "qemu-img", "ssh"])?;
        let _lock = self.cache_lock()?;
        let kernel = kernel::ensure(&self.state_dir, &kernel::wanted_package())?;
        let initrd = initramfs::ensure_base(&kernel)?;
        let probe = accel::detect(&self.state_dir, &kernel, &initrd)?;
        tracing::debug!(kernel = %kernel.release, accel = probe.accelerator.as_str(), "VM backend ready");
        let prepared = Prepared {
            kernel,
            initrd,
            probe,
        };
        *slot = Some(prepared.clone());
        Ok(prepared)
    }

    /// The least time a boot is given, whatever the caller's deadline: a full
    /// systemd boot under TCG takes minutes, not the seconds a container does.
    fn boot_floor(&self, accelerator: Accelerator) -> Duration {
        match (accelerator, self.init) {
            (Accelerator::Kvm, _) => Duration::ZERO,
            (Accelerator::Tcg, GuestInit::Minimal) => Duration::from_secs(90),
            (Accelerator::Tcg, GuestInit::Systemd) => Duration::from_secs(300),
        }
    }
}

fn cluster_dir_of(node_dir: &Path) -> &Path {
    // <cluster>/nodes/<name>
    node_dir.parent().and_then(Path::parent).unwrap_or(node_dir)
}

/// Files every VM node gets beside the cluster's seeds: the readiness signal
/// (a unit under systemd, called directly by the minimal init) and the
/// minimal init itself.
fn vm_seeds() -> Vec<SeedFile> {
    let file = |path: &str, contents: &str, mode: u32| SeedFile {
        path: path.into(),
        contents: contents.as_bytes().to_vec(),
        mode,
        uid: 0,
        gid: 0,
    };
    vec![
        file(
            "/usr/local/lib/rehearse/vm-ready",
            guest::READY_SCRIPT,
            0o755,
        ),
        file(MINIMAL_INIT_PATH, guest::MINIMAL_INIT, 0o755),
        file(
            "/etc/systemd/system/rehearse-ready.service",
            guest::READY_UNIT,
            0o644,
        ),
        // A mode of 0 marks a symlink.
        file(
            "/etc/systemd/system/multi-user.target.wants/rehearse-ready.service",
            "/etc/systemd/system/rehearse-ready.service",
            0,
        ),
    ]
}

/// Creates (or reuses, on reboot) the node's taps and plugs them into their
/// bridges.
fn plug_taps(cluster: &ClusterState, node: &NodeState) -> Result<(), SandboxError> {
    let mut batch = String::new();
    for nic in &node.nics {
        let bridge = &cluster
            .networks
            .iter()
            .find(|n| n.name == nic.network)
            .expect("nic network exists")
            .bridge;
        if !crate::net::link_exists(&nic.host_iface) {
            batch += &format!("tuntap add dev {} mode tap\n", nic.host_iface);
        }
        batch += &format!(
            "link set {tap} master {bridge}\nlink set {tap} up\n",
            tap = nic.host_iface
        );
    }
    host::run_with_input(
        &format!("creating the taps of {}", node.name),
        Command::new("ip").arg("-batch").arg("-"),
        &batch,
    )?;
    Ok(())
}

impl Backend for VmBackend {
    fn name(&self) -> &'static str {
        "vm"
    }

    fn launch(&self, launch: &NodeLaunch<'_>) -> Result<Booting, SandboxError> {
        let dir = &launch.node_dir;
        fs::create_dir_all(dir).map_err(|e| SandboxError::io("creating", dir, e))?;
        let prepared = self.prepare()?;
        let base = {
            let _lock = self.cache_lock()?;
            disk::ensure_base(launch.image, &prepared.kernel)?
        };
        let overlay = dir.join("disk.qcow2");
        disk::ensure_overlay(&base, &overlay)?;

        let node = launch.node;
        let nics: Vec<(String, String)> = node
            .nics
            .iter()
            .enumerate()
            .map(|(k, nic)| {
                (
                    qemu::mac_address(&launch.cluster.id, node.index, k),
                    nic.iface.clone(),
                )
            })
            .collect();
        let mut seeds = launch.seeds.to_vec();
        seeds.extend(vm_seeds());
        let initrd = dir.join("initrd");
        initramfs::write_node_initrd(&prepared.initrd, &seeds, &nics, &initrd)?;
        transport::write_known_hosts(cluster_dir_of(dir), dir)?;
        plug_taps(launch.cluster, node)?;

        let ready_path = dir.join("ready.sock");
        let _ = fs::remove_file(&ready_path);
        let listener = UnixListener::bind(&ready_path)
            .map_err(|e| SandboxError::io("binding", &ready_path, e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| SandboxError::io("configuring", &ready_path, e))?;

        let accelerator = prepared.probe.accelerator;
        let spec = qemu::VmSpec {
            name: node.machine.clone(),
            accelerator,
            memory_mb: {
                let limits = node.limits.or(default_limits());
                (limits.memory.unwrap_or(1 << 30) >> 20) as u32
            },
            // A VM has whole CPUs: a fraction is rounded up.
            cpus: node
                .limits
                .or(default_limits())
                .millicpus
                .map_or(1, |m| m.div_ceil(1000)),
            kernel: prepared.kernel.vmlinuz(),
            initrd,
            cmdline: qemu::cmdline(accelerator, self.init.path()),
            disk: overlay,
            nics: node
                .nics
                .iter()
                .zip(&nics)
                .map(|(nic, (mac, _))| (nic.host_iface.clone(), mac.clone()))
                .collect(),
            console_log: dir.join(CONSOLE_LOG),
            ready_socket: ready_path,
        };
        let log = fs::File::create(dir.join(QEMU_LOG))
            .map_err(|e| SandboxError::io("creating", dir.join(QEMU_LOG), e))?;
        let mut cmd = Command::new(qemu::QEMU);
        cmd.args(spec.args())
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| SandboxError::io("opening", dir.join(QEMU_LOG), e))?,
            )
            .stderr(log);
        let procs = launch.cgroup_procs.clone();
        // SAFETY: between fork and exec we only call setsid and the raw
        // open/write/close of `enter_raw`, on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                crate::cgroup::enter_raw(&procs)
            });
        }
        let child = cmd.spawn().map_err(|e| host::spawn_error(qemu::QEMU, e))?;
        let supervisor = ProcessId::of(child.id() as i32).unwrap_or(ProcessId {
            pid: child.id() as i32,
            start_time: 0,
        });
        // Reap QEMU whenever it ends, so it never lingers as a zombie.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        Ok(Booting {
            supervisor,
            handle: Box::new(ReadyWait {
                listener,
                launched: Instant::now(),
            }),
        })
    }

    fn wait_booted(
        &self,
        launch: &NodeLaunch<'_>,
        booting: Booting,
        deadline: Instant,
    ) -> Result<ProcessId, SandboxError> {
        let node = launch.node;
        let failed = |reason: String| SandboxError::BootFailed {
            cluster: launch.cluster.id.clone(),
            node: node.name.clone(),
            reason,
            log_tail: self.boot_log_tail(&launch.node_dir, 25),
        };
        let wait = booting
            .handle
            .downcast::<ReadyWait>()
            .map_err(|_| failed("internal: wrong boot handle".into()))?;
        let accelerator = self.prepare()?.probe.accelerator;
        let deadline = deadline.max(wait.launched + self.boot_floor(accelerator));
        let mut stream: Option<UnixStream> = None;
        let mut said = Vec::new();
        loop {
            if stream.is_none() {
                match wait.listener.accept() {
                    Ok((s, _)) => {
                        s.set_read_timeout(Some(Duration::from_millis(100)))
                            .map_err(|e| failed(format!("reading its readiness port: {e}")))?;
                        stream = Some(s);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(failed(format!("accepting its readiness port: {e}"))),
                }
            }
            if let Some(s) = stream.as_mut() {
                let mut buf = [0u8; 256];
                match s.read(&mut buf) {
                    Ok(0) => {
                        stream = None;
                    }
                    Ok(n) => said.extend_from_slice(&buf[..n]),
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(failed(format!("reading its readiness port: {e}"))),
                }
            }
            if String::from_utf8_lossy(&said).contains("READY=1") {
                break;
            }
            if !booting.supervisor.is_alive() {
                return Err(failed(
                    "QEMU exited before the node finished booting".into(),
                ));
            }
            if Instant::now() > deadline {
                return Err(failed(format!(
                    "timed out after {} s: the guest did not report readiness ({} with {})",
                    wait.launched.elapsed().as_secs(),
                    match self.init {
                        GuestInit::Systemd => "systemd",
                        GuestInit::Minimal => "minimal init",
                    },
                    accelerator.as_str()
                )));
            }
        }
        let _ = fs::remove_file(launch.node_dir.join("ready.sock"));
        tracing::debug!(node = %node.name, ms = wait.launched.elapsed().as_millis() as u64, accel = accelerator.as_str(), "VM ready");
        // A VM's processes are not visible from the host: QEMU stands for them.
        Ok(booting.supervisor)
    }

    fn exec(
        &self,
        cluster: &ClusterState,
        node: &NodeState,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, SandboxError> {
        if !node.supervisor.is_some_and(|p| p.is_alive()) {
            return Err(SandboxError::NodeDown {
                cluster: cluster.id.clone(),
                node: node.name.clone(),
            });
        }
        let cluster_dir = crate::state::ClusterRegistry::new(&self.state_dir).dir(&cluster.id);
        let node_dir = cluster_dir.join("nodes").join(&node.name);
        transport::exec(&cluster_dir, &node_dir, node, req, io)
    }

    fn boot_log_tail(&self, node_dir: &Path, lines: usize) -> String {
        let mut text = String::new();
        for name in [CONSOLE_LOG, QEMU_LOG] {
            if let Ok(mut f) = fs::File::open(node_dir.join(name)) {
                let _ = f.read_to_string(&mut text);
            }
        }
        let clean = crate::nspawn::strip_ansi(&text);
        let all: Vec<&str> = clean.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        if tail.is_empty() {
            "(the VM printed nothing)".into()
        } else {
            tail
        }
    }

    fn request_poweroff(&self, node: &NodeState) -> Result<(), SandboxError> {
        if !node.supervisor.is_some_and(|p| p.is_alive()) {
            return Ok(());
        }
        let Some(cluster) = crate::net::cluster_of_iface(&node.machine) else {
            return Ok(());
        };
        let cluster_dir = crate::state::ClusterRegistry::new(&self.state_dir).dir(&cluster);
        let node_dir = cluster_dir.join("nodes").join(&node.name);
        // systemd powers off cleanly; the minimal init does on SIGTERM. Either
        // way the kernel powers the machine off and QEMU exits.
        let req = ExecRequest {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "systemctl poweroff --no-block 2>/dev/null || kill -TERM 1".into(),
            ],
            timeout: Some(Duration::from_secs(10)),
            ..Default::default()
        };
        let mut sink = std::io::sink();
        let mut sink2 = std::io::sink();
        let _ = transport::exec(
            &cluster_dir,
            &node_dir,
            node,
            &req,
            ExecIo {
                stdin: None,
                stdout: &mut sink,
                stderr: &mut sink2,
            },
        );
        Ok(())
    }

    fn teardown(&self, _cluster_id: &str, cluster_dir: &Path) -> Result<(), SandboxError> {
        // QEMU processes died with the cluster's cgroups and taps go with the
        // cluster's interfaces; what is left are the node files, which may be
        // large (disk overlays).
        let nodes = cluster_dir.join("nodes");
        let Ok(entries) = fs::read_dir(&nodes) else {
            return Ok(());
        };
        for entry in entries.flatten() {
            for name in NODE_FILES {
                let path = entry.path().join(name);
                match fs::remove_file(&path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        return Err(SandboxError::io("removing", &path, e))
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}
