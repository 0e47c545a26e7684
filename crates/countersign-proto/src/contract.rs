//! The names the outside world relies on: task queue, workflow type,
//! update, signal, queries, search attributes, and the bounds of a decision. The worker registers
//! them and every client addresses them through these constants.

/// The default task queue.
pub const TASK_QUEUE: &str = "countersign";
/// The workflow type of an agent run.
pub const WORKFLOW_TYPE: &str = "AgentRun";
/// The workflow type any workflow runs (as a child) to ask for one approval
/// before its own side effect: input `GateRequest`, output `GateOutcome`.
pub const GATE_WORKFLOW_TYPE: &str = "ApprovalGate";
/// The most characters of a gate's `context`.
pub const MAX_GATE_CONTEXT_CHARS: usize = 4000;
/// The most characters of a gate's `callerWorkflowId` (Temporal's own id limit).
pub const MAX_CALLER_WORKFLOW_ID_CHARS: usize = 1000;
/// Update: input `Decision`, output `DecisionOutcome`.
pub const UPDATE_DECIDE: &str = "decide";
/// Signal: input `Decision` (fire-and-forget; rejections recorded in `run_state`).
pub const SIGNAL_APPROVAL_DECISION: &str = "approval_decision";
/// Query: the run's open approvals.
pub const QUERY_PENDING_APPROVALS: &str = "pending_approvals";
/// Query: the run's `RunState`.
pub const QUERY_RUN_STATE: &str = "run_state";

/// Search attribute (Keyword): `Running`, `AwaitingApproval`, `Completed`, `Failed`, `Cancelled`.
pub const SA_STATUS: &str = "CountersignStatus";
/// Search attribute (KeywordList): the tools waiting for a decision.
pub const SA_PENDING_TOOLS: &str = "CountersignPendingTools";
/// Search attribute (KeywordList): the open approval ids.
pub const SA_APPROVAL_IDS: &str = "CountersignApprovalIds";
/// Search attribute (Keyword): the agent's name.
pub const SA_AGENT: &str = "CountersignAgent";
/// Search attribute (Keyword): who started the run.
pub const SA_REQUESTER: &str = "CountersignRequester";
/// Search attribute (KeywordList): the reviewer ids and groups that may
/// decide something open in the run, `*` for anyone
/// (`countersign_proto::inbox::approver_keywords`).
pub const SA_APPROVERS: &str = "CountersignApprovers";

/// Every search attribute with its Temporal type, as `temporal operator
/// search-attribute create` and `temporal server start-dev --search-attribute` take them.
pub const SEARCH_ATTRIBUTES: [(&str, &str); 6] = [
    (SA_STATUS, "Keyword"),
    (SA_PENDING_TOOLS, "KeywordList"),
    (SA_APPROVAL_IDS, "KeywordList"),
    (SA_APPROVERS, "KeywordList"),
    (SA_AGENT, "Keyword"),
    (SA_REQUESTER, "Keyword"),
];

/// The longest reason a decision may carry. Reasons are kept in the run's
/// state and shown to the model and to reviewers: a longer one is refused as
/// a whole rather than cut.
pub const MAX_REASON_CHARS: usize = 2000;

/// The longest approval id a decision may name: a workflow id (Temporal's
/// default limit is 1,000 characters), `~` and a suffix.
pub const MAX_APPROVAL_ID_CHARS: usize = 1024;
/// The longest reviewer id a decision may name.
pub const MAX_REVIEWER_CHARS: usize = 256;
/// The largest edited arguments a decision may carry, as canonical JSON.
pub const MAX_EDITED_ARGUMENTS_BYTES: usize = 64 * 1024;
/// How many refused decisions a run keeps in its state (the latest ones);
/// the rest are counted in `RunState.rejected_decisions_dropped`. With every
/// field bounded, no sequence of signals can grow a run past Temporal's
/// payload limits.
pub const MAX_REJECTED_RECORDS: usize = 50;
/// How many characters of a refused value a refusal message quotes.
pub const MAX_QUOTED_CHARS: usize = 64;

/// The largest decision (as JSON) a Countersign client sends, and a run
/// takes (a larger signal is recorded as refused, a larger update refused). Temporal's
/// default blob limit is 2 MiB, and the SDK echoes a rejected update's whole
/// request in the worker's reply: an update near that limit would fail the
/// run's workflow task instead of being refused. This keeps every decision
/// far below it.
pub const MAX_DECISION_BYTES: usize = 256 * 1024;

/// The first `max` characters of `text`, with `…` when it was longer:
/// messages never quote unbounded input.
pub fn excerpt(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// A decision over one of its bounds (or malformed in a way the bounds
/// cover): its refusal code and a message that quotes at most
/// [`MAX_QUOTED_CHARS`] of what was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct OutOfBounds {
    /// `TOO_LARGE`, or `INVALID` for a value of the wrong form.
    pub code: crate::RefusalCode,
    /// What is wrong.
    pub message: String,
}

impl OutOfBounds {
    fn too_large(message: String) -> Self {
        Self {
            code: crate::RefusalCode::TooLarge,
            message,
        }
    }

    fn invalid(message: String) -> Self {
        Self {
            code: crate::RefusalCode::Invalid,
            message,
        }
    }
}

/// Refuses a reason longer than [`MAX_REASON_CHARS`].
pub fn check_reason_bound(d: &crate::Decision) -> Result<(), OutOfBounds> {
    let length = d.reason.chars().count();
    if length > MAX_REASON_CHARS {
        return Err(OutOfBounds::too_large(format!(
            "reason is too long ({length} characters; at most {MAX_REASON_CHARS})"
        )));
    }
    Ok(())
}

/// Refuses a decision whose other fields are over their bounds or of the
/// wrong form: the approval id, the reviewer, the hash, the kind and scope,
/// the edited arguments, and the whole decision as JSON. The run applies
/// it (with [`check_reason_bound`]) to every update and signal; clients
/// apply it before sending.
pub fn check_field_bounds(d: &crate::Decision) -> Result<(), OutOfBounds> {
    let chars = |text: &str| text.chars().count();
    if chars(&d.approval_id) > MAX_APPROVAL_ID_CHARS {
        return Err(OutOfBounds::too_large(format!(
            "approvalId is too long ({} characters; at most {MAX_APPROVAL_ID_CHARS})",
            chars(&d.approval_id)
        )));
    }
    if chars(&d.reviewer) > MAX_REVIEWER_CHARS {
        return Err(OutOfBounds::too_large(format!(
            "reviewer is too long ({} characters; at most {MAX_REVIEWER_CHARS})",
            chars(&d.reviewer)
        )));
    }
    if d.reviewer.chars().any(char::is_control) {
        return Err(OutOfBounds::invalid(
            "reviewer must be one line without control characters".into(),
        ));
    }
    if !d.arguments_sha256.is_empty()
        && (d.arguments_sha256.len() != 64
            || !d.arguments_sha256.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        return Err(OutOfBounds::invalid(format!(
            "argumentsSha256 must be 64 hex digits (or absent), got `{}`",
            excerpt(&d.arguments_sha256, MAX_QUOTED_CHARS)
        )));
    }
    if crate::DecisionKind::try_from(d.kind).is_err() {
        return Err(OutOfBounds::invalid(
            "kind must be DECISION_KIND_APPROVE or DECISION_KIND_DENY".into(),
        ));
    }
    if crate::DecisionScope::try_from(d.scope).is_err() {
        return Err(OutOfBounds::invalid(
            "scope must be DECISION_SCOPE_ONCE or DECISION_SCOPE_RUN (or absent)".into(),
        ));
    }
    if let Some(edited) = &d.edited_arguments {
        let size = crate::canonical_json(&crate::struct_to_json(edited)).len();
        if size > MAX_EDITED_ARGUMENTS_BYTES {
            return Err(OutOfBounds::too_large(format!(
                "editedArguments are too large ({size} bytes as JSON; at most {MAX_EDITED_ARGUMENTS_BYTES})"
            )));
        }
    }
    if let Some(signature) = &d.signature {
        use crate::signing::{MAX_KEY_ID_CHARS, SIGNATURE_BASE64_CHARS};
        if chars(&signature.key_id) > MAX_KEY_ID_CHARS {
            return Err(OutOfBounds::too_large(format!(
                "signature.keyId is too long ({} characters; at most {MAX_KEY_ID_CHARS})",
                chars(&signature.key_id)
            )));
        }
        let length = chars(&signature.signature);
        if length > SIGNATURE_BASE64_CHARS {
            return Err(OutOfBounds::too_large(format!(
                "signature.signature is too long ({length} characters; an Ed25519 signature is {SIGNATURE_BASE64_CHARS} in base64)"
            )));
        }
        if length != SIGNATURE_BASE64_CHARS {
            return Err(OutOfBounds::invalid(format!(
                "signature.signature must be {SIGNATURE_BASE64_CHARS} base64 characters (a 64-byte Ed25519 signature), got {length}"
            )));
        }
    }
    let size = serde_json::to_vec(d).map_or(usize::MAX, |json| json.len());
    if size > MAX_DECISION_BYTES {
        return Err(OutOfBounds::too_large(format!(
            "the decision is too large ({size} bytes as JSON; at most {MAX_DECISION_BYTES})"
        )));
    }
    Ok(())
}

/// The separator between workflow id and approval number in an approval id.
/// An approval id is `<workflow id>~<suffix>`, so a decision can be routed to
/// its run from the id alone, without a visibility lookup.
pub const APPROVAL_ID_SEPARATOR: char = '~';

/// The workflow id an approval id belongs to, or `None` when the id has no
/// `~<suffix>` part.
pub fn workflow_id_of_approval(approval_id: &str) -> Option<&str> {
    match approval_id.rsplit_once(APPROVAL_ID_SEPARATOR) {
        Some((wf, suffix)) if !wf.is_empty() && !suffix.is_empty() => Some(wf),
        _ => None,
    }
}

/// The status names of the `CountersignStatus` search attribute, by `RunStatus`.
pub fn status_keyword(status: crate::RunStatus) -> &'static str {
    use crate::RunStatus::*;
    match status {
        Unspecified | Running => "Running",
        AwaitingApproval => "AwaitingApproval",
        Completed => "Completed",
        Failed => "Failed",
        Cancelled => "Cancelled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approval_ids_route_to_their_workflow() {
        assert_eq!(workflow_id_of_approval("run-1~a1b2"), Some("run-1"));
        assert_eq!(
            workflow_id_of_approval("run~with~tildes~a1"),
            Some("run~with~tildes")
        );
        assert_eq!(workflow_id_of_approval("no-separator"), None);
        assert_eq!(workflow_id_of_approval("~a1"), None);
        assert_eq!(workflow_id_of_approval("run-1~"), None);
    }
}
