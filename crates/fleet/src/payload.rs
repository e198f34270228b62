//! A scenario's folder, carried in a job so that hosts need no shared
//! filesystem: every file under it (hidden ones aside), text as is, other
//! content base64-encoded, within a size cap.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::FleetError;

/// The most a folder may weigh to travel in the queue.
pub const FOLDER_LIMIT: u64 = 4 << 20;

/// One file of a folder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    Text(String),
    Base64(String),
}

/// A folder's files, by path relative to it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Folder {
    pub files: BTreeMap<String, Content>,
}

impl Folder {
    /// Reads every file under `dir`, refusing folders above [`FOLDER_LIMIT`].
    pub fn read(dir: &Path) -> Result<Folder, FleetError> {
        let mut folder = Folder::default();
        let mut total = 0u64;
        let mut pending = vec![dir.to_path_buf()];
        while let Some(current) = pending.pop() {
            let entries = std::fs::read_dir(&current).map_err(|e| {
                FleetError::Payload(format!("reading the folder {}: {e}", current.display()))
            })?;
            for entry in entries {
                let entry = entry.map_err(|e| {
                    FleetError::Payload(format!("reading the folder {}: {e}", current.display()))
                })?;
                let path = entry.path();
                if entry.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                let meta = std::fs::metadata(&path)
                    .map_err(|e| FleetError::Payload(format!("reading {}: {e}", path.display())))?;
                if meta.is_dir() {
                    pending.push(path);
                    continue;
                }
                if !meta.is_file() {
                    continue;
                }
                total += meta.len();
                if total > FOLDER_LIMIT {
                    return Err(FleetError::Payload(format!(
                        "the folder {} holds more than {} MiB (at {}): a fleet job carries its scenario's folder to the host that runs it; keep the scenario in a folder of its own with only the files it uses",
                        dir.display(),
                        FOLDER_LIMIT >> 20,
                        path.display()
                    )));
                }
                let bytes = std::fs::read(&path)
                    .map_err(|e| FleetError::Payload(format!("reading {}: {e}", path.display())))?;
                let relative = path
                    .strip_prefix(dir)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                let content = match String::from_utf8(bytes) {
                    Ok(text) => Content::Text(text),
                    Err(e) => Content::Base64(
                        base64::engine::general_purpose::STANDARD.encode(e.into_bytes()),
                    ),
                };
                folder.files.insert(relative, content);
            }
        }
        Ok(folder)
    }

    /// Writes the files under `dir` (created), refusing paths that would
    /// leave it.
    pub fn write(&self, dir: &Path) -> Result<(), FleetError> {
        for (relative, content) in &self.files {
            let rel = PathBuf::from(relative);
            if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
                return Err(FleetError::Payload(format!(
                    "the job's folder names the file \"{relative}\", which is not inside it"
                )));
            }
            let path = dir.join(&rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| {
                    FleetError::Payload(format!("creating {}: {e}", parent.display()))
                })?;
            }
            let bytes = match content {
                Content::Text(t) => t.clone().into_bytes(),
                Content::Base64(b) => base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .map_err(|e| FleetError::Payload(format!("the job's file {relative}: {e}")))?,
            };
            std::fs::write(&path, bytes)
                .map_err(|e| FleetError::Payload(format!("writing {}: {e}", path.display())))?;
        }
        Ok(())
    }
}

/// A scenario run (or one platform of a matrix) as a job carries it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioPayload {
    /// The scenario's folder.
    pub folder: Folder,
    /// The scenario file, relative to the folder.
    pub file: String,
    /// The image nodes that pin none boot (a matrix leg).
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub reboot: bool,
    #[serde(default = "yes")]
    pub idempotence: bool,
    /// What nspawn or vm runs nodes whose topology names no backend.
    #[serde(default)]
    pub backend: Option<String>,
    /// Whether the cluster stays up after the run: never (default), always
    /// or on_failure.
    #[serde(default)]
    pub keep: Option<String>,
    /// Time to live of a kept cluster ("30m" when none).
    #[serde(default)]
    pub ttl: Option<String>,
}

fn yes() -> bool {
    true
}

/// The folder a file or folder argument stands for, and the file in it:
/// `path` itself with `default_file` when it is a folder, else the folder the
/// file sits in.
fn folder_and_file(path: &Path, default_file: &str) -> Result<(PathBuf, String), FleetError> {
    if path.is_dir() {
        return Ok((path.to_path_buf(), default_file.to_owned()));
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .ok_or_else(|| FleetError::Payload(format!("{} names no file", path.display())))?;
    Ok((dir, file))
}

impl ScenarioPayload {
    /// Packs the scenario at `path` (a file, or a folder holding
    /// `rehearse.yaml`) with the folder it sits in.
    pub fn pack(path: &Path) -> Result<ScenarioPayload, FleetError> {
        let (dir, file) = folder_and_file(path, "rehearse.yaml")?;
        Ok(ScenarioPayload {
            folder: Folder::read(&dir)?,
            file,
            platform: None,
            reboot: false,
            idempotence: true,
            backend: None,
            keep: None,
            ttl: None,
        })
    }

    /// A scenario given as YAML text, with the folder its relative paths are
    /// read from (none: it may name no file).
    pub fn inline(yaml: &str, base_dir: Option<&Path>) -> Result<ScenarioPayload, FleetError> {
        let mut folder = match base_dir {
            Some(dir) => Folder::read(dir)?,
            None => Folder::default(),
        };
        folder
            .files
            .insert(INLINE_FILE.to_owned(), Content::Text(yaml.to_owned()));
        Ok(ScenarioPayload {
            folder,
            file: INLINE_FILE.to_owned(),
            platform: None,
            reboot: false,
            idempotence: true,
            backend: None,
            keep: None,
            ttl: None,
        })
    }
}

/// The name YAML text given inline is written under on the host that runs it.
pub const INLINE_FILE: &str = "inline.rehearse.yaml";

/// A command of the command set (a converge task) as a job carries it: its
/// name and arguments, and the folder its files are read from, written out
/// on the host that runs it before the command starts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandPayload {
    pub command: String,
    pub args: serde_json::Value,
    #[serde(default)]
    pub folder: Option<Folder>,
    /// The file of the folder the command's `path` argument names.
    #[serde(default)]
    pub path: Option<String>,
    /// Whether the command's `base_dir` argument is the folder.
    #[serde(default)]
    pub base_dir: bool,
}

impl CommandPayload {
    /// A command whose `path` argument names `path` on this host (a file, or
    /// a folder holding `default_file`): the folder travels with it.
    pub fn with_path(
        command: &str,
        mut args: serde_json::Value,
        path: &Path,
        default_file: &str,
    ) -> Result<CommandPayload, FleetError> {
        let (dir, file) = folder_and_file(path, default_file)?;
        if let Some(map) = args.as_object_mut() {
            map.remove("path");
        }
        Ok(CommandPayload {
            command: command.to_owned(),
            args,
            folder: Some(Folder::read(&dir)?),
            path: Some(file),
            base_dir: false,
        })
    }

    /// A command given YAML text inline, whose relative paths are read from
    /// `base_dir` on this host (which travels with it), or from nothing.
    pub fn with_base_dir(
        command: &str,
        mut args: serde_json::Value,
        base_dir: Option<&Path>,
    ) -> Result<CommandPayload, FleetError> {
        let folder = match base_dir {
            Some(dir) => Folder::read(dir)?,
            None => Folder::default(),
        };
        if let Some(map) = args.as_object_mut() {
            map.remove("base_dir");
        }
        Ok(CommandPayload {
            command: command.to_owned(),
            args,
            folder: Some(folder),
            path: None,
            base_dir: true,
        })
    }

    /// Writes the folder under `dir` and points the arguments at it: the
    /// command as the host that runs it must see it.
    pub fn unpack(&self, dir: &Path) -> Result<serde_json::Value, FleetError> {
        let mut args = self.args.clone();
        if let Some(folder) = &self.folder {
            folder.write(dir)?;
            std::fs::create_dir_all(dir)
                .map_err(|e| FleetError::Payload(format!("creating {}: {e}", dir.display())))?;
        }
        if let Some(map) = args.as_object_mut() {
            if let Some(file) = &self.path {
                map.insert(
                    "path".into(),
                    dir.join(file).to_string_lossy().into_owned().into(),
                );
            }
            if self.base_dir {
                map.insert("base_dir".into(), dir.to_string_lossy().into_owned().into());
            }
        }
        Ok(args)
    }
}

/// A recipe proof on one platform (or the recipe's own platforms), with the
/// recipe's folder: hosts need not hold the same catalogue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecipePayload {
    pub folder: Folder,
    pub name: String,
    /// Variables set instead of their defaults.
    #[serde(default)]
    pub set: Vec<(String, String)>,
    /// The platforms to prove it on; none: the ones its recipe.yaml lists.
    #[serde(default)]
    pub platforms: Vec<String>,
}

impl RecipePayload {
    /// Packs `recipe`'s folder for a proof with `set` on `platforms` (none:
    /// the recipe's own), refusing unknown variables now, and counts the
    /// nodes its scenario boots (from a rendered copy, which names them).
    pub fn pack(
        recipe: &rehearse_recipes::Recipe,
        set: &[(String, String)],
        platforms: &[String],
    ) -> Result<(RecipePayload, u32, Vec<String>), FleetError> {
        let values = rehearse_recipes::prove::values(recipe, set)
            .map_err(|e| FleetError::Payload(e.to_string()))?;
        let rendered = std::env::temp_dir().join(format!(
            "rehearse-recipe-{}-{:08x}",
            recipe.meta.name,
            rand::random::<u32>()
        ));
        let counted = (|| {
            rehearse_recipes::render_into(&recipe.dir, &rendered, &values)
                .map_err(|e| FleetError::Payload(e.to_string()))?;
            let scenario = rehearse_spec::scenario::Scenario::from_path(
                &rendered.join(&recipe.meta.prove.scenario),
            )
            .map_err(|e| FleetError::Payload(format!("{}: {e}", recipe.meta.name)))?;
            let scenario = match platforms {
                [one] => scenario.on_platform(one),
                _ => scenario,
            };
            let mut images = crate::images_of(&scenario.topology);
            // Several platforms in one job: it needs each of them.
            if platforms.len() > 1 {
                images = platforms.to_vec();
            }
            Ok::<_, FleetError>((scenario.topology.nodes.len() as u32, images))
        })();
        let _ = std::fs::remove_dir_all(&rendered);
        let (nodes, images) = counted?;
        Ok((
            RecipePayload {
                folder: Folder::read(&recipe.dir)?,
                name: recipe.meta.name.clone(),
                set: set.to_vec(),
                platforms: platforms.to_vec(),
            },
            nodes,
            images,
        ))
    }
}
