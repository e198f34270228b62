//! Proving a recipe: its scenario on a fresh cluster, with the result recorded
//! beside the recipe's version and content hash.
//!
//! Proof records are JSON lines in `<state>/recipes/proofs.jsonl`, written
//! only through [`record`] and read only through [`history`], so where they
//! are kept can change without changing a caller.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use rehearse_checks::Status;
use rehearse_sandbox::Engine;
use rehearse_scenario::{Event, Outcome, RunOptions, RunReport};
use rehearse_spec::scenario::Scenario;
use rehearse_store::RunStore;

use crate::{render, Recipe, RecipeError};

/// One proof of one recipe.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProofRecord {
    pub recipe: String,
    pub version: String,
    /// The content hash of the recipe that was proven.
    pub hash: String,
    /// `passed`, `failed` or `error`.
    pub outcome: String,
    /// RFC 3339, UTC, seconds.
    pub date: String,
    pub run_id: String,
    /// The folder that was run: the catalogue's recipe or a project's copy.
    pub source: PathBuf,
    /// The image this proof ran on; absent on the record of a whole proof
    /// over several platforms (written after the records of its platforms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

/// One platform of a proof.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PlatformProof {
    pub platform: String,
    /// `passed`, `failed` or `error`.
    pub outcome: String,
    pub run_id: String,
    /// The cluster it ran on (destroyed when the proof ended).
    pub cluster: Option<String>,
    pub total_ms: u64,
    /// A line per failed step or check (empty when passed).
    pub failures: Vec<String>,
}

/// A finished proof: the record, the result per platform, and a scenario
/// run's report (the first platform that did not pass, else the first one).
#[derive(Debug, Clone, Serialize)]
pub struct Proof {
    pub record: ProofRecord,
    pub platforms: Vec<PlatformProof>,
    pub report: RunReport,
}

impl Proof {
    /// Passed on every platform.
    pub fn passed(&self) -> bool {
        self.record.outcome == "passed"
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Failed => "failed",
        Outcome::Error => "error",
    }
}

fn proofs_file(state_dir: &Path) -> PathBuf {
    state_dir.join("recipes").join("proofs.jsonl")
}

/// Appends one proof record.
pub fn record(state_dir: &Path, proof: &ProofRecord) -> Result<(), RecipeError> {
    let path = proofs_file(state_dir);
    let io = |source| RecipeError::Io {
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let mut line = serde_json::to_string(proof).unwrap_or_default();
    line.push('\n');
    // One write of one line with O_APPEND: concurrent proofs never interleave.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| f.write_all(line.as_bytes()))
        .map_err(io)
}

/// Every proof of `recipe` (or of all recipes), oldest first. Lines that do
/// not parse are skipped with a warning.
pub fn history(state_dir: &Path, recipe: Option<&str>) -> Vec<ProofRecord> {
    let Ok(text) = std::fs::read_to_string(proofs_file(state_dir)) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| match serde_json::from_str::<ProofRecord>(l) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(error = %e, "skipping a malformed proof record");
                None
            }
        })
        .filter(|p| recipe.is_none_or(|r| p.recipe == r))
        .collect()
}

/// The variables' defaults, overridden by `set` (`NAME=VALUE` pairs).
pub fn values(
    recipe: &Recipe,
    set: &[(String, String)],
) -> Result<BTreeMap<String, String>, RecipeError> {
    let mut values: BTreeMap<String, String> = recipe
        .meta
        .variables
        .iter()
        .map(|v| (v.name.clone(), v.default.clone()))
        .collect();
    for (name, value) in set {
        if !values.contains_key(name) {
            return Err(RecipeError::UnknownVariable {
                recipe: recipe.meta.name.clone(),
                name: name.clone(),
                known: recipe
                    .meta
                    .variables
                    .iter()
                    .map(|v| v.name.clone())
                    .collect(),
            });
        }
        values.insert(name.clone(), value.clone());
    }
    Ok(values)
}

/// Removes a folder however the scope is left.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Proves a catalogue recipe with its defaults (overridden by `set`): renders
/// it, runs its scenario on a fresh cluster, records the proof.
/// The proof's scenario runs are recorded in `store` (nothing without one).
pub fn prove(
    engine: &Engine,
    store: Option<Arc<RunStore>>,
    recipe: &Recipe,
    set: &[(String, String)],
    events: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Proof, RecipeError> {
    prove_on(engine, store, recipe, set, &recipe.meta.platforms, events)
}

/// Like [`prove`], on `platforms` (images) instead of the ones the recipe lists.
pub fn prove_on(
    engine: &Engine,
    store: Option<Arc<RunStore>>,
    recipe: &Recipe,
    set: &[(String, String)],
    platforms: &[String],
    events: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Proof, RecipeError> {
    let values = values(recipe, set)?;
    let work = engine
        .state_dir()
        .join("recipes")
        .join("work")
        .join(format!(
            "{}-{:08x}",
            recipe.meta.name,
            rand::random::<u32>()
        ));
    let _cleanup = TempDir(work.clone());
    render::render_into(&recipe.dir, &work, &values)?;
    run_proof(engine, store, recipe, &work, &recipe.dir, platforms, events)
}

/// Proves a rendered copy of `recipe` in `dir` (a project's copy) as it is.
pub fn prove_copy(
    engine: &Engine,
    store: Option<Arc<RunStore>>,
    recipe: &Recipe,
    dir: &Path,
    events: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Proof, RecipeError> {
    run_proof(
        engine,
        store,
        recipe,
        dir,
        dir,
        &recipe.meta.platforms,
        events,
    )
}

fn run_proof(
    engine: &Engine,
    store: Option<Arc<RunStore>>,
    recipe: &Recipe,
    run_dir: &Path,
    source: &Path,
    platforms: &[String],
    events: &(dyn Fn(Event<'_>) + Sync),
) -> Result<Proof, RecipeError> {
    let platforms = if platforms.is_empty() {
        &recipe.meta.platforms[..]
    } else {
        platforms
    };
    let scenario =
        Scenario::from_path(&run_dir.join(&recipe.meta.prove.scenario)).map_err(|source| {
            RecipeError::Scenario {
                recipe: recipe.meta.name.clone(),
                source,
            }
        })?;
    let opts = RunOptions {
        reboot: recipe.meta.prove.reboot,
        store,
        ..RunOptions::default()
    };
    let record_of = |outcome: Outcome, run_id: &str, platform: Option<&str>| ProofRecord {
        recipe: recipe.meta.name.clone(),
        version: recipe.meta.version.clone(),
        hash: recipe.hash.clone(),
        outcome: outcome_name(outcome).into(),
        date: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        run_id: run_id.to_string(),
        source: source.to_path_buf(),
        platform: platform.map(str::to_string),
    };
    let platform_proof = |platform: &str, report: &RunReport| PlatformProof {
        platform: platform.to_string(),
        outcome: outcome_name(report.outcome).into(),
        run_id: report.run_id.clone(),
        cluster: report.cluster.clone(),
        total_ms: report.timings.total_ms,
        failures: failures(report),
    };
    if let [platform] = platforms {
        let report = rehearse_scenario::run(engine, &scenario.on_platform(platform), &opts, events);
        let record_ = record_of(report.outcome, &report.run_id, Some(platform));
        record(engine.history_dir(), &record_)?;
        return Ok(Proof {
            record: record_,
            platforms: vec![platform_proof(platform, &report)],
            report,
        });
    }
    // Several platforms: a matrix run, side by side as the host allows.
    let matrix =
        rehearse_scenario::run_matrix(engine, &scenario, platforms, None, &opts, &|_, e| events(e));
    for p in &matrix.platforms {
        record(
            engine.history_dir(),
            &record_of(p.report.outcome, &p.report.run_id, Some(&p.platform)),
        )?;
    }
    let record_ = record_of(matrix.outcome, &matrix.run_id, None);
    record(engine.history_dir(), &record_)?;
    let platforms: Vec<PlatformProof> = matrix
        .platforms
        .iter()
        .map(|p| platform_proof(&p.platform, &p.report))
        .collect();
    let report = matrix
        .platforms
        .iter()
        .find(|p| p.report.outcome != Outcome::Passed)
        .or(matrix.platforms.first())
        .map(|p| p.report.clone())
        .ok_or_else(|| RecipeError::Metadata {
            file: recipe.dir.join("recipe.yaml"),
            line: 0,
            message: "no platforms to prove on".into(),
            hint: "list them, e.g. platforms: [debian-12, ubuntu-24.04]".into(),
        })?;
    Ok(Proof {
        record: record_,
        platforms,
        report,
    })
}

/// One line per failed step or check of a run, for drift reports.
pub fn failures(report: &RunReport) -> Vec<String> {
    let mut out: Vec<String> = report
        .steps
        .iter()
        .filter(|s| !s.ok)
        .map(|s| match &s.error {
            Some(e) => format!("step {}: {e}", s.name),
            None => format!("step {} failed", s.name),
        })
        .collect();
    out.extend(
        report
            .all_checks()
            .into_iter()
            .filter(|c| c.status == Status::Failed)
            .map(|c| format!("check {} on {}: {}", c.name, c.node, c.message)),
    );
    if let Some(e) = &report.error {
        out.push(e.clone());
    }
    out
}
