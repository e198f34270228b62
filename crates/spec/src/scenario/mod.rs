//! Scenarios: a topology, ordered steps that apply infrastructure code to it, and
//! the checks that say whether the result is right.
//!
//! A scenario is a YAML file, usually `rehearse.yaml` in a folder next to the
//! scripts, playbooks and files it uses (see `docs/scenario.md` for the format).
//! [`Scenario::from_path`] reads and fully validates it: every refusal carries
//! file:line:column, the field path and a hint, before any node starts.

pub mod check;
pub mod step;

mod file;
mod matcher;
mod rules;

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

pub use check::{Check, CheckKind, DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_TIMEOUT};
pub use matcher::{Matcher, Pattern};
pub use step::{compile_glob, Step, StepAction, StepIdempotence, DEFAULT_STEP_TIMEOUT};

use crate::error::{ErrorKind, SpecError};
use crate::source::{self, Source};
use crate::topology::Topology;

pub(crate) use check::duration_ms as check_duration_ms;

/// The file a scenario folder holds.
pub const SCENARIO_FILE: &str = "rehearse.yaml";

/// A validated scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    /// Name shown in reports: as written, else the folder name for
    /// `rehearse.yaml`, else the file name without extension.
    pub name: String,
    pub description: Option<String>,
    pub topology: Topology,
    /// Images to run the whole scenario on, once each (`platforms:`); empty
    /// for one run on the images the nodes name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Nodes that name their image themselves: every platform run keeps them on it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<String>,
    pub steps: Vec<Step>,
    pub checks: Vec<Check>,
    /// Faults injected after the checks, in order of `at`.
    pub faults: Vec<crate::trials::ScenarioFault>,
    /// Loads run while the faults happen.
    pub loads: Vec<crate::trials::LoadSpec>,
    /// Attack probes run last.
    pub probes: Vec<crate::trials::ProbeSpec>,
    /// The folder relative paths in the scenario are resolved against.
    pub dir: PathBuf,
    /// The file the scenario was read from (the `origin` of [`Scenario::from_yaml`]).
    pub file: PathBuf,
}

impl Scenario {
    /// Reads, parses and validates a scenario file, or the `rehearse.yaml` of a
    /// scenario folder.
    pub fn from_path(path: &Path) -> Result<Scenario, SpecError> {
        let not_found = |message: String| {
            Err(
                SpecError::new(ErrorKind::MissingFile, message).with_hint(format!(
                    "pass a scenario file, or a folder that holds {SCENARIO_FILE}"
                )),
            )
        };
        let file = if path.is_dir() {
            let file = path.join(SCENARIO_FILE);
            if !file.is_file() {
                return not_found(format!(
                    "{} is a folder without a {SCENARIO_FILE}",
                    path.display()
                ));
            }
            file
        } else if path.exists() {
            path.to_path_buf()
        } else {
            return not_found(format!("{} does not exist", path.display()));
        };
        let text = source::read(&file)?;
        let dir = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        // Absolute, so the paths the scenario resolves stay right whatever the
        // current directory of whoever uses them later.
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        Scenario::from_yaml(&text, &file.display().to_string(), &dir)
    }

    /// Parses and validates a scenario written in YAML. `origin` is the file name
    /// shown in errors; `dir` is the folder that scripts, playbooks and copied
    /// files are read from.
    pub fn from_yaml(text: &str, origin: &str, dir: &Path) -> Result<Scenario, SpecError> {
        let source = Source::file(origin, text);
        if let Some(error) = source.duplicate_key() {
            return Err(error);
        }
        let parsed: file::ScenarioFile =
            serde_yaml::from_str(text).map_err(|e| source.yaml_error(&e))?;
        let scenario = parsed.into_scenario(&source, origin, dir)?;
        scenario.validate_at(&source)?;
        Ok(scenario)
    }

    /// Reads a scenario given as an already parsed value (the JSON of a
    /// request) rather than as text, by the same rules and with the same
    /// messages as a file; errors name the field (`checks[2].status`) but no
    /// line. Relative paths are read from `dir`.
    pub fn from_value(
        value: serde_json::Value,
        origin: &str,
        dir: &Path,
    ) -> Result<Scenario, SpecError> {
        let source = Source::detached();
        let parsed: file::ScenarioFile = source.deserialize(value)?;
        let scenario = parsed.into_scenario(&source, origin, dir)?;
        scenario.validate_at(&source)?;
        Ok(scenario)
    }

    /// `checks` as a scenario on a cluster whose nodes are `nodes` (each a
    /// name and its groups), so that `on` may name them and their groups.
    /// Relative paths are read from `dir`.
    pub fn of_checks(
        nodes: &[(String, Vec<String>)],
        checks: ChecksInput,
        dir: &Path,
    ) -> Result<Scenario, SpecError> {
        let checks = match checks.0 {
            // YAML text written by hand: its errors are placed in it.
            serde_json::Value::String(text) => serde_yaml::from_str(&text)
                .map_err(|e| Source::file("checks", &text).yaml_error(&e))?,
            other => other,
        };
        let checks = match checks {
            serde_json::Value::Array(list) if !list.is_empty() => list,
            serde_json::Value::Object(check) => vec![serde_json::Value::Object(check)],
            _ => {
                return Err(SpecError::new(
                    ErrorKind::InvalidValue,
                    "checks must be a non-empty list of checks",
                )
                .with_hint(r#"write a list of checks, e.g. [{"service": "nginx", "on": "web1"}]"#)
                .with_field("checks"))
            }
        };
        let nodes: Vec<serde_json::Value> = nodes
            .iter()
            .map(|(name, groups)| serde_json::json!({"name": name, "groups": groups}))
            .collect();
        let document = serde_json::json!({"name": "check", "nodes": nodes, "checks": checks});
        Scenario::from_value(document, "checks", dir)
    }

    /// The JSON Schema of the YAML form, for editors and `rehearse schema`.
    pub fn json_schema() -> serde_json::Value {
        crate::file_schema::<file::ScenarioFile>()
    }

    /// The scenario as it runs on one platform: every node that does not pin its
    /// own image boots `image`.
    pub fn on_platform(&self, image: &str) -> Scenario {
        let mut scenario = self.clone();
        for node in &mut scenario.topology.nodes {
            if !self.pinned.contains(&node.name) {
                node.image = image.to_owned();
            }
        }
        scenario.platforms = Vec::new();
        scenario
    }

    /// Checks a list of platforms (from `platforms:` or the command line):
    /// image names, each once.
    pub fn validate_platforms(platforms: &[String]) -> Result<(), SpecError> {
        for (i, platform) in platforms.iter().enumerate() {
            crate::names::IMAGE.validate(platform).map_err(|e| {
                e.with_hint("name an image, such as debian-12, debian-13 or ubuntu-24.04")
            })?;
            if platforms[..i].contains(platform) {
                return Err(SpecError::new(
                    ErrorKind::Duplicate,
                    format!("platform \"{platform}\" is listed twice"),
                )
                .with_hint("list each image once"));
            }
        }
        Ok(())
    }

    /// Node names a step's or check's `on` selects, in topology order; empty `on`
    /// = every node. A name selects the node of that name and every node in the
    /// group of that name.
    pub fn resolve(&self, on: &[String]) -> Vec<String> {
        self.topology
            .nodes
            .iter()
            .filter(|node| {
                on.is_empty()
                    || on
                        .iter()
                        .any(|target| *target == node.name || node.groups.contains(target))
            })
            .map(|node| node.name.clone())
            .collect()
    }
}

/// Checks as a request carries them, in the scenario check syntax: a list of
/// checks, one check, or the YAML text of a list. Kept as given until
/// [`Scenario::of_checks`] reads them against the cluster they run on, so that
/// errors name the field (`checks[2].status`); the JSON Schema is that of
/// `checks:` in a scenario file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ChecksInput(pub serde_json::Value);

impl JsonSchema for ChecksInput {
    fn schema_name() -> Cow<'static, str> {
        "ChecksInput".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let check = generator.subschema_for::<file::CheckFile>();
        schemars::json_schema!({
            "oneOf": [
                {"type": "array", "items": check.clone(), "minItems": 1},
                check,
                {"type": "string", "description": "The YAML text of a list of checks."},
            ]
        })
    }
}
