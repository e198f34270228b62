//! The host-side package cache nodes fetch distro packages through: an
//! apt-cacher-ng instance of rehearse's own (its own cache folder, pid file and
//! port), listening only on the service address, started on the first cluster
//! that needs it and stopped with the last one.
//!
//! The service address, its bridge and the port are the host's, so there is
//! one cache per host, shared by every state directory: its folder, lock and
//! owner record live in [`HOST_DIR`], and it stops only when no cluster of any
//! state directory is left.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::host::{self, ProcessId};
use crate::net::{self, SERVICE_ADDR};
use crate::SandboxError;

/// Port of the cache on the service address (not apt-cacher-ng's default, so a
/// system-wide instance on 3142 does not get in the way).
pub const CACHE_PORT: u16 = 3149;
/// The bridge that carries the service address.
pub const SERVICE_BRIDGE: &str = "rhsvc0";

/// Where the host's package cache keeps its packages, configuration, log,
/// lock and owner record.
pub const HOST_DIR: &str = "/var/cache/rehearse/pkgcache";

#[derive(Clone)]
pub struct PackageCache {
    dir: PathBuf,
}

impl PackageCache {
    /// The host's cache. Packages an older version cached under the state
    /// directory `state_dir` are taken over the first time.
    pub fn host(state_dir: &Path) -> Self {
        let cache = PackageCache {
            dir: PathBuf::from(HOST_DIR),
        };
        let old = state_dir.join("pkgcache/cache");
        if old.is_dir() && !cache.cache_dir().exists() {
            let _ = std::fs::create_dir_all(&cache.dir);
            let _ = std::fs::rename(&old, cache.cache_dir());
        }
        cache
    }

    /// The cached packages and index files.
    pub fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }

    /// apt-cacher-ng's transfer log: one line per file served or fetched.
    pub fn transfer_log(&self) -> PathBuf {
        self.dir.join("log/apt-cacher.log")
    }

    pub fn proxy_url() -> String {
        format!("http://{SERVICE_ADDR}:{CACHE_PORT}")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.join("apt-cacher-ng.pid")
    }

    fn running(&self) -> Option<ProcessId> {
        let text = std::fs::read_to_string(self.dir.join("owner.json")).ok()?;
        let owner: ProcessId = serde_json::from_str(&text).ok()?;
        owner.is_alive().then_some(owner)
    }

    /// Serialises starting and stopping between concurrent engines.
    fn lock(&self) -> Result<nix::fcntl::Flock<std::fs::File>, SandboxError> {
        crate::lock::exclusive_in(&self.dir)
    }

    /// Starts the cache unless it already runs, and waits until it accepts.
    pub fn ensure_running(&self) -> Result<(), SandboxError> {
        let _lock = self.lock()?;
        let addr = SocketAddr::from((SERVICE_ADDR, CACHE_PORT));
        // The service address must be local before anything connects to it:
        // otherwise the connection would be routed off the host.
        if net::link_exists(SERVICE_BRIDGE)
            && self.running().is_some()
            && TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        {
            return Ok(());
        }
        // A cache started from another network namespace (a fleet host in a
        // namespace of its own on the same machine) serves that namespace's
        // nodes: it is neither reachable from here nor ours to stop.
        if let Some(owner) = self.running().filter(|o| !same_netns(o.pid)) {
            return Err(SandboxError::Refused(format!(
                "this machine's package cache (apt-cacher-ng, pid {}) runs in another network \
                 namespace, so nodes started from this one cannot reach it: give their networks \
                 `egress: none`, or run rehearse in the machine's own network namespace",
                owner.pid
            )));
        }
        self.stop_daemon();
        if !net::link_exists(SERVICE_BRIDGE) {
            net::create_bridge(SERVICE_BRIDGE, &format!("{SERVICE_ADDR}/32"))?;
        }
        for sub in ["cache", "log", "conf"] {
            let d = self.dir.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| SandboxError::io("creating", &d, e))?;
        }
        self.write_config()?;
        let log = std::fs::File::create(self.dir.join("daemon.log"))
            .map_err(|e| SandboxError::io("creating", self.dir.join("daemon.log"), e))?;
        let mut cmd = Command::new("apt-cacher-ng");
        cmd.arg("-c")
            .arg(self.dir.join("conf"))
            .stdin(Stdio::null())
            .stdout(
                log.try_clone()
                    .map_err(|e| SandboxError::io("opening", self.dir.join("daemon.log"), e))?,
            )
            .stderr(log);
        // Its own session: the cache outlives the command that started it.
        crate::host::detach(&mut cmd);
        let child = cmd
            .spawn()
            .map_err(|e| host::spawn_error("apt-cacher-ng", e))?;
        let owner = ProcessId::of(child.id() as i32).ok_or_else(|| {
            SandboxError::io(
                "starting",
                "apt-cacher-ng",
                std::io::Error::other("exited at once"),
            )
        })?;
        let owner_path = self.dir.join("owner.json");
        std::fs::write(
            &owner_path,
            serde_json::to_string(&owner).expect("serialises"),
        )
        .map_err(|e| SandboxError::io("writing", &owner_path, e))?;
        // Reap it in the background so it never lingers as a zombie of ours.
        std::thread::spawn(move || {
            let mut child = child;
            let _ = child.wait();
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline && net::link_exists(SERVICE_BRIDGE) {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let tail = std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default();
        Err(SandboxError::Command {
            what: "starting the package cache".into(),
            command: "apt-cacher-ng".into(),
            status: "no answer within 10s".into(),
            stderr: tail,
        })
    }

    /// A configuration of rehearse's own: the system one may be tuned for other
    /// users, and its Debian backend list is empty, which makes the cache pick
    /// mirrors from its built-in list that may be unreachable from here. Index
    /// files are served from the cache for three minutes before upstream is asked
    /// again: clusters in a test loop fetch the same lists over and over.
    fn write_config(&self) -> Result<(), SandboxError> {
        let conf = self.dir.join("conf");
        let acng = format!(
            "# Written by rehearse.\n\
             CacheDir: {cache}\n\
             LogDir: {log}\n\
             SupportDir: /usr/lib/apt-cacher-ng\n\
             PidFile: {pid}\n\
             BindAddress: {SERVICE_ADDR}\n\
             Port: {CACHE_PORT}\n\
             ForeGround: 1\n\
             ExThreshold: 4\n\
             FreshIndexMaxAge: 180\n\
             Remap-debrep: file:deb_mirror*.gz /debian ; file:backends_debian\n\
             Remap-secdeb: security.debian.org security.debian.org/debian-security \
             deb.debian.org/debian-security /debian-security ; deb.debian.org/debian-security\n",
            cache = self.cache_dir().display(),
            log = self.dir.join("log").display(),
            pid = self.pid_file().display(),
        );
        for (name, text) in [
            ("acng.conf", acng.as_str()),
            ("backends_debian", "http://deb.debian.org/debian/\n"),
        ] {
            let path = conf.join(name);
            std::fs::write(&path, text).map_err(|e| SandboxError::io("writing", &path, e))?;
        }
        Ok(())
    }

    /// Stops the cache and removes its address (the cached packages stay for
    /// next time). Does not wait for the daemon to finish exiting: teardown must
    /// stay fast, and the next start waits for a previous daemon if needed.
    pub fn stop(&self) {
        let _lock = self.lock();
        self.stop_locked();
    }

    /// Stops the cache if no cluster of any state directory is left (asked
    /// while holding the cache lock, so no cluster can start using the cache
    /// meanwhile); `in_use` says whether the caller's own state directory
    /// still has one.
    pub fn stop_if_unused(&self, in_use: impl Fn() -> bool) {
        let _lock = self.lock();
        if in_use() {
            return;
        }
        let leases = crate::lease::Leases::host();
        let elsewhere = match leases.lock() {
            Ok(held) => !leases.live(&held).is_empty(),
            // Unsure: leave it running (the next teardown asks again).
            Err(_) => true,
        };
        if !elsewhere {
            self.stop_locked();
        }
    }

    fn stop_locked(&self) {
        if let Some(owner) = self.running() {
            if !same_netns(owner.pid) {
                return;
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(owner.pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if net::link_exists(SERVICE_BRIDGE) {
            let _ = host::run(
                "removing the service bridge",
                Command::new("ip").args(["link", "del", SERVICE_BRIDGE]),
            );
        }
    }

    /// Stops the daemon and waits until it is gone.
    fn stop_daemon(&self) {
        if let Some(owner) = self.running() {
            let pid = nix::unistd::Pid::from_raw(owner.pid);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(3);
            while owner.is_alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if owner.is_alive() {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                while owner.is_alive() {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
        let _ = std::fs::remove_file(self.dir.join("owner.json"));
    }

    /// Bytes held in the cache.
    pub fn cached_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            let Ok(meta) = std::fs::symlink_metadata(p) else {
                return 0;
            };
            if meta.is_dir() {
                std::fs::read_dir(p)
                    .map(|d| d.flatten().map(|e| walk(&e.path())).sum())
                    .unwrap_or(0)
            } else {
                meta.len()
            }
        }
        walk(&self.dir.join("cache"))
    }
}

/// Whether process `pid` lives in this process's network namespace.
fn same_netns(pid: i32) -> bool {
    let ours = std::fs::read_link("/proc/self/ns/net");
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net"));
    match (ours, theirs) {
        (Ok(a), Ok(b)) => a == b,
        // Unreadable: treat it as ours, as before namespaces were considered.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::same_netns;

    #[test]
    fn a_process_in_another_network_namespace_is_told_apart() {
        assert!(same_netns(std::process::id() as i32));
        if !nix::unistd::Uid::effective().is_root() {
            return;
        }
        let mut other = std::process::Command::new("unshare")
            .args(["--net", "sleep", "30"])
            .spawn()
            .expect("unshare runs");
        let pid = other.id() as i32;
        // unshare execs sleep once the namespace is made.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while same_netns(pid) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let apart = !same_netns(pid);
        let _ = other.kill();
        let _ = other.wait();
        assert!(
            apart,
            "a process under `unshare --net` has a namespace of its own"
        );
    }
}
