//! `POST /slack/interactions`: the Approve / Deny buttons of the messages
//! the worker posts (see `countersign_worker::notify::slack`).
//!
//! Slack sends each click as a form-encoded `payload=<json>`, signed with the
//! app's signing secret. This endpoint:
//!
//! 1. answers 404 when the server has no `[slack]` section;
//! 2. checks `X-Slack-Signature` (`v0=` + hex HMAC-SHA256 of
//!    `v0:<X-Slack-Request-Timestamp>:<raw body>`) in constant time and
//!    refuses timestamps more than 5 minutes from the server's clock: 401,
//!    nothing decided;
//! 3. maps the Slack user to a reviewer (`slack_user_id` in the server
//!    config);
//! 4. `countersign_approve` approves as that reviewer through
//!    [`crate::decisions::decide`], the pipeline every channel uses;
//!    `countersign_deny` checks the approval ([`crate::decisions::decidable`])
//!    and opens a modal (`views.open`) asking for the reason, and its
//!    `view_submission` denies with it through `decide`.
//!
//! Slack wants an answer within 3 seconds. The work runs in a task the
//! handler waits on for at most [`DECISION_BUDGET`]; past that it answers
//! anyway and the task finishes on its own (its result goes to the click's
//! `response_url`). Refusals (unknown user, wrong group, already decided,
//! expired) are 200 answers with an ephemeral text for the clicking user
//! ([`refusal_text`]), never a 5xx that Slack would show as a failure. The message itself is
//! updated by the worker's `notify` activity once the run has the decision,
//! whatever channel it came from.

use crate::config::SlackConfig;
use crate::decisions::{DecisionError, Verdict, decidable, decide, tool_name};
use crate::metrics::{Channel, Metrics, decision_span};
use crate::session::unix_now;
use crate::{AppState, Problem, Reviewer};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use countersign_approvals::ApproveOptions;
use countersign_proto::{ApprovalState, DecisionOutcome, PendingApproval};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::Instrument;

/// The `action_id` of the Approve button (as the worker posts it).
pub const APPROVE_ACTION_ID: &str = "countersign_approve";
/// The `action_id` of the Deny button (as the worker posts it).
pub const DENY_ACTION_ID: &str = "countersign_deny";
/// The `callback_id` of the deny modal.
pub const DENY_CALLBACK_ID: &str = "countersign_deny";
/// The `block_id` of the modal's reason input.
pub const REASON_BLOCK_ID: &str = "countersign_reason";
/// The `action_id` of the modal's reason input.
pub const REASON_ACTION_ID: &str = "reason";
/// The reason recorded on approvals from the Approve button.
pub const APPROVE_REASON: &str = "approved in Slack";
/// How far a request's timestamp may be from the server's clock.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// How long a click waits for its decision before the answer goes out
/// anyway (Slack gives up after 3 s).
pub const DECISION_BUDGET: Duration = Duration::from_secs(2);

/// The routes of this module: `POST /slack/interactions`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/slack/interactions", post(interactions))
}

/// Why a request's signature was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignatureError {
    /// `X-Slack-Request-Timestamp` or `X-Slack-Signature` is missing.
    #[error("missing X-Slack-Request-Timestamp or X-Slack-Signature header")]
    MissingHeaders,
    /// The timestamp is not a number of seconds.
    #[error("X-Slack-Request-Timestamp is not a unix time")]
    BadTimestamp,
    /// The timestamp is more than [`MAX_CLOCK_SKEW`] from now (a replay, or a wrong clock).
    #[error("the request timestamp is more than 5 minutes from the server's clock")]
    Stale,
    /// The signature does not match the body and the signing secret.
    #[error("the signature does not match")]
    Mismatch,
}

/// Slack's request signature: `v0=` + hex HMAC-SHA256(secret,
/// `v0:<timestamp>:<body>`).
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    format!(
        "v0={}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key size");
    mac.update(b"v0:");
    mac.update(timestamp.as_bytes());
    mac.update(b":");
    mac.update(body);
    mac
}

/// Checks a request's `X-Slack-Request-Timestamp` (within
/// [`MAX_CLOCK_SKEW`] of `now`, unix seconds) and `X-Slack-Signature`
/// (compared in constant time).
pub fn verify_request(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now: u64,
) -> Result<(), SignatureError> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(given)) = (
        header("x-slack-request-timestamp"),
        header("x-slack-signature"),
    ) else {
        return Err(SignatureError::MissingHeaders);
    };
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    if (now as i64).abs_diff(sent) > MAX_CLOCK_SKEW.as_secs() {
        return Err(SignatureError::Stale);
    }
    let given = given
        .trim()
        .strip_prefix("v0=")
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Mismatch)?;
    mac(secret, timestamp, body)
        .verify_slice(&given)
        .map_err(|_| SignatureError::Mismatch)
}

/// The interaction payload, as far as this endpoint reads it.
#[derive(Debug, Deserialize)]
struct Interaction {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    user: SlackUser,
    #[serde(default)]
    trigger_id: String,
    #[serde(default)]
    response_url: Option<String>,
    #[serde(default)]
    actions: Vec<BlockAction>,
    #[serde(default)]
    view: Option<View>,
}

#[derive(Debug, Default, Deserialize)]
struct SlackUser {
    #[serde(default)]
    id: String,
}

#[derive(Debug, Deserialize)]
struct BlockAction {
    #[serde(default)]
    action_id: String,
    #[serde(default)]
    value: String,
}

#[derive(Debug, Deserialize)]
struct View {
    #[serde(default)]
    callback_id: String,
    #[serde(default)]
    private_metadata: String,
    #[serde(default)]
    state: ViewState,
}

#[derive(Debug, Default, Deserialize)]
struct ViewState {
    #[serde(default)]
    values: HashMap<String, HashMap<String, InputValue>>,
}

#[derive(Debug, Deserialize)]
struct InputValue {
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct Form {
    payload: String,
}

async fn interactions(
    State(state): State<AppState>,
    headers: HeaderMap,
    metrics: Option<Extension<Arc<Metrics>>>,
    body: Bytes,
) -> Response {
    let metrics = metrics.map(|Extension(m)| m);
    let Some(slack) = state.config.slack.clone() else {
        return Problem::not_found("Slack is not configured on this server (no [slack] section)")
            .into_response();
    };
    let secret = match std::env::var(&slack.signing_secret_env) {
        Ok(secret) if !secret.trim().is_empty() => secret,
        _ => {
            tracing::error!(variable = %slack.signing_secret_env, "the Slack signing secret is not set");
            return Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "the environment variable `{}` (the Slack signing secret) is not set on the server",
                    slack.signing_secret_env
                ),
            )
            .into_response();
        }
    };
    if let Err(e) = verify_request(secret.trim().as_bytes(), &headers, &body, unix_now()) {
        tracing::warn!(error = %e, "refused a Slack interaction");
        return Problem::unauthorized(format!("Slack signature: {e}")).into_response();
    }
    let interaction: Interaction = match serde_urlencoded::from_bytes::<Form>(&body)
        .map_err(|e| e.to_string())
        .and_then(|form| serde_json::from_str(&form.payload).map_err(|e| e.to_string()))
    {
        Ok(interaction) => interaction,
        Err(e) => {
            return Problem::bad_request(format!("not a Slack interaction payload: {e}"))
                .into_response();
        }
    };
    match interaction.kind.as_str() {
        "block_actions" => block_actions(state, slack, interaction, metrics).await,
        "view_submission" => view_submission(state, interaction, metrics).await,
        // Other interactions (view_closed, shortcuts) are not ours to act on.
        _ => StatusCode::OK.into_response(),
    }
}

/// A button: approve at once, or open the modal that asks why to deny.
async fn block_actions(
    state: AppState,
    slack: SlackConfig,
    interaction: Interaction,
    metrics: Option<Arc<Metrics>>,
) -> Response {
    let Some(action) = interaction
        .actions
        .iter()
        .find(|a| a.action_id == APPROVE_ACTION_ID || a.action_id == DENY_ACTION_ID)
    else {
        return StatusCode::OK.into_response();
    };
    let response_url = interaction.response_url.clone();
    let Some(reviewer) = state
        .config
        .reviewer_by_slack_user(&interaction.user.id)
        .cloned()
    else {
        return ephemeral(unknown_user_text(&interaction.user.id), response_url);
    };
    let approve = action.action_id == APPROVE_ACTION_ID;
    let approval_id = action.value.clone();
    let trigger_id = interaction.trigger_id.clone();
    let task = tokio::spawn(async move {
        if approve {
            let verdict = Verdict::Approve(ApproveOptions {
                reason: APPROVE_REASON.into(),
                ..Default::default()
            });
            let metrics = metrics.as_deref();
            return Some(
                match decide(
                    &state,
                    metrics,
                    Channel::Slack,
                    &reviewer,
                    &approval_id,
                    verdict,
                )
                .await
                {
                    Ok(decided) => outcome_text(&decided.approval, &reviewer, &decided.outcome),
                    Err(e) => refusal_text(&approval_id, &e),
                },
            );
        }
        // Deny: check now, and ask for the reason in a dialog; the
        // decision comes with its `view_submission`.
        let span = decision_span(Channel::Slack, &approval_id, &reviewer.id);
        async {
            let approval = match decidable(&state, Channel::Slack, &reviewer, &approval_id).await {
                Ok(approval) => approval,
                Err(e) => return Some(refusal_text(&approval_id, &e)),
            };
            match open_deny_modal(&slack, &trigger_id, &approval).await {
                Ok(()) => None,
                Err(problem) => Some(format!(
                    "Could not open the deny dialog ({problem}). Deny from the dashboard or with `countersign approvals deny` instead."
                )),
            }
        }
        .instrument(span)
        .await
    });
    match within_budget(task).await {
        Finished::Reply(Some(text)) => ephemeral(text, response_url),
        Finished::Reply(None) => StatusCode::OK.into_response(),
        Finished::Late(task) => {
            // The answer goes out now; the result follows on response_url.
            let late_url = response_url.clone();
            tokio::spawn(async move {
                if let Ok(Some(text)) = task.await {
                    tracing::info!(%text, "a Slack decision finished after the answer");
                    if let Some(url) = late_url {
                        post_response_url(&url, &text).await;
                    }
                }
            });
            ephemeral(
                "Working on it: Countersign is still recording your decision. The message changes once the run has it.".into(),
                None,
            )
        }
    }
}

/// The deny modal was submitted: deny with the typed reason.
async fn view_submission(
    state: AppState,
    interaction: Interaction,
    metrics: Option<Arc<Metrics>>,
) -> Response {
    let Some(view) = interaction.view else {
        return StatusCode::OK.into_response();
    };
    if view.callback_id != DENY_CALLBACK_ID {
        return StatusCode::OK.into_response();
    }
    let reason = view
        .state
        .values
        .get(REASON_BLOCK_ID)
        .and_then(|block| block.get(REASON_ACTION_ID))
        .and_then(|input| input.value.clone())
        .unwrap_or_default();
    let Some(reviewer) = state
        .config
        .reviewer_by_slack_user(&interaction.user.id)
        .cloned()
    else {
        return view_error(&unknown_user_text(&interaction.user.id));
    };
    let approval_id = view.private_metadata;
    let task = tokio::spawn(async move {
        let verdict = Verdict::Deny { reason };
        let metrics = metrics.as_deref();
        match decide(
            &state,
            metrics,
            Channel::Slack,
            &reviewer,
            &approval_id,
            verdict,
        )
        .await
        {
            Ok(decided) if decided.outcome.accepted => None,
            Ok(decided) => Some(format!("Not accepted: {}", decided.outcome.message)),
            Err(e) => Some(refusal_text(&approval_id, &e)),
        }
    });
    match within_budget(task).await {
        // An empty 200 closes the modal.
        Finished::Reply(None) => StatusCode::OK.into_response(),
        Finished::Reply(Some(text)) => view_error(&text),
        Finished::Late(task) => {
            tokio::spawn(async move {
                if let Ok(Some(text)) = task.await {
                    tracing::warn!(%text, "a Slack denial finished after the modal closed");
                }
            });
            StatusCode::OK.into_response()
        }
    }
}

/// A task's answer within [`DECISION_BUDGET`], or the task still running.
enum Finished {
    Reply(Option<String>),
    Late(JoinHandle<Option<String>>),
}

async fn within_budget(mut task: JoinHandle<Option<String>>) -> Finished {
    match tokio::time::timeout(DECISION_BUDGET, &mut task).await {
        Ok(Ok(reply)) => Finished::Reply(reply),
        Ok(Err(e)) => Finished::Reply(Some(format!("Countersign failed while handling this: {e}"))),
        Err(_) => Finished::Late(task),
    }
}

/// What a refused decision means to the person who clicked: Slack's one
/// mapping of [`DecisionError`] (mrkdwn-escaped).
pub fn refusal_text(approval_id: &str, e: &DecisionError) -> String {
    match e {
        DecisionError::ReasonRequired => {
            "Say why you deny the call: the agent is told your reason.".into()
        }
        DecisionError::NotAnApprover {
            reviewer,
            approvers,
            ..
        } => format!(
            "{} may not decide this approval: the agent lets only {} decide it.",
            escape(reviewer),
            escape(&approvers.join(", "))
        ),
        DecisionError::OwnRequest { reviewer, .. } => format!(
            "{} started this run, and this approval needs another reviewer (separation of duties); nothing was decided.",
            escape(reviewer)
        ),
        DecisionError::AlreadyApproved { missing, .. } => format!(
            "You already approved this call; it waits for {missing} more approval(s) from others."
        ),
        DecisionError::Closed { tool, state, .. } => format!(
            "`{}` is already closed ({}); nothing was changed.",
            escape(tool),
            state_word(*state)
        ),
        DecisionError::AlreadyDecided(message) => format!(
            "Too late: this approval was already decided or has expired ({}).",
            escape(message)
        ),
        DecisionError::NotFound(_) => format!(
            "Countersign does not know approval `{}` (its run may have ended).",
            escape(approval_id)
        ),
        DecisionError::StaleArguments(message) => format!(
            "The call changed since this message was posted: {}",
            escape(message)
        ),
        other => format!(
            "Countersign could not record the decision: {}",
            escape(&other.to_string())
        ),
    }
}

fn outcome_text(
    approval: &PendingApproval,
    reviewer: &Reviewer,
    outcome: &DecisionOutcome,
) -> String {
    if !outcome.accepted {
        return format!("Not accepted: {}", escape(&outcome.message));
    }
    match outcome.state() {
        ApprovalState::Pending => format!(
            "Your approval is recorded; more are needed: {}",
            escape(&outcome.message)
        ),
        _ => format!(
            "✅ You approved `{}` as {}.",
            escape(&tool_name(approval)),
            escape(&reviewer.id)
        ),
    }
}

fn unknown_user_text(slack_user_id: &str) -> String {
    format!(
        "Your Slack user ({}) is not a Countersign reviewer, so nothing was decided. Ask an operator to add `slack_user_id = \"{}\"` to your `[[reviewers]]` entry in the server config.",
        escape(slack_user_id),
        escape(slack_user_id)
    )
}

fn state_word(state: ApprovalState) -> &'static str {
    match state {
        ApprovalState::Approved => "approved",
        ApprovalState::ApprovedWithEdits => "approved with edits",
        ApprovalState::Denied => "denied",
        ApprovalState::Expired => "expired",
        ApprovalState::Pending | ApprovalState::Unspecified => "pending",
    }
}

/// Escapes Slack's mrkdwn control characters.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A message only the clicking user sees. Slack does not show the body of
/// an answer to a button click, so the text also goes to the click's
/// `response_url` (best effort, in the background) when there is one.
fn ephemeral(text: String, response_url: Option<String>) -> Response {
    if let Some(url) = response_url {
        let text = text.clone();
        tokio::spawn(async move { post_response_url(&url, &text).await });
    }
    Json(json!({"response_type": "ephemeral", "replace_original": false, "text": text}))
        .into_response()
}

/// Keeps the modal open with `text` under the reason input.
fn view_error(text: &str) -> Response {
    Json(json!({"response_action": "errors", "errors": {REASON_BLOCK_ID: text}})).into_response()
}

fn http() -> &'static reqwest::Client {
    static HTTP: OnceLock<reqwest::Client> = OnceLock::new();
    HTTP.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default()
    })
}

async fn post_response_url(url: &str, text: &str) {
    let body = json!({"response_type": "ephemeral", "replace_original": false, "text": text});
    match http().post(url).json(&body).send().await {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => {
            tracing::warn!(status = %response.status(), "Slack response_url refused a message")
        }
        Err(e) => tracing::warn!(error = %e, "cannot reach Slack's response_url"),
    }
}

/// The modal asking why to deny: `callback_id` [`DENY_CALLBACK_ID`],
/// `private_metadata` the approval id, one required text input.
pub fn deny_modal(approval: &PendingApproval) -> Value {
    let summary = format!(
        "Deny `{}` for *{}* (requested by {})?\nThe agent is told your reason.",
        escape(&tool_name(approval)),
        escape(&approval.agent),
        escape(&approval.requester)
    );
    json!({
        "type": "modal",
        "callback_id": DENY_CALLBACK_ID,
        "private_metadata": approval.approval_id,
        "title": {"type": "plain_text", "text": "Deny approval"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": summary}},
            {
                "type": "input",
                "block_id": REASON_BLOCK_ID,
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {
                    "type": "plain_text_input",
                    "action_id": REASON_ACTION_ID,
                    "multiline": true,
                    "placeholder": {"type": "plain_text", "text": "e.g. wrong supplier, pay the March invoice first"}
                }
            }
        ]
    })
}

/// `views.open` with the deny modal, as the bot.
async fn open_deny_modal(
    slack: &SlackConfig,
    trigger_id: &str,
    approval: &PendingApproval,
) -> Result<(), String> {
    let token = match std::env::var(&slack.bot_token_env) {
        Ok(token) if !token.trim().is_empty() => token.trim().to_string(),
        _ => {
            return Err(format!(
                "the environment variable `{}` (the Slack bot token) is not set on the server",
                slack.bot_token_env
            ));
        }
    };
    let url = format!("{}/views.open", slack.api_base_url.trim_end_matches('/'));
    let body = json!({"trigger_id": trigger_id, "view": deny_modal(approval)});
    let response = http()
        .post(&url)
        .bearer_auth(token)
        .header("content-type", "application/json; charset=utf-8")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("views.open: {e}"))?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .map_err(|e| format!("views.open: HTTP {status}, {e}"))?;
    if answer["ok"].as_bool() == Some(true) {
        Ok(())
    } else {
        Err(format!(
            "views.open: {}",
            answer["error"].as_str().unwrap_or("no error code")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    /// Slack's own example from "Verifying requests from Slack".
    const SECRET: &[u8] = b"8f742231b10e8888abcd99yyyzzz85a5";
    const TIMESTAMP: &str = "1531420618";
    const BODY: &[u8] = b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const EXPECTED: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    fn headers(timestamp: &str, signature: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "x-slack-request-timestamp",
            HeaderValue::from_str(timestamp).unwrap(),
        );
        h.insert(
            "x-slack-signature",
            HeaderValue::from_str(signature).unwrap(),
        );
        h
    }

    #[test]
    fn signatures_match_slacks_documented_example() {
        assert_eq!(signature(SECRET, TIMESTAMP, BODY), EXPECTED);
        let now = 1_531_420_618;
        assert_eq!(
            verify_request(SECRET, &headers(TIMESTAMP, EXPECTED), BODY, now),
            Ok(())
        );
        assert_eq!(
            verify_request(SECRET, &headers(TIMESTAMP, EXPECTED), BODY, now + 300),
            Ok(())
        );
    }

    #[test]
    fn forged_stale_and_incomplete_requests_are_refused() {
        let now = 1_531_420_618;
        let check = |h: &HeaderMap, body: &[u8], now: u64| verify_request(SECRET, h, body, now);
        assert_eq!(
            check(&headers(TIMESTAMP, EXPECTED), b"payload=other", now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_request(b"wrong", &headers(TIMESTAMP, EXPECTED), BODY, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(
                &headers(TIMESTAMP, &EXPECTED.replace("v0=", "v1=")),
                BODY,
                now
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&headers(TIMESTAMP, "v0=not-hex"), BODY, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&headers(TIMESTAMP, EXPECTED), BODY, now + 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            check(&headers(TIMESTAMP, EXPECTED), BODY, now - 301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            check(&headers("yesterday", EXPECTED), BODY, now),
            Err(SignatureError::BadTimestamp)
        );
        let mut only_signature = HeaderMap::new();
        only_signature.insert("x-slack-signature", HeaderValue::from_static(EXPECTED));
        assert_eq!(
            check(&only_signature, BODY, now),
            Err(SignatureError::MissingHeaders)
        );
        assert_eq!(
            check(&HeaderMap::new(), BODY, now),
            Err(SignatureError::MissingHeaders)
        );
    }

    #[test]
    fn the_deny_modal_carries_the_approval_and_a_reason_input() {
        let approval = PendingApproval {
            approval_id: "wf~12345678".into(),
            agent: "payments".into(),
            requester: "alice <@U1>".into(),
            tool: Some(countersign_proto::ToolRef {
                name: "send_payment".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let modal = deny_modal(&approval);
        assert_eq!(modal["callback_id"], DENY_CALLBACK_ID);
        assert_eq!(modal["private_metadata"], "wf~12345678");
        assert_eq!(modal["blocks"][1]["block_id"], REASON_BLOCK_ID);
        assert_eq!(modal["blocks"][1]["element"]["action_id"], REASON_ACTION_ID);
        let summary = modal["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            summary.contains("(requested by alice &lt;@U1&gt;)"),
            "{summary}"
        );
        assert!(modal["title"]["text"].as_str().unwrap().len() <= 24);
    }
}
