//! Every cluster started: when, for what, how long it took to boot, and when
//! it went away.

use serde::{Deserialize, Serialize};

use crate::db::{params, Row};
use crate::{now_ms, RunStore, StoreError};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClusterRow {
    pub id: String,
    pub run_id: Option<String>,
    /// Who started it: `rehearse up`, `run <id> (<file>)`, an MCP client, ...
    pub source: String,
    pub backend: String,
    pub nodes: u32,
    /// `name=ip`, one per node.
    pub addresses: Vec<String>,
    pub created_at_ms: i64,
    pub boot_ms: u64,
    pub destroyed_at_ms: Option<i64>,
    /// Why `gc` or the cluster's reaper removed it (its run died, it
    /// expired); None when someone destroyed it.
    #[serde(default)]
    pub destroyed_reason: Option<String>,
    /// The fleet host that holds it (None: not a fleet host). Recorded from
    /// the store's own host when not given.
    #[serde(default)]
    pub host: Option<String>,
}

fn cluster_from_row(row: &Row) -> Result<ClusterRow, StoreError> {
    let addresses: String = row.get(5)?;
    Ok(ClusterRow {
        id: row.get(0)?,
        run_id: row.get(1)?,
        source: row.get(2)?,
        backend: row.get(3)?,
        nodes: row.get(4)?,
        addresses: addresses
            .split(',')
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect(),
        created_at_ms: row.get(6)?,
        boot_ms: row.get(7)?,
        destroyed_at_ms: row.get(8)?,
        destroyed_reason: row.get(9)?,
        host: row.get(10)?,
    })
}

impl RunStore {
    /// Records a cluster that finished booting. Recording one twice keeps the first.
    pub fn record_cluster(&self, c: &ClusterRow) -> Result<(), StoreError> {
        self.db().execute(
            "INSERT INTO clusters (id, run_id, source, backend, nodes, addresses, created_at_ms,
                 boot_ms, host)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (id) DO NOTHING",
            params![
                &c.id,
                c.run_id.as_deref(),
                &c.source,
                &c.backend,
                c.nodes,
                c.addresses.join(","),
                c.created_at_ms,
                c.boot_ms,
                c.host.as_deref().or(self.host.as_deref())
            ],
        )?;
        Ok(())
    }

    /// Records that a cluster is gone.
    pub fn cluster_destroyed(&self, id: &str) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE clusters SET destroyed_at_ms = ? WHERE id = ? AND destroyed_at_ms IS NULL",
            params![now_ms(), id],
        )?;
        Ok(())
    }

    /// Records that `gc` or a reaper removed a cluster, and why.
    pub fn cluster_removed(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        self.db().execute(
            "UPDATE clusters SET destroyed_at_ms = ?, destroyed_reason = ?
             WHERE id = ? AND destroyed_at_ms IS NULL",
            params![now_ms(), reason, id],
        )?;
        Ok(())
    }

    /// The most recent clusters, newest first.
    pub fn clusters(&self, limit: u32) -> Result<Vec<ClusterRow>, StoreError> {
        self.db()
            .query(
                "SELECT id, run_id, source, backend, nodes, addresses, created_at_ms, boot_ms,
                     destroyed_at_ms, destroyed_reason, host
                 FROM clusters ORDER BY created_at_ms DESC, id DESC LIMIT ?",
                params![limit],
            )?
            .iter()
            .map(cluster_from_row)
            .collect()
    }
}
