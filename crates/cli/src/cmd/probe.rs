//! `rehearse probe CLUSTER KIND ...`: run one attack probe against a live
//! cluster. Exit 0 when the probe found nothing, 1 on a finding, 2 when it
//! could not be carried out.

use clap::Subcommand;

use rehearse_api::trials::ProbeRequest;
use rehearse_api::Command;
use rehearse_checks::CheckResult;
use rehearse_spec::trials::ProbeSpec;

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
    /// Scan every TCP port of TARGET from another node: any port open beyond `--open` is a finding.
    Ports {
        target: String,
        /// The node the scan runs from.
        #[arg(long)]
        from: String,
        /// The ports that may be open (comma-separated), e.g. 22,80.
        #[arg(long, value_delimiter = ',')]
        open: Vec<u16>,
    },
    /// SSH on TARGET must refuse password (and keyboard-interactive) login.
    SshPassword {
        target: String,
        #[arg(long)]
        from: String,
    },
    /// PORT of TARGET must be unreachable from every node outside NETWORK (or from `--from`).
    Internal {
        target: String,
        port: u16,
        /// The network the service is internal to.
        #[arg(long)]
        network: String,
        /// Probe from these nodes (comma-separated). Default: every node outside the network.
        #[arg(long, value_delimiter = ',')]
        from: Vec<String>,
    },
    /// No world-writable file and no setuid/setgid binary added on NODE since its image.
    Files { node: String },
    /// A TLS endpoint: certificate validity and hostname, no TLS 1.0/1.1.
    Tls {
        target: String,
        #[arg(long)]
        from: String,
        #[arg(long, default_value_t = 443)]
        port: u16,
        /// The name the certificate must carry. Default: TARGET.
        #[arg(long)]
        hostname: Option<String>,
        /// Fewest days the certificate must still be valid (default 14).
        #[arg(long)]
        min_days: Option<u32>,
    },
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let probe = match args.what {
        What::Ports { target, from, open } => ProbeSpec::Ports { target, from, open },
        What::SshPassword { target, from } => ProbeSpec::SshPassword { target, from },
        What::Internal {
            target,
            port,
            network,
            from,
        } => ProbeSpec::Internal {
            target,
            port,
            network,
            from,
        },
        What::Files { node } => ProbeSpec::Files { node },
        What::Tls {
            target,
            from,
            port,
            hostname,
            min_days,
        } => ProbeSpec::Tls {
            target,
            from,
            port,
            hostname,
            min_days,
        },
    };
    let Some(outcome) = super::execute_checked(
        Command::Probe(ProbeRequest {
            cluster: args.cluster,
            probe,
        }),
        json,
    )?
    else {
        return Ok(2);
    };
    let report = super::answer!(outcome, Probe);
    let passed = report.checks.iter().all(CheckResult::passed);
    if json {
        print_json(&report);
    } else {
        println!("probe {}", report.name);
        for c in &report.checks {
            println!("  {}", rehearse_checks::render_line(c));
        }
        println!("{}", if passed { "no finding" } else { "FINDINGS" });
    }
    Ok(if passed { 0 } else { 1 })
}
