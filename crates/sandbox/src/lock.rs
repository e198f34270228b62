//! Exclusive advisory locks between rehearse processes: one file per thing
//! guarded, locked with flock for as long as the returned guard lives.

use std::fs;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::SandboxError;

/// Locks `path` exclusively, creating the file (not its folder) if needed.
/// Blocks until no other holder is left; the lock goes with the guard.
pub(crate) fn exclusive(path: &Path) -> Result<Flock<fs::File>, SandboxError> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| SandboxError::io("opening", path, e))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| SandboxError::io("locking", path, e.into()))
}
