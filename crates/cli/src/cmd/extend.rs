use rehearse_api::types::{ClusterInfo, ExtendRequest};
use rehearse_api::Command;

use crate::output::{human_duration, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Cluster id.
    cluster: String,
    /// New time to live, counted from now (e.g. 90s, 30m, 2h).
    #[arg(long, default_value = "30m")]
    ttl: String,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let request = ExtendRequest {
        cluster: args.cluster,
        ttl: args.ttl,
    };
    let value = super::mcp::api()?.execute(Command::Extend(request), None)?;
    if json {
        print_json(&value);
    } else {
        let cluster: ClusterInfo = serde_json::from_value(value)?;
        println!(
            "cluster {} now expires in {}",
            cluster.cluster,
            human_duration(cluster.ttl_left_s)
        );
    }
    Ok(0)
}
