//! The warm pool on real nodes: a cluster claimed from it passes the same
//! checks as one booted fresh, the pool refills after a claim, a stopped
//! keeper leaves nothing behind, and `gc` removes the pool of a keeper that
//! was killed.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Home, Leftovers};
use serde_json::Value;

/// A `rehearse pool keep` of a state directory, killed if the test fails.
struct Keeper(Child);

impl Keeper {
    fn start(home: &Home) -> Keeper {
        let child = home
            .command(&["pool", "keep"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rehearse pool keep starts");
        Keeper(child)
    }

    fn signal(&mut self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, signal);
    }

    fn wait(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.0.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("the keeper did not end");
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The ids of the clusters waiting in the pool once `n` are ready.
fn ready(home: &Home, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (code, status) = home.run_json(&["pool", "status"]);
        assert_eq!(code, 0, "{status}");
        let ids: Vec<String> = status["ready"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["cluster"].as_str().unwrap().to_string())
            .collect();
        if ids.len() >= n {
            assert!(status["keeper"].is_u64(), "{status}");
            assert!(status["memory_bytes"].as_u64().unwrap() > 0, "{status}");
            return ids;
        }
        assert!(Instant::now() < deadline, "the pool never filled: {status}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sh(home: &Home, cluster: &str, node: &str, script: &str) -> String {
    let out = home
        .command(&["exec", cluster, node, "--", "sh", "-c", script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script} on {node}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What any check or script would see of a cluster, with what differs
/// between any two clusters (addresses, ids) kept apart.
#[derive(Debug, PartialEq)]
struct Seen {
    hostnames: Vec<String>,
    hosts_names: Vec<String>,
    /// Per node, per network: the network, the interface, and whether the
    /// node has the address `up` gave it there.
    addresses: Vec<Vec<(String, String, bool)>>,
    /// The first node's `ssh <other> hostname` to every other node.
    ssh_between: Vec<String>,
    pool_mentions: Vec<String>,
}

/// `shape`: the pool's name for the cluster's shape, which must appear
/// nowhere inside.
fn look(
    home: &Home,
    cluster: &str,
    info: &Value,
    shape: &str,
    machine_ids: &mut BTreeSet<String>,
) -> Seen {
    let nodes = info["nodes"].as_array().unwrap();
    let first = nodes[0]["name"].as_str().unwrap();
    let mut seen = Seen {
        hostnames: Vec::new(),
        hosts_names: Vec::new(),
        addresses: Vec::new(),
        ssh_between: nodes[1..]
            .iter()
            .map(|other| {
                let other = other["name"].as_str().unwrap();
                sh(
                    home,
                    cluster,
                    first,
                    &format!("ssh -o BatchMode=yes {other} hostname"),
                )
            })
            .collect(),
        pool_mentions: Vec::new(),
    };
    for node in nodes {
        let name = node["name"].as_str().unwrap();
        seen.hostnames.push(sh(home, cluster, name, "hostname"));
        let hosts = sh(home, cluster, name, "cat /etc/hosts");
        let in_hosts = |ip: &str, name: &str| {
            hosts.lines().any(|l| {
                let words: Vec<&str> = l.split_whitespace().collect();
                words.first() == Some(&ip) && words.contains(&name)
            })
        };
        // Every node of the cluster by its name and first address, and by
        // name.network on each of its networks.
        for other in nodes {
            let (ip, other_name) = (
                other["ip"].as_str().unwrap(),
                other["name"].as_str().unwrap(),
            );
            assert!(in_hosts(ip, other_name), "{ip} {other_name} in {hosts}");
            for addr in other["addresses"].as_array().unwrap() {
                let (ip, net) = (
                    addr["ip"].as_str().unwrap(),
                    addr["network"].as_str().unwrap(),
                );
                let full = format!("{other_name}.{net}");
                assert!(in_hosts(ip, &full), "{ip} {full} in {hosts}");
            }
        }
        seen.hosts_names.push(
            hosts
                .lines()
                .filter(|l| l.starts_with("10."))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(";"),
        );
        let ip_addr = sh(home, cluster, name, "ip -4 -o addr show");
        seen.addresses.push(
            node["addresses"]
                .as_array()
                .unwrap()
                .iter()
                .map(|addr| {
                    let (ip, iface) = (
                        addr["ip"].as_str().unwrap(),
                        addr["iface"].as_str().unwrap(),
                    );
                    let on_iface = ip_addr.lines().any(|l| {
                        let words: Vec<&str> = l.split_whitespace().collect();
                        words.get(1) == Some(&iface) && l.contains(&format!(" {ip}/"))
                    });
                    (
                        addr["network"].as_str().unwrap().to_string(),
                        iface.to_string(),
                        on_iface,
                    )
                })
                .collect(),
        );
        assert!(
            machine_ids.insert(sh(home, cluster, name, "cat /etc/machine-id")),
            "machine-id of {name} in {cluster} seen before"
        );
        // Nothing names the pool or the shape: not in /etc (the image's own
        // comments about adduser's UID pools aside), not in the journal.
        seen.pool_mentions.push(sh(
            home,
            cluster,
            name,
            &format!(
                "{{ grep -rIiw pool /etc 2>/dev/null | grep -v '^[^:]*:[[:space:]]*#'; \
                 grep -rIlF -e '{shape}' /etc 2>/dev/null; \
                 journalctl -b --no-pager 2>/dev/null | grep -iw -e pool -e pooled -e '{shape}'; }} \
                 | sort | head -20"
            ),
        ));
    }
    seen
}

#[test]
fn a_cluster_from_the_pool_is_indistinguishable_from_a_fresh_one_and_the_pool_refills() {
    let home = common::home();
    let (code, out) = home.run_json(&["pool", "set", "--nodes", "2", "--size", "1"]);
    assert_eq!(code, 0, "{out}");
    let mut keeper = Keeper::start(&home);
    let waiting = ready(&home, 1);

    let (code, claimed) = home.run_json(&["up", "-n", "2"]);
    assert_eq!(code, 0, "{claimed}");
    let claimed_id = claimed["cluster"].as_str().unwrap().to_string();
    assert!(
        waiting.contains(&claimed_id),
        "{claimed_id} came from the pool {waiting:?}"
    );
    let (code, fresh) = home.run_json(&["up", "-n", "2", "--no-pool"]);
    assert_eq!(code, 0, "{fresh}");
    let fresh_id = fresh["cluster"].as_str().unwrap().to_string();
    assert!(!waiting.contains(&fresh_id));

    // Both are the user's now: listed, with the asked time to live.
    let (_, listed) = home.run_json(&["ls"]);
    let listed: BTreeSet<&str> = listed["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["cluster"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([claimed_id.as_str(), fresh_id.as_str()])
    );
    assert!(claimed["ttl_left_s"].as_i64().unwrap() > 1700, "{claimed}");

    let mut machine_ids = BTreeSet::new();
    let from_pool = look(
        &home,
        &claimed_id,
        &claimed,
        "2xdebian-12",
        &mut machine_ids,
    );
    let booted = look(&home, &fresh_id, &fresh, "2xdebian-12", &mut machine_ids);
    assert_eq!(from_pool, booted);
    assert_eq!(from_pool.hostnames, ["node1", "node2"]);
    assert_eq!(from_pool.ssh_between, ["node2"]);
    assert!(
        from_pool.addresses.iter().flatten().all(|a| a.2),
        "{from_pool:?}"
    );
    assert_eq!(from_pool.pool_mentions, ["", ""]);
    assert_eq!(machine_ids.len(), 4);
    assert_eq!(claimed["from_pool"], true, "{claimed}");
    assert_eq!(fresh["from_pool"], false, "{fresh}");

    // The pool refills with a new cluster.
    let refilled = ready(&home, 1);
    assert!(!refilled.contains(&claimed_id), "{refilled:?}");

    // A stopped keeper destroys what still waits; claimed clusters stay.
    keeper.signal(nix::sys::signal::Signal::SIGTERM);
    keeper.wait();
    for id in &refilled {
        let left = Leftovers::of_in(home.path(), id);
        assert!(left.is_empty(), "{id}: {left:?}");
    }
    let (_, status) = home.run_json(&["pool", "status"]);
    assert!(status["keeper"].is_null(), "{status}");
    assert_eq!(status["ready"].as_array().unwrap().len(), 0, "{status}");
    assert_eq!(sh(&home, &claimed_id, "node2", "hostname"), "node2");

    for id in [&claimed_id, &fresh_id] {
        let (code, out) = home.run_json(&["down", id]);
        assert_eq!(code, 0, "{out}");
        assert!(Leftovers::of_in(home.path(), id).is_empty());
    }
}

/// A balancer on two networks in front of two web nodes on one of them.
const NAMED: &str = "
nodes:
  - name: lb
    groups: [balancer]
    networks: [front, back]
  - {name: web1, groups: [web], networks: [back]}
  - {name: web2, groups: [web], networks: [back]}
networks:
  - name: front
  - {name: back, egress: none}
";

/// A scenario on the same topology, written another way.
const NAMED_SCENARIO: &str = "
name: pooled-lb
networks: [{egress: packages, name: front}, {name: back, egress: none}]
nodes:
  - {name: lb, networks: [front, back], groups: [balancer]}
  - name: web1
    networks: [back]
    groups: [web]
  - {name: web2, groups: [web], networks: [back]}
ttl: 10m
steps:
  - name: a page on each web node
    on: web
    shell: |
      hostname > /srv/page
checks:
  - command: cat /srv/page
    on: web2
    stdout: [web2]
  - command: ssh -o BatchMode=yes web1 cat /srv/page
    on: lb
    stdout: [web1]
";

#[test]
fn a_named_topology_is_served_from_the_pool_to_runs_and_up_and_only_when_equal() {
    let home = common::home();
    let dir = tempfile::tempdir().unwrap();
    let topology = common::write(dir.path(), "lb.yaml", NAMED);
    let scenario = common::write(dir.path(), "rehearse.yaml", NAMED_SCENARIO);
    let (code, out) = home.run_json(&[
        "pool",
        "set",
        "--from",
        scenario.to_str().unwrap(),
        "--size",
        "1",
    ]);
    assert_eq!(code, 0, "{out}");
    let shape = out["entries"][0]["shape"].as_str().unwrap().to_string();
    assert!(shape.starts_with("lb,web1,web2@"), "{out}");
    // The topology file describes the same cluster: the same entry.
    let (code, out) = home.run_json(&[
        "pool",
        "set",
        "--from",
        topology.to_str().unwrap(),
        "--size",
        "1",
    ]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["entries"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(out["entries"][0]["shape"], shape.as_str(), "{out}");

    let mut keeper = Keeper::start(&home);
    let waiting = ready(&home, 1);

    // A run of a scenario on that topology takes the waiting cluster.
    let (code, run) = home.run_json(&["run", scenario.to_str().unwrap()]);
    assert_eq!(code, 0, "{run}");
    assert_eq!(run["outcome"], "passed", "{run}");
    assert_eq!(run["from_pool"], true, "{run}");
    let run_cluster = run["cluster"].as_str().unwrap();
    assert!(
        waiting.iter().any(|w| w == run_cluster),
        "{run_cluster} from {waiting:?}"
    );

    // `up -f` of the topology takes the refilled one; side by side with a
    // fresh boot of the same topology.
    let waiting = ready(&home, 1);
    let (code, claimed) = home.run_json(&["up", "-f", topology.to_str().unwrap()]);
    assert_eq!(code, 0, "{claimed}");
    let claimed_id = claimed["cluster"].as_str().unwrap().to_string();
    assert!(
        waiting.contains(&claimed_id),
        "{claimed_id} from {waiting:?}"
    );
    assert_eq!(claimed["from_pool"], true, "{claimed}");
    let (code, fresh) = home.run_json(&["up", "-f", topology.to_str().unwrap(), "--no-pool"]);
    assert_eq!(code, 0, "{fresh}");
    let fresh_id = fresh["cluster"].as_str().unwrap().to_string();
    assert_eq!(fresh["from_pool"], false, "{fresh}");

    let mut machine_ids = BTreeSet::new();
    let from_pool = look(&home, &claimed_id, &claimed, &shape, &mut machine_ids);
    let booted = look(&home, &fresh_id, &fresh, &shape, &mut machine_ids);
    assert_eq!(from_pool, booted);
    assert_eq!(from_pool.hostnames, ["lb", "web1", "web2"]);
    assert_eq!(from_pool.ssh_between, ["web1", "web2"]);
    let networks: Vec<Vec<&str>> = from_pool
        .addresses
        .iter()
        .map(|n| n.iter().map(|a| a.0.as_str()).collect())
        .collect();
    assert_eq!(
        networks,
        [vec!["front", "back"], vec!["back"], vec!["back"]]
    );
    assert!(
        from_pool.addresses.iter().flatten().all(|a| a.2),
        "{from_pool:?}"
    );
    assert_eq!(from_pool.pool_mentions, ["", "", ""]);
    assert_eq!(machine_ids.len(), 6);
    for id in [&claimed_id, &fresh_id] {
        let (code, out) = home.run_json(&["down", id]);
        assert_eq!(code, 0, "{out}");
        assert!(Leftovers::of_in(home.path(), id).is_empty());
    }

    // One field apart (a node's name, a limit, a group): booted fresh, and
    // the waiting cluster stays in the pool.
    let waiting = ready(&home, 1);
    for (from, to) in [
        ("name: web2", "name: web3"),
        (
            "{name: web1, groups: [web], networks: [back]}",
            "{name: web1, groups: [web], networks: [back], memory: 768M}",
        ),
        ("groups: [balancer]", "groups: [balancer, edge]"),
    ] {
        let other = NAMED.replacen(from, to, 1);
        assert_ne!(other, NAMED);
        let file = common::write(dir.path(), "other.yaml", &other);
        let (code, up) = home.run_json(&["up", "-f", file.to_str().unwrap()]);
        assert_eq!(code, 0, "{up}");
        let id = up["cluster"].as_str().unwrap().to_string();
        let (code, out) = home.run_json(&["down", &id]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(up["from_pool"], false, "{to}: {up}");
        assert!(!waiting.contains(&id), "{to}: {id}");
        assert_eq!(ready(&home, 1), waiting, "{to}");
    }
    keeper.signal(nix::sys::signal::Signal::SIGTERM);
    keeper.wait();
    for id in &waiting {
        let left = Leftovers::of_in(home.path(), id);
        assert!(left.is_empty(), "{id}: {left:?}");
    }
}

#[test]
fn gc_removes_the_pool_of_a_keeper_that_was_killed() {
    let home = common::home();
    let (code, out) = home.run_json(&["pool", "set", "--nodes", "1", "--size", "2"]);
    assert_eq!(code, 0, "{out}");
    let mut keeper = Keeper::start(&home);
    let waiting = ready(&home, 2);
    keeper.signal(nix::sys::signal::Signal::SIGKILL);
    keeper.wait();

    let (code, report) = home.run_json(&["gc"]);
    assert_eq!(code, 0, "{report}");
    for id in &waiting {
        // Removed by gc, or by its reaper just before.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Leftovers::of_in(home.path(), id).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        let left = Leftovers::of_in(home.path(), id);
        assert!(left.is_empty(), "{id}: {left:?}");
    }
    // Nobody could claim them meanwhile: a fresh `up` boots new nodes.
    let (code, up) = home.run_json(&["up", "-n", "1"]);
    assert_eq!(code, 0, "{up}");
    let id = up["cluster"].as_str().unwrap();
    assert!(!waiting.iter().any(|w| w == id));
    let (code, out) = home.run_json(&["down", id]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn a_server_keeping_a_pool_leaves_nothing_behind_when_stopped() {
    let home = common::home();
    let (code, out) = home.run_json(&["pool", "set", "--nodes", "1", "--size", "1"]);
    assert_eq!(code, 0, "{out}");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let server = home
        .command(&["serve", "--pool", "--listen", &listen])
        .env("REHEARSE_TOKEN", "pool-test-token")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rehearse serve starts");
    let mut server = Keeper(server);
    let waiting = ready(&home, 1);
    server.signal(nix::sys::signal::Signal::SIGTERM);
    server.wait();
    for id in &waiting {
        let left = Leftovers::of_in(home.path(), id);
        assert!(left.is_empty(), "{id}: {left:?}");
    }
    let (_, status) = home.run_json(&["pool", "status"]);
    assert!(status["keeper"].is_null(), "{status}");
    assert!(status["ready"].as_array().unwrap().is_empty(), "{status}");
}
