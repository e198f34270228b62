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

#[test]
fn secrets_name_their_source_and_where_they_are_declared() {
    let text = format!(
        "{NGINX}secrets:\n  DB_PASSWORD: {{env: REHEARSE_TEST_DB}}\n  TOKEN: {{file: token.txt}}\n"
    );
    let task = parse(&text).unwrap();
    assert_eq!(task.secrets.len(), 2);
    let db = &task.secrets[0];
    assert_eq!(db.name, "DB_PASSWORD");
    assert_eq!(db.source, SecretSource::Env("REHEARSE_TEST_DB".into()));
    assert_eq!(db.declared_at, "task.yaml:12");
    assert_eq!(
        task.secrets[1].source,
        SecretSource::File(PathBuf::from("/tmp/token.txt"))
    );

    // Read at run time: a missing variable names the secret and the variable.
    let error = db.value().unwrap_err().to_string();
    assert!(error.starts_with("task.yaml:12"), "{error}");
    assert!(error.contains("secret DB_PASSWORD"), "{error}");
    assert!(
        error.contains("REHEARSE_TEST_DB, which is not set"),
        "{error}"
    );
}

#[test]
fn a_secret_file_loses_its_trailing_newline() {
    let dir = std::env::temp_dir().join(format!("rehearse-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token.txt"), "s3cr3t-value\n").unwrap();
    let text = format!("{NGINX}secrets:\n  TOKEN: {{file: token.txt}}\n");
    let task = Task::from_yaml(&text, "task.yaml", &dir).unwrap();
    let value = task.secrets[0].value();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(value.unwrap(), "s3cr3t-value");
}

#[test]
fn secrets_are_validated_with_positions() {
    let error = parse(&format!(
        "{NGINX}secrets:\n  DB_PASSWORD: {{value: hunter2}}\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(error.starts_with("task.yaml:12"), "{error}");
    assert!(error.contains("value"), "{error}");
    assert!(error.contains("env") && error.contains("file"), "{error}");

    let error = parse(&format!("{NGINX}secrets:\n  TOKEN: {{env: A, file: b}}\n"))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("task.yaml:12"), "{error}");
    assert!(error.contains("exactly one source"), "{error}");

    let error = parse(&format!("{NGINX}secrets:\n  db-password: {{env: DB}}\n"))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("task.yaml:12"), "{error}");
    assert!(error.contains("environment variable name"), "{error}");

    let error = parse(&format!("{NGINX}secrets:\n  DB: hunter2\n"))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("task.yaml:12"), "{error}");
}

#[test]
fn keeps_the_checks_as_written() {
    let task = parse(NGINX).unwrap();
    assert_eq!(
        task.checks_yaml,
        "checks:\n  - http: http://localhost/\n    status: 200"
    );
    let flush = parse(
        "goal: g\nlanguage: bash\nnodes: 1\nchecks:\n- file: /x\n  # the marker\n\n# budgets\nmax_iterations: 2\n",
    )
    .unwrap();
    assert_eq!(flush.checks_yaml, "checks:\n- file: /x");
}

#[test]
fn platforms_are_read_and_every_unpinned_node_moves_to_the_platform() {
    let text = "\
goal: Serve hello.
language: bash
platforms: [debian-12, ubuntu-24.04]
nodes:
  - name: web
  - {name: db, image: debian-11}
checks:
  - http: http://localhost/
";
    let task = parse(text).unwrap();
    assert_eq!(task.platforms, ["debian-12", "ubuntu-24.04"]);
    assert_eq!(task.pinned, ["db"]);
    let on = task.on_platform("ubuntu-24.04");
    assert_eq!(on.topology.nodes[0].image, "ubuntu-24.04");
    assert_eq!(
        on.topology.nodes[1].image, "debian-11",
        "a pinned node keeps its image"
    );
    assert!(on.platforms.is_empty());

    let error = parse(&text.replace("ubuntu-24.04]", "debian-12]"))
        .unwrap_err()
        .to_string();
    assert!(error.starts_with("task.yaml:3"), "{error}");
    assert!(error.contains("listed twice"), "{error}");
}

/// The error and its causes as `{:#}` prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text += &format!(": {s}");
        source = s.source();
    }
    text
}

#[test]
fn an_unreadable_secret_file_says_why_once() {
    let secret = Secret {
        name: "TOKEN".into(),
        source: SecretSource::File("/nonexistent/rehearse-secret".into()),
        declared_at: "task.yaml:7".into(),
    };
    let e = secret.value().unwrap_err();
    let said = chain(&e);
    assert!(said.starts_with("task.yaml:7: secret TOKEN"), "{said}");
    assert_eq!(
        said.matches("No such file or directory").count(),
        1,
        "{said}"
    );
}
