//! `POST /codec/decode`: Temporal's remote codec protocol, so the `temporal`
//! CLI (`--codec-endpoint http://HOST/codec --codec-auth 'Bearer TOKEN'`)
//! and other codec clients show payloads the payload store holds instead of
//! their references.
//!
//! The body is `{"payloads": [Payload, …]}` in the proto3 JSON mapping
//! (`metadata` values and `data` in base64); the answer has the same shape,
//! each reference replaced by the payload it names (read from the store and
//! checked against its hash), every other payload as it came. It takes a
//! reviewer's bearer token, like the rest of the JSON API: stored payloads
//! are run data.
//!
//! The Temporal Web UI calls it from the browser ("Codec Server browser
//! endpoint"): pages from the origins in `[codec] web_ui_origins` may (CORS,
//! with credentials), and a reviewer signed in to the dashboard is
//! authenticated by the session cookie the browser sends along ("Include
//! cross-origin credentials"). Pages from any other origin get no CORS
//! headers, so the browser shows them nothing, and the cookie counts only
//! for the listed origins. Decoding reads and changes nothing.

use crate::auth::Authenticated;
use crate::{AppState, Problem};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::protos::temporal::api::common::v1::payload::ExternalPayloadDetails;

/// The most payloads one request may ask to decode.
pub const MAX_PAYLOADS: usize = 256;

/// The most bytes a request body may have (references are small).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The routes of the codec endpoint.
pub fn routes() -> Router<AppState> {
    Router::new().route("/codec/decode", post(decode).options(preflight))
}

/// The request's `Origin` when it is one of `[codec] web_ui_origins`.
fn allowed_origin(headers: &HeaderMap, state: &AppState) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    state
        .config
        .codec
        .web_ui_origins
        .iter()
        .any(|allowed| origin.as_bytes() == allowed.as_str().as_bytes())
        .then(|| origin.clone())
}

/// `response` with the CORS headers for `origin` (an allowed one).
fn with_cors(mut response: Response, origin: Option<HeaderValue>) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// The browser's preflight: allowed origins may POST JSON with the headers
/// the Web UI sends; others are refused without CORS headers.
async fn preflight(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(origin) = allowed_origin(&headers, &state) else {
        return with_cors(StatusCode::FORBIDDEN.into_response(), None);
    };
    let mut response = with_cors(StatusCode::NO_CONTENT.into_response(), Some(origin));
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("content-type, authorization, x-namespace"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Who is asking: a bearer token's reviewer, or, from an allowed Web UI
/// origin, the reviewer signed in to the dashboard.
fn authenticate(
    parts: &axum::http::request::Parts,
    state: &AppState,
    from_web_ui: bool,
) -> Result<(), Problem> {
    if let Some(reviewer) = Authenticated::by_bearer(parts, state) {
        return reviewer.map(|_| ());
    }
    if from_web_ui && crate::dashboard::session_reviewer(parts, state).is_some() {
        return Ok(());
    }
    Err(Problem::unauthorized(
        "no credentials: send `Authorization: Bearer <token>`, or sign in to the dashboard and \
         call from a Web UI listed in `[codec] web_ui_origins`",
    ))
}

/// Replaces each reference by the payload it names.
async fn decode(State(state): State<AppState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let origin = allowed_origin(&parts.headers, &state);
    let answer = async {
        authenticate(&parts, &state, origin.is_some())?;
        let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
            .await
            .map_err(|_| {
                Problem::bad_request(format!("the body is over {MAX_BODY_BYTES} bytes"))
            })?;
        decode_payloads(&state, body).await
    };
    with_cors(answer.await.into_response(), origin)
}

/// One payload in the proto3 JSON mapping.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonPayload {
    /// Metadata values, base64.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The data, base64.
    #[serde(default)]
    pub data: String,
    /// Sizes of externally stored payloads (`sizeBytes`, an int64 as a
    /// string or a number).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_payloads: Vec<serde_json::Value>,
}

/// The request and answer body.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct JsonPayloads {
    /// The payloads.
    #[serde(default)]
    pub payloads: Vec<JsonPayload>,
}

fn from_json(payload: JsonPayload) -> Result<Payload, String> {
    let bytes = |text: &str, what: &str| {
        STANDARD
            .decode(text)
            .map_err(|_| format!("{what} is not base64"))
    };
    let mut metadata = std::collections::HashMap::new();
    for (key, value) in &payload.metadata {
        metadata.insert(key.clone(), bytes(value, "a metadata value")?);
    }
    let external_payloads = payload
        .external_payloads
        .iter()
        .map(|d| {
            let size = d.get("sizeBytes").or_else(|| d.get("size_bytes"));
            let size_bytes = match size {
                Some(serde_json::Value::String(s)) => s.parse().unwrap_or(0),
                Some(serde_json::Value::Number(n)) => n.as_i64().unwrap_or(0),
                _ => 0,
            };
            ExternalPayloadDetails { size_bytes }
        })
        .collect();
    Ok(Payload {
        metadata,
        data: bytes(&payload.data, "data")?,
        external_payloads,
    })
}

fn to_json(payload: Payload) -> JsonPayload {
    JsonPayload {
        metadata: payload
            .metadata
            .into_iter()
            .map(|(k, v)| (k, STANDARD.encode(v)))
            .collect(),
        data: STANDARD.encode(payload.data),
        external_payloads: payload
            .external_payloads
            .iter()
            .map(|d| serde_json::json!({"sizeBytes": d.size_bytes.to_string()}))
            .collect(),
    }
}

/// The answer to a decode request's body.
async fn decode_payloads(state: &AppState, body: Bytes) -> Result<Json<JsonPayloads>, Problem> {
    let request: JsonPayloads = serde_json::from_slice(&body)
        .map_err(|e| Problem::bad_request(format!("expected {{\"payloads\": [...]}}: {e}")))?;
    if request.payloads.len() > MAX_PAYLOADS {
        return Err(Problem::bad_request(format!(
            "{} payloads, more than {MAX_PAYLOADS}",
            request.payloads.len()
        )));
    }
    let mut answer = JsonPayloads::default();
    for (index, payload) in request.payloads.into_iter().enumerate() {
        let payload = from_json(payload)
            .map_err(|problem| Problem::bad_request(format!("payload {index}: {problem}")))?;
        let decoded = match &state.payload_store {
            Some(store) => store.resolve(payload).await.map_err(|e| {
                Problem::new(
                    axum::http::StatusCode::BAD_GATEWAY,
                    format!("payload {index}: {e}"),
                )
            })?,
            None => payload,
        };
        answer.payloads.push(to_json(decoded));
    }
    Ok(Json(answer))
}
