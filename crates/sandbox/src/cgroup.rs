//! A cgroup per node under `rehearse/<cluster>/<node>`, in the unified hierarchy
//! and (on hybrid hosts) the named systemd one.
//!
//! systemd-nspawn with `--keep-unit` uses the cgroup it is started in and, with a
//! user namespace, hands it to the node's root. It cannot do that for the root
//! cgroup, so every node gets its own. The cluster's cgroup is also how teardown
//! finds and kills every process of a cluster, including those of an engine that
//! died mid-boot.

use std::ffi::CString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rehearse_spec::NodeLimits;

use crate::SandboxError;

const TOP: &str = "rehearse";
/// The cgroup below a node's that commands run in it (`exec`) join.
const EXEC: &str = "exec";

#[derive(Debug, Clone)]
pub struct Cgroups {
    /// The cgroup2 mount.
    unified: PathBuf,
    /// The named v1 systemd hierarchy, on hybrid hosts.
    named: Option<PathBuf>,
    /// v1 hierarchies of the controllers nodes are limited with (memory,
    /// pids, cpu), on hybrid hosts where they are not in the unified one.
    legacy: Vec<(&'static str, PathBuf)>,
}

/// Controllers that limit nodes.
pub const LIMIT_CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

impl Cgroups {
    /// Finds the hierarchies from the mount table.
    pub fn discover() -> Result<Self, SandboxError> {
        let info = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| SandboxError::io("reading", "/proc/self/mountinfo", e))?;
        let mut unified = None;
        let mut named = None;
        let mut legacy: Vec<(&'static str, PathBuf)> = Vec::new();
        for line in info.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split(' ').nth(4).unwrap_or_default();
            let mut right = right.split(' ');
            let fstype = right.next().unwrap_or_default();
            let super_opts = right.nth(1).unwrap_or_default();
            match fstype {
                "cgroup2" if unified.is_none() => unified = Some(PathBuf::from(mount_point)),
                "cgroup" if super_opts.split(',').any(|o| o == "name=systemd") => {
                    named = Some(PathBuf::from(mount_point))
                }
                "cgroup" => {
                    for c in LIMIT_CONTROLLERS {
                        if super_opts.split(',').any(|o| o == c)
                            && !legacy.iter().any(|(_, p)| p == Path::new(mount_point))
                        {
                            legacy.push((c, PathBuf::from(mount_point)));
                        }
                    }
                }
                _ => {}
            }
        }
        let unified = unified.ok_or_else(|| {
            SandboxError::io(
                "finding the cgroup2 hierarchy in",
                "/proc/self/mountinfo",
                std::io::Error::other(
                    "no cgroup2 mount; boot the host with the unified or hybrid cgroup hierarchy",
                ),
            )
        })?;
        Ok(Cgroups {
            unified,
            named,
            legacy,
        })
    }

    /// The host's hierarchies, found once per process.
    pub fn host() -> Result<&'static Cgroups, SandboxError> {
        static HOST: std::sync::OnceLock<Cgroups> = std::sync::OnceLock::new();
        if let Some(c) = HOST.get() {
            return Ok(c);
        }
        let found = Cgroups::discover()?;
        Ok(HOST.get_or_init(|| found))
    }

    fn roots(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.unified)
            .chain(self.named.iter())
            .chain(self.legacy.iter().map(|(_, p)| p))
    }

    /// Where a controller's files for `cluster/node` are: the v1 hierarchy
    /// that has it on a hybrid host, else the unified one.
    fn controller_dir(&self, controller: &str, cluster: &str, node: &str) -> PathBuf {
        let root = self
            .legacy
            .iter()
            .find(|(c, _)| *c == controller)
            .map(|(_, p)| p)
            .unwrap_or(&self.unified);
        Self::cluster_path(root, cluster).join(node)
    }

    /// Whether a controller lives in a v1 hierarchy (hybrid host).
    pub fn is_legacy(&self, controller: &str) -> bool {
        self.legacy.iter().any(|(c, _)| *c == controller)
    }

    /// How many times the kernel OOM-killed a process of the node.
    pub fn node_oom_kills(&self, cluster: &str, node: &str) -> u64 {
        let dir = self.controller_dir("memory", cluster, node);
        let file = if self.is_legacy("memory") {
            "memory.oom_control"
        } else {
            "memory.events"
        };
        fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("oom_kill "))
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// CPU time the node's processes used so far (µs).
    pub fn node_cpu_usage_usec(&self, cluster: &str, node: &str) -> u64 {
        // cpu.stat's usage is kept in the unified hierarchy whether or not
        // the cpu controller is enabled there.
        let dir = Self::cluster_path(&self.unified, cluster).join(node);
        fs::read_to_string(dir.join("cpu.stat"))
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))
                    .and_then(|n| n.trim().parse().ok())
            })
            .unwrap_or(0)
    }

    pub fn cluster_path(root: &Path, cluster: &str) -> PathBuf {
        root.join(TOP).join(cluster)
    }

    /// Creates the node's cgroups with its limits and returns the
    /// `cgroup.procs` files a process writes itself into, prepared for use
    /// between fork and exec.
    pub fn create_node(
        &self,
        cluster: &str,
        node: &str,
        limits: &NodeLimits,
    ) -> Result<Vec<CString>, SandboxError> {
        let mut procs = Vec::new();
        for root in self.roots() {
            let dir = Self::cluster_path(root, cluster).join(node);
            fs::create_dir_all(&dir).map_err(|e| SandboxError::io("creating cgroup", &dir, e))?;
            let file = dir.join("cgroup.procs");
            procs.push(
                CString::new(file.into_os_string().into_encoded_bytes())
                    .expect("no NUL in cgroup path"),
            );
        }
        self.set_limits(cluster, node, limits)?;
        Ok(procs)
    }

    /// The `cgroup.procs` files a command run in a node (`exec`) writes
    /// itself into, so that the node's limits and teardown cover it: a leaf
    /// `exec` beside nspawn's `payload` and `supervisor` in the hierarchies
    /// systemd manages, and the node's own cgroup in v1 controller
    /// hierarchies, where nothing lives below it.
    pub fn exec_procs(&self, cluster: &str, node: &str) -> Result<Vec<CString>, SandboxError> {
        let node_dir = |root: &Path| Self::cluster_path(root, cluster).join(node);
        let mut dirs = Vec::new();
        for root in std::iter::once(&self.unified).chain(self.named.iter()) {
            let dir = node_dir(root).join(EXEC);
            fs::create_dir_all(&dir).map_err(|e| SandboxError::io("creating cgroup", &dir, e))?;
            dirs.push(dir);
        }
        dirs.extend(self.legacy.iter().map(|(_, root)| node_dir(root)));
        Ok(dirs
            .into_iter()
            .map(|d| {
                CString::new(d.join("cgroup.procs").into_os_string().into_encoded_bytes())
                    .expect("no NUL in cgroup path")
            })
            .collect())
    }

    /// Writes a node's limits into its cgroups: cgroup v2 files where the
    /// controller is in the unified hierarchy, v1 files where it is not.
    fn set_limits(
        &self,
        cluster: &str,
        node: &str,
        limits: &NodeLimits,
    ) -> Result<(), SandboxError> {
        let wanted: Vec<&str> = [
            limits.memory.map(|_| "memory"),
            limits.millicpus.map(|_| "cpu"),
            limits.pids.map(|_| "pids"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let unified: Vec<&str> = wanted
            .iter()
            .copied()
            .filter(|c| !self.is_legacy(c))
            .collect();
        if !unified.is_empty() {
            self.delegate(cluster, &unified)?;
        }
        let write = |controller: &str, file: &str, value: String| -> Result<(), SandboxError> {
            let path = self.controller_dir(controller, cluster, node).join(file);
            fs::write(&path, &value).map_err(|e| {
                SandboxError::io(
                    "limiting the node in",
                    &path,
                    std::io::Error::new(e.kind(), format!("writing {value}: {e}")),
                )
            })
        };
        if let Some(bytes) = limits.memory {
            if self.is_legacy("memory") {
                write("memory", "memory.limit_in_bytes", bytes.to_string())?;
                // With swap accounting, swap counts against the limit too.
                let memsw = self
                    .controller_dir("memory", cluster, node)
                    .join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write("memory", "memory.memsw.limit_in_bytes", bytes.to_string())?;
                }
            } else {
                write("memory", "memory.max", bytes.to_string())?;
                let _ = fs::write(
                    self.controller_dir("memory", cluster, node)
                        .join("memory.swap.max"),
                    "0",
                );
            }
        }
        if let Some(milli) = limits.millicpus {
            let (period, quota) = (100_000u64, u64::from(milli) * 100);
            if self.is_legacy("cpu") {
                write("cpu", "cpu.cfs_period_us", period.to_string())?;
                write("cpu", "cpu.cfs_quota_us", quota.to_string())?;
            } else {
                write("cpu", "cpu.max", format!("{quota} {period}"))?;
            }
        }
        if let Some(pids) = limits.pids {
            write("pids", "pids.max", pids.to_string())?;
        }
        Ok(())
    }

    /// Makes controllers of the unified hierarchy available to a cluster's
    /// node cgroups (`+memory` in `subtree_control` of each ancestor).
    fn delegate(&self, cluster: &str, controllers: &[&str]) -> Result<(), SandboxError> {
        let top = self.unified.join(TOP);
        for dir in [
            &self.unified,
            &top,
            &Self::cluster_path(&self.unified, cluster),
        ] {
            let available = fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
            let enabled =
                fs::read_to_string(dir.join("cgroup.subtree_control")).unwrap_or_default();
            for c in controllers {
                if enabled.split_whitespace().any(|e| e == *c) {
                    continue;
                }
                if !available.split_whitespace().any(|a| a == *c) {
                    return Err(SandboxError::io(
                        "limiting nodes with",
                        dir,
                        std::io::Error::other(format!(
                            "the {c} controller is not available here; enable it for the cgroup rehearse runs in (systemd: Delegate=yes), or leave `{}` out of the topology",
                            limit_key(c)
                        )),
                    ));
                }
                let control = dir.join("cgroup.subtree_control");
                fs::write(&control, format!("+{c}")).map_err(|e| {
                    SandboxError::io(
                        "enabling a controller in",
                        &control,
                        std::io::Error::new(e.kind(), format!("+{c}: {e}")),
                    )
                })?;
            }
        }
        Ok(())
    }

    /// Whether the cluster has a cgroup (it exists, or a crashed process left it).
    pub fn cluster_exists(&self, cluster: &str) -> bool {
        Self::cluster_path(&self.unified, cluster).exists()
    }

    /// Cluster ids that have a cgroup.
    pub fn cluster_ids(&self) -> Vec<String> {
        fs::read_dir(self.unified.join(TOP))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Kills every process of the cluster and waits until none is left.
    pub fn kill_cluster(&self, cluster: &str, timeout: Duration) -> Result<(), SandboxError> {
        kill_tree(Self::cluster_path(&self.unified, cluster), timeout)
    }

    /// Kills every process of one node and waits until none is left.
    pub fn kill_node(
        &self,
        cluster: &str,
        node: &str,
        timeout: Duration,
    ) -> Result<(), SandboxError> {
        kill_tree(
            Self::cluster_path(&self.unified, cluster).join(node),
            timeout,
        )
    }

    /// Freezes (or thaws) every process of one node and, when freezing, waits
    /// until the kernel reports the whole cgroup frozen. A node without a
    /// cgroup (never booted, or torn down) has nothing to freeze.
    pub fn set_node_frozen(
        &self,
        cluster: &str,
        node: &str,
        frozen: bool,
        timeout: Duration,
    ) -> Result<(), SandboxError> {
        let dir = Self::cluster_path(&self.unified, cluster).join(node);
        if !dir.is_dir() {
            return Ok(());
        }
        let control = dir.join("cgroup.freeze");
        fs::write(&control, if frozen { "1" } else { "0" })
            .map_err(|e| SandboxError::io("writing", &control, e))?;
        if !frozen {
            return Ok(());
        }
        let events = dir.join("cgroup.events");
        let deadline = Instant::now() + timeout;
        loop {
            let text =
                fs::read_to_string(&events).map_err(|e| SandboxError::io("reading", &events, e))?;
            if text.lines().any(|l| l.trim() == "frozen 1") {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = fs::write(&control, "0");
                return Err(SandboxError::io(
                    "freezing",
                    dir,
                    std::io::Error::other(format!(
                        "not frozen after {:.0?}: a process is stuck in the kernel (uninterruptible I/O); try again",
                        timeout
                    )),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Whether a node of the cluster is frozen (rehearse freezes nodes
    /// whole, at their own cgroup; what a node's systemd freezes below it is
    /// the node's business).
    pub fn any_frozen(&self, cluster: &str) -> bool {
        let Ok(nodes) = fs::read_dir(Self::cluster_path(&self.unified, cluster)) else {
            return false;
        };
        nodes.flatten().any(|node| {
            fs::read_to_string(node.path().join("cgroup.freeze")).is_ok_and(|t| t.trim() == "1")
        })
    }

    /// Number of processes in the cluster's cgroups.
    pub fn process_count(&self, cluster: &str) -> usize {
        pids_below(&Self::cluster_path(&self.unified, cluster)).len()
    }
}

/// The topology key a controller limits.
fn limit_key(controller: &str) -> &'static str {
    match controller {
        "memory" => "memory",
        "cpu" => "cpus",
        _ => "pids",
    }
}

impl Cgroups {
    /// Memory the node's processes use now (bytes), page cache included.
    pub fn node_memory_used(&self, cluster: &str, node: &str) -> Option<u64> {
        let dir = self.controller_dir("memory", cluster, node);
        let file = if self.is_legacy("memory") {
            "memory.usage_in_bytes"
        } else {
            "memory.current"
        };
        fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
    }
}

fn kill_tree(dir: PathBuf, timeout: Duration) -> Result<(), SandboxError> {
    if !dir.exists() {
        return Ok(());
    }
    let deadline = Instant::now() + timeout;
    let kill_file = dir.join("cgroup.kill");
    let have_kill = fs::write(&kill_file, "1").is_ok();
    loop {
        let pids = pids_below(&dir);
        if pids.is_empty() {
            return Ok(());
        }
        if !have_kill {
            for pid in &pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if Instant::now() > deadline {
            return Err(SandboxError::io(
                "killing the processes of",
                dir,
                std::io::Error::other(format!("{} process(es) still alive: {pids:?}", pids.len())),
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Cgroups {
    /// Removes one node's cgroups (they must be empty), so a node booted
    /// again starts with fresh counters (OOM kills, CPU time).
    pub fn remove_node(&self, cluster: &str, node: &str) -> Result<(), SandboxError> {
        for root in self.roots() {
            remove_cgroup_tree(&Self::cluster_path(root, cluster).join(node))?;
        }
        Ok(())
    }

    /// Removes the cluster's cgroups (they must be empty).
    pub fn remove_cluster(&self, cluster: &str) -> Result<(), SandboxError> {
        for root in self.roots() {
            let dir = Self::cluster_path(root, cluster);
            remove_cgroup_tree(&dir)?;
        }
        Ok(())
    }
}

fn pids_below(dir: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        if let Ok(text) = fs::read_to_string(d.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        if let Ok(entries) = fs::read_dir(&d) {
            stack.extend(
                entries
                    .flatten()
                    .filter(|e| e.path().is_dir())
                    .map(|e| e.path()),
            );
        }
    }
    pids
}

fn remove_cgroup_tree(dir: &Path) -> Result<(), SandboxError> {
    if !dir.exists() {
        return Ok(());
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() {
                remove_cgroup_tree(&entry.path())?;
            }
        }
    }
    // A cgroup can stay busy for a moment after its last process was reaped.
    let mut tries = 0;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if tries < 250 => {
                let _ = e;
                tries += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(SandboxError::io("removing cgroup", dir, e)),
        }
    }
}

/// Moves the calling process into the given cgroups. Runs between fork and exec,
/// so it only makes raw system calls on data prepared beforehand.
///
/// # Safety
/// Must only be called in a child between fork and exec (async-signal-safe calls only).
pub unsafe fn enter_raw(procs: &[CString]) -> std::io::Result<()> {
    for file in procs {
        // SAFETY: `file` is a valid NUL-terminated path; open/write/close are
        // async-signal-safe and the buffer is a static string.
        let fd = unsafe { libc::open(file.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened above; the buffer is one static byte.
        let wrote = unsafe { libc::write(fd, b"0".as_ptr().cast(), 1) };
        // SAFETY: `fd` is ours and closed once.
        unsafe { libc::close(fd) };
        if wrote != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}
