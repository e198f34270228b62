//! What a converge run adds to its run: the goal and model, one row per
//! iteration as it ends (with its model calls, troubleshooting commands and
//! check results), and the scripts at the end.

use serde::{Deserialize, Serialize};

use crate::db::{params, Db};
use crate::runs::{touch, RunFinish, RunStart};
use crate::scenario::{check_from_row, insert_checks, CheckRow, CHECK_COLUMNS};
use crate::{now_ms, RunStore, StoreError};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConvergeStart {
    pub goal: String,
    pub language: String,
    /// `provider/model`, or `None` in rules-only mode.
    pub model: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ConvergeEnd {
    pub converged: bool,
    pub script: Option<String>,
    pub distilled: Option<String>,
    pub proof_outcome: Option<String>,
}

/// A converge run's own part, as [`RunStore::run`] shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvergeDetail {
    pub goal: String,
    pub language: String,
    pub model: Option<String>,
    pub converged: bool,
    pub script: Option<String>,
    pub distilled: Option<String>,
    pub proof_outcome: Option<String>,
    pub iterations: Vec<IterationRecord>,
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

impl RunStore {
    /// Records a converge run as it starts.
    pub fn start_converge(&self, run: &RunStart, c: &ConvergeStart) -> Result<(), StoreError> {
        let now = now_ms();
        self.db().transaction(|db| {
            db.execute(
                "INSERT INTO runs (id, kind, name, file, parent_id, role, started_at_ms,
                     updated_at_ms, outcome, owner, host)
                 VALUES (?, 'converge', ?, ?, ?, ?, ?, ?, 'running', ?, ?)",
                params![
                    &run.id,
                    &run.name,
                    &run.file,
                    run.parent_id.as_deref(),
                    run.role.as_deref(),
                    now,
                    now,
                    crate::owner::RunOwner::current().encode(),
                    self.host.as_deref()
                ],
            )?;
            db.execute(
                "INSERT INTO converge_runs (run_id, goal, language, model) VALUES (?, ?, ?, ?)",
                params![&run.id, &c.goal, &c.language, c.model.as_deref()],
            )?;
            Ok(())
        })
    }

    /// Records an iteration that ended, with everything under it, at once.
    pub fn record_iteration(
        &self,
        run_id: &str,
        iteration: &IterationRecord,
    ) -> Result<(), StoreError> {
        self.db()
            .transaction(|db| insert_iteration(db, run_id, iteration))
    }

    /// Records how a converge run ended.
    pub fn finish_converge(
        &self,
        run_id: &str,
        finish: &RunFinish,
        end: &ConvergeEnd,
    ) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE converge_runs SET converged = ?, script = ?, distilled = ?, proof_outcome = ?
             WHERE run_id = ?",
            params![
                end.converged,
                end.script.as_deref(),
                end.distilled.as_deref(),
                end.proof_outcome.as_deref(),
                run_id
            ],
        )?;
        self.finish_run(run_id, finish)
    }

    /// A converge run's own part, with its iterations; `None` for other runs.
    pub fn converge(&self, run_id: &str) -> Result<Option<ConvergeDetail>, StoreError> {
        let mut db = self.db();
        let Some(row) = db.query_one(
            "SELECT goal, language, model, converged, script, distilled, proof_outcome
             FROM converge_runs WHERE run_id = ?",
            params![run_id],
        )?
        else {
            return Ok(None);
        };
        let mut detail = ConvergeDetail {
            goal: row.get(0)?,
            language: row.get(1)?,
            model: row.get(2)?,
            converged: row.get(3)?,
            script: row.get(4)?,
            distilled: row.get(5)?,
            proof_outcome: row.get(6)?,
            iterations: Vec::new(),
        };
        for row in db.query(
            "SELECT number, origin, code, outcome, scenario_run_id, failure, recovery_path,
                 reason, fix_rule, duration_ms
             FROM iterations WHERE run_id = ? ORDER BY number",
            params![run_id],
        )? {
            detail.iterations.push(IterationRecord {
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
            });
        }
        for it in &mut detail.iterations {
            let key = params![run_id, it.number];
            for row in db.query(
                "SELECT purpose, prompt, response, input_tokens, output_tokens, latency_ms,
                     cost_usd
                 FROM llm_calls WHERE run_id = ? AND iteration = ? ORDER BY seq",
                key,
            )? {
                it.llm_calls.push(LlmCallRecord {
                    purpose: row.get(0)?,
                    prompt: row.get(1)?,
                    response: row.get(2)?,
                    input_tokens: row.get(3)?,
                    output_tokens: row.get(4)?,
                    latency_ms: row.get(5)?,
                    cost_usd: row.get(6)?,
                });
            }
            for row in db.query(
                "SELECT node, command, why, exit_code, output, duration_ms, refused
                 FROM commands WHERE run_id = ? AND iteration = ? ORDER BY seq",
                key,
            )? {
                it.commands.push(CommandRow {
                    node: row.get(0)?,
                    command: row.get(1)?,
                    why: row.get(2)?,
                    exit_code: row.get(3)?,
                    output: row.get(4)?,
                    duration_ms: row.get(5)?,
                    refused: row.get(6)?,
                });
            }
            it.checks = db
                .query(
                    &format!(
                        "SELECT {CHECK_COLUMNS} FROM iteration_checks
                         WHERE run_id = ? AND iteration = ? ORDER BY seq"
                    ),
                    key,
                )?
                .iter()
                .map(check_from_row)
                .collect::<Result<_, _>>()?;
        }
        Ok(Some(detail))
    }
}

fn insert_iteration(db: &mut Db, run_id: &str, it: &IterationRecord) -> Result<(), StoreError> {
    db.execute(
        "INSERT INTO iterations (run_id, number, origin, code, outcome, scenario_run_id,
             failure, recovery_path, reason, fix_rule, duration_ms)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            run_id,
            it.number,
            &it.origin,
            &it.code,
            &it.outcome,
            &it.scenario_run_id,
            it.failure.as_deref(),
            it.recovery_path.as_deref(),
            it.reason.as_deref(),
            it.fix_rule.as_deref(),
            it.duration_ms
        ],
    )?;
    for (seq, call) in it.llm_calls.iter().enumerate() {
        db.execute(
            "INSERT INTO llm_calls (run_id, iteration, seq, purpose, prompt, response,
                 input_tokens, output_tokens, latency_ms, cost_usd)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                run_id,
                it.number,
                seq,
                &call.purpose,
                &call.prompt,
                &call.response,
                call.input_tokens,
                call.output_tokens,
                call.latency_ms,
                call.cost_usd
            ],
        )?;
    }
    for (seq, c) in it.commands.iter().enumerate() {
        db.execute(
            "INSERT INTO commands (run_id, iteration, seq, node, command, why, exit_code,
                 output, duration_ms, refused)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            params![
                run_id,
                it.number,
                seq,
                &c.node,
                &c.command,
                &c.why,
                c.exit_code,
                &c.output,
                c.duration_ms,
                c.refused.as_deref()
            ],
        )?;
    }
    insert_checks(
        db,
        "iteration_checks",
        &[("run_id", run_id.into()), ("iteration", it.number.into())],
        0,
        &it.checks,
    )?;
    touch(db, run_id)
}
