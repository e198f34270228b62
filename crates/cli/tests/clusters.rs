//! Real clusters, booted as root: lifecycle, exec, copy, SSH, networks,
//! isolation, egress, the package cache, TTL and garbage collection.

mod common;

use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

#[test]
fn one_node_up_exec_cp_down_leaves_nothing() {
    let c = Cluster::up(&["--nodes", "1"]);
    assert_eq!(c.up["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(c.up["nodes"][0]["name"], "node1");
    assert!(c.up["boot_ms"].as_u64().unwrap() > 0);

    // Exit codes and both streams come back as the command produced them.
    let (code, out, err) = c.sh("node1", "echo to-out; echo to-err >&2; exit 7");
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (7, "to-out\n", "to-err\n")
    );
    assert_eq!(c.ok("node1", "systemctl is-system-running"), "running");
    assert_eq!(c.ok("node1", "hostname"), "node1");

    // Environment variables and the working directory.
    let (_, v) = run_json(&[
        "exec",
        &c.id,
        "node1",
        "-e",
        "GREETING=hi there",
        "-w",
        "/etc",
        "--",
        "sh",
        "-c",
        "echo \"$GREETING\" $(pwd)",
    ]);
    assert_eq!(v["stdout"], "hi there /etc\n");

    // A command that outlives its timeout is killed and reported as 124.
    let started = Instant::now();
    let out = run(&[
        "exec",
        &c.id,
        "node1",
        "--timeout",
        "1s",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(out.status.code(), Some(124));
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        c.ok("node1", "pgrep -x sleep || echo none"),
        "none",
        "the timed-out command was killed"
    );

    // Plain `exec` streams: stdout to stdout, stderr to stderr, exit code through.
    let out = run(&[
        "exec",
        &c.id,
        "node1",
        "--",
        "sh",
        "-c",
        "echo A; echo B >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "A\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "B\n");

    // cp host → node, for a file and a folder, then node → host.
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "app.conf", "listen 8080\n");
    std::fs::create_dir(tmp.path().join("site")).unwrap();
    write(&tmp.path().join("site"), "index.html", "<h1>hello</h1>\n");
    assert!(run(&[
        "cp",
        &c.id,
        file.to_str().unwrap(),
        "node1:/etc/app/app.conf"
    ])
    .status
    .success());
    assert_eq!(c.ok("node1", "cat /etc/app/app.conf"), "listen 8080");
    assert!(run(&[
        "cp",
        &c.id,
        tmp.path().join("site").to_str().unwrap(),
        "node1:/srv"
    ])
    .status
    .success());
    assert_eq!(c.ok("node1", "cat /srv/site/index.html"), "<h1>hello</h1>");
    c.ok(
        "node1",
        "mkdir -p /var/out && echo from-node > /var/out/result.txt",
    );
    let back = tmp.path().join("back.txt");
    assert!(run(&[
        "cp",
        &c.id,
        "node1:/var/out/result.txt",
        back.to_str().unwrap()
    ])
    .status
    .success());
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "from-node\n");
    assert!(
        run(&["cp", &c.id, "node1:/var/out", tmp.path().to_str().unwrap()])
            .status
            .success()
    );
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("out/result.txt")).unwrap(),
        "from-node\n"
    );
    let missing = run(&[
        "cp",
        &c.id,
        "node1:/no/such/file",
        tmp.path().to_str().unwrap(),
    ]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/file"));

    // Unknown node: a clear error naming the known ones.
    let out = run(&["exec", &c.id, "node9", "--", "true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node \"node9\" (nodes: node1)"));

    let id = c.id.clone();
    assert!(
        !Leftovers::of(&id).is_empty(),
        "a running cluster has mounts, links and processes"
    );
    drop(c);
    let left = Leftovers::of(&id);
    assert!(left.is_empty(), "down left things behind: {left:?}");
}

#[test]
fn four_nodes_reach_each_other_by_name_over_ssh_and_tcp() {
    let c = Cluster::up(&["--nodes", "4"]);
    let ips: Vec<String> = (1..=4).map(|i| c.ip(&format!("node{i}"))).collect();
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 4, "distinct addresses: {ips:?}");

    let hosts = c.ok("node2", "cat /etc/hosts");
    for (i, ip) in ips.iter().enumerate() {
        assert!(
            hosts.contains(&format!("{ip}\tnode{}.default node{}", i + 1, i + 1)),
            "{hosts}"
        );
    }
    // Root on any node reaches any other as `ssh nodeX`, with no prompt.
    for target in ["node2", "node3", "node4"] {
        assert_eq!(
            c.ok("node1", &format!("ssh -o BatchMode=yes {target} hostname")),
            target
        );
    }
    // The host reaches nodes with the cluster's ssh_config.
    let config = c.up["ssh_config"].as_str().unwrap().to_string();
    let out = Command::new("ssh")
        .args(["-F", &config, "-o", "BatchMode=yes", "node3", "hostname"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "node3",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // TCP between nodes: a server on node4, a client on node1.
    c.ok("node4", "mkdir -p /srv/www && echo served-by-node4 > /srv/www/index.html && (cd /srv/www && setsid python3 -m http.server 8080 >/dev/null 2>&1 &)");
    let page = c.ok(
        "node1",
        "for i in $(seq 50); do curl -fsS http://node4:8080/ && break; sleep 0.1; done",
    );
    assert_eq!(page, "served-by-node4");
}

#[test]
fn clusters_are_isolated_from_each_other_and_from_host_services() {
    let a = Cluster::up(&["--nodes", "1"]);
    let b = Cluster::up(&["--nodes", "1"]);
    let b_ip = b.ip("node1");
    assert_ne!(a.ip("node1"), b_ip);
    // b's sshd is up (the host reaches it), but a cannot reach it.
    let (code, _, _) = a.sh("node1", &format!("nc -z -w 2 {b_ip} 22"));
    assert_ne!(code, 0, "a node reached another cluster");
    let (code, _, _) = a.sh("node1", &format!("ping -c 1 -W 1 {b_ip}"));
    assert_ne!(code, 0, "a node pinged another cluster");

    // A service on the host, listening everywhere, is not reachable from nodes.
    let listener = TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let gateway = a.up["networks"][0]["gateway"].as_str().unwrap().to_string();
    let (code, _, _) = a.sh("node1", &format!("nc -z -w 2 {gateway} {port}"));
    assert_ne!(
        code, 0,
        "a node reached a host service on the gateway address"
    );
    // The host itself can still connect to nodes.
    assert!(std::net::TcpStream::connect_timeout(
        &format!("{b_ip}:22").parse().unwrap(),
        Duration::from_secs(2)
    )
    .is_ok());
}

#[test]
fn topology_with_two_networks_and_egress_policies() {
    let tmp = tempfile::tempdir().unwrap();
    let topo = write(
        tmp.path(),
        "topology.yaml",
        "nodes:\n  - name: lb\n    networks: [front, back]\n  - name: web\n    networks: [back]\n    groups: [web]\n  - name: client\n    networks: [front]\nnetworks:\n  - name: front\n    egress: packages\n  - name: back\n    egress: none\n",
    );
    let c = Cluster::up(&["-f", topo.to_str().unwrap()]);
    let lb = c.up["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "lb")
        .unwrap()
        .clone();
    assert_eq!(lb["addresses"].as_array().unwrap().len(), 2);
    assert_eq!(
        c.ok("lb", "ip -br addr show eth1 | awk '{print $3}'"),
        format!("{}/24", lb["addresses"][1]["ip"].as_str().unwrap())
    );

    // lb sits on both networks; client and web share none and cannot meet.
    c.ok(
        "lb",
        "ping -c1 -W2 web.back >/dev/null && ping -c1 -W2 client >/dev/null",
    );
    let web_ip = c.ip("web");
    let (code, _, _) = c.sh("client", &format!("ping -c1 -W1 {web_ip}"));
    assert_ne!(code, 0, "client reached the back network through the host");

    // egress none: no route out, no package cache.
    let (code, _, _) = c.sh("web", "nc -z -w 2 10.213.255.254 3149");
    assert_ne!(
        code, 0,
        "a node on an egress-none network reached the package cache"
    );
    assert_eq!(c.ok("web", "ip route | grep -c default || true"), "0");
    // egress packages: the cache answers, nothing else is forwarded.
    c.ok("client", "nc -z -w 2 10.213.255.254 3149");
    let gateway = c.up["networks"][0]["gateway"].as_str().unwrap().to_string();
    let (code, _, _) = c.sh("client", &format!("nc -z -w 2 {gateway} 22"));
    assert_ne!(code, 0);
}

#[test]
fn package_cache_serves_the_second_install_without_downloading_again() {
    let install = "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cowsay >/dev/null && test -x /usr/games/cowsay";
    let log = rehearse_sandbox::PackageCache::host(&state_dir()).transfer_log();
    let fetched = || -> usize {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("|I|") && l.contains("/cowsay_"))
            .count()
    };
    let served = || -> usize {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("|O|") && l.contains("/cowsay_"))
            .count()
    };
    let first = Cluster::up(&["--nodes", "1"]);
    first.ok("node1", install);
    let (fetched_after_first, served_after_first) = (fetched(), served());
    assert!(
        served_after_first >= 1,
        "the first install went through the cache"
    );
    drop(first);

    let second = Cluster::up(&["--nodes", "1"]);
    second.ok("node1", install);
    assert_eq!(
        fetched(),
        fetched_after_first,
        "the second install downloaded cowsay from upstream again"
    );
    assert_eq!(
        served(),
        served_after_first + 1,
        "the second install was served from the cache"
    );
}

#[test]
fn ttl_expiry_destroys_the_cluster_and_extend_postpones_it() {
    require_root();
    // With the reaper: a 3 s cluster disappears by itself.
    let (code, v) = run_json(&["up", "--nodes", "1", "--ttl", "3s"]);
    assert_eq!(code, 0, "{v}");
    let id = v["cluster"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    while state_dir().join("clusters").join(&id).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        Leftovers::of(&id).is_empty(),
        "expired cluster still there: {:?}",
        Leftovers::of(&id)
    );
    // The history (run store, dashboard) records it destroyed, and why: the
    // reaper writes that once its teardown is done, a moment after the
    // cluster's folder is gone.
    let store = rehearse_store::Store::open(&common::history_dir()).expect("the run store opens");
    let row = loop {
        let row = store
            .clusters(1000)
            .unwrap()
            .into_iter()
            .find(|c| c.id == id)
            .unwrap_or_else(|| panic!("cluster {id} is not in the history"));
        if row.destroyed_at_ms.is_some() || Instant::now() > deadline {
            break row;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(row.destroyed_at_ms.is_some(), "{row:?}");
    assert!(
        row.destroyed_reason
            .as_deref()
            .is_some_and(|r| r.contains("time-to-live")),
        "{row:?}"
    );

    // Extended before expiry: gc leaves it alone.
    let c = Cluster::up(&["--nodes", "1", "--ttl", "2s"]);
    let (code, v) = run_json(&["extend", &c.id, "--ttl", "1h"]);
    assert_eq!(code, 0, "{v}");
    assert!(v["ttl_left_s"].as_i64().unwrap() > 3500);
    std::thread::sleep(Duration::from_secs(3));
    let (_, report) = run_json(&["gc"]);
    assert!(
        !report["expired"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == c.id.as_str()),
        "{report}"
    );
    c.ok("node1", "true");
}

#[test]
fn gc_removes_everything_an_up_killed_mid_boot_left_behind() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    // A unique source path lets the test find the cluster this `up` created.
    let topo = write(tmp.path(), "killed.yaml", "nodes: 3\n");
    let clusters_dir = state_dir().join("clusters");
    let mut child = common::command()
        .args(["up", "--no-reaper", "-f", topo.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the nodes' processes exist, then SIGKILL the engine mid-boot.
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        assert!(Instant::now() < deadline, "up never got to booting nodes");
        let found = std::fs::read_dir(&clusters_dir).ok().and_then(|d| {
            d.flatten().find_map(|e| {
                let state = std::fs::read_to_string(e.path().join("cluster.json")).ok()?;
                state
                    .contains(topo.to_str().unwrap())
                    .then(|| e.file_name().to_string_lossy().into_owned())
            })
        });
        if let Some(id) = found {
            if Leftovers::of(&id).processes > 0 {
                break id;
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);

    let before = Leftovers::of(&id);
    assert!(
        before.processes > 0 && before.cgroup && before.state_dir,
        "nothing to clean up? {before:?}"
    );
    let (code, report) = run_json(&["gc"]);
    assert_eq!(code, 0, "{report}");
    assert!(
        report["orphaned"]
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x == id.as_str()),
        "{report}"
    );
    let after = Leftovers::of(&id);
    assert!(
        after.is_empty(),
        "gc left things behind: {after:?} (before: {before:?})"
    );
}
