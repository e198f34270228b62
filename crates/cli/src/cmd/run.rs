use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use rehearse_api::types::RunScenarioRequest;
use rehearse_api::{Command, ScenarioOutcome};
use rehearse_spec::scenario::Scenario;

use super::answer;
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
    if let Some(url) = &args.fleet {
        let mut scenario = Scenario::from_path(&args.path)?;
        if let Some(backend) = &args.backend {
            scenario.topology.set_default_backend(backend.parse()?);
        }
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
    let request = RunScenarioRequest {
        path: Some(args.path.display().to_string()),
        yaml: None,
        base_dir: None,
        reboot: args.reboot,
        idempotence: Some(!args.no_idempotence),
        keep: Some(
            if args.keep {
                "always"
            } else if args.keep_on_failure {
                "on_failure"
            } else {
                "never"
            }
            .to_owned(),
        ),
        ttl: Some(humantime::format_duration(args.ttl).to_string()),
        platforms: args.platform.clone(),
        jobs: args.jobs,
        backend: args.backend.clone(),
    };
    let spinner = Spinner::new(json);
    let outcome = super::mcp::api()?.execute(Command::RunScenario(request), Some(spinner.sink()));
    spinner.finish();
    let report = answer!(outcome?, RunScenario);
    if let Some(path) = &args.junit {
        let xml = match &report {
            ScenarioOutcome::Run(r) => rehearse_scenario::junit(r),
            ScenarioOutcome::Matrix(m) => rehearse_scenario::junit_matrix(m),
        };
        std::fs::write(path, xml).with_context(|| format!("writing {}", path.display()))?;
    }
    if json {
        print_json(&report);
    } else {
        match &report {
            ScenarioOutcome::Run(r) => print!("{}", rehearse_scenario::render_human(r)),
            ScenarioOutcome::Matrix(m) => print!("{}", rehearse_scenario::render_matrix(m)),
        }
    }
    Ok(report.exit_code())
}
