//! Streaming calls for front ends that hold a terminal: bytes flow between
//! the caller and a node while the call runs, so they answer no document.
//! The CLI's plain `exec`, `cp` and `ssh` use them; agents get `exec`,
//! `write_file` and `read_file`, which answer once.

use std::path::PathBuf;

pub use rehearse_sandbox::{ExecIo, ExecOutcome, ExecRequest};

use crate::{Api, ApiError};

/// One side of a copy: a path on this host, or a path on a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyEnd {
    Host(PathBuf),
    Node { node: String, path: String },
}

impl CopyEnd {
    /// `node1:/etc/x` names a node's path; anything else (also `./a:b`) is
    /// a host path.
    pub fn parse(text: &str) -> CopyEnd {
        if let Some((node, path)) = text.split_once(':') {
            let valid = !node.is_empty()
                && node
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if valid && path.starts_with('/') {
                return CopyEnd::Node {
                    node: node.to_string(),
                    path: path.to_string(),
                };
            }
        }
        CopyEnd::Host(PathBuf::from(text))
    }
}

impl Api {
    /// Runs `req` on a node of a live cluster, streaming its input and output
    /// through `io`; answers its exit code once it ends.
    pub fn exec_streaming(
        &self,
        cluster: &str,
        node: &str,
        req: &ExecRequest,
        io: ExecIo<'_>,
    ) -> Result<ExecOutcome, ApiError> {
        self.live_node(cluster, node)?;
        Ok(self.engine.exec(cluster, node, req, io)?)
    }

    /// Copies a file or folder between this host and a node of a live
    /// cluster; an existing folder at `dest` receives the source inside it.
    pub fn copy(&self, cluster: &str, src: &CopyEnd, dest: &CopyEnd) -> Result<(), ApiError> {
        match (src, dest) {
            (CopyEnd::Host(from), CopyEnd::Node { node, path }) => {
                self.live_node(cluster, node)?;
                Ok(self.engine.copy_to_node(cluster, node, from, path)?)
            }
            (CopyEnd::Node { node, path }, CopyEnd::Host(to)) => {
                self.live_node(cluster, node)?;
                Ok(self.engine.copy_from_node(cluster, node, path, to)?)
            }
            (CopyEnd::Node { .. }, CopyEnd::Node { .. }) => Err(ApiError::invalid(
                "dest",
                "both sides name a node; copy node to node through the host in two steps",
            )),
            (CopyEnd::Host(_), CopyEnd::Host(_)) => Err(ApiError::invalid(
                "dest",
                "neither side names a node: write one side as NODE:/absolute/path",
            )),
        }
    }

    /// The ssh_config that reaches the nodes of a live cluster from this
    /// host (`ssh -F CONFIG NODE`), once `node` is known to be one of them.
    pub fn ssh_config(&self, cluster: &str, node: &str) -> Result<PathBuf, ApiError> {
        let state = self.live_node(cluster, node)?;
        Ok(self.engine.cluster_dir(&state.id).join("ssh/config"))
    }
}

#[cfg(test)]
mod tests {
    use super::CopyEnd;

    #[test]
    fn node_paths_need_a_name_and_an_absolute_path() {
        let node = |n: &str, p: &str| CopyEnd::Node {
            node: n.into(),
            path: p.into(),
        };
        assert_eq!(
            CopyEnd::parse("node1:/etc/hosts"),
            node("node1", "/etc/hosts")
        );
        for host in ["./file:with-colon", "node1:relative", "/tmp/x"] {
            assert_eq!(CopyEnd::parse(host), CopyEnd::Host(host.into()), "{host}");
        }
    }
}
