//! Clusters: the live ones with their nodes, addresses and time left, to
//! destroy or extend (through the same command set as the CLI and MCP), and
//! the recent ones from the run store.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use rehearse_api::types::{ClusterList, ClusterRequest, ExtendRequest, ListRequest};
use rehearse_api::{Api, ApiError, Command, Outcome};
use serde::Deserialize;

use super::html::{self, duration, esc, url_component, Section};
use crate::AppState;

/// The lifetimes the extend form offers.
const TTLS: &[&str] = &["15m", "30m", "1h", "2h", "4h", "8h"];

/// Runs a command of the command set on a blocking thread, as MCP does.
async fn execute(api: &Arc<Api>, command: Command) -> Result<Outcome, ApiError> {
    let api = Arc::clone(api);
    tokio::task::spawn_blocking(move || api.execute(command, None))
        .await
        .unwrap_or_else(|e| {
            Err(ApiError::new(
                rehearse_api::ErrorCode::Internal,
                format!("the command panicked: {e}"),
                false,
            ))
        })
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub struct Notice {
    /// What the last action did, shown once after the redirect.
    done: String,
}

/// `GET /clusters`.
pub async fn list(State(state): State<AppState>, Query(notice): Query<Notice>) -> Response {
    render(&state, Some(notice.done).filter(|d| !d.is_empty()), None).await
}

async fn render(
    state: &AppState,
    done: Option<String>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let mut body = String::from("<h1>Clusters</h1>");
    if let Some(done) = done {
        let _ = write!(body, "<p class=\"notice\">{}</p>", esc(&done));
    }
    let status = match &error {
        Some((status, message)) => {
            let _ = write!(body, "<p class=\"error\">{}</p>", esc(message));
            *status
        }
        None => StatusCode::OK,
    };

    body.push_str("<section id=\"live\"><h2>Live</h2>");
    match execute(&state.api, Command::List(ListRequest {})).await {
        Ok(Outcome::List(list)) if list.clusters.is_empty() => {
            body.push_str("<p class=\"muted\">No cluster is up.</p>")
        }
        Ok(Outcome::List(list)) => live_table(&mut body, &list),
        Ok(other) => unreachable!("list answered as {}", other.name()),
        Err(e) => {
            let _ = write!(body, "<p class=\"error\">{}</p>", esc(&e.message));
        }
    }
    body.push_str("</section>");

    body.push_str("<section id=\"recent\"><h2>Recent</h2>");
    match state.with_store(|s| s.clusters(50)).await {
        Ok(rows) if rows.is_empty() => body.push_str("<p class=\"muted\">None recorded yet.</p>"),
        Ok(rows) => {
            body.push_str(
                "<table class=\"clusters\"><thead><tr><th>cluster</th><th>started by</th><th>nodes</th>\
                 <th>created</th><th>boot</th><th>gone</th></tr></thead><tbody>",
            );
            for c in rows {
                let _ = write!(
                    body,
                    "<tr><td class=\"mono\">{id}</td><td>{source}</td><td>{addresses}</td>\
                     <td>{created}</td><td>{boot}</td><td>{gone}</td></tr>",
                    id = esc(&c.id),
                    source = html::started_by(&c),
                    addresses = esc(&c.addresses.join(", ")),
                    created = html::date_time(c.created_at_ms),
                    boot = duration(c.boot_ms),
                    gone = match (c.destroyed_at_ms, &c.destroyed_reason) {
                        (Some(at), Some(why)) => format!(
                            "{} <span class=\"muted\">({})</span>",
                            html::date_time(at),
                            esc(why)
                        ),
                        (Some(at), None) => html::date_time(at),
                        (None, _) => "—".into(),
                    },
                );
            }
            body.push_str("</tbody></table>");
        }
        Err(e) => {
            let _ = write!(body, "<p class=\"error\">{}</p>", esc(&e.to_string()));
        }
    }
    body.push_str("</section>");
    (status, html::page("Clusters", Section::Clusters, &body)).into_response()
}

fn live_table(body: &mut String, list: &ClusterList) {
    body.push_str(
        "<table class=\"clusters\" id=\"clusters\"><thead><tr><th>cluster</th><th>nodes</th>\
         <th>time left</th><th>created</th><th></th></tr></thead><tbody>",
    );
    for c in &list.clusters {
        let id = esc(&c.cluster);
        let _ = write!(
            body,
            "<tr id=\"cluster-{id}\" class=\"cluster\"><td><span class=\"mono\">{id}</span>\
             <div class=\"muted\">{source} · {status}</div></td><td><ul class=\"nodes\">",
            source = esc(&c.source),
            status = esc(&c.status),
        );
        for n in &c.nodes {
            let ips: Vec<&str> = n.addresses.iter().map(|a| a.ip.as_str()).collect();
            let ips = if ips.is_empty() {
                n.ip.clone().unwrap_or_else(|| "no address".into())
            } else {
                ips.join(", ")
            };
            let _ = write!(
                body,
                "<li><strong>{}</strong> <span class=\"mono ip\">{}</span></li>",
                esc(&n.name),
                esc(&ips)
            );
        }
        let options: String = TTLS
            .iter()
            .map(|t| {
                format!(
                    "<option{}>{t}</option>",
                    if *t == "1h" { " selected" } else { "" }
                )
            })
            .collect();
        let _ = write!(
            body,
            "</ul></td><td class=\"ttl\" data-expires-at=\"{expires}\">{ttl}</td><td>{created}</td>\
             <td class=\"actions\">\
             <form method=\"post\" action=\"/clusters/{id}/extend\" class=\"inline\">\
             <select name=\"ttl\" aria-label=\"new time to live\">{options}</select> \
             <button type=\"submit\" class=\"extend\">Extend</button></form> \
             <form method=\"post\" action=\"/clusters/{id}/destroy\" class=\"inline\" \
             data-confirm=\"Destroy cluster {id} and everything on it?\">\
             <button type=\"submit\" class=\"destroy danger\">Destroy</button></form></td></tr>",
            expires = c.expires_at,
            ttl = html::ttl(c.ttl_left_s),
            created = html::date_time(c.created_at as i64 * 1000),
        );
    }
    body.push_str("</tbody></table>");
}

fn status_of(e: &ApiError) -> StatusCode {
    match e.code {
        rehearse_api::ErrorCode::InvalidInput | rehearse_api::ErrorCode::InvalidSpec => {
            StatusCode::BAD_REQUEST
        }
        c if c.is_not_found() => StatusCode::NOT_FOUND,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn back(done: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(
            header::LOCATION,
            format!("/clusters?done={}", url_component(done)),
        )],
    )
        .into_response()
}

/// `POST /clusters/{id}/destroy`.
pub async fn destroy(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let command = Command::Destroy(ClusterRequest {
        cluster: id.clone(),
    });
    match execute(&state.api, command).await {
        // The command set records the cluster's end.
        Ok(_) => back(&format!("Cluster {id} destroyed.")),
        Err(e) => {
            let message = format!("Destroying cluster {id}: {}", e.message);
            render(&state, None, Some((status_of(&e), message))).await
        }
    }
}

#[derive(Deserialize)]
pub struct ExtendForm {
    ttl: String,
}

/// `POST /clusters/{id}/extend` with `ttl` (e.g. `1h`).
pub async fn extend(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Form(form): Form<ExtendForm>,
) -> Response {
    let command = Command::Extend(ExtendRequest {
        cluster: id.clone(),
        ttl: form.ttl.clone(),
    });
    match execute(&state.api, command).await {
        Ok(_) => back(&format!("Cluster {id} now lives {} from now.", form.ttl)),
        Err(e) => {
            let message = format!("Extending cluster {id}: {}", e.message);
            render(&state, None, Some((status_of(&e), message))).await
        }
    }
}
