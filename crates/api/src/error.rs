use serde::{Deserialize, Serialize};

use rehearse_sandbox::SandboxError;
use rehearse_spec::SpecError;

/// What went wrong, as a stable word a caller can branch on. Serialized in
/// snake_case (`cluster_not_found`), the same on every front end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The request's arguments are wrong (the field says which).
    InvalidInput,
    /// A topology, scenario or check definition is wrong.
    InvalidSpec,
    ClusterNotFound,
    /// The cluster reached the end of its time to live and was destroyed.
    ClusterExpired,
    NodeNotFound,
    /// The node is not running (a fault crashed it, or it died).
    NodeDown,
    SnapshotNotFound,
    JobNotFound,
    OutputNotFound,
    RunNotFound,
    RecipeNotFound,
    FileNotFound,
    /// A path on a node that cannot be used (not absolute, not a file).
    BadPath,
    /// The job cannot be stopped (it already ended).
    NotKillable,
    WriteFailed,
    /// A requested network overlaps one in use.
    NetworkConflict,
    /// A node did not boot.
    BootFailed,
    /// The host has no free addresses, UID ranges or room for more nodes.
    PoolExhausted,
    UidRangesExhausted,
    NoCapacity,
    /// A command on a node ran out of time and was killed.
    Timeout,
    /// The request is understood and refused (the message says why).
    Refused,
    /// No model is configured, or the model could not be reached.
    LlmUnavailable,
    /// The model answered, but not usably.
    LlmFailed,
    RecipeError,
    /// A stored run report cannot be read.
    CorruptReport,
    /// A cluster's recorded state cannot be read.
    CorruptState,
    /// An image is missing or broken.
    Image,
    /// A tool rehearse needs is not installed on the host.
    MissingTool,
    /// A host command rehearse ran failed.
    HostCommandFailed,
    /// rehearse is not running as root.
    NotRoot,
    /// The host's file system failed.
    Io,
    /// The run store cannot be opened or reached (a PostgreSQL server down).
    StoreUnavailable,
    /// Another host of the fleet holds what was asked for and did not answer.
    HostUnreachable,
    /// A fault of rehearse itself.
    Internal,
}

impl ErrorCode {
    /// The code as it appears in JSON.
    pub fn as_str(self) -> &'static str {
        use ErrorCode::*;
        match self {
            InvalidInput => "invalid_input",
            InvalidSpec => "invalid_spec",
            ClusterNotFound => "cluster_not_found",
            ClusterExpired => "cluster_expired",
            NodeNotFound => "node_not_found",
            NodeDown => "node_down",
            SnapshotNotFound => "snapshot_not_found",
            JobNotFound => "job_not_found",
            OutputNotFound => "output_not_found",
            RunNotFound => "run_not_found",
            RecipeNotFound => "recipe_not_found",
            FileNotFound => "file_not_found",
            BadPath => "bad_path",
            NotKillable => "not_killable",
            WriteFailed => "write_failed",
            NetworkConflict => "network_conflict",
            BootFailed => "boot_failed",
            PoolExhausted => "pool_exhausted",
            UidRangesExhausted => "uid_ranges_exhausted",
            NoCapacity => "no_capacity",
            Timeout => "timeout",
            Refused => "refused",
            LlmUnavailable => "llm_unavailable",
            LlmFailed => "llm_failed",
            RecipeError => "recipe_error",
            CorruptReport => "corrupt_report",
            CorruptState => "corrupt_state",
            Image => "image",
            MissingTool => "missing_tool",
            HostCommandFailed => "host_command_failed",
            NotRoot => "not_root",
            Io => "io",
            StoreUnavailable => "store_unavailable",
            HostUnreachable => "host_unreachable",
            Internal => "internal",
        }
    }

    /// The thing asked for does not exist (or no longer does).
    pub fn is_not_found(self) -> bool {
        use ErrorCode::*;
        matches!(
            self,
            ClusterNotFound
                | ClusterExpired
                | NodeNotFound
                | SnapshotNotFound
                | JobNotFound
                | OutputNotFound
                | RunNotFound
                | RecipeNotFound
                | FileNotFound
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of one command, shaped for a caller that decides what to do next on
/// its own (an agent): a stable code, a message that says what to do, whether
/// trying the same call again can help, and the input field at fault.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema, PartialEq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub retryable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What to call next, in the command set's own words (tool names); the
    /// message itself says what went wrong in words every front end shares.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>, retryable: bool) -> Self {
        ApiError {
            code,
            message: message.into(),
            retryable,
            field: None,
            hint: None,
        }
    }

    /// Bad input: retrying the same call cannot help.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.to_string()),
            ..ApiError::new(ErrorCode::InvalidInput, message, false)
        }
    }

    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError::new(code, message, false)
    }

    pub(crate) fn spec(field: &str, e: &SpecError) -> Self {
        // A file's errors name the file (file:line: …); other input is named
        // by its field.
        let message = if field == "path" {
            e.to_string()
        } else {
            format!("{field}: {e}")
        };
        ApiError::invalid(field, message)
    }

    pub(crate) fn cluster_expired(id: &str) -> Self {
        ApiError::new(
            ErrorCode::ClusterExpired,
            format!("cluster {id} reached the end of its ttl and was destroyed; provision a new cluster (and pass a longer ttl, or call extend in time)"),
            false,
        )
    }
}

impl From<SandboxError> for ApiError {
    fn from(e: SandboxError) -> Self {
        let code = code_of(&e);
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
            SandboxError::MissingTool { .. } | SandboxError::NotRoot => (
                "this is a problem of the host running rehearse, not of your input; host_check lists what the host lacks",
                false,
            ),
            SandboxError::CorruptState { .. } => ("call gc, then provision a new cluster", false),
            _ => ("this is a problem of the host running rehearse, not of your input", false),
        };
        ApiError {
            hint: Some(hint.to_string()),
            ..ApiError::new(code, e.to_string(), retryable)
        }
    }
}

/// The code of an engine error, by its kind.
fn code_of(e: &SandboxError) -> ErrorCode {
    match e {
        SandboxError::ClusterNotFound(_) => ErrorCode::ClusterNotFound,
        SandboxError::NodeNotFound { .. } => ErrorCode::NodeNotFound,
        SandboxError::NodeDown { .. } => ErrorCode::NodeDown,
        SandboxError::BootFailed { .. } => ErrorCode::BootFailed,
        SandboxError::NetworkConflict { .. } => ErrorCode::NetworkConflict,
        SandboxError::PoolExhausted { .. } => ErrorCode::PoolExhausted,
        SandboxError::UidRangesExhausted { .. } => ErrorCode::UidRangesExhausted,
        SandboxError::NoCapacity { .. } => ErrorCode::NoCapacity,
        SandboxError::MissingTool { .. } => ErrorCode::MissingTool,
        SandboxError::Command { .. } => ErrorCode::HostCommandFailed,
        SandboxError::Io { .. } => ErrorCode::Io,
        SandboxError::Timeout { .. } => ErrorCode::Timeout,
        SandboxError::NotRoot => ErrorCode::NotRoot,
        SandboxError::Image(_) | SandboxError::ImageGone { .. } => ErrorCode::Image,
        SandboxError::Spec(_) => ErrorCode::InvalidSpec,
        SandboxError::BadPath(_) => ErrorCode::BadPath,
        SandboxError::SnapshotNotFound { .. } => ErrorCode::SnapshotNotFound,
        SandboxError::Refused(_) => ErrorCode::Refused,
        SandboxError::CorruptState { .. } => ErrorCode::CorruptState,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every engine error keeps the code word it had as a string, so callers
    /// that branch on the JSON see no change.
    #[test]
    fn engine_error_codes_serialize_as_the_engine_names_them() {
        let samples = [
            SandboxError::ClusterNotFound("c".into()),
            SandboxError::NotRoot,
            SandboxError::BadPath("x".into()),
            SandboxError::Refused("no".into()),
        ];
        for e in samples {
            let code = code_of(&e);
            assert_eq!(code.as_str(), e.code());
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::Value::String(e.code().to_string())
            );
        }
    }
}
