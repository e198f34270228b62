//! The aggregates `/metrics` exposes, computed from the store so that runs
//! started by any process (the CLI, the MCP server, CI) count.

use serde::Serialize;

use crate::{RunStore, StoreError};

/// A count per label set.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Counts(pub Vec<(Vec<String>, u64)>);

impl Counts {
    /// The count for one label set, 0 when absent.
    pub fn get(&self, labels: &[&str]) -> u64 {
        self.0
            .iter()
            .find(|(l, _)| l.iter().map(String::as_str).eq(labels.iter().copied()))
            .map_or(0, |(_, n)| *n)
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Metrics {
    /// Boot time of every recorded cluster, in ms.
    pub cluster_boot_ms: Vec<u64>,
    /// Runs by (kind, outcome).
    pub runs: Counts,
    /// Iterations of each finished converge run.
    pub iterations_per_converge: Vec<u64>,
    /// Iterations by recovery path (rules, retry, troubleshoot).
    pub recovery_paths: Counts,
    /// Scenario check results by (kind, status).
    pub checks: Counts,
    /// Model tokens by (model, direction: input|output).
    pub llm_tokens: Counts,
    /// Latency of every model call by model, in ms.
    pub llm_latency_ms: Vec<(String, u64)>,
}

impl RunStore {
    pub fn metrics(&self) -> Result<Metrics, StoreError> {
        let mut db = self.db();
        let mut m = Metrics::default();
        for row in db.query("SELECT boot_ms FROM clusters", &[])? {
            m.cluster_boot_ms.push(row.get(0)?);
        }
        for row in db.query(
            "SELECT kind, outcome, COUNT(*) FROM runs GROUP BY kind, outcome ORDER BY kind, outcome",
            &[],
        )? {
            m.runs.0.push((vec![row.get(0)?, row.get(1)?], row.get(2)?));
        }
        for row in db.query(
            "SELECT COUNT(i.number) FROM runs r JOIN iterations i ON i.run_id = r.id
             WHERE r.kind = 'converge' AND r.outcome <> 'running' GROUP BY r.id",
            &[],
        )? {
            m.iterations_per_converge.push(row.get(0)?);
        }
        for row in db.query(
            "SELECT recovery_path, COUNT(*) FROM iterations WHERE recovery_path IS NOT NULL
             GROUP BY recovery_path ORDER BY recovery_path",
            &[],
        )? {
            m.recovery_paths.0.push((vec![row.get(0)?], row.get(1)?));
        }
        for row in db.query(
            "SELECT kind, status, COUNT(*) FROM checks GROUP BY kind, status ORDER BY kind, status",
            &[],
        )? {
            m.checks
                .0
                .push((vec![row.get(0)?, row.get(1)?], row.get(2)?));
        }
        for row in db.query(
            "SELECT COALESCE(c.model, 'none'), CAST(SUM(l.input_tokens) AS BIGINT),
                 CAST(SUM(l.output_tokens) AS BIGINT)
             FROM llm_calls l JOIN converge_runs c ON c.run_id = l.run_id
             GROUP BY c.model ORDER BY 1",
            &[],
        )? {
            let model: String = row.get(0)?;
            m.llm_tokens
                .0
                .push((vec![model.clone(), "input".into()], row.get(1)?));
            m.llm_tokens
                .0
                .push((vec![model, "output".into()], row.get(2)?));
        }
        for row in db.query(
            "SELECT COALESCE(c.model, 'none'), l.latency_ms
             FROM llm_calls l JOIN converge_runs c ON c.run_id = l.run_id",
            &[],
        )? {
            m.llm_latency_ms.push((row.get(0)?, row.get(1)?));
        }
        Ok(m)
    }
}
