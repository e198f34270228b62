//! Disks: one ext4 base per (golden image, kernel), kept next to the image, and
//! a qcow2 copy-on-write overlay per node over it, so creating a node copies
//! nothing and a node's changes die with its cluster.
//!
//! Golden images are stored shifted to the UID range containers map to (root
//! is host UID `UID_BASE`). A VM's disk needs real ownership, so the base is
//! built from a copy with the shift undone (owners, setuid bits and file
//! capabilities kept), plus the kernel's modules so `modprobe` works inside.

use std::fs;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use rehearse_image::{Image, UID_RANGE};

use crate::host;
use crate::SandboxError;

use super::kernel::Kernel;

/// Room left free on a node's root filesystem for packages and data. The base
/// is a sparse file: free space costs nothing on the host.
const FREE_SPACE: u64 = 8 << 30;

const CAPS_XATTR: &str = "security.capability";

/// Bumped when what a base disk holds changes, so older disks are not reused.
const DISK_LAYOUT: &str = "l2";

/// The base disk of `image` for `kernel`, built on first use. The caller holds
/// the VM cache lock.
pub fn ensure_base(image: &Image, kernel: &Kernel) -> Result<PathBuf, SandboxError> {
    let image_dir = image
        .rootfs()
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| image.rootfs());
    let path = image_dir.join(format!("vm-{}-{DISK_LAYOUT}.ext4", kernel.id));
    if path.is_file() {
        return Ok(path);
    }
    host::require_tools(&["mkfs.ext4", "cp", "depmod"])?;
    let staging = image_dir.join(format!(".vm-staging-{}", std::process::id()));
    let tmp = image_dir.join(format!(
        ".vm-{}-{DISK_LAYOUT}.ext4.tmp{}",
        kernel.id,
        std::process::id()
    ));
    let result = (|| {
        let _ = fs::remove_dir_all(&staging);
        host::run(
            "copying the image for a VM disk",
            Command::new("cp")
                .args(["-a", "--preserve=all", "--reflink=auto"])
                .arg(image.rootfs())
                .arg(&staging),
        )?;
        unshift_tree(&staging, image.uid_base)?;
        let modules = staging.join("lib/modules");
        fs::create_dir_all(&modules).map_err(|e| SandboxError::io("creating", &modules, e))?;
        host::run(
            "copying the kernel modules into a VM disk",
            Command::new("cp")
                .args(["-a", "--no-preserve=ownership"])
                .arg(kernel.modules())
                .arg(modules.join(&kernel.release)),
        )?;
        // Debian's kernel package leaves the module index to its postinst:
        // build it, so `modprobe NAME` works in the guest.
        host::run(
            "indexing the kernel modules of a VM disk",
            Command::new("depmod")
                .arg("-b")
                .arg(&staging)
                .arg(&kernel.release),
        )?;
        let used = tree_size(&staging);
        let size = used + used / 4 + FREE_SPACE;
        let _ = fs::remove_file(&tmp);
        let file = fs::File::create(&tmp).map_err(|e| SandboxError::io("creating", &tmp, e))?;
        file.set_len(size)
            .map_err(|e| SandboxError::io("sizing", &tmp, e))?;
        drop(file);
        host::run(
            "building the ext4 base of a VM disk",
            Command::new("mkfs.ext4")
                .args([
                    "-q",
                    "-F",
                    "-L",
                    "rehearse-root",
                    "-E",
                    "root_owner=0:0",
                    "-d",
                ])
                .arg(&staging)
                .arg(&tmp),
        )?;
        fs::rename(&tmp, &path).map_err(|e| SandboxError::io("storing", &path, e))?;
        Ok(path.clone())
    })();
    let _ = fs::remove_dir_all(&staging);
    let _ = fs::remove_file(&tmp);
    result
}

/// Undoes the image's UID shift on a copy: every owner goes back to the IDs
/// the distribution gave it.
fn unshift_tree(root: &Path, base: u32) -> Result<(), SandboxError> {
    let meta = fs::symlink_metadata(root).map_err(|e| SandboxError::io("reading", root, e))?;
    let back = |id: u32| {
        if id >= base && id < base + UID_RANGE {
            id - base
        } else {
            id
        }
    };
    let is_link = meta.file_type().is_symlink();
    let caps = if is_link {
        None
    } else {
        xattr::get(root, CAPS_XATTR).ok().flatten()
    };
    lchown(root, Some(back(meta.uid())), Some(back(meta.gid())))
        .map_err(|e| SandboxError::io("changing owner of", root, e))?;
    if !is_link {
        // chown clears setuid/setgid and file capabilities: put them back.
        let mode = meta.mode() & 0o7777;
        if mode & 0o6000 != 0 {
            fs::set_permissions(root, fs::Permissions::from_mode(mode))
                .map_err(|e| SandboxError::io("restoring mode of", root, e))?;
        }
        if let Some(caps) = caps {
            let _ = xattr::set(root, CAPS_XATTR, &caps);
        }
    }
    if meta.is_dir() {
        for entry in fs::read_dir(root).map_err(|e| SandboxError::io("listing", root, e))? {
            let entry = entry.map_err(|e| SandboxError::io("listing", root, e))?;
            unshift_tree(&entry.path(), base)?;
        }
    }
    Ok(())
}

fn tree_size(root: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(root) else {
        return 0;
    };
    let own = meta.blocks() * 512 + 4096;
    if !meta.is_dir() {
        return own;
    }
    own + fs::read_dir(root)
        .map(|entries| entries.flatten().map(|e| tree_size(&e.path())).sum::<u64>())
        .unwrap_or(0)
}

/// Creates the node's overlay over `base` unless it exists (a reboot keeps it).
pub fn ensure_overlay(base: &Path, overlay: &Path) -> Result<(), SandboxError> {
    if overlay.is_file() {
        return Ok(());
    }
    host::run(
        "creating a VM node's disk overlay",
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(base)
            .arg(overlay),
    )?;
    Ok(())
}
