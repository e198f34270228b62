//! Recipes: verified, reusable infrastructure components. A recipe is a folder
//! holding a README (what it builds, variables, topology), its code (shell
//! and/or Ansible), a scenario that proves it, and `recipe.yaml` (name,
//! version, tags, supported images, variables with defaults).
//!
//! The catalogue is searched ([`search`]), scaffolded ([`scaffold`]), copied
//! into projects with variables filled and pinned ([`pin`]), and proven on
//! fresh clusters ([`prove`]), each proof recorded with the recipe's version
//! and content hash.

mod catalogue;
mod meta;
pub mod pin;
pub mod prove;
mod render;
pub mod scaffold;
pub mod search;

use std::path::PathBuf;

pub use catalogue::{Catalogue, Recipe};
pub use meta::{Metadata, ProveOptions, Variable};
pub use render::{content_hash, render_into};

#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `recipe.yaml` is wrong.
    #[error("{}{}: {message}\n  hint: {hint}", file.display(), if *line > 0 { format!(":{line}") } else { String::new() })]
    Metadata {
        file: PathBuf,
        line: usize,
        message: String,
        hint: String,
    },
    /// A file of the recipe uses a `{{NAME}}` that `recipe.yaml` does not declare.
    #[error("{}:{line}: {{{{{name}}}}} is not a variable of recipe {recipe}\n  hint: declare it under `variables` in recipe.yaml, or write it differently if it is not meant to be filled", file.display())]
    UndeclaredVariable {
        recipe: String,
        file: PathBuf,
        line: usize,
        name: String,
    },
    /// No recipe of that name.
    #[error("no recipe \"{name}\" in {}{}", catalogue.display(), suggestion(similar))]
    NotFound {
        name: String,
        catalogue: PathBuf,
        similar: Vec<String>,
    },
    /// The catalogue folder is missing.
    #[error("no recipe catalogue at {}\n  hint: pass --catalogue DIR or set REHEARSE_RECIPES to a folder of recipes", path.display())]
    NoCatalogue { path: PathBuf },
    /// `--set NAME=VALUE` names no variable of the recipe.
    #[error("recipe {recipe} has no variable {name}{}", if known.is_empty() { " (it has none)".to_string() } else { format!(" (its variables: {})", known.join(", ")) })]
    UnknownVariable {
        recipe: String,
        name: String,
        known: Vec<String>,
    },
    /// The destination of `use` exists and is not empty.
    #[error("{} exists and is not empty\n  hint: choose another destination; `use` never overwrites files", path.display())]
    DestinationExists { path: PathBuf },
    /// A lock file is wrong.
    #[error("{}: {message}\n  hint: the lock file is written when a recipe is used in a project; fix or remove the entry", path.display())]
    Lock { path: PathBuf, message: String },
    /// A new recipe's name is taken or malformed.
    #[error("{message}")]
    Scaffold { message: String },
    /// The recipe's scenario is invalid.
    #[error("recipe {recipe}: {source}")]
    Scenario {
        recipe: String,
        #[source]
        source: rehearse_spec::SpecError,
    },
}

fn suggestion(similar: &[String]) -> String {
    if similar.is_empty() {
        "\n  hint: search the catalogue by words to see what there is".into()
    } else {
        format!("\n  hint: did you mean {}?", similar.join(" or "))
    }
}
