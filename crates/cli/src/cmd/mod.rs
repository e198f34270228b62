//! The command set. One file per verb; each turns arguments into engine calls
//! and renders the result.

mod converge;
mod cp;
mod doctor;
mod down;
mod eval;
mod exec;
mod extend;
mod fault;
mod fleet;
mod gc;
mod heal;
mod image;
mod load;
mod ls;
mod mcp;
mod netdelay;
mod pool;
mod probe;
mod reap;
mod recipe;
mod restore;
mod run;
mod runs;
mod save;
mod serve;
mod snapshot;
mod ssh;
mod up;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use rehearse_api::SharedStore;
use rehearse_sandbox::Engine;

#[derive(Parser)]
#[command(
    name = "rehearse",
    version,
    about = "A proving ground for infrastructure code: disposable multi-node Linux clusters in well under a second."
)]
pub struct Cli {
    /// Print one JSON document on stdout instead of human text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Log what happens on stderr.
    #[arg(long, short, global = true)]
    pub verbose: bool,
    /// How log lines on stderr are written: text, or one JSON object per line
    /// carrying the run id of the run it belongs to.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "REHEARSE_LOG_FORMAT"
    )]
    pub log_format: crate::output::LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario on a fresh cluster: steps, checks, idempotence, reboot, hygiene; exit 0 only if all passed.
    Run(run::Args),
    /// Loop an LLM (or the rules doctor alone) until a task's checks pass; print the script proven on a fresh cluster.
    Converge(converge::Args),
    /// Converge a set of tasks with the configured model, N attempts each; report pass rate, iterations, recovery paths, time, tokens and cost.
    Eval(eval::Args),
    /// Start a cluster and wait until every node is booted, addressed and accepts SSH.
    Up(up::Args),
    /// Run a command on a node (no SSH involved) and return its exit code.
    Exec(exec::Args),
    /// Copy files between the host and a node: `rehearse cp CLUSTER ./f node1:/etc/f` or `node1:/var/log/x ./x`.
    Cp(cp::Args),
    /// Open an SSH session to a node (or run a command over SSH) with the cluster's key.
    Ssh(ssh::Args),
    /// List clusters.
    Ls(ls::Args),
    /// The run history: list, show, remove runs, apply the retention.
    Runs(runs::Args),
    /// Destroy clusters.
    Down(down::Args),
    /// A warm pool of clusters booted ahead of demand: set, status, keep.
    Pool(pool::Args),
    /// Push a cluster's expiry further.
    Extend(extend::Args),
    /// Remove expired and orphaned clusters and everything they left behind.
    Gc(gc::Args),
    /// Build, import, list and remove golden images.
    Image(image::Args),
    /// Serve the MCP tools on stdin/stdout, for agents (Claude Code, Claude Desktop, Cursor).
    Mcp(mcp::Args),
    /// Serve the dashboard, /metrics and the MCP tools (at /mcp) over HTTP, behind one bearer token.
    Serve(serve::Args),
    /// A fleet of hosts sharing one PostgreSQL: its hosts, its queue of work, cancel, retry, priorities.
    Fleet(fleet::Args),
    /// Check that this host has everything rehearse needs.
    Doctor(doctor::Args),
    /// Search, show, scaffold, prove, use and verify recipes: proven, reusable infrastructure components.
    Recipe(recipe::Args),
    /// Inject a fault into a live cluster: crash, reboot, partition, link, disk-full, stop, kill; or list them.
    Fault(fault::Args),
    /// Undo a fault, or every active fault of a cluster.
    Heal(heal::Args),
    /// Drive HTTP load from a node against a URL, bounded in time and count; exit 1 if an expectation fails.
    Load(load::Args),
    /// Run an attack probe from inside a cluster: ports, ssh-password, internal, files, tls; exit 1 on a finding.
    Probe(probe::Args),
    /// Snapshot every node of a cluster at one instant (`snapshot CLUSTER NAME`), or list (`ls CLUSTER`) and remove (`rm CLUSTER NAME`) snapshots.
    Snapshot(snapshot::Args),
    /// Bring every node of a cluster back to a snapshot and wait until all are booted.
    Restore(restore::Args),
    /// Save a node's disk as it is now as a new image, for `image:` in later topologies.
    Save(save::Args),
    /// The user-space packet delayer of a link fault (started by `fault link --delay`).
    #[command(name = "__netdelay", hide = true)]
    Netdelay(netdelay::Args),
    /// Destroy a cluster once the process it was made for is dead or its time-to-live runs out (started with every cluster).
    #[command(name = "__reap", hide = true)]
    Reap(reap::Args),
}

impl Cli {
    /// Every command but `doctor` needs root: nodes are mounts, bridges,
    /// cgroups and namespaces, and the state directory is root's. `doctor`
    /// reports what is missing whoever runs it.
    pub fn needs_root(&self) -> bool {
        !matches!(self.command, Command::Doctor(_))
    }
}

/// Runs this very command again as root through `sudo`, so a user with sudo
/// types `rehearse ...` just as root does. The environment that steers
/// rehearse (`REHEARSE_*`, providers' `*_API_KEY`) goes along; sudo allows
/// that to users who may run any command. Returns only if sudo could not be
/// started.
pub fn rerun_through_sudo(sudo: &std::path::Path) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return e,
    };
    let keep: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| k.starts_with("REHEARSE_") || k.ends_with("_API_KEY"))
        .collect();
    let mut cmd = std::process::Command::new(sudo);
    if !keep.is_empty() {
        cmd.arg(format!("--preserve-env={}", keep.join(",")));
    }
    cmd.arg("--").arg(exe).args(std::env::args_os().skip(1));
    cmd.exec()
}

pub fn run(cli: Cli) -> anyhow::Result<i32> {
    let json = cli.json;
    match cli.command {
        Command::Run(a) => run::run(a, json),
        Command::Converge(a) => converge::run(a, json),
        Command::Eval(a) => eval::run(a, json),
        Command::Up(a) => up::run(a, json),
        Command::Exec(a) => exec::run(a, json),
        Command::Cp(a) => cp::run(a, json),
        Command::Ssh(a) => ssh::run(a),
        Command::Ls(a) => ls::run(a, json),
        Command::Runs(a) => runs::run(a, json),
        Command::Down(a) => down::run(a, json),
        Command::Extend(a) => extend::run(a, json),
        Command::Gc(a) => gc::run(a, json),
        Command::Pool(a) => pool::run(a, json),
        Command::Image(a) => image::run(a, json),
        Command::Mcp(a) => mcp::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Fleet(a) => fleet::run(a, json),
        Command::Doctor(a) => doctor::run(a, json),
        Command::Recipe(a) => recipe::run(a, json),
        Command::Reap(a) => reap::run(a),
        Command::Fault(a) => fault::run(a, json),
        Command::Heal(a) => heal::run(a, json),
        Command::Load(a) => load::run(a, json),
        Command::Probe(a) => probe::run(a, json),
        Command::Netdelay(a) => netdelay::run(a),
        Command::Snapshot(a) => snapshot::run(a, json),
        Command::Restore(a) => restore::run(a, json),
        Command::Save(a) => save::run(a, json),
    }
}

/// Takes a command's own answer out of the command set's outcome: each
/// command is answered by the variant of its own name.
macro_rules! answer {
    ($outcome:expr, $variant:ident) => {
        match $outcome {
            rehearse_api::Outcome::$variant(answer) => answer,
            other => unreachable!("{} answered as {}", stringify!($variant), other.name()),
        }
    };
}
pub(crate) use answer;

/// Carries out a command whose answer holds checks (load, probe). `None`
/// when it could not be carried out: the error is reported, and the verb
/// exits 2, so that 1 always means a finding or a missed expectation.
pub fn execute_checked(
    command: rehearse_api::Command,
    json: bool,
) -> anyhow::Result<Option<rehearse_api::Outcome>> {
    match mcp::api()?.execute(command, None) {
        Ok(outcome) => Ok(Some(outcome)),
        Err(e) => {
            crate::output::report_error(&anyhow::Error::new(e), json);
            Ok(None)
        }
    }
}

/// The engine over this host's state directory: every cluster it starts gets
/// a reaper (`rehearse __reap`), and clusters `gc` or a reaper removes are
/// recorded in the run store with the reason.
pub fn engine() -> anyhow::Result<Engine> {
    Ok(engine_without_reaper()?.with_reaper(Arc::new(up::spawn_reaper)))
}

/// [`engine`], without reapers for the clusters it starts.
pub fn engine_without_reaper() -> anyhow::Result<Engine> {
    let dir = rehearse_image::state_dir();
    let engine = Engine::new(&dir)
        .with_context(|| format!("opening the state directory {}", dir.display()))?;
    Ok(rehearse_api::recording_removals(engine, store()))
}

/// The run store of this process, for every record it makes: the database
/// `REHEARSE_DATABASE_URL` names, else the SQLite file of the history
/// directory. One handle, opened on first use.
pub fn store() -> Arc<SharedStore> {
    static STORE: OnceLock<Arc<SharedStore>> = OnceLock::new();
    Arc::clone(STORE.get_or_init(|| {
        let history = rehearse_image::history_dir_for(&rehearse_image::state_dir());
        let url = std::env::var(rehearse_store::DATABASE_URL_ENV).ok();
        Arc::new(SharedStore::new(&history, url))
    }))
}

/// [`store`] for a run to record in, or `None` (said in the log) when it
/// cannot be opened: the run goes on unrecorded.
pub fn recording_store() -> Option<Arc<rehearse_store::RunStore>> {
    rehearse_api::history::recording_store(&store())
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 90s, 30m, 2h)"))
}
