//! The store's behaviour, on SQLite and on a real PostgreSQL server: every
//! test runs once per backend (PostgreSQL in a database of its own, created
//! and dropped by the test).

use rehearse_store::{
    CheckRow, ClusterRow, CommandRow, ConvergeEnd, ConvergeStart, IterationRecord, LlmCallRecord,
    RunFilter, RunFinish, RunStart, RunStore, StepRow, StoreError, FILE_NAME, MIGRATIONS,
};

use rehearse_testkit::pg::PgDatabase;

enum Backend {
    /// The folder holding the database file, removed at the end.
    Sqlite {
        _dir: tempfile::TempDir,
    },
    Postgres(PgDatabase),
}

/// One fresh store per backend. In CI, PostgreSQL is required, not optional.
fn stores() -> Vec<(RunStore, Backend)> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = vec![(
        RunStore::open_file(&dir.path().join(FILE_NAME)).unwrap(),
        Backend::Sqlite { _dir: dir },
    )];
    if let Some(db) = PgDatabase::create() {
        let store = RunStore::connect(&db.url).unwrap();
        assert_eq!(store.backend(), "postgres");
        out.push((store, Backend::Postgres(db)));
    }
    out
}

fn start(id: &str, name: &str) -> RunStart {
    RunStart {
        id: id.into(),
        kind: "scenario".into(),
        name: name.into(),
        file: format!("examples/{name}/scenario.yaml"),
        parent_id: None,
        role: None,
    }
}

fn check(status: &str) -> CheckRow {
    CheckRow {
        phase: "checks".into(),
        node: "node1".into(),
        name: "file /etc/rehearse-ok".into(),
        kind: "file".into(),
        subject: "/etc/rehearse-ok".into(),
        status: status.into(),
        expected: r#"{"contains":["converged"]}"#.into(),
        actual: r#"{"exists":false}"#.into(),
        message: if status == "passed" {
            String::new()
        } else {
            "the file does not exist".into()
        },
        attempts: 3,
        duration_ms: 900,
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
        checks: vec![check("failed")],
    }
}

fn finish(outcome: &str) -> RunFinish {
    RunFinish {
        outcome: outcome.into(),
        summary: format!("the run {outcome}"),
        report: Some(r#"{"outcome":"x"}"#.into()),
        report_path: Some("/var/lib/rehearse/runs/x/report.json".into()),
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: None,
    }
}

#[test]
fn migrations_apply_once_and_reopening_changes_nothing() {
    let all: Vec<u32> = MIGRATIONS.iter().map(|m| m.version).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = RunStore::open(dir.path()).unwrap();
    assert_eq!(store.path(), Some(dir.path().join(FILE_NAME)));
    assert_eq!(store.schema_versions().unwrap(), all);
    store.start_run(&start("r1", "web")).unwrap();
    drop(store);
    let store = RunStore::open(dir.path()).unwrap();
    assert_eq!(store.schema_versions().unwrap(), all);
    assert_eq!(store.runs(&RunFilter::default()).unwrap().len(), 1);

    // The same on PostgreSQL, with two clients migrating at once.
    for (store, backend) in stores() {
        if let Backend::Postgres(db) = &backend {
            let url = db.url.clone();
            let others: Vec<_> = (0..3)
                .map(|_| {
                    let url = url.clone();
                    std::thread::spawn(move || RunStore::connect(&url).map(|s| s.schema_versions()))
                })
                .collect();
            for o in others {
                assert_eq!(o.join().unwrap().unwrap().unwrap(), all);
            }
            assert!(store.location().contains("***"), "{}", store.location());
        }
        assert_eq!(store.schema_versions().unwrap(), all);
    }
}

#[test]
fn a_scenario_run_reads_back_with_its_steps_and_checks() {
    for (store, _b) in stores() {
        store.start_run(&start("s1", "nginx-lb")).unwrap();
        store.set_run_cluster("s1", "abc123").unwrap();
        let step = StepRow {
            pass: "first".into(),
            name: "install nginx".into(),
            kind: "shell".into(),
            ok: true,
            nodes: vec!["web1".into(), "web2".into()],
            error: None,
            duration_ms: 3100,
            detail: r#"[{"node":"web1","exit_code":0}]"#.into(),
        };
        store.record_step("s1", &step).unwrap();
        let mut second = step.clone();
        second.pass = "second".into();
        second.ok = false;
        second.error = Some("web2: exit 1".into());
        store.record_step("s1", &second).unwrap();
        store
            .record_checks("s1", &[check("passed"), check("failed")])
            .unwrap();
        let mut after = check("passed");
        after.phase = "after_reboot".into();
        store.record_checks("s1", &[after.clone()]).unwrap();

        let running = store.run("s1").unwrap().unwrap();
        assert_eq!(running.run.outcome, "running", "{}", store.backend());
        assert_eq!(running.run.cluster_id.as_deref(), Some("abc123"));
        assert_eq!(running.report, None);

        store.finish_run("s1", &finish("failed")).unwrap();
        let detail = store.run("s1").unwrap().unwrap();
        assert_eq!(detail.run.outcome, "failed");
        assert!(detail.run.finished_at_ms.is_some());
        assert_eq!(detail.report.as_deref(), Some(r#"{"outcome":"x"}"#));
        assert_eq!(detail.steps, [step, second], "{}", store.backend());
        assert_eq!(detail.checks, [check("passed"), check("failed"), after]);
        assert_eq!(detail.converge, None);
        assert!(store.run("nope").unwrap().is_none());
        assert!(matches!(
            store.finish_run("nope", &finish("passed")),
            Err(StoreError::NoRun(_))
        ));
    }
}

#[test]
fn a_converge_run_holds_iterations_calls_commands_and_its_scenario_runs() {
    for (store, _b) in stores() {
        let run = RunStart {
            kind: "converge".into(),
            ..start("c1", "marker")
        };
        let goal = ConvergeStart {
            goal: "Write /etc/rehearse-ok".into(),
            language: "bash".into(),
            model: Some("openai/fake-model".into()),
        };
        store.start_converge(&run, &goal).unwrap();
        // Its iteration's scenario run points back at it.
        store
            .start_run(&RunStart {
                parent_id: Some("c1".into()),
                role: Some("iteration 1".into()),
                ..start("r1", "marker")
            })
            .unwrap();
        store.finish_run("r1", &finish("failed")).unwrap();
        let mut second = iteration(2);
        second.origin = "model-retry".into();
        second.outcome = "passed".into();
        second.failure = None;
        second.recovery_path = None;
        second.reason = None;
        second.commands.clear();
        second.checks = vec![check("passed")];
        for it in [iteration(1), second.clone()] {
            store.record_iteration("c1", &it).unwrap();
        }
        let end = ConvergeEnd {
            converged: true,
            script: Some("echo converged > /etc/rehearse-ok\n".into()),
            distilled: None,
            proof_outcome: Some("passed".into()),
        };
        store
            .finish_converge(
                "c1",
                &RunFinish {
                    input_tokens: 200,
                    output_tokens: 40,
                    cost_usd: Some(0.0024),
                    ..finish("converged")
                },
                &end,
            )
            .unwrap();

        let detail = store.run("c1").unwrap().unwrap();
        assert_eq!(detail.run.kind, "converge");
        assert_eq!(detail.run.outcome, "converged");
        assert_eq!(
            (detail.run.input_tokens, detail.run.output_tokens),
            (200, 40)
        );
        assert_eq!(detail.run.cost_usd, Some(0.0024));
        let c = detail.converge.expect("converge part");
        assert_eq!(
            (c.goal.as_str(), c.model.as_deref()),
            (goal.goal.as_str(), Some("openai/fake-model"))
        );
        assert!(c.converged);
        assert_eq!(c.script, end.script);
        assert_eq!(c.iterations, [iteration(1), second], "{}", store.backend());
        assert_eq!(detail.children.len(), 1);
        assert_eq!(detail.children[0].role.as_deref(), Some("iteration 1"));

        // Lists show top-level runs unless asked for the children.
        let top: Vec<_> = store.runs(&RunFilter::default()).unwrap();
        assert_eq!(
            top.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
            ["c1"]
        );
        let all = store
            .runs(&RunFilter {
                children: true,
                ..RunFilter::default()
            })
            .unwrap();
        assert_eq!(all.len(), 2);
    }
}

#[test]
fn an_iteration_is_stored_whole_or_not_at_all() {
    for (store, _b) in stores() {
        store
            .start_converge(
                &RunStart {
                    kind: "converge".into(),
                    ..start("c4", "marker")
                },
                &ConvergeStart::default(),
            )
            .unwrap();
        store.record_iteration("c4", &iteration(1)).unwrap();
        // The same number again violates the key: nothing of it may remain.
        let mut again = iteration(1);
        again.llm_calls.push(again.llm_calls[0].clone());
        assert!(store.record_iteration("c4", &again).is_err());
        let stored = store.converge("c4").unwrap().unwrap();
        assert_eq!(stored.iterations, [iteration(1)], "{}", store.backend());
        // And the connection is still usable after the rollback.
        store.record_iteration("c4", &iteration(2)).unwrap();
    }
}

#[test]
fn lists_filter_by_outcome_kind_name_and_date() {
    for (store, _b) in stores() {
        for (id, name, outcome) in [
            ("a", "nginx-lb", "passed"),
            ("b", "broken-nginx", "failed"),
            ("c", "ansible-lb", "passed"),
        ] {
            store.start_run(&start(id, name)).unwrap();
            store.finish_run(id, &finish(outcome)).unwrap();
        }
        store.start_run(&start("d", "nginx-lb")).unwrap();
        let ids = |f: RunFilter| -> Vec<String> {
            let mut v: Vec<_> = store.runs(&f).unwrap().into_iter().map(|r| r.id).collect();
            v.sort();
            v
        };
        assert_eq!(
            ids(RunFilter {
                outcome: Some("passed".into()),
                ..Default::default()
            }),
            ["a", "c"]
        );
        assert_eq!(
            ids(RunFilter {
                name: Some("NGINX".into()),
                ..Default::default()
            }),
            ["a", "b", "d"]
        );
        assert_eq!(
            ids(RunFilter {
                outcome: Some("running".into()),
                ..Default::default()
            }),
            ["d"]
        );
        assert!(ids(RunFilter {
            kind: Some("converge".into()),
            ..Default::default()
        })
        .is_empty());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        assert!(ids(RunFilter {
            since_ms: Some(now + 60_000),
            ..Default::default()
        })
        .is_empty());
        assert_eq!(
            ids(RunFilter {
                until_ms: Some(now + 60_000),
                limit: Some(2),
                ..Default::default()
            })
            .len(),
            2
        );
        // Live views ask for what changed after a time.
        let before = store.run_row("d").unwrap().unwrap().updated_at_ms;
        std::thread::sleep(std::time::Duration::from_millis(5));
        store.record_checks("d", &[check("passed")]).unwrap();
        assert_eq!(
            ids(RunFilter {
                updated_after_ms: Some(before),
                ..Default::default()
            }),
            ["d"]
        );
    }
}

#[test]
fn removal_and_retention_spare_what_is_still_referenced() {
    for (store, _b) in stores() {
        store
            .start_converge(
                &RunStart {
                    kind: "converge".into(),
                    ..start("conv", "marker")
                },
                &ConvergeStart::default(),
            )
            .unwrap();
        store
            .start_run(&RunStart {
                parent_id: Some("conv".into()),
                role: Some("proof".into()),
                ..start("proof", "marker")
            })
            .unwrap();
        store.record_checks("proof", &[check("passed")]).unwrap();
        store.finish_run("proof", &finish("passed")).unwrap();
        store.start_run(&start("kept", "broken-nginx")).unwrap();
        store.set_run_cluster("kept", "c0ffee").unwrap();
        store.finish_run("kept", &finish("failed")).unwrap();
        store.start_run(&start("live", "nginx-lb")).unwrap();

        // A running converge run, its child, and a running run are refused.
        let refused = |id: &str| match store.delete_run(id) {
            Err(StoreError::Referenced { why, .. }) => why,
            other => panic!("{id}: {other:?}"),
        };
        assert!(refused("conv").contains("running"));
        assert!(refused("proof").contains("converge run conv"));
        assert!(refused("live").contains("running"));
        assert!(matches!(
            store.delete_run("nope"),
            Err(StoreError::NoRun(_))
        ));

        store
            .finish_converge("conv", &finish("converged"), &ConvergeEnd::default())
            .unwrap();
        // Retention: everything is older than "later", but the run whose
        // cluster is still up stays, and so does the running one.
        let later = i64::MAX / 2;
        let pruned = store.prune(later, &["c0ffee".into()]).unwrap();
        let mut ids = pruned.ids.clone();
        ids.sort();
        assert_eq!(ids, ["conv", "proof"], "{}", store.backend());
        assert!(pruned.report_paths.len() == 2);
        assert!(
            store.run("proof").unwrap().is_none(),
            "children go with their run"
        );
        assert!(store.checks("proof").unwrap().is_empty());
        let left: Vec<_> = store
            .runs(&RunFilter::default())
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(left, ["live", "kept"]);
        // Once its cluster is gone, the kept run can go.
        assert_eq!(store.prune(later, &[]).unwrap().ids, ["kept"]);
        assert!(store.delete_run("live").is_err());
    }
}

#[test]
fn clusters_and_metrics_aggregate_across_runs() {
    for (store, _b) in stores() {
        for (id, boot) in [("aaa111", 380u64), ("bbb222", 420)] {
            store
                .record_cluster(&ClusterRow {
                    id: id.into(),
                    run_id: None,
                    source: "rehearse up".into(),
                    backend: "nspawn".into(),
                    nodes: 4,
                    addresses: vec!["node1=10.213.0.2".into(), "node2=10.213.0.3".into()],
                    created_at_ms: 1_700_000_000_000 + boot as i64,
                    boot_ms: boot,
                    destroyed_at_ms: None,
                    destroyed_reason: None,
                    host: None,
                })
                .unwrap();
        }
        store.cluster_destroyed("aaa111").unwrap();
        let clusters = store.clusters(10).unwrap();
        assert_eq!(clusters.len(), 2);
        assert_eq!(clusters[0].id, "bbb222", "newest first");
        assert!(clusters[1].destroyed_at_ms.is_some());
        assert_eq!(clusters[0].addresses.len(), 2);

        store.start_run(&start("s", "web")).unwrap();
        store
            .record_checks("s", &[check("passed"), check("failed"), check("failed")])
            .unwrap();
        store.finish_run("s", &finish("failed")).unwrap();
        store
            .start_converge(
                &RunStart {
                    kind: "converge".into(),
                    ..start("c", "marker")
                },
                &ConvergeStart {
                    model: Some("openai/m".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        store.record_iteration("c", &iteration(1)).unwrap();
        store.record_iteration("c", &iteration(2)).unwrap();
        store
            .finish_converge("c", &finish("budget_exhausted"), &ConvergeEnd::default())
            .unwrap();

        let m = store.metrics().unwrap();
        let mut boots = m.cluster_boot_ms.clone();
        boots.sort();
        assert_eq!(boots, [380, 420]);
        assert_eq!(m.runs.get(&["scenario", "failed"]), 1);
        assert_eq!(m.runs.get(&["converge", "budget_exhausted"]), 1);
        assert_eq!(m.iterations_per_converge, [2]);
        assert_eq!(m.recovery_paths.get(&["troubleshoot"]), 2);
        assert_eq!(m.checks.get(&["file", "failed"]), 2);
        assert_eq!(m.checks.get(&["file", "passed"]), 1);
        assert_eq!(m.llm_tokens.get(&["openai/m", "input"]), 200);
        assert_eq!(m.llm_tokens.get(&["openai/m", "output"]), 40);
        assert_eq!(
            m.llm_latency_ms,
            [("openai/m".to_string(), 35), ("openai/m".to_string(), 35)]
        );
    }
}

#[test]
fn a_bad_url_says_which_server_and_what_to_check() {
    let err = RunStore::connect("postgresql://rehearse:hunter2@127.0.0.1:1/none")
        .expect_err("nothing listens on port 1");
    let msg = err.to_string();
    assert!(msg.contains("127.0.0.1:1"), "{msg}");
    assert!(!msg.contains("hunter2"), "the password stays out: {msg}");
    assert!(msg.contains("REHEARSE_DATABASE_URL"), "{msg}");
}

/// Where the helper below starts a run and exits without ending it.
const LEAVE_RUNNING_ENV: &str = "REHEARSE_TEST_LEAVE_A_RUN_RUNNING";

/// Not a check of its own: run by the test below as a separate process, it
/// starts a run and dies without ending it. Does nothing otherwise.
#[test]
fn helper_process_that_leaves_a_run_running() {
    let Ok(url) = std::env::var(LEAVE_RUNNING_ENV) else {
        return;
    };
    let store = RunStore::connect(&url).unwrap();
    store.start_run(&start("left-running", "killed")).unwrap();
}

#[test]
fn a_run_whose_process_died_reads_aborted_saying_why() {
    for (store, backend) in stores() {
        let url = match &backend {
            Backend::Sqlite { .. } => store.location().to_owned(),
            Backend::Postgres(db) => db.url.clone(),
        };
        store.start_run(&start("still-going", "alive")).unwrap();
        let helper = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "helper_process_that_leaves_a_run_running"])
            .env(LEAVE_RUNNING_ENV, &url)
            .output()
            .unwrap();
        assert!(helper.status.success(), "{helper:?}");

        // Listing finds the dead process's run and says so; the live one runs on.
        let runs = store.runs(&RunFilter::default()).unwrap();
        let left = runs.iter().find(|r| r.id == "left-running").unwrap();
        assert_eq!(left.outcome, rehearse_store::ABORTED, "{}", store.backend());
        let summary = left.summary.as_deref().unwrap();
        assert!(summary.contains("killed or crashed"), "{summary}");
        assert!(left.finished_at_ms.is_some());
        let going = runs.iter().find(|r| r.id == "still-going").unwrap();
        assert_eq!(going.outcome, "running");
        // Once aborted, told once, and removable like any ended run.
        assert!(store.abort_dead_runs().unwrap().is_empty());
        store.delete_run("left-running").unwrap();
    }
}

#[test]
fn an_evaluation_holds_its_converge_runs_and_goes_with_them() {
    for (store, _b) in stores() {
        store
            .start_run(&RunStart {
                kind: "eval".into(),
                ..start("e1", "eval of 1 task(s)")
            })
            .unwrap();
        store
            .start_converge(
                &RunStart {
                    kind: "converge".into(),
                    parent_id: Some("e1".into()),
                    role: Some("marker on debian-12, attempt 1".into()),
                    ..start("c1", "marker")
                },
                &ConvergeStart::default(),
            )
            .unwrap();
        store
            .start_run(&RunStart {
                parent_id: Some("c1".into()),
                role: Some("iteration 1".into()),
                ..start("r1", "marker")
            })
            .unwrap();
        for id in ["r1", "c1", "e1"] {
            store.finish_run(id, &finish("passed")).unwrap();
        }
        let eval = store.run("e1").unwrap().unwrap();
        assert_eq!(eval.run.kind, "eval");
        assert_eq!(eval.children.len(), 1);
        assert_eq!(eval.children[0].id, "c1");
        assert_eq!(
            eval.children[0].role.as_deref(),
            Some("marker on debian-12, attempt 1")
        );
        let top: Vec<String> = store
            .runs(&RunFilter::default())
            .unwrap()
            .into_iter()
            .map(|r| r.id)
            .collect();
        assert_eq!(top, ["e1"], "attempts are listed under their evaluation");
        match store.delete_run("c1") {
            Err(StoreError::Referenced { why, .. }) => {
                assert!(why.contains("of eval run e1"), "{why}")
            }
            other => panic!("{other:?}"),
        }
        let deleted = store.delete_run("e1").unwrap();
        assert_eq!(deleted.ids.len(), 2, "{:?}", deleted.ids);
        assert!(
            store.run("r1").unwrap().is_none(),
            "the attempt's own runs go too"
        );
    }
}

#[test]
fn a_fresh_sqlite_store_opened_by_many_at_once_takes_every_run() {
    for round in 0..30 {
        let dir = tempfile::tempdir().unwrap();
        let opened: Vec<_> = (0..4)
            .map(|i| {
                let dir = dir.path().to_owned();
                std::thread::spawn(move || {
                    let store = RunStore::open_file(&dir.join(FILE_NAME))?;
                    store.start_run(&start(&format!("r{i}"), "web"))
                })
            })
            .collect();
        for o in opened {
            o.join()
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}: {e}"));
        }
        let store = RunStore::open_file(&dir.path().join(FILE_NAME)).unwrap();
        assert_eq!(store.runs(&RunFilter::default()).unwrap().len(), 4);
    }
}
