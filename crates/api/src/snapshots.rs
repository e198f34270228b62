//! Snapshots of a live cluster and images saved from its nodes, as commands
//! of the shared set.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use rehearse_sandbox::{Restored, Snapshot};

use crate::{Api, ApiError};

/// How long the nodes of a restored cluster may take to boot, by default.
const RESTORE_BOOT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotRequest {
    /// Cluster id returned by provision.
    pub cluster: String,
    /// Snapshot name, [a-z0-9][a-z0-9._-]* (e.g. "before-upgrade").
    pub name: String,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    pub cluster: String,
    /// The snapshot to go back to.
    pub name: String,
    /// How long the nodes may take to boot again, e.g. "60s" (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_timeout: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SaveImageRequest {
    pub cluster: String,
    /// The node whose disk becomes the image.
    pub node: String,
    /// Name of the new image, [a-z0-9][a-z0-9._-]*; topologies boot it with `image: <name>`.
    pub image: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotList {
    pub cluster: String,
    pub snapshots: Vec<Snapshot>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SnapshotRemoved {
    pub cluster: String,
    pub removed: Snapshot,
}

/// An image saved from a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedImage {
    pub name: String,
    pub id: String,
    /// The id of the image the node booted.
    pub parent: Option<String>,
    pub origin: Option<String>,
    pub size_bytes: u64,
    pub build_secs: f64,
}

impl Api {
    pub(crate) fn snapshot(&self, req: SnapshotRequest) -> Result<Snapshot, ApiError> {
        self.live(&req.cluster)?;
        Ok(self.engine.snapshot(&req.cluster, &req.name)?)
    }

    pub(crate) fn restore(&self, req: RestoreRequest) -> Result<Restored, ApiError> {
        let boot_timeout = match &req.boot_timeout {
            Some(text) => crate::duration("boot_timeout", text)?,
            None => RESTORE_BOOT_TIMEOUT,
        };
        self.live(&req.cluster)?;
        Ok(self.engine.restore(&req.cluster, &req.name, boot_timeout)?)
    }

    pub(crate) fn snapshots(&self, cluster: &str) -> Result<SnapshotList, ApiError> {
        self.live(cluster)?;
        Ok(SnapshotList {
            cluster: cluster.to_string(),
            snapshots: self.engine.snapshots(cluster)?,
        })
    }

    pub(crate) fn snapshot_remove(
        &self,
        req: SnapshotRequest,
    ) -> Result<SnapshotRemoved, ApiError> {
        self.live(&req.cluster)?;
        Ok(SnapshotRemoved {
            removed: self.engine.remove_snapshot(&req.cluster, &req.name)?,
            cluster: req.cluster,
        })
    }

    pub(crate) fn save_image(&self, req: SaveImageRequest) -> Result<SavedImage, ApiError> {
        self.live_node(&req.cluster, &req.node)?;
        let image = self.engine.save(&req.cluster, &req.node, &req.image)?;
        Ok(SavedImage {
            name: image.name,
            id: image.id,
            parent: image.parent,
            origin: image.origin,
            size_bytes: image.size_bytes,
            build_secs: image.build_secs,
        })
    }
}
