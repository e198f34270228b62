//! Runs: one row per scenario or converge run, written when it starts, bumped
//! as it goes, closed when it ends; listed with filters, shown whole, removed
//! only when nothing still needs them.

use serde::{Deserialize, Serialize};

use crate::converge::ConvergeDetail;
use crate::db::{params, Db, Row, Value};
use crate::owner::RunOwner;
use crate::scenario::{CheckRow, StepRow};
use crate::{now_ms, RunStore, StoreError};

/// What is known when a run starts.
#[derive(Clone, Debug, Default)]
pub struct RunStart {
    pub id: String,
    /// `scenario` or `converge`.
    pub kind: String,
    pub name: String,
    pub file: String,
    /// The converge run a scenario run belongs to.
    pub parent_id: Option<String>,
    /// Its part there: `iteration 2`, `proof`.
    pub role: Option<String>,
}

/// How a run ended.
#[derive(Clone, Debug, Default)]
pub struct RunFinish {
    pub outcome: String,
    /// One sentence: how it ended and why.
    pub summary: String,
    /// The whole report, as JSON.
    pub report: Option<String>,
    pub report_path: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
}

/// A run as lists show it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRow {
    pub id: String,
    pub kind: String,
    pub name: String,
    pub file: String,
    pub parent_id: Option<String>,
    pub role: Option<String>,
    pub started_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub outcome: String,
    pub summary: Option<String>,
    pub cluster_id: Option<String>,
    pub report_path: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
    /// The fleet host that carries it out (None: not a fleet host).
    #[serde(default)]
    pub host: Option<String>,
}

impl RunRow {
    pub fn duration_ms(&self) -> Option<i64> {
        self.finished_at_ms.map(|f| f - self.started_at_ms)
    }
}

/// A run with everything under it.
#[derive(Clone, Debug, Serialize)]
pub struct RunDetail {
    pub run: RunRow,
    /// The report as JSON, once the run ended.
    pub report: Option<String>,
    pub steps: Vec<StepRow>,
    pub checks: Vec<CheckRow>,
    /// For a converge run: its iterations, code, model calls, commands.
    pub converge: Option<ConvergeDetail>,
    /// For a converge run: the scenario runs of its iterations and proof.
    pub children: Vec<RunRow>,
}

/// Which runs a list shows. The default: top-level runs, newest first, 100.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct RunFilter {
    /// `scenario` or `converge`.
    pub kind: Option<String>,
    /// `running`, `passed`, `failed`, `error`, `converged`, ...
    pub outcome: Option<String>,
    /// Part of the scenario's or task's name.
    pub name: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Also list converge runs' iteration and proof runs.
    pub children: bool,
    /// Only runs written to after this time (live views).
    pub updated_after_ms: Option<i64>,
    pub limit: Option<u32>,
}

/// What a removal took away: the run and the runs under it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Deleted {
    pub ids: Vec<String>,
    /// The report files of those runs, for the caller to remove with their folders.
    pub report_paths: Vec<String>,
}

const RUN_COLUMNS: &str = "id, kind, name, file, parent_id, role, started_at_ms, updated_at_ms, \
     finished_at_ms, outcome, summary, cluster_id, report_path, input_tokens, output_tokens, \
     cost_usd, host";

fn run_from_row(row: &Row) -> Result<RunRow, StoreError> {
    Ok(RunRow {
        id: row.get(0)?,
        kind: row.get(1)?,
        name: row.get(2)?,
        file: row.get(3)?,
        parent_id: row.get(4)?,
        role: row.get(5)?,
        started_at_ms: row.get(6)?,
        updated_at_ms: row.get(7)?,
        finished_at_ms: row.get(8)?,
        outcome: row.get(9)?,
        summary: row.get(10)?,
        cluster_id: row.get(11)?,
        report_path: row.get(12)?,
        input_tokens: row.get(13)?,
        output_tokens: row.get(14)?,
        cost_usd: row.get(15)?,
        host: row.get(16)?,
    })
}

/// Marks a run as written to, for live views.
pub(crate) fn touch(db: &mut Db, run_id: &str) -> Result<(), StoreError> {
    db.execute(
        "UPDATE runs SET updated_at_ms = ? WHERE id = ?",
        params![now_ms(), run_id],
    )?;
    Ok(())
}

/// The outcome of a run whose process died before it ended.
pub const ABORTED: &str = "aborted";

/// A run found dead and marked aborted.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Aborted {
    pub id: String,
    pub reason: String,
}

impl RunStore {
    /// Records a run as it starts, carried out by this process; its outcome
    /// reads `running` until it ends, or `aborted` once this process is found
    /// dead before that.
    pub fn start_run(&self, run: &RunStart) -> Result<(), StoreError> {
        let now = now_ms();
        self.db().execute(
            "INSERT INTO runs (id, kind, name, file, parent_id, role, started_at_ms,
                 updated_at_ms, outcome, owner, host)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
            params![
                &run.id,
                &run.kind,
                &run.name,
                &run.file,
                run.parent_id.as_deref(),
                run.role.as_deref(),
                now,
                now,
                RunOwner::current().encode(),
                self.host.as_deref()
            ],
        )?;
        Ok(())
    }

    /// Marks `aborted`, with the reason, every running run whose process is
    /// dead (killed, crashed, the host rebooted); returns them, and those
    /// opening the store marked. Cheap when there is none: one indexed read of
    /// the running runs. Runs of other hosts (a shared PostgreSQL) are left to
    /// them, and so are runs of fleet hosts: the fleet's heartbeat judges
    /// those, and reports them lost with the host.
    pub fn abort_dead_runs(&self) -> Result<Vec<Aborted>, StoreError> {
        let mut aborted = std::mem::take(
            &mut *self
                .aborted_at_open
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let running = self.db().query(
            "SELECT id, owner FROM runs
             WHERE outcome = 'running' AND owner IS NOT NULL AND host IS NULL",
            &[],
        )?;
        if running.is_empty() {
            return Ok(aborted);
        }
        let here = RunOwner::current();
        for row in running {
            let id: String = row.get(0)?;
            let owner: String = row.get(1)?;
            let Some(reason) = RunOwner::decode(&owner).and_then(|o| o.gone(&here)) else {
                continue;
            };
            // The last write is the last sign of life: the run ended then.
            let n = self.db().execute(
                "UPDATE runs SET outcome = ?, summary = ?, finished_at_ms = updated_at_ms,
                     updated_at_ms = ?
                 WHERE id = ? AND outcome = 'running'",
                params![ABORTED, format!("aborted: {reason}"), now_ms(), &id],
            )?;
            if n > 0 {
                aborted.push(Aborted { id, reason });
            }
        }
        Ok(aborted)
    }

    /// The cluster a run is using.
    pub fn set_run_cluster(&self, run_id: &str, cluster_id: &str) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE runs SET cluster_id = ?, updated_at_ms = ? WHERE id = ?",
            params![cluster_id, now_ms(), run_id],
        )?;
        Ok(())
    }

    /// Records how a run ended.
    pub fn finish_run(&self, run_id: &str, end: &RunFinish) -> Result<(), StoreError> {
        let now = now_ms();
        let n = self.db().execute(
            "UPDATE runs SET finished_at_ms = ?, updated_at_ms = ?, outcome = ?, summary = ?,
                 report = ?, report_path = ?, input_tokens = ?, output_tokens = ?, cost_usd = ?
             WHERE id = ?",
            params![
                now,
                now,
                &end.outcome,
                &end.summary,
                end.report.as_deref(),
                end.report_path.as_deref(),
                end.input_tokens,
                end.output_tokens,
                end.cost_usd,
                run_id
            ],
        )?;
        if n == 0 {
            return Err(StoreError::NoRun(run_id.to_owned()));
        }
        Ok(())
    }

    /// Runs matching `filter`, newest first.
    pub fn runs(&self, filter: &RunFilter) -> Result<Vec<RunRow>, StoreError> {
        self.abort_dead_runs()?;
        let mut sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1");
        let mut args: Vec<Value> = Vec::new();
        if !filter.children {
            sql.push_str(" AND parent_id IS NULL");
        }
        if let Some(kind) = &filter.kind {
            sql.push_str(" AND kind = ?");
            args.push(kind.into());
        }
        if let Some(outcome) = &filter.outcome {
            sql.push_str(" AND outcome = ?");
            args.push(outcome.into());
        }
        if let Some(name) = filter.name.as_deref().filter(|n| !n.is_empty()) {
            sql.push_str(" AND LOWER(name) LIKE ?");
            args.push(format!("%{}%", name.to_lowercase()).into());
        }
        if let Some(since) = filter.since_ms {
            sql.push_str(" AND started_at_ms >= ?");
            args.push(since.into());
        }
        if let Some(until) = filter.until_ms {
            sql.push_str(" AND started_at_ms < ?");
            args.push(until.into());
        }
        if let Some(after) = filter.updated_after_ms {
            sql.push_str(" AND updated_at_ms > ?");
            args.push(after.into());
        }
        sql.push_str(" ORDER BY started_at_ms DESC, id DESC LIMIT ?");
        args.push(filter.limit.unwrap_or(100).into());
        self.db()
            .query(&sql, &args)?
            .iter()
            .map(run_from_row)
            .collect()
    }

    /// One run, as lists show it.
    pub fn run_row(&self, id: &str) -> Result<Option<RunRow>, StoreError> {
        self.abort_dead_runs()?;
        let row = self.db().query_one(
            &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?"),
            params![id],
        )?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// One run with its steps, checks, iterations and child runs.
    pub fn run(&self, id: &str) -> Result<Option<RunDetail>, StoreError> {
        let Some(run) = self.run_row(id)? else {
            return Ok(None);
        };
        let report = self
            .db()
            .query_one("SELECT report FROM runs WHERE id = ?", params![id])?
            .map(|r| r.get::<Option<String>>(0))
            .transpose()?
            .flatten();
        let children = self
            .db()
            .query(
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE parent_id = ? ORDER BY started_at_ms, id"
                ),
                params![id],
            )?
            .iter()
            .map(run_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Some(RunDetail {
            steps: self.steps(id)?,
            checks: self.checks(id)?,
            converge: self.converge(id)?,
            report,
            children,
            run,
        }))
    }

    /// Removes a finished top-level run and everything under it. Refuses a
    /// run still in progress and a run that belongs to a converge run.
    pub fn delete_run(&self, id: &str) -> Result<Deleted, StoreError> {
        let run = self
            .run_row(id)?
            .ok_or_else(|| StoreError::NoRun(id.to_owned()))?;
        if run.outcome == "running" {
            return Err(StoreError::Referenced {
                id: id.to_owned(),
                why: "it is still running; stop it first".into(),
            });
        }
        if let Some(parent) = &run.parent_id {
            let kind = self
                .run_row(parent)?
                .map(|p| p.kind)
                .unwrap_or_else(|| "converge".into());
            return Err(StoreError::Referenced {
                id: id.to_owned(),
                why: format!(
                    "it is {} of {kind} run {parent}; remove that run instead",
                    run.role.as_deref().unwrap_or("part")
                ),
            });
        }
        self.db().transaction(|db| {
            let mut deleted = Deleted::default();
            for row in db.query(
                "SELECT id, report_path FROM runs WHERE id = ? OR parent_id = ?",
                params![id, id],
            )? {
                deleted.ids.push(row.get(0)?);
                if let Some(path) = row.get::<Option<String>>(1)? {
                    deleted.report_paths.push(path);
                }
            }
            // Children first: PostgreSQL checks the self-reference per statement.
            db.execute("DELETE FROM runs WHERE parent_id = ?", params![id])?;
            db.execute("DELETE FROM runs WHERE id = ?", params![id])?;
            Ok(deleted)
        })
    }

    /// Retention: removes finished top-level runs started before `before_ms`,
    /// except those whose cluster is in `live_clusters` (kept for inspection)
    /// or that anything else still needs. Returns what was removed.
    pub fn prune(&self, before_ms: i64, live_clusters: &[String]) -> Result<Deleted, StoreError> {
        let candidates = self.db().query(
            "SELECT id, cluster_id FROM runs
             WHERE parent_id IS NULL AND outcome <> 'running' AND started_at_ms < ?",
            params![before_ms],
        )?;
        let mut all = Deleted::default();
        for row in candidates {
            let id: String = row.get(0)?;
            let cluster: Option<String> = row.get(1)?;
            if cluster.is_some_and(|c| live_clusters.contains(&c)) {
                continue;
            }
            let children_live = self
                .db()
                .query(
                    "SELECT cluster_id FROM runs WHERE parent_id = ? AND cluster_id IS NOT NULL",
                    params![&id],
                )?
                .iter()
                .filter_map(|r| r.get::<String>(0).ok())
                .any(|c| live_clusters.contains(&c));
            if children_live {
                continue;
            }
            match self.delete_run(&id) {
                Ok(d) => {
                    all.ids.extend(d.ids);
                    all.report_paths.extend(d.report_paths);
                }
                // Started again in the meantime, or removed by another process.
                Err(StoreError::Referenced { .. } | StoreError::NoRun(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(all)
    }
}
