//! `rehearse-bench pool`: `rehearse up -n N` served by a warm pool against a
//! cold `up` of the same shape, alternating, in a state directory of the
//! benchmark's own with its own keeper. `rehearse-bench scenario --pool`: a
//! whole `rehearse run` with its cluster from a pool kept for the scenario's
//! topology, against the same run booting it.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::chaos::{rehearse_bin, Home};
use crate::stats::{self, Samples};

pub fn bench(runs: usize, nodes: usize, json: bool) -> anyhow::Result<()> {
    let home = Home::named(rehearse_bin()?, "pool")?;
    let n = nodes.to_string();
    let keeper = keep(&home, &["--nodes", &n])?;
    let result = measure(&home, runs, &n, json);
    stop(keeper);
    result
}

/// Sets the pool of `home` (`pool set ARGS --size 1`) and starts its keeper.
fn keep(home: &Home, args: &[&str]) -> anyhow::Result<Child> {
    let mut all = vec!["pool", "set", "--size", "1"];
    all.extend_from_slice(args);
    let set = home.command(&all).output()?;
    anyhow::ensure!(
        set.status.success(),
        "pool set: {}",
        String::from_utf8_lossy(&set.stderr)
    );
    let log = home.dir().join("keeper.log");
    home.command(&["pool", "keep"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()
        .context("starting rehearse pool keep")
}

/// Stops a keeper; it drains what still waits in its pool.
fn stop(mut keeper: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(keeper.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = keeper.wait();
}

/// `rehearse run SCENARIO` (CLI wall time) with its cluster from a pool kept
/// for the scenario's topology, alternating with the same run in a state
/// directory without a pool (the baseline, booting its cluster).
pub fn scenario(path: &Path, runs: usize, json: bool) -> anyhow::Result<()> {
    let bin = rehearse_bin()?;
    let path = path.canonicalize().context("the scenario")?;
    let name = rehearse_spec::scenario::Scenario::from_path(&path)?.name;
    let path = path.to_string_lossy().into_owned();
    let pooled = Home::named(bin.clone(), "pool-scenario")?;
    let fresh = Home::named(bin, "fresh-scenario")?;
    let keeper = keep(&pooled, &["--from", &path])?;
    let result = (|| -> anyhow::Result<()> {
        let mut cold = Samples::new(&format!("{name} end to end, cluster booted (rehearse run)"));
        let mut warm = Samples::new(&format!(
            "{name} end to end, cluster from the warm pool (rehearse run)"
        ));
        // One pair more than asked: the first warms the page cache and the
        // package cache up and is left out.
        for _ in 0..=runs {
            // The booting run while the pool is full and its keeper idle, so
            // a refill never competes with either run.
            wait_ready(&pooled)?;
            cold.push(run(&fresh, &path, false)?);
            warm.push(run(&pooled, &path, true)?);
        }
        cold.values.remove(0);
        warm.values.remove(0);
        stats::print(&[cold, warm], 0, json);
        Ok(())
    })();
    stop(keeper);
    result
}

/// One passing `rehearse run`, timed; an error when it fails or its cluster
/// did not come from where it should.
fn run(home: &Home, path: &str, from_pool: bool) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let out = home.command(&["--json", "run", path]).output()?;
    let took = t0.elapsed();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "rehearse run {path}: no report; it said:\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    anyhow::ensure!(
        out.status.success() && report["outcome"] == "passed",
        "rehearse run {path} did not pass: {report}"
    );
    anyhow::ensure!(
        report["from_pool"] == from_pool,
        "rehearse run {path}: from_pool is {} where {from_pool} was expected; the keeper said:\n{}",
        report["from_pool"],
        std::fs::read_to_string(home.dir().join("keeper.log")).unwrap_or_default()
    );
    Ok(took)
}

fn measure(home: &Home, runs: usize, n: &str, json: bool) -> anyhow::Result<()> {
    let mut cold = Samples::new(&format!(
        "rehearse up -n {n} --no-pool (cold boot, CLI wall time)"
    ));
    let mut warm = Samples::new(&format!(
        "rehearse up -n {n} from the warm pool (CLI wall time)"
    ));
    // One pair more than asked: the first warms the page cache up and is
    // left out.
    for _ in 0..=runs {
        // The cold boot first, while the pool is full and its keeper idle,
        // so a refill never competes with it for the CPU.
        wait_ready(home)?;
        let (c, cid) = up(home, &["up", "-n", n, "--no-pool"])?;
        down(home, &cid)?;
        let (t, id) = up(home, &["up", "-n", n])?;
        down(home, &id)?;
        warm.push(t);
        cold.push(c);
    }
    warm.values.remove(0);
    cold.values.remove(0);
    stats::print(&[cold, warm], 0, json);
    Ok(())
}

/// Waits until the pool holds a cluster.
fn wait_ready(home: &Home) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = home.command(&["--json", "pool", "status"]).output()?;
        let status: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        if status["ready"].as_array().is_some_and(|r| !r.is_empty()) {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the pool never filled: {status}; the keeper said:\n{}",
            std::fs::read_to_string(home.dir().join("keeper.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn up(home: &Home, args: &[&str]) -> anyhow::Result<(Duration, String)> {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let t0 = Instant::now();
    let out = home.command(&all).output()?;
    let took = t0.elapsed();
    anyhow::ensure!(
        out.status.success(),
        "rehearse {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    Ok((
        took,
        v["cluster"].as_str().context("no cluster id")?.to_string(),
    ))
}

fn down(home: &Home, id: &str) -> anyhow::Result<()> {
    let out = home.command(&["down", id]).output()?;
    anyhow::ensure!(
        out.status.success(),
        "rehearse down {id}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}
