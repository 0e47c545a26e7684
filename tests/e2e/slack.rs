//! Slack and webhook notifications through real runs: the worker posts to a
//! local server speaking Slack's Web API wire format, and signed Slack
//! interactions sent to `countersign_server::app` decide the approval.

use crate::harness::*;
use anyhow::{Context, Result};
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use countersign_proto::{ApprovalState, RunStatus};
use countersign_server::config::token_sha256;
use countersign_server::{AppState, ServerConfig};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

/// A request the local Slack server received.
#[derive(Debug, Clone)]
struct SlackCall {
    /// `chat.postMessage`, `chat.update`, `views.open`, or `response_url`.
    method: String,
    auth: String,
    body: Value,
}

/// A local server speaking Slack's Web API wire format; it records every
/// call, and the messages posted to interaction `response_url`s.
#[derive(Clone)]
struct SlackApi {
    /// The Web API base, `http://127.0.0.1:<port>/api`.
    base: String,
    /// Where interactions' `response_url`s point.
    response_url: String,
    calls: Arc<Mutex<Vec<SlackCall>>>,
}

impl SlackApi {
    async fn start() -> Result<Self> {
        let calls: Arc<Mutex<Vec<SlackCall>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let root = format!("http://{}", listener.local_addr()?);
        static TS: AtomicU32 = AtomicU32::new(1);
        async fn method(
            State(calls): State<Arc<Mutex<Vec<SlackCall>>>>,
            UrlPath(method): UrlPath<String>,
            headers: HeaderMap,
            body: String,
        ) -> Json<Value> {
            let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            calls.lock().unwrap().push(SlackCall {
                method: method.clone(),
                auth,
                body: body.clone(),
            });
            Json(match method.as_str() {
                "chat.postMessage" => json!({
                    "ok": true,
                    "channel": "C0APPROVALS",
                    "ts": format!("1700000000.{:06}", TS.fetch_add(1, Ordering::SeqCst)),
                }),
                "chat.update" => json!({"ok": true, "channel": body["channel"], "ts": body["ts"]}),
                "views.open" => json!({"ok": true, "view": {"id": "V0DENY"}}),
                _ => json!({"ok": false, "error": "unknown_method"}),
            })
        }
        async fn response_url(
            State(calls): State<Arc<Mutex<Vec<SlackCall>>>>,
            body: Json<Value>,
        ) -> StatusCode {
            calls.lock().unwrap().push(SlackCall {
                method: "response_url".into(),
                auth: String::new(),
                body: body.0,
            });
            StatusCode::OK
        }
        let app = Router::new()
            .route("/api/{method}", post(method))
            .route("/actions/response", post(response_url))
            .with_state(calls.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self {
            base: format!("{root}/api"),
            response_url: format!("{root}/actions/response"),
            calls,
        })
    }

    fn calls(&self, method: &str) -> Vec<SlackCall> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// Waits for the `n`th call of `method` and returns it.
    async fn nth(&self, method: &str, n: usize) -> Result<SlackCall> {
        wait_for(&format!("{method} call #{n}"), || async {
            self.calls(method).get(n - 1).cloned()
        })
        .await
    }
}

/// A fresh environment variable name, set to `value` for this test only.
fn unique_env(label: &str, value: &str) -> String {
    let name = unique(&format!("COUNTERSIGN_E2E_{label}"))
        .to_uppercase()
        .replace('-', "_");
    // SAFETY: the name is unique to this call, so no other thread reads or
    // writes this variable while it is set; std's environment lock orders
    // the write with concurrent std::env reads of other variables.
    unsafe { std::env::set_var(&name, value) };
    name
}

/// The secrets of one test: the bot token the worker and the server use,
/// and the signing secret Slack signs interactions with.
struct Secrets {
    token: String,
    token_env: String,
    signing_secret: String,
    signing_secret_env: String,
}

impl Secrets {
    fn new() -> Self {
        let token = format!("xoxb-{}", unique("token"));
        let signing_secret = format!("signing-{}", unique("secret"));
        Self {
            token_env: unique_env("SLACK_TOKEN", &token),
            signing_secret_env: unique_env("SLACK_SIGNING", &signing_secret),
            token,
            signing_secret,
        }
    }
}

/// Pays invoice 9 (money: always gated); approvals need a `finance` reviewer.
fn slack_agent(env: &TestEnv, slack: &SlackApi, secrets: &Secrets) -> Result<String> {
    Ok(r##"
name = "t-slack-pay"
approvers = ["finance"]

[model]
provider = "scripted"

[[model.steps]]
say = "Paying invoice 9 <for ACME & co>."
calls = [{ tool = "pay", arguments = { to = "acme", amount = 300, currency = "EUR" } }]
on_error = "report"

[[model.steps]]
say = "Paid: {last_result}"

[[model.steps]]
id = "report"
say = "Could not: {last_error}"

[groups]
finance = ["bob@example.com"]

[notify]
slack_channel = "#approvals"
slack_api_base_url = "{slack}"
slack_token_env = "{token_env}"
dashboard_url = "https://countersign.example.com"

[[tools]]
name = "pay"
builtin = { kind = "payment_request", url = "{sink}/payments" }
"##
    .replace("{slack}", &slack.base)
    .replace("{token_env}", &secrets.token_env)
    .replace("{sink}", &env.sink.url))
}

/// The server: bob (finance, Slack UBOB) and eve (marketing, Slack UEVE).
fn server(env: &TestEnv, slack: Option<(&SlackApi, &Secrets)>) -> Result<axum::Router> {
    let mut text = format!(
        r#"
[[reviewers]]
id = "bob@example.com"
token_sha256 = "{}"
groups = ["finance"]
slack_user_id = "UBOB"

[[reviewers]]
id = "eve@example.com"
token_sha256 = "{}"
groups = ["marketing"]
slack_user_id = "UEVE"
"#,
        token_sha256("bob-token"),
        token_sha256("eve-token"),
    );
    if let Some((slack, secrets)) = slack {
        text.push_str(&format!(
            "\n[slack]\nsigning_secret_env = \"{}\"\nbot_token_env = \"{}\"\napi_base_url = \"{}\"\n",
            secrets.signing_secret_env, secrets.token_env, slack.base
        ));
    }
    let config = ServerConfig::from_toml(&text, Path::new("server.toml"))?;
    Ok(countersign_server::app(AppState::new(
        env.approvals.clone(),
        config,
        env.task_queue.clone(),
    )?))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `v0=` + hex HMAC-SHA256(secret, `v0:<timestamp>:<body>`), as Slack signs.
fn slack_signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// `payload=<json>`, form-encoded as Slack sends it.
fn form_body(payload: &Value) -> String {
    let mut url = reqwest::Url::parse("http://form.invalid/").unwrap();
    url.query_pairs_mut()
        .append_pair("payload", &payload.to_string());
    url.query().unwrap_or_default().to_string()
}

/// An interaction request signed with `secret` at `timestamp`.
fn interaction(payload: &Value, secret: &str, timestamp: i64) -> Request<Body> {
    let body = form_body(payload);
    let timestamp = timestamp.to_string();
    Request::post("/slack/interactions")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &timestamp)
        .header(
            "x-slack-signature",
            slack_signature(secret, &timestamp, &body),
        )
        .body(Body::from(body))
        .unwrap()
}

/// A status, a content type and a body (JSON when it is JSON).
struct Answer {
    status: StatusCode,
    content_type: String,
    body: Value,
    raw: Bytes,
}

async fn send(app: &axum::Router, request: Request<Body>) -> Result<Answer> {
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let raw = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    Ok(Answer {
        status,
        content_type,
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
    })
}

/// A click on the button `action_id` of the posted message, as Slack sends it.
fn click(message: &Value, action_id: &str, user: &str, slack: &SlackApi) -> Value {
    let button = message["blocks"]
        .as_array()
        .and_then(|blocks| blocks.iter().find(|b| b["type"] == "actions"))
        .and_then(|actions| actions["elements"].as_array())
        .and_then(|buttons| buttons.iter().find(|b| b["action_id"] == action_id))
        .cloned()
        .unwrap_or_else(|| panic!("no {action_id} button in {message}"));
    json!({
        "type": "block_actions",
        "user": {"id": user, "username": user.to_lowercase(), "team_id": "T0TEAM"},
        "api_app_id": "A0COUNTERSIGN",
        "team": {"id": "T0TEAM", "domain": "example"},
        "container": {"type": "message", "channel_id": "C0APPROVALS", "message_ts": "1700000000.000001"},
        "trigger_id": format!("trigger-{user}"),
        "channel": {"id": "C0APPROVALS", "name": "approvals"},
        "response_url": slack.response_url,
        "actions": [{
            "type": "button",
            "block_id": "countersign_decision",
            "action_id": button["action_id"],
            "value": button["value"],
            "text": button["text"],
            "action_ts": "1700000001.000002"
        }]
    })
}

/// The deny modal submitted with `reason`.
fn submit_denial(view: &Value, user: &str, reason: &str) -> Value {
    json!({
        "type": "view_submission",
        "user": {"id": user},
        "team": {"id": "T0TEAM"},
        "view": {
            "id": "V0DENY",
            "type": "modal",
            "callback_id": view["callback_id"],
            "private_metadata": view["private_metadata"],
            "state": {"values": {
                "countersign_reason": {"reason": {"type": "plain_text_input", "value": reason}}
            }}
        }
    })
}

async fn still_pending(env: &TestEnv, id: &str) -> Result<()> {
    let pending = env.approvals.pending_of_run(id).await?;
    anyhow::ensure!(
        pending.len() == 1 && pending[0].state() == ApprovalState::Pending,
        "the approval should still be pending: {pending:?}"
    );
    Ok(())
}

#[tokio::test]
async fn slack_button_approves_and_the_message_is_updated() -> Result<()> {
    let env = TestEnv::new("slack-approve").await?;
    let slack = SlackApi::start().await?;
    let secrets = Secrets::new();
    let app = server(&env, Some((&slack, &secrets)))?;
    env.with_worker(async {
        let id = env
            .start(
                env.agent(&slack_agent(&env, &slack, &secrets)?)?,
                "pay invoice 9",
            )
            .await?;
        let approval = env.pending(&id, 1).await?.remove(0);

        let posted = slack.nth("chat.postMessage", 1).await?;
        assert_eq!(posted.auth, format!("Bearer {}", secrets.token));
        assert_eq!(posted.body["channel"], "#approvals");
        let blocks = posted.body["blocks"].to_string();
        assert!(blocks.contains("Approval needed: pay"), "{blocks}");
        assert!(
            blocks.contains("Paying invoice 9 &lt;for ACME &amp; co&gt;."),
            "{blocks}"
        );
        assert!(blocks.contains(&approval.approval_id), "{blocks}");
        assert!(blocks.contains("*Approver groups*\\nfinance"), "{blocks}");
        let approve = click(&posted.body, "countersign_approve", "UBOB", &slack);
        assert_eq!(
            approve["actions"][0]["value"],
            approval.approval_id.as_str()
        );
        let secret = &secrets.signing_secret;

        // A Slack user no reviewer maps to: told so, nothing decided.
        let stranger = click(&posted.body, "countersign_approve", "UNOBODY", &slack);
        let answer = send(&app, interaction(&stranger, secret, now())).await?;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["response_type"], "ephemeral");
        let text = answer.body["text"].as_str().unwrap_or_default();
        assert!(text.contains("not a Countersign reviewer"), "{text}");
        assert!(text.contains("slack_user_id = \"UNOBODY\""), "{text}");
        // Slack shows the text through the click's response_url.
        let told = slack.nth("response_url", 1).await?;
        assert_eq!(told.body["response_type"], "ephemeral");
        assert_eq!(told.body["text"], text);
        still_pending(&env, &id).await?;

        // A reviewer outside the approver groups: told so, nothing decided.
        let eve = click(&posted.body, "countersign_approve", "UEVE", &slack);
        let answer = send(&app, interaction(&eve, secret, now())).await?;
        assert_eq!(answer.status, StatusCode::OK);
        let text = answer.body["text"].as_str().unwrap_or_default();
        assert!(
            text.contains("eve@example.com may not decide this approval"),
            "{text}"
        );
        still_pending(&env, &id).await?;

        // Bob approves with the button.
        let answer = send(&app, interaction(&approve, secret, now())).await?;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["response_type"], "ephemeral");
        let text = answer.body["text"].as_str().unwrap_or_default();
        assert!(
            text == "✅ You approved `pay` as bob@example.com."
                || text.starts_with("Working on it"),
            "{text}"
        );

        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert!(
            state.final_answer.starts_with("Paid: 200 OK"),
            "{}",
            state.final_answer
        );
        let payments = env.sink.received("/payments");
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].idempotency_key, approval.approval_id);
        let decision = &state.decisions[0];
        assert!(decision.accepted);
        assert_eq!(decision.reviewer, "bob@example.com");
        assert_eq!(decision.reason, "approved in Slack");
        assert_eq!(
            state_of(approval_of(&state, "pay")),
            ApprovalState::Approved
        );

        // The worker replaced the buttons with the result.
        let update = slack.nth("chat.update", 1).await?;
        assert_eq!(update.auth, format!("Bearer {}", secrets.token));
        assert_eq!(update.body["channel"], "C0APPROVALS");
        assert!(
            update.body["ts"]
                .as_str()
                .unwrap()
                .starts_with("1700000000.")
        );
        let blocks = update.body["blocks"].to_string();
        assert!(
            blocks.contains("✅ Approved by bob@example.com (approved in Slack)"),
            "{blocks}"
        );
        assert!(!blocks.contains("countersign_approve"), "{blocks}");
        assert_eq!(slack.calls("chat.postMessage").len(), 1);

        // A second click is told the approval is closed.
        let answer = send(&app, interaction(&approve, secret, now())).await?;
        assert_eq!(answer.status, StatusCode::OK);
        let text = answer.body["text"].as_str().unwrap_or_default();
        assert!(text.contains("already closed (approved)"), "{text}");
        assert_eq!(env.sink.received("/payments").len(), 1);

        // /metrics counted the Slack decisions: bob's approval (timed), and
        // eve's click and the late second click as refusals; the unknown
        // user's click is no reviewer's decision.
        let metrics = send(&app, Request::get("/metrics").body(Body::empty())?).await?;
        let metrics = String::from_utf8_lossy(&metrics.raw);
        for line in [
            "countersign_decisions_total{channel=\"slack\",outcome=\"approved\"} 1\n",
            "countersign_decisions_total{channel=\"slack\",outcome=\"refused\"} 2\n",
            "countersign_decision_latency_seconds_count{channel=\"slack\"} 1\n",
        ] {
            assert!(metrics.contains(line), "{line} missing from\n{metrics}");
        }

        env.record_and_replay(&id, "slack_approve").await
    })
    .await
}

#[tokio::test]
async fn slack_forged_stale_or_unsigned_clicks_are_refused() -> Result<()> {
    let env = TestEnv::new("slack-forged").await?;
    let slack = SlackApi::start().await?;
    let secrets = Secrets::new();
    let app = server(&env, Some((&slack, &secrets)))?;
    env.with_worker(async {
        let id = env
            .start(
                env.agent(&slack_agent(&env, &slack, &secrets)?)?,
                "pay invoice 9",
            )
            .await?;
        env.pending(&id, 1).await?;
        let posted = slack.nth("chat.postMessage", 1).await?;
        let approve = click(&posted.body, "countersign_approve", "UBOB", &slack);

        // Signed with another secret.
        let answer = send(&app, interaction(&approve, "not-the-secret", now())).await?;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert_eq!(answer.content_type, "application/problem+json");
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .contains("signature does not match"),
            "{}",
            answer.body
        );

        // Correctly signed, but 10 minutes old (a replay).
        let answer = send(
            &app,
            interaction(&approve, &secrets.signing_secret, now() - 600),
        )
        .await?;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .contains("more than 5 minutes"),
            "{}",
            answer.body
        );

        // A valid signature over another body.
        let mut tampered = interaction(&approve, &secrets.signing_secret, now());
        let other = click(&posted.body, "countersign_approve", "UEVE", &slack);
        *tampered.body_mut() = Body::from(form_body(&other));
        let answer = send(&app, tampered).await?;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

        // No signature headers at all.
        let unsigned = Request::post("/slack/interactions")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(form_body(&approve)))?;
        let answer = send(&app, unsigned).await?;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);

        // A server without a [slack] section has no such endpoint.
        let no_slack = server(&env, None)?;
        let answer = send(
            &no_slack,
            interaction(&approve, &secrets.signing_secret, now()),
        )
        .await?;
        assert_eq!(answer.status, StatusCode::NOT_FOUND);
        assert_eq!(answer.content_type, "application/problem+json");

        still_pending(&env, &id).await?;
        assert!(env.sink.received("/payments").is_empty());
        assert!(slack.calls("chat.update").is_empty());

        // Close the run the ordinary way.
        env.approvals
            .deny(&posted_value(&approve), "bob@example.com", "test over")
            .await?;
        let state = env.result(&id).await?;
        assert_eq!(state.decisions.len(), 1, "{:?}", state.decisions);
        Ok(())
    })
    .await
}

fn posted_value(click: &Value) -> String {
    click["actions"][0]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test]
async fn slack_deny_asks_for_a_reason_in_a_modal_and_the_model_gets_it() -> Result<()> {
    let env = TestEnv::new("slack-deny").await?;
    let slack = SlackApi::start().await?;
    let secrets = Secrets::new();
    let app = server(&env, Some((&slack, &secrets)))?;
    env.with_worker(async {
        let id = env
            .start(
                env.agent(&slack_agent(&env, &slack, &secrets)?)?,
                "pay invoice 9",
            )
            .await?;
        let approval = env.pending(&id, 1).await?.remove(0);
        let posted = slack.nth("chat.postMessage", 1).await?;
        let secret = &secrets.signing_secret;

        // Deny opens a modal and decides nothing yet.
        let deny = click(&posted.body, "countersign_deny", "UBOB", &slack);
        let answer = send(&app, interaction(&deny, secret, now())).await?;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(answer.raw.is_empty(), "{:?}", answer.raw);
        let opened = slack.nth("views.open", 1).await?;
        assert_eq!(opened.auth, format!("Bearer {}", secrets.token));
        assert_eq!(opened.body["trigger_id"], "trigger-UBOB");
        let view = &opened.body["view"];
        assert_eq!(view["type"], "modal");
        assert_eq!(view["callback_id"], "countersign_deny");
        assert_eq!(view["private_metadata"], approval.approval_id.as_str());
        still_pending(&env, &id).await?;

        // A blank reason keeps the modal open with an error.
        let answer = send(
            &app,
            interaction(&submit_denial(view, "UBOB", "  "), secret, now()),
        )
        .await?;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["response_action"], "errors");
        assert!(
            answer.body["errors"]["countersign_reason"]
                .as_str()
                .unwrap()
                .contains("Say why"),
            "{}",
            answer.body
        );
        still_pending(&env, &id).await?;

        // Someone outside finance cannot deny either.
        let answer = send(
            &app,
            interaction(&submit_denial(view, "UEVE", "no"), secret, now()),
        )
        .await?;
        assert_eq!(answer.body["response_action"], "errors");
        still_pending(&env, &id).await?;

        // The reason is recorded and told to the model.
        let answer = send(
            &app,
            interaction(
                &submit_denial(view, "UBOB", "wrong supplier"),
                secret,
                now(),
            ),
        )
        .await?;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(
            answer.raw.is_empty(),
            "{}",
            String::from_utf8_lossy(&answer.raw)
        );
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert_eq!(
            state.final_answer,
            "Could not: denied by bob@example.com: wrong supplier. The tool did not run."
        );
        assert!(env.sink.received("/payments").is_empty());
        let decision = &state.decisions[0];
        assert_eq!(decision.reviewer, "bob@example.com");
        assert_eq!(decision.reason, "wrong supplier");
        assert_eq!(state_of(approval_of(&state, "pay")), ApprovalState::Denied);

        let update = slack.nth("chat.update", 1).await?;
        let blocks = update.body["blocks"].to_string();
        assert!(
            blocks.contains("❌ Denied by bob@example.com: wrong supplier"),
            "{blocks}"
        );
        Ok(())
    })
    .await
}

/// A delivery the webhook receiver accepted after checking its signature.
#[derive(Debug, Clone)]
struct Delivery {
    idempotency_key: String,
    body: Value,
}

#[derive(Clone)]
struct Receiver {
    secret: String,
    accepted: Arc<Mutex<Vec<Delivery>>>,
    refused: Arc<AtomicU32>,
}

/// Verifies a delivery as the README tells receivers to.
fn verify_delivery(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(signature)) = (
        header("x-countersign-timestamp"),
        header("x-countersign-signature"),
    ) else {
        return false;
    };
    let fresh = timestamp
        .parse::<i64>()
        .is_ok_and(|t| (now() - t).abs() <= 300);
    let Some(Ok(given)) = signature.strip_prefix("v1=").map(hex::decode) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    fresh && mac.verify_slice(&given).is_ok()
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    if !verify_delivery(&receiver.secret, &headers, &body) {
        receiver.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED;
    }
    receiver.accepted.lock().unwrap().push(Delivery {
        idempotency_key: headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
    });
    StatusCode::OK
}

#[tokio::test]
async fn webhook_receives_signed_pending_and_decided_events() -> Result<()> {
    let env = TestEnv::new("webhook").await?;
    let secret = format!("whsec-{}", unique("hook"));
    let secret_env = unique_env("WEBHOOK_SECRET", &secret);
    let receiver = Receiver {
        secret,
        accepted: Arc::default(),
        refused: Arc::default(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook_url = format!("http://{}/hooks/approvals", listener.local_addr()?);
    let app = Router::new()
        .route("/hooks/approvals", post(receive))
        .with_state(receiver.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let agent = one_call_agent(
        "t-webhook-pay",
        "Paying invoice 11.",
        r#"{ tool = "pay", arguments = { to = "acme", amount = 75, currency = "EUR" } }"#,
    ) + &format!(
        r#"
[notify]
webhook_url = "{hook_url}"
webhook_secret_env = "{secret_env}"

[[tools]]
name = "pay"
builtin = {{ kind = "payment_request", url = "{{sink}}/payments" }}
"#
    );
    env.with_worker(async {
        let id = env.start(env.agent(&agent)?, "pay invoice 11").await?;
        let approval = env.pending(&id, 1).await?.remove(0);
        let accepted = || receiver.accepted.lock().unwrap().clone();
        let pending = wait_for("the approval.pending delivery", || async {
            accepted().first().cloned()
        })
        .await?;
        assert_eq!(
            pending.idempotency_key,
            format!("{}:approval.pending", approval.approval_id)
        );
        assert_eq!(pending.body["event"], "approval.pending");
        assert_eq!(
            pending.body["approval"]["approvalId"],
            approval.approval_id.as_str()
        );
        assert_eq!(pending.body["approval"]["effectClass"], "money");
        assert_eq!(pending.body["approval"]["state"], "APPROVAL_STATE_PENDING");
        assert_eq!(pending.body["decision"], Value::Null);

        env.approvals
            .approve(
                &approval.approval_id,
                "bob@example.com",
                countersign_approvals::ApproveOptions {
                    reason: "checked".into(),
                    ..Default::default()
                },
            )
            .await?;
        let state = env.result(&id).await?;
        assert_eq!(state.final_answer, "Done.");
        let decided = wait_for("the approval.decided delivery", || async {
            accepted().get(1).cloned()
        })
        .await?;
        assert_eq!(
            decided.idempotency_key,
            format!("{}:approval.decided", approval.approval_id)
        );
        assert_eq!(decided.body["event"], "approval.decided");
        assert_eq!(decided.body["approval"]["state"], "APPROVAL_STATE_APPROVED");
        assert_eq!(decided.body["decision"]["reviewer"], "bob@example.com");
        assert_eq!(decided.body["decision"]["reason"], "checked");
        assert_eq!(decided.body["decision"]["kind"], "DECISION_KIND_APPROVE");
        assert_eq!(receiver.refused.load(Ordering::SeqCst), 0);
        assert_eq!(accepted().len(), 2);
        assert_eq!(env.sink.received("/payments").len(), 1);
        Ok(())
    })
    .await
    .context("webhook notifications")
}
