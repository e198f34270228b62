//! Kinds that look across the network, from node1 at services on node2.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use rehearse_spec::scenario::CheckKind;
use serde_json::json;

#[test]
fn network_kinds_pass_and_fail_with_expected_and_actual() {
    let cluster = TestCluster::up(2);
    let node1_ip = cluster.ips["node1"].clone();
    let node2_ip = cluster.ips["node2"].clone();
    cluster.sh(
        "node2",
        "mkdir -p /srv/www && echo 'served by node2' > /srv/www/index.html",
    );
    cluster.spawn(
        "node2",
        &format!("exec python3 -m http.server 8080 --bind {node2_ip} --directory /srv/www"),
    );
    cluster.spawn(
        "node2",
        "exec python3 -c \"import socket, time; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((\\\"0.0.0.0\\\", 5300)); time.sleep(600)\"",
    );
    // The server comes up while the first checks are retried.
    let up = Duration::from_secs(10);

    let mut content_type = BTreeMap::new();
    content_type.insert("Content-Type".to_string(), "text/html".to_string());
    let mut wrong_headers = BTreeMap::new();
    wrong_headers.insert("Content-Type".to_string(), "/json/".to_string());
    wrong_headers.insert("X-Served-By".to_string(), "node2".to_string());

    let node2_checks = vec![
        retried(
            "http server listens",
            up,
            CheckKind::Port {
                port: "tcp:8080".into(),
                listening: true,
                ip: vec![node2_ip.clone()],
            },
        ),
        retried(
            "udp listens",
            up,
            CheckKind::Port {
                port: "udp:5300".into(),
                listening: true,
                ip: strings(&["0.0.0.0"]),
            },
        ),
        once(
            "udp not on 5301",
            CheckKind::Port {
                port: "udp:5301".into(),
                listening: true,
                ip: vec![],
            },
        ),
    ];
    let node2_results = cluster.evaluate_on("node2", &node2_checks);
    let r = passed(&node2_results, "http server listens");
    assert_eq!(r.actual, json!({"listening": true, "ip": [node2_ip]}));
    let r = passed(&node2_results, "udp listens");
    assert_eq!(r.actual, json!({"listening": true, "ip": ["0.0.0.0"]}));
    failed(
        &node2_results,
        "udp not on 5301",
        &["expected udp:5301 listening, but nothing listens on it"],
    );

    let node1_checks = vec![
        // http
        retried(
            "index",
            up,
            CheckKind::Http {
                url: "http://node2:8080/".into(),
                method: "GET".into(),
                status: 200,
                body: strings(&["served by node2", "/node[0-9]/", "!error"]),
                headers: content_type,
                insecure: false,
            },
        ),
        once("missing page", http("http://node2:8080/missing", 200, &[])),
        once(
            "wrong body",
            CheckKind::Http {
                url: "http://node2:8080/".into(),
                method: "GET".into(),
                status: 200,
                body: strings(&["/served by web[12]/"]),
                headers: wrong_headers,
                insecure: false,
            },
        ),
        once("nothing on 8081", http("http://node2:8081/", 200, &[])),
        once(
            "head",
            CheckKind::Http {
                url: format!("http://{node2_ip}:8080/"),
                method: "HEAD".into(),
                status: 200,
                body: vec![],
                headers: BTreeMap::new(),
                insecure: false,
            },
        ),
        // addr
        once(
            "node2 web reachable",
            CheckKind::Addr {
                address: "tcp://node2:8080".into(),
                reachable: true,
            },
        ),
        once(
            "node2 8081 reachable",
            CheckKind::Addr {
                address: "node2:8081".into(),
                reachable: true,
            },
        ),
        once(
            "node2 web unreachable",
            CheckKind::Addr {
                address: format!("{node2_ip}:8080"),
                reachable: false,
            },
        ),
        // dns
        once(
            "node2 resolves",
            CheckKind::Dns {
                host: "node2".into(),
                resolvable: true,
                addrs: vec![node2_ip.clone()],
            },
        ),
        once(
            "node2 elsewhere",
            CheckKind::Dns {
                host: "node2".into(),
                resolvable: true,
                addrs: strings(&["192.0.2.7"]),
            },
        ),
        once(
            "nowhere resolves",
            CheckKind::Dns {
                host: "nowhere.invalid".into(),
                resolvable: true,
                addrs: vec![],
            },
        ),
        once(
            "nowhere unresolvable",
            CheckKind::Dns {
                host: "nowhere.invalid".into(),
                resolvable: false,
                addrs: vec![],
            },
        ),
        // interface
        once(
            "eth0",
            CheckKind::Interface {
                name: "eth0".into(),
                exists: true,
                addrs: vec![format!("{node1_ip}/24"), node1_ip.clone()],
                mtu: Some(1500),
            },
        ),
        once(
            "eth0 jumbo",
            CheckKind::Interface {
                name: "eth0".into(),
                exists: true,
                addrs: strings(&["192.0.2.1/24"]),
                mtu: Some(9000),
            },
        ),
        once(
            "eth9",
            CheckKind::Interface {
                name: "eth9".into(),
                exists: true,
                addrs: vec![],
                mtu: None,
            },
        ),
    ];
    let results = cluster.evaluate_on("node1", &node1_checks);

    // http
    let r = passed(&results, "index");
    assert_eq!(r.kind, "http");
    assert_eq!(r.subject, "http://node2:8080/");
    assert_eq!(r.actual["status"], 200);
    assert_eq!(r.actual["body"], "served by node2\n");
    assert_eq!(r.actual["headers"]["Content-Type"], "text/html");
    let r = failed(&results, "missing page", &["expected status 200, got 404"]);
    assert_eq!(r.expected, json!({"status": 200}));
    assert_eq!(r.actual, json!({"status": 404}));
    let r = failed(
        &results,
        "wrong body",
        &[
            "body does not match /served by web[12]/",
            "header Content-Type does not match /json/",
            "header X-Served-By is missing",
        ],
    );
    assert_eq!(r.expected["body"], json!(["/served by web[12]/"]));
    assert_eq!(r.actual["body"], "served by node2\n");
    assert_eq!(
        r.actual["headers"],
        json!({"Content-Type": "text/html", "X-Served-By": null})
    );
    let r = failed(
        &results,
        "nothing on 8081",
        &[
            "expected status 200, but the request failed: ",
            "Connection refused",
        ],
    );
    assert_eq!(r.actual["status"], json!(null));
    passed(&results, "head");

    // addr
    let r = passed(&results, "node2 web reachable");
    assert_eq!(r.actual, json!({"reachable": true}));
    let r = failed(&results, "node2 8081 reachable", &[
        &format!("expected node2:8081 reachable, but connecting to {node2_ip} port 8081 failed: Connection refused"),
    ]);
    assert_eq!(r.expected, json!({"reachable": true}));
    assert_eq!(r.actual["reachable"], false);
    failed(
        &results,
        "node2 web unreachable",
        &["accepted a connection"],
    );

    // dns
    let r = passed(&results, "node2 resolves");
    assert_eq!(r.actual, json!({"resolvable": true, "addrs": [node2_ip]}));
    let r = failed(
        &results,
        "node2 elsewhere",
        &[&format!(
            "expected node2 to resolve to 192.0.2.7, got {node2_ip}"
        )],
    );
    assert_eq!(
        r.expected,
        json!({"resolvable": true, "addrs": ["192.0.2.7"]})
    );
    let r = failed(
        &results,
        "nowhere resolves",
        &["expected nowhere.invalid to resolve, but it does not"],
    );
    assert_eq!(r.actual["resolvable"], false);
    passed(&results, "nowhere unresolvable");

    // interface
    let r = passed(&results, "eth0");
    assert_eq!(r.actual["mtu"], 1500);
    assert!(r.actual["addrs"]
        .as_array()
        .unwrap()
        .contains(&json!(format!("{node1_ip}/24"))));
    let r = failed(
        &results,
        "eth0 jumbo",
        &[
            "expected eth0 to have 192.0.2.1/24, but its addresses are",
            "expected mtu 9000, got 1500",
        ],
    );
    assert_eq!(
        r.expected,
        json!({"exists": true, "addrs": ["192.0.2.1/24"], "mtu": 9000})
    );
    failed(
        &results,
        "eth9",
        &["expected interface eth9, but there is none"],
    );
}
