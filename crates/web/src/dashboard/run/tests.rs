use rehearse_checks::{CheckResult, Status};
use rehearse_converge::eval::{EvalReport, Tally, TaskResult};
use rehearse_runner::{Pass, StepReport};
use rehearse_scenario::{
    Finding, FindingKind, Idempotence, MatrixReport, Outcome, PlatformReport, RunReport, Timings,
};
use rehearse_store::{CommandRow, ConvergeDetail, IterationRecord, RunDetail, RunRow};

fn run(id: &str, kind: &str, outcome: &str, role: Option<&str>) -> RunRow {
    RunRow {
        id: id.into(),
        kind: kind.into(),
        name: "web <tier>".into(),
        file: "task.yaml".into(),
        parent_id: role.map(|_| "c1".into()),
        role: role.map(str::to_owned),
        started_at_ms: 1_714_568_645_000,
        updated_at_ms: 1_714_568_650_000,
        finished_at_ms: Some(1_714_568_650_000),
        outcome: outcome.into(),
        summary: None,
        cluster_id: None,
        report_path: None,
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: None,
        host: None,
    }
}

fn iteration(number: u32, code: &str, outcome: &str) -> IterationRecord {
    IterationRecord {
        number,
        origin: "model".into(),
        code: code.into(),
        outcome: outcome.into(),
        scenario_run_id: format!("s{number}"),
        failure: None,
        recovery_path: None,
        reason: None,
        fix_rule: None,
        duration_ms: 2_500,
        llm_calls: vec![],
        commands: vec![],
        checks: vec![],
    }
}

#[test]
fn troubleshooting_commands_the_proof_and_the_distilled_script_are_shown() {
    let mut first = iteration(
        1,
        "apt-get install nginx\nsystemctl start nginx\n",
        "failed",
    );
    first.recovery_path = Some("troubleshoot".into());
    first.reason = Some("the code ran but <nginx> is down".into());
    first.commands = vec![
        CommandRow {
            node: "web1".into(),
            command: "journalctl -u nginx | tail -n 5".into(),
            why: "see why it stopped".into(),
            exit_code: Some(0),
            output: "bind() to 0.0.0.0:80 failed".into(),
            duration_ms: 120,
            refused: None,
        },
        CommandRow {
            node: "web1".into(),
            command: "rm -rf /".into(),
            why: "start over".into(),
            exit_code: None,
            output: String::new(),
            duration_ms: 0,
            refused: Some("destroys the node".into()),
        },
    ];
    let second = iteration(
        2,
        "apt-get install nginx\nsystemctl restart nginx\n",
        "passed",
    );
    let detail = RunDetail {
        run: run("c1", "converge", "converged", None),
        report: None,
        steps: vec![],
        checks: vec![],
        converge: Some(ConvergeDetail {
            goal: "Serve a page".into(),
            language: "bash".into(),
            model: Some("openai/fake".into()),
            converged: true,
            script: Some(second.code.clone()),
            distilled: Some("systemctl restart nginx\n".into()),
            proof_outcome: Some("passed".into()),
            iterations: vec![first, second],
        }),
        children: vec![
            run("s1", "scenario", "failed", Some("iteration 1")),
            run("s2", "scenario", "passed", Some("iteration 2")),
            run("p1", "scenario", "passed", Some("proof")),
        ],
    };
    let html = super::body(&detail);
    assert!(html.contains("web &lt;tier&gt;"), "names are escaped");
    assert!(html.contains(
        "Recovery: <strong>troubleshoot</strong> — the code ran but &lt;nginx&gt; is down"
    ));
    assert!(html.contains("web1$ journalctl -u nginx | tail -n 5"));
    assert!(html.contains("bind() to 0.0.0.0:80 failed"));
    assert!(html.contains("Refused: destroys the node"));
    assert!(html.contains("<span class=\"del\">- systemctl start nginx</span>"));
    assert!(html.contains("<span class=\"add\">+ systemctl restart nginx</span>"));
    assert!(html.contains("Distilled script"));
    assert!(
        html.contains("href=\"/runs/p1\">run p1</a>"),
        "the proof run is linked"
    );
    assert!(
        html.contains("href=\"/runs/s1\""),
        "iteration runs are linked"
    );
}

fn step(ok: bool) -> StepReport {
    StepReport {
        name: "install".into(),
        kind: "shell".into(),
        pass: Pass::First,
        ok,
        duration_ms: 10,
        nodes: vec![],
        ansible: None,
        error: None,
        hang_state: vec![],
        log_dir: None,
    }
}

fn check(status: Status) -> CheckResult {
    CheckResult {
        name: "nginx".into(),
        node: "web1".into(),
        kind: "service".into(),
        subject: "nginx".into(),
        status,
        expected: serde_json::Value::Bool(true),
        actual: serde_json::Value::Bool(true),
        message: String::new(),
        attempts: 1,
        duration_ms: 5,
    }
}

fn idempotence(passed: bool) -> Idempotence {
    Idempotence {
        steps: vec![],
        failed_runs: vec![],
        changes: vec![],
        checks: vec![],
        broken_checks: vec![],
        unavailable: vec![],
        changed: vec![],
        allowed: vec![],
        passed,
    }
}

fn platform(
    name: &str,
    outcome: Outcome,
    steps: Vec<StepReport>,
    checks: Vec<CheckResult>,
    idempotence: Option<Idempotence>,
    hygiene: Vec<Finding>,
) -> PlatformReport {
    PlatformReport {
        platform: name.into(),
        report: RunReport {
            run_id: format!("r-{name}"),
            scenario: "web".into(),
            file: "scenario.yaml".into(),
            outcome,
            cluster: None,
            from_pool: false,
            kept: false,
            how_to_get_in: None,
            nodes: vec![],
            steps,
            checks,
            idempotence,
            reboot_checks: None,
            confidence: None,
            hygiene,
            error: None,
            timings: Timings::default(),
            work_dir: "/tmp".into(),
        },
    }
}

#[test]
fn a_matrix_run_shows_platform_by_steps_checks_idempotence_and_hygiene() {
    let report = MatrixReport {
        run_id: "m1".into(),
        scenario: "web".into(),
        file: "scenario.yaml".into(),
        outcome: Outcome::Failed,
        jobs: 2,
        total_ms: 1_000,
        platforms: vec![
            platform(
                "debian-12",
                Outcome::Passed,
                vec![step(true), step(true)],
                vec![check(Status::Passed), check(Status::Passed)],
                Some(idempotence(true)),
                vec![],
            ),
            platform(
                "ubuntu-24.04",
                Outcome::Failed,
                vec![step(true), step(false)],
                vec![check(Status::Passed), check(Status::Failed)],
                None,
                vec![Finding {
                    kind: FindingKind::LeftoverFile,
                    node: "web1".into(),
                    location: "/tmp/x".into(),
                    detail: "left behind".into(),
                }],
            ),
        ],
    };
    let mut matrix = run("m1", "scenario", "failed", None);
    matrix.role = Some("matrix of debian-12, ubuntu-24.04".into());
    let detail = RunDetail {
        run: matrix,
        report: Some(serde_json::to_string(&report).unwrap()),
        steps: vec![],
        checks: vec![],
        converge: None,
        children: vec![
            run("r1", "scenario", "passed", Some("platform debian-12")),
            run("r2", "scenario", "failed", Some("platform ubuntu-24.04")),
        ],
    };
    let html = super::body(&detail);
    assert!(html.contains("<h2>Platforms</h2>"), "{html}");
    assert!(
        html.contains(
            "<strong>debian-12</strong></td><td>2/2</td><td>2/2</td><td>passed</td><td>0</td>"
        ),
        "{html}"
    );
    assert!(
        html.contains(
            "<strong>ubuntu-24.04</strong></td><td>1/2</td><td>1/2</td><td>-</td><td>1</td>"
        ),
        "{html}"
    );
    assert!(
        html.contains("href=\"/runs/r2\""),
        "each platform's run is linked"
    );
    assert!(
        !html.contains("<h2>Steps</h2>"),
        "a matrix has no steps of its own"
    );
}

#[test]
fn an_evaluation_shows_tasks_by_pass_rate_and_links_every_attempt() {
    let tally = |attempts: usize, converged: usize| Tally {
        attempts,
        converged,
        pass_rate: converged as f64 / attempts as f64,
        mean_iterations: 1.5,
        recovery: [("retry".to_string(), 1)].into(),
        first_try: 1,
        platform_failures: 0,
        reasks: 0,
        wall_ms: 12_000,
        input_tokens: 300,
        output_tokens: 60,
        cost_usd: None,
    };
    let report = EvalReport {
        run_id: "e1".into(),
        model: Some("openai/fake".into()),
        attempts_per_task: 2,
        jobs: 1,
        min_pass_rate: 1.0,
        passed: false,
        total_ms: 24_000,
        tasks: vec![TaskResult {
            task: "nginx <site>".into(),
            file: "task.yaml".into(),
            platform: "debian-12".into(),
            tally: tally(2, 2),
        }],
        total: tally(3, 2),
        attempts: vec![],
    };
    let detail = RunDetail {
        run: run("e1", "eval", "failed", None),
        report: Some(serde_json::to_string(&report).unwrap()),
        steps: vec![],
        checks: vec![],
        converge: None,
        children: vec![
            run(
                "c1",
                "converge",
                "converged",
                Some("nginx <site> on debian-12, attempt 1"),
            ),
            run(
                "c2",
                "converge",
                "budget_exhausted",
                Some("nginx <site> on debian-12, attempt 2"),
            ),
        ],
    };
    let html = super::body(&detail);
    assert!(
        html.contains("<tr><td><strong>nginx &lt;site&gt;</strong></td><td>debian-12</td><td>2/2</td><td><strong>100.0%</strong></td><td>1.5</td><td>retry 1</td>"),
        "{html}"
    );
    assert!(
        html.contains(
            "<td><strong>all</strong></td><td></td><td>2/3</td><td><strong>66.7%</strong></td>"
        ),
        "{html}"
    );
    assert!(html.contains("required pass rate 100.0%"), "{html}");
    assert!(
        html.contains("href=\"/runs/c2\""),
        "each attempt's run is linked"
    );
    assert!(
        html.contains("nginx &lt;site&gt; on debian-12, attempt 2"),
        "{html}"
    );
    assert!(!html.contains("<h2>Steps</h2>"), "{html}");
}
