//! How many more nodes this host can hold now, and which limit decides it.
//!
//! Every limit is turned into a number of nodes from what an idle node uses
//! (measured on Debian 12 nodes: 5 inotify instances, 15 watches, 4 tasks,
//! about 17 MiB of memory charged to its cgroup) with headroom for the
//! services a scenario installs. `up` admits a cluster only if its nodes fit;
//! `rehearse doctor` prints the same numbers with the fix for the tightest.

use std::path::Path;

use serde::Serialize;

/// What one node is budgeted, per limit.
pub const NODE_MEMORY: u64 = 48 << 20;
pub const NODE_TASKS: u64 = 64;
pub const NODE_INOTIFY_INSTANCES: u64 = 16;
pub const NODE_INOTIFY_WATCHES: u64 = 512;
pub const NODE_DISK: u64 = 64 << 20;
/// Memory left to the host itself.
pub const HOST_MEMORY_RESERVE: u64 = 1 << 30;
/// Tasks left to the host itself.
pub const HOST_TASK_RESERVE: u64 = 1024;

/// One limit of the host, in nodes.
#[derive(Debug, Clone, Serialize)]
pub struct Limit {
    /// Short name: memory, pids, inotify instances, ...
    pub name: String,
    /// How many more nodes it lets start now.
    pub fits: u64,
    /// What was measured.
    pub detail: String,
    /// How to raise it.
    pub fix: String,
}

/// The host's capacity for more nodes.
#[derive(Debug, Clone, Serialize)]
pub struct Capacity {
    /// How many more nodes fit now: the smallest of `limits`.
    pub fits: u64,
    /// The limit that sets `fits`.
    pub limited_by: String,
    pub limits: Vec<Limit>,
}

impl Capacity {
    /// The limit that sets the capacity.
    pub fn tightest(&self) -> &Limit {
        self.limits
            .iter()
            .find(|l| l.name == self.limited_by)
            .expect("the tightest limit is listed")
    }
}

/// The most processes a node may have when its topology sets no `pids`: a
/// fork bomb stops there instead of at the host's limit.
pub const DEFAULT_NODE_PIDS: u32 = 4096;

/// The host's memory, in bytes.
pub fn host_memory() -> u64 {
    meminfo("MemTotal").unwrap_or(0)
}

/// The CPUs this process may run on.
pub fn host_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// The limits of a container node whose topology sets none: half the host's
/// memory (a runaway node is OOM-killed before the host is), 4096 processes,
/// and no CPU cap (the `rehearse` cgroup competes with the host's own
/// services as one, so nodes together get a fair share and no more).
pub fn default_node_limits() -> rehearse_spec::NodeLimits {
    let half = host_memory() / 2;
    rehearse_spec::NodeLimits {
        memory: (half > 0).then_some(half / (1 << 20) * (1 << 20)),
        millicpus: None,
        pids: Some(DEFAULT_NODE_PIDS),
    }
}

/// Refuses a topology whose nodes could never run on this host: more memory
/// or CPUs than the host has.
pub fn check_fits_host(topology: &rehearse_spec::Topology) -> Result<(), crate::SandboxError> {
    let (memory, cpus) = (host_memory(), host_cpus());
    for node in &topology.nodes {
        if let Some(m) = node.limits.memory.filter(|m| memory > 0 && *m > memory) {
            return Err(crate::SandboxError::Refused(format!(
                "node {} asks for memory {} but this host has {} in all; lower its `memory` in the topology",
                node.name,
                rehearse_spec::limits::format_memory(m),
                rehearse_spec::limits::format_memory(memory)
            )));
        }
        if let Some(c) = node.limits.millicpus.filter(|c| *c > cpus * 1000) {
            return Err(crate::SandboxError::Refused(format!(
                "node {} asks for cpus {} but this host has {cpus}; lower its `cpus` in the topology",
                node.name,
                rehearse_spec::limits::format_cpus(c)
            )));
        }
    }
    Ok(())
}

fn read_u64(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn meminfo(key: &str) -> Option<u64> {
    std::fs::read_to_string("/proc/meminfo")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map(|kib| kib * 1024)
}

/// Inotify instances and watches open on the host now. They are charged to
/// the user that created each user namespace — root, for every node — so
/// they count for all nodes of all clusters together.
fn inotify_in_use() -> (u64, u64) {
    let (mut instances, mut watches) = (0, 0);
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return (0, 0);
    };
    for p in procs.flatten() {
        let name = p.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let is_inotify =
                std::fs::read_link(fd.path()).is_ok_and(|t| t.as_os_str() == "anon_inode:inotify");
            if is_inotify {
                instances += 1;
                let info = p.path().join("fdinfo").join(fd.file_name());
                watches += std::fs::read_to_string(info)
                    .map(|t| t.lines().filter(|l| l.starts_with("inotify ")).count() as u64)
                    .unwrap_or(0);
            }
        }
    }
    (instances, watches)
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// Measures the host now. `state_dir` is where node layers are written.
pub fn measure(state_dir: &Path) -> Capacity {
    measure_with(state_dir, None)
}

/// [`measure`] for admission, with `nodes_up` nodes running host-wide: the
/// inotify use is bounded from the nodes' budgets instead of counted open
/// file by open file across every process (tens of ms with a few dozen nodes
/// up) when the host's limits are so far above that bound that counting
/// could not change the answer.
pub fn measure_for_admission(state_dir: &Path, nodes_up: u64) -> Capacity {
    measure_with(state_dir, Some(nodes_up))
}

/// Inotify instances and watches a host's own services may hold besides the
/// nodes, in the bound [`measure_for_admission`] uses.
const HOST_INOTIFY_INSTANCES: u64 = 512;
const HOST_INOTIFY_WATCHES: u64 = 65536;

fn measure_with(state_dir: &Path, nodes_up: Option<u64>) -> Capacity {
    let mut limits = Vec::new();

    let available = meminfo("MemAvailable").unwrap_or(0);
    limits.push(Limit {
        name: "memory".into(),
        fits: available.saturating_sub(HOST_MEMORY_RESERVE) / NODE_MEMORY,
        detail: format!(
            "{} available, {} kept for the host, {} MiB per node",
            gib(available),
            gib(HOST_MEMORY_RESERVE),
            NODE_MEMORY >> 20
        ),
        fix: "destroy clusters you no longer need or add memory".into(),
    });

    let pid_max = read_u64("/proc/sys/kernel/pid_max").unwrap_or(32768);
    let threads_max = read_u64("/proc/sys/kernel/threads-max").unwrap_or(pid_max);
    let tasks_now = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().nth(3)?.split('/').nth(1)?.parse().ok())
        .unwrap_or(0u64);
    let task_limit = pid_max.min(threads_max);
    limits.push(Limit {
        name: "pids".into(),
        fits: task_limit.saturating_sub(tasks_now + HOST_TASK_RESERVE) / NODE_TASKS,
        detail: format!(
            "{tasks_now} tasks of {task_limit} (kernel.pid_max {pid_max}, kernel.threads-max {threads_max}), {NODE_TASKS} per node"
        ),
        fix: "sysctl -w kernel.pid_max=4194304 (persist it in /etc/sysctl.d/)".into(),
    });

    let max_instances = read_u64("/proc/sys/fs/inotify/max_user_instances").unwrap_or(128);
    let max_watches = read_u64("/proc/sys/fs/inotify/max_user_watches").unwrap_or(8192);
    let bound = nodes_up.map(|n| {
        (
            n * NODE_INOTIFY_INSTANCES + HOST_INOTIFY_INSTANCES,
            n * NODE_INOTIFY_WATCHES + HOST_INOTIFY_WATCHES,
        )
    });
    let (instances, watches) = match bound {
        Some((i, w)) if i * 4 <= max_instances && w * 4 <= max_watches => (i, w),
        _ => inotify_in_use(),
    };
    limits.push(Limit {
        name: "inotify instances".into(),
        fits: max_instances.saturating_sub(instances) / NODE_INOTIFY_INSTANCES,
        detail: format!(
            "{instances} of fs.inotify.max_user_instances = {max_instances} open on the host (all nodes count against root, which creates their namespaces), {NODE_INOTIFY_INSTANCES} per node"
        ),
        fix: "sysctl -w fs.inotify.max_user_instances=8192 (persist it in /etc/sysctl.d/)".into(),
    });
    limits.push(Limit {
        name: "inotify watches".into(),
        fits: max_watches.saturating_sub(watches) / NODE_INOTIFY_WATCHES,
        detail: format!(
            "{watches} of fs.inotify.max_user_watches = {max_watches} in use, {NODE_INOTIFY_WATCHES} per node"
        ),
        fix: "sysctl -w fs.inotify.max_user_watches=1048576 (persist it in /etc/sysctl.d/)".into(),
    });

    let dir = std::iter::successors(Some(state_dir), |d| d.parent())
        .find(|d| d.exists())
        .unwrap_or(Path::new("/"));
    let free = nix::sys::statvfs::statvfs(dir)
        .map(|s| s.blocks_available() * s.fragment_size())
        .unwrap_or(0);
    limits.push(Limit {
        name: "disk".into(),
        fits: free / NODE_DISK,
        detail: format!(
            "{} free under {}, {} MiB per node",
            gib(free),
            dir.display(),
            NODE_DISK >> 20
        ),
        fix: format!(
            "free space on the file system of {} (expired clusters, unused images, old snapshots)",
            dir.display()
        ),
    });

    let free_ranges = {
        let leases = crate::lease::Leases::host();
        leases
            .lock()
            .map(|l| {
                crate::lease::node_range_capacity()
                    - leases
                        .live(&l)
                        .iter()
                        .map(|l| l.uid_bases.len())
                        .sum::<usize>()
            })
            .unwrap_or(crate::lease::node_range_capacity())
    };
    limits.push(Limit {
        name: "node UID ranges".into(),
        fits: free_ranges as u64,
        detail: format!(
            "{free_ranges} of {} host UID ranges free",
            crate::lease::node_range_capacity()
        ),
        fix: "destroy clusters you no longer need".into(),
    });

    let tightest = limits
        .iter()
        .min_by_key(|l| l.fits)
        .expect("limits are listed");
    Capacity {
        fits: tightest.fits,
        limited_by: tightest.name.clone(),
        limits,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tightest_limit_sets_the_capacity() {
        let c = measure(Path::new("/nonexistent/state"));
        assert_eq!(c.fits, c.limits.iter().map(|l| l.fits).min().unwrap());
        assert_eq!(c.tightest().fits, c.fits);
        assert!(c.limits.iter().any(|l| l.name == "inotify instances"));
    }
}
