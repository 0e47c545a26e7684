//! Who is calling the JSON API: a bearer token, checked against the token
//! hashes in the config. Only a bearer token: the dashboard's session
//! cookie is not accepted here, since a browser attaches cookies to any
//! request to this host, including a `text/plain` POST from a page on
//! another port that no preflight stops. The dashboard's own routes take the
//! cookie, with their CSRF and cross-site checks (see [`crate::dashboard`]).

use crate::{AppState, Problem, Reviewer};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

pub use crate::session::SESSION_COOKIE;

/// An authenticated reviewer. As an extractor it answers 401 (problem+json)
/// when the request has no `Authorization: Bearer` header with a token a
/// reviewer has; a session cookie does not count.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Reviewer);

impl Authenticated {
    /// The bearer token a request carries (`Authorization: Bearer <token>`).
    pub fn token_of(parts: &Parts) -> Option<String> {
        let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
        value
            .strip_prefix("Bearer ")
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// The reviewer of the request's bearer token: `None` without a token,
    /// a 401 for a token no reviewer has.
    pub fn by_bearer(parts: &Parts, state: &AppState) -> Option<Result<Self, Problem>> {
        let token = Self::token_of(parts)?;
        Some(
            state
                .config
                .reviewer_by_token(&token)
                .cloned()
                .map(Authenticated)
                .ok_or_else(|| Problem::unauthorized("unknown token")),
        )
    }
}

/// The value of cookie `name`, if the request has it.
pub fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        if let Some(reviewer) = Self::by_bearer(parts, state) {
            return reviewer;
        }
        let detail = if cookie(parts, SESSION_COOKIE).is_some() {
            "no credentials: the JSON API takes `Authorization: Bearer <token>` only, not the dashboard's session cookie"
        } else {
            "no credentials: send `Authorization: Bearer <token>`"
        };
        Err(Problem::unauthorized(detail))
    }
}
