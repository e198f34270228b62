//! `rehearse __netdelay QUEUE DELAY_US JITTER_US`: the user-space delayer a
//! link fault starts inside a node's network namespace (see
//! `rehearse_sandbox::fault`). Not for people.

use std::time::Duration;

#[derive(clap::Args)]
pub struct Args {
    queue: u16,
    delay_us: u64,
    jitter_us: u64,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    rehearse_sandbox::fault::run_delayer(
        args.queue,
        Duration::from_micros(args.delay_us),
        Duration::from_micros(args.jitter_us),
    )?;
    Ok(1)
}
