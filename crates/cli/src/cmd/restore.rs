//! `rehearse restore CLUSTER NAME`: bring every node back to a snapshot.

use std::time::Duration;

use rehearse_api::snapshots::RestoreRequest;
use rehearse_api::Command;

use crate::output::{print_json, Spinner};

#[derive(clap::Args)]
pub struct Args {
    /// Cluster id.
    cluster: String,
    /// Snapshot name (see `rehearse snapshot ls CLUSTER`).
    name: String,
    /// How long the nodes may take to boot again.
    #[arg(long, value_parser = super::parse_duration, default_value = "60s")]
    boot_timeout: Duration,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let spinner = Spinner::new(json);
    spinner.set(format!(
        "cluster {}: restoring snapshot {}",
        args.cluster, args.name
    ));
    let result = super::mcp::api()?.execute(
        Command::Restore(RestoreRequest {
            cluster: args.cluster,
            name: args.name,
            boot_timeout: Some(format!("{}ms", args.boot_timeout.as_millis())),
        }),
        None,
    );
    spinner.finish();
    let r = super::answer!(result?, Restore);
    if json {
        print_json(&r);
    } else {
        println!(
            "cluster {} is back at snapshot {} ({} ms)",
            r.cluster, r.snapshot, r.took_ms
        );
        for n in &r.nodes {
            println!(
                "  {} booted in {} ms",
                n.name,
                n.boot_ms.unwrap_or_default()
            );
        }
    }
    Ok(0)
}
