//! `recipe.yaml`: what a recipe is called, its version, tags, the images it
//! supports, its variables with defaults, the topology it needs, and how it is
//! proven.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::RecipeError;

/// The metadata of one recipe, as written in its `recipe.yaml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// Lowercase words joined by `-`; the folder has the same name.
    pub name: String,
    /// `MAJOR.MINOR.PATCH`; raise it whenever the recipe's files change.
    pub version: String,
    /// One sentence: what the recipe builds.
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// The platforms (images) the recipe supports, e.g. `[debian-12,
    /// debian-13, ubuntu-24.04]`: `recipe prove` proves it on each. `images`
    /// is the older name of the key.
    #[serde(alias = "images")]
    pub platforms: Vec<String>,
    /// The nodes and groups the recipe expects, in words
    /// (e.g. "lb (group balancer), two or more web nodes (group web)").
    pub topology: String,
    #[serde(default)]
    pub variables: Vec<Variable>,
    /// What the proof cannot show on every backend, and why; said in `show`.
    #[serde(default)]
    pub limits: Vec<String>,
    #[serde(default)]
    pub prove: ProveOptions,
}

/// A variable: `{{NAME}}` in the recipe's files is replaced by its value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// `UPPER_SNAKE_CASE`, so it never collides with Jinja's `{{ var }}`.
    pub name: String,
    pub default: String,
    pub description: String,
}

/// How `prove` runs the recipe's scenario.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProveOptions {
    /// The scenario file, relative to the recipe folder.
    #[serde(default = "default_scenario")]
    pub scenario: String,
    /// Reboot every node after the steps and run the checks again.
    #[serde(default)]
    pub reboot: bool,
}

impl Default for ProveOptions {
    fn default() -> Self {
        ProveOptions {
            scenario: default_scenario(),
            reboot: false,
        }
    }
}

fn default_scenario() -> String {
    "rehearse.yaml".into()
}

fn is_recipe_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 48
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && !s.contains("--")
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub(crate) fn is_variable_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase())
        && s.chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn is_version(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// The 1-based line of the first line of `text` that starts with `key:`
/// (after indentation), for errors about values serde accepted.
fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            let t = l.trim_start().trim_start_matches("- ");
            t.starts_with(&format!("{key}:"))
        })
        .map(|i| i + 1)
        .unwrap_or(0)
}

impl Metadata {
    /// Parses and validates `recipe.yaml` of the recipe in `folder`.
    pub fn load(folder: &Path) -> Result<Metadata, RecipeError> {
        Metadata::load_from(folder, true)
    }

    /// As [`Metadata::load`], for a project's copy, whose folder may have
    /// another name.
    pub fn load_copy(folder: &Path) -> Result<Metadata, RecipeError> {
        Metadata::load_from(folder, false)
    }

    fn load_from(folder: &Path, named_folder: bool) -> Result<Metadata, RecipeError> {
        let file = folder.join("recipe.yaml");
        let text = std::fs::read_to_string(&file).map_err(|source| RecipeError::Io {
            path: file.clone(),
            source,
        })?;
        Metadata::parse(&text, &file, folder, named_folder)
    }

    pub(crate) fn parse(
        text: &str,
        file: &Path,
        folder: &Path,
        named_folder: bool,
    ) -> Result<Metadata, RecipeError> {
        let bad = |line: usize, message: String, hint: &str| RecipeError::Metadata {
            file: file.to_path_buf(),
            line,
            message,
            hint: hint.to_string(),
        };
        let meta: Metadata = serde_yaml::from_str(text).map_err(|e| {
            let line = e.location().map(|l| l.line()).unwrap_or(0);
            bad(
                line,
                e.to_string(),
                "keys: name, version, description, tags, platforms (or images), topology, variables ({name, default, description}), limits, prove ({scenario, reboot})",
            )
        })?;
        if !is_recipe_name(&meta.name) {
            return Err(bad(
                line_of(text, "name"),
                format!("name \"{}\" is not a recipe name", meta.name),
                "use lowercase letters, digits and single `-`, starting with a letter (e.g. web-lb)",
            ));
        }
        let folder_name = folder.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if named_folder && meta.name != folder_name {
            return Err(bad(
                line_of(text, "name"),
                format!(
                    "name \"{}\" differs from the recipe's folder \"{folder_name}\"",
                    meta.name
                ),
                "rename the folder or the recipe so they match",
            ));
        }
        if !is_version(&meta.version) {
            return Err(bad(
                line_of(text, "version"),
                format!("version \"{}\" is not MAJOR.MINOR.PATCH", meta.version),
                "write it quoted, e.g. version: \"1.0.0\"",
            ));
        }
        if meta.description.trim().is_empty() {
            return Err(bad(
                line_of(text, "description"),
                "description is empty".into(),
                "say in one sentence what the recipe builds",
            ));
        }
        let key = if line_of(text, "platforms") > 0 {
            "platforms"
        } else {
            "images"
        };
        if meta.platforms.is_empty() {
            return Err(bad(
                line_of(text, key),
                format!("{key} is empty"),
                "name the images the recipe is proven on, e.g. platforms: [debian-12, ubuntu-24.04]",
            ));
        }
        let mut listed = std::collections::HashSet::new();
        for platform in &meta.platforms {
            if !listed.insert(platform) {
                return Err(bad(
                    line_of(text, key),
                    format!("platform \"{platform}\" is listed twice"),
                    "name each image once",
                ));
            }
        }
        for tag in &meta.tags {
            if tag.is_empty() || tag.chars().any(char::is_whitespace) {
                return Err(bad(
                    line_of(text, "tags"),
                    format!("tag \"{tag}\" is empty or holds a space"),
                    "one word per tag; use - inside a tag (load-balancer)",
                ));
            }
        }
        let mut seen = std::collections::HashSet::new();
        for v in &meta.variables {
            if !is_variable_name(&v.name) {
                return Err(bad(
                    line_of(text, "name").max(line_of(text, "variables")),
                    format!("variable \"{}\" is not UPPER_SNAKE_CASE", v.name),
                    "variables are written {{NAME}} in the files, NAME in capitals, digits and _",
                ));
            }
            if !seen.insert(&v.name) {
                return Err(bad(
                    line_of(text, "variables"),
                    format!("variable {} is declared twice", v.name),
                    "remove one of them",
                ));
            }
        }
        if !folder.join(&meta.prove.scenario).is_file() {
            return Err(bad(
                line_of(text, "scenario").max(line_of(text, "prove")),
                format!(
                    "the scenario {} does not exist in {}",
                    meta.prove.scenario,
                    folder.display()
                ),
                "every recipe needs a scenario that proves it (default rehearse.yaml)",
            ));
        }
        Ok(meta)
    }

    pub fn variable(&self, name: &str) -> Option<&Variable> {
        self.variables.iter().find(|v| v.name == name)
    }
}
