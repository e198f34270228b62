//! A node crashed by a fault: its commands fail saying how to bring it back,
//! and `rehearse heal` does.

mod common;

use common::{run_json, Cluster, Leftovers};

#[test]
fn exec_on_a_crashed_node_says_heal_brings_it_back() {
    let c = Cluster::up(&["-n", "2"]);
    let (code, v) = run_json(&["fault", &c.id, "crash", "node1"]);
    assert_eq!(code, 0, "{v}");

    let (code, v) = run_json(&["exec", &c.id, "node1", "--", "true"]);
    assert_ne!(code, 0, "{v}");
    assert_eq!(v["error"]["code"], "node_down", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("`rehearse heal {}`", c.id)),
        "{message}"
    );
    assert!(message.contains("call heal"), "{message}");
    // The other node is unaffected.
    assert_eq!(c.ok("node2", "echo up"), "up");

    let (code, v) = run_json(&["heal", &c.id]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(c.ok("node1", "echo back"), "back");
    let id = c.id.clone();
    drop(c);
    let left = Leftovers::of(&id);
    assert!(left.is_empty(), "cluster {id} left {left:?}");
}
