//! The evaluation harness's own cost per task: `rehearse eval` of K trivial
//! tasks (one attempt each, one at a time) against the same K tasks converged
//! directly, one after the other, in the same run. A scripted model (the
//! wire-level fake of `rehearse-llm`) answers a correct script at once, so
//! every converge run is one iteration on a fresh 1-node cluster. Both sides
//! read the task files, connect to the same kind of model and run the same
//! converge loop; what the harness adds is its own: finding the task files,
//! scheduling, recording the evaluation and its attempts in the run store,
//! and summing up. Runs alternate between the two.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;

use rehearse_converge::eval::{self, EvalOptions};
use rehearse_converge::Verdict;
use rehearse_llm::fake::{FakeReply, FakeServer};
use rehearse_llm::{OpenAi, Provider, RetryPolicy};
use rehearse_sandbox::Engine;
use rehearse_spec::task::Task;

use crate::stats::{self, Samples};

fn script(n: usize) -> String {
    format!("#!/bin/bash\nset -euo pipefail\ntouch /etc/rehearse-bench-eval-{n}\n")
}

/// K task folders under `dir`, `task-00`…, each creating its own file.
fn write_tasks(dir: &Path, k: usize) -> anyhow::Result<Vec<PathBuf>> {
    (0..k)
        .map(|n| {
            let folder = dir.join(format!("task-{n:02}"));
            std::fs::create_dir_all(&folder)?;
            let file = folder.join("task.yaml");
            std::fs::write(
                &file,
                format!(
                    "goal: Create the file /etc/rehearse-bench-eval-{n}.\nlanguage: bash\nnodes: 1\nchecks:\n  - file: /etc/rehearse-bench-eval-{n}\nmax_iterations: 1\n"
                ),
            )?;
            Ok(file)
        })
        .collect()
}

/// A scripted model answering the K tasks' scripts, in task order.
fn model(k: usize) -> anyhow::Result<(FakeServer, OpenAi)> {
    let server = FakeServer::start(
        (0..k)
            .map(|n| FakeReply::openai(&format!("```bash\n{}```\n", script(n))))
            .collect(),
    );
    let model = OpenAi::new(
        server.url(),
        "fake-model",
        None,
        Duration::from_secs(10),
        RetryPolicy::default(),
    )?;
    Ok((server, model))
}

pub fn bench(runs: usize, k: usize, json: bool) -> anyhow::Result<()> {
    let engine =
        Engine::new(&rehearse_image::state_dir()).context("opening the state directory")?;
    let tmp = std::env::temp_dir().join(format!("rehearse-bench-eval-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let files = write_tasks(&tmp, k)?;
    let store = crate::run_store(&engine);

    let direct_once = || -> anyhow::Result<Duration> {
        let (_server, model) = model(k)?;
        let t0 = Instant::now();
        for file in &files {
            let task = Task::from_path(file)?;
            let report = rehearse_converge::converge(
                &engine,
                &task,
                Some(&model as &dyn Provider),
                &|_| {},
                store.clone(),
            )?;
            anyhow::ensure!(
                report.verdict == Verdict::Converged,
                "{}: {}",
                task.name,
                report.summary
            );
        }
        Ok(t0.elapsed())
    };
    let eval_once = || -> anyhow::Result<Duration> {
        let (_server, model) = model(k)?;
        let t0 = Instant::now();
        let tasks = eval::load_tasks(std::slice::from_ref(&tmp))?;
        let options = EvalOptions {
            attempts: 1,
            jobs: 1,
            min_pass_rate: 1.0,
            source: tmp.display().to_string(),
            store: store.clone(),
            ..EvalOptions::default()
        };
        let report = eval::evaluate(
            &engine,
            &tasks,
            Some(&model as &dyn Provider),
            &options,
            &|_, _| {},
        )?;
        let wall = t0.elapsed();
        anyhow::ensure!(
            report.passed && report.total.attempts == k,
            "the evaluation did not converge every task: {}",
            eval::summary(&report)
        );
        Ok(wall)
    };

    // Warm-up: the image, the page cache, the run store.
    direct_once()?;
    eval_once()?;

    let mut direct = Samples::new(&format!("{k} converges run directly (baseline)"));
    let mut evaluated = Samples::new(&format!("rehearse eval of the same {k} tasks"));
    for i in 0..runs {
        if i % 2 == 0 {
            direct.push(direct_once()?);
            evaluated.push(eval_once()?);
        } else {
            evaluated.push(eval_once()?);
            direct.push(direct_once()?);
        }
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let per_task = (evaluated.median() - direct.median()) / k as f64;
    stats::print(&[direct, evaluated], 0, json);
    let line = format!(
        "the harness's own overhead per task (difference of medians / {k}): {per_task:.0} ms"
    );
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    Ok(())
}
