//! `cp`: files and folders between the host and nodes, through tar streams.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rand::Rng;

use crate::backend::{ExecIo, ExecRequest};
use crate::host::{self};
use crate::{NodeExec, SandboxError};

use super::Engine;

impl Engine {
    /// Copies a host file or folder into a node. If `dest` is an existing folder
    /// the source goes inside it, otherwise it is created under that name.
    pub fn copy_to_node(
        &self,
        id: &str,
        node: &str,
        src: &Path,
        dest: &str,
    ) -> Result<(), SandboxError> {
        std::fs::symlink_metadata(src).map_err(|e| SandboxError::io("reading", src, e))?;
        let (parent, name) = split_path(src)?;
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&parent)
            .arg("-cf")
            .arg("-")
            .arg("--")
            .arg(&name)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| host::spawn_error("tar", e))?;
        let stdout = tar.stdout.take().expect("piped");
        let script = r#"set -e
d="$1"; n="$2"
if [ -d "$d" ]; then tar -xf - -C "$d" --no-same-owner; exit 0; fi
p=$(dirname -- "$d"); mkdir -p -- "$p"
t=$(mktemp -d "$p/.rehearse-cp.XXXXXX")
trap 'rm -rf -- "$t"' EXIT
tar -xf - -C "$t" --no-same-owner
rm -rf -- "$d"; mv -- "$t/$n" "$d""#;
        let req = ExecRequest {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                script.into(),
                "rehearse-cp".into(),
                dest.into(),
                name.clone(),
            ],
            ..Default::default()
        };
        let written = NodeExec::capture(self, id, node, &req, Some(Box::new(stdout)))?;
        let tar_out = tar
            .wait_with_output()
            .map_err(|e| SandboxError::io("waiting for", "tar", e))?;
        if !tar_out.status.success() {
            return Err(SandboxError::BadPath(format!(
                "could not read {}: {}",
                src.display(),
                String::from_utf8_lossy(&tar_out.stderr).trim()
            )));
        }
        if !written.success() {
            return Err(SandboxError::BadPath(format!(
                "could not write {node}:{dest}: {}",
                written.stderr.trim()
            )));
        }
        Ok(())
    }

    /// Copies a node's file or folder to the host, with the same naming rule.
    pub fn copy_from_node(
        &self,
        id: &str,
        node: &str,
        src: &str,
        dest: &Path,
    ) -> Result<(), SandboxError> {
        let src_path = Path::new(src);
        let (parent, name) = split_path(src_path)?;
        let req = ExecRequest {
            argv: vec![
                "tar".into(),
                "-C".into(),
                parent.display().to_string(),
                "-cf".into(),
                "-".into(),
                "--".into(),
                name.clone(),
            ],
            ..Default::default()
        };
        let (target_dir, final_name) = if dest.is_dir() {
            (dest.to_path_buf(), None)
        } else {
            let p = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::fs::create_dir_all(p).map_err(|e| SandboxError::io("creating", p, e))?;
            (p.to_path_buf(), Some(dest.to_path_buf()))
        };
        let staging = tempdir_in(&target_dir)?;
        let mut untar = Command::new("tar")
            .arg("-xf")
            .arg("-")
            .arg("-C")
            .arg(&staging)
            .arg("--no-same-owner")
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| host::spawn_error("tar", e))?;
        let mut sink = untar.stdin.take().expect("piped");
        let mut err = Vec::new();
        let result = self.exec(
            id,
            node,
            &req,
            ExecIo {
                stdin: None,
                stdout: &mut sink,
                stderr: &mut err,
            },
        );
        drop(sink);
        let untar_out = untar
            .wait_with_output()
            .map_err(|e| SandboxError::io("waiting for", "tar", e));
        let finish = (|| {
            let outcome = result?;
            if outcome.exit_code != 0 {
                return Err(SandboxError::BadPath(format!(
                    "could not read {node}:{src}: {}",
                    String::from_utf8_lossy(&err).trim()
                )));
            }
            let untar_out = untar_out?;
            if !untar_out.status.success() {
                return Err(SandboxError::BadPath(format!(
                    "could not write into {}: {}",
                    target_dir.display(),
                    String::from_utf8_lossy(&untar_out.stderr).trim()
                )));
            }
            let from = staging.join(&name);
            let to = final_name.unwrap_or_else(|| target_dir.join(&name));
            if to.is_dir() {
                let _ = std::fs::remove_dir_all(&to);
            }
            std::fs::rename(&from, &to).map_err(|e| SandboxError::io("moving into place", &to, e))
        })();
        let _ = std::fs::remove_dir_all(&staging);
        finish
    }
}

fn split_path(p: &Path) -> Result<(PathBuf, String), SandboxError> {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| SandboxError::BadPath(format!("{} names no file or folder", p.display())))?;
    let parent = p
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    Ok((parent, name))
}

fn tempdir_in(dir: &Path) -> Result<PathBuf, SandboxError> {
    let path = dir.join(format!(
        ".rehearse-cp.{}.{}",
        std::process::id(),
        rand::thread_rng().gen::<u32>()
    ));
    std::fs::create_dir(&path).map_err(|e| SandboxError::io("creating", &path, e))?;
    Ok(path)
}
