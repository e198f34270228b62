use super::*;

fn parse(text: &str) -> Result<Task, SpecError> {
    Task::from_yaml(text, "task.yaml", Path::new("/tmp"))
}

const NGINX: &str = "\
goal: Serve hello with nginx.
language: bash
nodes: 2
code: |
  apt-get install -y nginx
  echo hello > /var/www/html/index.html
checks:
  - http: http://localhost/
    status: 200
max_wall: 5m
";

#[test]
fn reads_goal_topology_checks_code_and_budgets() {
    let task = parse(NGINX).unwrap();
    assert_eq!(task.goal, "Serve hello with nginx.");
    assert_eq!(task.language, Language::Bash);
    assert_eq!(task.topology.nodes.len(), 2);
    assert_eq!(task.checks.len(), 1);
    assert!(task.code.unwrap().contains("index.html"));
    assert_eq!(task.budgets.max_iterations, DEFAULT_MAX_ITERATIONS);
    assert_eq!(task.budgets.max_wall, Duration::from_secs(300));
    assert_eq!(task.budgets.max_tokens, None);
    assert_eq!(task.name, "tmp", "task.yaml is named after its folder");
}

#[test]
fn check_errors_keep_the_task_files_line_numbers() {
    let text = NGINX.replace("status: 200", "status: two hundred");
    let error = parse(&text).unwrap_err().to_string();
    assert!(error.starts_with("task.yaml:9"), "{error}");
    assert!(error.contains("checks[0]"), "{error}");
}

#[test]
fn task_keys_are_validated_with_positions() {
    let error = parse(&NGINX.replace("language: bash", "language: python"))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("task.yaml:2"), "{error}");
    assert!(error.contains("bash"), "{error}");

    let error = parse(&format!("{NGINX}max_iterations: 0\n"))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("task.yaml:11"), "{error}");
    assert!(error.contains("1 to 50"), "{error}");

    let error = parse(&NGINX.replace("5m", "soon")).unwrap_err().to_string();
    assert!(error.starts_with("task.yaml:10"), "{error}");

    let error = parse(&format!("{NGINX}steps: []\n"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("steps"), "{error}");
}

#[test]
fn a_task_without_checks_is_refused() {
    let error = parse("goal: x\nlanguage: ansible\nnodes: 1\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("at least one check"), "{error}");
}

#[test]
fn blanking_keeps_lines() {
    let text = "goal: a\ncode: |\n  x\n\n  y\nnodes: 1\n";
    assert_eq!(blank_keys(text, TASK_ONLY_KEYS), "\n\n\n\n\nnodes: 1\n");
}

#[test]
fn the_example_task_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/converge-nginx");
    let task = Task::from_path(&dir).unwrap();
    assert_eq!(task.name, "converge-nginx");
    assert_eq!(task.checks.len(), 3);
    assert_eq!(task.budgets.max_tokens, Some(200_000));
}
