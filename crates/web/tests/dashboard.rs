//! The dashboard in a real browser (Debian's Chromium, headless) against
//! `rehearse serve` holding real runs: a passing and a failing scenario and a
//! converge run that needed a second iteration, all made by the real
//! `rehearse` binary on real clusters, in a run store of the test's own.
//! Asserts what a person looks for; screenshots go to
//! `target/dashboard-screenshots/`. Needs root (clusters) and `chromium`.

mod browser;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rehearse_llm::fake::{FakeReply, FakeServer};
use serde_json::{json, Value};

use browser::{Browser, WAIT};

const TOKEN: &str = "dashboard-test-token";

/// Variables that would pick a model other than the one a test sets up.
const LLM_VARS: &[&str] = &[
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "REHEARSE_LLM_API_KEY",
    "REHEARSE_LLM_PROVIDER",
    "REHEARSE_LLM_BASE_URL",
    "REHEARSE_LLM_MODEL",
];

/// The `rehearse` binary of this build, built (or rebuilt) once per test run.
fn rehearse_bin() -> PathBuf {
    rehearse_testkit::rehearse_bin()
}

fn screenshots_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/dashboard-screenshots")
}

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

fn require_root() {
    rehearse_testkit::require_root("the dashboard tests");
}

/// One run store (a SQLite file of the test's own) and the commands using it.
struct Rehearse {
    bin: PathBuf,
    database_url: String,
    _dir: tempfile::TempDir,
}

impl Rehearse {
    fn new() -> Rehearse {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        Rehearse {
            bin: rehearse_bin(),
            database_url: format!("sqlite://{}", dir.path().join("runs.db").display()),
            _dir: dir,
        }
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(&self.bin);
        for var in LLM_VARS {
            command.env_remove(var);
        }
        command
            .env("REHEARSE_DATABASE_URL", &self.database_url)
            .env("REHEARSE_HISTORY", self._dir.path())
            .envs(env.iter().copied())
            .args(args);
        command
    }

    /// `rehearse --json ARGS`: (exit code, the JSON it printed).
    fn json(&self, args: &[&str], env: &[(&str, &str)]) -> (i32, Value) {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.command(&all, env).output().expect("rehearse runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!(
                "rehearse {args:?} printed no JSON ({e}): stdout={stdout} stderr={}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (out.status.code().unwrap_or(-1), value)
    }

    fn serve(&self) -> Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = self
            .command(&["serve", "--listen", &listen, "--token", TOKEN], &[])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rehearse serve starts");
        let server = Server {
            child,
            base: format!("http://{listen}"),
        };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(mut s) = TcpStream::connect(&listen) {
                let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
                let mut reply = String::new();
                let _ = s.read_to_string(&mut reply);
                if reply.contains("200 OK") {
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "rehearse serve did not come up on {listen}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM; the server must stop even with a dashboard's live stream open.
    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("rehearse serve did not stop on SIGTERM while a page followed it live");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a cluster could leave on the host; empty when it is all gone.
/// What a cluster left on the host: nothing, once it is destroyed.
fn leftovers(cluster: &str) -> rehearse_testkit::Leftovers {
    rehearse_testkit::Leftovers::of(cluster)
}

/// `850 ms`, `4.2 s`, `1 min 05 s`: a duration as the dashboard writes it.
fn is_duration(text: &str) -> bool {
    let t = text.trim();
    let number = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.');
    match t.rsplit_once(' ') {
        Some((n, "ms" | "s")) if number(n) => true,
        Some((rest, "s" | "min")) => rest.split(' ').all(|w| number(w) || w == "min" || w == "h"),
        _ => false,
    }
}

fn bash(code: &str) -> FakeReply {
    FakeReply::openai(&format!("Here you go:\n```bash\n{code}```\n"))
}

const BROKEN: &str = "#!/bin/bash\nset -euo pipefail\nif then fi\n";
const FIXED: &str = "#!/bin/bash\nset -euo pipefail\necho converged > /etc/rehearse-ok\n";

/// The id and outcome of each row in the runs list, top to bottom.
fn rows(b: &mut Browser) -> Vec<(String, String)> {
    b.eval("[...document.querySelectorAll('#runs tbody tr')].map(r => [r.dataset.id, r.dataset.outcome])")
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_str().unwrap().to_owned()))
        .collect()
}

fn ids(rows: &[(String, String)]) -> Vec<&str> {
    rows.iter().map(|(id, _)| id.as_str()).collect()
}

/// Sets the filter form's fields (`name` → value) and submits it.
fn filter(b: &mut Browser, fields: &[(&str, &str)]) {
    let mut js = String::from("const f = document.querySelector('form.filters'); f.reset();");
    js.push_str("for (const el of f.elements) { if (el.type === 'checkbox') el.checked = false; else if (el.name) el.value = ''; }");
    for (name, value) in fields {
        js.push_str(&format!(
            "{{ const el = f.elements[{}]; if (el.type === 'checkbox') el.checked = true; else el.value = {value}; }}",
            json!(name)
        ));
    }
    js.push_str("f.querySelector('button[type=submit]').click();");
    b.load_after(&js);
}

#[test]
fn runs_their_timelines_check_results_iteration_diffs_and_live_progress() {
    let rehearse = Rehearse::new();
    let server = rehearse.serve();
    let tmp = tempfile::tempdir().unwrap();
    let task = tmp.path().join("task.yaml");
    std::fs::write(
        &task,
        "\
name: dashboard-converge
goal: Write /etc/rehearse-ok containing the word converged.
language: bash
nodes: 1
checks:
  - file: /etc/rehearse-ok
    contains: [converged]
    timeout: 1s
max_iterations: 3
",
    )
    .unwrap();
    let model = FakeServer::start(vec![bash(BROKEN), bash(FIXED)]);
    let llm_env = [
        ("REHEARSE_LLM_PROVIDER", "openai"),
        ("REHEARSE_LLM_BASE_URL", model.url()),
        ("REHEARSE_LLM_MODEL", "fake"),
    ];

    // Three real runs side by side.
    let ((pass_code, pass), (fail_code, fail), (conv_code, conv)) = std::thread::scope(|s| {
        let pass = s.spawn(|| rehearse.json(&["run", &fixture("passing")], &[]));
        let fail = s.spawn(|| rehearse.json(&["run", &fixture("failing")], &[]));
        let conv = s.spawn(|| rehearse.json(&["converge", task.to_str().unwrap()], &llm_env));
        (
            pass.join().unwrap(),
            fail.join().unwrap(),
            conv.join().unwrap(),
        )
    });
    assert_eq!(pass_code, 0, "{pass}");
    assert_eq!(fail_code, 1, "{fail}");
    assert_eq!(conv_code, 0, "{conv}");
    assert_eq!(
        conv["iterations"].as_array().map(Vec::len),
        Some(2),
        "{conv}"
    );
    let id = |v: &Value| v["run_id"].as_str().expect("a run id").to_owned();
    let (pass_id, fail_id, conv_id) = (id(&pass), id(&fail), id(&conv));

    let shots = screenshots_dir();
    let mut b = Browser::start(&shots);
    b.open(&server.url(&format!("/login?token={TOKEN}")));

    // The list: all three, each with its status, newest first.
    b.wait_for(
        "the runs list",
        "document.querySelectorAll('#runs tbody tr').length === 3",
    );
    let listed: BTreeMap<String, String> = rows(&mut b).into_iter().collect();
    assert_eq!(listed[&pass_id], "passed");
    assert_eq!(listed[&fail_id], "failed");
    assert_eq!(listed[&conv_id], "converged");
    assert_eq!(b.text(&format!("#run-{fail_id} .badge")), "failed");
    assert_eq!(
        b.text(&format!("#run-{conv_id} .run-name")),
        "dashboard-converge"
    );
    let started =
        b.eval("[...document.querySelectorAll('#runs tbody tr .started')].map(c => c.innerText)");
    let started: Vec<&str> = started
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(
        started.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {started:?}"
    );
    assert!(b
        .text(&format!("#run-{fail_id} .summary"))
        .contains("colour is green"));
    b.screenshot("runs-list");

    // Filters narrow it.
    filter(&mut b, &[("outcome", "'failed'")]);
    assert_eq!(ids(&rows(&mut b)), [fail_id.as_str()]);
    b.screenshot("runs-filtered-failed");
    filter(&mut b, &[("name", "'passing'")]);
    assert_eq!(ids(&rows(&mut b)), [pass_id.as_str()]);
    filter(&mut b, &[("kind", "'converge'")]);
    assert_eq!(ids(&rows(&mut b)), [conv_id.as_str()]);
    let day = |offset: i64| {
        format!("new Date(Date.now() + {offset} * 86400000).toISOString().slice(0, 10)")
    };
    filter(&mut b, &[("from", &day(-1)), ("to", &day(0))]);
    assert_eq!(rows(&mut b).len(), 3);
    filter(&mut b, &[("from", &day(1))]);
    assert!(rows(&mut b).is_empty());
    assert!(b.eval("!document.getElementById('runs-empty').hidden") == json!(true));
    filter(&mut b, &[("children", "true"), ("outcome", "'failed'")]);
    let children = rows(&mut b);
    assert_eq!(
        children.len(),
        2,
        "the failing run and the converge run's first iteration: {children:?}"
    );
    b.open(&server.url("/runs?from=last+week"));
    assert!(
        b.text(".error").contains("YYYY-MM-DD"),
        "a bad date says how to write one"
    );

    // A passing run's timeline: steps of both passes with durations and output.
    b.open(&server.url("/runs"));
    b.click_to_page(&format!("#run-{pass_id} a.run-name"));
    assert_eq!(b.text("h1 .badge"), "passed");
    let steps = b.texts(".step .step-name");
    assert_eq!(
        steps,
        ["write the greeting", "write the greeting"],
        "first pass and idempotence pass"
    );
    for d in b.texts(".step .line .duration") {
        assert!(is_duration(&d), "step duration {d:?}");
    }
    let legend = b.text("#phases .legend");
    assert!(
        legend.contains("boot") && legend.contains("steps") && legend.contains("checks"),
        "{legend}"
    );
    let output = b.eval("document.querySelector('.step .outputs').textContent");
    assert!(
        output.as_str().unwrap().contains("greeting written"),
        "{output}"
    );
    assert_eq!(b.texts("#checks-checks tr.check .badge"), ["passed"]);
    assert_eq!(
        b.texts("#checks-after_second_run tr.check .badge"),
        ["passed"],
        "the checks again after the second run, in a section of their own"
    );
    assert!(b.text("#hygiene").contains("Nothing left behind"));
    assert!(
        b.text("#idempotence").contains("changed nothing")
            || b.text("#idempotence").contains("changed")
    );
    b.screenshot("run-passing");

    // A failing check: expected against actual, highlighted.
    b.open(&server.url(&format!("/runs/{fail_id}")));
    assert_eq!(b.text("h1 .badge"), "failed");
    // Failed after the steps; the same check again after the second run has a
    // section of its own.
    assert_eq!(b.texts("#checks-checks tr.check.failed").len(), 1);
    let expected = b.text("#checks-checks tr.check.failed .expected");
    let actual = b.text("#checks-checks tr.check.failed .actual");
    assert!(expected.contains("colour = green"), "expected: {expected}");
    assert!(actual.contains("colour = blue"), "actual: {actual}");
    let shade =
        b.eval("getComputedStyle(document.querySelector('#checks-checks tr.check.failed td')).backgroundColor");
    assert!(
        shade != json!("rgba(0, 0, 0, 0)") && shade != json!("rgb(255, 255, 255)"),
        "a failed check stands out: {shade}"
    );
    assert!(b
        .text("#checks-checks tr.check.failed .message")
        .contains("does not contain"));
    b.screenshot("run-failing");

    // The converge run: two iterations, the recovery and why, model calls, the diff.
    b.open(&server.url(&format!("/runs/{conv_id}")));
    assert_eq!(b.text("h1 .badge"), "converged");
    assert_eq!(b.texts("li.iteration").len(), 2);
    for n in [1, 2] {
        let d = b.text(&format!("#iteration-{n} > .line .duration"));
        assert!(is_duration(&d), "iteration {n} duration {d:?}");
    }
    assert_eq!(b.text("#iteration-1 .badge"), "failed");
    assert_eq!(b.text("#iteration-2 .badge"), "passed");
    let recovery = b.text("#iteration-1 .recovery");
    assert!(
        recovery.contains("retry") && recovery.contains("syntax error"),
        "{recovery}"
    );
    let calls = b.text("#iteration-1 table.calls");
    assert!(
        calls.contains("write the code") && calls.contains("correct the code"),
        "{calls}"
    );
    assert!(b.text("#iteration-1 table.checks").contains("converged"));
    let removed = b.texts("#iteration-2 pre.diff .del");
    let added = b.texts("#iteration-2 pre.diff .add");
    let kept = b.texts("#iteration-2 pre.diff .same");
    assert_eq!(removed, ["- if then fi"]);
    assert_eq!(added, ["+ echo converged > /etc/rehearse-ok"]);
    assert!(kept.contains(&"  set -euo pipefail".to_owned()), "{kept:?}");
    assert!(b
        .text("#result")
        .contains("echo converged > /etc/rehearse-ok"));
    assert!(b.text("#task").contains("openai/fake"));
    assert_eq!(b.texts("#children tbody tr").len(), 2);
    b.screenshot("run-converge");
    // Its first iteration's own scenario run, one click away.
    b.click_to_page("#iteration-1 p a.mono");
    assert!(
        b.text(".facts").contains(&conv_id),
        "linked back to the converge run"
    );
    let step_error = b.eval("document.querySelector('#steps').textContent");
    assert!(
        step_error.as_str().unwrap().contains("syntax error"),
        "{step_error}"
    );
    b.screenshot("run-converge-iteration-1");

    // A run in progress shows up and finishes in the list without a reload.
    b.open(&server.url("/runs"));
    b.eval("window.__same_page = 'yes'");
    let mut slow = rehearse
        .command(
            &["--json", "run", &fixture("slow"), "--no-idempotence"],
            &[],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rehearse run starts");
    let slow_row = "[...document.querySelectorAll('#runs tbody tr')].find(r => r.innerText.includes('dashboard-slow'))";
    b.wait_for(
        "the slow run to appear as running",
        &format!("({slow_row} || {{}}).dataset?.outcome === 'running'"),
    );
    assert!(b
        .text("#runs tbody tr[data-outcome=running] .duration")
        .starts_with("running"));
    b.screenshot("runs-live-running");
    // Its own page, in a second tab, follows it too.
    let running_id = b
        .eval(&format!("{slow_row}.dataset.id"))
        .as_str()
        .unwrap()
        .to_owned();
    let list_tab = b.new_tab();
    b.open(&server.url(&format!("/runs/{running_id}")));
    b.eval("window.__same_page = 'yes'");
    // A section the reader opened stays open while the page follows the run.
    b.wait_for(
        "the first step's output on the live page",
        "!!document.querySelector('.step .outputs')",
    );
    b.eval("document.querySelector('.step .outputs').open = true");
    let detail_tab = b.use_tab(list_tab);
    b.wait_for(
        "the slow run to pass",
        &format!("({slow_row} || {{}}).dataset?.outcome === 'passed'"),
    );
    assert_eq!(
        b.eval("window.__same_page"),
        json!("yes"),
        "the list was not reloaded"
    );
    let list_tab = b.use_tab(detail_tab);
    b.wait_for(
        "the run's page to see it end",
        "document.getElementById('run-body').dataset.ended === 'true'",
    );
    assert_eq!(b.text("h1 .badge"), "passed");
    assert_eq!(b.texts(".step .step-name"), ["say hello", "take a while"]);
    assert_eq!(
        b.eval("document.querySelector('.step .outputs').open"),
        json!(true),
        "the live refresh closed the section the reader had opened"
    );
    assert!(b
        .text(".step .outputs")
        .contains("hello from the first step"));
    assert!(is_duration(&b.text(".step .line .duration")));
    assert_eq!(b.texts("#checks-checks tr.check .badge"), ["passed"]);
    assert_eq!(
        b.eval("window.__same_page"),
        json!("yes"),
        "the run's page was not reloaded"
    );
    b.screenshot("run-live-finished");
    let mut report = String::new();
    slow.stdout
        .take()
        .unwrap()
        .read_to_string(&mut report)
        .unwrap();
    assert!(slow.wait().unwrap().success(), "{report}");
    let slow_id = serde_json::from_str::<Value>(&report).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(slow_id, running_id);
    b.use_tab(list_tab);
    assert_eq!(
        rows(&mut b)[0],
        (slow_id, "passed".to_owned()),
        "newest on top"
    );
    b.screenshot("runs-live-passed");

    // The server stops while the page still follows it; the browser leaves nothing.
    server.stop();
    b.close();
    for report in [&pass, &fail] {
        let cluster = report["cluster"].as_str().unwrap();
        assert!(
            leftovers(cluster).is_empty(),
            "{cluster}: {:?}",
            leftovers(cluster)
        );
    }
}

#[test]
fn an_evaluation_shows_its_tasks_pass_rate_and_attempts() {
    let rehearse = Rehearse::new();
    let server = rehearse.serve();
    let tmp = tempfile::tempdir().unwrap();
    for (name, max) in [("eval-solved", 2), ("eval-unsolved", 1)] {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("task.yaml"),
            format!(
                "goal: Write /etc/rehearse-ok containing the word converged.\nlanguage: bash\nnodes: 1\nchecks:\n  - file: /etc/rehearse-ok\n    contains: [converged]\n    timeout: 1s\nmax_iterations: {max}\n"
            ),
        )
        .unwrap();
    }
    // The solved task, then the unsolved one: one attempt each, in that order.
    let model = FakeServer::start(vec![bash(FIXED), bash(BROKEN)]);
    let (code, report) = rehearse.json(
        &[
            "eval",
            tmp.path().to_str().unwrap(),
            "--min-pass-rate",
            "50",
        ],
        &[
            ("REHEARSE_LLM_PROVIDER", "openai"),
            ("REHEARSE_LLM_BASE_URL", model.url()),
            ("REHEARSE_LLM_MODEL", "fake"),
        ],
    );
    assert_eq!(code, 0, "{report}");
    let eval_id = report["run_id"].as_str().unwrap().to_owned();

    let mut b = Browser::start(&screenshots_dir());
    b.open(&server.url(&format!("/login?token={TOKEN}")));
    // Evals, from the navigation: the evaluation alone (its attempts are under it).
    b.click_to_page("header nav a[href='/evals']");
    assert_eq!(rows(&mut b), [(eval_id.clone(), "passed".to_owned())]);
    b.click_to_page(&format!("#run-{eval_id} a.run-name"));
    assert_eq!(b.text("h1 .badge"), "passed");
    let tasks = b.texts("#eval tbody tr");
    assert_eq!(tasks.len(), 3, "two tasks and the sums: {tasks:?}");
    assert!(
        tasks[0].contains("eval-solved") && tasks[0].contains("100.0%"),
        "{tasks:?}"
    );
    assert!(
        tasks[1].contains("eval-unsolved") && tasks[1].contains("0.0%"),
        "{tasks:?}"
    );
    assert!(
        tasks[2].contains("all") && tasks[2].contains("1/2") && tasks[2].contains("50.0%"),
        "{tasks:?}"
    );
    assert_eq!(b.texts("#attempts tbody tr").len(), 2);
    b.screenshot("eval");
    // An attempt is its converge run, one click away, linked back.
    b.click_to_page("#attempts tbody tr:last-child a.mono");
    assert_eq!(b.text("h1 .badge"), "budget_exhausted");
    assert!(b.text(".facts").contains(&format!("evaluation {eval_id}")));
    server.stop();
    b.close();
}

/// Brings a cluster down when the test ends, pass or fail.
struct Kept<'a>(&'a Rehearse, String);

impl Drop for Kept<'_> {
    fn drop(&mut self) {
        let _ = self.0.command(&["down", &self.1], &[]).output();
    }
}

#[test]
fn clusters_page_shows_a_kept_cluster_extends_and_destroys_it() {
    let rehearse = Rehearse::new();
    let server = rehearse.serve();
    let (code, report) =
        rehearse.json(&["run", &fixture("passing"), "--keep", "--ttl", "10m"], &[]);
    assert_eq!(code, 0, "{report}");
    let cluster = report["cluster"]
        .as_str()
        .expect("the kept cluster")
        .to_owned();
    let _kept = Kept(&rehearse, cluster.clone());
    let ip = report["nodes"][0]["ip"]
        .as_str()
        .expect("node1's address")
        .to_owned();

    let mut b = Browser::start(&screenshots_dir());
    b.open(&server.url(&format!("/login?token={TOKEN}")));
    b.click_to_page("header nav a[href='/clusters']");
    let row = format!("#cluster-{cluster}");
    let text = b.text(&row);
    assert!(
        text.contains("node1") && text.contains(&ip),
        "nodes and addresses: {text}"
    );
    let ttl = b.text(&format!("{row} .ttl"));
    assert!(
        ttl.starts_with("9 min") || ttl.starts_with("10 min"),
        "time left: {ttl}"
    );
    assert!(
        b.text("#recent").contains(&cluster),
        "the run store's record of it"
    );
    b.screenshot("clusters");

    // Extend: two hours from now.
    b.eval(&format!(
        "document.querySelector('{row} select[name=ttl]').value = '2h'"
    ));
    b.click_to_page(&format!("{row} button.extend"));
    assert!(b.text(".notice").contains("2h"), "{}", b.text(".notice"));
    let ttl = b.text(&format!("{row} .ttl"));
    assert!(
        ttl.starts_with("1 h 59 min") || ttl.starts_with("2 h 00 min"),
        "time left: {ttl}"
    );
    let (_, listed) = rehearse.json(&["ls"], &[]);
    let left = listed
        .as_array()
        .or(listed["clusters"].as_array())
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["cluster"] == cluster.as_str() || c["id"] == cluster.as_str())
        })
        .map(|c| c.to_string())
        .unwrap_or_default();
    assert!(!left.is_empty(), "rehearse list still shows it: {listed}");

    // Destroy: confirmed, gone from the page and from the host.
    b.click_to_page(&format!("{row} button.destroy"));
    assert!(
        b.text(".notice").contains("destroyed"),
        "{}",
        b.text(".notice")
    );
    assert_eq!(
        b.eval(&format!("!!document.querySelector('{row}')")),
        json!(false)
    );
    assert!(leftovers(&cluster).is_empty(), "{:?}", leftovers(&cluster));
    b.screenshot("clusters-after-destroy");

    // Destroying it again is a clear error, not a crash. A request that got
    // no HTTP answer at all ("Failed to fetch": the browser's kept connection
    // closed under it, seen once in CI) is sent again; any answer is judged.
    let again = b.eval(&format!(
        "(async () => {{ for (let i = 0; ; i++) {{ try {{ \
           const r = await fetch('/clusters/{cluster}/destroy', {{method: 'POST'}}); \
           return [r.status, await r.text()]; \
         }} catch (e) {{ if (i === 2) throw e; await new Promise(r => setTimeout(r, 200)); }} }} }})()"
    ));
    assert_eq!(again[0], json!(404), "{again}");
    assert!(again[1].as_str().unwrap().contains(&cluster), "{again}");

    server.stop();
    b.close();
}

/// A cluster its reaper removed at the end of its time to live is shown in the
/// history with when it ended and why, as is one destroyed by a person.
#[test]
fn clusters_page_shows_when_and_why_each_cluster_ended() {
    let rehearse = Rehearse::new();
    let (code, up) = rehearse.json(&["up", "--nodes", "1", "--ttl", "5s"], &[]);
    assert_eq!(code, 0, "{up}");
    let expired = up["cluster"].as_str().expect("a cluster id").to_owned();
    let _expired = Kept(&rehearse, expired.clone());
    let (code, up) = rehearse.json(&["up", "--nodes", "1", "--ttl", "10m"], &[]);
    assert_eq!(code, 0, "{up}");
    let destroyed = up["cluster"].as_str().expect("a cluster id").to_owned();
    let _destroyed = Kept(&rehearse, destroyed.clone());
    let (code, out) = rehearse.json(&["down", &destroyed], &[]);
    assert_eq!(code, 0, "{out}");

    // The reaper removes the expired one by itself and records why.
    let deadline = Instant::now() + Duration::from_secs(90);
    while !leftovers(&expired).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(leftovers(&expired).is_empty(), "{:?}", leftovers(&expired));

    let server = rehearse.serve();
    let mut b = Browser::start(&screenshots_dir());
    b.open(&server.url(&format!("/login?token={TOKEN}")));
    let row_of = |b: &mut Browser, id: &str| {
        b.eval(&format!(
            "[...document.querySelectorAll('#recent tbody tr')].map(r => r.textContent).find(t => t.includes('{id}')) || ''"
        ))
        .as_str()
        .unwrap_or_default()
        .to_owned()
    };
    // The reaper's record lands just after its teardown: reload until it shows.
    let mut row = String::new();
    while Instant::now() < deadline {
        b.open(&server.url("/clusters"));
        row = row_of(&mut b, &expired);
        if row.contains("time-to-live") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        row.contains("time-to-live") && !row.contains('—'),
        "the expired cluster's history row: {row}"
    );
    let row = row_of(&mut b, &destroyed);
    assert!(
        !row.is_empty() && !row.contains('—') && !row.contains("time-to-live"),
        "the destroyed cluster's history row: {row}"
    );
    b.screenshot("clusters-history");
    server.stop();
    b.close();
}
