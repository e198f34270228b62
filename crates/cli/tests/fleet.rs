//! A fleet on one machine: `rehearse serve --fleet` processes, each in a
//! network namespace and a state directory of its own, sharing one fresh
//! PostgreSQL database; work placed with `rehearse run --fleet`.

use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rehearse_fleet::{Fleet, JobState};
use rehearse_testkit::{rehearse_bin, require_root, Home};

use rehearse_testkit::pg::PgDatabase;

/// A network namespace of the test's own with its loopback up, removed when dropped.
struct Netns {
    name: String,
}

impl Netns {
    fn new(tag: &str) -> Netns {
        let name = format!("rh-fleet-{tag}-{:06x}", rand::random::<u32>() & 0xff_ffff);
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> PathBuf {
        Path::new("/var/run/netns").join(&self.name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Forwards 127.0.0.1:5432 inside a namespace to the PostgreSQL server on
/// the host's loopback, so a host in the namespace reaches the fleet's
/// database by the same URL as everyone else. (The server's unix socket
/// would do too, but it authenticates root as root, not as the fleet's role.)
struct Forward {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forward {
    fn start(ns: &Netns, upstream: &str) -> Forward {
        let path = ns.path();
        // A socket belongs to the namespace it was made in: bind on a thread
        // that entered the namespace, serve from this one.
        let listener = std::thread::spawn(move || {
            let target = std::fs::File::open(&path).unwrap();
            nix::sched::setns(target.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            TcpListener::bind("127.0.0.1:5432").unwrap()
        })
        .join()
        .unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let upstream = upstream.to_owned();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            client.set_nonblocking(false).unwrap();
                            if let Ok(server) = TcpStream::connect(&upstream) {
                                pipe(client, server);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(20)),
                    }
                }
            })
        };
        Forward {
            stop,
            thread: Some(thread),
        }
    }
}

fn pipe(a: TcpStream, b: TcpStream) {
    for (mut from, mut to) in [(a.try_clone().unwrap(), b.try_clone().unwrap()), (b, a)] {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Both);
        });
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One fleet host: `rehearse serve --fleet` in a namespace and a state
/// directory of its own, with one node slot (so two jobs never share it).
struct FleetHost {
    name: String,
    child: Option<Child>,
    // Dropped in this order: the forwarder, the namespace, the state directory.
    _forward: Forward,
    ns: Netns,
    home: Home,
}

impl FleetHost {
    fn start(name: &str, db: &PgDatabase) -> FleetHost {
        FleetHost::start_with(name, db, Netns::new(name), 1, &[])
    }

    /// A host in `ns` taking `slots` nodes, its server started with `extra`
    /// arguments as well.
    fn start_with(name: &str, db: &PgDatabase, ns: Netns, slots: u32, extra: &[&str]) -> FleetHost {
        let slots = slots.to_string();
        let forward = Forward::start(&ns, "127.0.0.1:5432");
        let home = Home::new();
        let log = std::fs::File::create(home.path().join("serve.log")).unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net={}", ns.path().display()))
            .arg(rehearse_bin())
            .args(["-v", "serve", "--token", "fleet-test", "--fleet", &db.url])
            .args([
                "--fleet-name",
                name,
                "--fleet-slots",
                &slots,
                "--fleet-jobs",
                "1",
            ])
            .args(["--fleet-timeout", "3s", "--fleet-heartbeat", "500ms"])
            .args(extra)
            .env("REHEARSE_HOME", home.path())
            .env_remove("REHEARSE_DATABASE_URL")
            .env_remove("REHEARSE_FLEET")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nsenter runs");
        FleetHost {
            name: name.to_owned(),
            child: Some(child),
            _forward: forward,
            ns,
            home,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.path().join("serve.log")).unwrap_or_default()
    }

    /// Stops the server as an operator would (SIGTERM): it leaves the fleet.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(20);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Processes still running over this host's state directory, once its
    /// cluster reapers had their chance to finish.
    fn leftovers(&self) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = self.home.processes();
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `rehearse ARGS` in this host's namespace and state directory.
    fn rehearse(&self, args: &[&str]) -> std::process::Output {
        Command::new("nsenter")
            .arg(format!("--net={}", self.ns.path().display()))
            .arg(rehearse_bin())
            .args(args)
            .env("REHEARSE_HOME", self.home.path())
            .env_remove("REHEARSE_DATABASE_URL")
            .output()
            .expect("nsenter runs")
    }
}

impl Drop for FleetHost {
    fn drop(&mut self) {
        self.stop();
        // Whatever a failed test left is removed by id, in the host's own namespace.
        if let Ok(entries) = std::fs::read_dir(self.home.path().join("clusters")) {
            for entry in entries.flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                if !id.starts_with('.') {
                    let _ = self.rehearse(&["down", &id]);
                }
            }
        }
    }
}

/// Waits for `what`, failing with `why` after a deadline far beyond what it
/// should take: a guard against hanging, not a measurement.
fn wait_for<T>(why: &str, mut what: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(v) = what() {
            return v;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {why}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_up(fleet: &Fleet, hosts: &[&FleetHost]) {
    for host in hosts {
        let why = format!("{} to join the fleet", host.name);
        wait_for(&why, || {
            let up = fleet
                .hosts()
                .unwrap()
                .iter()
                .any(|h| h.name == host.name && h.state == "up");
            assert!(
                up || !host.log().contains("error:"),
                "{} did not join: {}",
                host.name,
                host.log()
            );
            up.then_some(())
        });
    }
}

/// A one-node scenario whose steps take a few seconds, in a folder of its
/// own. Its network has no egress: the host's package cache belongs to the
/// machine's own network namespace, not to a fleet host's.
fn scenario(sleep: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rehearse.yaml"),
        format!(
            "name: fleet-work\n\
             nodes: 1\n\
             networks:\n  - {{name: lan, egress: none}}\n\
             steps:\n  \
               - name: mark the node\n    shell: echo placed > /etc/fleet-mark\n  \
               - name: take a while\n    shell: sleep {sleep}\n\
             checks:\n  \
               - file: /etc/fleet-mark\n    contains: [placed]\n"
        ),
    )
    .unwrap();
    dir
}

/// Builds (or finds) the images the test's hosts boot, from the machine's own
/// network namespace: hosts in namespaces of their own cannot reach the
/// distribution archive an image is built from. Images are shared by every
/// state directory.
fn images(names: &[&str]) {
    let home = Home::new();
    for name in names {
        let out = Command::new(rehearse_bin())
            .args(["image", "build", name])
            .env("REHEARSE_HOME", home.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "building {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// Two hosts named `a` and `b` that joined the fleet, with the images the
/// test's work boots built first.
fn two_hosts(db: &PgDatabase, a: &str, b: &str) -> (FleetHost, FleetHost, Fleet) {
    images(&["debian-11", "debian-12"]);
    let first = FleetHost::start(a, db);
    let second = FleetHost::start(b, db);
    let fleet = Fleet::connect(&db.url).unwrap();
    wait_up(&fleet, &[&first, &second]);
    (first, second, fleet)
}

/// The JSON document a `--json` command printed; on anything else, a panic
/// with what it said and the hosts' logs.
fn json_of(out: &std::process::Output, hosts: &[&FleetHost]) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(&text).unwrap_or_else(|e| {
        let logs: Vec<String> = hosts
            .iter()
            .map(|h| format!("{}: {}", h.name, h.log()))
            .collect();
        panic!(
            "{e}: {text}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            logs.join("\n")
        )
    })
}

fn client(db: &PgDatabase, args: &[&str]) -> Command {
    let mut cmd = Command::new(rehearse_bin());
    cmd.arg("--json")
        .args(args)
        .args(["--fleet", &db.url])
        .env_remove("REHEARSE_DATABASE_URL")
        .env("REHEARSE_SUBMITTER", "fleet-test");
    cmd
}

#[test]
fn a_platform_matrix_is_spread_over_both_hosts() {
    require_root("fleet tests");
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let (alpha, beta, fleet) = two_hosts(&db, "alpha", "beta");

    let work = scenario(2);
    let out = client(
        &db,
        &[
            "run",
            work.path().to_str().unwrap(),
            "--platform",
            "debian-11,debian-12",
        ],
    )
    .output()
    .unwrap();
    let report = json_of(&out, &[&alpha, &beta]);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["outcome"], "passed", "{report}");
    let platforms = report["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 2, "{report}");
    let mut hosts: Vec<&str> = platforms
        .iter()
        .map(|p| p["host"].as_str().unwrap())
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["alpha", "beta"], "each host runs one platform");
    for p in platforms {
        assert_eq!(p["outcome"], "passed", "{p}");
        assert_eq!(p["nodes"][0]["image"], p["platform"], "{p}");
    }

    // The shared store says where each run lived.
    let mut c = db.client();
    let mut ran: Vec<(String, String)> = c
        .query(
            "SELECT host, outcome FROM runs WHERE name = 'fleet-work' ORDER BY host",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    ran.sort();
    assert_eq!(
        ran,
        [
            ("alpha".to_string(), "passed".to_string()),
            ("beta".to_string(), "passed".to_string())
        ]
    );
    let jobs = fleet.jobs(10).unwrap();
    assert!(
        jobs.iter()
            .all(|j| j.state == JobState::Done && j.attempt == 1),
        "{jobs:?}"
    );

    // Stopped, the hosts leave the fleet and nothing of theirs keeps running.
    let (mut alpha, mut beta) = (alpha, beta);
    for host in [&mut alpha, &mut beta] {
        host.stop();
        assert_eq!(host.leftovers(), Vec::<String>::new(), "{}", host.name);
    }
    let hosts = fleet.hosts().unwrap();
    assert!(
        hosts
            .iter()
            .all(|h| h.state == "gone"
                && h.gone_reason.as_deref() == Some("stopped: it left the fleet")),
        "{hosts:?}"
    );
}

#[test]
fn a_host_killed_mid_run_is_given_up_on_and_its_run_finishes_elsewhere() {
    require_root("fleet tests");
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let mut hosts = vec![
        FleetHost::start("gamma", &db),
        FleetHost::start("delta", &db),
    ];
    let fleet = Fleet::connect(&db.url).unwrap();
    wait_up(&fleet, &[&hosts[0], &hosts[1]]);

    let work = scenario(5);
    let run = client(&db, &["run", work.path().to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Mid-run: the job runs on one host and that host recorded its run.
    let mut c = db.client();
    let (victim, run_id) = wait_for("the job's run to start on a host", || {
        let job = fleet.jobs(1).unwrap().into_iter().next()?;
        let host = job
            .host
            .clone()
            .filter(|_| job.state == JobState::Running)?;
        let row = c
            .query_opt(
                "SELECT id FROM runs WHERE host = $1 AND outcome = 'running'",
                &[&host],
            )
            .unwrap()?;
        Some((host, row.get::<_, String>(0)))
    });
    let (killed, other): (usize, usize) = if hosts[0].name == victim {
        (0, 1)
    } else {
        (1, 0)
    };
    hosts[killed].kill();

    let out = run.wait_with_output().unwrap();
    let report = json_of(&out, &[&hosts[other]]);
    assert_eq!(out.status.code(), Some(0), "{report}");
    assert_eq!(report["outcome"], "passed", "{report}");

    // Requeued once, finished on the other host.
    let job = fleet.jobs(1).unwrap().remove(0);
    assert_eq!(job.state, JobState::Done, "{job:?}");
    assert_eq!(job.attempt, 2, "{job:?}");
    assert_eq!(job.host.as_deref(), Some(hosts[other].name.as_str()));
    assert_eq!(job.run_id.as_deref(), report["run_id"].as_str());

    // The killed host is gone and its run reported lost, naming it.
    let gone = fleet
        .hosts()
        .unwrap()
        .into_iter()
        .find(|h| h.name == victim)
        .unwrap();
    assert_eq!(gone.state, "gone");
    assert!(
        gone.gone_reason
            .as_deref()
            .unwrap_or("")
            .contains("stopped beating"),
        "{gone:?}"
    );
    let (outcome, summary): (String, String) = {
        let r = c
            .query_one(
                "SELECT outcome, summary FROM runs WHERE id = $1",
                &[&run_id],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(outcome, "lost");
    assert!(summary.contains(&format!("host {victim}")), "{summary}");

    // Nothing left: the killed host's cluster went with its reaper; the
    // other host stops cleanly; the namespaces go with them.
    for host in hosts.iter_mut() {
        host.stop();
        assert_eq!(host.leftovers(), Vec::<String>::new(), "{}", host.name);
    }
    let names: Vec<String> = hosts.iter().map(|h| h.ns.name.clone()).collect();
    drop(hosts);
    let listed = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    for name in names {
        assert!(!listed.contains(&name), "namespace {name} left: {listed}");
    }
}

/// Runs `f` on a thread inside `ns`: every socket it opens (and every thread
/// it starts) belongs to that namespace.
fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    let path = ns.path();
    std::thread::spawn(move || {
        let target = std::fs::File::open(&path).unwrap();
        nix::sched::setns(target.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        f()
    })
    .join()
    .unwrap()
}

/// One MCP tool call to the server on this namespace's 127.0.0.1:8787.
fn mcp_call(tool: &str, args: serde_json::Value) -> (bool, serde_json::Value) {
    rehearse_testkit::mcp::call("http://127.0.0.1:8787", "fleet-test", tool, args)
}

#[test]
fn an_mcp_call_on_another_hosts_cluster_is_passed_on_and_every_dashboard_lists_it() {
    require_root("fleet tests");
    let Some(db) = PgDatabase::create() else {
        return;
    };
    // Two hosts that reach each other over a link between their namespaces
    // (an address range for benchmarks, seen by nothing outside them).
    let (ns_a, ns_b) = (Netns::new("fwa"), Netns::new("fwb"));
    let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let (link_a, link_b) = (format!("rf{tag}a"), format!("rf{tag}b"));
    ip(&[
        "link", "add", &link_a, "netns", &ns_a.name, "type", "veth", "peer", "name", &link_b,
        "netns", &ns_b.name,
    ]);
    for (ns, link, addr) in [
        (&ns_a, &link_a, "198.18.7.1/30"),
        (&ns_b, &link_b, "198.18.7.2/30"),
    ] {
        ip(&["-n", &ns.name, "addr", "add", addr, "dev", link]);
        ip(&["-n", &ns.name, "link", "set", link, "up"]);
    }
    let listen = ["--listen", "0.0.0.0:8787", "--advertise"];
    // epsilon takes one node; zeta none: work asked of zeta is placed on epsilon.
    let alpha = FleetHost::start_with(
        "epsilon",
        &db,
        ns_a,
        1,
        &[&listen[..], &["http://198.18.7.1:8787"]].concat(),
    );
    let beta = FleetHost::start_with(
        "zeta",
        &db,
        ns_b,
        0,
        &[&listen[..], &["http://198.18.7.2:8787"]].concat(),
    );
    let fleet = Fleet::connect(&db.url).unwrap();
    wait_up(&fleet, &[&alpha, &beta]);
    for host in [&alpha, &beta] {
        let why = format!("{} to listen", host.name);
        wait_for(&why, || {
            in_netns(&host.ns, || TcpStream::connect("127.0.0.1:8787").is_ok()).then_some(())
        });
    }

    // A cluster asked of zeta, which has no room: placed on epsilon.
    let (failed, up) = in_netns(&beta.ns, || {
        mcp_call(
            "provision",
            // No egress: the host's package cache lives in the machine's own namespace.
            serde_json::json!({"nodes": ["app"], "networks": [{"name": "lan", "egress": "none"}], "ttl": "10m"}),
        )
    });
    assert!(
        !failed,
        "{up}\nzeta: {}\nepsilon: {}",
        beta.log(),
        alpha.log()
    );
    let cluster = up["cluster"].as_str().unwrap().to_owned();
    let on_epsilon = alpha.rehearse(&["--json", "ls"]);
    assert!(
        String::from_utf8_lossy(&on_epsilon.stdout).contains(&cluster),
        "epsilon holds {cluster}: {}",
        String::from_utf8_lossy(&on_epsilon.stdout)
    );
    let on_zeta = beta.rehearse(&["--json", "ls"]);
    assert!(!String::from_utf8_lossy(&on_zeta.stdout).contains(&cluster));
    // A bad request is refused by the host asked, naming the field, before
    // anything is queued.
    let (failed, refused) = in_netns(&beta.ns, || {
        mcp_call(
            "provision",
            serde_json::json!({"nodes": [{"name": "app", "imagee": "debian-12"}]}),
        )
    });
    assert!(failed, "{refused}");
    assert_eq!(refused["error"]["field"], "nodes", "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("imagee"),
        "{refused}"
    );

    // Asked of zeta, carried out by epsilon on its node.
    let asked = cluster.clone();
    let (failed, ran) = in_netns(&beta.ns, move || {
        mcp_call(
            "exec",
            serde_json::json!({"cluster": asked, "node": "app", "command": "hostname"}),
        )
    });
    assert!(
        !failed,
        "{ran}\nzeta: {}\nepsilon: {}",
        beta.log(),
        alpha.log()
    );
    assert_eq!(ran["stdout"], "app\n", "{ran}");

    // zeta's dashboard lists epsilon's cluster, with where it lives.
    let page = in_netns(&beta.ns, || {
        use std::io::{Read, Write};
        let mut http = TcpStream::connect("127.0.0.1:8787").unwrap();
        http.write_all(
            b"GET /fleet HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Bearer fleet-test\r\n\r\n",
        )
        .unwrap();
        let mut page = String::new();
        http.read_to_string(&mut page).unwrap();
        page
    });
    let row = page
        .split("<tr")
        .find(|r| r.contains(&format!("data-cluster=\"{cluster}\"")))
        .unwrap_or_else(|| panic!("zeta's fleet page does not list {cluster}: {page}"));
    assert!(row.contains("epsilon"), "{row}");

    // A scenario asked of zeta waits while epsilon's one slot is held by
    // the cluster above: the fleet has no room for it yet.
    let work = scenario(0);
    let path = work.path().to_string_lossy().into_owned();
    let (failed, started) = in_netns(&beta.ns, move || {
        mcp_call("run_scenario", serde_json::json!({"path": path}))
    });
    assert!(!failed, "{started}");
    let job_id = started["job_id"].as_str().unwrap().to_owned();
    let status = |id: &str| {
        let id = id.to_owned();
        in_netns(&beta.ns, move || {
            mcp_call("job_status", serde_json::json!({"job_id": id}))
        })
    };
    std::thread::sleep(Duration::from_secs(2));
    let (failed, waiting) = status(&job_id);
    assert!(!failed, "{waiting}");
    assert_eq!(waiting["state"], "running", "{waiting}");
    assert_eq!(
        fleet.job(&job_id).unwrap().state,
        JobState::Queued,
        "a held cluster takes its host's slot: {waiting}"
    );
    // Destroyed through zeta: gone from epsilon.
    let asked = cluster.clone();
    let (failed, gone) = in_netns(&beta.ns, move || {
        mcp_call("destroy", serde_json::json!({"cluster": asked}))
    });
    assert!(!failed, "{gone}");
    let listed = alpha.rehearse(&["--json", "ls"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(!listed.contains(&cluster), "{listed}");

    // With the slot free, the scenario runs on epsilon; zeta answers its
    // status as it answers its own jobs, report included.
    let done = wait_for("the placed scenario to end", || {
        let (failed, s) = status(&job_id);
        assert!(!failed, "{s}");
        (s["state"] != "running").then_some(s)
    });
    assert_eq!(done["state"], "exited", "{done}\nepsilon: {}", alpha.log());
    assert_eq!(done["kind"], "scenario", "{done}");
    assert_eq!(done["outcome"], "passed", "{done}");
    assert_eq!(done["report"]["outcome"], "passed", "{done}");
    assert!(
        done["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e.as_str().unwrap().contains("host epsilon")),
        "{done}"
    );
    let job = fleet.job(&job_id).unwrap();
    assert_eq!(job.host.as_deref(), Some("epsilon"));
    assert_eq!(job.submitter, "mcp@zeta");
    // Unknown to both the host and the fleet: the usual answer.
    let (failed, unknown) = status("job-000000000000");
    assert!(failed);
    assert_eq!(unknown["error"]["code"], "job_not_found", "{unknown}");
}

/// A task whose starting code already passes, in a folder of its own: the
/// rules doctor alone converges it (no model needed on the hosts).
fn task() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("setup.sh"),
        "#!/bin/sh\necho fleet > /etc/fleet-task\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("task.yaml"),
        "goal: Write fleet to /etc/fleet-task.\n\
         language: bash\n\
         nodes: 1\n\
         networks:\n  - {name: lan, egress: none}\n\
         code_file: setup.sh\n\
         checks:\n  - file: /etc/fleet-task\n    contains: [fleet]\n\
         max_iterations: 2\n",
    )
    .unwrap();
    dir
}

#[test]
fn converge_and_recipe_proofs_are_placed_on_the_fleet() {
    require_root("fleet tests");
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let (alpha, beta, fleet) = two_hosts(&db, "eta", "theta");
    let logs = || format!("eta: {}\ntheta: {}", alpha.log(), beta.log());

    // A converge task, with the file its code is read from.
    let work = task();
    let out = client(&db, &["converge", work.path().to_str().unwrap()])
        .env_remove("OPENAI_API_KEY")
        .env_remove("ANTHROPIC_API_KEY")
        .env_remove("REHEARSE_LLM_BASE_URL")
        .output()
        .unwrap();
    let result = json_of(&out, &[&alpha, &beta]);
    assert_eq!(out.status.code(), Some(0), "{result}\n{}", logs());
    assert_eq!(result["verdict"], "converged", "{result}");
    assert!(
        result["script"]
            .as_str()
            .unwrap()
            .contains("/etc/fleet-task"),
        "{result}"
    );
    let host = result["host"].as_str().unwrap();
    assert!(["eta", "theta"].contains(&host), "{result}");
    let mut c = db.client();
    let recorded: String = c
        .query_one(
            "SELECT host FROM runs WHERE id = $1",
            &[&result["run_id"].as_str().unwrap()],
        )
        .unwrap()
        .get(0);
    assert_eq!(recorded, host, "the converge run is recorded with its host");

    // A recipe from a catalogue only this machine's client holds, proven on
    // two platforms: one job per platform, spread over both hosts.
    let catalogue = tempfile::tempdir().unwrap();
    let cat = catalogue.path().to_str().unwrap();
    let made = Command::new(rehearse_bin())
        .args(["recipe", "--catalogue", cat, "new", "fleet-greeting"])
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let scenario_file = catalogue
        .path()
        .join("fleet-greeting")
        .join("rehearse.yaml");
    let text = std::fs::read_to_string(&scenario_file).unwrap();
    std::fs::write(
        &scenario_file,
        text.replacen(
            "nodes: 1\n",
            "nodes: 1\nnetworks:\n  - {name: lan, egress: none}\n",
            1,
        ),
    )
    .unwrap();
    let out = client(
        &db,
        &[
            "recipe",
            "--catalogue",
            cat,
            "prove",
            "fleet-greeting",
            "--set",
            "GREETING=placed",
            "--platform",
            "debian-11,debian-12",
        ],
    )
    .output()
    .unwrap();
    let proved = json_of(&out, &[&alpha, &beta]);
    assert_eq!(out.status.code(), Some(0), "{proved}\n{}", logs());
    assert_eq!(proved["passed"], true, "{proved}");
    let proofs = proved["proofs"].as_array().unwrap();
    assert_eq!(proofs.len(), 2, "{proved}");
    let mut hosts: Vec<&str> = proofs.iter().map(|p| p["host"].as_str().unwrap()).collect();
    hosts.sort();
    assert_eq!(
        hosts,
        ["eta", "theta"],
        "each host proves one platform: {proved}"
    );
    let mut platforms: Vec<&str> = proofs
        .iter()
        .map(|p| p["platforms"][0]["platform"].as_str().unwrap())
        .collect();
    platforms.sort();
    assert_eq!(platforms, ["debian-11", "debian-12"], "{proved}");
    for p in proofs {
        assert_eq!(p["proof"]["outcome"], "passed", "{p}");
        assert_eq!(p["recipe"], "fleet-greeting", "{p}");
    }

    // A variable the recipe does not have is refused before anything is queued.
    let before = fleet.jobs(100).unwrap().len();
    let out = client(
        &db,
        &[
            "recipe",
            "--catalogue",
            cat,
            "prove",
            "fleet-greeting",
            "--set",
            "NOPE=1",
        ],
    )
    .output()
    .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("no variable NOPE"), "{said}");
    assert_eq!(fleet.jobs(100).unwrap().len(), before);

    let (mut alpha, mut beta) = (alpha, beta);
    for host in [&mut alpha, &mut beta] {
        host.stop();
        assert_eq!(host.leftovers(), Vec::<String>::new(), "{}", host.name);
    }
}

#[test]
fn interrupting_a_placed_run_cancels_its_job_and_its_host_stops_it() {
    require_root("fleet tests");
    let Some(db) = PgDatabase::create() else {
        return;
    };
    let mut host = FleetHost::start("iota", &db);
    let fleet = Fleet::connect(&db.url).unwrap();
    wait_up(&fleet, &[&host]);

    let work = scenario(120);
    // Without --json: the progress is for a person, on stderr.
    let mut run = Command::new(rehearse_bin())
        .args(["run", work.path().to_str().unwrap(), "--fleet", &db.url])
        .env_remove("REHEARSE_DATABASE_URL")
        .env("REHEARSE_SUBMITTER", "fleet-test")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // What the client says on stderr, read as it comes.
    let said = Arc::new(Mutex::new(String::new()));
    let reader = {
        let said = Arc::clone(&said);
        let stderr = run.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in
                std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok)
            {
                let mut said = said.lock().unwrap();
                said.push_str(&line);
                said.push('\n');
            }
        })
    };
    let mut c = db.client();
    let job = wait_for("the job's run to start on iota", || {
        let job = fleet.jobs(1).unwrap().into_iter().next()?;
        let running = c
            .query_opt(
                "SELECT id FROM runs WHERE host = 'iota' AND outcome = 'running'",
                &[],
            )
            .unwrap();
        (job.state == JobState::Running && running.is_some()).then_some(job)
    });
    let clusters = || {
        let listed = host.rehearse(&["--json", "ls"]);
        let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
        listed["clusters"].as_array().map_or(0, Vec::len)
    };
    wait_for("the run's cluster to be up on iota", || {
        (clusters() == 1).then_some(())
    });
    // The host reports the run's progress as it goes: the fleet row holds
    // it, job_status on any host shows it, the waiting client prints it.
    let reported = wait_for("iota to report the first step done", || {
        let job = fleet.job(&job.id).unwrap();
        job.progress
            .iter()
            .any(|l| l.starts_with("✔ mark the node (first run"))
            .then_some(job)
    });
    assert!(
        reported
            .progress
            .iter()
            .any(|l| l.starts_with("cluster ") && l.contains(" ready in ")),
        "{:?}",
        reported.progress
    );
    let status = rehearse_fleet::place::status_of(&reported);
    assert!(
        status
            .events
            .iter()
            .any(|e| e.starts_with("✔ mark the node")),
        "{:?}",
        status.events
    );
    wait_for("the client to print the host's progress", || {
        said.lock()
            .unwrap()
            .contains("  ✔ mark the node (first run")
            .then_some(())
    });

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let out = run.wait_with_output().unwrap();
    reader.join().unwrap();
    let said = said.lock().unwrap().clone();
    assert_eq!(out.status.code(), Some(130), "{said}");
    assert!(
        said.contains(&job.id),
        "the user is told what was cancelled: {said}"
    );

    // The host stops the run long before its two-minute step ends, and
    // takes its cluster down.
    let ended = wait_for("iota to stop the cancelled run", || {
        let job = fleet.job(&job.id).unwrap();
        job.state.is_final().then_some(job)
    });
    assert_eq!(
        ended.state,
        JobState::Cancelled,
        "{ended:?}\n{}",
        host.log()
    );
    wait_for("the run's cluster to go", || {
        (clusters() == 0).then_some(())
    });
    host.stop();
    assert_eq!(host.leftovers(), Vec::<String>::new());
}
