//! An evaluation: a set of converge tasks, each on each of its platforms,
//! attempted N times with one model, several attempts at once. Every attempt
//! is an ordinary converge run (recorded under the evaluation's run); the
//! evaluation only schedules them and sums up: pass rate, iterations, the
//! recovery paths taken, wall time, tokens and cost, per task and in all.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use rehearse_llm::{Provider, Usage};
use rehearse_sandbox::Engine;
use rehearse_scenario::{name_of, ParentRun};
use rehearse_spec::task::{Task, TASK_FILE};
use rehearse_spec::SpecError;
use rehearse_store::{RunFinish, RunStart, RunStore};

use crate::{ConvergeReport, Verdict};

/// The platform a task runs on when it names none: the nodes' own images.
pub const OWN_IMAGES: &str = "default";

/// How an evaluation runs.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Attempts per task and platform (at least 1).
    pub attempts: u32,
    /// Attempts running at once (at least 1).
    pub jobs: usize,
    /// Platforms every task runs on, instead of those the tasks name.
    pub platforms: Option<Vec<String>>,
    /// The pass rate (0 to 1) the evaluation must reach to pass.
    pub min_pass_rate: f64,
    /// What the evaluation was asked to run, for its record (the command line's paths).
    pub source: String,
    /// Where the evaluation and its attempts are recorded; `None` records nothing.
    pub store: Option<Arc<RunStore>>,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            attempts: 1,
            jobs: 1,
            platforms: None,
            min_pass_rate: 1.0,
            source: String::new(),
            store: None,
        }
    }
}

/// One attempt: one converge run of one task on one platform.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attempt {
    pub task: String,
    pub platform: String,
    /// 1-based.
    pub attempt: u32,
    /// The converge run, when it started.
    pub run_id: Option<String>,
    /// `converged`, `budget_exhausted`, `no_rule_applies`, `platform_error`,
    /// `stopped` or `error` (also when the run could not start).
    pub verdict: String,
    pub converged: bool,
    /// Runs of code on a fresh cluster.
    pub iterations: usize,
    /// The recovery each failed iteration took, in order (`rules`, `retry`,
    /// `troubleshoot`); empty when the first code passed.
    pub recovery: Vec<String>,
    pub platform_failures: usize,
    pub reasks: u32,
    pub wall_ms: u64,
    pub usage: Usage,
    pub cost_usd: Option<f64>,
    pub summary: String,
    pub report_path: Option<PathBuf>,
}

/// The sums over a set of attempts.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Tally {
    pub attempts: usize,
    pub converged: usize,
    /// converged / attempts (0 when there were none).
    pub pass_rate: f64,
    /// Mean iterations per attempt.
    pub mean_iterations: f64,
    /// How often each recovery path was taken, over every iteration.
    pub recovery: BTreeMap<String, usize>,
    /// Attempts whose first code passed, with no recovery at all.
    pub first_try: usize,
    pub platform_failures: usize,
    pub reasks: u32,
    /// Summed over the attempts (they may have run side by side).
    pub wall_ms: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Known only when every call's price was.
    pub cost_usd: Option<f64>,
}

impl Tally {
    pub fn of<'a>(attempts: impl IntoIterator<Item = &'a Attempt>) -> Tally {
        let mut t = Tally::default();
        let mut iterations = 0;
        let mut cost = Some(0.0);
        let mut priced = false;
        for a in attempts {
            t.attempts += 1;
            t.converged += usize::from(a.converged);
            iterations += a.iterations;
            for path in &a.recovery {
                *t.recovery.entry(path.clone()).or_default() += 1;
            }
            t.first_try += usize::from(a.converged && a.recovery.is_empty());
            t.platform_failures += a.platform_failures;
            t.reasks += a.reasks;
            t.wall_ms += a.wall_ms;
            t.input_tokens += a.usage.input_tokens;
            t.output_tokens += a.usage.output_tokens;
            match a.cost_usd {
                Some(c) => {
                    priced = true;
                    cost = cost.map(|sum| sum + c);
                }
                None if a.usage.total() > 0 => cost = None,
                None => {}
            }
        }
        if t.attempts > 0 {
            t.pass_rate = t.converged as f64 / t.attempts as f64;
            t.mean_iterations = iterations as f64 / t.attempts as f64;
        }
        t.cost_usd = cost.filter(|_| priced);
        t
    }

    /// `retry 2, troubleshoot 1`, or `-`.
    pub fn recovery_text(&self) -> String {
        if self.recovery.is_empty() {
            return "-".into();
        }
        self.recovery
            .iter()
            .map(|(path, n)| format!("{path} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One task on one platform, over its attempts.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TaskResult {
    pub task: String,
    pub file: PathBuf,
    pub platform: String,
    #[serde(flatten)]
    pub tally: Tally,
}

/// A whole evaluation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalReport {
    pub run_id: String,
    /// `provider/model`, or null in rules-only mode.
    pub model: Option<String>,
    pub attempts_per_task: u32,
    pub jobs: usize,
    pub min_pass_rate: f64,
    /// The pass rate in all reached `min_pass_rate`.
    pub passed: bool,
    pub total_ms: u64,
    /// Every task on every platform, in the order given.
    pub tasks: Vec<TaskResult>,
    pub total: Tally,
    pub attempts: Vec<Attempt>,
}

/// Why the tasks of an evaluation cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A path names neither a task file nor a folder holding tasks.
    #[error("{0} holds no task: pass task files, task folders (with {TASK_FILE}), or folders of task folders")]
    NoTasks(PathBuf),
    /// A task file is invalid (every invalid file is named).
    #[error("{} task file(s) are invalid:\n{}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<SpecError>),
    /// Two tasks share a name: their rows could not be told apart.
    #[error("two tasks are named {name}: {first} and {second}; give one a `name:`")]
    Duplicate {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// A platform name given on the command line is not an image name.
    #[error("--platform: {0}")]
    Platform(SpecError),
}

/// The task files under `path`: the file itself, a folder's `task.yaml`, or
/// every `task.yaml` below a folder of task folders, in name order.
pub fn task_files(path: &FsPath) -> Result<Vec<PathBuf>, EvalError> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    if path.join(TASK_FILE).is_file() {
        return Ok(vec![path.join(TASK_FILE)]);
    }
    let mut found = Vec::new();
    let mut folders = vec![path.to_path_buf()];
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.join(TASK_FILE).is_file() {
                found.push(p.join(TASK_FILE));
            } else if p.is_dir() {
                folders.push(p);
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(EvalError::NoTasks(path.to_path_buf()));
    }
    Ok(found)
}

/// Reads every task under `paths`; all invalid files are reported at once.
pub fn load_tasks(paths: &[PathBuf]) -> Result<Vec<Task>, EvalError> {
    let mut tasks: Vec<Task> = Vec::new();
    let mut invalid = Vec::new();
    for path in paths {
        for file in task_files(path)? {
            match Task::from_path(&file) {
                Ok(task) => {
                    if let Some(other) = tasks.iter().find(|t| t.name == task.name) {
                        return Err(EvalError::Duplicate {
                            name: task.name,
                            first: other.file.clone(),
                            second: task.file,
                        });
                    }
                    tasks.push(task);
                }
                Err(e) => invalid.push(e),
            }
        }
    }
    if !invalid.is_empty() {
        return Err(EvalError::Invalid(invalid));
    }
    Ok(tasks)
}

/// The platforms a task runs on: the override, else its own, else the
/// nodes' own images.
fn platforms_of(task: &Task, platforms: Option<&[String]>) -> Vec<String> {
    match platforms {
        Some(list) if !list.is_empty() => list.to_vec(),
        _ if !task.platforms.is_empty() => task.platforms.clone(),
        _ => vec![OWN_IMAGES.to_owned()],
    }
}

/// What one attempt came to, from its converge report.
fn attempt_of(report: &ConvergeReport, task: &str, platform: &str, n: u32) -> Attempt {
    Attempt {
        task: task.to_owned(),
        platform: platform.to_owned(),
        attempt: n,
        run_id: Some(report.run_id.clone()),
        verdict: name_of(report.verdict),
        converged: report.verdict == Verdict::Converged,
        iterations: report.iterations.len(),
        recovery: report
            .iterations
            .iter()
            .filter_map(|i| i.path.map(name_of))
            .collect(),
        platform_failures: report.platform_failures.len(),
        reasks: report.reasks,
        wall_ms: report.wall_ms,
        usage: report.usage,
        cost_usd: report.cost_usd,
        summary: report.summary.clone(),
        report_path: Some(report.report_path.clone()),
    }
}

/// Runs every task on each of its platforms, `attempts` times, `jobs` at a
/// time. `progress` gets `(task/platform#attempt, message)`.
pub fn evaluate(
    engine: &Engine,
    tasks: &[Task],
    model: Option<&dyn Provider>,
    options: &EvalOptions,
    progress: &(dyn Fn(&str, &str) + Sync),
) -> Result<EvalReport, EvalError> {
    if let Some(platforms) = &options.platforms {
        rehearse_spec::scenario::Scenario::validate_platforms(platforms)
            .map_err(EvalError::Platform)?;
    }
    let started = Instant::now();
    let run_id = format!("e{}", rehearse_scenario::new_run_id());
    let attempts = options.attempts.max(1);
    // Every (task, platform, attempt), task by task, in the order given.
    let mut work: Vec<(usize, String, u32)> = Vec::new();
    let mut cases: Vec<(usize, String)> = Vec::new();
    for (i, task) in tasks.iter().enumerate() {
        for platform in platforms_of(task, options.platforms.as_deref()) {
            for n in 1..=attempts {
                work.push((i, platform.clone(), n));
            }
            cases.push((i, platform));
        }
    }
    let jobs = options.jobs.clamp(1, work.len().max(1));
    let model_name = model.map(|m| format!("{}/{}", m.name(), m.model()));
    let store = options.store.as_deref();
    // Whether the evaluation has its row: its attempts are recorded under it,
    // else on their own.
    let mut recorded = false;
    if let Some(store) = store {
        let start = RunStart {
            id: run_id.clone(),
            kind: "eval".into(),
            name: format!(
                "eval of {} task(s) × {attempts} attempt(s){}",
                tasks.len(),
                model_name
                    .as_deref()
                    .map(|m| format!(" with {m}"))
                    .unwrap_or_default()
            ),
            file: options.source.clone(),
            parent_id: None,
            role: None,
        };
        match store.start_run(&start) {
            Ok(()) => recorded = true,
            Err(e) => {
                tracing::warn!(run = %run_id, error = %e, "recording the evaluation's start");
                progress(
                    "eval",
                    &format!("the evaluation will not be in the run store: {e}"),
                );
            }
        }
    }
    tracing::info!(run_id = %run_id, tasks = tasks.len(), attempts, jobs, "evaluation started");

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Attempt>>> = Mutex::new(vec![None; work.len()]);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some((t, platform, n)) = work.get(i) else {
                    break;
                };
                let task = &tasks[*t];
                let on_platform = if platform == OWN_IMAGES {
                    task.clone()
                } else {
                    task.on_platform(platform)
                };
                let label = format!("{}/{platform}#{n}", task.name);
                let say = |message: &str| progress(&label, message);
                let parent = recorded.then(|| ParentRun {
                    run_id: run_id.clone(),
                    role: format!("{} on {platform}, attempt {n}", task.name),
                });
                let attempt = match crate::converge_in(
                    engine,
                    &on_platform,
                    model,
                    &say,
                    options.store.clone(),
                    None,
                    parent,
                ) {
                    Ok(report) => attempt_of(&report, &task.name, platform, *n),
                    Err(e) => Attempt {
                        task: task.name.clone(),
                        platform: platform.clone(),
                        attempt: *n,
                        run_id: None,
                        verdict: "error".into(),
                        converged: false,
                        iterations: 0,
                        recovery: Vec::new(),
                        platform_failures: 0,
                        reasks: 0,
                        wall_ms: 0,
                        usage: Usage::default(),
                        cost_usd: None,
                        summary: crate::chain(&e),
                        report_path: None,
                    },
                };
                let verdict = &attempt.verdict;
                if attempt.summary.starts_with(verdict.as_str()) {
                    progress(&label, &attempt.summary);
                } else {
                    progress(&label, &format!("{verdict}: {}", attempt.summary));
                }
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(attempt);
            });
        }
    });
    let attempts_done: Vec<Attempt> = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .flatten()
        .collect();
    let task_results = cases
        .iter()
        .map(|(t, platform)| {
            let task = &tasks[*t];
            TaskResult {
                task: task.name.clone(),
                file: task.file.clone(),
                platform: platform.clone(),
                tally: Tally::of(
                    attempts_done
                        .iter()
                        .filter(|a| a.task == task.name && &a.platform == platform),
                ),
            }
        })
        .collect();
    let total = Tally::of(&attempts_done);
    let report = EvalReport {
        run_id,
        model: model_name,
        attempts_per_task: attempts,
        jobs,
        min_pass_rate: options.min_pass_rate,
        passed: total.attempts > 0 && total.pass_rate >= options.min_pass_rate,
        total_ms: started.elapsed().as_millis() as u64,
        tasks: task_results,
        total,
        attempts: attempts_done,
    };
    if let Some(store) = store.filter(|_| recorded) {
        let finish = RunFinish {
            outcome: if report.passed { "passed" } else { "failed" }.into(),
            summary: summary(&report),
            report: serde_json::to_string(&report).ok(),
            report_path: None,
            input_tokens: report.total.input_tokens,
            output_tokens: report.total.output_tokens,
            cost_usd: report.total.cost_usd,
        };
        if let Err(e) = store.finish_run(&report.run_id, &finish) {
            tracing::warn!(run = %report.run_id, error = %e, "recording the evaluation's outcome");
        }
    }
    tracing::info!(
        pass_rate = report.total.pass_rate,
        total_ms = report.total_ms,
        "evaluation ended"
    );
    Ok(report)
}

fn percent(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// One sentence: the pass rate, against the rate asked for.
pub fn summary(r: &EvalReport) -> String {
    format!(
        "{} of {} attempts converged ({}) over {} task/platform pair(s); {} {} required",
        r.total.converged,
        r.total.attempts,
        percent(r.total.pass_rate),
        r.tasks.len(),
        if r.passed { "reaches the" } else { "below the" },
        percent(r.min_pass_rate)
    )
}

fn cost_text(cost: Option<f64>) -> String {
    cost.map(|c| format!("${c:.4}"))
        .unwrap_or_else(|| "-".into())
}

/// The terminal table: a row per task and platform, then the sums.
pub fn render(r: &EvalReport) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "eval {} · model {} · {} attempt(s) per task, {} at a time, {:.1} s",
        r.run_id,
        r.model.as_deref().unwrap_or("none (rules doctor only)"),
        r.attempts_per_task,
        r.jobs,
        r.total_ms as f64 / 1000.0
    );
    let width = r
        .tasks
        .iter()
        .map(|t| t.task.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let pwidth = r
        .tasks
        .iter()
        .map(|t| t.platform.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let _ = writeln!(
        s,
        "\n  {:<width$}  {:<pwidth$}  {:>7}  {:>6}  {:>5}  {:<24}  {:>8}  {:>8}  {:>8}",
        "TASK", "PLATFORM", "PASSED", "RATE", "ITER", "RECOVERY", "WALL", "TOKENS", "COST"
    );
    let mut row = |name: &str, platform: &str, t: &Tally| {
        let _ = writeln!(
            s,
            "  {:<width$}  {:<pwidth$}  {:>7}  {:>6}  {:>5.1}  {:<24}  {:>6.1} s  {:>8}  {:>8}",
            name,
            platform,
            format!("{}/{}", t.converged, t.attempts),
            percent(t.pass_rate),
            t.mean_iterations,
            t.recovery_text(),
            t.wall_ms as f64 / 1000.0,
            t.input_tokens + t.output_tokens,
            cost_text(t.cost_usd),
        );
    };
    for t in &r.tasks {
        row(&t.task, &t.platform, &t.tally);
    }
    row("ALL", "", &r.total);
    let failed: Vec<&Attempt> = r.attempts.iter().filter(|a| !a.converged).collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "\nnot converged:");
        for a in failed {
            let _ = writeln!(
                s,
                "  {} on {}, attempt {}: {}: {}{}",
                a.task,
                a.platform,
                a.attempt,
                a.verdict,
                a.summary,
                a.run_id
                    .as_deref()
                    .map(|id| format!("   [run {id}]"))
                    .unwrap_or_default()
            );
        }
    }
    let _ = writeln!(s, "\n{}", summary(r));
    s
}

fn xml(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: a test suite per task and platform, a test case per attempt,
/// failed unless it converged.
pub fn junit(r: &EvalReport) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"rehearse.eval\" tests=\"{}\" failures=\"{}\" time=\"{:.3}\">",
        r.total.attempts,
        r.total.attempts - r.total.converged,
        r.total_ms as f64 / 1000.0
    );
    for t in &r.tasks {
        let suite = format!("rehearse.eval.{}.{}", t.task, t.platform);
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" time=\"{:.3}\">",
            xml(&suite),
            t.tally.attempts,
            t.tally.attempts - t.tally.converged,
            t.tally.wall_ms as f64 / 1000.0
        );
        for a in r
            .attempts
            .iter()
            .filter(|a| a.task == t.task && a.platform == t.platform)
        {
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"attempt {}\" time=\"{:.3}\"",
                xml(&suite),
                a.attempt,
                a.wall_ms as f64 / 1000.0
            );
            if a.converged {
                out.push_str("/>\n");
            } else {
                let _ = write!(
                    out,
                    ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>\n",
                    xml(&a.verdict),
                    xml(&format!(
                        "{}\niterations: {}; recovery: {}; run {}",
                        a.summary,
                        a.iterations,
                        if a.recovery.is_empty() {
                            "-".to_owned()
                        } else {
                            a.recovery.join(" → ")
                        },
                        a.run_id.as_deref().unwrap_or("-")
                    ))
                );
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(task: &str, converged: bool, recovery: &[&str], tokens: u64) -> Attempt {
        Attempt {
            task: task.into(),
            platform: OWN_IMAGES.into(),
            attempt: 1,
            run_id: Some("c1".into()),
            verdict: if converged {
                "converged"
            } else {
                "budget_exhausted"
            }
            .into(),
            converged,
            iterations: recovery.len() + 1,
            recovery: recovery.iter().map(|s| s.to_string()).collect(),
            platform_failures: 0,
            reasks: 0,
            wall_ms: 1000,
            usage: Usage {
                input_tokens: tokens,
                output_tokens: 0,
            },
            cost_usd: None,
            summary: "s".into(),
            report_path: None,
        }
    }

    #[test]
    fn the_tally_counts_pass_rate_iterations_and_recovery_paths() {
        let attempts = [
            attempt("a", true, &[], 10),
            attempt("a", true, &["retry"], 20),
            attempt("b", false, &["retry", "troubleshoot"], 30),
        ];
        let t = Tally::of(&attempts);
        assert_eq!(t.attempts, 3);
        assert_eq!(t.converged, 2);
        assert!((t.pass_rate - 2.0 / 3.0).abs() < 1e-9);
        assert!((t.mean_iterations - 2.0).abs() < 1e-9);
        assert_eq!(t.recovery["retry"], 2);
        assert_eq!(t.recovery["troubleshoot"], 1);
        assert_eq!(t.first_try, 1);
        assert_eq!(t.input_tokens, 60);
        assert_eq!(t.wall_ms, 3000);
        assert_eq!(t.cost_usd, None, "unpriced calls make the cost unknown");
        assert_eq!(t.recovery_text(), "retry 2, troubleshoot 1");
        assert_eq!(Tally::of(&[]).pass_rate, 0.0);
    }
}
