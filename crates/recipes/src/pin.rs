//! Using a recipe in a project and keeping it honest: `use` copies it with
//! variables filled and pins name, version and content hash in the project's
//! `recipes.lock`; `verify` reports drift from the pin and re-proves the copy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use rehearse_sandbox::Engine;
use rehearse_scenario::Event;
use rehearse_store::RunStore;

use crate::prove::{self, ProofRecord};
use crate::{content_hash, render, Catalogue, Recipe, RecipeError};

/// The lock file's name, in the project's root folder.
pub const LOCK_FILE: &str = "recipes.lock";

/// One recipe a project uses.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pin {
    pub name: String,
    pub version: String,
    /// The catalogue recipe's content hash when it was copied.
    pub hash: String,
    /// Where the copy is, relative to the project folder.
    pub path: PathBuf,
    /// The content hash of the copy as written (variables filled).
    pub copy_hash: String,
    pub vars: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub recipes: Vec<Pin>,
}

impl LockFile {
    pub fn read(project: &Path) -> Result<LockFile, RecipeError> {
        let path = project.join(LOCK_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_yaml::from_str(&text).map_err(|e| RecipeError::Lock {
                path: path.clone(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LockFile::default()),
            Err(source) => Err(RecipeError::Io { path, source }),
        }
    }

    pub fn write(&self, project: &Path) -> Result<(), RecipeError> {
        let path = project.join(LOCK_FILE);
        let text = format!(
            "# Recipes this project uses, pinned by `rehearse recipe use`.\n# `rehearse recipe verify` reports drift and re-proves them.\n{}",
            serde_yaml::to_string(self).unwrap_or_default()
        );
        std::fs::write(&path, text).map_err(|source| RecipeError::Io { path, source })
    }
}

/// `dest` relative to `project` when it is inside it.
fn relative(project: &Path, dest: &Path) -> PathBuf {
    let abs = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let (project, dest) = (abs(project), abs(dest));
    dest.strip_prefix(&project)
        .map(Path::to_path_buf)
        .unwrap_or(dest)
}

/// Copies `recipe` to `dest` with its variables filled (`set` overrides
/// defaults) and pins it in `project`'s lock file, replacing an older pin of
/// the same copy.
pub fn use_recipe(
    recipe: &Recipe,
    project: &Path,
    dest: &Path,
    set: &[(String, String)],
) -> Result<Pin, RecipeError> {
    let vars = prove::values(recipe, set)?;
    if dest.exists()
        && std::fs::read_dir(dest)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        return Err(RecipeError::DestinationExists {
            path: dest.to_path_buf(),
        });
    }
    let mut lock = LockFile::read(project)?;
    render::render_into(&recipe.dir, dest, &vars)?;
    let pin = Pin {
        name: recipe.meta.name.clone(),
        version: recipe.meta.version.clone(),
        hash: recipe.hash.clone(),
        path: relative(project, dest),
        copy_hash: content_hash(dest)?,
        vars,
    };
    lock.recipes.retain(|p| p.path != pin.path);
    lock.recipes.push(pin.clone());
    lock.write(project)?;
    Ok(pin)
}

/// How a pinned recipe differs from what it was when pinned.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// The catalogue no longer has the recipe.
    RemovedFromCatalogue,
    /// The catalogue's recipe has another version now.
    VersionChanged { pinned: String, catalogue: String },
    /// The catalogue's recipe changed without a new version.
    ContentChanged { pinned: String, catalogue: String },
    /// The project's copy was edited since it was pinned.
    CopyEdited { pinned: String, now: String },
    /// The project's copy is gone.
    CopyMissing { path: PathBuf },
    /// The copy no longer passes its proof on a fresh cluster.
    ProofFailed {
        run_id: String,
        failures: Vec<String>,
    },
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Drift::RemovedFromCatalogue => write!(f, "the catalogue no longer has this recipe"),
            Drift::VersionChanged { pinned, catalogue } => {
                write!(f, "version changed: pinned {pinned}, catalogue {catalogue}")
            }
            Drift::ContentChanged { pinned, catalogue } => write!(
                f,
                "content changed without a new version: pinned {pinned}, catalogue {catalogue}"
            ),
            Drift::CopyEdited { pinned, now } => {
                write!(
                    f,
                    "the project's copy was edited: pinned {pinned}, now {now}"
                )
            }
            Drift::CopyMissing { path } => write!(f, "the copy {} is missing", path.display()),
            Drift::ProofFailed { run_id, failures } => write!(
                f,
                "proof failed (run {run_id}): {}",
                if failures.is_empty() {
                    "see the run's report".to_string()
                } else {
                    failures.join("; ")
                }
            ),
        }
    }
}

/// What `verify` found for one pin.
#[derive(Debug, Clone, Serialize)]
pub struct PinReport {
    pub name: String,
    pub path: PathBuf,
    pub pinned_version: String,
    pub catalogue_version: Option<String>,
    pub drift: Vec<Drift>,
    pub proof: Option<ProofRecord>,
}

impl PinReport {
    pub fn ok(&self) -> bool {
        self.drift.is_empty()
    }
}

/// Checks every pin of `project` against the catalogue and its copy; with
/// `engine`, runs each copy's proof on a fresh cluster (recorded in `store`). `each` sees every
/// report as it is done.
pub fn verify(
    engine: Option<&Engine>,
    store: Option<Arc<RunStore>>,
    catalogue: &Catalogue,
    project: &Path,
    events: &(dyn Fn(Event<'_>) + Sync),
    each: &dyn Fn(&PinReport),
) -> Result<Vec<PinReport>, RecipeError> {
    let lock = LockFile::read(project)?;
    if lock.recipes.is_empty() {
        return Err(RecipeError::Lock {
            path: project.join(LOCK_FILE),
            message: "no pinned recipes (missing or empty lock file)".into(),
        });
    }
    let mut reports = Vec::new();
    for pin in &lock.recipes {
        let mut report = PinReport {
            name: pin.name.clone(),
            path: pin.path.clone(),
            pinned_version: pin.version.clone(),
            catalogue_version: None,
            drift: Vec::new(),
            proof: None,
        };
        match catalogue.get(&pin.name) {
            Err(_) => report.drift.push(Drift::RemovedFromCatalogue),
            Ok(current) => {
                report.catalogue_version = Some(current.meta.version.clone());
                if current.meta.version != pin.version {
                    report.drift.push(Drift::VersionChanged {
                        pinned: pin.version.clone(),
                        catalogue: current.meta.version.clone(),
                    });
                } else if current.hash != pin.hash {
                    report.drift.push(Drift::ContentChanged {
                        pinned: pin.hash.clone(),
                        catalogue: current.hash.clone(),
                    });
                }
            }
        }
        let copy = project.join(&pin.path);
        if !copy.is_dir() {
            report.drift.push(Drift::CopyMissing { path: copy.clone() });
        } else {
            let now = content_hash(&copy)?;
            if now != pin.copy_hash {
                report.drift.push(Drift::CopyEdited {
                    pinned: pin.copy_hash.clone(),
                    now,
                });
            }
            if let Some(engine) = engine {
                // The copy is the recipe as the project runs it: load its
                // metadata from the copy, and record the pinned identity.
                let mut recipe = Recipe::load_copy(&copy)?;
                recipe.meta.version = pin.version.clone();
                recipe.hash = pin.hash.clone();
                let proof = prove::prove_copy(engine, store.clone(), &recipe, &copy, events)?;
                if !proof.passed() {
                    report.drift.push(Drift::ProofFailed {
                        run_id: proof.record.run_id.clone(),
                        failures: prove::failures(&proof.report),
                    });
                }
                report.proof = Some(proof.record);
            }
        }
        each(&report);
        reports.push(report);
    }
    Ok(reports)
}
