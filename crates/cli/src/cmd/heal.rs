//! `rehearse heal CLUSTER [FAULT]`: undo one fault or every active one.

use rehearse_api::trials::HealRequest;
use rehearse_api::Command;

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    /// Cluster id.
    cluster: String,
    /// The fault to heal (its id from `rehearse fault`). Default: every active fault.
    fault: Option<u32>,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let outcome = super::mcp::api()?.execute(
        Command::Heal(HealRequest {
            cluster: args.cluster,
            fault: args.fault,
        }),
        None,
    )?;
    let healed = super::answer!(outcome, Heal);
    if json {
        print_json(&healed);
    } else {
        if healed.healed.is_empty() {
            println!("cluster {} has no active fault", healed.cluster);
        }
        for f in &healed.healed {
            println!("{}", super::fault::line(f));
        }
    }
    Ok(0)
}
