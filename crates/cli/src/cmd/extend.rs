use std::time::Duration;

use crate::output::{human_duration, print_json};

#[derive(clap::Args)]
pub struct Args {
    /// Cluster id.
    cluster: String,
    /// New time to live, counted from now.
    #[arg(long, value_parser = super::parse_duration, default_value = "30m")]
    ttl: Duration,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let engine = super::engine()?;
    let state = engine.extend(&args.cluster, args.ttl)?;
    if json {
        print_json(
            &serde_json::json!({"cluster": state.id, "expires_at": state.expires_at, "ttl_left_s": state.ttl_left()}),
        );
    } else {
        println!(
            "cluster {} now expires in {}",
            state.id,
            human_duration(state.ttl_left())
        );
    }
    Ok(0)
}
