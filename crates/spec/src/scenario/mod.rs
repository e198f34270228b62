//! Scenarios: a topology, ordered steps that apply infrastructure code to it, and
//! the checks that say whether the result is right.

pub mod check;
pub mod step;

use std::path::PathBuf;

use serde::Serialize;

pub use check::{Check, CheckKind, DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_TIMEOUT};
pub use step::{Step, StepAction, DEFAULT_STEP_TIMEOUT};

use crate::topology::Topology;

pub(crate) use check::duration_ms as check_duration_ms;

/// A validated scenario.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    pub topology: Topology,
    pub steps: Vec<Step>,
    pub checks: Vec<Check>,
    /// The folder relative paths in the scenario are resolved against.
    pub dir: PathBuf,
    /// The file the scenario was read from.
    pub file: PathBuf,
}
