//! Run history: removing runs and retention. A run is removed with its
//! folder; a run still running, a run that is part of a converge run, and a
//! run whose cluster is still up (kept for inspection) are never removed.

use std::path::Path;
use std::time::Duration;

use rehearse_sandbox::Engine;
use rehearse_store::{Deleted, RunStore, StoreError};

/// The environment variable holding the retention: how long finished runs
/// are kept (`30d`, `12h`; `0` or `off` keeps them forever).
pub const RETENTION_ENV: &str = "REHEARSE_RETENTION";

/// The retention when none is set.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The retention the environment sets; `None` when runs are kept forever.
pub fn retention_from_env() -> Result<Option<Duration>, String> {
    match std::env::var(RETENTION_ENV) {
        Err(_) => Ok(Some(DEFAULT_RETENTION)),
        Ok(v) if v.trim().is_empty() => Ok(Some(DEFAULT_RETENTION)),
        Ok(v) if matches!(v.trim(), "0" | "off" | "never") => Ok(None),
        Ok(v) => humantime::parse_duration(v.trim())
            .map(Some)
            .map_err(|e| format!("{RETENTION_ENV}={v}: {e} (examples: 30d, 12h, off)")),
    }
}

fn live_clusters(engine: &Engine) -> Vec<String> {
    engine.list().into_iter().map(|c| c.id).collect()
}

fn remove_folders(deleted: &Deleted) {
    for report in &deleted.report_paths {
        // <state>/runs/<id>/report.json or <state>/converge/<id>/report.json
        if let Some(dir) = Path::new(report).parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Removes one run (with the runs under it) and their folders.
pub fn remove_run(engine: &Engine, store: &RunStore, id: &str) -> Result<Deleted, StoreError> {
    if let Some(run) = store.run_row(id)? {
        let live = live_clusters(engine);
        if let Some(cluster) = run.cluster_id.filter(|c| live.contains(c)) {
            return Err(StoreError::Referenced {
                id: id.to_owned(),
                why: format!("its cluster {cluster} is still up; destroy it first"),
            });
        }
    }
    let deleted = store.delete_run(id)?;
    remove_folders(&deleted);
    Ok(deleted)
}

/// Removes finished runs started more than `older_than` ago, sparing what is
/// still referenced, with their folders.
pub fn prune(
    engine: &Engine,
    store: &RunStore,
    older_than: Duration,
) -> Result<Deleted, StoreError> {
    let before = rehearse_store::now_ms() - older_than.as_millis() as i64;
    let deleted = store.prune(before, &live_clusters(engine))?;
    remove_folders(&deleted);
    Ok(deleted)
}
