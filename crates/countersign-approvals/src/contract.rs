//! Typed handles on the `AgentRun` and `ApprovalGate` workflows' public contract, defined from
//! the names in `countersign_proto::contract` so this crate needs nothing
//! from the worker.

use countersign_policy::run::AgentRunInput;
use countersign_proto::contract;
use countersign_proto::{
    Decision, DecisionOutcome, GateOutcome, GateRequest, PendingApproval, RunState,
};
use temporalio_common::{
    HasWorkflowDefinition, QueryDefinition, SignalDefinition, UpdateDefinition, WorkflowDefinition,
};

/// The `AgentRun` workflow type.
pub struct AgentRunWorkflow;

impl WorkflowDefinition for AgentRunWorkflow {
    type Input = AgentRunInput;
    type Output = RunState;
    fn name(&self) -> &str {
        contract::WORKFLOW_TYPE
    }
}

impl HasWorkflowDefinition for AgentRunWorkflow {
    type Run = Self;
}

/// The `ApprovalGate` workflow type: one approval in front of another
/// workflow's side effect.
pub struct ApprovalGateWorkflow;

impl WorkflowDefinition for ApprovalGateWorkflow {
    type Input = GateRequest;
    type Output = GateOutcome;
    fn name(&self) -> &str {
        contract::GATE_WORKFLOW_TYPE
    }
}

impl HasWorkflowDefinition for ApprovalGateWorkflow {
    type Run = Self;
}

/// The `decide` update.
pub struct DecideUpdate;

impl UpdateDefinition for DecideUpdate {
    type Workflow = AgentRunWorkflow;
    type Input = Decision;
    type Output = DecisionOutcome;
    fn name(&self) -> &str {
        contract::UPDATE_DECIDE
    }
}

/// The `approval_decision` signal. Its input is plain JSON so that the exact
/// bytes a non-Rust sender would send are what this client sends.
pub struct ApprovalDecisionSignal;

impl SignalDefinition for ApprovalDecisionSignal {
    type Workflow = AgentRunWorkflow;
    type Input = serde_json::Value;
    fn name(&self) -> &str {
        contract::SIGNAL_APPROVAL_DECISION
    }
}

/// The `pending_approvals` query.
pub struct PendingApprovalsQuery;

impl QueryDefinition for PendingApprovalsQuery {
    type Workflow = AgentRunWorkflow;
    type Input = ();
    type Output = Vec<PendingApproval>;
    fn name(&self) -> &str {
        contract::QUERY_PENDING_APPROVALS
    }
}

/// The `run_state` query.
pub struct RunStateQuery;

impl QueryDefinition for RunStateQuery {
    type Workflow = AgentRunWorkflow;
    type Input = ();
    type Output = RunState;
    fn name(&self) -> &str {
        contract::QUERY_RUN_STATE
    }
}
