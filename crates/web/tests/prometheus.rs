//! A real Prometheus server (Debian's `prometheus`, started by the test on
//! loopback) scrapes `/metrics` of a real server over a run store holding
//! runs, with the bearer token, and the metrics are queried back through
//! Prometheus' HTTP API.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rehearse_store::{
    CheckRow, ClusterRow, ConvergeEnd, ConvergeStart, IterationRecord, LlmCallRecord, RunFinish,
    RunStart, Store,
};

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn check(status: &str) -> CheckRow {
    CheckRow {
        phase: "checks".into(),
        node: "web1".into(),
        name: "http http://web1/".into(),
        kind: "http".into(),
        subject: "http://web1/".into(),
        status: status.into(),
        expected: r#"{"status":200}"#.into(),
        actual: r#"{"status":502}"#.into(),
        message: String::new(),
        attempts: 1,
        duration_ms: 40,
    }
}

/// Runs as the engine records them: two clusters, a failed scenario run, a
/// converge run of three iterations through two recovery paths.
fn fill(store: &Store) {
    for (id, boot_ms) in [("aaa111", 380), ("bbb222", 1400)] {
        store
            .record_cluster(&ClusterRow {
                id: id.into(),
                run_id: None,
                source: "rehearse up".into(),
                backend: "nspawn".into(),
                nodes: 3,
                addresses: vec![],
                created_at_ms: 1,
                boot_ms,
                destroyed_at_ms: None,
                destroyed_reason: None,
                host: None,
            })
            .unwrap();
    }
    let scenario = RunStart {
        id: "s1".into(),
        kind: "scenario".into(),
        name: "nginx-lb".into(),
        file: "examples/nginx-lb/scenario.yaml".into(),
        ..RunStart::default()
    };
    store.start_run(&scenario).unwrap();
    store
        .record_checks("s1", &[check("passed"), check("failed")])
        .unwrap();
    store
        .finish_run(
            "s1",
            &RunFinish {
                outcome: "failed".into(),
                ..RunFinish::default()
            },
        )
        .unwrap();
    let converge = RunStart {
        id: "c1".into(),
        kind: "converge".into(),
        name: "marker".into(),
        file: "task.yaml".into(),
        ..RunStart::default()
    };
    store
        .start_converge(
            &converge,
            &ConvergeStart {
                model: Some("openai/fake-model".into()),
                ..ConvergeStart::default()
            },
        )
        .unwrap();
    for (n, path) in [(1, Some("retry")), (2, Some("troubleshoot")), (3, None)] {
        store
            .record_iteration(
                "c1",
                &IterationRecord {
                    number: n,
                    origin: "model".into(),
                    code: "true".into(),
                    outcome: if path.is_some() { "failed" } else { "passed" }.into(),
                    scenario_run_id: format!("r{n}"),
                    failure: None,
                    recovery_path: path.map(str::to_owned),
                    reason: None,
                    fix_rule: None,
                    duration_ms: 100,
                    llm_calls: vec![LlmCallRecord {
                        purpose: "write the code".into(),
                        prompt: "[]".into(),
                        response: "true".into(),
                        input_tokens: 1000,
                        output_tokens: 50,
                        latency_ms: 700,
                        cost_usd: None,
                    }],
                    commands: vec![],
                    checks: vec![],
                },
            )
            .unwrap();
    }
    store
        .finish_converge(
            "c1",
            &RunFinish {
                outcome: "converged".into(),
                ..RunFinish::default()
            },
            &ConvergeEnd {
                converged: true,
                ..ConvergeEnd::default()
            },
        )
        .unwrap();
}

/// One instant-vector query; `None` until Prometheus has the series.
fn query(prom: u16, q: &str) -> Option<f64> {
    let body: serde_json::Value = reqwest::blocking::Client::new()
        .get(format!("http://127.0.0.1:{prom}/api/v1/query"))
        .query(&[("query", q)])
        .timeout(Duration::from_secs(5))
        .send()
        .ok()?
        .json()
        .ok()?;
    assert_eq!(body["status"], "success", "{body}");
    let value = body["data"]["result"].get(0)?["value"][1]
        .as_str()?
        .to_owned();
    value.parse().ok()
}

#[test]
fn prometheus_scrapes_metrics_with_the_token_and_answers_queries() {
    let prometheus = "/usr/bin/prometheus";
    assert!(
        std::path::Path::new(prometheus).exists(),
        "Debian's prometheus package is needed: apt-get install prometheus (scripts/test.sh does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_file(&dir.path().join("runs.db")).unwrap();
    fill(&store);

    // The server, in this process, on a runtime of its own.
    let engine = rehearse_sandbox::Engine::new(&dir.path().join("state")).unwrap();
    let api = rehearse_api::Api::new(engine);
    let token = "metrics-token-for-the-test".to_string();
    let state = rehearse_web::AppState {
        api,
        store: Arc::new(store),
        fleet: None,
    };
    let router = rehearse_web::router(state, token.clone(), true, None);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        axum::serve(listener, router).await.unwrap();
    });

    // Without the token, /metrics is refused.
    let refused = reqwest::blocking::get(format!("http://{addr}/metrics")).unwrap();
    assert_eq!(refused.status(), 401);

    let prom_port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: rehearse\n    authorization:\n      credentials: {token}\n    static_configs:\n      - targets: ['{addr}']\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("prometheus.log")).unwrap();
    let _prom = Killed(
        Command::new(prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("tsdb").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus starts"),
    );

    let wanted = [
        (
            "rehearse_runs_total{kind=\"scenario\",outcome=\"failed\"}",
            1.0,
        ),
        (
            "rehearse_runs_total{kind=\"converge\",outcome=\"converged\"}",
            1.0,
        ),
        ("rehearse_cluster_boot_seconds_count", 2.0),
        ("rehearse_cluster_boot_seconds_bucket{le=\"0.5\"}", 1.0),
        ("rehearse_converge_iterations_sum", 3.0),
        ("rehearse_recovery_paths_total{path=\"troubleshoot\"}", 1.0),
        (
            "rehearse_check_results_total{kind=\"http\",status=\"failed\"}",
            1.0,
        ),
        (
            "rehearse_llm_tokens_total{direction=\"input\",model=\"openai/fake-model\"}",
            3000.0,
        ),
        (
            "rehearse_llm_latency_seconds_count{model=\"openai/fake-model\"}",
            3.0,
        ),
        ("rehearse_clusters_alive", 0.0),
        ("up{job=\"rehearse\"}", 1.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let last: Vec<_> = wanted
            .iter()
            .map(|(q, want)| (*q, *want, query(prom_port, q)))
            .collect();
        if last.iter().all(|(_, want, got)| *got == Some(*want)) {
            break;
        }
        if Instant::now() > deadline {
            let log =
                std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
            panic!(
                "Prometheus never had the expected values: {last:?}\nits log ends:\n{}",
                log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
