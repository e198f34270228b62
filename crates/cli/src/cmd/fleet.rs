//! `rehearse fleet`: the hosts and the queue of a fleet sharing one
//! PostgreSQL; and placing work on it (`rehearse run|converge|recipe prove
//! --fleet`).

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Subcommand;

use rehearse_fleet::payload::{CommandPayload, RecipePayload, ScenarioPayload};
use rehearse_fleet::{Fleet, JobKind, JobRow, JobSpec, JobState};
use rehearse_spec::scenario::Scenario;

use crate::output::print_json;

/// The environment variable naming the fleet's PostgreSQL.
pub const FLEET_ENV: &str = "REHEARSE_FLEET";

#[derive(clap::Args)]
pub struct Args {
    /// The fleet's PostgreSQL: the URL every host's `serve --fleet` was given.
    #[arg(long, env = FLEET_ENV, value_name = "URL", hide_env_values = true)]
    fleet: String,
    #[command(subcommand)]
    verb: Verb,
}

#[derive(Subcommand)]
enum Verb {
    /// The hosts: up ones first, with their free node slots and running jobs.
    Hosts,
    /// The queue: the most recent jobs, newest first.
    Jobs {
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// One job, with its result.
    Show { id: String },
    /// Cancel a queued job, or stop a running one on its host.
    Cancel { id: String },
    /// Queue a failed, lost or cancelled job again.
    Retry { id: String },
    /// Whose work goes first: a higher priority first (default 0), then the oldest.
    Priority {
        submitter: String,
        #[arg(allow_negative_numbers = true)]
        priority: i32,
    },
}

pub fn connect(url: &str) -> anyhow::Result<Fleet> {
    Ok(Fleet::connect(url)?)
}

pub fn run(args: Args, json: bool) -> anyhow::Result<i32> {
    let fleet = connect(&args.fleet)?;
    match args.verb {
        Verb::Hosts => {
            let hosts = fleet.hosts()?;
            if json {
                print_json(&serde_json::json!({ "hosts": hosts }));
            } else {
                println!(
                    "{:<24} {:<5} {:>5} {:>9} {:>10} {:>5}  URL / WHY GONE",
                    "HOST", "STATE", "CORES", "MEMORY", "FREE/SLOTS", "JOBS"
                );
                let now = rehearse_fleet::now_ms();
                for h in hosts {
                    let tail = match (&h.state[..], &h.gone_reason) {
                        ("gone", Some(why)) => why.clone(),
                        _ => format!(
                            "{} (beat {} s ago)",
                            h.url.as_deref().unwrap_or("-"),
                            (now - h.heartbeat_at_ms).max(0) / 1000
                        ),
                    };
                    println!(
                        "{:<24} {:<5} {:>5} {:>8}M {:>10} {:>5}  {tail}",
                        h.name,
                        h.state,
                        h.cores,
                        h.memory_bytes >> 20,
                        format!("{}/{}", h.slots_free, h.slots_total),
                        h.running_jobs
                    );
                }
            }
        }
        Verb::Jobs { limit } => {
            let jobs = fleet.jobs(limit)?;
            if json {
                print_json(&serde_json::json!({ "jobs": jobs }));
            } else {
                println!(
                    "{:<18} {:<12} {:<9} {:<16} {:>7} {:>5}  {:<20} RUN / ERROR",
                    "JOB", "KIND", "STATE", "HOST", "ATTEMPT", "NODES", "SUBMITTER"
                );
                for j in jobs {
                    println!(
                        "{:<18} {:<12} {:<9} {:<16} {:>7} {:>5}  {:<20} {}",
                        j.id,
                        j.kind.as_str(),
                        j.state.as_str(),
                        j.host.as_deref().unwrap_or("-"),
                        format!("{}/{}", j.attempt, j.max_attempts),
                        j.nodes,
                        j.submitter,
                        j.error.as_deref().or(j.run_id.as_deref()).unwrap_or("")
                    );
                }
            }
        }
        Verb::Show { id } => {
            let job = fleet.job(&id)?;
            if json {
                print_json(&job);
            } else {
                print_job(&job);
            }
        }
        Verb::Cancel { id } => {
            let job = fleet.cancel(&id)?;
            if json {
                print_json(&job);
            } else if job.state == JobState::Cancelled {
                println!("{id} cancelled");
            } else {
                println!(
                    "{id} is stopping on host {}",
                    job.host.as_deref().unwrap_or("?")
                );
            }
        }
        Verb::Retry { id } => {
            let job = fleet.retry(&id)?;
            if json {
                print_json(&job);
            } else {
                println!(
                    "{id} queued again (attempt {} of {})",
                    job.attempt + 1,
                    job.max_attempts
                );
            }
        }
        Verb::Priority {
            submitter,
            priority,
        } => {
            fleet.set_priority(&submitter, priority)?;
            if json {
                print_json(&serde_json::json!({ "submitter": submitter, "priority": priority }));
            } else {
                println!("{submitter}: priority {priority}");
            }
        }
    }
    Ok(0)
}

fn print_job(j: &JobRow) {
    println!("job        {}", j.id);
    println!("kind       {}", j.kind.as_str());
    println!("state      {}", j.state);
    println!("host       {}", j.host.as_deref().unwrap_or("-"));
    println!("attempt    {} of {}", j.attempt, j.max_attempts);
    println!("submitter  {} (priority {})", j.submitter, j.priority);
    if let Some(run) = &j.run_id {
        println!("run        {run}");
    }
    if let Some(e) = &j.error {
        println!("error      {e}");
    }
    // The last lines its host reported.
    let from = j.progress.len().saturating_sub(20);
    for (i, line) in j.progress[from..].iter().enumerate() {
        println!(
            "{}{line}",
            if i == 0 { "progress   " } else { "           " }
        );
    }
}

/// Who submits: `REHEARSE_SUBMITTER`, else user@host.
pub fn default_submitter() -> String {
    if let Ok(s) = std::env::var("REHEARSE_SUBMITTER") {
        if !s.trim().is_empty() {
            return s.trim().to_owned();
        }
    }
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let host = nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    format!("{user}@{host}")
}

/// How `rehearse run --fleet` places a scenario.
pub struct ScenarioOnFleet<'a> {
    pub url: &'a str,
    pub path: &'a Path,
    pub scenario: &'a Scenario,
    pub platforms: &'a [String],
    pub reboot: bool,
    pub idempotence: bool,
    pub backend: Option<String>,
    pub submitter: String,
}

/// Queues a scenario (one job per platform of a matrix), says where each
/// was placed, waits, and prints the same report a local run prints.
pub fn run_scenario(req: ScenarioOnFleet<'_>, json: bool) -> anyhow::Result<i32> {
    let fleet = connect(req.url)?;
    let mut base = ScenarioPayload::pack(req.path)?;
    base.reboot = req.reboot;
    base.idempotence = req.idempotence;
    base.backend = req.backend.clone();
    let nodes = req.scenario.topology.nodes.len() as u32;
    let legs: Vec<Option<&String>> = if req.platforms.is_empty() {
        vec![None]
    } else {
        req.platforms.iter().map(Some).collect()
    };
    let started = Instant::now();
    let mut ids = Vec::new();
    for platform in &legs {
        let mut payload = base.clone();
        payload.platform = platform.cloned();
        let job = fleet
            .submit(&JobSpec {
                kind: if platform.is_some() {
                    JobKind::MatrixLeg
                } else {
                    JobKind::Scenario
                },
                payload: serde_json::to_value(&payload)?,
                nodes,
                submitter: req.submitter.clone(),
                max_attempts: None,
                images: rehearse_fleet::images_of(
                    &match platform {
                        Some(p) => req.scenario.on_platform(p),
                        None => req.scenario.clone(),
                    }
                    .topology,
                ),
            })
            .with_context(|| format!("queueing {}", req.path.display()))?;
        if !json {
            eprintln!(
                "rehearse: {} queued on the fleet{}",
                job.id,
                platform.map(|p| format!(" ({p})")).unwrap_or_default()
            );
        }
        ids.push(job.id);
    }
    let jobs = wait(&fleet, &ids, json)?;
    if legs.len() == 1 && legs[0].is_none() {
        let job = &jobs[0];
        let result = finished_result(job)?;
        if json {
            print_json(&result["report"]);
        } else {
            print!("{}", result["text"].as_str().unwrap_or_default());
        }
        return Ok(job.exit_code.unwrap_or(2));
    }
    // A matrix: one report per platform, in the order they were listed.
    let mut platforms = Vec::new();
    let mut worst = 0;
    for (job, platform) in jobs.iter().zip(req.platforms) {
        let result = finished_result(job)?;
        let code = job.exit_code.unwrap_or(2);
        worst = match (worst, code) {
            (2, _) | (_, 2) => 2,
            (a, b) => a.max(b),
        };
        if !json {
            println!(
                "── {platform} (host {}) ──",
                job.host.as_deref().unwrap_or("?")
            );
            print!("{}", result["text"].as_str().unwrap_or_default());
        }
        let mut leg = serde_json::json!({ "platform": platform, "host": job.host });
        if let (Some(leg), Some(report)) = (leg.as_object_mut(), result["report"].as_object()) {
            leg.extend(report.clone());
        }
        platforms.push(leg);
    }
    let outcome = ["passed", "failed", "error"][worst.clamp(0, 2) as usize];
    if json {
        print_json(&serde_json::json!({
            "scenario": req.scenario.name,
            "file": req.scenario.file,
            "outcome": outcome,
            "jobs": platforms.len(),
            "total_ms": started.elapsed().as_millis() as u64,
            "platforms": platforms,
        }));
    } else {
        println!(
            "{}: {outcome} on {} platforms across the fleet in {:.1} s",
            req.scenario.name,
            platforms.len(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(worst)
}

/// The result of a job that ended with a report; an error saying why not otherwise.
fn finished_result(job: &JobRow) -> anyhow::Result<serde_json::Value> {
    match (&job.state, &job.result) {
        (JobState::Done | JobState::Cancelled, Some(result)) => Ok(result.clone()),
        (state, _) => anyhow::bail!(
            "fleet job {} is {state}{}; `rehearse fleet retry {}` queues it again",
            job.id,
            job.error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default(),
            job.id
        ),
    }
}

/// Waits until every job is final, saying on stderr where each goes. Ctrl-C
/// (or SIGTERM) cancels the jobs not yet final, which their hosts stop, and
/// ends the command with 130.
fn wait(fleet: &Fleet, ids: &[String], json: bool) -> anyhow::Result<Vec<JobRow>> {
    let interrupted = super::pool::stop_on_signal();
    let mut last: Vec<Option<(JobState, Option<String>, u32)>> = vec![None; ids.len()];
    let mut rows: Vec<Option<JobRow>> = vec![None; ids.len()];
    // The last progress line of each job's current attempt shown so far.
    let mut shown: Vec<Option<String>> = vec![None; ids.len()];
    loop {
        if interrupted.load(std::sync::atomic::Ordering::SeqCst) {
            let mut cancelled = Vec::new();
            for (id, row) in ids.iter().zip(&rows) {
                if !row.as_ref().is_some_and(|r| r.state.is_final()) && fleet.cancel(id).is_ok() {
                    cancelled.push(id.as_str());
                }
            }
            eprintln!(
                "rehearse: interrupted: cancelled {} on the fleet; the hosts running them stop them",
                if cancelled.is_empty() {
                    "nothing".to_owned()
                } else {
                    cancelled.join(", ")
                }
            );
            std::process::exit(130);
        }
        let mut pending = false;
        for (i, id) in ids.iter().enumerate() {
            if rows[i].as_ref().is_some_and(|r| r.state.is_final()) {
                continue;
            }
            let job = fleet.job(id)?;
            let seen = (job.state, job.host.clone(), job.attempt);
            if last[i].as_ref() != Some(&seen) && !json {
                match job.state {
                    JobState::Running => eprintln!(
                        "rehearse: {id} running on host {} (attempt {} of {})",
                        job.host.as_deref().unwrap_or("?"),
                        job.attempt,
                        job.max_attempts
                    ),
                    JobState::Queued if job.attempt > 0 => eprintln!(
                        "rehearse: {id} queued again: {}",
                        job.error.as_deref().unwrap_or("its host went away")
                    ),
                    _ => {}
                }
            }
            if last[i].as_ref().map(|l| l.2) != Some(job.attempt) {
                shown[i] = None;
            }
            if !json {
                // The host's lines as it reports them (the fleet keeps the
                // last ones): those after the last one shown.
                let from = shown[i]
                    .as_ref()
                    .and_then(|l| job.progress.iter().rposition(|p| p == l))
                    .map_or(0, |at| at + 1);
                for line in &job.progress[from..] {
                    if ids.len() > 1 {
                        eprintln!("  {id}: {line}");
                    } else {
                        eprintln!("  {line}");
                    }
                }
                if let Some(line) = job.progress.last() {
                    shown[i] = Some(line.clone());
                }
            }
            last[i] = Some(seen);
            pending |= !job.state.is_final();
            rows[i] = Some(job);
        }
        if !pending {
            return Ok(rows.into_iter().flatten().collect());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How `rehearse converge --fleet` places a task.
pub struct TaskOnFleet<'a> {
    pub url: &'a str,
    pub path: &'a Path,
    /// Nodes the task's cluster has.
    pub nodes: u32,
    /// The images they boot.
    pub images: Vec<String>,
    /// provider, model and base_url as given (null: the host's own setting).
    pub model: serde_json::Value,
    pub submitter: String,
}

/// Queues a converge task with its folder, waits, and prints what a local
/// converge prints: the summary, and the proven script on stdout.
pub fn converge(req: TaskOnFleet<'_>, json: bool) -> anyhow::Result<i32> {
    let fleet = connect(req.url)?;
    let mut args = req.model.clone();
    if let Some(map) = args.as_object_mut() {
        map.retain(|_, v| !v.is_null());
    }
    let payload = CommandPayload::with_path("converge", args, req.path, "task.yaml")?;
    let job = fleet
        .submit(&JobSpec {
            kind: JobKind::Converge,
            payload: serde_json::to_value(&payload)?,
            nodes: req.nodes,
            submitter: req.submitter.clone(),
            max_attempts: None,
            images: req.images.clone(),
        })
        .with_context(|| format!("queueing {}", req.path.display()))?;
    if !json {
        eprintln!("rehearse: {} queued on the fleet", job.id);
    }
    let job = wait(&fleet, std::slice::from_ref(&job.id), json)?.remove(0);
    let status = rehearse_fleet::place::status_of(&job);
    let Some(result) = &status.converge else {
        let why = status
            .error
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_else(|| format!("it is {}", job.state));
        if json {
            print_json(&serde_json::json!({ "job": job.id, "host": job.host, "error": why }));
        } else {
            eprintln!(
                "rehearse: fleet job {} did not converge the task: {why}",
                job.id
            );
        }
        return Ok(2);
    };
    let host = job.host.as_deref().unwrap_or("?");
    if json {
        let mut doc = serde_json::to_value(result)?;
        if let Some(map) = doc.as_object_mut() {
            map.insert("job".into(), job.id.clone().into());
            map.insert("host".into(), host.into());
        }
        print_json(&doc);
    } else {
        eprintln!("{}", result.summary);
        if let Some(script) = &result.script {
            print!("{script}");
        }
        eprintln!(
            "run {} on host {host} · report {} (on {host})",
            result.run_id, result.report_path
        );
    }
    Ok(if result.converged { 0 } else { 1 })
}

/// How `rehearse recipe prove --fleet` places proofs.
pub struct RecipesOnFleet<'a> {
    pub url: &'a str,
    pub recipes: &'a [&'a rehearse_recipes::Recipe],
    pub set: &'a [(String, String)],
    /// The platforms asked for; none: each recipe's own.
    pub platforms: &'a [String],
    pub submitter: String,
}

/// Queues one proof per recipe and platform (so a recipe's platforms spread
/// over the fleet too), waits, and prints what a local proof prints, with
/// the host of each platform.
pub fn prove_recipes(req: RecipesOnFleet<'_>, json: bool) -> anyhow::Result<i32> {
    let fleet = connect(req.url)?;
    let mut legs: Vec<(String, Option<String>, String)> = Vec::new();
    for recipe in req.recipes {
        let platforms: Vec<Option<String>> = if !req.platforms.is_empty() {
            req.platforms.iter().cloned().map(Some).collect()
        } else if recipe.meta.platforms.is_empty() {
            vec![None]
        } else {
            recipe.meta.platforms.iter().cloned().map(Some).collect()
        };
        for platform in platforms {
            let on: Vec<String> = platform.iter().cloned().collect();
            let (payload, nodes, images) = RecipePayload::pack(recipe, req.set, &on)
                .with_context(|| format!("packing {}", recipe.meta.name))?;
            let job = fleet
                .submit(&JobSpec {
                    kind: JobKind::RecipeProve,
                    payload: serde_json::to_value(&payload)?,
                    nodes,
                    submitter: req.submitter.clone(),
                    max_attempts: None,
                    images,
                })
                .with_context(|| format!("queueing the proof of {}", recipe.meta.name))?;
            if !json {
                eprintln!(
                    "rehearse: {} queued on the fleet: {}{}",
                    job.id,
                    recipe.meta.name,
                    platform
                        .as_deref()
                        .map(|p| format!(" on {p}"))
                        .unwrap_or_default()
                );
            }
            legs.push((recipe.meta.name.clone(), platform, job.id));
        }
    }
    let ids: Vec<String> = legs.iter().map(|(_, _, id)| id.clone()).collect();
    let jobs = wait(&fleet, &ids, json)?;
    let mut all_passed = true;
    let mut docs = Vec::new();
    for ((name, platform, _), job) in legs.iter().zip(&jobs) {
        let on = platform.as_deref().unwrap_or("its platforms");
        let host = job.host.as_deref().unwrap_or("?");
        match (&job.state, &job.result) {
            (JobState::Done, Some(result)) => {
                let passed = job.exit_code == Some(0);
                all_passed &= passed;
                if !json {
                    let mark = if passed { "✔" } else { "✘" };
                    println!(
                        "{mark} {name} {} on {on} (host {host}): {} (run {})",
                        result["proof"]["version"].as_str().unwrap_or("?"),
                        result["proof"]["outcome"].as_str().unwrap_or("?"),
                        result["proof"]["run_id"].as_str().unwrap_or("?"),
                    );
                    for p in result["platforms"].as_array().into_iter().flatten() {
                        for f in p["failures"].as_array().into_iter().flatten() {
                            println!("        {}", f.as_str().unwrap_or_default());
                        }
                    }
                }
                let mut doc = result.clone();
                if let Some(map) = doc.as_object_mut() {
                    map.insert("job".into(), job.id.clone().into());
                    map.insert("host".into(), host.into());
                }
                docs.push(doc);
            }
            (state, _) => {
                all_passed = false;
                let why = job
                    .error
                    .clone()
                    .unwrap_or_else(|| format!("it is {state}"));
                if !json {
                    println!("✘ {name} on {on}: fleet job {} {state}: {why}", job.id);
                }
                docs.push(serde_json::json!({
                    "recipe": name, "platform": platform, "job": job.id,
                    "host": job.host, "error": why,
                }));
            }
        }
    }
    if json {
        print_json(&serde_json::json!({ "proofs": docs, "passed": all_passed }));
    }
    Ok(if all_passed { 0 } else { 1 })
}
