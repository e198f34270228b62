//! What a request names, read the one way every caller reads it: this
//! command set, and the fleet when it checks work before queueing it. The
//! file or inline YAML text of a long command (`run_scenario`, `converge`),
//! and the nodes and networks of `provision`.

use std::path::{Path, PathBuf};

use rehearse_spec::scenario::Scenario;
use rehearse_spec::task::Task;
use rehearse_spec::topology::Topology;

use crate::types::{ConvergeRequest, ProvisionRequest, RunScenarioRequest};
use crate::ApiError;

/// The folder inline YAML's relative paths are read from: `base_dir`, else
/// the server's current folder.
pub fn inline_dir(base_dir: Option<&str>) -> Result<PathBuf, ApiError> {
    let dir = match base_dir {
        Some(d) => PathBuf::from(d),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/")),
    };
    if !dir.is_dir() {
        return Err(ApiError::invalid(
            "base_dir",
            format!("{} is not a folder on the server", dir.display()),
        ));
    }
    Ok(std::fs::canonicalize(&dir).unwrap_or(dir))
}

/// The scenario a `run_scenario` request names.
pub fn scenario_of(req: &RunScenarioRequest) -> Result<Scenario, ApiError> {
    match (&req.path, &req.yaml) {
        (Some(path), None) => {
            Scenario::from_path(Path::new(path)).map_err(|e| ApiError::spec("path", &e))
        }
        (None, Some(yaml)) => {
            let dir = inline_dir(req.base_dir.as_deref())?;
            Scenario::from_yaml(yaml, "inline.yaml", &dir).map_err(|e| ApiError::spec("yaml", &e))
        }
        _ => Err(ApiError::invalid(
            "path",
            "pass exactly one of path (a scenario file or folder) and yaml (the scenario text)",
        )),
    }
}

/// The task a `converge` request names.
pub fn task_of(req: &ConvergeRequest) -> Result<Task, ApiError> {
    match (&req.path, &req.yaml) {
        (Some(path), None) => {
            Task::from_path(Path::new(path)).map_err(|e| ApiError::spec("path", &e))
        }
        (None, Some(yaml)) => {
            let dir = inline_dir(req.base_dir.as_deref())?;
            Task::from_yaml(yaml, "inline task.yaml", &dir).map_err(|e| ApiError::spec("yaml", &e))
        }
        _ => Err(ApiError::invalid(
            "path",
            "pass exactly one of path (a task file or a folder holding task.yaml) and yaml (the task text)",
        )),
    }
}

/// The cluster a `provision` request asks for. The topology format validates
/// names, networks and images with the same messages as a file gets, naming
/// the field (`nodes[1].name`).
pub fn topology_of(req: &ProvisionRequest) -> Result<Topology, ApiError> {
    Topology::from_input(req.nodes.clone(), req.networks.clone()).map_err(|e| {
        let field = match e.field() {
            Some(f) if f.starts_with("networks") => "networks",
            _ => "nodes",
        };
        ApiError::spec(field, &e)
    })
}
