//! Shifting a root filesystem's ownership into a fixed UID/GID range once, at build
//! time, so nodes can run in a user namespace mapped to that range without
//! idmapped mounts (not available on overlayfs here) and without chowning a copy
//! of the tree for every node.

use std::fs;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::ImageError;

/// First host UID/GID of the range node root maps to. Outside the ranges that
/// `systemd-nspawn --private-users=pick` and useradd hand out.
pub const UID_BASE: u32 = 0x6000_0000;
/// Size of the range: the full 16-bit UID space a Debian system uses.
pub const UID_RANGE: u32 = 0x1_0000;

const CAPS_XATTR: &str = "security.capability";
const ACL_XATTRS: [&str; 2] = ["system.posix_acl_access", "system.posix_acl_default"];

/// Adds `base` to the owner and group of every entry below `root` (inclusive),
/// keeping setuid/setgid bits, file capabilities and POSIX ACL entries, which a
/// plain chown would clear or leave pointing at unmapped IDs. Idempotent: IDs
/// already inside the range are left alone.
pub fn shift_tree(root: &Path, base: u32) -> Result<u64, ImageError> {
    let mut count = 0;
    shift_entry(root, base, &mut count)?;
    Ok(count)
}

fn shift_entry(path: &Path, base: u32, count: &mut u64) -> Result<(), ImageError> {
    let meta = fs::symlink_metadata(path).map_err(|e| ImageError::io("reading", path, e))?;
    shift_one(path, &meta, base)?;
    *count += 1;
    if meta.is_dir() {
        let entries = fs::read_dir(path).map_err(|e| ImageError::io("listing", path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::io("listing", path, e))?;
            shift_entry(&entry.path(), base, count)?;
        }
    }
    Ok(())
}

fn shift_one(path: &Path, meta: &fs::Metadata, base: u32) -> Result<(), ImageError> {
    let in_range = |id: u32| id >= base && id < base + UID_RANGE;
    if in_range(meta.uid()) && in_range(meta.gid()) {
        return Ok(());
    }
    let is_link = meta.file_type().is_symlink();
    let caps = if is_link {
        None
    } else {
        xattr::get(path, CAPS_XATTR).ok().flatten()
    };
    lchown(
        path,
        Some(shifted(meta.uid(), base)),
        Some(shifted(meta.gid(), base)),
    )
    .map_err(|e| ImageError::io("changing owner of", path, e))?;
    if is_link {
        return Ok(());
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o6000 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode))
            .map_err(|e| ImageError::io("restoring mode of", path, e))?;
    }
    if let Some(caps) = caps {
        xattr::set(path, CAPS_XATTR, &caps)
            .map_err(|e| ImageError::io("restoring capabilities of", path, e))?;
    }
    for name in ACL_XATTRS {
        if let Ok(Some(acl)) = xattr::get(path, name) {
            let acl = shift_acl(&acl, base);
            xattr::set(path, name, &acl).map_err(|e| ImageError::io("shifting ACL of", path, e))?;
        }
    }
    Ok(())
}

fn shifted(id: u32, base: u32) -> u32 {
    if id >= base {
        id
    } else {
        id + base
    }
}

/// Linux stores POSIX ACLs as a 4-byte version header followed by 8-byte
/// entries (tag u16, perm u16, id u32); named user (2) and group (8) entries
/// carry an ID that must move with the tree.
fn shift_acl(acl: &[u8], base: u32) -> Vec<u8> {
    const ACL_USER: u16 = 0x02;
    const ACL_GROUP: u16 = 0x08;
    let mut out = acl.to_vec();
    for entry in out.get_mut(4..).unwrap_or_default().chunks_exact_mut(8) {
        let tag = u16::from_le_bytes([entry[0], entry[1]]);
        if tag == ACL_USER || tag == ACL_GROUP {
            let id = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
            entry[4..8].copy_from_slice(&shifted(id, base).to_le_bytes());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acl_entries_for_named_users_and_groups_move() {
        let mut acl = vec![2, 0, 0, 0];
        // user_obj (1), named group 4 (8), mask (0x10)
        for (tag, id) in [(1u16, u32::MAX), (8, 4), (0x10, u32::MAX)] {
            acl.extend_from_slice(&tag.to_le_bytes());
            acl.extend_from_slice(&7u16.to_le_bytes());
            acl.extend_from_slice(&id.to_le_bytes());
        }
        let out = shift_acl(&acl, UID_BASE);
        let id_of =
            |i: usize| u32::from_le_bytes(out[4 + i * 8 + 4..4 + i * 8 + 8].try_into().unwrap());
        assert_eq!(id_of(0), u32::MAX);
        assert_eq!(id_of(1), UID_BASE + 4);
        assert_eq!(id_of(2), u32::MAX);
    }

    #[test]
    fn shifting_twice_changes_nothing_more() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, "x").unwrap();
        lchown(&file, Some(0), Some(4)).unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o4755)).unwrap();
        shift_tree(dir.path(), UID_BASE).unwrap();
        shift_tree(dir.path(), UID_BASE).unwrap();
        let meta = fs::metadata(&file).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (UID_BASE, UID_BASE + 4));
        assert_eq!(
            meta.mode() & 0o7777,
            0o4755,
            "setuid bit survives the chown"
        );
    }
}
