//! A degraded link: packet loss (nftables `numgen`), latency (`netem`, or
//! the user-space delayer fed by an nftables `queue` or iptables `NFQUEUE`
//! rule) and a bandwidth cap (`tbf`), on what one node sends.

use std::time::Duration;

use crate::cluster::Engine;
use crate::fault::{invalid, Undo};
use crate::state::ClusterState;
use crate::SandboxError;

use super::delayer::spawn_delayer;
use super::kernel::{has_netem, queue_by, QueueBy};
use super::{in_netns, ips, iptables_chain, resolve, set, table};

pub(crate) struct LinkSpec<'a> {
    pub node: &'a str,
    pub peers: &'a [String],
    pub loss: Option<u8>,
    pub delay: Option<Duration>,
    pub jitter: Duration,
    pub rate_kbit: Option<u32>,
}

pub(crate) fn impair(
    engine: &Engine,
    state: &ClusterState,
    fault: u32,
    link: &LinkSpec<'_>,
) -> Result<(String, Undo), SandboxError> {
    let node = state.node(link.node)?;
    let peers = resolve(state, link.peers);
    let to = if link.peers.is_empty() {
        String::new()
    } else {
        format!("ip daddr {} ", set(&ips(&peers)))
    };
    let ifaces: Vec<String> = node.nics.iter().map(|n| n.iface.clone()).collect();
    let table = table(fault);
    let mut detail = Vec::new();
    let mut undo = Undo::Network {
        table: table.clone(),
        nodes: vec![node.name.clone()],
        delayer: None,
        qdisc_node: None,
        qdisc_ifaces: Vec::new(),
        iptables: None,
    };
    let mut rules = String::new();
    if let Some(loss) = link.loss {
        if loss >= 100 {
            rules += &format!("    {to}drop\n");
        } else {
            rules += &format!("    {to}numgen random mod 100 < {loss} drop\n");
        }
        detail.push(format!("{loss}% loss (nftables numgen)"));
    }
    let netem = link.delay.is_some() && has_netem();
    let mut qdisc = Vec::new();
    if let Some(delay) = link.delay {
        if netem {
            let mut args = format!("delay {}us", delay.as_micros());
            if !link.jitter.is_zero() {
                args += &format!(" {}us", link.jitter.as_micros());
            }
            if let Some(rate) = link.rate_kbit {
                args += &format!(" rate {rate}kbit");
            }
            qdisc.push(format!("netem {args}"));
            detail.push(format!(
                "{} ±{} latency (netem)",
                humantime::format_duration(delay),
                humantime::format_duration(link.jitter)
            ));
        } else {
            let by = queue_by().ok_or_else(|| {
                invalid("this kernel cannot delay packets: it has neither sch_netem nor a way to queue packets to user space (nft queue, or the NFQUEUE target with iptables installed); the host check lists what is supported")
            })?;
            let queue = (fault % 65_000) as u16;
            let delayer = spawn_delayer(engine, state, link.node, queue, delay, link.jitter)?;
            if let Undo::Network { delayer: d, .. } = &mut undo {
                *d = Some(delayer);
            }
            match by {
                QueueBy::Nft => rules += &format!("    {to}queue num {queue} bypass\n"),
                QueueBy::Iptables => {
                    let chain = iptables_chain(fault);
                    let mut script = format!("*mangle\n:{chain} - [0:0]\n");
                    let dests: Vec<String> = if link.peers.is_empty() {
                        vec![String::new()]
                    } else {
                        ips(&peers)
                            .iter()
                            .map(|ip| format!("-d {ip}/32 "))
                            .collect()
                    };
                    for d in dests {
                        script += &format!(
                            "-A {chain} ! -o lo {d}-j NFQUEUE --queue-num {queue} --queue-bypass\n"
                        );
                    }
                    script += &format!("-I OUTPUT -j {chain}\nCOMMIT\n");
                    if let Err(e) = in_netns(
                        state,
                        link.node,
                        "queueing packets to the delayer",
                        &["iptables-restore", "--noflush"],
                        &script,
                    ) {
                        let _ = super::undo(state, &undo);
                        return Err(e);
                    }
                    if let Undo::Network { iptables, .. } = &mut undo {
                        *iptables = Some(chain);
                    }
                }
            }
            let by = match by {
                QueueBy::Nft => "nftables queue",
                QueueBy::Iptables => "iptables NFQUEUE",
            };
            detail.push(format!(
                "{} ±{} latency (user-space delayer PID {}, {by} {queue})",
                humantime::format_duration(delay),
                humantime::format_duration(link.jitter),
                delayer.pid
            ));
        }
    }
    if let Some(rate) = link.rate_kbit {
        if !netem {
            // Burst: at least one MTU-sized packet, about 10 ms worth otherwise.
            let burst = (rate as u64 * 1000 / 8 / 100).max(1600);
            qdisc.push(format!("tbf rate {rate}kbit burst {burst} latency 400ms"));
        }
        detail.push(format!("{rate} kbit/s cap on {} (tbf)", ifaces.join(", ")));
    }
    let fail = |e: SandboxError, undo: &Undo| {
        let _ = super::undo(state, undo);
        e
    };
    if !rules.is_empty() {
        let text = format!(
            "table inet {table} {{\n  chain output {{\n    type filter hook output priority -5;\n    oifname \"lo\" accept\n{rules}  }}\n}}\n"
        );
        in_netns(
            state,
            link.node,
            "impairing the link",
            &["nft", "-f", "-"],
            &text,
        )
        .map_err(|e| fail(e, &undo))?;
    }
    for q in &qdisc {
        for iface in &ifaces {
            let mut args = vec!["tc", "qdisc", "replace", "dev", iface, "root"];
            args.extend(q.split(' '));
            in_netns(state, link.node, "shaping the link", &args, "")
                .map_err(|e| fail(e, &undo))?;
            if let Undo::Network {
                qdisc_node,
                qdisc_ifaces,
                ..
            } = &mut undo
            {
                *qdisc_node = Some(link.node.to_string());
                qdisc_ifaces.push(iface.clone());
            }
        }
    }
    let scope = if link.peers.is_empty() {
        format!("everything {} sends", link.node)
    } else {
        format!("what {} sends to {}", link.node, link.peers.join(", "))
    };
    Ok((format!("{}; on {scope}", detail.join(", ")), undo))
}
