//! How results reach people and programs: human text or one JSON document on
//! stdout, diagnostics and progress on stderr.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

/// How log lines are written on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human line per event, with the run and cluster ids of its spans.
    Text,
    /// One JSON object per line, with the spans (run id, scenario, converge task) as fields.
    Json,
}

pub fn init_logging(verbose: bool, format: LogFormat) {
    let filter = if verbose { "debug" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("REHEARSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
}

pub fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("output serialises")
    );
}

pub fn report_error(e: &anyhow::Error, json: bool) {
    // Errors of the shared command set carry their code, retryability and
    // field: the same document an MCP client gets.
    if let Some(api) = e
        .chain()
        .find_map(|c| c.downcast_ref::<rehearse_api::ApiError>())
    {
        if json {
            print_json(&serde_json::json!({ "error": api }));
        }
        eprintln!("error: {}", api.message);
        if let Some(hint) = hint_for(api.code.as_str()) {
            eprintln!("hint: {hint}");
        }
        return;
    }
    let code = e
        .chain()
        .find_map(|c| c.downcast_ref::<rehearse_sandbox::SandboxError>())
        .map(|s| s.code())
        .or_else(|| {
            e.chain()
                .find_map(|c| c.downcast_ref::<rehearse_spec::SpecError>())
                .map(|_| "invalid_spec")
        })
        .unwrap_or("error");
    if json {
        print_json(&serde_json::json!({ "error": { "code": code, "message": format!("{e:#}") } }));
    }
    eprintln!("error: {e:#}");
    if let Some(hint) = hint_for(code) {
        eprintln!("hint: {hint}");
    }
}

/// What to type next after an error of this code: the terminal's words for
/// what the command set says in tool names.
fn hint_for(code: &str) -> Option<&'static str> {
    Some(match code {
        "cluster_not_found" | "cluster_expired" => "`rehearse ls` lists the live clusters",
        "node_down" => "if a fault crashed it, `rehearse heal CLUSTER` boots it again; otherwise `rehearse down CLUSTER` and start a new one",
        "snapshot_not_found" => "`rehearse snapshot ls CLUSTER` lists its snapshots; `rehearse snapshot CLUSTER NAME` takes one",
        "run_not_found" => "`rehearse runs ls` lists the recorded runs",
        "pool_exhausted" | "uid_ranges_exhausted" | "no_capacity" => {
            "`rehearse ls` shows what is up: `rehearse down ID` what you no longer need, `rehearse gc` what has expired"
        }
        "missing_tool" | "not_root" => "`rehearse doctor` checks everything rehearse needs on this host",
        "corrupt_state" => "`rehearse gc` removes the cluster",
        "boot_failed" => {
            "`rehearse doctor` checks this host; a broken image is rebuilt with `rehearse image rm NAME` then `rehearse image build NAME`"
        }
        "recipe_not_found" => "`rehearse recipe search WORDS` lists what there is",
        _ => return None,
    })
}

/// A spinner on stderr when it is a terminal; silent otherwise (or with --json).
#[derive(Clone)]
pub struct Spinner {
    bar: Option<ProgressBar>,
    quiet: bool,
}

impl Spinner {
    pub fn new(json: bool) -> Self {
        let interactive = !json && std::io::stderr().is_terminal();
        let bar = interactive.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                    .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(80));
            bar
        });
        Spinner { bar, quiet: json }
    }

    pub fn set(&self, msg: impl Into<String>) {
        let msg = msg.into();
        match &self.bar {
            Some(bar) => bar.set_message(msg),
            None if !self.quiet => eprintln!("{msg}"),
            None => {}
        }
    }

    /// A line that stays above the spinner.
    pub fn line(&self, msg: impl Into<String>) {
        let msg = msg.into();
        match &self.bar {
            Some(bar) => bar.println(msg),
            None if !self.quiet => eprintln!("{msg}"),
            None => {}
        }
    }

    /// A long command's progress, drawn here: phases on the spinner's line,
    /// everything else as lines above it.
    pub fn sink(&self) -> rehearse_api::ProgressSink {
        let spinner = self.clone();
        Box::new(move |p: rehearse_api::Progress| {
            if p.transient {
                spinner.set(p.message)
            } else {
                spinner.line(p.message)
            }
        })
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub fn human_duration(secs: i64) -> String {
    if secs <= 0 {
        return "expired".into();
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    if h > 0 {
        format!("{h}h{m:02}m")
    } else if m > 0 {
        format!("{m}m{s:02}s")
    } else {
        format!("{s}s")
    }
}
