//! Tools that run as child workflows: another agent (a child `AgentRun`)
//! and any workflow type on any task queue.
//!
//! A child is started by workflow code, not by an activity, so Temporal
//! records it exactly once; the gate (if any) was passed before this runs.
//! Children inherit the run's cancellation.

use super::{AgentRun, scoped};
use crate::model::RequestedCall;
use crate::tools::ToolOutput;
use countersign_policy::catalog::CatalogTool;
use countersign_policy::run::{AgentRunInput, AgentSpec};
use countersign_policy::sources::WorkflowTool;
use countersign_proto::{RunState, RunStatus};
use serde_json::Value;
use temporalio_common::WorkflowDefinition;
use temporalio_sdk::{ChildWorkflowOptions, WorkflowContext};

/// A child `AgentRun`, started with a typed input (the worker's own
/// definition takes its input raw, to decode it itself).
struct ChildAgentRun;

impl WorkflowDefinition for ChildAgentRun {
    type Input = AgentRunInput;
    type Output = RunState;
    fn name(&self) -> &str {
        countersign_proto::contract::WORKFLOW_TYPE
    }
}

/// Any workflow type, known by name only; input and result are plain JSON.
struct NamedWorkflow(String);

impl WorkflowDefinition for NamedWorkflow {
    type Input = Value;
    type Output = Value;
    fn name(&self) -> &str {
        &self.0
    }
}

/// The child's workflow id: derived from the parent's and the call's, so it
/// is stable across replays and unique within the run.
fn child_workflow_id(
    ctx: &WorkflowContext<AgentRun>,
    tool: &CatalogTool,
    call: &RequestedCall,
) -> String {
    format!("{}--{}--{}", ctx.workflow_id(), tool.name, call.id)
}

/// Runs another agent as a child `AgentRun`. Its own gated calls wait for
/// their own approvals (listed with this run as parent); its final answer
/// is the tool result. The child is named by its registry name and pinned
/// to the hash of the definition this run validated (inline only when this
/// run's own agent was inline); the child validates it again itself.
pub(super) async fn run_sub_agent(
    ctx: &WorkflowContext<AgentRun>,
    tool: &CatalogTool,
    call: &RequestedCall,
    arguments: &Value,
) -> ToolOutput {
    let Some(prompt) = arguments.get("prompt").and_then(Value::as_str) else {
        return ToolOutput::error("argument `prompt` (a string) is required; nothing ran.");
    };
    let Some(agent) = ctx.state(|s| s.agent().sub_agent(&tool.name).cloned()) else {
        return ToolOutput::error(format!(
            "`{}` is not a sub-agent of this agent; nothing ran.",
            tool.name
        ));
    };
    let input = ctx.state(|s| AgentRunInput {
        agent: if s.from_registry {
            AgentSpec::Name(agent.name.clone())
        } else {
            AgentSpec::Inline(Box::new(agent.file().clone()))
        },
        agent_sha256: Some(agent.sha256().to_string()),
        prompt: prompt.to_string(),
        // The child's actions were not explicitly asked for by the user:
        // it runs in its own default mode, never a laxer inherited one.
        mode: None,
        requester: s.input().requester.clone(),
        conversation_id: s.state.conversation_id.clone(),
        parent_workflow_id: ctx.workflow_id().to_string(),
        carried: None,
    });
    // The child's own cancellation token, held until its result is in (see
    // `scoped`): cancelled with the run, freed with this call.
    let token = scoped::token(ctx);
    let mut options = ChildWorkflowOptions::workflow_id(child_workflow_id(ctx, tool, call));
    options.cancellation_token = Some(token.clone());
    options.static_summary = Some(format!(
        "sub-agent `{}` of {}",
        agent.name,
        ctx.workflow_id()
    ));
    let started = match ctx
        .start_child_workflow(ChildAgentRun, input, options)
        .await
    {
        Ok(started) => started,
        Err(e) => {
            return ToolOutput::error(format!("sub-agent `{}` did not start: {e}", agent.name));
        }
    };
    match started.result().await {
        Ok(RunState {
            status,
            final_answer,
            ..
        }) if status == RunStatus::Completed as i32 => ToolOutput::ok(final_answer),
        Ok(state) => ToolOutput::error(format!(
            "sub-agent `{}` ended as {:?}",
            agent.name,
            state.status()
        )),
        Err(e) => ToolOutput::error(format!("sub-agent `{}` failed: {e}", agent.name)),
    }
}

/// Runs a workflow type as a child with the call's arguments as its input.
pub(super) async fn run_workflow(
    ctx: &WorkflowContext<AgentRun>,
    tool: &CatalogTool,
    workflow: &WorkflowTool,
    call: &RequestedCall,
    arguments: &Value,
) -> ToolOutput {
    let token = scoped::token(ctx);
    let mut options = ChildWorkflowOptions::workflow_id(child_workflow_id(ctx, tool, call));
    options.cancellation_token = Some(token.clone());
    options.task_queue = workflow.task_queue.clone();
    options.execution_timeout = workflow.timeout;
    options.static_summary = Some(format!("tool `{}` of {}", tool.name, ctx.workflow_id()));
    let definition = NamedWorkflow(workflow.workflow_type.clone());
    let started = match ctx
        .start_child_workflow(definition, arguments.clone(), options)
        .await
    {
        Ok(started) => started,
        Err(e) => {
            return ToolOutput::error(format!(
                "workflow `{}` did not start: {e}",
                workflow.workflow_type
            ));
        }
    };
    match started.result().await {
        Ok(Value::String(text)) => ToolOutput::ok(text),
        Ok(value) => ToolOutput::ok(value.to_string()),
        Err(e) => ToolOutput::error(format!("workflow `{}` failed: {e}", workflow.workflow_type)),
    }
}
