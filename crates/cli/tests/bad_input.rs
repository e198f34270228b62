//! Bad input of every kind is refused with a message naming what, where and how
//! to fix it, and nothing is left behind.

mod common;

use std::path::Path;

use common::*;

/// Clusters whose topology came from `path`.
fn clusters_from(path: &Path) -> usize {
    let (_, v) = run_json(&["ls"]);
    v["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source"] == path.to_str().unwrap())
        .count()
}

#[test]
fn malformed_topologies_are_refused_before_anything_starts() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        ("unknown-key.yaml", "nodes: [a]\nnodez: 3\n", "unknown-key.yaml:2:1", "nodez"),
        ("duplicate.yaml", "nodes:\n  - name: web\n  - name: web\n", "duplicate.yaml:3:11", "nodes[1].name"),
        ("bad-cidr.yaml", "nodes: [a]\nnetworks:\n  - name: n\n    cidr: 10.1.300.0/24\n", "bad-cidr.yaml:4:11", "networks[0].cidr"),
        (
            "overlap.yaml",
            "nodes: [{name: a, networks: [x, y]}]\nnetworks:\n  - {name: x, cidr: 10.9.0.0/16}\n  - {name: y, cidr: 10.9.4.0/24}\n",
            "overlap.yaml:4",
            "networks[1].cidr",
        ),
        ("too-many.yaml", "nodes: 7\nnetworks:\n  - name: n\n    cidr: 10.8.0.0/29\n", "too-many.yaml", "7 nodes"),
        ("syntax.yaml", "nodes: [a\n", "syntax.yaml:2:1", "flow sequence"),
    ];
    for (name, text, location, field) in cases {
        let path = write(tmp.path(), name, text);
        let out = run(&["up", "--no-reaper", "-f", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name} was accepted");
        assert!(
            stderr.contains(location),
            "{name}: no location {location} in: {stderr}"
        );
        assert!(
            stderr.contains(field),
            "{name}: no field {field} in: {stderr}"
        );
        assert!(
            stderr.contains("hint:") || name == "syntax.yaml",
            "{name}: no fix suggested: {stderr}"
        );
        assert_eq!(clusters_from(&path), 0, "{name} left a cluster behind");
    }
    // --json gives a machine-readable code.
    let path = tmp.path().join("duplicate.yaml");
    let (code, v) = run_json(&["up", "-f", path.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert_eq!(v["error"]["code"], "invalid_spec");
}

#[test]
fn a_missing_host_tool_names_its_package() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    // A PATH with every tool but systemd-nspawn.
    let bin_dir = tmp.path().join("bin");
    std::fs::create_dir(&bin_dir).unwrap();
    for tool in [
        "nsenter",
        "ip",
        "nft",
        "ssh-keygen",
        "tar",
        "apt-cacher-ng",
        "mmdebstrap",
    ] {
        if let Some(p) = ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
            .iter()
            .map(|d| Path::new(d).join(tool))
            .find(|p| p.exists())
        {
            std::os::unix::fs::symlink(p, bin_dir.join(tool)).unwrap();
        }
    }
    let topo = write(tmp.path(), "one.yaml", "nodes: 1\n");
    let out = common::command()
        .args(["up", "--no-reaper", "-f", topo.to_str().unwrap()])
        .env("PATH", &bin_dir)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("systemd-nspawn") && stderr.contains("systemd-container"),
        "{stderr}"
    );
    assert_eq!(clusters_from(&topo), 0);

    // doctor says the same, per requirement.
    let out = common::command()
        .args(["--json", "doctor"])
        .env("PATH", &bin_dir)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], false);
    let nspawn = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "package systemd-container")
        .unwrap();
    assert_eq!(nspawn["ok"], false);
    assert!(
        nspawn["fix"]
            .as_str()
            .unwrap()
            .contains("systemd-container"),
        "{nspawn}"
    );
}

#[test]
fn a_node_that_fails_to_boot_fails_up_with_its_log_and_leaves_nothing() {
    require_root();
    // An image whose root is not an OS tree: systemd-nspawn refuses to boot it.
    let spec =
        rehearse_image::ImageSpec::from_yaml("name: not-an-os\nsuite: bookworm\n", "test").unwrap();
    let id = rehearse_image::ImageCache::id_of(&spec);
    let dir = state_dir().join("images").join(&id);
    std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    let meta = serde_json::json!({
        "id": id, "name": "not-an-os", "spec": spec, "uid_base": rehearse_image::UID_BASE,
        "built_at": 0, "build_secs": 0.0, "size_bytes": 0,
    });
    std::fs::write(dir.join("image.json"), meta.to_string()).unwrap();
    std::fs::create_dir_all(state_dir().join("images/names")).unwrap();
    std::fs::write(state_dir().join("images/names/not-an-os"), &id).unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let topo = write(
        tmp.path(),
        "broken.yaml",
        "nodes:\n  - name: good\n  - name: bad\n    image: not-an-os\n",
    );
    let out = run(&[
        "up",
        "--no-reaper",
        "--boot-timeout",
        "20s",
        "-f",
        topo.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let _ = run(&["image", "rm", "not-an-os"]);
    assert!(!out.status.success());
    assert!(stderr.contains("node bad of cluster"), "{stderr}");
    assert!(stderr.contains("last lines of bad's boot log"), "{stderr}");
    assert!(
        stderr.contains("os-release") || stderr.contains("OS tree"),
        "the boot log tail says why: {stderr}"
    );
    let cluster = stderr
        .split("of cluster ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let left = Leftovers::of(cluster);
    assert!(left.is_empty(), "failed up left things behind: {left:?}");
    assert_eq!(clusters_from(&topo), 0);
}

#[test]
fn unknown_cluster_and_bad_paths_are_clear_errors() {
    let (code, v) = run_json(&["exec", "ffffff", "node1", "--", "true"]);
    assert_ne!(code, 0);
    assert_eq!(v["error"]["code"], "cluster_not_found");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("\"ffffff\""));
    // The terminal says what to type next.
    let human = run(&["exec", "ffffff", "node1", "--", "true"]);
    assert!(String::from_utf8_lossy(&human.stderr)
        .contains("hint: `rehearse ls` lists the live clusters"));
    let out = run(&["cp", "ffffff", "a", "b"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("NODE:/absolute/path"));
}
