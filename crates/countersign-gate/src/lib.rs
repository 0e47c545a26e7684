//! Countersign's approval gate for Rust workflow authors.
//!
//! A workflow that is about to carry out a side effect (pay, send, delete)
//! runs Countersign's `ApprovalGate` workflow as a child with [`gate`], and
//! acts only on its answer:
//!
//! ```no_run
//! # use countersign_gate::{GateOutcomeExt, gate};
//! # use countersign_proto::GateRequest;
//! # use temporalio_workflow::{WorkflowContext, WorkflowResult};
//! # async fn pay<W>(ctx: &WorkflowContext<W>) -> WorkflowResult<()> {
//! let request = GateRequest {
//!     agent: "payments".into(),
//!     tool: "pay_invoice".into(),
//!     arguments: countersign_proto::json_to_struct(
//!         &serde_json::json!({"invoice": "INV-7", "amount": 250, "to": "ACME"}),
//!     )
//!     .ok(),
//!     requester: "alice@example.com".into(),
//!     context: "paying invoice INV-7".into(),
//!     ..Default::default()
//! };
//! let outcome = gate(ctx, request).await?;
//! if outcome.allows_side_effect() {
//!     // carry it out with outcome.arguments_json(), idempotent by
//!     // outcome.approval_id
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Why a crate of its own
//!
//! The helper runs in workflow code, so it needs the workflow half of the
//! Temporal SDK (`temporalio-workflow`) and the wire types
//! (`countersign-proto`), nothing else. `countersign-approvals` is a
//! *client* (services and the CLI start runs and send decisions over gRPC;
//! it has no workflow context), and `countersign-worker` carries the
//! `AgentRun` workflow with its tool adapters (MCP, HTTP, mail), model
//! providers and registry. A workflow author depends on this crate without
//! pulling in either, and without any of Countersign's worker code running
//! in their process: the gate itself runs on Countersign's worker, on task
//! queue [`TASK_QUEUE`](countersign_proto::contract::TASK_QUEUE).

use countersign_proto::contract::{GATE_WORKFLOW_TYPE, TASK_QUEUE};
use countersign_proto::{GateOutcome, GateRequest, GateState, struct_to_json};
use serde_json::Value;
use temporalio_workflow::common::WorkflowDefinition;
use temporalio_workflow::common::error::ApplicationFailure;
use temporalio_workflow::{
    ChildWorkflowExecutionError, ChildWorkflowOptions, ChildWorkflowStartError, WorkflowContext,
    WorkflowTermination,
};

/// The `ApprovalGate` workflow type, as a child: its input is a
/// [`GateRequest`] and its result a [`GateOutcome`] (both proto3 JSON).
pub struct ApprovalGateWorkflow;

impl WorkflowDefinition for ApprovalGateWorkflow {
    type Input = GateRequest;
    type Output = GateOutcome;
    fn name(&self) -> &str {
        GATE_WORKFLOW_TYPE
    }
}

/// Where and under which id the gate runs.
#[derive(Debug, Clone, Default)]
pub struct GateOptions {
    /// The gate's workflow id. Default: `<caller>--gate--<tool>--<8 hex>`,
    /// the suffix from the workflow's deterministic UUID, so it is stable
    /// across replays and unique within the caller. Set it to find the gate
    /// from outside (an operator, a test), or to key a `NOT_REQUIRED` side
    /// effect by it.
    pub workflow_id: Option<String>,
    /// The task queue of Countersign's worker. Default:
    /// [`TASK_QUEUE`](countersign_proto::contract::TASK_QUEUE) (`countersign`).
    pub task_queue: Option<String>,
}

/// Why a gate gave no [`GateOutcome`]. In every case the caller must not
/// carry out its side effect.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The child workflow did not start (e.g. its workflow id is in use),
    /// or the caller was cancelled before it started.
    #[error("the ApprovalGate `{workflow_id}` did not start: {source}")]
    Start {
        /// The gate's workflow id.
        workflow_id: String,
        /// What the SDK reported.
        #[source]
        source: ChildWorkflowStartError,
    },
    /// The gate failed: an input it refused (an unknown agent, a tool the
    /// agent does not declare or does not leave to gates, arguments that do
    /// not fit the tool's schema, a field over its bound), or it was
    /// terminated. `message` is the gate's own reason.
    #[error("the ApprovalGate `{workflow_id}` failed: {message}")]
    Failed {
        /// The gate's workflow id.
        workflow_id: String,
        /// The innermost failure message (the gate's reason).
        message: String,
        /// What the SDK reported.
        #[source]
        source: ChildWorkflowExecutionError,
    },
}

/// A gate that gave no outcome fails the calling workflow (non-retryable,
/// with the gate's reason), or cancels it when the caller was cancelled
/// before the gate started; `?` in a `#[run]` method does this.
impl From<GateError> for WorkflowTermination {
    fn from(error: GateError) -> Self {
        match &error {
            GateError::Start {
                source: ChildWorkflowStartError::Cancelled(_),
                ..
            } => WorkflowTermination::cancelled(),
            _ => ApplicationFailure::non_retryable(error.to_string()).into(),
        }
    }
}

/// Reading a [`GateOutcome`] the way a caller must.
pub trait GateOutcomeExt {
    /// Whether the caller may carry out its side effect: `state` is
    /// `APPROVED`, `APPROVED_WITH_EDITS` or `NOT_REQUIRED`. Denied, expired
    /// (or cancelled) and unknown states all answer `false`.
    fn allows_side_effect(&self) -> bool;
    /// The arguments to carry it out with (the reviewer's edits when
    /// edited), as JSON; an empty object when absent.
    fn arguments_json(&self) -> Value;
}

impl GateOutcomeExt for GateOutcome {
    fn allows_side_effect(&self) -> bool {
        matches!(
            GateState::try_from(self.state),
            Ok(GateState::Approved | GateState::ApprovedWithEdits | GateState::NotRequired)
        )
    }

    fn arguments_json(&self) -> Value {
        self.arguments
            .as_ref()
            .map(struct_to_json)
            .unwrap_or_else(|| Value::Object(Default::default()))
    }
}

/// Runs `ApprovalGate` as a child of the current workflow on task queue
/// `countersign` and waits for its outcome (see [`gate_with`]).
pub async fn gate<W>(
    ctx: &WorkflowContext<W>,
    request: GateRequest,
) -> Result<GateOutcome, GateError> {
    gate_with(ctx, request, GateOptions::default()).await
}

/// Runs `ApprovalGate` as a child of the current workflow and waits for its
/// outcome: as long as a reviewer takes (or until the approval expires).
///
/// An empty `caller_workflow_id` is filled with the caller's workflow id,
/// so the inbox links the approval to it. The child inherits the caller's
/// cancellation: cancelling the caller cancels the gate, which ends its
/// approval as expired and answers `EXPIRED`. Deterministic: call it from
/// workflow code only.
pub async fn gate_with<W>(
    ctx: &WorkflowContext<W>,
    mut request: GateRequest,
    options: GateOptions,
) -> Result<GateOutcome, GateError> {
    if request.caller_workflow_id.is_empty() {
        request.caller_workflow_id = ctx.workflow_id().to_string();
    }
    let workflow_id = options.workflow_id.unwrap_or_else(|| {
        format!(
            "{}--gate--{}--{}",
            ctx.workflow_id(),
            request.tool,
            &ctx.uuid4()[..8]
        )
    });
    let mut child = ChildWorkflowOptions::workflow_id(workflow_id.clone());
    child.task_queue = Some(options.task_queue.unwrap_or_else(|| TASK_QUEUE.to_string()));
    child.static_summary = Some(format!(
        "gate on `{}` of agent `{}` for {}",
        request.tool,
        request.agent,
        ctx.workflow_id()
    ));
    let started = ctx
        .start_child_workflow(ApprovalGateWorkflow, request, child)
        .await
        .map_err(|source| GateError::Start {
            workflow_id: workflow_id.clone(),
            source,
        })?;
    started.result().await.map_err(|source| GateError::Failed {
        message: innermost_message(&source),
        workflow_id,
        source,
    })
}

/// The message of the innermost failure in the chain (the gate's own
/// reason, under the SDK's "child workflow failed" wrapper).
fn innermost_message(error: &ChildWorkflowExecutionError) -> String {
    let Some(mut failure) = error.failure() else {
        return error.to_string();
    };
    while let Some(cause) = failure.cause.as_deref() {
        failure = cause;
    }
    failure.message.clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_proto::json_to_struct;

    fn outcome(state: GateState) -> GateOutcome {
        GateOutcome {
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn only_approved_edited_or_not_required_allow_the_side_effect() {
        assert!(outcome(GateState::Approved).allows_side_effect());
        assert!(outcome(GateState::ApprovedWithEdits).allows_side_effect());
        assert!(outcome(GateState::NotRequired).allows_side_effect());
        assert!(!outcome(GateState::Denied).allows_side_effect());
        assert!(!outcome(GateState::Expired).allows_side_effect());
        assert!(!outcome(GateState::Unspecified).allows_side_effect());
        let unknown = GateOutcome {
            state: 99,
            ..Default::default()
        };
        assert!(!unknown.allows_side_effect());
    }

    #[test]
    fn the_arguments_are_the_outcome_s_as_json() {
        let arguments = serde_json::json!({"amount": 200, "to": "ACME"});
        let edited = GateOutcome {
            arguments: json_to_struct(&arguments).ok(),
            ..outcome(GateState::ApprovedWithEdits)
        };
        assert_eq!(edited.arguments_json(), arguments);
        assert_eq!(
            outcome(GateState::Denied).arguments_json(),
            serde_json::json!({})
        );
    }

    #[test]
    fn the_definition_names_the_contract_s_workflow_type() {
        assert_eq!(ApprovalGateWorkflow.name(), "ApprovalGate");
    }

    #[test]
    fn an_outcome_decodes_from_the_gate_s_proto3_json() {
        let outcome: GateOutcome = serde_json::from_value(serde_json::json!({
            "state": "GATE_STATE_APPROVED_WITH_EDITS",
            "arguments": {"amount": 200.0},
            "approvalId": "pay-1-gate~1a2b3c4d",
            "message": "approved by bob@example.com"
        }))
        .unwrap();
        assert!(outcome.allows_side_effect());
        assert_eq!(outcome.arguments_json(), serde_json::json!({"amount": 200}));
        assert_eq!(outcome.approval_id, "pay-1-gate~1a2b3c4d");
    }
}
