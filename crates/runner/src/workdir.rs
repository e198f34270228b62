//! Where a step's files go: a folder of its own under the run's work folder on
//! the host, and names under `/run/rehearse` on the nodes.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Pass;

/// The runner's folder on nodes: a tmpfs, gone at reboot, outside the `/tmp`
/// and home folders a scenario's hygiene checks look at.
pub(crate) const NODE_RUN_DIR: &str = "/run/rehearse";

/// A name unique to this step run, for files on nodes: the host process and a
/// counter, so concurrent runners against one cluster do not collide.
pub(crate) fn token() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!(
        "step-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates `<work_dir>/<step-name>.<pass>` (or `.2`, `.3`, ... when a step of
/// the same name ran before in this work folder) and returns it.
pub(crate) fn step_dir(work_dir: &Path, step_name: &str, pass: Pass) -> Result<PathBuf, String> {
    std::fs::create_dir_all(work_dir).map_err(|e| {
        format!(
            "cannot create the run's work folder {}: {e}",
            work_dir.display()
        )
    })?;
    let base = format!("{}.{}", slug(step_name), pass.as_str());
    for n in 1.. {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}.{n}")
        };
        let dir = work_dir.join(name);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(format!(
                    "cannot create the step's log folder {}: {e}",
                    dir.display()
                ))
            }
        }
    }
    unreachable!("an unbounded range always yields a free name")
}

/// A file-name-safe form of a step name: lowercase letters, digits and `-`.
pub(crate) fn slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('-') {
            s.push('-');
        }
        if s.len() >= 48 {
            break;
        }
    }
    let s = s.trim_matches('-');
    if s.is_empty() {
        "step".to_string()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("Install nginx (web)"), "install-nginx-web");
        assert_eq!(slug("scripts/web.sh"), "scripts-web-sh");
        assert_eq!(slug("///"), "step");
    }

    #[test]
    fn steps_of_the_same_name_get_their_own_folders() {
        let dir = tempfile::tempdir().unwrap();
        let a = step_dir(dir.path(), "web", Pass::First).unwrap();
        let b = step_dir(dir.path(), "web", Pass::First).unwrap();
        let c = step_dir(dir.path(), "web", Pass::Second).unwrap();
        assert_eq!(a.file_name().unwrap(), "web.first");
        assert_eq!(b.file_name().unwrap(), "web.first.2");
        assert_eq!(c.file_name().unwrap(), "web.second");
    }

    #[test]
    fn tokens_differ() {
        assert_ne!(token(), token());
    }
}
