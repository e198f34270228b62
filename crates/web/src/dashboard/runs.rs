//! The runs list: filters, newest first, and live updates over server-sent
//! events while runs are in progress.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use rehearse_store::{RunFilter, RunRow};
use serde::Deserialize;

use super::html::{self, badge, esc, url_component, Section};
use crate::AppState;

/// How often a live view asks the store what changed.
pub(super) const POLL: Duration = Duration::from_millis(500);
/// Writes stamped shortly before the last poll may land after it (clocks of
/// other processes, same millisecond): each poll looks back this far and
/// drops what it already sent.
const OVERLAP_MS: i64 = 2_000;

/// The outcomes a run can have, for the status filter.
pub const OUTCOMES: &[&str] = &[
    "running",
    "passed",
    "failed",
    "error",
    "aborted",
    "converged",
    "budget_exhausted",
    "no_rule_applies",
];

/// The filters as the form sends them; empty fields mean "any".
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ListQuery {
    pub outcome: String,
    pub name: String,
    pub kind: String,
    /// `YYYY-MM-DD`, the first day shown (UTC).
    pub from: String,
    /// `YYYY-MM-DD`, the last day shown (UTC).
    pub to: String,
    /// `on` to list converge runs' iteration and proof runs too.
    pub children: String,
    /// For live updates: the time the page was rendered.
    pub after: Option<i64>,
}

fn some(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

impl ListQuery {
    /// The store's filter, or what is wrong with the form.
    pub fn filter(&self) -> Result<RunFilter, String> {
        let day = |field: &str, text: &str| -> Result<Option<i64>, String> {
            match some(text) {
                None => Ok(None),
                Some(t) => html::parse_date(&t).map(Some).ok_or_else(|| {
                    format!(
                        "{field}: \"{t}\" is not a date; write it as YYYY-MM-DD, e.g. 2024-05-01"
                    )
                }),
            }
        };
        let kind = some(&self.kind);
        if let Some(k) = &kind {
            if k != "scenario" && k != "converge" && k != "eval" {
                return Err(format!(
                    "kind: \"{k}\" is not a kind of run; choose scenario, converge or eval"
                ));
            }
        }
        let since_ms = day("from", &self.from)?;
        let until_ms = day("to", &self.to)?.map(|d| d + 86_400_000);
        if let (Some(s), Some(u)) = (since_ms, until_ms) {
            if s >= u {
                return Err("from: the first day comes after the last (to)".into());
            }
        }
        Ok(RunFilter {
            kind,
            outcome: some(&self.outcome),
            name: some(&self.name),
            since_ms,
            until_ms,
            children: self.children == "on",
            updated_after_ms: None,
            limit: Some(200),
        })
    }

    /// The query string of the filters, for links and the live stream.
    fn query_string(&self) -> String {
        [
            ("outcome", &self.outcome),
            ("name", &self.name),
            ("kind", &self.kind),
            ("from", &self.from),
            ("to", &self.to),
            ("children", &self.children),
        ]
        .iter()
        .filter(|(_, v)| !v.trim().is_empty())
        .map(|(k, v)| format!("{k}={}", url_component(v.trim())))
        .collect::<Vec<_>>()
        .join("&")
    }
}

/// One run as a row of the list (also sent whole by the live stream).
pub fn row(run: &RunRow) -> String {
    let mut out = String::new();
    let id = esc(&run.id);
    let _ = write!(
        out,
        "<tr id=\"run-{id}\" class=\"run outcome-{outcome}\" data-id=\"{id}\" data-outcome=\"{outcome}\">\
         <td class=\"status\">{badge}</td>\
         <td><a class=\"run-name\" href=\"/runs/{id}\">{name}</a><div class=\"muted mono\">{id}{role}</div></td>\
         <td class=\"kind\">{kind}</td>\
         <td class=\"started\">{started}</td>",
        outcome = esc(&run.outcome),
        badge = badge(&run.outcome),
        name = esc(&run.name),
        role = run
            .role
            .as_deref()
            .map(|r| format!(" · {}", esc(r)))
            .unwrap_or_default(),
        kind = esc(&run.kind),
        started = html::date_time(run.started_at_ms),
    );
    match run.duration_ms() {
        Some(ms) => {
            let _ = write!(
                out,
                "<td class=\"duration\">{}</td>",
                html::duration(ms.max(0) as u64)
            );
        }
        None => {
            let _ = write!(
                out,
                "<td class=\"duration\" data-running-since=\"{}\">running</td>",
                run.started_at_ms
            );
        }
    }
    let _ = write!(
        out,
        "<td class=\"summary\">{}</td><td class=\"tokens\">{}</td></tr>",
        esc(run.summary.as_deref().unwrap_or("")),
        tokens(run.input_tokens, run.output_tokens, run.cost_usd),
    );
    out
}

/// `1,200 in / 300 out · $0.0042`, or nothing for runs without a model.
pub fn tokens(input: u64, output: u64, cost: Option<f64>) -> String {
    if input == 0 && output == 0 && cost.is_none() {
        return String::new();
    }
    let mut text = format!("{input} in / {output} out");
    if let Some(c) = cost {
        let _ = write!(text, " · ${c:.4}");
    }
    text
}

fn select(name: &str, label: &str, options: &[&str], chosen: &str) -> String {
    let mut out = format!("<label>{label} <select name=\"{name}\"><option value=\"\">any</option>");
    for o in options {
        let sel = if *o == chosen { " selected" } else { "" };
        let _ = write!(
            out,
            "<option value=\"{o}\"{sel}>{}</option>",
            o.replace('_', " ")
        );
    }
    out.push_str("</select></label>");
    out
}

fn filters_form(q: &ListQuery) -> String {
    format!(
        "<form class=\"filters\" method=\"get\" action=\"/runs\">\
         {status}\
         <label>name <input type=\"search\" name=\"name\" value=\"{name}\" placeholder=\"scenario or task\"></label>\
         {kind}\
         <label>from <input type=\"date\" name=\"from\" value=\"{from}\"></label>\
         <label>to <input type=\"date\" name=\"to\" value=\"{to}\"></label>\
         <label class=\"check\"><input type=\"checkbox\" name=\"children\" value=\"on\"{children}> iteration and proof runs</label>\
         <button type=\"submit\">Filter</button> <a href=\"/runs\">clear</a></form>",
        status = select("outcome", "status", OUTCOMES, q.outcome.trim()),
        name = esc(&q.name),
        kind = select("kind", "kind", &["scenario", "converge", "eval"], q.kind.trim()),
        from = esc(&q.from),
        to = esc(&q.to),
        children = if q.children == "on" { " checked" } else { "" },
    )
}

/// `GET /` and `GET /runs`.
pub async fn list(State(state): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let mut body = String::from("<h1>Runs</h1>");
    body.push_str(&filters_form(&q));
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => {
            let _ = write!(body, "<p class=\"error\">{}</p>", esc(&e));
            return (
                StatusCode::BAD_REQUEST,
                html::page("Runs", Section::Runs, &body),
            )
                .into_response();
        }
    };
    let rendered_at = crate::dashboard::now_ms();
    let runs = match state.with_store(move |s| s.runs(&filter)).await {
        Ok(r) => r,
        Err(e) => {
            let _ = write!(body, "<p class=\"error\">{}</p>", esc(&e.to_string()));
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                html::page("Runs", Section::Runs, &body),
            )
                .into_response();
        }
    };
    let query = q.query_string();
    let sep = if query.is_empty() { "" } else { "&" };
    let _ = write!(
        body,
        "<table id=\"runs\" class=\"runs\" data-events=\"/runs/events?{q}{sep}after={rendered_at}\">\
         <thead><tr><th>status</th><th>run</th><th>kind</th><th>started</th><th>duration</th>\
         <th>summary</th><th>tokens</th></tr></thead><tbody>",
        q = esc(&query),
    );
    for run in &runs {
        body.push_str(&row(run));
    }
    let _ = write!(
        body,
        "</tbody></table><p id=\"runs-empty\" class=\"muted\"{}>No runs match these filters.</p>",
        if runs.is_empty() { "" } else { " hidden" }
    );
    html::page("Runs", Section::Runs, &body).into_response()
}

struct Live {
    state: AppState,
    filter: RunFilter,
    /// The status filter, applied here so that a run leaving it is removed.
    outcome: Option<String>,
    cursor: i64,
    sent: HashMap<String, i64>,
}

impl Live {
    /// What changed since the last poll: rows to show and rows to remove.
    async fn poll(&mut self) -> Vec<serde_json::Value> {
        let filter = RunFilter {
            updated_after_ms: Some(self.cursor - OVERLAP_MS),
            ..self.filter.clone()
        };
        let rows = match self.state.with_store(move |s| s.runs(&filter)).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "live runs list: reading the run store");
                return Vec::new();
            }
        };
        let mut changes = Vec::new();
        for run in rows {
            if self.sent.get(&run.id) == Some(&run.updated_at_ms) {
                continue;
            }
            self.cursor = self.cursor.max(run.updated_at_ms);
            self.sent.insert(run.id.clone(), run.updated_at_ms);
            let shown = self.outcome.as_ref().is_none_or(|o| *o == run.outcome);
            changes.push(serde_json::json!({
                "id": run.id,
                "outcome": run.outcome,
                "html": if shown { Some(row(&run)) } else { None },
            }));
        }
        // What is older than the look-back cannot come again.
        let horizon = self.cursor - OVERLAP_MS;
        self.sent.retain(|_, updated| *updated >= horizon);
        changes
    }
}

/// `GET /runs/events`: one `runs` event per poll that found changes, its data
/// a JSON array of `{id, outcome, html}` (`html` null: the run left the filter).
pub async fn events(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, (StatusCode, String)> {
    let mut filter = q.filter().map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let outcome = filter.outcome.take();
    let live = Live {
        state,
        filter,
        outcome,
        cursor: q.after.unwrap_or_else(crate::dashboard::now_ms),
        sent: HashMap::new(),
    };
    let stream = stream::unfold(live, |mut live| async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = super::stopping() => return None,
            }
            let changes = live.poll().await;
            if !changes.is_empty() {
                let event = Event::default()
                    .event("runs")
                    .data(serde_json::Value::Array(changes).to_string());
                return Some((Ok(event), live));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_becomes_the_store_filter() {
        let q = ListQuery {
            outcome: "failed".into(),
            name: " web ".into(),
            kind: "scenario".into(),
            from: "2024-05-01".into(),
            to: "2024-05-01".into(),
            children: "on".into(),
            after: None,
        };
        let f = q.filter().unwrap();
        assert_eq!(f.outcome.as_deref(), Some("failed"));
        assert_eq!(f.name.as_deref(), Some("web"));
        assert_eq!(f.kind.as_deref(), Some("scenario"));
        assert_eq!(f.since_ms, Some(1_714_521_600_000));
        assert_eq!(
            f.until_ms,
            Some(1_714_521_600_000 + 86_400_000),
            "the whole last day"
        );
        assert!(f.children);
        assert_eq!(
            q.query_string(),
            "outcome=failed&name=web&kind=scenario&from=2024-05-01&to=2024-05-01&children=on"
        );
        let empty = ListQuery::default().filter().unwrap();
        assert_eq!((empty.kind, empty.outcome, empty.name), (None, None, None));
    }

    #[test]
    fn bad_filters_say_what_and_how() {
        let q = ListQuery {
            from: "last week".into(),
            ..ListQuery::default()
        };
        let e = q.filter().unwrap_err();
        assert!(e.contains("from") && e.contains("YYYY-MM-DD"), "{e}");
        let q = ListQuery {
            kind: "deploy".into(),
            ..ListQuery::default()
        };
        assert!(q
            .filter()
            .unwrap_err()
            .contains("scenario, converge or eval"));
        let q = ListQuery {
            from: "2024-05-02".into(),
            to: "2024-05-01".into(),
            ..ListQuery::default()
        };
        assert!(q.filter().is_err());
    }

    #[test]
    fn a_row_escapes_what_runs_carry() {
        let run = RunRow {
            id: "1714568645-ab12cd34".into(),
            kind: "scenario".into(),
            name: "<img src=x onerror=alert(1)>".into(),
            file: "x.yaml".into(),
            parent_id: None,
            role: None,
            started_at_ms: 1_714_568_645_000,
            updated_at_ms: 1_714_568_646_000,
            finished_at_ms: Some(1_714_568_649_200),
            outcome: "failed".into(),
            summary: Some("failed: \"x\" <b>".into()),
            cluster_id: None,
            report_path: None,
            input_tokens: 0,
            output_tokens: 0,
            cost_usd: None,
            host: None,
        };
        let html = row(&run);
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("4.2 s"));
        assert!(html.contains("data-outcome=\"failed\""));
    }
}
