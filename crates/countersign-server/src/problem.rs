//! Errors as `application/problem+json` (RFC 9457), one mapping for the
//! whole API: 400 bad input, 401 no credentials, 403 not allowed, 404
//! unknown, 409 already decided or stale arguments, 422 edited arguments
//! that fail the tool's schema, 502 / 503 Temporal. Errors of the approvals
//! crate get their status from [`DecisionError::status`].

use crate::decisions::DecisionError;
use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use countersign_approvals::ApprovalsError;
use serde::Serialize;

/// A problem detail.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// A URI naming the problem type (`about:blank` for plain HTTP statuses).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong with this request.
    pub detail: String,
    /// For a refused decision: the `countersign.v1.RefusalCode` name, for
    /// programs (the detail is for people).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

impl Problem {
    /// A problem with the given status and detail; the title is the status's reason.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("error").into(),
            status: status.as_u16(),
            detail: detail.into(),
            code: None,
        }
    }

    /// 400.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// 401.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    /// 403.
    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// The HTTP status.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

/// The JSON API's mapping of a refused decision: its status and its message.
impl From<DecisionError> for Problem {
    fn from(e: DecisionError) -> Self {
        Problem {
            code: e.code().map(|c| c.as_str_name().to_string()),
            ..Problem::new(e.status(), e.to_string())
        }
    }
}

/// Reads and other calls of the approvals crate fail with the statuses
/// decisions have ([`DecisionError`]'s mapping, by variant).
impl From<ApprovalsError> for Problem {
    fn from(e: ApprovalsError) -> Self {
        DecisionError::from(e).into()
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = self.status_code();
        let mut response = (status, Json(self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
