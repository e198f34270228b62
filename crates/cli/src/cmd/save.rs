//! `rehearse save CLUSTER NODE IMAGE`: a node's disk as it is now becomes a new
//! golden image.

use rehearse_api::snapshots::SaveImageRequest;
use rehearse_api::Command;

use crate::output::{print_json, Spinner};

#[derive(clap::Args)]
pub struct Args {
    /// Cluster id.
    cluster: String,
    /// The node to save.
    node: String,
    /// Name of the new image ([a-z0-9][a-z0-9._-]*); boot it with `image: IMAGE` in a topology.
    image: String,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let spinner = Spinner::new(json);
    spinner.set(format!(
        "saving node {} of cluster {} as image {}",
        args.node, args.cluster, args.image
    ));
    let result = super::mcp::api()?.execute(
        Command::SaveImage(SaveImageRequest {
            cluster: args.cluster,
            node: args.node,
            image: args.image,
        }),
        None,
    );
    spinner.finish();
    let i = super::answer!(result?, SaveImage);
    if json {
        print_json(&i);
    } else {
        println!(
            "image {} ({}) saved from {}: {} in {:.1}s",
            i.name,
            i.id,
            i.origin.as_deref().unwrap_or("a node"),
            super::snapshot::size(i.size_bytes),
            i.build_secs
        );
        println!(
            "  boot it with `image: {}` in a topology, or `rehearse up --image {}`",
            i.name, i.name
        );
    }
    Ok(0)
}
