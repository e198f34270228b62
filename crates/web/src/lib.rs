//! rehearse's HTTP server (`rehearse serve`): the dashboard, `/metrics` in
//! Prometheus text format, and the MCP tools at `/mcp`, all behind one bearer
//! token. Browsers get the token once through the URL `serve` prints
//! (`/login?token=...`), which turns it into an HTTP-only cookie.

mod auth;
mod dashboard;
mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use rehearse_api::Api;
use rehearse_store::Store;

pub use metrics::render as render_metrics;

#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Store(#[from] rehearse_store::StoreError),
}

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub api: Arc<Api>,
    pub store: Arc<Store>,
    /// On a fleet host: the fleet's shared database, for the fleet page.
    pub fleet: Option<Arc<rehearse_fleet::Fleet>>,
}

/// The fleet's answer to "which host holds this cluster": the live host the
/// run store recorded it on, unless that is this host.
pub struct FleetHolders {
    pub fleet: Arc<rehearse_fleet::Fleet>,
    /// This host's name in the fleet.
    pub me: String,
}

impl rehearse_mcp::Holders for FleetHolders {
    fn holder_of(&self, cluster: &str) -> Option<rehearse_mcp::Holder> {
        match self.fleet.holder_of(cluster) {
            Ok(Some(host)) if host.name != self.me => Some(rehearse_mcp::Holder {
                url: host.url?,
                name: host.name,
            }),
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(%cluster, error = %e, "looking up the fleet host holding a cluster");
                None
            }
        }
    }
}

/// Work that boots clusters, asked of this host over MCP, placed through
/// the fleet's queue on the host with room (which may be this one).
pub struct FleetPlacement {
    pub fleet: Arc<rehearse_fleet::Fleet>,
    /// Whom the fleet queues the work for (priorities are per submitter).
    pub submitter: String,
}

impl rehearse_mcp::Placement for FleetPlacement {
    fn place(
        &self,
        command: &str,
        args: serde_json::Value,
    ) -> Option<Result<serde_json::Value, rehearse_api::ApiError>> {
        if !rehearse_fleet::place::PLACED.contains(&command) {
            return None;
        }
        Some(if command == "provision" {
            self.fleet
                .provision(args, &self.submitter)
                .map(|(info, job)| {
                    tracing::info!(cluster = %info.cluster, host = ?job.host, job = %job.id, "provisioned on the fleet");
                    serde_json::to_value(info).unwrap_or_default()
                })
        } else {
            self.fleet.place(command, args, &self.submitter).map(|job| {
                tracing::info!(job = %job.id, kind = job.kind.as_str(), "placed on the fleet");
                serde_json::json!({ "job_id": job.id })
            })
        })
    }

    fn job(
        &self,
        job_id: &str,
        kill: bool,
    ) -> Option<Result<serde_json::Value, rehearse_api::ApiError>> {
        use rehearse_api::{ApiError, ErrorCode};
        let unavailable = |e: rehearse_fleet::FleetError| {
            ApiError::new(ErrorCode::StoreUnavailable, e.to_string(), true)
        };
        let status = match self.fleet.job_status(job_id) {
            Ok(Some(status)) => status,
            Ok(None) => return None,
            Err(e) => return Some(Err(unavailable(e))),
        };
        if kill {
            if let Err(e) = self.fleet.cancel(job_id) {
                return Some(Err(match e {
                    rehearse_fleet::FleetError::Conflict { .. } => {
                        ApiError::new(ErrorCode::NotKillable, e.to_string(), false)
                    }
                    other => unavailable(other),
                }));
            }
            // A queued job ends at once; a running one when its host sees the cancel.
            let _ = status;
            return Some(
                self.fleet
                    .wait_final(job_id, std::time::Duration::from_secs(30))
                    .map(|job| {
                        serde_json::to_value(rehearse_fleet::place::status_of(&job))
                            .unwrap_or_default()
                    })
                    .map_err(unavailable),
            );
        }
        Some(Ok(serde_json::to_value(status).unwrap_or_default()))
    }
}

/// What a fleet host serves beyond a lone one.
#[derive(Clone, Default)]
pub struct FleetServing {
    /// The fleet's shared database (the dashboard's fleet page).
    pub fleet: Option<Arc<rehearse_fleet::Fleet>>,
    /// Where MCP calls on other hosts' clusters go.
    pub forwarding: Option<rehearse_mcp::Forwarding>,
}

impl AppState {
    /// Runs a store query on a blocking thread (both databases' clients block).
    pub async fn with_store<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, rehearse_store::StoreError> + Send + 'static,
    ) -> Result<T, rehearse_store::StoreError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .unwrap_or_else(|e| {
                Err(rehearse_store::StoreError::Decode(format!(
                    "a store query panicked: {e}"
                )))
            })
    }
}

/// The whole server's routes: everything but `/login` and `/healthz` needs `token`.
pub fn router(
    state: AppState,
    token: String,
    loopback: bool,
    forwarding: Option<rehearse_mcp::Forwarding>,
) -> axum::Router {
    let token = Arc::new(token);
    let mcp = rehearse_mcp::http_router_with(Arc::clone(&state.api), loopback, forwarding);
    let protected = axum::Router::new()
        .merge(dashboard::routes())
        .route("/metrics", axum::routing::get(metrics::handler))
        .with_state(state)
        .merge(mcp)
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&token),
            auth::require_token,
        ));
    let open = axum::Router::new()
        .route("/login", axum::routing::get(auth::login))
        .route("/healthz", axum::routing::get(|| async { "ok\n" }))
        .with_state(token);
    protected.merge(open)
}

/// Serves on `listen` until Ctrl-C or SIGTERM.
pub async fn serve(api: Arc<Api>, listen: SocketAddr, token: String) -> Result<(), WebError> {
    serve_in_fleet(api, listen, token, FleetServing::default()).await
}

/// [`serve`] on a host of a fleet: the fleet page, and MCP calls on clusters
/// other hosts hold passed on to them.
pub async fn serve_in_fleet(
    api: Arc<Api>,
    listen: SocketAddr,
    token: String,
    fleet: FleetServing,
) -> Result<(), WebError> {
    // The command set's own run store: one handle for every request.
    let opening = Arc::clone(&api);
    let store = tokio::task::spawn_blocking(move || opening.store())
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))?
        .map_err(|e| std::io::Error::other(e.message))?;
    tracing::info!(store = %store.location(), "run store");
    let state = AppState {
        api,
        store,
        fleet: fleet.fleet,
    };
    tokio::spawn(retention(state.clone()));
    let router = router(state, token, listen.ip().is_loopback(), fleet.forwarding);
    let listener = tokio::net::TcpListener::bind(listen).await?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Applies the retention (`REHEARSE_RETENTION`, default 30 days) at start and
/// every hour: finished runs older than it go, except those still referenced.
async fn retention(state: AppState) {
    let older_than = match rehearse_scenario::history::retention_from_env() {
        Ok(Some(d)) => d,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!("{e}; no runs will be removed");
            return;
        }
    };
    loop {
        let s = state.clone();
        let pruned = tokio::task::spawn_blocking(move || {
            rehearse_scenario::history::prune(s.api.engine(), &s.store, older_than)
        })
        .await;
        match pruned {
            Ok(Ok(d)) if !d.ids.is_empty() => {
                tracing::info!(removed = d.ids.len(), "retention: removed old runs")
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "retention"),
            _ => {}
        }
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
    }
}

/// [`serve`] on a runtime of its own, for a synchronous caller.
pub fn run(api: Arc<Api>, listen: SocketAddr, token: String) -> Result<(), WebError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve(api, listen, token))
}

/// [`serve_in_fleet`] on a runtime of its own, for a synchronous caller.
pub fn run_in_fleet(
    api: Arc<Api>,
    listen: SocketAddr,
    token: String,
    fleet: FleetServing,
) -> Result<(), WebError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(serve_in_fleet(api, listen, token, fleet))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
}
