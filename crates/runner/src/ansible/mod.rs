//! Ansible steps: `ansible-playbook` against an inventory generated from the
//! cluster, run on the host or on a controller node.
//!
//! What Ansible did is read from the `rehearse_events` callback plugin (one JSON
//! line per task result, with `--diff` output), not from its human output, which
//! goes unchanged to the step's log. The report is the same wherever Ansible
//! ran.

mod controller;
mod events;
mod host;
mod inventory;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use events::{Diff, HostRecap, TaskResult, TaskStatus, UnfinishedTask};

use crate::job;
use crate::report::{last_line, shorten, HangState, StepReport};
use crate::shell::seconds;
use crate::StepContext;

/// The callback plugin, shipped inside the runner and written next to each
/// run's inventory.
const CALLBACK_PLUGIN: &str = include_str!("../../ansible/callback/rehearse_events.py");
const CALLBACK_NAME: &str = "rehearse_events";

/// Where Ansible keeps its files on nodes (targets and controllers): under the
/// runner's tmpfs, not `/tmp` or `~/.ansible`.
const NODE_ANSIBLE_DIR: &str = "/run/rehearse/ansible";

pub(crate) struct Request<'a> {
    pub playbook: &'a Path,
    pub controller: Option<&'a str>,
    pub extra_vars: &'a [(String, String)],
}

/// What an Ansible step did.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct AnsibleReport {
    pub playbook: PathBuf,
    /// The node `ansible-playbook` ran on; `None` for the host.
    pub controller: Option<String>,
    /// `ansible-playbook`'s exit code; `None` when killed or never started.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// The end of Ansible's own output (the whole of it is in `log`).
    pub stdout: String,
    pub stderr: String,
    pub log: Option<PathBuf>,
    /// Every task result, in the order they came.
    pub tasks: Vec<TaskResult>,
    /// The play recap per host.
    pub recap: BTreeMap<String, HostRecap>,
    /// Tasks still running when the run was killed.
    pub unfinished: Vec<UnfinishedTask>,
}

/// How a run of `ansible-playbook` ended, wherever it ran.
#[derive(Default)]
struct Run {
    exit_code: Option<i32>,
    timed_out: bool,
    stdout: String,
    stderr: String,
    log: Option<PathBuf>,
    /// The events file's text.
    events: String,
    hang_state: Vec<HangState>,
    /// Why Ansible could not run at all.
    error: Option<String>,
    /// The scenario folder as the machine running Ansible sees it: task
    /// positions are shown relative to it.
    scenario_root: String,
}

pub(crate) fn run(ctx: &StepContext<'_>, req: &Request<'_>, report: &mut StepReport) {
    let run = match req.controller {
        None => host::run(ctx, req),
        Some(controller) => controller::run(ctx, req, controller),
    };
    let mut events = events::parse(&run.events);
    let relative = |path: &mut Option<String>| {
        if run.scenario_root.is_empty() {
            return;
        }
        if let Some(p) = path {
            if let Some(rest) = p.strip_prefix(&format!("{}/", run.scenario_root)) {
                *p = rest.to_string();
            }
        }
    };
    events.tasks.iter_mut().for_each(|t| relative(&mut t.path));
    events
        .unfinished
        .iter_mut()
        .for_each(|t| relative(&mut t.path));
    let ansible = AnsibleReport {
        playbook: req.playbook.to_path_buf(),
        controller: req.controller.map(str::to_string),
        exit_code: run.exit_code,
        timed_out: run.timed_out,
        stdout: run.stdout,
        stderr: run.stderr,
        log: run.log,
        tasks: events.tasks,
        recap: events.recap,
        unfinished: events.unfinished,
    };
    report.hang_state = run.hang_state;
    if let Some(error) = run
        .error
        .map(|e| format!("ansible step `{}`: {e}", ctx.step.name))
        .or_else(|| failure(ctx, &ansible))
    {
        report.fail(error);
    }
    report.ansible = Some(ansible);
}

/// One sentence for a run that did not succeed: a timeout, the task that
/// failed, or why `ansible-playbook` gave up.
fn failure(ctx: &StepContext<'_>, a: &AnsibleReport) -> Option<String> {
    let log = a
        .log
        .as_ref()
        .map(|l| format!("; Ansible's log: {}", l.display()))
        .unwrap_or_default();
    if a.timed_out {
        let running = match a.unfinished.first() {
            Some(t) => format!(
                " while task '{}'{} was running on {}",
                t.task,
                at(&t.path),
                t.host
            ),
            None => String::new(),
        };
        return Some(format!(
            "ansible step `{}` timed out after {} and was killed{running}; hang_state shows those nodes' processes, systemd jobs and journal{log}",
            ctx.step.name,
            seconds(ctx.step.timeout)
        ));
    }
    let failed_hosts = a
        .recap
        .values()
        .any(|r| r.failures > 0 || r.unreachable > 0);
    if a.exit_code == Some(0) && !failed_hosts {
        return None;
    }
    if let Some(t) = events::decisive_failure(&a.tasks) {
        let msg = task_message(t);
        return Some(if t.status == TaskStatus::Unreachable {
            format!(
                "{} was unreachable during task '{}'{}: {msg}{log}",
                t.host,
                t.task,
                at(&t.path)
            )
        } else {
            format!(
                "task '{}'{} failed on {}: {msg}{log}",
                t.task,
                at(&t.path),
                t.host
            )
        });
    }
    // No task failed: Ansible refused the playbook or its options.
    let reason = a
        .stderr
        .lines()
        .find(|l| l.starts_with("ERROR!"))
        .map(|l| shorten(l, 300))
        .or_else(|| last_line(&a.stderr))
        .or_else(|| last_line(&a.stdout))
        .unwrap_or_else(|| "no output".into());
    Some(format!(
        "ansible-playbook {} exited with code {}: {reason}{log}",
        a.playbook.display(),
        a.exit_code.map_or("?".to_string(), |c| c.to_string())
    ))
}

fn at(path: &Option<String>) -> String {
    path.as_ref().map(|p| format!(" ({p})")).unwrap_or_default()
}

/// The task's message, with the command's last stderr line when that says more.
fn task_message(t: &TaskResult) -> String {
    let msg = t.msg.as_deref().map(|m| shorten(m, 300));
    let stderr = t.stderr.as_deref().and_then(last_line);
    match (msg, stderr) {
        (Some(m), Some(e)) if !m.contains(&e) => format!("{m} ({e})"),
        (Some(m), _) => m,
        (None, Some(e)) => e,
        (None, None) => match t.rc {
            Some(rc) => format!("exit code {rc}"),
            None => "no message".into(),
        },
    }
}

/// Files a run needs next to each other: inventory, callback plugin, extra vars.
struct RunFiles {
    inventory: PathBuf,
    callback_dir: PathBuf,
    extra_vars: Option<PathBuf>,
}

/// Writes the run's files into `dir`.
fn write_run_files(
    dir: &Path,
    inventory: &str,
    extra_vars: &[(String, String)],
) -> Result<RunFiles, String> {
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|e| format!("cannot write {}: {e}", path.display()))
    };
    let callback_dir = dir.join("callback_plugins");
    std::fs::create_dir_all(&callback_dir)
        .map_err(|e| format!("cannot create {}: {e}", callback_dir.display()))?;
    write(
        &callback_dir.join(format!("{CALLBACK_NAME}.py")),
        CALLBACK_PLUGIN,
    )?;
    let inventory_path = dir.join("inventory.yml");
    write(&inventory_path, inventory)?;
    let extra_vars = if extra_vars.is_empty() {
        None
    } else {
        // A file rather than `-e k=v`: values with spaces or `=` stay whole.
        let vars: serde_json::Map<String, serde_json::Value> = extra_vars
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let path = dir.join("extra_vars.json");
        write(&path, &serde_json::Value::Object(vars).to_string())?;
        Some(path)
    };
    Ok(RunFiles {
        inventory: inventory_path,
        callback_dir,
        extra_vars,
    })
}

/// `ansible-playbook`'s arguments. Paths are as the machine running it sees them.
fn playbook_args(
    ctx: &StepContext<'_>,
    inventory: &str,
    extra_vars: Option<&str>,
    playbook: &str,
) -> Vec<String> {
    let mut args = vec![
        "-i".to_string(),
        inventory.to_string(),
        "--diff".to_string(),
        "--forks".to_string(),
        ctx.targets.len().max(5).to_string(),
    ];
    if let Some(limit) = limit(ctx) {
        args.push("--limit".into());
        args.push(limit);
    }
    if let Some(vars) = extra_vars {
        args.push("-e".into());
        args.push(format!("@{vars}"));
    }
    args.push(playbook.to_string());
    args
}

/// `--limit` when the step targets fewer than all nodes.
fn limit(ctx: &StepContext<'_>) -> Option<String> {
    let all = ctx.run.cluster.nodes.len();
    let mut targets: Vec<&str> = ctx.targets.iter().map(String::as_str).collect();
    targets.sort_unstable();
    targets.dedup();
    (targets.len() < all).then(|| targets.join(","))
}

/// Where things are on the machine running Ansible.
struct EnvPaths<'a> {
    callback_dir: &'a str,
    events: &'a str,
    local_temp: &'a str,
    control_path_dir: &'a str,
    /// `ANSIBLE_HOME`, on controllers only: keeps `~/.ansible` out of root's home.
    home: Option<&'a str>,
}

/// The environment of an `ansible-playbook` run, plus the step's own variables.
fn ansible_env(ctx: &StepContext<'_>, p: &EnvPaths<'_>) -> Vec<(String, String)> {
    // Callbacks a user enabled in their environment stay enabled.
    let callbacks = match std::env::var("ANSIBLE_CALLBACKS_ENABLED") {
        Ok(existing) if !existing.trim().is_empty() && p.home.is_none() => {
            format!("{existing},{CALLBACK_NAME}")
        }
        _ => CALLBACK_NAME.to_string(),
    };
    let mut env: Vec<(String, String)> = [
        ("ANSIBLE_CALLBACKS_ENABLED", callbacks.as_str()),
        ("ANSIBLE_CALLBACK_PLUGINS", p.callback_dir),
        ("REHEARSE_EVENTS", p.events),
        ("ANSIBLE_NOCOLOR", "1"),
        ("ANSIBLE_RETRY_FILES_ENABLED", "False"),
        ("ANSIBLE_HOST_KEY_CHECKING", "True"),
        ("ANSIBLE_PIPELINING", "True"),
        (
            "ANSIBLE_SSH_ARGS",
            "-o ControlMaster=auto -o ControlPersist=30s",
        ),
        ("ANSIBLE_SSH_CONTROL_PATH_DIR", p.control_path_dir),
        ("ANSIBLE_LOCAL_TEMP", p.local_temp),
        ("ANSIBLE_REMOTE_TEMP", NODE_ANSIBLE_DIR),
        ("PYTHONUNBUFFERED", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Some(home) = p.home {
        env.push(("ANSIBLE_HOME".into(), home.into()));
    }
    env.extend(ctx.step.env.iter().cloned());
    env
}

/// Captures what the nodes a timed-out run hung on are doing: those with a task
/// still running (every target when none is known), and the controller.
fn capture_hangs(
    ctx: &StepContext<'_>,
    events_so_far: &str,
    controller: Option<&str>,
) -> Vec<HangState> {
    let mut hung: Vec<String> = Vec::new();
    for task in events::parse(events_so_far).unfinished {
        if ctx.run.cluster.node(&task.host).is_ok() && !hung.contains(&task.host) {
            hung.push(task.host);
        }
    }
    if hung.is_empty() {
        hung = ctx.targets.to_vec();
    }
    if let Some(c) = controller {
        if !hung.iter().any(|h| h == c) {
            hung.push(c.to_string());
        }
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = hung
            .iter()
            .map(|node| s.spawn(move || job::capture_hang_state(ctx.nodes, node)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("hang capture thread panicked"))
            .collect()
    })
}

/// Ends what a killed run left running on `hung` nodes: Ansible modules keep
/// running when the controller goes away (sshd gives pipe-only sessions no
/// hangup). Each module runs in an sshd session of its own, led by the shell
/// of the pipelined command, so the whole session is killed; a killed module
/// also leaves its unpacked payload in the node's temporary folder.
fn stop_remote_modules(ctx: &StepContext<'_>, hung: &[HangState]) {
    const STOP: &str = r#"for p in $(pgrep -f '^/bin/sh -c .*/usr/bin/python3 && sleep 0$'); do kill -KILL "-$p" 2>/dev/null; done
sleep 0.2
rm -rf /tmp/ansible_*_payload_*
exit 0"#;
    std::thread::scope(|s| {
        for h in hung {
            s.spawn(move || {
                if let Err(e) = crate::nodes::sh(
                    ctx.nodes,
                    &h.node,
                    STOP,
                    &[],
                    None,
                    job::HELPER_TIMEOUT,
                ) {
                    tracing::warn!(node = %h.node, error = %e, "stopping Ansible modules after a timeout");
                }
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(status: TaskStatus) -> TaskResult {
        TaskResult {
            host: "node2".into(),
            task: "install nginx".into(),
            status,
            path: Some("/run/rehearse/x/scenario/site.yml:12".into()),
            msg: Some("non-zero return code".into()),
            stderr: Some("E: Unable to locate package ngnix\n".into()),
            rc: Some(100),
            ..Default::default()
        }
    }

    #[test]
    fn task_messages_add_the_commands_last_stderr_line() {
        assert_eq!(
            task_message(&result(TaskStatus::Failed)),
            "non-zero return code (E: Unable to locate package ngnix)"
        );
        let bare = TaskResult {
            rc: Some(3),
            ..Default::default()
        };
        assert_eq!(task_message(&bare), "exit code 3");
    }

    #[test]
    fn the_plugin_is_an_aggregate_callback_named_as_enabled() {
        assert!(CALLBACK_PLUGIN.contains(&format!("CALLBACK_NAME = \"{CALLBACK_NAME}\"")));
        assert!(CALLBACK_PLUGIN.contains("CALLBACK_TYPE = \"aggregate\""));
        assert!(CALLBACK_PLUGIN.contains("REHEARSE_EVENTS"));
    }
}
