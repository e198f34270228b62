//! `/metrics` in Prometheus text format (version 0.0.4). Everything but the
//! live cluster count is computed from the run store, so runs started by any
//! process (the CLI, an MCP client, CI) count, and the numbers survive a
//! server restart. Counters only grow, except when retention removes runs.

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

use rehearse_store::{Counts, Metrics};

use crate::AppState;

const BOOT_BUCKETS_S: &[f64] = &[0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0];
const ITERATION_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 13.0, 21.0];
const LATENCY_BUCKETS_S: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

pub async fn handler(State(state): State<AppState>) -> Response {
    let (alive, pool) = {
        let api = state.api.clone();
        tokio::task::spawn_blocking(move || {
            let engine = api.engine();
            let alive = engine
                .list()
                .iter()
                .filter(|c| !engine.is_pooled(&c.id))
                .count();
            (alive, engine.pool_status().ok())
        })
        .await
        .unwrap_or((0, None))
    };
    match state.with_store(|s| s.metrics()).await {
        Ok(m) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            render(&m, alive) + &pool.map(|p| render_pool(&p)).unwrap_or_default(),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// The warm pool: clusters waiting per shape and what they cost idle.
pub fn render_pool(pool: &rehearse_sandbox::PoolStatus) -> String {
    let mut out = String::new();
    let shapes: Vec<String> = pool
        .config
        .entries
        .iter()
        .map(|e| e.shape())
        .chain(pool.ready.iter().map(|p| p.shape.clone()))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    header(
        &mut out,
        "rehearse_pool_ready_clusters",
        "Clusters waiting in the warm pool, by shape (nodes x image).",
        "gauge",
    );
    for shape in &shapes {
        let n = pool.ready.iter().filter(|p| &p.shape == shape).count();
        let _ = writeln!(out, "rehearse_pool_ready_clusters{{shape=\"{shape}\"}} {n}");
    }
    header(
        &mut out,
        "rehearse_pool_wanted_clusters",
        "Clusters the pool's settings ask to keep ready, by shape.",
        "gauge",
    );
    for e in &pool.config.entries {
        let _ = writeln!(
            out,
            "rehearse_pool_wanted_clusters{{shape=\"{}\"}} {}",
            e.shape(),
            e.size
        );
    }
    header(
        &mut out,
        "rehearse_pool_memory_bytes",
        "Memory the clusters waiting in the warm pool use.",
        "gauge",
    );
    let _ = writeln!(out, "rehearse_pool_memory_bytes {}", pool.memory_bytes());
    header(
        &mut out,
        "rehearse_pool_cpu_seconds_total",
        "CPU time the clusters waiting in the warm pool used since they booted.",
        "counter",
    );
    let cpu: u64 = pool.ready.iter().map(|p| p.cpu_usec).sum();
    let _ = writeln!(out, "rehearse_pool_cpu_seconds_total {}", cpu as f64 / 1e6);
    out
}

/// The exposition text for `m`, with `alive` clusters up right now.
pub fn render(m: &Metrics, alive: usize) -> String {
    let mut out = String::new();
    histogram(
        &mut out,
        "rehearse_cluster_boot_seconds",
        "Time from `up` to every node booted, addressed and accepting SSH.",
        BOOT_BUCKETS_S,
        &[(
            Vec::new(),
            m.cluster_boot_ms
                .iter()
                .map(|ms| *ms as f64 / 1000.0)
                .collect(),
        )],
        &[],
    );
    header(
        &mut out,
        "rehearse_clusters_alive",
        "Clusters up right now.",
        "gauge",
    );
    let _ = writeln!(out, "rehearse_clusters_alive {alive}");
    counter(
        &mut out,
        "rehearse_runs_total",
        "Runs by kind (scenario, converge) and outcome (running included).",
        &["kind", "outcome"],
        &m.runs,
    );
    histogram(
        &mut out,
        "rehearse_converge_iterations",
        "Iterations each finished converge run took.",
        ITERATION_BUCKETS,
        &[(
            Vec::new(),
            m.iterations_per_converge
                .iter()
                .map(|n| *n as f64)
                .collect(),
        )],
        &[],
    );
    counter(
        &mut out,
        "rehearse_recovery_paths_total",
        "Recovery paths chosen after a failed iteration: rules, retry or troubleshoot.",
        &["path"],
        &m.recovery_paths,
    );
    counter(
        &mut out,
        "rehearse_check_results_total",
        "Check results of scenario runs by check kind and status.",
        &["kind", "status"],
        &m.checks,
    );
    counter(
        &mut out,
        "rehearse_llm_tokens_total",
        "Model tokens by model and direction (input, output).",
        &["model", "direction"],
        &m.llm_tokens,
    );
    let mut by_model: Vec<(Vec<String>, Vec<f64>)> = Vec::new();
    for (model, ms) in &m.llm_latency_ms {
        let secs = *ms as f64 / 1000.0;
        match by_model.iter_mut().find(|(l, _)| l[0] == *model) {
            Some((_, v)) => v.push(secs),
            None => by_model.push((vec![model.clone()], vec![secs])),
        }
    }
    histogram(
        &mut out,
        "rehearse_llm_latency_seconds",
        "Latency of each model call, by model.",
        LATENCY_BUCKETS_S,
        &by_model,
        &["model"],
    );
    out
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn labels(names: &[&str], values: &[String], extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some((n, v)) = extra {
        parts.push(format!("{n}=\"{}\"", escape(&v)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

fn counter(out: &mut String, name: &str, help: &str, names: &[&str], counts: &Counts) {
    header(out, name, help, "counter");
    for (values, n) in &counts.0 {
        let _ = writeln!(out, "{name}{} {n}", labels(names, values, None));
    }
}

fn histogram(
    out: &mut String,
    name: &str,
    help: &str,
    buckets: &[f64],
    series: &[(Vec<String>, Vec<f64>)],
    names: &[&str],
) {
    header(out, name, help, "histogram");
    for (values, samples) in series {
        for le in buckets {
            let n = samples.iter().filter(|s| **s <= *le).count();
            let _ = writeln!(
                out,
                "{name}_bucket{} {n}",
                labels(names, values, Some(("le", format!("{le}"))))
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{} {}",
            labels(names, values, Some(("le", "+Inf".into()))),
            samples.len()
        );
        let _ = writeln!(
            out,
            "{name}_sum{} {}",
            labels(names, values, None),
            samples.iter().sum::<f64>()
        );
        let _ = writeln!(
            out,
            "{name}_count{} {}",
            labels(names, values, None),
            samples.len()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pool_is_shown_per_shape_with_its_idle_cost() {
        let mut config = rehearse_sandbox::PoolConfig::default();
        config.set("debian-12", 4, 2).unwrap();
        let pool = rehearse_sandbox::PoolStatus {
            config,
            keeper: Some(42),
            ready: vec![rehearse_sandbox::Pooled {
                cluster: "abc123".into(),
                shape: "4xdebian-12".into(),
                nodes: 4,
                memory_bytes: 60 << 20,
                cpu_usec: 1_500_000,
                ready_since: 0,
            }],
        };
        let text = render_pool(&pool);
        assert!(
            text.contains("rehearse_pool_ready_clusters{shape=\"4xdebian-12\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("rehearse_pool_wanted_clusters{shape=\"4xdebian-12\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains(&format!("rehearse_pool_memory_bytes {}\n", 60u64 << 20)),
            "{text}"
        );
        assert!(
            text.contains("rehearse_pool_cpu_seconds_total 1.5\n"),
            "{text}"
        );
    }

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let m = Metrics {
            cluster_boot_ms: vec![150, 380, 420, 2500],
            runs: Counts(vec![(vec!["scenario".into(), "passed".into()], 3)]),
            llm_tokens: Counts(vec![(vec!["open\"ai/m".into(), "input".into()], 200)]),
            ..Metrics::default()
        };
        let text = render(&m, 2);
        for line in [
            "rehearse_cluster_boot_seconds_bucket{le=\"0.2\"} 1",
            "rehearse_cluster_boot_seconds_bucket{le=\"0.4\"} 2",
            "rehearse_cluster_boot_seconds_bucket{le=\"0.5\"} 3",
            "rehearse_cluster_boot_seconds_bucket{le=\"+Inf\"} 4",
            "rehearse_cluster_boot_seconds_count 4",
            "rehearse_cluster_boot_seconds_sum 3.45",
            "rehearse_clusters_alive 2",
            "rehearse_runs_total{kind=\"scenario\",outcome=\"passed\"} 3",
            "rehearse_llm_tokens_total{model=\"open\\\"ai/m\",direction=\"input\"} 200",
            "# TYPE rehearse_converge_iterations histogram",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from:\n{text}"
            );
        }
    }
}

#[cfg(test)]
mod grafana {
    /// Every metric the shipped Grafana dashboard queries is one `/metrics`
    /// exposes, so the dashboard cannot drift from the server.
    #[test]
    fn the_grafana_dashboard_queries_only_metrics_the_server_exposes() {
        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../../docs/grafana/rehearse.json")).unwrap();
        let exposed = super::render(&rehearse_store::Metrics::default(), 0);
        let known: Vec<&str> = exposed
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let panels = dashboard["panels"].as_array().unwrap();
        assert!(panels.len() >= 8);
        let mut queried = 0;
        for panel in panels {
            for target in panel["targets"].as_array().unwrap() {
                let expr = target["expr"].as_str().unwrap();
                for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                    if word.starts_with("rehearse_") {
                        let base = ["_bucket", "_sum", "_count"]
                            .iter()
                            .find_map(|s| word.strip_suffix(s))
                            .unwrap_or(word);
                        assert!(
                            known.contains(&base) || known.contains(&word),
                            "panel {:?} queries {word}, which /metrics does not expose",
                            panel["title"]
                        );
                        queried += 1;
                    }
                }
            }
        }
        // And every exposed metric has a panel.
        for metric in &known {
            assert!(
                dashboard.to_string().contains(metric),
                "no panel shows {metric}"
            );
        }
        assert!(queried >= known.len());
    }
}
