//! `rehearse converge TASKFILE`: loop an LLM (or the rules doctor alone) until the
//! task's checks pass, then print the proven script.

use std::path::PathBuf;

use rehearse_api::types::ConvergeRequest;
use rehearse_api::{Command, Verdict};
use rehearse_spec::task::Task;

use super::answer;
use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// A task file, or a folder holding task.yaml.
    pub task: PathBuf,
    /// anthropic or openai (any OpenAI-compatible server). Default: REHEARSE_LLM_PROVIDER, else guessed from the keys set.
    #[arg(long)]
    pub provider: Option<String>,
    /// Default: REHEARSE_LLM_MODEL, else the provider's default.
    #[arg(long)]
    pub model: Option<String>,
    /// e.g. http://127.0.0.1:11434 for Ollama. Default: REHEARSE_LLM_BASE_URL.
    #[arg(long)]
    pub base_url: Option<String>,
    /// Place the task on a fleet (the PostgreSQL its hosts' `serve --fleet`
    /// share) instead of this host: the host with room converges it with the
    /// model it is configured for (its keys stay on it), this command waits
    /// and prints the result.
    #[arg(long, value_name = "URL")]
    pub fleet: Option<String>,
    /// Who the fleet queues the task for (priorities are per submitter).
    /// Default: REHEARSE_SUBMITTER, else user@host.
    #[arg(long, requires = "fleet")]
    pub submitter: Option<String>,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    if let Some(url) = &args.fleet {
        let mut task = Task::from_path(&args.task)?;
        // A task names several platforms for `rehearse eval`; one converge
        // run reaches the goal on the first of them.
        if let Some(first) = task.platforms.first().cloned() {
            task = task.on_platform(&first);
        }
        return super::fleet::converge(
            super::fleet::TaskOnFleet {
                url,
                path: &args.task,
                nodes: task.topology.nodes.len() as u32,
                images: rehearse_fleet::images_of(&task.topology),
                model: serde_json::json!({
                    "provider": args.provider,
                    "model": args.model,
                    "base_url": args.base_url,
                }),
                submitter: args
                    .submitter
                    .clone()
                    .unwrap_or_else(super::fleet::default_submitter),
            },
            json,
        );
    }
    let request = ConvergeRequest {
        path: Some(args.task.display().to_string()),
        yaml: None,
        base_dir: None,
        provider: args.provider,
        model: args.model,
        base_url: args.base_url,
    };
    // Progress and notices (no model configured, which platform) go to
    // stderr, with --json too: stdout holds the report only.
    let progress: rehearse_api::ProgressSink =
        Box::new(|p: rehearse_api::Progress| eprintln!("· {}", p.message));
    let outcome = super::mcp::api()?.execute(Command::Converge(request), Some(progress));
    let report = answer!(outcome?, Converge);
    if json {
        print_json(&report);
    } else {
        eprintln!("{}", report.summary);
        if let Some(script) = &report.script {
            print!("{script}");
            for finding in &report.review {
                eprintln!(
                    "review: {} ({}): {}",
                    finding.text, finding.rule, finding.reason
                );
            }
        }
        eprintln!(
            "run {} · {} iteration(s) · {} tokens · report {}",
            report.run_id,
            report.iterations.len(),
            report.usage.total(),
            report.report_path.display()
        );
    }
    Ok(if report.verdict == Verdict::Converged {
        0
    } else {
        1
    })
}
