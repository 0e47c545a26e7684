//! The `slack` connector, over the Slack Web API: `post_message`
//! (`chat.postMessage`) and `history` (`conversations.history`).
//!
//! Slack answers most errors with HTTP 200 and `{"ok": false, "error":
//! "<code>"}`. `chat.postMessage` does not deduplicate; the idempotency key
//! travels in the message's metadata so a repeated post can be recognised.

use super::{ActionSpec, optional_limit, optional_string, string_arg};
use crate::tools::{ToolError, ToolOutput};
use countersign_policy::EffectClass;
use countersign_policy::sources::Connector;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use serde_json::{Value, json};
use std::time::Duration;

/// The Web API's base URL when the connector does not set one.
const DEFAULT_BASE_URL: &str = "https://slack.com/api";
/// The token's environment variable when the connector does not name one.
const DEFAULT_TOKEN_ENV: &str = "SLACK_BOT_TOKEN";
/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

pub(super) fn specs() -> Vec<ActionSpec> {
    vec![
        ActionSpec {
            name: "post_message",
            description: "Post a message to a Slack channel (or reply in a thread).",
            effect: EffectClass::WriteExternal,
            schema: json!({
                "type": "object",
                "properties": {
                    "channel": {"type": "string", "minLength": 1, "description": "channel id (e.g. C0123456789) or name"},
                    "text": {"type": "string", "minLength": 1},
                    "thread_ts": {"type": "string", "description": "the `ts` of the message to reply to, for a thread reply"}
                },
                "required": ["channel", "text"],
                "additionalProperties": false
            }),
        },
        ActionSpec {
            name: "history",
            description: "Read the latest messages of a Slack channel, newest first.",
            effect: EffectClass::Read,
            schema: json!({
                "type": "object",
                "properties": {
                    "channel": {"type": "string", "minLength": 1, "description": "channel id"},
                    "limit": {"type": "integer", "minimum": 1, "maximum": 200, "description": "how many (default 20)"}
                },
                "required": ["channel"],
                "additionalProperties": false
            }),
        },
    ]
}

pub(super) async fn run(
    http: &reqwest::Client,
    connector: &Connector,
    action: &str,
    args: &Value,
    idempotency_key: &str,
) -> Result<ToolOutput, ToolError> {
    let base = connector
        .base_url
        .as_deref()
        .unwrap_or(DEFAULT_BASE_URL)
        .trim_end_matches('/');
    let token = token(connector)?;
    match action {
        "post_message" => post_message(http, base, &token, args, idempotency_key).await,
        "history" => history(http, base, &token, args).await,
        other => Err(ToolError::Refused(format!(
            "`{other}` is not a slack action"
        ))),
    }
}

fn token(connector: &Connector) -> Result<String, ToolError> {
    let variable = connector.token_env.as_deref().unwrap_or(DEFAULT_TOKEN_ENV);
    crate::secrets::from_env(variable, "the Slack bot token").map_err(ToolError::Refused)
}

async fn post_message(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    args: &Value,
    idempotency_key: &str,
) -> Result<ToolOutput, ToolError> {
    let mut body = json!({
        "channel": string_arg(args, "channel")?,
        "text": string_arg(args, "text")?,
        "metadata": {
            "event_type": "countersign_tool_call",
            "event_payload": {"idempotency_key": idempotency_key}
        }
    });
    if let Some(thread) = optional_string(args, "thread_ts")? {
        body["thread_ts"] = json!(thread);
    }
    // Slack warns about JSON bodies sent without a charset.
    let request = http
        .post(format!("{base}/chat.postMessage"))
        .bearer_auth(token)
        .header(CONTENT_TYPE, "application/json; charset=utf-8")
        .body(body.to_string());
    let answer = call(request, "chat.postMessage").await?;
    let mut output = json!({
        "ok": true,
        "channel": answer.get("channel").cloned().unwrap_or(Value::Null),
        "ts": answer.get("ts").cloned().unwrap_or(Value::Null),
    });
    if let Some(thread) = body.get("thread_ts") {
        output["thread_ts"] = thread.clone();
    }
    Ok(ToolOutput::ok(output.to_string()))
}

async fn history(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    args: &Value,
) -> Result<ToolOutput, ToolError> {
    let channel = string_arg(args, "channel")?;
    let limit = optional_limit(args, "limit", 20, 200)?;
    let request = http
        .get(format!("{base}/conversations.history"))
        .bearer_auth(token)
        .query(&[("channel", channel), ("limit", &limit.to_string())]);
    let answer = call(request, "conversations.history").await?;
    let messages: Vec<Value> = answer
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|m| {
            let mut item = json!({
                // Bots post without a user; their bot id says who wrote.
                "user": m.get("user").or_else(|| m.get("bot_id")).cloned().unwrap_or(Value::Null),
                "ts": m.get("ts").cloned().unwrap_or(Value::Null),
                "text": m.get("text").cloned().unwrap_or(Value::Null),
            });
            if let Some(thread) = m.get("thread_ts") {
                item["thread_ts"] = thread.clone();
            }
            item
        })
        .collect();
    let has_more = answer
        .get("has_more")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(ToolOutput::ok(
        json!({"channel": channel, "messages": messages, "has_more": has_more}).to_string(),
    ))
}

/// Sends one Web API request and returns its `ok: true` answer.
async fn call(request: reqwest::RequestBuilder, method: &str) -> Result<Value, ToolError> {
    let response = request
        .timeout(TIMEOUT)
        .send()
        .await
        .map_err(|e| ToolError::Transient(format!("Slack {method}: {e}")))?;
    let status = response.status();
    if status.as_u16() == 429 {
        let after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(|v| format!(" (Retry-After: {v} s)"))
            .unwrap_or_default();
        return Err(ToolError::Transient(format!(
            "Slack {method}: rate limited{after}"
        )));
    }
    let text = response
        .text()
        .await
        .map_err(|e| ToolError::Transient(format!("Slack {method}: {e}")))?;
    let excerpt: String = text.chars().take(1024).collect();
    if status.is_server_error() {
        return Err(ToolError::Transient(format!(
            "Slack {method}: {status}: {excerpt}"
        )));
    }
    if !status.is_success() {
        return Err(ToolError::Refused(format!(
            "Slack {method}: {status}: {excerpt}"
        )));
    }
    let answer: Value = serde_json::from_str(&text).map_err(|_| {
        ToolError::Refused(format!(
            "Slack {method}: the answer is not JSON (is `base_url` right?): {excerpt}"
        ))
    })?;
    if answer.get("ok").and_then(Value::as_bool) == Some(true) {
        return Ok(answer);
    }
    let code = answer
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("unknown_error");
    // `missing_scope` names the scope the token lacks.
    let needed = answer
        .get("needed")
        .and_then(Value::as_str)
        .map(|n| format!(" (needed: {n})"))
        .unwrap_or_default();
    let message = format!("Slack {method}: {code}{needed}");
    if matches!(
        code,
        "ratelimited" | "internal_error" | "service_unavailable"
    ) {
        Err(ToolError::Transient(message))
    } else {
        Err(ToolError::Refused(message))
    }
}
