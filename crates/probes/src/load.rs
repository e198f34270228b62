//! HTTP load from a node of the cluster.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::json;

use rehearse_checks::CheckResult;
use rehearse_sandbox::{Engine, SandboxError};
use rehearse_spec::trials::LoadSpec;

const LOAD: &str = include_str!("../agent/load.py");

/// Successes and failures in one second of a load.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Second {
    pub second: u64,
    pub ok: u64,
    pub failed: u64,
}

/// What a load measured on the node it ran from, and the checks its
/// expectations became.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadReport {
    pub name: String,
    pub from: String,
    pub url: String,
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    /// Failed requests in percent.
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p90_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub max_ms: Option<f64>,
    pub rps: f64,
    pub elapsed_ms: u64,
    pub statuses: std::collections::BTreeMap<String, u64>,
    /// Failures by kind: `http 503`, `ConnectionRefusedError`, `timeout`, ...
    pub errors: std::collections::BTreeMap<String, u64>,
    pub timeline: Vec<Second>,
    pub checks: Vec<CheckResult>,
}

impl LoadReport {
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed())
    }
}

/// Runs a load and turns its expectations into checks. Bounded: the load
/// stops at its duration or request count, whichever comes first, and the
/// node's agent is killed shortly after the duration whatever happens.
pub fn run_load(
    engine: &Engine,
    cluster: &str,
    spec: &LoadSpec,
) -> Result<LoadReport, SandboxError> {
    spec.validate().map_err(SandboxError::Refused)?;
    let started = Instant::now();
    let duration = spec.duration();
    let args = json!({
        "url": spec.url,
        "duration_s": duration.as_secs_f64(),
        "requests": spec.requests(),
        "concurrency": spec.concurrency(),
        "timeout_s": spec.timeout().as_secs_f64(),
    });
    let limit = duration + spec.timeout() + Duration::from_secs(20);
    let out = super::agent(engine, cluster, &spec.from, LOAD, &args, limit)?;
    #[derive(Deserialize)]
    struct Raw {
        requests: u64,
        ok: u64,
        failed: u64,
        error_rate: f64,
        p50_ms: Option<f64>,
        p90_ms: Option<f64>,
        p99_ms: Option<f64>,
        max_ms: Option<f64>,
        rps: f64,
        elapsed_ms: u64,
        statuses: std::collections::BTreeMap<String, u64>,
        errors: std::collections::BTreeMap<String, u64>,
        timeline: Vec<Second>,
    }
    let raw: Raw = serde_json::from_value(out).map_err(|e| {
        SandboxError::Refused(format!("the load agent's report is unreadable: {e}"))
    })?;
    let name = spec.display_name();
    let ms = started.elapsed().as_millis() as u64;
    let mut checks = Vec::new();
    let check = |what: &str,
                 passed: bool,
                 expected: serde_json::Value,
                 actual: serde_json::Value,
                 message: String| {
        super::Finding {
            name: format!("{name}: {what}"),
            node: &spec.from,
            kind: "load",
            subject: spec.url.clone(),
            passed,
            expected,
            actual,
            message,
        }
        .check(ms)
    };
    if let Some(max) = spec.expect.error_rate {
        checks.push(check(
            "error rate",
            raw.error_rate <= max && raw.requests > 0,
            json!({ "error_rate_max": max }),
            json!({ "error_rate": raw.error_rate, "failed": raw.failed, "requests": raw.requests, "errors": raw.errors }),
            if raw.requests == 0 {
                "no request was sent".into()
            } else {
                format!(
                    "{:.2}% of {} requests failed, more than {max}% ({})",
                    raw.error_rate,
                    raw.requests,
                    describe(&raw.errors)
                )
            },
        ));
    }
    for (label, bound, got) in [
        ("p50", spec.expect.p50, raw.p50_ms),
        ("p99", spec.expect.p99, raw.p99_ms),
    ] {
        if let Some(bound) = bound {
            let max = bound.0.as_secs_f64() * 1000.0;
            let passed = got.is_some_and(|v| v <= max);
            checks.push(check(
                &format!("{label} latency"),
                passed,
                json!({ format!("{label}_ms_max"): max }),
                json!({ format!("{label}_ms"): got }),
                match got {
                    Some(v) => format!("{label} was {v:.1} ms, more than {max:.0} ms"),
                    None => "no request succeeded, so there is no latency".into(),
                },
            ));
        }
    }
    if let Some(min) = spec.expect.min_ok {
        checks.push(check(
            "successful requests",
            raw.ok >= min,
            json!({ "ok_min": min }),
            json!({ "ok": raw.ok }),
            format!("{} requests succeeded, fewer than {min}", raw.ok),
        ));
    }
    Ok(LoadReport {
        name,
        from: spec.from.clone(),
        url: spec.url.clone(),
        requests: raw.requests,
        ok: raw.ok,
        failed: raw.failed,
        error_rate: raw.error_rate,
        p50_ms: raw.p50_ms,
        p90_ms: raw.p90_ms,
        p99_ms: raw.p99_ms,
        max_ms: raw.max_ms,
        rps: raw.rps,
        elapsed_ms: raw.elapsed_ms,
        statuses: raw.statuses,
        errors: raw.errors,
        timeline: raw.timeline,
        checks,
    })
}

fn describe(errors: &std::collections::BTreeMap<String, u64>) -> String {
    errors
        .iter()
        .map(|(k, v)| format!("{v}× {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
