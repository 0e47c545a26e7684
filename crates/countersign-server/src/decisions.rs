//! The one way the server decides: the API, the dashboard and Slack all
//! call [`decide`], which builds the decision with the authenticated
//! reviewer, looks the approval up, checks what the server can check
//! ([`check`]), sends the `decide` update, counts the answer in `/metrics`
//! and logs it, all in one [`decision_span`]. Every refusal is a
//! [`DecisionError`]; each front end maps it once: to problem+json
//! ([`crate::Problem`]), to the dashboard's page, to Slack's ephemeral text.
//!
//! The run is the authority and judges every decision again; these checks
//! only let a front end refuse early and say why.

use crate::metrics::{
    Channel, Metrics, decision_span, finish_decision, record_run_id, refuse_decision,
};
use crate::{AppState, Reviewer};
use axum::http::StatusCode;
use countersign_approvals::{ApprovalsError, ApproveOptions, approve_decision, deny_decision};
use countersign_proto::{ApprovalState, Decision, DecisionOutcome, PendingApproval, RefusalCode};
use tracing::Instrument;

/// What a reviewer decides, whatever the channel.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Approve, optionally with edited arguments, the `argumentsSha256` the
    /// reviewer saw, or for the rest of the run.
    Approve(ApproveOptions),
    /// Deny; the model is told the reason (required, not blank).
    Deny {
        /// Why.
        reason: String,
    },
}

/// A decision the run answered.
#[derive(Debug, Clone)]
pub struct Decided {
    /// The approval as the server read it before sending.
    pub approval: PendingApproval,
    /// The run's answer.
    pub outcome: DecisionOutcome,
}

/// Why a decision was not taken. Each variant has one HTTP status
/// ([`DecisionError::status`]); the dashboard and Slack word them their own way.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecisionError {
    /// 400: a denial without a reason (the model is told why).
    #[error("reason is required and must not be blank: the model is told why it was denied")]
    ReasonRequired,
    /// 400: edited arguments that are not a JSON object.
    #[error("editedArguments must be a JSON object of the tool's arguments")]
    EditsNotAnObject,
    /// 400: an `argumentsSha256` that is not 64 hex digits.
    #[error("argumentsSha256 must be 64 hex digits (the approval's argumentsSha256)")]
    MalformedArgumentsSha256,
    /// 400: a decision that cannot be sent (too long a reason, too large),
    /// or one the run refused for a reason of its own.
    #[error("{0}")]
    Invalid(String),
    /// 403: the reviewer is not among the approvers the run resolved.
    #[error(
        "{reviewer} may not decide approval `{approval_id}`: the run lets only {} decide it (approver groups {})",
        approvers.join(", "),
        approver_groups.join(", ")
    )]
    NotAnApprover {
        /// Who tried.
        reviewer: String,
        /// The approval.
        approval_id: String,
        /// Who may decide it.
        approvers: Vec<String>,
        /// The approver groups they come from.
        approver_groups: Vec<String>,
    },
    /// 403: the reviewer started the run, and the approval needs someone else
    /// (separation of duties).
    #[error(
        "{reviewer} started this run, and approval `{approval_id}` needs another reviewer (separation of duties)"
    )]
    OwnRequest {
        /// Who tried (the run's requester).
        reviewer: String,
        /// The approval.
        approval_id: String,
    },
    /// 403: the run refused the reviewer.
    #[error("{0}")]
    NotAllowed(String),
    /// 404: an unknown or malformed approval id, or a run that is gone.
    #[error("{0}")]
    NotFound(String),
    /// 409 (dashboard and Slack): the approval is no longer pending.
    #[error(
        "approval `{approval_id}` is no longer pending: it is {}",
        state_name(*state)
    )]
    Closed {
        /// The approval.
        approval_id: String,
        /// The tool it gates.
        tool: String,
        /// Its state.
        state: ApprovalState,
    },
    /// 409 (dashboard and Slack): the reviewer's approval already counts
    /// towards the approval's quorum.
    #[error(
        "{reviewer} already approved `{approval_id}`; it waits for {missing} more approval(s) from others"
    )]
    AlreadyApproved {
        /// Who tried.
        reviewer: String,
        /// The approval.
        approval_id: String,
        /// How many approvals are still missing.
        missing: u32,
    },
    /// 409: the run says the approval was already decided or has expired.
    #[error("{0}")]
    AlreadyDecided(String),
    /// 409: the arguments waiting are not the ones the reviewer saw.
    #[error("{0}")]
    StaleArguments(String),
    /// 422: edited arguments that do not fit the tool's JSON schema.
    #[error("{0}")]
    InvalidArguments(String),
    /// 503: Temporal cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// 502: Temporal answered with an error.
    #[error("{0}")]
    Temporal(String),
}

impl DecisionError {
    /// The refusal code of this refusal (as the run would give it); `None`
    /// when Temporal, not a rule, is the problem.
    pub fn code(&self) -> Option<RefusalCode> {
        Some(match self {
            DecisionError::ReasonRequired
            | DecisionError::EditsNotAnObject
            | DecisionError::MalformedArgumentsSha256
            | DecisionError::Invalid(_) => RefusalCode::Invalid,
            DecisionError::NotAnApprover { .. }
            | DecisionError::OwnRequest { .. }
            | DecisionError::AlreadyApproved { .. }
            | DecisionError::NotAllowed(_) => RefusalCode::NotAllowed,
            DecisionError::NotFound(_) => RefusalCode::NotFound,
            DecisionError::Closed { state, .. } if *state == ApprovalState::Expired => {
                RefusalCode::Expired
            }
            DecisionError::Closed { .. } | DecisionError::AlreadyDecided(_) => {
                RefusalCode::AlreadyDecided
            }
            DecisionError::StaleArguments(_) => RefusalCode::StaleArguments,
            DecisionError::InvalidArguments(_) => RefusalCode::InvalidArguments,
            DecisionError::Unavailable(_) | DecisionError::Temporal(_) => return None,
        })
    }

    /// The HTTP status of this refusal, on every channel that has one.
    pub fn status(&self) -> StatusCode {
        match self {
            DecisionError::ReasonRequired
            | DecisionError::EditsNotAnObject
            | DecisionError::MalformedArgumentsSha256
            | DecisionError::Invalid(_) => StatusCode::BAD_REQUEST,
            DecisionError::NotAnApprover { .. }
            | DecisionError::OwnRequest { .. }
            | DecisionError::NotAllowed(_) => StatusCode::FORBIDDEN,
            DecisionError::NotFound(_) => StatusCode::NOT_FOUND,
            DecisionError::Closed { .. }
            | DecisionError::AlreadyApproved { .. }
            | DecisionError::AlreadyDecided(_)
            | DecisionError::StaleArguments(_) => StatusCode::CONFLICT,
            DecisionError::InvalidArguments(_) => StatusCode::UNPROCESSABLE_ENTITY,
            DecisionError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            DecisionError::Temporal(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

/// The one mapping from the approvals crate's errors (by variant, never by
/// message text); the detail is the error's own message.
impl From<ApprovalsError> for DecisionError {
    fn from(e: ApprovalsError) -> Self {
        let message = e.to_string();
        match e {
            ApprovalsError::NotFound(_)
            | ApprovalsError::InvalidApprovalId(_)
            | ApprovalsError::UnknownPage(_) => DecisionError::NotFound(message),
            ApprovalsError::AlreadyDecided(_) | ApprovalsError::Expired(_) => {
                DecisionError::AlreadyDecided(message)
            }
            ApprovalsError::StaleArguments(_) => DecisionError::StaleArguments(message),
            ApprovalsError::NotAllowed(_) | ApprovalsError::Unsigned(_) => {
                DecisionError::NotAllowed(message)
            }
            ApprovalsError::InvalidArguments(_) => DecisionError::InvalidArguments(message),
            ApprovalsError::Rejected(_)
            | ApprovalsError::InvalidDecision(_)
            | ApprovalsError::InvalidListing(_)
            | ApprovalsError::TooLarge(_) => DecisionError::Invalid(message),
            ApprovalsError::Connection(_) => DecisionError::Unavailable(message),
            ApprovalsError::Temporal(_) | ApprovalsError::Transcript(_) => {
                DecisionError::Temporal(message)
            }
        }
    }
}

/// `APPROVED`, `DENIED`, `EXPIRED`, …
pub fn state_name(state: ApprovalState) -> &'static str {
    state.as_str_name().trim_start_matches("APPROVAL_STATE_")
}

/// The tool an approval gates (`?` when it does not say).
pub fn tool_name(approval: &PendingApproval) -> String {
    approval
        .tool
        .as_ref()
        .map_or_else(|| "?".into(), |t| t.name.clone())
}

/// Whether `channel` refuses, before sending, what is no longer the
/// reviewer's to decide: a closed approval, or one they already approved
/// under a quorum. The dashboard and Slack tell the person so. The API sends
/// those decisions, so that a retried request gets the run's first outcome
/// (the update id dedupes it) and anything else the run's refusal (409).
fn refuses_settled(channel: Channel) -> bool {
    match channel {
        Channel::Api => false,
        Channel::Dashboard | Channel::Slack => true,
    }
}

/// What the server can tell before sending: on the dashboard and Slack,
/// that the approval is still pending and not already approved by this
/// reviewer; on every channel, that the reviewer is among the approvers the
/// run resolved and is not the requester under separation of duties.
pub fn check(
    channel: Channel,
    reviewer: &Reviewer,
    approval: &PendingApproval,
) -> Result<(), DecisionError> {
    if refuses_settled(channel) && approval.state() != ApprovalState::Pending {
        return Err(DecisionError::Closed {
            approval_id: approval.approval_id.clone(),
            tool: tool_name(approval),
            state: approval.state(),
        });
    }
    if !reviewer.may_decide(approval) {
        return Err(DecisionError::NotAnApprover {
            reviewer: reviewer.id.clone(),
            approval_id: approval.approval_id.clone(),
            approvers: approval.approvers.clone(),
            approver_groups: approval.approver_groups.clone(),
        });
    }
    if approval.separation_of_duties && approval.requester == reviewer.id {
        return Err(DecisionError::OwnRequest {
            reviewer: reviewer.id.clone(),
            approval_id: approval.approval_id.clone(),
        });
    }
    if refuses_settled(channel)
        && approval.state() == ApprovalState::Pending
        && approval.approvals_given.contains(&reviewer.id)
    {
        return Err(DecisionError::AlreadyApproved {
            reviewer: reviewer.id.clone(),
            approval_id: approval.approval_id.clone(),
            missing: approval
                .required_approvals
                .saturating_sub(approval.approvals_given.len() as u32),
        });
    }
    Ok(())
}

/// Reads the approval and [`check`]s it, recording its run id on the
/// current span. Counts nothing: Slack's Deny button calls it before it
/// opens the dialog that asks for the reason.
pub async fn decidable(
    state: &AppState,
    channel: Channel,
    reviewer: &Reviewer,
    approval_id: &str,
) -> Result<PendingApproval, DecisionError> {
    let approval = state.approvals.get(approval_id).await?;
    record_run_id(&approval);
    check(channel, reviewer, &approval)?;
    Ok(approval)
}

/// The decision `verdict` stands for, as `reviewer`: refused before
/// anything is read when it is malformed (a blank denial reason, edits that
/// are not an object, an `argumentsSha256` that is not 64 hex digits).
/// Reasons are trimmed.
pub fn decision_of(
    approval_id: &str,
    reviewer: &Reviewer,
    verdict: Verdict,
) -> Result<Decision, DecisionError> {
    match verdict {
        Verdict::Approve(mut options) => {
            if options
                .edited_arguments
                .as_ref()
                .is_some_and(|v| !v.is_object())
            {
                return Err(DecisionError::EditsNotAnObject);
            }
            if let Some(sha) = &options.arguments_sha256
                && !(sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                return Err(DecisionError::MalformedArgumentsSha256);
            }
            options.reason = options.reason.trim().to_string();
            Ok(approve_decision(approval_id, &reviewer.id, options)?)
        }
        Verdict::Deny { reason } => {
            let reason = reason.trim();
            if reason.is_empty() {
                return Err(DecisionError::ReasonRequired);
            }
            Ok(deny_decision(approval_id, &reviewer.id, reason))
        }
    }
}

/// Decides `approval_id` as the authenticated `reviewer`, from `channel`:
/// builds the decision ([`decision_of`]; a malformed one is refused
/// uncounted), then, in a [`decision_span`], reads the approval and checks it
/// ([`decidable`]; a refusal is counted as `refused` and logged), sends the
/// `decide` update (update id `decide:<approval>:<reviewer>:<kind>`, so a
/// retry gets the first outcome) and counts the run's answer under
/// `channel`, timed from the approval's `requested_at`.
pub async fn decide(
    state: &AppState,
    metrics: Option<&Metrics>,
    channel: Channel,
    reviewer: &Reviewer,
    approval_id: &str,
    verdict: Verdict,
) -> Result<Decided, DecisionError> {
    let mut decision = decision_of(approval_id, reviewer, verdict)?;
    // Signed here, once, for every channel: the run then knows the
    // reviewer was set by this server, not typed by whoever reached it.
    if let Some(signer) = &state.signer {
        signer.sign(&mut decision);
    }
    let span = decision_span(channel, approval_id, &reviewer.id);
    async {
        let approval = match decidable(state, channel, reviewer, approval_id).await {
            Ok(approval) => approval,
            Err(e) => {
                refuse_decision(metrics, channel, &e);
                return Err(e);
            }
        };
        let result = state.approvals.decide(decision).await;
        finish_decision(metrics, channel, Some(&approval), result.as_ref().ok());
        Ok(Decided {
            outcome: result?,
            approval,
        })
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_proto::ToolRef;
    use serde_json::json;

    fn reviewer(id: &str) -> Reviewer {
        Reviewer {
            id: id.into(),
            token_sha256: "0".repeat(64),
            groups: vec![],
            slack_user_id: None,
        }
    }

    fn approval(state: ApprovalState) -> PendingApproval {
        PendingApproval {
            approval_id: "run-1~0badcafe".into(),
            requester: "alice@example.com".into(),
            approvers: vec!["bob@example.com".into(), "dave@example.com".into()],
            approver_groups: vec!["finance".into()],
            required_approvals: 2,
            tool: Some(ToolRef {
                name: "pay".into(),
                ..Default::default()
            }),
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn approvals_errors_map_by_variant_to_one_status_each() {
        for (e, status) in [
            (ApprovalsError::NotFound("x".into()), 404),
            (ApprovalsError::InvalidApprovalId("x".into()), 404),
            (ApprovalsError::AlreadyDecided("x".into()), 409),
            (ApprovalsError::StaleArguments("x".into()), 409),
            (ApprovalsError::NotAllowed("x".into()), 403),
            (ApprovalsError::InvalidArguments("x".into()), 422),
            (ApprovalsError::Rejected("x".into()), 400),
            (ApprovalsError::InvalidDecision("x".into()), 400),
            (ApprovalsError::Connection("x".into()), 503),
            (ApprovalsError::Temporal("x".into()), 502),
        ] {
            let message = e.to_string();
            let mapped = DecisionError::from(e);
            assert_eq!(mapped.status().as_u16(), status, "{mapped:?}");
            // The detail is the approvals crate's own message.
            assert_eq!(mapped.to_string(), message);
        }
    }

    #[test]
    fn the_server_checks_approvers_and_separation_of_duties_on_every_channel() {
        let pending = approval(ApprovalState::Pending);
        for channel in Channel::ALL {
            assert_eq!(
                check(channel, &reviewer("bob@example.com"), &pending),
                Ok(())
            );
            let refused = check(channel, &reviewer("erin@example.com"), &pending).unwrap_err();
            assert_eq!(refused.status(), StatusCode::FORBIDDEN);
            let text = refused.to_string();
            assert!(text.contains("erin@example.com may not decide"), "{text}");
            assert!(text.contains("bob@example.com, dave@example.com"), "{text}");
            assert!(text.contains("approver groups finance"), "{text}");
        }
        let mut own = pending.clone();
        own.separation_of_duties = true;
        own.requester = "bob@example.com".into();
        for channel in Channel::ALL {
            assert!(matches!(
                check(channel, &reviewer("bob@example.com"), &own),
                Err(DecisionError::OwnRequest { .. })
            ));
        }
        // Anyone, when the run resolved no approvers.
        let mut open = pending.clone();
        open.approvers.clear();
        assert_eq!(
            check(Channel::Api, &reviewer("erin@example.com"), &open),
            Ok(())
        );
    }

    #[test]
    fn only_interactive_channels_refuse_settled_approvals_before_sending() {
        let decided = approval(ApprovalState::Approved);
        let bob = reviewer("bob@example.com");
        // The API sends it: a retry gets the first outcome from the run.
        assert_eq!(check(Channel::Api, &bob, &decided), Ok(()));
        for channel in [Channel::Dashboard, Channel::Slack] {
            let refused = check(channel, &bob, &decided).unwrap_err();
            assert_eq!(refused.status(), StatusCode::CONFLICT);
            assert!(
                refused
                    .to_string()
                    .contains("no longer pending: it is APPROVED"),
                "{refused}"
            );
        }
        let mut quorum = approval(ApprovalState::Pending);
        quorum.approvals_given = vec!["bob@example.com".into()];
        assert_eq!(check(Channel::Api, &bob, &quorum), Ok(()));
        assert_eq!(
            check(Channel::Slack, &bob, &quorum),
            Err(DecisionError::AlreadyApproved {
                reviewer: bob.id.clone(),
                approval_id: quorum.approval_id.clone(),
                missing: 1,
            })
        );
        assert_eq!(
            check(Channel::Dashboard, &reviewer("dave@example.com"), &quorum),
            Ok(())
        );
    }

    #[test]
    fn malformed_decisions_are_refused_before_anything_is_read() {
        let bob = reviewer("bob@example.com");
        let approve = |options: ApproveOptions| decision_of("r~1", &bob, Verdict::Approve(options));
        assert_eq!(
            approve(ApproveOptions {
                edited_arguments: Some(json!([1, 2])),
                ..Default::default()
            })
            .unwrap_err(),
            DecisionError::EditsNotAnObject
        );
        assert_eq!(
            approve(ApproveOptions {
                arguments_sha256: Some("0000".into()),
                ..Default::default()
            })
            .unwrap_err(),
            DecisionError::MalformedArgumentsSha256
        );
        let deny = decision_of(
            "r~1",
            &bob,
            Verdict::Deny {
                reason: " \n ".into(),
            },
        );
        assert_eq!(deny.unwrap_err(), DecisionError::ReasonRequired);
        for e in [
            DecisionError::EditsNotAnObject,
            DecisionError::MalformedArgumentsSha256,
            DecisionError::ReasonRequired,
        ] {
            assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        }

        // The reviewer is always the authenticated one; reasons are trimmed.
        let decision = approve(ApproveOptions {
            reason: "  checked ".into(),
            arguments_sha256: Some("ab".repeat(32)),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(decision.reviewer, "bob@example.com");
        assert_eq!(decision.reason, "checked");
        let decision = decision_of(
            "r~1",
            &bob,
            Verdict::Deny {
                reason: " wrong supplier ".into(),
            },
        )
        .unwrap();
        assert_eq!(decision.reviewer, "bob@example.com");
        assert_eq!(decision.reason, "wrong supplier");
    }
}
