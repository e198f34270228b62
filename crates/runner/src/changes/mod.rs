//! The change detector: what a node holds after some work that it did not
//! before, judged by content.
//!
//! An nspawn node's root is an overlay whose upper layer, a folder on the
//! host, receives every write the node makes; its `/tmp` is a tmpfs, read
//! through the node's PID 1 (`/proc/PID/root/tmp`). A [`Snapshot`] walks both
//! from the host, with no exec into the node, and records each entry's type,
//! mode and owner and, for files, size and SHA-256; text files up to
//! [`TEXT_CAP`] keep their bytes so a change can be shown as a unified diff. A
//! file whose inode, size, mode, mtime and ctime are those of the previous
//! snapshot is not read again, so a snapshot after a step costs a walk plus
//! the files the step wrote.
//!
//! [`compare`] lists real changes only: a file rewritten with the same bytes,
//! a folder's times, or an untouched file copied up are not changes. Package
//! sets (`/var/lib/dpkg/status`), users and groups (`/etc/passwd`,
//! `/etc/group`) and enabled units (links in `/etc/systemd/system/*.wants`)
//! are reported as such. Paths the system writes on its own (logs, caches,
//! systemd's state, services' private tmp folders) are not looked at:
//! [`IGNORED`].
//!
//! Nodes whose disk the host cannot see (the VM backend) have no snapshot:
//! [`Snapshot::unavailable`] says so.

mod facts;
mod walk;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use rehearse_sandbox::{ClusterState, Engine};
use serde::{Deserialize, Serialize};

pub use walk::TEXT_CAP;

use walk::{Entry, Kind};

/// Path prefixes written by the system rather than by infrastructure code:
/// never compared. A prefix ending in `/` covers a folder's contents; others
/// cover every path starting with them.
pub const IGNORED: &[&str] = &[
    "/var/log/",
    "/var/cache/",
    "/var/lib/apt/lists/",
    "/var/lib/systemd/",
    "/var/lib/dpkg/lock",
    "/var/lib/dpkg/triggers/Lock",
    "/var/lib/apt/extended_states",
    "/etc/.pwd.lock",
    "/root/.ansible/",
    "/root/.cache/",
    "/root/.ssh/known_hosts",
    "/tmp/systemd-private-",
    "/var/tmp/systemd-private-",
    "/run/",
];

/// Whether `path` is one the detector never compares.
pub fn ignored(path: &str) -> bool {
    IGNORED.iter().any(|p| path.starts_with(p))
}

/// Most changes kept per node and comparison; more are counted in one line.
pub const CHANGES_CAP: usize = 200;

/// Where the snapshot looks: folders on the nodes, and whether text is kept
/// for diffs.
#[derive(Clone, Debug)]
pub struct Scope {
    /// Absolute folders on the nodes; `/` for everything the node wrote.
    pub roots: Vec<String>,
    pub keep_text: bool,
}

impl Scope {
    /// Everything the node wrote, with text for diffs: idempotence.
    pub fn everything() -> Scope {
        Scope {
            roots: vec!["/".into()],
            keep_text: true,
        }
    }

    /// Only under `roots`, without text: hygiene.
    pub fn under(roots: &[&str]) -> Scope {
        Scope {
            roots: roots.iter().map(|r| r.to_string()).collect(),
            keep_text: false,
        }
    }
}

/// Where one node's writes are visible on the host.
#[derive(Clone, Debug)]
struct Source {
    /// The overlay's upper layer: every write to the node's root filesystem.
    upper: PathBuf,
    /// The image below it, for the content of files the node never wrote.
    lower: Option<PathBuf>,
    /// The node's `/tmp` (a tmpfs), seen through its PID 1.
    tmp: Option<PathBuf>,
    /// The node's users are shifted on the host by one of these (the node's
    /// own writes, and the image below it).
    uid_bases: Vec<u32>,
}

/// Takes snapshots of the nodes of one cluster.
#[derive(Clone, Debug)]
pub struct Detector {
    nodes: Vec<(String, Result<Source, String>)>,
}

impl Detector {
    /// The detector for `cluster` as it is now (its nodes' current PID 1).
    pub fn new(engine: &Engine, cluster: &ClusterState) -> Detector {
        let state = engine.get(&cluster.id).unwrap_or_else(|_| cluster.clone());
        let nodes = state
            .nodes
            .iter()
            .map(|node| {
                let source = if node.backend != "nspawn" {
                    Err(format!(
                        "node {} runs on the {} backend, whose disk the host cannot read: its changes are not compared by content",
                        node.name, node.backend
                    ))
                } else {
                    let upper = engine
                        .cluster_dir(&state.id)
                        .join("nodes")
                        .join(&node.name)
                        .join("upper");
                    let image = engine.images().find(&node.image_id).ok().flatten();
                    let mut uid_bases: Vec<u32> = node.uid_base.into_iter().collect();
                    uid_bases.push(
                        image
                            .as_ref()
                            .map(|i| i.uid_base)
                            .unwrap_or(rehearse_image::UID_BASE),
                    );
                    if upper.is_dir() {
                        Ok(Source {
                            upper,
                            lower: image.map(|image| image.rootfs()),
                            tmp: node
                                .leader
                                .as_ref()
                                .map(|p| PathBuf::from(format!("/proc/{}/root/tmp", p.pid))),
                            uid_bases,
                        })
                    } else {
                        Err(format!(
                            "the disk layer of node {} ({}) is missing",
                            node.name,
                            upper.display()
                        ))
                    }
                };
                (node.name.clone(), source)
            })
            .collect();
        Detector { nodes }
    }

    /// Every node's state now, nodes in parallel; files unchanged since
    /// `previous` (same inode, size, mode and times) are not read again.
    pub fn snapshot(&self, previous: Option<&Snapshot>, scope: &Scope) -> Snapshot {
        let nodes = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .nodes
                .iter()
                .map(|(name, source)| {
                    let before = previous.and_then(|p| p.nodes.get(name));
                    s.spawn(move || {
                        let node = match source {
                            Ok(source) => NodeSnapshot {
                                entries: walk::walk(source, before, scope),
                                source: Ok(source.clone()),
                            },
                            Err(why) => NodeSnapshot {
                                entries: BTreeMap::new(),
                                source: Err(why.clone()),
                            },
                        };
                        (name.clone(), node)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("snapshot thread panicked"))
                .collect()
        });
        Snapshot { nodes }
    }
}

/// The state of a cluster's nodes at one moment.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    nodes: BTreeMap<String, NodeSnapshot>,
}

#[derive(Clone, Debug)]
struct NodeSnapshot {
    entries: BTreeMap<String, Entry>,
    source: Result<Source, String>,
}

impl Snapshot {
    /// Why nodes could not be looked at, one sentence each.
    pub fn unavailable(&self) -> Vec<String> {
        self.nodes
            .values()
            .filter_map(|n| n.source.as_ref().err().cloned())
            .collect()
    }

    /// Whether `node` was looked at.
    pub fn covers(&self, node: &str) -> bool {
        self.nodes.get(node).is_some_and(|n| n.source.is_ok())
    }

    /// Paths of `node` holding a private key (`-----BEGIN ... PRIVATE KEY-----`).
    pub fn private_keys(&self, node: &str) -> BTreeSet<String> {
        self.nodes
            .get(node)
            .map(|n| {
                n.entries
                    .iter()
                    .filter(|(_, e)| e.content.as_ref().is_some_and(|c| c.private_key))
                    .map(|(p, _)| p.clone())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What changed.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Added,
    Removed,
    Modified,
    /// Same content, other mode, owner or type.
    Metadata,
    Packages,
    Users,
    Groups,
    Unit,
    /// More changes than [`CHANGES_CAP`], counted.
    More,
}

/// One real change on one node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub node: String,
    pub path: String,
    pub kind: ChangeKind,
    /// One line: `added (3 lines)`, `binary, 1204 → 1210 bytes, sha256 ab12… → cd34…`,
    /// `package installed: jq 1.6-2.1`.
    pub summary: String,
    /// A unified diff, for text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// The `allow_changes` glob that declared this change expected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_by: Option<String>,
}

impl Change {
    /// `web1: /etc/app.conf: modified (+1 line)`.
    pub fn line(&self) -> String {
        if self.path.is_empty() {
            format!("{}: {}", self.node, self.summary)
        } else {
            format!("{}: {}: {}", self.node, self.path, self.summary)
        }
    }
}

/// The state of one path, files the node never wrote read from the image.
#[derive(Clone, Debug)]
enum State<'a> {
    Absent,
    Present(std::borrow::Cow<'a, Entry>),
}

fn state<'a>(node: &'a NodeSnapshot, path: &str) -> State<'a> {
    match node.entries.get(path) {
        Some(e) if e.kind == Kind::Whiteout => State::Absent,
        Some(e) => State::Present(std::borrow::Cow::Borrowed(e)),
        None => match &node.source {
            Ok(source) if !path.starts_with("/tmp/") => match walk::lower_entry(source, path) {
                Some(e) => State::Present(std::borrow::Cow::Owned(e)),
                None => State::Absent,
            },
            _ => State::Absent,
        },
    }
}

/// The real changes between two snapshots of the same cluster, per node, in
/// path order; at most [`CHANGES_CAP`] per node (the rest counted).
pub fn compare(before: &Snapshot, after: &Snapshot) -> Vec<Change> {
    let mut all = Vec::new();
    for (name, after_node) in &after.nodes {
        let Some(before_node) = before.nodes.get(name) else {
            continue;
        };
        if before_node.source.is_err() || after_node.source.is_err() {
            continue;
        }
        let paths: BTreeSet<&String> = before_node
            .entries
            .keys()
            .chain(after_node.entries.keys())
            .collect();
        let mut changes = Vec::new();
        for path in paths {
            let (b, a) = (state(before_node, path), state(after_node, path));
            if let Some(change) = walk::difference(name, path, &b, &a) {
                changes.push(change);
            }
        }
        let texts = |path: &str| {
            let text = |s: State<'_>| match s {
                State::Present(e) => e.content.as_ref().and_then(|c| c.text.clone()),
                State::Absent => None,
            };
            Some((
                text(state(before_node, path))?,
                text(state(after_node, path))?,
            ))
        };
        let changes = facts::fold(name, changes, &texts);
        let total = changes.len();
        all.extend(changes.into_iter().take(CHANGES_CAP));
        if total > CHANGES_CAP {
            all.push(Change {
                node: name.clone(),
                path: String::new(),
                kind: ChangeKind::More,
                summary: format!(
                    "{} more changes (the list stops at {CHANGES_CAP})",
                    total - CHANGES_CAP
                ),
                diff: None,
                allowed_by: None,
            });
        }
    }
    all
}
