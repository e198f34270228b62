//! The engine's locks: [`rehearse_image::lock`]'s, with the engine's errors.

use std::fs;
use std::path::Path;

use nix::fcntl::Flock;
use rehearse_image::lock::LockError;

use crate::SandboxError;

fn error(path: &Path) -> impl FnOnce(LockError) -> SandboxError + '_ {
    move |e| SandboxError::io(e.action, path, e.source)
}

/// Locks `path` exclusively, creating the file (not its folder) if needed.
/// Blocks until no other holder is left; the lock goes with the guard.
pub(crate) fn exclusive(path: &Path) -> Result<Flock<fs::File>, SandboxError> {
    rehearse_image::lock::exclusive(path).map_err(error(path))
}

/// Locks the folder `dir` (created if needed) through its `.lock` file.
pub(crate) fn exclusive_in(dir: &Path) -> Result<Flock<fs::File>, SandboxError> {
    fs::create_dir_all(dir).map_err(|e| SandboxError::io("creating", dir, e))?;
    exclusive(&dir.join(".lock"))
}

/// Like [`exclusive`], but returns `None` at once when another process holds
/// the lock.
pub(crate) fn try_exclusive(path: &Path) -> Result<Option<Flock<fs::File>>, SandboxError> {
    rehearse_image::lock::try_exclusive(path).map_err(error(path))
}
