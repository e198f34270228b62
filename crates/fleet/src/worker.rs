//! A fleet host's worker: joins, beats, gives up on silent hosts, and runs
//! the jobs it claims while it has room, each on a thread of its own.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rehearse_api::recipes::RecipeProveRequest;
use rehearse_api::types::{JobRequest, JobState as ApiJobState};
use rehearse_api::{Api, Command, Outcome};
use rehearse_scenario::{Cancel, Keep, RunOptions};
use rehearse_spec::scenario::Scenario;

use crate::payload::{CommandPayload, RecipePayload, ScenarioPayload};
use crate::{Claimed, Fleet, FleetError, HostSpec, JobEnd, JobKind, JobState};

/// How a host takes part in the fleet.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The host's name in the fleet.
    pub name: String,
    /// Where the other hosts reach its HTTP API.
    pub url: Option<String>,
    /// Jobs it runs at once.
    pub jobs: usize,
    /// Nodes it takes in all (free slots are this less the running jobs' nodes).
    pub slots: u32,
    /// How often it beats.
    pub heartbeat: Duration,
    /// How long a host may stay silent before it is given up on.
    pub timeout: Duration,
    /// Where a job's files are written while it runs.
    pub work_dir: PathBuf,
}

/// What the worker's threads share.
struct Shared {
    fleet: Fleet,
    api: Arc<Api>,
    config: WorkerConfig,
    /// This start's id in `fleet_hosts` (a new one when the fleet gave up on it).
    host_id: Mutex<String>,
    /// Nodes the running jobs boot, by job id.
    running: Mutex<Vec<(String, u32)>>,
    /// Clusters jobs left up on this host (provisioned, or kept after a
    /// run), with their nodes: they take slots until they are gone.
    held: Mutex<Vec<(String, u32)>>,
    stop: AtomicBool,
}

/// A running worker; [`Worker::stop`] leaves the fleet.
pub struct Worker {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Worker {
    /// Joins the fleet at `url` and starts beating and taking work.
    pub fn start(url: &str, api: Arc<Api>, config: WorkerConfig) -> Result<Worker, FleetError> {
        let fleet = Fleet::connect(url)?;
        let spec = host_spec(&api, &config, config.slots);
        let (host, reaped) = fleet.register(&spec)?;
        if !reaped.is_empty() {
            tracing::info!(?reaped, "gave up on an earlier start of this host");
        }
        tracing::info!(host = %host.id, slots = config.slots, "joined the fleet");
        let shared = Arc::new(Shared {
            fleet,
            api,
            config,
            host_id: Mutex::new(host.id),
            running: Mutex::new(Vec::new()),
            held: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let beat = {
            let shared = shared.clone();
            std::thread::spawn(move || beat(&shared))
        };
        let claim = {
            let shared = shared.clone();
            std::thread::spawn(move || claim(&shared))
        };
        Ok(Worker {
            shared,
            threads: vec![beat, claim],
        })
    }

    /// This start's id in the fleet.
    pub fn host_id(&self) -> String {
        self.shared.host_id()
    }

    /// Stops taking work, waits for the claim and beat loops, and leaves the
    /// fleet: jobs still running go back to the queue.
    pub fn stop(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            let _ = t.join();
        }
        match self.shared.fleet.leave(&self.shared.host_id()) {
            Ok(reaped) => tracing::info!(?reaped, "left the fleet"),
            Err(e) => tracing::warn!(error = %e, "leaving the fleet"),
        }
    }
}

impl Shared {
    fn host_id(&self) -> String {
        self.host_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn used_slots(&self) -> u32 {
        let running: u32 = self
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, n)| n)
            .sum();
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|(cluster, _)| self.api.engine().get(cluster).is_ok());
        running + held.iter().map(|(_, n)| n).sum::<u32>()
    }

    /// Counts `cluster` against this host's slots while it is up.
    fn hold(&self, cluster: &str, nodes: u32) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((cluster.to_owned(), nodes));
    }

    fn running_jobs(&self) -> usize {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    fn free_slots(&self) -> u32 {
        self.config.slots.saturating_sub(self.used_slots())
    }
}

fn host_spec(api: &Api, config: &WorkerConfig, free: u32) -> HostSpec {
    let images = api
        .engine()
        .images()
        .list()
        .map(|list| list.into_iter().map(|i| i.name).collect())
        .unwrap_or_default();
    HostSpec {
        name: config.name.clone(),
        url: config.url.clone(),
        cores: rehearse_sandbox::capacity::host_cpus(),
        memory_bytes: rehearse_sandbox::capacity::host_memory(),
        slots_total: config.slots,
        slots_free: free,
        images,
        pool: None,
    }
}

/// Beats, and gives up on hosts that stopped beating.
fn beat(shared: &Shared) {
    while !shared.stop.load(Ordering::SeqCst) {
        let id = shared.host_id();
        let images = host_spec(&shared.api, &shared.config, 0).images;
        match shared.fleet.heartbeat(&id, shared.free_slots(), &images) {
            Ok(true) => {}
            Ok(false) => {
                // Given up on (silent too long): join again as a new start;
                // what this one still runs will not be recorded.
                tracing::warn!(host = %id, "the fleet gave up on this host; joining again");
                let spec = host_spec(&shared.api, &shared.config, shared.free_slots());
                match shared.fleet.register(&spec) {
                    Ok((host, _)) => {
                        *shared.host_id.lock().unwrap_or_else(|e| e.into_inner()) = host.id
                    }
                    Err(e) => tracing::warn!(error = %e, "joining the fleet again"),
                }
            }
            Err(e) => tracing::warn!(error = %e, "beating"),
        }
        match shared.fleet.reap(shared.config.timeout) {
            Ok(reaped) if !reaped.is_empty() => {
                tracing::warn!(?reaped, "gave up on silent hosts")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "looking for silent hosts"),
        }
        sleep_unless_stopped(shared, shared.config.heartbeat);
    }
}

fn sleep_unless_stopped(shared: &Shared, total: Duration) {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < total && !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(step);
        slept += step;
    }
}

/// Takes work while there is room; each job runs on a thread of its own.
fn claim(shared: &Arc<Shared>) {
    while !shared.stop.load(Ordering::SeqCst) {
        let claimed = if shared.running_jobs() < shared.config.jobs {
            match shared.fleet.claim(&shared.host_id(), shared.free_slots()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming work");
                    None
                }
            }
        } else {
            None
        };
        let Some(job) = claimed else {
            sleep_unless_stopped(shared, Duration::from_millis(200));
            continue;
        };
        tracing::info!(job = %job.id, attempt = job.attempt, kind = job.kind.as_str(), "claimed");
        shared
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((job.id.clone(), job.nodes));
        let host_id = shared.host_id();
        let shared = shared.clone();
        std::thread::spawn(move || {
            let end = run_job(&shared, &job);
            match shared.fleet.finish(&job.id, &host_id, job.attempt, &end) {
                Ok(true) => tracing::info!(job = %job.id, state = %end.state, "finished"),
                Ok(false) => tracing::info!(
                    job = %job.id,
                    "finished, but the fleet had given this attempt up: the result is not recorded"
                ),
                Err(e) => tracing::warn!(job = %job.id, error = %e, "recording a job's end"),
            }
            shared
                .running
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|(id, _)| id != &job.id);
        });
    }
}

fn failed(error: String) -> JobEnd {
    JobEnd {
        state: JobState::Failed,
        run_id: None,
        result: None,
        exit_code: Some(2),
        error: Some(error),
    }
}

fn run_job(shared: &Shared, job: &Claimed) -> JobEnd {
    match job.kind {
        JobKind::Scenario | JobKind::MatrixLeg => run_scenario(shared, job),
        JobKind::Converge => run_command(shared, job),
        JobKind::RecipeProve => run_recipe(shared, job),
        JobKind::Provision => run_provision(shared, job),
    }
}

/// The folder a job's files are written to while it runs (emptied first:
/// an earlier attempt on this host may have left it).
fn job_dir(shared: &Shared, job: &Claimed) -> PathBuf {
    let dir = shared
        .config
        .work_dir
        .join(format!("{}-{}", job.id, job.attempt));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A running job's progress lines, reported to the fleet by its watcher a
/// few times a second, so the submitter and any host asked see the run go.
#[derive(Default)]
struct Lines {
    lines: Mutex<Vec<String>>,
    changed: AtomicBool,
}

impl Lines {
    fn push(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines.push(line);
        let over = lines.len().saturating_sub(crate::PROGRESS_KEPT);
        lines.drain(..over);
        self.changed.store(true, Ordering::SeqCst);
    }

    /// The command set's job events so far, which are every line.
    fn set(&self, all: &[String]) {
        let mut lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        if lines.as_slice() != all {
            *lines = all.to_vec();
            self.changed.store(true, Ordering::SeqCst);
        }
    }

    fn flush(&self, shared: &Shared, job: &Claimed) {
        if !self.changed.swap(false, Ordering::SeqCst) {
            return;
        }
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Err(e) = shared.fleet.set_progress(&job.id, job.attempt, &lines) {
            tracing::debug!(job = %job.id, error = %e, "reporting a job's progress");
        }
    }
}

/// Watches the job's row while `work` runs, calling `stop` once when a cancel
/// is asked or the attempt was given to another host, and reports its
/// progress `lines` as they come.
fn watching<T>(
    shared: &Shared,
    job: &Claimed,
    lines: &Lines,
    stop: impl Fn() + Sync,
    work: impl FnOnce() -> T,
) -> (T, bool) {
    let done = AtomicBool::new(false);
    let stopped = AtomicBool::new(false);
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(250));
                lines.flush(shared, job);
                if stopped.load(Ordering::SeqCst) {
                    continue;
                }
                if matches!(shared.fleet.should_stop(&job.id, job.attempt), Ok(true)) {
                    tracing::info!(job = %job.id, "stopping: cancelled or given to another host");
                    stopped.store(true, Ordering::SeqCst);
                    stop();
                }
            }
        });
        let out = work();
        done.store(true, Ordering::SeqCst);
        out
    });
    lines.flush(shared, job);
    (out, stopped.load(Ordering::SeqCst))
}

/// A scenario (or one platform of it), by the same code `rehearse run` uses,
/// from the files the job carries.
fn run_scenario(shared: &Shared, job: &Claimed) -> JobEnd {
    let payload: ScenarioPayload = match serde_json::from_value(job.payload.clone()) {
        Ok(p) => p,
        Err(e) => return failed(format!("the job's payload is not a scenario: {e}")),
    };
    let dir = job_dir(shared, job);
    let end = (|| {
        payload
            .folder
            .write(&dir)
            .map_err(|e| failed(e.to_string()))?;
        let mut scenario =
            Scenario::from_path(&dir.join(&payload.file)).map_err(|e| failed(format!("{e:#}")))?;
        if let Some(backend) = &payload.backend {
            let backend = backend
                .parse()
                .map_err(|e| failed(format!("backend \"{backend}\": {e}")))?;
            scenario.topology.set_default_backend(backend);
        }
        if let Some(platform) = &payload.platform {
            scenario = scenario.on_platform(platform);
        }
        let keep = match payload.keep.as_deref() {
            None => Keep::Never,
            Some(keep) => keep.parse().map_err(failed)?,
        };
        let ttl = match payload.ttl.as_deref() {
            None => RunOptions::default().ttl,
            Some(ttl) => rehearse_api::duration("ttl", ttl).map_err(|e| failed(e.message))?,
        };
        let cancel = Cancel::new();
        let opts = RunOptions {
            reboot: payload.reboot,
            idempotence: payload.idempotence,
            keep,
            ttl,
            cancel: Some(cancel.clone()),
            store: shared.api.recording_store(),
            ..RunOptions::default()
        };
        let stop = || {
            for cluster in cancel.cancel() {
                let _ = shared.api.execute(
                    Command::Destroy(rehearse_api::types::ClusterRequest { cluster }),
                    None,
                );
            }
        };
        let lines = Lines::default();
        let events = |e: rehearse_scenario::Event<'_>| {
            for (line, _) in rehearse_api::event_lines(&e) {
                lines.push(line);
            }
        };
        let (report, stopped) = watching(shared, job, &lines, stop, || {
            rehearse_scenario::run(shared.api.engine(), &scenario, &opts, &events)
        });
        if let Some(cluster) = report.cluster.as_deref() {
            if shared.api.engine().get(cluster).is_ok() {
                shared.hold(cluster, job.nodes);
            }
        }
        let text = rehearse_scenario::render_human(&report);
        let result = serde_json::json!({
            "report": serde_json::to_value(&report).unwrap_or_default(),
            "text": text,
        });
        Ok(JobEnd {
            state: if stopped {
                JobState::Cancelled
            } else {
                JobState::Done
            },
            run_id: Some(report.run_id.clone()),
            result: Some(result),
            exit_code: Some(report.exit_code()),
            error: stopped.then(|| "stopped on request before it finished".to_owned()),
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    match end {
        Ok(end) | Err(end) => end,
    }
}

/// A converge task or a recipe proof, through the command set: the payload
/// is the command's name and arguments; the result its final job status.
fn run_command(shared: &Shared, job: &Claimed) -> JobEnd {
    let payload: CommandPayload = match serde_json::from_value(job.payload.clone()) {
        Ok(p) => p,
        Err(e) => return failed(format!("the job's payload is not a command: {e}")),
    };
    let dir = job_dir(shared, job);
    let end = match payload.unpack(&dir) {
        Ok(args) => match Command::parse(&payload.command, args) {
            Ok(command) => run_background(shared, job, command),
            Err(e) => failed(e.message),
        },
        Err(e) => failed(e.to_string()),
    };
    let _ = std::fs::remove_dir_all(&dir);
    end
}

/// Runs a background command of the command set and follows it to its end.
fn run_background(shared: &Shared, job: &Claimed, command: Command) -> JobEnd {
    let started = match shared.api.start(command, None) {
        Ok(started) => started,
        Err(e) => return failed(e.message),
    };
    let status = |id: &str| {
        shared.api.execute(
            Command::JobStatus(JobRequest {
                job_id: id.to_owned(),
            }),
            None,
        )
    };
    let stop = || {
        let _ = shared.api.execute(
            Command::JobKill(JobRequest {
                job_id: started.job_id.clone(),
            }),
            None,
        );
    };
    let lines = Lines::default();
    let (last, stopped) = watching(shared, job, &lines, stop, || loop {
        match status(&started.job_id) {
            Ok(Outcome::JobStatus(s)) if matches!(s.state, ApiJobState::Running) => {
                lines.set(&s.events);
                std::thread::sleep(Duration::from_millis(250))
            }
            Ok(Outcome::JobStatus(s)) => break Ok(s),
            Ok(_) => break Err("job_status answered something else".to_owned()),
            Err(e) => break Err(e.message),
        }
    });
    match last {
        Ok(s) => JobEnd {
            state: if stopped {
                JobState::Cancelled
            } else if matches!(s.state, ApiJobState::Failed) {
                JobState::Failed
            } else {
                JobState::Done
            },
            run_id: s.run_id.clone(),
            exit_code: s.exit_code,
            error: s.error.as_ref().map(|e| e.message.clone()),
            result: serde_json::to_value(&s).ok(),
        },
        Err(e) => failed(e),
    }
}

/// A recipe proof from the recipe's own folder (a catalogue of one), on the
/// platforms the job names (or the recipe's), through the command set as
/// `rehearse recipe prove` does.
fn run_recipe(shared: &Shared, job: &Claimed) -> JobEnd {
    let payload: RecipePayload = match serde_json::from_value(job.payload.clone()) {
        Ok(p) => p,
        Err(e) => return failed(format!("the job's payload is not a recipe proof: {e}")),
    };
    let dir = job_dir(shared, job).join(&payload.name);
    let end = (|| {
        payload
            .folder
            .write(&dir)
            .map_err(|e| failed(e.to_string()))?;
        let request = RecipeProveRequest {
            name: payload.name.clone(),
            set: payload.set.iter().cloned().collect(),
            platforms: payload.platforms.clone(),
            catalogue: dir.parent().map(|p| p.display().to_string()),
        };
        let lines = Arc::new(Lines::default());
        let sink = {
            let lines = Arc::clone(&lines);
            Box::new(move |p: rehearse_api::Progress| lines.push(p.message))
        };
        let (proved, _) = watching(
            shared,
            job,
            &lines,
            || {},
            || {
                shared
                    .api
                    .execute(Command::RecipeProve(request), Some(sink))
            },
        );
        let proof = match proved.map_err(|e| failed(e.message))? {
            Outcome::RecipeProve(proof) => proof,
            other => return Err(failed(format!("recipe_prove answered {}", other.name()))),
        };
        Ok(JobEnd {
            state: JobState::Done,
            run_id: Some(proof.record.run_id.clone()),
            exit_code: Some(if proof.passed() { 0 } else { 1 }),
            error: None,
            result: Some(serde_json::json!({
                "recipe": payload.name,
                "proof": proof.record,
                "platforms": proof.platforms,
                "report": proof.report,
            })),
        })
    })();
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir_all(parent);
    }
    match end {
        Ok(end) | Err(end) => end,
    }
}

/// A cluster for an MCP client: provisioned here, and left up (it counts
/// against this host's slots until it is destroyed or expires). A refusal
/// keeps the command set's error, code and field, in the result.
fn run_provision(shared: &Shared, job: &Claimed) -> JobEnd {
    let refused = |e: rehearse_api::ApiError| JobEnd {
        state: JobState::Failed,
        run_id: None,
        exit_code: Some(2),
        error: Some(e.message.clone()),
        result: Some(serde_json::json!({ "error": e })),
    };
    let command = match Command::parse("provision", job.payload.clone()) {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    match shared.api.execute(command, None) {
        Ok(Outcome::Provision(info)) => {
            shared.hold(&info.cluster, info.nodes.len() as u32);
            JobEnd {
                state: JobState::Done,
                run_id: None,
                exit_code: Some(0),
                error: None,
                result: Some(serde_json::json!({ "cluster": info })),
            }
        }
        Ok(other) => failed(format!("provision answered {}", other.name())),
        Err(e) => refused(e),
    }
}
