use std::sync::Arc;

use rehearse_mcp::api::Api;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    rehearse_mcp::run_stdio(api()?).map_err(|e| anyhow::anyhow!("MCP server on stdio: {e}"))?;
    Ok(0)
}

/// The command set over this host's engine, for the servers and for the CLI
/// verbs that exist as tools too (so both give the same results and errors);
/// clusters it provisions get a
/// reaper like those of `rehearse up`, so they die at expiry even if the
/// server does first.
pub fn api() -> anyhow::Result<Arc<Api>> {
    let engine = super::engine()?;
    Ok(Api::with_reaper(
        engine,
        Some(Box::new(super::up::spawn_reaper)),
    ))
}
