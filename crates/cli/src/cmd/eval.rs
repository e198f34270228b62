//! `rehearse eval TASKS…`: every task converged by the configured model on
//! each of its platforms, N attempts each, several at once; the pass rate,
//! iterations, recovery paths, wall time, tokens and cost per task and in all.

use std::path::PathBuf;

use anyhow::Context;

use rehearse_api::eval::{self, EvaluateRequest};
use rehearse_api::Command;

use super::answer;
use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Task files, task folders (holding task.yaml), or folders of task
    /// folders such as `tasks/`.
    #[arg(required = true)]
    pub tasks: Vec<PathBuf>,
    /// Converge runs per task and platform.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub attempts: u32,
    /// Attempts running at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub jobs: u64,
    /// Run every task on these images, e.g. `debian-12,ubuntu-24.04`, instead
    /// of the platforms each task names (nodes that name their own image keep it).
    #[arg(long, value_delimiter = ',')]
    pub platform: Vec<String>,
    /// Exit 0 when at least this share of attempts converged: a percentage
    /// (`80`, `80%`) or a fraction (`0.8`). Default: every attempt.
    #[arg(long, value_parser = parse_rate, default_value = "100")]
    pub min_pass_rate: f64,
    /// Write a JUnit XML report to this file: a suite per task and platform,
    /// a case per attempt.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// anthropic or openai. Default: REHEARSE_LLM_PROVIDER, else guessed from the keys set.
    #[arg(long)]
    pub provider: Option<String>,
    /// Default: REHEARSE_LLM_MODEL, else the provider's default.
    #[arg(long)]
    pub model: Option<String>,
    /// Default: REHEARSE_LLM_BASE_URL.
    #[arg(long)]
    pub base_url: Option<String>,
}

/// `80`, `80%`, `0.8` → 0.8.
fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (number, percent) = match t.strip_suffix('%') {
        Some(n) => (n.trim(), true),
        None => (t, false),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a rate; write e.g. 80, 80% or 0.8"))?;
    let rate = if percent || value > 1.0 {
        value / 100.0
    } else {
        value
    };
    if !(0.0..=1.0).contains(&rate) {
        return Err(format!("{s:?} is outside 0 to 100%"));
    }
    Ok(rate)
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let request = EvaluateRequest {
        paths: args.tasks.iter().map(|p| p.display().to_string()).collect(),
        attempts: Some(args.attempts),
        jobs: Some(args.jobs),
        platforms: args.platform.clone(),
        min_pass_rate: Some(args.min_pass_rate),
        provider: args.provider,
        model: args.model,
        base_url: args.base_url,
    };
    let progress: rehearse_api::ProgressSink = Box::new(move |p: rehearse_api::Progress| {
        if !json || p.message.starts_with("no LLM") {
            eprintln!("· {}", p.message);
        }
    });
    let report = match super::mcp::api()?.execute(Command::Evaluate(request), Some(progress)) {
        Ok(outcome) => answer!(outcome, Evaluate),
        // Nothing was run: the tasks or the platforms were refused.
        Err(mut e) => {
            if e.field.as_deref() == Some("platforms") && !args.platform.is_empty() {
                e.message = format!("--platform: {}", e.message);
            }
            crate::output::report_error(&anyhow::Error::new(e), json);
            return Ok(2);
        }
    };
    if let Some(path) = &args.junit {
        std::fs::write(path, eval::junit(&report))
            .with_context(|| format!("writing the JUnit report {}", path.display()))?;
    }
    if json {
        print_json(&report);
    } else {
        print!("{}", eval::render(&report));
    }
    Ok(if report.passed { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_read_as_percentages_or_fractions() {
        assert_eq!(parse_rate("80").unwrap(), 0.8);
        assert_eq!(parse_rate("80%").unwrap(), 0.8);
        assert_eq!(parse_rate("0.8").unwrap(), 0.8);
        assert_eq!(parse_rate("100").unwrap(), 1.0);
        assert_eq!(parse_rate("0").unwrap(), 0.0);
        assert!(parse_rate("150").is_err());
        assert!(parse_rate("most").is_err());
    }
}
