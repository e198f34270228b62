//! Subnet allocation: a /24 per network from a pool, never overlapping another
//! cluster's networks nor a route the host already has.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use rehearse_spec::Topology;

use crate::state::{ClusterState, NetworkState};
use crate::SandboxError;

/// The address on the host where nodes reach the package cache. It lives on its
/// own bridge, inside the pool's last /24, which is never handed to a cluster.
pub const SERVICE_ADDR: Ipv4Addr = Ipv4Addr::new(10, 213, 255, 254);

pub fn subnet_pool() -> Ipv4Net {
    std::env::var("REHEARSE_SUBNET_POOL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| "10.213.0.0/16".parse().expect("valid pool"))
}

/// IPv4 routes of the host (bridges of clusters included: a cluster of
/// another state directory, or of an older rehearse, has a route and maybe
/// no lease), each with what to call it in an error.
pub fn host_routes() -> Vec<(Ipv4Net, String)> {
    let Ok(text) = std::fs::read_to_string("/proc/net/route") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let dest = u32::from_str_radix(f[1], 16).ok()?;
            let mask = u32::from_str_radix(f[7], 16).ok()?;
            if mask == 0 {
                return None; // the default route overlaps everything by design
            }
            let dest = Ipv4Addr::from(u32::from_be(dest));
            let prefix = u32::from_be(mask).count_ones() as u8;
            let net = Ipv4Net::new(dest, prefix).ok()?;
            Some((net, format!("the host route {net} (dev {})", f[0])))
        })
        .collect()
}

/// Chooses a subnet for every network of the topology, avoiding the
/// networks of `existing` clusters and every subnet in `elsewhere` (host
/// routes, other state directories' leases), each with its description.
pub fn allocate_networks(
    cluster: &str,
    topology: &Topology,
    existing: &[ClusterState],
    elsewhere: &[(Ipv4Net, String)],
    pool: Ipv4Net,
) -> Result<Vec<NetworkState>, SandboxError> {
    let mut taken: Vec<(Ipv4Net, String)> = existing
        .iter()
        .flat_map(|c| {
            c.networks
                .iter()
                .map(move |n| (n.cidr, format!("network {} of cluster {}", n.name, c.id)))
        })
        .collect();
    taken.extend(elsewhere.iter().cloned());
    let service = Ipv4Net::new(SERVICE_ADDR, 24).expect("valid").trunc();
    taken.push((service, "rehearse's service network".to_string()));

    let mut out = Vec::new();
    // Explicit CIDRs first, so auto-allocated ones avoid them.
    for (n, spec) in topology.networks.iter().enumerate() {
        if let Some(cidr) = spec.cidr {
            if let Some((_, other)) = taken.iter().find(|(t, _)| overlaps(t, &cidr)) {
                return Err(SandboxError::NetworkConflict {
                    network: spec.name.clone(),
                    cidr: cidr.to_string(),
                    other: other.clone(),
                });
            }
            taken.push((cidr, format!("network {}", spec.name)));
            out.push((n, cidr));
        }
    }
    let mut candidates = pool.subnets(24).map_err(|_| SandboxError::PoolExhausted {
        pool: pool.to_string(),
    })?;
    for (n, spec) in topology.networks.iter().enumerate() {
        if spec.cidr.is_some() {
            continue;
        }
        let cidr = candidates
            .find(|c| !taken.iter().any(|(t, _)| overlaps(t, c)))
            .ok_or_else(|| SandboxError::PoolExhausted {
                pool: pool.to_string(),
            })?;
        taken.push((cidr, format!("network {}", spec.name)));
        out.push((n, cidr));
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(out
        .into_iter()
        .map(|(n, cidr)| {
            let spec = &topology.networks[n];
            NetworkState {
                name: spec.name.clone(),
                cidr,
                gateway: nth_host(cidr, 1),
                bridge: super::bridge_name(cluster, n),
                egress: spec.egress,
            }
        })
        .collect())
}

/// The `i`th address of a subnet (1 is the gateway; nodes start at 2).
pub fn nth_host(net: Ipv4Net, i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(net.network()) + i)
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topo(yaml: &str) -> Topology {
        Topology::from_yaml(yaml, "t.yaml").unwrap()
    }

    #[test]
    fn auto_subnets_skip_taken_ones_and_host_routes() {
        let t = topo("nodes: [{name: a, networks: [x, y]}]\nnetworks: [{name: x}, {name: y}]\n");
        let pool: Ipv4Net = "10.213.0.0/16".parse().unwrap();
        let host = vec![("10.213.0.0/24".parse().unwrap(), "a route".to_string())];
        let nets = allocate_networks("abcdef", &t, &[], &host, pool).unwrap();
        assert_eq!(nets[0].cidr.to_string(), "10.213.1.0/24");
        assert_eq!(nets[1].cidr.to_string(), "10.213.2.0/24");
        assert_eq!(nets[0].gateway.to_string(), "10.213.1.1");
        assert_eq!(nets[1].bridge, "rhabcdef1");
    }

    #[test]
    fn explicit_cidr_colliding_with_another_cluster_is_refused() {
        let t = topo("nodes: [a]\nnetworks: [{name: x, cidr: 10.50.0.0/24}]\n");
        let pool: Ipv4Net = "10.213.0.0/16".parse().unwrap();
        let first = allocate_networks("aaaaaa", &t, &[], &[], pool).unwrap();
        let other = ClusterState {
            id: "aaaaaa".into(),
            status: crate::state::ClusterStatus::Ready,
            created_at: 0,
            expires_at: 0,
            owner: None,
            belongs_to: None,
            boot_id: String::new(),
            networks: first,
            nodes: vec![],
            boot_ms: None,
            source: String::new(),
            from_pool: false,
        };
        let err = allocate_networks("bbbbbb", &t, &[other], &[], pool).unwrap_err();
        assert!(err.to_string().contains("cluster aaaaaa"), "{err}");
    }
}
