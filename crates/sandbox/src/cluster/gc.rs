//! `gc` and the reaper: clusters nobody can still want.
//!
//! Liveness decides, never a status alone. A cluster is left alone while the
//! process working on it (booting, restoring, destroying) is alive, and while
//! the process it was made for (a run) is alive. It goes once that process is
//! dead, once it expires (a user's cluster), or when it was made before the
//! host rebooted. A cluster to remove is first claimed — marked destroying by
//! this process under the registry lock — so that of several `gc`s, reapers and
//! `down`s exactly one removes it; the others wait or pass.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::host::{now_secs, ProcessId};
use crate::lease::{self, Leases};
use crate::net::{self, Firewall};
use crate::state::{ClusterState, ClusterStatus};
use crate::SandboxError;

use super::{Engine, GcReport, Removed};

/// How often a reaper looks at a cluster that may lose its owner any moment.
const REAP_POLL: Duration = Duration::from_millis(250);
/// The longest a reaper sleeps between looks at a user's cluster.
const REAP_IDLE: Duration = Duration::from_secs(5);
/// The file in a cluster's folder naming its reaper process.
pub(super) const REAPER_FILE: &str = "reaper";
/// How often `gc` and `down` look whether a cluster another process is
/// removing is gone.
const WAIT_POLL: Duration = Duration::from_millis(50);

/// What becomes of a cluster.
#[derive(Debug, PartialEq)]
enum Verdict {
    Keep,
    /// Another live process is removing it.
    BeingRemoved,
    /// A `restore` died with the nodes down: the cluster is the user's again,
    /// its nodes as they are (`ls` shows them; `restore` again brings them back).
    Recover,
    Remove {
        reason: String,
        expired: bool,
    },
}

fn remove(reason: String) -> Verdict {
    Verdict::Remove {
        reason,
        expired: false,
    }
}

fn verdict(state: &ClusterState, now: u64, boot_id: &str) -> Verdict {
    if !state.boot_id.is_empty() && state.boot_id != boot_id {
        return remove("it was made before the host rebooted".into());
    }
    let mut interrupted = false;
    match state.owner {
        Some(worker) if worker.is_alive() => {
            return match state.status {
                ClusterStatus::Destroying => Verdict::BeingRemoved,
                _ => Verdict::Keep,
            }
        }
        Some(worker) => match state.status {
            ClusterStatus::Booting if state.boot_ms.is_none() => {
                return remove(format!(
                    "the process starting it (pid {}) died before it was ready",
                    worker.pid
                ))
            }
            ClusterStatus::Destroying => {
                return remove(format!(
                    "the process removing it (pid {}) died half-way",
                    worker.pid
                ))
            }
            ClusterStatus::Booting => interrupted = true,
            ClusterStatus::Ready => {}
        },
        None if state.status != ClusterStatus::Ready => {
            return remove("it was left half-made".into())
        }
        None => {}
    }
    if let Some(owner) = state.belongs_to {
        if !owner.is_alive() {
            return remove(format!(
                "the process it was made for (pid {}) is gone",
                owner.pid
            ));
        }
    } else if now >= state.expires_at {
        return Verdict::Remove {
            reason: "its time-to-live ran out".into(),
            expired: true,
        };
    }
    if interrupted {
        Verdict::Recover
    } else {
        Verdict::Keep
    }
}

/// The outcome of looking at one cluster under the registry lock.
enum Claim {
    Gone,
    Kept,
    BeingRemoved,
    /// Marked destroying by this process: ours to remove.
    Mine(Removed, bool),
    /// A restore or reboot died half-way; this process now owns the cluster
    /// and finishes it ([`Engine::resume`]).
    Resume,
}

impl Engine {
    /// Removes every cluster nobody can still want (see the module's comment),
    /// and resources of this state directory's clusters that no state accounts
    /// for any more. Returns once every such cluster is gone, those another
    /// process was already removing included. Safe to run from any number of
    /// processes at once, beside any other command.
    pub fn gc(&self) -> Result<GcReport, SandboxError> {
        self.sweep(true)
    }

    /// [`Self::gc`]; `wait`: also for clusters another process is removing.
    pub(super) fn sweep(&self, wait: bool) -> Result<GcReport, SandboxError> {
        let mut report = GcReport::default();
        let mut others = Vec::new();
        let mut mine = Vec::new();
        let mut resume = Vec::new();
        let mut frozen = Vec::new();
        {
            let _lock = self.registry.lock()?;
            let ids = self.registry.ids();
            for id in &ids {
                match self.claim_locked(id)? {
                    Claim::Mine(removed, expired) => mine.push((removed, expired)),
                    Claim::BeingRemoved => others.push(id.clone()),
                    Claim::Resume => resume.push(id.clone()),
                    Claim::Kept if self.cgroups.any_frozen(id) => frozen.push(id.clone()),
                    Claim::Gone | Claim::Kept => {}
                }
            }
            // Leftovers of clusters whose state is gone (a teardown that failed
            // half-way). Clusters of other state directories are theirs.
            let mut known: BTreeSet<String> = ids.into_iter().collect();
            known.extend(Leases::host().held_elsewhere(&self.state_dir)?);
            let mut stray: BTreeSet<String> = BTreeSet::new();
            stray.extend(self.cgroups.cluster_ids());
            // Listing nftables tables runs `nft`: done by `gc`, not by the
            // sweep every `up` starts with (a table alone is found later).
            if wait {
                stray.extend(Firewall::cluster_ids());
            }
            stray.extend(
                net::list_links()
                    .iter()
                    .filter_map(|l| net::cluster_of_iface(l)),
            );
            for id in stray.difference(&known) {
                mine.push((
                    Removed {
                        cluster: id.clone(),
                        reason: "resources of it were left after its state was removed".into(),
                    },
                    false,
                ));
            }
        }
        let results: Vec<Result<(), SandboxError>> = std::thread::scope(|s| {
            let handles: Vec<_> = mine
                .iter()
                .map(|(removed, _)| s.spawn(|| self.teardown(&removed.cluster)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("teardown thread panicked"))
                .collect()
        });
        let mut first_error = None;
        for ((removed, expired), result) in mine.into_iter().zip(results) {
            if let Err(e) = result {
                first_error.get_or_insert(e);
                continue;
            }
            tracing::info!(cluster = %removed.cluster, reason = %removed.reason, "cluster removed");
            self.removed(&removed);
            if expired {
                report.expired.push(removed.cluster.clone());
            } else {
                report.orphaned.push(removed.cluster.clone());
            }
            report.removed.push(removed);
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        std::thread::scope(|s| {
            for id in &resume {
                s.spawn(|| self.resume(id));
            }
        });
        for id in &frozen {
            self.repair_interrupted_snapshot(id)?;
        }
        report.resumed = resume;
        if wait {
            for id in others {
                self.wait_gone(&id)?;
            }
        }
        report.stale_image_builds = self.images.remove_stale_builds()?;
        self.cache
            .stop_if_unused(|| !self.registry.ids().is_empty());
        Ok(report)
    }

    /// Looks at one cluster, holding the registry lock: claims it when it is to
    /// be removed, makes it ready again after an interrupted restore.
    fn claim_locked(&self, id: &str) -> Result<Claim, SandboxError> {
        let mut state = match self.registry.load(id) {
            Ok(state) => state,
            Err(SandboxError::ClusterNotFound(_)) if !self.registry.dir(id).exists() => {
                return Ok(Claim::Gone)
            }
            // A folder without a readable state: nothing can still use it.
            Err(e) => {
                return Ok(Claim::Mine(
                    Removed {
                        cluster: id.to_string(),
                        reason: format!("its state cannot be read ({e})"),
                    },
                    false,
                ))
            }
        };
        match verdict(&state, now_secs(), &lease::boot_id()) {
            Verdict::Keep => Ok(Claim::Kept),
            Verdict::BeingRemoved => Ok(Claim::BeingRemoved),
            Verdict::Recover => {
                // This process finishes what the dead one began (outside
                // the lock): it owns the cluster meanwhile.
                state.owner = Some(ProcessId::current());
                self.registry.save(&state)?;
                Ok(Claim::Resume)
            }
            Verdict::Remove { reason, expired } => {
                state.status = ClusterStatus::Destroying;
                state.owner = Some(ProcessId::current());
                self.registry.save(&state)?;
                Ok(Claim::Mine(
                    Removed {
                        cluster: id.to_string(),
                        reason,
                    },
                    expired,
                ))
            }
        }
    }

    fn claim(&self, id: &str) -> Result<Claim, SandboxError> {
        let _lock = self.registry.lock()?;
        self.claim_locked(id)
    }

    fn removed(&self, removed: &Removed) {
        if let Some(on_removed) = &self.on_removed {
            on_removed(removed);
        }
    }

    /// Waits until a cluster another process is removing is gone; removes it
    /// itself if that process dies first.
    pub(super) fn wait_gone(&self, id: &str) -> Result<(), SandboxError> {
        loop {
            match self.claim(id)? {
                Claim::Gone | Claim::Kept => return Ok(()),
                Claim::Resume => {
                    self.resume(id);
                    return Ok(());
                }
                Claim::BeingRemoved => std::thread::sleep(WAIT_POLL),
                Claim::Mine(removed, _) => {
                    self.teardown(id)?;
                    self.removed(&removed);
                    return Ok(());
                }
            }
        }
    }

    /// The reaper of one cluster: watches it and destroys it as soon as the
    /// process it was made for is dead, the process starting it died, or it
    /// expires. Returns once the cluster is gone, whoever removed it.
    /// Extending the cluster meanwhile is honoured.
    pub fn reap(&self, id: &str) -> Result<(), SandboxError> {
        let boot_id = lease::boot_id();
        // Whoever removes the cluster ends its reaper at once, so that no
        // process of a removed cluster outlives the command that removed it.
        let me = ProcessId::current();
        let registration = self.registry.dir(id).join(REAPER_FILE);
        if std::fs::write(&registration, format!("{} {}\n", me.pid, me.start_time)).is_err() {
            // The folder is gone: so is the cluster.
            return Ok(());
        }
        loop {
            // A look without the lock first: most looks find nothing to do.
            let state = match self.registry.load(id) {
                Ok(state) => state,
                Err(SandboxError::ClusterNotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            let pace = if state.belongs_to.is_some()
                || state.owner.is_some()
                || state.status != ClusterStatus::Ready
            {
                REAP_POLL
            } else {
                Duration::from_secs(state.ttl_left().max(0) as u64).clamp(REAP_POLL, REAP_IDLE)
            };
            if matches!(
                verdict(&state, now_secs(), &boot_id),
                Verdict::Keep | Verdict::BeingRemoved
            ) {
                std::thread::sleep(pace);
                continue;
            }
            match self.claim(id)? {
                Claim::Gone => return Ok(()),
                Claim::Resume => self.resume(id),
                Claim::Kept | Claim::BeingRemoved => std::thread::sleep(pace),
                Claim::Mine(removed, _) => {
                    self.teardown(id)?;
                    tracing::info!(cluster = id, reason = %removed.reason, "cluster reaped");
                    self.removed(&removed);
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(status: ClusterStatus) -> ClusterState {
        ClusterState {
            id: "abc123".into(),
            status,
            created_at: 100,
            expires_at: 1_000,
            owner: None,
            belongs_to: None,
            boot_id: "boot".into(),
            networks: Vec::new(),
            nodes: Vec::new(),
            boot_ms: Some(300),
            source: "test".into(),
            from_pool: false,
        }
    }

    /// A process that is certainly dead: this one, with another start time.
    fn dead() -> ProcessId {
        let me = ProcessId::current();
        ProcessId {
            pid: me.pid,
            start_time: me.start_time + 1,
        }
    }

    fn removed(v: Verdict) -> bool {
        matches!(v, Verdict::Remove { .. })
    }

    #[test]
    fn a_live_owner_keeps_its_cluster_past_the_time_to_live() {
        let mut s = state(ClusterStatus::Ready);
        s.belongs_to = Some(ProcessId::current());
        assert_eq!(verdict(&s, 5_000, "boot"), Verdict::Keep);
        s.belongs_to = Some(dead());
        assert!(removed(verdict(&s, 500, "boot")));
    }

    #[test]
    fn a_users_cluster_lives_until_it_expires() {
        let s = state(ClusterStatus::Ready);
        assert_eq!(verdict(&s, 999, "boot"), Verdict::Keep);
        assert!(matches!(
            verdict(&s, 1_000, "boot"),
            Verdict::Remove { expired: true, .. }
        ));
    }

    #[test]
    fn a_cluster_being_worked_on_is_left_alone_while_the_worker_lives() {
        for status in [ClusterStatus::Booting, ClusterStatus::Destroying] {
            let mut s = state(status);
            s.boot_ms = None;
            s.belongs_to = Some(dead());
            s.owner = Some(ProcessId::current());
            assert!(!removed(verdict(&s, 5_000, "boot")), "{status:?}");
            s.owner = Some(dead());
            assert!(removed(verdict(&s, 0, "boot")), "{status:?}");
        }
    }

    #[test]
    fn an_interrupted_restore_gives_the_cluster_back() {
        let mut s = state(ClusterStatus::Booting);
        s.owner = Some(dead());
        assert_eq!(verdict(&s, 0, "boot"), Verdict::Recover);
        // ... unless its run is gone too.
        s.belongs_to = Some(dead());
        assert!(removed(verdict(&s, 0, "boot")));
    }

    #[test]
    fn clusters_of_an_earlier_boot_are_gone() {
        let mut s = state(ClusterStatus::Ready);
        s.belongs_to = Some(ProcessId::current());
        assert!(removed(verdict(&s, 0, "another boot")));
    }
}
