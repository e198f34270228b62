//! `rehearse snapshot CLUSTER NAME`: capture every node of a cluster at one
//! instant; `rehearse snapshot ls CLUSTER` and `rehearse snapshot rm CLUSTER NAME`
//! list and remove snapshots.

use anyhow::bail;

use rehearse_api::snapshots::SnapshotRequest;
use rehearse_api::types::ClusterRequest;
use rehearse_api::Command;
use rehearse_sandbox::CopyMode;

use crate::output::{human_duration, print_json};

#[derive(clap::Args)]
#[command(
    override_usage = "rehearse snapshot CLUSTER NAME\n       rehearse snapshot ls CLUSTER\n       rehearse snapshot rm CLUSTER NAME"
)]
pub struct Args {
    /// CLUSTER NAME to take a snapshot; `ls CLUSTER` to list; `rm CLUSTER NAME` to remove one.
    #[arg(num_args = 1..=3, required = true, value_name = "ARGS")]
    args: Vec<String>,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let api = super::mcp::api()?;
    let words: Vec<&str> = args.args.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["ls", cluster] => {
            let list = super::answer!(
                api.execute(
                    Command::Snapshots(ClusterRequest {
                        cluster: cluster.to_string(),
                    }),
                    None,
                )?,
                Snapshots
            );
            if json {
                print_json(&list);
                return Ok(0);
            }
            if list.snapshots.is_empty() {
                println!("cluster {} has no snapshot", list.cluster);
                return Ok(0);
            }
            println!(
                "{:<24} {:>10} {:>6} {:>10} {:>8}",
                "NAME", "TAKEN", "NODES", "SIZE", "FROZEN"
            );
            for s in &list.snapshots {
                println!(
                    "{:<24} {:>10} {:>6} {:>10} {:>6}ms",
                    s.name,
                    format!(
                        "{} ago",
                        human_duration(
                            (rehearse_sandbox::host::now_secs().saturating_sub(s.created_at) as i64).max(1)
                        )
                    ),
                    s.nodes.len(),
                    size(s.bytes),
                    s.frozen_ms
                );
            }
        }
        ["rm", cluster, name] => {
            let removed = super::answer!(
                api.execute(
                    Command::SnapshotRemove(SnapshotRequest {
                        cluster: cluster.to_string(),
                        name: name.to_string(),
                    }),
                    None,
                )?,
                SnapshotRemove
            );
            if json {
                print_json(&removed);
            } else {
                println!(
                    "removed snapshot {} of cluster {}",
                    removed.removed.name, removed.cluster
                );
            }
        }
        [cluster, name] if !matches!(*cluster, "ls" | "rm") => {
            let s = super::answer!(
                api.execute(
                    Command::Snapshot(SnapshotRequest {
                        cluster: cluster.to_string(),
                        name: name.to_string(),
                    }),
                    None,
                )?,
                Snapshot
            );
            if json {
                print_json(&s);
            } else {
                println!(
                    "snapshot {} of cluster {}: {} node(s), {} ({}), nodes frozen {} ms, took {} ms",
                    s.name,
                    s.cluster,
                    s.nodes.len(),
                    size(s.bytes),
                    match s.copy {
                        CopyMode::Reflink => "copy-on-write",
                        CopyMode::Copy => "copied: this filesystem cannot clone files",
                    },
                    s.frozen_ms,
                    s.took_ms
                );
                println!("  go back to it with `rehearse restore {} {}`", s.cluster, s.name);
            }
        }
        _ => bail!(
            "usage: `rehearse snapshot CLUSTER NAME`, `rehearse snapshot ls CLUSTER` or `rehearse snapshot rm CLUSTER NAME` (got: {})",
            args.args.join(" ")
        ),
    }
    Ok(0)
}

pub fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.0} KiB", b as f64 / 1024.0),
    }
}
