//! Typed errors of the approvals client.

use temporalio_client::errors::{
    WorkflowInteractionError, WorkflowQueryError, WorkflowUpdateError,
};

/// Why a call of the approvals client failed.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalsError {
    /// No such approval (or run).
    #[error("not found: {0}")]
    NotFound(String),
    /// The approval id does not have the `<workflow id>~<suffix>` form.
    #[error("`{0}` is not an approval id (expected `<workflow id>~<suffix>`)")]
    InvalidApprovalId(String),
    /// The approval was already decided (or expired).
    #[error("{0}")]
    AlreadyDecided(String),
    /// The reviewer saw other arguments than the call now waiting has.
    #[error("{0}")]
    StaleArguments(String),
    /// The reviewer may not decide this call (approver groups, separation of duties).
    #[error("{0}")]
    NotAllowed(String),
    /// Edited arguments do not fit the tool's JSON schema.
    #[error("{0}")]
    InvalidArguments(String),
    /// The run refused the decision for another reason (missing reviewer, bad kind, ...).
    #[error("decision refused: {0}")]
    Rejected(String),
    /// The decision could not be built (e.g. edited arguments that are not an object).
    #[error("invalid decision: {0}")]
    InvalidDecision(String),
    /// Temporal could not be reached.
    #[error("{0}")]
    Connection(String),
    /// Temporal answered with an error.
    #[error("{0}")]
    Temporal(String),
}

/// Sorts a rejection message from the run's validator into its kind.
pub(crate) fn from_rejection(message: String) -> ApprovalsError {
    if message.starts_with("unknown approval id") {
        ApprovalsError::NotFound(message)
    } else if message.contains("already decided") || message.contains("expired") {
        ApprovalsError::AlreadyDecided(message)
    } else if message.starts_with("stale argumentsSha256") {
        ApprovalsError::StaleArguments(message)
    } else if message.starts_with("not allowed:") {
        ApprovalsError::NotAllowed(message)
    } else if message.starts_with("edited arguments do not fit") {
        ApprovalsError::InvalidArguments(message)
    } else {
        ApprovalsError::Rejected(message)
    }
}

pub(crate) fn from_update(e: WorkflowUpdateError, approval_id: &str) -> ApprovalsError {
    match e {
        WorkflowUpdateError::Failed(failure) => from_rejection(failure.message.clone()),
        WorkflowUpdateError::NotFound(_) => ApprovalsError::NotFound(format!(
            "approval `{approval_id}`: its run does not exist or has closed"
        )),
        other => connection_or_temporal(other.to_string()),
    }
}

pub(crate) fn from_query(e: WorkflowQueryError, workflow_id: &str) -> ApprovalsError {
    match e {
        WorkflowQueryError::NotFound(_) => ApprovalsError::NotFound(format!("run `{workflow_id}`")),
        other => connection_or_temporal(format!("run `{workflow_id}`: {other}")),
    }
}

pub(crate) fn from_interaction(e: WorkflowInteractionError, approval_id: &str) -> ApprovalsError {
    match e {
        WorkflowInteractionError::NotFound(_) => ApprovalsError::NotFound(format!(
            "approval `{approval_id}`: its run does not exist or has closed"
        )),
        other => connection_or_temporal(other.to_string()),
    }
}

fn connection_or_temporal(message: String) -> ApprovalsError {
    let lower = message.to_lowercase();
    if lower.contains("transport") || lower.contains("connect") || lower.contains("unavailable") {
        ApprovalsError::Connection(message)
    } else {
        ApprovalsError::Temporal(message)
    }
}
