//! What a step did, per node or per task: the data a scenario report is made of.

use std::path::PathBuf;
use std::time::Instant;

use rehearse_spec::scenario::{Step, StepAction};
use serde::{Deserialize, Serialize};

use crate::ansible::{AnsibleReport, TaskStatus};
use crate::Pass;

/// The outcome of one step run.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct StepReport {
    pub name: String,
    /// `shell`, `ansible` or `copy`.
    pub kind: String,
    pub pass: Pass,
    pub ok: bool,
    pub duration_ms: u64,
    /// Per target node, for shell and copy steps (Ansible's own output is in
    /// [`AnsibleReport`]).
    pub nodes: Vec<NodeOutput>,
    pub ansible: Option<AnsibleReport>,
    /// When `!ok`: one sentence saying which node, what failed and where to look.
    pub error: Option<String>,
    /// When the step timed out: what each node it hung on was doing just before
    /// it was killed.
    pub hang_state: Vec<HangState>,
    /// The host folder with the step's full logs and generated files.
    pub log_dir: Option<PathBuf>,
}

/// What a shell or copy step did on one node.
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
pub struct NodeOutput {
    pub node: String,
    /// `None` when the command was killed by the timeout or never ran.
    pub exit_code: Option<i32>,
    /// The last [`OUTPUT_CAP`](crate::OUTPUT_CAP) bytes, after a marker line when
    /// more was printed.
    pub stdout: String,
    pub stderr: String,
    pub duration_ms: u64,
    pub timed_out: bool,
    /// Regular files and symlinks the step created or modified (shell: by
    /// modification time; copy: by content and mode), sorted, at most
    /// [`CHANGED_FILES_CAP`](crate::CHANGED_FILES_CAP).
    pub changed_files: Vec<String>,
    pub changed_files_truncated: bool,
    /// Why the step could not run on this node at all, as a sentence.
    pub error: Option<String>,
}

impl NodeOutput {
    pub(crate) fn new(node: &str) -> Self {
        NodeOutput {
            node: node.to_string(),
            ..Default::default()
        }
    }

    /// Whether the step succeeded on this node.
    pub fn ok(&self) -> bool {
        self.exit_code == Some(0) && !self.timed_out && self.error.is_none()
    }
}

/// What a node was doing when a step hung on it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct HangState {
    pub node: String,
    /// `ps -ef --forest`.
    pub processes: String,
    /// `systemctl list-jobs`: units stuck starting or stopping.
    pub jobs: String,
    /// The last lines of the node's journal.
    pub journal: String,
}

impl StepReport {
    pub(crate) fn new(step: &Step, pass: Pass) -> Self {
        StepReport {
            name: step.name.clone(),
            kind: kind(&step.action).to_owned(),
            pass,
            ok: true,
            duration_ms: 0,
            nodes: Vec::new(),
            ansible: None,
            error: None,
            hang_state: Vec::new(),
            log_dir: None,
        }
    }

    /// Marks the step failed; the first reason given is the one reported.
    pub(crate) fn fail(&mut self, error: impl Into<String>) {
        self.ok = false;
        self.error.get_or_insert_with(|| error.into());
    }

    pub(crate) fn finish(mut self, started: Instant) -> Self {
        self.duration_ms = started.elapsed().as_millis() as u64;
        if let Some(dir) = &self.log_dir {
            // The report itself next to the logs, for whoever looks there first.
            if let Ok(json) = serde_json::to_string_pretty(&self) {
                let _ = std::fs::write(dir.join("report.json"), json);
            }
        }
        self
    }

    /// What the step changed, one line each: `web1: /etc/nginx/nginx.conf` for
    /// files, `lb: task 'template haproxy.cfg' changed` for Ansible tasks.
    pub fn changed(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for node in &self.nodes {
            for file in &node.changed_files {
                lines.push(format!("{}: {file}", node.node));
            }
            if node.changed_files_truncated {
                lines.push(format!(
                    "{}: more files (the list stops at {})",
                    node.node,
                    crate::CHANGED_FILES_CAP
                ));
            }
        }
        if let Some(ansible) = &self.ansible {
            for task in &ansible.tasks {
                if task.status == TaskStatus::Changed {
                    let what = if task.handler { "handler" } else { "task" };
                    lines.push(format!("{}: {what} '{}' changed", task.host, task.task));
                }
            }
        }
        lines
    }
}

pub(crate) fn kind(action: &StepAction) -> &'static str {
    match action {
        StepAction::Shell { .. } => "shell",
        StepAction::Ansible { .. } => "ansible",
        StepAction::Copy { .. } => "copy",
    }
}

/// The last non-empty line of `text`, trimmed and shortened, if any.
pub(crate) fn last_line(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty() && !l.starts_with("[rehearse: first"))
        .map(|l| shorten(l, 300))
}

/// `text` on one line, cut to about `max` characters.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    let one_line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let cut: String = one_line.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// "node2" or "node2 (and 2 other nodes)".
pub(crate) fn and_others(first: &str, others: usize) -> String {
    match others {
        0 => first.to_string(),
        1 => format!("{first} (and 1 other node)"),
        n => format!("{first} (and {n} other nodes)"),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::ansible::TaskResult;

    fn step() -> Step {
        Step {
            idempotence: Default::default(),
            name: "web".into(),
            on: vec![],
            timeout: Duration::from_secs(60),
            env: vec![],
            action: StepAction::Shell {
                script: "true".into(),
                file: None,
            },
        }
    }

    #[test]
    fn changed_lists_files_per_node_and_changed_tasks_per_host() {
        let mut report = StepReport::new(&step(), Pass::Second);
        let mut web1 = NodeOutput::new("web1");
        web1.changed_files = vec!["/etc/nginx/nginx.conf".into()];
        report.nodes.push(web1);
        report.nodes.push(NodeOutput::new("web2"));
        let task = |name: &str, status| TaskResult {
            host: "lb".into(),
            task: name.into(),
            status,
            ..TaskResult::default()
        };
        report.ansible = Some(AnsibleReport {
            tasks: vec![
                task("template haproxy.cfg", TaskStatus::Changed),
                task("install haproxy", TaskStatus::Ok),
            ],
            ..AnsibleReport::default()
        });
        assert_eq!(
            report.changed(),
            vec![
                "web1: /etc/nginx/nginx.conf".to_string(),
                "lb: task 'template haproxy.cfg' changed".to_string(),
            ]
        );
    }

    #[test]
    fn the_first_failure_is_the_one_reported() {
        let mut report = StepReport::new(&step(), Pass::First);
        report.fail("first");
        report.fail("second");
        assert!(!report.ok);
        assert_eq!(report.error.as_deref(), Some("first"));
    }

    #[test]
    fn last_line_skips_blank_lines_and_cut_markers() {
        assert_eq!(
            last_line("a\nsh: 3: nope: not found\n\n").as_deref(),
            Some("sh: 3: nope: not found")
        );
        assert_eq!(last_line("[rehearse: first 9 bytes cut]\n"), None);
    }
}
