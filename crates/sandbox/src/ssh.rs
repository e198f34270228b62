//! One SSH identity per cluster: a client key every node and the host use, and a
//! host key every node presents, so `ssh node2` works from any node and from the
//! host without trust-on-first-use prompts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::host;
use crate::state::ClusterState;
use crate::SandboxError;

#[derive(Debug, Clone)]
pub struct ClusterKeys {
    pub client_private: String,
    pub client_public: String,
    pub host_private: String,
    pub host_public: String,
}

pub fn ssh_dir(cluster_dir: &Path) -> PathBuf {
    cluster_dir.join("ssh")
}

/// Generates the cluster's keys under `<cluster>/ssh`.
pub fn generate(cluster_dir: &Path, cluster: &str) -> Result<ClusterKeys, SandboxError> {
    let dir = ssh_dir(cluster_dir);
    fs::create_dir_all(&dir).map_err(|e| SandboxError::io("creating", &dir, e))?;
    let keygen = |file: &str, comment: &str| -> Result<(String, String), SandboxError> {
        let path = dir.join(file);
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(path.with_extension("pub"));
        host::run(
            "generating an SSH key",
            Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
                .arg(&path),
        )?;
        let private =
            fs::read_to_string(&path).map_err(|e| SandboxError::io("reading", &path, e))?;
        let public_path = dir.join(format!("{file}.pub"));
        let public = fs::read_to_string(&public_path)
            .map_err(|e| SandboxError::io("reading", &public_path, e))?;
        Ok((private, public.trim().to_string()))
    };
    let (client_private, client_public) = keygen("id_ed25519", &format!("rehearse-{cluster}"))?;
    let (host_private, host_public) = keygen("host_ed25519", &format!("rehearse-{cluster}-host"))?;
    Ok(ClusterKeys {
        client_private,
        client_public,
        host_private,
        host_public,
    })
}

/// `known_hosts` lines naming every node by name, name.network and address.
pub fn known_hosts(state: &ClusterState, host_public: &str) -> String {
    let key = host_public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let mut out = String::new();
    for node in &state.nodes {
        let mut names = vec![node.name.clone()];
        for nic in &node.nics {
            names.push(format!("{}.{}", node.name, nic.network));
            names.push(nic.ip.to_string());
        }
        out += &format!("{} {key}\n", names.join(","));
    }
    out
}

/// Writes the host-side `ssh_config` and `known_hosts`, so that
/// `ssh -F <cluster>/ssh/config node1` works from the host.
pub fn write_host_config(
    cluster_dir: &Path,
    state: &ClusterState,
    host_public: &str,
) -> Result<PathBuf, SandboxError> {
    let dir = ssh_dir(cluster_dir);
    let known = dir.join("known_hosts");
    fs::write(&known, known_hosts(state, host_public))
        .map_err(|e| SandboxError::io("writing", &known, e))?;
    let mut config = String::new();
    for node in &state.nodes {
        if let Some(ip) = node.ip() {
            config += &format!(
                "Host {name} {name}.{id}\n  HostName {ip}\n  User root\n  IdentityFile {key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n  StrictHostKeyChecking yes\n  LogLevel ERROR\n\n",
                name = node.name,
                id = state.id,
                key = dir.join("id_ed25519").display(),
                known = known.display(),
            );
        }
    }
    let path = dir.join("config");
    fs::write(&path, config).map_err(|e| SandboxError::io("writing", &path, e))?;
    Ok(path)
}
