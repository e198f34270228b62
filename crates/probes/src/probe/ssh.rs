//! Whether sshd on a node offers password logins, to anyone or to one of
//! the node's accounts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use rehearse_checks::CheckResult;
use rehearse_sandbox::{ExecRequest, SandboxError};

use super::Probe;
use crate::Finding;

pub(super) fn probe(
    p: &Probe<'_>,
    target: &str,
    from: &str,
) -> Result<Vec<CheckResult>, SandboxError> {
    // sshd may allow passwords to some users only (`Match User`):
    // ask as each account of the target that can log in, too.
    let users = login_users(p, target)?;
    let out = p.agent(
        from,
        json!({"probe": "ssh", "host": target, "users": users}),
        Duration::from_secs(30 + 6 * users.len() as u64),
    )?;
    let methods: Vec<String> = serde_json::from_value(out["methods"].clone()).unwrap_or_default();
    let by_user: BTreeMap<String, Vec<String>> =
        serde_json::from_value(out["by_user"].clone()).unwrap_or_default();
    let weak_method = |m: &String| m == "password" || m == "keyboard-interactive";
    let weak: Vec<&String> = methods.iter().filter(|m| weak_method(m)).collect();
    let weak_users: Vec<String> = by_user
        .iter()
        .filter(|(u, m)| *u != "rehearse-probe" && m.iter().any(weak_method))
        .map(|(u, _)| u.clone())
        .collect();
    let message = if methods.is_empty() {
        format!("sshd on {target} did not list its methods: {}", out["raw"])
    } else if weak_users.is_empty() {
        format!("sshd on {target} offers {weak:?} login")
    } else {
        format!(
            "sshd on {target} offers {weak:?} login (to {})",
            weak_users.join(", ")
        )
    };
    Ok(vec![Finding {
        name: format!("ssh on {target} refuses passwords"),
        node: from,
        kind: "probe:ssh_password",
        subject: target.to_string(),
        passed: !methods.is_empty() && weak.is_empty(),
        expected: json!({ "methods_without": ["password", "keyboard-interactive"] }),
        actual: json!({ "methods": methods, "by_user": by_user, "answer": out["raw"] }),
        message,
    }
    .check(p.elapsed_ms())])
}

/// Accounts of a node that can log in: root and users (UID 1000 and up)
/// whose shell is not nologin/false; at most 20.
fn login_users(p: &Probe<'_>, node: &str) -> Result<Vec<String>, SandboxError> {
    let req = ExecRequest {
        argv: vec!["getent".into(), "passwd".into()],
        timeout: Some(Duration::from_secs(10)),
        ..Default::default()
    };
    let (_, out, _) = p.engine.exec_capture(p.cluster, node, &req)?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            let uid: u32 = f.get(2)?.parse().ok()?;
            let shell = f.get(6)?;
            let can_log_in = !shell.ends_with("nologin") && !shell.ends_with("false");
            (can_log_in && (uid == 0 || (1000..65534).contains(&uid))).then(|| f[0].to_string())
        })
        .take(20)
        .collect())
}
