use rehearse_api::streams::CopyEnd;
use serde_json::json;

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Cluster id.
    cluster: String,
    /// Source: a host path, or NODE:PATH.
    src: String,
    /// Destination: a host path, or NODE:PATH. An existing folder receives the source inside it.
    dest: String,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let (src, dest) = (CopyEnd::parse(&args.src), CopyEnd::parse(&args.dest));
    super::mcp::api()?.copy(&args.cluster, &src, &dest)?;
    if json {
        print_json(
            &json!({"cluster": args.cluster, "src": args.src, "dest": args.dest, "copied": true}),
        );
    }
    Ok(0)
}
