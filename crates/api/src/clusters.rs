//! Clusters as commands: provision, the cluster's description, extend,
//! destroy, list; every command on a cluster first checks it is alive.

use std::time::Duration;

use rehearse_sandbox::{ClusterState, Engine, SandboxError, UpRequest, DEFAULT_TTL};

use crate::types::*;
use crate::{Api, ApiError};

/// The one description of a cluster, for every adapter (CLI `--json`, MCP).
pub fn cluster_info(engine: &Engine, s: &ClusterState) -> ClusterInfo {
    ClusterInfo {
        cluster: s.id.clone(),
        status: serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
        boot_ms: s.boot_ms,
        created_at: s.created_at,
        source: s.source.clone(),
        from_pool: s.from_pool,
        ssh_config: engine
            .cluster_dir(&s.id)
            .join("ssh/config")
            .display()
            .to_string(),
        expires_at: s.expires_at,
        ttl_left_s: s.ttl_left().max(0),
        nodes: s
            .nodes
            .iter()
            .map(|n| (n, engine.node_usage(&s.id, &n.name)))
            .map(|(n, usage)| NodeInfo {
                name: n.name.clone(),
                ip: n.ip().map(|i| i.to_string()),
                addresses: n
                    .nics
                    .iter()
                    .map(|c| AddressInfo {
                        network: c.network.clone(),
                        ip: c.ip.to_string(),
                        iface: c.iface.clone(),
                    })
                    .collect(),
                groups: n.groups.clone(),
                image: n.image.clone(),
                backend: n.backend.clone(),
                boot_ms: n.boot_ms,
                boot_retried: n.boot_retried.clone(),
                limits: LimitsInfo {
                    memory_bytes: n.limits.memory,
                    cpus: n.limits.millicpus.map(|m| f64::from(m) / 1000.0),
                    pids: n.limits.pids,
                    text: n.limits.to_string(),
                },
                memory_used_bytes: usage.memory_used,
                oom_kills: usage.oom_kills,
            })
            .collect(),
        networks: s
            .networks
            .iter()
            .map(|n| NetworkInfo {
                name: n.name.clone(),
                cidr: n.cidr.to_string(),
                gateway: n.gateway.to_string(),
                bridge: n.bridge.clone(),
                egress: n.egress.as_str().to_string(),
            })
            .collect(),
    }
}

impl Api {
    /// The cluster, if it is alive. One past its expiry is destroyed now
    /// rather than left to the reaper, so nothing is used after its time.
    pub(crate) fn live(&self, id: &str) -> Result<ClusterState, ApiError> {
        let state = self.engine.get(id)?;
        if state.ttl_left() <= 0 {
            match self.engine.down(id) {
                Ok(()) | Err(SandboxError::ClusterNotFound(_)) => {}
                Err(e) => tracing::warn!(cluster = id, error = %e, "destroying an expired cluster"),
            }
            return Err(ApiError::cluster_expired(id));
        }
        Ok(state)
    }

    pub(crate) fn live_node(&self, id: &str, node: &str) -> Result<ClusterState, ApiError> {
        let state = self.live(id)?;
        state.node(node)?;
        Ok(state)
    }

    pub(crate) fn provision(&self, req: ProvisionRequest) -> Result<ClusterInfo, ApiError> {
        let ttl = match &req.ttl {
            Some(t) => crate::duration("ttl", t)?,
            None => DEFAULT_TTL,
        };
        let topology = crate::inputs::topology_of(&req)?;
        let state = self.up(
            UpRequest {
                topology,
                ttl,
                boot_timeout: Duration::from_secs(60),
                source: "mcp provision".into(),
                ownership: rehearse_sandbox::Ownership::User,
            },
            true,
            &|_| {},
        )?;
        Ok(cluster_info(&self.engine, &state))
    }

    /// Starts a cluster from a parsed topology (from the warm pool when it
    /// holds one of this shape and `pool` is true) and records it in the run
    /// store: `provision` and the CLI's `up` both come here. Errors are the
    /// engine's, for front ends that render them in their own words.
    pub fn up(
        &self,
        req: UpRequest,
        pool: bool,
        progress: &(dyn Fn(rehearse_sandbox::Progress) + Sync),
    ) -> Result<ClusterState, rehearse_sandbox::SandboxError> {
        let state = if pool {
            self.engine.up(req, progress)?
        } else {
            self.engine.up_fresh(req, progress)?
        };
        if let Some(store) = self.recording_store() {
            rehearse_scenario::record_cluster(&store, &state);
        }
        Ok(state)
    }

    pub(crate) fn extend(&self, req: ExtendRequest) -> Result<ClusterInfo, ApiError> {
        let ttl = crate::duration("ttl", &req.ttl)?;
        self.live(&req.cluster)?;
        Ok(cluster_info(
            &self.engine,
            &self.engine.extend(&req.cluster, ttl)?,
        ))
    }

    pub(crate) fn destroy(&self, id: &str) -> Result<Destroyed, ApiError> {
        self.engine.get(id)?;
        self.engine.down(id)?;
        if let Some(store) = self.recording_store() {
            rehearse_scenario::record_cluster_destroyed(&store, id);
        }
        Ok(Destroyed {
            cluster: id.to_string(),
            destroyed: true,
        })
    }

    pub(crate) fn list(&self) -> ClusterList {
        ClusterList {
            clusters: self
                .engine
                .list()
                .iter()
                .filter(|s| s.ttl_left() > 0)
                // Clusters waiting in the warm pool are nobody's yet.
                .filter(|s| !self.engine.is_pooled(&s.id))
                .map(|s| cluster_info(&self.engine, s))
                .collect(),
        }
    }

    pub(crate) fn cluster(&self, id: &str) -> Result<ClusterInfo, ApiError> {
        Ok(cluster_info(&self.engine, &self.live(id)?))
    }
}
