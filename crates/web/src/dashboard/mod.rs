//! The web dashboard: runs (with filters and live updates), a run's timeline,
//! clusters (with destroy and extend).

use axum::Router;

use crate::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
