//! Bridges and veths on the host, through iproute2.

use std::process::Command;

use crate::host;
use crate::SandboxError;

pub fn link_exists(name: &str) -> bool {
    std::path::Path::new("/sys/class/net").join(name).exists()
}

pub fn list_links() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Creates a bridge with the gateway address and brings it up.
pub fn create_bridge(name: &str, gateway_cidr: &str) -> Result<(), SandboxError> {
    let batch = format!(
        "link add {name} type bridge\naddr add {gateway_cidr} dev {name}\nlink set {name} up\n"
    );
    host::run_with_input(
        &format!("creating bridge {name}"),
        Command::new("ip").arg("-batch").arg("-"),
        &batch,
    )?;
    // A bridge must not answer for other interfaces of the host, nor forward
    // IPv6 router advertisements from nodes into the host's configuration.
    let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), "1");
    Ok(())
}

pub fn attach_to_bridge(iface: &str, bridge: &str) -> Result<(), SandboxError> {
    host::run(
        &format!("attaching {iface} to {bridge}"),
        Command::new("ip").args(["link", "set", iface, "master", bridge, "up"]),
    )?;
    Ok(())
}

/// Deletes every host interface of the cluster (bridges and stray veths).
pub fn delete_cluster_links(cluster: &str) -> Result<(), SandboxError> {
    let mut batch = String::new();
    // veths first: deleting one end removes the pair, and bridges go last.
    let mut links: Vec<String> = list_links()
        .into_iter()
        .filter(|l| super::iface_belongs_to(l, cluster))
        .collect();
    links.sort_by_key(|l| l.starts_with("rh"));
    for link in &links {
        batch += &format!("link del {link}\n");
    }
    if batch.is_empty() {
        return Ok(());
    }
    // `-force` keeps going past links that vanished meanwhile (a veth whose peer died).
    let result = host::run_with_input(
        "deleting cluster interfaces",
        Command::new("ip").arg("-force").arg("-batch").arg("-"),
        &batch,
    );
    let left: Vec<String> = list_links()
        .into_iter()
        .filter(|l| super::iface_belongs_to(l, cluster))
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        result.map(|_| ())?;
        Err(SandboxError::io(
            "deleting interfaces",
            "/sys/class/net",
            std::io::Error::other(format!("still present: {}", left.join(", "))),
        ))
    }
}
