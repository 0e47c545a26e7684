//! Typed errors of the approvals client.

use countersign_proto::RefusalCode;
use temporalio_client::errors::{
    WorkflowInteractionError, WorkflowQueryError, WorkflowUpdateError,
};
use temporalio_common::protos::temporal::api::failure::v1::{Failure, failure::FailureInfo};

/// Why a call of the approvals client failed. A run's refusal arrives with a
/// machine-readable [`RefusalCode`]; [`ApprovalsError::code`] gives it back,
/// and the variants follow it (never the message text).
#[derive(Debug, thiserror::Error)]
pub enum ApprovalsError {
    /// No such approval (or run).
    #[error("not found: {0}")]
    NotFound(String),
    /// The approval id does not have the `<workflow id>~<suffix>` form.
    #[error("`{0}` is not an approval id (expected `<workflow id>~<suffix>`)")]
    InvalidApprovalId(String),
    /// The approval was already decided.
    #[error("{0}")]
    AlreadyDecided(String),
    /// The approval expired: nobody decided in time and the call did not run.
    #[error("{0}")]
    Expired(String),
    /// The reviewer saw other arguments than the call now waiting has.
    #[error("{0}")]
    StaleArguments(String),
    /// The reviewer may not decide this call (approver groups, separation of duties).
    #[error("{0}")]
    NotAllowed(String),
    /// Edited arguments do not fit the tool's JSON schema.
    #[error("{0}")]
    InvalidArguments(String),
    /// The run accepts only decisions signed by a key it trusts.
    #[error("{0}")]
    Unsigned(String),
    /// A field of the decision, or the decision, is over its bound.
    #[error("{0}")]
    TooLarge(String),
    /// The run refused the decision for another reason (missing reviewer, bad kind, ...).
    #[error("decision refused: {0}")]
    Rejected(String),
    /// The decision could not be built (e.g. edited arguments that are not an object).
    #[error("invalid decision: {0}")]
    InvalidDecision(String),
    /// A listing's filter, page size or page token does not fit.
    #[error("{0}")]
    InvalidListing(String),
    /// A well-formed page token that this listing did not give (another
    /// filter's, or made up): there is no such page.
    #[error("{0}")]
    UnknownPage(String),
    /// Temporal could not be reached.
    #[error("{0}")]
    Connection(String),
    /// Temporal answered with an error.
    #[error("{0}")]
    Temporal(String),
    /// The run's transcript is in the payload store and could not be read
    /// from it.
    #[error(transparent)]
    Transcript(#[from] countersign_payloads::TranscriptError),
}

impl ApprovalsError {
    /// The run's refusal code, for a refusal (`None` for the client's own
    /// errors and Temporal's).
    pub fn code(&self) -> Option<RefusalCode> {
        Some(match self {
            ApprovalsError::NotFound(_) => RefusalCode::NotFound,
            ApprovalsError::AlreadyDecided(_) => RefusalCode::AlreadyDecided,
            ApprovalsError::Expired(_) => RefusalCode::Expired,
            ApprovalsError::StaleArguments(_) => RefusalCode::StaleArguments,
            ApprovalsError::NotAllowed(_) => RefusalCode::NotAllowed,
            ApprovalsError::InvalidArguments(_) => RefusalCode::InvalidArguments,
            ApprovalsError::Unsigned(_) => RefusalCode::Unsigned,
            ApprovalsError::TooLarge(_) => RefusalCode::TooLarge,
            ApprovalsError::Rejected(_) => RefusalCode::Invalid,
            ApprovalsError::InvalidApprovalId(_)
            | ApprovalsError::InvalidDecision(_)
            | ApprovalsError::InvalidListing(_)
            | ApprovalsError::UnknownPage(_)
            | ApprovalsError::Connection(_)
            | ApprovalsError::Temporal(_)
            | ApprovalsError::Transcript(_) => return None,
        })
    }
}

/// The error for a run's refusal with `code` and `message`.
pub fn from_refusal(code: RefusalCode, message: String) -> ApprovalsError {
    match code {
        RefusalCode::NotFound => ApprovalsError::NotFound(message),
        RefusalCode::AlreadyDecided => ApprovalsError::AlreadyDecided(message),
        RefusalCode::Expired => ApprovalsError::Expired(message),
        RefusalCode::StaleArguments => ApprovalsError::StaleArguments(message),
        RefusalCode::NotAllowed => ApprovalsError::NotAllowed(message),
        RefusalCode::InvalidArguments => ApprovalsError::InvalidArguments(message),
        RefusalCode::Unsigned => ApprovalsError::Unsigned(message),
        RefusalCode::TooLarge => ApprovalsError::TooLarge(message),
        RefusalCode::Invalid | RefusalCode::Unspecified => ApprovalsError::Rejected(message),
    }
}

/// The refusal code a run's validator put on its rejection: the application
/// failure type of the failure's cause (`REFUSAL_CODE_*`).
fn refusal_code(failure: &Failure) -> RefusalCode {
    failure
        .cause
        .as_deref()
        .and_then(|cause| match &cause.failure_info {
            Some(FailureInfo::ApplicationFailureInfo(info)) => {
                RefusalCode::from_str_name(&info.r#type)
            }
            _ => None,
        })
        .unwrap_or(RefusalCode::Unspecified)
}

pub(crate) fn from_update(e: WorkflowUpdateError, approval_id: &str) -> ApprovalsError {
    match e {
        WorkflowUpdateError::Failed(failure) => {
            from_refusal(refusal_code(&failure), failure.message.clone())
        }
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
