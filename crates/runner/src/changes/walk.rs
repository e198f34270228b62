//! Reading a node's layer from the host, and telling two states of a path apart.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{ignored, Change, ChangeKind, Scope, Source, State};

/// Largest text file whose bytes a snapshot keeps for diffs.
pub const TEXT_CAP: u64 = 256 * 1024;

/// Largest file looked into for a private key.
const KEY_SCAN_CAP: u64 = 64 * 1024;

/// Longest diff kept per change, in lines.
const DIFF_LINES: usize = 120;

/// Files whose content is never shown.
const SECRET_FILES: &[&str] = &[
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/shadow-",
    "/etc/gshadow-",
];

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Symlink(String),
    /// Deleted from the image below (an overlay whiteout).
    Whiteout,
    /// A device, socket or fifo: its file type bits.
    Other(u32),
}

#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Inode, size, mtime and ctime: unchanged means not rewritten.
    stamp: (u64, u64, i64, i64, i64, i64),
    pub content: Option<Content>,
}

#[derive(Clone, Debug)]
pub(crate) struct Content {
    pub size: u64,
    pub sha256: [u8; 32],
    /// The bytes, for text files up to [`TEXT_CAP`] when the scope keeps text.
    pub text: Option<Arc<str>>,
    /// Read by a scope that keeps text: `text` is `None` only for binary,
    /// secret or large files.
    text_checked: bool,
    pub private_key: bool,
}

/// Walks `source` under `scope`, reusing `previous` content for files not rewritten.
pub(crate) fn walk(
    source: &Source,
    previous: Option<&super::NodeSnapshot>,
    scope: &Scope,
) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    let prev = previous.map(|p| &p.entries);
    let mut walker = Walker {
        source,
        prev,
        scope,
        out: &mut out,
    };
    walker.dir(&source.upper, "");
    if let Some(tmp) = &source.tmp {
        if in_scope(scope, "/tmp") || descends(scope, "/tmp") {
            walker.dir(tmp, "/tmp");
        }
    }
    out
}

struct Walker<'a> {
    source: &'a Source,
    prev: Option<&'a BTreeMap<String, Entry>>,
    scope: &'a Scope,
    out: &'a mut BTreeMap<String, Entry>,
}

fn in_scope(scope: &Scope, path: &str) -> bool {
    scope.roots.iter().any(|r| {
        r == "/" || path == r || (path.starts_with(r.as_str()) && path[r.len()..].starts_with('/'))
    })
}

/// Whether a folder leads to a root of the scope.
fn descends(scope: &Scope, dir: &str) -> bool {
    scope
        .roots
        .iter()
        .any(|r| dir.is_empty() || (r.starts_with(dir) && r[dir.len()..].starts_with('/')))
}

impl Walker<'_> {
    fn dir(&mut self, host_dir: &Path, node_dir: &str) {
        let Ok(entries) = fs::read_dir(host_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let path = format!("{node_dir}/{}", name.to_string_lossy());
            // The node's tmpfs is read on its own.
            if node_dir.is_empty() && path == "/tmp" && self.source.tmp.is_some() {
                continue;
            }
            if ignored(&path) {
                continue;
            }
            let inside = in_scope(self.scope, &path);
            let host = entry.path();
            let Ok(meta) = fs::symlink_metadata(&host) else {
                continue;
            };
            if inside {
                if let Some(e) = self.entry(&host, &path, &meta) {
                    self.out.insert(path.clone(), e);
                }
            }
            if meta.is_dir() && (inside || descends(self.scope, &path)) {
                self.dir(&host, &path);
            }
        }
    }

    fn entry(&self, host: &Path, path: &str, meta: &fs::Metadata) -> Option<Entry> {
        let previous = self.prev.and_then(|p| p.get(path));
        read_entry(
            self.source,
            host,
            path,
            meta,
            previous,
            self.scope.keep_text,
        )
    }
}

fn read_entry(
    source: &Source,
    host: &Path,
    path: &str,
    meta: &fs::Metadata,
    previous: Option<&Entry>,
    keep_text: bool,
) -> Option<Entry> {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        Kind::Dir
    } else if ft.is_symlink() {
        Kind::Symlink(fs::read_link(host).ok()?.to_string_lossy().into_owned())
    } else if ft.is_file() {
        Kind::File
    } else if ft.is_char_device() && meta.rdev() == 0 {
        Kind::Whiteout
    } else {
        Kind::Other(meta.mode() & 0o170000)
    };
    let shift = |id: u32| {
        source
            .uid_bases
            .iter()
            .find(|&&base| id >= base && id - base < rehearse_image::UID_RANGE)
            .map_or(id, |base| id - base)
    };
    let stamp = (
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    );
    let mut entry = Entry {
        kind,
        mode: meta.mode() & 0o7777,
        uid: shift(meta.uid()),
        gid: shift(meta.gid()),
        stamp,
        content: None,
    };
    if entry.kind == Kind::File {
        let reuse = previous.filter(|p| {
            p.stamp == entry.stamp
                && p.kind == Kind::File
                && p.content
                    .as_ref()
                    .is_some_and(|c| c.text_checked || !keep_text)
        });
        entry.content = match reuse {
            Some(p) => p.content.clone(),
            None => Some(read_content(host, path, keep_text)?),
        };
    }
    Some(entry)
}

fn read_content(host: &Path, path: &str, keep_text: bool) -> Option<Content> {
    let mut file = fs::File::open(host).ok()?;
    let size = file.metadata().ok()?.len();
    let mut hasher = Sha256::new();
    let mut text = None;
    let mut private_key = false;
    if size <= TEXT_CAP {
        let mut bytes = Vec::with_capacity(size as usize);
        file.read_to_end(&mut bytes).ok()?;
        let bytes_len = bytes.len() as u64;
        hasher.update(&bytes);
        if bytes.len() as u64 <= KEY_SCAN_CAP {
            private_key = has_private_key(&bytes);
        }
        if keep_text && !bytes.contains(&0) && !SECRET_FILES.contains(&path) {
            text = String::from_utf8(bytes).ok().map(Arc::from);
        }
        return Some(Content {
            size: bytes_len,
            sha256: hasher.finalize().into(),
            text,
            text_checked: keep_text,
            private_key,
        });
    }
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Some(Content {
        size,
        sha256: hasher.finalize().into(),
        text,
        text_checked: keep_text,
        private_key,
    })
}

fn has_private_key(bytes: &[u8]) -> bool {
    let needle = b"-----BEGIN ";
    bytes.windows(needle.len()).enumerate().any(|(i, w)| {
        w == needle && {
            let rest = &bytes[i + needle.len()..bytes.len().min(i + needle.len() + 40)];
            let key = b"PRIVATE KEY-----";
            rest.windows(key.len()).any(|x| x == key)
        }
    })
}

/// The image's entry at `path`, for a path the node has not written.
pub(crate) fn lower_entry(source: &Source, path: &str) -> Option<Entry> {
    let lower = source.lower.as_ref()?;
    let host = lower.join(path.trim_start_matches('/'));
    let meta = fs::symlink_metadata(&host).ok()?;
    read_entry(source, &host, path, &meta, None, true)
}

fn octal(mode: u32) -> String {
    format!("{mode:04o}")
}

fn kind_word(kind: &Kind) -> &'static str {
    match kind {
        Kind::File => "file",
        Kind::Dir => "folder",
        Kind::Symlink(_) => "link",
        Kind::Whiteout => "deleted",
        Kind::Other(_) => "special file",
    }
}

fn short_hash(c: &Content) -> String {
    hex::encode(&c.sha256[..6])
}

/// The change from `before` to `after` at `path`, if there is a real one.
pub(crate) fn difference(
    node: &str,
    path: &str,
    before: &State<'_>,
    after: &State<'_>,
) -> Option<Change> {
    let change = |kind, summary: String, diff: Option<String>| {
        Some(Change {
            node: node.to_string(),
            path: path.to_string(),
            kind,
            summary,
            diff,
            allowed_by: None,
        })
    };
    let secret = SECRET_FILES.contains(&path);
    match (before, after) {
        (State::Absent, State::Absent) => None,
        (State::Absent, State::Present(a)) => {
            let (summary, diff) = describe_new(a, secret);
            change(ChangeKind::Added, summary, diff)
        }
        (State::Present(b), State::Absent) => change(
            ChangeKind::Removed,
            format!("{} removed", kind_word(&b.kind)),
            None,
        ),
        (State::Present(b), State::Present(a)) => {
            let (b, a): (&Entry, &Entry) = (b, a);
            if b.kind != a.kind {
                return change(
                    ChangeKind::Metadata,
                    match (&b.kind, &a.kind) {
                        (Kind::Symlink(x), Kind::Symlink(y)) => {
                            format!("link now points to {y} (was {x})")
                        }
                        _ => format!("was a {}, now a {}", kind_word(&b.kind), kind_word(&a.kind)),
                    },
                    None,
                );
            }
            let mut meta = Vec::new();
            if b.mode != a.mode {
                meta.push(format!("mode {} → {}", octal(b.mode), octal(a.mode)));
            }
            if (b.uid, b.gid) != (a.uid, a.gid) {
                meta.push(format!("owner {}:{} → {}:{}", b.uid, b.gid, a.uid, a.gid));
            }
            match (&b.content, &a.content) {
                (Some(x), Some(y)) if x.sha256 != y.sha256 => {
                    let (mut summary, diff) = describe_edit(path, x, y, secret);
                    if !meta.is_empty() {
                        summary = format!("{summary}; {}", meta.join(", "));
                    }
                    change(ChangeKind::Modified, summary, diff)
                }
                _ if !meta.is_empty() => change(ChangeKind::Metadata, meta.join(", "), None),
                _ => None,
            }
        }
    }
}

fn lines(n: usize) -> String {
    if n == 1 {
        "1 line".into()
    } else {
        format!("{n} lines")
    }
}

fn describe_new(e: &Entry, secret: bool) -> (String, Option<String>) {
    match (&e.kind, &e.content) {
        (Kind::File, Some(c)) if secret || c.private_key => (
            format!(
                "file added, {} bytes (content not shown: it holds secrets)",
                c.size
            ),
            None,
        ),
        (Kind::File, Some(c)) => match &c.text {
            Some(t) => (
                format!("file added ({})", lines(t.lines().count())),
                Some(cap_diff(
                    similar::TextDiff::from_lines("", t.as_ref())
                        .unified_diff()
                        .header("/dev/null", "added")
                        .to_string(),
                )),
            ),
            None => (
                format!(
                    "binary file added, {} bytes, sha256 {}…",
                    c.size,
                    short_hash(c)
                ),
                None,
            ),
        },
        (Kind::Symlink(target), _) => (format!("link added → {target}"), None),
        (kind, _) => (format!("{} added", kind_word(kind)), None),
    }
}

fn describe_edit(path: &str, b: &Content, a: &Content, secret: bool) -> (String, Option<String>) {
    if secret || b.private_key || a.private_key {
        return (
            format!(
                "content changed, {} → {} bytes (not shown: it holds secrets)",
                b.size, a.size
            ),
            None,
        );
    }
    match (&b.text, &a.text) {
        (Some(x), Some(y)) => {
            let diff = similar::TextDiff::from_lines(x.as_ref(), y.as_ref());
            let (mut plus, mut minus) = (0, 0);
            for op in diff.iter_all_changes() {
                match op.tag() {
                    similar::ChangeTag::Insert => plus += 1,
                    similar::ChangeTag::Delete => minus += 1,
                    similar::ChangeTag::Equal => {}
                }
            }
            let text = diff
                .unified_diff()
                .context_radius(3)
                .header(&format!("{path} (before)"), &format!("{path} (after)"))
                .to_string();
            (
                format!("modified (+{plus} −{minus} lines)"),
                Some(cap_diff(text)),
            )
        }
        _ => (
            format!(
                "binary, {} → {} bytes, sha256 {}… → {}…",
                b.size,
                a.size,
                short_hash(b),
                short_hash(a)
            ),
            None,
        ),
    }
}

fn cap_diff(text: String) -> String {
    let total = text.lines().count();
    if total <= DIFF_LINES {
        return text;
    }
    let mut kept: String = text
        .lines()
        .take(DIFF_LINES)
        .map(|l| format!("{l}\n"))
        .collect();
    kept.push_str(&format!("… {} more diff lines\n", total - DIFF_LINES));
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_keys_are_found_by_their_header() {
        assert!(has_private_key(
            b"x\n-----BEGIN OPENSSH PRIVATE KEY-----\nabc"
        ));
        assert!(has_private_key(b"-----BEGIN PRIVATE KEY-----"));
        assert!(!has_private_key(b"-----BEGIN CERTIFICATE-----"));
    }

    #[test]
    fn long_diffs_are_cut_and_counted() {
        let text: String = (0..200).map(|i| format!("+{i}\n")).collect();
        let cut = cap_diff(text);
        assert!(cut.ends_with("… 80 more diff lines\n"), "{cut}");
    }
}
