//! `rehearse pool`: clusters booted ahead of demand, so `up` (and run,
//! converge, provision) of a topology the pool keeps returns in milliseconds.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use rehearse_sandbox::PoolConfig;
use rehearse_spec::scenario::Scenario;
use rehearse_spec::{ErrorKind, Topology, DEFAULT_IMAGE};

use crate::output::print_json;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Subcommand)]
enum What {
    /// Keep SIZE clusters of NODES nodes of IMAGE ready, or of the topology of
    /// a file (SIZE 0 removes the shape). Written to `<state dir>/pool.yaml`;
    /// a running keeper follows it at once.
    Set {
        /// Nodes per cluster (named node1..nodeN, as `up -n N` makes them).
        #[arg(long, short = 'n', default_value_t = 1, conflicts_with_all = ["from", "shape"])]
        nodes: usize,
        /// A topology or scenario file (or scenario folder): keep clusters of
        /// exactly its nodes, images, groups, networks and limits (its ttl aside).
        #[arg(long, short = 'f', conflicts_with_all = ["image", "shape"])]
        from: Option<PathBuf>,
        /// A shape the pool keeps already, as `pool status` names it.
        #[arg(long, conflicts_with = "image")]
        shape: Option<String>,
        /// Clusters of this shape to keep ready.
        #[arg(long)]
        size: usize,
        #[arg(long, default_value = DEFAULT_IMAGE)]
        image: String,
    },
    /// What the pool keeps, whether a keeper runs, and what the waiting clusters cost.
    Status,
    /// Keep the pool filled in the foreground until stopped (SIGINT/SIGTERM);
    /// then destroy every cluster still waiting. `rehearse serve --pool` does the same.
    Keep,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let engine = super::engine()?;
    match args.what {
        What::Set {
            nodes,
            from,
            shape,
            size,
            image,
        } => {
            let mut config = PoolConfig::load(engine.state_dir())?;
            match (from, shape) {
                (Some(path), _) => {
                    config.set_topology(&topology_of(&path)?, size)?;
                }
                (None, Some(shape)) => config.set_shape(&shape, size)?,
                (None, None) => {
                    config.set(&image, nodes, size)?;
                }
            }
            config.save(engine.state_dir())?;
            if json {
                print_json(&config);
            } else {
                println!(
                    "pool: {} ({})",
                    describe(&config),
                    PoolConfig::path(engine.state_dir()).display()
                );
            }
        }
        What::Status => {
            let status = engine.pool_status()?;
            if json {
                print_json(&serde_json::json!({
                    "config": status.config,
                    "keeper": status.keeper,
                    "ready": status.ready,
                    "memory_bytes": status.memory_bytes(),
                }));
                return Ok(0);
            }
            println!("pool: {}", describe(&status.config));
            match status.keeper {
                Some(pid) => println!("keeper: pid {pid}"),
                None => println!(
                    "keeper: none (start one with `rehearse pool keep` or `rehearse serve --pool`)"
                ),
            }
            for entry in &status.config.entries {
                let ready: Vec<_> = status
                    .ready
                    .iter()
                    .filter(|p| p.shape == entry.shape())
                    .collect();
                let memory: u64 = ready.iter().map(|p| p.memory_bytes).sum();
                let cpu: u64 = ready.iter().map(|p| p.cpu_usec).sum();
                println!(
                    "  {:<20} ready {}/{}  memory {}  cpu used {:.1} s",
                    entry.shape(),
                    ready.len(),
                    entry.size,
                    rehearse_spec::limits::format_memory(memory),
                    cpu as f64 / 1e6
                );
            }
        }
        What::Keep => {
            let stop = stop_on_signal();
            eprintln!(
                "rehearse: keeping the pool of {} ({}); stop with Ctrl-C",
                engine.state_dir().display(),
                describe(&PoolConfig::load(engine.state_dir())?)
            );
            engine.keep_pool(stop, &|event| eprintln!("pool: {event}"))?;
        }
    }
    Ok(0)
}

/// The topology of a topology file, or of a scenario (file or folder).
fn topology_of(path: &Path) -> anyhow::Result<Topology> {
    if path.is_dir() {
        return Ok(Scenario::from_path(path)?.topology);
    }
    match Topology::from_path(path) {
        Ok(topology) => Ok(topology),
        // Keys a topology file does not know: a scenario's, or a typo in
        // either; the scenario's error names it.
        Err(e) if e.kind() == ErrorKind::UnknownField => Scenario::from_path(path)
            .map(|s| s.topology)
            .with_context(|| format!("{} is neither a topology nor a scenario", path.display())),
        Err(e) => Err(e.into()),
    }
}

fn describe(config: &PoolConfig) -> String {
    if config.entries.is_empty() {
        return "off".into();
    }
    config
        .entries
        .iter()
        .map(|e| format!("{} × {}", e.size, e.shape()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A keeper running beside a server (`serve --pool`, `mcp --pool`) on a
/// thread of its own; stopping it drains the pool.
pub struct Keeper {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Keeper {
    /// Starts one when `wanted`; otherwise a keeper that does nothing.
    pub fn start(wanted: bool) -> Keeper {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = wanted.then(|| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || -> anyhow::Result<()> {
                super::engine()?.keep_pool(&stop, &|event| tracing::info!(event, "pool"))?;
                Ok(())
            })
        });
        Keeper { stop, thread }
    }

    /// Stops the keeper and waits until the pool is drained.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread {
            match thread.join() {
                Ok(Err(e)) => eprintln!("rehearse: the pool: {e:#}"),
                Err(_) => eprintln!("rehearse: the pool's keeper panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(_: nix::libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// A flag SIGINT and SIGTERM set, so the keeper drains its pool before it ends.
pub fn stop_on_signal() -> &'static AtomicBool {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is
        // async-signal-safe.
        unsafe {
            let _ = signal(sig, SigHandler::Handler(request_stop));
        }
    }
    &STOP
}
