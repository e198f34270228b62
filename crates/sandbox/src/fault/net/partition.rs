//! A partition: nodes on different sides stop hearing each other, by an
//! nftables table in each node's namespace that drops the other sides'
//! addresses.

use crate::fault::{invalid, Undo};
use crate::state::{ClusterState, NodeState};
use crate::SandboxError;

use super::{in_netns, ips, resolve, set, table};

pub(crate) fn partition(
    state: &ClusterState,
    fault: u32,
    sides: &[Vec<String>],
) -> Result<(String, Undo), SandboxError> {
    let resolved: Vec<Vec<&NodeState>> = sides.iter().map(|s| resolve(state, s)).collect();
    for (i, a) in resolved.iter().enumerate() {
        for b in resolved.iter().skip(i + 1) {
            if let Some(n) = a.iter().find(|n| b.iter().any(|m| m.name == n.name)) {
                return Err(invalid(format!(
                    "{} is on two sides of the partition; each node may be on one side only",
                    n.name
                )));
            }
        }
    }
    let table = table(fault);
    let mut touched: Vec<String> = Vec::new();
    let undo = |touched: &[String]| Undo::Network {
        table: table.clone(),
        nodes: touched.to_vec(),
        delayer: None,
        qdisc_node: None,
        qdisc_ifaces: Vec::new(),
        iptables: None,
    };
    for (i, side) in resolved.iter().enumerate() {
        let others: Vec<&NodeState> = resolved
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, s)| s.iter().copied())
            .collect();
        let blocked = set(&ips(&others));
        let rules = format!(
            "table inet {table} {{\n  chain input {{ type filter hook input priority -5; ip saddr {blocked} drop; }}\n  chain output {{ type filter hook output priority -5; ip daddr {blocked} drop; }}\n}}\n"
        );
        for node in side {
            if let Err(e) = in_netns(
                state,
                &node.name,
                "cutting the network",
                &["nft", "-f", "-"],
                &rules,
            ) {
                let _ = super::undo(state, &undo(&touched));
                return Err(e);
            }
            touched.push(node.name.clone());
        }
    }
    let detail = format!(
        "nftables table {table} in {} dropping traffic between the sides",
        touched.join(", ")
    );
    Ok((detail, undo(&touched)))
}
