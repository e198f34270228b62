//! The JSON lines written by the `rehearse_events` callback plugin, read back
//! into task results, a per-host recap and the tasks still running.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

/// How one task ended on one host.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "lowercase")]
pub enum TaskStatus {
    #[default]
    Ok,
    Changed,
    Failed,
    Skipped,
    Unreachable,
}

/// One task's result on one host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct TaskResult {
    pub play: Option<String>,
    /// The task's name as Ansible shows it (the action when unnamed).
    pub task: String,
    pub role: Option<String>,
    /// The module or action, e.g. `ansible.builtin.template`.
    pub action: String,
    pub host: String,
    pub status: TaskStatus,
    pub msg: Option<String>,
    /// Where the task is written: `site.yml:12`.
    pub path: Option<String>,
    #[serde(deserialize_with = "null_as_default")]
    pub handler: bool,
    /// A failure the play said to ignore (`ignore_errors`, `ignore_unreachable`).
    #[serde(deserialize_with = "null_as_default")]
    pub ignored: bool,
    /// For failures: the command's exit code and output, when it has them.
    pub rc: Option<i64>,
    pub stdout: Option<String>,
    pub stderr: Option<String>,
    /// What `--diff` showed, one entry per file or item.
    #[serde(deserialize_with = "null_as_default")]
    pub diff: Vec<Diff>,
    /// The same diff rendered as Ansible prints it.
    pub diff_text: Option<String>,
    pub duration_ms: Option<u64>,
}

/// `null` read as the type's default: the plugin writes what Ansible hands it,
/// and one odd field must not lose a whole result.
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// One before/after pair of a changed task.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct Diff {
    pub before_header: Option<String>,
    pub after_header: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
    /// A diff the module prepared itself (e.g. apt's package list).
    pub prepared: Option<String>,
}

/// Ansible's play recap for one host.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(default)]
pub struct HostRecap {
    pub ok: u32,
    pub changed: u32,
    pub unreachable: u32,
    pub failures: u32,
    pub skipped: u32,
    pub rescued: u32,
    pub ignored: u32,
}

/// A task that had started on a host and not ended when the run stopped.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct UnfinishedTask {
    pub host: String,
    pub task: String,
    pub path: Option<String>,
}

/// Everything read from an events file.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Events {
    pub tasks: Vec<TaskResult>,
    pub recap: BTreeMap<String, HostRecap>,
    pub unfinished: Vec<UnfinishedTask>,
    pub no_hosts_matched: Vec<String>,
}

#[derive(Deserialize)]
struct TaskStart {
    host: String,
    task: String,
    path: Option<String>,
    uuid: String,
}

#[derive(Deserialize)]
struct Key {
    host: String,
    uuid: String,
}

/// Parses the events; lines that are not events (a line cut short by a kill)
/// are skipped.
pub(crate) fn parse(text: &str) -> Events {
    let mut events = Events::default();
    let mut started: Vec<TaskStart> = Vec::new();
    let mut ended: HashSet<(String, String)> = HashSet::new();
    for line in text.lines() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match value.get("event").and_then(|e| e.as_str()) {
            Some("task_start") => {
                if let Ok(start) = serde_json::from_value(value) {
                    started.push(start);
                }
            }
            Some("task_result") => {
                if let Ok(key) = serde_json::from_value::<Key>(value.clone()) {
                    ended.insert((key.host, key.uuid));
                }
                match serde_json::from_value(value) {
                    Ok(result) => events.tasks.push(result),
                    Err(e) => {
                        tracing::warn!(error = %e, "unreadable task result from the rehearse_events callback")
                    }
                }
            }
            Some("recap") => {
                if let Some(hosts) = value.get("hosts") {
                    events.recap = serde_json::from_value(hosts.clone()).unwrap_or_default();
                }
            }
            Some("no_hosts_matched") => events.no_hosts_matched.push(
                value
                    .get("play")
                    .and_then(|p| p.as_str())
                    .unwrap_or_default()
                    .to_string(),
            ),
            _ => {}
        }
    }
    events.unfinished = started
        .into_iter()
        .filter(|s| !ended.contains(&(s.host.clone(), s.uuid.clone())))
        .map(|s| UnfinishedTask {
            host: s.host,
            task: s.task,
            path: s.path,
        })
        .collect();
    events
}

/// The failure that stopped the run: for each host its last failed or
/// unreachable result (earlier ones may have been rescued), the earliest of
/// those. Failures the play ignores do not count.
pub(crate) fn decisive_failure(tasks: &[TaskResult]) -> Option<&TaskResult> {
    let mut last_per_host: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, t) in tasks.iter().enumerate() {
        if matches!(t.status, TaskStatus::Failed | TaskStatus::Unreachable) && !t.ignored {
            last_per_host.insert(&t.host, i);
        }
    }
    last_per_host.values().min().map(|&i| &tasks[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: &str = r#"{"event": "play_start", "play": "web"}
{"event": "task_start", "host": "node1", "task": "Gathering Facts", "uuid": "u1", "path": "site.yml:2"}
{"event": "task_result", "host": "node1", "task": "Gathering Facts", "uuid": "u1", "status": "ok", "action": "ansible.builtin.gather_facts", "play": "web"}
{"event": "task_start", "host": "node1", "task": "config", "uuid": "u2", "path": "site.yml:5"}
{"event": "task_result", "host": "node1", "task": "config", "uuid": "u2", "status": "changed", "action": "ansible.builtin.copy", "diff": [{"before": "a\n", "after": "b\n", "after_header": "/etc/x"}], "extra": 1}
{"event": "task_result", "host": "node2", "task": "break", "uuid": "u4", "status": "failed", "ignored": null, "handler": null, "diff": null, "msg": "non-zero return code", "rc": 2, "duration_ms": null}
{"event": "task_start", "host": "node1", "task": "hang", "uuid": "u3", "path": "site.yml:9"}
{"event": "task_res"#;

    #[test]
    fn results_diffs_and_unfinished_tasks_are_read() {
        let events = parse(RUN);
        assert_eq!(events.tasks.len(), 3);
        let broken = &events.tasks[2];
        assert_eq!(broken.status, TaskStatus::Failed);
        assert!(!broken.ignored);
        assert_eq!(broken.rc, Some(2));
        let config = &events.tasks[1];
        assert_eq!(config.status, TaskStatus::Changed);
        assert_eq!(config.action, "ansible.builtin.copy");
        assert_eq!(config.diff[0].after.as_deref(), Some("b\n"));
        assert_eq!(config.diff[0].after_header.as_deref(), Some("/etc/x"));
        assert_eq!(
            events.unfinished,
            vec![UnfinishedTask {
                host: "node1".into(),
                task: "hang".into(),
                path: Some("site.yml:9".into())
            }]
        );
    }

    #[test]
    fn the_recap_is_read_per_host() {
        let events = parse(
            r#"{"event": "recap", "hosts": {"node1": {"ok": 3, "changed": 1, "failures": 0, "unreachable": 0, "skipped": 0, "rescued": 0, "ignored": 0}}}"#,
        );
        assert_eq!(events.recap["node1"].ok, 3);
        assert_eq!(events.recap["node1"].changed, 1);
    }

    fn result(host: &str, task: &str, status: TaskStatus, ignored: bool) -> TaskResult {
        TaskResult {
            host: host.into(),
            task: task.into(),
            status,
            ignored,
            ..Default::default()
        }
    }

    #[test]
    fn the_decisive_failure_skips_ignored_and_rescued_ones() {
        let tasks = vec![
            result("node1", "ignored", TaskStatus::Failed, true),
            result("node2", "rescued", TaskStatus::Failed, false),
            result("node2", "fatal", TaskStatus::Failed, false),
            result("node1", "later", TaskStatus::Unreachable, false),
        ];
        assert_eq!(decisive_failure(&tasks).unwrap().task, "fatal");
        assert!(decisive_failure(&tasks[..1]).is_none());
    }
}
