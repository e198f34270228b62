//! The rules a topology must follow before anything is started.
//!
//! The rules run on the explicit [`Topology`], so a topology from a file and one built
//! in code are held to the same rules; a file's [`Source`] only adds positions.
//! The first broken rule is reported, in file order within each kind of rule.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use ipnet::{IpNet, Ipv4Net};

use super::file::TTL_HINT;
use super::{networks_path, nodes_path, usable_hosts, Topology, MAX_NETWORKS, MAX_NODES};
use crate::error::{ErrorKind, SpecError};
use crate::names;
use crate::source::{FieldPath, Source};

/// The longest prefix accepted: a /29 holds 5 nodes, a /30 just one.
const MAX_PREFIX_LEN: u8 = 29;

/// Ranges that cannot carry a cluster network: traffic to them never reaches a
/// bridge, or is meant for the host itself.
const RESERVED: [(&str, Ipv4Addr, u8); 5] = [
    ("\"this network\"", Ipv4Addr::new(0, 0, 0, 0), 8),
    ("loopback", Ipv4Addr::new(127, 0, 0, 0), 8),
    ("link-local", Ipv4Addr::new(169, 254, 0, 0), 16),
    ("multicast", Ipv4Addr::new(224, 0, 0, 0), 4),
    ("reserved", Ipv4Addr::new(240, 0, 0, 0), 4),
];

const CIDR_EXAMPLE: &str = "10.213.40.0/24";

/// Refuses a node count of 0 or more than [`MAX_NODES`]: `nodes: N` and `--nodes N`.
pub(super) fn node_count(count: usize, source: &Source) -> Result<(), SpecError> {
    if count == 0 {
        Err(source.at(&nodes_path(), no_nodes()))
    } else if count > MAX_NODES {
        Err(source.at(&nodes_path(), too_many_nodes(count)))
    } else {
        Ok(())
    }
}

fn no_nodes() -> SpecError {
    SpecError::new(ErrorKind::Limit, "the topology has no nodes")
        .with_hint("list at least one node, or write `nodes: 3` for node1..node3")
}

fn too_many_nodes(count: usize) -> SpecError {
    SpecError::new(
        ErrorKind::Limit,
        format!("the topology has {count} nodes; at most {MAX_NODES} are supported"),
    )
    .with_hint(format!(
        "split the test into clusters of at most {MAX_NODES} nodes"
    ))
}

/// Parses the text of a `cidr` field; further rules are checked on the value.
pub(super) fn parse_cidr(text: &str) -> Result<Ipv4Net, SpecError> {
    let invalid = |message: String, hint: String| {
        Err(SpecError::new(ErrorKind::InvalidCidr, message).with_hint(hint))
    };
    match text.trim().parse::<IpNet>() {
        Ok(IpNet::V4(net)) => Ok(net),
        Ok(IpNet::V6(net)) => invalid(
            format!("{net} is an IPv6 network; only IPv4 networks are supported"),
            format!("use an IPv4 network such as {CIDR_EXAMPLE}"),
        ),
        Err(_) => match text.trim().parse::<IpAddr>() {
            Ok(addr) => invalid(
                format!("\"{addr}\" has no prefix length"),
                format!("write the network with its prefix length, such as {addr}/24"),
            ),
            Err(_) => invalid(
                format!("\"{}\" is not a CIDR", text.escape_default()),
                format!("write an IPv4 network with its prefix length, such as {CIDR_EXAMPLE}"),
            ),
        },
    }
}

/// "first defined at line 4" from a file, "first defined as nodes[0]" otherwise.
fn first_defined(source: &Source, path: &FieldPath) -> String {
    match source.line_of(path) {
        Some(line) => format!("first defined at line {line}"),
        None => format!("first defined as {path}"),
    }
}

/// The longest prefix with room for `count` nodes.
fn prefix_for(count: usize) -> u8 {
    (0..=MAX_PREFIX_LEN)
        .rev()
        .find(|&prefix| usable_hosts(prefix) >= count)
        .unwrap_or(0)
}

fn overlaps(a: &Ipv4Net, b: &Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

impl Topology {
    pub(super) fn validate_at(&self, source: &Source) -> Result<(), SpecError> {
        self.validate_counts(source)?;
        self.validate_networks(source)?;
        self.validate_nodes(source)?;
        self.validate_capacity(source)?;
        self.validate_ttl(source)
    }

    fn validate_counts(&self, source: &Source) -> Result<(), SpecError> {
        if self.nodes.is_empty() {
            return Err(source.at(&nodes_path(), no_nodes()));
        }
        if self.nodes.len() > MAX_NODES {
            let path = nodes_path().at(MAX_NODES);
            return Err(source.at(&path, too_many_nodes(self.nodes.len())));
        }
        if self.networks.is_empty() {
            let error = SpecError::new(ErrorKind::Limit, "the topology declares no network")
                .with_hint(
                    "declare at least one network, or remove `networks` to get the default one",
                );
            return Err(source.at(&networks_path(), error));
        }
        if self.networks.len() > MAX_NETWORKS {
            let error = SpecError::new(
                ErrorKind::Limit,
                format!(
                    "the topology declares {} networks; at most {MAX_NETWORKS} are supported",
                    self.networks.len()
                ),
            )
            .with_hint("attach nodes to fewer networks; several roles can share one network");
            return Err(source.at(&networks_path().at(MAX_NETWORKS), error));
        }
        Ok(())
    }

    fn validate_networks(&self, source: &Source) -> Result<(), SpecError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, network) in self.networks.iter().enumerate() {
            let path = networks_path().at(i);
            names::NETWORK
                .validate(&network.name)
                .map_err(|e| source.at(&path.field("name"), e))?;
            if let Some(&first) = seen.get(network.name.as_str()) {
                let error = SpecError::new(
                    ErrorKind::Duplicate,
                    format!(
                        "duplicate network name \"{}\" ({})",
                        network.name,
                        first_defined(source, &networks_path().at(first).field("name"))
                    ),
                )
                .with_hint("give every network a unique name");
                return Err(source.at(&path.field("name"), error));
            }
            seen.insert(&network.name, i);

            let Some(cidr) = network.cidr else { continue };
            let cidr_path = path.field("cidr");
            validate_cidr(&cidr).map_err(|e| source.at(&cidr_path, e))?;
            for (j, other) in self.networks[..i].iter().enumerate() {
                let Some(other_cidr) = other.cidr else {
                    continue;
                };
                if overlaps(&cidr, &other_cidr) {
                    let other_path = networks_path().at(j).field("cidr");
                    let error = SpecError::new(
                        ErrorKind::Overlap,
                        format!(
                            "network \"{}\" ({cidr}) overlaps network \"{}\" ({other_cidr}{})",
                            network.name,
                            other.name,
                            source
                                .line_of(&other_path)
                                .map(|line| format!(", line {line}"))
                                .unwrap_or_default(),
                        ),
                    )
                    .with_hint(
                        "give each network its own range, or remove `cidr` to have one allocated",
                    );
                    return Err(source.at(&cidr_path, error));
                }
            }
        }
        Ok(())
    }

    fn validate_nodes(&self, source: &Source) -> Result<(), SpecError> {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            let path = nodes_path().at(i);
            names::HOSTNAME
                .validate(&node.name)
                .map_err(|e| source.at(&path.field("name"), e))?;
            if let Some(&first) = seen.get(node.name.as_str()) {
                let error = SpecError::new(
                    ErrorKind::Duplicate,
                    format!(
                        "duplicate node name \"{}\" ({})",
                        node.name,
                        first_defined(source, &nodes_path().at(first).field("name"))
                    ),
                )
                .with_hint("give every node a unique name");
                return Err(source.at(&path.field("name"), error));
            }
            seen.insert(&node.name, i);

            names::IMAGE
                .validate(&node.image)
                .map_err(|e| source.at(&path.field("image"), e))?;
            for (g, group) in node.groups.iter().enumerate() {
                names::GROUP
                    .validate(group)
                    .map_err(|e| source.at(&path.field("groups").at(g), e))?;
            }
            super::limits::validate(&node.limits)
                .map_err(|(field, e)| source.at(&path.field(field.key()), e))?;
            if node.backend == Some(super::NodeBackend::Vm) && node.limits.pids.is_some() {
                let error = SpecError::new(
                    ErrorKind::InvalidValue,
                    format!(
                        "node \"{}\" runs as a vm, where `pids` cannot be limited from the host",
                        node.name
                    ),
                )
                .with_hint("remove `pids` from this node (a VM's processes live in its own kernel), or run it as a container (`backend: nspawn`)");
                return Err(source.at(&path.field("pids"), error));
            }
            self.validate_node_networks(i, source)?;
        }
        Ok(())
    }

    fn validate_node_networks(&self, i: usize, source: &Source) -> Result<(), SpecError> {
        let node = &self.nodes[i];
        let path = nodes_path().at(i).field("networks");
        if node.networks.is_empty() {
            let error = SpecError::new(
                ErrorKind::UndeclaredNetwork,
                format!("node \"{}\" is attached to no network", node.name),
            )
            .with_hint("list at least one network, or remove `networks` to attach the node to the first one");
            return Err(source.at(&path, error));
        }
        for (k, name) in node.networks.iter().enumerate() {
            if self.network(name).is_none() {
                let declared: Vec<&str> = self.networks.iter().map(|n| n.name.as_str()).collect();
                let error = SpecError::new(
                    ErrorKind::UndeclaredNetwork,
                    format!(
                        "network \"{}\" is not declared (declared: {})",
                        name.escape_default(),
                        declared.join(", ")
                    ),
                )
                .with_hint(format!(
                    "declare it under `networks`, or use one of: {}",
                    declared.join(", ")
                ));
                return Err(source.at(&path.at(k), error));
            }
            if node.networks[..k].contains(name) {
                let error = SpecError::new(
                    ErrorKind::Duplicate,
                    format!(
                        "network \"{name}\" is listed twice for node \"{}\"",
                        node.name
                    ),
                )
                .with_hint("list each network once; a node has one interface per network");
                return Err(source.at(&path.at(k), error));
            }
        }
        Ok(())
    }

    fn validate_capacity(&self, source: &Source) -> Result<(), SpecError> {
        for (i, network) in self.networks.iter().enumerate() {
            let (Some(cidr), Some(capacity)) = (network.cidr, network.capacity()) else {
                continue;
            };
            let count = self.nodes_on(&network.name).count();
            if count > capacity {
                let error = SpecError::new(
                    ErrorKind::Capacity,
                    format!(
                        "network \"{}\" has {count} nodes but {cidr} has room for only {capacity} \
                         (network, broadcast and gateway addresses are reserved)",
                        network.name
                    ),
                )
                .with_hint(format!(
                    "use a /{} or shorter prefix, or remove `cidr` to have one allocated",
                    prefix_for(count)
                ));
                return Err(source.at(&networks_path().at(i).field("cidr"), error));
            }
        }
        Ok(())
    }

    fn validate_ttl(&self, source: &Source) -> Result<(), SpecError> {
        if self.ttl.is_some_and(|ttl| ttl.is_zero()) {
            let error = SpecError::new(ErrorKind::InvalidTtl, "ttl must be longer than zero")
                .with_hint(TTL_HINT);
            return Err(source.at(&FieldPath::key("ttl"), error));
        }
        Ok(())
    }
}

/// The rules a CIDR must follow on its own (overlaps involve the whole topology).
fn validate_cidr(cidr: &Ipv4Net) -> Result<(), SpecError> {
    let invalid = |message: String, hint: String| {
        Err(SpecError::new(ErrorKind::InvalidCidr, message).with_hint(hint))
    };
    if cidr.addr() != cidr.network() {
        return invalid(
            format!("{cidr} has host bits set"),
            format!("write the network address: {}", cidr.trunc()),
        );
    }
    if cidr.prefix_len() > MAX_PREFIX_LEN {
        return invalid(
            format!(
                "prefix /{} is too long: it leaves room for {} node(s)",
                cidr.prefix_len(),
                usable_hosts(cidr.prefix_len())
            ),
            format!(
                "use a /{MAX_PREFIX_LEN} (room for {} nodes) or a shorter prefix",
                usable_hosts(MAX_PREFIX_LEN)
            ),
        );
    }
    for (what, addr, len) in RESERVED {
        let reserved = Ipv4Net::new(addr, len).unwrap_or_default();
        if overlaps(cidr, &reserved) {
            return invalid(
                format!("{cidr} overlaps the {what} range {reserved}"),
                format!(
                    "use a private range such as {CIDR_EXAMPLE}, 172.16.0.0/24 or 192.168.100.0/24"
                ),
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_for_counts() {
        assert_eq!(prefix_for(5), 29);
        assert_eq!(prefix_for(6), 28);
        assert_eq!(prefix_for(13), 28);
        assert_eq!(prefix_for(14), 27);
        assert_eq!(prefix_for(32), 26);
    }

    #[test]
    fn cidr_rules() {
        let net = |s: &str| s.parse::<Ipv4Net>().expect("test CIDR parses");
        assert!(validate_cidr(&net("10.0.0.0/24")).is_ok());
        assert!(validate_cidr(&net("10.0.0.0/29")).is_ok());
        assert!(validate_cidr(&net("10.0.0.0/30")).is_err());
        assert!(validate_cidr(&net("127.1.0.0/24")).is_err());
        assert!(validate_cidr(&net("0.0.0.0/0")).is_err());
        let error = validate_cidr(&net("10.0.0.5/24")).expect_err("host bits refused");
        assert_eq!(error.hint(), Some("write the network address: 10.0.0.0/24"));
    }
}
