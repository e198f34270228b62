use rehearse_api::types::{ClusterList, ListRequest};
use rehearse_api::Command;

use crate::output::{human_duration, print_json};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args, json: bool) -> anyhow::Result<i32> {
    let value = super::mcp::api()?.execute(Command::List(ListRequest::default()), None)?;
    if json {
        print_json(&value);
        return Ok(0);
    }
    let list: ClusterList = serde_json::from_value(value)?;
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
