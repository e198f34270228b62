//! `rehearse converge TASKFILE`: loop an LLM (or the rules doctor alone) until the
//! task's checks pass, then print the proven script.

use std::path::PathBuf;

use anyhow::Context;

use rehearse_converge::Verdict;
use rehearse_llm::Settings;
use rehearse_spec::task::Task;

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
    let mut task = Task::from_path(&args.task)?;
    // A task names several platforms for `rehearse eval`; one converge run
    // reaches the goal on the first of them.
    if let Some(first) = task.platforms.first().cloned() {
        if task.platforms.len() > 1 {
            eprintln!(
                "the task names {} platforms: converging on the first, {first} (`rehearse eval` runs them all)",
                task.platforms.len()
            );
        }
        task = task.on_platform(&first);
    }
    if let Some(url) = &args.fleet {
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
    let mut settings = Settings::from_env();
    settings.provider = args.provider.or(settings.provider);
    settings.model = args.model.or(settings.model);
    settings.base_url = args.base_url.or(settings.base_url);
    let model = rehearse_llm::connect(&settings).context("configuring the LLM")?;
    if model.is_none() {
        eprintln!("no LLM is configured (set ANTHROPIC_API_KEY, OPENAI_API_KEY or REHEARSE_LLM_BASE_URL): running with the rules doctor only");
    }
    let engine = super::engine()?;
    let progress = |message: &str| {
        if !json {
            eprintln!("· {message}");
        }
    };
    let report = rehearse_converge::converge(
        &engine,
        &task,
        model.as_deref(),
        &progress,
        super::recording_store(),
    )?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
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
