//! Golden images: root filesystems built once by `mmdebstrap` from an [`ImageSpec`],
//! prepared for fast container boot, shifted to a fixed UID range, and kept in a
//! content-addressed cache so that every node of every cluster shares one copy.

mod build;
mod cache;
mod customize;
mod error;
mod import;
mod keyring;
pub mod lock;
mod saved;
mod shift;

pub use cache::{Image, ImageCache};
pub use error::ImageError;
pub use rehearse_spec::ImageSpec;
pub use shift::{shift_tree, UID_BASE, UID_RANGE};

use std::path::PathBuf;

/// The state directory: `REHEARSE_HOME`, or `/var/lib/rehearse`.
pub fn state_dir() -> PathBuf {
    std::env::var_os("REHEARSE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/rehearse"))
}

/// The history directory: `REHEARSE_HISTORY`, or the state directory. The
/// run store (SQLite), every run's folder (reports, logs) and recipe proofs
/// live here; clusters, images and the package cache stay in the state
/// directory. A test suite points it at a folder of its own so the user's
/// history never sees its runs, while it shares the user's image cache.
pub fn history_dir() -> PathBuf {
    history_dir_for(&state_dir())
}

/// The history directory of an engine over `state_dir`: `REHEARSE_HISTORY`,
/// or `state_dir` itself.
pub fn history_dir_for(state_dir: &std::path::Path) -> PathBuf {
    std::env::var_os("REHEARSE_HISTORY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| state_dir.to_path_buf())
}

/// Packages every image gets, whatever its spec says: what a node needs to boot
/// systemd, accept SSH, be driven by Ansible and be inspected by checks.
pub const BASE_PACKAGES: &[&str] = &[
    // In Debian's minbase already; Ubuntu's leaves it out (priority important there).
    "apt",
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "openssh-client",
    "python3",
    "python3-apt",
    "iproute2",
    "iputils-ping",
    "kmod",
    "netcat-openbsd",
    "procps",
    "curl",
    "ca-certificates",
    "sudo",
];
