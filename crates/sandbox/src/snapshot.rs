//! Snapshots of a cluster's disks, and what they are made of.
//!
//! A node's disk is an overlay: the shared golden image below, the node's own
//! changes in its upper layer. A snapshot is a copy of every node's upper
//! layer taken while all nodes are frozen, under
//! `<cluster>/snapshots/<name>/<node>/` with a `manifest.json`. Upper layers
//! hold overlayfs' own records (whiteouts: character devices 0/0 for deleted
//! files; `trusted.overlay.*` attributes for opaque folders) and files owned
//! by the node's shifted users, so copies keep devices, owners and extended
//! attributes. Copies are reflinks (copy-on-write) where the filesystem
//! supports them, plain copies elsewhere; the manifest says which.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::host;
use crate::SandboxError;

/// The folder of a cluster's snapshots, under the cluster's folder.
pub const SNAPSHOTS_DIR: &str = "snapshots";
const MANIFEST: &str = "manifest.json";

/// How the layers of a snapshot were copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CopyMode {
    /// Copy-on-write clones: blocks are shared until either side changes.
    Reflink,
    /// Full copies: the filesystem cannot clone.
    Copy,
}

/// One node's part of a snapshot.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotNode {
    pub name: String,
    /// The image below the captured layer; restoring needs the same one.
    pub image: String,
    pub image_id: String,
    /// Disk space the copy of the layer takes, in bytes.
    pub bytes: u64,
    /// Entries in the layer (files, folders, links, whiteouts).
    pub files: u64,
}

/// A snapshot's manifest.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Snapshot {
    pub name: String,
    pub cluster: String,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// How long the nodes were frozen while their layers were copied (ms).
    pub frozen_ms: u64,
    /// How long taking the snapshot took in all (ms).
    pub took_ms: u64,
    pub copy: CopyMode,
    /// Disk space of all the copies, in bytes.
    pub bytes: u64,
    pub nodes: Vec<SnapshotNode>,
}

impl Snapshot {
    /// The folder holding a node's copy of its layer.
    pub fn node_dir(snapshot_dir: &Path, node: &str) -> PathBuf {
        snapshot_dir.join(node)
    }

    pub(crate) fn write(&self, dir: &Path) -> Result<(), SandboxError> {
        let path = dir.join(MANIFEST);
        let text = serde_json::to_string_pretty(self).expect("manifest serialises");
        fs::write(&path, text).map_err(|e| SandboxError::io("writing", &path, e))
    }

    /// Reads the manifest in `dir`; `None` for a folder that is no complete snapshot.
    pub(crate) fn read(dir: &Path) -> Option<Snapshot> {
        let text = fs::read_to_string(dir.join(MANIFEST)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// Snapshot names become folder names: the rule of image names.
pub fn validate_name(what: &str, name: &str) -> Result<(), SandboxError> {
    let ok_first = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let ok_rest = |c: char| ok_first(c) || matches!(c, '.' | '_' | '-');
    let mut chars = name.chars();
    let valid = name.len() <= 64 && chars.next().is_some_and(ok_first) && chars.all(ok_rest);
    if valid {
        Ok(())
    } else {
        Err(SandboxError::Refused(format!(
            "{what} \"{}\" is not valid: use 1 to 64 characters [a-z0-9][a-z0-9._-]* (no slashes or spaces), e.g. before-upgrade",
            name.escape_default()
        )))
    }
}

/// Copies the tree `src` to `dst` (which must not exist) with owners, modes,
/// times, hard links, device nodes and extended attributes (`trusted.*`
/// included), cloning file contents where the filesystem allows.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<(), SandboxError> {
    host::run(
        "copying a node's layer",
        Command::new("cp")
            .arg("-a")
            .arg("--preserve=xattr")
            .arg("--reflink=auto")
            .arg("--no-target-directory")
            .arg(src)
            .arg(dst),
    )
    .map(|_| ())
}

/// Whether files in `dir` can be cloned (FICLONE): btrfs, XFS with reflink,
/// bcachefs do; ext4 does not. Measured, not guessed from the file system's name.
pub(crate) fn reflink_supported(dir: &Path) -> bool {
    let a = dir.join(format!(".reflink-probe-{}", std::process::id()));
    let b = dir.join(format!(".reflink-probe-{}.clone", std::process::id()));
    let result = (|| -> std::io::Result<bool> {
        fs::write(&a, b"probe")?;
        let src = fs::File::open(&a)?;
        let dst = fs::File::create(&b)?;
        use std::os::fd::AsRawFd;
        // FICLONE = _IOW(0x94, 9, int)
        const FICLONE: libc::c_ulong = 0x4004_9409;
        // SAFETY: both descriptors are open files we own for the duration of the
        // call; FICLONE takes the source descriptor as its argument.
        let rc = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) };
        Ok(rc == 0)
    })();
    let _ = fs::remove_file(&a);
    let _ = fs::remove_file(&b);
    result.unwrap_or(false)
}

/// Disk space (bytes) and number of entries of a tree.
pub(crate) fn tree_size(dir: &Path) -> (u64, u64) {
    let (mut bytes, mut files) = (0u64, 0u64);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&p) else {
            continue;
        };
        bytes += meta.blocks() * 512;
        files += 1;
        if meta.is_dir() {
            if let Ok(entries) = fs::read_dir(&p) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        }
    }
    (bytes, files.saturating_sub(1))
}

pub(crate) fn remove_tree(path: &Path) -> Result<(), SandboxError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(SandboxError::io("removing", path, e)),
    }
}

/// Writes the merged view of `upper` over `lower` (deletions applied, opaque
/// folders honoured, as the node saw it) into `dest`, which must not exist.
/// The kernel does the merge: `upper` and `lower` are stacked as the two
/// layers of a read-only overlay mounted at `mount_point` for the copy.
pub(crate) fn copy_merged(
    lower: &Path,
    upper: &Path,
    mount_point: &Path,
    dest: &Path,
) -> Result<(), SandboxError> {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    fs::create_dir_all(mount_point).map_err(|e| SandboxError::io("creating", mount_point, e))?;
    let options = format!("lowerdir={}:{}", upper.display(), lower.display());
    mount(
        Some("overlay"),
        mount_point,
        Some("overlay"),
        MsFlags::MS_RDONLY,
        Some(options.as_str()),
    )
    .map_err(|e| SandboxError::io("mounting the merged layers at", mount_point, e.into()))?;
    let copied = copy_tree(mount_point, dest);
    let unmounted = umount2(mount_point, MntFlags::MNT_DETACH)
        .map_err(|e| SandboxError::io("unmounting", mount_point, e.into()));
    copied?;
    unmounted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_would_escape_their_folder_are_refused() {
        for bad in [
            "",
            "a/b",
            "../x",
            ".hidden",
            "Upper",
            "with space",
            &"x".repeat(65),
        ] {
            let e = validate_name("snapshot name", bad).unwrap_err().to_string();
            assert!(e.contains("[a-z0-9]"), "{bad}: {e}");
        }
        for good in ["before-upgrade", "v1.2", "0", "a_b"] {
            validate_name("snapshot name", good).unwrap();
        }
    }

    #[test]
    fn a_copy_keeps_links_modes_and_counts_entries() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("etc/sub")).unwrap();
        fs::write(src.join("etc/a"), "a").unwrap();
        std::os::unix::fs::symlink("a", src.join("etc/link")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(src.join("etc/a"), fs::Permissions::from_mode(0o640)).unwrap();
        copy_tree(&src, &t.path().join("dst")).unwrap();
        let dst = t.path().join("dst");
        assert_eq!(fs::read_to_string(dst.join("etc/a")).unwrap(), "a");
        assert_eq!(fs::read_link(dst.join("etc/link")).unwrap(), Path::new("a"));
        assert_eq!(
            fs::metadata(dst.join("etc/a"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o640
        );
        assert_eq!(tree_size(&dst).1, 4, "etc, etc/sub, etc/a, etc/link");
        assert!(copy_tree(&src, &t.path().join("no/such/parent/dst")).is_err());
    }
}
