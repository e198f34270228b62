//! World-writable files and setuid/setgid binaries a node gained over its
//! image, read from the node's copy-on-write layers on the host.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use rehearse_checks::CheckResult;
use rehearse_sandbox::SandboxError;

use super::Probe;
use crate::Finding;

pub(super) fn probe(p: &Probe<'_>, node: &str) -> Result<Vec<CheckResult>, SandboxError> {
    let upper = p
        .engine
        .cluster_dir(p.cluster)
        .join("nodes")
        .join(node)
        .join("upper");
    if !upper.is_dir() {
        return Err(SandboxError::Refused(format!(
            "node {node} has no copy-on-write layer to compare with its image (the files probe needs the nspawn backend)"
        )));
    }
    let node_dir = upper.parent().unwrap_or(&upper).to_path_buf();
    let (writable, setid) = added_files(&node_dir, &upper);
    let ms = p.elapsed_ms();
    Ok(vec![
        Finding {
            name: format!("no world-writable file added on {node}"),
            node,
            kind: "probe:files",
            subject: "world-writable".into(),
            passed: writable.is_empty(),
            expected: json!({ "world_writable": [] }),
            actual: json!({ "world_writable": writable }),
            message: format!("world-writable: {}", writable.join(", ")),
        }
        .check(ms),
        Finding {
            name: format!("no setuid/setgid binary added on {node}"),
            node,
            kind: "probe:files",
            subject: "setuid".into(),
            passed: setid.is_empty(),
            expected: json!({ "setuid_setgid": [] }),
            actual: json!({ "setuid_setgid": setid }),
            message: format!("setuid/setgid: {}", setid.join(", ")),
        }
        .check(ms),
    ])
}

/// World-writable files (and folders without the sticky bit) and
/// setuid/setgid binaries that the node has now and its image did not: the
/// node's copy-on-write layers are walked, each candidate is taken as it is
/// now in the node's root, and compared with the same path in the image, so a
/// file merely copied up (touched, upgraded, chmod-ed to the same mode) is not
/// reported.
fn added_files(node_dir: &Path, upper: &Path) -> (Vec<String>, Vec<String>) {
    let root = node_dir.join("root");
    let lowers = lower_dirs(&root);
    // Layers of the node's own changes: its upper, and any snapshot layers
    // between it and the image (every lower but the last).
    let mut layers = vec![upper.to_path_buf()];
    if lowers.len() > 1 {
        layers.extend(lowers[..lowers.len() - 1].iter().cloned());
    }
    let image = lowers.last();
    let mounted = !lowers.is_empty();
    let mut candidates = std::collections::BTreeSet::new();
    for layer in &layers {
        walk(layer, layer, &mut candidates);
    }
    let mode_of = |base: &Path, rel: &Path| {
        std::fs::symlink_metadata(base.join(rel))
            .ok()
            .filter(|m| m.is_file() || m.is_dir())
            .map(|m| (m.is_dir(), m.permissions().mode()))
    };
    let mut writable = Vec::new();
    let mut setid = Vec::new();
    for rel in candidates {
        // As it is now; without the mounted root (node stopped), the layer's copy.
        let now = if mounted {
            mode_of(&root, &rel)
        } else {
            layers.iter().find_map(|l| mode_of(l, &rel))
        };
        let Some((dir, mode)) = now else { continue };
        let before = image.and_then(|i| mode_of(i, &rel)).map(|(_, m)| m);
        let shown = format!("/{}", rel.display());
        if is_writable(dir, mode) && !before.is_some_and(|b| is_writable(dir, b)) {
            writable.push(shown.clone());
        }
        if !dir && mode & 0o6000 != 0 && before.is_none_or(|b| b & 0o6000 != mode & 0o6000) {
            setid.push(shown);
        }
    }
    (writable, setid)
}

/// Anyone may write it: a file with the world-write bit, or a folder with it
/// and without the sticky bit (`/tmp` is fine).
fn is_writable(dir: bool, mode: u32) -> bool {
    mode & 0o002 != 0 && !(dir && mode & 0o1000 != 0)
}

/// The lower layers of the overlay mounted at `root`, top first (the image
/// last); empty when it is not mounted.
fn lower_dirs(root: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let want = root.to_string_lossy();
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.get(4).map(|p| unescape(p)) != Some(want.to_string()) {
            continue;
        }
        let Some(options) = fields.last() else {
            continue;
        };
        for opt in options.split(',') {
            if let Some(list) = opt.strip_prefix("lowerdir=") {
                return split_lowers(list).into_iter().map(PathBuf::from).collect();
            }
        }
    }
    Vec::new()
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// `a:b\:c` → [a, b:c] (overlayfs escapes colons in layer paths).
fn split_lowers(list: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = list.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    out.last_mut().unwrap().push(n);
                }
            }
            ':' => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter()
        .filter(|s| !s.is_empty())
        .map(|s| unescape(&s))
        .collect()
}

/// Paths (relative to the layer) of files and folders that have a
/// world-write, setuid or setgid bit in this layer.
fn walk(root: &Path, dir: &Path, found: &mut std::collections::BTreeSet<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let rel = || path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        if meta.is_dir() {
            if is_writable(true, mode) {
                found.insert(rel());
            }
            walk(root, &path, found);
        } else if meta.is_file() && (mode & 0o002 != 0 || mode & 0o6000 != 0) {
            found.insert(rel());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_lower_lists_are_split_and_unescaped() {
        assert_eq!(
            split_lowers("/a/snap\\:1:/images/x/rootfs"),
            ["/a/snap:1", "/images/x/rootfs"]
        );
        assert_eq!(split_lowers("/img"), ["/img"]);
        assert_eq!(unescape("/var/my\\040dir"), "/var/my dir");
    }

    #[test]
    fn sticky_folders_are_not_world_writable_findings() {
        assert!(!is_writable(true, 0o41777));
        assert!(is_writable(true, 0o40777));
        assert!(is_writable(false, 0o100666));
        assert!(!is_writable(false, 0o100644));
    }
}
