use std::path::PathBuf;

/// Errors of the image cache and builder.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The image is not in the cache and no spec is known for that name.
    #[error(
        "no image named \"{name}\"; known images: {known}; or build one from an image spec file"
    )]
    Unknown { name: String, known: String },
    /// mmdebstrap is not installed.
    #[error("mmdebstrap is not installed: install the Debian package `mmdebstrap` (apt-get install mmdebstrap)")]
    NoMmdebstrap,
    /// The distribution's archive could not be reached while building.
    #[error("building image \"{name}\" needs the archive {archive}, which could not be reached ({why}); check this host's egress to that archive (network, DNS, proxy: images are built by the host, not through a node's network) or name a reachable `mirror:` in an image spec file, then build it again")]
    ArchiveUnreachable {
        name: String,
        archive: String,
        why: String,
    },
    /// The build command failed.
    #[error("building image \"{name}\" failed: {what}\n{tail}")]
    BuildFailed {
        name: String,
        what: String,
        tail: String,
    },
    /// A filesystem operation failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The spec itself is invalid.
    #[error(transparent)]
    Spec(#[from] rehearse_spec::SpecError),
    /// The image is used by running clusters.
    #[error("image \"{0}\" is in use by a running cluster; destroy its clusters first")]
    InUse(String),
    /// An import source that is not an image skopeo can read.
    #[error("cannot import {image}: {why}; give an OCI layout folder, an OCI archive, a docker archive (`docker save`, `podman save`) or a registry reference")]
    NotAnImage { image: String, why: String },
    /// A tool the import runs failed (a corrupt layer, an unreachable registry, ...).
    #[error("importing {image} failed while {what}:\n{tail}")]
    ImportFailed {
        image: String,
        what: String,
        tail: String,
    },
    /// A tool the import needs is not installed.
    #[error("{tool} is not installed: install the Debian package `{package}` (apt-get install {package}, or run scripts/setup.sh)")]
    ToolMissing {
        tool: &'static str,
        package: &'static str,
    },
    /// An imported image lacks what a node needs.
    #[error("image {image} cannot be a node: it has no {missing}; {fix}")]
    MissingForNode {
        image: String,
        missing: String,
        fix: String,
    },
    /// A node is saved under a name another image already has.
    #[error("an image named \"{name}\" already exists ({id}); pick another name, or remove that image first")]
    NameTaken { name: String, id: String },
}

impl ImageError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ImageError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
