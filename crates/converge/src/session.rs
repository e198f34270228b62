//! A live troubleshooting session on a failed cluster: the model proposes one
//! command at a time as JSON, the policy vets it, the engine runs it on the
//! named node and sends back the output, until the model says it is done and
//! the checks pass, or the step budget ends.

use std::time::Duration;

use serde::Serialize;

use rehearse_checks::{CheckResult, NodeChecks, Status};
use rehearse_llm::{extract_json, LlmError, Message};
use rehearse_sandbox::ExecRequest;

use crate::failure::{tail, Failure};
use crate::{policy, prompts, ConvergeError, Converger, LlmCall, TROUBLESHOOT_STEPS};

/// How long one proposed command may run.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes of a command's output sent back and recorded, from the end.
const COMMAND_OUTPUT_CAP: usize = 3000;

/// A command the model proposed, and what became of it.
#[derive(Clone, Debug, Serialize)]
pub struct CommandRecord {
    pub node: String,
    pub command: String,
    pub why: String,
    /// `None` when it did not run (refused, or it timed out).
    pub exit_code: Option<i32>,
    pub output: String,
    pub duration_ms: u64,
    /// Why the engine refused to run it.
    pub refused: Option<String>,
}

pub(crate) struct Outcome {
    pub commands: Vec<CommandRecord>,
    pub passed: bool,
}

/// Read-only first words: such commands diagnose, they do not fix.
const DIAGNOSTIC: &[&str] = &[
    "cat",
    "ls",
    "stat",
    "head",
    "tail",
    "grep",
    "journalctl",
    "ps",
    "ss",
    "netstat",
    "id",
    "which",
    "command",
    "curl",
    "wget",
    "dpkg",
    "apt-cache",
    "find",
    "test",
    "[",
    "echo",
    "nginx -t",
    "systemctl status",
    "systemctl is-active",
    "systemctl is-enabled",
    "ip",
];

/// Whether a command changed something the distilled script must reproduce:
/// it ran, succeeded, and is not a read-only diagnostic.
pub fn mattered(record: &CommandRecord) -> bool {
    let command = record.command.trim();
    record.refused.is_none()
        && record.exit_code == Some(0)
        && !DIAGNOSTIC
            .iter()
            .any(|d| command == *d || command.starts_with(&format!("{d} ")))
}

pub(crate) fn troubleshoot(
    c: &mut Converger<'_>,
    cluster: &str,
    code: &str,
    failure: &Failure,
    calls: &mut Vec<LlmCall>,
) -> Result<Outcome, ConvergeError> {
    let nodes: Vec<String> = c
        .task
        .topology
        .nodes
        .iter()
        .map(|n| n.name.clone())
        .collect();
    let prompt = prompts::fill(
        prompts::TROUBLESHOOT,
        &[
            ("goal", &c.task.goal),
            ("nodes", &nodes.join(", ")),
            ("code", code),
            ("failure", &failure.describe()),
            ("fence", c.fence()),
            ("steps", &TROUBLESHOOT_STEPS.to_string()),
        ],
    );
    let mut messages = vec![Message::user(prompt)];
    let mut commands = Vec::new();
    for _ in 0..TROUBLESHOOT_STEPS {
        if c.must_stop().is_some() {
            break;
        }
        let answer = c.ask(
            "propose a troubleshooting command",
            messages.clone(),
            true,
            calls,
        )?;
        messages.push(Message::assistant(answer.clone()));
        let garbage = |reason: &str| ConvergeError::Llm {
            purpose: "propose a troubleshooting command",
            source: LlmError::Garbage {
                reason: reason.into(),
                head: answer.chars().take(200).collect(),
            },
        };
        let value = extract_json(&answer).ok_or_else(|| garbage("no JSON object in the answer"))?;
        if value.get("done").and_then(|d| d.as_bool()) == Some(true) {
            break;
        }
        let command = value
            .get("command")
            .and_then(|v| v.as_str())
            .ok_or_else(|| garbage("the JSON has neither `command` nor `done: true`"))?
            .to_owned();
        let node = value
            .get("node")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .or_else(|| nodes.first().cloned())
            .unwrap_or_default();
        let why = value
            .get("why")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned();
        let mut record = CommandRecord {
            node: node.clone(),
            command: command.clone(),
            why,
            exit_code: None,
            output: String::new(),
            duration_ms: 0,
            refused: None,
        };
        let feedback = if !nodes.contains(&node) {
            let why = format!(
                "there is no node {node:?}; the nodes are {}",
                nodes.join(", ")
            );
            record.refused = Some(why.clone());
            format!("Refused: {why}. Next command as JSON, or {{\"done\": true}}.")
        } else if let Some(finding) = policy::refuse(&command) {
            let why = format!("{} ({}: {:?})", finding.reason, finding.rule, finding.text);
            c.say(&format!("refused on {node}: {command}: {why}"));
            record.refused = Some(why.clone());
            format!(
                "Refused by the engine's command policy: {why}. Propose something else, as JSON."
            )
        } else {
            c.say(&format!("{node}$ {command}"));
            let request = ExecRequest {
                argv: vec!["/bin/bash".into(), "-c".into(), format!("{command} 2>&1")],
                timeout: Some(COMMAND_TIMEOUT),
                env: c.secret_env.clone(),
                ..Default::default()
            };
            let (exit, output, timed_out) = match c.engine.exec_capture(cluster, &node, &request) {
                Ok((outcome, stdout, stderr)) => {
                    (Some(outcome.exit_code), format!("{stdout}{stderr}"), false)
                }
                Err(e) => (None, e.to_string(), true),
            };
            record.exit_code = exit;
            // Redacted before it is cut, so the cut cannot split a value.
            record.output = tail(&c.redactor.redact(&output), COMMAND_OUTPUT_CAP).to_owned();
            prompts::fill(
                prompts::FEEDBACK_COMMAND,
                &[
                    ("exit_code", &exit.map_or("none".into(), |e| e.to_string())),
                    ("node", &node),
                    (
                        "timed_out",
                        if timed_out {
                            " (it did not finish in time)"
                        } else {
                            ""
                        },
                    ),
                    ("cap", &COMMAND_OUTPUT_CAP.to_string()),
                    ("output", &record.output),
                    ("checks", ""),
                ],
            )
        };
        commands.push(record);
        messages.push(Message::user(feedback));
    }
    c.say("evaluating the checks on the troubleshot cluster");
    let results = evaluate(c, cluster);
    let passed = results.iter().all(|r| r.status != Status::Failed);
    Ok(Outcome { commands, passed })
}

fn evaluate(c: &Converger<'_>, cluster: &str) -> Vec<CheckResult> {
    let mut work = Vec::new();
    for node in &c.task.topology.nodes {
        let checks: Vec<_> = c
            .task
            .checks
            .iter()
            .filter(|check| {
                check.on.is_empty()
                    || check
                        .on
                        .iter()
                        .any(|t| *t == node.name || node.groups.contains(t))
            })
            .collect();
        if !checks.is_empty() {
            work.push(NodeChecks {
                node: node.name.clone(),
                checks,
            });
        }
    }
    rehearse_checks::evaluate(c.engine, cluster, &work)
}
