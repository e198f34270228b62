//! Trials on a live cluster: faults and healing, load and attack probes, as
//! commands of the shared set.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use rehearse_probes::{LoadReport, ProbeReport};
pub use rehearse_sandbox::FaultRecord;
use rehearse_spec::trials::{FaultAction, LoadSpec, ProbeSpec};

use crate::{Api, ApiError};

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FaultRequest {
    pub cluster: String,
    /// What goes wrong, one key: {"crash": {"node": "web1"}},
    /// {"reboot": {"node": "web1"}}, {"partition": {"sides": [["lb"], ["web1", "web2"]]}},
    /// {"link": {"node": "web1", "peers": ["lb"], "loss": 30, "delay": "100ms", "jitter": "10ms", "rate_kbit": 512}},
    /// {"disk_full": {"node": "web1", "path": "/var/log/nginx", "size_mb": 8}},
    /// {"stop_service": {"node": "web1", "service": "nginx"}}, {"kill_service": {...}}.
    #[schemars(schema_with = "fault_schema")]
    pub fault: FaultAction,
}

fn spec_schema<T: JsonSchema>() -> schemars::Schema {
    let mut value = rehearse_spec::trials::inline_schema::<T>();
    if let Some(map) = value.as_object_mut() {
        map.remove("title");
    }
    schemars::Schema::try_from(value).unwrap_or_default()
}

fn fault_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    spec_schema::<FaultAction>()
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HealRequest {
    pub cluster: String,
    /// The fault id to heal (from `fault` or `faults`). Default: every active fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Healed {
    pub cluster: String,
    pub healed: Vec<FaultRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultList {
    pub cluster: String,
    pub faults: Vec<FaultRecord>,
}

impl Api {
    pub(crate) fn fault(&self, req: FaultRequest) -> Result<FaultRecord, ApiError> {
        req.fault
            .validate()
            .map_err(|m| ApiError::invalid("fault", m))?;
        self.live(&req.cluster)?;
        Ok(self.engine.inject(&req.cluster, req.fault)?)
    }

    pub(crate) fn heal(&self, req: HealRequest) -> Result<Healed, ApiError> {
        self.live(&req.cluster)?;
        Ok(Healed {
            healed: self.engine.heal(&req.cluster, req.fault)?,
            cluster: req.cluster,
        })
    }

    pub(crate) fn faults(&self, cluster: &str) -> Result<FaultList, ApiError> {
        self.live(cluster)?;
        Ok(FaultList {
            cluster: cluster.to_string(),
            faults: self.engine.faults(cluster)?,
        })
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    pub cluster: String,
    /// The load: {"from": "client", "url": "http://lb/", "duration": "10s",
    /// "requests": 5000, "concurrency": 4, "timeout": "5s",
    /// "expect": {"error_rate": 1, "p50": "50ms", "p99": "500ms", "min_ok": 100}}.
    #[schemars(schema_with = "load_schema")]
    pub load: LoadSpec,
}

fn load_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    spec_schema::<LoadSpec>()
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProbeRequest {
    pub cluster: String,
    /// One probe: {"ports": {"target": "web1", "from": "client", "open": [22, 80]}},
    /// {"ssh_password": {"target": "web1", "from": "client"}},
    /// {"internal": {"target": "db", "port": 5432, "network": "back"}},
    /// {"files": {"node": "web1"}}, {"tls": {"target": "web1", "from": "client", "port": 443}}.
    #[schemars(schema_with = "probe_schema")]
    pub probe: ProbeSpec,
}

fn probe_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    spec_schema::<ProbeSpec>()
}

impl Api {
    pub(crate) fn load(&self, req: LoadRequest) -> Result<LoadReport, ApiError> {
        req.load
            .validate()
            .map_err(|m| ApiError::invalid("load", m))?;
        self.live_node(&req.cluster, &req.load.from)?;
        Ok(rehearse_probes::run_load(
            &self.engine,
            &req.cluster,
            &req.load,
        )?)
    }

    pub(crate) fn probe(&self, req: ProbeRequest) -> Result<ProbeReport, ApiError> {
        self.live(&req.cluster)?;
        Ok(rehearse_probes::run_probe(
            &self.engine,
            &req.cluster,
            &req.probe,
        )?)
    }
}
