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
}

fn yes() -> bool {
    true
}

impl ScenarioPayload {
    /// Packs the scenario at `path` (a file, or a folder holding
    /// `rehearse.yaml`) with the folder it sits in.
    pub fn pack(path: &Path) -> Result<ScenarioPayload, FleetError> {
        let (dir, file) = if path.is_dir() {
            (path.to_path_buf(), "rehearse.yaml".to_owned())
        } else {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .ok_or_else(|| {
                    FleetError::Payload(format!("{} names no scenario file", path.display()))
                })?;
            (dir, file)
        };
        Ok(ScenarioPayload {
            folder: Folder::read(&dir)?,
            file,
            platform: None,
            reboot: false,
            idempotence: true,
            backend: None,
        })
    }
}
