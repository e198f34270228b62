//! A step's own work on a node, with a timeout that captures the node's state
//! before killing.
//!
//! The command runs in a session of its own inside the node, whose id goes to a
//! pid file in `/run/rehearse`: when the timeout passes, the caller captures
//! what the node is doing (processes, systemd jobs, journal) while the command
//! still hangs, then the whole session is killed from inside the node. The
//! engine's own timeout, a little later, is only a backstop.

use std::io::{Cursor, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use rehearse_sandbox::{ExecIo, ExecRequest, SandboxError};

use crate::capture::cap_text;
use crate::nodes::{self, ClusterNodes};
use crate::report::HangState;
use crate::workdir::NODE_RUN_DIR;

/// How long after the step's timeout the engine kills the command itself, in
/// case the kill from inside the node did not work.
const BACKSTOP: Duration = Duration::from_secs(30);

/// Time allowed to each command the runner issues around a step (prepare,
/// kill, capture, list changes, clean up).
pub(crate) const HELPER_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `"$@"` in a new session whose id is written to the pid file `$1`, and
/// removes the pid file once it ends, passing its exit code on.
const WRAPPER: &str = r#"mkdir -p /run/rehearse
p=$1; shift
setsid -w /bin/sh -c 'echo $$ > "$0" && exec "$@"' "$p" "$@"
rc=$?
rm -f -- "$p"
exit $rc"#;

/// Kills the session named in the pid file `$1`, waiting briefly for the file
/// when the command has only just started.
const KILLER: &str = r#"i=0
while [ ! -s "$1" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
p=$(cat "$1" 2>/dev/null) || exit 0
[ -n "$p" ] || exit 0
# dash's kill takes no `--`; a negative pid after the signal names the group.
kill -KILL "-$p" 2>/dev/null && exit 0
# A group already gone is fine; one still there is not.
if kill -0 "-$p" 2>/dev/null; then echo "cannot kill process group $p" >&2; exit 1; fi
exit 0"#;

/// A command to run as a step on one node.
pub(crate) struct Job<'a> {
    pub node: &'a str,
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub stdin: Option<Vec<u8>>,
    pub workdir: Option<String>,
    pub timeout: Duration,
    /// Names the job's pid file in `/run/rehearse`; unique per step and node.
    pub token: String,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JobEnd {
    /// `None` when the job was killed by its timeout or could not start.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub duration_ms: u64,
    /// Why the job could not run at all (node not running, ...), as a sentence.
    pub error: Option<String>,
}

/// Runs `job`, streaming its output. When the timeout passes, `before_kill`
/// runs first (to capture the node's state), then the job is killed.
pub(crate) fn run(
    nodes: &ClusterNodes<'_>,
    job: &Job<'_>,
    stdout: &mut (dyn Write + Send),
    stderr: &mut (dyn Write + Send),
    before_kill: &mut dyn FnMut(),
) -> JobEnd {
    let pidfile = format!("{NODE_RUN_DIR}/{}.pid", job.token);
    let mut argv = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        WRAPPER.to_string(),
        "rehearse-step".to_string(),
        pidfile.clone(),
    ];
    argv.extend(job.argv.iter().cloned());
    let req = ExecRequest {
        argv,
        env: job.env.clone(),
        timeout: Some(job.timeout + BACKSTOP),
        workdir: job.workdir.clone(),
    };
    let started = Instant::now();
    let (tx, rx) = mpsc::channel::<Result<i32, SandboxError>>();
    let (result, killed) = std::thread::scope(|s| {
        let req = &req;
        s.spawn(move || {
            let io = ExecIo {
                stdin: job
                    .stdin
                    .clone()
                    .map(|b| Box::new(Cursor::new(b)) as Box<_>),
                stdout,
                stderr,
            };
            let _ = tx.send(nodes.exec(job.node, req, io).map(|o| o.exit_code));
        });
        match rx.recv_timeout(job.timeout) {
            Ok(result) => (Some(result), false),
            Err(RecvTimeoutError::Timeout) => {
                before_kill();
                kill(nodes, job.node, &pidfile);
                (rx.recv().ok(), true)
            }
            Err(RecvTimeoutError::Disconnected) => (None, false),
        }
    });
    let duration_ms = started.elapsed().as_millis() as u64;
    match result {
        _ if killed => JobEnd {
            exit_code: None,
            timed_out: true,
            duration_ms,
            error: None,
        },
        Some(Ok(code)) => JobEnd {
            exit_code: Some(code),
            timed_out: false,
            duration_ms,
            error: None,
        },
        Some(Err(SandboxError::Timeout { .. })) => JobEnd {
            exit_code: None,
            timed_out: true,
            duration_ms,
            error: None,
        },
        Some(Err(e)) => JobEnd {
            exit_code: None,
            timed_out: false,
            duration_ms,
            error: Some(e.to_string()),
        },
        None => JobEnd {
            exit_code: None,
            timed_out: false,
            duration_ms,
            error: Some("the command's runner thread ended without a result".into()),
        },
    }
}

fn kill(nodes: &ClusterNodes<'_>, node: &str, pidfile: &str) {
    match nodes::sh(nodes, node, KILLER, &[pidfile], None, HELPER_TIMEOUT) {
        Ok(c) if c.success() => {}
        Ok(c) => tracing::warn!(node, error = %nodes::last_line(&c), "killing a timed-out step"),
        Err(e) => tracing::warn!(node, error = %e, "killing a timed-out step"),
    }
}

/// Longest text kept per section of a hang capture.
const HANG_CAP: usize = 64 * 1024;

/// What `node` is doing right now: processes, queued systemd jobs and the end of
/// its journal. Each part is best effort; a part that fails says why.
pub(crate) fn capture_hang_state(nodes: &ClusterNodes<'_>, node: &str) -> HangState {
    let part =
        |script: &str| match nodes::sh(nodes, node, script, &[], None, Duration::from_secs(15)) {
            Ok(c) => cap_text(&format!("{}{}", c.stdout, c.stderr), HANG_CAP),
            Err(e) => format!("(not captured: {e})"),
        };
    HangState {
        node: node.to_string(),
        processes: part("ps -ef --forest"),
        jobs: part("systemctl list-jobs --no-pager --full"),
        journal: part("journalctl --no-pager -n 80 -o short-precise"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nodes::tests::FakeNodes;

    fn job(timeout: Duration) -> Job<'static> {
        Job {
            node: "node1",
            argv: vec!["/bin/sh".into(), "-e".into(), "-s".into()],
            env: vec![],
            stdin: Some(b"sleep 600".to_vec()),
            workdir: None,
            timeout,
            token: "t1".into(),
        }
    }

    #[test]
    fn a_job_that_ends_keeps_its_exit_code() {
        let fake = FakeNodes::default().with_step_exit(3);
        let end = run(
            &ClusterNodes::new(&fake, "c0ffee"),
            &job(Duration::from_secs(5)),
            &mut Vec::new(),
            &mut Vec::new(),
            &mut || panic!("no timeout expected"),
        );
        assert_eq!(end.exit_code, Some(3));
        assert!(!end.timed_out);
        assert_eq!(end.error, None);
    }

    #[test]
    fn a_hanging_job_is_captured_before_it_is_killed() {
        let fake = FakeNodes::default().hanging();
        let mut captured_while_running = None;
        let end = run(
            &ClusterNodes::new(&fake, "c0ffee"),
            &job(Duration::from_millis(50)),
            &mut Vec::new(),
            &mut Vec::new(),
            &mut || captured_while_running = Some(!fake.was_killed()),
        );
        assert!(end.timed_out);
        assert_eq!(end.exit_code, None);
        assert_eq!(captured_while_running, Some(true));
        assert!(fake.was_killed(), "the job was not killed");
        let calls = fake.calls();
        let kill = calls.iter().find(|c| c.contains("kill -KILL")).unwrap();
        assert!(
            kill.contains("/run/rehearse/t1.pid"),
            "kill used another pid file: {kill}"
        );
    }

    #[test]
    fn a_node_that_cannot_run_the_job_is_an_error_not_a_timeout() {
        let fake = FakeNodes::default().down();
        let end = run(
            &ClusterNodes::new(&fake, "c0ffee"),
            &job(Duration::from_secs(5)),
            &mut Vec::new(),
            &mut Vec::new(),
            &mut || panic!("no timeout expected"),
        );
        assert!(!end.timed_out);
        assert!(
            end.error.as_deref().unwrap_or("").contains("not running"),
            "{end:?}"
        );
    }
}
