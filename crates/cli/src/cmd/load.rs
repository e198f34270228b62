//! `rehearse load CLUSTER URL --from NODE ...`: HTTP load from a node of a
//! live cluster, bounded in time and count. Exit 0 when every stated
//! expectation held, 1 otherwise, 2 when the load could not be run.

use rehearse_api::trials::LoadRequest;
use rehearse_api::Command;
use rehearse_checks::CheckResult;
use rehearse_spec::trials::{LoadExpect, LoadSpec, Span};

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Cluster id.
    cluster: String,
    /// An http:// URL; node names resolve inside the cluster, e.g. http://lb/.
    url: String,
    /// The node the load runs on (latencies are measured there).
    #[arg(long)]
    from: String,
    /// How long to send requests, e.g. 10s (at most 10m).
    #[arg(long, value_parser = span)]
    duration: Option<Span>,
    /// How many requests to send at most.
    #[arg(long)]
    requests: Option<u64>,
    /// Connections sending requests at once (default 4).
    #[arg(long)]
    concurrency: Option<u32>,
    /// Longest one request may take before it counts as an error (default 5s).
    #[arg(long, value_parser = span)]
    timeout: Option<Span>,
    /// Name shown in the report.
    #[arg(long)]
    name: Option<String>,
    /// Expect at most this share of failed requests, in percent.
    #[arg(long)]
    error_rate: Option<f64>,
    /// Expect a median latency of at most this, e.g. 50ms.
    #[arg(long, value_parser = span)]
    p50: Option<Span>,
    /// Expect a 99th-percentile latency of at most this, e.g. 1s.
    #[arg(long, value_parser = span)]
    p99: Option<Span>,
    /// Expect at least this many successful requests.
    #[arg(long)]
    min_ok: Option<u64>,
}

fn span(s: &str) -> Result<Span, String> {
    super::parse_duration(s).map(Span)
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let load = LoadSpec {
        name: args.name,
        from: args.from,
        url: args.url,
        duration: args.duration,
        requests: args.requests,
        concurrency: args.concurrency,
        timeout: args.timeout,
        expect: LoadExpect {
            error_rate: args.error_rate,
            p50: args.p50,
            p99: args.p99,
            min_ok: args.min_ok,
        },
    };
    let Some(outcome) = super::execute_checked(
        Command::Load(LoadRequest {
            cluster: args.cluster,
            load,
        }),
        json,
    )?
    else {
        return Ok(2);
    };
    let report = super::answer!(outcome, Load);
    let passed = report.checks.iter().all(CheckResult::passed);
    if json {
        print_json(&report);
    } else {
        let ms = |v: Option<f64>| {
            v.map(|v| format!("{v:.1} ms"))
                .unwrap_or_else(|| "-".into())
        };
        println!(
            "{}: {} requests in {:.1} s ({:.0}/s), {} ok, {} failed ({:.2}%)",
            report.name,
            report.requests,
            report.elapsed_ms as f64 / 1000.0,
            report.rps,
            report.ok,
            report.failed,
            report.error_rate,
        );
        println!(
            "latency p50 {}, p90 {}, p99 {}, max {}",
            ms(report.p50_ms),
            ms(report.p90_ms),
            ms(report.p99_ms),
            ms(report.max_ms)
        );
        if !report.errors.is_empty() {
            let list: Vec<String> = report
                .errors
                .iter()
                .map(|(k, v)| format!("{v}× {k}"))
                .collect();
            println!("errors: {}", list.join(", "));
        }
        for c in &report.checks {
            println!("  {}", rehearse_checks::render_line(c));
        }
    }
    Ok(if passed { 0 } else { 1 })
}
