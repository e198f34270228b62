//! A platforms matrix: the same scenario once per image, each on a fresh
//! cluster of its own, as many side by side as the host has memory for. Each
//! platform is an ordinary scenario run (recorded as a part of the matrix run);
//! the matrix only chooses images, schedules and sums up.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use rehearse_sandbox::Engine;
use rehearse_spec::scenario::Scenario;
use rehearse_store::{RunFinish, RunStart};

use crate::report::{junit_document, junit_suite};
use crate::{new_run_id, Event, Outcome, ParentRun, RunOptions, RunReport};

/// Memory a node of a running scenario is planned with when deciding how many
/// platforms run at once: an idle node takes ~30 MB, a node installing and
/// running services a few hundred.
const PLANNED_NODE_BYTES: u64 = 384 << 20;

/// One platform's run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlatformReport {
    /// The image every node that pins none booted.
    pub platform: String,
    #[serde(flatten)]
    pub report: RunReport,
}

/// A whole matrix: one result per platform, in the order they were listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatrixReport {
    pub run_id: String,
    pub scenario: String,
    pub file: PathBuf,
    /// Passed only if every platform passed.
    pub outcome: Outcome,
    /// How many platforms ran at once.
    pub jobs: usize,
    pub total_ms: u64,
    pub platforms: Vec<PlatformReport>,
}

impl MatrixReport {
    pub fn exit_code(&self) -> i32 {
        match self.outcome {
            Outcome::Passed => 0,
            Outcome::Failed => 1,
            Outcome::Error => 2,
        }
    }
}

/// One row of the matrix, as the terminal table and the dashboard show it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MatrixRow {
    pub platform: String,
    pub outcome: Outcome,
    /// `2/2`: steps that applied, of the steps.
    pub steps: String,
    /// `6/6`: checks that passed, of the checks evaluated.
    pub checks: String,
    /// `passed`, `failed`, or `-` when the second pass did not run.
    pub idempotence: String,
    /// Hygiene findings.
    pub hygiene: usize,
    pub total_ms: u64,
}

impl PlatformReport {
    pub fn row(&self) -> MatrixRow {
        let r = &self.report;
        let checks = r.all_checks();
        MatrixRow {
            platform: self.platform.clone(),
            outcome: r.outcome,
            steps: format!(
                "{}/{}",
                r.steps.iter().filter(|s| s.ok).count(),
                r.steps.len()
            ),
            checks: format!(
                "{}/{}",
                checks.iter().filter(|c| c.passed()).count(),
                checks.len()
            ),
            idempotence: match &r.idempotence {
                Some(i) if i.passed => "passed".into(),
                Some(_) => "failed".into(),
                None => "-".into(),
            },
            hygiene: r.hygiene.len(),
            total_ms: r.timings.total_ms,
        }
    }
}

/// How many clusters of `nodes` nodes the host has memory for now (at least one).
pub fn host_slots(nodes: usize) -> usize {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    let per_cluster = PLANNED_NODE_BYTES * nodes.max(1) as u64;
    usize::try_from(available / per_cluster)
        .unwrap_or(usize::MAX)
        .max(1)
}

/// Runs `scenario` once per platform. `jobs` caps how many run at once
/// (default: as many as [`host_slots`] allows). Events carry their platform.
pub fn run_matrix(
    engine: &Engine,
    scenario: &Scenario,
    platforms: &[String],
    jobs: Option<usize>,
    opts: &RunOptions,
    events: &(dyn Fn(&str, Event<'_>) + Sync),
) -> MatrixReport {
    let started = Instant::now();
    let run_id = new_run_id();
    let jobs = jobs
        .unwrap_or_else(|| host_slots(scenario.topology.nodes.len()))
        .clamp(1, platforms.len().max(1));
    let store = opts.store.as_deref();
    if let Some(store) = store {
        let start = RunStart {
            id: run_id.clone(),
            kind: "scenario".into(),
            name: scenario.name.clone(),
            file: scenario.file.display().to_string(),
            parent_id: opts.parent.as_ref().map(|p| p.run_id.clone()),
            role: Some(format!("matrix of {}", platforms.join(", "))),
        };
        if let Err(e) = store.start_run(&start) {
            tracing::warn!(run = %run_id, error = %e, "recording the matrix run's start");
        }
    }
    tracing::info!(run_id = %run_id, platforms = ?platforms, jobs, "platforms matrix started");

    // Platforms are taken in order by `jobs` workers; results land in their slot.
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<RunReport>>> = Mutex::new(vec![None; platforms.len()]);
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(platform) = platforms.get(i) else {
                    break;
                };
                let on_platform = scenario.on_platform(platform);
                let platform_opts = RunOptions {
                    parent: Some(ParentRun {
                        run_id: run_id.clone(),
                        role: format!("platform {platform}"),
                    }),
                    ..opts.clone()
                };
                let report = crate::run(engine, &on_platform, &platform_opts, &|e| {
                    events(platform, e)
                });
                results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(report);
            });
        }
    });
    let reports: Vec<PlatformReport> = results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .zip(platforms)
        .filter_map(|(report, platform)| {
            report.map(|report| PlatformReport {
                platform: platform.clone(),
                report,
            })
        })
        .collect();
    let outcome = if reports.iter().any(|p| p.report.outcome == Outcome::Error) {
        Outcome::Error
    } else if reports.iter().all(|p| p.report.outcome == Outcome::Passed) {
        Outcome::Passed
    } else {
        Outcome::Failed
    };
    let matrix = MatrixReport {
        run_id,
        scenario: scenario.name.clone(),
        file: scenario.file.clone(),
        outcome,
        jobs,
        total_ms: started.elapsed().as_millis() as u64,
        platforms: reports,
    };
    if let Some(store) = store {
        let finish = RunFinish {
            outcome: crate::name_of(matrix.outcome),
            summary: matrix_summary(&matrix),
            report: serde_json::to_string(&matrix).ok(),
            ..RunFinish::default()
        };
        if let Err(e) = store.finish_run(&matrix.run_id, &finish) {
            tracing::warn!(run = %matrix.run_id, error = %e, "recording the matrix run's outcome");
        }
    }
    tracing::info!(outcome = ?matrix.outcome, total_ms = matrix.total_ms, "platforms matrix ended");
    matrix
}

/// One sentence: how many platforms passed, and which did not.
pub fn matrix_summary(m: &MatrixReport) -> String {
    let passed = m
        .platforms
        .iter()
        .filter(|p| p.report.outcome == Outcome::Passed)
        .count();
    let others: Vec<String> = m
        .platforms
        .iter()
        .filter(|p| p.report.outcome != Outcome::Passed)
        .map(|p| format!("{} {}", p.platform, crate::name_of(p.report.outcome)))
        .collect();
    if others.is_empty() {
        format!("passed on {passed}/{} platforms", m.platforms.len())
    } else {
        format!(
            "passed on {passed}/{} platforms; {}",
            m.platforms.len(),
            others.join(", ")
        )
    }
}

/// The terminal table: platform × (steps, checks, idempotence, hygiene), then
/// what failed on each platform that did not pass.
pub fn render_matrix(m: &MatrixReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let verdict = match m.outcome {
        Outcome::Passed => "PASSED",
        Outcome::Failed => "FAILED",
        Outcome::Error => "ERROR",
    };
    let _ = writeln!(
        s,
        "scenario {} ({}): {verdict} on {} platform(s), {} at a time, in {:.1} s   [run {}]",
        m.scenario,
        m.file.display(),
        m.platforms.len(),
        m.jobs,
        m.total_ms as f64 / 1000.0,
        m.run_id
    );
    let width = m
        .platforms
        .iter()
        .map(|p| p.platform.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let _ = writeln!(
        s,
        "\n  {:<width$}  {:<7}  {:>6}  {:>7}  {:<11}  {:>7}  {:>8}",
        "PLATFORM", "RESULT", "STEPS", "CHECKS", "IDEMPOTENCE", "HYGIENE", "TIME"
    );
    for p in &m.platforms {
        let row = p.row();
        let _ = writeln!(
            s,
            "  {:<width$}  {:<7}  {:>6}  {:>7}  {:<11}  {:>7}  {:>6.1} s",
            row.platform,
            crate::name_of(row.outcome),
            row.steps,
            row.checks,
            row.idempotence,
            row.hygiene,
            row.total_ms as f64 / 1000.0
        );
    }
    for p in m
        .platforms
        .iter()
        .filter(|p| p.report.outcome != Outcome::Passed)
    {
        let _ = writeln!(s, "\n── {} ──", p.platform);
        s.push_str(&crate::render_human(&p.report));
    }
    s
}

/// JUnit XML with one test suite per platform.
pub fn junit_matrix(m: &MatrixReport) -> String {
    let suites: Vec<String> = m
        .platforms
        .iter()
        .map(|p| {
            junit_suite(
                &p.report,
                &format!("rehearse.{}.{}", m.scenario, p.platform),
            )
        })
        .collect();
    junit_document(&suites)
}
