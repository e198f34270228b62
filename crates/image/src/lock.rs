//! Exclusive advisory locks between rehearse processes: one file per thing
//! guarded, locked with flock for as long as the returned guard lives. The
//! image cache and the engine above it share these.

use std::fs;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

/// Opening or locking a lock file failed: `action` says which.
#[derive(Debug)]
pub struct LockError {
    /// `opening` or `locking`.
    pub action: &'static str,
    pub source: std::io::Error,
}

/// Locks `path` exclusively, creating the file (not its folder) if needed.
/// Blocks until no other holder is left; the lock goes with the guard.
pub fn exclusive(path: &Path) -> Result<Flock<fs::File>, LockError> {
    Flock::lock(open(path)?, FlockArg::LockExclusive).map_err(|(_, e)| LockError {
        action: "locking",
        source: e.into(),
    })
}

/// Like [`exclusive`], but returns `None` at once when another process holds
/// the lock.
pub fn try_exclusive(path: &Path) -> Result<Option<Flock<fs::File>>, LockError> {
    match Flock::lock(open(path)?, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(LockError {
            action: "locking",
            source: e.into(),
        }),
    }
}

/// The lock file, created if needed (its folder must exist).
fn open(path: &Path) -> Result<fs::File, LockError> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|source| LockError {
            action: "opening",
            source,
        })
}
