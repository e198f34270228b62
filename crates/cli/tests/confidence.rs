//! The confidence phase of `rehearse run`: faults, load and probes on a real
//! cluster, and load results that react to a fault.

mod common;

use common::{run_json, write};

#[test]
fn the_balancer_survives_losing_a_backend_under_load() {
    common::require_root();
    let example = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/nginx-lb-failover"
    );
    let (code, report) = run_json(&["run", example]);
    assert_eq!(code, 0, "{report}");
    let c = &report["confidence"];
    let fault = &c["faults"][0];
    assert!(
        fault["healed_ms"].as_u64() > fault["injected_ms"].as_u64(),
        "{fault}"
    );
    assert_eq!(fault["checks"][0]["status"], "passed", "{fault}");
    let load = &c["loads"][0];
    assert!(load["ok"].as_u64().unwrap() >= 100, "{load}");
    assert!(
        load["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["status"] == "passed"),
        "{load}"
    );
}

#[test]
fn load_results_react_to_a_fault_that_takes_the_service_down() {
    common::require_root();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "rehearse.yaml",
        "\
nodes: [web, client]
steps:
  - on: web
    shell: |
      printf '[Service]\\nExecStart=/usr/bin/python3 -m http.server 80\\n' > /etc/systemd/system/web.service
      systemctl daemon-reload
      systemctl start web
      for i in $(seq 50); do bash -c '</dev/tcp/127.0.0.1/80' 2>/dev/null && break; sleep 0.1; done
load:
  - from: client
    url: http://web/
    duration: 6s
    concurrency: 2
    expect: {error_rate: 5}
faults:
  - stop_service: {node: web, service: web}
    at: 2s
    heal_after: 2s
",
    );
    let (code, report) = run_json(&["run", file.to_str().unwrap(), "--no-idempotence"]);
    assert_eq!(code, 1, "the load's error rate bound fails: {report}");
    let load = &report["confidence"]["loads"][0];
    assert!(load["failed"].as_u64().unwrap() > 0, "{load}");
    assert!(
        load["ok"].as_u64().unwrap() > 0,
        "before and after the fault requests succeed: {load}"
    );
    assert_eq!(load["checks"][0]["status"], "failed", "{load}");
    let timeline = load["timeline"].as_array().unwrap();
    assert!(
        timeline.first().unwrap()["failed"] == 0,
        "no failure before the fault: {load}"
    );
}
