//! The HTTP API: `app()` driven with `oneshot` for the edges, and a real
//! listening server for the end-to-end path, against the real dev server.

use crate::harness::*;
use anyhow::Result;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use countersign_proto::{ApprovalState, RunStatus};
use countersign_server::config::token_sha256;
use countersign_server::{AppState, ServerConfig};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use tower::ServiceExt;

const BOB: &str = "token-bob";
const CAROL: &str = "token-carol";

const HTTP_AGENT: &str = r#"
name = "t-http"
approval_expiry = "1h"
approvers = ["finance"]

[groups]
finance = ["bob@example.com"]

[model]
provider = "scripted"

[[model.steps]]
say = "Paying."
calls = [{ tool = "pay", arguments = { to = "acme", amount = 120, currency = "EUR" } }]
on_error = "stopped"

[[model.steps]]
say = "Paid: {last_result}"

[[model.steps]]
id = "stopped"
say = "Stopped: {last_error}"

[[tools]]
name = "pay"
builtin = { kind = "payment_request", url = "{sink}/payments" }
"#;

fn state(env: &TestEnv) -> Result<AppState> {
    let config = ServerConfig::from_toml(
        &format!(
            "[[reviewers]]\nid = \"bob@example.com\"\ntoken_sha256 = \"{}\"\n\n[[reviewers]]\nid = \"carol@example.com\"\ntoken_sha256 = \"{}\"\n",
            token_sha256(BOB),
            token_sha256(CAROL)
        ),
        Path::new("server.toml"),
    )?;
    Ok(AppState {
        approvals: env.approvals.clone(),
        config: Arc::new(config),
        task_queue: env.task_queue.clone(),
    })
}

/// Sends one request through `app()`; answers status, content type and JSON body.
async fn call(
    state: &AppState,
    method: &str,
    uri: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> Result<(StatusCode, String, Value)> {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(body.map_or(Body::empty(), |b| Body::from(b.to_vec())))?;
    let response = countersign_server::app(state.clone())
        .oneshot(request)
        .await?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, content_type, json))
}

#[tokio::test]
async fn the_api_authenticates_validates_and_decides_as_the_caller() -> Result<()> {
    let env = TestEnv::new("http-api").await?;
    let state = state(&env)?;
    env.with_worker(async {
        let id = env.start(env.agent(HTTP_AGENT)?, "pay acme").await?;
        let gate = env.pending(&id, 1).await?.remove(0);
        let approve_uri = format!("/approvals/{}/approve", gate.approval_id);
        let deny_uri = format!("/approvals/{}/deny", gate.approval_id);

        // Who is calling.
        let (status, content_type, problem) =
            call(&state, "GET", "/approvals", None, None).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(problem["status"], 401);
        let (status, ..) = call(&state, "GET", "/approvals", Some("nope"), None).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Unknown and malformed ids.
        let (status, ..) = call(&state, "GET", "/approvals/nope~12345678", Some(BOB), None).await?;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, ..) = call(&state, "GET", "/approvals/no-tilde", Some(BOB), None).await?;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Bad input.
        for body in [
            &br#"{"reason": ""}"#[..],
            br#"{"reason": 5}"#,
            br#"{"reason": "x""#,
            b"\xff\xfe",
            br#"{"reason": "ok", "reviewer": "mallory@example.com"}"#,
        ] {
            let (status, content_type, problem) =
                call(&state, "POST", &deny_uri, Some(BOB), Some(body)).await?;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
            assert_eq!(content_type, "application/problem+json");
            assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
        }

        // Outside the approver groups: the run refuses, 403.
        let (status, _, problem) =
            call(&state, "POST", &approve_uri, Some(CAROL), Some(b"{}")).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{problem}");

        // Stale hash, then edits that do not fit the tool.
        let (status, ..) = call(
            &state,
            "POST",
            &approve_uri,
            Some(BOB),
            Some(br#"{"argumentsSha256": "0000"}"#),
        )
        .await?;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _, problem) = call(
            &state,
            "POST",
            &approve_uri,
            Some(BOB),
            Some(br#"{"editedArguments": {"to": "acme", "amount": -1, "currency": "EUR"}}"#),
        )
        .await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{problem}");

        // Filters.
        let listed = wait_for("the approval in GET /approvals", || async {
            let (_, _, body) = call(&state, "GET", "/approvals?agent=t-http&tool=pay", Some(BOB), None)
                .await
                .ok()?;
            body["approvals"]
                .as_array()?
                .iter()
                .find(|a| a["approvalId"] == gate.approval_id.as_str())
                .cloned()
        })
        .await?;
        assert_eq!(listed["tool"]["name"], "pay");
        let (_, _, other) = call(&state, "GET", "/approvals?tool=other", Some(BOB), None).await?;
        assert!(
            !other["approvals"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["approvalId"] == gate.approval_id.as_str())
        );

        // Approve with edits, through a real listening server; then retry.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let served = countersign_server::app(state.clone());
        tokio::spawn(async move { axum::serve(listener, served).await });
        let http = reqwest::Client::new();
        let body = json!({"reason": "half now", "editedArguments": {"to": "acme", "amount": 60, "currency": "EUR"}, "argumentsSha256": gate.arguments_sha256});
        let first: Value = http
            .post(format!("{base}{approve_uri}"))
            .bearer_auth(BOB)
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(first["state"], "APPROVAL_STATE_APPROVED_WITH_EDITS");
        let again: Value = http
            .post(format!("{base}{approve_uri}"))
            .bearer_auth(BOB)
            .json(&body)
            .send()
            .await?
            .json()
            .await?;
        assert_eq!(again, first, "a retried request returns the first outcome");
        let state_after = env.result(&id).await?;
        assert_eq!(state_after.status(), RunStatus::Completed);
        let payments = env.sink.received("/payments");
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].body["amount"], 60);
        assert_eq!(payments[0].idempotency_key, gate.approval_id);
        let decision = state_after.decisions.iter().find(|d| d.accepted).unwrap();
        assert_eq!(decision.reviewer, "bob@example.com");
        assert_eq!(decision.resulting_state(), ApprovalState::ApprovedWithEdits);

        // Decided: a later decision conflicts.
        let (status, ..) = call(&state, "POST", &deny_uri, Some(BOB), Some(br#"{"reason": "late"}"#)).await?;
        assert_eq!(status, StatusCode::CONFLICT);

        // Runs.
        let (status, _, run) = call(&state, "GET", &format!("/runs/{id}"), Some(BOB), None).await?;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(run["status"], "RUN_STATUS_COMPLETED");
        let (status, ..) = call(&state, "GET", "/runs/no-such-run", Some(BOB), None).await?;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let agent = serde_json::to_value(env.agent(&one_call_agent(
            "t-http-start",
            "Reading.",
            r#"{ tool = "nothing_here" }"#,
        ))?)?;
        let start = serde_json::to_vec(&json!({"agent": agent, "prompt": "try", "id": unique("http-run")}))?;
        let (status, _, started) = call(&state, "POST", "/runs", Some(CAROL), Some(&start)).await?;
        assert_eq!(status, StatusCode::CREATED, "{started}");
        let run_id = started["workflowId"].as_str().unwrap().to_string();
        let finished = env.approvals.wait_for_run(&run_id).await?;
        assert_eq!(finished.requester, "carol@example.com");

        // The OpenAPI document and the metrics.
        let (status, _, doc) = call(&state, "GET", "/openapi.json", None, None).await?;
        assert_eq!(status, StatusCode::OK);
        for path in ["/approvals", "/approvals/{id}", "/approvals/{id}/approve", "/approvals/{id}/deny", "/runs", "/runs/{id}"] {
            assert!(doc["paths"][path].is_object(), "{path} missing from openapi.json");
        }
        let metrics = reqwest::get(format!("{base}/metrics")).await?.text().await?;
        assert!(
            metrics.contains("countersign_decisions_total{outcome=\"approved_with_edits\"}"),
            "{metrics}"
        );
        Ok(())
    })
    .await
}
