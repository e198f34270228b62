//! Exclusive advisory locks between rehearse processes: one file per thing
//! guarded, locked with flock for as long as the returned guard lives.

use std::fs;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::SandboxError;

/// Locks `path` exclusively, creating the file (not its folder) if needed.
/// Blocks until no other holder is left; the lock goes with the guard.
pub(crate) fn exclusive(path: &Path) -> Result<Flock<fs::File>, SandboxError> {
    Flock::lock(open(path)?, FlockArg::LockExclusive)
        .map_err(|(_, e)| SandboxError::io("locking", path, e.into()))
}

/// Locks the folder `dir` (created if needed) through its `.lock` file.
pub(crate) fn exclusive_in(dir: &Path) -> Result<Flock<fs::File>, SandboxError> {
    fs::create_dir_all(dir).map_err(|e| SandboxError::io("creating", dir, e))?;
    exclusive(&dir.join(".lock"))
}

/// Like [`exclusive`], but returns `None` at once when another process holds
/// the lock.
pub(crate) fn try_exclusive(path: &Path) -> Result<Option<Flock<fs::File>>, SandboxError> {
    match Flock::lock(open(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(SandboxError::io("locking", path, e.into())),
    }
}

/// The lock file, created if needed (its folder must exist).
fn open(path: &Path) -> Result<fs::File, SandboxError> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| SandboxError::io("opening", path, e))
}
