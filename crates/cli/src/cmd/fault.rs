//! `rehearse fault CLUSTER KIND ...`: inject a fault into a live cluster;
//! `rehearse fault CLUSTER list`: what was injected and healed.

use clap::Subcommand;

use rehearse_api::trials::FaultRequest;
use rehearse_api::types::ClusterRequest;
use rehearse_api::Command;
use rehearse_sandbox::{FaultRecord, FaultStatus};
use rehearse_spec::trials::{FaultAction, Span};

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Cluster id.
    cluster: String,
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Kill a node's PID 1 (it stays down until `rehearse heal`, which boots it again).
    Crash { node: String },
    /// Reboot a node cleanly and wait until it is back.
    Reboot { node: String },
    /// Cut the network between sides: `partition lb web1,web2` (node or group names, comma-separated per side).
    Partition {
        #[arg(num_args = 2.., required = true)]
        sides: Vec<String>,
    },
    /// Impair what a node sends: loss, latency with jitter, bandwidth cap.
    Link {
        node: String,
        /// Only towards these nodes or groups (comma-separated).
        #[arg(long, value_delimiter = ',')]
        to: Vec<String>,
        /// Packet loss in percent.
        #[arg(long)]
        loss: Option<u8>,
        /// Added latency, e.g. 100ms.
        #[arg(long, value_parser = span)]
        delay: Option<Span>,
        /// Latency varies by up to this much either way, e.g. 20ms.
        #[arg(long, value_parser = span)]
        jitter: Option<Span>,
        /// Bandwidth cap in kbit/s.
        #[arg(long)]
        rate_kbit: Option<u32>,
    },
    /// Fill the filesystem under PATH on a node so writes there fail with ENOSPC.
    DiskFull {
        node: String,
        path: String,
        /// Size of the small filesystem laid over PATH, in MiB.
        #[arg(long)]
        size_mb: Option<u32>,
    },
    /// `systemctl stop` a service on a node (heal starts it).
    Stop { node: String, service: String },
    /// SIGKILL every process of a service on a node (heal starts it if it is down).
    Kill { node: String, service: String },
    /// List the cluster's faults (also `ls`, as for snapshots).
    #[command(alias = "ls")]
    List,
}

fn span(s: &str) -> Result<Span, String> {
    super::parse_duration(s).map(Span)
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let api = super::mcp::api()?;
    let fault = match args.what {
        What::List => {
            let list = super::answer!(
                api.execute(
                    Command::Faults(ClusterRequest {
                        cluster: args.cluster,
                    }),
                    None,
                )?,
                Faults
            );
            if json {
                print_json(&list);
            } else {
                if list.faults.is_empty() {
                    println!("cluster {} has had no faults", list.cluster);
                }
                for f in &list.faults {
                    println!("{}", line(f));
                }
            }
            return Ok(0);
        }
        What::Crash { node } => FaultAction::Crash { node },
        What::Reboot { node } => FaultAction::Reboot { node },
        What::Partition { sides } => FaultAction::Partition {
            sides: sides
                .iter()
                .map(|s| {
                    s.split(',')
                        .filter(|x| !x.is_empty())
                        .map(String::from)
                        .collect()
                })
                .collect(),
        },
        What::Link {
            node,
            to,
            loss,
            delay,
            jitter,
            rate_kbit,
        } => FaultAction::Link {
            node,
            peers: to,
            loss,
            delay,
            jitter,
            rate_kbit,
        },
        What::DiskFull {
            node,
            path,
            size_mb,
        } => FaultAction::DiskFull {
            node,
            path,
            size_mb,
        },
        What::Stop { node, service } => FaultAction::StopService { node, service },
        What::Kill { node, service } => FaultAction::KillService { node, service },
    };
    let value = api.execute(
        Command::Fault(FaultRequest {
            cluster: args.cluster.clone(),
            fault,
        }),
        None,
    )?;
    let record = super::answer!(value, Fault);
    if json {
        print_json(&record);
    } else {
        println!("{}", line(&record));
        if record.status == FaultStatus::Active {
            println!(
                "heal it with `rehearse heal {} {}` (or all with `rehearse heal {}`)",
                args.cluster, record.id, args.cluster
            );
        }
    }
    Ok(0)
}

pub fn line(f: &FaultRecord) -> String {
    let status = match f.status {
        FaultStatus::Active => "active",
        FaultStatus::Healed => "healed",
        FaultStatus::Done => "done",
    };
    format!(
        "fault {} [{status}] {}: {}",
        f.id,
        f.action.describe(),
        f.detail
    )
}
