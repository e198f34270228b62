//! A fleet on this machine: the same runs of a small scenario queued through
//! one `rehearse serve --fleet` host and through two, sharing a fresh
//! PostgreSQL database, with the same number of runs at once on both sides.
//! On one machine the ratio shows what coordinating through the database
//! costs, not a speed-up; placement latency is submit → start of each job.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use rehearse_fleet::payload::ScenarioPayload;
use rehearse_fleet::{Fleet, JobKind, JobSpec, JobState};

/// The admin URL of the PostgreSQL server the benchmark makes its databases on.
pub const PG_ENV: &str = "REHEARSE_TEST_DATABASE_URL";

struct Database {
    admin: String,
    name: String,
    url: String,
}

impl Database {
    fn create(admin: &str) -> anyhow::Result<Database> {
        let name = format!("rehearse_bench_{:016x}", rand::random::<u64>());
        let mut c = postgres::Client::connect(admin, postgres::NoTls)
            .with_context(|| format!("connecting to {PG_ENV}"))?;
        c.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let (base, _) = admin
            .rsplit_once('/')
            .context("the admin URL ends in /database")?;
        Ok(Database {
            admin: admin.to_owned(),
            url: format!("{base}/{name}"),
            name,
        })
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// A `serve --fleet` process over a state directory of its own (sharing the
/// machine's images), stopped and removed when dropped.
struct Host {
    child: Child,
    home: PathBuf,
}

impl Host {
    fn start(bin: &Path, db: &Database, name: &str, jobs: usize) -> anyhow::Result<Host> {
        let shared = rehearse_image::state_dir();
        let home = shared.join(format!("bench-fleet-{:08x}", rand::random::<u32>()));
        std::fs::create_dir_all(&home)?;
        std::os::unix::fs::symlink(shared.join("images"), home.join("images"))?;
        let port = 20000 + rand::random::<u16>() % 20000;
        let log = std::fs::File::create(home.join("serve.log"))?;
        let child = Command::new(bin)
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--token", "bench", "--fleet", &db.url, "--fleet-name", name])
            .args(["--fleet-jobs", &jobs.to_string(), "--fleet-slots", "8"])
            .env("REHEARSE_HOME", &home)
            .env_remove("REHEARSE_DATABASE_URL")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        Ok(Host { child, home })
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

struct Measured {
    label: String,
    wall: Duration,
    /// Submit → start of each job of the batch, in ms: mostly waiting for a
    /// free host.
    placement_ms: Vec<f64>,
    /// Submit → start of jobs submitted one at a time to an idle fleet, in ms:
    /// what placing itself costs.
    idle_ms: Vec<f64>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `runs` runs of the scenario queued at once through `hosts` hosts running
/// `jobs` each.
fn through(
    bin: &Path,
    admin: &str,
    payload: &ScenarioPayload,
    hosts: usize,
    jobs: usize,
    runs: usize,
) -> anyhow::Result<Measured> {
    let db = Database::create(admin)?;
    let fleet = Fleet::connect(&db.url)?;
    let started: Vec<Host> = (0..hosts)
        .map(|i| Host::start(bin, &db, &format!("bench-{i}"), jobs))
        .collect::<anyhow::Result<_>>()?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while fleet.hosts()?.iter().filter(|h| h.state == "up").count() < hosts {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the fleet hosts did not join in 60 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every job is the same one-node scenario, tried once.
    let spec = JobSpec {
        kind: JobKind::Scenario,
        payload: serde_json::to_value(payload)?,
        nodes: 1,
        submitter: "bench".into(),
        max_attempts: Some(1),
        images: vec!["debian-12".into()],
    };
    let t0 = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..runs {
        let job = fleet.submit(&spec)?;
        ids.push(job.id);
    }
    let rows = wait_all(&fleet, &ids)?;
    let wall = t0.elapsed();
    let mut idle_ms = Vec::new();
    for _ in 0..IDLE_PROBES {
        let job = fleet.submit(&spec)?;
        for j in wait_all(&fleet, &[job.id])? {
            if let Some(started) = j.started_at_ms {
                idle_ms.push((started - j.submitted_at_ms) as f64);
            }
        }
    }
    idle_ms.sort_by(|a, b| a.total_cmp(b));
    drop(started);
    let mut placement_ms: Vec<f64> = rows
        .iter()
        .filter_map(|j| Some((j.started_at_ms? - j.submitted_at_ms) as f64))
        .collect();
    placement_ms.sort_by(|a, b| a.total_cmp(b));
    Ok(Measured {
        label: format!("{runs} runs through {hosts} fleet host(s), {jobs} at a time each"),
        wall,
        placement_ms,
        idle_ms,
    })
}

/// Jobs submitted one at a time to an idle fleet, for the placement latency.
const IDLE_PROBES: usize = 5;

fn wait_all(fleet: &Fleet, ids: &[String]) -> anyhow::Result<Vec<rehearse_fleet::JobRow>> {
    let mut rows = Vec::new();
    for id in ids {
        loop {
            let job = fleet.job(id)?;
            if job.state.is_final() {
                anyhow::ensure!(
                    job.state == JobState::Done && job.exit_code == Some(0),
                    "job {id} ended {} (exit {:?}): {}",
                    job.state,
                    job.exit_code,
                    job.error.unwrap_or_default()
                );
                rows.push(job);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(rows)
}

pub fn bench(runs: usize, json: bool) -> anyhow::Result<()> {
    let admin = std::env::var(PG_ENV).with_context(|| {
        format!("{PG_ENV} must name a PostgreSQL server the benchmark may create databases on")
    })?;
    let bin = crate::chaos::rehearse_bin()?;
    let dir = std::env::temp_dir().join(format!(
        "rehearse-bench-fleet-{:08x}",
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("rehearse.yaml"),
        "name: fleet-bench\nnodes: 1\nnetworks:\n  - {name: lan, egress: none}\n\
         steps:\n  - name: mark\n    shell: echo placed > /etc/fleet-mark\n\
         checks:\n  - file: /etc/fleet-mark\n    contains: [placed]\n",
    )?;
    let payload = ScenarioPayload::pack(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    let payload = payload?;
    let one = through(&bin, &admin, &payload, 1, 2, runs)?;
    let two = through(&bin, &admin, &payload, 2, 1, runs)?;
    let base = one.wall.as_secs_f64();
    if json {
        let rows: Vec<_> = [&one, &two]
            .iter()
            .map(|m| {
                serde_json::json!({
                    "name": m.label,
                    "wall_ms": m.wall.as_secs_f64() * 1000.0,
                    "ratio_to_baseline": m.wall.as_secs_f64() / base,
                    "placement_median_ms": percentile(&m.placement_ms, 0.5),
                    "placement_p90_ms": percentile(&m.placement_ms, 0.9),
                    "idle_placement_median_ms": percentile(&m.idle_ms, 0.5),
                    "idle_placement_p90_ms": percentile(&m.idle_ms, 0.9),
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "baseline": one.label, "rows": rows })
            )?
        );
    } else {
        println!(
            "{:<52} {:>9} {:>7} {:>12} {:>8} {:>12} {:>8}",
            "what", "wall ms", "× base", "queued p50", "p90", "idle p50", "p90"
        );
        for m in [&one, &two] {
            println!(
                "{:<52} {:>9.0} {:>7.2} {:>12.0} {:>8.0} {:>12.0} {:>8.0}",
                m.label,
                m.wall.as_secs_f64() * 1000.0,
                m.wall.as_secs_f64() / base,
                percentile(&m.placement_ms, 0.5),
                percentile(&m.placement_ms, 0.9),
                percentile(&m.idle_ms, 0.5),
                percentile(&m.idle_ms, 0.9)
            );
        }
        println!("placement: submit → start in ms; queued = the batch (waiting for a free host), idle = one job at a time");
    }
    Ok(())
}
