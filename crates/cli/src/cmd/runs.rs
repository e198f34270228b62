//! `rehearse runs ls|show|rm|prune`: the run store's history from the
//! terminal. Every `run` and `converge` is recorded there, whoever started it.

use std::time::{Duration, UNIX_EPOCH};

use rehearse_api::history::{PruneRequest, RunRequest, RunShown, RunsRequest};
use rehearse_api::{Command, RunRow};

use super::answer;
use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// List runs, newest first.
    Ls(LsArgs),
    /// Show a run whole: steps, checks (expected vs actual), iterations, child runs.
    Show { id: String },
    /// Remove runs and their folders (never one still running, part of a converge run, or whose cluster is up).
    Rm {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Apply the retention: remove finished runs older than it, sparing what is still referenced.
    Prune {
        /// How old a run must be to go (default: REHEARSE_RETENTION, else 30d).
        #[arg(long, value_parser = super::parse_duration)]
        older_than: Option<Duration>,
    },
}

#[derive(clap::Args)]
struct LsArgs {
    /// Only runs with this outcome: running, passed, failed, error, aborted, converged, budget_exhausted, no_rule_applies.
    #[arg(long)]
    status: Option<String>,
    /// Only scenario, converge or eval runs.
    #[arg(long, value_parser = ["scenario", "converge", "eval"])]
    kind: Option<String>,
    /// Only runs whose scenario or task name contains this.
    #[arg(long)]
    name: Option<String>,
    /// Only runs started within this long (e.g. 2h, 7d).
    #[arg(long, value_parser = super::parse_duration)]
    since: Option<Duration>,
    /// Also list the iteration and proof runs of converge runs.
    #[arg(long)]
    all: bool,
    #[arg(long, default_value_t = 50)]
    limit: u32,
}

fn when(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace('T', " ")
        .trim_end_matches('Z')
        .to_owned()
}

fn took(run: &RunRow) -> String {
    match run.duration_ms() {
        Some(ms) => format!("{:.1}s", ms as f64 / 1000.0),
        None => format!(
            "{:.0}s…",
            (rehearse_api::now_ms() - run.started_at_ms) as f64 / 1000.0
        ),
    }
}

fn span(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let api = super::mcp::api()?;
    match args.command {
        Sub::Ls(a) => {
            let runs = answer!(
                api.execute(
                    Command::Runs(RunsRequest {
                        status: a.status,
                        kind: a.kind,
                        name: a.name,
                        since: a.since.map(span),
                        all: a.all,
                        limit: Some(a.limit),
                    }),
                    None,
                )?,
                Runs
            );
            if json {
                print_json(&runs);
            } else {
                print_list(&runs.runs);
            }
            Ok(0)
        }
        Sub::Show { id } => {
            let shown = answer!(
                api.execute(Command::RunShow(RunRequest { run: id }), None)?,
                RunShow
            );
            if json {
                print_json(&shown);
            } else {
                print_detail(&shown);
            }
            Ok(0)
        }
        Sub::Rm { ids } => {
            let mut removed = Vec::new();
            let mut failed = 0;
            for id in ids {
                match api.execute(Command::RunRemove(RunRequest { run: id }), None) {
                    Ok(outcome) => removed.extend(answer!(outcome, RunRemove).removed),
                    Err(e) => {
                        eprintln!("rehearse: {}", e.message);
                        failed += 1;
                    }
                }
            }
            if json {
                print_json(&serde_json::json!({ "removed": removed }));
            } else {
                for id in &removed {
                    println!("removed {id}");
                }
            }
            Ok(if failed > 0 { 1 } else { 0 })
        }
        Sub::Prune { older_than } => {
            let pruned = answer!(
                api.execute(
                    Command::RunsPrune(PruneRequest {
                        older_than: older_than.map(span),
                    }),
                    None,
                )?,
                RunsPrune
            );
            if json {
                print_json(&pruned);
            } else {
                match &pruned.older_than {
                    Some(age) => {
                        println!("removed {} run(s) older than {age}", pruned.removed.len())
                    }
                    None => println!(
                        "retention is off ({}): nothing removed",
                        rehearse_api::RETENTION_ENV
                    ),
                }
            }
            Ok(0)
        }
    }
}

fn print_list(runs: &[RunRow]) {
    if runs.is_empty() {
        println!("no runs");
        return;
    }
    println!(
        "{:<18} {:<9} {:<20} {:<17} {:<19} {:>8}  SUMMARY",
        "RUN", "KIND", "NAME", "OUTCOME", "STARTED (UTC)", "TOOK"
    );
    for r in runs {
        let name = match &r.role {
            Some(role) => format!("{} ({role})", r.name),
            None => r.name.clone(),
        };
        println!(
            "{:<18} {:<9} {:<20} {:<17} {:<19} {:>8}  {}",
            r.id,
            r.kind,
            name,
            r.outcome,
            when(r.started_at_ms),
            took(r),
            first_line(r.summary.as_deref().unwrap_or(""))
        );
    }
}

/// A summary on one table row: its first line, marked when more follows.
fn first_line(summary: &str) -> String {
    let mut lines = summary.trim().lines();
    let first = lines.next().unwrap_or("").trim_end();
    if lines.next().is_some() {
        format!("{first} …")
    } else {
        first.to_string()
    }
}

fn mark(status: &str) -> &'static str {
    match status {
        "passed" | "converged" => "✓",
        "skipped" => "-",
        "running" => "…",
        "aborted" => "!",
        _ => "✗",
    }
}

fn print_detail(d: &RunShown) {
    let r = &d.run;
    println!("run {}  {} {}  ({})", r.id, r.kind, r.name, r.file);
    if let (Some(parent), Some(role)) = (&r.parent_id, &r.role) {
        println!("part of run {parent} as {role}");
    }
    println!(
        "outcome: {}   started: {} UTC   took: {}   cluster: {}",
        r.outcome,
        when(r.started_at_ms),
        took(r),
        r.cluster_id.as_deref().unwrap_or("-")
    );
    if let Some(summary) = &r.summary {
        println!("summary: {summary}");
    }
    if r.input_tokens + r.output_tokens > 0 {
        let cost = r.cost_usd.map(|c| format!(", ${c:.4}")).unwrap_or_default();
        println!(
            "tokens: {} in, {} out{cost}",
            r.input_tokens, r.output_tokens
        );
    }
    if !d.steps.is_empty() {
        println!("steps:");
        for s in &d.steps {
            println!(
                "  {} {} ({}, {} pass) on {}  {:.1}s",
                mark(if s.ok { "passed" } else { "failed" }),
                s.name,
                s.kind,
                s.pass,
                s.nodes.join(","),
                s.duration_ms as f64 / 1000.0
            );
            if let Some(e) = &s.error {
                println!("      {e}");
            }
        }
    }
    if !d.checks.is_empty() {
        println!("checks:");
        for c in &d.checks {
            let phase = if c.phase == "checks" {
                String::new()
            } else {
                format!(" [{}]", c.phase)
            };
            println!("  {} {} on {}{phase}", mark(&c.status), c.name, c.node);
            if c.status == "failed" {
                println!("      {}", c.message);
                println!("      expected: {}", c.expected);
                println!("      actual:   {}", c.actual);
            }
        }
    }
    if let Some(c) = &d.converge {
        println!(
            "goal: {}\nlanguage: {}   model: {}",
            c.goal,
            c.language,
            c.model.as_deref().unwrap_or("none (rules only)")
        );
        println!("iterations:");
        for it in &c.iterations {
            let path = match (&it.recovery_path, &it.reason) {
                (Some(p), Some(why)) => format!("  → {p}: {why}"),
                (Some(p), None) => format!("  → {p}"),
                _ => String::new(),
            };
            println!(
                "  {} {} (code from {}) {}  {:.1}s  run {}{path}",
                mark(&it.outcome),
                it.number,
                it.origin,
                it.outcome,
                it.duration_ms as f64 / 1000.0,
                it.scenario_run_id
            );
            for cmd in &it.commands {
                println!(
                    "      $ {} (on {}, exit {})",
                    cmd.command,
                    cmd.node,
                    cmd.exit_code.map_or("-".into(), |c| c.to_string())
                );
            }
        }
        if let Some(script) = c.distilled.as_ref().or(c.script.as_ref()) {
            println!(
                "script ({}):\n{script}",
                c.proof_outcome
                    .as_deref()
                    .map_or("not proven".into(), |p| format!("proof run {p}"))
            );
        }
    }
    if !d.children.is_empty() {
        println!("runs:");
        for child in &d.children {
            println!(
                "  {} {}  {}  {}",
                mark(&child.outcome),
                child.role.as_deref().unwrap_or(""),
                child.id,
                child.outcome
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::first_line;

    #[test]
    fn a_summary_keeps_one_row() {
        assert_eq!(first_line("passed: 2 step(s)"), "passed: 2 step(s)");
        assert_eq!(
            first_line("failed: nginx -t\n[emerg] duplicate upstream\n"),
            "failed: nginx -t …"
        );
        assert!(!first_line("a\r\nb").contains('\n'));
    }
}
