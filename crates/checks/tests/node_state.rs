//! Every kind that looks at a node's own state, each passing and failing, on a
//! real node.

mod common;

use common::*;
use rehearse_spec::scenario::CheckKind;
use serde_json::json;

const SETUP: &str = r#"set -e
groupadd -g 2001 web
useradd -m -u 2001 -g web -G sudo -s /bin/bash alice
mkdir -p /srv/site
printf 'hello from node1\nversion=42\n' > /srv/site/index.html
chown alice:web /srv/site/index.html
chmod 0640 /srv/site/index.html
ln -s /srv/site/index.html /srv/current
"#;

#[test]
fn node_state_kinds_pass_and_fail_with_expected_and_actual() {
    let cluster = TestCluster::up(1);
    cluster.sh("node1", SETUP);
    let forward = cluster.sh("node1", "cat /proc/sys/net/ipv4/ip_forward");
    let forward = forward.trim();
    let other_forward = if forward == "1" { "0" } else { "1" };
    let rmem = cluster.sh("node1", "cat /proc/sys/net/ipv4/tcp_rmem");
    let rmem = rmem.split_whitespace().collect::<Vec<_>>().join(" ");

    let checks = vec![
        // package
        once(
            "coreutils installed",
            CheckKind::Package {
                name: "coreutils".into(),
                installed: true,
                version: Some("9".into()),
            },
        ),
        once(
            "nginx installed",
            CheckKind::Package {
                name: "nginx".into(),
                installed: true,
                version: None,
            },
        ),
        once(
            "coreutils at 8",
            CheckKind::Package {
                name: "coreutils".into(),
                installed: true,
                version: Some("8.32".into()),
            },
        ),
        once(
            "nginx absent",
            CheckKind::Package {
                name: "nginx".into(),
                installed: false,
                version: None,
            },
        ),
        // service
        once(
            "ssh running",
            CheckKind::Service {
                name: "ssh".into(),
                running: Some(true),
                enabled: None,
            },
        ),
        once(
            "ssh enabled",
            CheckKind::Service {
                name: "ssh".into(),
                running: Some(true),
                enabled: Some(true),
            },
        ),
        once(
            "nosuch running",
            CheckKind::Service {
                name: "nosuch".into(),
                running: Some(true),
                enabled: None,
            },
        ),
        // port
        once(
            "sshd listens",
            CheckKind::Port {
                port: "tcp:22".into(),
                listening: true,
                ip: strings(&["::"]),
            },
        ),
        once(
            "nothing on 2222",
            CheckKind::Port {
                port: "2222".into(),
                listening: true,
                ip: vec![],
            },
        ),
        once(
            "sshd on loopback only",
            CheckKind::Port {
                port: "22".into(),
                listening: true,
                ip: strings(&["127.0.0.1"]),
            },
        ),
        // command
        once(
            "echo",
            CheckKind::Command {
                command: "echo hello; echo warn >&2".into(),
                exit_status: 0,
                stdout: strings(&["hello", "/^h.l+o$/", "!bye"]),
                stderr: strings(&["warn"]),
            },
        ),
        once(
            "exit 3",
            CheckKind::Command {
                command: "echo something; exit 3".into(),
                exit_status: 0,
                stdout: strings(&["!/some/"]),
                stderr: vec![],
            },
        ),
        // file
        once(
            "index",
            CheckKind::File {
                path: "/srv/site/index.html".into(),
                exists: true,
                filetype: Some("file".into()),
                mode: Some("0640".into()),
                owner: Some("alice".into()),
                group: Some("web".into()),
                contains: strings(&["hello from node1", "/(?m)^version=\\d+$/", "!goodbye"]),
            },
        ),
        once(
            "index wrong",
            CheckKind::File {
                path: "/srv/site/index.html".into(),
                exists: true,
                filetype: Some("directory".into()),
                mode: Some("0600".into()),
                owner: Some("root".into()),
                group: None,
                contains: strings(&["goodbye"]),
            },
        ),
        once(
            "symlink",
            CheckKind::File {
                path: "/srv/current".into(),
                exists: true,
                filetype: Some("symlink".into()),
                mode: Some("0640".into()),
                owner: None,
                group: None,
                contains: strings(&["hello"]),
            },
        ),
        once("missing file", file_exists("/srv/nope")),
        // user
        once(
            "alice",
            CheckKind::User {
                name: "alice".into(),
                exists: true,
                uid: Some(2001),
                gid: Some(2001),
                groups: strings(&["web", "sudo"]),
                home: Some("/home/alice".into()),
                shell: Some("/bin/bash".into()),
            },
        ),
        once(
            "alice wrong",
            CheckKind::User {
                name: "alice".into(),
                exists: true,
                uid: Some(3000),
                gid: None,
                groups: strings(&["docker"]),
                home: None,
                shell: None,
            },
        ),
        once(
            "bob",
            CheckKind::User {
                name: "bob".into(),
                exists: true,
                uid: None,
                gid: None,
                groups: vec![],
                home: None,
                shell: None,
            },
        ),
        // group
        once(
            "web",
            CheckKind::Group {
                name: "web".into(),
                exists: true,
                gid: Some(2001),
            },
        ),
        once(
            "web gid",
            CheckKind::Group {
                name: "web".into(),
                exists: true,
                gid: Some(2002),
            },
        ),
        once(
            "no admins",
            CheckKind::Group {
                name: "web".into(),
                exists: false,
                gid: None,
            },
        ),
        // process
        once(
            "systemd",
            CheckKind::Process {
                name: "systemd".into(),
                running: true,
            },
        ),
        once(
            "nginx process",
            CheckKind::Process {
                name: "nginx".into(),
                running: true,
            },
        ),
        // The agent itself runs python3; it must not count as the node's.
        once(
            "no python",
            CheckKind::Process {
                name: "python3".into(),
                running: false,
            },
        ),
        // kernel-param
        once(
            "ip_forward",
            CheckKind::KernelParam {
                key: "net.ipv4.ip_forward".into(),
                value: forward.into(),
            },
        ),
        once(
            "ip_forward flipped",
            CheckKind::KernelParam {
                key: "net.ipv4.ip_forward".into(),
                value: other_forward.into(),
            },
        ),
        once(
            "tcp_rmem",
            CheckKind::KernelParam {
                key: "net.ipv4.tcp_rmem".into(),
                value: rmem.clone(),
            },
        ),
        once(
            "no such param",
            CheckKind::KernelParam {
                key: "net.ipv4.nope".into(),
                value: "1".into(),
            },
        ),
        // mount
        once(
            "proc",
            CheckKind::Mount {
                path: "/proc".into(),
                exists: true,
                filesystem: Some("proc".into()),
                opts: strings(&["rw", "nosuid"]),
            },
        ),
        once(
            "run on ext4",
            CheckKind::Mount {
                path: "/run/".into(),
                exists: true,
                filesystem: Some("ext4".into()),
                opts: strings(&["noexec"]),
            },
        ),
        once(
            "srv mounted",
            CheckKind::Mount {
                path: "/srv".into(),
                exists: true,
                filesystem: None,
                opts: vec![],
            },
        ),
    ];
    let results = cluster.evaluate_on("node1", &checks);
    assert_eq!(results.len(), checks.len());
    for r in &results {
        assert_eq!(r.node, "node1");
        assert!(r.attempts == 1, "{}: {r:#?}", r.name);
    }

    // package
    let r = passed(&results, "coreutils installed");
    assert_eq!(r.kind, "package");
    assert_eq!(r.subject, "coreutils");
    assert_eq!(r.expected, json!({"installed": true, "version": "9"}));
    assert_eq!(r.actual["installed"], true);
    assert!(r.actual["version"].as_str().unwrap().starts_with("9."));
    let r = failed(
        &results,
        "nginx installed",
        &["expected nginx installed, but it is not"],
    );
    assert_eq!(r.actual, json!({"installed": false, "version": null}));
    let r = failed(
        &results,
        "coreutils at 8",
        &["expected coreutils version 8.32, got 9."],
    );
    assert_eq!(r.expected["version"], "8.32");
    passed(&results, "nginx absent");

    // service
    let r = passed(&results, "ssh running");
    assert_eq!(r.actual["running"], true);
    let r = failed(
        &results,
        "ssh enabled",
        &["expected ssh.service enabled, but its unit file is disabled"],
    );
    assert_eq!(r.expected, json!({"running": true, "enabled": true}));
    assert_eq!(r.actual["enabled"], false);
    assert_eq!(r.actual["unit_file_state"], "disabled");
    failed(
        &results,
        "nosuch running",
        &["unit nosuch.service does not exist"],
    );

    // port
    let r = passed(&results, "sshd listens");
    assert_eq!(r.actual, json!({"listening": true, "ip": ["::"]}));
    let r = failed(
        &results,
        "nothing on 2222",
        &["expected tcp:2222 listening, but nothing listens on it"],
    );
    assert_eq!(r.actual, json!({"listening": false, "ip": []}));
    let r = failed(
        &results,
        "sshd on loopback only",
        &["expected tcp:22 listening on 127.0.0.1, got ::"],
    );
    assert_eq!(r.expected, json!({"listening": true, "ip": ["127.0.0.1"]}));

    // command
    let r = passed(&results, "echo");
    assert_eq!(
        r.actual,
        json!({"exit_status": 0, "stdout": "hello\n", "stderr": "warn\n"})
    );
    let r = failed(
        &results,
        "exit 3",
        &["expected exit status 0, got 3", "stdout matches /some/"],
    );
    assert_eq!(r.expected, json!({"exit_status": 0, "stdout": ["!/some/"]}));
    assert_eq!(r.actual["exit_status"], 3);
    assert_eq!(r.actual["stdout"], "something\n");

    // file
    let r = passed(&results, "index");
    assert_eq!(r.actual["mode"], "0640");
    assert_eq!(r.actual["owner"], "alice");
    assert_eq!(r.actual["group"], "web");
    assert_eq!(r.actual["contains"], "hello from node1\nversion=42\n");
    let r = failed(
        &results,
        "index wrong",
        &[
            "expected /srv/site/index.html to be a directory, but it is a file",
            "expected mode 0600, got 0640",
            "expected owner root, got alice",
            "/srv/site/index.html does not contain \"goodbye\"",
        ],
    );
    assert_eq!(r.expected["mode"], "0600");
    assert_eq!(r.actual["filetype"], "file");
    passed(&results, "symlink");
    let r = failed(
        &results,
        "missing file",
        &["expected /srv/nope to exist, but it does not"],
    );
    assert_eq!(r.expected, json!({"exists": true}));
    assert_eq!(r.actual, json!({"exists": false}));

    // user
    let r = passed(&results, "alice");
    assert_eq!(r.actual["groups"], json!(["sudo", "web"]));
    let r = failed(
        &results,
        "alice wrong",
        &[
            "expected uid 3000, got 2001",
            "expected alice in groups docker, but its groups are sudo, web",
        ],
    );
    assert_eq!(
        r.expected,
        json!({"exists": true, "uid": 3000, "groups": ["docker"]})
    );
    assert_eq!(r.actual["uid"], 2001);
    let r = failed(
        &results,
        "bob",
        &["expected user bob to exist, but it does not"],
    );
    assert_eq!(r.actual, json!({"exists": false}));

    // group
    let r = passed(&results, "web");
    assert_eq!(r.actual, json!({"exists": true, "gid": 2001}));
    let r = failed(&results, "web gid", &["expected gid 2002, got 2001"]);
    assert_eq!(r.expected, json!({"exists": true, "gid": 2002}));
    failed(
        &results,
        "no admins",
        &["expected group web to be absent, but it exists"],
    );

    // process
    let r = passed(&results, "systemd");
    assert_eq!(r.actual["pids"][0], 1);
    let r = failed(
        &results,
        "nginx process",
        &["expected a nginx process, but none runs"],
    );
    assert_eq!(r.actual, json!({"running": false, "pids": []}));
    passed(&results, "no python");

    // kernel-param
    let r = passed(&results, "ip_forward");
    assert_eq!(r.actual, json!({"value": forward}));
    let r = failed(
        &results,
        "ip_forward flipped",
        &[&format!(
            "expected net.ipv4.ip_forward = {other_forward}, got {forward}"
        )],
    );
    assert_eq!(r.expected, json!({"value": other_forward}));
    let r = passed(&results, "tcp_rmem");
    assert_eq!(r.actual["value"], rmem.as_str());
    failed(
        &results,
        "no such param",
        &["kernel parameter net.ipv4.nope does not exist"],
    );

    // mount
    let r = passed(&results, "proc");
    assert_eq!(r.actual["filesystem"], "proc");
    let r = failed(
        &results,
        "run on ext4",
        &[
            "expected filesystem ext4 at /run, got tmpfs",
            "expected mount options noexec",
        ],
    );
    assert_eq!(
        r.expected,
        json!({"exists": true, "filesystem": "ext4", "opts": ["noexec"]})
    );
    assert_eq!(r.actual["filesystem"], "tmpfs");
    let r = failed(
        &results,
        "srv mounted",
        &["expected a mount at /srv, but nothing is mounted there"],
    );
    assert_eq!(r.actual, json!({"exists": false}));
}
