//! Network faults, applied inside the nodes' own network namespaces (nodes on
//! one network talk over a bridge, which the host's routing never sees):
//! partitions and packet loss as an nftables table per fault, bandwidth caps
//! as a `tbf` qdisc, latency as `netem` when the kernel has it, otherwise as a
//! user-space delayer fed by an nftables `queue` verdict.

use std::io::{BufRead, BufReader};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::Serialize;

use crate::cluster::Engine;
use crate::host::{self, ProcessId};
use crate::state::{ClusterState, NodeState};
use crate::SandboxError;

use super::{invalid, Undo};

fn table(fault: u32) -> String {
    format!("rehearse_fault{fault}")
}

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

fn ips(nodes: &[&NodeState]) -> Vec<Ipv4Addr> {
    nodes
        .iter()
        .flat_map(|n| n.nics.iter().map(|c| c.ip))
        .collect()
}

fn set(ips: &[Ipv4Addr]) -> String {
    let list: Vec<String> = ips.iter().map(Ipv4Addr::to_string).collect();
    format!("{{ {} }}", list.join(", "))
}

pub(super) fn partition(
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
                let _ = self::undo(state, &undo(&touched));
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

pub(super) struct LinkSpec<'a> {
    pub node: &'a str,
    pub peers: &'a [String],
    pub loss: Option<u8>,
    pub delay: Option<Duration>,
    pub jitter: Duration,
    pub rate_kbit: Option<u32>,
}

pub(super) fn impair(
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
                invalid("this kernel cannot delay packets: it has neither sch_netem nor a way to queue packets to user space (nft queue, or the NFQUEUE target with iptables installed); `rehearse doctor` lists what is supported")
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
                        let _ = self::undo(state, &undo);
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
        let _ = self::undo(state, undo);
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

/// The `rehearse` binary, which carries the delayer (`rehearse __netdelay`).
fn rehearse_exe() -> Result<std::path::PathBuf, SandboxError> {
    if let Ok(p) = std::env::var("REHEARSE_EXE") {
        return Ok(p.into());
    }
    if let Ok(exe) = std::env::current_exe() {
        if exe.file_name().is_some_and(|n| n == "rehearse") {
            return Ok(exe);
        }
    }
    host::which("rehearse").ok_or_else(|| {
        invalid("adding latency needs the `rehearse` binary for its delayer: put it on PATH or set REHEARSE_EXE")
    })
}

fn spawn_delayer(
    engine: &Engine,
    state: &ClusterState,
    node: &str,
    queue: u16,
    delay: Duration,
    jitter: Duration,
) -> Result<ProcessId, SandboxError> {
    use std::os::unix::process::CommandExt;
    let pid = leader(state, node)?.pid.to_string();
    let exe = rehearse_exe()?;
    let log = engine
        .cluster_dir(&state.id)
        .join(format!("delayer-{node}-{queue}.log"));
    let log = std::fs::File::create(&log).map_err(|e| SandboxError::io("creating", &log, e))?;
    let procs = engine.helper_cgroup(&state.id)?;
    let mut cmd = Command::new("nsenter");
    cmd.args(["-t", &pid, "-n", "--"])
        .arg(&exe)
        .arg("__netdelay")
        .arg(queue.to_string())
        .arg(delay.as_micros().to_string())
        .arg(jitter.as_micros().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log);
    // SAFETY: between fork and exec only setsid and the raw open/write/close
    // of `enter_raw`, on data prepared before the fork.
    unsafe {
        cmd.pre_exec(move || {
            libc::setsid();
            crate::cgroup::enter_raw(&procs)
        });
    }
    let mut child = cmd.spawn().map_err(|e| host::spawn_error("nsenter", e))?;
    let id = ProcessId::of(child.id() as i32).ok_or_else(|| {
        invalid(format!(
            "the delayer for {node} ended at once; see {}",
            exe.display()
        ))
    })?;
    let out = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
        let _ = tx.send(line);
    });
    // Reap it whenever it ends, so a long-lived engine keeps no zombie.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    match rx.recv_timeout(Duration::from_secs(10)) {
        Ok(line) if line.trim() == "ready" => Ok(id),
        _ => {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(id.pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            let log = engine
                .cluster_dir(&state.id)
                .join(format!("delayer-{node}-{queue}.log"));
            Err(invalid(format!(
                "the delayer for {node} did not start: {}",
                std::fs::read_to_string(log).unwrap_or_default().trim()
            )))
        }
    }
}

/// Whether the running kernel has a feature: `CONFIG_<option>` set in its
/// configuration (/proc/config.gz or /boot/config-<release>), or the module
/// loaded. `None` when the configuration cannot be read.
fn kernel_config(option: &str, module: &str) -> Option<bool> {
    static CONFIG: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    if Path::new("/sys/module").join(module).exists() {
        return Some(true);
    }
    let config = CONFIG.get_or_init(|| {
        let from_proc = Command::new("zcat")
            .arg("/proc/config.gz")
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        from_proc.or_else(|| {
            let release = nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .ok()?;
            std::fs::read_to_string(format!("/boot/config-{release}")).ok()
        })
    });
    let config = config.as_ref()?;
    let set = config.lines().any(|l| {
        l.strip_prefix(&format!("CONFIG_{option}="))
            .is_some_and(|v| v == "y" || v == "m")
    });
    Some(set)
}

fn kernel_has(option: &str, module: &str) -> bool {
    // Unknown configuration: assume a stock kernel, which has it as a module.
    kernel_config(option, module).unwrap_or(true)
}

/// How packets reach the delayer on this host: an nftables `queue` rule, or
/// the xtables NFQUEUE target through `iptables`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum QueueBy {
    Nft,
    Iptables,
}

fn queue_by() -> Option<QueueBy> {
    if kernel_has("NFT_QUEUE", "nft_queue") {
        Some(QueueBy::Nft)
    } else if kernel_config("NETFILTER_XT_TARGET_NFQUEUE", "xt_NFQUEUE").unwrap_or(false)
        && host::which("iptables").is_some()
    {
        Some(QueueBy::Iptables)
    } else {
        None
    }
}

/// Whether `tc ... netem` can be used on this kernel.
pub(super) fn has_netem() -> bool {
    kernel_has("NET_SCH_NETEM", "sch_netem")
}

/// One kind of link impairment and whether this kernel supports it.
#[derive(Debug, Clone, Serialize)]
pub struct Impairment {
    pub name: &'static str,
    pub supported: bool,
    /// How rehearse does it here, or what is missing.
    pub how: String,
}

/// What link impairments this host's kernel supports, and how.
pub fn impairment_support() -> Vec<Impairment> {
    let nft = host::which("nft").is_some();
    let tc = host::which("tc").is_some();
    let netem = has_netem();
    let queue = queue_by();
    let tbf = kernel_has("NET_SCH_TBF", "sch_tbf");
    vec![
        Impairment {
            name: "partition",
            supported: nft,
            how: if nft { "nftables in the nodes' namespaces".into() } else { "needs nft (package nftables)".into() },
        },
        Impairment {
            name: "loss",
            supported: nft,
            how: if nft { "nftables numgen".into() } else { "needs nft (package nftables)".into() },
        },
        Impairment {
            name: "rate",
            supported: tc && tbf,
            how: if tc && tbf { "tbf qdisc".into() } else { "needs tc (iproute2) and the sch_tbf kernel module".into() },
        },
        Impairment {
            name: "delay",
            supported: netem || queue.is_some(),
            how: match (netem, queue) {
                (true, _) => "netem qdisc".into(),
                (false, Some(QueueBy::Nft)) => {
                    "no sch_netem in this kernel: nftables queue + rehearse's user-space delayer".into()
                }
                (false, Some(QueueBy::Iptables)) => {
                    "no sch_netem nor nft queue in this kernel: iptables NFQUEUE + rehearse's user-space delayer".into()
                }
                (false, None) => {
                    "needs sch_netem, or nfnetlink_queue with nft queue or the xtables NFQUEUE target (and iptables)".into()
                }
            },
        },
    ]
}
