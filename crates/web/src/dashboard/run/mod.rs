//! One run: what it did, in order, with durations, outputs and check results;
//! for a converge run, every iteration with its recovery, model calls,
//! commands, checks, code and the diff against the iteration before.
//! While the run is in progress the page follows it (server-sent events).

mod converge;
mod eval;
mod matrix;
mod scenario;
#[cfg(test)]
mod tests;

use std::convert::Infallible;
use std::fmt::Write;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use futures_util::stream::{self, Stream};
use rehearse_scenario::MatrixReport;
use rehearse_store::{CheckRow, RunDetail, RunFilter, RunRow};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::html::{self, badge, duration, esc, json_text, Section};
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
    match &d.converge {
        Some(c) => converge::converge(&mut out, d, c),
        None if d.run.kind == "eval" => eval::eval(&mut out, d, report(d).as_ref()),
        None => {
            let matrix: Option<MatrixReport> = report(d);
            let is_matrix = matrix.is_some()
                || d.run
                    .role
                    .as_deref()
                    .is_some_and(|r| r.starts_with("matrix of "));
            if is_matrix {
                matrix::matrix(&mut out, d, matrix.as_ref());
            } else {
                scenario::scenario(&mut out, d, report(d).as_ref());
            }
        }
    }
    out
}

/// The report the run's row keeps, read as the type it was written from; `None`
/// while the run goes, or when it is another kind of report.
fn report<T: DeserializeOwned>(d: &RunDetail) -> Option<T> {
    serde_json::from_str(d.report.as_deref()?).ok()
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

/// A duration as a bar, as long against `longest` as it took.
fn bar(ms: u64, longest: u64) -> String {
    let pct = if longest == 0 {
        0.0
    } else {
        (ms as f64 / longest as f64 * 100.0).max(1.0)
    };
    format!("<div class=\"bar\"><span style=\"width:{pct:.1}%\"></span></div>")
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
