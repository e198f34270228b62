//! Ansible steps on a real two-node cluster whose nodes are in different
//! groups: node1 in `web`, node2 in `db`.

mod common;

use std::time::Duration;

use common::{ansible, cluster, dump, Run};
use rehearse_runner::{Pass, StepReport, TaskStatus};
use rehearse_spec::scenario::StepAction;
use rehearse_spec::Topology;

fn grouped() -> Topology {
    Topology::from_yaml(
        "nodes:\n  - name: node1\n    groups: [web]\n  - name: node2\n    groups: [db]\n",
        "runner-test.yml",
    )
    .expect("topology")
}

fn run() -> Run {
    Run::new(cluster(grouped))
}

/// Held by tests that leave transient files in /tmp (a running module's
/// payload) and by those that compare /tmp before and after.
static TMP_WATCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

fn tasks<'a>(report: &'a StepReport, host: &str) -> Vec<(&'a str, TaskStatus)> {
    report
        .ansible
        .as_ref()
        .expect("an ansible report")
        .tasks
        .iter()
        .filter(|t| t.host == host)
        .map(|t| (t.task.as_str(), t.status))
        .collect()
}

const IDEMPOTENCE: &str = r#"
- hosts: all
  gather_facts: false
  tasks:
    - name: motd
      ansible.builtin.copy:
        content: "hello from {{ inventory_hostname }}\n"
        dest: /srv/ansible-idem/motd
    - name: what time is it
      ansible.builtin.command: date
"#;

#[test]
fn a_second_pass_reports_exactly_the_task_that_always_changes() {
    let run = run();
    run.sh("node1", "mkdir -p /srv/ansible-idem");
    run.sh("node2", "mkdir -p /srv/ansible-idem");
    run.file("site.yml", IDEMPOTENCE);
    let step = ansible("site", "site.yml");

    let first = run.apply(&step, &[], Pass::First);
    assert!(first.ok, "{}", dump(&first));
    assert_eq!(first.kind, "ansible");
    assert_eq!(
        tasks(&first, "node1"),
        vec![
            ("motd", TaskStatus::Changed),
            ("what time is it", TaskStatus::Changed)
        ]
    );
    let a = first.ansible.as_ref().unwrap();
    let motd = a
        .tasks
        .iter()
        .find(|t| t.task == "motd" && t.host == "node2")
        .unwrap();
    assert_eq!(motd.action, "ansible.builtin.copy");
    assert_eq!(motd.path.as_deref(), Some("site.yml:5"));
    assert_eq!(motd.diff.len(), 1, "{motd:?}");
    assert_eq!(motd.diff[0].after.as_deref(), Some("hello from node2\n"));
    assert!(motd
        .diff_text
        .as_deref()
        .unwrap_or_default()
        .contains("+hello from node2"));
    assert_eq!(a.recap["node1"].changed, 2);

    let second = run.apply(&step, &[], Pass::Second);
    assert!(second.ok, "{}", dump(&second));
    assert_eq!(
        sorted(second.changed()),
        vec![
            "node1: task 'what time is it' changed",
            "node2: task 'what time is it' changed",
        ],
        "{}",
        dump(&second)
    );
}

#[test]
fn a_play_on_a_group_only_touches_that_groups_nodes() {
    let run = run();
    run.file(
        "groups.yml",
        r#"
- hosts: web
  gather_facts: false
  tasks:
    - name: web only
      ansible.builtin.copy: {content: "web\n", dest: /srv/group-web}
- hosts: net_default
  gather_facts: false
  tasks:
    - name: whole network
      ansible.builtin.copy: {content: "net\n", dest: /srv/group-net}
"#,
    );
    let report = run.apply(&ansible("groups", "groups.yml"), &[], Pass::First);
    assert!(report.ok, "{}", dump(&report));
    assert_eq!(
        tasks(&report, "node1"),
        vec![
            ("web only", TaskStatus::Changed),
            ("whole network", TaskStatus::Changed)
        ]
    );
    assert_eq!(
        tasks(&report, "node2"),
        vec![("whole network", TaskStatus::Changed)]
    );
    assert_eq!(run.sh("node1", "cat /srv/group-web").1, "web\n");
    assert_ne!(run.sh("node2", "test -e /srv/group-web").0, 0);
    assert_eq!(run.sh("node2", "cat /srv/group-net").1, "net\n");
}

#[test]
fn targets_limit_the_play() {
    let run = run();
    run.file(
        "limit.yml",
        r#"
- hosts: all
  gather_facts: false
  tasks:
    - name: limited
      ansible.builtin.copy: {content: "x\n", dest: /srv/limited}
"#,
    );
    let report = run.apply(&ansible("limit", "limit.yml"), &["node2"], Pass::First);
    assert!(report.ok, "{}", dump(&report));
    assert_eq!(report.changed(), vec!["node2: task 'limited' changed"]);
    assert_ne!(run.sh("node1", "test -e /srv/limited").0, 0);
}

#[test]
fn a_failing_task_names_its_host_task_and_message() {
    let run = run();
    run.file(
        "fail.yml",
        r#"
- hosts: all
  gather_facts: false
  tasks:
    - name: break one node
      ansible.builtin.fail:
        msg: "this node is broken on purpose"
      when: inventory_hostname == 'node2'
"#,
    );
    let report = run.apply(&ansible("fail", "fail.yml"), &[], Pass::First);
    assert!(!report.ok, "{}", dump(&report));
    assert_eq!(
        tasks(&report, "node2"),
        vec![("break one node", TaskStatus::Failed)]
    );
    assert_eq!(
        tasks(&report, "node1"),
        vec![("break one node", TaskStatus::Skipped)]
    );
    let error = report.error.as_deref().unwrap();
    assert!(
        error.starts_with(
            "task 'break one node' (fail.yml:5) failed on node2: this node is broken on purpose"
        ),
        "{error}"
    );
    assert!(error.contains("ansible.log"), "{error}");
}

#[test]
fn a_playbook_ansible_refuses_is_reported_with_ansibles_reason() {
    let run = run();
    run.file(
        "broken.yml",
        "- hosts: all\n  tasks:\n    - name: x\n      no_such_module_anywhere: {}\n",
    );
    let report = run.apply(&ansible("broken", "broken.yml"), &[], Pass::First);
    assert!(!report.ok);
    let error = report.error.as_deref().unwrap();
    assert!(error.contains("exited with code"), "{error}");
    assert!(error.contains("ERROR!"), "{error}");
}

#[test]
fn a_hanging_play_is_killed_with_the_hung_nodes_state_captured() {
    let _tmp = TMP_WATCH.lock().unwrap_or_else(|e| e.into_inner());
    let run = run();
    run.file(
        "hang.yml",
        r#"
- hosts: all
  gather_facts: false
  tasks:
    - name: hang
      ansible.builtin.command: sleep 4243
"#,
    );
    let mut step = ansible("hang", "hang.yml");
    step.timeout = Duration::from_secs(15);
    let report = run.apply(&step, &["node2"], Pass::First);
    assert!(!report.ok);
    let a = report.ansible.as_ref().unwrap();
    assert!(a.timed_out, "{}", dump(&report));
    assert_eq!(a.exit_code, None);
    assert_eq!(a.unfinished.len(), 1, "{}", dump(&report));
    assert_eq!(a.unfinished[0].host, "node2");
    assert_eq!(a.unfinished[0].task, "hang");
    let error = report.error.as_deref().unwrap();
    assert!(
        error.contains("timed out") && error.contains("'hang'") && error.contains("node2"),
        "{error}"
    );
    assert_eq!(report.hang_state.len(), 1);
    assert_eq!(report.hang_state[0].node, "node2");
    assert!(
        report.hang_state[0].processes.contains("sleep 4243"),
        "{}",
        report.hang_state[0].processes
    );
    // The module Ansible left running on node2 went with the run.
    assert_eq!(
        run.sh("node2", "pgrep -fx 'sleep 4243'").0,
        1,
        "the module survived"
    );
    assert_eq!(
        run.sh("node2", "ls /tmp | grep -c ansible_ || true").1,
        "0\n"
    );
}

#[test]
fn a_controller_node_runs_the_play_against_another_node() {
    let _tmp = TMP_WATCH.lock().unwrap_or_else(|e| e.into_inner());
    let run = run();
    // systemd's PrivateTmp folders come and go with services: not ours.
    let hygiene = "ls -A /tmp /root | grep -v '^systemd-private-'";
    let before = [run.sh("node1", hygiene).1, run.sh("node2", hygiene).1];
    run.file(
        "playbooks/controlled.yml",
        r#"
- hosts: db
  gather_facts: true
  tasks:
    - name: from controller
      ansible.builtin.copy:
        content: "{{ greeting }} ({{ ansible_facts.hostname }})\n"
        dest: /srv/from-controller
"#,
    );
    let mut step = ansible("controlled", "playbooks/controlled.yml");
    step.action = StepAction::Ansible {
        playbook: "playbooks/controlled.yml".into(),
        controller: Some("node1".into()),
        extra_vars: vec![("greeting".into(), "hi = from the controller".into())],
    };
    let first = run.apply(&step, &["node2"], Pass::First);
    assert!(first.ok, "{}", dump(&first));
    let a = first.ansible.as_ref().unwrap();
    assert_eq!(a.controller.as_deref(), Some("node1"));
    assert!(
        a.tasks.iter().all(|t| t.host == "node2"),
        "{}",
        dump(&first)
    );
    assert_eq!(
        first.changed(),
        vec!["node2: task 'from controller' changed"]
    );
    let from = a
        .tasks
        .iter()
        .find(|t| t.task == "from controller")
        .unwrap();
    assert_eq!(from.path.as_deref(), Some("playbooks/controlled.yml:5"));
    assert_eq!(
        run.sh("node2", "cat /srv/from-controller").1,
        "hi = from the controller (node2)\n"
    );
    assert_ne!(run.sh("node1", "test -e /srv/from-controller").0, 0);
    assert_eq!(run.sh("node1", "command -v ansible-playbook").0, 0);

    let second = run.apply(&step, &["node2"], Pass::Second);
    assert!(second.ok, "{}", dump(&second));
    assert_eq!(second.changed(), Vec::<String>::new(), "{}", dump(&second));

    let after = [run.sh("node1", hygiene).1, run.sh("node2", hygiene).1];
    assert_eq!(before, after, "Ansible left files in /tmp or /root");
    assert_eq!(
        run.sh(
            "node1",
            "ls /run/rehearse | grep -c '^step-.*-ansible$' || true"
        )
        .1,
        "0\n",
        "the controller kept the run's files"
    );
}
