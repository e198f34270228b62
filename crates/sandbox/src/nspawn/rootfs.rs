//! A node's root: an overlay whose lower layer is the golden image and whose
//! upper layer holds the node's own changes.

use std::fs;
use std::os::unix::fs::{lchown, symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::seed::SeedFile;
use crate::SandboxError;

/// Mounts the node's overlay at `<node_dir>/root` and returns that path.
///
/// The image's files and the node's layer are owned on disk by the image's
/// range (`image_base`). With `node_base`, both layers are idmapped bind
/// mounts (`<node_dir>/image`, `<node_dir>/layer`) that show that range as
/// the node's own, so the node sees its files owned by its users while
/// nothing on disk changes; without, the node runs in the image's range.
pub fn mount_overlay(
    lower: &Path,
    node_dir: &Path,
    image_base: u32,
    node_base: Option<u32>,
) -> Result<PathBuf, SandboxError> {
    let upper = node_dir.join("upper");
    let work = node_dir.join("work");
    let root = node_dir.join("root");
    for d in [&upper, &work, &root] {
        fs::create_dir_all(d).map_err(|e| SandboxError::io("creating", d, e))?;
    }
    // The overlay's root directory takes its owner from the upper layer: it must
    // be the node's root user.
    lchown(&upper, Some(image_base), Some(image_base))
        .map_err(|e| SandboxError::io("changing owner of", &upper, e))?;
    fs::set_permissions(&upper, fs::Permissions::from_mode(0o755))
        .map_err(|e| SandboxError::io("setting mode of", &upper, e))?;
    let (lower, upper, work) = match node_base {
        None => (lower.to_path_buf(), upper, work),
        Some(node_base) => {
            let image_view = node_dir.join("image");
            let layer_view = node_dir.join("layer");
            for d in [&image_view, &layer_view] {
                // A view left from before a restore or a reboot is remade.
                if mounts_below(d).contains(d) {
                    let _ = umount2(d, MntFlags::MNT_DETACH);
                }
                fs::create_dir_all(d).map_err(|e| SandboxError::io("creating", d, e))?;
            }
            // Host root keeps its own id so overlayfs can manage its work
            // folder through the view; the node's users cannot reach it.
            let ns = super::idmap::MappingNs::new(&[
                super::idmap::IdRange {
                    inside: 0,
                    outside: 0,
                    count: 1,
                },
                super::idmap::IdRange {
                    inside: image_base,
                    outside: node_base,
                    count: super::UID_RANGE,
                },
            ])?;
            super::idmap::bind_idmapped(lower, &image_view, &ns)?;
            super::idmap::bind_idmapped(node_dir, &layer_view, &ns)?;
            (
                image_view,
                layer_view.join("upper"),
                layer_view.join("work"),
            )
        }
    };
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    // A disposable node's layer is never synced to disk: with `volatile`,
    // overlayfs skips every sync of the upper layer, so what a node wrote and
    // its cluster then deletes (packages installed by a run, then `down`) is
    // dropped from memory instead of flushed on unmount first. overlayfs
    // marks such a layer (`work/work/incompat/volatile`) and refuses to mount
    // it again while the mark is there, since after a host crash the layer
    // may be torn; a layer is only mounted again within the host boot that
    // wrote it (a node reboot, a restore: clusters do not outlive the host),
    // so the mark is cleared first. Kernels without `volatile` (before 5.10)
    // mount as before.
    let _ = fs::remove_dir(node_dir.join("work/work/incompat/volatile"));
    let mounted = mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        MsFlags::empty(),
        Some(format!("{options},volatile").as_str()),
    );
    match mounted {
        Err(nix::errno::Errno::EINVAL) => mount(
            Some("overlay"),
            &root,
            Some("overlay"),
            MsFlags::empty(),
            Some(options.as_str()),
        ),
        other => other,
    }
    .map_err(|e| SandboxError::io("mounting the overlay root at", &root, e.into()))?;
    Ok(root)
}

/// Writes the seed files into the node's root, owned by the node's users.
pub fn install_seeds(root: &Path, seeds: &[SeedFile], uid_base: u32) -> Result<(), SandboxError> {
    for seed in seeds {
        let rel = Path::new(&seed.path);
        let path = root.join(rel.strip_prefix("/").unwrap_or(rel));
        create_parents(root, &path, uid_base)?;
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => {
                return Err(SandboxError::io(
                    "writing",
                    &path,
                    std::io::Error::other("a directory is in the way"),
                ))
            }
            Ok(_) => fs::remove_file(&path).map_err(|e| SandboxError::io("replacing", &path, e))?,
            Err(_) => {}
        }
        if seed.is_symlink() {
            let target = String::from_utf8_lossy(&seed.contents).into_owned();
            symlink(&target, &path).map_err(|e| SandboxError::io("linking", &path, e))?;
        } else {
            fs::write(&path, &seed.contents).map_err(|e| SandboxError::io("writing", &path, e))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(seed.mode))
                .map_err(|e| SandboxError::io("setting mode of", &path, e))?;
        }
        lchown(&path, Some(uid_base + seed.uid), Some(uid_base + seed.gid))
            .map_err(|e| SandboxError::io("changing owner of", &path, e))?;
    }
    Ok(())
}

fn create_parents(root: &Path, path: &Path, uid_base: u32) -> Result<(), SandboxError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    let rel = parent.strip_prefix(root).unwrap_or(parent);
    let mut current = root.to_path_buf();
    for comp in rel.components() {
        if let Component::Normal(c) = comp {
            current.push(c);
            if !current.exists() {
                fs::create_dir(&current).map_err(|e| SandboxError::io("creating", &current, e))?;
                // Private for home folders' dot-dirs (.ssh), readable otherwise.
                let mode = if c.to_string_lossy().starts_with('.') {
                    0o700
                } else {
                    0o755
                };
                fs::set_permissions(&current, fs::Permissions::from_mode(mode))
                    .map_err(|e| SandboxError::io("setting mode of", &current, e))?;
                lchown(&current, Some(uid_base), Some(uid_base))
                    .map_err(|e| SandboxError::io("changing owner of", &current, e))?;
            }
        }
    }
    Ok(())
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_below(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mount_path)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    points.dedup();
    points
}

/// Unmounts everything at or below `dir`.
pub fn unmount_below(dir: &Path) -> Result<(), SandboxError> {
    for point in mounts_below(dir) {
        if let Err(e) = umount2(&point, MntFlags::MNT_DETACH) {
            if e != nix::errno::Errno::EINVAL && e != nix::errno::Errno::ENOENT {
                return Err(SandboxError::io("unmounting", &point, e.into()));
            }
        }
    }
    Ok(())
}

fn unescape_mount_path(s: &str) -> PathBuf {
    // mountinfo escapes space, tab, newline and backslash as octal.
    let mut out = Vec::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(out))
}
