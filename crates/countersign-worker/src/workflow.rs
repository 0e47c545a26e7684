//! The `AgentRun` workflow: model turns, policy checks, approvals and tool
//! calls, durable across worker restarts.
//!
//! Deterministic: no wall clock (only `workflow_time`), no randomness (only
//! `ctx.uuid4()`), no I/O (only activities). A run that waits for a decision
//! is a timer and a condition in Temporal's history; the worker holds nothing
//! for it once evicted.

mod decisions;

mod children;

mod gate;

pub mod payload_limit;
mod scoped;

pub use gate::ApprovalGate;

use crate::activities::CountersignActivities;
use crate::catalog::{self, Discovery};
use crate::model::{ModelTurn, ModelTurnRequest, RequestedCall, ToolSpec};
use crate::notify::{NotifyEvent, NotifyOutcome, NotifyRequest, SlackMessage};
use crate::registry::{AgentLookup, ResolvedAgent};
use crate::tools::{ToolInvocation, ToolOutput};
use countersign_policy::agent::{DEFAULT_CONTINUE_AS_NEW_AFTER, NotifyConfig, WaitingStage};
use countersign_policy::catalog::{CatalogTool, MAX_TOOLS_OFFERED, ToolBinding};
use countersign_policy::run::{AgentRunInput, AgentSpec, CarriedState, InputError, RunRequest};
use countersign_policy::schema::check_arguments;
use countersign_policy::{Agent, RunMode};
use countersign_proto::contract::{self, APPROVAL_ID_SEPARATOR};
use countersign_proto::inbox;
use countersign_proto::signing::TrustedKeys;
use countersign_proto::{
    ApprovalState, ApprovalSummaries, Decision, DecisionOutcome, PendingApproval, RunState,
    RunStatus, ToolCall, ToolRef, TranscriptEntry, arguments_sha256, json_to_struct,
    struct_to_json,
};
use serde_json::Value;
use std::time::{Duration, SystemTime};
use temporalio_common::data_converters::RawValue;
use temporalio_common::search_attributes::SearchAttributeKey;
use temporalio_common::{MemoValue, RetryPolicy};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::workflows::{join_all, select};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, ApplicationFailure, CancellableFuture,
    ContinueAsNewOptions, SyncWorkflowContext, WorkflowContext, WorkflowContextView,
    WorkflowResult, WorkflowTermination,
};

const SA_STATUS: SearchAttributeKey<String> = SearchAttributeKey::keyword(contract::SA_STATUS);
const SA_PENDING_TOOLS: SearchAttributeKey<Vec<String>> =
    SearchAttributeKey::keyword_list(contract::SA_PENDING_TOOLS);
const SA_APPROVAL_IDS: SearchAttributeKey<Vec<String>> =
    SearchAttributeKey::keyword_list(contract::SA_APPROVAL_IDS);
const SA_AGENT: SearchAttributeKey<String> = SearchAttributeKey::keyword(contract::SA_AGENT);
const SA_REQUESTER: SearchAttributeKey<String> =
    SearchAttributeKey::keyword(contract::SA_REQUESTER);
const SA_APPROVERS: SearchAttributeKey<Vec<String>> =
    SearchAttributeKey::keyword_list(contract::SA_APPROVERS);

/// An agent run. Its workflow type is `AgentRun`; its input is an
/// [`AgentRunInput`] (decoded here, see [`RunRequest::decode`]) and its
/// result the final [`RunState`].
#[workflow]
pub struct AgentRun {
    /// What the run was asked to do; `None` when the input was refused.
    request: Option<RunRequest>,
    /// Why the input cannot be run: the run fails with this at once.
    refused: Option<String>,
    /// The validated agent, once `run` resolved it; nothing gated or
    /// executed happens before that.
    agent: Option<Agent>,
    /// Whether the agent came from the worker's registry (its sub-agents
    /// are then started by name and hash, never inline).
    from_registry: bool,
    /// The public keys this run trusts to sign decisions, as the
    /// `resolve_agent` activity recorded them (none before resolution, and
    /// none in runs recorded before the registry).
    trusted_keys: TrustedKeys,
    /// Whether the worker that resolved the agent moves large payloads to
    /// a payload store (recorded by the `resolve_agent` activity): then the
    /// run's payload limit is the store's, not Temporal's.
    payload_store: bool,
    state: RunState,
    /// Every tool the model may call; a name not in here never runs.
    catalog: Vec<CatalogTool>,
    /// Model turns taken, across continue-as-new.
    turns_taken: u32,
    /// What was last mirrored into search attributes and current details:
    /// each upsert is a history event, so unchanged values are not re-sent.
    published: Option<Published>,
}

/// A workflow that keeps its approvals in an [`AgentRun`]'s book (its
/// `RunState`, agent, catalog and trusted keys), so one approval machine
/// (`decisions.rs`, [`publish`], [`await_decision`]) serves `AgentRun` and
/// [`ApprovalGate`] alike.
trait ApprovalHost: 'static {
    /// The approval book.
    fn book(&self) -> &AgentRun;
    /// The approval book, to change it.
    fn book_mut(&mut self) -> &mut AgentRun;
}

impl ApprovalHost for AgentRun {
    fn book(&self) -> &AgentRun {
        self
    }
    fn book_mut(&mut self) -> &mut AgentRun {
        self
    }
}

/// The operator-visible mirror of the run's state.
#[derive(Clone, PartialEq)]
struct Published {
    status: RunStatus,
    pending_tools: Vec<String>,
    approval_ids: Vec<String>,
    details: String,
    /// `CountersignApprovers`; empty in runs from before the inbox index.
    approvers: Vec<String>,
    /// The memo's summaries of open approvals (the inbox's index); `None`
    /// in runs from before it.
    summaries: Option<ApprovalSummaries>,
}

impl Published {
    /// Whether the search attributes (or current details) differ: the
    /// summaries alone live in the memo.
    fn attributes_differ(&self, other: &Published) -> bool {
        (
            self.status,
            &self.pending_tools,
            &self.approval_ids,
            &self.details,
            &self.approvers,
        ) != (
            other.status,
            &other.pending_tools,
            &other.approval_ids,
            &other.details,
            &other.approvers,
        )
    }
}

/// What a tool call turned into once the policy (and maybe a reviewer) spoke.
enum CallPlan {
    /// Runs at once.
    Run(RequestedCall),
    /// Waits for the decision on this approval.
    Gated(RequestedCall, String),
    /// Approved at once by a sticky (RUN-scoped) approval; runs under this
    /// approval id, recorded in the audit trail.
    RodeOn(RequestedCall, String),
    /// Cannot run as asked (e.g. arguments that do not fit the tool): the
    /// model gets this error without bothering a reviewer.
    Refused(RequestedCall, String),
}

/// The run was cancelled while a call waited.
struct Cancelled;

/// How a gated call ended.
enum Resolution {
    Approved {
        arguments: Value,
        /// The reviewer who changed the arguments, if one did.
        edited_by: Option<String>,
    },
    Denied {
        reviewer: String,
        reason: String,
    },
    Expired,
}

#[workflow_methods]
impl AgentRun {
    /// Decodes the input (a malformed one is kept as the reason the run
    /// fails, never a failed workflow task) and sets up the run's state, or
    /// restores it from what the previous run carried over.
    #[init]
    pub fn new(ctx: &WorkflowContextView, input: RawValue) -> Self {
        let mut request = decode_input(&input);
        let carried = request.as_mut().ok().and_then(RunRequest::take_carried);
        // Only Countersign's own continue-as-new carries state: from a
        // client it could hold approvals nobody gave.
        if carried.is_some() && ctx.continued_from_run_id().is_none() {
            request = Err(InputError::Field {
                field: "carried",
                problem: "is set only by Countersign's own continue-as-new; leave it out".into(),
            }
            .to_string());
        }
        let (request, refused) = match request {
            Ok(request) => (Some(request), None),
            Err(problem) => (None, Some(problem)),
        };
        if let Some(carried) = carried.filter(|_| refused.is_none()) {
            let CarriedState {
                state,
                catalog,
                turns_taken,
            } = *carried;
            return Self {
                request,
                refused,
                agent: None,
                from_registry: false,
                trusted_keys: TrustedKeys::new(),
                payload_store: false,
                state,
                catalog,
                turns_taken,
                published: None,
            };
        }
        let input = request.as_ref().map(RunRequest::input);
        let conversation_id = match input {
            Some(input) if !input.conversation_id.is_empty() => input.conversation_id.clone(),
            _ => ctx.workflow_id().to_string(),
        };
        let state = RunState {
            workflow_id: ctx.workflow_id().to_string(),
            agent: input
                .map(|i| i.agent.name().to_string())
                .unwrap_or_default(),
            requester: input.map(|i| i.requester.clone()).unwrap_or_default(),
            // The input's override; the agent's default is known once resolved.
            mode: input
                .and_then(|i| i.mode)
                .map(|m| m.as_str().to_string())
                .unwrap_or_default(),
            status: RunStatus::Running as i32,
            conversation_id,
            parent_workflow_id: input
                .map(|i| i.parent_workflow_id.clone())
                .unwrap_or_default(),
            ..Default::default()
        };
        Self {
            request,
            refused,
            agent: None,
            from_registry: false,
            trusted_keys: TrustedKeys::new(),
            payload_store: false,
            state,
            catalog: vec![],
            turns_taken: 0,
            published: None,
        }
    }

    /// The agent loop: model turn, tool calls (gated ones wait), repeat until
    /// the model answers without tool calls.
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<RunState> {
        if let Err(termination) = resolve_agent(ctx).await {
            return termination;
        }
        if ctx.state(|s| s.turns_taken == 0 && s.state.transcript.is_empty()) {
            let prompt = ctx.state(|s| s.input().prompt.clone());
            ctx.state_mut(|s| {
                s.state.transcript.push(TranscriptEntry {
                    role: "user".into(),
                    content: prompt,
                    ..Default::default()
                })
            });
            if let Err(termination) = discover_tools(ctx).await {
                return termination;
            }
        }
        publish(ctx);
        // With a payload store, the transcript's start lives in the store
        // and each turn sends only what is new (a new command shape: runs
        // recorded before keep theirs).
        let by_reference =
            ctx.state(|s| s.payload_store) && ctx.patched(payload_limit::PATCH_TRANSCRIPT_STORE);
        // What this run's history holds of its turns, to continue as new
        // before it passes payload_limit::CONTINUE_AS_NEW_AFTER_BYTES.
        let mut turn_bytes = 0usize;
        let max_turns = ctx.state(|s| s.agent().max_turns);
        while ctx.state(|s| s.turns_taken) < max_turns {
            if should_continue_as_new(ctx)
                || (by_reference && turn_bytes >= payload_limit::CONTINUE_AS_NEW_AFTER_BYTES)
            {
                return continue_as_new(ctx);
            }
            let request = ctx.state(|s| ModelTurnRequest {
                model: s
                    .agent()
                    .model
                    .clone()
                    .expect("resolve_agent refuses an agent without a model"),
                instructions: s.model_instructions(),
                transcript: s.state.transcript.clone(),
                tools: s.catalog.iter().map(tool_spec).collect(),
                stored_transcript: s.state.stored_transcript.clone(),
                store_transcript: by_reference,
            });
            if let Some(problem) = oversized(
                ctx,
                "the model_turn activity's input (the transcript so far)",
                &request,
            ) {
                return finish_failed(ctx, problem);
            }
            let sent = request.transcript.len();
            turn_bytes += payload_limit::serialized_size(&request);
            let turn = scoped::activity(
                ctx,
                CountersignActivities::model_turn,
                request,
                model_activity_options(),
            )
            .await;
            ctx.state_mut(|s| s.turns_taken += 1);
            let ModelTurn {
                content,
                tool_calls,
                stored_transcript,
            } = match turn {
                Ok(turn) => turn,
                Err(_) if is_cancelled(ctx) => return finish_cancelled(ctx),
                Err(e) => {
                    return finish_failed(ctx, format!("model turn failed: {}", root_cause(&e)));
                }
            };
            turn_bytes += content.len() + payload_limit::serialized_size(&tool_calls);
            if by_reference {
                match stored_transcript
                    .filter(|r| countersign_payloads::transcript::check_ref(r).is_ok())
                {
                    // The entries sent are in the store now: the run keeps
                    // only the reference.
                    Some(stored) => ctx.state_mut(|s| {
                        s.state.transcript.drain(..sent);
                        s.state.stored_transcript = Some(stored);
                    }),
                    None => {
                        return finish_failed(
                            ctx,
                            "model turn failed: its answer has no valid reference to the stored \
                             transcript"
                                .into(),
                        );
                    }
                }
            }
            ctx.state_mut(|s| {
                s.state
                    .transcript
                    .push(assistant_entry(&content, &tool_calls))
            });
            if tool_calls.is_empty() {
                ctx.state_mut(|s| {
                    s.state.final_answer = content;
                    s.state.status = RunStatus::Completed as i32;
                });
                let result = ctx.state(|s| s.state.clone());
                if let Some(problem) = oversized(ctx, "the run's result (its RunState)", &result) {
                    return finish_failed(ctx, problem);
                }
                publish(ctx);
                return Ok(result);
            }

            let plans = plan_calls(ctx, &content, tool_calls);
            publish(ctx);
            let outputs = join_all(plans.iter().map(|plan| carry_out(ctx, plan))).await;
            if is_cancelled(ctx) || outputs.iter().any(Result::is_err) {
                return finish_cancelled(ctx);
            }
            turn_bytes += outputs
                .iter()
                .flatten()
                .map(|output| output.content.len())
                .sum::<usize>();
            ctx.state_mut(|s| {
                for (plan, output) in plans.iter().zip(outputs.into_iter().flatten()) {
                    s.state.transcript.push(TranscriptEntry {
                        role: "tool".into(),
                        content: output.content,
                        tool_call_id: plan.call().id.clone(),
                        is_error: output.is_error,
                        ..Default::default()
                    });
                }
            });
            publish(ctx);
        }
        finish_failed(
            ctx,
            format!("the agent took {max_turns} model turns without finishing (max_turns)"),
        )
    }

    /// Rejects, without a history event, a decision the run cannot take.
    #[update_validator(decide)]
    fn validate_decide(
        &self,
        _ctx: &WorkflowContextView,
        decision: &Decision,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.validate_update(decision)
    }

    /// Takes a reviewer's decision and answers with its outcome.
    #[update]
    pub fn decide(
        &mut self,
        ctx: &mut SyncWorkflowContext<Self>,
        decision: Decision,
    ) -> DecisionOutcome {
        self.apply_decision(decision, ctx.workflow_time(), "update")
    }

    /// Takes a decision sent as a signal. The payload is decoded here, not by
    /// the SDK, so a malformed one is recorded as rejected instead of failing
    /// the workflow task.
    #[signal]
    pub fn approval_decision(&mut self, ctx: &mut SyncWorkflowContext<Self>, payload: RawValue) {
        let now = ctx.workflow_time();
        self.take_signal(&payload, now, &mut |patch| ctx.patched(patch));
    }

    /// The run's open approvals, with full context.
    #[query]
    pub fn pending_approvals(&self, _ctx: &WorkflowContextView) -> Vec<PendingApproval> {
        self.open_approvals().cloned().collect()
    }

    /// Status, transcript and every decision so far.
    #[query]
    pub fn run_state(&self, _ctx: &WorkflowContextView) -> RunState {
        self.state.clone()
    }
}

impl AgentRun {
    /// The catalog's tool of that name.
    fn tool(&self, name: &str) -> Option<&CatalogTool> {
        self.catalog.iter().find(|t| t.name == name)
    }

    /// The catalog's tool names, for a model that invented one.
    fn offered_names(&self) -> String {
        let names: Vec<String> = self
            .catalog
            .iter()
            .map(|t| format!("`{}`", t.name))
            .collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// The validated agent. `run` resolves it before anything that uses it
    /// (model turns, approvals, tools) can happen, so it is always there
    /// when asked for.
    fn agent(&self) -> &Agent {
        self.agent
            .as_ref()
            .expect("the agent is resolved before the run takes any turn")
    }

    /// The run's input. Present whenever the run got past its first step.
    fn input(&self) -> &AgentRunInput {
        self.request
            .as_ref()
            .map(RunRequest::input)
            .expect("a refused input ends the run before anything reads it")
    }

    /// The mode the run uses: the input's override, else the agent's default.
    fn mode(&self) -> RunMode {
        self.input().mode.unwrap_or(self.agent().mode)
    }

    /// How long a call to `tool` waits for a decision.
    fn approval_expiry(&self, tool: &str) -> Duration {
        self.agent().expiry_for(self.tool(tool))
    }

    /// The agent's instructions, plus what the run could not use, so the
    /// model does not look for tools that are not there.
    fn model_instructions(&self) -> String {
        let mut instructions = self.agent().instructions.clone();
        if !self.state.notices.is_empty() {
            instructions.push_str("\n\nNot available in this run:\n");
            for notice in &self.state.notices {
                instructions.push_str(&format!("- {notice}\n"));
            }
        }
        instructions
    }
}

impl CallPlan {
    fn call(&self) -> &RequestedCall {
        match self {
            CallPlan::Run(call)
            | CallPlan::Gated(call, _)
            | CallPlan::RodeOn(call, _)
            | CallPlan::Refused(call, _) => call,
        }
    }
}

/// Evaluates the policy for each call of a turn and opens an approval for
/// each gated one (all before anything waits, so they show up together).
fn plan_calls(
    ctx: &WorkflowContext<AgentRun>,
    model_reason: &str,
    calls: Vec<RequestedCall>,
) -> Vec<CallPlan> {
    let now = ctx.workflow_time();
    calls
        .into_iter()
        .map(|call| {
            let size = payload_limit::serialized_size(&call.arguments);
            // Only a call over the limit records the patch marker.
            if size > payload_limit::MAX_CALL_ARGUMENTS_BYTES
                && ctx.patched(payload_limit::PATCH_PAYLOAD_LIMIT)
            {
                return CallPlan::Refused(call, payload_limit::arguments_too_large(size));
            }
            let mode: RunMode = ctx.state(|s| s.mode());
            let Some(tool) = ctx.state(|s| s.tool(&call.name).cloned()) else {
                // Runs recorded before this check gated an invented tool
                // (as write_external) instead of refusing it.
                if ctx.patched(PATCH_REFUSE_UNKNOWN_TOOLS) {
                    let offered = ctx.state(|s| s.offered_names());
                    return CallPlan::Refused(
                        call.clone(),
                        format!(
                            "there is no tool named `{}`; the tools are: {offered}. Nothing ran.",
                            call.name
                        ),
                    );
                }
                return open_approval(ctx, call, None, mode, model_reason, now);
            };
            if let Err(problem) = check_arguments(&tool.input_schema, &call.arguments) {
                return CallPlan::Refused(
                    call,
                    format!("invalid arguments: {problem}; the tool did not run."),
                );
            }
            open_approval(ctx, call, Some(&tool), mode, model_reason, now)
        })
        .collect()
}

/// Records a new workflow marker in histories that take the newer path.
const PATCH_REFUSE_UNKNOWN_TOOLS: &str = "refuse-unknown-tools";

/// Judges one call; when it needs approval, opens a `PendingApproval`.
fn open_approval(
    ctx: &WorkflowContext<AgentRun>,
    call: RequestedCall,
    tool: Option<&CatalogTool>,
    mode: RunMode,
    model_reason: &str,
    now: Option<SystemTime>,
) -> CallPlan {
    let gate = ctx.state(|s| s.agent().gate(tool, &call.arguments, mode));
    if !gate.needs_approval {
        return CallPlan::Run(call);
    }
    let approval_id = format!(
        "{}{APPROVAL_ID_SEPARATOR}{}",
        ctx.workflow_id(),
        &ctx.uuid4()[..8]
    );
    let approval = ctx.state(|s| PendingApproval {
        approval_id: approval_id.clone(),
        workflow_id: ctx.workflow_id().to_string(),
        run_id: ctx.run_id().to_string(),
        conversation_id: s.state.conversation_id.clone(),
        agent: s.agent().name.clone(),
        requester: s.input().requester.clone(),
        tool: Some(ToolRef {
            kind: tool.map_or("unknown", |t| t.kind.as_str()).into(),
            provider: tool.map(|t| t.provider.clone()).unwrap_or_default(),
            name: call.name.clone(),
        }),
        arguments: json_to_struct(&call.arguments).ok(),
        arguments_sha256: arguments_sha256(&call.arguments),
        effect_class: gate.effect.as_str().to_string(),
        rule: gate.rule.clone(),
        required_approvals: gate.quorum,
        approvals_given: vec![],
        requested_at: now.map(timestamp),
        expires_at: now.map(|t| timestamp(t + gate.expiry)),
        user_request: s.input().prompt.clone(),
        model_reason: model_reason.to_string(),
        tool_call_id: call.id.clone(),
        state: ApprovalState::Pending as i32,
        parent_workflow_id: s.input().parent_workflow_id.clone(),
        approver_groups: gate.approver_groups.clone(),
        approvers: gate.approvers.clone(),
        separation_of_duties: gate.separation_of_duties,
        signed_decisions_required: gate.signed_decisions_required,
        arguments_excerpt: String::new(),
    });
    let sticky = ctx.state(|s| s.sticky_grant(&approval).cloned());
    ctx.state_mut(|s| s.state.approvals.push(approval));
    match sticky {
        Some(grant) => {
            ctx.state_mut(|s| s.ride_on(&approval_id, &grant, now));
            CallPlan::RodeOn(call, approval_id)
        }
        None => CallPlan::Gated(call, approval_id),
    }
}

/// Runs one planned call to its tool result.
async fn carry_out(
    ctx: &WorkflowContext<AgentRun>,
    plan: &CallPlan,
) -> Result<ToolOutput, Cancelled> {
    let (call, approval_id) = match plan {
        CallPlan::Run(call) => {
            // Unique across runs (even runs reusing a workflow id): external
            // systems deduplicate on it.
            let key = format!("{}/{}", ctx.run_id(), call.id);
            return Ok(execute_tool(ctx, call, &call.arguments, &key).await);
        }
        CallPlan::Refused(_, problem) => return Ok(ToolOutput::error(problem.clone())),
        CallPlan::RodeOn(call, approval_id) => {
            return Ok(execute_tool(ctx, call, &call.arguments, approval_id).await);
        }
        CallPlan::Gated(call, approval_id) => (call, approval_id),
    };
    let expiry = ctx.state(|s| s.approval_expiry(&call.name));
    await_decision(ctx, approval_id, expiry).await?;
    let resolution = ctx.state(|s| s.resolution(approval_id));
    Ok(match resolution {
        Resolution::Approved {
            arguments,
            edited_by,
        } => {
            let output = execute_tool(ctx, call, &arguments, approval_id).await;
            match edited_by {
                // The model must know it did not get exactly what it asked for.
                Some(reviewer) => ToolOutput {
                    content: format!(
                        "Note: reviewer {reviewer} changed the arguments before approving; the tool ran with {}.\n{}",
                        countersign_proto::canonical_json(&arguments),
                        output.content
                    ),
                    is_error: output.is_error,
                },
                None => output,
            }
        }
        Resolution::Denied { reviewer, reason } => ToolOutput::error(format!(
            "denied by {reviewer}: {}. The tool did not run.",
            if reason.is_empty() {
                "no reason given"
            } else {
                &reason
            }
        )),
        Resolution::Expired => ToolOutput::error(format!(
            "approval expired: nobody decided within {}; the tool did not run.",
            format_duration(expiry)
        )),
    })
}

/// Waits for the decision on an open approval, shared by `AgentRun` and
/// `ApprovalGate`: stage by stage (reminder and escalation when configured,
/// then expiry), announcing it on the agent's channels alongside the wait;
/// an approval still pending when the last stage ends expires. `Err` when
/// the workflow was cancelled while it waited.
async fn await_decision<W: ApprovalHost>(
    ctx: &WorkflowContext<W>,
    approval_id: &str,
    expiry: Duration,
) -> Result<(), Cancelled> {
    // The wait, stage by stage: reminder and escalation (when configured),
    // then expiry. Without them it is one timer for the whole expiry.
    let stages = ctx.state(|s| s.book().agent().waiting_stages(expiry));
    let notify = ctx.state(|s| s.book().agent().notify.clone().filter(|n| n.is_active()));
    let waiting = async {
        let mut elapsed = Duration::ZERO;
        for (at, stage) in stages {
            let mut timer = scoped::timer(ctx, at.saturating_sub(elapsed));
            let mut decided =
                Box::pin(ctx.wait_condition(|s: &W| !s.book().is_pending(approval_id)));
            let timed_out = select! {
                outcome = decided => {
                    timer.cancel();
                    outcome.map(|_| false).map_err(|_| Cancelled)
                }
                _ = timer => Ok(true),
            }?;
            if !timed_out {
                return Ok(false);
            }
            elapsed = at;
            let now = ctx.workflow_time();
            match stage {
                WaitingStage::Expire => return Ok(true),
                WaitingStage::Remind => {
                    ctx.state_mut(|s| s.book_mut().remind(approval_id, at, now))
                }
                WaitingStage::Escalate => {
                    ctx.state_mut(|s| s.book_mut().escalate(approval_id, now))
                }
            }
            publish(ctx);
            if let Some(config) = &notify {
                announce_waiting(ctx, config, approval_id, stage == WaitingStage::Escalate).await;
            }
        }
        Ok(true)
    };
    // Announcing runs alongside the wait: a slow chat service never delays
    // a decision or the expiry.
    let (slack_message, expired) = match &notify {
        Some(config) => {
            let (posted, expired) =
                futures::join!(announce_pending(ctx, config, approval_id), waiting);
            (posted, expired?)
        }
        None => (None, waiting.await?),
    };
    if expired {
        let now = ctx.workflow_time();
        ctx.state_mut(|s| s.book_mut().expire(approval_id, now));
    }
    publish(ctx);
    if let Some(config) = &notify {
        announce_decided(ctx, config, approval_id, slack_message).await;
    }
    Ok(())
}

/// Runs a call: an activity for most tools, a child workflow for sub-agents
/// and workflows.
async fn execute_tool(
    ctx: &WorkflowContext<AgentRun>,
    call: &RequestedCall,
    arguments: &Value,
    idempotency_key: &str,
) -> ToolOutput {
    let Some(tool) = ctx.state(|s| s.tool(&call.name).cloned()) else {
        return ToolOutput::error(format!("unknown tool `{}`; nothing ran.", call.name));
    };
    match &tool.binding {
        ToolBinding::Agent(_) => {
            return children::run_sub_agent(ctx, &tool, call, arguments).await;
        }
        ToolBinding::Workflow(workflow) => {
            return children::run_workflow(ctx, &tool, workflow, call, arguments).await;
        }
        _ => {}
    }
    let invocation = ToolInvocation {
        tool,
        arguments: arguments.clone(),
        idempotency_key: idempotency_key.to_string(),
    };
    scoped::activity(
        ctx,
        CountersignActivities::execute_tool,
        invocation,
        tool_activity_options(),
    )
    .await
    .unwrap_or_else(|e| ToolOutput::error(format!("the tool failed: {}", root_cause(&e))))
}

/// Posts a new approval to the agent's notification channels; answers the
/// Slack message to update once it is decided.
async fn announce_pending<W: ApprovalHost>(
    ctx: &WorkflowContext<W>,
    config: &NotifyConfig,
    approval_id: &str,
) -> Option<SlackMessage> {
    let approval = ctx.state(|s| s.book().approval(approval_id).cloned())?;
    send_notification(ctx, config, NotifyEvent::Pending { approval })
        .await
        .and_then(|outcome| outcome.slack_message)
}

/// Runs the `notify` activity; its outcome, unless the activity failed
/// (it reports channel problems itself, so failures are rare and only logged).
async fn send_notification<W: ApprovalHost>(
    ctx: &WorkflowContext<W>,
    config: &NotifyConfig,
    event: NotifyEvent,
) -> Option<NotifyOutcome> {
    let request = NotifyRequest {
        config: config.clone(),
        event,
    };
    scoped::activity(
        ctx,
        CountersignActivities::notify,
        request,
        notify_activity_options(),
    )
    .await
    .ok()
}

/// Tells the notification channels that an approval still waits (a
/// reminder), or was escalated.
async fn announce_waiting<W: ApprovalHost>(
    ctx: &WorkflowContext<W>,
    config: &NotifyConfig,
    approval_id: &str,
    escalated: bool,
) {
    let Some((approval, note)) = ctx.state(|s| {
        let s = s.book();
        let approval = s.approval(approval_id).cloned()?;
        let note = s
            .state
            .decisions
            .iter()
            .rev()
            .find(|d| d.approval_id == approval_id && d.channel == "timer")
            .map(|d| d.message.clone())
            .unwrap_or_default();
        Some((approval, note))
    }) else {
        return;
    };
    let event = NotifyEvent::Waiting {
        approval,
        escalated,
        note,
    };
    send_notification(ctx, config, event).await;
}

/// Tells the notification channels how an approval ended (decided from any
/// channel, or expired); updates the Slack message in place.
async fn announce_decided<W: ApprovalHost>(
    ctx: &WorkflowContext<W>,
    config: &NotifyConfig,
    approval_id: &str,
    slack_message: Option<SlackMessage>,
) {
    let Some((approval, decision)) = ctx.state(|s| {
        let s = s.book();
        let approval = s.approval(approval_id).cloned()?;
        let decision = s
            .state
            .decisions
            .iter()
            .rev()
            .find(|d| d.approval_id == approval_id && d.accepted)
            .cloned();
        Some((approval, decision))
    }) else {
        return;
    };
    let event = NotifyEvent::Decided {
        approval,
        decision,
        slack_message,
    };
    send_notification(ctx, config, event).await;
}

/// Runs recorded before the agent registry took their definition from the
/// input as it was; newer runs resolve it in the `resolve_agent` activity.
const PATCH_AGENT_REGISTRY: &str = "agent-registry";

/// Decodes the raw input payload: one `json/plain` payload holding an
/// [`AgentRunInput`]. Refusals are short and never quote the input whole.
fn decode_input(input: &RawValue) -> Result<RunRequest, String> {
    let data = decisions::json_payload(input).map_err(|problem| {
        format!(
            "the AgentRun input {problem}; e.g. {{\"agent\": \"<name>\", \"prompt\": \"...\", \"requester\": \"...\"}}"
        )
    })?;
    RunRequest::decode(data).map_err(|e| e.to_string())
}

/// Resolves and validates the run's agent before anything else happens:
/// by name from the worker's registry (or an inline definition, where the
/// worker allows them) in the `resolve_agent` activity, then through
/// [`Agent::new`] here in workflow code, whatever arrived. A refused input,
/// an unknown name, an invalid definition or a hash that does not match the
/// pin ends the run as Failed with the reason. `Err` carries the run's end.
async fn resolve_agent(ctx: &WorkflowContext<AgentRun>) -> Result<(), WorkflowResult<RunState>> {
    if let Some(problem) = ctx.state(|s| s.refused.clone()) {
        return Err(finish_failed(ctx, problem));
    }
    let input = ctx.state(|s| s.input().clone());
    let patched = ctx.patched(PATCH_AGENT_REGISTRY);
    let (file, from_registry, trusted_keys, payload_store) = if patched {
        let lookup = AgentLookup {
            name: input.agent.name().to_string(),
            inline: matches!(input.agent, AgentSpec::Inline(_)),
        };
        let resolved = scoped::activity(
            ctx,
            CountersignActivities::resolve_agent,
            lookup,
            resolve_activity_options(),
        )
        .await;
        match (resolved, input.agent) {
            (
                Ok(ResolvedAgent {
                    definition: Some(file),
                    trusted_keys,
                    payload_store,
                }),
                _,
            ) => (*file, true, trusted_keys, payload_store),
            (
                Ok(ResolvedAgent {
                    definition: None,
                    trusted_keys,
                    payload_store,
                }),
                AgentSpec::Inline(file),
            ) => (*file, false, trusted_keys, payload_store),
            (
                Ok(ResolvedAgent {
                    definition: None, ..
                }),
                AgentSpec::Name(name),
            ) => {
                return Err(finish_failed(
                    ctx,
                    format!("the worker did not resolve agent `{name}`"),
                ));
            }
            (Err(_), _) if is_cancelled(ctx) => return Err(finish_cancelled(ctx)),
            (Err(e), _) => return Err(finish_failed(ctx, root_cause(&e))),
        }
    } else {
        // Runs recorded before the registry trust no signing key.
        match input.agent {
            AgentSpec::Inline(file) => (*file, false, TrustedKeys::new(), false),
            AgentSpec::Name(name) => {
                return Err(finish_failed(
                    ctx,
                    format!("agent `{name}` cannot be resolved by this run's version"),
                ));
            }
        }
    };
    let name = file.name.clone();
    let agent = match Agent::new(file) {
        Ok(agent) => agent,
        Err(problem) => {
            return Err(finish_failed(
                ctx,
                format!("agent `{name}` is not a valid definition: {problem}"),
            ));
        }
    };
    if agent.model.is_none() {
        return Err(finish_failed(
            ctx,
            format!(
                "agent `{name}` has no model: its tools are all external, so it is asked through the ApprovalGate workflow, not run"
            ),
        ));
    }
    if let Some(pinned) = &input.agent_sha256
        && !pinned.eq_ignore_ascii_case(agent.sha256())
    {
        return Err(finish_failed(
            ctx,
            format!(
                "agent `{name}` is pinned to agentSha256 {pinned}, but the definition this worker resolved has {}",
                agent.sha256()
            ),
        ));
    }
    ctx.state_mut(|s| {
        // The agent's own tools come from the validated agent; a continued
        // run keeps only discovered tools of sources the agent declares.
        let carried = std::mem::take(&mut s.catalog);
        s.catalog = if patched || carried.is_empty() {
            let mut catalog = catalog::static_tools(&agent);
            // External tools are only for gates: never offered to a model.
            catalog.retain(|t| t.binding != ToolBinding::External);
            catalog.extend(
                carried
                    .into_iter()
                    .filter(|t| {
                        catalog::is_discovered_by(&agent, t)
                            && !catalog.iter().any(|c| c.name == t.name)
                    })
                    .collect::<Vec<_>>(),
            );
            catalog
        } else {
            carried
        };
        s.state.agent = agent.name.clone();
        s.state.mode = s.input().mode.unwrap_or(agent.mode).as_str().to_string();
        s.agent = Some(agent);
        s.from_registry = from_registry;
        s.trusted_keys = trusted_keys;
        s.payload_store = payload_store;
    });
    Ok(())
}

/// Lists the tools of MCP servers and OpenAPI documents (an activity: it
/// talks to them). A source that fails leaves a notice; the run goes on
/// without its tools. `Err` carries the run's end when it was cancelled.
async fn discover_tools(ctx: &WorkflowContext<AgentRun>) -> Result<(), WorkflowResult<RunState>> {
    let agent = ctx.state(|s| s.agent().file().clone());
    if !catalog::needs_discovery(&agent) {
        return Ok(());
    }
    let discovered = scoped::activity(
        ctx,
        CountersignActivities::discover_tools,
        agent,
        discovery_activity_options(),
    )
    .await;
    let Discovery { tools, problems } = match discovered {
        Ok(discovery) => discovery,
        Err(_) if is_cancelled(ctx) => return Err(finish_cancelled(ctx)),
        Err(e) => Discovery {
            tools: vec![],
            problems: vec![format!("tool discovery failed: {}", root_cause(&e))],
        },
    };
    ctx.state_mut(|s| {
        for tool in tools {
            // A discovered name never shadows a tool declared in the file.
            if s.tool(&tool.name).is_none() {
                s.catalog.push(tool);
            }
        }
        s.state.notices.extend(problems);
    });
    let offered = ctx.state(|s| s.catalog.len());
    if offered > MAX_TOOLS_OFFERED {
        return Err(finish_failed(
            ctx,
            format!(
                "the agent offers {offered} tools to the model, more than {MAX_TOOLS_OFFERED}: choose the ones it needs with `operations = [...]` (OpenAPI) or `tools = [...]` (MCP servers)"
            ),
        ));
    }
    Ok(())
}

/// Whether to start a fresh history before the next model turn: the server
/// suggests it, or the history reached the agent's limit (by default well
/// below Temporal's 10,240-event warning).
fn should_continue_as_new(ctx: &WorkflowContext<AgentRun>) -> bool {
    let limit = ctx.state(|s| {
        s.agent()
            .continue_as_new_after
            .unwrap_or(DEFAULT_CONTINUE_AS_NEW_AFTER)
    });
    ctx.continue_as_new_suggested() || ctx.history_length() >= limit
}

/// Continues the run as new, carrying everything over. Called only between
/// turns, when no approval is open, so no decision can be lost.
fn continue_as_new(ctx: &WorkflowContext<AgentRun>) -> WorkflowResult<RunState> {
    let input = ctx.state(|s| {
        let mut state = s.state.clone();
        state.continued += 1;
        AgentRunInput {
            carried: Some(Box::new(CarriedState {
                state,
                catalog: s.catalog.clone(),
                turns_taken: s.turns_taken,
            })),
            // The continuation resolves the same definition again, or fails.
            agent_sha256: Some(s.agent().sha256().to_string()),
            ..s.input().clone()
        }
    });
    if let Some(problem) = oversized(
        ctx,
        "the input of the continued run (the state it carries over)",
        &input,
    ) {
        return finish_failed(ctx, problem);
    }
    let input = RawValue::from_value(&input, ctx.payload_converter());
    ctx.continue_as_new(input, ContinueAsNewOptions::default())?;
    unreachable!("continue_as_new always returns Err")
}

/// Why the run cannot send `value` as a payload (`what` names it), when it
/// is over the run's limit ([`payload_limit::limit`]: Temporal's, or the
/// payload store's when the worker has one); the caller ends the run as
/// Failed with it. Only an oversized payload records the patch marker, so
/// every other run keeps the commands it always had.
fn oversized<W: ApprovalHost, T: serde::Serialize>(
    ctx: &WorkflowContext<W>,
    what: &str,
    value: &T,
) -> Option<String> {
    let size = payload_limit::serialized_size(value);
    let store = ctx.state(|s| s.book().payload_store);
    if size <= payload_limit::limit(store) {
        return None;
    }
    ctx.patched(payload_limit::PATCH_PAYLOAD_LIMIT)
        .then(|| payload_limit::too_large(what, size, store))
}

fn finish_failed(ctx: &WorkflowContext<AgentRun>, message: String) -> WorkflowResult<RunState> {
    ctx.state_mut(|s| s.state.status = RunStatus::Failed as i32);
    publish(ctx);
    Err(ApplicationFailure::non_retryable(message).into())
}

fn is_cancelled(ctx: &WorkflowContext<AgentRun>) -> bool {
    ctx.cancellation_token().is_cancelled()
}

/// Ends a cancelled run. Approvals still open end as expired: nobody may
/// approve a call of a run that is gone.
fn finish_cancelled(ctx: &WorkflowContext<AgentRun>) -> WorkflowResult<RunState> {
    let now = ctx.workflow_time();
    ctx.state_mut(|s| {
        let open: Vec<String> = s.open_approvals().map(|a| a.approval_id.clone()).collect();
        for id in open {
            s.expire(&id, now);
        }
        s.state.status = RunStatus::Cancelled as i32;
    });
    publish(ctx);
    Err(WorkflowTermination::cancelled())
}

/// Mirrors the run's state into search attributes, the memo (the inbox's
/// index: `countersign_proto::inbox`) and the Web UI's "current details", so
/// operators can find and understand waiting runs and the inbox never asks a
/// run. Only changes are sent: each upsert is a history event.
fn publish<W: ApprovalHost>(ctx: &WorkflowContext<W>) {
    // Runs recorded before the inbox index replay without its commands.
    let indexed = ctx.patched(PATCH_INBOX_INDEX);
    let (next, previous) = ctx.state(|s| {
        let s = s.book();
        let open: Vec<&PendingApproval> = s.open_approvals().collect();
        let status = match s.state.status() {
            RunStatus::Running if !open.is_empty() => RunStatus::AwaitingApproval,
            other => other,
        };
        let next = Published {
            status,
            pending_tools: open
                .iter()
                .filter_map(|a| a.tool.as_ref().map(|t| t.name.clone()))
                .collect(),
            approval_ids: open.iter().map(|a| a.approval_id.clone()).collect(),
            details: s.current_details(&open),
            approvers: if indexed {
                inbox::approver_keywords(open.iter().copied())
            } else {
                Vec::new()
            },
            summaries: indexed.then(|| inbox::summaries(open.iter().copied())),
        };
        (next, s.published.clone())
    });
    if previous.as_ref() == Some(&next) {
        return;
    }
    if previous.as_ref().is_none_or(|p| p.attributes_differ(&next)) {
        let mut updates = vec![
            SA_STATUS.value_set(contract::status_keyword(next.status).to_string()),
            SA_PENDING_TOOLS.value_set(next.pending_tools.clone()),
            SA_APPROVAL_IDS.value_set(next.approval_ids.clone()),
        ];
        if indexed {
            updates.push(SA_APPROVERS.value_set(next.approvers.clone()));
        }
        if previous.is_none() {
            let (agent, requester) = ctx.state(|s| {
                let s = s.book();
                (s.state.agent.clone(), s.state.requester.clone())
            });
            updates.push(SA_AGENT.value_set(agent));
            updates.push(SA_REQUESTER.value_set(requester));
        }
        ctx.upsert_search_attributes(updates);
        ctx.set_current_details(next.details.clone());
    }
    // A run with nothing open has no summaries to write: no memo command
    // until its first approval opens.
    let written = previous
        .as_ref()
        .and_then(|p| p.summaries.clone())
        .unwrap_or_default();
    if let Some(summaries) = next.summaries.as_ref().filter(|s| **s != written) {
        // Our own proto message always serializes; should it not, the run
        // goes on and the inbox falls back to asking it.
        let _ = ctx.upsert_memo([(
            inbox::MEMO_APPROVALS,
            Some(MemoValue::new(summaries.clone())),
        )]);
    }
    ctx.state_mut(|s| s.book_mut().published = Some(next));
}

/// Runs from this patch on keep the inbox's index (`CountersignApprovers`
/// and the memo's summaries of open approvals).
const PATCH_INBOX_INDEX: &str = "inbox-index";

fn assistant_entry(content: &str, calls: &[RequestedCall]) -> TranscriptEntry {
    TranscriptEntry {
        role: "assistant".into(),
        content: content.to_string(),
        tool_calls: calls
            .iter()
            .map(|c| ToolCall {
                id: c.id.clone(),
                name: c.name.clone(),
                arguments: json_to_struct(&c.arguments).ok(),
            })
            .collect(),
        ..Default::default()
    }
}

/// The innermost message of an activity failure: the activity's own words
/// (e.g. the provider's "401: bad key"), not the wrapper's "Activity task failed".
fn root_cause(error: &ActivityExecutionError) -> String {
    let Some(mut failure) = error.failure() else {
        return error.to_string();
    };
    while let Some(cause) = failure.cause.as_deref() {
        failure = cause;
    }
    failure.message.clone()
}

/// A tool as offered to the model.
fn tool_spec(tool: &CatalogTool) -> ToolSpec {
    ToolSpec {
        name: tool.name.clone(),
        description: tool.description.clone(),
        input_schema: tool.input_schema.clone(),
    }
}

/// Resolving an agent is a lookup on the worker: a refusal (unknown name,
/// inline definitions not allowed) is final; anything else is retried.
fn resolve_activity_options() -> ActivityOptions {
    activity_options(
        Duration::from_secs(30),
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
}

/// Discovery talks to every source at once; a few attempts, then the run
/// goes on without what did not answer.
fn discovery_activity_options() -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(120))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .maximum_interval(Duration::from_secs(5))
                .maximum_attempts(3)
                .build(),
        )
        .build()
}

/// Notifications: a few quick attempts (the activity reports, rather than
/// fails on, a channel that is down).
fn notify_activity_options() -> ActivityOptions {
    activity_options(
        Duration::from_secs(30),
        Duration::from_secs(1),
        Duration::from_secs(5),
    )
}

/// Model calls may be slow; retries back off up to 30 s.
fn model_activity_options() -> ActivityOptions {
    activity_options(
        Duration::from_secs(120),
        Duration::from_secs(1),
        Duration::from_secs(30),
    )
}

/// Tools are retried sooner; their idempotency key makes a retry safe.
fn tool_activity_options() -> ActivityOptions {
    activity_options(
        Duration::from_secs(60),
        Duration::from_millis(500),
        Duration::from_secs(10),
    )
}

/// How long an activity may go without a heartbeat before Temporal retries it
/// (on any worker). Activities heartbeat every
/// [`crate::activities::HEARTBEAT_EVERY`] while they run, so this bounds how
/// long a worker crash holds up a model turn or a tool call. Changing it
/// changes no command, so histories in flight replay.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(10);

/// Five attempts, exponential backoff from `first_retry` to `max_retry`,
/// and the [`HEARTBEAT_TIMEOUT`].
fn activity_options(
    timeout: Duration,
    first_retry: Duration,
    max_retry: Duration,
) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(timeout)
        .heartbeat_timeout(HEARTBEAT_TIMEOUT)
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(first_retry)
                .maximum_interval(max_retry)
                .maximum_attempts(5)
                .build(),
        )
        .build()
}

fn timestamp(t: SystemTime) -> pbjson_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    pbjson_types::Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0 => format!("{} ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{} h", s / 3600),
        s if s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Arguments of an approval as JSON (an approval always has an object).
fn approval_arguments(approval: &PendingApproval) -> Value {
    approval
        .arguments
        .as_ref()
        .map(struct_to_json)
        .unwrap_or(Value::Object(Default::default()))
}
