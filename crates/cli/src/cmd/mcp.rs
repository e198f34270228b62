use std::sync::Arc;

use rehearse_mcp::api::Api;

#[derive(clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<i32> {
    rehearse_mcp::run_stdio(api()?).map_err(|e| anyhow::anyhow!("MCP server on stdio: {e}"))?;
    Ok(0)
}

/// The command set over this host's engine; clusters it provisions get a
/// reaper like those of `rehearse up`, so they die at expiry even if the
/// server does first.
pub fn api() -> anyhow::Result<Arc<Api>> {
    let engine = super::engine()?;
    Ok(Api::with_reaper(engine, Some(Box::new(spawn_reaper))))
}

fn spawn_reaper(id: &str) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("__reap")
        .arg(id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    rehearse_sandbox::host::detach(&mut cmd);
    let _ = cmd.spawn();
}
