//! Snapshots on real clusters: taken with every node frozen, restored with
//! every node booted again from the captured disks; images saved from nodes
//! and booted by later clusters; bad input; nothing left behind.

mod common;

use std::path::Path;

use common::{run_json, Cluster, Leftovers};
use serde_json::Value;

fn ok_json(args: &[&str]) -> Value {
    let (code, v) = run_json(args);
    assert_eq!(code, 0, "rehearse {args:?}: {v}");
    v
}

fn error_of(args: &[&str]) -> Value {
    let (code, v) = run_json(args);
    assert_ne!(code, 0, "rehearse {args:?} should fail: {v}");
    v["error"].clone()
}

/// Values of `cgroup.freeze` under the cluster's unified cgroup that say frozen.
fn frozen_cgroups(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    for root in ["/sys/fs/cgroup/unified/rehearse", "/sys/fs/cgroup/rehearse"] {
        let mut stack = vec![Path::new(root).join(id)];
        while let Some(d) = stack.pop() {
            if std::fs::read_to_string(d.join("cgroup.freeze")).is_ok_and(|t| t.trim() == "1") {
                found.push(d.display().to_string());
            }
            if let Ok(entries) = std::fs::read_dir(&d) {
                stack.extend(
                    entries
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.path()),
                );
            }
        }
    }
    found
}

fn snapshot_names(c: &Cluster) -> Vec<String> {
    ok_json(&["snapshot", "ls", &c.id])["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect()
}

/// Entries of the snapshots folder that are neither a snapshot nor its lock:
/// what a failed or interrupted operation would leave.
fn stray_snapshot_files(c: &Cluster) -> Vec<String> {
    std::fs::read_dir(c.dir().join("snapshots"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with('.') && n != ".lock")
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn restore_brings_every_node_back_to_its_snapshot() {
    let c = Cluster::up(&["--nodes", "2"]);

    // The state to come back to: files, a user, a unit enabled and running,
    // a file of the image deleted (a whiteout in the layer), a folder of the
    // image replaced (an opaque folder).
    c.ok(
        "node1",
        "set -e
         echo v1 > /etc/app.conf
         useradd -m alice
         printf '[Service]\\nExecStart=/bin/sleep infinity\\n[Install]\\nWantedBy=multi-user.target\\n' \
           > /etc/systemd/system/demo.service
         systemctl daemon-reload
         systemctl enable --now demo.service
         rm /etc/issue.net
         rm -rf /etc/default && mkdir /etc/default && echo mine > /etc/default/only",
    );
    c.ok(
        "node2",
        "mkdir -p /srv/data && echo precious > /srv/data/file && chown nobody /srv/data/file",
    );

    let snap = ok_json(&["snapshot", &c.id, "s1"]);
    assert_eq!(snap["name"], "s1");
    let nodes = snap["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{snap}");
    assert!(nodes.iter().all(|n| n["bytes"].as_u64().unwrap() > 0));
    assert!(["reflink", "copy"].contains(&snap["copy"].as_str().unwrap()));
    assert!(
        frozen_cgroups(&c.id).is_empty(),
        "nodes thawed after the snapshot"
    );
    // The nodes went on running through the snapshot.
    assert_eq!(c.ok("node1", "systemctl is-active demo.service"), "active");

    // Everything changes after the snapshot, including files of the image.
    c.ok(
        "node1",
        "set -e
         echo v2 > /etc/app.conf
         systemctl disable --now demo.service
         userdel -r alice 2>/dev/null || true
         ! id alice 2>/dev/null
         rm /etc/issue
         echo back > /etc/issue.net
         echo extra > /etc/default/extra
         echo new > /etc/new-after-snapshot",
    );
    c.ok("node2", "rm -rf /srv/data && touch /srv/new");
    ok_json(&["snapshot", &c.id, "s2"]);
    assert_eq!(snapshot_names(&c), ["s1", "s2"]);

    let restored = ok_json(&["restore", &c.id, "s1"]);
    assert_eq!(restored["snapshot"], "s1");
    assert!(
        restored["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["boot_ms"].as_u64().is_some()),
        "{restored}"
    );

    assert_eq!(c.ok("node1", "cat /etc/app.conf"), "v1");
    assert_eq!(c.ok("node1", "id -un alice"), "alice");
    assert_eq!(
        c.ok(
            "node1",
            "systemctl is-enabled demo.service; systemctl is-active demo.service"
        ),
        "enabled\nactive",
        "the unit enabled at the snapshot starts at boot"
    );
    assert!(
        c.ok("node1", "cat /etc/issue").contains("Debian"),
        "the image's file deleted after the snapshot is back"
    );
    assert_eq!(
        c.sh("node1", "test -e /etc/issue.net").0,
        1,
        "the file deleted before the snapshot stays deleted"
    );
    assert_eq!(
        c.ok("node1", "ls -A /etc/default"),
        "only",
        "the replaced folder holds only its own files"
    );
    assert_eq!(c.sh("node1", "test -e /etc/new-after-snapshot").0, 1);
    assert_eq!(
        c.ok(
            "node2",
            "stat -c '%U %n' /srv/data/file && cat /srv/data/file"
        ),
        "nobody /srv/data/file\nprecious"
    );
    assert_eq!(c.sh("node2", "test -e /srv/new").0, 1);

    // Both nodes are up and reach each other by name and over SSH.
    assert_eq!(
        c.ok("node1", "systemctl is-system-running --wait || true")
            .lines()
            .last(),
        Some("running")
    );
    c.ok("node1", "ping -c 1 -W 2 node2");
    c.ok("node2", "ping -c 1 -W 2 node1");
    c.ok(
        "node2",
        "ssh -o BatchMode=yes -o ConnectTimeout=5 node1 cat /etc/app.conf | grep -qx v1",
    );

    // A snapshot can be restored again, and removed.
    c.ok("node1", "echo v3 > /etc/app.conf");
    ok_json(&["restore", &c.id, "s2"]);
    assert_eq!(c.ok("node1", "cat /etc/app.conf"), "v2");
    let removed = ok_json(&["snapshot", "rm", &c.id, "s1"]);
    assert_eq!(removed["removed"]["name"], "s1");
    assert_eq!(snapshot_names(&c), ["s2"]);
    assert!(!c.dir().join("snapshots/s1").exists());
    assert!(
        stray_snapshot_files(&c).is_empty(),
        "{:?}",
        stray_snapshot_files(&c)
    );
    assert!(frozen_cgroups(&c.id).is_empty());

    // Down removes the cluster with its remaining snapshot.
    let id = c.id.clone();
    let snapshots = c.dir().join("snapshots");
    drop(c);
    assert!(!snapshots.exists());
    let left = Leftovers::of(&id);
    assert!(left.is_empty(), "cluster {id} left {left:?}");
}

#[test]
fn a_saved_node_becomes_an_image_later_clusters_boot() {
    let image = format!("saved-{}", std::process::id());
    let c = Cluster::up(&["--nodes", "1"]);
    c.ok(
        "node1",
        "echo from-the-node > /etc/saved.txt && rm /etc/issue.net && useradd -m bob",
    );
    let saved = ok_json(&["save", &c.id, "node1", &image]);
    assert_eq!(saved["name"], image.as_str());
    let id = saved["id"].as_str().unwrap().to_string();
    assert!(
        saved["parent"].is_string() && saved["parent"] != saved["id"],
        "{saved}"
    );
    let listed = ok_json(&["image", "ls"]);
    assert!(
        listed["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == id.as_str()),
        "{listed}"
    );
    assert!(stray_snapshot_files(&c).is_empty());
    // The node ran on.
    assert_eq!(c.ok("node1", "cat /etc/saved.txt"), "from-the-node");
    drop(c);

    let dir = tempfile::tempdir().unwrap();
    let topology = common::write(
        dir.path(),
        "topology.yaml",
        &format!("nodes:\n  - name: web1\n    image: {image}\n  - name: web2\n"),
    );
    let later = Cluster::up(&["-f", topology.to_str().unwrap()]);
    assert_eq!(later.ok("web1", "cat /etc/saved.txt"), "from-the-node");
    assert_eq!(later.ok("web1", "id -un bob"), "bob");
    assert_eq!(
        later.sh("web1", "test -e /etc/issue.net").0,
        1,
        "deletions are part of the image"
    );
    assert_eq!(
        later.ok("web1", "hostname"),
        "web1",
        "the node is itself, not the saved one"
    );
    assert_eq!(
        later.sh("web2", "test -e /etc/saved.txt").0,
        1,
        "other images are untouched"
    );
    later.ok("web2", "ssh -o BatchMode=yes -o ConnectTimeout=5 web1 true");

    let in_use = error_of(&["image", "rm", &image]);
    assert!(
        in_use["message"].as_str().unwrap().contains("in use"),
        "{in_use}"
    );
    drop(later);
    ok_json(&["image", "rm", &image]);
    let listed = ok_json(&["image", "ls"]);
    assert!(!listed["images"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["id"] == id.as_str()));
    assert!(!common::state_dir().join("images").join(&id).exists());
}

#[test]
fn bad_snapshot_input_gets_clear_errors_and_leaves_nothing() {
    let c = Cluster::up(&["--nodes", "1"]);
    assert!(snapshot_names(&c).is_empty());

    let e = error_of(&["restore", &c.id, "nope"]);
    assert_eq!(e["code"], "snapshot_not_found", "{e}");
    let m = e["message"].as_str().unwrap();
    assert!(m.contains("\"nope\"") && m.contains("no snapshot"), "{m}");
    let human = common::run(&["restore", &c.id, "nope"]);
    let stderr = String::from_utf8_lossy(&human.stderr);
    assert!(
        stderr.contains("hint: `rehearse snapshot ls CLUSTER` lists its snapshots"),
        "{stderr}"
    );

    for bad in ["a/b", "../up", ".hidden", "Caps"] {
        let e = error_of(&["snapshot", &c.id, bad]);
        assert_eq!(e["code"], "refused", "{bad}: {e}");
        assert!(e["message"].as_str().unwrap().contains("[a-z0-9]"), "{e}");
    }
    assert!(!c.dir().join("a").exists() && !c.dir().join("up").exists());

    ok_json(&["snapshot", &c.id, "one"]);
    let e = error_of(&["snapshot", &c.id, "one"]);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("already has a snapshot \"one\""),
        "{e}"
    );
    let e = error_of(&["snapshot", "rm", &c.id, "two"]);
    assert_eq!(e["code"], "snapshot_not_found");
    assert!(
        e["message"].as_str().unwrap().contains("one"),
        "names the snapshots there are: {e}"
    );

    let e = error_of(&["save", &c.id, "node9", "img-x"]);
    assert_eq!(e["code"], "node_not_found", "{e}");
    assert!(e["message"].as_str().unwrap().contains("node1"), "{e}");
    let e = error_of(&["save", &c.id, "node1", "Bad/Name"]);
    assert!(e["message"].as_str().unwrap().contains("Bad/Name"), "{e}");
    let e = error_of(&["save", &c.id, "node1", "debian-12"]);
    assert!(
        e["message"].as_str().unwrap().contains("already exists"),
        "{e}"
    );

    let e = error_of(&["snapshot", "rm", &c.id]);
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("rehearse snapshot rm CLUSTER NAME"),
        "{e}"
    );
    let e = error_of(&["snapshot", "ffffff", "x"]);
    assert_eq!(e["code"], "cluster_not_found");

    // Restoring under an active fault would undo it behind its record.
    ok_json(&[
        "fault",
        &c.id,
        "disk-full",
        "node1",
        "/srv",
        "--size-mb",
        "1",
    ]);
    let e = error_of(&["restore", &c.id, "one"]);
    assert_eq!(e["code"], "refused", "{e}");
    assert!(
        e["message"].as_str().unwrap().contains("heal them first"),
        "{e}"
    );
    ok_json(&["heal", &c.id]);
    ok_json(&["restore", &c.id, "one"]);

    assert!(
        stray_snapshot_files(&c).is_empty(),
        "{:?}",
        stray_snapshot_files(&c)
    );
    assert_eq!(snapshot_names(&c), ["one"]);

    // What a snapshot killed mid-way leaves (a frozen node, a half-written
    // folder) is undone by the next snapshot operation, even one that
    // freezes nothing itself.
    let freeze = ["/sys/fs/cgroup/unified/rehearse", "/sys/fs/cgroup/rehearse"]
        .iter()
        .map(|root| Path::new(root).join(&c.id).join("node1/cgroup.freeze"))
        .find(|p| p.exists())
        .expect("node1 has a unified cgroup");
    std::fs::write(&freeze, "1").unwrap();
    std::fs::create_dir_all(c.dir().join("snapshots/.new-gone-999999/node1/etc")).unwrap();
    assert!(!frozen_cgroups(&c.id).is_empty());
    ok_json(&["snapshot", "rm", &c.id, "one"]);
    assert!(frozen_cgroups(&c.id).is_empty());
    assert!(
        stray_snapshot_files(&c).is_empty(),
        "{:?}",
        stray_snapshot_files(&c)
    );
    assert_eq!(c.ok("node1", "echo alive"), "alive");
    assert!(snapshot_names(&c).is_empty());
    let id = c.id.clone();
    drop(c);
    assert!(Leftovers::of(&id).is_empty());
}
