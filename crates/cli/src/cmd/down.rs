use std::time::Instant;

use serde_json::json;

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
    let engine = super::engine()?;
    let ids: Vec<String> = if args.all {
        engine.list().into_iter().map(|c| c.id).collect()
    } else {
        args.clusters
    };
    let mut results = Vec::new();
    let mut failed = false;
    for id in ids {
        let t0 = Instant::now();
        match engine.down(&id) {
            Ok(()) => {
                let ms = t0.elapsed().as_millis() as u64;
                rehearse_scenario::record_cluster_destroyed(engine.history_dir(), &id);
                if !json {
                    println!("destroyed {id} in {ms} ms");
                }
                results.push(json!({"cluster": id, "destroyed": true, "ms": ms}));
            }
            Err(e) => {
                failed = true;
                eprintln!("error: {id}: {e}");
                results.push(json!({"cluster": id, "destroyed": false, "error": {"code": e.code(), "message": e.to_string()}}));
            }
        }
    }
    if args.all {
        engine.gc()?;
    }
    if json {
        print_json(&json!({ "results": results }));
    }
    Ok(if failed { 1 } else { 0 })
}
