//! Per-node resource limits: written in the topology, enforced by the node's
//! cgroups, shown by `ls`, and a node past its memory limit is OOM-killed
//! alone and reported as such.

mod common;

use std::path::Path;

use common::{run, run_json, write, Cluster};
use serde_json::Value;

/// The node's limits as `rehearse ls ID --json` reports them.
fn node_info(cluster: &str, node: &str) -> Value {
    let (code, ls) = run_json(&["ls", cluster]);
    assert_eq!(code, 0, "{ls}");
    ls["clusters"][0]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node)
        .unwrap_or_else(|| panic!("no {node} in {ls}"))
        .clone()
}

/// The value of a cgroup file of the node, whichever hierarchy holds it.
fn cgroup_file(cluster: &str, node: &str, v1: (&str, &str), v2: &str) -> String {
    let legacy = Path::new("/sys/fs/cgroup")
        .join(v1.0)
        .join("rehearse")
        .join(cluster)
        .join(node)
        .join(v1.1);
    let unified = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(|root| {
            Path::new(root)
                .join("rehearse")
                .join(cluster)
                .join(node)
                .join(v2)
        })
        .find(|p| p.exists());
    let path = if legacy.exists() {
        legacy
    } else {
        unified.unwrap_or_else(|| panic!("no {v2} for {cluster}/{node}"))
    };
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim()
        .to_string()
}

const ALLOCATE: &str = "python3 -c 'b = bytearray(512 << 20); print(len(b))'";

const FORK: &str = r#"python3 - <<'EOF'
import os, time
kids = []
try:
    for _ in range(1000):
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        kids.append(pid)
    print("forked", len(kids))
except OSError as e:
    print("stopped at", len(kids), e.strerror)
for k in kids:
    os.kill(k, 9)
EOF"#;

#[test]
fn a_node_past_its_memory_limit_is_oom_killed_alone_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let topology = write(
        dir.path(),
        "limits.yaml",
        "nodes:\n  - name: small\n    memory: 128M\n    cpus: 0.5\n    pids: 200\n  - big\n",
    );
    let cluster = Cluster::up(&["-f", topology.to_str().unwrap()]);

    // Limits as written, defaults filled in for the node that set none.
    let small = node_info(&cluster.id, "small");
    assert_eq!(small["limits"]["memory_bytes"], 128u64 << 20, "{small}");
    assert_eq!(small["limits"]["cpus"], 0.5, "{small}");
    assert_eq!(small["limits"]["pids"], 200, "{small}");
    assert_eq!(
        small["limits"]["text"],
        "memory 128 MiB, cpus 0.5, pids 200"
    );
    let big = node_info(&cluster.id, "big");
    assert_eq!(big["limits"]["pids"], 4096, "{big}");
    assert!(
        big["limits"]["memory_bytes"].as_u64().unwrap() > 128 << 20,
        "the default is a share of the host: {big}"
    );
    assert!(big["limits"].get("cpus").is_none(), "{big}");
    assert!(small["memory_used_bytes"].as_u64().unwrap() > 0, "{small}");
    // The human view shows them too.
    let out = run(&["ls", &cluster.id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("memory 128 MiB, cpus 0.5, pids 200"),
        "{text}"
    );

    // CPU time is capped by the kernel's quota, not a timing in this test.
    let quota = cgroup_file(&cluster.id, "small", ("cpu", "cpu.cfs_quota_us"), "cpu.max");
    assert!(quota == "50000" || quota == "50000 100000", "{quota}");

    // Past its memory limit, the allocating process is killed; the node,
    // its neighbour and the report say so.
    let (code, out, err) = cluster.sh("small", ALLOCATE);
    assert_eq!(code, 137, "killed by SIGKILL: stdout={out} stderr={err}");
    assert!(
        err.contains("node small reached its memory limit (128 MiB)") && err.contains("OOM-killed"),
        "{err}"
    );
    assert!(
        node_info(&cluster.id, "small")["oom_kills"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(node_info(&cluster.id, "big")["oom_kills"], 0);
    assert_eq!(
        cluster.ok("big", ALLOCATE),
        (512u64 << 20).to_string(),
        "the node without a tight limit allocates the same"
    );
    // The small node lives on: only the process that overran was killed.
    assert_eq!(cluster.ok("small", "echo alive"), "alive");

    // No more processes than `pids`.
    let forked = cluster.ok("small", FORK);
    let made: usize = forked
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("{forked}"));
    assert!(forked.starts_with("stopped at") && made < 200, "{forked}");
    let forked = cluster.ok("big", FORK);
    assert!(forked.starts_with("forked 1000"), "{forked}");
}

#[test]
fn limits_no_host_can_meet_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let home = common::home();
    for (yaml, says) in [
        (
            "nodes:\n  - name: huge\n    memory: 64T\n",
            "node huge asks for memory 64 TiB",
        ),
        (
            "nodes:\n  - name: wide\n    cpus: 1000\n",
            "node wide asks for cpus 1000",
        ),
        ("nodes: 1\nlimits:\n  memory: 8M\n", "limits.memory"),
    ] {
        let topology = write(dir.path(), "t.yaml", yaml);
        let (code, out) = home.run_json(&["up", "-f", topology.to_str().unwrap()]);
        assert_ne!(code, 0, "{yaml}: {out}");
        assert!(out.to_string().contains(says), "{yaml}: {out}");
        let (_, ls) = home.run_json(&["ls"]);
        assert_eq!(ls["clusters"], serde_json::json!([]), "{yaml}: {ls}");
        let clusters = home.path().join("clusters");
        let left: Vec<_> = std::fs::read_dir(&clusters)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "{yaml}: {left:?} left in {}",
            clusters.display()
        );
    }
}
