//! The typed command set of rehearse: every capability as a request type, a
//! result type and one [`Api::execute`] over the engine. Adapters (the MCP
//! server, the CLI) parse their input into a [`Command`] and render the result;
//! what a command does is decided here only.

mod checks;
mod clusters;
mod converge;
mod error;
pub mod eval;
mod exec;
pub mod history;
pub mod inputs;
mod jobs;
mod outputs;
pub mod recipes;
mod scenario;
pub mod snapshots;
pub mod streams;
pub mod trials;
pub mod types;

use std::path::PathBuf;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use rehearse_sandbox::Engine;

pub use clusters::cluster_info;
pub use error::{ApiError, ErrorCode};
use jobs::Notes;
pub use jobs::Progress;
pub use rehearse_converge::{ConvergeReport, Verdict};
pub use rehearse_recipes::prove::Proof;
pub use rehearse_scenario::history::RETENTION_ENV;
pub use rehearse_store::{now_ms, RunRow, SharedStore};
pub use scenario::{event_lines, ScenarioOutcome};
use types::*;

/// A duration field of a request ("90s", "30m", "2h", "7d"); zero is refused.
/// Whoever reads a request before the command set does (the fleet) reads
/// its durations with this too.
pub fn duration(field: &str, text: &str) -> Result<std::time::Duration, ApiError> {
    humantime::parse_duration(text.trim())
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            ApiError::invalid(
                field,
                format!("{field} \"{text}\" is not a duration; write e.g. 30s, 30m, 2h, 7d"),
            )
        })
}

/// Output beyond this many bytes per stream is cut from tool results and kept
/// for `read_output`.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// Receives the progress of a long command (a scenario run).
pub type ProgressSink = Box<dyn Fn(Progress) + Send + Sync>;

/// The command set over one engine. Cheap to share: clone the `Arc`.
pub struct Api {
    engine: Engine,
    jobs: jobs::Jobs,
    outputs: outputs::Outputs,
    /// The process's run store, opened on first use (see [`Api::store`]).
    store: Arc<SharedStore>,
}

impl Api {
    /// The command set over `engine`, recording in the SQLite run store of
    /// the engine's history directory; an engine with a reaper gives every
    /// cluster a provision or a job starts one (see `Engine::with_reaper`).
    pub fn new(engine: Engine) -> Arc<Api> {
        let store = Arc::new(SharedStore::new(engine.history_dir(), None));
        Api::with_store(engine, store)
    }

    /// [`Api::new`] recording in `store`: the process's one handle, which
    /// the process may use for its own records too.
    pub fn with_store(engine: Engine, store: Arc<SharedStore>) -> Arc<Api> {
        let engine = recording_removals(engine, Arc::clone(&store));
        let outputs = outputs::Outputs::new(engine.state_dir().join("outputs"));
        Arc::new(Api {
            engine,
            jobs: jobs::Jobs::default(),
            outputs,
            store,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Carries out one command on the calling thread and answers when it is
    /// done. Long commands (scenario runs, converge, recipe proofs,
    /// evaluations) run in the foreground too, reporting to `progress` as they go; [`Api::start`]
    /// runs them as background jobs instead. `exec_background` starts its
    /// job and answers at once.
    pub fn execute(
        self: &Arc<Self>,
        command: Command,
        progress: Option<ProgressSink>,
    ) -> Result<Outcome, ApiError> {
        Ok(match command {
            Command::Provision(r) => Outcome::Provision(self.provision(r)?),
            Command::Exec(r) => Outcome::Exec(self.exec(r)?),
            Command::ReadOutput(r) => Outcome::ReadOutput(self.outputs.read(&r)?),
            Command::ExecBackground(r) => Outcome::ExecBackground(self.exec_background(r)?),
            Command::JobStatus(r) => Outcome::JobStatus(self.jobs.status(&r.job_id)?),
            Command::JobKill(r) => Outcome::JobKill(self.job_kill(&r.job_id)?),
            Command::WriteFile(r) => Outcome::WriteFile(self.write_file(r)?),
            Command::ReadFile(r) => Outcome::ReadFile(self.read_file(r)?),
            Command::Check(r) => Outcome::Check(self.check(r)?),
            Command::RunScenario(r) => {
                let run = self.prepare_scenario(r)?;
                Outcome::RunScenario(self.run_scenario(run, &Notes::new(None, progress), None))
            }
            Command::Converge(r) => {
                let run = self.prepare_converge(r)?;
                let notes = Notes::new(None, progress);
                Outcome::Converge(Box::new(self.converge(run, &notes, None)?))
            }
            Command::RecipeSearch(r) => Outcome::RecipeSearch(self.recipe_search(r)?),
            Command::RecipeShow(r) => Outcome::RecipeShow(self.recipe_show(r)?),
            Command::RecipeProve(r) => {
                let run = self.prepare_proof(r)?;
                let notes = Notes::new(None, progress);
                Outcome::RecipeProve(Box::new(self.recipe_prove(run, &notes)?))
            }
            Command::Evaluate(r) => {
                let run = self.prepare_eval(r)?;
                let notes = Notes::new(None, progress);
                Outcome::Evaluate(Box::new(self.evaluate(run, &notes)?))
            }
            Command::Extend(r) => Outcome::Extend(self.extend(r)?),
            Command::Destroy(r) => Outcome::Destroy(self.destroy(&r.cluster)?),
            Command::List(_) => Outcome::List(self.list()),
            Command::HostCheck(_) => Outcome::HostCheck(HostReport::now()),
            Command::Cluster(r) => Outcome::Cluster(self.cluster(&r.cluster)?),
            Command::Fault(r) => Outcome::Fault(self.fault(r)?),
            Command::Heal(r) => Outcome::Heal(self.heal(r)?),
            Command::Faults(r) => Outcome::Faults(self.faults(&r.cluster)?),
            Command::Load(r) => Outcome::Load(self.load(r)?),
            Command::Probe(r) => Outcome::Probe(self.probe(r)?),
            Command::Snapshot(r) => Outcome::Snapshot(self.snapshot(r)?),
            Command::Restore(r) => Outcome::Restore(self.restore(r)?),
            Command::Snapshots(r) => Outcome::Snapshots(self.snapshots(&r.cluster)?),
            Command::SnapshotRemove(r) => Outcome::SnapshotRemove(self.snapshot_remove(r)?),
            Command::SaveImage(r) => Outcome::SaveImage(self.save_image(r)?),
            Command::Runs(r) => Outcome::Runs(self.runs(r)?),
            Command::RunShow(r) => Outcome::RunShow(self.run_show(r)?),
            Command::RunRemove(r) => Outcome::RunRemove(self.run_remove(r)?),
            Command::RunsPrune(r) => Outcome::RunsPrune(self.runs_prune(r)?),
            Command::Images(_) => Outcome::Images(self.images()?),
            Command::ImageRemove(r) => Outcome::ImageRemove(self.image_remove(r)?),
            Command::Gc(_) => Outcome::Gc(self.gc()?),
        })
    }

    /// Starts a long command ([`Command::is_long`]) as a background job and
    /// answers its id at once; `job_status` follows it, `job_kill` stops it.
    /// What the command would refuse is refused now, before the job starts.
    /// This is how the MCP and HTTP adapters run long commands.
    pub fn start(
        self: &Arc<Self>,
        command: Command,
        progress: Option<ProgressSink>,
    ) -> Result<JobStarted, ApiError> {
        match command {
            Command::RunScenario(r) => {
                let run = self.prepare_scenario(r)?;
                Ok(self.start_scenario(run, progress))
            }
            Command::Converge(r) => {
                let run = self.prepare_converge(r)?;
                Ok(self.start_converge(run, progress))
            }
            Command::RecipeProve(r) => {
                let run = self.prepare_proof(r)?;
                Ok(self.start_proof(run, progress))
            }
            Command::Evaluate(r) => {
                let run = self.prepare_eval(r)?;
                Ok(self.start_eval(run, progress))
            }
            other => Err(ApiError::new(
                ErrorCode::Refused,
                format!(
                    "{} answers when it is done; only run_scenario, converge, recipe_prove and evaluate run as jobs",
                    other.name()
                ),
                false,
            )),
        }
    }

    /// The report of a finished scenario run, from `<state>/runs/<id>/report.json`.
    pub fn run_report(&self, run_id: &str) -> Result<serde_json::Value, ApiError> {
        let not_found = || {
            ApiError::not_found(
                ErrorCode::RunNotFound,
                format!(
                    "no report for run \"{run_id}\"; run ids come from run_scenario's job_status"
                ),
            )
        };
        if run_id.is_empty()
            || !run_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(not_found());
        }
        let path: PathBuf = self
            .engine
            .history_dir()
            .join("runs")
            .join(run_id)
            .join("report.json");
        let text = std::fs::read_to_string(&path).map_err(|_| not_found())?;
        serde_json::from_str(&text).map_err(|e| {
            ApiError::new(
                ErrorCode::CorruptReport,
                format!("{}: {e}", path.display()),
                false,
            )
        })
    }
}

/// `engine`, recording in the run store every cluster it removes on its own
/// (the reaper at expiry or when the owner died, `gc`), with the reason. The
/// command set's engine always records; processes that run the engine without
/// the command set (the reaper, `gc`) take it from here so nothing else writes
/// a cluster's end.
pub fn recording_removals(engine: Engine, store: Arc<SharedStore>) -> Engine {
    engine.on_removed(Arc::new(move |removed: &rehearse_sandbox::Removed| {
        match store.get() {
            Ok(store) => rehearse_scenario::record_cluster_removed(
                &store,
                &removed.cluster,
                &removed.reason,
            ),
            Err(e) => {
                tracing::warn!(cluster = %removed.cluster, error = %e, "the cluster's end will not be in the run store")
            }
        }
    }))
}

/// One tool of the catalogue: name, description for a model, JSON Schema.
pub struct ToolSpec {
    pub name: &'static str,
    pub description: &'static str,
    pub input_schema: serde_json::Value,
    /// True when the command changes nothing.
    pub read_only: bool,
}

macro_rules! commands {
    ($( $variant:ident ( $req:ty ) -> $out:ty = $name:literal, read_only = $ro:literal, $desc:literal; )*) => {
        /// Every command, with its request.
        #[derive(Debug, Clone)]
        pub enum Command {
            $( $variant($req), )*
        }

        /// What a command answers, one variant per command. Serialized, it is
        /// the document every front end shows (MCP structured content, HTTP,
        /// the CLI's `--json`): the answer itself, with no wrapper. A long
        /// command started as a job answers its [`JobStarted`] instead, and
        /// this document is in its `job_status` when it ends.
        #[derive(Debug, Clone, serde::Serialize)]
        #[serde(untagged)]
        pub enum Outcome {
            $( $variant($out), )*
        }

        impl Outcome {
            /// The name of the command this answers.
            pub fn name(&self) -> &'static str {
                match self { $( Outcome::$variant(_) => $name, )* }
            }

            /// The answer as JSON, for the front ends that speak it.
            pub fn to_json(&self) -> serde_json::Value {
                serde_json::to_value(self).expect("every answer serializes")
            }
        }

        impl Command {
            /// Parses a command from its name and JSON arguments; unknown names,
            /// missing or misspelt fields are `invalid_input` errors naming the field.
            pub fn parse(name: &str, args: serde_json::Value) -> Result<Command, ApiError> {
                match name {
                    $( $name => Ok(Command::$variant(parse_args::<$req>(args)?)), )*
                    other => Err(ApiError::invalid(
                        "name",
                        format!("no command \"{other}\"; the commands are: {}", [$($name),*].join(", ")),
                    )),
                }
            }

            pub fn name(&self) -> &'static str {
                match self { $( Command::$variant(_) => $name, )* }
            }

            /// A long command: a scenario run, converge, a recipe proof or an
            /// evaluation.
            /// The CLI runs it in the foreground ([`Api::execute`]); the MCP
            /// and HTTP adapters as a job ([`Api::start`]), answering a job id.
            pub fn is_long(&self) -> bool {
                matches!(
                    self,
                    Command::RunScenario(_) | Command::Converge(_) | Command::RecipeProve(_) | Command::Evaluate(_)
                )
            }
        }

        /// The catalogue of commands, for tool listings.
        pub fn catalogue() -> Vec<ToolSpec> {
            vec![$( ToolSpec {
                name: $name,
                description: $desc,
                input_schema: schema_of::<$req>(),
                read_only: $ro,
            }, )*]
        }
    };
}

commands! {
    Provision(ProvisionRequest) -> ClusterInfo = "provision", read_only = false,
        "Create a disposable cluster of Debian 12 nodes (real systemd, root shell, ~0.5 s to boot) to try infrastructure code on before it touches real machines. Use it first; pass `nodes` as a count or a list of {name, groups, networks, image}. Returns the cluster id, each node's name and IP, and boot_ms. The cluster is destroyed at the end of its ttl (default 30m); call destroy when done.";
    Exec(ExecRequest) -> ExecResult = "exec", read_only = false,
        "Run a shell command (`sh -c`, as root) on one node and wait for it. Use for installing packages, editing config, starting services, inspecting state. Returns exit_code, stdout and stderr; each stream is cut at 64 KiB (truncated: true, output_id to fetch the rest with read_output). Commands longer than a minute or two belong in exec_background.";
    ReadOutput(ReadOutputRequest) -> OutputChunk = "read_output", read_only = true,
        "Read the full stdout or stderr of an exec whose output was truncated, by output_id, in chunks (offset, limit). Returns the text, next_offset and eof.";
    ExecBackground(ExecBackgroundRequest) -> JobStarted = "exec_background", read_only = false,
        "Start a long shell command on a node without waiting (e.g. a big install, a load test, a server in the foreground). Returns a job_id; poll job_status for its output so far and exit code, stop it with job_kill.";
    JobStatus(JobRequest) -> JobStatus = "job_status", read_only = true,
        "State of a background job (exec_background, run_scenario, converge, recipe_prove or evaluate): running/exited/failed, exit_code, output so far (or progress lines in events), for a finished scenario its outcome, run_id and full report (one per platform with `platforms`), for a finished converge its result in `converge` (converged, script, iterations, tokens), for a proof or an evaluation its report. Poll it every few seconds while state is running.";
    JobKill(JobRequest) -> JobStatus = "job_kill", read_only = false,
        "Stop a running background job: an exec job's command and its children are killed on the node; a run_scenario or converge job stops at once (its clusters are destroyed, even mid-step; a model call in flight finishes first) and reports outcome error / verdict stopped. Returns the job's final status.";
    WriteFile(WriteFileRequest) -> WriteFileResult = "write_file", read_only = false,
        "Write a file on a node (parent folders are created), as text or base64 content, optionally with an octal mode such as \"0755\". Use for config files, scripts and units. Returns the path and bytes written.";
    ReadFile(ReadFileRequest) -> ReadFileResult = "read_file", read_only = true,
        "Read a file from a node (up to 1 MiB). Text is returned as is; content that is not UTF-8, or when encoding is \"base64\", comes back base64-encoded.";
    Check(CheckRequest) -> CheckReport = "check", read_only = true,
        "Verify the state of a cluster with declarative checks in the rehearse scenario syntax (goss-like: http, service, port, package, file, command, user, group, process, addr, dns, interface, kernel-param, mount). A failing check is retried until its timeout (default 10s). Returns passed (true when nothing failed) and one result per check and node with status passed/failed/skipped, expected vs actual and a message. Use it to prove a change works.";
    RunScenario(RunScenarioRequest) -> ScenarioOutcome = "run_scenario", read_only = false,
        "Run a whole scenario (topology, steps, checks, idempotence, optional reboot) on a fresh cluster, from a file/folder path on the server or inline YAML; with `platforms`, once per image side by side (a matrix). Runs in the background: returns a job_id at once; progress comes as MCP progress notifications when a progress token was sent, and job_status gives progress lines, the outcome and the full report (also the resource rehearse://runs/{run_id}).";
    Converge(ConvergeRequest) -> Box<ConvergeReport> = "converge", read_only = false,
        "Have rehearse write infrastructure code for you and prove it: give a task (goal in plain words, language bash or ansible, the nodes, and the checks that define success) as a task file path on the server or inline YAML. An LLM writes the code, rehearse runs it on a fresh cluster, and on failure recovers by a known rules fix, a rewrite, or live troubleshooting on the failed cluster, until a script passes every check on a fresh cluster in one pass (or the task's budget of iterations, time or tokens runs out). Use it when you want working, tested code rather than to experiment step by step yourself. Runs in the background: returns a job_id at once; progress comes as MCP progress notifications when a progress token was sent, and job_status gives progress lines and, when done, `converge`: converged, the proven script, run_id, report_path, each iteration with its recovery path and reason, and token use. The model is the server's (REHEARSE_LLM_* environment) unless provider/model/base_url are passed; without any model only the task's starting code is run, with rule-based fixes. Clusters it starts are destroyed when it ends.";
    RecipeSearch(recipes::RecipeSearchRequest) -> recipes::RecipeHits = "recipe_search", read_only = true,
        "Search the catalogue of proven infrastructure recipes (load-balanced web tier, internal DNS, central logs, NFS, PostgreSQL replica, Redis Sentinel, SSH hardening, nftables firewall, internal CA with TLS, chrony time sync, ...) by words. Use it before writing infrastructure code from scratch: adapting a proven recipe is faster and safer. Returns hits best first, each with name, version, description, tags, score and the words it matched.";
    RecipeShow(recipes::RecipeShowRequest) -> recipes::RecipeDetail = "recipe_show", read_only = true,
        "Show one recipe: metadata (version, tags, supported images, variables with defaults, the topology it needs, limits), README, every file's content (scripts, playbooks, the scenario that proves it), its content hash and its last recorded proof. Use it to read and adapt a recipe found with recipe_search.";
    RecipeProve(recipes::RecipeProveRequest) -> Box<Proof> = "recipe_prove", read_only = false,
        "Prove a recipe: run its scenario on a fresh cluster with its variables (defaults, or `set`), record the outcome with the recipe's version, content hash and date. Runs in the background: returns a job_id; job_status gives progress, the outcome, run_id and the proof with the full run report.";
    Evaluate(eval::EvaluateRequest) -> Box<eval::EvalReport> = "evaluate", read_only = false,
        "Measure how well a model writes infrastructure code: every task (files or folders on the server, as for converge) is converged `attempts` times on each of its platforms, several at once, each attempt on fresh clusters. Returns (in job_status's report when done) the pass rate per task and platform and in all, iterations, recovery paths, wall time, tokens and cost, and whether the pass rate reached min_pass_rate. Invalid task files and unknown platforms are refused before any attempt. Runs in the background: returns a job_id at once; progress comes as MCP progress notifications when a progress token was sent.";
    Extend(ExtendRequest) -> ClusterInfo = "extend", read_only = false,
        "Set a cluster's remaining time to live (e.g. \"1h\") so it is not destroyed while you still need it. Returns the cluster with its new expiry.";
    Destroy(ClusterRequest) -> Destroyed = "destroy", read_only = false,
        "Destroy a cluster and everything it holds (nodes, networks, files). Call it when done with a cluster. Returns destroyed: true.";
    List(ListRequest) -> ClusterList = "list", read_only = true,
        "List live clusters with their nodes, IPs and time left. Use it to find a cluster id you lost or to clean up.";
    HostCheck(HostCheckRequest) -> HostReport = "host_check", read_only = true,
        "Check the host rehearse runs on: every requirement (root, systemd-nspawn, kernel features, cgroups, package tools, VM support) with what was found and how to fix it, how many nodes fit now and which limit sets that (inotify, PIDs, memory, disk), and which network impairments its kernel supports. Use it when provision or a run fails with boot_failed, no_capacity or missing_tool, before retrying.";
    Cluster(ClusterRequest) -> ClusterInfo = "cluster", read_only = true,
        "Describe one cluster: its nodes (names, IPs, groups), networks and time left.";
    Fault(trials::FaultRequest) -> trials::FaultRecord = "fault", read_only = false,
        "Inject a fault into a live cluster to see how the system copes: crash a node (kill its PID 1; heal boots it again), reboot a node, partition the network between groups of nodes, impair what a node sends (loss %, delay/jitter, bandwidth cap), fill a disk under a path (writes there get ENOSPC), stop or SIGKILL a service. The fault is recorded and stays until `heal`; destroying the cluster undoes it too. Returns the fault's id, what was done and how it will be undone.";
    Heal(trials::HealRequest) -> trials::Healed = "heal", read_only = false,
        "Undo a fault injected with `fault` (by id), or every active fault of the cluster: restart crashed nodes, remove network rules and shaping, unmount disk fillers, start stopped services. Returns the healed faults.";
    Faults(ClusterRequest) -> trials::FaultList = "faults", read_only = true,
        "List every fault injected into a cluster, active or healed, with when and how.";
    Load(trials::LoadRequest) -> trials::LoadReport = "load", read_only = false,
        "Drive HTTP GET load from one node of a cluster against a URL (bounded: duration and/or request count, concurrency), measuring on that node. Returns requests, failures by kind, error_rate (%), p50/p90/p99/max latency in ms, requests per second, a per-second timeline of successes and failures, and one check per expectation (error_rate, p50, p99, min_ok). Combine with `fault` to see how the system copes.";
    Probe(trials::ProbeRequest) -> trials::ProbeReport = "probe", read_only = true,
        "Run an attack probe on a cluster and get its findings as checks: `ports` (scan every TCP port of a node from another; only the declared ones may be open), `ssh_password` (sshd must refuse password login), `internal` (a port must be unreachable from nodes outside its network), `files` (no world-writable file or setuid binary added since the image), `tls` (certificate validity days, hostname, no TLS 1.0/1.1).";
    Snapshot(snapshots::SnapshotRequest) -> snapshots::Snapshot = "snapshot", read_only = false,
        "Take a named snapshot of a whole cluster: every node is frozen at the same instant, its disk changes copied, then thawed (running processes carry on). Use it before trying something risky, then restore to go back. Returns the snapshot: nodes with the size of their captured changes, how long the nodes were frozen, and whether the copy was copy-on-write.";
    Restore(snapshots::RestoreRequest) -> snapshots::Restored = "restore", read_only = false,
        "Bring every node of a cluster back to a snapshot taken with `snapshot`: the nodes are stopped, their disks put back as they were, and booted again (files, users, packages, enabled services as at the snapshot; what ran in memory restarts from boot). Returns when every node is booted and reachable, with each node's boot time.";
    Snapshots(ClusterRequest) -> snapshots::SnapshotList = "snapshots", read_only = true,
        "List a cluster's snapshots, oldest first, with when they were taken and their size per node.";
    SnapshotRemove(snapshots::SnapshotRequest) -> snapshots::SnapshotRemoved = "snapshot_remove", read_only = false,
        "Remove one snapshot of a cluster (snapshots also go away when the cluster is destroyed).";
    SaveImage(snapshots::SaveImageRequest) -> snapshots::SavedImage = "save_image", read_only = false,
        "Save one node's disk as it is now (its image plus every change made on it) as a new golden image under a new name, so later clusters and scenarios boot from it with `image: <name>` (e.g. provision with nodes [{name, image}]). The node keeps running. Returns the image's name, id, parent image id and size.";
    Runs(history::RunsRequest) -> history::RunList = "runs", read_only = true,
        "List recorded runs (scenario runs, converge runs, evaluations), newest first, from the run store every front end records into: id, kind, name, outcome, cluster, start and end, one-line summary. Filter by status (passed, failed, error, aborted, converged, ...), kind, part of the name, since (e.g. \"2h\"), limit. Use it to find a run to inspect with run_show.";
    RunShow(history::RunRequest) -> history::RunShown = "run_show", read_only = true,
        "Show one recorded run whole: its row, the full report, every step with its output, every check with expected vs actual per phase (after the steps, after the second pass), a converge run's iterations with their code, commands and recovery path, and the runs under it.";
    RunRemove(history::RunRequest) -> history::RunsRemoved = "run_remove", read_only = false,
        "Remove a run, the runs under it and their folders from the history. Refused while the run is still going, is part of a converge run, or its cluster is still up.";
    RunsPrune(history::PruneRequest) -> history::RunsRemoved = "runs_prune", read_only = false,
        "Apply the retention: remove finished runs older than `older_than` (default the host's retention, 30 days), sparing those still referenced. Returns the ids removed.";
    Images(history::Nothing) -> history::ImageList = "images", read_only = true,
        "List the node images cached on this host (built-in distributions, imported OCI images, images saved from nodes): name, distribution, release, id, size, when built, and where a saved or imported one came from. Any listed name can be a node's `image`.";
    ImageRemove(history::ImageRequest) -> history::ImageRemoved = "image_remove", read_only = false,
        "Remove a cached image by name or id; refused while a live cluster's node uses it.";
    Gc(history::Nothing) -> history::GcDone = "gc", read_only = false,
        "Clean up this host: remove clusters past their time to live or whose owning process died (each with the reason), finish restores that died half-way, remove unfinished image builds, and mark runs whose process died aborted. Never touches a live cluster that is still owned.";
}

fn parse_args<T: DeserializeOwned>(args: serde_json::Value) -> Result<T, ApiError> {
    let args = if args.is_null() {
        serde_json::Value::Object(Default::default())
    } else {
        args
    };
    serde_json::from_value(args).map_err(|e| {
        let message = e.to_string();
        // serde names the field between backticks: "missing field `cluster`".
        let field = message.split('`').nth(1).unwrap_or("arguments").to_string();
        ApiError {
            field: Some(field),
            ..ApiError::invalid(
                "arguments",
                format!("invalid arguments: {message}; see the tool's input schema"),
            )
        }
    })
}

fn schema_of<T: JsonSchema>() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(T)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input_schema(name: &str) -> serde_json::Value {
        catalogue()
            .into_iter()
            .find(|tool| tool.name == name)
            .map(|tool| tool.input_schema)
            .unwrap_or_else(|| panic!("no tool {name}"))
    }

    /// Provision and check take the spec's own forms, so their input schemas
    /// say what a topology's nodes and a check may hold.
    #[test]
    fn provision_and_check_schemas_are_the_spec_forms() {
        let check = input_schema("check");
        let defs = check["$defs"].as_object().expect("shared definitions");
        for (form, key) in [("HttpCheck", "status"), ("ServiceCheck", "running")] {
            assert!(
                defs[form]["properties"].get(key).is_some(),
                "{form} lacks {key}: {check:#}"
            );
        }
        let provision = input_schema("provision").to_string();
        for key in ["\"groups\"", "\"egress\"", "\"cidr\""] {
            assert!(
                provision.contains(key),
                "provision schema lacks {key}: {provision}"
            );
        }
    }
}
