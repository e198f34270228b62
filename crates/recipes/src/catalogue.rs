//! The catalogue: a folder of recipe folders, loaded and validated whole.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::meta::Metadata;
use crate::render;
use crate::RecipeError;

/// One recipe of the catalogue.
#[derive(Debug, Clone, Serialize)]
pub struct Recipe {
    pub meta: Metadata,
    pub dir: PathBuf,
    pub readme: String,
    /// `sha256:` of every file's relative path and bytes, in path order.
    pub hash: String,
    /// The files of the recipe, relative to its folder, sorted.
    pub files: Vec<PathBuf>,
}

impl Recipe {
    /// Loads and validates the recipe in `dir`: metadata, README and the
    /// variables its files use.
    pub fn load(dir: &Path) -> Result<Recipe, RecipeError> {
        Recipe::from_meta(dir, Metadata::load(dir)?)
    }

    /// Loads a project's copy of a recipe (its folder may be named otherwise).
    pub fn load_copy(dir: &Path) -> Result<Recipe, RecipeError> {
        Recipe::from_meta(dir, Metadata::load_copy(dir)?)
    }

    fn from_meta(dir: &Path, meta: Metadata) -> Result<Recipe, RecipeError> {
        let readme_path = dir.join("README.md");
        let readme = std::fs::read_to_string(&readme_path).map_err(|source| RecipeError::Io {
            path: readme_path,
            source,
        })?;
        let files = render::files(dir)?;
        for file in &files {
            render::validate_placeholders(&meta, dir, file)?;
        }
        let hash = render::content_hash(dir)?;
        Ok(Recipe {
            meta,
            dir: dir.to_path_buf(),
            readme,
            hash,
            files,
        })
    }

    pub fn name(&self) -> &str {
        &self.meta.name
    }

    pub fn version(&self) -> &str {
        &self.meta.version
    }
}

pub struct Catalogue {
    pub dir: PathBuf,
    pub recipes: Vec<Recipe>,
}

impl Catalogue {
    /// Where the catalogue is: `REHEARSE_RECIPES`, else the `recipes` folder
    /// of the source tree rehearse was built from, else
    /// `/usr/local/share/rehearse/recipes`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("REHEARSE_RECIPES").filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
        let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../recipes");
        if built.is_dir() {
            return std::fs::canonicalize(&built).unwrap_or(built);
        }
        PathBuf::from("/usr/local/share/rehearse/recipes")
    }

    /// Loads every recipe folder (a folder holding `recipe.yaml`) of `dir`.
    /// One bad recipe fails the load, naming its file and line.
    pub fn load(dir: &Path) -> Result<Catalogue, RecipeError> {
        if !dir.is_dir() {
            return Err(RecipeError::NoCatalogue {
                path: dir.to_path_buf(),
            });
        }
        let entries = std::fs::read_dir(dir).map_err(|source| RecipeError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("recipe.yaml").is_file())
            .collect();
        dirs.sort();
        let recipes = dirs
            .iter()
            .map(|d| Recipe::load(d))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Catalogue {
            dir: dir.to_path_buf(),
            recipes,
        })
    }

    pub fn get(&self, name: &str) -> Result<&Recipe, RecipeError> {
        self.recipes
            .iter()
            .find(|r| r.meta.name == name)
            .ok_or_else(|| RecipeError::NotFound {
                name: name.to_string(),
                catalogue: self.dir.clone(),
                similar: self.similar(name),
            })
    }

    /// Names close to `name`: sharing a word, or within two edits.
    fn similar(&self, name: &str) -> Vec<String> {
        let words: Vec<&str> = name.split('-').filter(|w| w.len() > 2).collect();
        self.recipes
            .iter()
            .map(|r| r.meta.name.as_str())
            .filter(|n| edit_distance(n, name) <= 2 || n.split('-').any(|w| words.contains(&w)))
            .map(str::to_string)
            .collect()
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}
