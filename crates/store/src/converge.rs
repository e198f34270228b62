//! Converge runs: a row when the run starts, one per iteration as it ends
//! (with its model calls, commands and check results), and the outcome at
//! the end.

use rusqlite::{params, OptionalExtension, Row};
use serde::{Deserialize, Serialize};

use crate::{Store, StoreError};

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A converge run. `iterations` is filled by [`Store::run`] only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub task: String,
    pub task_file: String,
    pub goal: String,
    pub language: String,
    /// `provider/model`, or `None` in rules-only mode.
    pub model: Option<String>,
    pub started_at_ms: i64,
    /// `running` until [`Store::finish_run`].
    pub outcome: String,
    pub end: Option<RunEnd>,
    pub iterations: Vec<IterationRecord>,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    pub finished_at_ms: i64,
    /// `converged`, `budget_exhausted`, `no_rule_applies` or `error`.
    pub outcome: String,
    pub converged: bool,
    /// One sentence: how it ended and why.
    pub summary: String,
    pub script: Option<String>,
    pub distilled: Option<String>,
    pub proof_outcome: Option<String>,
    pub report_path: Option<String>,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cost_usd: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IterationRecord {
    pub number: u32,
    /// Where the code came from: `task`, `model`, `rules`, `model-retry`.
    pub origin: String,
    pub code: String,
    /// The outcome of the code's run on a fresh cluster.
    pub outcome: String,
    pub scenario_run_id: String,
    /// The failure as the model was told it.
    pub failure: Option<String>,
    /// `rules`, `retry` or `troubleshoot`.
    pub recovery_path: Option<String>,
    pub reason: Option<String>,
    pub fix_rule: Option<String>,
    pub duration_ms: u64,
    pub llm_calls: Vec<LlmCallRecord>,
    pub commands: Vec<CommandRow>,
    pub checks: Vec<CheckRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LlmCallRecord {
    pub purpose: String,
    /// The messages sent, as JSON.
    pub prompt: String,
    pub response: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub latency_ms: u64,
    pub cost_usd: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandRow {
    pub node: String,
    pub command: String,
    pub why: String,
    pub exit_code: Option<i32>,
    pub output: String,
    pub duration_ms: u64,
    pub refused: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckRow {
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

const RUN_COLUMNS: &str = "id, task, task_file, goal, language, model, started_at_ms, outcome, \
     finished_at_ms, converged, summary, script, distilled, proof_outcome, report_path, \
     input_tokens, output_tokens, cost_usd";

fn run_from_row(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let finished: Option<i64> = row.get(8)?;
    let outcome: String = row.get(7)?;
    let end = match finished {
        Some(finished_at_ms) => Some(RunEnd {
            finished_at_ms,
            outcome: outcome.clone(),
            converged: row.get(9)?,
            summary: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
            script: row.get(11)?,
            distilled: row.get(12)?,
            proof_outcome: row.get(13)?,
            report_path: row.get(14)?,
            input_tokens: row.get(15)?,
            output_tokens: row.get(16)?,
            cost_usd: row.get(17)?,
        }),
        None => None,
    };
    Ok(RunRecord {
        id: row.get(0)?,
        task: row.get(1)?,
        task_file: row.get(2)?,
        goal: row.get(3)?,
        language: row.get(4)?,
        model: row.get(5)?,
        started_at_ms: row.get(6)?,
        outcome,
        end,
        iterations: Vec::new(),
    })
}

impl Store {
    /// Records a run as it starts; its outcome reads `running` until it ends.
    pub fn start_run(&self, run: &RunRecord) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO converge_runs
                 (id, task, task_file, goal, language, model, started_at_ms, outcome)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'running')",
            params![
                run.id,
                run.task,
                run.task_file,
                run.goal,
                run.language,
                run.model,
                run.started_at_ms
            ],
        )?;
        Ok(())
    }

    /// Records an iteration that ended, with everything under it, at once.
    pub fn record_iteration(
        &mut self,
        run_id: &str,
        iteration: &IterationRecord,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO iterations (run_id, number, origin, code, outcome, scenario_run_id,
                 failure, recovery_path, reason, fix_rule, duration_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            params![
                run_id,
                iteration.number,
                iteration.origin,
                iteration.code,
                iteration.outcome,
                iteration.scenario_run_id,
                iteration.failure,
                iteration.recovery_path,
                iteration.reason,
                iteration.fix_rule,
                iteration.duration_ms,
            ],
        )?;
        for (seq, call) in iteration.llm_calls.iter().enumerate() {
            tx.execute(
                "INSERT INTO llm_calls (run_id, iteration, seq, purpose, prompt, response,
                     input_tokens, output_tokens, latency_ms, cost_usd)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    run_id,
                    iteration.number,
                    seq,
                    call.purpose,
                    call.prompt,
                    call.response,
                    call.input_tokens,
                    call.output_tokens,
                    call.latency_ms,
                    call.cost_usd,
                ],
            )?;
        }
        for (seq, command) in iteration.commands.iter().enumerate() {
            tx.execute(
                "INSERT INTO commands (run_id, iteration, seq, node, command, why, exit_code,
                     output, duration_ms, refused)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    run_id,
                    iteration.number,
                    seq,
                    command.node,
                    command.command,
                    command.why,
                    command.exit_code,
                    command.output,
                    command.duration_ms,
                    command.refused,
                ],
            )?;
        }
        for (seq, check) in iteration.checks.iter().enumerate() {
            tx.execute(
                "INSERT INTO check_results (run_id, iteration, seq, node, name, kind, subject,
                     status, expected, actual, message, attempts, duration_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    run_id,
                    iteration.number,
                    seq,
                    check.node,
                    check.name,
                    check.kind,
                    check.subject,
                    check.status,
                    check.expected,
                    check.actual,
                    check.message,
                    check.attempts,
                    check.duration_ms,
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Records how a run ended.
    pub fn finish_run(&self, run_id: &str, end: &RunEnd) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE converge_runs SET finished_at_ms = ?2, outcome = ?3, converged = ?4,
                 summary = ?5, script = ?6, distilled = ?7, proof_outcome = ?8,
                 report_path = ?9, input_tokens = ?10, output_tokens = ?11, cost_usd = ?12
             WHERE id = ?1",
            params![
                run_id,
                end.finished_at_ms,
                end.outcome,
                end.converged,
                end.summary,
                end.script,
                end.distilled,
                end.proof_outcome,
                end.report_path,
                end.input_tokens,
                end.output_tokens,
                end.cost_usd,
            ],
        )?;
        Ok(())
    }

    /// Every run, newest first, without their iterations.
    pub fn runs(&self) -> Result<Vec<RunRecord>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM converge_runs ORDER BY started_at_ms DESC, id DESC"
        ))?;
        let runs = stmt
            .query_map([], run_from_row)?
            .collect::<Result<_, _>>()?;
        Ok(runs)
    }

    /// One run with its iterations and everything under them.
    pub fn run(&self, id: &str) -> Result<Option<RunRecord>, StoreError> {
        let run = self
            .conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM converge_runs WHERE id = ?1"),
                [id],
                run_from_row,
            )
            .optional()?;
        let Some(mut run) = run else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare(
            "SELECT number, origin, code, outcome, scenario_run_id, failure, recovery_path,
                 reason, fix_rule, duration_ms
             FROM iterations WHERE run_id = ?1 ORDER BY number",
        )?;
        run.iterations = stmt
            .query_map([id], |row| {
                Ok(IterationRecord {
                    number: row.get(0)?,
                    origin: row.get(1)?,
                    code: row.get(2)?,
                    outcome: row.get(3)?,
                    scenario_run_id: row.get(4)?,
                    failure: row.get(5)?,
                    recovery_path: row.get(6)?,
                    reason: row.get(7)?,
                    fix_rule: row.get(8)?,
                    duration_ms: row.get(9)?,
                    llm_calls: Vec::new(),
                    commands: Vec::new(),
                    checks: Vec::new(),
                })
            })?
            .collect::<Result<_, _>>()?;
        for iteration in &mut run.iterations {
            let key = params![id, iteration.number];
            iteration.llm_calls = self
                .conn
                .prepare(
                    "SELECT purpose, prompt, response, input_tokens, output_tokens, latency_ms,
                         cost_usd
                     FROM llm_calls WHERE run_id = ?1 AND iteration = ?2 ORDER BY seq",
                )?
                .query_map(key, |row| {
                    Ok(LlmCallRecord {
                        purpose: row.get(0)?,
                        prompt: row.get(1)?,
                        response: row.get(2)?,
                        input_tokens: row.get(3)?,
                        output_tokens: row.get(4)?,
                        latency_ms: row.get(5)?,
                        cost_usd: row.get(6)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            iteration.commands = self
                .conn
                .prepare(
                    "SELECT node, command, why, exit_code, output, duration_ms, refused
                     FROM commands WHERE run_id = ?1 AND iteration = ?2 ORDER BY seq",
                )?
                .query_map(key, |row| {
                    Ok(CommandRow {
                        node: row.get(0)?,
                        command: row.get(1)?,
                        why: row.get(2)?,
                        exit_code: row.get(3)?,
                        output: row.get(4)?,
                        duration_ms: row.get(5)?,
                        refused: row.get(6)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
            iteration.checks = self
                .conn
                .prepare(
                    "SELECT node, name, kind, subject, status, expected, actual, message,
                         attempts, duration_ms
                     FROM check_results WHERE run_id = ?1 AND iteration = ?2 ORDER BY seq",
                )?
                .query_map(key, |row| {
                    Ok(CheckRow {
                        node: row.get(0)?,
                        name: row.get(1)?,
                        kind: row.get(2)?,
                        subject: row.get(3)?,
                        status: row.get(4)?,
                        expected: row.get(5)?,
                        actual: row.get(6)?,
                        message: row.get(7)?,
                        attempts: row.get(8)?,
                        duration_ms: row.get(9)?,
                    })
                })?
                .collect::<Result<_, _>>()?;
        }
        Ok(Some(run))
    }
}
