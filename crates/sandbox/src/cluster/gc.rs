//! `gc` and the reaper: expired and orphaned clusters.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::host::now_secs;
use crate::net::{self, Firewall};
use crate::state::ClusterStatus;
use crate::SandboxError;

use super::{Engine, GcReport};

impl Engine {
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
        let mut known: BTreeSet<String> = ids.into_iter().collect();
        // Clusters of other state directories are theirs to collect.
        known.extend(crate::lease::Leases::host().held_elsewhere(&self.state_dir)?);
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
}
