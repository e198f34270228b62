//! `rehearse image import`: OCI images packed here from a root filesystem with
//! the tools users pack images with (tar, umoci, skopeo), imported, booted as
//! nodes; and every kind of bad image refused with nothing left in the store.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tool(program: &str, args: &[&str]) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} does not run ({e}): scripts/setup.sh installs it"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The node UID range base built-in images are shifted to.
const UID_BASE: u32 = 0x6000_0000;

/// Packs `rootfs` (a built-in image, shifted to the node range) as a layer
/// tarball owned as in a plain image (root is 0), capabilities and ACLs kept,
/// leaving out `exclude` (paths like `./usr/sbin/sshd`).
fn pack_layer(rootfs: &Path, out: &Path, exclude: &[&str]) {
    let (mut uids, mut gids) = (BTreeSet::new(), BTreeSet::new());
    let mut stack = vec![rootfs.to_path_buf()];
    while let Some(p) = stack.pop() {
        let meta = std::fs::symlink_metadata(&p).unwrap();
        uids.insert(meta.uid());
        gids.insert(meta.gid());
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().flatten().map(|e| e.path()));
        }
    }
    let map = |ids: &BTreeSet<u32>| -> String {
        ids.iter()
            .map(|id| format!("+{id} +{}\n", id.checked_sub(UID_BASE).unwrap_or(*id)))
            .collect()
    };
    let dir = out.parent().unwrap();
    let owners = write(dir, "owner-map", &map(&uids));
    let groups = write(dir, "group-map", &map(&gids));
    let mut args = vec![
        "--numeric-owner".to_string(),
        format!("--owner-map={}", owners.display()),
        format!("--group-map={}", groups.display()),
        "--xattrs".into(),
        "--xattrs-include=*".into(),
        "--acls".into(),
    ];
    args.extend(exclude.iter().map(|e| format!("--exclude={e}")));
    args.extend([
        "-C".into(),
        rootfs.display().to_string(),
        "-cf".into(),
        out.display().to_string(),
        ".".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    tool("tar", &args);
}

/// A layer that deletes `paths` from the layers below it (OCI whiteouts).
fn whiteout_layer(dir: &Path, name: &str, paths: &[&str]) -> PathBuf {
    let root = dir.join(format!("{name}-root"));
    for path in paths {
        let path = Path::new(path);
        let wh = root.join(path.parent().unwrap()).join(format!(
            ".wh.{}",
            path.file_name().unwrap().to_string_lossy()
        ));
        std::fs::create_dir_all(wh.parent().unwrap()).unwrap();
        std::fs::write(&wh, "").unwrap();
    }
    let out = dir.join(format!("{name}.tar"));
    tool(
        "tar",
        &[
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "-C",
            root.to_str().unwrap(),
            "-cf",
            out.to_str().unwrap(),
            ".",
        ],
    );
    out
}

/// An OCI image layout at `layout` (tag `latest`) with `layers`, bottom first,
/// made the way `umoci` users make one from tarballs.
fn oci_layout(layout: &Path, layers: &[&Path]) {
    let image = format!("{}:latest", layout.display());
    tool("umoci", &["init", "--layout", layout.to_str().unwrap()]);
    tool("umoci", &["new", "--image", &image]);
    for layer in layers {
        tool(
            "umoci",
            &[
                "raw",
                "add-layer",
                "--image",
                &image,
                layer.to_str().unwrap(),
            ],
        );
    }
    tool(
        "umoci",
        &["config", "--image", &image, "--config.cmd", "/sbin/init"],
    );
}

/// `skopeo copy` of a layout into another transport (`oci-archive:`,
/// `docker-archive:`), as `podman save` / `docker save` would write it.
fn copy(layout: &Path, dest: &str) {
    tool(
        "skopeo",
        &[
            "--insecure-policy",
            "copy",
            "--quiet",
            &format!("oci:{}:latest", layout.display()),
            dest,
        ],
    );
}

/// The packed debian-12 root filesystem, made once per image under target/
/// (reused by later runs of the tests).
struct Base {
    layer: PathBuf,
    rootfs: PathBuf,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        require_root();
        let (code, image) = run_json(&["image", "build", "debian-12"]);
        assert_eq!(code, 0, "{image}");
        let rootfs = PathBuf::from(image["rootfs"].as_str().unwrap());
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("import-{}", image["id"].as_str().unwrap()));
        std::fs::create_dir_all(&dir).unwrap();
        let layer = dir.join("rootfs.tar");
        if !layer.exists() {
            let partial = dir.join("rootfs.tar.partial");
            pack_layer(&rootfs, &partial, &[]);
            std::fs::rename(&partial, &layer).unwrap();
        }
        Base { layer, rootfs }
    })
}

/// What the image cache under `home` holds besides its lock files.
fn store_contents(home: &Path) -> Vec<String> {
    let mut left: Vec<String> = std::fs::read_dir(home.join("images"))
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with(".lock-"))
                .collect()
        })
        .unwrap_or_default();
    if let Ok(names) = std::fs::read_dir(home.join("images/names")) {
        left.extend(
            names
                .flatten()
                .map(|e| format!("names/{}", e.file_name().to_string_lossy())),
        );
    }
    left.retain(|n| n != "names");
    left
}

/// An imported image, removed from the shared store when the test ends.
struct Imported(String);

impl Drop for Imported {
    fn drop(&mut self) {
        let _ = run(&["image", "rm", &self.0]);
    }
}

#[test]
fn an_oci_archive_packed_from_a_rootfs_boots_as_nodes_that_pass_checks() {
    let base = base();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    // A second layer that deletes a file: whiteouts must be applied.
    let motd = whiteout_layer(work.path(), "no-motd", &["etc/motd"]);
    assert!(base.rootfs.join("etc/motd").exists());
    oci_layout(&layout, &[&base.layer, &motd]);
    let archive = work.path().join("debian-12-oci.tar");
    copy(&layout, &format!("oci-archive:{}", archive.display()));

    let name = format!("imported-{}", std::process::id());
    let (code, image) = run_json(&[
        "image",
        "import",
        archive.to_str().unwrap(),
        "--name",
        &name,
    ]);
    let _cleanup = Imported(name.clone());
    assert_eq!(code, 0, "{image}");
    assert_eq!(image["distro"], "debian", "{image}");
    assert!(
        image["imported"]
            .as_str()
            .unwrap()
            .starts_with("oci-archive:"),
        "{image}"
    );
    let (_, listed) = run_json(&["image", "ls"]);
    assert!(
        listed["images"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == name.as_str()),
        "{listed}"
    );

    // Booted as a 3-node cluster: systemd up, SSH between nodes, python3,
    // owners, capabilities and the whiteout as the image had them.
    let cluster = Cluster::up(&["-n", "3", "--image", &name]);
    for node in ["node1", "node2", "node3"] {
        let state = cluster.sh(node, "systemctl is-system-running --wait").1;
        assert_eq!(state.trim(), "running", "{node}");
    }
    cluster.ok("node1", "ssh -o BatchMode=yes node3 true");
    cluster.ok("node2", "python3 -c 'print(1)'");
    assert_eq!(
        cluster.ok("node1", "stat -c '%U %G' /etc/shadow /usr/bin/ping"),
        "root shadow\nroot root"
    );
    assert!(
        cluster
            .ok("node1", "getcap /usr/bin/ping")
            .contains("cap_net_raw"),
        "file capabilities survive packing, import and shifting"
    );
    cluster.ok("node1", "test ! -e /etc/motd");
    drop(cluster);

    // The same image proven by a scenario: nginx-lb passes on it.
    let (code, report) = run_json(&[
        "run",
        repo().join("examples/nginx-lb").to_str().unwrap(),
        "--platform",
        &name,
    ]);
    let platform = &report["platforms"][0];
    assert_eq!(platform["outcome"], "passed", "{report}");
    assert_eq!(platform["nodes"][0]["image"], name.as_str(), "{report}");
    assert_eq!(code, 0, "{report}");
    let cluster = platform["cluster"].as_str().unwrap();
    assert!(
        Leftovers::of(cluster).is_empty(),
        "{:?}",
        Leftovers::of(cluster)
    );
}

#[test]
fn a_docker_archive_and_an_oci_layout_folder_import_alike() {
    let base = base();
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    oci_layout(&layout, &[&base.layer]);
    let archive = work.path().join("saved.tar");
    copy(
        &layout,
        &format!("docker-archive:{}:example/debian:12", archive.display()),
    );
    let home = tempfile::tempdir().unwrap();
    for (source, name) in [(&archive, "from-docker"), (&layout, "from-layout")] {
        let out = Command::new(bin())
            .args(["--json", "image", "import"])
            .arg(source)
            .args(["--name", name])
            .env("REHEARSE_HOME", home.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{name}: {err}");
        let image: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rootfs = PathBuf::from(image["rootfs"].as_str().unwrap());
        // Stored as built-in images are: shifted to the node range, prepared.
        let meta = std::fs::metadata(rootfs.join("etc/shadow")).unwrap();
        let built_in = std::fs::metadata(base.rootfs.join("etc/shadow")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (built_in.uid(), built_in.gid()));
        // sshd is started the way the built-in image starts it.
        for unit in [
            "sockets.target.wants/ssh.socket",
            "multi-user.target.wants/ssh.service",
        ] {
            let rel = Path::new("etc/systemd/system").join(unit);
            assert_eq!(
                std::fs::read_link(rootfs.join(&rel)).ok(),
                std::fs::read_link(base.rootfs.join(&rel)).ok(),
                "{name}: {unit}"
            );
        }
    }
    // A name is taken once.
    let out = Command::new(bin())
        .args(["image", "import"])
        .arg(&layout)
        .args(["--name", "from-layout"])
        .env("REHEARSE_HOME", home.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn bad_images_are_refused_naming_what_is_missing_and_leave_nothing() {
    let base = base();
    let work = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let import = |source: &str, name: &str| -> String {
        let out = Command::new(bin())
            .args(["image", "import", source, "--name", name])
            .env("REHEARSE_HOME", home.path())
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "{source} was accepted: {err}");
        assert!(
            store_contents(home.path()).is_empty(),
            "{source} left {:?} in the store",
            store_contents(home.path())
        );
        err
    };
    let apt_line = "RUN apt-get update && apt-get install -y --no-install-recommends";

    // Without systemd: removed from the root filesystem before packing.
    let no_systemd = work.path().join("no-systemd-layer.tar");
    pack_layer(&base.rootfs, &no_systemd, &["./usr/lib/systemd/systemd"]);
    let layout = work.path().join("no-systemd");
    oci_layout(&layout, &[&no_systemd]);
    let archive = work.path().join("no-systemd.tar");
    copy(&layout, &format!("oci-archive:{}", archive.display()));
    let err = import(archive.to_str().unwrap(), "no-systemd");
    assert!(err.contains("has no systemd (the node's init"), "{err}");
    assert!(
        err.contains(&format!("{apt_line} systemd systemd-sysv")),
        "{err}"
    );

    // Without sshd, without python3: deleted by a layer on top.
    for (what, paths, package) in [
        ("sshd", &["usr/sbin/sshd"][..], "openssh-server"),
        (
            "python3",
            &["usr/bin/python3", "usr/bin/python3.11"][..],
            "python3",
        ),
    ] {
        let layer = whiteout_layer(work.path(), &format!("no-{what}"), paths);
        let layout = work.path().join(format!("no-{what}-layout"));
        oci_layout(&layout, &[&base.layer, &layer]);
        let archive = work.path().join(format!("no-{what}-image.tar"));
        copy(&layout, &format!("docker-archive:{}", archive.display()));
        let err = import(archive.to_str().unwrap(), &format!("no-{what}"));
        assert!(err.contains(&format!("has no {what} (")), "{what}: {err}");
        assert!(
            err.contains(&format!("{apt_line} {package} ")),
            "{what}: {err}"
        );
        assert!(!err.contains("systemd systemd-sysv"), "{what}: {err}");
    }

    // Not an image at all: a text file, a plain folder, a rootfs tarball.
    let text = write(work.path(), "notes.txt", "hello\n");
    let err = import(text.to_str().unwrap(), "text");
    assert!(err.contains("not a tar archive"), "{err}");
    let err = import(base.rootfs.join("etc").to_str().unwrap(), "folder");
    assert!(err.contains("oci-layout"), "{err}");
    let err = import(base.layer.to_str().unwrap(), "plain-tarball");
    assert!(err.contains("neither an `oci-layout`"), "{err}");

    // A corrupt layer: bytes changed in the layer blob of a layout.
    let layout = work.path().join("corrupt");
    oci_layout(&layout, &[&base.layer]);
    let blob = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .max_by_key(|e| e.metadata().unwrap().len())
        .unwrap()
        .path();
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::OpenOptions::new().write(true).open(&blob).unwrap();
        file.seek(SeekFrom::Start(4096)).unwrap();
        file.write_all(b"corrupted bytes").unwrap();
    }
    let err = import(layout.to_str().unwrap(), "corrupt");
    assert!(err.contains("Digest did not match"), "{err}");

    // A registry that cannot be reached: skopeo's error and what to check.
    let err = import("127.0.0.1:9/example/debian:12", "unreachable");
    assert!(err.contains("127.0.0.1:9"), "{err}");
    assert!(err.contains("reaches the registry"), "{err}");

    // A built-in name cannot be taken.
    let err = import(archive.to_str().unwrap(), "debian-12");
    assert!(err.contains("another name"), "{err}");
}
