use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use rehearse_scenario::{Event, Keep, RunOptions};
use rehearse_spec::scenario::Scenario;

use crate::output::{print_json, Spinner};

#[derive(clap::Args)]
pub struct Args {
    /// A scenario file, or a folder holding `rehearse.yaml`.
    path: PathBuf,
    /// Reboot every node after the steps and run the checks again.
    #[arg(long)]
    reboot: bool,
    /// Skip the idempotence pass (applying the steps a second time).
    #[arg(long)]
    no_idempotence: bool,
    /// Leave the cluster up after the run, and print how to get in.
    #[arg(long, conflicts_with = "keep_on_failure")]
    keep: bool,
    /// Leave the cluster up only if the run failed.
    #[arg(long)]
    keep_on_failure: bool,
    /// Write a JUnit XML report to this file.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// What runs nodes whose topology names no `backend`: `nspawn` (containers,
    /// the default) or `vm` (QEMU microVMs with a kernel of their own).
    #[arg(long, value_parser = ["nspawn", "vm"])]
    backend: Option<String>,
    /// Time to live of the cluster (matters with --keep).
    #[arg(long, value_parser = super::parse_duration, default_value = "30m")]
    ttl: Duration,
    /// Run the scenario once per image, e.g. `debian-12,debian-13,ubuntu-24.04`
    /// (overrides the scenario's `platforms:`); nodes that name their own
    /// image keep it.
    #[arg(long, value_delimiter = ',')]
    platform: Vec<String>,
    /// How many platforms run at once. Default: as many as the host's free
    /// memory allows.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    jobs: Option<u64>,
    /// Place the run on a fleet (the PostgreSQL its hosts' `serve --fleet`
    /// share) instead of this host: the host with room runs it, this command
    /// waits and prints the same report. A matrix is one job per platform.
    #[arg(long, value_name = "URL", conflicts_with_all = ["keep", "keep_on_failure", "junit"])]
    fleet: Option<String>,
    /// Who the fleet queues the run for (priorities are per submitter).
    /// Default: REHEARSE_SUBMITTER, else user@host.
    #[arg(long, requires = "fleet")]
    submitter: Option<String>,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let mut scenario = Scenario::from_path(&args.path)?;
    if let Some(backend) = &args.backend {
        scenario.topology.set_default_backend(backend.parse()?);
    }
    if let Some(url) = &args.fleet {
        let platforms = if args.platform.is_empty() {
            scenario.platforms.clone()
        } else {
            Scenario::validate_platforms(&args.platform).context("--platform")?;
            args.platform.clone()
        };
        return super::fleet::run_scenario(
            super::fleet::ScenarioOnFleet {
                url,
                path: &args.path,
                scenario: &scenario,
                platforms: &platforms,
                reboot: args.reboot,
                idempotence: !args.no_idempotence,
                backend: args.backend.clone(),
                submitter: args
                    .submitter
                    .clone()
                    .unwrap_or_else(super::fleet::default_submitter),
            },
            json,
        );
    }
    let engine = super::engine()?;
    let opts = RunOptions {
        reboot: args.reboot,
        idempotence: !args.no_idempotence,
        keep: if args.keep {
            Keep::Always
        } else if args.keep_on_failure {
            Keep::OnFailure
        } else {
            Keep::Never
        },
        ttl: args.ttl,
        store: super::recording_store(),
        ..RunOptions::default()
    };
    let platforms = if args.platform.is_empty() {
        scenario.platforms.clone()
    } else {
        Scenario::validate_platforms(&args.platform).context("--platform")?;
        args.platform.clone()
    };
    if !platforms.is_empty() {
        return run_matrix(&engine, &scenario, &platforms, &args, &opts, json);
    }
    let spinner = Spinner::new(json);
    let events = |e: Event<'_>| match e {
        Event::Phase(p) => spinner.set(format!("{}: {p}", scenario.name)),
        Event::ClusterReady { cluster, boot_ms } => {
            spinner.line(format!("cluster {cluster} ready in {boot_ms} ms"))
        }
        Event::StepDone(step) => {
            let mark = if step.ok { "✔" } else { "✘" };
            spinner.line(format!(
                "{mark} {} ({} run, {} ms)",
                step.name,
                step.pass.as_str(),
                step.duration_ms
            ));
        }
        Event::ChecksDone { phase, results } => {
            for r in results {
                spinner.line(format!("  {phase}: {}", rehearse_checks::render_line(r)));
            }
        }
    };
    let report = rehearse_scenario::run(&engine, &scenario, &opts, &events);
    spinner.finish();
    if let Some(path) = &args.junit {
        std::fs::write(path, rehearse_scenario::junit(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        print_json(&report);
    } else {
        print!("{}", rehearse_scenario::render_human(&report));
    }
    Ok(report.exit_code())
}

/// The scenario once per platform, side by side, one report per platform.
fn run_matrix(
    engine: &rehearse_sandbox::Engine,
    scenario: &Scenario,
    platforms: &[String],
    args: &Args,
    opts: &RunOptions,
    json: bool,
) -> anyhow::Result<i32> {
    // Every platform is a known image before any cluster starts.
    for platform in platforms {
        engine.images().spec_for(platform)?;
    }
    let spinner = Spinner::new(json);
    let events = |platform: &str, e: Event<'_>| match e {
        Event::Phase(p) => spinner.set(format!("{platform}: {p}")),
        Event::ClusterReady { cluster, boot_ms } => spinner.line(format!(
            "{platform}: cluster {cluster} ready in {boot_ms} ms"
        )),
        Event::StepDone(step) => {
            let mark = if step.ok { "✔" } else { "✘" };
            spinner.line(format!(
                "{platform}: {mark} step {} ({:?} pass, {} ms)",
                step.name, step.pass, step.duration_ms
            ));
        }
        Event::ChecksDone { .. } => {}
    };
    let jobs = args.jobs.map(|j| j as usize);
    let report = rehearse_scenario::run_matrix(engine, scenario, platforms, jobs, opts, &events);
    spinner.finish();
    if let Some(path) = &args.junit {
        std::fs::write(path, rehearse_scenario::junit_matrix(&report))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        print_json(&report);
    } else {
        print!("{}", rehearse_scenario::render_matrix(&report));
    }
    Ok(report.exit_code())
}
