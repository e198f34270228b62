use rehearse_api::types::ExtendRequest;
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
    let cluster = super::answer!(
        super::mcp::api()?.execute(Command::Extend(request), None)?,
        Extend
    );
    if json {
        print_json(&cluster);
    } else {
        println!(
            "cluster {} now expires in {}",
            cluster.cluster,
            human_duration(cluster.ttl_left_s)
        );
    }
    Ok(0)
}
