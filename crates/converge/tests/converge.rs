//! The loop end to end on real clusters, with a scripted model behind a local
//! HTTP server speaking the OpenAI wire format.

use std::path::Path;
use std::time::Duration;

use rehearse_converge::{converge, Origin, Path as Recovery, Verdict};
use rehearse_llm::fake::{FakeReply, FakeServer};
use rehearse_llm::{OpenAi, Provider, RetryPolicy};
use rehearse_sandbox::Engine;
use rehearse_spec::task::Task;
use rehearse_store::RunStore;

fn engine() -> Engine {
    rehearse_testkit::require_root("converge tests");
    // Runs are recorded in a history of this test binary's own (under
    // target/), never the user's; clusters and images share the state
    // directory, so the image cache is reused.
    Engine::new(&rehearse_image::state_dir())
        .expect("engine")
        .with_history_dir(
            &std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("history/converge"),
        )
}

/// The run store of the test's history, handed to the runs as the CLI hands
/// them its own.
fn store(engine: &Engine) -> Option<std::sync::Arc<RunStore>> {
    Some(std::sync::Arc::new(
        RunStore::open(engine.history_dir()).expect("the run store opens"),
    ))
}

/// `origin` names the task in the sources of the clusters it starts, so each
/// test can tell its own clusters from those of the tests running beside it.
fn task(yaml: &str, origin: &str) -> Task {
    Task::from_yaml(yaml, origin, Path::new("/tmp")).expect("valid task")
}

fn model(server: &FakeServer) -> OpenAi {
    OpenAi::new(
        server.url(),
        "fake-model",
        None,
        Duration::from_secs(10),
        RetryPolicy {
            attempts: 2,
            backoff: Duration::from_millis(10),
            max_wait: Duration::from_secs(1),
        },
    )
    .unwrap()
}

fn bash(code: &str) -> FakeReply {
    FakeReply::openai(&format!("Here you go:\n```bash\n{code}```\n"))
}

/// No cluster started for the task `origin` is left.
fn nothing_left(engine: &Engine, origin: &str) {
    let ours: Vec<_> = engine
        .list()
        .into_iter()
        .filter(|c| c.source.contains(origin))
        .map(|c| c.id)
        .collect();
    assert!(ours.is_empty(), "clusters left behind: {ours:?}");
}

const MARKER_TASK: &str = "\
goal: Write /etc/rehearse-ok containing the word converged.
language: bash
nodes: 1
checks:
  - file: /etc/rehearse-ok
    contains: [converged]
max_iterations: 3
";

#[test]
fn converges_by_retry_when_the_first_answer_is_broken() {
    let engine = engine();
    let server = FakeServer::start(vec![
        bash("#!/bin/bash\nset -euo pipefail\nif then fi\n"),
        bash("#!/bin/bash\nset -euo pipefail\necho converged > /etc/rehearse-ok\n"),
    ]);
    let model = model(&server);
    let report = converge(
        &engine,
        &task(MARKER_TASK, "retry-task.yaml"),
        Some(&model as &dyn Provider),
        &|m| eprintln!("{m}"),
        store(&engine),
    )
    .expect("the loop runs");
    assert_eq!(report.verdict, Verdict::Converged, "{}", report.summary);
    assert_eq!(report.iterations.len(), 2);
    assert_eq!(report.iterations[0].path, Some(Recovery::Retry));
    assert!(report.iterations[0]
        .reason
        .as_deref()
        .unwrap()
        .contains("syntax error"));
    assert!(report.script.as_deref().unwrap().contains("echo converged"));
    assert_eq!(report.usage.total(), 240, "two answers of 120 tokens");
    assert!(report.report_path.is_file());
    // The retry prompt carried the failure back to the model.
    let retry = &server.requests()[1].body["messages"][1]["content"];
    assert!(retry.as_str().unwrap().contains("syntax error"), "{retry}");
    nothing_left(&engine, "retry-task.yaml");

    // The run store under the state directory holds the same run.
    let store = RunStore::open(engine.history_dir()).expect("the run store opens");
    let stored = store
        .run(&report.run_id)
        .unwrap()
        .expect("the run is in the store");
    assert_eq!(stored.run.outcome, "converged");
    assert!(stored.run.finished_at_ms.is_some());
    assert_eq!(stored.run.input_tokens + stored.run.output_tokens, 240);
    let end = stored.converge.as_ref().expect("the converge part");
    assert!(end.converged);
    assert_eq!(end.script, report.script);
    assert_eq!(end.iterations.len(), 2);
    // Each iteration's run is a scenario run of its own, with its steps and
    // checks, under the converge run (code that passed whole needs no proof).
    let roles: Vec<_> = stored
        .children
        .iter()
        .map(|c| c.role.as_deref().unwrap_or_default())
        .collect();
    assert_eq!(roles, ["iteration 1", "iteration 2"]);
    let first_run = store.run(&stored.children[0].id).unwrap().unwrap();
    assert_eq!(first_run.run.outcome, "failed");
    assert!(
        first_run.steps[0].detail.contains("syntax error"),
        "{:?}",
        first_run.steps
    );
    assert_eq!(first_run.checks[0].status, "failed");
    let (first, second) = (&end.iterations[0], &end.iterations[1]);
    assert_eq!(first.outcome, "failed");
    assert_eq!(first.recovery_path.as_deref(), Some("retry"));
    assert_eq!(first.reason, report.iterations[0].reason);
    assert!(first.failure.as_deref().unwrap().contains("syntax error"));
    let purposes: Vec<&str> = first.llm_calls.iter().map(|c| c.purpose.as_str()).collect();
    assert_eq!(purposes, ["write the code", "correct the code"]);
    assert!(first.llm_calls[0].response.contains("if then fi"));
    assert!(first.llm_calls[1].prompt.contains("syntax error"));
    assert_eq!(first.checks.len(), 1);
    assert_eq!(first.checks[0].status, "failed");
    assert!(first.checks[0].expected.contains("converged"));
    assert_eq!(second.origin, "model-retry");
    assert_eq!(second.outcome, "passed");
    assert_eq!(second.recovery_path, None);
    assert!(second.llm_calls.is_empty());
    assert_eq!(second.checks[0].status, "passed");
    assert!(store
        .runs(&rehearse_store::RunFilter::default())
        .unwrap()
        .iter()
        .any(|r| r.id == report.run_id));
}

#[test]
fn a_model_that_never_gets_it_right_exhausts_the_budget_and_says_so() {
    let engine = engine();
    let broken = "#!/bin/bash\nset -euo pipefail\nif then fi\n";
    let server = FakeServer::start(vec![bash(broken), bash(broken), bash(broken)]);
    let model = model(&server);
    let task = task(
        &MARKER_TASK.replace("max_iterations: 3", "max_iterations: 2"),
        "budget-task.yaml",
    );
    let report = converge(
        &engine,
        &task,
        Some(&model as &dyn Provider),
        &|m| eprintln!("{m}"),
        store(&engine),
    )
    .expect("the loop runs");
    assert_eq!(
        report.verdict,
        Verdict::BudgetExhausted,
        "{}",
        report.summary
    );
    assert!(report.script.is_none() && report.proof.is_none());
    assert_eq!(report.iterations.len(), 2);
    assert_eq!(
        server.requests().len(),
        2,
        "no answer is asked for past the budget"
    );
    let summary = &report.summary;
    assert!(summary.contains("budget ran out"), "{summary}");
    assert!(summary.contains("2 of 2 iterations"), "{summary}");
    for iteration in &report.iterations {
        let failure = iteration.failure.as_ref().expect("each iteration failed");
        assert!(!failure.step_ok);
        assert!(
            summary.contains(&format!("iteration {}: the code failed", iteration.number)),
            "{summary}"
        );
    }
    assert_eq!(report.iterations[0].path, Some(Recovery::Retry));
    assert_eq!(report.iterations[1].path, None);
    assert!(report.iterations[1]
        .reason
        .as_deref()
        .unwrap()
        .contains("last of 2 iterations"));
    assert!(report.report_path.is_file());
    nothing_left(&engine, "budget-task.yaml");

    let store = RunStore::open(engine.history_dir()).unwrap();
    let stored = store.run(&report.run_id).unwrap().unwrap();
    assert_eq!(stored.run.outcome, "budget_exhausted");
    assert_eq!(stored.run.summary.as_deref(), Some(report.summary.as_str()));
    assert_eq!(stored.converge.unwrap().iterations.len(), 2);
}

#[test]
fn converges_by_troubleshooting_then_distills_and_proves() {
    let engine = engine();
    let server = FakeServer::start(vec![
        // Runs, but writes the wrong word: checks fail with the step ok.
        bash("#!/bin/bash\necho almost > /etc/rehearse-ok\n"),
        FakeReply::openai(
            r#"{"node": "node1", "command": "cat /etc/rehearse-ok", "why": "see what was written"}"#,
        ),
        FakeReply::openai(r#"{"node": "node1", "command": "reboot -f", "why": "start over"}"#),
        FakeReply::openai(r#"{"node": "node1", "command": "  ", "why": "nothing"}"#),
        FakeReply::openai(
            r#"{"node": "node1", "command": "sleep 0.3; echo converged > /etc/rehearse-ok", "why": "write the right word"}"#,
        ),
        // No `done`: the checks pass after the command above, which ends the
        // session; the next answer is the distilled script.
        bash("#!/bin/bash\nset -euo pipefail\necho converged > /etc/rehearse-ok\n"),
    ]);
    let model = model(&server);
    let report = converge(
        &engine,
        &task(MARKER_TASK, "troubleshoot-task.yaml"),
        Some(&model as &dyn Provider),
        &|m| eprintln!("{m}"),
        store(&engine),
    )
    .expect("the loop runs");
    assert_eq!(report.verdict, Verdict::Converged, "{}", report.summary);
    let first = &report.iterations[0];
    assert_eq!(first.path, Some(Recovery::Troubleshoot));
    assert_eq!(first.commands.len(), 4);
    assert!(first.commands[0].output.contains("almost"));
    assert_eq!(first.commands[0].exit_code, Some(0));
    assert!(first.commands[1].refused.is_some(), "reboot -f is refused");
    // An empty command is refused back to the model, not run.
    let empty = &first.commands[2];
    assert_eq!(empty.exit_code, None);
    assert!(
        empty.refused.as_deref().unwrap().contains("empty"),
        "{empty:?}"
    );
    // The fix ran for real: its exit code and the time it took.
    let fix = &first.commands[3];
    assert_eq!(fix.exit_code, Some(0));
    assert!(fix.duration_ms >= 300, "{fix:?}");
    assert!(report.distilled.is_some());
    let requests = server.requests();
    assert_eq!(
        requests.len(),
        6,
        "no call between the fixing command and the distillation"
    );
    // Each feedback carried the checks' results.
    let feedback = |i: usize| {
        let messages = requests[i].body["messages"].as_array().unwrap().clone();
        messages.last().unwrap()["content"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let after_cat = feedback(2);
    assert!(after_cat.contains("Checks now: 0 of 1 pass"), "{after_cat}");
    assert!(after_cat.contains("FAIL on node1"), "{after_cat}");
    assert!(feedback(4).contains("empty"), "{}", feedback(4));
    // The first troubleshooting prompt shows the checks as the task writes them.
    let first_prompt = feedback(1);
    assert!(
        first_prompt.contains("- file: /etc/rehearse-ok\n    contains: [converged]"),
        "{first_prompt}"
    );
    assert!(!first_prompt.contains("\"timeout\""), "{first_prompt}");
    assert!(
        !first_prompt.contains("/var/lib/rehearse"),
        "{first_prompt}"
    );
    let proof = report.proof.as_ref().expect("a proof run");
    assert_eq!(proof.outcome, rehearse_scenario::Outcome::Passed);
    assert!(!proof.kept);
    // The distill prompt listed the command that mattered.
    let distill = server.requests()[5].body["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        distill.contains("echo converged > /etc/rehearse-ok"),
        "{distill}"
    );
    let store = RunStore::open(engine.history_dir()).unwrap();
    let stored = store.run(&report.run_id).unwrap().unwrap();
    let commands = &stored.converge.unwrap().iterations[0].commands;
    assert_eq!(commands[3].duration_ms, fix.duration_ms);
    nothing_left(&engine, "troubleshoot-task.yaml");
}

#[test]
fn a_failed_units_journal_reaches_the_model() {
    let engine = engine();
    let server = FakeServer::start(vec![
        // A service that cannot start: why is in its journal, not in the output.
        bash(
            "#!/bin/bash\nset -euo pipefail\n\
             printf '[Service]\\nType=oneshot\\nExecStart=/bin/sh -c \"echo demo cannot listen: port 8080 is taken >&2; exit 3\"\\n' > /etc/systemd/system/demo.service\n\
             systemctl daemon-reload\nsystemctl start demo\necho converged > /etc/rehearse-ok\n",
        ),
        FakeReply::openai(
            r#"{"node": "node1", "command": "echo converged > /etc/rehearse-ok", "why": "the marker without the demo service"}"#,
        ),
        bash("#!/bin/bash\nset -euo pipefail\necho converged > /etc/rehearse-ok\n"),
    ]);
    let model = model(&server);
    let report = converge(
        &engine,
        &task(MARKER_TASK, "journal-task.yaml"),
        Some(&model as &dyn Provider),
        &|m| eprintln!("{m}"),
        store(&engine),
    )
    .expect("the loop runs");
    let first = &report.iterations[0];
    let failure = first.failure.as_ref().expect("the first iteration failed");
    assert!(
        failure.journal.contains("--- demo.service on node1 ---"),
        "{}",
        failure.journal
    );
    assert!(
        failure.journal.contains("port 8080 is taken"),
        "{}",
        failure.journal
    );
    // The model was told: the journal is in the next prompt.
    let next = server.requests()[1].body["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.contains("Journal of the units that failed"), "{next}");
    assert!(next.contains("port 8080 is taken"), "{next}");
    assert_eq!(report.verdict, Verdict::Converged, "{}", report.summary);
    nothing_left(&engine, "journal-task.yaml");
}

#[test]
fn rules_doctor_alone_installs_a_missing_command() {
    let engine = engine();
    let task = task(
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
        "rules-task.yaml",
    );
    let report = converge(&engine, &task, None, &|m| eprintln!("{m}"), store(&engine))
        .expect("the loop runs");
    assert!(report.rules_only);
    assert_eq!(report.verdict, Verdict::Converged, "{}", report.summary);
    assert_eq!(report.iterations[0].path, Some(Recovery::Rules));
    assert_eq!(
        report.iterations[0].fix.as_ref().unwrap().rule,
        "command-not-found"
    );
    assert!(report
        .script
        .as_deref()
        .unwrap()
        .contains("apt-get install -y -qq jq"));
    assert!(
        report
            .summary
            .contains("the rules doctor fixed: command-not-found"),
        "{}",
        report.summary
    );
    nothing_left(&engine, "rules-task.yaml");
}

#[test]
fn garbage_is_asked_again_and_a_good_answer_then_converges() {
    let engine = engine();
    let server = FakeServer::start(vec![
        FakeReply::openai("I would install things, then write the file."),
        bash("#!/bin/bash\nset -euo pipefail\necho converged > /etc/rehearse-ok\n"),
    ]);
    let model = model(&server);
    let report = converge(
        &engine,
        &task(MARKER_TASK, "reask-task.yaml"),
        Some(&model as &dyn Provider),
        &|m| eprintln!("{m}"),
        store(&engine),
    )
    .expect("the loop runs");
    assert_eq!(report.verdict, Verdict::Converged, "{}", report.summary);
    assert_eq!(report.reasks, 1);
    let calls = &report.iterations[0].llm_calls;
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].reask, None);
    let why = calls[1]
        .reask
        .as_deref()
        .expect("the second call is a re-ask");
    assert!(why.contains("no fenced code block"), "{why}");
    // The re-ask told the model what was wrong and what is expected.
    let reask = server.requests()[1].body["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reask.contains("no fenced code block"), "{reask}");
    assert!(reask.contains("```bash"), "{reask}");
    nothing_left(&engine, "reask-task.yaml");
}

#[test]
fn garbage_after_every_reask_ends_the_run_with_a_report_and_a_record() {
    let engine = engine();
    // The first answer's code runs and fails its checks, so the failed cluster
    // is kept for troubleshooting; then the model answers garbage, three times.
    let server = FakeServer::start(vec![
        bash("#!/bin/bash\necho almost > /etc/rehearse-ok\n"),
        FakeReply::openai("I am sorry, I cannot help with that."),
        FakeReply::openai("Still sorry."),
        FakeReply::openai("No."),
    ]);
    let model = model(&server);
    let report = converge(
        &engine,
        &task(MARKER_TASK, "garbage-task.yaml"),
        Some(&model as &dyn Provider),
        &|m| eprintln!("{m}"),
        store(&engine),
    )
    .expect("the run ends with a report");
    assert_eq!(report.verdict, Verdict::Error, "{}", report.summary);
    assert_eq!(report.reasks, 2);
    let summary = &report.summary;
    assert!(summary.contains("no JSON object"), "{summary}");
    assert!(summary.contains("No."), "{summary}");
    assert_eq!(
        summary.matches("unusable").count(),
        1,
        "said once: {summary}"
    );
    assert_eq!(report.iterations.len(), 1);
    assert_eq!(report.iterations[0].llm_calls.len(), 4);
    assert!(report.report_path.is_file());
    let store = RunStore::open(engine.history_dir()).unwrap();
    let stored = store.run(&report.run_id).unwrap().expect("recorded");
    assert_eq!(stored.run.outcome, "error");
    assert_eq!(stored.run.summary.as_deref(), Some(summary.as_str()));
    nothing_left(&engine, "garbage-task.yaml");
}

#[test]
fn a_model_that_cannot_be_reached_ends_the_run_with_a_report_and_no_empty_folder() {
    let engine = engine();
    let server = FakeServer::start(Vec::new());
    let model = model(&server);
    let report = converge(
        &engine,
        &task(MARKER_TASK, "unreachable-task.yaml"),
        Some(&model as &dyn Provider),
        &|_| {},
        store(&engine),
    )
    .expect("the run ends with a report");
    assert_eq!(report.verdict, Verdict::Error, "{}", report.summary);
    assert!(report.iterations.is_empty());
    assert_eq!(
        report.llm_calls.len(),
        0,
        "the call failed: nothing to show"
    );
    let dir = report.report_path.parent().unwrap();
    let entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    assert_eq!(entries.len(), 1, "only report.json: {entries:?}");
    assert!(
        report.summary.contains("no more scripted replies"),
        "{}",
        report.summary
    );
}

#[test]
fn no_model_and_no_code_says_so() {
    let engine = engine();
    let error = converge(
        &engine,
        &task(MARKER_TASK, "nomodel-task.yaml"),
        None,
        &|_| {},
        store(&engine),
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("no LLM is configured"),
        "{error}"
    );
}

fn yaml(code: &str) -> FakeReply {
    FakeReply::openai(&format!("The playbook:\n```yaml\n{code}```\n"))
}

const ANSIBLE_TASK: &str = "\
goal: Create the directory /srv/app and write /srv/app/motd containing hello.
language: ansible
nodes: 1
checks:
  - file: /srv/app
    filetype: directory
    mode: \"0755\"
  - file: /srv/app/motd
    contains: [hello]
max_iterations: 3
";

#[test]
fn ansible_playbook_with_a_bad_module_argument_is_rewritten() {
    let engine = engine();
    let server = FakeServer::start(vec![
        // `file` has no `permissions` parameter: the playbook is wrong as written.
        yaml(
            "- hosts: all\n  tasks:\n    - file: {path: /srv/app, state: directory, permissions: \"0755\"}\n    - copy: {dest: /srv/app/motd, content: \"hello\\n\"}\n",
        ),
        yaml(
            "- hosts: all\n  tasks:\n    - file: {path: /srv/app, state: directory, mode: \"0755\"}\n    - copy: {dest: /srv/app/motd, content: \"hello\\n\"}\n",
        ),
    ]);
    let model = model(&server);
    let report = converge(
        &engine,
        &task(ANSIBLE_TASK, "ansible-task.yaml"),
        Some(&model as &dyn Provider),
        &|m| eprintln!("{m}"),
        store(&engine),
    )
    .expect("the loop runs");
    assert_eq!(report.verdict, Verdict::Converged, "{}", report.summary);
    assert_eq!(report.iterations.len(), 2);
    let first = &report.iterations[0];
    assert_eq!(first.path, Some(Recovery::Retry));
    assert!(first.fix.is_none(), "the doctor does not patch playbooks");
    let reason = first.reason.as_deref().unwrap();
    assert!(reason.contains("Unsupported parameters"), "{reason}");
    // The model was told which parameter was wrong.
    let retry = server.requests()[1].body["messages"][1]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(retry.contains("permissions"), "{retry}");
    assert_eq!(report.iterations[1].origin, Origin::ModelRetry);
    let proof = report.proof.as_ref().expect("a proof run");
    assert_eq!(proof.outcome, rehearse_scenario::Outcome::Passed);
    assert!(!proof.kept, "the proof cluster is not kept");
    assert!(report.script.as_deref().unwrap().contains("content:"));
    assert!(report.report_path.with_file_name("playbook.yml").is_file());
    nothing_left(&engine, "ansible-task.yaml");
}

/// Every file under `dir` that holds `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_holding(&path, needle));
        } else if std::fs::read(&path)
            .is_ok_and(|bytes| String::from_utf8_lossy(&bytes).contains(needle))
        {
            found.push(path);
        }
    }
    found
}

#[test]
fn a_secret_reaches_the_code_but_never_the_model_the_report_or_the_terminal() {
    use base64::Engine as _;
    let engine = engine();
    let value = format!("tr0ub4dor-{}-horse", std::process::id());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("db-password"), format!("{value}\n")).unwrap();
    let hash = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("printf '%s' '{value}' | sha256sum | cut -d' ' -f1"))
        .output()
        .unwrap();
    let hash = String::from_utf8(hash.stdout).unwrap().trim().to_owned();
    assert_eq!(hash.len(), 64);
    // The check compares a hash: a check spec must not hold the secret itself.
    let yaml = format!(
        "\
goal: Write the database password to /etc/db-password.
language: bash
nodes: 1
secrets:
  DB_PASSWORD: {{file: db-password}}
checks:
  - command: sha256sum /etc/db-password
    stdout: [{hash}]
max_iterations: 3
"
    );
    let task = Task::from_yaml(&yaml, "secret-task.yaml", dir.path()).expect("valid task");
    // The first answer prints the value, plain and in base64, then fails to
    // parse, so its output goes back to the model in the retry prompt.
    let server = FakeServer::start(vec![
        bash(
            "#!/bin/bash\nset -euo pipefail\necho \"the password is $DB_PASSWORD\"\n\
             printf '%s' \"$DB_PASSWORD\" | base64\nif then fi\n",
        ),
        bash(
            "#!/bin/bash\nset -euo pipefail\nprintf '%s' \"$DB_PASSWORD\" > /etc/db-password\n\
             echo \"wrote $DB_PASSWORD\"\n",
        ),
    ]);
    let model = model(&server);
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let report = converge(
        &engine,
        &task,
        Some(&model as &dyn Provider),
        &|m| {
            eprintln!("{m}");
            lines.lock().unwrap().push(m.to_owned());
        },
        store(&engine),
    )
    .expect("the loop runs");
    assert_eq!(report.verdict, Verdict::Converged, "{}", report.summary);
    assert_eq!(report.iterations.len(), 2);
    assert_eq!(report.secrets, ["DB_PASSWORD"]);

    let encoded = base64::engine::general_purpose::STANDARD.encode(&value);
    let leaks = |what: &str, text: &str| {
        assert!(!text.contains(&value), "{what} holds the secret: {text}");
        assert!(
            !text.contains(encoded.trim_end_matches('=')),
            "{what} holds the secret in base64: {text}"
        );
    };
    // The code saw the value: its output held it, and the report shows where.
    let first = &report.iterations[0].run.steps[0].nodes[0].stdout;
    assert!(
        first.contains("the password is «secret:DB_PASSWORD»"),
        "{first}"
    );
    assert_eq!(first.matches("«secret:DB_PASSWORD»").count(), 2, "{first}");
    leaks("the report", &serde_json::to_string(&report).unwrap());
    leaks(
        "report.json",
        &std::fs::read_to_string(&report.report_path).unwrap(),
    );
    // The model was told the name, and saw the failed run's output redacted.
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    for request in &requests {
        leaks("a request to the model", &request.body.to_string());
        let system = request.body["messages"][0]["content"].as_str().unwrap();
        assert!(system.contains("$DB_PASSWORD"), "{system}");
    }
    let retry = requests[1].body["messages"][1]["content"].as_str().unwrap();
    assert!(retry.contains("«secret:DB_PASSWORD»"), "{retry}");
    let lines = lines.into_inner().unwrap();
    assert!(!lines.is_empty());
    for line in &lines {
        leaks("a progress line", line);
    }
    // Nor does any file the runs stored: logs, scripts, run reports.
    let converge_dir = report.report_path.parent().unwrap();
    assert!(files_holding(converge_dir, &value).is_empty());
    for iteration in &report.iterations {
        let stored = files_holding(&iteration.run.work_dir, &value);
        assert!(stored.is_empty(), "{stored:?}");
    }
    // Nor the run store: the converge run, nor its scenario runs' steps and checks.
    let store = RunStore::open(engine.history_dir()).unwrap();
    let run = store.run(&report.run_id).unwrap().expect("stored");
    assert!(!run.children.is_empty());
    leaks(
        "the stored converge run",
        &serde_json::to_string(&run).unwrap(),
    );
    for child in &run.children {
        let detail = store.run(&child.id).unwrap().expect("stored");
        assert!(!detail.steps.is_empty());
        leaks(
            "a stored scenario run",
            &serde_json::to_string(&detail).unwrap(),
        );
    }
    nothing_left(&engine, "secret-task.yaml");
}

/// An image whose nodes cannot boot, for real: a saved copy of a healthy
/// node with systemd moved out of the way. Removed when dropped.
struct UnbootableImage<'a> {
    engine: &'a Engine,
    name: String,
    systemd: std::path::PathBuf,
}

impl<'a> UnbootableImage<'a> {
    fn new(engine: &'a Engine, name: &str) -> Self {
        let topology = task(MARKER_TASK, &format!("{name}-source")).topology;
        let cluster = engine
            .up(
                rehearse_sandbox::UpRequest {
                    topology,
                    ttl: Duration::from_secs(600),
                    boot_timeout: Duration::from_secs(60),
                    source: format!("{name}-source"),
                    ownership: rehearse_sandbox::Ownership::ThisProcess,
                },
                &|_| {},
            )
            .expect("a healthy cluster boots");
        let saved = engine.save(&cluster.id, "node1", name);
        engine.down(&cluster.id).expect("the source cluster goes");
        let image = saved.expect("the node is saved as an image");
        let systemd = image.rootfs().join("usr/lib/systemd/systemd");
        let image = UnbootableImage {
            engine,
            name: name.to_owned(),
            systemd,
        };
        image.set_broken(true);
        image
    }

    fn set_broken(&self, broken: bool) {
        let away = self.systemd.with_extension("away");
        let (from, to) = if broken {
            (&self.systemd, &away)
        } else {
            (&away, &self.systemd)
        };
        if from.exists() {
            std::fs::rename(from, to).expect("systemd moves");
        }
    }
}

impl Drop for UnbootableImage<'_> {
    fn drop(&mut self) {
        if let Ok(Some(image)) = self.engine.images().by_name(&self.name) {
            let _ = self.engine.images().remove(&image);
        }
    }
}

#[test]
fn a_node_that_does_not_boot_is_never_charged_to_the_code() {
    let engine = engine();
    let name = format!("converge-noboot-{}", std::process::id());
    let image = UnbootableImage::new(&engine, &name);
    let task_yaml = MARKER_TASK
        .replace(
            "nodes: 1",
            &format!("nodes:\n  - {{name: node1, image: {name}}}"),
        )
        .replace("max_iterations: 3", "max_iterations: 1");
    let good = "#!/bin/bash\nset -euo pipefail\necho converged > /etc/rehearse-ok\n";

    // The image stays broken: every rerun fails to boot, and the run ends as
    // a platform error after the bounded reruns, the code never judged.
    let server = FakeServer::start(vec![bash(good)]);
    let provider = model(&server);
    let report = converge(
        &engine,
        &task(&task_yaml, "noboot-task.yaml"),
        Some(&provider as &dyn Provider),
        &|m| eprintln!("{m}"),
        store(&engine),
    )
    .expect("the loop runs");
    assert_eq!(report.verdict, Verdict::PlatformError, "{}", report.summary);
    assert!(report.iterations.is_empty(), "no iteration is charged");
    assert_eq!(
        report.platform_failures.len() as u32,
        rehearse_converge::platform::PLATFORM_RETRIES + 1
    );
    assert!(report.platform_failures.iter().all(|f| f.kind == "boot"));
    assert!(
        report.summary.contains("a node did not boot"),
        "{}",
        report.summary
    );
    assert_eq!(
        server.requests().len(),
        1,
        "the model is never told its code failed"
    );
    let stored = RunStore::open(engine.history_dir())
        .unwrap()
        .run(&report.run_id)
        .unwrap()
        .unwrap();
    assert_eq!(stored.run.outcome, "platform_error");
    nothing_left(&engine, "noboot-task.yaml");

    // The platform recovers after the first failure: the rerun boots, and
    // the one iteration the budget allows is the one that passes.
    let server = FakeServer::start(vec![bash(good)]);
    let provider = model(&server);
    let repaired = std::sync::atomic::AtomicBool::new(false);
    let report = converge(
        &engine,
        &task(&task_yaml, "noboot-once-task.yaml"),
        Some(&provider as &dyn Provider),
        &|m| {
            eprintln!("{m}");
            if m.starts_with("platform failure")
                && !repaired.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                image.set_broken(false);
            }
        },
        store(&engine),
    )
    .expect("the loop runs");
    assert_eq!(report.verdict, Verdict::Converged, "{}", report.summary);
    assert_eq!(report.iterations.len(), 1);
    assert_eq!(report.platform_failures.len(), 1);
    assert_eq!(report.platform_failures[0].iteration, 1);
    assert_eq!(server.requests().len(), 1);
    nothing_left(&engine, "noboot-once-task.yaml");
}
