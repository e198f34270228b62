//! `faults:`, `load:` and `probes:` as a user writes them, and their refusals.

use std::path::Path;
use std::time::Duration;

use rehearse_spec::scenario::Scenario;
use rehearse_spec::trials::{FaultAction, ProbeSpec, Span};
use rehearse_spec::ErrorKind;

const NODES: &str = "\
nodes:
  - {name: lb, networks: [front, back], groups: [balancer]}
  - {name: web1, networks: [back], groups: [web]}
  - {name: web2, networks: [back], groups: [web]}
  - {name: client, networks: [front]}
networks: [{name: front}, {name: back}]
checks:
  - service: ssh
";

fn parse(rest: &str) -> Result<Scenario, rehearse_spec::SpecError> {
    Scenario::from_yaml(&format!("{NODES}{rest}"), "rehearse.yaml", Path::new("."))
}

#[test]
fn faults_loads_and_probes_become_explicit_values() {
    let s = parse(
        "\
faults:
  - name: lose a backend
    stop_service: {node: web1, service: nginx}
    at: 2s
    heal_after: 3s
    expect:
      - http: http://lb/
        on: client
  - partition: {sides: [[balancer], [web]]}
  - link: {node: web2, peers: [lb], loss: 30, delay: 100ms, jitter: 10ms}
load:
  - from: client
    url: http://lb/
    duration: 8s
    concurrency: 4
    expect: {error_rate: 1, p99: 500ms}
probes:
  - ports: {target: web1, from: client, open: [22, 80]}
  - internal: {target: web1, port: 80, network: back}
  - files: {node: web1}
",
    )
    .unwrap();
    assert_eq!(s.faults.len(), 3);
    assert_eq!(s.faults[0].name, "lose a backend");
    assert_eq!(s.faults[0].at, Duration::from_secs(2));
    assert_eq!(s.faults[0].heal_after, Some(3000));
    assert_eq!(s.faults[0].expect.len(), 1);
    assert_eq!(s.faults[1].name, "partition [balancer] | [web]");
    assert_eq!(
        s.faults[2].action,
        FaultAction::Link {
            node: "web2".into(),
            peers: vec!["lb".into()],
            loss: Some(30),
            delay: Some(Span(Duration::from_millis(100))),
            jitter: Some(Span(Duration::from_millis(10))),
            rate_kbit: None,
        }
    );
    assert_eq!(s.loads[0].duration(), Duration::from_secs(8));
    assert_eq!(
        s.loads[0].expect.p99,
        Some(Span(Duration::from_millis(500)))
    );
    assert!(matches!(s.probes[1], ProbeSpec::Internal { port: 80, .. }));
}

#[test]
fn mistakes_are_refused_where_they_are_written() {
    let e = parse("faults:\n  - crash: {node: web9}\n").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownTarget);
    assert_eq!(e.location().unwrap().line, 10, "{e}");
    assert!(e.to_string().contains("web9"), "{e}");

    let e = parse("faults:\n  - crash: {node: web1}\n    reboot: {node: web2}\n").unwrap_err();
    assert!(e.to_string().contains("two kind keys"), "{e}");
    assert_eq!(e.location().unwrap().line, 11, "{e}");

    let e = parse("faults:\n  - name: nothing\n").unwrap_err();
    assert!(e.to_string().contains("no kind key"), "{e}");

    let e = parse("faults:\n  - link: {node: web1}\n").unwrap_err();
    assert!(
        e.to_string()
            .contains("at least one of loss, delay or rate_kbit"),
        "{e}"
    );

    let e = parse("faults:\n  - link: {node: web1, delay: 10 parsecs}\n").unwrap_err();
    assert!(e.to_string().contains("invalid duration"), "{e}");

    let e = parse("faults:\n  - crash: {node: web1, signal: 9}\n").unwrap_err();
    assert!(e.to_string().contains("signal"), "{e}");

    let e = parse("load:\n  - {from: client, url: http://lb/}\n").unwrap_err();
    assert!(e.to_string().contains("say how long"), "{e}");

    let e = parse("load:\n  - {from: client, url: ftp://lb/, requests: 10}\n").unwrap_err();
    assert!(e.to_string().contains("http:// URL"), "{e}");

    let e = parse("load:\n  - {from: client, url: http://lb/, requests: 10, concurrency: 10000}\n")
        .unwrap_err();
    assert!(e.to_string().contains("concurrency"), "{e}");

    let e = parse("probes:\n  - internal: {target: web1, port: 80, network: dmz}\n").unwrap_err();
    assert!(e.to_string().contains("unknown network \"dmz\""), "{e}");

    let e = parse("probes:\n  - ports: {target: web1, from: nobody, open: [22]}\n").unwrap_err();
    assert!(e.to_string().contains("nobody"), "{e}");
}
