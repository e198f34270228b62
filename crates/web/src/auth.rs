//! One bearer token guards everything: API clients send
//! `Authorization: Bearer <token>`; browsers open `/login?token=<token>` once
//! and carry it as an HTTP-only cookie from then on. The cookie is
//! `SameSite=Lax`: a login link followed from elsewhere works, while another
//! site's forms (the destroy and extend POSTs) never carry it.

use std::sync::Arc;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

pub const COOKIE: &str = "rehearse_token";

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn presented(headers: &HeaderMap) -> Option<String> {
    if let Some(bearer) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_owned());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

pub async fn require_token(State(token): State<Arc<String>>, req: Request, next: Next) -> Response {
    let ok =
        presented(req.headers()).is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
    if ok {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        "missing or wrong bearer token: send Authorization: Bearer <token> (rehearse serve --token, or REHEARSE_TOKEN), or open the /login?token=... address `rehearse serve` printed\n",
    )
        .into_response()
}

#[derive(serde::Deserialize)]
pub struct Login {
    token: String,
}

/// `/login?token=...`: checks the token, sets the cookie, goes to the dashboard.
pub async fn login(State(expected): State<Arc<String>>, Query(login): Query<Login>) -> Response {
    if !constant_time_eq(login.token.as_bytes(), expected.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, "wrong token\n").into_response();
    }
    (
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_owned()),
            (
                header::SET_COOKIE,
                format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Lax", login.token),
            ),
        ],
    )
        .into_response()
}
