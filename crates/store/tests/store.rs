use rehearse_store::{
    CheckRow, CommandRow, IterationRecord, LlmCallRecord, RunEnd, RunRecord, Store, FILE_NAME,
    MIGRATIONS,
};

fn run(id: &str, started_at_ms: i64) -> RunRecord {
    RunRecord {
        id: id.into(),
        task: "marker".into(),
        task_file: "tasks/marker.yaml".into(),
        goal: "Write /etc/rehearse-ok".into(),
        language: "bash".into(),
        model: Some("openai/fake-model".into()),
        started_at_ms,
        outcome: "running".into(),
        end: None,
        iterations: Vec::new(),
    }
}

fn iteration(number: u32) -> IterationRecord {
    IterationRecord {
        number,
        origin: "model".into(),
        code: "#!/bin/bash\nif then fi\n".into(),
        outcome: "failed".into(),
        scenario_run_id: format!("r{number}"),
        failure: Some("syntax error near unexpected token `then'".into()),
        recovery_path: Some("troubleshoot".into()),
        reason: Some("the code is wrong as written".into()),
        fix_rule: None,
        duration_ms: 4210,
        llm_calls: vec![LlmCallRecord {
            purpose: "write the code".into(),
            prompt: r#"[{"role":"user","content":"Write bash"}]"#.into(),
            response: "```bash\nif then fi\n```".into(),
            input_tokens: 100,
            output_tokens: 20,
            latency_ms: 35,
            cost_usd: Some(0.0012),
        }],
        commands: vec![
            CommandRow {
                node: "node1".into(),
                command: "cat /etc/rehearse-ok".into(),
                why: "look".into(),
                exit_code: Some(1),
                output: "No such file or directory".into(),
                duration_ms: 12,
                refused: None,
            },
            CommandRow {
                node: "node1".into(),
                command: "reboot -f".into(),
                why: "start over".into(),
                exit_code: None,
                output: String::new(),
                duration_ms: 0,
                refused: Some("forceful".into()),
            },
        ],
        checks: vec![CheckRow {
            node: "node1".into(),
            name: "file /etc/rehearse-ok".into(),
            kind: "file".into(),
            subject: "/etc/rehearse-ok".into(),
            status: "failed".into(),
            expected: r#"{"contains":["converged"]}"#.into(),
            actual: r#"{"exists":false}"#.into(),
            message: "the file does not exist".into(),
            attempts: 3,
            duration_ms: 900,
        }],
    }
}

#[test]
fn migrations_apply_once_and_reopening_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.path(), dir.path().join(FILE_NAME));
    assert_eq!(store.schema_versions().unwrap(), all);
    store.start_run(&run("c1", 1)).unwrap();
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.schema_versions().unwrap(), all);
    assert_eq!(store.runs().unwrap().len(), 1, "reopening keeps the data");
}

#[test]
fn a_run_with_iterations_calls_commands_and_checks_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    let mut expected = run("c2", 1_700_000_000_000);
    store.start_run(&expected).unwrap();
    assert_eq!(
        store.run("c2").unwrap().unwrap(),
        expected,
        "running, no end"
    );

    let mut second = iteration(2);
    second.origin = "model-retry".into();
    second.outcome = "passed".into();
    second.failure = None;
    second.recovery_path = None;
    second.reason = None;
    second.commands.clear();
    second.checks[0].status = "passed".into();
    second.checks[0].message = String::new();
    for it in [iteration(1), second] {
        store.record_iteration("c2", &it).unwrap();
        expected.iterations.push(it);
    }
    let end = RunEnd {
        finished_at_ms: 1_700_000_060_000,
        outcome: "converged".into(),
        converged: true,
        summary: "converged in 2 iteration(s)".into(),
        script: Some("echo converged > /etc/rehearse-ok\n".into()),
        distilled: None,
        proof_outcome: Some("passed".into()),
        report_path: Some("/var/lib/rehearse/converge/c2/report.json".into()),
        input_tokens: 200,
        output_tokens: 40,
        cost_usd: None,
    };
    store.finish_run("c2", &end).unwrap();
    expected.outcome = "converged".into();
    expected.end = Some(end);

    assert_eq!(store.run("c2").unwrap().unwrap(), expected);
    assert_eq!(store.run("nope").unwrap(), None);
    store.start_run(&run("c3", 1_700_000_100_000)).unwrap();
    let ids: Vec<String> = store.runs().unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["c3", "c2"], "newest first");
}

#[test]
fn an_iteration_is_stored_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(dir.path()).unwrap();
    store.start_run(&run("c4", 1)).unwrap();
    store.record_iteration("c4", &iteration(1)).unwrap();
    // The same number again violates the key: nothing of it may remain.
    let mut again = iteration(1);
    again.llm_calls.push(again.llm_calls[0].clone());
    assert!(store.record_iteration("c4", &again).is_err());
    let stored = store.run("c4").unwrap().unwrap();
    assert_eq!(stored.iterations, [iteration(1)]);
}
