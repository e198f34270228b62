//! `rehearse runs ls|show|rm|prune`: the run store's history from the
//! terminal. Every `run` and `converge` is recorded there, whoever started it.

use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use rehearse_scenario::history;
use rehearse_store::{RunDetail, RunFilter, RunRow, Store};

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

use rehearse_store::now_ms;

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
        None => format!("{:.0}s…", (now_ms() - run.started_at_ms) as f64 / 1000.0),
    }
}

fn open() -> anyhow::Result<Store> {
    let dir = rehearse_image::history_dir();
    Store::open(&dir).context("opening the run store")
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    match args.command {
        Sub::Ls(a) => ls(a, json),
        Sub::Show { id } => show(&id, json),
        Sub::Rm { ids } => rm(&ids, json),
        Sub::Prune { older_than } => prune(older_than, json),
    }
}

fn ls(a: LsArgs, json: bool) -> anyhow::Result<i32> {
    let store = open()?;
    let runs = store.runs(&RunFilter {
        kind: a.kind,
        outcome: a.status,
        name: a.name,
        since_ms: a.since.map(|d| now_ms() - d.as_millis() as i64),
        children: a.all,
        limit: Some(a.limit),
        ..RunFilter::default()
    })?;
    if json {
        print_json(&runs);
        return Ok(0);
    }
    if runs.is_empty() {
        println!("no runs");
        return Ok(0);
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
            took(&r),
            first_line(r.summary.as_deref().unwrap_or(""))
        );
    }
    Ok(0)
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

fn show(id: &str, json: bool) -> anyhow::Result<i32> {
    let store = open()?;
    let Some(detail) = store.run(id)? else {
        anyhow::bail!(
            "no run {id} in the run store ({}): `rehearse runs ls` lists them",
            store.location()
        );
    };
    if json {
        let mut value = serde_json::to_value(&detail)?;
        // The report is JSON text in the store: show it as JSON.
        if let Some(report) = detail.report.as_deref() {
            value["report"] = serde_json::from_str(report).unwrap_or(serde_json::Value::Null);
        }
        print_json(&value);
        return Ok(0);
    }
    print_detail(&detail);
    Ok(0)
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

fn print_detail(d: &RunDetail) {
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

fn rm(ids: &[String], json: bool) -> anyhow::Result<i32> {
    let engine = super::engine()?;
    let store = open()?;
    let mut removed = Vec::new();
    let mut failed = 0;
    for id in ids {
        match history::remove_run(&engine, &store, id) {
            Ok(d) => removed.extend(d.ids),
            Err(e) => {
                eprintln!("rehearse: {e}");
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

fn prune(older_than: Option<Duration>, json: bool) -> anyhow::Result<i32> {
    let older_than = match older_than {
        Some(d) => d,
        None => match history::retention_from_env().map_err(anyhow::Error::msg)? {
            Some(d) => d,
            None => {
                println!(
                    "retention is off ({}): nothing removed",
                    history::RETENTION_ENV
                );
                return Ok(0);
            }
        },
    };
    let engine = super::engine()?;
    let store = open()?;
    let deleted = history::prune(&engine, &store, older_than)?;
    if json {
        print_json(&serde_json::json!({ "removed": deleted.ids }));
    } else {
        println!(
            "removed {} run(s) older than {}",
            deleted.ids.len(),
            humantime::format_duration(older_than)
        );
    }
    Ok(0)
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
