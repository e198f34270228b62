//! Declarative checks on a live cluster, written in the scenario syntax.

use rehearse_checks::Status;
use rehearse_sandbox::ClusterState;
use rehearse_spec::scenario::Scenario;

use crate::types::*;
use crate::{Api, ApiError};

impl Api {
    pub(crate) fn check(&self, req: CheckRequest) -> Result<CheckReport, ApiError> {
        let state = self.live(&req.cluster)?;
        let scenario = parse_checks(&state, req.checks)?;
        let results = rehearse_scenario::evaluate(&self.engine, &scenario, &state.id);
        let mut summary = CheckSummary::default();
        for r in &results {
            match r.status {
                Status::Passed => summary.passed += 1,
                Status::Failed => summary.failed += 1,
                Status::Skipped => summary.skipped += 1,
            }
        }
        Ok(CheckReport {
            passed: summary.failed == 0,
            summary,
            results: results
                .iter()
                .filter_map(|r| serde_json::to_value(r).ok())
                .collect(),
        })
    }
}

/// Parses checks written in the scenario syntax, against the cluster's nodes
/// (so `on` may name its nodes and groups).
pub fn parse_checks(
    state: &ClusterState,
    checks: rehearse_spec::scenario::ChecksInput,
) -> Result<Scenario, ApiError> {
    let nodes: Vec<(String, Vec<String>)> = state
        .nodes
        .iter()
        .map(|n| (n.name.clone(), n.groups.clone()))
        .collect();
    Scenario::of_checks(&nodes, checks, &std::env::temp_dir())
        .map_err(|e| ApiError::spec("checks", &e))
}
