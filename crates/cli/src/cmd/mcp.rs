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
/// every cluster it starts gets a reaper, so a provisioned one dies at expiry
/// and a job's one with the server, even if nobody calls `rehearse` again.
pub fn api() -> anyhow::Result<Arc<Api>> {
    Ok(Api::new(super::engine()?))
}
