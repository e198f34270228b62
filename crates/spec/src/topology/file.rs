//! The YAML form of a topology, as users write it: shorthands, defaults left out,
//! CIDRs and ttl as text. It is turned into a [`Topology`] by filling in defaults,
//! so the rest of rehearse only ever sees the explicit form.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

pub(crate) use super::limits::LimitsFile;
use super::limits::{MemoryField, NodeLimits};
use super::DEFAULT_IMAGE;
use super::{
    networks_path, nodes_path, rules, Egress, NetworkSpec, NodeBackend, NodeSpec, Topology,
};
use crate::error::{ErrorKind, SpecError};
use crate::source::{FieldPath, Source};

/// A disposable cluster of systemd-nspawn nodes for testing infrastructure code.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "rehearse topology")]
pub(crate) struct TopologyFile {
    /// The nodes: a count (`nodes: 3` gives node1..node3 with defaults) or a list
    /// of nodes, each a name or a mapping.
    pub(crate) nodes: NodesField,
    /// The networks between nodes. Default: one network named `default`, with an
    /// allocated CIDR and `packages` egress.
    #[serde(default)]
    pub(crate) networks: Option<Vec<NetworkFile>>,
    /// How long the cluster may live before it is reclaimed, e.g. `30m`, `2h`, `90s`.
    #[serde(default)]
    #[schemars(example = ttl_example())]
    pub(crate) ttl: Option<String>,
    /// Resource limits of every node that sets none of its own: `memory`,
    /// `cpus`, `pids`. Default: half the host's memory, no CPU cap, 4096 pids.
    #[serde(default)]
    pub(crate) limits: Option<LimitsFile>,
}

pub(crate) fn ttl_example() -> &'static str {
    "45m"
}

/// `nodes: 3` or `nodes: [...]`.
#[derive(JsonSchema)]
#[schemars(untagged)]
pub(crate) enum NodesField {
    /// node1..nodeN with default image and networks.
    Count(#[schemars(range(min = 1, max = 32))] u64),
    List(Vec<NodeEntry>),
}

/// `- web1` or `- {name: web1, ...}`.
#[derive(JsonSchema)]
#[schemars(untagged)]
pub(crate) enum NodeEntry {
    /// A node with defaults for everything but its name.
    Name(String),
    Full(NodeFile),
}

/// One node of the cluster.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeFile {
    /// Hostname: `[a-z][a-z0-9-]*`, at most 32 characters, unique.
    name: String,
    /// Golden image to boot. Default: `debian-12`.
    #[serde(default)]
    image: Option<String>,
    /// Networks to attach, in interface order; each must be declared under
    /// `networks`. Default: the first network.
    #[serde(default)]
    networks: Option<Vec<String>>,
    /// Free labels `[a-z][a-z0-9_-]*` for addressing several nodes at once.
    #[serde(default)]
    groups: Vec<String>,
    /// What runs the node: `nspawn` (a container sharing the host's kernel) or
    /// `vm` (a QEMU microVM with its own kernel, for modules, sysctls, disks).
    /// Default: the engine's choice (`--backend`, else `nspawn`).
    #[serde(default)]
    backend: Option<NodeBackend>,
    /// The most memory the node may use, e.g. `512M`, `2G` (powers of 1024);
    /// past it the kernel OOM-kills a process of this node only. Default:
    /// the topology's `limits`, else half the host's memory.
    #[serde(default)]
    memory: Option<MemoryField>,
    /// The most CPU time, in CPUs, e.g. `0.5`, `2`. Default: the topology's
    /// `limits`, else no cap (nodes share the CPUs fairly).
    #[serde(default)]
    cpus: Option<f64>,
    /// The most processes and threads at once. Default: the topology's
    /// `limits`, else 4096.
    #[serde(default)]
    pids: Option<u64>,
}

/// One network: a bridge on the host with its own IPv4 subnet.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct NetworkFile {
    /// Network name: `[a-z][a-z0-9-]*`, at most 32 characters, unique.
    name: String,
    /// IPv4 subnet such as `10.213.40.0/24`, /29 or shorter. Default: allocated.
    #[serde(default)]
    cidr: Option<String>,
    /// What nodes may reach outside the cluster. Default: `packages`.
    #[serde(default)]
    egress: Egress,
}

impl NodesField {
    /// Names of the nodes that name their image themselves.
    pub(crate) fn pinned(&self) -> Vec<String> {
        match self {
            NodesField::Count(_) => Vec::new(),
            NodesField::List(entries) => entries
                .iter()
                .filter_map(|entry| match entry {
                    NodeEntry::Full(file) if file.image.is_some() => Some(file.name.clone()),
                    _ => None,
                })
                .collect(),
        }
    }
}

impl<'de> Deserialize<'de> for NodesField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodesVisitor;

        impl<'de> Visitor<'de> for NodesVisitor {
            type Value = NodesField;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a node count or a list of nodes")
            }

            fn visit_u64<E: serde::de::Error>(self, count: u64) -> Result<Self::Value, E> {
                Ok(NodesField::Count(count))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                Vec::deserialize(SeqAccessDeserializer::new(seq)).map(NodesField::List)
            }
        }

        deserializer.deserialize_any(NodesVisitor)
    }
}

impl<'de> Deserialize<'de> for NodeEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Hand-written rather than `#[serde(untagged)]`, which would replace the
        // precise error of a mapping (an unknown key, say) by "did not match any
        // variant".
        struct EntryVisitor;

        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = NodeEntry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a node name or a mapping with a `name` key")
            }

            fn visit_str<E: serde::de::Error>(self, name: &str) -> Result<Self::Value, E> {
                Ok(NodeEntry::Name(name.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                NodeFile::deserialize(MapAccessDeserializer::new(map)).map(NodeEntry::Full)
            }
        }

        deserializer.deserialize_any(EntryVisitor)
    }
}

impl TopologyFile {
    /// Fills in the defaults and parses CIDRs and ttl; the result is not yet checked.
    pub(super) fn into_topology(self, source: &Source) -> Result<Topology, SpecError> {
        let networks = match self.networks {
            None => vec![NetworkSpec::default_network()],
            Some(networks) => networks
                .into_iter()
                .enumerate()
                .map(|(i, network)| network.into_spec(source, &networks_path().at(i)))
                .collect::<Result<_, _>>()?,
        };
        let default_networks: Vec<String> = networks
            .first()
            .map(|network: &NetworkSpec| network.name.clone())
            .into_iter()
            .collect();
        let defaults = match self.limits {
            Some(limits) => limits
                .into_limits()
                .map_err(|(field, e)| source.at(&FieldPath::key("limits").field(field.key()), e))?,
            None => NodeLimits::default(),
        };
        let node = |name: String| NodeSpec {
            name,
            image: DEFAULT_IMAGE.to_owned(),
            networks: default_networks.clone(),
            groups: Vec::new(),
            backend: None,
            limits: defaults,
        };

        let nodes = match self.nodes {
            NodesField::Count(count) => {
                // Checked before building, so `nodes: 1000000000` allocates nothing.
                rules::node_count(usize::try_from(count).unwrap_or(usize::MAX), source)?;
                (1..=count).map(|i| node(format!("node{i}"))).collect()
            }
            NodesField::List(entries) => entries
                .into_iter()
                .enumerate()
                .map(|(i, entry)| match entry {
                    NodeEntry::Name(name) => Ok(node(name)),
                    NodeEntry::Full(file) => {
                        let own = LimitsFile {
                            memory: file.memory,
                            cpus: file.cpus,
                            pids: file.pids,
                        }
                        .into_limits()
                        .map_err(|(field, e)| {
                            source.at(&nodes_path().at(i).field(field.key()), e)
                        })?;
                        Ok(NodeSpec {
                            image: file.image.unwrap_or_else(|| DEFAULT_IMAGE.to_owned()),
                            networks: file.networks.unwrap_or_else(|| default_networks.clone()),
                            groups: file.groups,
                            backend: file.backend,
                            name: file.name,
                            limits: own.or(defaults),
                        })
                    }
                })
                .collect::<Result<_, SpecError>>()?,
        };

        let ttl = match self.ttl {
            Some(text) => Some(parse_ttl(&text).map_err(|e| source.at(&FieldPath::key("ttl"), e))?),
            None => None,
        };

        Ok(Topology {
            nodes,
            networks,
            ttl,
        })
    }
}

impl NetworkFile {
    fn into_spec(self, source: &Source, path: &FieldPath) -> Result<NetworkSpec, SpecError> {
        let cidr = match &self.cidr {
            Some(text) => {
                Some(rules::parse_cidr(text).map_err(|e| source.at(&path.field("cidr"), e))?)
            }
            None => None,
        };
        Ok(NetworkSpec {
            name: self.name,
            cidr,
            egress: self.egress,
        })
    }
}

/// Parses a humantime duration such as `45m`, `2h` or `1h 30m`.
fn parse_ttl(text: &str) -> Result<Duration, SpecError> {
    humantime::parse_duration(text).map_err(|e| {
        SpecError::new(
            ErrorKind::InvalidTtl,
            format!("invalid ttl \"{}\": {e}", text.escape_default()),
        )
        .with_hint(TTL_HINT)
    })
}

pub(super) const TTL_HINT: &str =
    "write a duration with a unit, such as \"90s\", \"30m\", \"2h\" or \"1h 30m\"";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_accepts_humantime_forms() {
        assert_eq!(parse_ttl("90s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_ttl("45m").ok(), Some(Duration::from_secs(45 * 60)));
        assert_eq!(parse_ttl("1h 30m").ok(), Some(Duration::from_secs(90 * 60)));
        assert!(parse_ttl("45").is_err());
        assert!(parse_ttl("soon").is_err());
    }
}
