use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use rehearse_sandbox::{ClusterState, Progress, UpRequest, DEFAULT_TTL};
use rehearse_spec::{Topology, DEFAULT_IMAGE};

use crate::output::{human_duration, print_json, Spinner};

#[derive(clap::Args)]
pub struct Args {
    /// Number of nodes, named node1..nodeN, on one network.
    #[arg(long, short = 'n', conflicts_with = "file")]
    nodes: Option<usize>,
    /// A topology file naming nodes, images and networks.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Image of the nodes (with --nodes).
    #[arg(long, default_value = DEFAULT_IMAGE)]
    image: String,
    /// What runs nodes whose topology names no `backend`: `nspawn` (containers,
    /// the default) or `vm` (QEMU microVMs with a kernel of their own).
    #[arg(long, value_parser = ["nspawn", "vm"])]
    backend: Option<String>,
    /// Time to live; the cluster is destroyed after it (extend with `rehearse extend`).
    #[arg(long, value_parser = super::parse_duration, default_value = "30m")]
    ttl: Duration,
    /// How long nodes may take to boot before `up` gives up.
    #[arg(long, value_parser = super::parse_duration, default_value = "60s")]
    boot_timeout: Duration,
    /// Do not start the background reaper that destroys the cluster at expiry
    /// (or when `up` dies before it is ready).
    #[arg(long, hide = true)]
    no_reaper: bool,
    /// Boot new nodes even when the warm pool holds a cluster of this shape.
    #[arg(long)]
    no_pool: bool,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let (mut topology, source) = match (&args.file, args.nodes) {
        (Some(path), _) => (Topology::from_path(path)?, path.display().to_string()),
        (None, n) => {
            let n = n.unwrap_or(1);
            (
                Topology::with_nodes(n, &args.image)?,
                format!("--nodes {n}"),
            )
        }
    };
    if let Some(backend) = &args.backend {
        topology.set_default_backend(backend.parse()?);
    }
    let api = rehearse_api::Api::with_store(
        if args.no_reaper {
            super::engine_without_reaper()?
        } else {
            super::engine()?
        },
        super::store(),
    );
    let engine = api.engine();
    let spinner = Spinner::new(json);
    spinner.set("starting");
    let progress = |p: Progress| {
        match p {
        Progress::Image(msg) => spinner.set(format!("image: {msg}")),
        Progress::Booting { cluster, nodes } => {
            spinner.set(format!("cluster {cluster}: booting {nodes} node(s)"))
        }
        Progress::NodeReady { node, ms } => spinner.line(format!("  {node} ready in {ms} ms")),
        Progress::WaitingForCapacity {
            needed,
            fits,
            limited_by,
        } => spinner.set(format!(
            "waiting for room on the host: {needed} node(s) needed, {fits} fit now (limited by {limited_by})"
        )),
        Progress::NodeRetry { node, reason } => spinner.line(format!(
            "  {node} failed to boot ({reason}); booting it once more on a fresh node"
        )),
    }
    };
    let state = api
        .up(
            UpRequest {
                topology,
                ttl: if args.ttl.is_zero() {
                    DEFAULT_TTL
                } else {
                    args.ttl
                },
                boot_timeout: args.boot_timeout,
                source,
                ownership: rehearse_sandbox::Ownership::User,
            },
            !args.no_pool,
            &progress,
        )
        .context("starting the cluster")?;
    spinner.finish();
    if json {
        print_json(&cluster_json(engine, &state));
    } else {
        print_human(&state, &engine.cluster_dir(&state.id));
    }
    Ok(0)
}

pub fn cluster_json(engine: &rehearse_sandbox::Engine, state: &ClusterState) -> serde_json::Value {
    serde_json::to_value(rehearse_api::cluster_info(engine, state))
        .expect("cluster info serialises")
}

fn print_human(state: &ClusterState, dir: &std::path::Path) {
    println!(
        "cluster {}  ready in {} ms  (expires in {})",
        state.id,
        state.boot_ms.unwrap_or_default(),
        human_duration(state.ttl_left())
    );
    for node in &state.nodes {
        let addrs: Vec<String> = node
            .nics
            .iter()
            .map(|c| format!("{} ({})", c.ip, c.network))
            .collect();
        println!(
            "  {:<12} {:<36} {}",
            node.name,
            addrs.join(", "),
            node.limits
        );
    }
    let first = state
        .nodes
        .first()
        .map(|n| n.name.as_str())
        .unwrap_or("node1");
    println!();
    println!("  rehearse exec {} {first} -- hostname", state.id);
    println!("  ssh -F {} {first}", dir.join("ssh/config").display());
    println!("  rehearse down {}", state.id);
}

/// Starts `rehearse __reap ID` in its own session: it destroys the cluster
/// when the process it was made for dies, or at expiry, even if nobody calls
/// `rehearse` again.
pub(super) fn spawn_reaper(id: &str) {
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
