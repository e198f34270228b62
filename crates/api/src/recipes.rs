//! `recipe_search`, `recipe_show`, `recipe_prove`: the recipe catalogue for
//! agents, so they adapt proven code instead of writing it from scratch.

use std::collections::BTreeMap;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use rehearse_recipes::{prove, search, Catalogue, RecipeError};
use rehearse_scenario::Event;

use crate::error::ErrorCode;
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
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipeShowRequest {
    /// The recipe's name, as recipe_search returns it.
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecipeProveRequest {
    /// The recipe's name.
    pub name: String,
    /// Variables to set instead of their defaults, NAME: value.
    #[serde(default)]
    pub set: BTreeMap<String, String>,
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

fn catalogue() -> Result<Catalogue, ApiError> {
    Catalogue::load(&Catalogue::default_dir()).map_err(recipe_error)
}

impl Api {
    pub(crate) fn recipe_search(&self, req: RecipeSearchRequest) -> Result<RecipeHits, ApiError> {
        let catalogue = catalogue()?;
        let hits = search::search(&catalogue, &req.query, req.limit.unwrap_or(5).max(1));
        Ok(RecipeHits { hits })
    }

    pub(crate) fn recipe_show(&self, req: RecipeShowRequest) -> Result<RecipeDetail, ApiError> {
        let catalogue = catalogue()?;
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

    pub(crate) fn recipe_prove(
        self: &Arc<Self>,
        req: RecipeProveRequest,
        progress: Option<ProgressSink>,
    ) -> Result<JobStarted, ApiError> {
        let catalogue = catalogue()?;
        let recipe = catalogue.get(&req.name).map_err(recipe_error)?.clone();
        let set: Vec<(String, String)> = req.set.into_iter().collect();
        // Unknown variables are refused now, not in the background job.
        prove::values(&recipe, &set).map_err(recipe_error)?;
        Ok(
            self.spawn_job("recipe_prove", None, progress, move |api, job, notes| {
                let note = |line: String| notes.note(line);
                let events = |e: Event<'_>| {
                    if let Event::Phase(p) = e {
                        note(format!("{}: {p}", recipe.name()))
                    }
                };
                match prove::prove(&api.engine, api.recording_store(), &recipe, &set, &events) {
                    Ok(proof) => {
                        note(format!(
                            "{} {} {} (run {})",
                            proof.record.recipe,
                            proof.record.version,
                            proof.record.outcome,
                            proof.record.run_id
                        ));
                        for failure in prove::failures(&proof.report) {
                            note(failure);
                        }
                        job.finish(|end| {
                            end.exit_code = Some(proof.report.exit_code());
                            end.run_id = Some(proof.record.run_id.clone());
                            end.outcome = Some(proof.record.outcome.clone());
                            end.report = serde_json::to_value(&proof).ok();
                        });
                    }
                    Err(e) => {
                        let e = recipe_error(e);
                        note(e.message.clone());
                        job.finish(|end| {
                            end.exit_code = Some(2);
                            end.outcome = Some("error".into());
                            end.error = Some(e);
                        });
                    }
                }
            }),
        )
    }
}
