//! One run: what it did, in order, with durations, outputs and check results;
//! for a converge run, every iteration with its recovery, model calls,
//! commands, checks, code and the diff against the iteration before.
//! While the run is in progress the page follows it (server-sent events).

use std::convert::Infallible;
use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures_util::stream::{self, Stream};
use rehearse_store::{
    CheckRow, CommandRow, ConvergeDetail, IterationRecord, LlmCallRecord, RunDetail, RunFilter,
    RunRow, StepRow,
};
use serde::Deserialize;
use serde_json::Value;

use super::diff::{self, Line};
use super::html::{self, badge, duration, esc, json_text, output_block, Section};
use super::runs::tokens;
use crate::AppState;

async fn load(state: &AppState, id: String) -> Result<RunDetail, Response> {
    let shown = id.clone();
    match state.with_store(move |s| s.run(&id)).await {
        Ok(Some(detail)) => Ok(detail),
        Ok(None) => Err((
            StatusCode::NOT_FOUND,
            html::page(
                "No such run",
                Section::Runs,
                &format!(
                    "<h1>No such run</h1><p class=\"error\">There is no run {} in the run store: it may \
                     have been removed (rehearse runs rm, or retention), or this server reads another \
                     store than the run wrote to (REHEARSE_DATABASE_URL).</p><p><a href=\"/runs\">All runs</a></p>",
                    esc(&shown)
                ),
            ),
        )
            .into_response()),
        Err(e) => Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            html::page(
                "Run store error",
                Section::Runs,
                &format!("<h1>Run store error</h1><p class=\"error\">{}</p>", esc(&e.to_string())),
            ),
        )
            .into_response()),
    }
}

/// `GET /runs/{id}`.
pub async fn page(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let detail = match load(&state, id).await {
        Ok(d) => d,
        Err(page) => return page,
    };
    let live = if detail.run.outcome == "running" {
        format!(
            " data-events=\"/runs/{id}/events?after={after}\" data-body=\"/runs/{id}/body\"",
            id = esc(&detail.run.id),
            after = version(&detail),
        )
    } else {
        String::new()
    };
    let body = format!("<div id=\"run-body\"{live}>{}</div>", body(&detail));
    html::page(&detail.run.name, Section::Runs, &body).into_response()
}

/// `GET /runs/{id}/body`: the page's content alone, for live refreshes.
pub async fn fragment(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    match load(&state, id).await {
        Ok(detail) => Html(body(&detail)).into_response(),
        Err(page) => page,
    }
}

/// The last write to a run or any run under it.
fn version(detail: &RunDetail) -> i64 {
    detail
        .children
        .iter()
        .map(|c| c.updated_at_ms)
        .fold(detail.run.updated_at_ms, i64::max)
}

#[derive(Deserialize)]
pub struct EventsQuery {
    after: Option<i64>,
}

enum Follow {
    Watching {
        state: AppState,
        id: String,
        seen: i64,
    },
    Ended,
}

/// `GET /runs/{id}/events`: a `changed` event whenever the run or one of its
/// iteration runs is written to, then `end` once it has finished.
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let start = Follow::Watching {
        state,
        id,
        seen: q.after.unwrap_or(0),
    };
    let stream = stream::unfold(start, |follow| async move {
        let Follow::Watching { state, id, seen } = follow else {
            return None;
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(super::runs::POLL) => {}
                _ = super::stopping() => return None,
            }
            let filter = RunFilter {
                children: true,
                updated_after_ms: Some(seen),
                limit: Some(500),
                ..RunFilter::default()
            };
            let rows = match state.with_store(move |s| s.runs(&filter)).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(run = %id, error = %e, "following a run: reading the run store");
                    continue;
                }
            };
            let ours: Vec<&RunRow> = rows
                .iter()
                .filter(|r| r.id == id || r.parent_id.as_deref() == Some(&id))
                .collect();
            let Some(newest) = ours.iter().map(|r| r.updated_at_ms).max() else {
                continue;
            };
            let outcome = ours.iter().find(|r| r.id == id).map(|r| r.outcome.clone());
            let ended = outcome.as_deref().is_some_and(|o| o != "running");
            let event = Event::default()
                .event(if ended { "end" } else { "changed" })
                .data(outcome.unwrap_or_else(|| "running".into()));
            let next = if ended {
                Follow::Ended
            } else {
                Follow::Watching {
                    state,
                    id,
                    seen: newest,
                }
            };
            return Some((Ok(event), next));
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

/// The whole content of a run's page.
fn body(d: &RunDetail) -> String {
    let mut out = header(&d.run);
    let report: Option<Value> = d
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    let is_matrix = d
        .run
        .role
        .as_deref()
        .is_some_and(|r| r.starts_with("matrix of "))
        || report.as_ref().is_some_and(|r| r["platforms"].is_array());
    match &d.converge {
        Some(c) => converge(&mut out, d, c),
        None if d.run.kind == "eval" => eval(&mut out, d, report.as_ref()),
        None if is_matrix => matrix(&mut out, d, report.as_ref()),
        None => scenario(&mut out, d),
    }
    out
}

/// A platforms matrix: platform × (steps, checks, idempotence, hygiene), each
/// row linking to that platform's run.
fn matrix(out: &mut String, d: &RunDetail, report: Option<&Value>) {
    out.push_str("<section id=\"matrix\"><h2>Platforms</h2><table class=\"runs\"><thead><tr><th>status</th><th>platform</th><th>steps</th><th>checks</th><th>idempotence</th><th>hygiene</th><th>took</th><th>run</th></tr></thead><tbody>");
    let empty = Vec::new();
    let finished = report
        .and_then(|r| r["platforms"].as_array())
        .unwrap_or(&empty);
    for child in &d.children {
        let platform = child
            .role
            .as_deref()
            .and_then(|r| r.strip_prefix("platform "))
            .unwrap_or("");
        let p = finished.iter().find(|p| p["platform"] == platform);
        let count = |key: &str, ok: &dyn Fn(&Value) -> bool| {
            p.and_then(|p| p[key].as_array())
                .map(|a| format!("{}/{}", a.iter().filter(|x| ok(x)).count(), a.len()))
                .unwrap_or_else(|| "-".into())
        };
        let steps = count("steps", &|s| s["ok"] == true);
        let checks = count("checks", &|c| c["status"] == "passed");
        let idempotence = match p.map(|p| &p["idempotence"]["passed"]) {
            Some(Value::Bool(true)) => "passed",
            Some(Value::Bool(false)) => "failed",
            _ => "-",
        };
        let hygiene = p
            .and_then(|p| p["hygiene"].as_array())
            .map(|h| h.len().to_string())
            .unwrap_or_else(|| "-".into());
        let _ = write!(
            out,
            "<tr><td>{}</td><td><strong>{}</strong></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a class=\"mono\" href=\"/runs/{id}\">{id}</a></td></tr>",
            badge(&child.outcome),
            esc(platform),
            esc(&steps),
            esc(&checks),
            idempotence,
            esc(&hygiene),
            child
                .duration_ms()
                .map(|ms| duration(ms.max(0) as u64))
                .unwrap_or_else(|| "running".into()),
            id = esc(&child.id),
        );
    }
    out.push_str("</tbody></table></section>");
}

/// An evaluation: a row per task and platform (attempts, pass rate,
/// iterations, recovery paths, wall time, tokens, cost), the sums, then every
/// attempt linking to its converge run.
fn eval(out: &mut String, d: &RunDetail, report: Option<&Value>) {
    let percent = |v: &Value| {
        v.as_f64()
            .map(|r| format!("{:.1}%", r * 100.0))
            .unwrap_or_else(|| "-".into())
    };
    let recovery = |v: &Value| match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        _ => "-".into(),
    };
    let cost = |v: &Value| {
        v.as_f64()
            .map(|c| format!("${c:.4}"))
            .unwrap_or_else(|| "-".into())
    };
    let tally_cells = |t: &Value| {
        format!(
            "<td>{}/{}</td><td><strong>{}</strong></td><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            t["converged"],
            t["attempts"],
            percent(&t["pass_rate"]),
            t["mean_iterations"].as_f64().unwrap_or(0.0),
            esc(&recovery(&t["recovery"])),
            duration(t["wall_ms"].as_u64().unwrap_or(0)),
            t["input_tokens"].as_u64().unwrap_or(0) + t["output_tokens"].as_u64().unwrap_or(0),
            cost(&t["cost_usd"]),
        )
    };
    let head = "<th>passed</th><th>pass rate</th><th>iterations</th><th>recovery</th><th>wall</th><th>tokens</th><th>cost</th>";
    if let Some(r) = report {
        let _ = write!(
            out,
            "<section id=\"eval\"><h2>Tasks</h2><p>model <span class=\"mono\">{}</span> · {} attempt(s) per task, {} at a time · required pass rate {}</p><table class=\"runs\"><thead><tr><th>task</th><th>platform</th>{head}</tr></thead><tbody>",
            esc(r["model"].as_str().unwrap_or("none (rules doctor only)")),
            r["attempts_per_task"],
            r["jobs"],
            percent(&r["min_pass_rate"]),
        );
        for t in r["tasks"].as_array().into_iter().flatten() {
            let _ = write!(
                out,
                "<tr><td><strong>{}</strong></td><td>{}</td>{}</tr>",
                esc(t["task"].as_str().unwrap_or("")),
                esc(t["platform"].as_str().unwrap_or("")),
                tally_cells(t)
            );
        }
        let _ = write!(
            out,
            "<tr class=\"total\"><td><strong>all</strong></td><td></td>{}</tr></tbody></table></section>",
            tally_cells(&r["total"])
        );
    }
    out.push_str("<section id=\"attempts\"><h2>Attempts</h2><table class=\"runs\"><thead><tr><th>status</th><th>attempt</th><th>summary</th><th>tokens</th><th>took</th><th>run</th></tr></thead><tbody>");
    for child in &d.children {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><a class=\"mono\" href=\"/runs/{id}\">{id}</a></td></tr>",
            badge(&child.outcome),
            esc(child.role.as_deref().unwrap_or("")),
            esc(child.summary.as_deref().unwrap_or("")),
            child.input_tokens + child.output_tokens,
            child
                .duration_ms()
                .map(|ms| duration(ms.max(0) as u64))
                .unwrap_or_else(|| "running".into()),
            id = esc(&child.id),
        );
    }
    out.push_str("</tbody></table></section>");
}

fn header(run: &RunRow) -> String {
    let mut out = format!(
        "<h1><span class=\"run-title\">{}</span> {}</h1>",
        esc(&run.name),
        badge(&run.outcome)
    );
    if let Some(s) = &run.summary {
        let _ = write!(out, "<p class=\"summary\">{}</p>", esc(s));
    }
    out.push_str("<dl class=\"facts\">");
    let mut fact = |k: &str, v: String| {
        let _ = write!(out, "<dt>{k}</dt><dd>{v}</dd>");
    };
    fact(
        "run",
        format!("<span class=\"mono\">{}</span>", esc(&run.id)),
    );
    fact("kind", esc(&run.kind));
    if let Some(parent) = &run.parent_id {
        fact(
            "part of",
            format!(
                "<a href=\"/runs/{p}\">{what} {p}</a> ({})",
                esc(run.role.as_deref().unwrap_or("")),
                p = esc(parent),
                what = if run
                    .role
                    .as_deref()
                    .is_some_and(|r| r.starts_with("platform "))
                {
                    "matrix run"
                } else if run.kind == "converge" {
                    "evaluation"
                } else {
                    "converge run"
                },
            ),
        );
    }
    fact(
        "file",
        format!("<span class=\"mono\">{}</span>", esc(&run.file)),
    );
    fact("started", html::date_time(run.started_at_ms));
    match run.duration_ms() {
        Some(ms) => fact("took", duration(ms.max(0) as u64)),
        None => fact(
            "took",
            format!(
                "<span data-running-since=\"{}\">running</span>",
                run.started_at_ms
            ),
        ),
    }
    if let Some(c) = &run.cluster_id {
        fact(
            "cluster",
            format!("<a class=\"mono\" href=\"/clusters\">{}</a>", esc(c)),
        );
    }
    let t = tokens(run.input_tokens, run.output_tokens, run.cost_usd);
    if !t.is_empty() {
        fact("tokens", t);
    }
    out.push_str("</dl>");
    out
}

// ------------------------------------------------------------------ scenario

fn scenario(out: &mut String, d: &RunDetail) {
    let report: Option<Value> = d
        .report
        .as_deref()
        .and_then(|r| serde_json::from_str(r).ok());
    if let Some(report) = &report {
        phases(out, &report["timings"]);
        if let Some(e) = report["error"].as_str() {
            let _ = write!(out, "<p class=\"error\">{}</p>", esc(e));
        }
    }

    out.push_str("<section id=\"steps\"><h2>Steps</h2>");
    let longest = d.steps.iter().map(|s| s.duration_ms).max().unwrap_or(0);
    for (pass, title) in [
        ("first", None),
        ("second", Some("Second run (idempotence)")),
    ] {
        let steps: Vec<&StepRow> = d.steps.iter().filter(|s| s.pass == pass).collect();
        if steps.is_empty() {
            continue;
        }
        if let Some(t) = title {
            let _ = write!(out, "<h3>{t}</h3>");
        }
        out.push_str("<ol class=\"timeline\">");
        for s in steps {
            step(out, s, longest);
        }
        out.push_str("</ol>");
    }
    if d.steps.is_empty() {
        out.push_str(if d.run.outcome == "running" {
            "<p class=\"muted\">No step has ended yet.</p>"
        } else {
            "<p class=\"muted\">No step ran.</p>"
        });
    }
    out.push_str("</section>");

    if let Some(report) = &report {
        if let Some(idem) = report
            .get("idempotence")
            .filter(|v| !v.is_null())
            .and_then(|v| IdempotenceView::deserialize(v).ok())
        {
            idempotence(out, &idem);
        }
    }

    for (phase, title) in [
        ("checks", "Checks"),
        ("after_second_run", "Checks after the second run"),
        ("after_reboot", "Checks after reboot"),
    ] {
        let rows: Vec<&CheckRow> = d.checks.iter().filter(|c| c.phase == phase).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = write!(out, "<section id=\"checks-{phase}\"><h2>{title}</h2>");
        checks_table(out, &rows);
        out.push_str("</section>");
    }

    if let Some(report) = &report {
        hygiene(out, &report["hygiene"]);
        if let Some(how) = report["how_to_get_in"].as_str() {
            let _ = write!(
                out,
                "<section><h2>The cluster was kept</h2><pre class=\"output\">{}</pre></section>",
                esc(how)
            );
        }
    }
}

/// The run's phases as one bar: how the time went.
fn phases(out: &mut String, timings: &Value) {
    let names = [
        ("boot_ms", "boot"),
        ("steps_ms", "steps"),
        ("checks_ms", "checks"),
        ("idempotence_ms", "idempotence"),
        ("reboot_ms", "reboot"),
        ("hygiene_ms", "hygiene"),
        ("teardown_ms", "teardown"),
    ];
    let parts: Vec<(&str, u64)> = names
        .iter()
        .filter_map(|(k, label)| {
            timings[*k]
                .as_u64()
                .filter(|ms| *ms > 0)
                .map(|ms| (*label, ms))
        })
        .collect();
    let total: u64 = parts.iter().map(|(_, ms)| ms).sum();
    if total == 0 {
        return;
    }
    out.push_str("<section id=\"phases\"><h2>Timeline</h2><div class=\"phasebar\">");
    for (label, ms) in &parts {
        let _ = write!(
            out,
            "<span class=\"phase phase-{label}\" style=\"flex-grow:{ms}\" title=\"{label}: {d}\"></span>",
            d = duration(*ms)
        );
    }
    out.push_str("</div><ul class=\"legend\">");
    for (label, ms) in &parts {
        let _ = write!(
            out,
            "<li><span class=\"swatch phase-{label}\"></span>{label} {}</li>",
            duration(*ms)
        );
    }
    out.push_str("</ul></section>");
}

fn bar(ms: u64, longest: u64) -> String {
    let pct = if longest == 0 {
        0.0
    } else {
        (ms as f64 / longest as f64 * 100.0).max(1.0)
    };
    format!("<div class=\"bar\"><span style=\"width:{pct:.1}%\"></span></div>")
}

fn step(out: &mut String, s: &StepRow, longest: u64) {
    let status = if s.ok { "passed" } else { "failed" };
    let _ = write!(
        out,
        "<li class=\"step {status}\"><div class=\"line\">{badge} <strong class=\"step-name\">{name}</strong> \
         <span class=\"muted\">{kind} on {nodes}</span> <span class=\"duration\">{d}</span></div>{bar}",
        badge = badge(status),
        name = esc(&s.name),
        kind = esc(&s.kind),
        nodes = esc(&s.nodes.join(", ")),
        d = duration(s.duration_ms),
        bar = bar(s.duration_ms, longest),
    );
    if let Some(e) = &s.error {
        let _ = write!(out, "<p class=\"error\">{}</p>", esc(e));
    }
    let detail: Value = serde_json::from_str(&s.detail).unwrap_or(Value::Null);
    let _ = write!(
        out,
        "<details class=\"outputs\"{}><summary>output</summary>",
        if s.ok { "" } else { " open" }
    );
    for node in detail["nodes"].as_array().into_iter().flatten() {
        node_output(out, node);
    }
    if let Some(ansible) = detail.get("ansible").filter(|a| !a.is_null()) {
        ansible_output(out, ansible);
    }
    for hang in detail["hang_state"].as_array().into_iter().flatten() {
        let _ = write!(
            out,
            "<h4>{} when it hung</h4><h5>processes</h5>{}<h5>jobs</h5>{}<h5>journal</h5>{}",
            esc(hang["node"].as_str().unwrap_or("")),
            output_block(hang["processes"].as_str().unwrap_or("")),
            output_block(hang["jobs"].as_str().unwrap_or("")),
            output_block(hang["journal"].as_str().unwrap_or("")),
        );
    }
    out.push_str("</details></li>");
}

fn node_output(out: &mut String, node: &Value) {
    let exit = match node["exit_code"].as_i64() {
        Some(code) => format!("exit {code}"),
        None if node["timed_out"].as_bool() == Some(true) => "timed out".into(),
        None => "did not run".into(),
    };
    let _ = write!(
        out,
        "<div class=\"node-output\"><h4>{} <span class=\"muted\">{exit} · {}</span></h4>",
        esc(node["node"].as_str().unwrap_or("")),
        duration(node["duration_ms"].as_u64().unwrap_or(0)),
    );
    if let Some(e) = node["error"].as_str() {
        let _ = write!(out, "<p class=\"error\">{}</p>", esc(e));
    }
    let _ = write!(
        out,
        "<h5>stdout</h5>{}<h5>stderr</h5>{}",
        output_block(node["stdout"].as_str().unwrap_or("")),
        output_block(node["stderr"].as_str().unwrap_or("")),
    );
    let changed: Vec<&str> = node["changed_files"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !changed.is_empty() {
        let _ = write!(
            out,
            "<h5>files changed</h5><pre class=\"output\">{}</pre>",
            esc(&changed.join("\n"))
        );
    }
    out.push_str("</div>");
}

fn ansible_output(out: &mut String, a: &Value) {
    out.push_str("<div class=\"node-output\"><h4>Ansible</h4><table class=\"tasks\"><thead><tr><th>host</th><th>task</th><th>action</th><th>status</th><th>message</th></tr></thead><tbody>");
    for t in a["tasks"].as_array().into_iter().flatten() {
        let status = t["status"].as_str().unwrap_or("");
        let mut msg = esc(t["msg"].as_str().unwrap_or(""));
        for stream in ["stdout", "stderr"] {
            if let Some(text) = t[stream].as_str().filter(|s| !s.is_empty()) {
                let _ = write!(msg, "<pre class=\"output\">{}</pre>", esc(text));
            }
        }
        let _ = write!(
            out,
            "<tr class=\"{status}\"><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td><td>{msg}</td></tr>",
            esc(t["host"].as_str().unwrap_or("")),
            esc(t["task"].as_str().unwrap_or("")),
            esc(t["action"].as_str().unwrap_or("")),
            badge(status),
        );
    }
    let _ = write!(
        out,
        "</tbody></table><h5>ansible-playbook stdout</h5>{}<h5>stderr</h5>{}</div>",
        output_block(a["stdout"].as_str().unwrap_or("")),
        output_block(a["stderr"].as_str().unwrap_or("")),
    );
}

fn checks_table(out: &mut String, rows: &[&CheckRow]) {
    out.push_str(
        "<table class=\"checks\"><thead><tr><th>status</th><th>node</th><th>check</th>\
         <th>expected</th><th>actual</th><th>message</th><th>tries</th><th>took</th></tr></thead><tbody>",
    );
    for c in rows {
        let _ = write!(
            out,
            "<tr class=\"check {status}\"><td>{badge}</td><td>{node}</td>\
             <td><strong>{name}</strong><div class=\"muted\">{kind} {subject}</div></td>\
             <td class=\"expected\"><code>{expected}</code></td><td class=\"actual\"><code>{actual}</code></td>\
             <td class=\"message\">{message}</td><td>{attempts}</td><td>{d}</td></tr>",
            status = esc(&c.status),
            badge = badge(&c.status),
            node = esc(&c.node),
            name = esc(&c.name),
            kind = esc(&c.kind),
            subject = esc(&c.subject),
            expected = esc(&json_text(&c.expected)),
            actual = esc(&json_text(&c.actual)),
            message = esc(&c.message),
            attempts = c.attempts,
            d = duration(c.duration_ms),
        );
    }
    out.push_str("</tbody></table>");
}

fn hygiene(out: &mut String, findings: &Value) {
    let Some(list) = findings.as_array() else {
        return;
    };
    out.push_str("<section id=\"hygiene\"><h2>Hygiene</h2>");
    if list.is_empty() {
        out.push_str("<p>Nothing left behind: no stray files, keys, failed units or forceful commands.</p></section>");
        return;
    }
    out.push_str("<table class=\"hygiene\"><thead><tr><th>finding</th><th>node</th><th>where</th><th>detail</th></tr></thead><tbody>");
    for f in list {
        let _ = write!(
            out,
            "<tr class=\"failed\"><td>{}</td><td>{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
            esc(&f["kind"].as_str().unwrap_or("").replace('_', " ")),
            esc(f["node"].as_str().unwrap_or("")),
            esc(f["location"].as_str().unwrap_or("")),
            esc(f["detail"].as_str().unwrap_or("")),
        );
    }
    out.push_str("</tbody></table></section>");
}

// ------------------------------------------------------------------ converge

fn converge(out: &mut String, d: &RunDetail, c: &ConvergeDetail) {
    let _ = write!(
        out,
        "<section id=\"task\"><h2>Task</h2><p class=\"goal\">{goal}</p><dl class=\"facts\">\
         <dt>language</dt><dd>{lang}</dd><dt>model</dt><dd>{model}</dd>\
         <dt>iterations</dt><dd>{n}</dd><dt>model calls</dt><dd>{calls}</dd></dl></section>",
        goal = esc(&c.goal),
        lang = esc(&c.language),
        model = esc(c.model.as_deref().unwrap_or("none (rules only)")),
        n = c.iterations.len(),
        calls = usage(c.iterations.iter().flat_map(|i| &i.llm_calls)),
    );

    out.push_str("<section id=\"iterations\"><h2>Iterations</h2>");
    if c.iterations.is_empty() {
        out.push_str(if d.run.outcome == "running" {
            "<p class=\"muted\">No iteration has ended yet.</p>"
        } else {
            "<p class=\"muted\">No iteration ran.</p>"
        });
    }
    let longest = c
        .iterations
        .iter()
        .map(|i| i.duration_ms)
        .max()
        .unwrap_or(0);
    out.push_str("<ol class=\"timeline iterations\">");
    let mut previous: Option<&IterationRecord> = None;
    for it in &c.iterations {
        iteration(out, it, previous, longest);
        previous = Some(it);
    }
    out.push_str("</ol></section>");

    out.push_str("<section id=\"result\"><h2>Result</h2>");
    match &c.script {
        Some(script) => {
            let _ = write!(out, "<h3>The script that passed</h3>{}", code_block(script));
        }
        None => out.push_str("<p class=\"muted\">No script passed.</p>"),
    }
    if let Some(distilled) = &c.distilled {
        let _ = write!(out, "<h3>Distilled script</h3>{}", code_block(distilled));
        if let Some(script) = &c.script {
            let _ = write!(
                out,
                "<details><summary>changes from the script that passed</summary>{}</details>",
                diff_block(script, distilled)
            );
        }
    }
    let proof = d
        .children
        .iter()
        .find(|r| r.role.as_deref() == Some("proof"));
    match (proof, &c.proof_outcome) {
        (Some(run), _) => {
            let _ = write!(
                out,
                "<p id=\"proof\">Proof on a fresh cluster: {} <a href=\"/runs/{id}\">run {id}</a>{}</p>",
                badge(&run.outcome),
                run.duration_ms()
                    .map(|ms| format!(" in {}", duration(ms.max(0) as u64)))
                    .unwrap_or_default(),
                id = esc(&run.id),
            );
        }
        (None, Some(outcome)) => {
            let _ = write!(out, "<p id=\"proof\">Proof: {}</p>", badge(outcome));
        }
        (None, None) if c.converged => out.push_str(
            "<p id=\"proof\" class=\"muted\">No separate proof run: the code that passed ran whole on a fresh cluster.</p>",
        ),
        (None, None) => {}
    }
    out.push_str("</section>");

    if !d.children.is_empty() {
        out.push_str("<section id=\"children\"><h2>Scenario runs</h2><table class=\"runs\"><thead><tr><th>status</th><th>part</th><th>run</th><th>took</th><th>summary</th></tr></thead><tbody>");
        for r in &d.children {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td><a class=\"mono\" href=\"/runs/{id}\">{id}</a></td><td>{}</td><td>{}</td></tr>",
                badge(&r.outcome),
                esc(r.role.as_deref().unwrap_or("")),
                r.duration_ms()
                    .map(|ms| duration(ms.max(0) as u64))
                    .unwrap_or_else(|| "running".into()),
                esc(r.summary.as_deref().unwrap_or("")),
                id = esc(&r.id),
            );
        }
        out.push_str("</tbody></table></section>");
    }
}

/// `3 calls · 1,200 in / 300 out · $0.01`.
fn usage<'a>(calls: impl Iterator<Item = &'a LlmCallRecord>) -> String {
    let (mut n, mut input, mut output, mut cost) = (0, 0, 0, None::<f64>);
    for c in calls {
        n += 1;
        input += c.input_tokens;
        output += c.output_tokens;
        if let Some(x) = c.cost_usd {
            cost = Some(cost.unwrap_or(0.0) + x);
        }
    }
    if n == 0 {
        return "none".into();
    }
    format!("{n} · {}", tokens(input, output, cost))
}

fn iteration(
    out: &mut String,
    it: &IterationRecord,
    previous: Option<&IterationRecord>,
    longest: u64,
) {
    let _ = write!(
        out,
        "<li class=\"iteration {outcome}\" id=\"iteration-{n}\"><div class=\"line\">{badge} \
         <strong>Iteration {n}</strong> <span class=\"muted\">code from {origin}</span> \
         <span class=\"duration\">{d}</span></div>{bar}",
        outcome = esc(&it.outcome),
        badge = badge(&it.outcome),
        n = it.number,
        origin = esc(&it.origin),
        d = duration(it.duration_ms),
        bar = bar(it.duration_ms, longest),
    );
    if !it.scenario_run_id.is_empty() {
        let _ = write!(
            out,
            "<p>Ran as scenario run <a class=\"mono\" href=\"/runs/{id}\">{id}</a></p>",
            id = esc(&it.scenario_run_id)
        );
    }
    if let Some(failure) = &it.failure {
        let _ = write!(
            out,
            "<h4>What failed</h4><pre class=\"output failure\">{}</pre>",
            esc(failure)
        );
    }
    if let Some(path) = &it.recovery_path {
        let _ = write!(
            out,
            "<p class=\"recovery\">Recovery: <strong>{}</strong>{}{}</p>",
            esc(path),
            it.reason
                .as_deref()
                .map(|r| format!(" — {}", esc(r)))
                .unwrap_or_default(),
            it.fix_rule
                .as_deref()
                .map(|r| format!(" (rule <span class=\"mono\">{}</span>)", esc(r)))
                .unwrap_or_default(),
        );
    }

    if !it.checks.is_empty() {
        out.push_str("<h4>Checks</h4>");
        checks_table(out, &it.checks.iter().collect::<Vec<_>>());
    }

    if !it.llm_calls.is_empty() {
        let _ = write!(
            out,
            "<h4>Model calls</h4><table class=\"calls\"><thead><tr><th>purpose</th><th>tokens in</th>\
             <th>tokens out</th><th>latency</th><th>cost</th></tr></thead><tbody>"
        );
        for call in &it.llm_calls {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\
                 <tr class=\"call-detail\"><td colspan=\"5\"><details><summary>prompt and answer</summary>\
                 <h5>prompt</h5><pre class=\"output\">{}</pre><h5>answer</h5><pre class=\"output\">{}</pre></details></td></tr>",
                esc(&call.purpose),
                call.input_tokens,
                call.output_tokens,
                duration(call.latency_ms),
                call.cost_usd.map(|c| format!("${c:.4}")).unwrap_or_else(|| "—".into()),
                esc(&call.prompt),
                esc(&call.response),
            );
        }
        out.push_str("</tbody></table>");
    }

    if !it.commands.is_empty() {
        out.push_str("<h4>Troubleshooting commands</h4><ol class=\"commands\">");
        for cmd in &it.commands {
            command(out, cmd);
        }
        out.push_str("</ol>");
    }

    match previous {
        Some(prev) => {
            let lines = diff::lines(&prev.code, &it.code);
            let (removed, added) = diff::counts(&lines);
            let _ = write!(
                out,
                "<h4>Code, changed from iteration {}: <span class=\"del-count\">−{removed}</span> \
                 <span class=\"add-count\">+{added}</span></h4>{}\
                 <details><summary>the whole code</summary>{}</details>",
                prev.number,
                render_diff(&lines),
                code_block(&it.code),
            );
        }
        None => {
            let _ = write!(out, "<h4>Code</h4>{}", code_block(&it.code));
        }
    }
    out.push_str("</li>");
}

fn command(out: &mut String, cmd: &CommandRow) {
    let status = match (&cmd.refused, cmd.exit_code) {
        (Some(_), _) => "refused".to_owned(),
        (None, Some(code)) => format!("exit {code}"),
        (None, None) => "did not finish".to_owned(),
    };
    let _ = write!(
        out,
        "<li class=\"command\"><div class=\"line\"><span class=\"mono\">{node}$ {command}</span> \
         <span class=\"muted\">{status} · {d}</span></div><p class=\"why\">{why}</p>",
        node = esc(&cmd.node),
        command = esc(&cmd.command),
        d = duration(cmd.duration_ms),
        why = esc(&cmd.why),
    );
    if let Some(r) = &cmd.refused {
        let _ = write!(out, "<p class=\"error\">Refused: {}</p>", esc(r));
    }
    out.push_str(&output_block(&cmd.output));
    out.push_str("</li>");
}

fn code_block(code: &str) -> String {
    format!("<pre class=\"code\">{}</pre>", esc(code))
}

fn render_diff(lines: &[Line]) -> String {
    let mut out = String::from("<pre class=\"diff\">");
    for line in lines {
        let (class, mark, text) = match line {
            Line::Same(t) => ("same", ' ', t),
            Line::Removed(t) => ("del", '-', t),
            Line::Added(t) => ("add", '+', t),
        };
        // Block-level spans: a newline between them would double the spacing.
        let _ = write!(out, "<span class=\"{class}\">{mark} {}</span>", esc(text));
    }
    out.push_str("</pre>");
    out
}

fn diff_block(old: &str, new: &str) -> String {
    render_diff(&diff::lines(old, new))
}

#[cfg(test)]
mod tests {
    use rehearse_store::{CommandRow, ConvergeDetail, IterationRecord, RunDetail, RunRow};

    fn run(id: &str, kind: &str, outcome: &str, role: Option<&str>) -> RunRow {
        RunRow {
            id: id.into(),
            kind: kind.into(),
            name: "web <tier>".into(),
            file: "task.yaml".into(),
            parent_id: role.map(|_| "c1".into()),
            role: role.map(str::to_owned),
            started_at_ms: 1_714_568_645_000,
            updated_at_ms: 1_714_568_650_000,
            finished_at_ms: Some(1_714_568_650_000),
            outcome: outcome.into(),
            summary: None,
            cluster_id: None,
            report_path: None,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: None,
            host: None,
        }
    }

    fn iteration(number: u32, code: &str, outcome: &str) -> IterationRecord {
        IterationRecord {
            number,
            origin: "model".into(),
            code: code.into(),
            outcome: outcome.into(),
            scenario_run_id: format!("s{number}"),
            failure: None,
            recovery_path: None,
            reason: None,
            fix_rule: None,
            duration_ms: 2_500,
            llm_calls: vec![],
            commands: vec![],
            checks: vec![],
        }
    }

    #[test]
    fn troubleshooting_commands_the_proof_and_the_distilled_script_are_shown() {
        let mut first = iteration(
            1,
            "apt-get install nginx\nsystemctl start nginx\n",
            "failed",
        );
        first.recovery_path = Some("troubleshoot".into());
        first.reason = Some("the code ran but <nginx> is down".into());
        first.commands = vec![
            CommandRow {
                node: "web1".into(),
                command: "journalctl -u nginx | tail -n 5".into(),
                why: "see why it stopped".into(),
                exit_code: Some(0),
                output: "bind() to 0.0.0.0:80 failed".into(),
                duration_ms: 120,
                refused: None,
            },
            CommandRow {
                node: "web1".into(),
                command: "rm -rf /".into(),
                why: "start over".into(),
                exit_code: None,
                output: String::new(),
                duration_ms: 0,
                refused: Some("destroys the node".into()),
            },
        ];
        let second = iteration(
            2,
            "apt-get install nginx\nsystemctl restart nginx\n",
            "passed",
        );
        let detail = RunDetail {
            run: run("c1", "converge", "converged", None),
            report: None,
            steps: vec![],
            checks: vec![],
            converge: Some(ConvergeDetail {
                goal: "Serve a page".into(),
                language: "bash".into(),
                model: Some("openai/fake".into()),
                converged: true,
                script: Some(second.code.clone()),
                distilled: Some("systemctl restart nginx\n".into()),
                proof_outcome: Some("passed".into()),
                iterations: vec![first, second],
            }),
            children: vec![
                run("s1", "scenario", "failed", Some("iteration 1")),
                run("s2", "scenario", "passed", Some("iteration 2")),
                run("p1", "scenario", "passed", Some("proof")),
            ],
        };
        let html = super::body(&detail);
        assert!(html.contains("web &lt;tier&gt;"), "names are escaped");
        assert!(html.contains(
            "Recovery: <strong>troubleshoot</strong> — the code ran but &lt;nginx&gt; is down"
        ));
        assert!(html.contains("web1$ journalctl -u nginx | tail -n 5"));
        assert!(html.contains("bind() to 0.0.0.0:80 failed"));
        assert!(html.contains("Refused: destroys the node"));
        assert!(html.contains("<span class=\"del\">- systemctl start nginx</span>"));
        assert!(html.contains("<span class=\"add\">+ systemctl restart nginx</span>"));
        assert!(html.contains("Distilled script"));
        assert!(
            html.contains("href=\"/runs/p1\">run p1</a>"),
            "the proof run is linked"
        );
        assert!(
            html.contains("href=\"/runs/s1\""),
            "iteration runs are linked"
        );
    }

    #[test]
    fn a_matrix_run_shows_platform_by_steps_checks_idempotence_and_hygiene() {
        let report = serde_json::json!({
            "outcome": "failed",
            "platforms": [
                {"platform": "debian-12", "outcome": "passed",
                 "steps": [{"ok": true}, {"ok": true}],
                 "checks": [{"status": "passed"}, {"status": "passed"}],
                 "idempotence": {"passed": true}, "hygiene": []},
                {"platform": "ubuntu-24.04", "outcome": "failed",
                 "steps": [{"ok": true}, {"ok": false}],
                 "checks": [{"status": "passed"}, {"status": "failed"}],
                 "idempotence": null, "hygiene": [{"kind": "secret_in_tmp"}]},
            ],
        });
        let mut matrix = run("m1", "scenario", "failed", None);
        matrix.role = Some("matrix of debian-12, ubuntu-24.04".into());
        let detail = RunDetail {
            run: matrix,
            report: Some(report.to_string()),
            steps: vec![],
            checks: vec![],
            converge: None,
            children: vec![
                run("r1", "scenario", "passed", Some("platform debian-12")),
                run("r2", "scenario", "failed", Some("platform ubuntu-24.04")),
            ],
        };
        let html = super::body(&detail);
        assert!(html.contains("<h2>Platforms</h2>"), "{html}");
        assert!(
            html.contains(
                "<strong>debian-12</strong></td><td>2/2</td><td>2/2</td><td>passed</td><td>0</td>"
            ),
            "{html}"
        );
        assert!(
            html.contains(
                "<strong>ubuntu-24.04</strong></td><td>1/2</td><td>1/2</td><td>-</td><td>1</td>"
            ),
            "{html}"
        );
        assert!(
            html.contains("href=\"/runs/r2\""),
            "each platform's run is linked"
        );
        assert!(
            !html.contains("<h2>Steps</h2>"),
            "a matrix has no steps of its own"
        );
    }

    #[test]
    fn an_evaluation_shows_tasks_by_pass_rate_and_links_every_attempt() {
        let tally = |attempts: u32, converged: u32, recovery: serde_json::Value| {
            serde_json::json!({
                "attempts": attempts, "converged": converged,
                "pass_rate": f64::from(converged) / f64::from(attempts),
                "mean_iterations": 1.5, "recovery": recovery, "first_try": 1,
                "platform_failures": 0, "reasks": 0, "wall_ms": 12_000,
                "input_tokens": 300, "output_tokens": 60, "cost_usd": null,
            })
        };
        let mut solved = tally(2, 2, serde_json::json!({"retry": 1}));
        solved["task"] = "nginx <site>".into();
        solved["platform"] = "debian-12".into();
        let report = serde_json::json!({
            "model": "openai/fake", "attempts_per_task": 2, "jobs": 1,
            "min_pass_rate": 1.0, "passed": false,
            "tasks": [solved], "total": tally(3, 2, serde_json::json!({"retry": 1})),
        });
        let detail = RunDetail {
            run: run("e1", "eval", "failed", None),
            report: Some(report.to_string()),
            steps: vec![],
            checks: vec![],
            converge: None,
            children: vec![
                run(
                    "c1",
                    "converge",
                    "converged",
                    Some("nginx <site> on debian-12, attempt 1"),
                ),
                run(
                    "c2",
                    "converge",
                    "budget_exhausted",
                    Some("nginx <site> on debian-12, attempt 2"),
                ),
            ],
        };
        let html = super::body(&detail);
        assert!(
            html.contains("<tr><td><strong>nginx &lt;site&gt;</strong></td><td>debian-12</td><td>2/2</td><td><strong>100.0%</strong></td><td>1.5</td><td>retry 1</td>"),
            "{html}"
        );
        assert!(
            html.contains(
                "<td><strong>all</strong></td><td></td><td>2/3</td><td><strong>66.7%</strong></td>"
            ),
            "{html}"
        );
        assert!(html.contains("required pass rate 100.0%"), "{html}");
        assert!(
            html.contains("href=\"/runs/c2\""),
            "each attempt's run is linked"
        );
        assert!(
            html.contains("nginx &lt;site&gt; on debian-12, attempt 2"),
            "{html}"
        );
        assert!(!html.contains("<h2>Steps</h2>"), "{html}");
    }
}

/// The part of a run report the idempotence section shows.
#[derive(Deserialize)]
struct IdempotenceView {
    passed: bool,
    #[serde(default)]
    failed_runs: Vec<FailedRunView>,
    #[serde(default)]
    changes: Vec<StepChangesView>,
    #[serde(default)]
    broken_checks: Vec<String>,
    #[serde(default)]
    allowed: Vec<String>,
    /// Every reason it failed; Ansible's changed tasks are only here.
    #[serde(default)]
    changed: Vec<String>,
}

#[derive(Deserialize)]
struct FailedRunView {
    message: String,
    #[serde(default)]
    stderr_tail: Vec<String>,
}

#[derive(Deserialize)]
struct StepChangesView {
    step: String,
    changes: Vec<ChangeView>,
}

#[derive(Deserialize)]
struct ChangeView {
    node: String,
    path: String,
    summary: String,
    #[serde(default)]
    diff: Option<String>,
    #[serde(default)]
    allowed_by: Option<String>,
}

fn idempotence(out: &mut String, idem: &IdempotenceView) {
    let _ = write!(
        out,
        "<section id=\"idempotence\"><h2>Idempotence {}</h2>",
        badge(if idem.passed { "passed" } else { "failed" })
    );
    if idem.passed {
        out.push_str("<p>The second run of every step succeeded and changed nothing it was not allowed to.</p>");
    }
    for f in &idem.failed_runs {
        let _ = write!(
            out,
            "<p class=\"error\">{}</p><pre class=\"output\">{}</pre>",
            esc(&f.message),
            esc(&f.stderr_tail.join("\n"))
        );
    }
    for step in &idem.changes {
        let real: Vec<&ChangeView> = step
            .changes
            .iter()
            .filter(|c| c.allowed_by.is_none())
            .collect();
        if real.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            "<p>The second run of step <b>{}</b> changed:</p><ul>",
            esc(&step.step)
        );
        for c in real {
            let _ = write!(
                out,
                "<li><span class=\"mono\">{}: {}</span>: {}",
                esc(&c.node),
                esc(&c.path),
                esc(&c.summary)
            );
            if let Some(d) = &c.diff {
                let _ = write!(out, "<pre class=\"output\">{}</pre>", esc(d));
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    let tasks: Vec<&String> = idem
        .changed
        .iter()
        .filter(|l| l.contains(": task '") || l.contains(": handler '"))
        .collect();
    for line in tasks.iter().copied().chain(&idem.broken_checks) {
        let _ = write!(out, "<p class=\"error mono\">{}</p>", esc(line));
    }
    if !idem.allowed.is_empty() {
        out.push_str(
            "<p>Allowed changes (<span class=\"mono\">idempotence.allow_changes</span>):</p><ul>",
        );
        for a in &idem.allowed {
            let _ = write!(out, "<li class=\"mono\">{}</li>", esc(a));
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>");
}
