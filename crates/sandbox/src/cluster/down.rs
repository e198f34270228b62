//! `down`: removing every trace of a cluster.

use std::time::Duration;

use crate::host::ProcessId;
use crate::net::{self, Firewall};
use crate::state::ClusterStatus;
use crate::SandboxError;

use super::Engine;

impl Engine {
    /// Destroys a cluster. When another process is removing it already, waits
    /// until it is gone.
    pub fn down(&self, id: &str) -> Result<(), SandboxError> {
        {
            let _lock = self.registry.lock()?;
            let mut state = self.registry.load(id)?;
            let me = ProcessId::current();
            if state.status == ClusterStatus::Destroying
                && state.owner.is_some_and(|o| o != me && o.is_alive())
            {
                drop(_lock);
                return self.wait_gone(id);
            }
            state.status = ClusterStatus::Destroying;
            state.owner = Some(me);
            self.registry.save(&state)?;
        }
        self.teardown(id)
    }

    /// Removes every trace of a cluster, from its id alone: processes, mounts,
    /// interfaces, firewall, cgroups, files. Goes on past failures and reports
    /// the first.
    pub(super) fn teardown(&self, id: &str) -> Result<(), SandboxError> {
        let dir = self.registry.dir(id);
        let mut first_error: Option<SandboxError> = None;
        let mut keep = |r: Result<(), SandboxError>| {
            if let Err(e) = r {
                tracing::warn!(cluster = id, error = %e, "teardown step failed");
                first_error.get_or_insert(e);
            }
        };
        let t0 = std::time::Instant::now();
        let ms = || t0.elapsed().as_millis() as u64;
        end_reaper(&dir);
        tracing::debug!(ms = ms(), "reaper ended");
        keep(self.cgroups.kill_cluster(id, Duration::from_secs(10)));
        tracing::debug!(ms = ms(), "processes killed");
        for backend in &self.backends {
            keep(backend.teardown(id, &dir));
        }
        tracing::debug!(ms = ms(), "nodes torn down");
        keep(net::delete_cluster_links(id));
        keep(Firewall::remove(id));
        tracing::debug!(ms = ms(), "links and firewall removed");
        keep(self.cgroups.remove_cluster(id));
        remove_node_layers(&dir);
        keep(match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(SandboxError::io("removing", &dir, e))
            }
            _ => Ok(()),
        });
        // Last: the cluster's subnets and UID ranges are free once nothing of it is left.
        keep(crate::lease::Leases::host().release(id, &self.state_dir));
        tracing::debug!(ms = ms(), "files removed, leases released");
        self.cache
            .stop_if_unused(|| !self.registry.ids().is_empty());
        tracing::debug!(ms = ms(), "torn down");
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Removes the nodes' folders (their layers hold what each node wrote:
/// tens of thousands of files after a few package installs) side by side,
/// one thread per node; what fails is left to the removal of the whole
/// cluster folder, which reports it.
fn remove_node_layers(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir.join("nodes")) else {
        return;
    };
    let nodes: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    std::thread::scope(|s| {
        for node in &nodes {
            s.spawn(move || {
                let _ = std::fs::remove_dir_all(node);
            });
        }
    });
}

/// Ends the reaper watching the cluster in `dir`, unless it is this process
/// (a reaper removing its own cluster).
fn end_reaper(dir: &std::path::Path) {
    let Ok(text) = std::fs::read_to_string(dir.join(super::gc::REAPER_FILE)) else {
        return;
    };
    let mut fields = text.split_whitespace().map(str::parse::<u64>);
    let (Some(Ok(pid)), Some(Ok(start_time))) = (fields.next(), fields.next()) else {
        return;
    };
    let reaper = ProcessId {
        pid: pid as i32,
        start_time,
    };
    if reaper == ProcessId::current() {
        return;
    }
    reaper.terminate();
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while reaper.is_alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}
