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
        message.contains(&format!("rehearse image rm {name}")),
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
