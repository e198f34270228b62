//! Faults on real clusters: each kind is injected, observed from another node,
//! healed, and leaves nothing behind.

mod common;

use common::{run_json, Cluster, Leftovers};
use serde_json::Value;

fn fault(c: &Cluster, args: &[&str]) -> Value {
    let mut all = vec!["fault", &c.id];
    all.extend_from_slice(args);
    let (code, v) = run_json(&all);
    assert_eq!(code, 0, "rehearse fault {args:?}: {v}");
    assert_eq!(v["status"], "active", "{v}");
    v
}

fn heal(c: &Cluster) -> Vec<Value> {
    let (code, v) = run_json(&["heal", &c.id]);
    assert_eq!(code, 0, "rehearse heal: {v}");
    v["healed"].as_array().cloned().unwrap_or_default()
}

/// Whether `from` reaches TCP port `port` of `to` within 2 s.
fn reaches(c: &Cluster, from: &str, to: &str, port: u16) -> bool {
    c.sh(from, &format!("timeout 2 bash -c '</dev/tcp/{to}/{port}'"))
        .0
        == 0
}

fn pings(c: &Cluster, from: &str, to: &str) -> bool {
    c.sh(from, &format!("ping -c 1 -W 1 {to}")).0 == 0
}

/// The tables and qdiscs a node's namespace holds, and the delayers alive.
fn traces(c: &Cluster, node: &str) -> (String, String, usize) {
    let tables = c.ok(
        node,
        "nft list tables 2>/dev/null; iptables-save 2>/dev/null | grep RH_FAULT || true",
    );
    let qdiscs = c.ok(
        node,
        "tc qdisc show 2>/dev/null | grep -E 'tbf|netem' || true",
    );
    let helpers = ["/sys/fs/cgroup/unified/rehearse", "/sys/fs/cgroup/rehearse"]
        .iter()
        .map(|root| format!("{root}/{}/_helpers/cgroup.procs", c.id))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .map(|t| t.lines().count())
        .sum();
    (tables, qdiscs, helpers)
}

fn assert_gone_after_down(c: Cluster) {
    let id = c.id.clone();
    drop(c);
    let left = Leftovers::of(&id);
    assert!(left.is_empty(), "cluster {id} left {left:?}");
}

#[test]
fn network_faults_are_seen_from_other_nodes_and_heal_without_a_trace() {
    let c = Cluster::up(&["--nodes", "3"]);
    assert!(pings(&c, "node1", "node2"));

    // A partition cuts both ways between the sides and nothing else.
    fault(&c, &["partition", "node1", "node2"]);
    assert!(!pings(&c, "node1", "node2"));
    assert!(!pings(&c, "node2", "node1"));
    assert!(pings(&c, "node1", "node3"), "node3 is on no side");
    assert_eq!(heal(&c).len(), 1);
    assert!(pings(&c, "node1", "node2"));

    // Total loss towards one peer only.
    fault(&c, &["link", "node1", "--to", "node2", "--loss", "100"]);
    assert!(!pings(&c, "node1", "node2"));
    assert!(pings(&c, "node1", "node3"));
    heal(&c);
    assert!(pings(&c, "node1", "node2"));

    // Added latency is real: every round trip takes at least the delay.
    let v = fault(
        &c,
        &[
            "link", "node1", "--to", "node2", "--delay", "150ms", "--jitter", "20ms",
        ],
    );
    assert!(v["detail"].as_str().unwrap().contains("latency"), "{v}");
    let out = c.ok("node1", "ping -c 4 -i 0.2 -q node2 | tail -1");
    let min: f64 = out
        .split('=')
        .nth(1)
        .and_then(|s| s.trim().split('/').next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no rtt in {out}"));
    assert!(
        min >= 125.0,
        "rtt min {min} ms under a 150±20 ms delay: {out}"
    );
    let out = c.ok("node1", "ping -c 2 -i 0.2 -q node3 | tail -1");
    assert!(!out.contains("/1"), "node3 is not delayed: {out}");

    // A bandwidth cap shapes the node's interface.
    fault(&c, &["link", "node3", "--rate-kbit", "256"]);
    let (_, qdiscs, helpers) = traces(&c, "node3");
    assert!(qdiscs.contains("tbf"), "{qdiscs}");
    assert_eq!(
        helpers, 1,
        "the delayer of node1 runs in the cluster's cgroup"
    );

    let (code, list) = run_json(&["fault", &c.id, "list"]);
    assert_eq!(code, 0);
    assert_eq!(list["faults"].as_array().unwrap().len(), 4, "{list}");

    assert_eq!(heal(&c).len(), 2);
    let out = c.ok("node1", "ping -c 2 -i 0.2 -q node2 | tail -1");
    let min: f64 = out
        .split('=')
        .nth(1)
        .and_then(|s| s.trim().split('/').next())
        .and_then(|s| s.parse().ok())
        .unwrap();
    assert!(min < 100.0, "the delay is gone: {out}");
    for node in ["node1", "node2", "node3"] {
        let (tables, qdiscs, helpers) = traces(&c, node);
        assert!(
            !tables.contains("rehearse_fault") && !tables.contains("RH_FAULT"),
            "{node}: {tables}"
        );
        assert!(qdiscs.is_empty(), "{node}: {qdiscs}");
        assert_eq!(helpers, 0, "no delayer is left");
    }

    // Destroying the cluster with a fault on ends it too (the delayer included).
    fault(&c, &["link", "node1", "--delay", "50ms"]);
    assert_gone_after_down(c);
}

#[test]
fn node_faults_are_seen_from_other_nodes_and_heal() {
    let c = Cluster::up(&["--nodes", "2"]);
    c.ok(
        "node2",
        "printf '[Service]\\nExecStart=/usr/bin/python3 -m http.server 8080\\n' > /etc/systemd/system/web.service \
         && systemctl daemon-reload && systemctl start web \
         && for i in $(seq 50); do bash -c '</dev/tcp/127.0.0.1/8080' 2>/dev/null && break; sleep 0.1; done",
    );
    assert!(reaches(&c, "node1", "node2", 8080));

    // Stopping and killing a service: its port closes for the other node.
    fault(&c, &["stop", "node2", "web"]);
    assert!(!reaches(&c, "node1", "node2", 8080));
    heal(&c);
    c.ok("node2", "for i in $(seq 50); do bash -c '</dev/tcp/127.0.0.1/8080' 2>/dev/null && break; sleep 0.1; done");
    assert!(reaches(&c, "node1", "node2", 8080));
    fault(&c, &["kill", "node2", "web"]);
    assert!(!reaches(&c, "node1", "node2", 8080));
    assert_ne!(c.ok("node2", "systemctl is-active web || true"), "active");
    heal(&c);
    c.ok("node2", "for i in $(seq 50); do bash -c '</dev/tcp/127.0.0.1/8080' 2>/dev/null && break; sleep 0.1; done");
    assert!(reaches(&c, "node1", "node2", 8080));

    // A stopped service that is not running cannot be stopped again.
    let (code, v) = run_json(&["fault", &c.id, "stop", "node2", "no-such-unit"]);
    assert_ne!(code, 0);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not active"),
        "{v}"
    );

    // A full disk: writes under the path fail, files there stay readable.
    c.ok(
        "node2",
        "mkdir -p /var/lib/app && echo kept > /var/lib/app/old",
    );
    let v = fault(
        &c,
        &["disk-full", "node2", "/var/lib/app", "--size-mb", "4"],
    );
    assert!(v["detail"].as_str().unwrap().contains("100%"), "{v}");
    let (code, _, err) = c.sh("node2", "head -c 100000 /dev/zero > /var/lib/app/new");
    assert_ne!(code, 0, "a write to a full disk fails");
    assert!(!err.is_empty());
    assert_eq!(c.ok("node2", "cat /var/lib/app/old"), "kept");
    assert!(
        c.ok("node2", "df -k / | tail -1")
            .split_whitespace()
            .nth(3)
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 100_000,
        "the rest of the node's disk is untouched"
    );
    heal(&c);
    c.ok("node2", "head -c 100000 /dev/zero > /var/lib/app/new");
    assert_eq!(
        c.ok("node2", "grep -c rehearse-diskfull /proc/mounts || true"),
        "0"
    );

    // A reboot: the node comes back with a fresh /run (a tmpfs of each boot).
    c.ok("node2", "touch /run/before-reboot");
    let (code, v) = run_json(&["fault", &c.id, "reboot", "node2"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["status"], "done");
    c.ok("node2", "test ! -e /run/before-reboot");

    // A crash: the node is gone for the others until healed.
    fault(&c, &["crash", "node2"]);
    assert!(!pings(&c, "node1", "node2"));
    let (code, v) = run_json(&["exec", &c.id, "node2", "--", "true"]);
    assert_ne!(code, 0, "a crashed node runs nothing: {v}");
    heal(&c);
    assert!(pings(&c, "node1", "node2"));
    c.ok("node2", "test -f /var/lib/app/old");

    // Heal with nothing active says so; an unknown id is refused.
    assert!(heal(&c).is_empty());
    let (code, v) = run_json(&["heal", &c.id, "99"]);
    assert_ne!(code, 0);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no fault 99"),
        "{v}"
    );

    // Bad input names what is wrong.
    let (code, v) = run_json(&["fault", &c.id, "crash", "node9"]);
    assert_ne!(code, 0);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("node9"),
        "{v}"
    );
    let (code, v) = run_json(&["fault", &c.id, "link", "node1"]);
    assert_ne!(code, 0);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at least one of loss, delay or rate_kbit"),
        "{v}"
    );

    fault(&c, &["disk-full", "node1", "/srv/data"]);
    fault(&c, &["crash", "node2"]);
    assert_gone_after_down(c);
}
