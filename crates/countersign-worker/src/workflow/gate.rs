//! The `ApprovalGate` workflow: one approval, with the whole machinery of
//! an agent run's approvals, in front of a side effect some other workflow
//! (in any language) carries out.
//!
//! The gate keeps its approval in an [`AgentRun`] book, so the decision
//! rules (`decisions.rs`), the search attributes and current details
//! ([`publish`]) and the wait with reminders, escalation, notifications and
//! expiry ([`await_decision`]) are the ones agent runs use. Its input is a
//! [`GateRequest`] (proto3 JSON), decoded here from a `RawValue`; its result
//! a [`GateOutcome`].

use super::{
    AgentRun, ApprovalHost, Resolution, await_decision, decisions, format_duration, publish,
    resolve_activity_options, root_cause, scoped, timestamp,
};
use crate::activities::CountersignActivities;
use crate::catalog;
use crate::registry::{AgentLookup, ResolvedAgent};
use countersign_policy::catalog::{CatalogTool, ToolBinding};
use countersign_policy::schema::check_arguments;
use countersign_policy::{Agent, RunMode};
use countersign_proto::contract::{
    APPROVAL_ID_SEPARATOR, MAX_CALLER_WORKFLOW_ID_CHARS, MAX_DECISION_BYTES,
    MAX_GATE_CONTEXT_CHARS, MAX_REVIEWER_CHARS,
};
use countersign_proto::signing::TrustedKeys;
use countersign_proto::{
    ApprovalState, Decision, DecisionOutcome, GateOutcome, GateRequest, GateState, PendingApproval,
    RunState, RunStatus, ToolRef, arguments_sha256, json_to_struct, struct_to_json,
};
use serde_json::Value;
use temporalio_common::data_converters::RawValue;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ApplicationFailure, SyncWorkflowContext, WorkflowContext, WorkflowContextView, WorkflowResult,
};

/// A gate: the workflow type `ApprovalGate`. Its input is a [`GateRequest`]
/// and its result a [`GateOutcome`]; it takes the same `decide` update and
/// `approval_decision` signal as an agent run, and answers the same
/// `pending_approvals` and `run_state` queries.
#[workflow]
pub struct ApprovalGate {
    /// What was asked; `None` when the input was refused.
    request: Option<GateInput>,
    /// Why the input cannot be gated: the gate fails with this at once.
    refused: Option<String>,
    /// The approval book, the same machine an agent run keeps its
    /// approvals in (its agent, catalog and keys are set once resolved).
    book: AgentRun,
}

/// A decoded, bounded [`GateRequest`].
#[derive(Debug, Clone)]
struct GateInput {
    agent: String,
    tool: String,
    arguments: Value,
    requester: String,
    mode: Option<RunMode>,
    context: String,
    caller_workflow_id: String,
}

impl ApprovalHost for ApprovalGate {
    fn book(&self) -> &AgentRun {
        &self.book
    }
    fn book_mut(&mut self) -> &mut AgentRun {
        &mut self.book
    }
}

#[workflow_methods]
impl ApprovalGate {
    /// Decodes the input (a malformed one is kept as the reason the gate
    /// fails, never a failed workflow task).
    #[init]
    pub fn new(ctx: &WorkflowContextView, input: RawValue) -> Self {
        let (request, refused) = match decode_gate_input(&input) {
            Ok(request) => (Some(request), None),
            Err(problem) => (None, Some(problem)),
        };
        let state = RunState {
            workflow_id: ctx.workflow_id().to_string(),
            agent: request
                .as_ref()
                .map(|r| r.agent.clone())
                .unwrap_or_default(),
            requester: request
                .as_ref()
                .map(|r| r.requester.clone())
                .unwrap_or_default(),
            status: RunStatus::Running as i32,
            conversation_id: ctx.workflow_id().to_string(),
            parent_workflow_id: request
                .as_ref()
                .map(|r| r.caller_workflow_id.clone())
                .unwrap_or_default(),
            ..Default::default()
        };
        Self {
            request,
            refused,
            book: AgentRun {
                request: None,
                refused: None,
                agent: None,
                from_registry: true,
                trusted_keys: TrustedKeys::new(),
                payload_store: false,
                state,
                catalog: vec![],
                turns_taken: 0,
                published: None,
            },
        }
    }

    /// Resolves the agent, checks the tool and the arguments, asks the
    /// policy, and when it needs approval opens one and waits for it.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<GateOutcome> {
        if let Some(problem) = ctx.state(|s| s.refused.clone()) {
            return fail(problem);
        }
        let input = ctx.state(|s| s.request.clone().expect("a refused input has returned"));
        let resolved = scoped::activity(
            ctx,
            CountersignActivities::resolve_agent,
            AgentLookup {
                name: input.agent.clone(),
                inline: false,
            },
            resolve_activity_options(),
        )
        .await;
        let (file, trusted_keys) = match resolved {
            Ok(ResolvedAgent {
                definition: Some(file),
                trusted_keys,
                ..
            }) => (*file, trusted_keys),
            Ok(ResolvedAgent {
                definition: None, ..
            }) => {
                return fail(format!(
                    "the worker did not resolve agent `{}`",
                    input.agent
                ));
            }
            // Cancelled (the caller was) before any approval opened: the
            // gate expires, as it does once one is open. Runs recorded
            // before failed here instead (patch).
            Err(_)
                if ctx.cancellation_token().is_cancelled()
                    && ctx.patched(PATCH_EXPIRE_WHEN_CANCELLED_EARLY) =>
            {
                ctx.state_mut(|s| s.book.state.status = RunStatus::Cancelled as i32);
                return Ok(GateOutcome {
                    state: GateState::Expired as i32,
                    message: "expired: the gate was cancelled before its approval opened".into(),
                    ..Default::default()
                });
            }
            Err(e) => return fail(root_cause(&e)),
        };
        let agent = match Agent::new(file) {
            Ok(agent) => agent,
            Err(problem) => {
                return fail(format!(
                    "agent `{}` is not a valid definition: {problem}",
                    input.agent
                ));
            }
        };
        let tool = match gated_tool(&agent, &input) {
            Ok(tool) => tool,
            Err(problem) => return fail(problem),
        };
        let mode = input.mode.unwrap_or(agent.mode);
        let gate = agent.gate(Some(&tool), &input.arguments, mode);
        if !gate.needs_approval {
            return Ok(GateOutcome {
                state: GateState::NotRequired as i32,
                arguments: json_to_struct(&input.arguments).ok(),
                message: format!("no approval needed: {}", gate.rule),
                rule: gate.rule,
                ..Default::default()
            });
        }
        let now = ctx.workflow_time();
        let approval_id = format!(
            "{}{APPROVAL_ID_SEPARATOR}{}",
            ctx.workflow_id(),
            &ctx.uuid4()[..8]
        );
        let approval = PendingApproval {
            approval_id: approval_id.clone(),
            workflow_id: ctx.workflow_id().to_string(),
            run_id: ctx.run_id().to_string(),
            conversation_id: ctx.workflow_id().to_string(),
            agent: agent.name.clone(),
            requester: input.requester.clone(),
            tool: Some(ToolRef {
                kind: tool.kind.as_str().into(),
                provider: tool.provider.clone(),
                name: tool.name.clone(),
            }),
            arguments: json_to_struct(&input.arguments).ok(),
            arguments_sha256: arguments_sha256(&input.arguments),
            effect_class: gate.effect.as_str().to_string(),
            rule: gate.rule.clone(),
            required_approvals: gate.quorum,
            approvals_given: vec![],
            requested_at: now.map(timestamp),
            expires_at: now.map(|t| timestamp(t + gate.expiry)),
            user_request: input.context.clone(),
            model_reason: String::new(),
            tool_call_id: String::new(),
            state: ApprovalState::Pending as i32,
            parent_workflow_id: input.caller_workflow_id.clone(),
            approver_groups: gate.approver_groups.clone(),
            approvers: gate.approvers.clone(),
            separation_of_duties: gate.separation_of_duties,
            signed_decisions_required: gate.signed_decisions_required,
            arguments_excerpt: String::new(),
        };
        ctx.state_mut(|s| {
            let book = &mut s.book;
            book.state.agent = agent.name.clone();
            book.state.mode = mode.as_str().to_string();
            book.state.approvals.push(approval);
            book.catalog = vec![tool.clone()];
            book.agent = Some(agent);
            book.trusted_keys = trusted_keys;
        });
        publish(ctx);
        let expiry = ctx.state(|s| s.book.approval_expiry(&tool.name));
        if await_decision(ctx, &approval_id, expiry).await.is_err() {
            // Cancelled (the caller was): the approval ends as expired.
            let now = ctx.workflow_time();
            ctx.state_mut(|s| {
                s.book.expire(&approval_id, now);
                s.book.state.status = RunStatus::Cancelled as i32;
            });
            publish(ctx);
            return Ok(ctx.state(|s| {
                s.outcome(
                    &approval_id,
                    GateState::Expired,
                    &input.arguments,
                    "expired: the gate was cancelled before anyone decided".into(),
                )
            }));
        }
        ctx.state_mut(|s| s.book.state.status = RunStatus::Completed as i32);
        publish(ctx);
        let resolution = ctx.state(|s| s.book.resolution(&approval_id));
        Ok(ctx.state(|s| {
            let reviewers = s
                .book
                .approval(&approval_id)
                .map(|a| a.approvals_given.join(", "))
                .unwrap_or_default();
            match resolution {
                Resolution::Approved {
                    arguments,
                    edited_by: None,
                } => s.outcome(
                    &approval_id,
                    GateState::Approved,
                    &arguments,
                    format!("approved by {reviewers}"),
                ),
                Resolution::Approved {
                    arguments,
                    edited_by: Some(editor),
                } => s.outcome(
                    &approval_id,
                    GateState::ApprovedWithEdits,
                    &arguments,
                    format!(
                        "approved by {reviewers}, with arguments edited by {editor}: {}",
                        countersign_proto::canonical_json(&arguments)
                    ),
                ),
                Resolution::Denied { reviewer, reason } => s.outcome(
                    &approval_id,
                    GateState::Denied,
                    &input.arguments,
                    format!(
                        "denied by {reviewer}: {}",
                        if reason.is_empty() {
                            "no reason given"
                        } else {
                            &reason
                        }
                    ),
                ),
                Resolution::Expired => s.outcome(
                    &approval_id,
                    GateState::Expired,
                    &input.arguments,
                    format!("expired: nobody decided within {}", format_duration(expiry)),
                ),
            }
        }))
    }

    /// Rejects, without a history event, a decision the gate cannot take.
    #[update_validator(decide)]
    fn validate_decide(
        &self,
        _ctx: &WorkflowContextView,
        decision: &Decision,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.book.validate_update(decision)
    }

    /// Takes a reviewer's decision and answers with its outcome.
    #[update]
    pub fn decide(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        decision: Decision,
    ) -> DecisionOutcome {
        self.book
            .apply_decision(decision, ctx.workflow_time(), "update")
    }

    /// Takes a decision sent as a signal, decoded here so a malformed one
    /// is recorded as rejected instead of failing the workflow task.
    #[signal]
    pub fn approval_decision(&mut self, ctx: &mut SyncWorkflowContext<Self>, payload: RawValue) {
        // A workflow type newer than every limit: it takes them all.
        self.book
            .take_signal(&payload, ctx.workflow_time(), &mut |_| true);
    }

    /// The gate's open approval, with full context.
    #[query]
    pub fn pending_approvals(&self, _ctx: &WorkflowContextView) -> Vec<PendingApproval> {
        self.book.open_approvals().cloned().collect()
    }

    /// Status, the approval and every decision so far.
    #[query]
    pub fn run_state(&self, _ctx: &WorkflowContextView) -> RunState {
        self.book.state.clone()
    }
}

impl ApprovalGate {
    /// The gate's result: `state`, the arguments to use, the decisions, the
    /// rule and a one-line message.
    fn outcome(
        &self,
        approval_id: &str,
        state: GateState,
        arguments: &Value,
        message: String,
    ) -> GateOutcome {
        let approval = self.book.approval(approval_id).cloned();
        GateOutcome {
            state: state as i32,
            arguments: json_to_struct(arguments).ok(),
            decisions: self
                .book
                .state
                .decisions
                .iter()
                .filter(|d| d.approval_id == approval_id)
                .cloned()
                .collect(),
            rule: approval
                .as_ref()
                .map(|a| a.rule.clone())
                .unwrap_or_default(),
            message,
            approval_id: approval_id.to_string(),
            approval,
        }
    }
}

/// Gates cancelled while their agent was being resolved end as EXPIRED
/// (recorded only by such gates).
const PATCH_EXPIRE_WHEN_CANCELLED_EARLY: &str = "gate-expire-when-cancelled-early";

/// Ends the gate as failed (non-retryable) with `problem`: no approval opens.
fn fail(problem: String) -> WorkflowResult<GateOutcome> {
    Err(ApplicationFailure::non_retryable(problem).into())
}

/// The catalog entry of the tool the gate asks about: declared by the
/// agent, `external = {}`, and with arguments that fit its schema.
fn gated_tool(agent: &Agent, input: &GateInput) -> Result<CatalogTool, String> {
    let external: Vec<String> = agent
        .tools
        .iter()
        .filter(|t| t.is_external())
        .map(|t| format!("`{}`", t.name))
        .collect();
    let Some(definition) = agent.tool(&input.tool) else {
        return Err(format!(
            "agent `{}` declares no tool `{}`; its external tools are: {}",
            agent.name,
            countersign_policy::agent::excerpt(&input.tool, 64),
            if external.is_empty() {
                "none".to_string()
            } else {
                external.join(", ")
            }
        ));
    };
    if !definition.is_external() {
        return Err(format!(
            "tool `{}` of agent `{}` is run by Countersign itself; a gate takes only tools declared `external = {{}}`",
            input.tool, agent.name
        ));
    }
    let tool = catalog::static_tools(agent)
        .into_iter()
        .find(|t| t.name == input.tool && t.binding == ToolBinding::External)
        .ok_or_else(|| format!("tool `{}` is not in the agent's catalog", input.tool))?;
    check_arguments(&tool.input_schema, &input.arguments)
        .map_err(|problem| format!("invalid arguments for `{}`: {problem}", input.tool))?;
    Ok(tool)
}

/// Decodes the raw input: one `json/plain` payload holding a
/// [`GateRequest`] in proto3 JSON, every field bounded. Refusals quote at
/// most a short prefix.
fn decode_gate_input(input: &RawValue) -> Result<GateInput, String> {
    let example = r#"e.g. {"agent": "<name>", "tool": "<external tool>", "arguments": {...}, "requester": "..."}"#;
    let data = decisions::json_payload(input)
        .map_err(|problem| format!("the ApprovalGate input {problem}; {example}"))?;
    if data.len() > MAX_DECISION_BYTES {
        return Err(format!(
            "the ApprovalGate input is too large ({} bytes; at most {MAX_DECISION_BYTES})",
            data.len()
        ));
    }
    let request: GateRequest = serde_json::from_slice(data).map_err(|e| {
        format!(
            "the ApprovalGate input is not a GateRequest: {}; {example}",
            countersign_policy::agent::excerpt(&e.to_string(), 200)
        )
    })?;
    let required = |field: &str, value: &str, max: usize| -> Result<(), String> {
        if value.trim().is_empty() {
            return Err(format!("`{field}` is required; {example}"));
        }
        bounded(field, value, max)
    };
    required("agent", &request.agent, 64)?;
    required("tool", &request.tool, 64)?;
    required("requester", &request.requester, MAX_REVIEWER_CHARS)?;
    bounded("context", &request.context, MAX_GATE_CONTEXT_CHARS)?;
    bounded(
        "callerWorkflowId",
        &request.caller_workflow_id,
        MAX_CALLER_WORKFLOW_ID_CHARS,
    )?;
    let mode = match request.mode.trim() {
        "" => None,
        mode => Some(
            serde_json::from_value::<RunMode>(Value::String(mode.to_string())).map_err(|_| {
                format!(
                    "`mode` must be `autonomous` or `user_requested`, got `{}`",
                    countersign_policy::agent::excerpt(mode, 40)
                )
            })?,
        ),
    };
    Ok(GateInput {
        agent: request.agent,
        tool: request.tool,
        arguments: request
            .arguments
            .as_ref()
            .map(struct_to_json)
            .unwrap_or_else(|| Value::Object(Default::default())),
        requester: request.requester,
        mode,
        context: request.context,
        caller_workflow_id: request.caller_workflow_id,
    })
}

/// Refuses a field over `max` characters.
fn bounded(field: &str, value: &str, max: usize) -> Result<(), String> {
    let chars = value.chars().count();
    if chars > max {
        return Err(format!(
            "`{field}` is too long ({chars} characters; at most {max})"
        ));
    }
    Ok(())
}
