//! Attack probes on real clusters: each probe fails on a purpose-built
//! insecure fixture, naming what it found, and passes on the fixed one; and
//! `rehearse probe` / `rehearse load` on a live cluster.

mod common;

use serde_json::Value;

use common::{run_json, Cluster, Leftovers};

fn fixture(name: &str, variant: &str) -> String {
    format!(
        "{}/tests/fixtures/probes-{name}/{variant}.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Runs a fixture; asserts the steps and checks passed, the probes could all
/// be carried out, and nothing of the cluster is left on the host. Returns
/// the exit code and the probe reports.
fn run_fixture(name: &str, variant: &str) -> (i32, Vec<Value>) {
    common::require_root();
    let file = fixture(name, variant);
    let (code, report) = run_json(&["run", &file, "--no-idempotence"]);
    let steps = report["steps"].as_array().expect("steps");
    assert!(
        !steps.is_empty() && steps.iter().all(|s| s["ok"] == true),
        "the steps of {file} must pass: {report}"
    );
    assert!(
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "passed"),
        "the checks of {file} must pass: {report}"
    );
    let c = &report["confidence"];
    assert_eq!(c["errors"], serde_json::json!([]), "{report}");
    let id = report["cluster"].as_str().expect("cluster id");
    let left = Leftovers::of(id);
    assert!(left.is_empty(), "cluster {id} left {left:?}");
    (code, c["probes"].as_array().unwrap().clone())
}

fn checks(probe: &Value) -> Vec<&Value> {
    probe["checks"].as_array().unwrap().iter().collect()
}

fn failed(probe: &Value) -> Vec<&Value> {
    checks(probe)
        .into_iter()
        .filter(|c| c["status"] == "failed")
        .collect()
}

fn all_passed(probes: &[Value]) {
    for p in probes {
        assert!(!checks(p).is_empty(), "{p}");
        assert!(failed(p).is_empty(), "{p}");
    }
}

#[test]
fn ports_probe_finds_an_undeclared_open_port() {
    let (code, probes) = run_fixture("ports", "insecure");
    assert_eq!(code, 1, "{probes:?}");
    let f = failed(&probes[0]);
    assert_eq!(f.len(), 1, "{probes:?}");
    assert_eq!(f[0]["actual"]["open"], serde_json::json!([22, 80, 8081]));
    assert!(
        f[0]["message"].as_str().unwrap().contains("[8081]"),
        "{}",
        f[0]
    );

    let (code, probes) = run_fixture("ports", "fixed");
    assert_eq!(code, 0, "{probes:?}");
    all_passed(&probes);
    assert_eq!(
        checks(&probes[0])[0]["actual"]["open"],
        serde_json::json!([22, 80])
    );
}

#[test]
fn ssh_probe_finds_password_login() {
    let (code, probes) = run_fixture("ssh", "insecure");
    assert_eq!(code, 1, "{probes:?}");
    assert_eq!(probes.len(), 2);
    for probe in &probes {
        let f = failed(probe);
        assert_eq!(f.len(), 1, "{probe}");
        assert!(
            f[0]["actual"]["methods"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m == "password"),
            "{}",
            f[0]
        );
        assert_eq!(
            f[0]["actual"]["by_user"]["deploy"],
            serde_json::json!(["publickey", "password"]),
            "{}",
            f[0]
        );
    }
    // Everyone is offered passwords on server; on server2 only deploy is, and
    // asking as an unknown user would not have shown it.
    let second = failed(&probes[1]);
    assert_eq!(
        second[0]["actual"]["by_user"]["rehearse-probe"],
        serde_json::json!(["publickey"]),
        "{}",
        second[0]
    );
    assert!(
        second[0]["message"]
            .as_str()
            .unwrap()
            .ends_with("offers [\"password\"] login (to deploy)"),
        "{}",
        second[0]
    );

    let (code, probes) = run_fixture("ssh", "fixed");
    assert_eq!(code, 0, "{probes:?}");
    all_passed(&probes);
    for probe in &probes {
        assert_eq!(
            checks(probe)[0]["actual"]["methods"],
            serde_json::json!(["publickey"])
        );
    }
}

#[test]
fn internal_probe_finds_a_service_reachable_from_another_network() {
    let (code, probes) = run_fixture("internal", "insecure");
    assert_eq!(code, 1, "{probes:?}");
    // client is the only node outside `back`.
    let all = checks(&probes[0]);
    assert_eq!(all.len(), 1, "{probes:?}");
    assert_eq!(all[0]["node"], "client");
    assert_eq!(all[0]["status"], "failed");
    assert_eq!(all[0]["actual"]["reached"].as_array().unwrap().len(), 1);
    assert!(
        all[0]["message"]
            .as_str()
            .unwrap()
            .contains("client, which is not on back, reached api:9100"),
        "{}",
        all[0]
    );

    let (code, probes) = run_fixture("internal", "fixed");
    assert_eq!(code, 0, "{probes:?}");
    all_passed(&probes);
}

#[test]
fn files_probe_finds_world_writable_and_setuid_files_added_by_the_steps() {
    let (code, probes) = run_fixture("files", "insecure");
    assert_eq!(code, 1, "{probes:?}");
    let f = failed(&probes[0]);
    assert_eq!(f.len(), 2, "{probes:?}");
    assert_eq!(
        f[0]["actual"]["world_writable"],
        serde_json::json!(["/etc/app/app.conf"])
    );
    assert_eq!(
        f[1]["actual"]["setuid_setgid"],
        serde_json::json!(["/usr/local/bin/app-helper"])
    );

    let (code, probes) = run_fixture("files", "fixed");
    assert_eq!(code, 0, "{probes:?}");
    all_passed(&probes);
}

#[test]
fn tls_probe_finds_expired_misnamed_and_old_protocol_endpoints() {
    let (code, probes) = run_fixture("tls", "insecure");
    assert_eq!(code, 1, "{probes:?}");
    assert_eq!(probes.len(), 3);
    // Each endpoint has exactly one defect, and exactly that check fails.
    let expect = [
        ("web:4431", "valid 14 more days", "expired"),
        ("web:4432", "names web", "example.org"),
        ("web:4433", "no TLS 1.0/1.1", "TLSv1 and TLSv1.1"),
    ];
    for (probe, (subject, check, said)) in probes.iter().zip(expect) {
        let f = failed(probe);
        assert_eq!(f.len(), 1, "{subject}: {probe}");
        assert_eq!(f[0]["subject"], subject);
        assert!(f[0]["name"].as_str().unwrap().contains(check), "{}", f[0]);
        assert!(f[0]["message"].as_str().unwrap().contains(said), "{}", f[0]);
        assert_eq!(checks(probe).len(), 3, "{probe}");
    }

    let (code, probes) = run_fixture("tls", "fixed");
    assert_eq!(code, 0, "{probes:?}");
    all_passed(&probes);
}

#[test]
fn probe_and_load_verbs_on_a_live_cluster() {
    let c = Cluster::up(&["-n", "2"]);
    c.ok(
        "node1",
        "systemd-run -q --unit web python3 -m http.server 80 --directory /etc && \
         for i in $(seq 100); do ss -Hltn 'sport = :80' | grep -q . && break; sleep 0.05; done",
    );

    // The declared ports are exactly those open: exit 0.
    let (code, v) = run_json(&[
        "probe", &c.id, "ports", "node1", "--from", "node2", "--open", "22,80",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(
        v["checks"][0]["actual"]["open"],
        serde_json::json!([22, 80])
    );
    // One undeclared: exit 1, and the finding names it.
    let (code, v) = run_json(&[
        "probe", &c.id, "ports", "node1", "--from", "node2", "--open", "22",
    ]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["checks"][0]["status"], "failed", "{v}");
    assert!(
        v["checks"][0]["message"].as_str().unwrap().contains("[80]"),
        "{v}"
    );
    // Human output.
    let out = common::run(&["probe", &c.id, "files", "node1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("no setuid/setgid binary added on node1"),
        "{text}"
    );
    assert!(text.contains("no finding"), "{text}");

    // A bounded load that succeeds.
    let (code, v) = run_json(&[
        "load",
        &c.id,
        "http://node1/hostname",
        "--from",
        "node2",
        "--requests",
        "60",
        "--duration",
        "30s",
        "--concurrency",
        "3",
        "--error-rate",
        "0",
        "--min-ok",
        "60",
    ]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["requests"], 60, "{v}");
    assert_eq!(v["ok"], 60, "{v}");
    assert!(v["p50_ms"].as_f64().is_some(), "{v}");
    assert_eq!(v["checks"].as_array().unwrap().len(), 2, "{v}");
    // Against a port nothing listens on: every request fails, exit 1.
    let (code, v) = run_json(&[
        "load",
        &c.id,
        "http://node1:81/",
        "--from",
        "node2",
        "--requests",
        "5",
        "--duration",
        "30s",
        "--error-rate",
        "0",
    ]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["failed"], 5, "{v}");
    assert!(
        v["checks"][0]["message"]
            .as_str()
            .unwrap()
            .contains("100.00% of 5"),
        "{v}"
    );
    let out = common::run(&[
        "load",
        &c.id,
        "http://node1/",
        "--from",
        "node2",
        "--requests",
        "10",
        "--duration",
        "30s",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("10 requests"), "{text}");
    assert!(text.contains("latency p50"), "{text}");

    // Bad input: exit 2 with an error naming what is wrong.
    for (args, says) in [
        (vec!["probe", &c.id, "files", "nope"], "nope"),
        (
            vec!["probe", "nosuchcluster", "files", "node1"],
            "nosuchcluster",
        ),
        (
            vec![
                "probe",
                &c.id,
                "internal",
                "node1",
                "80",
                "--network",
                "default",
            ],
            "no outside node",
        ),
        (
            vec![
                "probe", &c.id, "tls", "node1", "--from", "node2", "--port", "80",
            ],
            "the probe on node2 failed",
        ),
        (
            vec![
                "load",
                &c.id,
                "ftp://node1/",
                "--from",
                "node2",
                "--requests",
                "5",
            ],
            "http://",
        ),
        (
            vec!["load", &c.id, "http://node1/", "--from", "node2"],
            "say how long",
        ),
        (
            vec![
                "load",
                &c.id,
                "http://node1/",
                "--from",
                "ghost",
                "--requests",
                "5",
            ],
            "ghost",
        ),
    ] {
        let (code, v) = run_json(&args);
        assert_eq!(code, 2, "{args:?}: {v}");
        let message = v["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{args:?}: {v}");
    }

    // Nothing of the probes or loads stays on the nodes.
    let (_, ps, _) = c.sh("node2", "ps -eo args | grep -c '[p]ython3 -I -c' || true");
    assert_eq!(ps.trim(), "0", "agents left on node2");
    let id = c.id.clone();
    drop(c);
    let left = Leftovers::of(&id);
    assert!(left.is_empty(), "cluster {id} left {left:?}");
}

fn hardening(variant: &str) -> String {
    format!(
        "{}/../../examples/hardening/{variant}.yaml",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn hardening_example_insecure_fails_naming_every_finding() {
    common::require_root();
    let out = common::run(&["run", &hardening("insecure")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("checks (2/2 passed)"), "{text}");
    assert!(
        text.contains("the second run of every step succeeded and changed nothing"),
        "{text}"
    );
    for finding in [
        "ports open beyond those declared: [8000, 9100] (declared: [22, 443])",
        "sshd on web offers [\"password\"] login",
        "client, which is not on back, reached web:9100",
        "world-writable: /etc/shop/shop.conf",
        "setuid/setgid: /usr/local/bin/shop-backup",
        "the certificate expired",
        "the certificate is for [\"localhost\"], not web",
        "the server accepts TLSv1 and TLSv1.1",
    ] {
        assert!(
            text.lines().any(|l| l.contains('✘') && l.contains(finding)),
            "the report does not name `{finding}`: {text}"
        );
    }
}

#[test]
fn hardening_example_fixed_passes_every_probe() {
    common::require_root();
    let (code, report) = run_json(&["run", &hardening("fixed")]);
    assert_eq!(code, 0, "{report}");
    let probes = report["confidence"]["probes"].as_array().unwrap();
    let kinds: Vec<&str> = probes.iter().map(|p| p["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["ports", "ssh_password", "internal", "files", "tls"],
        "{report}"
    );
    all_passed(probes);
    let n: usize = probes.iter().map(|p| checks(p).len()).sum();
    // Two addresses scanned, one outside node, two file checks, three TLS.
    assert_eq!(n, 2 + 1 + 1 + 2 + 3, "{report}");
    let id = report["cluster"].as_str().unwrap();
    assert!(Leftovers::of(id).is_empty(), "{:?}", Leftovers::of(id));
}
