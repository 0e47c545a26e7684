//! Announces approvals where reviewers are: a Slack message with Approve /
//! Deny buttons (updated once decided), and a signed webhook for other chat
//! tools. Runs in the `notify` activity; a failure never blocks a run.
//!
//! - [`slack`]: `chat.postMessage` when an approval opens, `chat.update` of
//!   the same message when it closes (the buttons give way to the result).
//! - [`webhook`]: an HMAC-signed JSON POST for `approval.pending` and
//!   `approval.decided`; its docs hold the verification recipe.
//!
//! # Failures and retries
//!
//! A channel that fails (network, HTTP 5xx, Slack's `ok: false`, a missing
//! environment variable) becomes a line in [`NotifyOutcome::problems`]; the
//! activity logs it and never fails. Transient failures (connection errors,
//! timeouts, 5xx, 429, Slack's `ratelimited` / `internal_error`) are retried
//! *inside the call*, each channel on its own: [`ATTEMPTS`] tries with a short
//! backoff (a 429's `Retry-After` is honoured up to 2 s). Failing the activity
//! so that Temporal retries it instead would repeat *every* channel of the
//! event: a webhook outage would post the Slack message again on each attempt,
//! and Slack's Web API has no idempotency key to deduplicate on. The worst
//! case stays inside the activity's 30 s start-to-close timeout: channels run
//! concurrently, each request is capped at [`REQUEST_TIMEOUT`].

pub mod slack;
pub mod webhook;

use countersign_policy::agent::NotifyConfig;
use countersign_proto::{DecisionRecord, PendingApproval};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::time::Duration;
use tracing::Instrument;

/// What happened to an approval.
// Built once per activity call and serialized at once: boxing the decision
// would only change the workflow's code, not any cost worth a heap hop.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NotifyEvent {
    /// The approval opened.
    Pending {
        /// The approval, with its context.
        approval: PendingApproval,
    },
    /// The approval is still waiting: a reminder, or an escalation (the
    /// approval's approvers now include the escalation groups).
    Waiting {
        /// The approval, as it stands now.
        approval: PendingApproval,
        /// Whether this is an escalation (else a reminder).
        escalated: bool,
        /// What happened, e.g. "reminder: still waiting for a decision after 4 h".
        note: String,
    },
    /// The approval closed: decided, or expired.
    Decided {
        /// The approval in its final state.
        approval: PendingApproval,
        /// The decision that closed it (absent when it expired).
        decision: Option<DecisionRecord>,
        /// The Slack message posted when it opened, to update.
        slack_message: Option<SlackMessage>,
    },
}

/// A posted Slack message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlackMessage {
    /// The channel id Slack answered with.
    pub channel: String,
    /// The message's `ts`.
    pub ts: String,
}

/// The input of the `notify` activity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotifyRequest {
    /// Where to announce.
    pub config: NotifyConfig,
    /// What to announce.
    pub event: NotifyEvent,
}

/// What the `notify` activity did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NotifyOutcome {
    /// The Slack message that shows the approval: the one posted for
    /// `Pending` (to update later), or the one updated or posted for `Decided`.
    pub slack_message: Option<SlackMessage>,
    /// One line per channel that failed (logged, never fatal).
    pub problems: Vec<String>,
}

/// How many times a channel is tried per event.
pub const ATTEMPTS: usize = 3;
/// The pause before the second and third attempt.
const BACKOFF: [Duration; ATTEMPTS - 1] = [Duration::from_millis(250), Duration::from_secs(1)];
/// The longest `Retry-After` honoured inside the call.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(2);
/// How long one request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(8);

impl NotifyEvent {
    /// The approval the event is about.
    pub fn approval(&self) -> &PendingApproval {
        match self {
            NotifyEvent::Pending { approval }
            | NotifyEvent::Waiting { approval, .. }
            | NotifyEvent::Decided { approval, .. } => approval,
        }
    }

    /// The event's name in logs: `pending`, `reminder`, `escalated` or `decided`.
    pub fn name(&self) -> &'static str {
        match self {
            NotifyEvent::Pending { .. } => "pending",
            NotifyEvent::Waiting {
                escalated: false, ..
            } => "reminder",
            NotifyEvent::Waiting {
                escalated: true, ..
            } => "escalated",
            NotifyEvent::Decided { .. } => "decided",
        }
    }
}

/// The span of worker code about one approval: every line logged in it
/// carries `approval_id`, `workflow_id` and `run_id`.
pub fn approval_span(approval: &PendingApproval) -> tracing::Span {
    tracing::info_span!(
        "approval",
        approval_id = %approval.approval_id,
        workflow_id = %approval.workflow_id,
        run_id = %approval.run_id,
    )
}

/// Announces `request.event` on every configured channel, concurrently, in
/// the approval's [`approval_span`]; logs the announcement (info) and each
/// channel that failed (warning).
pub async fn notify(http: &reqwest::Client, request: &NotifyRequest) -> NotifyOutcome {
    let span = approval_span(request.event.approval());
    let outcome = announce(http, request).instrument(span.clone()).await;
    span.in_scope(|| {
        for problem in &outcome.problems {
            tracing::warn!(event = request.event.name(), problem, "notification failed");
        }
        tracing::info!(
            event = request.event.name(),
            slack = request.config.slack_channel.is_some(),
            webhook = request.config.webhook_url.is_some(),
            problems = outcome.problems.len(),
            "approval announced"
        );
    });
    outcome
}

async fn announce(http: &reqwest::Client, request: &NotifyRequest) -> NotifyOutcome {
    let config = &request.config;
    let slack = async {
        match &config.slack_channel {
            Some(channel) => Some(slack::announce(http, config, channel, &request.event).await),
            None => None,
        }
    };
    let webhook = async {
        match &config.webhook_url {
            Some(url) => Some(webhook::announce(http, config, url, &request.event).await),
            None => None,
        }
    };
    let (slack, webhook) = futures::join!(slack, webhook);
    let mut outcome = NotifyOutcome::default();
    if let Some(slack) = slack {
        outcome.slack_message = slack.message;
        outcome
            .problems
            .extend(slack.problems.into_iter().map(|p| format!("slack: {p}")));
    }
    if let Some(Err(problem)) = webhook {
        outcome.problems.push(format!("webhook: {problem}"));
    }
    outcome
}

/// What one attempt at a request came to.
pub(crate) enum Attempt<T> {
    /// It worked.
    Done(T),
    /// It failed in a way worth another try (after `after`, if the server said).
    Retry {
        problem: String,
        after: Option<Duration>,
    },
    /// It failed for good.
    Fail(String),
}

/// Runs `attempt` up to [`ATTEMPTS`] times while it asks for a retry.
pub(crate) async fn with_retries<T, F, Fut>(mut attempt: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Attempt<T>>,
{
    let mut last = String::new();
    for n in 0..ATTEMPTS {
        match attempt().await {
            Attempt::Done(value) => return Ok(value),
            Attempt::Fail(problem) => return Err(problem),
            Attempt::Retry { problem, after } => {
                last = problem;
                if let Some(pause) = BACKOFF.get(n) {
                    tokio::time::sleep(after.map_or(*pause, |a| a.min(MAX_RETRY_AFTER))).await;
                }
            }
        }
    }
    Err(format!("{last} (gave up after {ATTEMPTS} attempts)"))
}

/// Sorts a sent request into a response to read, a retry or a failure:
/// connection errors, timeouts, 5xx and 429 are retried, other 4xx are not.
pub(crate) fn classify_response<T>(
    what: &str,
    sent: Result<reqwest::Response, reqwest::Error>,
) -> Result<reqwest::Response, Attempt<T>> {
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            return Err(Attempt::Retry {
                problem: format!("{what}: {}", error_chain(&e)),
                after: None,
            });
        }
    };
    let status = response.status();
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        return Err(Attempt::Retry {
            problem: format!("{what}: HTTP {status}"),
            after,
        });
    }
    if !status.is_success() {
        return Err(Attempt::Fail(format!("{what}: HTTP {status}")));
    }
    Ok(response)
}

/// An error with its sources, e.g. `error sending request: connection refused`.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn retries_stop_at_success_failure_or_the_attempt_limit() {
        let tries = AtomicUsize::new(0);
        let ok = with_retries(|| async {
            if tries.fetch_add(1, Ordering::SeqCst) == 0 {
                Attempt::Retry {
                    problem: "flaky".into(),
                    after: Some(Duration::ZERO),
                }
            } else {
                Attempt::Done(7)
            }
        })
        .await;
        assert_eq!(ok, Ok(7));
        assert_eq!(tries.load(Ordering::SeqCst), 2);

        let tries = AtomicUsize::new(0);
        let failed: Result<(), String> = with_retries(|| async {
            tries.fetch_add(1, Ordering::SeqCst);
            Attempt::Fail("bad".into())
        })
        .await;
        assert_eq!(failed, Err("bad".into()));
        assert_eq!(tries.load(Ordering::SeqCst), 1);

        let tries = AtomicUsize::new(0);
        let exhausted: Result<(), String> = with_retries(|| async {
            tries.fetch_add(1, Ordering::SeqCst);
            Attempt::Retry {
                problem: "down".into(),
                after: Some(Duration::ZERO),
            }
        })
        .await;
        assert_eq!(exhausted, Err("down (gave up after 3 attempts)".into()));
        assert_eq!(tries.load(Ordering::SeqCst), ATTEMPTS);
    }

    #[test]
    fn missing_secrets_name_their_variable() {
        let e =
            crate::secrets::from_env("COUNTERSIGN_NOTIFY_UNIT_NEVER_SET", "the Slack bot token")
                .unwrap_err();
        assert_eq!(
            e,
            "the environment variable `COUNTERSIGN_NOTIFY_UNIT_NEVER_SET` (the Slack bot token) is not set on the worker"
        );
    }
}
