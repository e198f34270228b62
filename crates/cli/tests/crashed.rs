//! Crashes: a node crashed by a fault (its commands fail saying how to bring
//! it back, and `rehearse heal` does), and `rehearse run` killed at random
//! moments (nothing is left once `gc` ran, and the runs read "aborted").

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use common::{run_json, Cluster, Home, Leftovers};
use serde_json::Value;

#[test]
fn exec_on_a_crashed_node_says_heal_brings_it_back() {
    let c = Cluster::up(&["-n", "2"]);
    let (code, v) = run_json(&["fault", &c.id, "crash", "node1"]);
    assert_eq!(code, 0, "{v}");

    let (code, v) = run_json(&["exec", &c.id, "node1", "--", "true"]);
    assert_ne!(code, 0, "{v}");
    assert_eq!(v["error"]["code"], "node_down", "{v}");
    // Each front end says what to do next in its own words: tool names in
    // the command set's hint, commands on the terminal.
    let hint = v["error"]["hint"].as_str().unwrap();
    assert!(hint.contains("call heal"), "{v}");
    assert!(
        !v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rehearse "),
        "{v}"
    );
    let human = common::run(&["exec", &c.id, "node1", "--", "true"]);
    let stderr = String::from_utf8_lossy(&human.stderr);
    assert!(
        stderr.contains("hint: if a fault crashed it, `rehearse heal CLUSTER`"),
        "{stderr}"
    );
    assert!(!stderr.contains("call heal"), "{stderr}");
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

/// Runs killed in all.
const KILLED_RUNS: usize = 30;
/// Runs going at once.
const AT_ONCE: usize = 5;

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

/// Every cluster id the state directory `home` ever had, as seen by looking
/// often: its cluster folders and its entries in the host-wide registry.
fn watch_ids(home: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<BTreeSet<String>> {
    std::thread::spawn(move || {
        let mut ids = BTreeSet::new();
        let clusters = home.join("clusters");
        loop {
            let done = stop.load(Ordering::SeqCst);
            if let Ok(entries) = std::fs::read_dir(&clusters) {
                ids.extend(
                    entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| !n.starts_with('.')),
                );
            }
            ids.extend(registered_in(&clusters));
            if done {
                return ids;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

/// Ids the host-wide registry holds for clusters under `clusters`.
fn registered_in(clusters: &Path) -> Vec<String> {
    std::fs::read_dir("/run/rehearse/clusters")
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    std::fs::read_to_string(e.path())
                        .is_ok_and(|dir| Path::new(&dir).starts_with(clusters))
                })
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What exists on the host of the clusters `ids` of `home`, and of its runs.
fn census(home: &Home, ids: &BTreeSet<String>) -> BTreeMap<&'static str, Vec<String>> {
    let mut found: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for id in ids {
        let left = Leftovers::of_in(home.path(), id);
        found.entry("mounts").or_default().extend(left.mounts);
        found.entry("links").or_default().extend(left.links);
        if left.nft_table {
            found.entry("nft tables").or_default().push(id.clone());
        }
        if left.cgroup {
            found.entry("cgroups").or_default().push(id.clone());
        }
        if left.processes > 0 {
            found
                .entry("processes in cgroups")
                .or_default()
                .push(format!("{id}: {}", left.processes));
        }
        if left.state_dir {
            found.entry("state folders").or_default().push(id.clone());
        }
    }
    found
        .entry("registry entries")
        .or_default()
        .extend(registered_in(&home.path().join("clusters")));
    found
        .entry("processes")
        .or_default()
        .extend(home.processes());
    let store = rehearse_store::Store::open(home.path()).expect("the run store opens");
    let running = store
        .runs(&rehearse_store::RunFilter {
            outcome: Some("running".into()),
            children: true,
            limit: Some(1000),
            ..Default::default()
        })
        .unwrap();
    found
        .entry("runs stuck running")
        .or_default()
        .extend(running.into_iter().map(|r| r.id));
    found
}

/// Waits (up to 30 s) until no process of `home` is left — reapers of
/// removed clusters notice within a moment and end — stops the id watcher,
/// and counts what is left of every cluster `home` ever had: (the ids, each
/// kind of leftover that is not empty).
fn settle_and_count(
    home: &Home,
    stop: &AtomicBool,
    watcher: std::thread::JoinHandle<BTreeSet<String>>,
) -> (BTreeSet<String>, BTreeMap<&'static str, Vec<String>>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !home.processes().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::SeqCst);
    let mut ids = watcher.join().unwrap();
    let store = rehearse_store::Store::open(home.path()).unwrap();
    ids.extend(store.clusters(1000).unwrap().into_iter().map(|c| c.id));
    let left = census(home, &ids)
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .collect();
    (ids, left)
}

#[test]
fn runs_killed_at_random_moments_leave_nothing_once_gc_ran() {
    // Another state directory's cluster: this test's gc must not touch it.
    let bystander = Cluster::up(&["-n", "1"]);
    let home = common::home();
    let scenario = fixture("killed-mid-run");
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_ids(home.path().to_path_buf(), stop.clone());

    // One whole run first: how long a run lasts on this host, so that the
    // kills land in every phase of one.
    let t0 = Instant::now();
    let (code, report) = home.run_json(&["run", &scenario]);
    assert_eq!(code, 0, "the scenario passes when not killed: {report}");
    let whole = t0.elapsed();
    let before = census(&home, &BTreeSet::new());

    let mut rng = rand::thread_rng();
    let mut killed_at = Vec::new();
    for _ in 0..KILLED_RUNS / AT_ONCE {
        let mut runs: Vec<(Duration, std::process::Child)> = (0..AT_ONCE)
            .map(|_| {
                let child = home
                    .command(&["--json", "run", &scenario])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("rehearse run starts");
                (whole.mul_f64(rng.gen_range(0.0..1.1)), child)
            })
            .collect();
        let started = Instant::now();
        runs.sort_by_key(|(at, _)| *at);
        for (at, mut child) in runs {
            std::thread::sleep(at.saturating_sub(started.elapsed()));
            let finished = child.try_wait().unwrap().is_some();
            let _ = child.kill();
            let _ = child.wait();
            killed_at.push((at, finished));
        }
    }
    let cut_short = killed_at.iter().filter(|(_, finished)| !finished).count();

    let (code, gc) = home.run_json(&["gc"]);
    assert_eq!(code, 0, "{gc}");
    let (ids, left) = settle_and_count(&home, &stop, watcher);
    assert_eq!(
        before.values().map(Vec::len).sum::<usize>(),
        0,
        "a whole run left things behind: {before:?}"
    );
    assert!(
        left.is_empty(),
        "{cut_short} of {} runs were killed mid-way ({} clusters), then gc ({gc}); left behind: {left:#?}",
        killed_at.len(),
        ids.len()
    );

    // The runs killed read "aborted", saying why.
    let store = rehearse_store::Store::open(home.path()).unwrap();
    let runs = store
        .runs(&rehearse_store::RunFilter {
            children: true,
            limit: Some(1000),
            ..Default::default()
        })
        .unwrap();
    let aborted: Vec<_> = runs.iter().filter(|r| r.outcome == "aborted").collect();
    eprintln!(
        "{} runs killed ({cut_short} mid-way, a whole run takes {whole:?}), {} clusters, {} runs aborted; gc: {gc}",
        killed_at.len(),
        ids.len(),
        aborted.len()
    );
    assert!(
        cut_short == 0 || !aborted.is_empty(),
        "{cut_short} runs were killed mid-way, none reads aborted: {runs:?}"
    );
    for run in &aborted {
        let summary = run.summary.as_deref().unwrap_or_default();
        assert!(summary.contains("killed or crashed"), "{summary}");
        assert!(run.finished_at_ms.is_some(), "{run:?}");
    }

    // Nothing of the other state directory was touched.
    assert_eq!(bystander.ok("node1", "echo alive"), "alive");
}

/// Kills of each other long command.
const KILLS_EACH: usize = 4;

/// Starts `cmd`, kills it at a random moment in `0..1.1 × whole`; returns
/// whether it was cut short (had not finished).
fn kill_at_random(mut cmd: std::process::Command, whole: Duration) -> bool {
    let at = whole.mul_f64(rand::thread_rng().gen_range(0.0..1.1));
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rehearse starts");
    std::thread::sleep(at);
    let finished = child.try_wait().unwrap().is_some();
    let _ = child.kill();
    let _ = child.wait();
    !finished
}

/// How long a command lasts here when nobody kills it.
fn timed(home: &Home, args: &[&str]) -> (Duration, Value) {
    let t0 = Instant::now();
    let (code, out) = home.run_json(args);
    assert_eq!(code, 0, "{args:?} when not killed: {out}");
    (t0.elapsed(), out)
}

/// A client of `rehearse serve` (the official MCP SDK) that starts a
/// scenario run as a job, says so, and waits.
const SERVE_CLIENT: &str = r#"
import asyncio, sys
from mcp import ClientSession
from mcp.client.streamable_http import create_mcp_http_client, streamable_http_client

async def main(url, token, path):
    client = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"})
    async with client:
        async with streamable_http_client(url, http_client=client) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                result = await session.call_tool("run_scenario", {"path": path})
                print("started", result.structured_content, flush=True)
                await asyncio.sleep(600)

asyncio.run(main(*sys.argv[1:]))
"#;

/// `rehearse serve` over `home` on a free loopback port, ready: (server, url).
fn serve(home: &Home, token: &str) -> (std::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let server = home
        .command(&["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("REHEARSE_TOKEN", token)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rehearse serve starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "rehearse serve did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, format!("http://127.0.0.1:{port}/mcp"))
}

#[test]
fn up_snapshot_restore_converge_and_serve_killed_at_random_moments_lose_and_leak_nothing() {
    let home = common::home();
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = watch_ids(home.path().to_path_buf(), stop.clone());
    let tmp = tempfile::tempdir().unwrap();
    let mut cut_short = BTreeMap::new();

    // `up`: a cluster it made mid-boot goes at gc; one it finished is the
    // user's and stays, whole.
    let (whole, made) = timed(&home, &["up", "-n", "2"]);
    let (code, out) = home.run_json(&["down", made["cluster"].as_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    for _ in 0..KILLS_EACH {
        let cut = kill_at_random(home.command(&["--json", "up", "-n", "2"]), whole);
        *cut_short.entry("up").or_insert(0) += usize::from(cut);
    }

    // `snapshot` and `restore` of a user's cluster: it stays the user's,
    // ready, and every snapshot it lists is whole.
    let (_, kept) = timed(&home, &["up", "-n", "2"]);
    let kept = kept["cluster"].as_str().unwrap().to_string();
    let (code, out) = home.run_json(&[
        "exec",
        &kept,
        "node1",
        "--",
        "sh",
        "-c",
        "echo one > /root/mark",
    ]);
    assert_eq!(code, 0, "{out}");
    let (whole, _) = timed(&home, &["snapshot", &kept, "base"]);
    for i in 0..KILLS_EACH {
        let name = format!("s{i}");
        let cut = kill_at_random(home.command(&["--json", "snapshot", &kept, &name]), whole);
        *cut_short.entry("snapshot").or_insert(0) += usize::from(cut);
    }
    // A snapshot killed while it held the nodes frozen leaves them so: gc
    // thaws them (no snapshot is under way), and they answer again.
    let freeze = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"]
        .iter()
        .map(|root| {
            Path::new(root)
                .join("rehearse")
                .join(&kept)
                .join("node1/cgroup.freeze")
        })
        .find(|p| p.exists())
        .expect("the node has a cgroup v2 freezer");
    std::fs::write(&freeze, "1").unwrap();
    let (code, out) = home.run_json(&["gc"]);
    assert_eq!(code, 0, "{out}");
    let mut exec = home
        .command(&["--json", "exec", &kept, "node1", "--", "echo", "thawed"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while exec.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = exec.kill();
            let _ = std::fs::write(&freeze, "0");
            panic!("node1 is still frozen after gc");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(exec.wait().unwrap().success());

    let (whole, _) = timed(&home, &["restore", &kept, "base"]);
    for _ in 0..KILLS_EACH {
        let cut = kill_at_random(home.command(&["--json", "restore", &kept, "base"]), whole);
        *cut_short.entry("restore").or_insert(0) += usize::from(cut);
        // A restore that died half-way is the user's cluster again once gc
        // looked; the next restore starts from there.
        let (code, out) = home.run_json(&["gc"]);
        assert_eq!(code, 0, "{out}");
    }

    // `converge` (its code given, no model): an iteration's cluster and the
    // proof's go with it.
    let task = common::write(
        tmp.path(),
        "task.yaml",
        "goal: Write /etc/app.conf.\nlanguage: bash\nnodes: 1\ncode: |\n  #!/bin/bash\n  set -euo pipefail\n  echo 'workers = 4' > /etc/app.conf\n  sleep 0.3\nchecks:\n  - file: /etc/app.conf\n    contains: ['workers = 4']\nmax_iterations: 2\n",
    );
    let task = task.to_str().unwrap();
    let (whole, report) = timed(&home, &["converge", task]);
    assert_eq!(report["verdict"], "converged", "{report}");
    for _ in 0..KILLS_EACH {
        let cut = kill_at_random(home.command(&["--json", "converge", task]), whole);
        *cut_short.entry("converge").or_insert(0) += usize::from(cut);
    }

    // `serve` with a scenario job of an MCP client running.
    let scenario = fixture("killed-mid-run");
    let (whole, _) = timed(&home, &["run", &scenario]);
    let token = "chaos-token";
    for _ in 0..KILLS_EACH {
        let (mut server, url) = serve(&home, token);
        let mut client = std::process::Command::new("python3")
            .args(["-c", SERVE_CLIENT, &url, token, &scenario])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 runs (scripts/setup.sh installs the MCP SDK)");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(client.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert!(line.starts_with("started"), "the job did not start: {line}");
        std::thread::sleep(whole.mul_f64(rand::thread_rng().gen_range(0.0..1.1)));
        let finished = server.try_wait().unwrap().is_some();
        let _ = server.kill();
        let _ = server.wait();
        let _ = client.kill();
        let _ = client.wait();
        *cut_short.entry("serve").or_insert(0) += usize::from(!finished);
    }

    let (code, gc) = home.run_json(&["gc"]);
    assert_eq!(code, 0, "{gc}");

    // Nothing lost: every cluster left is the user's, ready, every node
    // answers, and the kept cluster restores to each snapshot it lists. A
    // restore killed half-way may still be being finished by the cluster's
    // reaper (it reads "booting" meanwhile).
    let deadline = Instant::now() + Duration::from_secs(120);
    let ls = loop {
        let (_, ls) = home.run_json(&["ls"]);
        let settled = ls["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] != "booting");
        if settled || Instant::now() > deadline {
            break ls;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let left: Vec<String> = ls["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["status"], "ready", "{c}");
            c["cluster"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(left.contains(&kept), "the user's cluster was lost: {ls}");
    for id in &left {
        for node in ["node1", "node2"] {
            let (code, out) = home.run_json(&["exec", id, node, "--", "echo", "alive"]);
            assert_eq!(
                code, 0,
                "{id}/{node} after the kills (the snapshotted cluster is {kept}; cut short {cut_short:?}): {out}"
            );
        }
    }
    let (code, snapshots) = home.run_json(&["snapshot", "ls", &kept]);
    assert_eq!(code, 0, "{snapshots}");
    for snapshot in snapshots["snapshots"].as_array().unwrap() {
        let name = snapshot["name"].as_str().unwrap();
        let (code, out) = home.run_json(&["restore", &kept, name]);
        assert_eq!(
            code, 0,
            "snapshot {name} is listed but does not restore: {out}"
        );
        let (code, out) = home.run_json(&["exec", &kept, "node1", "--", "cat", "/root/mark"]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(out["stdout"].as_str().unwrap().trim(), "one", "{name}");
    }

    // The user's clusters go only when the user says so; then nothing is left.
    for id in &left {
        let (code, out) = home.run_json(&["down", id]);
        assert_eq!(code, 0, "{out}");
    }
    let (ids, leaked) = settle_and_count(&home, &stop, watcher);
    eprintln!(
        "cut short: {cut_short:?}; {} clusters in all; gc: {gc}",
        ids.len()
    );
    assert!(
        leaked.is_empty(),
        "cut short {cut_short:?}, gc ({gc}); left behind: {leaked:#?}"
    );
}
