//! The web dashboard: runs (with filters and live updates), a run's timeline,
//! clusters (with destroy and extend). Server-rendered HTML; a small script
//! (`assets/dashboard.js`) applies live updates. Nothing is loaded from
//! anywhere but this server.

mod clusters;
mod diff;
mod fleet;
mod html;
mod run;
mod runs;

use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::AppState;

const CSS: &str = include_str!("../../assets/dashboard.css");
const JS: &str = include_str!("../../assets/dashboard.js");

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(runs::list))
        .route("/runs", get(runs::list))
        // Evaluations are runs of their own kind: the list, filtered.
        .route(
            "/evals",
            get(|| async { axum::response::Redirect::to("/runs?kind=eval") }),
        )
        .route("/runs/events", get(runs::events))
        .route("/runs/{id}", get(run::page))
        .route("/runs/{id}/body", get(run::fragment))
        .route("/runs/{id}/events", get(run::events))
        .route("/clusters", get(clusters::list))
        .route("/clusters/{id}/destroy", post(clusters::destroy))
        .route("/clusters/{id}/extend", post(clusters::extend))
        .route("/fleet", get(fleet::page))
        .route(
            "/assets/dashboard.css",
            get(|| async {
                ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS).into_response()
            }),
        )
        .route(
            "/assets/dashboard.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    JS,
                )
                    .into_response()
            }),
        )
}

/// Resolves once the server is asked to stop (Ctrl-C, SIGTERM). Live streams
/// end then: an open dashboard would otherwise hold the graceful shutdown,
/// which waits for every response to finish, open for ever.
pub(crate) async fn stopping() {
    static STOP: OnceLock<watch::Receiver<bool>> = OnceLock::new();
    let mut stop = STOP
        .get_or_init(|| {
            let (tx, rx) = watch::channel(false);
            tokio::spawn(async move {
                let mut term = signal(SignalKind::terminate()).ok();
                let term = async {
                    match term.as_mut() {
                        Some(t) => {
                            t.recv().await;
                        }
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term => {}
                }
                let _ = tx.send(true);
            });
            rx
        })
        .clone();
    // A runtime gone without a signal: nothing will ask these streams to stop.
    if stop.wait_for(|stopped| *stopped).await.is_err() {
        std::future::pending::<()>().await;
    }
}

pub(crate) use rehearse_store::now_ms;
