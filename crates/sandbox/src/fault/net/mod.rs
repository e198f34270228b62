//! Network faults, applied inside the nodes' own network namespaces (nodes on
//! one network talk over a bridge, which the host's routing never sees):
//! partitions and packet loss as an nftables table per fault, bandwidth caps
//! as a `tbf` qdisc, latency as `netem` when the kernel has it, otherwise as a
//! user-space delayer fed by an nftables `queue` verdict.
//!
//! `partition` cuts nodes apart; `impair` degrades one node's link (loss,
//! latency, rate); `delayer` is the user-space latency fallback; `kernel`
//! says which of these mechanisms this host's kernel offers. Undoing any of
//! them is here.

mod delayer;
mod impair;
mod kernel;
mod partition;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use crate::host::{self, ProcessId};
use crate::state::{ClusterState, NodeState};
use crate::SandboxError;

use super::Undo;

pub(super) use impair::{impair, LinkSpec};
pub(super) use kernel::has_netem;
pub use kernel::{impairment_support, Impairment};
pub(super) use partition::partition;

/// The nftables table of one fault.
fn table(fault: u32) -> String {
    format!("rehearse_fault{fault}")
}

/// The live leader process of a node: the way into its namespaces.
fn leader(state: &ClusterState, name: &str) -> Result<ProcessId, SandboxError> {
    state
        .node(name)?
        .leader
        .filter(|l| l.is_alive())
        .ok_or_else(|| SandboxError::NodeDown {
            cluster: state.id.clone(),
            node: name.to_string(),
        })
}

/// Runs a host tool inside a node's network namespace only (the host's
/// binaries and files, the node's interfaces and firewall).
fn in_netns(
    state: &ClusterState,
    node: &str,
    what: &str,
    args: &[&str],
    input: &str,
) -> Result<String, SandboxError> {
    let pid = leader(state, node)?.pid.to_string();
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &pid, "-n", "--"]).args(args);
    host::run_with_input(what, &mut cmd, input)
}

/// Nodes a list of node and group names stands for.
fn resolve<'a>(state: &'a ClusterState, names: &[String]) -> Vec<&'a NodeState> {
    state
        .nodes
        .iter()
        .filter(|n| names.iter().any(|x| *x == n.name || n.groups.contains(x)))
        .collect()
}

/// Every address of the nodes.
fn ips(nodes: &[&NodeState]) -> Vec<Ipv4Addr> {
    nodes
        .iter()
        .flat_map(|n| n.nics.iter().map(|c| c.ip))
        .collect()
}

/// An nftables anonymous set of addresses.
fn set(ips: &[Ipv4Addr]) -> String {
    let list: Vec<String> = ips.iter().map(Ipv4Addr::to_string).collect();
    format!("{{ {} }}", list.join(", "))
}

pub(super) fn undo(state: &ClusterState, undo: &Undo) -> Result<(), SandboxError> {
    let Undo::Network {
        table,
        nodes,
        delayer,
        qdisc_node,
        qdisc_ifaces,
        iptables,
    } = undo
    else {
        return Ok(());
    };
    if let (Some(chain), Some(node)) = (iptables, nodes.first()) {
        if leader(state, node).is_ok() {
            let script = format!("*mangle\n-D OUTPUT -j {chain}\n-F {chain}\n-X {chain}\nCOMMIT\n");
            in_netns(
                state,
                node,
                "removing the delayer's queue rule",
                &["iptables-restore", "--noflush"],
                &script,
            )?;
        }
    }
    undo_network(
        state,
        table,
        nodes,
        delayer.as_ref(),
        qdisc_node.as_deref(),
        qdisc_ifaces,
    )
}

fn iptables_chain(fault: u32) -> String {
    format!("RH_FAULT{fault}")
}

fn undo_network(
    state: &ClusterState,
    table: &str,
    nodes: &[String],
    delayer: Option<&ProcessId>,
    qdisc_node: Option<&str>,
    qdisc_ifaces: &[String],
) -> Result<(), SandboxError> {
    let mut first = None;
    for node in nodes {
        // A node that went down took its namespace, and the rules, with it.
        if leader(state, node).is_err() {
            continue;
        }
        let script = format!("table inet {table}\ndelete table inet {table}\n");
        if let Err(e) = in_netns(
            state,
            node,
            "healing the network",
            &["nft", "-f", "-"],
            &script,
        ) {
            first.get_or_insert(e);
        }
    }
    if let Some(node) = qdisc_node.filter(|n| leader(state, n).is_ok()) {
        for iface in qdisc_ifaces {
            if let Err(e) = in_netns(
                state,
                node,
                "removing the link shaping",
                &["tc", "qdisc", "del", "dev", iface, "root"],
                "",
            ) {
                first.get_or_insert(e);
            }
        }
    }
    if let Some(d) = delayer.filter(|d| d.is_alive()) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(d.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while d.is_alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
