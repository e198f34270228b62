//! `recipe_search`, `recipe_show`, `recipe_prove`: the recipe catalogue for
//! agents, so they adapt proven code instead of writing it from scratch.

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use rehearse_recipes::prove::Proof;
use rehearse_recipes::{prove, search, Catalogue, RecipeError};
use rehearse_scenario::Event;

use crate::error::ErrorCode;
use crate::jobs::Notes;
use crate::types::JobStarted;
use crate::{Api, ApiError, ProgressSink};

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipeSearchRequest {
    /// Words describing what you want to build, e.g. "postgres streaming replica" or "load balancer nginx".
    pub query: String,
    /// At most this many recipes, best first. Default 5.
    #[serde(default)]
    pub limit: Option<usize>,
    /// The catalogue folder on the server. Default: the server's catalogue.
    #[serde(default)]
    pub catalogue: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipeShowRequest {
    /// The recipe's name, as recipe_search returns it.
    pub name: String,
    /// The catalogue folder on the server. Default: the server's catalogue.
    #[serde(default)]
    pub catalogue: Option<String>,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipeProveRequest {
    /// The recipe's name.
    pub name: String,
    /// Variables to set instead of their defaults, NAME: value.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    /// Prove on these images instead of the platforms the recipe lists.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// The catalogue folder on the server. Default: the server's catalogue.
    #[serde(default)]
    pub catalogue: Option<String>,
}

/// The answer of `recipe_search`: hits, best first.
#[derive(Debug, Clone, Serialize)]
pub struct RecipeHits {
    pub hits: Vec<search::Hit>,
}

/// The answer of `recipe_show`: one recipe with its files and last proof.
#[derive(Debug, Clone, Serialize)]
pub struct RecipeDetail {
    pub recipe: rehearse_recipes::Metadata,
    pub hash: String,
    pub dir: std::path::PathBuf,
    pub readme: String,
    pub files: Vec<RecipeFile>,
    pub last_proof: Option<prove::ProofRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecipeFile {
    pub path: String,
    /// The file's text; omitted for files that are not UTF-8 or over 64 KiB.
    pub content: Option<String>,
}

const SHOWN_FILE_LIMIT: u64 = 64 * 1024;

fn recipe_error(e: RecipeError) -> ApiError {
    match e {
        RecipeError::NotFound { .. } => {
            ApiError::not_found(ErrorCode::RecipeNotFound, e.to_string())
        }
        RecipeError::UnknownVariable { .. } => ApiError::invalid("set", e.to_string()),
        _ => ApiError::new(ErrorCode::RecipeError, e.to_string(), false),
    }
}

/// The catalogue a request names (`catalogue`), else the server's.
fn catalogue(dir: Option<&str>) -> Result<Catalogue, ApiError> {
    match dir {
        Some(dir) => Catalogue::load(std::path::Path::new(dir))
            .map_err(|e| ApiError::invalid("catalogue", e.to_string())),
        None => Catalogue::load(&Catalogue::default_dir()).map_err(recipe_error),
    }
}

/// A `recipe_prove` request read and checked: the recipe, its variables and
/// the platforms it is proven on.
pub(crate) struct ProofRun {
    recipe: rehearse_recipes::Recipe,
    set: Vec<(String, String)>,
    platforms: Vec<String>,
}

impl Api {
    pub(crate) fn recipe_search(&self, req: RecipeSearchRequest) -> Result<RecipeHits, ApiError> {
        let catalogue = catalogue(req.catalogue.as_deref())?;
        let hits = search::search(&catalogue, &req.query, req.limit.unwrap_or(5).max(1));
        Ok(RecipeHits { hits })
    }

    pub(crate) fn recipe_show(&self, req: RecipeShowRequest) -> Result<RecipeDetail, ApiError> {
        let catalogue = catalogue(req.catalogue.as_deref())?;
        let recipe = catalogue.get(&req.name).map_err(recipe_error)?;
        let files: Vec<RecipeFile> = recipe
            .files
            .iter()
            .map(|rel| {
                let path = recipe.dir.join(rel);
                let small = std::fs::metadata(&path)
                    .map(|m| m.len() <= SHOWN_FILE_LIMIT)
                    .unwrap_or(false);
                RecipeFile {
                    path: rel.display().to_string(),
                    content: small.then(|| std::fs::read_to_string(&path).ok()).flatten(),
                }
            })
            .collect();
        let last_proof = prove::history(self.engine.history_dir(), Some(&req.name)).pop();
        Ok(RecipeDetail {
            recipe: recipe.meta.clone(),
            hash: recipe.hash.clone(),
            dir: recipe.dir.clone(),
            readme: recipe.readme.clone(),
            files,
            last_proof,
        })
    }

    /// Reads the recipe and its variables; unknown variables and platforms
    /// no image answers to are refused here, before any cluster starts.
    pub(crate) fn prepare_proof(&self, req: RecipeProveRequest) -> Result<ProofRun, ApiError> {
        let catalogue = catalogue(req.catalogue.as_deref())?;
        let recipe = catalogue.get(&req.name).map_err(recipe_error)?.clone();
        let set: Vec<(String, String)> = req.set.into_iter().collect();
        prove::values(&recipe, &set).map_err(recipe_error)?;
        let platforms = if req.platforms.is_empty() {
            recipe.meta.platforms.clone()
        } else {
            req.platforms
        };
        self.known_platforms(&platforms)?;
        Ok(ProofRun {
            recipe,
            set,
            platforms,
        })
    }

    /// Proves a prepared recipe, recording the proof; progress to `notes`.
    pub(crate) fn recipe_prove(&self, run: ProofRun, notes: &Notes) -> Result<Proof, ApiError> {
        let name = run.recipe.name().to_string();
        let events = |e: Event<'_>| {
            if let Event::Phase(p) = e {
                notes.phase(format!("{name}: {p}"))
            }
        };
        let proof = prove::prove_on(
            &self.engine,
            self.recording_store(),
            &run.recipe,
            &run.set,
            &run.platforms,
            &events,
        )
        .map_err(recipe_error)?;
        for p in &proof.platforms {
            notes.note(format!(
                "{} {name} {} on {}: {} in {} ms",
                if p.outcome == "passed" { "✔" } else { "✘" },
                proof.record.version,
                p.platform,
                p.outcome,
                p.total_ms
            ));
        }
        Ok(proof)
    }

    /// A prepared proof as a background job.
    pub(crate) fn start_proof(
        self: &Arc<Self>,
        run: ProofRun,
        progress: Option<ProgressSink>,
    ) -> JobStarted {
        self.spawn_job(
            "recipe_prove",
            None,
            progress,
            move |api, job, notes| match api.recipe_prove(run, notes) {
                Ok(proof) => {
                    notes.note(format!(
                        "{} {} {} (run {})",
                        proof.record.recipe,
                        proof.record.version,
                        proof.record.outcome,
                        proof.record.run_id
                    ));
                    for failure in prove::failures(&proof.report) {
                        notes.note(failure);
                    }
                    job.finish(|end| {
                        end.exit_code = Some(proof.report.exit_code());
                        end.run_id = Some(proof.record.run_id.clone());
                        end.outcome = Some(proof.record.outcome.clone());
                        end.report = serde_json::to_value(&proof).ok();
                    });
                }
                Err(e) => {
                    notes.note(e.message.clone());
                    job.finish(|end| {
                        end.exit_code = Some(2);
                        end.outcome = Some("error".into());
                        end.error = Some(e);
                    });
                }
            },
        )
    }
}
