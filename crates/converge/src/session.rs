//! A live troubleshooting session on a failed cluster: the model proposes one
//! command at a time as JSON, the policy vets it, the engine runs it on the
//! named node and sends back the output, until the model says it is done and
//! the checks pass, or the step budget ends. The checks are evaluated after
//! every command, so the session ends as soon as they all pass.

use std::time::{Duration, Instant};

use serde::Serialize;

use rehearse_checks::{CheckResult, NodeChecks, Status};
use rehearse_llm::{extract_json, Message};
use rehearse_sandbox::ExecRequest;
use rehearse_spec::scenario::Check;

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
    /// The model could not go on (unreachable, or unusable after re-asks).
    pub error: Option<ConvergeError>,
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
) -> Outcome {
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
            ("checks", &c.checks_yaml()),
            ("code", code),
            ("failure", &c.visible(&failure.describe())),
            ("fence", c.fence()),
            ("steps", &TROUBLESHOOT_STEPS.to_string()),
        ],
    );
    let mut messages = vec![Message::user(prompt)];
    let mut commands = Vec::new();
    // The checks, each tried once: evaluated after every command on the live
    // cluster, they must not wait out a failing check's retry window.
    let quick: Vec<Check> = c
        .task
        .checks
        .iter()
        .cloned()
        .map(|mut check| {
            check.timeout = Duration::ZERO;
            check
        })
        .collect();
    let expected = "exactly one JSON object: {\"node\": \"<node name>\", \"command\": \"<one shell command>\", \"why\": \"<one sentence>\"}, or {\"done\": true}";
    for _ in 0..TROUBLESHOOT_STEPS {
        if c.must_stop().is_some() {
            break;
        }
        let asked = c.ask_until(
            "propose a troubleshooting command",
            messages.clone(),
            true,
            expected,
            calls,
            parse_proposal,
        );
        let (proposal, answer) = match asked {
            Ok(answer) => answer,
            Err(error) => {
                return Outcome {
                    commands,
                    passed: false,
                    error: Some(error),
                }
            }
        };
        messages.push(Message::assistant(answer));
        let (node, command, why) = match proposal {
            Proposal::Done => break,
            Proposal::Command { node, command, why } => (node, command, why),
        };
        let node = node.or_else(|| nodes.first().cloned()).unwrap_or_default();
        let mut record = CommandRecord {
            node: node.clone(),
            command: command.clone(),
            why,
            exit_code: None,
            output: String::new(),
            duration_ms: 0,
            refused: None,
        };
        let refused = if command.trim().is_empty() {
            Some("the command is empty; propose one shell command to run".to_owned())
        } else if !nodes.contains(&node) {
            Some(format!(
                "there is no node {node:?}; the nodes are {}",
                nodes.join(", ")
            ))
        } else {
            policy::refuse(&command).map(|finding| {
                format!(
                    "the engine's command policy refuses it: {} ({}: {:?})",
                    finding.reason, finding.rule, finding.text
                )
            })
        };
        let feedback = if let Some(why) = refused {
            c.say(&format!("refused on {node}: {command:?}: {why}"));
            record.refused = Some(why.clone());
            commands.push(record);
            format!("Refused: {why}. Next command as JSON, or {{\"done\": true}}.")
        } else {
            c.say(&format!("{node}$ {command}"));
            let request = ExecRequest {
                argv: vec!["/bin/bash".into(), "-c".into(), format!("{command} 2>&1")],
                timeout: Some(COMMAND_TIMEOUT),
                env: c.secret_env.clone(),
                ..Default::default()
            };
            let started = Instant::now();
            let (exit, output, timed_out) = match c.engine.exec_capture(cluster, &node, &request) {
                Ok((outcome, stdout, stderr)) => {
                    (Some(outcome.exit_code), format!("{stdout}{stderr}"), false)
                }
                Err(e) => (None, e.to_string(), true),
            };
            record.duration_ms = started.elapsed().as_millis() as u64;
            record.exit_code = exit;
            // Redacted before it is cut, so the cut cannot split a value.
            record.output =
                tail(&c.visible(&c.redactor.redact(&output)), COMMAND_OUTPUT_CAP).to_owned();
            let results = evaluate(c, cluster, &quick);
            let all_pass = results.iter().all(|r| r.status != Status::Failed);
            let feedback = prompts::fill(
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
                    ("checks", &c.redactor.redact(&describe_checks(&results))),
                ],
            );
            commands.push(record);
            if all_pass {
                c.say("every check passes on the troubleshot cluster");
                return Outcome {
                    commands,
                    passed: true,
                    error: None,
                };
            }
            feedback
        };
        messages.push(Message::user(feedback));
    }
    // The model is done, or out of commands: the checks get their full retry
    // window once, as in a run.
    c.say("evaluating the checks on the troubleshot cluster");
    let checks: Vec<Check> = c.task.checks.clone();
    let results = evaluate(c, cluster, &checks);
    let passed = results.iter().all(|r| r.status != Status::Failed);
    Outcome {
        commands,
        passed,
        error: None,
    }
}

/// What the model proposed.
#[derive(Debug)]
enum Proposal {
    Command {
        node: Option<String>,
        command: String,
        why: String,
    },
    Done,
}

fn parse_proposal(answer: &str) -> Result<Proposal, String> {
    let value = extract_json(answer).ok_or("it holds no JSON object")?;
    if value.get("done").and_then(|d| d.as_bool()) == Some(true) {
        return Ok(Proposal::Done);
    }
    let command = value
        .get("command")
        .and_then(|v| v.as_str())
        .ok_or("its JSON has neither a `command` string nor `\"done\": true`")?
        .to_owned();
    Ok(Proposal::Command {
        node: value
            .get("node")
            .and_then(|v| v.as_str())
            .map(str::to_owned),
        command,
        why: value
            .get("why")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_owned(),
    })
}

/// The checks' results as the model reads them after a command.
fn describe_checks(results: &[CheckResult]) -> String {
    let passing = results
        .iter()
        .filter(|r| r.status != Status::Failed)
        .count();
    let mut text = format!("Checks now: {passing} of {} pass.\n", results.len());
    for r in results {
        let mark = match r.status {
            Status::Passed => "pass",
            Status::Failed => "FAIL",
            _ => "skip",
        };
        text.push_str(&format!("- {mark} on {}: {}", r.node, r.name));
        if r.status == Status::Failed {
            text.push_str(&format!(": {}", tail(&r.message, 300)));
        }
        text.push('\n');
    }
    text
}

fn evaluate(c: &Converger<'_>, cluster: &str, checks: &[Check]) -> Vec<CheckResult> {
    let mut work = Vec::new();
    for node in &c.task.topology.nodes {
        let mine: Vec<_> = checks
            .iter()
            .filter(|check| {
                check.on.is_empty()
                    || check
                        .on
                        .iter()
                        .any(|t| *t == node.name || node.groups.contains(t))
            })
            .collect();
        if !mine.is_empty() {
            work.push(NodeChecks {
                node: node.name.clone(),
                checks: mine,
            });
        }
    }
    rehearse_checks::evaluate(c.engine, cluster, &work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proposals_are_parsed_or_refused_with_a_reason() {
        assert!(matches!(
            parse_proposal(r#"{"done": true}"#),
            Ok(Proposal::Done)
        ));
        let Ok(Proposal::Command { node, command, .. }) =
            parse_proposal(r#"Sure: {"node": "web1", "command": "ls /", "why": "look"}"#)
        else {
            panic!("a command")
        };
        assert_eq!((node.as_deref(), command.as_str()), (Some("web1"), "ls /"));
        assert!(parse_proposal("I cannot")
            .unwrap_err()
            .contains("no JSON object"));
        assert!(parse_proposal(r#"{"cmd": "ls"}"#)
            .unwrap_err()
            .contains("neither"));
    }
}
