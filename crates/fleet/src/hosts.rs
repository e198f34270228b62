//! Hosts: joining, beating, leaving, and being given up on.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{decode, now_ms, Fleet, FleetError};

/// What a host offers when it joins.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HostSpec {
    /// The host's name; the same after a restart.
    pub name: String,
    /// Where the other hosts reach its HTTP API.
    pub url: Option<String>,
    pub cores: u32,
    pub memory_bytes: u64,
    /// Nodes it takes in all, and how many more fit now.
    pub slots_total: u32,
    pub slots_free: u32,
    /// The images it holds.
    pub images: Vec<String>,
    /// Its warm pool, when it keeps one.
    pub pool: Option<serde_json::Value>,
}

/// A host as the fleet sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostRow {
    /// The name and a suffix of this start: a restarted host is a new row.
    pub id: String,
    pub name: String,
    pub url: Option<String>,
    pub cores: u32,
    pub memory_bytes: u64,
    pub slots_total: u32,
    pub slots_free: u32,
    pub images: Vec<String>,
    pub pool: Option<serde_json::Value>,
    pub started_at_ms: i64,
    pub heartbeat_at_ms: i64,
    /// `up` or `gone`.
    pub state: String,
    pub gone_reason: Option<String>,
    /// Fleet jobs it is running now.
    pub running_jobs: u32,
}

/// What one pass of [`Fleet::reap`] gave up on.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Reaped {
    /// `(host id, why)` of every host marked gone.
    pub hosts: Vec<(String, String)>,
    /// Jobs put back in the queue for another attempt.
    pub requeued: Vec<String>,
    /// Jobs that had no attempt left (or were being cancelled).
    pub lost_jobs: Vec<String>,
    /// Runs still running on those hosts, now `lost`.
    pub lost_runs: Vec<String>,
    /// Clusters those hosts held, now recorded as gone with them.
    pub lost_clusters: Vec<String>,
}

impl Reaped {
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

const HOST_COLUMNS: &str = "h.id, h.name, h.url, h.cores, h.memory_bytes, h.slots_total, \
     h.slots_free, h.images, h.pool, h.started_at_ms, h.heartbeat_at_ms, h.state, h.gone_reason, \
     (SELECT COUNT(*) FROM fleet_jobs j WHERE j.host_id = h.id AND j.state = 'running')";

fn host_from_row(row: &postgres::Row) -> Result<HostRow, FleetError> {
    let images: String = row.try_get(7)?;
    let pool: Option<String> = row.try_get(8)?;
    Ok(HostRow {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        url: row.try_get(2)?,
        cores: row.try_get::<_, i32>(3)?.max(0) as u32,
        memory_bytes: row.try_get::<_, i64>(4)?.max(0) as u64,
        slots_total: row.try_get::<_, i32>(5)?.max(0) as u32,
        slots_free: row.try_get::<_, i32>(6)?.max(0) as u32,
        images: decode("a host's images", &images)?,
        pool: pool.map(|p| decode("a host's pool", &p)).transpose()?,
        started_at_ms: row.try_get(9)?,
        heartbeat_at_ms: row.try_get(10)?,
        state: row.try_get(11)?,
        gone_reason: row.try_get(12)?,
        running_jobs: row.try_get::<_, i64>(13)?.max(0) as u32,
    })
}

/// Marks hosts gone and deals with what they held, in one statement any
/// host may run at any time: two running it at once give up on each host
/// once (the second waits for the first's row locks, then finds it gone).
///
/// A host is gone when its last beat is older than `$1`, or (`$2`, `$3`) when
/// it is an earlier start of a host named `$2` that now joins as `$3`. Its
/// running jobs go back to the queue while attempts remain (else `lost`, or
/// `cancelled` when a cancel was asked); its runs still running become `lost`
/// and its clusters are recorded gone, with the host named in the reason.
const REAP: &str = "
WITH gone AS (
    UPDATE fleet_hosts SET state = 'gone', gone_reason = CASE
        WHEN heartbeat_at_ms <= 0 THEN 'stopped: it left the fleet'
        WHEN heartbeat_at_ms < $1::bigint THEN 'stopped beating: no heartbeat since '
            || to_char(to_timestamp(heartbeat_at_ms / 1000.0) AT TIME ZONE 'UTC',
                       'YYYY-MM-DD HH24:MI:SS') || ' UTC'
        ELSE 'restarted (now ' || $3::text || ')' END
    WHERE state = 'up' AND (heartbeat_at_ms < $1::bigint OR (name = $2::text AND id <> $3::text))
    RETURNING id, name, gone_reason
), jobs AS (
    UPDATE fleet_jobs j SET
        state = CASE WHEN j.cancel_requested THEN 'cancelled'
                     WHEN j.attempt < j.max_attempts THEN 'queued'
                     ELSE 'lost' END,
        host_id = CASE WHEN j.attempt < j.max_attempts AND NOT j.cancel_requested
                       THEN NULL ELSE j.host_id END,
        finished_at_ms = CASE WHEN j.attempt < j.max_attempts AND NOT j.cancel_requested
                              THEN NULL ELSE $4::bigint END,
        error = 'attempt ' || j.attempt || ' on host ' || g.name || ' was lost: the host '
            || g.gone_reason,
        updated_at_ms = $4::bigint
    FROM gone g WHERE j.host_id = g.id AND j.state = 'running'
    RETURNING j.id, j.state
), runs AS (
    UPDATE runs r SET outcome = 'lost',
        summary = 'lost with host ' || g.name || ', which ' || g.gone_reason,
        finished_at_ms = r.updated_at_ms, updated_at_ms = $4::bigint
    FROM gone g WHERE r.host = g.name AND r.outcome = 'running'
    RETURNING r.id
), clusters AS (
    UPDATE clusters c SET destroyed_at_ms = $4::bigint,
        destroyed_reason = 'lost with host ' || g.name || ', which ' || g.gone_reason
    FROM gone g WHERE c.host = g.name AND c.destroyed_at_ms IS NULL
    RETURNING c.id
)
SELECT 'host', id, gone_reason FROM gone
UNION ALL SELECT 'job', id, state FROM jobs
UNION ALL SELECT 'run', id, '' FROM runs
UNION ALL SELECT 'cluster', id, '' FROM clusters";

impl Fleet {
    /// Joins the fleet: a new row for this start of the host, after giving up
    /// on earlier starts of the same name (their work is requeued).
    pub fn register(&self, spec: &HostSpec) -> Result<(HostRow, Reaped), FleetError> {
        let id = format!("{}-{:08x}", spec.name, rand::random::<u32>());
        let now = now_ms();
        let images = serde_json::to_string(&spec.images).unwrap_or_else(|_| "[]".into());
        let pool = spec.pool.as_ref().map(|p| p.to_string());
        let mut db = self.db();
        let mut tx = db.transaction()?;
        tx.execute(
            "INSERT INTO fleet_hosts (id, name, url, cores, memory_bytes, slots_total, slots_free,
                 images, pool, started_at_ms, heartbeat_at_ms, state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10, 'up')",
            &[
                &id,
                &spec.name,
                &spec.url,
                &(spec.cores as i32),
                &(spec.memory_bytes.min(i64::MAX as u64) as i64),
                &(spec.slots_total as i32),
                &(spec.slots_free as i32),
                &images,
                &pool,
                &now,
            ],
        )?;
        let rows = tx.query(REAP, &[&i64::MIN, &spec.name, &id, &now])?;
        tx.commit()?;
        drop(db);
        let reaped = reaped_from(&rows)?;
        let host = self
            .host(&id)?
            .ok_or_else(|| FleetError::Decode(format!("host {id} vanished as it joined")))?;
        Ok((host, reaped))
    }

    /// Says the host is alive, how many node slots it has free and which
    /// images it holds now. False
    /// when the fleet gave up on it meanwhile (it should join again).
    pub fn heartbeat(
        &self,
        host_id: &str,
        slots_free: u32,
        images: &[String],
    ) -> Result<bool, FleetError> {
        let images = serde_json::to_string(images).unwrap_or_else(|_| "[]".into());
        let n = self.db().execute(
            "UPDATE fleet_hosts SET heartbeat_at_ms = $1, slots_free = $2, images = $4
             WHERE id = $3 AND state = 'up'",
            &[&now_ms(), &(slots_free as i32), &host_id, &images],
        )?;
        Ok(n > 0)
    }

    /// Leaves the fleet on a clean stop; work it still ran goes back to the queue.
    pub fn leave(&self, host_id: &str) -> Result<Reaped, FleetError> {
        let now = now_ms();
        let mut db = self.db();
        let mut tx = db.transaction()?;
        // The same statement as a reap, aimed at this host only.
        tx.execute(
            "UPDATE fleet_hosts SET heartbeat_at_ms = 0 WHERE id = $1 AND state = 'up'",
            &[&host_id],
        )?;
        let rows = tx.query(REAP, &[&1i64, &None::<String>, &"", &now])?;
        tx.commit()?;
        reaped_from(&rows)
    }

    /// Marks gone every host whose last beat is older than `timeout`, and
    /// deals with what it held (see the statement's comment).
    pub fn reap(&self, timeout: Duration) -> Result<Reaped, FleetError> {
        let now = now_ms();
        let before = now - timeout.as_millis().min(i64::MAX as u128) as i64;
        let rows = self
            .db()
            .query(REAP, &[&before, &None::<String>, &"", &now])?;
        reaped_from(&rows)
    }

    /// Every host, those up first, then the most recently started.
    pub fn hosts(&self) -> Result<Vec<HostRow>, FleetError> {
        self.db()
            .query(
                &format!(
                    "SELECT {HOST_COLUMNS} FROM fleet_hosts h
                     ORDER BY h.state = 'up' DESC, h.started_at_ms DESC, h.id"
                ),
                &[],
            )?
            .iter()
            .map(host_from_row)
            .collect()
    }

    /// One host, by id.
    pub fn host(&self, id: &str) -> Result<Option<HostRow>, FleetError> {
        self.db()
            .query_opt(
                &format!("SELECT {HOST_COLUMNS} FROM fleet_hosts h WHERE h.id = $1"),
                &[&id],
            )?
            .as_ref()
            .map(host_from_row)
            .transpose()
    }

    /// The host holding a live cluster: the current start of the host the
    /// run store recorded it on. None for a cluster no fleet host holds (or
    /// one that is gone, with its host).
    pub fn holder_of(&self, cluster_id: &str) -> Result<Option<HostRow>, FleetError> {
        self.db()
            .query_opt(
                &format!(
                    "SELECT {HOST_COLUMNS} FROM fleet_hosts h
                     JOIN clusters c ON c.host = h.name
                     WHERE c.id = $1 AND c.destroyed_at_ms IS NULL AND h.state = 'up'
                     ORDER BY h.started_at_ms DESC LIMIT 1"
                ),
                &[&cluster_id],
            )?
            .as_ref()
            .map(host_from_row)
            .transpose()
    }
}

fn reaped_from(rows: &[postgres::Row]) -> Result<Reaped, FleetError> {
    let mut reaped = Reaped::default();
    for row in rows {
        let what: String = row.try_get(0)?;
        let id: String = row.try_get(1)?;
        let detail: Option<String> = row.try_get(2)?;
        let detail = detail.unwrap_or_default();
        match what.as_str() {
            "host" => reaped.hosts.push((id, detail)),
            "job" if detail == "queued" => reaped.requeued.push(id),
            "job" => reaped.lost_jobs.push(id),
            "run" => reaped.lost_runs.push(id),
            _ => reaped.lost_clusters.push(id),
        }
    }
    Ok(reaped)
}
