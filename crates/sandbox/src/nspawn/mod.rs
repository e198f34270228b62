//! The default backend: systemd-nspawn system containers with systemd as PID 1,
//! an overlayfs root over the shared golden image (creating a node copies
//! nothing), a user namespace mapped to the image's UID range, and readiness
//! reported by the node's systemd through nspawn's notify socket.

mod diagnose;
pub(crate) mod exec;
mod idmap;
mod rootfs;

use std::io::Read;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rehearse_image::UID_RANGE;

use crate::backend::{Backend, Booting, ExecIo, ExecOutcome, ExecRequest, NodeLaunch};
use crate::host::{self, ProcessId};
use crate::net;
use crate::state::{ClusterState, NodeState};
use crate::SandboxError;

pub struct NspawnBackend;

const CONSOLE_LOG: &str = "console.log";

impl Backend for NspawnBackend {
    fn name(&self) -> &'static str {
        "nspawn"
    }

    fn launch(&self, launch: &NodeLaunch<'_>) -> Result<Booting, SandboxError> {
        ensure_runtime_tmpfs()?;
        let dir = &launch.node_dir;
        let root = dir.join("root");
        let image_base = launch.image.uid_base;
        let uid_base = launch.node.uid_base.unwrap_or(image_base);
        if !rootfs::mounts_below(&root).contains(&root) {
            rootfs::mount_overlay(
                &launch.image.rootfs(),
                dir,
                image_base,
                launch.node.uid_base,
            )?;
        }
        rootfs::install_seeds(&root, launch.seeds, uid_base)?;
        clear_stale_links(launch.node);

        let notify_path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&notify_path);
        let notify = UnixDatagram::bind(&notify_path)
            .map_err(|e| SandboxError::io("binding", &notify_path, e))?;
        notify
            .set_read_timeout(Some(Duration::from_millis(50)))
            .map_err(|e| SandboxError::io("configuring", &notify_path, e))?;

        let node = launch.node;
        let mut cmd = Command::new("systemd-nspawn");
        cmd.arg("--quiet")
            .arg("--register=no")
            .arg("--keep-unit")
            .arg("--boot")
            .arg(format!("--directory={}", root.display()))
            .arg(format!("--machine={}", node.machine))
            .arg(format!("--hostname={}", node.name))
            .arg(format!("--private-users={uid_base}:{UID_RANGE}"))
            .arg("--private-users-ownership=off")
            .arg("--notify-ready=yes")
            .arg("--console=pipe")
            .arg("--resolv-conf=off")
            .arg("--timezone=off")
            .arg("--link-journal=no");
        for (i, nic) in node.nics.iter().enumerate() {
            let bridge = &launch
                .cluster
                .networks
                .iter()
                .find(|n| n.name == nic.network)
                .expect("nic network exists")
                .bridge;
            if i == 0 {
                cmd.arg(format!("--network-bridge={bridge}"));
            } else {
                cmd.arg(format!(
                    "--network-veth-extra={}:{}",
                    nic.host_iface, nic.iface
                ));
            }
        }
        let console = std::fs::File::create(dir.join(CONSOLE_LOG))
            .map_err(|e| SandboxError::io("creating", dir.join(CONSOLE_LOG), e))?;
        cmd.env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("NOTIFY_SOCKET", &notify_path)
            .env("SYSTEMD_NSPAWN_LOCK", "0")
            .stdin(Stdio::null())
            .stdout(
                console
                    .try_clone()
                    .map_err(|e| SandboxError::io("opening", dir.join(CONSOLE_LOG), e))?,
            )
            .stderr(console);
        let procs = launch.cgroup_procs.clone();
        // SAFETY: between fork and exec we only call setsid and the raw
        // open/write/close of `enter_raw`, on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                libc::setsid();
                crate::cgroup::enter_raw(&procs)
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| host::spawn_error("systemd-nspawn", e))?;
        let supervisor = ProcessId::of(child.id() as i32).unwrap_or(ProcessId {
            pid: child.id() as i32,
            start_time: 0,
        });
        // Reap the supervisor whenever it ends, so it never lingers as a zombie.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        Ok(Booting {
            supervisor,
            handle: Box::new(notify),
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
        let notify = booting
            .handle
            .downcast::<UnixDatagram>()
            .map_err(|_| failed("internal: wrong boot handle".into()))?;

        // Veths of further networks appear once nspawn has set up the namespace;
        // plug them into their bridges as soon as they do.
        let mut pending: Vec<(String, String)> = node
            .nics
            .iter()
            .skip(1)
            .map(|nic| {
                let bridge = launch
                    .cluster
                    .networks
                    .iter()
                    .find(|n| n.name == nic.network)
                    .expect("exists")
                    .bridge
                    .clone();
                (nic.host_iface.clone(), bridge)
            })
            .collect();

        let mut leader = None;
        let mut ready = false;
        let mut buf = [0u8; 4096];
        let console = launch.node_dir.join(CONSOLE_LOG);
        let cgroups = crate::cgroup::Cgroups::host()?;
        let (cluster_id, node_name) = (launch.cluster.id.as_str(), node.name.as_str());
        // The time-out is a last resort: a node that makes progress (prints,
        // or uses CPU) under a loaded host gets up to four times as long; one
        // that does neither for STALLED has stopped for good.
        let allowance = deadline.saturating_duration_since(Instant::now());
        let last_resort = deadline + allowance * 3;
        let mut progress = (0u64, 0u64);
        let mut progressed_at = Instant::now();
        let mut checked_at = Instant::now();
        let with_cause = |what: &str| -> String {
            let log = read_console(&launch.node_dir);
            let oom = cgroups.node_oom_kills(cluster_id, node_name) > 0;
            match (oom, diagnose::from_log(&log)) {
                (true, _) => format!(
                    "{what}: the node ran out of memory (its processes were OOM-killed); destroy clusters you no longer need, or give the node more `memory` in the topology"
                ),
                (false, Some(d)) => format!("{what}: {}", d.sentence().replace("NAME", &node.image)),
                (false, None) => what.to_string(),
            }
        };
        while !(ready && pending.is_empty()) {
            pending.retain(|(iface, bridge)| {
                if net::link_exists(iface) {
                    net::attach_to_bridge(iface, bridge).is_err()
                } else {
                    true
                }
            });
            if !ready {
                match notify.recv(&mut buf) {
                    Ok(n) => {
                        let msg = String::from_utf8_lossy(&buf[..n]);
                        for line in msg.lines() {
                            if line == "READY=1" {
                                ready = true;
                            } else if let Some(pid) = line.strip_prefix("X_NSPAWN_LEADER_PID=") {
                                leader = pid.trim().parse::<i32>().ok().and_then(ProcessId::of);
                            }
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => return Err(failed(format!("reading its notify socket: {e}"))),
                }
            } else {
                std::thread::sleep(Duration::from_millis(2));
            }
            if !booting.supervisor.is_alive() || is_zombie(booting.supervisor.pid) {
                return Err(failed(with_cause(
                    "systemd-nspawn exited before the node finished booting",
                )));
            }
            let now = Instant::now();
            if now.duration_since(checked_at) >= CHECK_EVERY {
                checked_at = now;
                let size = std::fs::metadata(&console).map(|m| m.len()).unwrap_or(0);
                let cpu = cgroups.node_cpu_usage_usec(cluster_id, node_name);
                if (size, cpu) != progress {
                    progress = (size, cpu);
                    progressed_at = now;
                }
                if diagnose::is_fatal(&read_console(&launch.node_dir))
                    || cgroups.node_oom_kills(cluster_id, node_name) > 0
                {
                    return Err(failed(with_cause("the node gave up booting")));
                }
                if now.duration_since(progressed_at) > STALLED {
                    return Err(failed(with_cause(&format!(
                        "the node stopped booting: no output and no CPU time for {} s",
                        STALLED.as_secs()
                    ))));
                }
            }
            let idle_for = now.duration_since(progressed_at);
            if now > last_resort || (now > deadline && idle_for > Duration::from_secs(2)) {
                let what = if ready {
                    "its network interfaces did not appear"
                } else {
                    "systemd did not report boot completion"
                };
                return Err(failed(with_cause(&format!(
                    "timed out after {} s: {what}",
                    (now + allowance - deadline).as_secs()
                ))));
            }
        }
        let _ = std::fs::remove_file(launch.node_dir.join("notify.sock"));
        leader
            .or_else(|| first_child(booting.supervisor.pid).and_then(ProcessId::of))
            .ok_or_else(|| failed("could not find the node's PID 1".into()))
    }

    fn exec(
        &self,
        cluster: &ClusterState,
        node: &NodeState,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, SandboxError> {
        let leader =
            node.leader
                .filter(|l| l.is_alive())
                .ok_or_else(|| SandboxError::NodeDown {
                    cluster: cluster.id.clone(),
                    node: node.name.clone(),
                })?;
        let cgroups = crate::cgroup::Cgroups::host()?.exec_procs(&cluster.id, &node.name)?;
        exec::run(leader, &node.name, &cgroups, req, io)
    }

    fn request_poweroff(&self, node: &NodeState) -> Result<(), SandboxError> {
        // systemd as PID 1 powers off on SIGRTMIN+4; nspawn exits when it has.
        if let Some(leader) = node.leader.filter(|l| l.is_alive()) {
            let sig = libc::SIGRTMIN() + 4;
            // SAFETY: kill(2) with a valid signal number and a PID we own.
            unsafe { libc::kill(leader.pid, sig) };
        }
        Ok(())
    }

    fn boot_log_tail(&self, node_dir: &Path, lines: usize) -> String {
        let clean = read_console(node_dir);
        let all: Vec<&str> = clean
            .lines()
            .filter(|l| !l.trim().is_empty() && !diagnose::is_noise(l))
            .collect();
        let tail = all[all.len().saturating_sub(lines)..].join("\n");
        if tail.is_empty() {
            "(the node printed nothing)".into()
        } else {
            tail
        }
    }

    fn teardown(&self, cluster_id: &str, cluster_dir: &Path) -> Result<(), SandboxError> {
        rootfs::unmount_below(cluster_dir)?;
        for sub in ["propagate", "unix-export"] {
            let base = Path::new("/run/systemd/nspawn").join(sub);
            if let Ok(entries) = std::fs::read_dir(&base) {
                let prefix = net::machine_name(cluster_id, 0);
                let prefix = prefix.trim_end_matches('0');
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().starts_with(prefix) {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether a boot failure with this reason may pass on a second try (not a
/// broken image, not a full disk).
pub fn worth_retrying(reason: &str) -> bool {
    !(reason.contains("image is broken")
        || reason.contains("disk under the state directory is full"))
}

/// Makes a node that failed to boot fresh again (its processes are dead):
/// no mounts, no layer, no log, and its host veth gone, so it can be
/// launched as if for the first time.
pub(crate) fn reset_node(node: &NodeState, node_dir: &Path) -> Result<(), SandboxError> {
    rootfs::unmount_below(node_dir)?;
    clear_stale_links(node);
    let _ = std::fs::remove_dir_all(
        Path::new(NSPAWN_RUNTIME)
            .join("propagate")
            .join(&node.machine),
    );
    match std::fs::remove_dir_all(node_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(SandboxError::io("removing", node_dir, e))
        }
        _ => Ok(()),
    }
}

/// Removes host veths a previous life of this node left behind. A node's
/// network namespace is torn down by the kernel asynchronously after its
/// processes die, so right after a node is killed (a reboot, a restore, a
/// failed boot) its host veth can linger for a moment, and nspawn then refuses
/// to launch it again ("Failed to add new veth interfaces ...: File exists").
/// A node is only launched when nothing of it runs, so any such link is stale.
fn clear_stale_links(node: &NodeState) {
    for nic in &node.nics {
        let deadline = Instant::now() + Duration::from_secs(5);
        while net::link_exists(&nic.host_iface) && Instant::now() < deadline {
            let _ = Command::new("ip")
                .args(["link", "del", &nic.host_iface])
                .stderr(Stdio::null())
                .status();
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// How often a booting node's log and cgroup are looked at.
const CHECK_EVERY: Duration = Duration::from_millis(200);

/// A booting node that neither prints nor uses CPU for this long has stopped.
const STALLED: Duration = Duration::from_secs(15);

/// What the node printed so far, without terminal escapes.
fn read_console(node_dir: &Path) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(node_dir.join(CONSOLE_LOG)) {
        let _ = f.read_to_string(&mut text);
    }
    strip_ansi(&text)
}

/// nspawn's runtime folder.
const NSPAWN_RUNTIME: &str = "/run/systemd/nspawn";

/// systemd-nspawn keeps a folder per machine under `/run/systemd/nspawn` and
/// removes it when the machine ends, but refuses to remove anything from a
/// disk file system ("Attempted to remove disk file system under ..., and we
/// can't allow that"). On a host whose `/run` is not a tmpfs (its init is not
/// systemd) every node's end printed that, and a node that failed to boot
/// showed it as its last words instead of the real cause. A tmpfs on nspawn's
/// runtime folder, mounted once per host boot, is what nspawn expects there.
fn ensure_runtime_tmpfs() -> Result<(), SandboxError> {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    let dir = Path::new(NSPAWN_RUNTIME);
    let is_tmpfs = |d: &Path| {
        nix::sys::statfs::statfs(d)
            .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
    };
    if !is_tmpfs(dir) {
        // One process mounts it; the others see it mounted.
        let _lock = crate::lease::Leases::host().lock()?;
        std::fs::create_dir_all(dir).map_err(|e| SandboxError::io("creating", dir, e))?;
        if !is_tmpfs(dir) {
            nix::mount::mount(
                Some("tmpfs"),
                dir,
                Some("tmpfs"),
                nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
                Some("mode=0755,size=16m"),
            )
            .map_err(|e| SandboxError::io("mounting a tmpfs at", dir, e.into()))?;
            tracing::info!("mounted a tmpfs at {NSPAWN_RUNTIME} (the host's /run is not one)");
        }
    }
    let _ = DONE.set(());
    Ok(())
}

fn first_child(pid: i32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    text.split_whitespace().next()?.parse().ok()
}

fn is_zombie(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').map(|i| s[i + 2..].starts_with('Z')))
        .unwrap_or(true)
}

pub(crate) fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}
