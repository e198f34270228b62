use std::net::SocketAddr;
use std::time::Duration;

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
    /// Join a fleet: the PostgreSQL every host of it shares (runs, clusters,
    /// hosts and the queue of work live there). This host registers, beats,
    /// and runs queued work while it has room.
    #[arg(long, value_name = "URL", env = super::fleet::FLEET_ENV, hide_env_values = true)]
    fleet: Option<String>,
    /// The URL the other hosts reach this one's API at. Default: http://LISTEN.
    #[arg(long, value_name = "URL", requires = "fleet")]
    advertise: Option<String>,
    /// Fleet jobs this host runs at once.
    #[arg(long, default_value_t = 2, requires = "fleet", value_parser = clap::value_parser!(u64).range(1..))]
    fleet_jobs: u64,
    /// This host's name in the fleet. Default: the host's name.
    #[arg(long, requires = "fleet")]
    fleet_name: Option<String>,
    /// Nodes this host takes from the fleet in all. Default: as many as fit
    /// now (`rehearse doctor` shows the same number).
    #[arg(long, requires = "fleet")]
    fleet_slots: Option<u32>,
    /// How long a host may stay silent before the fleet gives up on it (its
    /// work is queued again, its runs and clusters reported lost).
    #[arg(long, value_parser = super::parse_duration, default_value = "10s", requires = "fleet")]
    fleet_timeout: Duration,
    /// How often this host tells the fleet it is alive.
    #[arg(long, value_parser = super::parse_duration, default_value = "2s", requires = "fleet")]
    fleet_heartbeat: Duration,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let fleet_name = match &args.fleet {
        Some(url) => {
            // Refused before anything is opened: a fleet shares PostgreSQL only.
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                return Err(rehearse_fleet::FleetError::NotPostgres(url.clone()).into());
            }
            let name = match &args.fleet_name {
                Some(n) => n.clone(),
                None => nix::unistd::gethostname()?.into_string().map_err(|_| {
                    anyhow::anyhow!("this host's name is not UTF-8: pass --fleet-name")
                })?,
            };
            // Every run and cluster this process records goes to the fleet's
            // store, marked with this host's name. Set before any thread starts.
            std::env::set_var(rehearse_store::DATABASE_URL_ENV, url);
            std::env::set_var(rehearse_store::HOST_ENV, &name);
            Some(name)
        }
        None => None,
    };
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
    let serving = match (&args.fleet, &fleet_name) {
        (Some(url), Some(name)) => {
            // The dashboard's fleet page, and MCP calls on clusters other
            // hosts hold passed on to them (every host serves the same token).
            let fleet = std::sync::Arc::new(rehearse_fleet::Fleet::connect(url)?);
            rehearse_web::FleetServing {
                fleet: Some(std::sync::Arc::clone(&fleet)),
                forwarding: Some(rehearse_mcp::Forwarding::new(
                    std::sync::Arc::new(rehearse_web::FleetHolders {
                        fleet: std::sync::Arc::clone(&fleet),
                        me: name.clone(),
                    }),
                    token.clone(),
                    name.clone(),
                    Some(std::sync::Arc::new(rehearse_web::FleetPlacement {
                        fleet,
                        submitter: format!("mcp@{name}"),
                    })),
                )),
            }
        }
        _ => rehearse_web::FleetServing::default(),
    };
    let worker = match (&args.fleet, fleet_name) {
        (Some(url), Some(name)) => {
            let slots = args.fleet_slots.unwrap_or_else(|| {
                let fits = rehearse_sandbox::capacity::measure(api.engine().state_dir()).fits;
                u32::try_from(fits).unwrap_or(u32::MAX)
            });
            let config = rehearse_fleet::WorkerConfig {
                name: name.clone(),
                url: Some(
                    args.advertise
                        .clone()
                        .unwrap_or_else(|| format!("http://{}", args.listen)),
                ),
                jobs: args.fleet_jobs as usize,
                slots,
                heartbeat: args.fleet_heartbeat,
                timeout: args.fleet_timeout,
                work_dir: api.engine().state_dir().join("fleet"),
            };
            let worker = rehearse_fleet::Worker::start(url, api.clone(), config)?;
            eprintln!(
                "rehearse: joined the fleet as {name} ({}), {slots} node slots",
                worker.host_id()
            );
            Some(worker)
        }
        _ => None,
    };
    let keeper = super::pool::Keeper::start(args.pool);
    let served = rehearse_web::run_in_fleet(api, args.listen, token, serving)
        .map_err(|e| anyhow::anyhow!("the server on {}: {e}", args.listen));
    keeper.stop();
    if let Some(worker) = worker {
        worker.stop();
    }
    served?;
    Ok(0)
}
