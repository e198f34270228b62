//! A node that cannot boot fails at once, with its cause and the fix, and
//! leaves nothing behind.

mod common;

use common::*;

/// Removes a saved image when the test ends, pass or fail.
struct SavedImage(String);

impl Drop for SavedImage {
    fn drop(&mut self) {
        let _ = run(&["image", "rm", &self.0]);
    }
}

#[test]
fn a_node_whose_image_has_no_init_fails_at_once_naming_the_broken_image() {
    let name = format!("no-init-{}", std::process::id());
    let source = Cluster::up(&["--nodes", "1"]);
    source.ok(
        "node1",
        "mv /usr/lib/systemd/systemd /usr/lib/systemd/systemd.gone",
    );
    let out = run(&["--json", "save", &source.id, "node1", &name]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _image = SavedImage(name.clone());
    drop(source);

    let dir = tempfile::tempdir().unwrap();
    let topology = write(
        dir.path(),
        "topology.yaml",
        &format!("nodes:\n  - name: web\n    image: {name}\n"),
    );
    // A boot time-out far beyond the test's patience: the failure must come
    // from what the node printed, not from the clock.
    let (code, v) = run_json(&[
        "up",
        "--no-reaper",
        "--boot-timeout",
        "1h",
        "-f",
        topology.to_str().unwrap(),
    ]);
    assert_ne!(code, 0, "{v}");
    let message = v["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(message.contains("node web"), "{message}");
    assert!(message.contains("image is broken"), "{message}");
    assert!(
        message.contains(&format!("remove the image {name} and build it again")),
        "{message}"
    );
    assert!(!message.contains("timed out"), "{message}");
    // A broken image fails the same way every time: it is not retried.
    assert!(!message.contains("second try"), "{message}");
    assert!(
        !message.contains("Attempted to remove disk file system"),
        "nspawn's exit noise is not the reason: {message}"
    );
    let id = message
        .split("of cluster ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the message names the cluster")
        .to_string();
    let left = Leftovers::of(&id);
    assert!(left.is_empty(), "the failed cluster left {left:?}");
}

/// systemd-nspawn processes booting nodes of the state directory `home`.
fn nspawn_of(home: &std::path::Path) -> Vec<i32> {
    let needle = home.join("clusters").display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.starts_with("systemd-nspawn\0") || cmdline.contains("/systemd-nspawn\0"))
                && cmdline.contains(&needle)
        })
        .collect()
}

#[test]
fn a_node_whose_supervisor_dies_while_booting_is_booted_again_and_the_cluster_comes_up() {
    let home = common::home();
    // The first systemd-nspawn this state directory starts is killed as
    // soon as it appears: a crash that happens once.
    let watch_home = home.path().to_path_buf();
    let killer = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while std::time::Instant::now() < deadline {
            if let Some(pid) = nspawn_of(&watch_home).first() {
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(*pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .unwrap();
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        false
    });
    let out = home
        .command(&["up", "-n", "3"])
        .output()
        .expect("rehearse runs");
    assert!(killer.join().unwrap(), "no systemd-nspawn was seen to kill");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout={stdout} stderr={stderr}");
    // The user is told which node was booted again and why.
    assert!(
        stderr.contains("failed to boot")
            && stderr.contains("booting it once more on a fresh node"),
        "{stderr}"
    );
    let (code, ls) = home.run_json(&["ls"]);
    assert_eq!(code, 0, "{ls}");
    let cluster = &ls["clusters"][0];
    let id = cluster["cluster"].as_str().unwrap().to_string();
    let retried: Vec<&serde_json::Value> = cluster["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n.get("boot_retried").is_some())
        .collect();
    assert_eq!(retried.len(), 1, "{cluster}");
    let why = retried[0]["boot_retried"].as_str().unwrap();
    assert!(why.contains("systemd-nspawn exited"), "{why}");
    // Every node, the retried one included, is up and reachable.
    for node in ["node1", "node2", "node3"] {
        let (code, out) = home.run_json(&["exec", &id, node, "--", "ping", "-c1", "-W2", "node1"]);
        assert_eq!(code, 0, "{node}: {out}");
        assert_eq!(out["exit_code"], 0, "{node}: {out}");
    }
    let (code, out) = home.run_json(&["down", &id]);
    assert_eq!(code, 0, "{out}");
    let left = Leftovers::of_in(home.path(), &id);
    assert!(left.is_empty(), "{left:?}");
}
