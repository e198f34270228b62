//! The Ansible inventory of a cluster: every node, its topology groups, and a
//! `net_<network>` group per network.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use rehearse_sandbox::{ClusterState, NodeState};
use serde_json::{json, Map, Value};

/// How the machine running `ansible-playbook` logs into nodes.
pub(crate) struct Access<'a> {
    pub private_key: &'a str,
    pub known_hosts: &'a str,
    /// The node Ansible runs on, if not the host: addresses are then picked
    /// from networks it shares with each node.
    pub controller: Option<&'a NodeState>,
}

/// The inventory group of a network. Ansible group names should not hold `-`,
/// which network names may; these names are ours, so they are made safe.
pub(crate) fn network_group(network: &str) -> String {
    format!("net_{}", network.replace('-', "_"))
}

/// The inventory as YAML.
pub(crate) fn render(cluster: &ClusterState, access: &Access<'_>) -> String {
    let mut hosts = Map::new();
    let mut groups: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for node in &cluster.nodes {
        let mut vars = Map::new();
        if let Some(ip) = address(node, access.controller) {
            vars.insert("ansible_host".into(), json!(ip.to_string()));
        }
        hosts.insert(node.name.clone(), Value::Object(vars));
        for group in &node.groups {
            groups.entry(group.clone()).or_default().insert(&node.name);
        }
        for nic in &node.nics {
            groups
                .entry(network_group(&nic.network))
                .or_default()
                .insert(&node.name);
        }
    }
    let children: Map<String, Value> = groups
        .into_iter()
        .map(|(group, members)| {
            let members: Map<String, Value> = members
                .into_iter()
                .map(|m| (m.to_string(), json!({})))
                .collect();
            (group, json!({ "hosts": members }))
        })
        .collect();
    let ssh_args = format!(
        "-o UserKnownHostsFile={} -o StrictHostKeyChecking=yes -o IdentitiesOnly=yes",
        shell_quote(access.known_hosts)
    );
    let inventory = json!({
        "all": {
            "vars": {
                "ansible_user": "root",
                "ansible_ssh_private_key_file": access.private_key,
                "ansible_ssh_common_args": ssh_args,
                // Every image has it (base packages): no interpreter discovery.
                "ansible_python_interpreter": "/usr/bin/python3",
            },
            "hosts": hosts,
            "children": children,
        }
    });
    let yaml = serde_yaml::to_string(&inventory).expect("an inventory serialises");
    format!(
        "# Written by rehearse for cluster {}: every node, its groups, and net_<network> groups.\n{yaml}",
        cluster.id
    )
}

/// The address `node` is reached at: from the host, its first one; from a
/// controller node, one on a network they share (else its first).
fn address(node: &NodeState, controller: Option<&NodeState>) -> Option<Ipv4Addr> {
    controller
        .and_then(|c| {
            node.nics
                .iter()
                .find(|nic| c.nics.iter().any(|cn| cn.network == nic.network))
                .map(|nic| nic.ip)
        })
        .or_else(|| node.ip())
}

/// `s` quoted for a POSIX shell (Ansible splits ssh arguments with shlex).
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:@,".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rehearse_sandbox::{ClusterStatus, Nic};

    fn node(name: &str, groups: &[&str], nics: &[(&str, [u8; 4])]) -> NodeState {
        NodeState {
            name: name.into(),
            index: 0,
            image: "debian-12".into(),
            image_id: "x".into(),
            backend: "nspawn".into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            nics: nics
                .iter()
                .enumerate()
                .map(|(i, (net, ip))| Nic {
                    network: net.to_string(),
                    ip: Ipv4Addr::from(*ip),
                    iface: format!("eth{i}"),
                    host_iface: format!("h{i}"),
                })
                .collect(),
            machine: format!("m-{name}"),
            supervisor: None,
            leader: None,
            boot_ms: None,
            uid_base: None,
            boot_retried: None,
            limits: Default::default(),
        }
    }

    fn cluster() -> ClusterState {
        ClusterState {
            id: "c0ffee".into(),
            status: ClusterStatus::Ready,
            created_at: 0,
            expires_at: 0,
            owner: None,
            belongs_to: None,
            boot_id: String::new(),
            networks: vec![],
            nodes: vec![
                node(
                    "lb",
                    &["balancers"],
                    &[("front", [10, 1, 0, 2]), ("back-end", [10, 2, 0, 2])],
                ),
                node("web1", &["web"], &[("back-end", [10, 2, 0, 3])]),
                node("web2", &["web"], &[("back-end", [10, 2, 0, 4])]),
            ],
            boot_ms: None,
            source: "test".into(),
            from_pool: false,
        }
    }

    fn parsed(cluster: &ClusterState, access: &Access<'_>) -> serde_yaml::Value {
        serde_yaml::from_str(&render(cluster, access)).unwrap()
    }

    fn host_access() -> Access<'static> {
        Access {
            private_key: "/state/ssh/id_ed25519",
            known_hosts: "/state/my dir/known_hosts",
            controller: None,
        }
    }

    #[test]
    fn every_node_is_a_host_at_its_first_address() {
        let inv = parsed(&cluster(), &host_access());
        let hosts = &inv["all"]["hosts"];
        assert_eq!(hosts["lb"]["ansible_host"], "10.1.0.2");
        assert_eq!(hosts["web2"]["ansible_host"], "10.2.0.4");
        assert_eq!(inv["all"]["vars"]["ansible_user"], "root");
        assert_eq!(
            inv["all"]["vars"]["ansible_ssh_private_key_file"],
            "/state/ssh/id_ed25519"
        );
        let args = inv["all"]["vars"]["ansible_ssh_common_args"]
            .as_str()
            .unwrap();
        assert!(
            args.contains("-o UserKnownHostsFile='/state/my dir/known_hosts'"),
            "{args}"
        );
        assert!(args.contains("StrictHostKeyChecking=yes"), "{args}");
    }

    #[test]
    fn topology_groups_and_networks_become_groups() {
        let inv = parsed(&cluster(), &host_access());
        let children = &inv["all"]["children"];
        let members = |group: &str| -> Vec<String> {
            children[group]["hosts"]
                .as_mapping()
                .unwrap_or_else(|| panic!("no group {group}"))
                .keys()
                .map(|k| k.as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(members("web"), vec!["web1", "web2"]);
        assert_eq!(members("balancers"), vec!["lb"]);
        assert_eq!(members("net_front"), vec!["lb"]);
        assert_eq!(members("net_back_end"), vec!["lb", "web1", "web2"]);
    }

    #[test]
    fn a_controller_reaches_nodes_on_a_network_it_shares() {
        let cluster = cluster();
        let access = Access {
            private_key: "/root/.ssh/id_ed25519",
            known_hosts: "/etc/ssh/ssh_known_hosts",
            controller: Some(&cluster.nodes[1]),
        };
        let inv = parsed(&cluster, &access);
        // lb's first address is on `front`, which web1 is not on.
        assert_eq!(inv["all"]["hosts"]["lb"]["ansible_host"], "10.2.0.2");
        assert_eq!(inv["all"]["hosts"]["web2"]["ansible_host"], "10.2.0.4");
    }
}
