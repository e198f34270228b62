use serde::{Deserialize, Serialize};

use rehearse_sandbox::SandboxError;
use rehearse_spec::SpecError;

/// An error of one command, shaped for a caller that decides what to do next on
/// its own (an agent): a stable code, a message that says what to do, whether
/// trying the same call again can help, and the input field at fault.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema, PartialEq)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    pub retryable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(code: &str, message: impl Into<String>, retryable: bool) -> Self {
        ApiError {
            code: code.to_string(),
            message: message.into(),
            retryable,
            field: None,
        }
    }

    /// Bad input: retrying the same call cannot help.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.to_string()),
            ..ApiError::new("invalid_input", message, false)
        }
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Self {
        ApiError::new(code, message, false)
    }

    pub(crate) fn spec(field: &str, e: &SpecError) -> Self {
        ApiError::invalid(field, format!("{field}: {e}"))
    }

    pub(crate) fn cluster_expired(id: &str) -> Self {
        ApiError::new(
            "cluster_expired",
            format!("cluster {id} reached the end of its ttl and was destroyed; provision a new cluster (and pass a longer ttl, or call extend in time)"),
            false,
        )
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        let code = e.code();
        let (hint, retryable) = match &e {
            SandboxError::ClusterNotFound(_) => (
                "it was destroyed or never existed; call list to see live clusters, or provision a new cluster",
                false,
            ),
            SandboxError::NodeNotFound { .. } => (
                "use one of the node names listed (the cluster's nodes are also in the rehearse://clusters/{id} resource)",
                false,
            ),
            SandboxError::NodeDown { .. } => (
                "call heal to boot a node a fault crashed (faults lists them); a node down for another reason needs a new cluster",
                false,
            ),
            SandboxError::Timeout { .. } => (
                "the command was killed; retry with a larger timeout_s, or start it with exec_background and poll job_status",
                true,
            ),
            SandboxError::BootFailed { .. }
            | SandboxError::PoolExhausted { .. }
            | SandboxError::UidRangesExhausted { .. }
            | SandboxError::NoCapacity { .. } => (
                "retry later, or destroy clusters you no longer need",
                true,
            ),
            SandboxError::NetworkConflict { .. } => (
                "leave out the network's cidr to have one allocated",
                false,
            ),
            SandboxError::Spec(_) => ("fix the input and call again", false),
            SandboxError::BadPath(_) => ("check the path on the node", false),
            SandboxError::SnapshotNotFound { .. } => (
                "call snapshots to list the cluster's snapshots, or snapshot to take one",
                false,
            ),
            SandboxError::Refused(_) => ("change the request as the message says", false),
            _ => ("this is a problem of the host running rehearse, not of your input", false),
        };
        ApiError::new(code, format!("{e}; {hint}"), retryable)
    }
}
