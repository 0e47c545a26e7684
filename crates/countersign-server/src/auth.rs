//! Who is calling: a bearer token (API) or the dashboard's session cookie,
//! both checked against the token hashes in the config.

use crate::{AppState, Problem, Reviewer};
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

/// The dashboard's session cookie: the reviewer's token, HttpOnly,
/// SameSite=Strict.
pub const SESSION_COOKIE: &str = "countersign_session";

/// An authenticated reviewer. As an extractor it answers 401 (problem+json)
/// when the request has no valid bearer token or session cookie.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Reviewer);

impl Authenticated {
    /// The token a request carries: `Authorization: Bearer`, else the session cookie.
    pub fn token_of(parts: &Parts) -> Option<String> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let value = value.to_str().ok()?;
            return value.strip_prefix("Bearer ").map(|t| t.trim().to_string());
        }
        cookie(parts, SESSION_COOKIE)
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
        let Some(token) = Self::token_of(parts) else {
            return Err(Problem::unauthorized(
                "no credentials: send `Authorization: Bearer <token>`",
            ));
        };
        state
            .config
            .reviewer_by_token(&token)
            .cloned()
            .map(Authenticated)
            .ok_or_else(|| Problem::unauthorized("unknown token"))
    }
}
