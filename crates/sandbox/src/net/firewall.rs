//! The nftables table of a cluster: what its nodes may reach.
//!
//! - Nodes never reach another cluster, nor another network of their own
//!   cluster through the host.
//! - Nodes never reach host services, except the package cache on networks whose
//!   egress is `packages` or `nat`.
//! - `nat` networks are masqueraded to the outside; `packages` and `none` are not
//!   forwarded at all.
//!
//! The host itself may always open connections to nodes (that is how `ssh` from
//! the host works); replies come back as established traffic.

use std::process::Command;

use rehearse_spec::Egress;

use crate::host;
use crate::state::NetworkState;
use crate::SandboxError;

use super::SERVICE_ADDR;

pub struct Firewall;

pub fn table_name(cluster: &str) -> String {
    format!("rehearse_{cluster}")
}

/// The nftables script creating the cluster's table (and replacing an old one).
pub fn firewall_ruleset(cluster: &str, networks: &[NetworkState], cache_port: u16) -> String {
    let table = table_name(cluster);
    let set = |nets: &mut dyn Iterator<Item = &NetworkState>| {
        let names: Vec<String> = nets.map(|n| format!("\"{}\"", n.bridge)).collect();
        (!names.is_empty()).then(|| format!("{{ {} }}", names.join(", ")))
    };
    let all = set(&mut networks.iter()).unwrap_or_else(|| "{ \"rh-none\" }".to_string());
    let with_cache = set(&mut networks.iter().filter(|n| n.egress != Egress::None));
    let nat = set(&mut networks.iter().filter(|n| n.egress == Egress::Nat));
    let nat_cidrs: Vec<String> = networks
        .iter()
        .filter(|n| n.egress == Egress::Nat)
        .map(|n| n.cidr.to_string())
        .collect();

    let mut s = String::new();
    s += &format!("table inet {table}\ndelete table inet {table}\n");
    s += &format!("table inet {table} {{\n");
    s += "  chain input {\n    type filter hook input priority filter - 10; policy accept;\n";
    s += &format!("    iifname {all} ct state established,related accept\n");
    if let Some(set) = &with_cache {
        s += &format!("    iifname {set} ip daddr {SERVICE_ADDR} tcp dport {cache_port} accept\n");
    }
    s += &format!("    iifname {all} drop\n  }}\n");
    s += "  chain forward {\n    type filter hook forward priority filter - 10; policy accept;\n";
    for n in networks {
        s += &format!("    iifname \"{b}\" oifname \"{b}\" accept\n", b = n.bridge);
    }
    s += &format!("    oifname {all} ct state established,related accept\n");
    if let Some(set) = &nat {
        s += &format!("    iifname {set} oifname != \"rh*\" accept\n");
    }
    s += &format!("    iifname {all} drop\n    oifname {all} drop\n  }}\n");
    if !nat_cidrs.is_empty() {
        s += "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n";
        s += &format!(
            "    ip saddr {{ {} }} oifname != \"rh*\" masquerade\n  }}\n",
            nat_cidrs.join(", ")
        );
    }
    s += "}\n";
    s
}

impl Firewall {
    pub fn apply(
        cluster: &str,
        networks: &[NetworkState],
        cache_port: u16,
    ) -> Result<(), SandboxError> {
        if networks.iter().any(|n| n.egress == Egress::Nat) {
            std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").map_err(|e| {
                SandboxError::io(
                    "enabling IPv4 forwarding in",
                    "/proc/sys/net/ipv4/ip_forward",
                    e,
                )
            })?;
        }
        let script = firewall_ruleset(cluster, networks, cache_port);
        host::run_with_input(
            "loading the cluster firewall",
            Command::new("nft").arg("-f").arg("-"),
            &script,
        )?;
        Ok(())
    }

    pub fn remove(cluster: &str) -> Result<(), SandboxError> {
        let table = table_name(cluster);
        let script = format!("table inet {table}\ndelete table inet {table}\n");
        host::run_with_input(
            "removing the cluster firewall",
            Command::new("nft").arg("-f").arg("-"),
            &script,
        )?;
        Ok(())
    }

    /// Cluster ids that have a table.
    pub fn cluster_ids() -> Vec<String> {
        let Ok(out) = host::run(
            "listing nftables tables",
            Command::new("nft").arg("list").arg("tables"),
        ) else {
            return Vec::new();
        };
        out.lines()
            .filter_map(|l| l.trim().strip_prefix("table inet rehearse_"))
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(name: &str, n: usize, egress: Egress) -> NetworkState {
        let cidr: ipnet::Ipv4Net = format!("10.213.{n}.0/24").parse().unwrap();
        NetworkState {
            name: name.into(),
            cidr,
            gateway: super::super::alloc::nth_host(cidr, 1),
            bridge: super::super::bridge_name("abcdef", n),
            egress,
        }
    }

    #[test]
    fn only_nat_networks_are_forwarded_and_masqueraded() {
        let rules = firewall_ruleset(
            "abcdef",
            &[net("a", 0, Egress::Nat), net("b", 1, Egress::None)],
            3142,
        );
        assert!(
            rules.contains("iifname { \"rhabcdef0\" } oifname != \"rh*\" accept"),
            "{rules}"
        );
        assert!(
            rules.contains("ip saddr { 10.213.0.0/24 } oifname != \"rh*\" masquerade"),
            "{rules}"
        );
        assert!(rules
            .contains("iifname { \"rhabcdef0\" } ip daddr 10.213.255.254 tcp dport 3142 accept"));
        assert!(
            !rules.contains("10.213.1.0/24"),
            "a `none` network is never masqueraded"
        );
    }

    #[test]
    fn packages_only_cluster_has_no_forwarding_or_nat() {
        let rules = firewall_ruleset("abcdef", &[net("a", 0, Egress::Packages)], 3142);
        assert!(!rules.contains("masquerade"));
        assert!(!rules.contains("oifname != \"rh*\" accept"));
        assert!(rules.contains("iifname { \"rhabcdef0\" } drop"));
    }
}
