use std::path::PathBuf;

/// Errors of cluster lifecycle and node access. Messages say what failed, where,
/// and what to do next.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// No cluster with that id exists.
    #[error("no cluster \"{0}\"")]
    ClusterNotFound(String),
    /// The cluster exists but has no node of that name.
    #[error("cluster {cluster} has no node \"{node}\" (nodes: {known})")]
    NodeNotFound {
        cluster: String,
        node: String,
        known: String,
    },
    /// The node's container is not running.
    #[error("node {node} of cluster {cluster} is not running")]
    NodeDown { cluster: String, node: String },
    /// A node did not reach readiness.
    #[error(
        "node {node} of cluster {cluster} failed to boot: {reason} (the cluster was removed)\n--- last lines of {node}'s boot log ---\n{log_tail}"
    )]
    BootFailed {
        cluster: String,
        node: String,
        reason: String,
        log_tail: String,
    },
    /// A requested network collides with an existing one.
    #[error("network {network} ({cidr}) overlaps {other}; pick another CIDR or leave `cidr` out to have one allocated")]
    NetworkConflict {
        network: String,
        cidr: String,
        other: String,
    },
    /// The subnet pool has no free /24 left.
    #[error("no free /24 left in the subnet pool {pool}; destroy clusters no longer needed, or set REHEARSE_SUBNET_POOL to a larger range")]
    PoolExhausted { pool: String },
    /// The host cannot hold the requested nodes, not even once other
    /// clusters are gone, or did not free room for them in time.
    #[error("{needed} node(s) do not fit on this host: {fits} more fit now, limited by {limit} ({detail}){why}; fix: {fix}")]
    NoCapacity {
        needed: u64,
        fits: u64,
        limit: String,
        detail: String,
        fix: String,
        why: String,
    },
    /// Every node UID range of the host is held by a cluster.
    #[error("no free node UID range: {wanted} needed, {free} of {total} free; destroy clusters no longer needed")]
    UidRangesExhausted {
        wanted: usize,
        free: usize,
        total: usize,
    },
    /// A host tool is missing.
    #[error("`{tool}` is not installed: install the Debian package `{package}` (apt-get install {package})")]
    MissingTool { tool: String, package: String },
    /// A host command failed.
    #[error("{what} failed: `{command}` exited with {status}: {stderr}")]
    Command {
        what: String,
        command: String,
        status: String,
        stderr: String,
    },
    /// A filesystem or system call failed.
    /// The I/O error is said in the message and not given again as a
    /// source, so a chain of causes says it once.
    #[error("{action} {}: {error}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    /// The command ran longer than its timeout and was killed.
    #[error("command timed out after {secs:.1}s on {node} and was killed")]
    Timeout { node: String, secs: f64 },
    /// The operation needs root.
    #[error("rehearse must run as root to create clusters (it mounts overlays, creates bridges and namespaces); run it with sudo")]
    NotRoot,
    /// A node's image was removed from the cache while the node existed.
    #[error("the image {image} ({id}) of node {node} is no longer in the cache, so the node cannot boot again; destroy the cluster and start a new one")]
    ImageGone {
        node: String,
        image: String,
        id: String,
    },
    /// Image errors.
    #[error(transparent)]
    Image(#[from] rehearse_image::ImageError),
    /// Topology errors.
    #[error(transparent)]
    Spec(#[from] rehearse_spec::SpecError),
    /// A fault, snapshot, load or probe request cannot be carried out as asked;
    /// the message says why and what to ask instead.
    #[error("{0}")]
    Refused(String),
    /// The cluster has no snapshot of that name.
    #[error("cluster {cluster} has no snapshot \"{name}\" ({known})")]
    SnapshotNotFound {
        cluster: String,
        name: String,
        known: String,
    },
    /// A copy path was not understood.
    #[error("{0}")]
    BadPath(String),
    /// The cluster state file could not be read.
    #[error("cluster state {} is unreadable ({reason}); a gc removes the cluster", path.display())]
    CorruptState { path: PathBuf, reason: String },
}

impl SandboxError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        error: std::io::Error,
    ) -> Self {
        SandboxError::Io {
            action,
            path: path.into(),
            error,
        }
    }

    /// A stable machine-readable code for the error, for JSON output and MCP.
    pub fn code(&self) -> &'static str {
        match self {
            SandboxError::ClusterNotFound(_) => "cluster_not_found",
            SandboxError::NodeNotFound { .. } => "node_not_found",
            SandboxError::NodeDown { .. } => "node_down",
            SandboxError::BootFailed { .. } => "boot_failed",
            SandboxError::NetworkConflict { .. } => "network_conflict",
            SandboxError::PoolExhausted { .. } => "pool_exhausted",
            SandboxError::UidRangesExhausted { .. } => "uid_ranges_exhausted",
            SandboxError::NoCapacity { .. } => "no_capacity",
            SandboxError::MissingTool { .. } => "missing_tool",
            SandboxError::Command { .. } => "host_command_failed",
            SandboxError::Io { .. } => "io",
            SandboxError::Timeout { .. } => "timeout",
            SandboxError::NotRoot => "not_root",
            SandboxError::Image(_) | SandboxError::ImageGone { .. } => "image",
            SandboxError::Spec(_) => "invalid_spec",
            SandboxError::BadPath(_) => "bad_path",
            SandboxError::SnapshotNotFound { .. } => "snapshot_not_found",
            SandboxError::Refused(_) => "refused",
            SandboxError::CorruptState { .. } => "corrupt_state",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SandboxError;

    #[test]
    fn an_io_error_is_said_once_in_the_chain_of_causes() {
        let e = SandboxError::io(
            "reading",
            "/var/lib/rehearse/clusters/c0ffee/cluster.json",
            std::io::Error::from(std::io::ErrorKind::NotFound),
        );
        let mut said = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            said += &format!(": {s}");
            source = s.source();
        }
        assert_eq!(
            said,
            "reading /var/lib/rehearse/clusters/c0ffee/cluster.json: entity not found"
        );
    }
}
