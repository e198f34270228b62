//! The files that make a generic image into a particular node of a particular
//! cluster: its name, its addresses, the names of its peers, the cluster's SSH
//! identity and how to reach the package cache. Backends install them before
//! the node boots (into an overlay upper layer, a disk image, ...).

use rehearse_spec::Egress;

use crate::pkgcache::PackageCache;
use crate::ssh::{known_hosts, ClusterKeys};
use crate::state::{ClusterState, NodeState};

/// A file to place in a node before boot. Owner and group are as seen inside the node.
#[derive(Debug, Clone)]
pub struct SeedFile {
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl SeedFile {
    fn new(path: &str, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        SeedFile {
            path: path.to_string(),
            contents: contents.into(),
            mode,
            uid: 0,
            gid: 0,
        }
    }

    fn link(path: &str, target: &str) -> Self {
        // A mode of 0 marks a symlink whose target is `contents`.
        SeedFile::new(path, target, 0)
    }

    pub fn is_symlink(&self) -> bool {
        self.mode == 0
    }
}

const NETWORK_UNIT: &str = "\
[Unit]
Description=rehearse node addresses
DefaultDependencies=no
Before=sysinit.target network-pre.target network.target sockets.target
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/local/lib/rehearse/network.sh
";

/// The network script: names the interfaces eth0.. and gives them their
/// addresses. Runs inside the node at every boot, so addresses survive reboots
/// and need no network manager.
pub fn network_script(state: &ClusterState, node: &NodeState) -> String {
    // One `ip -batch` call: every process spawned here is on the boot path.
    let mut batch = String::from("link set lo up\n");
    let mut default_route = None;
    for nic in &node.nics {
        let Some(net) = state.networks.iter().find(|n| n.name == nic.network) else {
            continue;
        };
        batch += &format!(
            "link set {iface} up\naddr replace {ip}/{prefix} dev {iface}\n",
            iface = nic.iface,
            ip = nic.ip,
            prefix = net.cidr.prefix_len()
        );
        if default_route.is_none() && net.egress != Egress::None {
            default_route = Some((net.gateway, nic.iface.clone()));
        }
    }
    if let Some((gw, iface)) = default_route {
        batch += &format!("route replace default via {gw} dev {iface}\n");
    }
    format!(
        "#!/bin/sh\n# Written by rehearse: this node's addresses.\nset -e\nrename=\n\
         if [ -e /sys/class/net/host0 ] && [ ! -e /sys/class/net/eth0 ]; then rename='link set host0 name eth0'; fi\n\
         ip -batch - <<EOF\n$rename\n{batch}EOF\n"
    )
}

/// `/etc/hosts`: every node by name (its first address) and by `name.network`.
pub fn hosts_file(state: &ClusterState) -> String {
    let mut s = String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
    for node in &state.nodes {
        for (i, nic) in node.nics.iter().enumerate() {
            if i == 0 {
                s += &format!("{}\t{}.{} {}\n", nic.ip, node.name, nic.network, node.name);
            } else {
                s += &format!("{}\t{}.{}\n", nic.ip, node.name, nic.network);
            }
        }
    }
    s
}

/// Every seed file of `node`.
pub fn node_seeds(
    state: &ClusterState,
    node: &NodeState,
    keys: &ClusterKeys,
    nameservers: &[String],
) -> Vec<SeedFile> {
    let egress: Vec<Egress> = node
        .nics
        .iter()
        .filter_map(|nic| {
            state
                .networks
                .iter()
                .find(|n| n.name == nic.network)
                .map(|n| n.egress)
        })
        .collect();
    let mut files = vec![
        SeedFile::new("/etc/hostname", format!("{}\n", node.name), 0o644),
        SeedFile::new("/etc/hosts", hosts_file(state), 0o644),
        SeedFile::new(
            "/usr/local/lib/rehearse/network.sh",
            network_script(state, node),
            0o755,
        ),
        SeedFile::new(
            "/etc/systemd/system/rehearse-network.service",
            NETWORK_UNIT,
            0o644,
        ),
        SeedFile::link(
            "/etc/systemd/system/sysinit.target.wants/rehearse-network.service",
            "/etc/systemd/system/rehearse-network.service",
        ),
        SeedFile::new(
            "/etc/ssh/ssh_host_ed25519_key",
            keys.host_private.clone(),
            0o600,
        ),
        SeedFile::new(
            "/etc/ssh/ssh_host_ed25519_key.pub",
            format!("{}\n", keys.host_public),
            0o644,
        ),
        SeedFile::new(
            "/etc/ssh/ssh_known_hosts",
            known_hosts(state, &keys.host_public),
            0o644,
        ),
        SeedFile::new(
            "/root/.ssh/authorized_keys",
            format!("{}\n", keys.client_public),
            0o600,
        ),
        SeedFile::new("/root/.ssh/id_ed25519", keys.client_private.clone(), 0o600),
        SeedFile::new(
            "/root/.ssh/id_ed25519.pub",
            format!("{}\n", keys.client_public),
            0o644,
        ),
    ];
    if egress.iter().any(|e| *e != Egress::None) {
        files.push(SeedFile::new(
            "/etc/apt/apt.conf.d/01rehearse-proxy",
            format!(
                "// Written by rehearse: distro packages come through the host's cache.\nAcquire::http::Proxy \"{}\";\n",
                PackageCache::proxy_url()
            ),
            0o644,
        ));
    }
    let resolv = if egress.contains(&Egress::Nat) && !nameservers.is_empty() {
        nameservers
            .iter()
            .map(|ns| format!("nameserver {ns}\n"))
            .collect::<String>()
    } else {
        "# Written by rehearse: this node's networks have no outside DNS (egress is not nat).\n# Cluster names resolve through /etc/hosts.\n".to_string()
    };
    files.push(SeedFile::new("/etc/resolv.conf", resolv, 0o644));
    files
}

/// Nameservers of the host that a NATed node can use (not loopback ones).
pub fn host_nameservers() -> Vec<String> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(|s| s.trim().to_string())
        .filter(|s| {
            s.parse::<std::net::Ipv4Addr>()
                .map(|a| !a.is_loopback())
                .unwrap_or(false)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{ClusterStatus, NetworkState, Nic};

    fn cluster() -> ClusterState {
        let net = |name: &str, n: u8, egress| NetworkState {
            name: name.into(),
            cidr: format!("10.213.{n}.0/24").parse().unwrap(),
            gateway: format!("10.213.{n}.1").parse().unwrap(),
            bridge: format!("rhabcdef{n}"),
            egress,
        };
        let node = |name: &str, nics: Vec<(&str, &str, &str)>| NodeState {
            name: name.into(),
            index: 0,
            image: "debian-12".into(),
            image_id: "x".into(),
            backend: "nspawn".into(),
            groups: vec![],
            nics: nics
                .into_iter()
                .map(|(network, ip, iface)| Nic {
                    network: network.into(),
                    ip: ip.parse().unwrap(),
                    iface: iface.into(),
                    host_iface: String::new(),
                })
                .collect(),
            machine: String::new(),
            supervisor: None,
            leader: None,
            boot_ms: None,
            uid_base: None,
            boot_retried: None,
            limits: Default::default(),
        };
        ClusterState {
            id: "abcdef".into(),
            status: ClusterStatus::Booting,
            created_at: 0,
            expires_at: 0,
            owner: None,
            belongs_to: None,
            boot_id: String::new(),
            networks: vec![net("front", 0, Egress::None), net("back", 1, Egress::Nat)],
            nodes: vec![
                node(
                    "lb",
                    vec![
                        ("front", "10.213.0.2", "eth0"),
                        ("back", "10.213.1.2", "eth1"),
                    ],
                ),
                node("web", vec![("back", "10.213.1.3", "eth0")]),
            ],
            boot_ms: None,
            source: String::new(),
            from_pool: false,
        }
    }

    #[test]
    fn hosts_name_every_node_by_first_address_and_by_network() {
        let hosts = hosts_file(&cluster());
        assert!(hosts.contains("10.213.0.2\tlb.front lb\n"), "{hosts}");
        assert!(hosts.contains("10.213.1.2\tlb.back\n"), "{hosts}");
        assert!(hosts.contains("10.213.1.3\tweb.back web\n"), "{hosts}");
    }

    #[test]
    fn default_route_goes_through_the_first_network_with_egress() {
        let c = cluster();
        let script = network_script(&c, &c.nodes[0]);
        assert!(
            script.contains("addr replace 10.213.0.2/24 dev eth0"),
            "{script}"
        );
        assert!(
            script.contains("addr replace 10.213.1.2/24 dev eth1"),
            "{script}"
        );
        assert!(
            script.contains("route replace default via 10.213.1.1 dev eth1"),
            "the egress-none network carries no default route: {script}"
        );
    }
}
