//! Scenario files as a user writes them: the explicit values they become, the
//! defaults, and that every refusal points at the right line and field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rehearse_spec::scenario::{
    Check, CheckKind, Scenario, Step, StepAction, DEFAULT_CHECK_TIMEOUT, DEFAULT_STEP_TIMEOUT,
};
use rehearse_spec::{ErrorKind, SpecError};

const FILE: &str = "rehearse.yaml";

/// Four nodes in two groups; lines 1 to 5 of every file below.
/// The topology the format reference's faults, load and probes examples name.
const CONFIDENCE_NODES: &str = "\
nodes:
  - {name: lb, networks: [front]}
  - {name: web1, networks: [front, back]}
  - {name: web2, networks: [front, back]}
  - {name: db, networks: [back]}
  - {name: client, networks: [front]}
networks:
  - {name: front}
  - {name: back}
";

const NODES: &str = "\
nodes:
  - {name: lb, groups: [balancer]}
  - {name: web1, groups: [web]}
  - {name: web2, groups: [web]}
  - client
";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/scenarios")
}

/// The folder the test files below are read against: it holds `scripts/web.sh`,
/// `site.yml`, `files/haproxy.cfg` and `files/site/`.
fn dir() -> PathBuf {
    fixtures().join("nginx-lb")
}

fn parse(yaml: &str) -> Scenario {
    Scenario::from_yaml(yaml, FILE, &dir()).unwrap_or_else(|e| panic!("should parse:\n{yaml}\n{e}"))
}

/// `NODES` followed by `rest`, refused.
fn refuse(rest: &str) -> SpecError {
    let yaml = format!("{NODES}{rest}");
    match Scenario::from_yaml(&yaml, FILE, &dir()) {
        Ok(scenario) => panic!("should be refused:\n{yaml}\nparsed as {scenario:#?}"),
        Err(error) => error,
    }
}

/// Asserts what a user reads: kind, line:column, field, words of the message
/// and of the hint, and the rendered `file:line:col: field: message` prefix.
#[track_caller]
fn assert_error(
    error: &SpecError,
    kind: ErrorKind,
    (line, column): (usize, usize),
    field: &str,
    message_has: &[&str],
    hint_has: &str,
) {
    let location = error
        .location()
        .unwrap_or_else(|| panic!("no location in {error}"));
    assert_eq!(
        (location.file.as_str(), location.line, location.column),
        (FILE, line, column),
        "position of: {error}"
    );
    assert_eq!(error.kind(), kind, "kind of: {error}");
    assert_eq!(error.field(), Some(field), "field of: {error}");
    for words in message_has {
        assert!(
            error.message().contains(words),
            "{words:?} missing from: {error}"
        );
    }
    let hint = error.hint().unwrap_or_else(|| panic!("no hint in {error}"));
    assert!(
        hint.contains(hint_has),
        "{hint_has:?} missing from hint: {error}"
    );
    let rendered = error.to_string();
    let prefix = format!("{FILE}:{line}:{column}: {field}: ");
    assert!(rendered.starts_with(&prefix), "{rendered}");
    assert!(
        rendered.ends_with(&format!("\n  hint: {hint}")),
        "{rendered}"
    );
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn check(name: &str, on: &[&str], kind: CheckKind) -> Check {
    Check {
        name: name.to_owned(),
        on: strings(on),
        timeout: DEFAULT_CHECK_TIMEOUT,
        skip_unless: None,
        kind,
    }
}

// --- the full example --------------------------------------------------------------

#[test]
fn folder_form_reads_rehearse_yaml_with_every_step_kind() {
    let dir = dir();
    let scenario = Scenario::from_path(&dir).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scenario.name, "nginx-lb", "the folder names the scenario");
    assert_eq!(
        scenario.description.as_deref(),
        Some("HAProxy in front of two nginx nodes")
    );
    assert_eq!(scenario.dir, dir);
    assert_eq!(scenario.file, dir.join("rehearse.yaml"));
    let names: Vec<&str> = scenario
        .topology
        .nodes
        .iter()
        .map(|n| n.name.as_str())
        .collect();
    assert_eq!(names, ["lb", "web1", "web2", "client"]);
    assert_eq!(scenario.topology.ttl, Some(Duration::from_secs(30 * 60)));

    let expected_steps = vec![
        Step {
            idempotence: Default::default(),
            name: "install nginx".into(),
            on: strings(&["web"]),
            timeout: Duration::from_secs(5 * 60),
            env: pairs(&[("PORT", "80"), ("GREETING", "hello")]),
            action: StepAction::Shell {
                script: "#!/bin/sh\nset -e\napt-get install -y nginx\n".into(),
                file: Some(dir.join("scripts/web.sh")),
            },
        },
        Step {
            idempotence: Default::default(),
            name: "shell apt-get install -y haproxy … on lb".into(),
            on: strings(&["lb"]),
            timeout: DEFAULT_STEP_TIMEOUT,
            env: Vec::new(),
            action: StepAction::Shell {
                script: "apt-get install -y haproxy\nsystemctl enable haproxy\n".into(),
                file: None,
            },
        },
        Step {
            idempotence: Default::default(),
            name: "ansible site.yml on lb, web".into(),
            on: strings(&["lb", "web"]),
            timeout: DEFAULT_STEP_TIMEOUT,
            env: pairs(&[("ANSIBLE_FORKS", "10")]),
            action: StepAction::Ansible {
                playbook: dir.join("site.yml"),
                controller: Some("lb".into()),
                extra_vars: pairs(&[("greeting", "hi"), ("workers", "4"), ("debug", "false")]),
            },
        },
        Step {
            idempotence: Default::default(),
            name: "copy haproxy.cfg to /etc/haproxy/haproxy.cfg on balancer".into(),
            on: strings(&["balancer"]),
            timeout: Duration::from_secs(30),
            env: Vec::new(),
            action: StepAction::Copy {
                src: dir.join("files/haproxy.cfg"),
                dest: "/etc/haproxy/haproxy.cfg".into(),
                mode: Some("0644".into()),
            },
        },
        Step {
            idempotence: Default::default(),
            name: "copy site to /var/www/site".into(),
            on: Vec::new(),
            timeout: DEFAULT_STEP_TIMEOUT,
            env: Vec::new(),
            action: StepAction::Copy {
                src: dir.join("files/site"),
                dest: "/var/www/site".into(),
                mode: None,
            },
        },
    ];
    assert_eq!(scenario.steps, expected_steps);

    let expected_checks = vec![
        Check {
            name: "balancer answers".into(),
            on: strings(&["client"]),
            timeout: Duration::from_secs(30),
            skip_unless: Some("command -v curl".into()),
            kind: CheckKind::Http {
                url: "http://lb/".into(),
                method: "GET".into(),
                status: 200,
                body: strings(&["/served by web[12]/", "!error"]),
                headers: BTreeMap::new(),
                insecure: false,
            },
        },
        check(
            "http https://lb:8443/health",
            &[],
            CheckKind::Http {
                url: "https://lb:8443/health".into(),
                method: "HEAD".into(),
                status: 204,
                body: Vec::new(),
                headers: BTreeMap::from([("Content-Type".into(), "/^text\\/plain/".into())]),
                insecure: true,
            },
        ),
        check(
            "package nginx",
            &["web"],
            CheckKind::Package {
                name: "nginx".into(),
                installed: true,
                version: Some("/^1\\.22/".into()),
            },
        ),
        check(
            "package apache2",
            &[],
            CheckKind::Package {
                name: "apache2".into(),
                installed: false,
                version: None,
            },
        ),
        check(
            "service nginx",
            &["web"],
            CheckKind::Service {
                name: "nginx".into(),
                running: Some(true),
                enabled: None,
            },
        ),
        check(
            "service haproxy",
            &[],
            CheckKind::Service {
                name: "haproxy".into(),
                running: None,
                enabled: Some(true),
            },
        ),
        check(
            "port tcp:80",
            &["web"],
            CheckKind::Port {
                port: "tcp:80".into(),
                listening: true,
                ip: Vec::new(),
            },
        ),
        check(
            "port udp:53",
            &[],
            CheckKind::Port {
                port: "udp:53".into(),
                listening: false,
                ip: strings(&["127.0.0.1"]),
            },
        ),
        check(
            "addr tcp://web1:80",
            &["client"],
            CheckKind::Addr {
                address: "tcp://web1:80".into(),
                reachable: true,
            },
        ),
        check(
            "addr tcp://lb:22",
            &[],
            CheckKind::Addr {
                address: "tcp://lb:22".into(),
                reachable: false,
            },
        ),
        check(
            "command nginx -t",
            &[],
            CheckKind::Command {
                command: "nginx -t".into(),
                exit_status: 0,
                stdout: Vec::new(),
                stderr: strings(&["syntax is ok"]),
            },
        ),
        check(
            "file /etc/haproxy/haproxy.cfg",
            &["lb"],
            CheckKind::File {
                path: "/etc/haproxy/haproxy.cfg".into(),
                exists: true,
                filetype: Some("file".into()),
                mode: Some("0644".into()),
                owner: Some("root".into()),
                group: Some("haproxy".into()),
                contains: strings(&["backend web", "!/^\\s*mode tcp/"]),
            },
        ),
        check(
            "file /etc/absent",
            &[],
            CheckKind::File {
                path: "/etc/absent".into(),
                exists: false,
                filetype: None,
                mode: None,
                owner: None,
                group: None,
                contains: Vec::new(),
            },
        ),
        check(
            "user www-data",
            &[],
            CheckKind::User {
                name: "www-data".into(),
                exists: true,
                uid: Some(33),
                gid: Some(33),
                groups: strings(&["www-data"]),
                home: Some("/var/www".into()),
                shell: Some("/usr/sbin/nologin".into()),
            },
        ),
        check(
            "group adm",
            &[],
            CheckKind::Group {
                name: "adm".into(),
                exists: true,
                gid: Some(4),
            },
        ),
        check(
            "process nginx",
            &["web"],
            CheckKind::Process {
                name: "nginx".into(),
                running: true,
            },
        ),
        check(
            "process apache2",
            &[],
            CheckKind::Process {
                name: "apache2".into(),
                running: false,
            },
        ),
        check(
            "kernel-param net.ipv4.ip_forward",
            &[],
            CheckKind::KernelParam {
                key: "net.ipv4.ip_forward".into(),
                value: "1".into(),
            },
        ),
        check(
            "dns web1",
            &[],
            CheckKind::Dns {
                host: "web1".into(),
                resolvable: true,
                addrs: strings(&["10.0.0.2"]),
            },
        ),
        check(
            "dns nowhere.invalid",
            &[],
            CheckKind::Dns {
                host: "nowhere.invalid".into(),
                resolvable: false,
                addrs: Vec::new(),
            },
        ),
        check(
            "mount /",
            &[],
            CheckKind::Mount {
                path: "/".into(),
                exists: true,
                filesystem: Some("overlay".into()),
                opts: strings(&["rw"]),
            },
        ),
        check(
            "interface eth0",
            &[],
            CheckKind::Interface {
                name: "eth0".into(),
                exists: true,
                addrs: strings(&["10.0.0.2/24"]),
                mtu: Some(1500),
            },
        ),
        check(
            "interface eth9",
            &[],
            CheckKind::Interface {
                name: "eth9".into(),
                exists: false,
                addrs: Vec::new(),
                mtu: None,
            },
        ),
    ];
    assert_eq!(scenario.checks.len(), expected_checks.len());
    for (got, want) in scenario.checks.iter().zip(&expected_checks) {
        assert_eq!(got, want);
    }
}

#[test]
fn file_form_is_named_after_the_file_and_reads_paths_next_to_it() {
    let path = fixtures().join("smoke.yaml");
    let scenario = Scenario::from_path(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scenario.name, "smoke");
    assert_eq!(scenario.file, path);
    assert_eq!(scenario.dir, fixtures());
    assert_eq!(scenario.topology.nodes.len(), 2);
    assert_eq!(
        scenario.steps[0].action,
        StepAction::Shell {
            script: "#!/bin/sh\necho hello > /tmp/hello\n".into(),
            file: Some(fixtures().join("smoke/hello.sh")),
        }
    );
    // A written name wins over the file's.
    let named = parse(&format!("name: custom\n{NODES}checks:\n  - service: ssh\n"));
    assert_eq!(named.name, "custom");
}

#[test]
fn paths_that_are_neither_a_file_nor_a_scenario_folder_are_refused() {
    let error = Scenario::from_path(&fixtures()).expect_err("no rehearse.yaml there");
    assert_eq!(error.kind(), ErrorKind::MissingFile);
    assert!(
        error
            .message()
            .contains("is a folder without a rehearse.yaml"),
        "{error}"
    );
    assert!(error.hint().is_some_and(|h| h.contains("rehearse.yaml")));

    let error = Scenario::from_path(&fixtures().join("nope")).expect_err("nothing there");
    assert_eq!(error.kind(), ErrorKind::MissingFile);
    assert!(error.message().contains("does not exist"), "{error}");
}

// --- defaults and forms --------------------------------------------------------------

#[test]
fn resolve_expands_groups_in_topology_order() {
    let scenario = parse(&format!("{NODES}checks:\n  - service: ssh\n"));
    let resolve = |on: &[&str]| scenario.resolve(&strings(on));
    assert_eq!(resolve(&[]), ["lb", "web1", "web2", "client"]);
    assert_eq!(resolve(&["web"]), ["web1", "web2"]);
    assert_eq!(resolve(&["client", "balancer"]), ["lb", "client"]);
    assert_eq!(resolve(&["web2", "web"]), ["web1", "web2"]);
    assert_eq!(resolve(&["client"]), ["client"]);
}

#[test]
fn steps_and_checks_default_to_every_node_and_derived_names() {
    let scenario = parse(&format!(
        "{NODES}steps:\n  - shell: apt-get update\n  - ansible: site.yml\n\
         checks:\n  - http: http://lb/\n  - command: |\n      a\n      b\n"
    ));
    let step = &scenario.steps[0];
    assert_eq!(step.name, "shell apt-get update");
    assert!(step.on.is_empty());
    assert_eq!(step.timeout, DEFAULT_STEP_TIMEOUT);
    assert_eq!(scenario.steps[1].name, "ansible site.yml");
    let check = &scenario.checks[0];
    assert_eq!(check.name, "http http://lb/");
    assert!(check.on.is_empty());
    assert_eq!(check.timeout, DEFAULT_CHECK_TIMEOUT);
    assert_eq!(scenario.checks[1].name, "command a …");
    // Checks alone are a scenario (of a cluster set up by hand), and so are steps.
    assert!(scenario.steps.len() == 2 && scenario.checks.len() == 2);
    parse(&format!("{NODES}steps:\n  - shell: \"true\"\n"));
}

#[test]
fn shell_values_are_files_only_when_one_word_with_a_slash_or_sh() {
    let scenario = parse(&format!(
        "{NODES}steps:\n  - shell: scripts/web.sh\n  - shell: systemctl restart nginx\n  \
         - shell: |\n      scripts/web.sh\n  - shell: reboot\n"
    ));
    let files: Vec<Option<PathBuf>> = scenario
        .steps
        .iter()
        .map(|step| match &step.action {
            StepAction::Shell { file, .. } => file.clone(),
            other => panic!("not a shell step: {other:?}"),
        })
        .collect();
    assert_eq!(
        files,
        [Some(dir().join("scripts/web.sh")), None, None, None],
        "a | block is a script even when it looks like a path"
    );
    assert_eq!(scenario.steps[0].name, "shell web.sh");
}

#[test]
fn a_file_check_may_name_a_group_and_a_check_may_match_numbers() {
    let scenario = parse(&format!(
        "{NODES}checks:\n  - file: /srv\n    group: web\n  - group: web\n  \
         - kernel-param: vm.swappiness\n    value: 60\n  - package: nginx\n    version: \"1.22\"\n"
    ));
    assert!(
        matches!(scenario.checks[0].kind, CheckKind::File { ref group, .. } if group.as_deref() == Some("web"))
    );
    assert!(matches!(scenario.checks[1].kind, CheckKind::Group { ref name, .. } if name == "web"));
    assert!(
        matches!(scenario.checks[2].kind, CheckKind::KernelParam { ref value, .. } if value == "60")
    );
}

#[test]
fn json_schema_describes_each_kind_of_step_and_check() {
    let schema = Scenario::json_schema();
    assert_eq!(schema["title"], "rehearse scenario");
    assert_eq!(schema["required"], serde_json::json!(["nodes"]));
    let defs = &schema["definitions"];
    assert_eq!(
        defs["CheckFile"]["oneOf"].as_array().map(Vec::len),
        Some(14)
    );
    assert_eq!(defs["StepFile"]["oneOf"].as_array().map(Vec::len), Some(3));
    let http = &defs["HttpCheck"];
    assert_eq!(http["required"], serde_json::json!(["http"]));
    assert_eq!(http["additionalProperties"], false);
    assert_eq!(http["properties"]["status"]["default"], 200);
    assert!(http["properties"]["skip_unless"].is_object());
    assert!(defs["KernelParamCheck"]["properties"]["kernel-param"].is_object());
    assert_eq!(
        defs["CopyStep"]["required"],
        serde_json::json!(["copy", "dest"])
    );
}

// --- refusals ----------------------------------------------------------------------

#[test]
fn yaml_syntax_errors_point_at_the_spot() {
    let error = refuse("checks:\n  - http: [unclosed\n");
    assert_eq!(error.kind(), ErrorKind::Syntax, "{error}");
    assert_eq!(error.location().map(|l| l.line), Some(8), "{error}");
}

#[test]
fn unknown_keys_are_named_where_written() {
    assert_error(
        &refuse("check:\n  - http: http://lb/\n"),
        ErrorKind::UnknownField,
        (6, 1),
        "check",
        &["unknown field `check`"],
        "fix its spelling",
    );
    assert_error(
        &refuse("checks:\n  - http: http://lb/\n    statuss: 200\n"),
        ErrorKind::UnknownField,
        (8, 5),
        "checks[0].statuss",
        &["unknown key `statuss` in this http check", "did you mean `status`?"],
        "http checks take: body, headers, insecure, method, status; every check also takes: name, on, timeout, skip_unless",
    );
    assert_error(
        &refuse("steps:\n  - shell: ls\n    enviroment: {A: b}\n"),
        ErrorKind::UnknownField,
        (8, 5),
        "steps[0].enviroment",
        &["unknown key `enviroment` in this shell step"],
        "shell steps take: env; every step also takes: name, on, timeout",
    );
}

#[test]
fn keys_of_another_kind_name_the_kind_they_belong_to() {
    assert_error(
        &refuse("checks:\n  - file: /etc/hosts\n    status: 200\n"),
        ErrorKind::UnknownField,
        (8, 5),
        "checks[0].status",
        &["`status` is not a key of file checks (it belongs to http checks)"],
        "file checks take: contains, exists, filetype, group, mode, owner",
    );
    assert_error(
        &refuse("steps:\n  - shell: ls\n    dest: /etc/x\n"),
        ErrorKind::UnknownField,
        (8, 5),
        "steps[0].dest",
        &["`dest` is not a key of shell steps (it belongs to copy steps)"],
        "shell steps take: env",
    );
}

#[test]
fn a_check_needs_exactly_one_kind_key() {
    assert_error(
        &refuse("checks:\n  - on: lb\n    timeout: 5s\n"),
        ErrorKind::MissingField,
        (7, 5),
        "checks[0]",
        &["this check has no kind key"],
        "package, service, port, addr, http, command, file, user, group, process, kernel-param, dns, mount, interface",
    );
    assert_error(
        &refuse("checks:\n  - http: http://lb/\n    command: curl lb\n"),
        ErrorKind::InvalidValue,
        (8, 5),
        "checks[0].command",
        &["two kind keys, `http` and `command`"],
        "one check per kind",
    );
    assert_error(
        &refuse("checks:\n  - http://lb/\n"),
        ErrorKind::InvalidValue,
        (7, 5),
        "checks[0]",
        &["a check must be a mapping, not a string"],
        "http: http://web1/",
    );
}

#[test]
fn a_step_runs_exactly_one_of_shell_ansible_or_copy() {
    assert_error(
        &refuse("steps:\n  - name: nothing\n"),
        ErrorKind::MissingField,
        (7, 5),
        "steps[0]",
        &["this step has no kind key"],
        "shell, ansible, copy",
    );
    assert_error(
        &refuse("steps:\n  - shell: ls\n    ansible: site.yml\n"),
        ErrorKind::InvalidValue,
        (8, 5),
        "steps[0].ansible",
        &["two kind keys, `shell` and `ansible`"],
        "one step per kind",
    );
    assert_error(
        &refuse("steps:\n  - copy: files/haproxy.cfg\n"),
        ErrorKind::MissingField,
        (7, 5),
        "steps[0]",
        &["missing field `dest`"],
        "add the `dest` key",
    );
}

#[test]
fn targets_must_be_nodes_or_groups() {
    let listing = "(nodes: lb, web1, web2, client; groups: balancer, web)";
    assert_error(
        &refuse("steps:\n  - shell: ls\n  - shell: ls\n  - shell: ls\n    on: web3\n"),
        ErrorKind::UnknownTarget,
        (10, 9),
        "steps[2].on",
        &["unknown node or group \"web3\"", listing],
        "name a node or a group",
    );
    assert_error(
        &refuse("checks:\n  - service: ssh\n    on: [lb, webs]\n"),
        ErrorKind::UnknownTarget,
        (8, 14),
        "checks[0].on[1]",
        &["unknown node or group \"webs\"", listing],
        "name a node or a group",
    );
    assert_error(
        &refuse("checks:\n  - service: ssh\n    on: []\n"),
        ErrorKind::InvalidValue,
        (8, 5),
        "checks[0].on",
        &["`on` is empty"],
        "remove `on` to select every node",
    );
    assert_error(
        &refuse("steps:\n  - ansible: site.yml\n    controller: balancer\n"),
        ErrorKind::UnknownTarget,
        (8, 17),
        "steps[0].controller",
        &["unknown controller node \"balancer\" (nodes: lb, web1, web2, client)"],
        "remove `controller`",
    );
}

#[test]
fn a_group_named_like_a_node_is_ambiguous() {
    let error = Scenario::from_yaml(
        "nodes:\n  - web1\n  - {name: web2, groups: [web1]}\nchecks:\n  - service: ssh\n",
        FILE,
        &dir(),
    )
    .expect_err("ambiguous");
    assert_error(
        &error,
        ErrorKind::Duplicate,
        (3, 27),
        "nodes[1].groups[0]",
        &["group \"web1\" has the name of a node"],
        "give the group a name no node has",
    );
}

#[test]
fn files_a_step_reads_must_exist() {
    let missing = dir().join("scripts/missing.sh");
    assert_error(
        &refuse("steps:\n  - shell: scripts/missing.sh\n"),
        ErrorKind::MissingFile,
        (7, 12),
        "steps[0].shell",
        &[&format!("script file {} not found", missing.display())],
        "write it as a block (`shell: |`)",
    );
    assert_error(
        &refuse("steps:\n  - shell: files\n  - ansible: playbooks/site.yml\n"),
        ErrorKind::MissingFile,
        (8, 14),
        "steps[1].ansible",
        &[&format!(
            "playbook {} not found",
            dir().join("playbooks/site.yml").display()
        )],
        "relative to the scenario folder",
    );
    assert_error(
        &refuse("steps:\n  - ansible: files\n"),
        ErrorKind::MissingFile,
        (7, 14),
        "steps[0].ansible",
        &["is a folder, not a file"],
        "relative to the scenario folder",
    );
    assert_error(
        &refuse("steps:\n  - copy: files/nginx.conf\n    dest: /etc/nginx/nginx.conf\n"),
        ErrorKind::MissingFile,
        (7, 11),
        "steps[0].copy",
        &[&format!(
            "copy source {} not found",
            dir().join("files/nginx.conf").display()
        )],
        "relative to the scenario folder",
    );
}

#[test]
fn copy_needs_an_absolute_dest_and_an_octal_mode() {
    assert_error(
        &refuse("steps:\n  - copy: files/haproxy.cfg\n    dest: etc/haproxy.cfg\n"),
        ErrorKind::InvalidValue,
        (8, 11),
        "steps[0].dest",
        &["destination \"etc/haproxy.cfg\" is not an absolute path"],
        "starting with /",
    );
    assert_error(
        &refuse("steps:\n  - copy: files/haproxy.cfg\n    dest: /etc/x\n    mode: \"0999\"\n"),
        ErrorKind::InvalidValue,
        (9, 11),
        "steps[0].mode",
        &["invalid mode \"0999\""],
        "in octal",
    );
    assert_error(
        &refuse("checks:\n  - file: /etc/x\n    mode: 644\n"),
        ErrorKind::InvalidValue,
        (8, 11),
        "checks[0].mode",
        &["mode 644 is a number; write the mode as a quoted octal string"],
        "expected kind",
    );
}

#[test]
fn timeouts_are_positive_durations_with_a_unit() {
    assert_error(
        &refuse("steps:\n  - shell: ls\n    timeout: 5\n"),
        ErrorKind::InvalidValue,
        (8, 14),
        "steps[0].timeout",
        &["invalid timeout \"5\""],
        "with a unit",
    );
    assert_error(
        &refuse("checks:\n  - service: ssh\n    timeout: 0s\n"),
        ErrorKind::InvalidValue,
        (8, 14),
        "checks[0].timeout",
        &["timeout must be longer than zero"],
        "with a unit",
    );
}

#[test]
fn malformed_matchers_are_refused_where_written() {
    assert_error(
        &refuse("checks:\n  - http: http://lb/\n    body: [ok, \"/served by web[12/\"]\n"),
        ErrorKind::InvalidValue,
        (8, 16),
        "checks[0].body[1]",
        &["invalid regex /served by web[12/: unclosed character class"],
        "Python's re syntax",
    );
    assert_error(
        &refuse("checks:\n  - command: id\n    stdout: \"/(?<user>\\\\w+)/\"\n"),
        ErrorKind::InvalidValue,
        (8, 13),
        "checks[0].stdout",
        &["is not supported by Python's re"],
        "(?P<name>...)",
    );
    assert_error(
        &refuse("checks:\n  - file: /etc/motd\n    contains:\n      - \"\"\n"),
        ErrorKind::InvalidValue,
        (9, 9),
        "checks[0].contains[0]",
        &["an empty matcher matches any text"],
        "remove this matcher",
    );
    assert_error(
        &refuse("checks:\n  - http: http://lb/\n    headers: {Server: \"/\\\\pL/\"}\n"),
        ErrorKind::InvalidValue,
        (8, 23),
        "checks[0].headers.Server",
        &["a Unicode class"],
        "\\w",
    );
    assert_error(
        &refuse("checks:\n  - kernel-param: net.ipv4.ip_forward\n    value: \"/[1/\"\n"),
        ErrorKind::InvalidValue,
        (8, 12),
        "checks[0].value",
        &["invalid regex /[1/"],
        "Python's re syntax",
    );
}

#[test]
fn port_and_addr_subjects_have_a_format() {
    assert_error(
        &refuse("checks:\n  - port: tcp:http\n"),
        ErrorKind::InvalidValue,
        (7, 11),
        "checks[0].port",
        &["invalid port \"tcp:http\""],
        "`tcp:80`, `udp:53` or just `80`",
    );
    assert_error(
        &refuse("checks:\n  - port: 70000\n"),
        ErrorKind::InvalidValue,
        (7, 11),
        "checks[0].port",
        &["invalid port \"70000\""],
        "from 1 to 65535",
    );
    assert_error(
        &refuse("checks:\n  - addr: web1\n"),
        ErrorKind::InvalidValue,
        (7, 11),
        "checks[0].addr",
        &["invalid address \"web1\": no port"],
        "`tcp://host:port` or `host:port`",
    );
    assert_error(
        &refuse("checks:\n  - addr: udp://web1:53\n"),
        ErrorKind::InvalidValue,
        (7, 11),
        "checks[0].addr",
        &["scheme udp is not supported"],
        "`tcp://host:port`",
    );
}

#[test]
fn other_check_values_are_checked_too() {
    assert_error(
        &refuse("checks:\n  - http: lb/health\n"),
        ErrorKind::InvalidValue,
        (7, 11),
        "checks[0].http",
        &["invalid URL \"lb/health\""],
        "http://web1/",
    );
    assert_error(
        &refuse("checks:\n  - http: http://lb/\n    status: 99\n"),
        ErrorKind::InvalidValue,
        (8, 13),
        "checks[0].status",
        &["99 is not an HTTP status code"],
        "100 to 599",
    );
    assert_error(
        &refuse("checks:\n  - http: http://lb/\n    status: ok\n"),
        ErrorKind::InvalidValue,
        (8, 13),
        "checks[0].status",
        &["invalid type: string \"ok\", expected u16"],
        "expected kind",
    );
    assert_error(
        &refuse("checks:\n  - file: /etc\n    filetype: folder\n"),
        ErrorKind::InvalidValue,
        (8, 15),
        "checks[0].filetype",
        &["unknown variant `folder`, expected one of `file`, `directory`, `symlink`"],
        "one of the values listed",
    );
    assert_error(
        &refuse("checks:\n  - package: Nginx\n"),
        ErrorKind::InvalidName,
        (7, 14),
        "checks[0].package",
        &["invalid package name \"Nginx\""],
        "nginx",
    );
    assert_error(
        &refuse("checks:\n  - package: nginx\n    version: 1.10\n"),
        ErrorKind::InvalidValue,
        (8, 14),
        "checks[0].version",
        &["quote it"],
        "expected kind",
    );
    assert_error(
        &refuse("steps:\n  - shell: ls\n    env: {MY-VAR: x}\n"),
        ErrorKind::InvalidName,
        (8, 11),
        "steps[0].env.MY-VAR",
        &["invalid environment variable name \"MY-VAR\""],
        "letters, digits and _",
    );
    assert_error(
        &refuse("steps:\n  - shell: \"  \"\n"),
        ErrorKind::InvalidValue,
        (7, 12),
        "steps[0].shell",
        &["the script is empty"],
        "remove the step",
    );
}

#[test]
fn a_scenario_with_nothing_to_run_is_refused() {
    assert_error(
        &refuse(""),
        ErrorKind::MissingField,
        (1, 1),
        "steps",
        &["nothing to run"],
        "add `steps`",
    );
    assert_error(
        &refuse("steps: []\nchecks: []\n"),
        ErrorKind::MissingField,
        (6, 8),
        "steps",
        &["nothing to run"],
        "`checks` that verify them",
    );
}

#[test]
fn topology_errors_keep_their_positions_in_a_scenario() {
    let error = Scenario::from_yaml("nodes: [lb, lb]\nchecks:\n  - service: ssh\n", FILE, &dir())
        .expect_err("duplicate node");
    assert_eq!(error.kind(), ErrorKind::Duplicate);
    assert_eq!(error.field(), Some("nodes[1].name"));
    assert_eq!(error.location().map(|l| (l.line, l.column)), Some((1, 13)));

    let error = refuse("ttl: soon\nchecks:\n  - service: ssh\n");
    assert_eq!(error.kind(), ErrorKind::InvalidTtl);
    assert_eq!(error.location().map(|l| l.line), Some(6));

    let error = refuse("checks:\n  - service: ssh\nchecks: []\n");
    assert_eq!(error.kind(), ErrorKind::Duplicate);
    assert_eq!(error.location().map(|l| l.line), Some(8));
}

#[test]
fn the_examples_of_the_repository_parse() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut count = 0;
    for entry in std::fs::read_dir(&examples).expect("examples folder") {
        let folder = entry.expect("readable entry").path();
        if folder.join("rehearse.yaml").is_file() {
            let scenario = Scenario::from_path(&folder).unwrap_or_else(|e| panic!("{e}"));
            assert!(!scenario.checks.is_empty(), "{}", folder.display());
            count += 1;
        }
    }
    assert!(count >= 3, "only {count} examples found");
}

#[test]
fn the_examples_in_the_format_reference_parse() {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/scenario.md");
    let doc = std::fs::read_to_string(doc).expect("docs/scenario.md");
    let blocks: Vec<&str> = doc
        .split("```yaml\n")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(blocks.len() >= 5, "only {} yaml blocks", blocks.len());
    for block in blocks {
        // Fragments are lists of steps, or `checks:` alone; give them nodes.
        let yaml = if block.starts_with("- ") {
            let steps: String = block.lines().map(|line| format!("  {line}\n")).collect();
            format!("{NODES}steps:\n{steps}")
        } else if block.starts_with("checks:") {
            format!("{NODES}{block}")
        } else if ["load:", "faults:", "probes:"]
            .iter()
            .any(|k| block.starts_with(k))
        {
            format!("{CONFIDENCE_NODES}{block}checks:\n  - file: /etc/hostname\n")
        } else {
            block.to_owned()
        };
        parse(&yaml);
    }
}

#[test]
fn platforms_run_every_unpinned_node_on_each_image() {
    let yaml = "\
nodes:
  - {name: lb, image: debian-12}
  - web1
  - {name: web2, groups: [web]}
platforms: [debian-11, debian-13, ubuntu-24.04]
checks:
  - command: 'true'
";
    let scenario = parse(yaml);
    assert_eq!(
        scenario.platforms,
        ["debian-11", "debian-13", "ubuntu-24.04"]
    );
    assert_eq!(scenario.pinned, ["lb"]);
    let on = scenario.on_platform("ubuntu-24.04");
    let images: Vec<(&str, &str)> = on
        .topology
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.image.as_str()))
        .collect();
    assert_eq!(
        images,
        [
            ("lb", "debian-12"),
            ("web1", "ubuntu-24.04"),
            ("web2", "ubuntu-24.04")
        ]
    );
    assert!(on.platforms.is_empty(), "a platform run is not a matrix");
    // Without `platforms:` there is one run, on the images nodes name.
    assert!(parse(&format!("{NODES}checks:\n  - command: 'true'\n"))
        .platforms
        .is_empty());
}

#[test]
fn a_platform_listed_twice_or_misnamed_is_refused_at_its_line() {
    let error = refuse("platforms:\n  - debian-12\n  - debian-12\nchecks:\n  - command: 'true'\n");
    assert_error(
        &error,
        ErrorKind::Duplicate,
        (8, 5),
        "platforms[1]",
        &["\"debian-12\"", "twice"],
        "once",
    );
    let error = refuse("platforms: [Debian 12]\nchecks:\n  - command: 'true'\n");
    assert_eq!(error.kind(), ErrorKind::InvalidName, "{error}");
    assert_eq!(error.field(), Some("platforms[0]"), "{error}");
    assert!(error.hint().unwrap_or("").contains("debian-13"), "{error}");
}

#[test]
fn a_step_declares_its_expected_churn_as_absolute_globs() {
    let scenario = parse(&format!(
        "{NODES}steps:\n  - shell: deploy\n    idempotence: {{allow_changes: [\"/var/lib/app/**\", /etc/app/*.stamp]}}\n"
    ));
    let rules = &scenario.steps[0].idempotence;
    assert_eq!(rules.allowing("/var/lib/app/a/b"), Some("/var/lib/app/**"));
    assert_eq!(rules.allowing("/etc/app/x.stamp"), Some("/etc/app/*.stamp"));
    // `*` stays within one folder.
    assert_eq!(rules.allowing("/etc/app/sub/x.stamp"), None);
    assert_eq!(rules.allowing("/etc/app.conf"), None);

    let error = refuse(
        "steps:\n  - shell: deploy\n    idempotence:\n      allow_changes: [/srv/x, var/log]\n",
    );
    assert_error(
        &error,
        ErrorKind::InvalidValue,
        (9, 31),
        "steps[0].idempotence.allow_changes[1]",
        &["\"var/log\"", "not an absolute path"],
        "/var/lib/app/**",
    );
    let error = refuse("steps:\n  - shell: deploy\n    idempotence: {allow: [/x]}\n");
    assert!(error.to_string().contains("allow"), "{error}");
}

/// The nodes of a live cluster, as `Scenario::of_checks` takes them.
fn cluster_nodes() -> Vec<(String, Vec<String>)> {
    vec![
        ("web1".to_owned(), vec!["web".to_owned()]),
        ("client".to_owned(), Vec::new()),
    ]
}

fn refuse_checks(checks: serde_json::Value) -> SpecError {
    let checks = rehearse_spec::scenario::ChecksInput(checks);
    match Scenario::of_checks(&cluster_nodes(), checks, Path::new("/")) {
        Ok(scenario) => panic!("should be refused, parsed as {scenario:?}"),
        Err(error) => error,
    }
}

#[test]
fn checks_given_as_json_are_read_by_the_file_rules() {
    let checks = serde_json::json!([
        {"command": "true", "on": "web"},
        {"http": "http://web1/", "on": "client", "status": 204, "timeout": "5s"},
    ]);
    let scenario = Scenario::of_checks(
        &cluster_nodes(),
        rehearse_spec::scenario::ChecksInput(checks),
        Path::new("/"),
    )
    .expect("checks parse");
    assert_eq!(scenario.checks.len(), 2);
    assert_eq!(scenario.checks[1].on, vec!["client".to_owned()]);
    assert_eq!(scenario.checks[1].timeout, Duration::from_secs(5));
    // One check may be given without a list.
    let one = serde_json::json!({"service": "nginx", "on": "web1"});
    let scenario = Scenario::of_checks(
        &cluster_nodes(),
        rehearse_spec::scenario::ChecksInput(one),
        Path::new("/"),
    )
    .expect("one check parses");
    assert_eq!(scenario.checks.len(), 1);
}

#[test]
fn refusals_of_checks_given_as_json_name_the_field() {
    let error = refuse_checks(serde_json::json!([
        {"command": "true"},
        {"command": "true"},
        {"http": "http://web1/", "on": "client", "statuss": 200},
    ]));
    assert_eq!(error.kind(), ErrorKind::UnknownField);
    assert_eq!(error.field(), Some("checks[2].statuss"));
    assert!(error.location().is_none(), "a value has no lines: {error}");
    assert!(
        error.to_string().contains("did you mean `status`"),
        "{error}"
    );

    let error = refuse_checks(serde_json::json!([
        {"http": "http://web1/", "on": "client", "status": "ok"},
    ]));
    assert_eq!(error.field(), Some("checks[0].status"), "{error}");
    assert_eq!(error.kind(), ErrorKind::InvalidValue);

    let error = refuse_checks(serde_json::json!([{"service": "nginx", "on": "nosuchnode"}]));
    assert_eq!(error.field(), Some("checks[0].on[0]"), "{error}");
    assert!(error.to_string().contains("nosuchnode"), "{error}");

    let error = refuse_checks(serde_json::json!([{"bogus": "x", "on": "web1"}]));
    assert_eq!(error.field(), Some("checks[0]"), "{error}");
    assert!(error.to_string().contains("no kind key"), "{error}");

    let error = refuse_checks(serde_json::json!([]));
    assert_eq!(error.field(), Some("checks"), "{error}");
}

#[test]
fn checks_given_as_yaml_text_are_placed_in_that_text() {
    let error = refuse_checks(serde_json::json!("- command: hostname\n  on: [web1\n"));
    assert_eq!(error.kind(), ErrorKind::Syntax, "{error}");
    let location = error.location().expect("text errors have a line");
    assert_eq!(
        (location.file.as_str(), location.line > 1),
        ("checks", true),
        "{error}"
    );

    let error = refuse_checks(serde_json::json!(
        "- command: hostname\n  on: web1\n  stdoutt: [x]\n"
    ));
    assert_eq!(error.field(), Some("checks[0].stdoutt"), "{error}");
}
