//! The host's history and housekeeping as commands: the runs in the run
//! store (list, show, remove, prune), the cached images (list, remove) and
//! `gc`. The run store is the command set's own handle, opened once.

use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use rehearse_scenario::history;
use rehearse_store::{
    now_ms, Aborted, CheckRow, ConvergeDetail, RunFilter, RunRow, RunStore, SharedStore, StepRow,
    StoreError,
};

use crate::{Api, ApiError, ErrorCode};

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RunsRequest {
    /// Only runs with this outcome: running, passed, failed, error, aborted,
    /// converged, budget_exhausted, no_rule_applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Only `scenario`, `converge` or `eval` runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Only runs whose scenario or task name contains this.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Only runs started within this long, e.g. "2h", "7d".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Also list the iteration and proof runs of converge runs.
    pub all: bool,
    /// At most this many, newest first (default 50).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The run's id, as `runs` lists it.
    pub run: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PruneRequest {
    /// How old a finished run must be to go, e.g. "30d" (default: the
    /// host's retention, REHEARSE_RETENTION, else 30 days).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub older_than: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Nothing {}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageRequest {
    /// An image's name or id, as `images` lists it.
    pub image: String,
}

/// Runs, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct RunList {
    pub runs: Vec<RunRow>,
}

/// A run whole: the row, its report (JSON), steps, checks with expected vs
/// actual, a converge run's iterations, and the runs under it.
#[derive(Debug, Clone, Serialize)]
pub struct RunShown {
    pub run: RunRow,
    pub report: Option<serde_json::Value>,
    pub steps: Vec<StepRow>,
    pub checks: Vec<CheckRow>,
    pub converge: Option<ConvergeDetail>,
    pub children: Vec<RunRow>,
}

/// Runs removed (a run and the runs under it), with their folders.
#[derive(Debug, Clone, Serialize)]
pub struct RunsRemoved {
    pub removed: Vec<String>,
    /// The age the prune applied; absent for a removal by id, and for a
    /// prune when retention is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub older_than: Option<String>,
}

/// What `gc` cleaned up.
#[derive(Debug, Clone, Serialize)]
pub struct GcDone {
    #[serde(flatten)]
    pub report: rehearse_sandbox::GcReport,
    /// Runs whose process died, marked aborted with why.
    pub aborted_runs: Vec<Aborted>,
}

/// One cached image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageEntry {
    pub name: String,
    pub id: String,
    pub distro: String,
    pub release: Option<String>,
    pub suite: String,
    pub packages: Vec<String>,
    pub size_bytes: u64,
    pub built_at: u64,
    pub build_secs: f64,
    pub rootfs: std::path::PathBuf,
    pub parent: Option<String>,
    pub origin: Option<String>,
    pub imported: Option<String>,
}

impl From<&rehearse_image::Image> for ImageEntry {
    fn from(i: &rehearse_image::Image) -> Self {
        ImageEntry {
            name: i.name.clone(),
            id: i.id.clone(),
            distro: i.spec.distro.clone(),
            release: i.spec.release().map(str::to_owned),
            suite: i.spec.suite.clone(),
            packages: i.spec.packages.clone(),
            size_bytes: i.size_bytes,
            built_at: i.built_at,
            build_secs: i.build_secs,
            rootfs: i.rootfs(),
            parent: i.parent.clone(),
            origin: i.origin.clone(),
            imported: i.imported.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageList {
    pub images: Vec<ImageEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageRemoved {
    pub removed: String,
    pub name: String,
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NoRun(id) => ApiError::not_found(
                ErrorCode::RunNotFound,
                format!("no run {id} in the run store; `runs` lists them"),
            ),
            StoreError::Referenced { .. } => {
                ApiError::new(ErrorCode::Refused, e.to_string(), false)
            }
            StoreError::Open { .. } | StoreError::Postgres(_) => {
                ApiError::new(ErrorCode::StoreUnavailable, e.to_string(), true)
            }
            _ => ApiError::new(ErrorCode::Internal, e.to_string(), false),
        }
    }
}

impl Api {
    /// The run store the command set was given, opened on first use and kept.
    pub fn store(&self) -> Result<Arc<RunStore>, ApiError> {
        Ok(self.store.get()?)
    }

    /// The run store for a run to record in, or `None` (said in the log)
    /// when it cannot be opened: a run goes on unrecorded rather than not at all.
    pub fn recording_store(&self) -> Option<Arc<RunStore>> {
        recording_store(&self.store)
    }

    pub(crate) fn runs(&self, req: RunsRequest) -> Result<RunList, ApiError> {
        let since_ms = match &req.since {
            Some(text) => Some(now_ms() - crate::duration("since", text)?.as_millis() as i64),
            None => None,
        };
        Ok(RunList {
            runs: self.store()?.runs(&RunFilter {
                kind: req.kind,
                outcome: req.status,
                name: req.name,
                since_ms,
                children: req.all,
                limit: Some(req.limit.unwrap_or(50)),
                ..RunFilter::default()
            })?,
        })
    }

    pub(crate) fn run_show(&self, req: RunRequest) -> Result<RunShown, ApiError> {
        let store = self.store()?;
        let detail = store
            .run(&req.run)?
            .ok_or_else(|| StoreError::NoRun(req.run.clone()))?;
        Ok(RunShown {
            run: detail.run,
            // The report is JSON text in the store: shown as JSON.
            report: detail
                .report
                .as_deref()
                .and_then(|r| serde_json::from_str(r).ok()),
            steps: detail.steps,
            checks: detail.checks,
            converge: detail.converge,
            children: detail.children,
        })
    }

    pub(crate) fn run_remove(&self, req: RunRequest) -> Result<RunsRemoved, ApiError> {
        let deleted = history::remove_run(&self.engine, &*self.store()?, &req.run)?;
        Ok(RunsRemoved {
            removed: deleted.ids,
            older_than: None,
        })
    }

    pub(crate) fn runs_prune(&self, req: PruneRequest) -> Result<RunsRemoved, ApiError> {
        let older_than = match &req.older_than {
            Some(text) => Some(crate::duration("older_than", text)?),
            None => history::retention_from_env()
                .map_err(|e| ApiError::new(ErrorCode::InvalidInput, e, false))?,
        };
        let Some(older_than) = older_than else {
            return Ok(RunsRemoved {
                removed: Vec::new(),
                older_than: None,
            });
        };
        let deleted = history::prune(&self.engine, &*self.store()?, older_than)?;
        Ok(RunsRemoved {
            removed: deleted.ids,
            older_than: Some(humantime::format_duration(older_than).to_string()),
        })
    }

    pub(crate) fn gc(&self) -> Result<GcDone, ApiError> {
        let report = self.engine.gc()?;
        let aborted_runs = self.store()?.abort_dead_runs()?;
        Ok(GcDone {
            report,
            aborted_runs,
        })
    }

    pub(crate) fn images(&self) -> Result<ImageList, ApiError> {
        let images = self.engine.images().list().map_err(image_error)?;
        Ok(ImageList {
            images: images.iter().map(ImageEntry::from).collect(),
        })
    }

    pub(crate) fn image_remove(&self, req: ImageRequest) -> Result<ImageRemoved, ApiError> {
        let images = self.engine.images();
        let found = images
            .find(&req.image)
            .map_err(image_error)?
            .ok_or_else(|| ApiError {
                field: Some("image".into()),
                ..ApiError::not_found(
                    ErrorCode::Image,
                    format!("no cached image \"{}\"; `images` lists them", req.image),
                )
            })?;
        if self
            .engine
            .list()
            .iter()
            .any(|c| c.nodes.iter().any(|n| n.image_id == found.id))
        {
            return Err(image_error(rehearse_image::ImageError::InUse(
                found.name.clone(),
            )));
        }
        images.remove(&found).map_err(image_error)?;
        Ok(ImageRemoved {
            removed: found.id,
            name: found.name,
        })
    }
}

fn image_error(e: rehearse_image::ImageError) -> ApiError {
    ApiError::from(rehearse_sandbox::SandboxError::from(e))
}

/// `store` opened for a run to record in, or `None` (said in the log) when
/// it cannot be: the run goes on unrecorded rather than not at all.
pub fn recording_store(store: &SharedStore) -> Option<Arc<RunStore>> {
    store
        .get()
        .map_err(|e| tracing::warn!(error = %e, "the run will not be in the run store"))
        .ok()
}
