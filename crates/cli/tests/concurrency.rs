//! Many clusters at once: separate `rehearse up` processes started together
//! get distinct ids, subnets and node UID ranges, all boot, and all go away
//! without a trace.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;

use common::*;
use serde_json::Value;

const CLUSTERS: usize = 8;
const NODES: usize = 4;

/// Host UIDs the processes of a cluster run as.
fn process_uids(id: &str) -> BTreeSet<u32> {
    let mut uids = BTreeSet::new();
    for root in ["/sys/fs/cgroup/unified/rehearse", "/sys/fs/cgroup/rehearse"] {
        let mut stack = vec![std::path::Path::new(root).join(id)];
        while let Some(dir) = stack.pop() {
            for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
                .unwrap_or_default()
                .lines()
            {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if let Some(uid) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next())
                    .and_then(|u| u.parse().ok())
                {
                    uids.insert(uid);
                }
            }
            if let Ok(entries) = std::fs::read_dir(&dir) {
                stack.extend(
                    entries
                        .flatten()
                        .filter(|e| e.path().is_dir())
                        .map(|e| e.path()),
                );
            }
        }
    }
    uids
}

#[test]
fn eight_clusters_of_four_nodes_started_by_separate_processes_all_boot_and_leave_nothing() {
    require_root();
    let children: Vec<_> = (0..CLUSTERS)
        .map(|_| {
            command()
                .args(["--json", "up", "--no-reaper", "--nodes", &NODES.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("rehearse starts")
        })
        .collect();
    let outputs: Vec<_> = children
        .into_iter()
        .map(|c| c.wait_with_output().expect("rehearse ends"))
        .collect();
    // Every cluster that came up is destroyed when the test ends, pass or fail.
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for out in &outputs {
        match serde_json::from_slice::<Value>(&out.stdout) {
            Ok(up) if out.status.success() => clusters.push(Cluster {
                id: up["cluster"].as_str().expect("cluster id").to_string(),
                up,
            }),
            _ => failures.push(format!(
                "{}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {CLUSTERS} `up` failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Distinct ids, subnets and per-node host UIDs across all clusters.
    let ids: BTreeSet<&str> = clusters.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids.len(), CLUSTERS);
    let subnets: BTreeSet<String> = clusters
        .iter()
        .flat_map(|c| c.up["networks"].as_array().unwrap().iter())
        .map(|n| n["cidr"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        subnets.len(),
        CLUSTERS,
        "one subnet per cluster: {subnets:?}"
    );
    let mut all_uids = BTreeSet::new();
    for c in &clusters {
        let uids = process_uids(&c.id);
        // Each node's root, and nothing in the images' range.
        let roots: BTreeSet<u32> = uids
            .iter()
            .copied()
            .filter(|u| *u != 0 && u & 0xffff == 0)
            .collect();
        assert_eq!(
            roots.len(),
            NODES,
            "cluster {}: node root UIDs {uids:?}",
            c.id
        );
        assert!(
            uids.iter().all(|u| *u == 0 || *u >= 0x7000_0000),
            "cluster {}: a process runs outside the node ranges: {uids:?}",
            c.id
        );
        for u in roots {
            assert!(all_uids.insert(u), "host UID {u} is shared by two nodes");
        }
        assert!(
            std::path::Path::new(&format!("/run/rehearse/leases/{}.json", c.id)).exists(),
            "cluster {} holds a host-wide lease",
            c.id
        );
    }

    // Node to node inside every cluster: SSH by name, which needs the
    // network, addresses, keys and sshd of both ends.
    std::thread::scope(|s| {
        for c in &clusters {
            s.spawn(move || {
                for target in (2..=NODES).map(|i| format!("node{i}")) {
                    assert_eq!(
                        c.ok("node1", &format!("ssh -o BatchMode=yes {target} hostname")),
                        target,
                        "cluster {}",
                        c.id
                    );
                }
            });
        }
    });

    // Torn down by id, nothing of theirs is left.
    let ids: Vec<String> = clusters.iter().map(|c| c.id.clone()).collect();
    for c in &clusters {
        let out = run(&["down", &c.id]);
        assert!(
            out.status.success(),
            "down {}: {}",
            c.id,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for id in &ids {
        let left = Leftovers::of(id);
        assert!(left.is_empty(), "cluster {id} left {left:?}");
        assert!(
            !std::path::Path::new(&format!("/run/rehearse/leases/{id}.json")).exists(),
            "cluster {id} still holds its lease"
        );
    }
}
