//! Tasks: what the convergence engine is asked to reach. A goal in plain words,
//! the cluster to reach it on, the checks that define success, the language the
//! code is written in, optional starting code, and budgets.
//!
//! ```yaml
//! goal: Install nginx and serve "hello" on port 80 of every node.
//! language: bash            # bash | ansible
//! nodes: 2                  # the topology keys, as in a scenario
//! checks:                   # the check vocabulary of scenarios
//!   - http: http://localhost/
//!     status: 200
//!     body: hello
//! code: |                   # optional starting code (or code_file: setup.sh)
//!   apt-get install -y nginx
//! max_iterations: 5         # default 5
//! max_wall: 15m             # default 15m
//! max_tokens: 200000        # default: no cap
//! secrets:                  # names → where the value comes from, never the value
//!   DB_PASSWORD: {env: DB_PASSWORD}
//!   API_TOKEN: {file: token.txt}
//! ```
//!
//! A secret reaches the code as an environment variable of the same name; the
//! model is told the names only, and the engine redacts the values from
//! everything it stores or prints.
//!
//! The topology and checks are read by the scenario parser itself, so they
//! accept exactly what a scenario accepts and fail with the same messages and
//! the same file:line positions.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, SpecError};
use crate::scenario::{Check, Scenario};
use crate::source::{self, FieldPath, Source};
use crate::topology::Topology;

/// The file a task folder holds.
pub const TASK_FILE: &str = "task.yaml";
pub const DEFAULT_MAX_ITERATIONS: u32 = 5;
pub const DEFAULT_MAX_WALL: Duration = Duration::from_secs(15 * 60);
/// The most iterations a task may ask for: beyond this a task is not converging.
pub const MAX_ITERATIONS_LIMIT: u32 = 50;

/// What the code is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// A bash script run as root on every node.
    Bash,
    /// An Ansible playbook run against every node (groups as in the topology).
    Ansible,
}

impl Language {
    pub fn as_str(self) -> &'static str {
        match self {
            Language::Bash => "bash",
            Language::Ansible => "ansible",
        }
    }
}

/// Limits on one convergence run.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Budgets {
    /// Runs of generated code on a fresh cluster, the proof run excluded.
    pub max_iterations: u32,
    #[serde(with = "humantime_secs")]
    pub max_wall: Duration,
    /// Input plus output tokens over the whole run; `None` = no cap.
    pub max_tokens: Option<u64>,
}

/// Where a secret's value comes from. The task file names a source, never
/// the value; the value is read when the task runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecretSource {
    /// An environment variable of the process running the task.
    Env(String),
    /// A file on the host (relative paths from the task file's folder); one
    /// trailing newline is dropped.
    File(PathBuf),
}

/// A secret the code may use as `$NAME`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Secret {
    /// The environment variable the code reads it from.
    pub name: String,
    pub source: SecretSource,
    /// Where the task file declares it, for errors at run time.
    pub declared_at: String,
}

/// Why a secret's value could not be read when the task ran.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set.
    #[error("{declared_at}: secret {name} comes from the environment variable {variable}, which is not set; export {variable} before running the task")]
    MissingEnv {
        name: String,
        variable: String,
        declared_at: String,
    },
    /// The environment variable is not valid UTF-8.
    #[error("{declared_at}: secret {name} comes from the environment variable {variable}, which is not valid UTF-8")]
    NotUnicode {
        name: String,
        variable: String,
        declared_at: String,
    },
    /// The file cannot be read. The I/O error is said in the message and
    /// not given again as a source, so a chain of causes says it once.
    #[error("{declared_at}: secret {name} comes from {path}, which cannot be read: {error}")]
    File {
        name: String,
        path: PathBuf,
        declared_at: String,
        error: std::io::Error,
    },
}

impl Secret {
    /// Reads the value from its source, now.
    pub fn value(&self) -> Result<String, SecretError> {
        match &self.source {
            SecretSource::Env(variable) => match std::env::var(variable) {
                Ok(value) => Ok(value),
                Err(std::env::VarError::NotPresent) => Err(SecretError::MissingEnv {
                    name: self.name.clone(),
                    variable: variable.clone(),
                    declared_at: self.declared_at.clone(),
                }),
                Err(std::env::VarError::NotUnicode(_)) => Err(SecretError::NotUnicode {
                    name: self.name.clone(),
                    variable: variable.clone(),
                    declared_at: self.declared_at.clone(),
                }),
            },
            SecretSource::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => Ok(text
                    .strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text)
                    .to_owned()),
                Err(error) => Err(SecretError::File {
                    name: self.name.clone(),
                    path: path.clone(),
                    declared_at: self.declared_at.clone(),
                    error,
                }),
            },
        }
    }
}

/// A validated task.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Task {
    pub name: String,
    pub goal: String,
    pub language: Language,
    /// Starting code, read from `code_file` when one was given.
    pub code: Option<String>,
    pub budgets: Budgets,
    pub topology: Topology,
    /// Images to run the task on, once each (`platforms:`), as a scenario's;
    /// empty for the images the nodes name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    /// Nodes that name their image themselves: they keep it on every platform.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pinned: Vec<String>,
    pub checks: Vec<Check>,
    /// The `checks:` key as the task file writes it, for people and models
    /// to read (the parsed [`Check`]s hold resolved defaults).
    pub checks_yaml: String,
    /// Secrets the code may read as environment variables, by name.
    pub secrets: Vec<Secret>,
    /// The folder relative paths are resolved against.
    pub dir: PathBuf,
    pub file: PathBuf,
}

/// The task-only keys of the YAML form; the rest (`nodes`, `networks`, `ttl`,
/// `checks`, `name`, `description`) is a scenario's and read by its parser.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "rehearse task")]
struct TaskFile {
    /// What the code must achieve, in plain words; the model reads it.
    goal: String,
    /// `bash` or `ansible`.
    language: Language,
    /// Starting code, inline.
    #[serde(default)]
    code: Option<String>,
    /// Starting code from a file next to the task.
    #[serde(default)]
    code_file: Option<PathBuf>,
    /// Runs on a fresh cluster before giving up (default 5).
    #[serde(default)]
    max_iterations: Option<u32>,
    /// Wall time for the whole run, e.g. `15m` (the default).
    #[serde(default)]
    max_wall: Option<String>,
    /// Tokens (input + output) for the whole run; default no cap.
    #[serde(default)]
    max_tokens: Option<u64>,
    /// Secrets the code reads as environment variables of the same name,
    /// each from `{env: VARIABLE}` or `{file: path}`. The model sees the names
    /// only; the values are redacted from everything the engine stores or prints.
    #[serde(default)]
    secrets: BTreeMap<String, SecretFile>,
    // The scenario's keys, validated by the scenario parser.
    #[serde(default)]
    name: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<serde_json::Value>,
    #[allow(dead_code)]
    nodes: serde_json::Value,
    #[serde(default)]
    #[allow(dead_code)]
    networks: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    ttl: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    checks: Option<serde_json::Value>,
    #[serde(default)]
    #[allow(dead_code)]
    platforms: Option<serde_json::Value>,
}

/// One entry of `secrets:`: exactly one source.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct SecretFile {
    /// The environment variable of `rehearse converge` holding the value.
    #[serde(default)]
    env: Option<String>,
    /// A file on the host holding the value (relative to the task file).
    #[serde(default)]
    file: Option<PathBuf>,
}

/// The lines of `text` that hold the top-level key `key` and its value, as
/// written (comments and blank lines at its end dropped).
fn top_level_block(text: &str, key: &str) -> String {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in text.lines() {
        let top_key = !line.starts_with([' ', '\t', '-', '#']) && !line.trim().is_empty();
        if top_key {
            if inside {
                break;
            }
            inside = line
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'));
        }
        if inside {
            lines.push(line);
        }
    }
    while lines
        .last()
        .is_some_and(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
    {
        lines.pop();
    }
    lines.join("\n")
}

/// The keys a task shares with a scenario.
const SCENARIO_KEYS: &[&str] = &[
    "name",
    "description",
    "nodes",
    "networks",
    "ttl",
    "checks",
    "platforms",
];

const TASK_ONLY_KEYS: &[&str] = &[
    "goal",
    "language",
    "code",
    "code_file",
    "max_iterations",
    "max_wall",
    "max_tokens",
    "secrets",
];

impl Task {
    /// Reads and validates a task file, or the `task.yaml` of a folder.
    pub fn from_path(path: &Path) -> Result<Task, SpecError> {
        let file = if path.is_dir() {
            path.join(TASK_FILE)
        } else {
            path.to_path_buf()
        };
        if !file.is_file() {
            return Err(SpecError::new(
                ErrorKind::MissingFile,
                format!("{} does not exist", file.display()),
            )
            .with_hint(format!(
                "pass a task file, or a folder that holds {TASK_FILE}"
            )));
        }
        let text = source::read(&file)?;
        let dir = match file.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        Task::from_yaml(&text, &file.display().to_string(), &dir)
    }

    /// Parses and validates a task written in YAML; `origin` names it in errors.
    pub fn from_yaml(text: &str, origin: &str, dir: &Path) -> Result<Task, SpecError> {
        let source = Source::file(origin, text);
        if let Some(error) = source.duplicate_key() {
            return Err(error);
        }
        let parsed: TaskFile = serde_yaml::from_str(text).map_err(|e| source.yaml_error(&e))?;
        let no_checks = match &parsed.checks {
            None | Some(serde_json::Value::Null) => true,
            Some(serde_json::Value::Array(list)) => list.is_empty(),
            Some(_) => false,
        };
        if no_checks {
            let error = SpecError::new(
                ErrorKind::MissingField,
                "a task needs at least one check: the checks are what success means",
            )
            .with_hint("add `checks:` with e.g. `- http: http://localhost/` and `status: 200`");
            return Err(source.at_key(&FieldPath::default(), "checks", error));
        }
        // The scenario parser reads the same text with the task's own keys blanked
        // out line for line, so its positions stay those of the task file.
        let scenario = Scenario::from_yaml(&blank_keys(text, TASK_ONLY_KEYS), origin, dir)?;
        let root = FieldPath::default();
        let refuse = |key: &str, kind: ErrorKind, message: String, hint: &str| {
            source.at_key(&root, key, SpecError::new(kind, message).with_hint(hint))
        };

        let goal = parsed.goal.trim().to_owned();
        if goal.is_empty() {
            return Err(refuse(
                "goal",
                ErrorKind::InvalidValue,
                "the goal is empty".into(),
                "say in a sentence or two what the code must achieve",
            ));
        }
        let code = match (parsed.code, parsed.code_file) {
            (Some(_), Some(_)) => {
                return Err(refuse(
                    "code_file",
                    ErrorKind::InvalidValue,
                    "both `code` and `code_file` are given".into(),
                    "keep one: inline code or a file",
                ))
            }
            (Some(code), None) => Some(code),
            (None, Some(file)) => {
                let path = dir.join(&file);
                match std::fs::read_to_string(&path) {
                    Ok(code) => Some(code),
                    Err(_) => {
                        return Err(refuse(
                            "code_file",
                            ErrorKind::MissingFile,
                            format!("{} cannot be read", path.display()),
                            "name a file relative to the task file's folder",
                        ))
                    }
                }
            }
            (None, None) => None,
        };
        let max_iterations = parsed.max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS);
        if !(1..=MAX_ITERATIONS_LIMIT).contains(&max_iterations) {
            return Err(refuse(
                "max_iterations",
                ErrorKind::Limit,
                format!("max_iterations is {max_iterations}"),
                &format!("use 1 to {MAX_ITERATIONS_LIMIT}"),
            ));
        }
        let max_wall = match parsed.max_wall {
            None => DEFAULT_MAX_WALL,
            Some(text) => match humantime::parse_duration(text.trim()) {
                Ok(d) if !d.is_zero() => d,
                _ => {
                    return Err(refuse(
                        "max_wall",
                        ErrorKind::InvalidValue,
                        format!("max_wall {text:?} is not a positive duration"),
                        "write e.g. 90s, 15m or 1h",
                    ))
                }
            },
        };
        if parsed.max_tokens == Some(0) {
            return Err(refuse(
                "max_tokens",
                ErrorKind::InvalidValue,
                "max_tokens is 0".into(),
                "leave it out for no cap, or give a positive number",
            ));
        }
        let secrets_path = FieldPath::key("secrets");
        let mut secrets = Vec::new();
        for (name, entry) in parsed.secrets {
            let refuse_secret = |kind: ErrorKind, message: String, hint: &str| {
                source.at_key(
                    &secrets_path,
                    &name,
                    SpecError::new(kind, message).with_hint(hint),
                )
            };
            if !is_env_name(&name) {
                return Err(refuse_secret(
                    ErrorKind::InvalidName,
                    format!("secret name {name:?} is not an environment variable name"),
                    "use letters, digits and _, not starting with a digit, e.g. DB_PASSWORD",
                ));
            }
            let secret_source = match (entry.env, entry.file) {
                (Some(variable), None) if is_env_name(&variable) => SecretSource::Env(variable),
                (Some(variable), None) => {
                    return Err(refuse_secret(
                        ErrorKind::InvalidValue,
                        format!("secret {name}: {variable:?} is not an environment variable name"),
                        "name the variable that holds the value, e.g. {env: DB_PASSWORD}",
                    ))
                }
                (None, Some(file)) => SecretSource::File(dir.join(file)),
                _ => {
                    return Err(refuse_secret(
                        ErrorKind::InvalidValue,
                        format!("secret {name} needs exactly one source"),
                        "write {env: VARIABLE} or {file: path}; the value itself never goes in the task file",
                    ))
                }
            };
            let line = source
                .line_of(&secrets_path.field(&name))
                .map(|l| format!("{origin}:{l}"))
                .unwrap_or_else(|| origin.to_owned());
            secrets.push(Secret {
                name,
                source: secret_source,
                declared_at: line,
            });
        }
        // A `task.yaml` is named after its folder, as a `rehearse.yaml` is.
        let name = match (&parsed.name, Path::new(origin).file_name()) {
            (None, Some(file)) if file == TASK_FILE => dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("task")
                .to_owned(),
            _ => scenario.name,
        };
        Ok(Task {
            name,
            goal,
            language: parsed.language,
            code,
            budgets: Budgets {
                max_iterations,
                max_wall,
                max_tokens: parsed.max_tokens,
            },
            topology: scenario.topology,
            platforms: scenario.platforms,
            pinned: scenario.pinned,
            checks: scenario.checks,
            checks_yaml: top_level_block(text, "checks"),
            secrets,
            dir: scenario.dir,
            file: scenario.file,
        })
    }

    /// The task as it runs on one platform: every node that does not pin its
    /// own image boots `image`.
    pub fn on_platform(&self, image: &str) -> Task {
        let mut task = self.clone();
        for node in &mut task.topology.nodes {
            if !self.pinned.contains(&node.name) {
                node.image = image.to_owned();
            }
        }
        task.platforms = Vec::new();
        task
    }

    /// The JSON Schema of a task file: the task's own keys, and the topology
    /// and check keys taken from the scenario schema, so editors validate
    /// both halves.
    pub fn json_schema() -> serde_json::Value {
        let mut task = crate::file_schema::<TaskFile>();
        let scenario = Scenario::json_schema();
        for key in SCENARIO_KEYS {
            if let Some(property) = scenario["properties"].get(*key) {
                task["properties"][*key] = property.clone();
            }
        }
        if let Some(definitions) = scenario["definitions"].as_object() {
            for (name, definition) in definitions {
                task["definitions"][name] = definition.clone();
            }
        }
        task["description"] = "A goal for `rehearse converge`: what the code must achieve, \
            the cluster it runs on, the checks that define success, the language, \
            optional starting code and budgets."
            .into();
        task["required"] = serde_json::json!(["goal", "language", "nodes", "checks"]);
        task
    }
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `text` with the top-level entries of `keys` replaced by empty lines (the key
/// line and every line indented under it), so line numbers stay the same.
fn blank_keys(text: &str, keys: &[&str]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blanking = false;
    for line in text.split_inclusive('\n') {
        let top_level = line
            .chars()
            .next()
            .is_some_and(|c| !c.is_whitespace() && c != '#');
        if top_level {
            blanking = keys.iter().any(|key| {
                line.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with(':'))
            });
        }
        if blanking {
            if line.ends_with('\n') {
                out.push('\n');
            }
        } else {
            out.push_str(line);
        }
    }
    out
}

mod humantime_secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }
}

#[cfg(test)]
mod tests;
