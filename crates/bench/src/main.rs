//! `rehearse-bench`: speed of rehearse against a baseline measured in the same run
//! on the same machine. Prints min/median/max and ratios; never a pass/fail.
//!
//! `sudo target/release/rehearse-bench clusters --runs 10`

mod baseline;
mod capacity;
mod chaos;
mod converge;
mod eval;
mod fleet;
mod peer;
mod platforms;
mod pool;
mod snapshot;
mod stats;
mod vm;

use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};

use rehearse_sandbox::{Engine, ExecRequest, UpRequest};
use rehearse_spec::{Topology, DEFAULT_IMAGE};

use stats::Samples;

#[derive(Parser)]
#[command(about = "Benchmarks of rehearse against same-run baselines")]
struct Cli {
    #[command(subcommand)]
    what: What,
    /// Print one JSON document instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum What {
    /// `up` to all nodes ready (systemd running, addressed, sshd answering) and
    /// `down`, for 1 and 4 nodes, against a plain `systemd-nspawn --boot`.
    Clusters {
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// `rehearse up -n N` claiming a cluster from a warm pool, against a cold
    /// `rehearse up -n N --no-pool` in the same run (both the CLI's wall time),
    /// in a state directory of the benchmark's own.
    Pool {
        #[arg(long, default_value_t = 10)]
        runs: usize,
        #[arg(long, default_value_t = 4)]
        nodes: usize,
    },
    /// A fresh cluster installing packages: first with an empty package cache
    /// (the baseline), then on further fresh clusters with the cache warm.
    Packages {
        #[arg(long, default_value = "nginx haproxy")]
        packages: String,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// The converge engine's own cost per iteration: a scripted model answers a
    /// correct trivial script at once; the model's latency and the script's own
    /// runtime are taken out. The baseline is `rehearse run` of the same
    /// scenario (the floor an iteration cannot go below), its step's runtime
    /// taken out too.
    Converge {
        #[arg(long, default_value_t = 10)]
        runs: usize,
    },
    /// The evaluation harness's own cost per task: `rehearse eval` of K
    /// trivial tasks against the same K tasks converged directly, one after
    /// the other, with a scripted model.
    Eval {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Tasks per evaluation.
        #[arg(long, default_value_t = 4)]
        tasks: usize,
    },
    /// A scenario end to end (`rehearse run`), first with an empty package cache
    /// (the baseline), then with a warm one.
    Scenario {
        /// Scenario file or folder.
        #[arg(default_value = "examples/nginx-lb")]
        path: std::path::PathBuf,
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Runs with an emptied package cache.
        #[arg(long, default_value_t = 2)]
        cold: usize,
        /// Measure the change detector instead: warm runs alternately without
        /// it (the baseline) and with it.
        #[arg(long)]
        change_detection: bool,
        /// The baseline is the scenario on stock variants of its images
        /// (every file unpacked, no package lists in the image), alternating
        /// with runs on its own images; the package cache is left warm and
        /// running (nothing shared with other clusters is stopped).
        #[arg(long, conflicts_with = "change_detection")]
        against_stock: bool,
        /// Measure the warm pool instead: `rehearse run` with its cluster
        /// claimed from a pool kept for the scenario's topology, alternating
        /// with the same run booting its cluster (the baseline), both in state
        /// directories of the benchmark's own.
        #[arg(long, conflicts_with_all = ["change_detection", "against_stock"])]
        pool: bool,
    },
    /// `snapshot` and `restore` of a cluster whose nodes carry changes, for
    /// 2 and 4 nodes, against booting the same cluster fresh in the same run.
    Snapshot {
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// Cluster sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "2,4")]
        nodes: Vec<usize>,
        /// MiB of data each node writes before the snapshot.
        #[arg(long, default_value_t = 20)]
        mb: u32,
        /// Packages each node installs before the snapshot (through the package cache).
        #[arg(long, default_value = "")]
        packages: String,
    },
    /// `rehearse run` SIGKILLed at random moments, again and again, in a state
    /// directory of its own; then `rehearse gc`: what was left behind (must be
    /// nothing) and how long cleaning took, against the `down` of a run that
    /// was not killed.
    Chaos {
        /// Scenario file or folder: small and quick.
        #[arg(default_value = "crates/cli/tests/fixtures/killed-mid-run")]
        path: std::path::PathBuf,
        #[arg(long, default_value_t = 100)]
        kills: usize,
        /// Runs going at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
    },
    /// How many 4-node clusters boot at once (batches started together, until
    /// one fails or admission refuses), memory per idle node, and `up` of a
    /// 4-node cluster while N others are up, against N = the first of `--others`.
    Capacity {
        /// Sizes of the batches of clusters started together.
        #[arg(long, value_delimiter = ',', default_value = "8,16,20,24")]
        batches: Vec<usize>,
        /// How many other clusters are up while one is timed.
        #[arg(long, value_delimiter = ',', default_value = "0,8,16")]
        others: Vec<usize>,
        #[arg(long, default_value_t = 5)]
        runs: usize,
    },
    /// `up` of a cluster on every built-in image (the default image is the
    /// baseline), then a scenario on one platform against the same scenario
    /// on several side by side (a platforms matrix).
    Platforms {
        #[arg(long, default_value_t = 10)]
        runs: usize,
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Scenario file or folder for the matrix.
        #[arg(long, default_value = "examples/nginx-lb")]
        scenario: std::path::PathBuf,
        /// The matrix's platforms; the first alone is the baseline.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "debian-12,debian-11,debian-13"
        )]
        matrix: Vec<String>,
        /// Alternations of one platform and the matrix (0: no matrix).
        #[arg(long, default_value_t = 3)]
        matrix_runs: usize,
    },
    /// The same deployment as a scenario done by a peer tool, alternating with
    /// `rehearse run` of the scenario: `molecule` (podman driver, the role and
    /// checks in crates/bench/peer/nginx-lb). Installs what it needs when missing.
    Peer {
        #[arg(value_enum)]
        tool: peer::Tool,
        /// The scenario rehearse runs.
        #[arg(long, default_value = "examples/nginx-lb")]
        scenario: std::path::PathBuf,
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Runs of a small scenario queued through one `serve --fleet` host and
    /// through two on this machine (same runs at once on both sides), sharing
    /// a fresh database on the server REHEARSE_TEST_DATABASE_URL names: the
    /// ratio of wall times, and submit → start latency (median, p90).
    Fleet {
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// One VM node `up` to ready and `down`, with the accelerator in use,
    /// against one container node in the same run.
    Vm {
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Also boot full systemd (about 95 s a boot without KVM).
        #[arg(long)]
        systemd: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.what {
        What::Clusters { runs } => clusters(runs, cli.json),
        What::Pool { runs, nodes } => pool::bench(runs, nodes, cli.json),
        What::Scenario {
            path,
            runs,
            pool: true,
            ..
        } => pool::scenario(&path, runs, cli.json),
        What::Scenario {
            path,
            runs,
            against_stock: true,
            ..
        } => against_stock(&path, runs, cli.json),
        What::Scenario {
            path,
            runs,
            cold,
            change_detection: false,
            ..
        } => scenario(&path, runs, cold, cli.json),
        What::Scenario {
            path,
            runs,
            change_detection: true,
            ..
        } => change_detection(&path, runs, cli.json),
        What::Converge { runs } => converge::bench(runs, cli.json),
        What::Eval { runs, tasks } => eval::bench(runs, tasks.max(1), cli.json),
        What::Packages { packages, runs } => packages_install(&packages, runs, cli.json),
        What::Platforms {
            runs,
            nodes,
            scenario,
            matrix,
            matrix_runs,
        } => platforms::bench(runs, nodes, &scenario, &matrix, matrix_runs, cli.json),
        What::Peer {
            tool,
            scenario,
            runs,
        } => peer::bench(tool, &scenario, runs.max(1), cli.json),
        What::Fleet { runs } => fleet::bench(runs.max(1), cli.json),
        What::Vm { runs, systemd } => vm::bench(runs, systemd, cli.json),
        What::Chaos {
            path,
            kills,
            parallel,
        } => chaos::bench(&path, kills, parallel.max(1), cli.json),
        What::Capacity {
            batches,
            others,
            runs,
        } => capacity::bench(&batches, runs, &others, cli.json),
        What::Snapshot {
            runs,
            nodes,
            mb,
            packages,
        } => snapshot::bench(runs, &nodes, mb, &packages, cli.json),
    }
}

/// Times, on a fresh cluster, `apt-get update`, the download of the packages
/// (what the host-side cache serves) and their installation.
fn packages_install(packages: &str, runs: usize, json: bool) -> anyhow::Result<()> {
    let engine =
        Engine::new(&rehearse_image::state_dir()).context("opening the state directory")?;
    let phases = [
        ("apt-get update", "apt-get update -qq".to_string()),
        (
            "download",
            format!("apt-get install -y -qq --download-only {packages} >/dev/null"),
        ),
        (
            "install",
            format!("DEBIAN_FRONTEND=noninteractive apt-get install -y -qq {packages} >/dev/null"),
        ),
    ];
    let once = || -> anyhow::Result<Vec<Duration>> {
        let state = engine.up(
            UpRequest {
                topology: Topology::with_nodes(1, DEFAULT_IMAGE)?,
                ttl: Duration::from_secs(600),
                boot_timeout: Duration::from_secs(60),
                source: "rehearse-bench".into(),
                ownership: rehearse_sandbox::Ownership::User,
            },
            &|_| {},
        )?;
        let mut times = Vec::new();
        let mut failure = None;
        for (name, script) in &phases {
            let t0 = Instant::now();
            match engine.exec_capture(&state.id, "node1", &ExecRequest::shell(script)) {
                Ok((o, _, _)) if o.exit_code == 0 => times.push(t0.elapsed()),
                Ok((_, _, err)) => failure = Some(format!("{name} failed: {err}")),
                Err(e) => failure = Some(format!("{name} failed: {e}")),
            }
            if failure.is_some() {
                break;
            }
        }
        engine.down(&state.id)?;
        match failure {
            Some(f) => anyhow::bail!(f),
            None => Ok(times),
        }
    };
    empty_package_cache(&engine)?;
    let cold = once()?;
    let mut warm: Vec<Vec<Duration>> = Vec::new();
    for _ in 0..runs {
        warm.push(once()?);
    }
    for (i, (name, _)) in phases.iter().enumerate() {
        let mut c = Samples::new(&format!("{name} ({packages}), empty package cache"));
        c.push(cold[i]);
        let mut w = Samples::new(&format!("{name} ({packages}), next fresh cluster"));
        for run in &warm {
            w.push(run[i]);
        }
        stats::print(&[c, w], 0, json);
    }
    Ok(())
}

/// The run store of the engine's history directory (or the database
/// `REHEARSE_DATABASE_URL` names), for the measured runs to record in as
/// `rehearse run` does; `None` when it cannot be opened.
fn run_store(engine: &Engine) -> Option<std::sync::Arc<rehearse_store::RunStore>> {
    let url = std::env::var(rehearse_store::DATABASE_URL_ENV).ok();
    rehearse_store::RunStore::open_at(engine.history_dir(), url.as_deref())
        .map_err(|e| eprintln!("the runs will not be in the run store: {e}"))
        .ok()
        .map(std::sync::Arc::new)
}

/// One `rehearse run` of `scenario` with default options, timed; an error
/// when it does not pass (a failed run measures nothing).
fn timed_passing_run(
    engine: &Engine,
    scenario: &rehearse_spec::scenario::Scenario,
) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let opts = rehearse_scenario::RunOptions {
        store: run_store(engine),
        ..Default::default()
    };
    let report = rehearse_scenario::run(engine, scenario, &opts, &|_| {});
    let took = t0.elapsed();
    anyhow::ensure!(
        report.outcome == rehearse_scenario::Outcome::Passed,
        "the scenario did not pass:\n{}",
        rehearse_scenario::render_human(&report)
    );
    Ok(took)
}

fn scenario(path: &std::path::Path, runs: usize, cold: usize, json: bool) -> anyhow::Result<()> {
    let engine =
        Engine::new(&rehearse_image::state_dir()).context("opening the state directory")?;
    let scenario = rehearse_spec::scenario::Scenario::from_path(path)?;
    let run_once = || timed_passing_run(&engine, &scenario);
    let mut cold_rows = Samples::new(&format!(
        "{} end to end, empty package cache",
        scenario.name
    ));
    for _ in 0..cold {
        empty_package_cache(&engine)?;
        cold_rows.push(run_once()?);
    }
    let mut warm = Samples::new(&format!("{} end to end, warm package cache", scenario.name));
    for _ in 0..runs {
        warm.push(run_once()?);
    }
    stats::print(&[cold_rows, warm], 0, json);
    Ok(())
}

/// The scenario on stock variants of its images (the baseline: every file
/// unpacked, nodes start without package lists) alternating with the
/// scenario as written, warm package cache for both.
fn against_stock(path: &std::path::Path, runs: usize, json: bool) -> anyhow::Result<()> {
    let engine =
        Engine::new(&rehearse_image::state_dir()).context("opening the state directory")?;
    let scenario = rehearse_spec::scenario::Scenario::from_path(path)?;
    let mut stock_scenario = scenario.clone();
    for node in &mut stock_scenario.topology.nodes {
        let mut spec = engine.images().spec_for(&node.image)?;
        spec.name = format!("{}-stock", node.image);
        spec.full_files = true;
        spec.package_lists = false;
        engine.images().ensure(&spec, &|line| eprintln!("{line}"))?;
        node.image = spec.name;
    }
    let run_once = |scenario| timed_passing_run(&engine, scenario);
    // One run of each warms the package cache for both.
    run_once(&stock_scenario)?;
    run_once(&scenario)?;
    let mut stock = Samples::new(&format!(
        "{} end to end, stock images (baseline)",
        scenario.name
    ));
    let mut fast = Samples::new(&format!("{} end to end, its own images", scenario.name));
    for _ in 0..runs {
        stock.push(run_once(&stock_scenario)?);
        fast.push(run_once(&scenario)?);
    }
    stats::print(&[stock, fast], 0, json);
    Ok(())
}

/// The same scenario, warm package cache, alternately without the change
/// detector (idempotence judged on exit codes and checks, hygiene by
/// modification time) and with it; also the detector's own share of a run.
fn change_detection(path: &std::path::Path, runs: usize, json: bool) -> anyhow::Result<()> {
    let engine =
        Engine::new(&rehearse_image::state_dir()).context("opening the state directory")?;
    let scenario = rehearse_spec::scenario::Scenario::from_path(path)?;
    let store = run_store(&engine);
    let run_once = |detect: bool| -> anyhow::Result<(Duration, u64)> {
        let opts = rehearse_scenario::RunOptions {
            change_detection: detect,
            store: store.clone(),
            ..Default::default()
        };
        let t0 = Instant::now();
        let report = rehearse_scenario::run(&engine, &scenario, &opts, &|_| {});
        let took = t0.elapsed();
        anyhow::ensure!(
            report.outcome == rehearse_scenario::Outcome::Passed,
            "the scenario did not pass:\n{}",
            rehearse_scenario::render_human(&report)
        );
        Ok((took, report.timings.changes_ms + report.timings.hygiene_ms))
    };
    // One run to warm the package cache and the image.
    run_once(false)?;
    let mut without = Samples::new(&format!("{} without the change detector", scenario.name));
    let mut with = Samples::new(&format!("{} with the change detector", scenario.name));
    let mut own = Samples::new("  of which snapshots, comparisons and hygiene");
    let mut own_without = Samples::new("  hygiene without the detector");
    for _ in 0..runs {
        let (t, h) = run_once(false)?;
        without.push(t);
        own_without.push(Duration::from_millis(h));
        let (t, d) = run_once(true)?;
        with.push(t);
        own.push(Duration::from_millis(d));
    }
    stats::print(&[without, with, own_without, own], 0, json);
    Ok(())
}

/// Stops the host's package cache and empties it, for a cold measurement.
/// The cache is shared by every cluster on the host: refused while any is up.
fn empty_package_cache(engine: &Engine) -> anyhow::Result<()> {
    let leases = rehearse_sandbox::lease::Leases::host();
    let live = leases.live(&leases.lock()?);
    anyhow::ensure!(
        live.is_empty(),
        "{} cluster(s) on this host use the shared package cache ({}); a cold measurement would empty it under them: run it when no cluster is up, or measure warm only",
        live.len(),
        live.iter().map(|l| l.cluster.as_str()).collect::<Vec<_>>().join(", ")
    );
    let cache = engine.package_cache();
    cache.stop();
    let _ = std::fs::remove_dir_all(cache.cache_dir());
    Ok(())
}

fn clusters(runs: usize, json: bool) -> anyhow::Result<()> {
    let engine =
        Engine::new(&rehearse_image::state_dir()).context("opening the state directory")?;
    let spec = engine.images().spec_for(DEFAULT_IMAGE)?;
    let image = engine
        .images()
        .ensure(&spec, &|m| eprintln!("image: {m}"))?;

    // Warm-up: first boots pay for cold page cache and the package cache start.
    for n in [1, 4] {
        let (_, down) = up_down(&engine, n)?;
        let _ = down;
    }

    let mut baseline = Samples::new("plain systemd-nspawn --boot, 1 node (to READY)");
    for _ in 0..runs {
        baseline.push(baseline::nspawn_boot(&image)?);
    }
    let mut rows = vec![baseline];
    for n in [1, 4] {
        let mut up = Samples::new(&format!("rehearse up, {n} node(s), to all ready"));
        let mut down = Samples::new(&format!("rehearse down, {n} node(s)"));
        for _ in 0..runs {
            let (u, d) = up_down(&engine, n)?;
            up.push(u);
            down.push(d);
        }
        rows.push(up);
        rows.push(down);
    }
    // The CLI as users run it (process start, gc at start, state and run
    // store writes, the reaper started), against the engine's own `up` above.
    let bin = chaos::rehearse_bin()?;
    let mut cli = Samples::new("rehearse --json up -n 4 (the CLI, wall time)");
    for _ in 0..runs {
        let t0 = Instant::now();
        let out = std::process::Command::new(&bin)
            .args(["--json", "up", "-n", "4", "--no-pool"])
            .output()
            .context("running rehearse")?;
        let took = t0.elapsed();
        anyhow::ensure!(
            out.status.success(),
            "rehearse up failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let up: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        let id = up["cluster"].as_str().context("no cluster id")?;
        engine.down(id)?;
        cli.push(took);
    }
    let overhead = cli.median() - rows[3].median();
    rows.push(cli);
    stats::print(&rows, 0, json);
    if !json {
        println!("CLI overhead over the engine's up of 4 nodes (medians): {overhead:.0} ms");
    }
    Ok(())
}

/// One cluster: time to ready, then time to destroyed. The cluster is checked
/// to really be ready (systemd running on every node) outside the timing.
fn up_down(engine: &Engine, nodes: usize) -> anyhow::Result<(Duration, Duration)> {
    let t0 = Instant::now();
    let state = engine.up_fresh(
        UpRequest {
            topology: Topology::with_nodes(nodes, DEFAULT_IMAGE)?,
            ttl: Duration::from_secs(600),
            boot_timeout: Duration::from_secs(60),
            source: "rehearse-bench".into(),
            ownership: rehearse_sandbox::Ownership::User,
        },
        &|_| {},
    )?;
    let up = t0.elapsed();
    for node in &state.nodes {
        let (_, out, _) = engine.exec_capture(
            &state.id,
            &node.name,
            &ExecRequest::shell("systemctl is-system-running"),
        )?;
        anyhow::ensure!(
            out.trim() == "running",
            "{} is {} after up",
            node.name,
            out.trim()
        );
    }
    let t1 = Instant::now();
    engine.down(&state.id)?;
    Ok((up, t1.elapsed()))
}
