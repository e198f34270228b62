//! Distributions: the built-in images of every Debian and Ubuntu release in
//! support, and the same scenario proven on several of them at once.

mod common;

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn nginx_lb_passes_on_debian_11_12_and_13_through_platform() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let junit = tmp.path().join("junit.xml");
    let example = repo().join("examples/nginx-lb");
    let (code, report) = run_json(&[
        "run",
        example.to_str().unwrap(),
        "--platform",
        "debian-11,debian-12,debian-13",
        "--junit",
        junit.to_str().unwrap(),
    ]);
    let platforms = report["platforms"]
        .as_array()
        .unwrap_or_else(|| panic!("no platforms in {report}"));
    let names: Vec<&str> = platforms
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["debian-11", "debian-12", "debian-13"], "{report}");
    for p in platforms {
        let platform = p["platform"].as_str().unwrap();
        assert_eq!(
            p["outcome"],
            "passed",
            "{platform}: {}",
            serde_json::to_string_pretty(p).unwrap()
        );
        let nodes = p["nodes"].as_array().unwrap();
        assert_eq!(nodes.len(), 3, "{platform}: {p}");
        for node in nodes {
            assert_eq!(node["image"], platform, "{platform}: {node}");
        }
        assert_eq!(p["idempotence"]["passed"], true, "{platform}");
        let cluster = p["cluster"].as_str().expect("a cluster per platform");
        assert!(
            Leftovers::of(cluster).is_empty(),
            "{platform} left cluster {cluster} behind: {:?}",
            Leftovers::of(cluster)
        );
    }
    let clusters: std::collections::HashSet<&str> = platforms
        .iter()
        .map(|p| p["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(clusters.len(), 3, "one fresh cluster per platform");
    assert_eq!(report["outcome"], "passed");
    assert_eq!(code, 0);

    let xml = std::fs::read_to_string(&junit).unwrap();
    for platform in names {
        assert!(
            xml.contains(&format!("<testsuite name=\"rehearse.nginx-lb.{platform}\"")),
            "no suite for {platform}: {xml}"
        );
    }
    assert_eq!(xml.matches("<testsuite ").count(), 3, "{xml}");
    assert!(!xml.contains("<failure"), "{xml}");

    // The matrix is one run in the history, with a part per platform.
    let run_id = report["run_id"].as_str().unwrap();
    let (code, shown) = run_json(&["runs", "show", run_id]);
    assert_eq!(code, 0, "{shown}");
    let parts: Vec<&str> = shown["children"]
        .as_array()
        .unwrap_or_else(|| panic!("no parts in {shown}"))
        .iter()
        .filter_map(|c| c["role"].as_str())
        .collect();
    assert_eq!(
        parts.len(),
        3,
        "one recorded run per platform under the matrix: {shown}"
    );
    assert!(parts.contains(&"platform debian-11"), "{parts:?}");
}

#[test]
fn a_failing_platform_fails_the_matrix_and_says_which() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    // Holds on Debian 12 only: the matrix passes one platform and fails the other.
    write(
        tmp.path(),
        "rehearse.yaml",
        "nodes: [a, {name: b, image: debian-12}]\n\
         platforms: [debian-12, debian-13]\n\
         checks:\n  - command: grep -q bookworm /etc/os-release\n",
    );
    let (code, report) = run_json(&["run", tmp.path().to_str().unwrap()]);
    assert_eq!(code, 1, "{report}");
    assert_eq!(report["outcome"], "failed");
    let outcome = |platform: &str| {
        report["platforms"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["platform"] == platform)
            .map(|p| p["outcome"].clone())
            .unwrap_or_else(|| panic!("no {platform} in {report}"))
    };
    assert_eq!(outcome("debian-12"), "passed");
    assert_eq!(outcome("debian-13"), "failed");
    // The pinned node stays on its image on every platform.
    let on_13 = report["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["platform"] == "debian-13")
        .unwrap();
    let images: Vec<(&str, &str)> = on_13["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["name"].as_str().unwrap(), n["image"].as_str().unwrap()))
        .collect();
    assert_eq!(images, [("a", "debian-13"), ("b", "debian-12")]);

    // The terminal table names each platform and its result.
    let out = run(&[
        "run",
        tmp.path().to_str().unwrap(),
        "--platform",
        "debian-13",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("PLATFORM"), "{text}");
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("debian-13"))
        .unwrap_or_else(|| panic!("no debian-13 row in {text}"));
    assert!(row.contains("failed") && row.contains("1/2"), "{row}");
}

#[test]
fn an_unknown_platform_or_image_lists_the_known_ones() {
    let example = repo().join("examples/nginx-lb");
    let out = run(&[
        "run",
        example.to_str().unwrap(),
        "--platform",
        "debian-12,fedora-99",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("\"fedora-99\""), "{err}");
    for known in [
        "debian-11",
        "debian-12",
        "debian-13",
        "ubuntu-22.04",
        "ubuntu-24.04",
    ] {
        assert!(err.contains(known), "{known} not listed: {err}");
    }
    let out = run(&["image", "build", "debian-99"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        err.contains("\"debian-99\"") && err.contains("ubuntu-24.04"),
        "{err}"
    );
}

#[test]
fn an_unreachable_archive_is_named_and_nothing_is_left_half_built() {
    let home = tempfile::tempdir().unwrap();
    // Port 9 (discard) on loopback: nothing listens, so the archive cannot be reached.
    let spec = write(
        home.path(),
        "offline.yaml",
        "name: offline\nsuite: bookworm\nmirror: http://127.0.0.1:9/debian\n",
    );
    let out = std::process::Command::new(bin())
        .args(["image", "build", "-f", spec.to_str().unwrap()])
        .env("REHEARSE_HOME", home.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("http://127.0.0.1:9/debian"), "{err}");
    assert!(err.contains("could not be reached"), "{err}");
    assert!(err.contains("egress") && err.contains("mirror"), "{err}");
    let images = home.path().join("images");
    let left: Vec<String> = std::fs::read_dir(&images)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                // Lock files are empty and reused by the next build.
                .filter(|n| !n.starts_with(".lock-"))
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left in the image cache: {left:?}");
}

/// Whether `host` serves an Ubuntu `Release` file for noble over plain HTTP.
fn ubuntu_archive_reachable() -> Result<(), String> {
    let host = "archive.ubuntu.com";
    let addr = (host, 80)
        .to_socket_addrs()
        .map_err(|e| format!("{host} does not resolve: {e}"))?
        .next()
        .ok_or_else(|| format!("{host} has no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("{host}:80 does not accept connections: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(
        stream,
        "GET /ubuntu/dists/noble/Release HTTP/1.0\r\nHost: {host}\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut head = vec![0; 4096];
    let n = stream.read(&mut head).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&head[..n]);
    if text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200") {
        Ok(())
    } else {
        Err(format!(
            "{host} answered {}",
            text.lines().next().unwrap_or("nothing")
        ))
    }
}

#[test]
fn ubuntu_images_build_and_boot_where_the_archive_is_reachable() {
    require_root();
    if let Err(why) = ubuntu_archive_reachable() {
        println!("the Ubuntu archive is not reachable from this host ({why}): Ubuntu images were not built or booted");
        return;
    }
    println!("the Ubuntu archive is reachable: building and booting ubuntu-22.04 and ubuntu-24.04");
    for (image, release) in [("ubuntu-22.04", "22.04"), ("ubuntu-24.04", "24.04")] {
        let (code, built) = run_json(&["image", "build", image]);
        assert_eq!(
            code, 0,
            "building {image} with its archive reachable: {built}"
        );
        assert_eq!(built["distro"], "ubuntu", "{built}");
        assert_eq!(built["release"], release, "{built}");
        let cluster = Cluster::up(&["-n", "2", "--image", image]);
        assert_eq!(
            cluster.ok("node1", "systemctl is-system-running"),
            "running"
        );
        assert_eq!(
            cluster.ok("node1", ". /etc/os-release; echo $ID $VERSION_ID"),
            format!("ubuntu {release}")
        );
        assert_eq!(
            cluster.ok("node1", "ssh -o BatchMode=yes node2 hostname"),
            "node2"
        );
        assert_eq!(
            cluster.ok("node2", "python3 -c 'print(1 + 1)'"),
            "2",
            "{image} has python3 for checks and Ansible"
        );
    }
    let (code, listed) = run_json(&["image", "ls"]);
    assert_eq!(code, 0);
    let rows = listed["images"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|i| i["name"] == "ubuntu-24.04" && i["release"] == "24.04"),
        "{listed}"
    );
}
