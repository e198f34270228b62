//! The evaluation tasks in `tasks/`: every file parses, and no check of any
//! task passes on a fresh cluster nobody touched, so code that does nothing
//! (or the wrong thing) can never converge. Each task's topology boots once,
//! with its checks evaluated a single time; a few tasks at a time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use rehearse_converge::eval;
use rehearse_sandbox::Engine;
use rehearse_scenario::{Keep, RunOptions};
use rehearse_spec::scenario::Scenario;
use rehearse_spec::task::Task;

/// Clusters booted at once.
const AT_ONCE: usize = 4;

fn tasks_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tasks")
}

#[test]
fn every_task_parses_and_there_are_at_least_thirty() {
    let tasks = eval::load_tasks(&[tasks_dir()]).unwrap_or_else(|e| panic!("{e}"));
    assert!(tasks.len() >= 30, "only {} tasks", tasks.len());
    for task in &tasks {
        assert!(
            task.code.is_none(),
            "{}: an evaluation task gives the model no starting code",
            task.file.display()
        );
        assert!(!task.checks.is_empty());
    }
    let multi = tasks.iter().filter(|t| t.topology.nodes.len() > 1).count();
    assert!(multi >= 10, "only {multi} multi-node tasks");
}

/// The task's topology and checks as a scenario with no steps; every check
/// tried once.
fn untouched(task: &Task) -> Scenario {
    Scenario {
        name: format!("untouched-{}", task.name),
        description: None,
        topology: task.topology.clone(),
        platforms: Vec::new(),
        pinned: Vec::new(),
        steps: Vec::new(),
        checks: task
            .checks
            .iter()
            .cloned()
            .map(|mut c| {
                c.timeout = Duration::ZERO;
                c
            })
            .collect(),
        faults: Vec::new(),
        loads: Vec::new(),
        probes: Vec::new(),
        dir: task.dir.clone(),
        file: task.file.clone(),
    }
}

/// A kernel parameter a fresh node has because the host has it: a node's
/// network namespace starts with the host's IPv4 `all`/`default` settings
/// (net.core.devconf_inherit_init_net = 0, the kernel's default), so on a
/// host hardened that way the check holds before any code ran. That is the
/// host's doing, not the task's.
fn inherited_from_host(check: &rehearse_checks::CheckResult) -> bool {
    if check.kind != "kernel-param" {
        return false;
    }
    let path = Path::new("/proc/sys").join(check.subject.replace('.', "/"));
    let host = std::fs::read_to_string(path).unwrap_or_default();
    let node = match check.actual.get("value").unwrap_or(&check.actual) {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    !host.trim().is_empty() && host.trim() == node.trim()
}

#[test]
fn no_check_of_any_task_passes_on_an_untouched_cluster() {
    rehearse_testkit::require_root("the task checks test");
    let engine = Engine::new(&rehearse_image::state_dir())
        .expect("engine")
        .with_history_dir(&Path::new(env!("CARGO_TARGET_TMPDIR")).join("history/tasks"));
    let tasks = eval::load_tasks(&[tasks_dir()]).unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        idempotence: false,
        reboot: false,
        keep: Keep::Never,
        ..RunOptions::default()
    };
    let next = AtomicUsize::new(0);
    let defects = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..AT_ONCE {
            s.spawn(|| {
                while let Some(task) = tasks.get(next.fetch_add(1, Ordering::SeqCst)) {
                    // The run destroys its cluster however it ends.
                    let report =
                        rehearse_scenario::run(&engine, &untouched(task), &options, &|_| {});
                    let mut found = defects.lock().unwrap();
                    if report.cluster.is_none() || report.checks.is_empty() {
                        found.push(format!(
                            "{}: the untouched cluster could not be checked:\n{}",
                            task.name,
                            rehearse_scenario::render_human(&report)
                        ));
                        continue;
                    }
                    for check in report
                        .checks
                        .iter()
                        .filter(|c| c.passed() && !inherited_from_host(c))
                    {
                        found.push(format!(
                            "{}: check {:?} passes on {} before any code ran ({} {} is {})",
                            task.name,
                            check.name,
                            check.node,
                            check.kind,
                            check.subject,
                            check.actual
                        ));
                    }
                }
            });
        }
    });
    let defects = defects.into_inner().unwrap();
    assert!(
        defects.is_empty(),
        "{} defect(s):\n{}",
        defects.len(),
        defects.join("\n")
    );
}
