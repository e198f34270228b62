//! The fleet, seen from any of its hosts: every host with its load and when
//! it last beat, the clusters each one holds, and the queue of work with
//! where each piece ran. Everything comes from the fleet's shared PostgreSQL.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use rehearse_fleet::{Fleet, HostRow, JobRow};
use rehearse_store::ClusterRow;

use super::html::{self, esc, Section};
use crate::AppState;

/// How many clusters of the run store the page looks through for live ones.
const CLUSTER_ROWS: u32 = 500;
/// How many jobs the page lists, newest first.
const JOB_ROWS: u32 = 50;

struct View {
    hosts: Vec<HostRow>,
    jobs: Vec<JobRow>,
}

/// `GET /fleet`.
pub async fn page(State(state): State<AppState>) -> Response {
    let mut body = String::from("<h1>Fleet</h1>");
    let Some(fleet) = state.fleet.clone() else {
        body.push_str(
            "<p class=\"muted\">This host is not part of a fleet. Hosts join one with \
             <code>rehearse serve --fleet postgresql://…</code>, all naming the same database.</p>",
        );
        return html::page("Fleet", Section::Fleet, &body).into_response();
    };
    let read = tokio::task::spawn_blocking(move || -> Result<View, String> {
        read(&fleet).map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(format!("reading the fleet panicked: {e}")));
    let view = match read {
        Ok(view) => view,
        Err(e) => {
            let _ = write!(body, "<p class=\"error\">{}</p>", esc(&e));
            return html::page("Fleet", Section::Fleet, &body).into_response();
        }
    };
    let clusters = state
        .with_store(|s| s.clusters(CLUSTER_ROWS))
        .await
        .unwrap_or_default();
    hosts(&mut body, &view.hosts);
    live_clusters(&mut body, &view.hosts, &clusters);
    jobs(&mut body, &view.jobs);
    html::page("Fleet", Section::Fleet, &body).into_response()
}

fn read(fleet: &Arc<Fleet>) -> Result<View, rehearse_fleet::FleetError> {
    Ok(View {
        hosts: fleet.hosts()?,
        jobs: fleet.jobs(JOB_ROWS)?,
    })
}

fn ago(ms: i64) -> String {
    let secs = ((rehearse_fleet::now_ms() - ms).max(0) / 1000) as u64;
    format!("{} ago", html::duration(secs * 1000))
}

fn hosts(body: &mut String, hosts: &[HostRow]) {
    body.push_str("<section id=\"hosts\"><h2>Hosts</h2>");
    if hosts.is_empty() {
        body.push_str("<p class=\"muted\">No host has joined yet.</p></section>");
        return;
    }
    body.push_str(
        "<table class=\"hosts\"><thead><tr><th>host</th><th>state</th><th>address</th>\
         <th>cores</th><th>memory</th><th>node slots free</th><th>jobs running</th>\
         <th>last beat</th><th>images</th></tr></thead><tbody>",
    );
    for h in hosts {
        let state = match (h.state.as_str(), &h.gone_reason) {
            ("up", _) => html::toned("up", "good"),
            (other, Some(why)) => format!(
                "{} <span class=\"muted\">({})</span>",
                html::toned(other, "bad"),
                esc(why)
            ),
            (other, None) => html::toned(other, "bad"),
        };
        let _ = write!(
            body,
            "<tr data-host=\"{name}\"><td class=\"mono\">{name}</td><td>{state}</td><td class=\"mono\">{url}</td>\
             <td>{cores}</td><td>{memory:.1} GiB</td><td>{free} / {total}</td><td>{running}</td>\
             <td>{beat}</td><td>{images}</td></tr>",
            name = esc(&h.name),
            url = esc(h.url.as_deref().unwrap_or("—")),
            cores = h.cores,
            memory = h.memory_bytes as f64 / (1u64 << 30) as f64,
            free = h.slots_free,
            total = h.slots_total,
            running = h.running_jobs,
            beat = ago(h.heartbeat_at_ms),
            images = esc(&h.images.join(", ")),
        );
    }
    body.push_str("</tbody></table></section>");
}

fn live_clusters(body: &mut String, hosts: &[HostRow], clusters: &[ClusterRow]) {
    body.push_str("<section id=\"fleet-clusters\"><h2>Clusters on the fleet</h2>");
    let up: std::collections::BTreeSet<&str> = hosts
        .iter()
        .filter(|h| h.state == "up")
        .map(|h| h.name.as_str())
        .collect();
    let live: Vec<&ClusterRow> = clusters
        .iter()
        .filter(|c| c.destroyed_at_ms.is_none())
        .filter(|c| c.host.as_deref().is_some_and(|h| up.contains(h)))
        .collect();
    if live.is_empty() {
        body.push_str("<p class=\"muted\">No cluster is up on any host.</p></section>");
        return;
    }
    body.push_str(
        "<table class=\"clusters\"><thead><tr><th>cluster</th><th>host</th><th>started by</th>\
         <th>nodes</th><th>created</th></tr></thead><tbody>",
    );
    for c in live {
        let _ = write!(
            body,
            "<tr data-cluster=\"{id}\"><td class=\"mono\">{id}</td><td class=\"mono\">{host}</td>\
             <td>{source}</td><td>{addresses}</td><td>{created}</td></tr>",
            id = esc(&c.id),
            host = esc(c.host.as_deref().unwrap_or("")),
            source = html::started_by(c),
            addresses = esc(&c.addresses.join(", ")),
            created = html::date_time(c.created_at_ms),
        );
    }
    body.push_str("</tbody></table></section>");
}

fn jobs(body: &mut String, jobs: &[JobRow]) {
    body.push_str("<section id=\"jobs\"><h2>Queue</h2>");
    if jobs.is_empty() {
        body.push_str("<p class=\"muted\">Nothing was queued yet.</p></section>");
        return;
    }
    body.push_str(
        "<table class=\"jobs\"><thead><tr><th>job</th><th>kind</th><th>state</th><th>host</th>\
         <th>submitter</th><th>attempt</th><th>submitted</th><th>took</th><th>run</th></tr></thead><tbody>",
    );
    for j in jobs {
        let took = match (j.started_at_ms, j.finished_at_ms) {
            (Some(start), Some(end)) => html::duration((end - start).max(0) as u64),
            (Some(_), None) => "…".into(),
            _ => "—".into(),
        };
        let run = j
            .run_id
            .as_deref()
            .map(|r| format!("<a href=\"/runs/{r}\">{r}</a>", r = esc(r)))
            .unwrap_or_else(|| "—".into());
        let state = j.state.as_str();
        let tone = match state {
            "done" => "good",
            "queued" | "running" => "live",
            "cancelled" => "neutral",
            _ => "bad",
        };
        let error = j
            .error
            .as_deref()
            .map(|e| format!(" <span class=\"muted\">{}</span>", esc(e)))
            .unwrap_or_default();
        let _ = write!(
            body,
            "<tr data-job=\"{id}\"><td class=\"mono\">{id}</td><td>{kind}</td><td>{badge}{error}</td>\
             <td class=\"mono\">{host}</td><td>{submitter} <span class=\"muted\">(priority {priority})</span></td>\
             <td>{attempt} / {max}</td><td>{submitted}</td><td>{took}</td><td class=\"mono\">{run}</td></tr>",
            id = esc(&j.id),
            kind = esc(j.kind.as_str()),
            badge = html::toned(state, tone),
            host = esc(j.host.as_deref().unwrap_or("—")),
            submitter = esc(&j.submitter),
            priority = j.priority,
            attempt = j.attempt,
            max = j.max_attempts,
            submitted = html::date_time(j.submitted_at_ms),
        );
    }
    body.push_str("</tbody></table></section>");
}
