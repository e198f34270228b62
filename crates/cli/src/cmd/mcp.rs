use std::sync::Arc;

use rehearse_mcp::api::Api;

#[derive(clap::Args)]
pub struct Args {
    /// Keep the warm pool this state directory's `pool.yaml` sets (see
    /// `rehearse pool set`) while serving, so `provision` takes clusters from
    /// it; what still waits in it is destroyed when the session ends.
    #[arg(long)]
    pool: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let keeper = super::pool::Keeper::start(args.pool);
    let served =
        rehearse_mcp::run_stdio(api()?).map_err(|e| anyhow::anyhow!("MCP server on stdio: {e}"));
    keeper.stop();
    served?;
    Ok(0)
}

/// The command set over this host's engine, for the servers and for the CLI
/// verbs that exist as tools too (so both give the same results and errors);
/// every cluster it starts gets a reaper, so a provisioned one dies at expiry
/// and a job's one with the server, even if nobody calls `rehearse` again.
pub fn api() -> anyhow::Result<Arc<Api>> {
    Ok(Api::with_store(super::engine()?, super::store()))
}
