use std::time::Instant;

use serde_json::json;

use rehearse_api::history::Nothing;
use rehearse_api::types::{ClusterRequest, ListRequest};
use rehearse_api::Command;

use super::answer;
use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Cluster ids.
    #[arg(required_unless_present = "all")]
    clusters: Vec<String>,
    /// Destroy every cluster.
    #[arg(long, conflicts_with = "clusters")]
    all: bool,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let api = super::mcp::api()?;
    let ids: Vec<String> = if args.all {
        // Every live cluster (not those waiting in the warm pool: its
        // keeper's); gc below takes the expired ones.
        answer!(api.execute(Command::List(ListRequest {}), None)?, List)
            .clusters
            .into_iter()
            .map(|c| c.cluster)
            .collect()
    } else {
        args.clusters
    };
    let mut results = Vec::new();
    let mut failed = false;
    for id in ids {
        let t0 = Instant::now();
        // The command set destroys and records the cluster's end.
        match api.execute(
            Command::Destroy(ClusterRequest {
                cluster: id.clone(),
            }),
            None,
        ) {
            Ok(_) => {
                let ms = t0.elapsed().as_millis() as u64;
                if !json {
                    println!("destroyed {id} in {ms} ms");
                }
                results.push(json!({"cluster": id, "destroyed": true, "ms": ms}));
            }
            Err(e) => {
                failed = true;
                eprintln!("error: {id}: {}", e.message);
                results.push(json!({"cluster": id, "destroyed": false, "error": e}));
            }
        }
    }
    if args.all {
        api.execute(Command::Gc(Nothing {}), None)?;
    }
    if json {
        print_json(&json!({ "results": results }));
    }
    Ok(if failed { 1 } else { 0 })
}
