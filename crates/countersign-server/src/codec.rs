//! `POST /codec/decode`: Temporal's remote codec protocol, so the `temporal`
//! CLI (`--codec-endpoint http://HOST/codec --codec-auth 'Bearer TOKEN'`)
//! and other codec clients show payloads the payload store holds instead of
//! their references.
//!
//! The body is `{"payloads": [Payload, …]}` in the proto3 JSON mapping
//! (`metadata` values and `data` in base64); the answer has the same shape,
//! each reference replaced by the payload it names (read from the store and
//! checked against its hash), every other payload as it came. Like the rest
//! of the JSON API it takes a reviewer's bearer token only: stored payloads
//! are run data.

use crate::auth::Authenticated;
use crate::{AppState, Problem};
use axum::body::Bytes;
use axum::extract::State;
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
    Router::new().route("/codec/decode", post(decode))
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

/// Replaces each reference by the payload it names.
async fn decode(
    State(state): State<AppState>,
    _reviewer: Authenticated,
    body: Bytes,
) -> Result<Json<JsonPayloads>, Problem> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Problem::bad_request(format!(
            "the body is over {MAX_BODY_BYTES} bytes"
        )));
    }
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
