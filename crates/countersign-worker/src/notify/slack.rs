//! Approvals in Slack, over the Web API: a Block Kit message with Approve /
//! Deny buttons (`chat.postMessage`) when an approval opens, and the same
//! message with the result in place of the buttons (`chat.update`) when it
//! closes. The buttons are answered by `countersign serve` at
//! `/slack/interactions`.
//!
//! Everything a model or a user wrote (request, reason, arguments) and every
//! name is escaped for Slack's mrkdwn (`&`, `<`, `>`), so no text can form a
//! link, a mention (`<!channel>`) or a fake button label.

use super::{Attempt, REQUEST_TIMEOUT, SlackMessage, classify_response};
use crate::notify::NotifyEvent;
use countersign_policy::agent::NotifyConfig;
use countersign_proto::{ApprovalState, DecisionRecord, PendingApproval, struct_to_json};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};

/// The `action_id` of the Approve button.
pub const APPROVE_ACTION_ID: &str = "countersign_approve";
/// The `action_id` of the Deny button.
pub const DENY_ACTION_ID: &str = "countersign_deny";
/// The `block_id` of the actions block holding both buttons.
pub const ACTIONS_BLOCK_ID: &str = "countersign_decision";
/// The Web API's base URL when the agent does not set one.
pub const DEFAULT_API_BASE_URL: &str = "https://slack.com/api";
/// The bot token's environment variable when the agent does not name one.
pub const DEFAULT_TOKEN_ENV: &str = "SLACK_BOT_TOKEN";

/// Slack answers these `error` codes for trouble on its side: worth a retry.
const TRANSIENT_ERRORS: [&str; 5] = [
    "ratelimited",
    "internal_error",
    "fatal_error",
    "service_unavailable",
    "request_timeout",
];

/// Block Kit limits (characters), with a little room to spare.
const HEADER_MAX: usize = 150;
const FIELD_MAX: usize = 1900;
const SECTION_MAX: usize = 2900;
const ARGUMENTS_MAX: usize = 2500;
const FALLBACK_MAX: usize = 1000;

/// What announcing on Slack came to.
pub(super) struct SlackResult {
    pub message: Option<SlackMessage>,
    pub problems: Vec<String>,
}

/// Posts (`Pending`) or updates (`Decided`) the approval's message.
pub(super) async fn announce(
    http: &reqwest::Client,
    config: &NotifyConfig,
    channel: &str,
    event: &NotifyEvent,
) -> SlackResult {
    let failed = |problem: String| SlackResult {
        message: None,
        problems: vec![problem],
    };
    let token_env = config
        .slack_token_env
        .as_deref()
        .unwrap_or(DEFAULT_TOKEN_ENV);
    let token = match crate::secrets::from_env(token_env, "the Slack bot token") {
        Ok(token) => token,
        Err(problem) => return failed(problem),
    };
    let api = Api {
        http,
        base: config
            .slack_api_base_url
            .as_deref()
            .unwrap_or(DEFAULT_API_BASE_URL)
            .trim_end_matches('/'),
        token: &token,
    };
    let dashboard = config.dashboard_url.as_deref();
    match event {
        NotifyEvent::Pending { approval } => {
            let mut body = pending_message(approval, dashboard);
            body["channel"] = json!(channel);
            match api.post(&body).await {
                Ok(message) => SlackResult {
                    message: Some(message),
                    problems: vec![],
                },
                Err(problem) => failed(problem),
            }
        }
        // A new message with the buttons, so whoever is reminded (or newly
        // allowed after an escalation) can decide from it.
        NotifyEvent::Waiting {
            approval,
            escalated,
            note,
        } => {
            let mut body = pending_message(approval, dashboard);
            let prefix = if *escalated { "Escalated" } else { "Reminder" };
            body["blocks"][0] = header(&format!("{prefix}: {}", tool_name(approval)));
            if let Some(blocks) = body["blocks"].as_array_mut() {
                blocks.insert(
                    1,
                    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": escape_truncated(note, FALLBACK_MAX)}]}),
                );
            }
            body["text"] = json!(escape_truncated(
                &format!("{prefix}: {} — {note}", tool_name(approval)),
                FALLBACK_MAX
            ));
            body["channel"] = json!(channel);
            match api.post(&body).await {
                Ok(message) => SlackResult {
                    message: Some(message),
                    problems: vec![],
                },
                Err(problem) => failed(problem),
            }
        }
        NotifyEvent::Decided {
            approval,
            decision,
            slack_message,
        } => {
            let mut body = decided_message(approval, decision.as_ref(), dashboard);
            let mut problems = vec![];
            if let Some(posted) = slack_message {
                body["channel"] = json!(posted.channel);
                body["ts"] = json!(posted.ts);
                match api.call("chat.update", &body).await {
                    Ok(_) => {
                        return SlackResult {
                            message: Some(posted.clone()),
                            problems,
                        };
                    }
                    // Deleted, or otherwise not editable: the result still
                    // deserves a message of its own.
                    Err(problem) => {
                        problems.push(format!("{problem}; posting the result as a new message"))
                    }
                }
                if let Some(object) = body.as_object_mut() {
                    object.remove("ts");
                }
            }
            body["channel"] = json!(channel);
            match api.post(&body).await {
                Ok(message) => SlackResult {
                    message: Some(message),
                    problems,
                },
                Err(problem) => {
                    problems.push(problem);
                    SlackResult {
                        message: None,
                        problems,
                    }
                }
            }
        }
    }
}

/// The Web API with a token.
struct Api<'a> {
    http: &'a reqwest::Client,
    base: &'a str,
    token: &'a str,
}

impl Api<'_> {
    /// `chat.postMessage`; answers the channel id and `ts` Slack assigned.
    async fn post(&self, body: &Value) -> Result<SlackMessage, String> {
        let answer = self.call("chat.postMessage", body).await?;
        match (answer["channel"].as_str(), answer["ts"].as_str()) {
            (Some(channel), Some(ts)) => Ok(SlackMessage {
                channel: channel.to_string(),
                ts: ts.to_string(),
            }),
            _ => Err(format!(
                "chat.postMessage: the answer has no channel and ts: {answer}"
            )),
        }
    }

    /// Calls a Web API method with a JSON body; answers the JSON of an `ok` answer.
    async fn call(&self, method: &str, body: &Value) -> Result<Value, String> {
        let url = format!("{}/{method}", self.base);
        let body = body.to_string();
        super::with_retries(|| async {
            // Slack warns about JSON bodies sent without a charset.
            let sent = self
                .http
                .post(&url)
                .bearer_auth(self.token)
                .header(CONTENT_TYPE, "application/json; charset=utf-8")
                .timeout(REQUEST_TIMEOUT)
                .body(body.clone())
                .send()
                .await;
            let response = match classify_response(method, sent) {
                Ok(response) => response,
                Err(attempt) => return attempt,
            };
            let answer: Value = match response.json().await {
                Ok(answer) => answer,
                Err(e) => return Attempt::Fail(format!("{method}: the answer is not JSON: {e}")),
            };
            if answer["ok"].as_bool() == Some(true) {
                return Attempt::Done(answer);
            }
            let error = answer["error"]
                .as_str()
                .unwrap_or("no error code")
                .to_string();
            let problem = format!("{method}: {error}");
            if TRANSIENT_ERRORS.contains(&error.as_str()) {
                Attempt::Retry {
                    problem,
                    after: None,
                }
            } else {
                Attempt::Fail(problem)
            }
        })
        .await
    }
}

/// The message announcing an open approval (no `channel`): header, context
/// fields, the request and the model's reason, the arguments, the approval
/// id (and a dashboard link), then Approve / Deny buttons whose `value` is
/// the approval id, plus a plain `text` fallback for notifications.
pub fn pending_message(approval: &PendingApproval, dashboard_url: Option<&str>) -> Value {
    let tool = tool_name(approval);
    let mut blocks = vec![header(&format!("Approval needed: {tool}"))];
    blocks.extend(summary_blocks(approval));
    blocks.push(footer(approval, dashboard_url));
    blocks.push(json!({
        "type": "actions",
        "block_id": ACTIONS_BLOCK_ID,
        "elements": [
            button("Approve", APPROVE_ACTION_ID, "primary", &approval.approval_id),
            button("Deny", DENY_ACTION_ID, "danger", &approval.approval_id),
        ]
    }));
    let text = format!(
        "Approval needed: {} wants to call {} ({}), requested by {}",
        or_dash(&approval.agent),
        tool,
        or_dash(&approval.effect_class),
        or_dash(&approval.requester),
    );
    json!({"text": escape_truncated(&text, FALLBACK_MAX), "blocks": blocks})
}

/// The message of a closed approval (no `channel` / `ts`): the same context
/// with the result where the buttons were, e.g. `✅ Approved by bob (ok)`.
pub fn decided_message(
    approval: &PendingApproval,
    decision: Option<&DecisionRecord>,
    dashboard_url: Option<&str>,
) -> Value {
    let tool = tool_name(approval);
    let verb = match approval.state() {
        ApprovalState::Approved | ApprovalState::ApprovedWithEdits => "Approved",
        ApprovalState::Denied => "Denied",
        ApprovalState::Expired => "Expired",
        ApprovalState::Pending | ApprovalState::Unspecified => "Closed",
    };
    let result = outcome_text(approval, decision);
    let mut blocks = vec![header(&format!("{verb}: {tool}"))];
    blocks.extend(summary_blocks(approval));
    blocks.push(json!({
        "type": "section",
        "block_id": "countersign_result",
        "text": mrkdwn(&format!("*{}*", escape_truncated(&result, SECTION_MAX))),
    }));
    if let Some(edited) = decision.and_then(|d| d.edited_arguments.as_ref()) {
        blocks.push(section(&code_block(
            "Arguments as approved",
            &struct_to_json(edited),
        )));
    }
    blocks.push(footer(approval, dashboard_url));
    let text = format!("{result}: {tool} ({})", or_dash(&approval.agent));
    json!({"text": escape_truncated(&text, FALLBACK_MAX), "blocks": blocks})
}

/// The result line of a closed approval (unescaped): `✅ Approved by X
/// (reason)`, `✅ Approved with edits by X`, `❌ Denied by X: reason` or
/// `⌛ Expired: nobody decided in time`.
pub fn outcome_text(approval: &PendingApproval, decision: Option<&DecisionRecord>) -> String {
    // With a quorum every approver is named; otherwise the deciding reviewer.
    let who = if approval.approvals_given.len() > 1 {
        approval.approvals_given.join(", ")
    } else {
        decision
            .map(|d| d.reviewer.clone())
            .filter(|r| !r.is_empty())
            .or_else(|| approval.approvals_given.first().cloned())
            .unwrap_or_else(|| "an unknown reviewer".into())
    };
    let reason = decision.map(|d| d.reason.trim()).unwrap_or_default();
    let with_reason = |text: String| {
        if reason.is_empty() {
            text
        } else {
            format!("{text} ({reason})")
        }
    };
    match approval.state() {
        ApprovalState::Approved => with_reason(format!("✅ Approved by {who}")),
        ApprovalState::ApprovedWithEdits => with_reason(format!("✅ Approved with edits by {who}")),
        ApprovalState::Denied => format!(
            "❌ Denied by {who}: {}",
            if reason.is_empty() {
                "no reason given"
            } else {
                reason
            }
        ),
        ApprovalState::Expired => "⌛ Expired: nobody decided in time".into(),
        ApprovalState::Pending | ApprovalState::Unspecified => "Closed".into(),
    }
}

/// Escapes Slack's mrkdwn control characters: `&`, `<` and `>`.
pub fn escape(text: &str) -> String {
    escape_truncated(text, usize::MAX)
}

/// Escapes `text` and keeps the result within `max` characters, ending in
/// `…` when it was cut (never inside an escape sequence).
pub fn escape_truncated(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut used = 0usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        let piece = match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            c => c.to_string(),
        };
        let len = piece.chars().count();
        // Keep one character for the ellipsis unless this is the last piece.
        let room = if chars.peek().is_some() {
            max.saturating_sub(1)
        } else {
            max
        };
        if used + len > room {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
        used += len;
    }
    out
}

fn tool_name(approval: &PendingApproval) -> String {
    approval
        .tool
        .as_ref()
        .map(|t| t.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "unknown tool".into())
}

fn or_dash(text: &str) -> &str {
    if text.is_empty() { "—" } else { text }
}

fn mrkdwn(text: &str) -> Value {
    json!({"type": "mrkdwn", "text": text})
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": mrkdwn(text)})
}

/// A header block; plain text, which Slack shows as is (no escaping).
fn header(text: &str) -> Value {
    let text: String = if text.chars().count() > HEADER_MAX {
        text.chars()
            .take(HEADER_MAX - 1)
            .chain(std::iter::once('…'))
            .collect()
    } else {
        text.to_string()
    };
    json!({"type": "header", "text": {"type": "plain_text", "text": text, "emoji": true}})
}

/// `*Label*` over an escaped value, for a section's fields.
fn field(label: &str, value: &str) -> Value {
    mrkdwn(&format!(
        "*{label}*\n{}",
        escape_truncated(or_dash(value.trim()), FIELD_MAX)
    ))
}

fn button(label: &str, action_id: &str, style: &str, value: &str) -> Value {
    json!({
        "type": "button",
        "text": {"type": "plain_text", "text": label, "emoji": true},
        "action_id": action_id,
        "style": style,
        "value": value,
    })
}

/// Context fields, the request, the model's reason and the arguments.
fn summary_blocks(approval: &PendingApproval) -> Vec<Value> {
    let tool = approval.tool.clone().unwrap_or_default();
    let mut tool_text = format!("`{}`", escape_truncated(&tool_name(approval), 200));
    let origin: Vec<&str> = [tool.kind.as_str(), tool.provider.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect();
    if !origin.is_empty() {
        tool_text.push_str(&format!(" ({})", escape_truncated(&origin.join(", "), 200)));
    }
    let mut approvers = if approval.approver_groups.is_empty() {
        "any reviewer".to_string()
    } else {
        approval.approver_groups.join(", ")
    };
    if !approval.approvers.is_empty() {
        approvers.push_str(&format!(" ({})", approval.approvers.join(", ")));
    }
    if approval.required_approvals > 1 {
        approvers.push_str(&format!(
            "; {} approvals needed",
            approval.required_approvals
        ));
    }
    if approval.separation_of_duties {
        approvers.push_str("; not the requester");
    }
    let mut fields = vec![
        field("Agent", &approval.agent),
        field("Requested by", &approval.requester),
        mrkdwn(&format!("*Tool*\n{tool_text}")),
        field("Effect class", &approval.effect_class),
        field("Rule", &approval.rule),
        mrkdwn(&format!("*Expires*\n{}", expires_text(approval))),
        field("Approver groups", &approvers),
    ];
    if !approval.parent_workflow_id.is_empty() {
        fields.push(field("Parent run", &approval.parent_workflow_id));
    }
    let arguments = approval
        .arguments
        .as_ref()
        .map(struct_to_json)
        .unwrap_or_else(|| json!({}));
    vec![
        json!({"type": "section", "fields": fields}),
        section(&format!(
            "*Request*\n{}",
            escape_truncated(or_dash(approval.user_request.trim()), SECTION_MAX)
        )),
        section(&format!(
            "*Model's reason*\n{}",
            escape_truncated(or_dash(approval.model_reason.trim()), SECTION_MAX)
        )),
        section(&code_block("Arguments", &arguments)),
    ]
}

/// `*Label*` over pretty JSON in a code block, escaped and cut to fit.
fn code_block(label: &str, value: &Value) -> String {
    let pretty = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    // A ``` inside the JSON would end the block early.
    let pretty = pretty.replace("```", "`\u{200b}`\u{200b}`");
    format!(
        "*{label}*\n```{}```",
        escape_truncated(&pretty, ARGUMENTS_MAX)
    )
}

/// The deadline in each reader's own time zone, with UTC as the fallback.
fn expires_text(approval: &PendingApproval) -> String {
    let Some(expires) = &approval.expires_at else {
        return "—".into();
    };
    let utc = serde_json::to_value(expires)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{} (unix)", expires.seconds));
    format!(
        "<!date^{}^{{date_short_pretty}} {{time}}|{}>",
        expires.seconds,
        escape(&utc)
    )
}

/// The approval id (and hash), and a dashboard link when one is configured.
fn footer(approval: &PendingApproval, dashboard_url: Option<&str>) -> Value {
    let mut elements = vec![mrkdwn(&format!(
        "Approval id: `{}`",
        escape_truncated(&approval.approval_id, 1000)
    ))];
    if approval.arguments_sha256.len() >= 12 {
        elements.push(mrkdwn(&format!(
            "sha256 `{}…`",
            escape(&approval.arguments_sha256[..12])
        )));
    }
    if let Some(url) = dashboard_link(dashboard_url, &approval.approval_id) {
        elements.push(mrkdwn(&format!("<{url}|Open in the dashboard>")));
    }
    json!({"type": "context", "elements": elements})
}

/// `<dashboard>/?approval=<id>`; `None` without a dashboard URL. The URL is
/// the operator's; the id is percent-encoded, so neither can break the link.
pub fn dashboard_link(dashboard_url: Option<&str>, approval_id: &str) -> Option<String> {
    let base = dashboard_url?.trim().trim_end_matches('/');
    if base.is_empty() || base.contains(['|', '<', '>']) {
        return None;
    }
    Some(format!(
        "{base}/?approval={}",
        utf8_percent_encode(approval_id, NON_ALPHANUMERIC)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_proto::{DecisionKind, ToolRef, json_to_struct};

    fn approval() -> PendingApproval {
        PendingApproval {
            approval_id: "pay-run~1a2b3c4d".into(),
            workflow_id: "pay-run".into(),
            agent: "payments".into(),
            requester: "alice@example.com".into(),
            tool: Some(ToolRef {
                kind: "builtin".into(),
                provider: String::new(),
                name: "send_payment".into(),
            }),
            arguments: Some(
                json_to_struct(&json!({"to": "ACME <!channel> & co", "amount": 1250})).unwrap(),
            ),
            arguments_sha256: "3a29e6c46c1a67fb1fa3311536d5cfa4cb2517b2f8e3291bf479d2b50decae15"
                .into(),
            effect_class: "money".into(),
            rule: "money: always needs approval".into(),
            required_approvals: 1,
            expires_at: Some(pbjson_types::Timestamp {
                seconds: 1_795_531_482,
                nanos: 0,
            }),
            user_request: "Pay <@U123> the invoice".into(),
            model_reason: "Invoice is due > today & <https://evil.example|click>".into(),
            state: ApprovalState::Pending as i32,
            approver_groups: vec!["finance".into()],
            ..Default::default()
        }
    }

    fn all_text(message: &Value) -> String {
        message.to_string()
    }

    #[test]
    fn escaping_covers_the_three_control_characters() {
        assert_eq!(escape("a & <b> c"), "a &amp; &lt;b&gt; c");
        assert_eq!(escape("plain ✅"), "plain ✅");
    }

    #[test]
    fn truncation_counts_characters_and_never_splits_an_escape() {
        assert_eq!(escape_truncated("abcdef", 6), "abcdef");
        assert_eq!(escape_truncated("abcdefg", 6), "abcde…");
        // `&amp;` would not fit after "abc" with the ellipsis: cut before it.
        assert_eq!(escape_truncated("abc&def", 7), "abc…");
        assert_eq!(escape_truncated("ééééé", 3), "éé…");
        let long = "x".repeat(10_000);
        assert_eq!(escape_truncated(&long, 100).chars().count(), 100);
    }

    #[test]
    fn pending_messages_have_context_arguments_and_both_buttons() {
        let message = pending_message(&approval(), Some("https://cs.example.com/"));
        let blocks = message["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        assert_eq!(blocks[0]["text"]["text"], "Approval needed: send_payment");
        let fields: Vec<&str> = blocks[1]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert_eq!(fields[0], "*Agent*\npayments");
        assert_eq!(fields[1], "*Requested by*\nalice@example.com");
        assert_eq!(fields[2], "*Tool*\n`send_payment` (builtin)");
        assert_eq!(fields[3], "*Effect class*\nmoney");
        assert_eq!(fields[4], "*Rule*\nmoney: always needs approval");
        assert_eq!(
            fields[5],
            "*Expires*\n<!date^1795531482^{date_short_pretty} {time}|2026-11-24T14:44:42+00:00>"
        );
        assert_eq!(fields[6], "*Approver groups*\nfinance");
        assert_eq!(fields.len(), 7, "no parent run");

        let actions = blocks.last().unwrap();
        assert_eq!(actions["type"], "actions");
        let buttons = actions["elements"].as_array().unwrap();
        assert_eq!(buttons[0]["action_id"], APPROVE_ACTION_ID);
        assert_eq!(buttons[0]["style"], "primary");
        assert_eq!(buttons[0]["value"], "pay-run~1a2b3c4d");
        assert_eq!(buttons[1]["action_id"], DENY_ACTION_ID);
        assert_eq!(buttons[1]["style"], "danger");
        assert_eq!(buttons[1]["value"], "pay-run~1a2b3c4d");

        let text = all_text(&message);
        assert!(text.contains("Approval id: `pay-run~1a2b3c4d`"), "{text}");
        assert!(
            text.contains(
                "<https://cs.example.com/?approval=pay%2Drun%7E1a2b3c4d|Open in the dashboard>"
            ),
            "{text}"
        );
        assert!(text.contains("sha256 `3a29e6c46c1a…`"), "{text}");
        assert!(
            message["text"]
                .as_str()
                .unwrap()
                .starts_with("Approval needed: payments wants to call send_payment (money)")
        );
    }

    #[test]
    fn model_text_cannot_mention_link_or_break_the_code_block() {
        let mut a = approval();
        a.arguments = Some(
            json_to_struct(&json!({"to": "ACME <!channel> & co", "note": "```<!here>```"}))
                .unwrap(),
        );
        let text = all_text(&pending_message(&a, None));
        assert!(
            !text.contains("<!channel>") && !text.contains("<!here>"),
            "{text}"
        );
        assert!(!text.contains("<@U123>"), "{text}");
        assert!(!text.contains("<https://evil"), "{text}");
        assert!(text.contains("Pay &lt;@U123&gt; the invoice"), "{text}");
        assert!(
            text.contains("Invoice is due &gt; today &amp; &lt;https://evil.example|click&gt;"),
            "{text}"
        );
        assert!(text.contains("ACME &lt;!channel&gt; &amp; co"), "{text}");
        // The only code fences are the block's own two.
        let arguments = pending_message(&a, None)["blocks"][4]["text"]["text"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(arguments.matches("```").count(), 2, "{arguments}");
        assert!(!text.contains("Open in the dashboard"));
    }

    #[test]
    fn long_arguments_are_cut_to_fit_a_section() {
        let mut a = approval();
        a.arguments = Some(json_to_struct(&json!({"body": "<".repeat(20_000)})).unwrap());
        let message = pending_message(&a, None);
        let arguments = message["blocks"][4]["text"]["text"].as_str().unwrap();
        assert!(arguments.chars().count() < 3000, "{}", arguments.len());
        assert!(arguments.ends_with("…```"), "{arguments}");
    }

    #[test]
    fn parent_runs_and_open_groups_are_shown() {
        let mut a = approval();
        a.parent_workflow_id = "parent-1".into();
        a.approver_groups.clear();
        let message = pending_message(&a, None);
        let fields = message["blocks"][1]["fields"].as_array().unwrap();
        assert_eq!(fields[6]["text"], "*Approver groups*\nany reviewer");
        a.approver_groups = vec!["finance".into()];
        a.approvers = vec!["bob@example.com".into(), "carol@example.com".into()];
        a.required_approvals = 2;
        a.separation_of_duties = true;
        let message = pending_message(&a, None);
        assert_eq!(
            message["blocks"][1]["fields"][6]["text"],
            "*Approver groups*\nfinance (bob@example.com, carol@example.com); 2 approvals needed; not the requester"
        );
        assert_eq!(fields[7]["text"], "*Parent run*\nparent-1");
    }

    fn record(kind: DecisionKind, reviewer: &str, reason: &str) -> DecisionRecord {
        DecisionRecord {
            approval_id: "pay-run~1a2b3c4d".into(),
            kind: kind as i32,
            reviewer: reviewer.into(),
            reason: reason.into(),
            accepted: true,
            ..Default::default()
        }
    }

    fn closed(state: ApprovalState) -> PendingApproval {
        PendingApproval {
            state: state as i32,
            ..approval()
        }
    }

    #[test]
    fn outcome_lines_name_the_reviewer_and_reason() {
        let approve = record(DecisionKind::Approve, "bob", "invoice checked");
        assert_eq!(
            outcome_text(&closed(ApprovalState::Approved), Some(&approve)),
            "✅ Approved by bob (invoice checked)"
        );
        assert_eq!(
            outcome_text(
                &closed(ApprovalState::Approved),
                Some(&record(DecisionKind::Approve, "bob", ""))
            ),
            "✅ Approved by bob"
        );
        assert_eq!(
            outcome_text(
                &closed(ApprovalState::ApprovedWithEdits),
                Some(&record(DecisionKind::Approve, "bob", ""))
            ),
            "✅ Approved with edits by bob"
        );
        assert_eq!(
            outcome_text(
                &closed(ApprovalState::Denied),
                Some(&record(DecisionKind::Deny, "carol", "wrong supplier"))
            ),
            "❌ Denied by carol: wrong supplier"
        );
        assert_eq!(
            outcome_text(&closed(ApprovalState::Expired), None),
            "⌛ Expired: nobody decided in time"
        );
    }

    #[test]
    fn decided_messages_replace_the_buttons_with_the_result() {
        let mut decision = record(DecisionKind::Deny, "carol<script>", "wrong & late");
        let message = decided_message(
            &closed(ApprovalState::Denied),
            Some(&decision),
            Some("https://cs.example.com"),
        );
        let blocks = message["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["text"]["text"], "Denied: send_payment");
        assert!(blocks.iter().all(|b| b["type"] != "actions"));
        let result = blocks
            .iter()
            .find(|b| b["block_id"] == "countersign_result");
        assert_eq!(
            result.unwrap()["text"]["text"],
            "*❌ Denied by carol&lt;script&gt;: wrong &amp; late*"
        );
        assert!(
            message["text"]
                .as_str()
                .unwrap()
                .starts_with("❌ Denied by carol&lt;script&gt;: wrong &amp; late: send_payment")
        );

        decision.kind = DecisionKind::Approve as i32;
        decision.edited_arguments = Some(json_to_struct(&json!({"amount": 1200})).unwrap());
        let message = decided_message(
            &closed(ApprovalState::ApprovedWithEdits),
            Some(&decision),
            None,
        );
        let text = all_text(&message);
        assert!(text.contains("Arguments as approved"), "{text}");
        assert!(text.contains("1200"), "{text}");
    }
}
