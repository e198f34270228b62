use rehearse_api::types::{ClusterInfo, ClusterList, ListRequest};
use rehearse_api::Command;

use crate::output::{human_duration, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Show these clusters node by node: image, addresses, limits, memory in
    /// use and OOM kills.
    clusters: Vec<String>,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let list = super::answer!(
        super::mcp::api()?.execute(Command::List(ListRequest::default()), None)?,
        List
    );
    if !args.clusters.is_empty() {
        let mut shown = Vec::new();
        for id in &args.clusters {
            let Some(c) = list.clusters.iter().find(|c| &c.cluster == id) else {
                let known: Vec<&str> = list.clusters.iter().map(|c| c.cluster.as_str()).collect();
                anyhow::bail!(
                    "no cluster \"{id}\" (clusters: {})",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            };
            shown.push(c.clone());
        }
        if json {
            print_json(&ClusterList { clusters: shown });
        } else {
            for c in &shown {
                print_nodes(c);
            }
        }
        return Ok(0);
    }
    if json {
        print_json(&list);
        return Ok(0);
    }
    if list.clusters.is_empty() {
        println!("no clusters");
        return Ok(0);
    }
    println!(
        "{:<8} {:<10} {:>5} {:>9}  {:<40} SOURCE",
        "CLUSTER", "STATUS", "NODES", "TTL LEFT", "NODES (IP)"
    );
    for c in list.clusters {
        let nodes: Vec<String> = c
            .nodes
            .iter()
            .map(|n| format!("{}={}", n.name, n.ip.as_deref().unwrap_or_default()))
            .collect();
        println!(
            "{:<8} {:<10} {:>5} {:>9}  {:<40} {}",
            c.cluster,
            c.status,
            c.nodes.len(),
            human_duration(c.ttl_left_s),
            nodes.join(" "),
            c.source
        );
    }
    Ok(0)
}

/// One cluster, node by node.
fn print_nodes(c: &ClusterInfo) {
    println!(
        "cluster {}  {}  expires in {}  ({})",
        c.cluster,
        c.status,
        human_duration(c.ttl_left_s),
        c.source
    );
    println!(
        "  {:<12} {:<13} {:<7} {:<18} {:>10}  {:<36} OOM KILLS",
        "NODE", "IMAGE", "BACKEND", "ADDRESS", "MEMORY", "LIMITS"
    );
    for n in &c.nodes {
        let used = n
            .memory_used_bytes
            .map(rehearse_spec::limits::format_memory)
            .unwrap_or_else(|| "-".into());
        println!(
            "  {:<12} {:<13} {:<7} {:<18} {:>10}  {:<36} {}",
            n.name,
            n.image,
            n.backend,
            n.ip.as_deref().unwrap_or("-"),
            used,
            n.limits.text,
            n.oom_kills
        );
    }
}
