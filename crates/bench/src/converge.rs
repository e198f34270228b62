//! The converge engine's own cost per iteration, everything but the model's
//! latency and the user's code: a scripted model answers a correct trivial
//! script at once, so every run is one iteration whose clean run is its proof.
//!
//! Baseline: `rehearse run` of the very scenario the engine builds for that
//! iteration (same topology, step and checks, same run options). It is the floor:
//! an iteration must boot a cluster, run the step, evaluate the checks and tear
//! down. Both rows have the step's own runtime (from the run report) taken out;
//! the converge row also the model's latency (from the report's LLM calls).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;

use rehearse_converge::Verdict;
use rehearse_llm::fake::{FakeReply, FakeServer};
use rehearse_llm::{OpenAi, Provider, RetryPolicy};
use rehearse_sandbox::Engine;
use rehearse_scenario::{Keep, Outcome, RunOptions, RunReport};
use rehearse_spec::scenario::{Scenario, Step, StepAction, DEFAULT_STEP_TIMEOUT};
use rehearse_spec::task::Task;

use crate::stats::{self, Samples};

const SCRIPT: &str = "#!/bin/bash\nset -euo pipefail\ntouch /etc/rehearse-bench\n";

const TASK: &str = "\
goal: Create the file /etc/rehearse-bench.
language: bash
nodes: 1
checks:
  - file: /etc/rehearse-bench
max_iterations: 1
";

fn step_ms(run: &RunReport) -> u64 {
    run.steps.iter().map(|s| s.duration_ms).sum()
}

/// The scenario the engine runs for one bash iteration of `task`.
fn equivalent_scenario(task: &Task, dir: &Path) -> Scenario {
    Scenario {
        name: task.name.clone(),
        description: Some(task.goal.clone()),
        topology: task.topology.clone(),
        platforms: Vec::new(),
        pinned: Vec::new(),
        steps: vec![Step {
            idempotence: Default::default(),
            name: "bash code".into(),
            on: Vec::new(),
            timeout: DEFAULT_STEP_TIMEOUT,
            env: Vec::new(),
            action: StepAction::Shell {
                script: SCRIPT.into(),
                file: None,
            },
        }],
        checks: task.checks.clone(),
        faults: Vec::new(),
        loads: Vec::new(),
        probes: Vec::new(),
        dir: dir.to_path_buf(),
        file: task.file.clone(),
    }
}

pub fn bench(runs: usize, json: bool) -> anyhow::Result<()> {
    let engine =
        Engine::new(&rehearse_image::state_dir()).context("opening the state directory")?;
    let tmp = std::env::temp_dir().join(format!("rehearse-bench-converge-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let task = Task::from_yaml(TASK, "bench-converge.yaml", &tmp)?;
    let scenario = equivalent_scenario(&task, &tmp);
    let options = RunOptions {
        idempotence: false,
        reboot: false,
        keep: Keep::Never,
        store: crate::run_store(&engine),
        ..RunOptions::default()
    };

    let run_once = || -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        let report = rehearse_scenario::run(&engine, &scenario, &options, &|_| {});
        let wall = t0.elapsed();
        anyhow::ensure!(
            report.outcome == Outcome::Passed,
            "the baseline scenario did not pass:\n{}",
            rehearse_scenario::render_human(&report)
        );
        Ok(wall.saturating_sub(Duration::from_millis(step_ms(&report))))
    };
    // (overhead, model latency) of one converge run.
    let converge_once = || -> anyhow::Result<(Duration, Duration)> {
        let server = FakeServer::start(vec![FakeReply::openai(&format!("```bash\n{SCRIPT}```\n"))]);
        let model = OpenAi::new(
            server.url(),
            "fake-model",
            None,
            Duration::from_secs(10),
            RetryPolicy::default(),
        )?;
        let t0 = Instant::now();
        let report = rehearse_converge::converge(
            &engine,
            &task,
            Some(&model as &dyn Provider),
            &|_| {},
            options.store.clone(),
        )?;
        let wall = t0.elapsed();
        anyhow::ensure!(
            report.verdict == Verdict::Converged && report.iterations.len() == 1,
            "converge did not converge in one iteration: {}",
            report.summary
        );
        let llm = Duration::from_millis(
            report
                .iterations
                .iter()
                .flat_map(|i| &i.llm_calls)
                .map(|c| c.latency_ms)
                .sum(),
        );
        let user = Duration::from_millis(report.iterations.iter().map(|i| step_ms(&i.run)).sum());
        Ok((wall.saturating_sub(llm).saturating_sub(user), llm))
    };

    // Warm-up: the image, the page cache and the package cache start.
    run_once()?;
    converge_once()?;

    let mut floor = Samples::new("rehearse run, same scenario, minus step (baseline)");
    let mut iteration = Samples::new("converge iteration, minus model and step");
    let mut model = Samples::new("scripted model latency (taken out above)");
    for _ in 0..runs {
        floor.push(run_once()?);
        let (overhead, llm) = converge_once()?;
        iteration.push(overhead);
        model.push(llm);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let beyond = iteration.median() - floor.median();
    stats::print(&[floor, iteration, model], 0, json);
    // With --json, stdout holds only the JSON document.
    let line =
        format!("converge engine beyond `rehearse run` (difference of medians): {beyond:.0} ms");
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    Ok(())
}
