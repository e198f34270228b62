use std::net::SocketAddr;

#[derive(clap::Args)]
pub struct Args {
    /// Address to listen on. Anything but loopback exposes root on this host
    /// to whoever holds the token: put TLS in front.
    #[arg(long, default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Bearer token clients must send; generated and printed on stderr when unset.
    #[arg(long, env = "REHEARSE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Keep the warm pool this state directory's `pool.yaml` sets (see
    /// `rehearse pool set`) while serving; what still waits in it is
    /// destroyed when the server stops.
    #[arg(long)]
    pool: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let api = super::mcp::api()?;
    let token = match args.token.filter(|t| !t.is_empty()) {
        Some(t) => t,
        None => {
            let t = rehearse_mcp::generate_token();
            eprintln!("rehearse: generated bearer token (set --token or REHEARSE_TOKEN to choose one): {t}");
            t
        }
    };
    eprintln!(
        "rehearse: MCP over streamable HTTP at http://{}/mcp",
        args.listen
    );
    eprintln!(
        "rehearse: dashboard at http://{}/login?token={token}  (metrics at /metrics, same token)",
        args.listen
    );
    let keeper = super::pool::Keeper::start(args.pool);
    let served = rehearse_web::run(api, args.listen, token)
        .map_err(|e| anyhow::anyhow!("the server on {}: {e}", args.listen));
    keeper.stop();
    served?;
    Ok(0)
}
