//! The `notify` activity's body against local peers: a server speaking
//! Slack's Web API wire format (`chat.postMessage`, `chat.update`) and a
//! webhook receiver that verifies signatures the way the docs tell users to.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use countersign_policy::agent::NotifyConfig;
use countersign_proto::{
    ApprovalState, DecisionKind, DecisionRecord, PendingApproval, ToolRef, json_to_struct,
};
use countersign_worker::notify::{NotifyEvent, NotifyRequest, SlackMessage, notify};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

const TOKEN: &str = "xoxb-notify-test";
const TOKEN_ENV: &str = "COUNTERSIGN_NOTIFY_TEST_SLACK_TOKEN";
const SECRET: &str = "whsec-notify-test";
const SECRET_ENV: &str = "COUNTERSIGN_NOTIFY_TEST_WEBHOOK_SECRET";

/// Sets the variables these tests read, once; no other test reads or changes them.
fn set_env() {
    static SET: std::sync::Once = std::sync::Once::new();
    // SAFETY: set once, before any reader of these variables, and std's own
    // environment lock orders it with the other tests' std::env reads.
    SET.call_once(|| unsafe {
        std::env::set_var(TOKEN_ENV, TOKEN);
        std::env::set_var(SECRET_ENV, SECRET);
    });
}

fn approval() -> PendingApproval {
    PendingApproval {
        approval_id: "pay-7~0badcafe".into(),
        workflow_id: "pay-7".into(),
        agent: "payments".into(),
        requester: "alice@example.com".into(),
        tool: Some(ToolRef {
            kind: "builtin".into(),
            provider: String::new(),
            name: "send_payment".into(),
        }),
        arguments: Some(json_to_struct(&json!({"to": "acme", "amount": 120})).unwrap()),
        effect_class: "money".into(),
        rule: "money: always needs approval".into(),
        required_approvals: 1,
        user_request: "pay invoice 7".into(),
        model_reason: "Paying invoice 7 <now>.".into(),
        state: ApprovalState::Pending as i32,
        ..Default::default()
    }
}

fn approved() -> (PendingApproval, DecisionRecord) {
    let approval = PendingApproval {
        state: ApprovalState::Approved as i32,
        approvals_given: vec!["bob@example.com".into()],
        ..approval()
    };
    let decision = DecisionRecord {
        approval_id: approval.approval_id.clone(),
        tool: "send_payment".into(),
        kind: DecisionKind::Approve as i32,
        reviewer: "bob@example.com".into(),
        reason: "invoice checked".into(),
        accepted: true,
        channel: "update".into(),
        ..Default::default()
    };
    (approval, decision)
}

// ---------------------------------------------------------------- Slack

/// A call the Slack server received: method, `Authorization`, JSON body.
#[derive(Debug, Clone)]
struct SlackCall {
    method: String,
    auth: String,
    content_type: String,
    body: Value,
}

#[derive(Clone, Default)]
struct SlackState {
    calls: Arc<Mutex<Vec<SlackCall>>>,
    /// How many more requests to `C_FLAKY` answer 500.
    flaky_failures: Arc<Mutex<u32>>,
}

impl SlackState {
    fn calls(&self, method: &str) -> Vec<SlackCall> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }
}

async fn slack_method(
    State(state): State<SlackState>,
    axum::extract::Path(method): axum::extract::Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let auth = header("authorization");
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    state.calls.lock().unwrap().push(SlackCall {
        method: method.clone(),
        auth: auth.clone(),
        content_type: header("content-type"),
        body: body.clone(),
    });
    if auth != format!("Bearer {TOKEN}") {
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    let channel = body["channel"].as_str().unwrap_or_default();
    if channel == "C_FLAKY" {
        let mut left = state.flaky_failures.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            return (StatusCode::INTERNAL_SERVER_ERROR, "try again").into_response();
        }
    }
    if channel == "C404" {
        return Json(json!({"ok": false, "error": "channel_not_found"})).into_response();
    }
    // Names resolve to ids, as in Slack.
    let channel_id = if channel.starts_with('#') {
        "C0APPROVALS"
    } else {
        channel
    };
    match method.as_str() {
        "chat.postMessage" => Json(json!({
            "ok": true, "channel": channel_id, "ts": "1700000000.000100",
            "message": {"type": "message", "text": body["text"]}
        }))
        .into_response(),
        "chat.update" if body["ts"] == "gone" => {
            Json(json!({"ok": false, "error": "message_not_found"})).into_response()
        }
        "chat.update" => Json(json!({
            "ok": true, "channel": channel_id, "ts": body["ts"], "text": body["text"]
        }))
        .into_response(),
        _ => Json(json!({"ok": false, "error": "unknown_method"})).into_response(),
    }
}

async fn slack_server() -> (String, SlackState) {
    let state = SlackState::default();
    let app = axum::Router::new()
        .route("/api/{method}", post(slack_method))
        .with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

fn slack_config(base: &str, channel: &str) -> NotifyConfig {
    set_env();
    NotifyConfig {
        slack_channel: Some(channel.into()),
        slack_token_env: Some(TOKEN_ENV.into()),
        slack_api_base_url: Some(base.into()),
        dashboard_url: Some("https://countersign.example.com".into()),
        ..Default::default()
    }
}

async fn run(
    config: NotifyConfig,
    event: NotifyEvent,
) -> countersign_worker::notify::NotifyOutcome {
    notify(&reqwest::Client::new(), &NotifyRequest { config, event }).await
}

fn texts(message: &Value) -> String {
    message["blocks"].to_string()
}

#[tokio::test]
async fn slack_pending_posts_block_kit_buttons_and_returns_channel_and_ts() {
    let (base, slack) = slack_server().await;
    let outcome = run(
        slack_config(&base, "#approvals"),
        NotifyEvent::Pending {
            approval: approval(),
        },
    )
    .await;
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert_eq!(
        outcome.slack_message,
        Some(SlackMessage {
            channel: "C0APPROVALS".into(),
            ts: "1700000000.000100".into()
        })
    );

    let posts = slack.calls("chat.postMessage");
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!(post.auth, format!("Bearer {TOKEN}"));
    assert_eq!(post.content_type, "application/json; charset=utf-8");
    assert_eq!(post.body["channel"], "#approvals");
    assert!(
        post.body["text"]
            .as_str()
            .unwrap()
            .starts_with("Approval needed: payments wants to call send_payment (money)"),
        "{}",
        post.body["text"]
    );
    let blocks = post.body["blocks"].as_array().unwrap();
    assert_eq!(blocks[0]["type"], "header");
    assert_eq!(blocks[0]["text"]["text"], "Approval needed: send_payment");
    let actions = blocks.iter().find(|b| b["type"] == "actions").unwrap();
    let buttons: Vec<(&str, &str, &str)> = actions["elements"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["action_id"].as_str().unwrap(),
                b["style"].as_str().unwrap(),
                b["value"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        buttons,
        [
            ("countersign_approve", "primary", "pay-7~0badcafe"),
            ("countersign_deny", "danger", "pay-7~0badcafe"),
        ]
    );
    let text = texts(&post.body);
    for expected in [
        "*Agent*\\npayments",
        "*Requested by*\\nalice@example.com",
        "*Request*\\npay invoice 7",
        "*Model's reason*\\nPaying invoice 7 &lt;now&gt;.",
        "\\\"amount\\\": 120",
        "Approval id: `pay-7~0badcafe`",
        "<https://countersign.example.com/?approval=pay%2D7%7E0badcafe|Open in the dashboard>",
    ] {
        assert!(text.contains(expected), "{expected} not in {text}");
    }
}

#[tokio::test]
async fn slack_decided_updates_the_posted_message_in_place() {
    let (base, slack) = slack_server().await;
    let (approval, decision) = approved();
    let posted = SlackMessage {
        channel: "C0APPROVALS".into(),
        ts: "1700000000.000100".into(),
    };
    let outcome = run(
        slack_config(&base, "#approvals"),
        NotifyEvent::Decided {
            approval,
            decision: Some(decision),
            slack_message: Some(posted.clone()),
        },
    )
    .await;
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert_eq!(outcome.slack_message, Some(posted));
    assert!(slack.calls("chat.postMessage").is_empty());
    let updates = slack.calls("chat.update");
    assert_eq!(updates.len(), 1);
    let update = &updates[0].body;
    assert_eq!(updates[0].auth, format!("Bearer {TOKEN}"));
    assert_eq!(update["channel"], "C0APPROVALS");
    assert_eq!(update["ts"], "1700000000.000100");
    let blocks = update["blocks"].as_array().unwrap();
    assert!(blocks.iter().all(|b| b["type"] != "actions"), "{update}");
    assert_eq!(blocks[0]["text"]["text"], "Approved: send_payment");
    assert!(
        texts(update).contains("✅ Approved by bob@example.com (invoice checked)"),
        "{update}"
    );
    assert!(
        update["text"]
            .as_str()
            .unwrap()
            .starts_with("✅ Approved by bob@example.com (invoice checked)")
    );
}

#[tokio::test]
async fn slack_decided_without_an_editable_message_posts_a_new_one() {
    let (base, slack) = slack_server().await;
    let expired = PendingApproval {
        state: ApprovalState::Expired as i32,
        ..approval()
    };
    // Posting failed when the approval opened: no message to update.
    let outcome = run(
        slack_config(&base, "#approvals"),
        NotifyEvent::Decided {
            approval: expired.clone(),
            decision: None,
            slack_message: None,
        },
    )
    .await;
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert!(slack.calls("chat.update").is_empty());
    let posts = slack.calls("chat.postMessage");
    assert_eq!(posts.len(), 1);
    assert_eq!(posts[0].body["channel"], "#approvals");
    assert!(
        texts(&posts[0].body).contains("⌛ Expired: nobody decided in time"),
        "{}",
        posts[0].body
    );

    // The message was deleted: the update fails, the result is posted anew.
    let outcome = run(
        slack_config(&base, "#approvals"),
        NotifyEvent::Decided {
            approval: expired,
            decision: None,
            slack_message: Some(SlackMessage {
                channel: "C0APPROVALS".into(),
                ts: "gone".into(),
            }),
        },
    )
    .await;
    assert_eq!(slack.calls("chat.update").len(), 1);
    assert_eq!(slack.calls("chat.postMessage").len(), 2);
    assert_eq!(
        outcome.problems,
        ["slack: chat.update: message_not_found; posting the result as a new message"]
    );
    assert_eq!(outcome.slack_message.unwrap().ts, "1700000000.000100");
}

#[tokio::test]
async fn slack_failures_are_reported_and_server_errors_retried() {
    let (base, slack) = slack_server().await;
    let pending = || NotifyEvent::Pending {
        approval: approval(),
    };

    // A 500 is retried within the call.
    *slack.flaky_failures.lock().unwrap() = 1;
    let outcome = run(slack_config(&base, "C_FLAKY"), pending()).await;
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert_eq!(outcome.slack_message.unwrap().channel, "C_FLAKY");
    assert_eq!(slack.calls("chat.postMessage").len(), 2);

    // `ok: false` is not retried; it is a problem, not a panic or an error.
    let outcome = run(slack_config(&base, "C404"), pending()).await;
    assert_eq!(
        outcome.problems,
        ["slack: chat.postMessage: channel_not_found"]
    );
    assert!(outcome.slack_message.is_none());
    assert_eq!(slack.calls("chat.postMessage").len(), 3);

    // A missing token variable: nothing is sent.
    let mut config = slack_config(&base, "#approvals");
    config.slack_token_env = Some("COUNTERSIGN_NOTIFY_TEST_NEVER_SET".into());
    let outcome = run(config, pending()).await;
    assert_eq!(
        outcome.problems,
        [
            "slack: the environment variable `COUNTERSIGN_NOTIFY_TEST_NEVER_SET` (the Slack bot token) is not set on the worker"
        ]
    );
    assert_eq!(slack.calls("chat.postMessage").len(), 3);

    // Nobody listening: retried, then reported.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let outcome = run(
        slack_config(&format!("http://127.0.0.1:{port}/api"), "#approvals"),
        pending(),
    )
    .await;
    assert_eq!(outcome.problems.len(), 1);
    let problem = &outcome.problems[0];
    assert!(
        problem.starts_with("slack: chat.postMessage: ")
            && problem.ends_with("(gave up after 3 attempts)"),
        "{problem}"
    );
}

// ---------------------------------------------------------------- webhook

/// A delivery the receiver accepted, after checking its signature.
#[derive(Debug, Clone)]
struct Delivery {
    idempotency_key: String,
    body: Value,
}

#[derive(Clone, Default)]
struct HookState {
    accepted: Arc<Mutex<Vec<Delivery>>>,
    /// Requests refused for a bad signature.
    forged: Arc<Mutex<u32>>,
    /// How many more requests answer 503.
    unavailable: Arc<Mutex<u32>>,
}

/// Verifies as a receiver following the docs would, with its own HMAC.
fn verify(headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(signature)) = (
        header("x-countersign-timestamp"),
        header("x-countersign-signature"),
    ) else {
        return false;
    };
    let Ok(sent) = timestamp.parse::<u64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if now.abs_diff(sent) > 300 {
        return false;
    }
    let Some(Ok(given)) = signature.strip_prefix("v1=").map(hex::decode) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

async fn hook(State(state): State<HookState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    {
        let mut unavailable = state.unavailable.lock().unwrap();
        if *unavailable > 0 {
            *unavailable -= 1;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    if !verify(&headers, &body) {
        *state.forged.lock().unwrap() += 1;
        return StatusCode::UNAUTHORIZED;
    }
    assert_eq!(headers["content-type"], "application/json");
    state.accepted.lock().unwrap().push(Delivery {
        idempotency_key: headers["idempotency-key"].to_str().unwrap().to_string(),
        body: serde_json::from_slice(&body).unwrap(),
    });
    StatusCode::NO_CONTENT
}

async fn hook_server() -> (String, HookState) {
    let state = HookState::default();
    let app = axum::Router::new()
        .route("/hook", post(hook))
        .route("/refuse", post(|| async { StatusCode::BAD_REQUEST }))
        .with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

fn hook_config(url: &str) -> NotifyConfig {
    set_env();
    NotifyConfig {
        webhook_url: Some(url.into()),
        webhook_secret_env: Some(SECRET_ENV.into()),
        ..Default::default()
    }
}

#[tokio::test]
async fn webhook_deliveries_are_signed_keyed_and_carry_proto3_json() {
    let (base, hooks) = hook_server().await;
    let url = format!("{base}/hook");
    let outcome = run(
        hook_config(&url),
        NotifyEvent::Pending {
            approval: approval(),
        },
    )
    .await;
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert!(outcome.slack_message.is_none());
    let (approval, decision) = approved();
    let outcome = run(
        hook_config(&url),
        NotifyEvent::Decided {
            approval,
            decision: Some(decision),
            slack_message: None,
        },
    )
    .await;
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);

    assert_eq!(*hooks.forged.lock().unwrap(), 0);
    let accepted = hooks.accepted.lock().unwrap().clone();
    assert_eq!(accepted.len(), 2);
    assert_eq!(
        accepted[0].idempotency_key,
        "pay-7~0badcafe:approval.pending"
    );
    assert_eq!(accepted[0].body["event"], "approval.pending");
    assert_eq!(accepted[0].body["approval"]["approvalId"], "pay-7~0badcafe");
    assert_eq!(accepted[0].body["approval"]["tool"]["name"], "send_payment");
    assert_eq!(
        accepted[0].body["approval"]["arguments"],
        json!({"to": "acme", "amount": 120.0})
    );
    assert_eq!(
        accepted[0].body["approval"]["state"],
        "APPROVAL_STATE_PENDING"
    );
    assert_eq!(accepted[0].body["decision"], Value::Null);

    assert_eq!(
        accepted[1].idempotency_key,
        "pay-7~0badcafe:approval.decided"
    );
    assert_eq!(accepted[1].body["event"], "approval.decided");
    assert_eq!(
        accepted[1].body["approval"]["state"],
        "APPROVAL_STATE_APPROVED"
    );
    assert_eq!(
        accepted[1].body["decision"]["kind"],
        "DECISION_KIND_APPROVE"
    );
    assert_eq!(accepted[1].body["decision"]["reviewer"], "bob@example.com");
    assert_eq!(accepted[1].body["decision"]["reason"], "invoice checked");
}

#[tokio::test]
async fn webhook_failures_are_retried_or_reported_without_touching_slack() {
    let (base, hooks) = hook_server().await;
    let (slack_base, slack) = slack_server().await;
    let pending = || NotifyEvent::Pending {
        approval: approval(),
    };

    // A 503 is retried; the retry is signed afresh and accepted.
    *hooks.unavailable.lock().unwrap() = 2;
    let outcome = run(hook_config(&format!("{base}/hook")), pending()).await;
    assert!(outcome.problems.is_empty(), "{:?}", outcome.problems);
    assert_eq!(hooks.accepted.lock().unwrap().len(), 1);

    // A 4xx is reported at once, and the Slack channel is unaffected.
    let mut both = hook_config(&format!("{base}/refuse"));
    both.slack_channel = Some("#approvals".into());
    both.slack_token_env = Some(TOKEN_ENV.into());
    both.slack_api_base_url = Some(slack_base);
    let outcome = run(both, pending()).await;
    assert_eq!(
        outcome.problems,
        ["webhook: approval.pending: HTTP 400 Bad Request"]
    );
    assert!(outcome.slack_message.is_some());
    assert_eq!(slack.calls("chat.postMessage").len(), 1);

    // No secret, no delivery: never sent unsigned.
    let mut config = hook_config(&format!("{base}/hook"));
    config.webhook_secret_env = Some("COUNTERSIGN_NOTIFY_TEST_NEVER_SET".into());
    let outcome = run(config, pending()).await;
    assert_eq!(
        outcome.problems,
        [
            "webhook: the environment variable `COUNTERSIGN_NOTIFY_TEST_NEVER_SET` (the webhook's HMAC secret) is not set on the worker"
        ]
    );
    assert_eq!(hooks.accepted.lock().unwrap().len(), 1);
    assert_eq!(*hooks.forged.lock().unwrap(), 0);
}
