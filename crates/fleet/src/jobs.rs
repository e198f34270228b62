//! The queue: submit, claim, finish, cancel, retry, and whose work goes first.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::{decode, now_ms, Fleet, FleetError};

/// What a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A scenario run (its folder's files travel in the payload).
    Scenario,
    /// One platform of a platforms matrix.
    MatrixLeg,
    /// A converge task.
    Converge,
    /// A recipe proof.
    RecipeProve,
    /// A cluster provisioned for an MCP client, kept on the host that booted it.
    Provision,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Scenario => "scenario",
            JobKind::MatrixLeg => "matrix_leg",
            JobKind::Converge => "converge",
            JobKind::RecipeProve => "recipe_prove",
            JobKind::Provision => "provision",
        }
    }

    fn parse(s: &str) -> Result<JobKind, FleetError> {
        Ok(match s {
            "scenario" => JobKind::Scenario,
            "matrix_leg" => JobKind::MatrixLeg,
            "converge" => JobKind::Converge,
            "recipe_prove" => JobKind::RecipeProve,
            "provision" => JobKind::Provision,
            other => return Err(FleetError::Decode(format!("job kind \"{other}\""))),
        })
    }
}

/// Where a job is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    /// The work ended with a report (which may say it failed).
    Done,
    /// The work could not be carried out (its input was refused, ...).
    Failed,
    Cancelled,
    /// Its host went away on its last attempt.
    Lost,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Lost => "lost",
        }
    }

    fn parse(s: &str) -> Result<JobState, FleetError> {
        Ok(match s {
            "queued" => JobState::Queued,
            "running" => JobState::Running,
            "done" => JobState::Done,
            "failed" => JobState::Failed,
            "cancelled" => JobState::Cancelled,
            "lost" => JobState::Lost,
            other => return Err(FleetError::Decode(format!("job state \"{other}\""))),
        })
    }

    /// True once nothing more will happen to the job (unless retried).
    pub fn is_final(self) -> bool {
        !matches!(self, JobState::Queued | JobState::Running)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Work to queue.
#[derive(Clone, Debug)]
pub struct JobSpec {
    pub kind: JobKind,
    pub payload: serde_json::Value,
    /// Nodes the work boots at once.
    pub nodes: u32,
    pub submitter: String,
    /// How many hosts may try it before it is `lost` (default 2).
    pub max_attempts: Option<u32>,
    /// The images its nodes boot (empty: not known). A host lacking one
    /// leaves the job to an up host that holds them all and has room.
    pub images: Vec<String>,
}

/// The images a topology's nodes boot, each once, in order.
pub fn images_of(topology: &rehearse_spec::topology::Topology) -> Vec<String> {
    let mut images: Vec<String> = Vec::new();
    for node in &topology.nodes {
        if !images.contains(&node.image) {
            images.push(node.image.clone());
        }
    }
    images
}

/// A job as lists show it (without its payload).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobRow {
    pub id: String,
    pub kind: JobKind,
    pub nodes: u32,
    pub submitter: String,
    /// The submitter's priority now.
    pub priority: i32,
    pub state: JobState,
    pub host_id: Option<String>,
    /// The name of the host of the current (or last) attempt.
    pub host: Option<String>,
    pub attempt: u32,
    pub max_attempts: u32,
    pub cancel_requested: bool,
    pub run_id: Option<String>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub submitted_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub finished_at_ms: Option<i64>,
    /// The run's report, once done.
    pub result: Option<serde_json::Value>,
    /// The current attempt's progress lines, as its host reports them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub progress: Vec<String>,
}

/// A job a host took.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: String,
    pub kind: JobKind,
    pub payload: serde_json::Value,
    pub nodes: u32,
    /// Which attempt this is: results are recorded for it only while it is current.
    pub attempt: u32,
}

/// How an attempt ended.
#[derive(Clone, Debug)]
pub struct JobEnd {
    /// `Done`, `Failed` or `Cancelled`.
    pub state: JobState,
    pub run_id: Option<String>,
    pub result: Option<serde_json::Value>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
}

const JOB_COLUMNS: &str = "j.id, j.kind, j.nodes, j.submitter, COALESCE(s.priority, 0), j.state, \
     j.host_id, j.host, j.attempt, j.max_attempts, j.cancel_requested, j.run_id, j.exit_code, \
     j.error, j.submitted_at_ms, j.started_at_ms, j.finished_at_ms, j.result, j.progress";

const JOB_FROM: &str = "fleet_jobs j LEFT JOIN fleet_submitters s ON s.submitter = j.submitter";

fn job_from_row(row: &postgres::Row) -> Result<JobRow, FleetError> {
    let kind: String = row.try_get(1)?;
    let state: String = row.try_get(5)?;
    let result: Option<String> = row.try_get(17)?;
    let progress: Option<String> = row.try_get(18)?;
    Ok(JobRow {
        id: row.try_get(0)?,
        kind: JobKind::parse(&kind)?,
        nodes: row.try_get::<_, i32>(2)?.max(0) as u32,
        submitter: row.try_get(3)?,
        priority: row.try_get(4)?,
        state: JobState::parse(&state)?,
        host_id: row.try_get(6)?,
        host: row.try_get(7)?,
        attempt: row.try_get::<_, i32>(8)?.max(0) as u32,
        max_attempts: row.try_get::<_, i32>(9)?.max(0) as u32,
        cancel_requested: row.try_get(10)?,
        run_id: row.try_get(11)?,
        exit_code: row.try_get(12)?,
        error: row.try_get(13)?,
        submitted_at_ms: row.try_get(14)?,
        started_at_ms: row.try_get(15)?,
        finished_at_ms: row.try_get(16)?,
        result: result.map(|r| decode("a job's result", &r)).transpose()?,
        progress: progress
            .map(|p| decode("a job's progress", &p))
            .transpose()?
            .unwrap_or_default(),
    })
}

/// How many of an attempt's last progress lines the fleet keeps.
pub const PROGRESS_KEPT: usize = 500;

/// The attempts a job gets when the submitter says nothing.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 2;

impl Fleet {
    /// Queues work. Refused when the fleet has hosts up and none of them
    /// takes that many nodes at once; accepted (and waiting) when no host is
    /// up yet.
    pub fn submit(&self, spec: &JobSpec) -> Result<JobRow, FleetError> {
        let largest = self.db().query_opt(
            "SELECT name, slots_total FROM fleet_hosts WHERE state = 'up'
             ORDER BY slots_total DESC LIMIT 1",
            &[],
        )?;
        if let Some(row) = largest {
            let name: String = row.try_get(0)?;
            let total: i32 = row.try_get(1)?;
            if spec.nodes as i64 > total as i64 {
                return Err(FleetError::TooBig(format!(
                    "the work boots {} nodes at once, more than any host of the fleet takes (the largest, {name}, takes {total}): split the topology or add a larger host",
                    spec.nodes
                )));
            }
        }
        let id = format!("job-{:012x}", rand::random::<u64>() & 0xffff_ffff_ffff);
        let now = now_ms();
        let max_attempts = spec.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS).max(1);
        self.db().execute(
            "INSERT INTO fleet_jobs (id, kind, payload, nodes, submitter, state, max_attempts,
                 submitted_at_ms, updated_at_ms, images)
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $7, $8)",
            &[
                &id,
                &spec.kind.as_str(),
                &spec.payload.to_string(),
                &(spec.nodes as i32),
                &spec.submitter,
                &(max_attempts as i32),
                &now,
                &(!spec.images.is_empty())
                    .then(|| serde_json::to_string(&spec.images).unwrap_or_default()),
            ],
        )?;
        self.job(&id)
    }

    /// Takes the next job this host has room for: highest submitter
    /// priority first, then the oldest; jobs other hosts are taking at this
    /// instant are skipped, not waited for. A job whose images this host
    /// lacks is left to an up host that holds them all and has room for it
    /// (by its last beat); with none, this host takes it (and builds what it
    /// can). None when nothing fits (or the fleet gave up on this host).
    pub fn claim(&self, host_id: &str, free_slots: u32) -> Result<Option<Claimed>, FleetError> {
        let now = now_ms();
        let row = self.db().query_opt(
            "UPDATE fleet_jobs SET state = 'running', host_id = h.id, host = h.name,
                 attempt = fleet_jobs.attempt + 1, started_at_ms = $3, updated_at_ms = $3,
                 error = NULL, progress = NULL
             FROM fleet_hosts h
             WHERE h.id = $1 AND h.state = 'up' AND fleet_jobs.id = (
                 SELECT j.id FROM fleet_jobs j
                 LEFT JOIN fleet_submitters s ON s.submitter = j.submitter
                 WHERE j.state = 'queued' AND j.nodes <= $2
                   AND (j.images IS NULL
                        OR j.images::jsonb <@ (SELECT me.images::jsonb FROM fleet_hosts me
                                               WHERE me.id = $1)
                        OR NOT EXISTS (
                            SELECT 1 FROM fleet_hosts o
                            WHERE o.state = 'up' AND o.id <> $1 AND o.slots_free >= j.nodes
                              AND j.images::jsonb <@ o.images::jsonb))
                 ORDER BY COALESCE(s.priority, 0) DESC, j.submitted_at_ms, j.id
                 LIMIT 1
                 FOR UPDATE OF j SKIP LOCKED)
             RETURNING fleet_jobs.id, fleet_jobs.kind, fleet_jobs.payload, fleet_jobs.nodes,
                 fleet_jobs.attempt",
            &[&host_id, &(free_slots.min(i32::MAX as u32) as i32), &now],
        )?;
        let Some(row) = row else { return Ok(None) };
        let kind: String = row.try_get(1)?;
        let payload: String = row.try_get(2)?;
        Ok(Some(Claimed {
            id: row.try_get(0)?,
            kind: JobKind::parse(&kind)?,
            payload: decode("a job's payload", &payload)?,
            nodes: row.try_get::<_, i32>(3)?.max(0) as u32,
            attempt: row.try_get::<_, i32>(4)?.max(0) as u32,
        }))
    }

    /// Records an attempt's progress lines so far (the last
    /// [`PROGRESS_KEPT`]), while it is the current one.
    pub fn set_progress(
        &self,
        job_id: &str,
        attempt: u32,
        lines: &[String],
    ) -> Result<bool, FleetError> {
        let kept = &lines[lines.len().saturating_sub(PROGRESS_KEPT)..];
        let text = serde_json::to_string(kept).unwrap_or_else(|_| "[]".into());
        let n = self.db().execute(
            "UPDATE fleet_jobs SET progress = $1
             WHERE id = $2 AND attempt = $3 AND state = 'running'",
            &[&text, &job_id, &(attempt as i32)],
        )?;
        Ok(n == 1)
    }

    /// Records the run an attempt started, while it is the current one.
    pub fn set_run(&self, job_id: &str, attempt: u32, run_id: &str) -> Result<bool, FleetError> {
        let n = self.db().execute(
            "UPDATE fleet_jobs SET run_id = $1, updated_at_ms = $2
             WHERE id = $3 AND attempt = $4 AND state = 'running'",
            &[&run_id, &now_ms(), &job_id, &(attempt as i32)],
        )?;
        Ok(n > 0)
    }

    /// True when the attempt should stop: a cancel was asked, or the fleet
    /// gave the job to someone else meanwhile.
    pub fn should_stop(&self, job_id: &str, attempt: u32) -> Result<bool, FleetError> {
        let row = self.db().query_opt(
            "SELECT cancel_requested, attempt, state FROM fleet_jobs WHERE id = $1",
            &[&job_id],
        )?;
        let Some(row) = row else { return Ok(true) };
        let cancel: bool = row.try_get(0)?;
        let current: i32 = row.try_get(1)?;
        let state: String = row.try_get(2)?;
        Ok(cancel || current != attempt as i32 || state != "running")
    }

    /// Records how an attempt ended. Idempotent: only the current attempt,
    /// still running on this host, is recorded; a repeat or a late answer of
    /// a superseded attempt changes nothing and returns false.
    pub fn finish(
        &self,
        job_id: &str,
        host_id: &str,
        attempt: u32,
        end: &JobEnd,
    ) -> Result<bool, FleetError> {
        let state = match end.state {
            JobState::Done | JobState::Failed | JobState::Cancelled => end.state,
            other => {
                return Err(FleetError::Decode(format!(
                    "an attempt ends done, failed or cancelled, not {other}"
                )))
            }
        };
        let now = now_ms();
        let n = self.db().execute(
            "UPDATE fleet_jobs SET state = $1, run_id = COALESCE($2, run_id), result = $3,
                 exit_code = $4, error = $5, finished_at_ms = $6, updated_at_ms = $6
             WHERE id = $7 AND host_id = $8 AND attempt = $9 AND state = 'running'",
            &[
                &state.as_str(),
                &end.run_id,
                &end.result.as_ref().map(|r| r.to_string()),
                &end.exit_code,
                &end.error,
                &now,
                &job_id,
                &host_id,
                &(attempt as i32),
            ],
        )?;
        Ok(n > 0)
    }

    /// Cancels a job: a queued one at once, a running one by asking its host
    /// (which stops the run and records it cancelled).
    pub fn cancel(&self, job_id: &str) -> Result<JobRow, FleetError> {
        let now = now_ms();
        let job = self.job(job_id)?;
        match job.state {
            JobState::Queued | JobState::Running => {}
            state => {
                return Err(FleetError::Conflict {
                    id: job.id,
                    state: state.to_string(),
                    why: "only queued or running jobs can be cancelled; `rehearse fleet retry` runs it again".into(),
                })
            }
        }
        self.db().execute(
            "UPDATE fleet_jobs SET
                 state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
                 finished_at_ms = CASE WHEN state = 'queued' THEN $1 ELSE finished_at_ms END,
                 cancel_requested = TRUE, updated_at_ms = $1
             WHERE id = $2 AND state IN ('queued', 'running')",
            &[&now, &job_id],
        )?;
        self.job(job_id)
    }

    /// Queues a failed, lost or cancelled job again, with one more attempt.
    pub fn retry(&self, job_id: &str) -> Result<JobRow, FleetError> {
        let n = self.db().execute(
            "UPDATE fleet_jobs SET state = 'queued', host_id = NULL, cancel_requested = FALSE,
                 max_attempts = attempt + 1, run_id = NULL, result = NULL, exit_code = NULL,
                 error = NULL, started_at_ms = NULL, finished_at_ms = NULL, updated_at_ms = $1
             WHERE id = $2 AND state IN ('failed', 'lost', 'cancelled')",
            &[&now_ms(), &job_id],
        )?;
        let job = self.job(job_id)?;
        if n == 0 {
            return Err(FleetError::Conflict {
                id: job.id,
                state: job.state.to_string(),
                why: "only failed, lost or cancelled jobs can be retried".into(),
            });
        }
        Ok(job)
    }

    /// Sets whose work goes first: higher first (default 0).
    pub fn set_priority(&self, submitter: &str, priority: i32) -> Result<(), FleetError> {
        self.db().execute(
            "INSERT INTO fleet_submitters (submitter, priority) VALUES ($1, $2)
             ON CONFLICT (submitter) DO UPDATE SET priority = EXCLUDED.priority",
            &[&submitter, &priority],
        )?;
        Ok(())
    }

    /// Every submitter with a priority set, highest first.
    pub fn priorities(&self) -> Result<Vec<(String, i32)>, FleetError> {
        self.db()
            .query(
                "SELECT submitter, priority FROM fleet_submitters
                 ORDER BY priority DESC, submitter",
                &[],
            )?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// One job, with its result.
    pub fn job(&self, job_id: &str) -> Result<JobRow, FleetError> {
        self.db()
            .query_opt(
                &format!("SELECT {JOB_COLUMNS} FROM {JOB_FROM} WHERE j.id = $1"),
                &[&job_id],
            )?
            .as_ref()
            .map(job_from_row)
            .transpose()?
            .ok_or_else(|| FleetError::NoJob(job_id.to_owned()))
    }

    /// The most recent jobs, newest first (results left out).
    pub fn jobs(&self, limit: u32) -> Result<Vec<JobRow>, FleetError> {
        let columns = JOB_COLUMNS.replace("j.result", "NULL::text");
        self.db()
            .query(
                &format!(
                    "SELECT {columns} FROM {JOB_FROM}
                     ORDER BY j.submitted_at_ms DESC, j.id DESC LIMIT $1"
                ),
                &[&(limit as i64)],
            )?
            .iter()
            .map(job_from_row)
            .collect()
    }
}
