//! A scenario run's steps (as each ends) and check results.

use serde::{Deserialize, Serialize};

use crate::db::{params, Db, Row, Value};
use crate::runs::touch;
use crate::{RunStore, StoreError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRow {
    /// `first`, or `second` for the idempotence pass.
    pub pass: String,
    pub name: String,
    /// `shell`, `ansible` or `copy`.
    pub kind: String,
    pub ok: bool,
    pub nodes: Vec<String>,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// Each node's output or Ansible's tasks, as the report holds them: JSON.
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckRow {
    /// `checks`, `after_second_run` or `after_reboot` in a scenario run;
    /// `checks` in an iteration.
    pub phase: String,
    pub node: String,
    pub name: String,
    pub kind: String,
    pub subject: String,
    /// `passed`, `failed` or `skipped`.
    pub status: String,
    /// JSON.
    pub expected: String,
    /// JSON.
    pub actual: String,
    pub message: String,
    pub attempts: u32,
    pub duration_ms: u64,
}

pub(crate) const CHECK_COLUMNS: &str =
    "phase, node, name, kind, subject, status, expected, actual, message, attempts, duration_ms";

pub(crate) fn check_from_row(row: &Row) -> Result<CheckRow, StoreError> {
    Ok(CheckRow {
        phase: row.get(0)?,
        node: row.get(1)?,
        name: row.get(2)?,
        kind: row.get(3)?,
        subject: row.get(4)?,
        status: row.get(5)?,
        expected: row.get(6)?,
        actual: row.get(7)?,
        message: row.get(8)?,
        attempts: row.get(9)?,
        duration_ms: row.get(10)?,
    })
}

/// Inserts check rows into `table` (`checks` or `iteration_checks`) under
/// `key` (the columns before `seq` and their values), numbered from `first`.
pub(crate) fn insert_checks(
    db: &mut Db,
    table: &str,
    key: &[(&str, Value)],
    first: i64,
    checks: &[CheckRow],
) -> Result<(), StoreError> {
    let columns: Vec<&str> = key.iter().map(|(c, _)| *c).collect();
    let sql = format!(
        "INSERT INTO {table} ({}, seq, {CHECK_COLUMNS}) VALUES ({})",
        columns.join(", "),
        vec!["?"; key.len() + 12].join(", ")
    );
    for (i, c) in checks.iter().enumerate() {
        let mut args: Vec<Value> = key.iter().map(|(_, v)| v.clone()).collect();
        args.extend_from_slice(params![
            first + i as i64,
            &c.phase,
            &c.node,
            &c.name,
            &c.kind,
            &c.subject,
            &c.status,
            &c.expected,
            &c.actual,
            &c.message,
            c.attempts,
            c.duration_ms
        ]);
        db.execute(&sql, &args)?;
    }
    Ok(())
}

fn next_seq(db: &mut Db, table: &str, run_id: &str) -> Result<i64, StoreError> {
    let row = db.query_one(
        &format!("SELECT CAST(COALESCE(MAX(seq), -1) + 1 AS BIGINT) FROM {table} WHERE run_id = ?"),
        params![run_id],
    )?;
    row.map_or(Ok(0), |r| r.get(0))
}

impl RunStore {
    /// Records a step that ended.
    pub fn record_step(&self, run_id: &str, step: &StepRow) -> Result<(), StoreError> {
        self.db().transaction(|db| {
            let seq = next_seq(db, "steps", run_id)?;
            db.execute(
                "INSERT INTO steps (run_id, seq, pass, name, kind, ok, nodes, error, duration_ms,
                     detail)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                params![
                    run_id,
                    seq,
                    &step.pass,
                    &step.name,
                    &step.kind,
                    step.ok,
                    step.nodes.join(","),
                    step.error.as_deref(),
                    step.duration_ms,
                    &step.detail
                ],
            )?;
            touch(db, run_id)
        })
    }

    /// Records a batch of check results, appended after those already there.
    pub fn record_checks(&self, run_id: &str, checks: &[CheckRow]) -> Result<(), StoreError> {
        self.db().transaction(|db| {
            let first = next_seq(db, "checks", run_id)?;
            insert_checks(db, "checks", &[("run_id", run_id.into())], first, checks)?;
            touch(db, run_id)
        })
    }

    /// A run's steps, in the order they ran.
    pub fn steps(&self, run_id: &str) -> Result<Vec<StepRow>, StoreError> {
        self.db()
            .query(
                "SELECT pass, name, kind, ok, nodes, error, duration_ms, detail
                 FROM steps WHERE run_id = ? ORDER BY seq",
                params![run_id],
            )?
            .iter()
            .map(|row| {
                let nodes: String = row.get(4)?;
                Ok(StepRow {
                    pass: row.get(0)?,
                    name: row.get(1)?,
                    kind: row.get(2)?,
                    ok: row.get(3)?,
                    nodes: nodes
                        .split(',')
                        .filter(|n| !n.is_empty())
                        .map(str::to_owned)
                        .collect(),
                    error: row.get(5)?,
                    duration_ms: row.get(6)?,
                    detail: row.get(7)?,
                })
            })
            .collect()
    }

    /// A run's check results, in the order they were recorded.
    pub fn checks(&self, run_id: &str) -> Result<Vec<CheckRow>, StoreError> {
        self.db()
            .query(
                &format!("SELECT {CHECK_COLUMNS} FROM checks WHERE run_id = ? ORDER BY seq"),
                params![run_id],
            )?
            .iter()
            .map(check_from_row)
            .collect()
    }
}
