//! `rehearse-bench chaos`: `rehearse run` SIGKILLed at random moments, over
//! and over, in a state directory of its own; then `rehearse gc`. Prints what
//! was left behind (must be nothing) and how long cleaning took, against the
//! `down` of a run that was not killed, measured in the same run.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;

use crate::stats::{self, Samples};

/// How long cleaning may take before what is still there counts as left behind.
const CLEAN_DEADLINE: Duration = Duration::from_secs(60);

/// A state directory of the benchmark's own, sharing the host's images; its
/// clusters are destroyed by id and it is removed when dropped.
pub(crate) struct Home {
    dir: PathBuf,
    bin: PathBuf,
}

impl Home {
    fn new(bin: PathBuf) -> anyhow::Result<Home> {
        Home::named(bin, "chaos")
    }

    /// A state directory `<state>/bench-<what>-<pid>`.
    pub(crate) fn named(bin: PathBuf, what: &str) -> anyhow::Result<Home> {
        let shared = rehearse_image::state_dir();
        let images = shared.join("images");
        std::fs::create_dir_all(&images)?;
        let dir = shared.join(format!("bench-{what}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let link = dir.join("images");
        if !link.exists() {
            std::os::unix::fs::symlink(&images, &link)?;
        }
        Ok(Home { dir, bin })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env("REHEARSE_HOME", &self.dir)
            .env_remove("REHEARSE_DATABASE_URL")
            .env_remove("REHEARSE_HISTORY")
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn clusters(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.join("clusters"))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Processes started over this state directory (runs, reapers, helpers).
    fn processes(&self) -> Vec<String> {
        let needle = format!("REHEARSE_HOME={}\0", self.dir.display()).into_bytes();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
            .filter(|e| {
                std::fs::read(e.path().join("environ"))
                    .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_slice()))
            })
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }
}

impl Drop for Home {
    fn drop(&mut self) {
        for id in self.clusters() {
            let _ = self.command(&["down", &id]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What is on the host of the clusters `ids` of `home`, and of its runs.
fn leftovers(home: &Home, ids: &BTreeSet<String>) -> anyhow::Result<Vec<(&'static str, usize)>> {
    let clusters = home.dir.join("clusters");
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
    let mounts = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|p| Path::new(p).starts_with(&clusters))
        .count();
    let links: Vec<String> = std::fs::read_dir("/sys/class/net")?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let links = links
        .iter()
        .filter(|l| {
            ids.iter().any(|id| {
                l.starts_with(&format!("rh{id}"))
                    || l.starts_with(&format!("vb-rh{id}"))
                    || l.starts_with(&format!("rv{id}"))
            })
        })
        .count();
    let tables = String::from_utf8_lossy(
        &Command::new("nft")
            .args(["list", "tables"])
            .output()?
            .stdout,
    )
    .into_owned();
    let tables = ids
        .iter()
        .filter(|id| tables.contains(&format!("rehearse_{id}")))
        .count();
    let cgroups = ids
        .iter()
        .filter(|id| {
            ["/sys/fs/cgroup/rehearse", "/sys/fs/cgroup/unified/rehearse"]
                .iter()
                .any(|root| Path::new(root).join(id).exists())
        })
        .count();
    let leases = ids
        .iter()
        .filter(|id| {
            Path::new(rehearse_sandbox::lease::HOST_LEASE_DIR)
                .join(format!("{id}.json"))
                .exists()
        })
        .count();
    let store = rehearse_store::Store::open(&home.dir)?;
    let running = store
        .runs(&rehearse_store::RunFilter {
            outcome: Some("running".into()),
            children: true,
            limit: Some(10_000),
            ..Default::default()
        })?
        .len();
    Ok(vec![
        ("state folders", home.clusters().len()),
        ("mounts", mounts),
        ("links", links),
        ("nftables tables", tables),
        ("cgroups", cgroups),
        ("host leases (subnets, UID ranges)", leases),
        ("processes", home.processes().len()),
        ("runs stuck running", running),
    ])
}

/// Waits until `home` has no cluster and no process left; how long it took.
fn until_clean(home: &Home) -> Duration {
    let t0 = Instant::now();
    while (!home.clusters().is_empty() || !home.processes().is_empty())
        && t0.elapsed() < CLEAN_DEADLINE
    {
        std::thread::sleep(Duration::from_millis(10));
    }
    t0.elapsed()
}

/// The `rehearse` binary built beside this one.
pub fn rehearse_bin() -> anyhow::Result<std::path::PathBuf> {
    std::env::current_exe()?
        .parent()
        .map(|d| d.join("rehearse"))
        .filter(|p| p.is_file())
        .context("the rehearse binary is not next to rehearse-bench: build both (cargo build --release -p rehearse-cli -p rehearse-bench)")
}

pub fn bench(scenario: &Path, kills: usize, parallel: usize, json: bool) -> anyhow::Result<()> {
    let bin = rehearse_bin()?;
    let scenario = scenario.canonicalize().context("the scenario")?;
    let scenario = scenario.to_string_lossy().into_owned();
    let home = Home::new(bin)?;
    let mut ids: BTreeSet<String> = BTreeSet::new();

    // Baseline: whole runs, not killed; their `down` is what cleaning one
    // cluster costs when nothing went wrong.
    let mut whole = Duration::ZERO;
    let mut down = Samples::new("down of a run's cluster, run not killed (baseline)");
    for _ in 0..3 {
        let t0 = Instant::now();
        let out = home.command(&["--json", "run", &scenario]).output()?;
        whole = whole.max(t0.elapsed());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "rehearse run printed no report: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        anyhow::ensure!(
            out.status.success(),
            "the scenario does not pass when not killed: {report}"
        );
        down.push(Duration::from_millis(
            report["timings"]["teardown_ms"].as_u64().unwrap_or(0),
        ));
    }

    let mut rng = rand::thread_rng();
    let mut reaped = Samples::new(&format!(
        "last kill of {parallel} → every cluster and process gone (reapers)"
    ));
    let mut cut_short = 0;
    let mut done = 0;
    while done < kills {
        let batch = parallel.min(kills - done);
        let mut runs = Vec::new();
        for _ in 0..batch {
            let child = home
                .command(&["--json", "run", &scenario])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            runs.push((whole.mul_f64(rng.gen_range(0.0..1.1)), child));
        }
        let started = Instant::now();
        runs.sort_by_key(|(at, _)| *at);
        for (at, mut child) in runs {
            while started.elapsed() < at {
                ids.extend(home.clusters());
                std::thread::sleep(
                    Duration::from_millis(5).min(at.saturating_sub(started.elapsed())),
                );
            }
            ids.extend(home.clusters());
            if child.try_wait()?.is_none() {
                cut_short += 1;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        ids.extend(home.clusters());
        reaped.push(until_clean(&home));
        done += batch;
    }

    let t0 = Instant::now();
    let out = home.command(&["--json", "gc"]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "rehearse gc failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut gc = Samples::new("rehearse gc after the kills");
    gc.push(t0.elapsed());
    let gc_report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let settle = until_clean(&home);
    let store = rehearse_store::Store::open(&home.dir)?;
    ids.extend(store.clusters(10_000)?.into_iter().map(|c| c.id));
    let left = leftovers(&home, &ids)?;
    let leaks: usize = left.iter().map(|(_, n)| n).sum();
    let aborted = store
        .runs(&rehearse_store::RunFilter {
            outcome: Some(rehearse_store::ABORTED.into()),
            children: true,
            limit: Some(10_000),
            ..Default::default()
        })?
        .len();
    if json {
        println!(
            "{}",
            serde_json::json!({
                "kills": kills, "cut_short": cut_short, "clusters": ids.len(),
                "aborted_runs": aborted, "leaks": leaks,
                "left": left.iter().map(|(k, n)| serde_json::json!({"what": k, "count": n})).collect::<Vec<_>>(),
                "gc": gc_report, "settle_ms": settle.as_millis() as u64,
            })
        );
    } else {
        println!(
            "{kills} runs of {scenario} SIGKILLed at random moments ({parallel} at a time), {cut_short} of them mid-way; {} clusters; {aborted} runs now read aborted",
            ids.len()
        );
        println!(
            "gc removed {} cluster(s) and marked {} run(s) aborted",
            gc_report["removed"].as_array().map_or(0, Vec::len),
            gc_report["aborted_runs"].as_array().map_or(0, Vec::len)
        );
        for (what, n) in &left {
            println!("  left behind: {what:<36} {n}");
        }
        println!("leaks: {leaks} (must be 0)");
    }
    stats::print(&[down, reaped, gc], 0, json);
    anyhow::ensure!(leaks == 0, "{leaks} leftovers: {left:?}");
    Ok(())
}
