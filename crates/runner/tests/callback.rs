//! The `rehearse_events` callback plugin against the host's real Ansible, on
//! localhost: no cluster needed.

use std::path::Path;
use std::process::Command;

use rehearse_runner::{TaskResult, TaskStatus};

const PLUGIN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/ansible/callback/rehearse_events.py"
);

const PLAYBOOK: &str = r#"
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    pkg: nginx
    out: "{{ lookup('env', 'OUT') }}"
  tasks:
    - name: "configure {{ pkg }}"
      ansible.builtin.copy:
        content: "{{ item }}\n"
        dest: "{{ out }}/{{ item }}.conf"
      loop: [a, b]
      notify: reload
    - name: not on localhost
      ansible.builtin.command: "true"
      when: false
    - name: tolerated
      ansible.builtin.command: "false"
      ignore_errors: true
    - name: broken
      ansible.builtin.shell: "echo 'no such thing' >&2; exit 4"
  handlers:
    - name: reload
      ansible.builtin.command: "true"
"#;

/// Runs the playbook with the plugin enabled; returns the task results.
fn play(dir: &Path) -> Vec<TaskResult> {
    let plugins = dir.join("callback_plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    std::fs::copy(PLUGIN, plugins.join("rehearse_events.py")).unwrap();
    std::fs::write(dir.join("site.yml"), PLAYBOOK).unwrap();
    let events = dir.join("events.jsonl");
    let out = Command::new("ansible-playbook")
        .args(["-i", "localhost,", "--diff", "site.yml"])
        .current_dir(dir)
        .env("ANSIBLE_CALLBACK_PLUGINS", &plugins)
        .env("ANSIBLE_CALLBACKS_ENABLED", "rehearse_events")
        .env("ANSIBLE_LOCAL_TEMP", dir.join("tmp"))
        .env("ANSIBLE_LOCALHOST_WARNING", "False")
        .env("REHEARSE_EVENTS", &events)
        .env("OUT", dir)
        .output()
        .expect("ansible-playbook runs (install ansible-core on the host)");
    assert_eq!(
        out.status.code(),
        Some(2),
        "the playbook should fail at `broken`: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    std::fs::read_to_string(&events)
        .expect("the plugin wrote its events")
        .lines()
        .filter(|l| l.contains("\"task_result\""))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn the_plugin_reports_every_result_with_names_diffs_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let results = play(dir.path());
    let summary: Vec<(&str, TaskStatus, bool, bool)> = results
        .iter()
        .map(|t| (t.task.as_str(), t.status, t.ignored, t.handler))
        .collect();
    assert_eq!(
        summary,
        vec![
            // Names as Ansible shows them, templated.
            ("configure nginx", TaskStatus::Changed, false, false),
            ("not on localhost", TaskStatus::Skipped, false, false),
            ("tolerated", TaskStatus::Failed, true, false),
            ("broken", TaskStatus::Failed, false, false),
        ],
        "{results:#?}"
    );
    let configure = &results[0];
    assert_eq!(configure.action, "ansible.builtin.copy");
    assert_eq!(
        configure.path.as_deref().map(|p| p.ends_with("site.yml:9")),
        Some(true)
    );
    // One diff per loop item.
    let afters: Vec<&str> = configure
        .diff
        .iter()
        .filter_map(|d| d.after.as_deref())
        .collect();
    assert_eq!(afters, vec!["a\n", "b\n"]);
    assert!(configure.diff_text.as_deref().unwrap_or("").contains("+b"));
    let broken = &results[3];
    assert_eq!(broken.rc, Some(4));
    assert_eq!(broken.msg.as_deref(), Some("non-zero return code"));
    assert_eq!(broken.stderr.as_deref(), Some("no such thing"));
}
