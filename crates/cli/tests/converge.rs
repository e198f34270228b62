//! `rehearse converge` as a user runs it: the real binary, a scripted model
//! behind a local server speaking the OpenAI wire format (or no model at all),
//! real clusters.

mod common;

use std::path::Path;

use rehearse_llm::fake::{FakeReply, FakeServer};
use serde_json::Value;

use common::*;

/// Variables that would pick a model other than the one a test sets up.
const LLM_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "REHEARSE_LLM_API_KEY",
    "REHEARSE_LLM_PROVIDER",
    "REHEARSE_LLM_BASE_URL",
    "REHEARSE_LLM_MODEL",
];

/// `rehearse --json converge TASK` with `env` set: (exit code, report, stderr).
fn converge(task: &Path, env: &[(&str, &str)]) -> (i32, Value, String) {
    require_root();
    let mut command = common::command();
    for var in LLM_VARS {
        command.env_remove(var);
    }
    let out = command
        .envs(env.iter().copied())
        .args(["--json", "converge"])
        .arg(task)
        .output()
        .expect("rehearse runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): stdout={stdout} stderr={stderr}"));
    (out.status.code().unwrap_or(-1), report, stderr)
}

/// Every cluster the report names (each iteration's and the proof's) is gone.
fn nothing_left(report: &Value) {
    let clusters = report["iterations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["run"])
        .chain(std::iter::once(&report["proof"]))
        .filter_map(|run| run["cluster"].as_str());
    for cluster in clusters {
        let left = Leftovers::of(cluster);
        assert!(left.is_empty(), "cluster {cluster} left behind: {left:?}");
    }
}

#[test]
fn converges_with_a_model_configured_by_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let task = write(
        tmp.path(),
        "task.yaml",
        "\
goal: Write /etc/rehearse-ok containing the word converged.
language: bash
nodes: 1
checks:
  - file: /etc/rehearse-ok
    contains: [converged]
max_iterations: 2
",
    );
    let server = FakeServer::start(vec![FakeReply::openai(
        "```bash\n#!/bin/bash\nset -euo pipefail\necho converged > /etc/rehearse-ok\n```\n",
    )]);
    let (code, report, stderr) = converge(
        &task,
        &[
            ("REHEARSE_LLM_PROVIDER", "openai"),
            ("REHEARSE_LLM_BASE_URL", server.url()),
            ("REHEARSE_LLM_MODEL", "fake"),
        ],
    );
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(report["verdict"], "converged", "{}", report["summary"]);
    assert_eq!(report["model"], "openai/fake");
    assert_eq!(report["rules_only"], false);
    assert!(report["script"]
        .as_str()
        .unwrap()
        .contains("echo converged > /etc/rehearse-ok"));
    assert_eq!(report["proof"]["outcome"], "passed");
    assert!(Path::new(report["report_path"].as_str().unwrap()).is_file());
    // The model the environment named is the one that was asked.
    let asked = server.requests();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].path, "/v1/chat/completions");
    assert_eq!(asked[0].body["model"], "fake");
    nothing_left(&report);
}

#[test]
fn without_a_model_the_rules_doctor_installs_a_missing_command() {
    let tmp = tempfile::tempdir().unwrap();
    let task = write(
        tmp.path(),
        "task.yaml",
        "\
goal: Record jq's version in /etc/jq-version.
language: bash
nodes: 1
code: |
  #!/bin/bash
  set -euo pipefail
  jq --version > /etc/jq-version
checks:
  - file: /etc/jq-version
    contains: [jq-]
max_iterations: 3
",
    );
    let (code, report, stderr) = converge(&task, &[]);
    assert!(
        stderr.contains("no LLM is configured"),
        "the user is told plainly: {stderr}"
    );
    assert_eq!(code, 0, "{report}\n{stderr}");
    assert_eq!(report["verdict"], "converged", "{}", report["summary"]);
    assert_eq!(report["rules_only"], true);
    assert_eq!(report["model"], Value::Null);
    let first = &report["iterations"][0];
    assert_eq!(first["path"], "rules");
    assert_eq!(first["fix"]["rule"], "command-not-found");
    assert!(first["failure"]["output"]
        .as_str()
        .unwrap()
        .contains("command not found"));
    assert!(report["script"]
        .as_str()
        .unwrap()
        .contains("apt-get install -y -qq jq"));
    nothing_left(&report);
}
