//! Cluster networks: one Linux bridge and one IPv4 subnet per network, node
//! addresses, and the nftables table that enforces egress and isolation.
//!
//! Every name is derived from the cluster id so teardown can find leftovers of a
//! cluster whose state was lost: bridges `rh<id><n>`, host veths `vb-rh<id>n<i>`
//! (first network, created by nspawn) and `rv<id><i>x<n>` (further networks),
//! nftables table `inet rehearse_<id>`.

mod alloc;
mod firewall;
mod links;

pub use alloc::{
    allocate_networks, host_routes, nth_host as alloc_nth_host, subnet_pool, SERVICE_ADDR,
};
pub use firewall::{firewall_ruleset, Firewall};
pub use links::{attach_to_bridge, create_bridge, delete_cluster_links, link_exists, list_links};

/// The bridge of network number `n` of a cluster.
pub fn bridge_name(cluster: &str, n: usize) -> String {
    format!("rh{cluster}{n}")
}

/// The machine name of node `index` (also the stem of its first veth).
pub fn machine_name(cluster: &str, index: usize) -> String {
    format!("rh{cluster}n{index}")
}

/// Host side of the veth nspawn creates for the first network.
pub fn first_host_iface(cluster: &str, index: usize) -> String {
    let name = format!("vb-{}", machine_name(cluster, index));
    name.chars().take(15).collect()
}

/// Host side of the veth for network `n` (n >= 1) of node `index`.
pub fn extra_host_iface(cluster: &str, index: usize, n: usize) -> String {
    format!("rv{cluster}{index}x{n}")
}

/// Whether a host interface belongs to the cluster.
pub fn iface_belongs_to(iface: &str, cluster: &str) -> bool {
    iface.starts_with(&format!("rh{cluster}"))
        || iface.starts_with(&format!("vb-rh{cluster}"))
        || iface.starts_with(&format!("rv{cluster}"))
}

/// The cluster id an interface name carries, if it is one of ours.
pub fn cluster_of_iface(iface: &str) -> Option<String> {
    let rest = iface
        .strip_prefix("vb-rh")
        .or_else(|| iface.strip_prefix("rh"))
        .or_else(|| iface.strip_prefix("rv"))?;
    let id: String = rest.chars().take(crate::CLUSTER_ID_LEN).collect();
    (id.len() == crate::CLUSTER_ID_LEN && id.chars().all(|c| c.is_ascii_hexdigit())).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_fit_the_kernel_limit_and_map_back_to_their_cluster() {
        let id = "a1b2c3";
        for name in [
            bridge_name(id, 7),
            first_host_iface(id, 31),
            extra_host_iface(id, 31, 7),
            machine_name(id, 31),
        ] {
            assert!(name.len() <= 15, "{name} is too long for an interface name");
            assert_eq!(cluster_of_iface(&name).as_deref(), Some(id), "{name}");
            assert!(iface_belongs_to(&name, id));
            assert!(!iface_belongs_to(&name, "a1b2c4"));
        }
        assert_eq!(cluster_of_iface("eth0"), None);
        assert_eq!(cluster_of_iface("rhsvc0"), None);
    }
}
