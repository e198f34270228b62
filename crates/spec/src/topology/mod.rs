//! The shape of a cluster: its nodes, the networks between them and how long it
//! may live.
//!
//! A topology comes from a YAML file (see [`Topology::from_yaml`] for the form) or
//! from `--nodes N` ([`Topology::with_nodes`]). Either way it is fully validated
//! here, so the engine never starts half a cluster for a spec it would later
//! refuse.

pub(crate) mod file;
pub mod limits;
mod rules;

pub use limits::NodeLimits;

use std::borrow::Cow;
use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use ipnet::Ipv4Net;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use crate::error::{ErrorKind, SpecError};
use crate::source::{self, FieldPath, Source};

/// The image a node runs when its spec names none.
pub const DEFAULT_IMAGE: &str = "debian-12";
/// The network created when a topology declares none.
pub const DEFAULT_NETWORK: &str = "default";
/// The most nodes one cluster may have: every node is a container with its own
/// systemd, and the machine running them is a developer's laptop or a CI runner.
pub const MAX_NODES: usize = 32;
/// The most networks one cluster may have; each one is a bridge on the host.
pub const MAX_NETWORKS: usize = 8;

/// A validated cluster description.
///
/// Serialises to the explicit YAML form (every default written out), which
/// [`Topology::from_yaml`] reads back to an equal value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Topology {
    /// The nodes, in file order; the order is the order of address allocation.
    pub nodes: Vec<NodeSpec>,
    /// The networks, in file order; never empty.
    pub networks: Vec<NetworkSpec>,
    /// How long the cluster may live before it is reclaimed; `None` for no limit
    /// set by the topology (the engine may still apply its own).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "ttl_text::serialize"
    )]
    pub ttl: Option<Duration>,
}

/// One node: a container booted from an image, attached to some networks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NodeSpec {
    /// Hostname of the node, unique in the topology.
    pub name: String,
    /// Name of the golden image the node boots from.
    pub image: String,
    /// Names of the networks the node has an interface on, in interface order.
    pub networks: Vec<String>,
    /// Free labels, used to target several nodes at once (e.g. inventory groups).
    pub groups: Vec<String>,
    /// What runs the node; `None` leaves the choice to the engine (`--backend`,
    /// default a container).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<NodeBackend>,
    /// What the node may use of the host; a limit left out is the engine's
    /// default.
    #[serde(flatten)]
    pub limits: NodeLimits,
}

/// What runs a node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NodeBackend {
    /// A systemd-nspawn container: boots in well under a second, shares the
    /// host's kernel (no modules, no sysctls outside its network namespace).
    #[default]
    Nspawn,
    /// A QEMU microVM with its own Debian kernel: slower to boot, but kernel
    /// modules, every sysctl, disks and filesystems are its own.
    Vm,
}

impl NodeBackend {
    /// Every backend, in the order they are documented.
    pub const ALL: [NodeBackend; 2] = [NodeBackend::Nspawn, NodeBackend::Vm];

    /// The name used in YAML, on the command line and in cluster state.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeBackend::Nspawn => "nspawn",
            NodeBackend::Vm => "vm",
        }
    }
}

impl fmt::Display for NodeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeBackend {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeBackend::ALL
            .into_iter()
            .find(|b| b.as_str() == s)
            .ok_or_else(|| {
                SpecError::new(
                    ErrorKind::InvalidValue,
                    format!("unknown backend \"{}\"", s.escape_default()),
                )
                .with_hint("use one of: nspawn, vm")
            })
    }
}

/// One network: a bridge on the host with an IPv4 subnet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NetworkSpec {
    /// Name of the network, unique in the topology.
    pub name: String,
    /// The subnet; `None` lets the engine allocate a free one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Ipv4Net>,
    /// What nodes on this network may reach outside the cluster.
    pub egress: Egress,
}

/// What traffic may leave a network for the outside world.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Egress {
    /// Nothing leaves the cluster.
    None,
    /// Only the package mirrors, through a proxy: tests can install packages but
    /// cannot depend on the internet by accident.
    #[default]
    Packages,
    /// Full outbound access through NAT.
    Nat,
}

impl Egress {
    /// Every mode, in the order they are documented.
    pub const ALL: [Egress; 3] = [Egress::None, Egress::Packages, Egress::Nat];

    /// The name used in YAML and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Egress::None => "none",
            Egress::Packages => "packages",
            Egress::Nat => "nat",
        }
    }
}

impl fmt::Display for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Egress {
    type Err = SpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Egress::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| {
                SpecError::new(
                    ErrorKind::InvalidValue,
                    format!("unknown egress mode \"{}\"", s.escape_default()),
                )
                .with_hint("use one of: none, packages, nat")
            })
    }
}

impl NetworkSpec {
    /// The network created when a topology declares none.
    pub fn default_network() -> NetworkSpec {
        NetworkSpec {
            name: DEFAULT_NETWORK.to_owned(),
            cidr: None,
            egress: Egress::default(),
        }
    }

    /// How many nodes fit on the network, or `None` while its CIDR is unallocated.
    pub fn capacity(&self) -> Option<usize> {
        self.cidr.map(|cidr| usable_hosts(cidr.prefix_len()))
    }
}

/// Node addresses in a subnet of this prefix length: all addresses but the network
/// address, the broadcast address and the gateway (`.1`, the host's bridge).
pub(crate) fn usable_hosts(prefix_len: u8) -> usize {
    let size = 1usize << (32 - u32::from(prefix_len.min(32)));
    size.saturating_sub(3)
}

impl Topology {
    /// Reads, parses and validates a topology file.
    pub fn from_path(path: &Path) -> Result<Topology, SpecError> {
        let text = source::read(path)?;
        Topology::from_yaml(&text, &path.display().to_string())
    }

    /// Parses and validates a topology written in YAML; `origin` is the file name
    /// shown in errors.
    ///
    /// ```yaml
    /// nodes:                    # or `nodes: 3` for node1..node3
    ///   - name: lb
    ///     image: debian-12      # default: debian-12
    ///     networks: [front, back]   # default: the first network
    ///     groups: [balancers]
    ///     backend: vm           # nspawn | vm; default: the engine's (--backend)
    ///     memory: 512M          # limits; default: `limits:` below, else the engine's
    ///     cpus: 1.5
    ///     pids: 2048
    ///   - web1                  # same as {name: web1}
    /// networks:                 # default: one network named "default"
    ///   - name: front
    ///     cidr: 10.213.40.0/24  # default: allocated by the engine
    ///     egress: packages      # none | packages | nat
    /// ttl: 45m
    /// limits: {memory: 1G}      # every node's default limits
    /// ```
    pub fn from_yaml(text: &str, origin: &str) -> Result<Topology, SpecError> {
        let source = Source::file(origin, text);
        if let Some(error) = source.duplicate_key() {
            return Err(error);
        }
        let parsed: file::TopologyFile =
            serde_yaml::from_str(text).map_err(|e| source.yaml_error(&e))?;
        Topology::from_file(parsed, &source)
    }

    /// Reads a topology given as an already parsed value (the JSON of a
    /// request) rather than as text, by the same rules and with the same
    /// messages as a file; errors name the field (`nodes[1].name`) but no line.
    pub fn from_value(value: serde_json::Value) -> Result<Topology, SpecError> {
        let source = Source::detached();
        let parsed: file::TopologyFile = source.deserialize(value)?;
        Topology::from_file(parsed, &source)
    }

    /// The topology of `nodes` and `networks` as a request gives them.
    pub fn from_input(
        nodes: NodesInput,
        networks: Option<NetworksInput>,
    ) -> Result<Topology, SpecError> {
        let mut document = serde_json::Map::new();
        document.insert("nodes".to_owned(), nodes.0);
        if let Some(networks) = networks {
            document.insert("networks".to_owned(), networks.0);
        }
        Topology::from_value(serde_json::Value::Object(document))
    }

    /// The checked topology of a parsed file; `source` places errors in its text.
    /// Scenario files hold the same keys, so they share this.
    pub(crate) fn from_file(
        parsed: file::TopologyFile,
        source: &Source,
    ) -> Result<Topology, SpecError> {
        let topology = parsed.into_topology(source)?;
        topology.validate_at(source)?;
        Ok(topology)
    }

    /// `n` nodes named node1..nodeN booting `image`, all on the default network:
    /// the topology of `--nodes N`.
    pub fn with_nodes(n: usize, image: &str) -> Result<Topology, SpecError> {
        let source = Source::detached();
        rules::node_count(n, &source)?;
        let topology = Topology {
            nodes: (1..=n)
                .map(|i| NodeSpec {
                    name: format!("node{i}"),
                    image: image.to_owned(),
                    networks: vec![DEFAULT_NETWORK.to_owned()],
                    groups: Vec::new(),
                    backend: None,
                    limits: NodeLimits::default(),
                })
                .collect(),
            networks: vec![NetworkSpec::default_network()],
            ttl: None,
        };
        topology.validate_at(&source)?;
        Ok(topology)
    }

    /// Checks every rule of the format; for topologies built or changed in code.
    /// Errors name the field but carry no location.
    pub fn validate(&self) -> Result<(), SpecError> {
        self.validate_at(&Source::detached())
    }

    /// The JSON Schema of the YAML form, for editors and `rehearse schema`.
    pub fn json_schema() -> serde_json::Value {
        crate::file_schema::<file::TopologyFile>()
    }

    /// Gives `backend` to every node whose topology left the choice open
    /// (`--backend` on the command line).
    pub fn set_default_backend(&mut self, backend: NodeBackend) {
        for node in &mut self.nodes {
            node.backend.get_or_insert(backend);
        }
    }

    /// The node named `name`.
    pub fn node(&self, name: &str) -> Option<&NodeSpec> {
        self.nodes.iter().find(|node| node.name == name)
    }

    /// The network named `name`.
    pub fn network(&self, name: &str) -> Option<&NetworkSpec> {
        self.networks.iter().find(|network| network.name == name)
    }

    /// The nodes attached to the network named `network`, in topology order.
    pub fn nodes_on<'a>(&'a self, network: &'a str) -> impl Iterator<Item = &'a NodeSpec> + 'a {
        self.nodes
            .iter()
            .filter(move |node| node.networks.iter().any(|n| n == network))
    }
}

/// Paths of the topology's fields, shared by parsing and checking.
fn nodes_path() -> FieldPath {
    FieldPath::key("nodes")
}

fn networks_path() -> FieldPath {
    FieldPath::key("networks")
}

/// A ttl written as a humantime duration (`45m`, `1h 30m`), as in the YAML form.
mod ttl_text {
    use std::time::Duration;

    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(
        ttl: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match ttl {
            Some(ttl) => serializer.collect_str(&humantime::format_duration(*ttl)),
            None => serializer.serialize_none(),
        }
    }
}

/// The nodes of a topology as a request carries them, in the form of a
/// topology file's `nodes:` (a count, or a list of names and mappings). Kept
/// as given until [`Topology::from_input`] reads them, so that errors name the
/// field; the JSON Schema is that of `nodes:`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodesInput(pub serde_json::Value);

impl JsonSchema for NodesInput {
    fn schema_name() -> Cow<'static, str> {
        file::NodesField::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        file::NodesField::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        file::NodesField::json_schema(generator)
    }
}

/// The networks of a topology as a request carries them, in the form of a
/// topology file's `networks:`; read by [`Topology::from_input`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NetworksInput(pub serde_json::Value);

impl JsonSchema for NetworksInput {
    fn schema_name() -> Cow<'static, str> {
        "NetworksInput".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        <Vec<file::NetworkFile>>::json_schema(generator)
    }
}
