//! Copy steps: a host file or folder (relative to the scenario folder) copied to
//! every target at once.
//!
//! Where it lands:
//! - a file goes to `dest`, or inside it when `dest` ends with `/` or is an
//!   existing folder;
//! - a folder's contents go into `dest` (created when missing; files of the same
//!   name are replaced, others kept), or into `dest/<name>` when `dest` ends
//!   with `/`. Copying the same folder again changes nothing.
//!
//! `mode` applies to the copied file, or to every regular file of a copied
//! folder (folders stay traversable). Changed files are found by comparing each
//! copied path's content hash and mode before and after.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Deserialize;

use crate::job::HELPER_TIMEOUT;
use crate::nodes::{self, ClusterNodes};
use crate::report::{and_others, NodeOutput, StepReport};
use crate::workdir::NODE_RUN_DIR;
use crate::{StepContext, CHANGED_FILES_CAP};

/// Prints, as JSON, where the copy lands and the mode and content hash of each
/// path it writes. Input (stdin): `{dest, name, is_dir, rels}`, or `{final, ...}`
/// to snapshot an already resolved destination.
const SNAPSHOT: &str = r#"
import hashlib, json, os, stat, sys
req = json.load(sys.stdin)
final = req.get("final")
if final is None:
    dest = req["dest"]
    inside = dest.endswith("/") or (not req["is_dir"] and os.path.isdir(dest))
    final = os.path.normpath(os.path.join(dest, req["name"]) if inside else dest)
paths = [os.path.join(final, r) for r in req["rels"]] if req["is_dir"] else [final]
files = {}
for p in paths:
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        continue
    except OSError as e:
        files[p] = "unreadable: %s" % e
        continue
    if stat.S_ISLNK(st.st_mode):
        files[p] = "link " + os.readlink(p)
    elif stat.S_ISREG(st.st_mode):
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        files[p] = "%o %s" % (stat.S_IMODE(st.st_mode), h.hexdigest())
    else:
        files[p] = "type %o" % stat.S_IFMT(st.st_mode)
print(json.dumps({"final": final, "files": files}))
"#;

/// Moves a staged folder's contents (`$1`) into `$2`, applying mode `$3` to its
/// regular files first; the staging folder goes either way.
const MERGE: &str = r#"s=$1; d=$2; mode=$3
trap 'rm -rf -- "$s"' EXIT
set -e
if [ -n "$mode" ]; then find "$s" -type f -exec chmod "$mode" {} +; fi
mkdir -p -- "$d"
cp -R -p -- "$s/." "$d/""#;

#[derive(Deserialize, Debug, PartialEq, Eq)]
struct Snapshot {
    #[serde(rename = "final")]
    final_path: String,
    files: BTreeMap<String, String>,
}

/// The source as the nodes need it.
struct Source {
    path: PathBuf,
    name: String,
    is_dir: bool,
    /// Files and symlinks of a folder, relative to it.
    rels: Vec<String>,
}

pub(crate) fn run(
    ctx: &StepContext<'_>,
    src: &Path,
    dest: &str,
    mode: Option<&str>,
    report: &mut StepReport,
) {
    let source = match read_source(&ctx.run.scenario_dir.join(src)) {
        Ok(s) => s,
        Err(e) => return report.fail(format!("copy step `{}`: {e}", ctx.step.name)),
    };
    if let Some(mode) = mode {
        if !valid_mode(mode) {
            return report.fail(format!(
                "copy step `{}`: mode \"{mode}\" is not an octal mode like \"0644\"",
                ctx.step.name
            ));
        }
    }
    if !dest.starts_with('/') {
        return report.fail(format!(
            "copy step `{}`: dest \"{dest}\" must be an absolute path on the nodes",
            ctx.step.name
        ));
    }
    let outputs: Vec<NodeOutput> = std::thread::scope(|s| {
        let handles: Vec<_> = ctx
            .targets
            .iter()
            .map(|node| {
                let source = &source;
                s.spawn(move || copy_to_node(ctx, node, source, dest, mode))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("copy thread panicked"))
            .collect()
    });
    let failed: Vec<&NodeOutput> = outputs.iter().filter(|o| o.error.is_some()).collect();
    if let Some(first) = failed.first() {
        let error = format!(
            "copying {} to {dest} failed on {}: {}",
            src.display(),
            and_others(&first.node, failed.len() - 1),
            first.error.as_deref().unwrap_or_default()
        );
        report.nodes = outputs;
        return report.fail(error);
    }
    report.nodes = outputs;
}

fn copy_to_node(
    ctx: &StepContext<'_>,
    node: &str,
    source: &Source,
    dest: &str,
    mode: Option<&str>,
) -> NodeOutput {
    let started = Instant::now();
    let mut output = NodeOutput::new(node);
    let result = (|| -> Result<Vec<String>, String> {
        let before = snapshot(
            ctx.nodes,
            node,
            serde_json::json!({
                "dest": dest, "name": source.name, "is_dir": source.is_dir, "rels": source.rels,
            }),
        )?;
        let target = before.final_path.clone();
        if source.is_dir {
            let staging = format!("{NODE_RUN_DIR}/{}.copy", ctx.token);
            ctx.nodes
                .copy_to(node, &source.path, &staging)
                .map_err(|e| e.to_string())?;
            run_helper(
                ctx.nodes,
                node,
                MERGE,
                &[&staging, &target, mode.unwrap_or("")],
            )?;
        } else {
            ctx.nodes
                .copy_to(node, &source.path, &target)
                .map_err(|e| e.to_string())?;
            if let Some(mode) = mode {
                run_helper(ctx.nodes, node, r#"chmod "$1" -- "$2""#, &[mode, &target])?;
            }
        }
        let after = snapshot(
            ctx.nodes,
            node,
            serde_json::json!({
                "final": target, "is_dir": source.is_dir, "rels": source.rels,
            }),
        )?;
        Ok(differences(&before.files, &after.files))
    })();
    output.duration_ms = started.elapsed().as_millis() as u64;
    match result {
        Ok(mut changed) => {
            output.exit_code = Some(0);
            output.changed_files_truncated = changed.len() > CHANGED_FILES_CAP;
            changed.truncate(CHANGED_FILES_CAP);
            output.changed_files = changed;
        }
        Err(e) => output.error = Some(e),
    }
    output
}

fn snapshot(
    nodes: &ClusterNodes<'_>,
    node: &str,
    request: serde_json::Value,
) -> Result<Snapshot, String> {
    let c = nodes::sh(
        nodes,
        node,
        r#"exec python3 -c "$1""#,
        &[SNAPSHOT],
        Some(request.to_string().into_bytes()),
        HELPER_TIMEOUT,
    )?;
    if !c.success() {
        return Err(format!(
            "could not inspect the destination: {}",
            nodes::last_line(&c)
        ));
    }
    serde_json::from_str(&c.stdout)
        .map_err(|e| format!("could not read the destination's state ({e})"))
}

fn run_helper(
    nodes: &ClusterNodes<'_>,
    node: &str,
    script: &str,
    args: &[&str],
) -> Result<(), String> {
    let c = nodes::sh(nodes, node, script, args, None, HELPER_TIMEOUT)?;
    if c.success() {
        Ok(())
    } else {
        Err(nodes::last_line(&c))
    }
}

/// Paths whose state differs after the copy (new, other content, other mode).
fn differences(before: &BTreeMap<String, String>, after: &BTreeMap<String, String>) -> Vec<String> {
    after
        .iter()
        .filter(|(path, state)| before.get(*path) != Some(state))
        .map(|(path, _)| path.clone())
        .collect()
}

fn read_source(path: &Path) -> Result<Source, String> {
    let meta = std::fs::symlink_metadata(path)
        .map_err(|e| format!("cannot read the source {}: {e}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| format!("the source {} names no file or folder", path.display()))?;
    let mut rels = Vec::new();
    if meta.is_dir() {
        walk(path, Path::new(""), &mut rels)
            .map_err(|e| format!("cannot read the source folder {}: {e}", path.display()))?;
        rels.sort();
    }
    Ok(Source {
        path: path.to_path_buf(),
        name,
        is_dir: meta.is_dir(),
        rels,
    })
}

/// Files and symlinks under `root/rel`, relative to `root`; symlinked folders
/// are not followed (they are copied as links).
fn walk(root: &Path, rel: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(root.join(rel))? {
        let entry = entry?;
        let rel = rel.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            walk(root, &rel, out)?;
        } else {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

fn valid_mode(mode: &str) -> bool {
    (3..=4).contains(&mode.len()) && mode.chars().all(|c| ('0'..='7').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal() {
        assert!(valid_mode("0644"));
        assert!(valid_mode("755"));
        assert!(!valid_mode("0899"));
        assert!(!valid_mode("u+x"));
        assert!(!valid_mode("12345"));
    }

    #[test]
    fn differences_are_new_or_altered_paths() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let before = map(&[("/a", "644 x"), ("/b", "644 y")]);
        let after = map(&[("/a", "644 x"), ("/b", "600 y"), ("/c", "644 z")]);
        assert_eq!(differences(&before, &after), vec!["/b", "/c"]);
        assert!(differences(&after, &after).is_empty());
    }

    #[test]
    fn a_folder_source_lists_its_files_recursively() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("conf");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("a.conf"), "a").unwrap();
        std::fs::write(root.join("sub/b.conf"), "b").unwrap();
        std::os::unix::fs::symlink("a.conf", root.join("link")).unwrap();
        let source = read_source(&root).unwrap();
        assert!(source.is_dir);
        assert_eq!(source.name, "conf");
        assert_eq!(source.rels, vec!["a.conf", "link", "sub/b.conf"]);
    }

    #[test]
    fn a_missing_source_is_named() {
        let err = read_source(Path::new("/nonexistent/app.conf"))
            .err()
            .unwrap();
        assert!(err.contains("/nonexistent/app.conf"), "{err}");
    }
}
