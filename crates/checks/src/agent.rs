//! The check agent: a Python script run on a node with that node's checks, and
//! the JSON it reads and writes. See the script's docstring for the protocol.

use std::time::Duration;

use rehearse_spec::scenario::{Check, CheckKind, DEFAULT_CHECK_INTERVAL};
use serde::{Deserialize, Serialize};

use crate::result::Status;

/// The agent's source, run as `python3 -I -c <AGENT>`.
pub const AGENT: &str = include_str!("../agent/rehearse_check.py");

/// Version of the request and report format; the agent refuses any other.
const PROTOCOL: u32 = 1;

/// Longest an HTTP request may take, connect to last byte.
pub const HTTP_ATTEMPT: Duration = Duration::from_secs(5);
/// Longest a TCP connection attempt may take, name lookup included (each
/// address resolved gets at most 2 s to connect).
pub const ADDR_ATTEMPT: Duration = Duration::from_secs(4);
/// Longest a name lookup may take.
pub const DNS_ATTEMPT: Duration = Duration::from_secs(5);
/// Longest a `command` check's command may run when the check has no timeout.
pub const COMMAND_ATTEMPT: Duration = Duration::from_secs(30);
/// Longest any other attempt (dpkg-query, systemctl, ip, reading /proc) may take.
pub const LOCAL_ATTEMPT: Duration = Duration::from_secs(5);
/// Longest a `skip_unless` precondition may run.
pub const PRECONDITION_TIMEOUT: Duration = Duration::from_secs(10);
/// Time the agent gives an attempt beyond its own timeout before it abandons it
/// (a name lookup that ignores every timeout, a read from a hung filesystem).
const ATTEMPT_GRACE: Duration = Duration::from_secs(2);
/// Margin between the agent's own deadline and the exec timeout that kills it:
/// Python's start-up, entering the node, writing the report.
const EXEC_MARGIN: Duration = Duration::from_secs(5);
/// Longest an agent run may last, whatever the checks' timeouts say (an
/// `Instant` cannot be pushed arbitrarily far).
const LONGEST_RUN: Duration = Duration::from_secs(24 * 60 * 60);

/// How long one attempt of a check may take.
pub fn attempt_timeout(check: &Check) -> Duration {
    match &check.kind {
        CheckKind::Http { .. } => HTTP_ATTEMPT,
        CheckKind::Addr { .. } => ADDR_ATTEMPT,
        CheckKind::Dns { .. } => DNS_ATTEMPT,
        CheckKind::Command { .. } if check.timeout.is_zero() => COMMAND_ATTEMPT,
        CheckKind::Command { .. } => check.timeout,
        _ => LOCAL_ATTEMPT,
    }
}

/// The longest a check can keep the agent busy: its precondition, retries until
/// its timeout, and one last attempt started just before the timeout.
fn worst_case(check: &Check) -> Duration {
    let precondition = if check.skip_unless.is_some() {
        PRECONDITION_TIMEOUT
    } else {
        Duration::ZERO
    };
    [
        check.timeout,
        DEFAULT_CHECK_INTERVAL,
        attempt_timeout(check),
        ATTEMPT_GRACE,
    ]
    .into_iter()
    .fold(precondition, Duration::saturating_add)
}

/// When the agent stops waiting and reports, counted from its start.
pub fn agent_deadline(checks: &[&Check]) -> Duration {
    checks
        .iter()
        .map(|c| worst_case(c))
        .max()
        .unwrap_or_default()
        .saturating_add(Duration::from_secs(1))
        .min(LONGEST_RUN)
}

/// The exec timeout for one agent run: past it, the agent is killed.
pub fn exec_timeout(checks: &[&Check]) -> Duration {
    agent_deadline(checks) + EXEC_MARGIN
}

#[derive(Serialize)]
struct Request<'a> {
    protocol: u32,
    interval_ms: u64,
    deadline_ms: u64,
    attempt_grace_ms: u64,
    checks: Vec<WireCheck<'a>>,
}

#[derive(Serialize)]
struct WireCheck<'a> {
    /// Index in the node's list; results are matched back by it.
    id: usize,
    timeout_ms: u64,
    attempt_timeout_ms: u64,
    skip_unless: Option<&'a str>,
    skip_timeout_ms: u64,
    kind: &'a CheckKind,
}

/// The agent's stdin for a node's checks.
pub fn request(checks: &[&Check]) -> Vec<u8> {
    let request = Request {
        protocol: PROTOCOL,
        interval_ms: millis(DEFAULT_CHECK_INTERVAL),
        deadline_ms: millis(agent_deadline(checks)),
        attempt_grace_ms: millis(ATTEMPT_GRACE),
        checks: checks
            .iter()
            .enumerate()
            .map(|(id, c)| WireCheck {
                id,
                timeout_ms: millis(c.timeout),
                attempt_timeout_ms: millis(attempt_timeout(c)),
                skip_unless: c.skip_unless.as_deref(),
                skip_timeout_ms: millis(PRECONDITION_TIMEOUT),
                kind: &c.kind,
            })
            .collect(),
    };
    serde_json::to_vec(&request).expect("a check request is plain data")
}

fn millis(d: Duration) -> u64 {
    d.as_millis().try_into().unwrap_or(u64::MAX)
}

/// What the agent says about itself.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct AgentInfo {
    /// The agent's process id on the node.
    pub pid: u32,
    /// The node's Python version.
    pub python: String,
    /// How many checks this one process evaluated.
    pub checks: usize,
}

/// The agent's stdout.
#[derive(Deserialize)]
pub struct Report {
    pub agent: AgentInfo,
    pub results: Vec<WireResult>,
}

#[derive(Deserialize)]
pub struct WireResult {
    pub id: usize,
    pub status: Status,
    pub expected: serde_json::Value,
    pub actual: serde_json::Value,
    pub message: String,
    pub attempts: u32,
    pub duration_ms: u64,
}

/// Reads the agent's stdout.
pub fn parse_report(stdout: &[u8]) -> Result<Report, serde_json::Error> {
    serde_json::from_slice(stdout)
}

/// The properties a check states, from its definition alone: what a result
/// shows as expected when the agent could not say (it crashed, or never ran).
pub fn stated_properties(kind: &CheckKind) -> serde_json::Value {
    let mut value = serde_json::to_value(kind).expect("a check is plain data");
    if let Some(map) = value.as_object_mut() {
        map.remove("kind");
        map.retain(|_, v| match v {
            serde_json::Value::Null => false,
            serde_json::Value::Array(a) => !a.is_empty(),
            serde_json::Value::Object(o) => !o.is_empty(),
            _ => true,
        });
    }
    value
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn check(timeout: Duration, skip_unless: Option<&str>, kind: CheckKind) -> Check {
        Check {
            name: "c".into(),
            on: vec![],
            timeout,
            skip_unless: skip_unless.map(Into::into),
            kind,
        }
    }

    fn command(cmd: &str) -> CheckKind {
        CheckKind::Command {
            command: cmd.into(),
            exit_status: 0,
            stdout: vec![],
            stderr: vec![],
        }
    }

    fn http() -> CheckKind {
        CheckKind::Http {
            url: "http://lb/".into(),
            method: "GET".into(),
            status: 200,
            body: vec!["/web[12]/".into()],
            headers: BTreeMap::new(),
            insecure: false,
        }
    }

    #[test]
    fn commands_get_their_check_timeout_per_attempt_or_thirty_seconds() {
        let quick = check(Duration::from_secs(3), None, command("true"));
        let once = check(Duration::ZERO, None, command("true"));
        assert_eq!(attempt_timeout(&quick), Duration::from_secs(3));
        assert_eq!(attempt_timeout(&once), COMMAND_ATTEMPT);
    }

    #[test]
    fn the_exec_outlives_the_slowest_check_and_the_agent_deadline() {
        let slow = check(Duration::from_secs(60), Some("test -e /x"), http());
        let fast = check(Duration::ZERO, None, command("true"));
        let deadline = agent_deadline(&[&fast, &slow]);
        assert!(deadline >= Duration::from_secs(60) + PRECONDITION_TIMEOUT + HTTP_ATTEMPT);
        assert!(exec_timeout(&[&fast, &slow]) > deadline);
        assert!(agent_deadline(&[&fast]) >= COMMAND_ATTEMPT);
    }

    #[test]
    fn endless_timeouts_do_not_overflow() {
        let forever = check(Duration::MAX, Some("true"), command("true"));
        assert_eq!(exec_timeout(&[&forever]), LONGEST_RUN + EXEC_MARGIN);
    }

    #[test]
    fn request_carries_ids_policy_and_the_kind() {
        let c = check(Duration::from_millis(1500), Some("true"), http());
        let request: serde_json::Value = serde_json::from_slice(&request(&[&c, &c])).unwrap();
        assert_eq!(request["protocol"], 1);
        assert_eq!(request["interval_ms"], 250);
        let wire = &request["checks"][1];
        assert_eq!(wire["id"], 1);
        assert_eq!(wire["timeout_ms"], 1500);
        assert_eq!(wire["attempt_timeout_ms"], 5000);
        assert_eq!(wire["skip_unless"], "true");
        assert_eq!(wire["kind"]["kind"], "http");
        assert_eq!(wire["kind"]["url"], "http://lb/");
    }

    #[test]
    fn stated_properties_leave_out_what_was_not_stated() {
        assert_eq!(
            stated_properties(&http()),
            json!({"url": "http://lb/", "method": "GET", "status": 200,
                   "body": ["/web[12]/"], "insecure": false})
        );
    }

    /// Runs the agent on this machine, as a node would.
    fn run_on_host(request: &serde_json::Value, env: &[(&str, &str)]) -> serde_json::Value {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let mut child = Command::new("python3")
            .args(["-I", "-c", AGENT])
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 on this machine");
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(request.to_string().as_bytes()).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        serde_json::from_slice(&out.stdout).expect("a report")
    }

    fn wire(
        id: usize,
        timeout_ms: u64,
        attempt_timeout_ms: u64,
        kind: serde_json::Value,
    ) -> serde_json::Value {
        json!({"id": id, "timeout_ms": timeout_ms, "attempt_timeout_ms": attempt_timeout_ms,
               "skip_unless": null, "skip_timeout_ms": 1000, "kind": kind})
    }

    #[test]
    fn http_checks_ignore_proxy_variables() {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                line.clear();
            }
            let mut stream = stream;
            stream
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
                .unwrap();
        });
        let dead_proxy = "http://127.0.0.1:9";
        let request = json!({"protocol": 1, "interval_ms": 250, "deadline_ms": 10_000,
            "attempt_grace_ms": 1000, "checks": [wire(0, 0, 5000, json!({
                "kind": "http", "url": format!("http://127.0.0.1:{port}/"), "method": "GET",
                "status": 200, "body": ["hello"], "headers": {}, "insecure": false}))]});
        let report = run_on_host(
            &request,
            &[
                ("http_proxy", dead_proxy),
                ("HTTP_PROXY", dead_proxy),
                ("all_proxy", dead_proxy),
            ],
        );
        let result = &report["results"][0];
        assert_eq!(result["status"], "passed", "{result}");
        assert_eq!(result["actual"], json!({"status": 200, "body": "hello"}));
    }

    #[test]
    fn the_agent_reports_by_its_deadline_whatever_a_check_does() {
        let request = json!({"protocol": 1, "interval_ms": 250, "deadline_ms": 300,
        "attempt_grace_ms": 1000, "checks": [
            wire(0, 0, 30_000, json!({"kind": "command", "command": "sleep 2",
                "exit_status": 0, "stdout": [], "stderr": []})),
            wire(1, 0, 30_000, json!({"kind": "command", "command": "true",
                "exit_status": 0, "stdout": [], "stderr": []})),
        ]});
        let report = run_on_host(&request, &[]);
        assert_eq!(report["agent"]["checks"], 2);
        let late = &report["results"][0];
        assert_eq!(late["status"], "failed");
        assert_eq!(
            late["message"],
            "did not finish within the agent's deadline of 0.3 s"
        );
        assert_eq!(report["results"][1]["status"], "passed");
    }

    #[test]
    fn the_agent_fits_in_one_argument() {
        // Linux refuses a single argv string over MAX_ARG_STRLEN (128 KiB).
        assert!(AGENT.contains("def main()"));
        assert!(AGENT.len() < 128 * 1024);
    }
}
