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

/// What any check or script would see of a two-node cluster, with what
/// differs between any two clusters (addresses, ids) kept apart.
#[derive(Debug, PartialEq)]
struct Seen {
    hostnames: Vec<String>,
    hosts_names: Vec<String>,
    own_address_on_host0: Vec<bool>,
    ssh_between: String,
    pool_mentions: Vec<String>,
}

fn look(home: &Home, cluster: &str, info: &Value, machine_ids: &mut BTreeSet<String>) -> Seen {
    let mut seen = Seen {
        hostnames: Vec::new(),
        hosts_names: Vec::new(),
        own_address_on_host0: Vec::new(),
        ssh_between: sh(
            home,
            cluster,
            "node1",
            "ssh -o BatchMode=yes node2 hostname",
        ),
        pool_mentions: Vec::new(),
    };
    for node in info["nodes"].as_array().unwrap() {
        let name = node["name"].as_str().unwrap();
        let ip = node["ip"].as_str().unwrap();
        seen.hostnames.push(sh(home, cluster, name, "hostname"));
        let hosts = sh(home, cluster, name, "cat /etc/hosts");
        // Every node of the cluster by its name and address.
        for other in info["nodes"].as_array().unwrap() {
            let (ip, name) = (
                other["ip"].as_str().unwrap(),
                other["name"].as_str().unwrap(),
            );
            assert!(
                hosts.lines().any(|l| {
                    let words: Vec<&str> = l.split_whitespace().collect();
                    words.first() == Some(&ip) && words.contains(&name)
                }),
                "{ip} {name} in {hosts}"
            );
        }
        seen.hosts_names.push(
            hosts
                .lines()
                .filter(|l| l.starts_with("10."))
                .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
                .collect::<Vec<_>>()
                .join(";"),
        );
        seen.own_address_on_host0
            .push(sh(home, cluster, name, "ip -4 -o addr show").contains(&format!("{ip}/")));
        assert!(
            machine_ids.insert(sh(home, cluster, name, "cat /etc/machine-id")),
            "machine-id of {name} in {cluster} seen before"
        );
        // Nothing names the pool: not in /etc, not in the journal.
        seen.pool_mentions.push(sh(
            home,
            cluster,
            name,
            "{ grep -rIil pool /etc 2>/dev/null; journalctl -b --no-pager 2>/dev/null | grep -i 'pool' ; } | sort | head -20",
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
    let from_pool = look(&home, &claimed_id, &claimed, &mut machine_ids);
    let booted = look(&home, &fresh_id, &fresh, &mut machine_ids);
    assert_eq!(from_pool, booted);
    assert_eq!(from_pool.hostnames, ["node1", "node2"]);
    assert_eq!(from_pool.ssh_between, "node2");
    assert_eq!(from_pool.own_address_on_host0, [true, true]);
    assert_eq!(machine_ids.len(), 4);

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
