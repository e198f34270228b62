//! Platforms: `up` of a cluster on each built-in image against the default
//! image, and a platforms matrix of a scenario against the same scenario on
//! one platform, in the same run.

use std::time::{Duration, Instant};

use anyhow::Context;

use rehearse_sandbox::{Engine, ExecRequest, UpRequest};
use rehearse_scenario::{Outcome, RunOptions};
use rehearse_spec::scenario::Scenario;
use rehearse_spec::{Topology, BUILTIN_IMAGES, DEFAULT_IMAGE};

use crate::stats::{self, Samples};

/// `runs` ups (and downs) of `nodes` nodes per image, the default image first
/// (the baseline); then `matrix_runs` alternations of `scenario` on
/// `matrix[0]` alone (the baseline) and on all of `matrix` at once.
pub fn bench(
    runs: usize,
    nodes: usize,
    scenario: &std::path::Path,
    matrix: &[String],
    matrix_runs: usize,
    json: bool,
) -> anyhow::Result<()> {
    let engine =
        Engine::new(&rehearse_image::state_dir()).context("opening the state directory")?;
    let mut images: Vec<&str> = vec![DEFAULT_IMAGE];
    images.extend(BUILTIN_IMAGES.iter().filter(|i| **i != DEFAULT_IMAGE));
    for image in images
        .iter()
        .copied()
        .chain(matrix.iter().map(String::as_str))
    {
        let spec = engine.images().spec_for(image)?;
        engine
            .images()
            .ensure(&spec, &|m| eprintln!("image: {m}"))?;
    }
    eprintln!("host load before: {}", load());
    // Warm-up: each image's first boot reads it from disk. Then the images
    // take turns, so a busy moment of a shared host falls on all of them.
    for image in &images {
        up_down(&engine, nodes, image)?;
    }
    let mut rows: Vec<Samples> = images
        .iter()
        .map(|image| {
            Samples::new(&format!(
                "rehearse up, {nodes} nodes of {image}, to all ready"
            ))
        })
        .collect();
    for _ in 0..runs {
        for (image, row) in images.iter().zip(rows.iter_mut()) {
            row.push(up_down(&engine, nodes, image)?);
        }
    }
    stats::print(&rows, 0, json);

    if matrix_runs == 0 || matrix.is_empty() {
        return Ok(());
    }
    let scenario = Scenario::from_path(scenario)?;
    let opts = RunOptions {
        store: crate::run_store(&engine),
        ..RunOptions::default()
    };
    let single = |platform: &str| -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let report =
            rehearse_scenario::run(&engine, &scenario.on_platform(platform), &opts, &|_| {});
        let took = t0.elapsed();
        anyhow::ensure!(
            report.outcome == Outcome::Passed,
            "{} on {platform} did not pass:\n{}",
            scenario.name,
            rehearse_scenario::render_human(&report)
        );
        Ok(took)
    };
    let all = || -> anyhow::Result<(Duration, usize)> {
        let t0 = Instant::now();
        let report =
            rehearse_scenario::run_matrix(&engine, &scenario, matrix, None, &opts, &|_, _| {});
        let took = t0.elapsed();
        anyhow::ensure!(
            report.outcome == Outcome::Passed,
            "the matrix did not pass:\n{}",
            rehearse_scenario::render_matrix(&report)
        );
        Ok((took, report.jobs))
    };
    // Warm the package cache for every platform.
    all()?;
    let mut one = Samples::new(&format!("{} on {} alone", scenario.name, matrix[0]));
    let mut side = Samples::new(&format!(
        "{} on {} side by side (matrix)",
        scenario.name,
        matrix.join(", ")
    ));
    let mut jobs = 0;
    for _ in 0..matrix_runs {
        one.push(single(&matrix[0])?);
        let (t, j) = all()?;
        side.push(t);
        jobs = j;
    }
    eprintln!(
        "matrix ran {jobs} platform(s) at once; host load after: {}",
        load()
    );
    stats::print(&[one, side], 0, json);
    Ok(())
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// One cluster of `image`: time to ready; checked to really be ready (systemd
/// running on every node) outside the timing, then destroyed.
fn up_down(engine: &Engine, nodes: usize, image: &str) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let state = engine.up(
        UpRequest {
            topology: Topology::with_nodes(nodes, image)?,
            ttl: Duration::from_secs(600),
            boot_timeout: Duration::from_secs(60),
            source: "rehearse-bench".into(),
            ownership: rehearse_sandbox::Ownership::User,
        },
        &|_| {},
    )?;
    let up = t0.elapsed();
    let checked = state.nodes.iter().try_for_each(|node| {
        let (_, out, _) = engine.exec_capture(
            &state.id,
            &node.name,
            &ExecRequest::shell("systemctl is-system-running --wait"),
        )?;
        anyhow::ensure!(
            out.trim() == "running",
            "{} ({image}) is {} after up",
            node.name,
            out.trim()
        );
        Ok(())
    });
    engine.down(&state.id)?;
    checked?;
    Ok(up)
}
