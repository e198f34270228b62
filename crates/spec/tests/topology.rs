//! Topology files as a user writes them: what is accepted, what each default is,
//! and that every refusal points at the right line and field.

use std::path::Path;
use std::time::Duration;

use rehearse_spec::{
    Egress, ErrorKind, SpecError, Topology, DEFAULT_IMAGE, DEFAULT_NETWORK, MAX_NETWORKS, MAX_NODES,
};

const FILE: &str = "topology.yaml";

fn parse(yaml: &str) -> Topology {
    Topology::from_yaml(yaml, FILE).unwrap_or_else(|e| panic!("should parse:\n{yaml}\n{e}"))
}

fn refuse(yaml: &str) -> SpecError {
    match Topology::from_yaml(yaml, FILE) {
        Ok(topology) => panic!("should be refused:\n{yaml}\nparsed as {topology:?}"),
        Err(error) => error,
    }
}

/// Asserts the parts of an error a user reads: kind, line (and column when
/// given), field, and words of the message and hint.
#[track_caller]
fn assert_error(
    error: &SpecError,
    kind: ErrorKind,
    line: usize,
    column: Option<usize>,
    field: Option<&str>,
    message_has: &[&str],
) {
    let location = error
        .location()
        .unwrap_or_else(|| panic!("no location in {error}"));
    assert_eq!(location.file, FILE, "{error}");
    assert_eq!(location.line, line, "line of: {error}");
    if let Some(column) = column {
        assert_eq!(location.column, column, "column of: {error}");
    }
    assert_eq!(error.kind(), kind, "kind of: {error}");
    assert_eq!(error.field(), field, "field of: {error}");
    for words in message_has {
        assert!(
            error.message().contains(words),
            "{words:?} missing from: {error}"
        );
    }
    let rendered = error.to_string();
    let prefix = match column {
        Some(column) => format!("{FILE}:{line}:{column}: "),
        None => format!("{FILE}:{line}"),
    };
    assert!(rendered.starts_with(&prefix), "{rendered}");
    if let Some(field) = field {
        assert!(rendered.contains(&format!(": {field}: ")), "{rendered}");
    }
}

#[track_caller]
fn assert_hint(error: &SpecError, words: &str) {
    let hint = error.hint().unwrap_or_else(|| panic!("no hint in {error}"));
    assert!(hint.contains(words), "{words:?} missing from hint: {error}");
    assert!(error.to_string().contains(&format!("\n  hint: {hint}")));
}

// --- accepted forms and defaults ---------------------------------------------------

#[test]
fn node_count_shorthand_gives_numbered_nodes_with_defaults() {
    let topology = parse("nodes: 3\n");
    let names: Vec<&str> = topology.nodes.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["node1", "node2", "node3"]);
    for node in &topology.nodes {
        assert_eq!(node.image, DEFAULT_IMAGE);
        assert_eq!(node.networks, [DEFAULT_NETWORK]);
        assert!(node.groups.is_empty());
    }
    assert_eq!(topology.networks.len(), 1);
    assert_eq!(topology.networks[0].name, DEFAULT_NETWORK);
    assert_eq!(topology.networks[0].cidr, None);
    assert_eq!(topology.networks[0].egress, Egress::Packages);
    assert_eq!(topology.ttl, None);
}

#[test]
fn bare_string_is_a_node_with_only_a_name() {
    let topology = parse("nodes:\n  - web1\n  - name: web2\n  - {name: web3, groups: [web]}\n");
    assert_eq!(topology.nodes[0], topology.nodes[1].clone().renamed("web1"));
    assert_eq!(topology.nodes[0].image, DEFAULT_IMAGE);
    assert_eq!(topology.nodes[2].groups, ["web"]);
}

trait Renamed {
    fn renamed(self, name: &str) -> Self;
}

impl Renamed for rehearse_spec::NodeSpec {
    fn renamed(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }
}

#[test]
fn nodes_default_to_the_first_declared_network() {
    let topology = parse(
        "nodes: [a, b]\nnetworks:\n  - name: lan\n    cidr: 10.1.2.0/24\n  - name: mgmt\n    egress: none\n",
    );
    assert_eq!(topology.nodes[0].networks, ["lan"]);
    assert_eq!(
        topology
            .network("lan")
            .and_then(|n| n.cidr)
            .map(|c| c.to_string())
            .as_deref(),
        Some("10.1.2.0/24")
    );
    assert_eq!(
        topology.network("lan").map(|n| n.egress),
        Some(Egress::Packages)
    );
    assert_eq!(
        topology.network("mgmt").map(|n| n.egress),
        Some(Egress::None)
    );
    assert_eq!(topology.nodes_on("mgmt").count(), 0);
}

#[test]
fn ttl_takes_humantime_durations() {
    assert_eq!(
        parse("nodes: 1\nttl: 45m\n").ttl,
        Some(Duration::from_secs(45 * 60))
    );
    assert_eq!(
        parse("nodes: 1\nttl: 2h\n").ttl,
        Some(Duration::from_secs(7200))
    );
    assert_eq!(
        parse("nodes: 1\nttl: 90s\n").ttl,
        Some(Duration::from_secs(90))
    );
}

#[test]
fn multi_network_fixture_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/multi-network.yaml");
    let topology = Topology::from_path(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(topology.nodes.len(), 4);
    assert_eq!(topology.networks.len(), 2);
    let lb = topology.node("lb").expect("lb is declared");
    assert_eq!(lb.networks, ["front", "back"]);
    assert_eq!(lb.groups, ["balancers"]);
    assert_eq!(topology.nodes_on("back").count(), 4);
    let back = topology.network("back").expect("back is declared");
    assert_eq!(back.capacity(), Some(5));
    assert_eq!(back.egress, Egress::None);
    assert_eq!(
        topology.network("front").map(|n| n.egress),
        Some(Egress::Nat)
    );
    assert_eq!(topology.ttl, Some(Duration::from_secs(45 * 60)));
}

#[test]
fn serialised_topology_reads_back_equal() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/multi-network.yaml");
    let topology = Topology::from_path(&path).unwrap_or_else(|e| panic!("{e}"));
    let yaml = serde_yaml::to_string(&topology).expect("serialises");
    assert!(yaml.contains("ttl: 45m"), "{yaml}");
    assert_eq!(parse(&yaml), topology);
    let json = serde_json::to_string(&topology).expect("serialises");
    assert_eq!(parse(&json), topology);
}

#[test]
fn with_nodes_builds_the_default_cluster() {
    let topology = Topology::with_nodes(2, "debian-12").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(topology, parse("nodes: 2\n"));
    let topology = Topology::with_nodes(1, "alpine-3.20").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(topology.nodes[0].image, "alpine-3.20");
    assert!(Topology::with_nodes(MAX_NODES, DEFAULT_IMAGE).is_ok());
}

#[test]
fn with_nodes_refuses_bad_counts_without_location() {
    for n in [0, MAX_NODES + 1] {
        let error = Topology::with_nodes(n, DEFAULT_IMAGE).expect_err("refused");
        assert_eq!(error.kind(), ErrorKind::Limit);
        assert_eq!(error.location(), None);
        assert_eq!(error.field(), Some("nodes"));
        assert!(error.to_string().starts_with("nodes: "), "{error}");
    }
    let error = Topology::with_nodes(2, "Debian 12").expect_err("bad image refused");
    assert_eq!(error.kind(), ErrorKind::InvalidName);
    assert_eq!(error.location(), None);
}

#[test]
fn validate_checks_topologies_changed_in_code() {
    let mut topology = parse("nodes: [a, b]\n");
    assert!(topology.validate().is_ok());
    topology.nodes[1].name = "a".to_owned();
    let error = topology.validate().expect_err("duplicate refused");
    assert_eq!(error.field(), Some("nodes[1].name"));
    assert!(
        error.message().contains("first defined as nodes[0].name"),
        "{error}"
    );
}

#[test]
fn json_schema_describes_the_yaml_form() {
    let schema = Topology::json_schema();
    let properties = schema
        .get("properties")
        .and_then(|p| p.as_object())
        .expect("schema is an object with properties");
    for key in ["nodes", "networks", "ttl"] {
        assert!(properties.contains_key(key), "{key} missing from {schema}");
    }
    assert_eq!(schema["required"], serde_json::json!(["nodes"]));
    let text = schema.to_string();
    assert!(text.contains("\"nat\""), "egress modes missing: {text}");
    assert!(text.contains("additionalProperties"), "{text}");
}

#[test]
fn egress_round_trips_through_text() {
    for mode in Egress::ALL {
        assert_eq!(mode.to_string().parse::<Egress>().ok(), Some(mode));
    }
    assert_eq!(Egress::default(), Egress::Packages);
    let error = "natt".parse::<Egress>().expect_err("refused");
    assert_eq!(error.hint(), Some("use one of: none, packages, nat"));
}

// --- refusals ------------------------------------------------------------------------

#[test]
fn yaml_syntax_error_points_at_line_and_column() {
    let error = refuse("nodes:\n  - name: a\n   bad: : x\n");
    assert_error(&error, ErrorKind::Syntax, 3, Some(4), None, &["expected"]);
    assert!(
        !error.message().contains("at line 3"),
        "position repeated: {error}"
    );
}

#[test]
fn unknown_key_names_the_key_and_lists_expected_ones() {
    let error = refuse("nodes:\n  - name: a\n    nme: b\n");
    assert_error(
        &error,
        ErrorKind::UnknownField,
        3,
        Some(5),
        Some("nodes[0].nme"),
        &["unknown field `nme`", "`name`", "`groups`"],
    );
    assert_hint(&error, "spelling");

    let error = refuse("nodes: 2\nnetwork:\n  - name: x\n");
    assert_error(
        &error,
        ErrorKind::UnknownField,
        2,
        Some(1),
        Some("network"),
        &["`networks`"],
    );

    let error = refuse("nodes: 2\nnetworks:\n  - name: x\n    cdir: 10.0.0.0/24\n");
    assert_error(
        &error,
        ErrorKind::UnknownField,
        4,
        Some(5),
        Some("networks[0].cdir"),
        &["`cidr`"],
    );
}

#[test]
fn wrong_types_and_values_name_their_field() {
    let error = refuse("nodes:\n  - name: [a]\n");
    assert_error(
        &error,
        ErrorKind::InvalidValue,
        2,
        None,
        Some("nodes[0].name"),
        &["invalid type"],
    );

    let error = refuse("nodes: 2\nnetworks:\n  - name: x\n    egress: natt\n");
    assert_error(
        &error,
        ErrorKind::InvalidValue,
        4,
        None,
        Some("networks[0].egress"),
        &["natt", "packages"],
    );
    assert_hint(&error, "values listed");

    let error = refuse("nodes: -1\n");
    assert_error(
        &error,
        ErrorKind::InvalidValue,
        1,
        None,
        Some("nodes"),
        &["node count"],
    );
}

#[test]
fn several_documents_in_one_file_are_refused() {
    let error = refuse("---\nnodes: 1\n---\nnodes: 2\n");
    assert_eq!(error.kind(), ErrorKind::Syntax, "{error}");
    assert!(error.to_string().starts_with("topology.yaml: "), "{error}");
    assert_hint(&error, "one YAML document");
}

#[test]
fn missing_nodes_key_is_refused() {
    let error = refuse("ttl: 1h\n");
    assert_eq!(error.kind(), ErrorKind::MissingField, "{error}");
    assert!(error.message().contains("`nodes`"), "{error}");
    assert_hint(&error, "add the `nodes` key");
}

#[test]
fn repeated_key_points_at_the_second_one() {
    let error = refuse("nodes: 2\nttl: 1h\nnodes: 3\n");
    assert_error(
        &error,
        ErrorKind::Duplicate,
        3,
        Some(1),
        Some("nodes"),
        &["first at line 1"],
    );
}

#[test]
fn duplicate_node_name_points_at_second_occurrence() {
    let yaml = "\
nodes:
  - name: lb
    networks: [default]
  - name: web1
    groups: [web]
    image: debian-12
  - name: web1
";
    let error = refuse(yaml);
    assert_eq!(
        error.to_string(),
        "topology.yaml:7:11: nodes[2].name: duplicate node name \"web1\" (first defined at line 4)\n  hint: give every node a unique name"
    );

    let error = refuse("nodes: [a, b, a]\n");
    assert_error(
        &error,
        ErrorKind::Duplicate,
        1,
        Some(15),
        Some("nodes[2].name"),
        &["\"a\"", "line 1"],
    );
}

#[test]
fn duplicate_network_name_is_refused() {
    let error = refuse("nodes: 1\nnetworks:\n  - name: lan\n  - name: wan\n  - name: lan\n");
    assert_error(
        &error,
        ErrorKind::Duplicate,
        5,
        Some(11),
        Some("networks[2].name"),
        &["duplicate network name \"lan\"", "first defined at line 3"],
    );
    assert_hint(&error, "unique name");
}

#[test]
fn invalid_names_are_refused_with_the_rule() {
    let error = refuse("nodes:\n  - a\n  - Web_1\n");
    assert_error(
        &error,
        ErrorKind::InvalidName,
        3,
        Some(5),
        Some("nodes[1].name"),
        &["node name", "[a-z][a-z0-9-]*"],
    );
    assert_hint(&error, "\"web-1\"");

    let long = "x".repeat(33);
    let error = refuse(&format!("nodes: [{long}]\n"));
    assert_error(
        &error,
        ErrorKind::InvalidName,
        1,
        None,
        Some("nodes[0].name"),
        &["at most 32"],
    );

    let error = refuse("nodes: 1\nnetworks:\n  - name: Front\n");
    assert_error(
        &error,
        ErrorKind::InvalidName,
        3,
        Some(11),
        Some("networks[0].name"),
        &["network name"],
    );

    let error = refuse("nodes:\n  - name: a\n    groups: [ok, 1st]\n");
    assert_error(
        &error,
        ErrorKind::InvalidName,
        3,
        Some(18),
        Some("nodes[0].groups[1]"),
        &["group name", "\"1st\""],
    );

    let error = refuse("nodes:\n  - name: a\n    image: Debian 12\n");
    assert_error(
        &error,
        ErrorKind::InvalidName,
        3,
        Some(12),
        Some("nodes[0].image"),
        &["image name"],
    );
}

#[test]
fn unparseable_or_ipv6_cidr_is_refused() {
    let network = |cidr: &str| format!("nodes: 1\nnetworks:\n  - name: lan\n    cidr: {cidr}\n");

    let error = refuse(&network("banana"));
    assert_error(
        &error,
        ErrorKind::InvalidCidr,
        4,
        Some(11),
        Some("networks[0].cidr"),
        &["\"banana\" is not a CIDR"],
    );
    assert_hint(&error, "10.213.40.0/24");

    let error = refuse(&network("10.0.0.0"));
    assert_error(
        &error,
        ErrorKind::InvalidCidr,
        4,
        Some(11),
        Some("networks[0].cidr"),
        &["no prefix length"],
    );
    assert_hint(&error, "10.0.0.0/24");

    let error = refuse(&network("fd00::/64"));
    assert_error(
        &error,
        ErrorKind::InvalidCidr,
        4,
        Some(11),
        Some("networks[0].cidr"),
        &["IPv6"],
    );
}

#[test]
fn cidr_with_host_bits_suggests_the_network_address() {
    let error = refuse("nodes: 1\nnetworks:\n  - name: lan\n    cidr: 10.0.0.5/24\n");
    assert_error(
        &error,
        ErrorKind::InvalidCidr,
        4,
        Some(11),
        Some("networks[0].cidr"),
        &["host bits"],
    );
    assert_hint(&error, "10.0.0.0/24");
}

#[test]
fn prefix_longer_than_29_is_refused() {
    let error = refuse("nodes: 1\nnetworks:\n  - name: lan\n    cidr: 10.0.0.0/30\n");
    assert_error(
        &error,
        ErrorKind::InvalidCidr,
        4,
        Some(11),
        Some("networks[0].cidr"),
        &["/30"],
    );
    assert_hint(&error, "/29");
}

#[test]
fn reserved_ranges_are_refused() {
    let error = refuse("nodes: 1\nnetworks:\n  - name: lan\n    cidr: 127.0.10.0/24\n");
    assert_error(
        &error,
        ErrorKind::InvalidCidr,
        4,
        None,
        Some("networks[0].cidr"),
        &["loopback"],
    );
}

#[test]
fn overlapping_networks_name_both() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/overlapping-networks.yaml");
    let error = Topology::from_path(&path).expect_err("fixture is invalid");
    let location = error.location().expect("file error has a location");
    assert!(
        location.file.ends_with("overlapping-networks.yaml"),
        "{error}"
    );
    assert_eq!((location.line, location.column), (10, 11), "{error}");
    assert_eq!(error.kind(), ErrorKind::Overlap);
    assert_eq!(error.field(), Some("networks[1].cidr"));
    for words in [
        "\"back\"",
        "10.213.41.0/24",
        "\"front\"",
        "10.213.0.0/16",
        "line 8",
    ] {
        assert!(
            error.message().contains(words),
            "{words} missing from {error}"
        );
    }
}

#[test]
fn more_nodes_than_addresses_suggests_a_shorter_prefix() {
    let yaml = "nodes: 6\nnetworks:\n  - name: tiny\n    cidr: 10.9.0.0/29\n";
    let error = refuse(yaml);
    assert_error(
        &error,
        ErrorKind::Capacity,
        4,
        Some(11),
        Some("networks[0].cidr"),
        &["\"tiny\"", "6 nodes", "10.9.0.0/29", "only 5"],
    );
    assert_hint(&error, "/28");
    assert!(parse(&yaml.replace("nodes: 6", "nodes: 5")).nodes.len() == 5);
}

#[test]
fn undeclared_network_lists_declared_ones() {
    let yaml = "\
nodes:
  - name: lb
    networks: [front, bak]
networks:
  - name: front
  - name: back
";
    let error = refuse(yaml);
    assert_error(
        &error,
        ErrorKind::UndeclaredNetwork,
        3,
        Some(23),
        Some("nodes[0].networks[1]"),
        &["\"bak\" is not declared", "front, back"],
    );
    assert_hint(&error, "front, back");

    // Without a `networks` section only the default network exists.
    let error = refuse("nodes:\n  - name: a\n    networks: [lan]\n");
    assert_error(
        &error,
        ErrorKind::UndeclaredNetwork,
        3,
        None,
        Some("nodes[0].networks[0]"),
        &["default"],
    );
}

#[test]
fn node_without_network_or_listing_one_twice_is_refused() {
    let error = refuse("nodes:\n  - name: a\n    networks: []\n");
    assert_error(
        &error,
        ErrorKind::UndeclaredNetwork,
        3,
        None,
        Some("nodes[0].networks"),
        &["no network"],
    );
    let error = refuse("nodes:\n  - name: a\n    networks: [default, default]\n");
    assert_error(
        &error,
        ErrorKind::Duplicate,
        3,
        Some(25),
        Some("nodes[0].networks[1]"),
        &["twice"],
    );
}

#[test]
fn zero_nodes_is_refused() {
    for yaml in ["nodes: []\n", "nodes: 0\n"] {
        let error = refuse(yaml);
        assert_error(
            &error,
            ErrorKind::Limit,
            1,
            Some(8),
            Some("nodes"),
            &["no nodes"],
        );
        assert_hint(&error, "nodes: 3");
    }
}

#[test]
fn too_many_nodes_is_refused() {
    let error = refuse(&format!("nodes: {}\n", MAX_NODES + 1));
    assert_error(
        &error,
        ErrorKind::Limit,
        1,
        Some(8),
        Some("nodes"),
        &["33 nodes", "at most 32"],
    );

    // A huge count is refused before any node is built.
    let error = refuse("nodes: 18446744073709551615\n");
    assert_eq!(error.kind(), ErrorKind::Limit, "{error}");

    let list: String = (1..=MAX_NODES + 1).map(|i| format!("  - n{i}\n")).collect();
    let error = refuse(&format!("nodes:\n{list}"));
    assert_error(
        &error,
        ErrorKind::Limit,
        MAX_NODES + 2,
        Some(5),
        Some("nodes[32]"),
        &["33 nodes"],
    );
}

#[test]
fn too_many_networks_is_refused() {
    let list: String = (1..=MAX_NETWORKS + 1)
        .map(|i| format!("  - name: n{i}\n"))
        .collect();
    let error = refuse(&format!("nodes: 1\nnetworks:\n{list}"));
    assert_error(
        &error,
        ErrorKind::Limit,
        MAX_NETWORKS + 3,
        Some(5),
        Some("networks[8]"),
        &["9 networks", "at most 8"],
    );

    let error = refuse("nodes: 1\nnetworks: []\n");
    assert_error(
        &error,
        ErrorKind::Limit,
        2,
        None,
        Some("networks"),
        &["no network"],
    );
}

#[test]
fn bad_ttl_is_refused() {
    let error = refuse("nodes: 1\nttl: soon\n");
    assert_error(
        &error,
        ErrorKind::InvalidTtl,
        2,
        Some(6),
        Some("ttl"),
        &["invalid ttl \"soon\""],
    );
    assert_hint(&error, "30m");

    // A bare number has no unit: seconds or minutes would both be a guess.
    let error = refuse("nodes: 1\nttl: 45\n");
    assert_error(
        &error,
        ErrorKind::InvalidTtl,
        2,
        Some(6),
        Some("ttl"),
        &["time unit"],
    );

    let error = refuse("nodes: 1\nttl: 0s\n");
    assert_error(
        &error,
        ErrorKind::InvalidTtl,
        2,
        Some(6),
        Some("ttl"),
        &["longer than zero"],
    );
}

#[test]
fn missing_file_is_an_io_error() {
    let error = Topology::from_path(Path::new("/nonexistent/topology.yaml")).expect_err("missing");
    assert_eq!(error.kind(), ErrorKind::Io);
    assert!(
        error.to_string().contains("/nonexistent/topology.yaml"),
        "{error}"
    );
}

#[test]
fn node_limits_come_from_the_node_then_the_topology() {
    let topology = parse(
        "nodes:\n  - name: db\n    memory: 1G\n    cpus: 1.5\n  - web\nlimits:\n  memory: 256M\n  pids: 512\n",
    );
    let db = topology.node("db").unwrap();
    assert_eq!(db.limits.memory, Some(1 << 30));
    assert_eq!(db.limits.millicpus, Some(1500));
    assert_eq!(
        db.limits.pids,
        Some(512),
        "the topology's pids fill the gap"
    );
    let web = topology.node("web").unwrap();
    assert_eq!(web.limits.memory, Some(256 << 20));
    assert_eq!(web.limits.millicpus, None);
    assert_eq!(web.limits.to_string(), "memory 256 MiB, pids 512");
    // The explicit form writes every node's limits and reads back equal.
    let text = serde_yaml::to_string(&topology).unwrap();
    assert!(text.contains("memory: 1024M"), "{text}");
    assert_eq!(parse(&text), topology);
    // `nodes: N` takes the topology's limits too.
    let counted = parse("nodes: 2\nlimits: {cpus: 0.5}\n");
    assert!(counted
        .nodes
        .iter()
        .all(|n| n.limits.millicpus == Some(500)));
}

#[test]
fn bad_limits_name_their_line_and_field() {
    let error = refuse("nodes:\n  - name: db\n    memory: lots\n");
    assert_error(
        &error,
        ErrorKind::InvalidValue,
        3,
        None,
        Some("nodes[0].memory"),
        &["lots"],
    );
    assert_hint(&error, "512M");
    let error = refuse("nodes:\n  - name: db\n    memory: 16M\n");
    assert_error(
        &error,
        ErrorKind::Limit,
        3,
        None,
        Some("nodes[0].memory"),
        &["below"],
    );
    let error = refuse("nodes: 2\nlimits:\n  cpus: 0\n");
    assert_error(
        &error,
        ErrorKind::Limit,
        3,
        None,
        Some("limits.cpus"),
        &["cpus 0"],
    );
    let error = refuse("nodes:\n  - name: db\n    pids: 3\n");
    assert_error(
        &error,
        ErrorKind::Limit,
        3,
        None,
        Some("nodes[0].pids"),
        &["pids 3"],
    );
    let error = refuse("nodes:\n  - name: db\n    backend: vm\n    pids: 300\n");
    assert_error(
        &error,
        ErrorKind::InvalidValue,
        4,
        None,
        Some("nodes[0].pids"),
        &["vm"],
    );
    let error = refuse("nodes: 1\nlimits:\n  memroy: 1G\n");
    assert_eq!(error.kind(), ErrorKind::UnknownField, "{error}");
    assert!(error.to_string().contains("memroy"), "{error}");
}

fn refuse_input(nodes: serde_json::Value, networks: Option<serde_json::Value>) -> SpecError {
    use rehearse_spec::topology::{NetworksInput, NodesInput};
    match Topology::from_input(NodesInput(nodes), networks.map(NetworksInput)) {
        Ok(topology) => panic!("should be refused, parsed as {topology:?}"),
        Err(error) => error,
    }
}

#[test]
fn nodes_and_networks_given_as_json_are_read_by_the_file_rules() {
    use rehearse_spec::topology::{NetworksInput, NodesInput};
    let topology = Topology::from_input(
        NodesInput(
            serde_json::json!(["lb", {"name": "web1", "groups": ["web"], "networks": ["back"]}]),
        ),
        Some(NetworksInput(
            serde_json::json!([{"name": "front"}, {"name": "back", "egress": "none"}]),
        )),
    )
    .expect("topology parses");
    assert_eq!(topology.nodes[0].networks, vec!["front".to_owned()]);
    assert_eq!(topology.nodes[1].groups, vec!["web".to_owned()]);
    assert_eq!(topology.networks[1].egress, Egress::None);
    let topology = Topology::from_input(NodesInput(serde_json::json!(3)), None).expect("a count");
    assert_eq!(topology.nodes.len(), 3);
}

#[test]
fn refusals_of_nodes_given_as_json_name_the_field() {
    let error = refuse_input(serde_json::json!(["web1", {"name": "Bad_Name"}]), None);
    assert_eq!(error.field(), Some("nodes[1].name"), "{error}");
    assert!(error.location().is_none(), "a value has no lines: {error}");
    assert!(error.to_string().contains("Bad_Name"), "{error}");

    let error = refuse_input(
        serde_json::json!([{"name": "web1", "imagee": "debian-12"}]),
        None,
    );
    assert_eq!(error.kind(), ErrorKind::UnknownField, "{error}");
    assert_eq!(error.field(), Some("nodes[0].imagee"), "{error}");

    let error = refuse_input(
        serde_json::json!(["web1"]),
        Some(serde_json::json!([{"name": "front", "cidr": "nonsense"}])),
    );
    assert_eq!(error.field(), Some("networks[0].cidr"), "{error}");

    let error = refuse_input(serde_json::json!("three"), None);
    assert_eq!(error.field(), Some("nodes"), "{error}");
}
