//! The confidence phase of a run: loads start, faults are injected on their
//! schedule with their expected outcome checked while they hold, each is
//! healed, the loads' bounds are checked, then the attack probes run.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use rehearse_checks::{CheckResult, NodeChecks, Status};
use rehearse_probes::{LoadReport, ProbeReport};
use rehearse_sandbox::Engine;
use rehearse_spec::scenario::Scenario;
use rehearse_spec::trials::FaultAction;

/// One fault of the run: when it was injected and healed (ms into the phase),
/// what was done, and the checks of its expected outcome.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaultOutcome {
    pub name: String,
    pub action: FaultAction,
    pub injected_ms: Option<u64>,
    pub healed_ms: Option<u64>,
    pub detail: String,
    pub checks: Vec<CheckResult>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ConfidenceReport {
    pub faults: Vec<FaultOutcome>,
    pub loads: Vec<LoadReport>,
    pub probes: Vec<ProbeReport>,
    /// Loads or probes that could not be carried out.
    pub errors: Vec<String>,
}

impl ConfidenceReport {
    /// Every check of the phase.
    pub fn checks(&self) -> impl Iterator<Item = &CheckResult> {
        self.faults
            .iter()
            .flat_map(|f| f.checks.iter())
            .chain(self.loads.iter().flat_map(|l| l.checks.iter()))
            .chain(self.probes.iter().flat_map(|p| p.checks.iter()))
    }

    pub fn failed(&self) -> bool {
        !self.errors.is_empty()
            || self.faults.iter().any(|f| f.error.is_some())
            || self.checks().any(|c| c.status == Status::Failed)
    }
}

fn expect(
    engine: &Engine,
    scenario: &Scenario,
    cluster: &str,
    checks: &[rehearse_spec::scenario::Check],
) -> Vec<CheckResult> {
    let mut work: Vec<NodeChecks<'_>> = Vec::new();
    for node in &scenario.topology.nodes {
        let mine: Vec<_> = checks
            .iter()
            .filter(|c| scenario.resolve(&c.on).contains(&node.name))
            .collect();
        if !mine.is_empty() {
            work.push(NodeChecks {
                node: node.name.clone(),
                checks: mine,
            });
        }
    }
    rehearse_checks::evaluate(engine, cluster, &work)
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

pub(crate) fn run(
    engine: &Engine,
    scenario: &Scenario,
    cluster: &str,
    phase: &(dyn Fn(&str) + Sync),
) -> ConfidenceReport {
    let mut report = ConfidenceReport::default();
    let t0 = Instant::now();
    let ms = |t: Instant| t.duration_since(t0).as_millis() as u64;
    let loads: Vec<Result<LoadReport, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = scenario
            .loads
            .iter()
            .map(|l| {
                phase(&format!("load: {}", l.display_name()));
                s.spawn(move || {
                    rehearse_probes::run_load(engine, cluster, l)
                        .map_err(|e| format!("{}: {e}", l.display_name()))
                })
            })
            .collect();
        let mut faults: Vec<_> = scenario.faults.iter().collect();
        faults.sort_by_key(|f| f.at);
        for f in faults {
            sleep_until(t0 + f.at);
            phase(&format!("fault: {}", f.name));
            let mut outcome = FaultOutcome {
                name: f.name.clone(),
                action: f.action.clone(),
                injected_ms: None,
                healed_ms: None,
                detail: String::new(),
                checks: Vec::new(),
                error: None,
            };
            match engine.inject(cluster, f.action.clone()) {
                Err(e) => outcome.error = Some(format!("injecting: {e}")),
                Ok(record) => {
                    let injected = Instant::now();
                    outcome.injected_ms = Some(ms(injected));
                    outcome.detail = record.detail.clone();
                    outcome.checks = expect(engine, scenario, cluster, &f.expect);
                    if record.status == rehearse_sandbox::FaultStatus::Active {
                        if let Some(after) = f.heal_after {
                            sleep_until(injected + Duration::from_millis(after));
                        }
                        match engine.heal(cluster, Some(record.id)) {
                            Ok(_) => outcome.healed_ms = Some(ms(Instant::now())),
                            Err(e) => outcome.error = Some(format!("healing: {e}")),
                        }
                    }
                }
            }
            report.faults.push(outcome);
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("the load thread panicked".into()))
            })
            .collect()
    });
    for l in loads {
        match l {
            Ok(r) => report.loads.push(r),
            Err(e) => report.errors.push(format!("load {e}")),
        }
    }
    if let Err(e) = engine.heal(cluster, None) {
        report.errors.push(format!("healing what was left: {e}"));
    }
    for p in &scenario.probes {
        phase(&format!("probe: {}", p.describe()));
        match rehearse_probes::run_probe(engine, cluster, p) {
            Ok(r) => report.probes.push(r),
            Err(e) => report.errors.push(format!("probe {}: {e}", p.describe())),
        }
    }
    report
}

/// The faults, loads and probes of a run, for the human report.
pub fn render(c: &ConfidenceReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let line = |r: &CheckResult| format!("      {}", rehearse_checks::render_line(r));
    if !c.faults.is_empty() {
        let _ = writeln!(s, "\nfaults");
        for f in &c.faults {
            let ok = f.error.is_none() && f.checks.iter().all(|r| r.status != Status::Failed);
            let when = match (f.injected_ms, f.healed_ms) {
                (Some(i), Some(h)) => format!(
                    "at {:.1} s, healed at {:.1} s",
                    i as f64 / 1e3,
                    h as f64 / 1e3
                ),
                (Some(i), None) => format!("at {:.1} s", i as f64 / 1e3),
                _ => "not injected".into(),
            };
            let _ = writeln!(
                s,
                "  {} {} ({when}): {}",
                if ok { "✔" } else { "✘" },
                f.name,
                f.detail
            );
            if let Some(e) = &f.error {
                let _ = writeln!(s, "      {e}");
            }
            for r in &f.checks {
                let _ = writeln!(s, "{}", line(r));
            }
        }
    }
    if !c.loads.is_empty() {
        let _ = writeln!(s, "\nload");
        for l in &c.loads {
            let ms = |v: Option<f64>| v.map(|v| format!("{v:.1} ms")).unwrap_or("-".into());
            let _ = writeln!(
                s,
                "  {} {}: {} requests, {:.2}% failed, p50 {}, p99 {}, {:.0} req/s",
                if l.passed() { "✔" } else { "✘" },
                l.name,
                l.requests,
                l.error_rate,
                ms(l.p50_ms),
                ms(l.p99_ms),
                l.rps
            );
            if !l.errors.is_empty() {
                let errors: Vec<String> =
                    l.errors.iter().map(|(k, v)| format!("{v}× {k}")).collect();
                let _ = writeln!(s, "      failures: {}", errors.join(", "));
            }
            for r in &l.checks {
                let _ = writeln!(s, "{}", line(r));
            }
        }
    }
    if !c.probes.is_empty() {
        let _ = writeln!(s, "\nprobes");
        for p in &c.probes {
            for r in &p.checks {
                let _ = writeln!(s, "  {}", rehearse_checks::render_line(r));
            }
        }
    }
    for e in &c.errors {
        let _ = writeln!(s, "  ✘ {e}");
    }
    s
}
