use crate::output::{human_duration, print_json};

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args, json: bool) -> anyhow::Result<i32> {
    let engine = super::engine()?;
    let clusters = engine.list();
    if json {
        let all: Vec<_> = clusters
            .iter()
            .map(|c| super::up::cluster_json(&engine, c))
            .collect();
        print_json(&serde_json::json!({ "clusters": all }));
        return Ok(0);
    }
    if clusters.is_empty() {
        println!("no clusters");
        return Ok(0);
    }
    println!(
        "{:<8} {:<10} {:>5} {:>9}  {:<40} SOURCE",
        "CLUSTER", "STATUS", "NODES", "TTL LEFT", "NODES (IP)"
    );
    for c in clusters {
        let nodes: Vec<String> = c
            .nodes
            .iter()
            .map(|n| {
                format!(
                    "{}={}",
                    n.name,
                    n.ip().map(|i| i.to_string()).unwrap_or_default()
                )
            })
            .collect();
        println!(
            "{:<8} {:<10} {:>5} {:>9}  {:<40} {}",
            c.id,
            format!("{:?}", c.status).to_lowercase(),
            c.nodes.len(),
            human_duration(c.ttl_left()),
            nodes.join(" "),
            c.source
        );
    }
    Ok(0)
}
