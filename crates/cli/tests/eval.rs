//! `rehearse eval` as a user runs it: the real binary over a small set of
//! tasks, a scripted model behind a local server speaking the OpenAI wire
//! format (answering in the order the attempts run: one at a time), real
//! clusters; then the run store and the dashboard's page of the evaluation.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

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

const TOKEN: &str = "eval-test-token";

fn bash(code: &str) -> FakeReply {
    FakeReply::openai(&format!(
        "```bash\n#!/bin/bash\nset -euo pipefail\n{code}```\n"
    ))
}

/// Three tasks, in the order the evaluation takes them (by folder name):
/// one the model solves at once, one it solves after a broken first answer,
/// one it never solves within its single iteration.
fn write_tasks(root: &Path) {
    for (name, file, extra) in [
        ("a-solved", "/etc/eval-a", "max_iterations: 2\n"),
        ("b-recovered", "/etc/eval-b", "max_iterations: 3\n"),
        ("c-unsolved", "/etc/eval-c", "max_iterations: 1\n"),
    ] {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        write(
            &dir,
            "task.yaml",
            &format!(
                "goal: Write {file} containing the word converged.\nlanguage: bash\nnodes: 1\nchecks:\n  - file: {file}\n    contains: [converged]\n{extra}"
            ),
        );
    }
}

fn eval(args: &[&str], server: &FakeServer) -> (i32, Value, String) {
    require_root();
    let mut command = common::command();
    for var in LLM_VARS {
        command.env_remove(var);
    }
    let out = command
        .env("REHEARSE_LLM_PROVIDER", "openai")
        .env("REHEARSE_LLM_BASE_URL", server.url())
        .env("REHEARSE_LLM_MODEL", "fake")
        .args(["--json", "eval"])
        .args(args)
        .output()
        .expect("rehearse runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): stdout={stdout} stderr={stderr}"));
    (out.status.code().unwrap_or(-1), report, stderr)
}

fn task_row<'a>(report: &'a Value, task: &str) -> &'a Value {
    report["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["task"] == task)
        .unwrap_or_else(|| panic!("no row for {task}: {report}"))
}

/// GET `path` from `rehearse serve` on `listen`, with the token: (status line, body).
fn get(listen: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(listen).expect("connect to rehearse serve");
    write!(
        s,
        "GET {path} HTTP/1.0\r\nHost: {listen}\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    )
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

#[test]
fn an_evaluation_reports_pass_rate_recovery_junit_store_and_dashboard() {
    let tmp = tempfile::tempdir().unwrap();
    let tasks = tmp.path().join("tasks");
    write_tasks(&tasks);
    let junit = tmp.path().join("eval.xml");
    let good = |file: &str| bash(&format!("echo converged > {file}\n"));
    // Two attempts of each task, one after the other.
    let server = FakeServer::start(vec![
        good("/etc/eval-a"),
        good("/etc/eval-a"),
        bash("if then fi\n"),
        good("/etc/eval-b"),
        bash("if then fi\n"),
        good("/etc/eval-b"),
        bash("echo wrong > /etc/eval-c\n"),
        bash("echo wrong > /etc/eval-c\n"),
    ]);
    let (code, report, stderr) = eval(
        &[
            tasks.to_str().unwrap(),
            "--attempts",
            "2",
            "--jobs",
            "1",
            "--min-pass-rate",
            "60%",
            "--junit",
            junit.to_str().unwrap(),
        ],
        &server,
    );
    assert_eq!(code, 0, "4 of 6 reach 60%: {report}\n{stderr}");
    assert_eq!(
        server.requests().len(),
        8,
        "every scripted answer was asked for"
    );
    assert_eq!(report["model"], "openai/fake");
    assert_eq!(report["passed"], true);
    let total = &report["total"];
    assert_eq!(total["attempts"], 6);
    assert_eq!(total["converged"], 4);
    assert!((total["pass_rate"].as_f64().unwrap() - 4.0 / 6.0).abs() < 1e-9);
    assert_eq!(total["recovery"]["retry"], 2, "{total}");
    assert_eq!(total["first_try"], 2);
    // (1 + 1 + 2 + 2 + 1 + 1) iterations over 6 attempts.
    assert!((total["mean_iterations"].as_f64().unwrap() - 8.0 / 6.0).abs() < 1e-9);
    assert_eq!(
        total["input_tokens"], 800,
        "the fake answers 100 input tokens a call"
    );
    assert_eq!(total["output_tokens"], 160);

    let a = task_row(&report, "a-solved");
    assert_eq!(
        (a["converged"].as_u64(), a["attempts"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(a["recovery"], serde_json::json!({}));
    let b = task_row(&report, "b-recovered");
    assert_eq!(b["converged"], 2);
    assert_eq!(b["mean_iterations"], 2.0);
    assert_eq!(b["recovery"]["retry"], 2);
    let c = task_row(&report, "c-unsolved");
    assert_eq!(c["converged"], 0);
    assert_eq!(c["pass_rate"], 0.0);
    let attempts = report["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 6);
    for attempt in attempts.iter().filter(|a| a["task"] == "c-unsolved") {
        assert_eq!(attempt["verdict"], "budget_exhausted", "{attempt}");
    }

    // JUnit: a suite per task, a case per attempt, the unsolved ones failed.
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuites name=\"rehearse.eval\" tests=\"6\" failures=\"2\""),
        "{xml}"
    );
    assert_eq!(xml.matches("<testsuite ").count(), 3, "{xml}");
    assert_eq!(xml.matches("<testcase ").count(), 6, "{xml}");
    assert!(xml.contains(
        "<testsuite name=\"rehearse.eval.c-unsolved.default\" tests=\"2\" failures=\"2\""
    ));
    assert_eq!(
        xml.matches("<failure message=\"budget_exhausted\"").count(),
        2
    );

    // The run store: the evaluation, with its six converge runs under it.
    let id = report["run_id"].as_str().unwrap();
    let (code, shown) = run_json(&["runs", "show", id]);
    assert_eq!(code, 0, "{shown}");
    assert_eq!(shown["run"]["kind"], "eval");
    assert_eq!(shown["run"]["outcome"], "passed");
    assert_eq!(shown["run"]["input_tokens"], 800);
    assert_eq!(shown["report"]["total"]["converged"], 4);
    let children = shown["children"].as_array().unwrap();
    assert_eq!(children.len(), 6, "{shown}");
    assert!(children.iter().all(|c| c["kind"] == "converge"));
    assert_eq!(
        children
            .iter()
            .filter(|c| c["outcome"] == "converged")
            .count(),
        4
    );
    assert!(children
        .iter()
        .any(|c| c["role"] == "b-recovered on default, attempt 2"));

    // The dashboard's page of the evaluation.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut serve = common::command()
        .args(["serve", "--listen", &listen, "--token", TOKEN])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("rehearse serve starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let page = loop {
        if TcpStream::connect(&listen).is_ok() {
            break get(&listen, &format!("/runs/{id}"));
        }
        assert!(Instant::now() < deadline, "rehearse serve did not come up");
        std::thread::sleep(Duration::from_millis(100));
    };
    let list = get(&listen, "/runs?kind=eval");
    let _ = serve.kill();
    let _ = serve.wait();
    let (status, html) = page;
    assert!(status.contains("200"), "{status}\n{html}");
    for expected in [
        "<section id=\"eval\">",
        "<strong>a-solved</strong>",
        "<strong>c-unsolved</strong>",
        "<strong>66.7%</strong>",
        "retry 2",
        "openai/fake",
        "b-recovered on default, attempt 2",
    ] {
        assert!(
            html.contains(expected),
            "the page lacks {expected:?}:\n{html}"
        );
    }
    assert_eq!(
        html.matches("href=\"/runs/c").count(),
        6,
        "each attempt links to its converge run"
    );
    assert!(list.0.contains("200") && list.1.contains(id), "{}", list.1);
}

#[test]
fn below_the_required_pass_rate_the_evaluation_fails_and_bad_tasks_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let tasks = tmp.path().join("tasks");
    write_tasks(&tasks);
    let server = FakeServer::start(vec![bash("echo wrong > /etc/eval-c\n")]);
    let (code, report, stderr) = eval(&[tasks.join("c-unsolved").to_str().unwrap()], &server);
    assert_eq!(
        code, 1,
        "0 of 1 is below the default 100%: {report}\n{stderr}"
    );
    assert_eq!(report["passed"], false);
    assert_eq!(report["total"]["pass_rate"], 0.0);

    // An invalid task file: nothing runs, the file and line are named.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    write(
        &bad,
        "task.yaml",
        "goal: x\nlanguage: bash\nnodes: 1\nchekcs: []\n",
    );
    let (code, report, _) = eval(&[bad.to_str().unwrap()], &server);
    assert_eq!(code, 2, "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("task.yaml") && message.contains("chekcs"),
        "{message}"
    );
    assert_eq!(
        server.requests().len(),
        1,
        "nothing ran for the invalid task"
    );

    // A platform this host has no image for, asked or listed by a task:
    // refused before any attempt, naming it and where it came from.
    let (code, report, _) = eval(
        &[
            tasks.join("a-solved").to_str().unwrap(),
            "--platform",
            "debian-12,nosuch-9",
        ],
        &server,
    );
    assert_eq!(code, 2, "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("--platform") && message.contains("nosuch-9"),
        "{message}"
    );
    let listed = tmp.path().join("listed");
    std::fs::create_dir_all(&listed).unwrap();
    write(
        &listed,
        "task.yaml",
        "goal: x\nlanguage: bash\nnodes: 1\nplatforms: [debian-12, nosuch-9]\n\
         checks:\n  - file: /etc/x\n    exists: true\n",
    );
    let (code, report, _) = eval(&[listed.to_str().unwrap()], &server);
    assert_eq!(code, 2, "{report}");
    let message = report["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("task.yaml") && message.contains("nosuch-9"),
        "{message}"
    );
    assert_eq!(server.requests().len(), 1, "no attempt ran");
}
