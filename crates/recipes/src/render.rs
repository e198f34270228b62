//! A recipe's files: listing, hashing, and copying with `{{NAME}}` filled.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::meta::{is_variable_name, Metadata};
use crate::RecipeError;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecipeError + '_ {
    move |source| RecipeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Every file under `dir`, relative to it, sorted. Symlinks are not followed.
pub(crate) fn files(dir: &Path) -> Result<Vec<PathBuf>, RecipeError> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), RecipeError> {
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(io(&path))?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() {
                out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

/// `sha256:` over every file's relative path, executable bit and bytes, in
/// path order: any change to any file changes it.
pub fn content_hash(dir: &Path) -> Result<String, RecipeError> {
    let mut hasher = Sha256::new();
    for rel in files(dir)? {
        let path = dir.join(&rel);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let mode = std::fs::metadata(&path)
            .map_err(io(&path))?
            .permissions()
            .mode();
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0, u8::from(mode & 0o111 != 0)]);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// The `{{NAME}}` placeholders of `text` with their 1-based lines.
fn placeholders(text: &str) -> Vec<(usize, &str)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(start) = rest.find("{{") {
            let after = &rest[start + 2..];
            match after.find("}}") {
                Some(end) if is_variable_name(&after[..end]) => {
                    found.push((i + 1, &after[..end]));
                    rest = &after[end + 2..];
                }
                _ => rest = after,
            }
        }
    }
    found
}

/// Refuses a `{{NAME}}` in `file` that the recipe does not declare.
pub(crate) fn validate_placeholders(
    meta: &Metadata,
    dir: &Path,
    file: &Path,
) -> Result<(), RecipeError> {
    let path = dir.join(file);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(()); // not text: copied as is
    };
    for (line, name) in placeholders(&text) {
        if meta.variable(name).is_none() {
            return Err(RecipeError::UndeclaredVariable {
                recipe: meta.name.clone(),
                file: path,
                line,
                name: name.to_string(),
            });
        }
    }
    Ok(())
}

fn fill(text: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = text.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{{{name}}}}}"), value);
    }
    out
}

/// Copies the recipe in `src` to `dest` (created; must not hold files), with
/// every declared `{{NAME}}` replaced by `values[NAME]`. Keeps file modes.
pub fn render_into(
    src: &Path,
    dest: &Path,
    values: &BTreeMap<String, String>,
) -> Result<(), RecipeError> {
    for rel in files(src)? {
        let from = src.join(&rel);
        let to = dest.join(&rel);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let bytes = std::fs::read(&from).map_err(io(&from))?;
        let bytes = match String::from_utf8(bytes) {
            Ok(text) => fill(&text, values).into_bytes(),
            Err(e) => e.into_bytes(),
        };
        std::fs::write(&to, bytes).map_err(io(&to))?;
        let mode = std::fs::metadata(&from).map_err(io(&from))?.permissions();
        std::fs::set_permissions(&to, mode).map_err(io(&to))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_upper_snake_names_only() {
        let text = "a {{PORT}} b {{ item }} {{lower}}\n{{DB_NAME}}{{X1}} {{ }}";
        assert_eq!(
            placeholders(text),
            vec![(1, "PORT"), (2, "DB_NAME"), (2, "X1")]
        );
        let values = BTreeMap::from([("PORT".to_string(), "8080".to_string())]);
        assert_eq!(
            fill("listen {{PORT}}; {{ item }}", &values),
            "listen 8080; {{ item }}"
        );
    }
}
