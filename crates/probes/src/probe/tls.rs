//! A TLS endpoint's certificate (time left, names) and the protocol
//! versions it still accepts.

use std::time::Duration;

use serde_json::json;

use rehearse_checks::CheckResult;
use rehearse_sandbox::SandboxError;

use super::Probe;
use crate::Finding;

/// The endpoint and what its certificate must hold to.
pub(super) struct Target<'a> {
    pub target: &'a str,
    pub from: &'a str,
    pub port: u16,
    /// The name the certificate must carry.
    pub hostname: &'a str,
    /// Days the certificate must stay valid.
    pub min_days: f64,
}

pub(super) fn probe(p: &Probe<'_>, t: &Target<'_>) -> Result<Vec<CheckResult>, SandboxError> {
    let Target {
        target,
        from,
        port,
        hostname,
        min_days,
    } = *t;
    let out = p.agent(
        from,
        json!({"probe": "tls", "host": target, "port": port, "hostname": hostname}),
        Duration::from_secs(60),
    )?;
    let subject = format!("{target}:{port}");
    let days = out["days_left"].as_f64().unwrap_or(-1.0);
    let old: Vec<String> = serde_json::from_value(out["old_protocols"].clone()).unwrap_or_default();
    let findings = [
        Finding {
            name: format!("tls {subject}: certificate valid {min_days} more days"),
            node: from,
            kind: "probe:tls",
            subject: subject.clone(),
            passed: days >= min_days,
            expected: json!({ "days_left_min": min_days }),
            actual: json!({ "days_left": days, "not_after": out["not_after"] }),
            message: if days < 0.0 {
                format!(
                    "the certificate expired {:.1} days ago ({})",
                    -days, out["not_after"]
                )
            } else {
                format!(
                    "the certificate expires in {days:.1} days ({}), fewer than {min_days}",
                    out["not_after"]
                )
            },
        },
        Finding {
            name: format!("tls {subject}: certificate names {hostname}"),
            node: from,
            kind: "probe:tls",
            subject: subject.clone(),
            passed: out["hostname_matches"].as_bool() == Some(true),
            expected: json!({ "hostname": hostname }),
            actual: json!({ "names": out["names"] }),
            message: format!("the certificate is for {}, not {hostname}", out["names"]),
        },
        Finding {
            name: format!("tls {subject}: no TLS 1.0/1.1"),
            node: from,
            kind: "probe:tls",
            subject: subject.clone(),
            passed: old.is_empty(),
            expected: json!({ "old_protocols": [] }),
            actual: json!({ "old_protocols": old, "negotiated": out["version"] }),
            message: format!("the server accepts {}", old.join(" and ")),
        },
    ];
    let ms = p.elapsed_ms();
    Ok(findings.into_iter().map(|f| f.check(ms)).collect())
}
