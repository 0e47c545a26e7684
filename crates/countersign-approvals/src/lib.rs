//! The approvals crate: the one place that sends decisions to runs.
//!
//! [`Approvals`] lists pending approvals across runs (pages of Temporal
//! visibility: each run's memo summarizes its open approvals, so no run is
//! asked), shows one, approves or denies it by the `decide` update (returning the
//! outcome) or by the `approval_decision` signal (fire-and-forget), and starts
//! and inspects runs. It addresses the `AgentRun` workflow only through the
//! public contract (`countersign_proto::contract`), never through the worker.

mod connection;
mod contract;
mod error;
mod inbox;

pub use connection::{
    ConnectionSettings, connect_with, connection_settings_from, connection_settings_from_env,
};
pub use contract::{
    AgentRunWorkflow, ApprovalDecisionSignal, ApprovalGateWorkflow, DecideUpdate,
    PendingApprovalsQuery, RunStateQuery,
};
pub use countersign_proto::signing::{InvalidKeyId, SigningKey};
pub use error::ApprovalsError;
pub use inbox::{
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, PageRequest, PendingFilter, PendingPage, ReviewerFilter,
};

use countersign_payloads::TranscriptStore;
use countersign_policy::run::AgentRunInput;
use countersign_proto::contract::{
    GATE_WORKFLOW_TYPE, SA_AGENT, SA_PENDING_TOOLS, SA_REQUESTER, SA_STATUS, TASK_QUEUE,
    WORKFLOW_TYPE, workflow_id_of_approval,
};
use countersign_proto::{
    Decision, DecisionKind, DecisionOutcome, DecisionScope, GateOutcome, GateRequest,
    PendingApproval, RunState, json_to_struct,
};
use futures::StreamExt;
use serde_json::Value;
use temporalio_client::{
    Client, WorkflowExecuteUpdateOptions, WorkflowGetResultOptions, WorkflowHandle,
    WorkflowListOptions, WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions,
    WorkflowStartUpdateOptions,
};
use temporalio_common::search_attributes::SearchAttributeKey;
use tracing::Instrument;

/// A run as listed by `run list`.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSummary {
    /// The workflow id.
    pub workflow_id: String,
    /// The `CountersignStatus` search attribute.
    pub status: String,
    /// The agent's name.
    pub agent: String,
    /// Who started it.
    pub requester: String,
    /// Tools waiting for a decision.
    pub pending_tools: Vec<String>,
}

/// How long the inbox waits for a run from before its index to answer its
/// query.
const QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

async fn tokio_timeout<F: std::future::Future>(
    limit: std::time::Duration,
    future: F,
) -> Option<F::Output> {
    tokio::time::timeout(limit, future).await.ok()
}

/// What an approval request says, besides the approval id.
#[derive(Debug, Clone, Default)]
pub struct ApproveOptions {
    /// Why the reviewer approves.
    pub reason: String,
    /// Replaces the arguments the call runs with (a JSON object).
    pub edited_arguments: Option<Value>,
    /// The `argumentsSha256` the reviewer saw; refused if the call's differs.
    /// With `for_rest_of_run`, it also limits the sticky approval to calls
    /// with these same arguments.
    pub arguments_sha256: Option<String>,
    /// Approve this tool for the rest of the run (scope `RUN`, a sticky
    /// approval); never allowed for money.
    pub for_rest_of_run: bool,
}

/// The approvals client.
#[derive(Clone)]
pub struct Approvals {
    client: Client,
    /// Signs every decision sent, when set: the key id and the private key.
    signer: Option<std::sync::Arc<(String, SigningKey)>>,
    /// Where runs keep their transcripts, when the workers have a payload
    /// store: run states are given with their whole transcript.
    transcripts: Option<TranscriptStore>,
}

impl Approvals {
    /// Wraps a connected Temporal client.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            signer: None,
            transcripts: None,
        }
    }

    /// The same client, reading the transcripts runs keep in the payload
    /// store (workers with `--payload-store`), so [`Approvals::run_state`]
    /// and [`Approvals::wait_for_run`] give the whole conversation. The
    /// Temporal client should have the store's codec too
    /// (`countersign_payloads::install`). Without it, a run state's
    /// `transcript` holds only the entries after its `stored_transcript`.
    pub fn with_transcripts(mut self, transcripts: TranscriptStore) -> Self {
        self.transcripts = Some(transcripts);
        self
    }

    /// `state` with its stored transcript read, when this client can.
    async fn whole(&self, mut state: RunState) -> Result<RunState, ApprovalsError> {
        if let Some(transcripts) = &self.transcripts {
            transcripts.resolve(&mut state).await?;
        }
        Ok(state)
    }

    /// The same client, signing every decision it sends ([`Approvals::decide`],
    /// [`Approvals::send_decision`] and the helpers built on them) with `key`
    /// under `key_id`, the id the workers know its public key by
    /// (`--trusted-keys DIR` holds it as `<key_id>.pub`).
    pub fn with_signing_key(mut self, key_id: &str, key: SigningKey) -> Result<Self, InvalidKeyId> {
        countersign_proto::signing::check_key_id(key_id)?;
        self.signer = Some(std::sync::Arc::new((key_id.to_string(), key)));
        Ok(self)
    }

    /// The id of the key this client signs with, if it signs.
    pub fn signing_key_id(&self) -> Option<&str> {
        self.signer.as_deref().map(|(id, _)| id.as_str())
    }

    /// Signs `decision` when this client has a signing key.
    fn signed(&self, mut decision: Decision) -> Decision {
        if let Some((key_id, key)) = self.signer.as_deref() {
            // The key id was checked in `with_signing_key`.
            let _ = countersign_proto::signing::sign(&mut decision, key_id, key);
        }
        decision
    }

    /// Connects with the Temporal SDK's standard settings: `TEMPORAL_ADDRESS`,
    /// `TEMPORAL_NAMESPACE`, `TEMPORAL_API_KEY`, TLS variables and
    /// `temporal.toml` profiles (`TEMPORAL_PROFILE`, `TEMPORAL_CONFIG_FILE`).
    pub async fn connect_from_env() -> Result<Self, ApprovalsError> {
        Ok(Self::new(connect_from_env().await?))
    }

    /// The underlying Temporal client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn run_handle(&self, workflow_id: &str) -> WorkflowHandle<Client, AgentRunWorkflow> {
        self.client
            .get_workflow_handle::<AgentRunWorkflow>(workflow_id)
    }

    fn handle_for_approval(
        &self,
        approval_id: &str,
    ) -> Result<WorkflowHandle<Client, AgentRunWorkflow>, ApprovalsError> {
        let workflow_id = workflow_id_of_approval(approval_id)
            .ok_or_else(|| ApprovalsError::InvalidApprovalId(approval_id.to_string()))?;
        Ok(self.run_handle(workflow_id))
    }

    /// Starts an `ApprovalGate` on `task_queue` (default `countersign`).
    pub async fn start_gate(
        &self,
        request: GateRequest,
        workflow_id: &str,
        task_queue: Option<&str>,
    ) -> Result<(), ApprovalsError> {
        let summary = format!(
            "Countersign gate: `{}` of agent `{}` for {}",
            request.tool, request.agent, request.requester
        );
        let options = WorkflowStartOptions::new(task_queue.unwrap_or(TASK_QUEUE), workflow_id)
            .static_summary(summary)
            .build();
        self.client
            .start_workflow(ApprovalGateWorkflow, request, options)
            .await
            .map_err(|e| {
                ApprovalsError::Temporal(format!("cannot start gate `{workflow_id}`: {e}"))
            })?;
        Ok(())
    }

    /// Waits for a gate's outcome (a gate that failed, e.g. on bad input,
    /// is an error naming the cause).
    pub async fn wait_for_gate(&self, workflow_id: &str) -> Result<GateOutcome, ApprovalsError> {
        self.client
            .get_workflow_handle::<ApprovalGateWorkflow>(workflow_id)
            .get_result(WorkflowGetResultOptions::default())
            .await
            .map_err(|e| ApprovalsError::Temporal(format!("gate `{workflow_id}`: {e}")))
    }

    /// Starts an agent run; returns its workflow id.
    pub async fn start_run(
        &self,
        input: AgentRunInput,
        workflow_id: &str,
        task_queue: Option<&str>,
    ) -> Result<String, ApprovalsError> {
        let summary = format!(
            "Countersign agent `{}` for {}",
            input.agent.name(),
            if input.requester.is_empty() {
                "unknown requester"
            } else {
                &input.requester
            }
        );
        let options = WorkflowStartOptions::new(task_queue.unwrap_or(TASK_QUEUE), workflow_id)
            .static_summary(summary)
            .static_details(format!("Prompt: {}", input.prompt))
            .build();
        let handle = self
            .client
            .start_workflow(AgentRunWorkflow, input, options)
            .await
            .map_err(|e| {
                ApprovalsError::Temporal(format!("cannot start run `{workflow_id}`: {e}"))
            })?;
        Ok(handle.info().workflow_id.clone())
    }

    /// Waits for a run to finish and returns its final state.
    pub async fn wait_for_run(&self, workflow_id: &str) -> Result<RunState, ApprovalsError> {
        let state = self
            .run_handle(workflow_id)
            .get_result(WorkflowGetResultOptions::default())
            .await
            .map_err(|e| ApprovalsError::Temporal(format!("run `{workflow_id}`: {e}")))?;
        self.whole(state).await
    }

    /// The state of a run (running or closed).
    pub async fn run_state(&self, workflow_id: &str) -> Result<RunState, ApprovalsError> {
        let state = self
            .run_handle(workflow_id)
            .query(RunStateQuery, (), WorkflowQueryOptions::default())
            .await
            .map_err(|e| error::from_query(e, workflow_id))?;
        self.whole(state).await
    }

    /// Lists runs, newest first, optionally only those with a
    /// `CountersignStatus`, at most `limit` of them (`None`: all).
    pub async fn list_runs(
        &self,
        status: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<RunSummary>, ApprovalsError> {
        self.list_of(&format!("WorkflowType = '{WORKFLOW_TYPE}'"), status, limit)
            .await
    }

    /// The open runs and gates waiting for a decision, newest first, at most
    /// `limit` of them, from their search attributes alone (agent, pending
    /// tools): what `countersign serve`'s pending-approvals gauge counts.
    pub async fn list_waiting(
        &self,
        limit: Option<usize>,
    ) -> Result<Vec<RunSummary>, ApprovalsError> {
        let types = format!(
            "(WorkflowType = '{WORKFLOW_TYPE}' OR WorkflowType = '{GATE_WORKFLOW_TYPE}') AND ExecutionStatus = 'Running'"
        );
        self.list_of(&types, Some("AwaitingApproval"), limit).await
    }

    /// Lists the workflows `types` (a visibility condition on
    /// `WorkflowType`), newest first, optionally only those with a
    /// `CountersignStatus`, at most `limit` of them.
    async fn list_of(
        &self,
        types: &str,
        status: Option<&str>,
        limit: Option<usize>,
    ) -> Result<Vec<RunSummary>, ApprovalsError> {
        let mut query = format!("({types})");
        if let Some(status) = status {
            // Status names are plain words; quotes would end the literal.
            query.push_str(&format!(
                " AND {SA_STATUS} = '{}'",
                status.replace('\'', "")
            ));
        }
        let options = WorkflowListOptions::builder().maybe_limit(limit).build();
        let mut stream = self.client.list_workflows(query, options);
        let mut runs = Vec::new();
        while let Some(execution) = stream.next().await {
            let execution =
                execution.map_err(|e| ApprovalsError::Temporal(format!("listing runs: {e}")))?;
            let attrs = execution.search_attributes();
            let keyword = |name: &'static str| {
                attrs
                    .get(&SearchAttributeKey::<String>::keyword(name))
                    .unwrap_or_default()
            };
            runs.push(RunSummary {
                workflow_id: execution.id().to_string(),
                status: keyword(SA_STATUS),
                agent: keyword(SA_AGENT),
                requester: keyword(SA_REQUESTER),
                pending_tools: attrs
                    .get(&SearchAttributeKey::<Vec<String>>::keyword_list(
                        SA_PENDING_TOOLS,
                    ))
                    .unwrap_or_default(),
            });
        }
        Ok(runs)
    }

    /// The search attributes of the contract
    /// (`countersign_proto::contract::SEARCH_ATTRIBUTES`) that this
    /// namespace lacks or has with another type: a run upserting one of them
    /// would fail its workflow tasks, so a worker refuses to start without
    /// them. An error when the server does not say (some hosted services do
    /// not offer the operator API).
    pub async fn missing_search_attributes(
        &self,
    ) -> Result<Vec<(&'static str, &'static str)>, ApprovalsError> {
        use temporalio_client::NamespacedClient;
        use temporalio_client::tonic::IntoRequest;
        use temporalio_common::protos::temporal::api::enums::v1::IndexedValueType;
        use temporalio_common::protos::temporal::api::operatorservice::v1::ListSearchAttributesRequest;
        let request = ListSearchAttributesRequest {
            namespace: self.client.namespace(),
        };
        let mut operator = self.client.connection().operator_service();
        let registered = operator
            .list_search_attributes(request.into_request())
            .await
            .map_err(|status| {
                ApprovalsError::Temporal(format!("listing search attributes: {}", status.message()))
            })?
            .into_inner()
            .custom_attributes;
        Ok(countersign_proto::contract::SEARCH_ATTRIBUTES
            .into_iter()
            .filter(|(name, kind)| {
                let expected = IndexedValueType::from_str_name(&format!(
                    "INDEXED_VALUE_TYPE_{}",
                    kind.replace("KeywordList", "Keyword_List").to_uppercase()
                ));
                registered.get(*name).copied() != expected.map(|t| t as i32)
            })
            .collect())
    }

    /// The pending approvals of one run.
    pub async fn pending_of_run(
        &self,
        workflow_id: &str,
    ) -> Result<Vec<PendingApproval>, ApprovalsError> {
        self.run_handle(workflow_id)
            .query(PendingApprovalsQuery, (), WorkflowQueryOptions::default())
            .await
            .map_err(|e| error::from_query(e, workflow_id))
    }

    /// One approval, in whatever state it is, found from its id alone.
    pub async fn get(&self, approval_id: &str) -> Result<PendingApproval, ApprovalsError> {
        let workflow_id = workflow_id_of_approval(approval_id)
            .ok_or_else(|| ApprovalsError::InvalidApprovalId(approval_id.to_string()))?;
        let state = self.run_state(workflow_id).await.map_err(|e| match e {
            ApprovalsError::NotFound(_) => ApprovalsError::NotFound(approval_id.to_string()),
            other => other,
        })?;
        state
            .approvals
            .into_iter()
            .find(|a| a.approval_id == approval_id)
            .ok_or_else(|| ApprovalsError::NotFound(approval_id.to_string()))
    }

    /// How an approval of a finished run was closed, and by whom; `None`
    /// when the run never had it.
    async fn closed_on_finished_run(&self, approval_id: &str) -> Option<String> {
        let workflow_id = workflow_id_of_approval(approval_id)?;
        let state = self.run_state(workflow_id).await.ok()?;
        let approval = state
            .approvals
            .iter()
            .find(|a| a.approval_id == approval_id)?;
        let by = state
            .decisions
            .iter()
            .rev()
            .find(|d| d.approval_id == approval_id && d.accepted && !d.reviewer.is_empty())
            .map(|d| format!(" by {}", d.reviewer))
            .unwrap_or_default();
        Some(format!(
            "approval `{approval_id}` is closed ({}{by}) and its run has finished",
            approval
                .state()
                .as_str_name()
                .trim_start_matches("APPROVAL_STATE_")
        ))
    }

    /// Sends a decision by the `decide` update and returns the run's answer.
    /// A decision the run refuses comes back as a typed error. The update id
    /// is derived from approval id and reviewer, so a retry is not counted twice.
    ///
    /// Logs the answer (info) in a `decide` span carrying `approval_id`,
    /// `workflow_id`, `run_id` (once the server named the run), `reviewer`
    /// and `kind`.
    pub async fn decide(&self, decision: Decision) -> Result<DecisionOutcome, ApprovalsError> {
        let decision = self.signed(decision);
        let span = tracing::info_span!(
            "decide",
            approval_id = %decision.approval_id,
            workflow_id = workflow_id_of_approval(&decision.approval_id).unwrap_or_default(),
            run_id = tracing::field::Empty,
            reviewer = %decision.reviewer,
            kind = decision.kind().as_str_name(),
        );
        let result = self.decide_in_span(decision).instrument(span.clone()).await;
        span.in_scope(|| match &result {
            Ok(outcome) => tracing::info!(
                accepted = outcome.accepted,
                state = outcome.state().as_str_name(),
                answer = %outcome.message,
                "decision answered"
            ),
            Err(e) => tracing::info!(error = %e, "decision refused"),
        });
        result
    }

    async fn decide_in_span(&self, decision: Decision) -> Result<DecisionOutcome, ApprovalsError> {
        check_size(&decision)?;
        let handle = self.handle_for_approval(&decision.approval_id)?;
        let approval_id = decision.approval_id.clone();
        // A retry of the same request dedupes on this id (first outcome
        // returned); a different kind of decision by the same reviewer is a
        // new update, which the validator judges (e.g. "already decided").
        let kind = match decision.kind() {
            DecisionKind::Approve => "approve",
            DecisionKind::Deny => "deny",
            DecisionKind::Unspecified => "unspecified",
        };
        let update_id = update_id(&decision.approval_id, &decision.reviewer, kind);
        let options: WorkflowStartUpdateOptions = WorkflowExecuteUpdateOptions::builder()
            .update_id(update_id)
            .build()
            .into();
        let rpc_options = options.rpc_options.clone();
        let sent = match handle.start_update(DecideUpdate, decision, options).await {
            Ok(update) => {
                if let Some(run_id) = update.workflow_run_id() {
                    tracing::Span::current().record("run_id", run_id);
                }
                update.get_result(rpc_options).await
            }
            Err(e) => Err(e),
        }
        .map_err(|e| error::from_update(e, &approval_id));
        match sent {
            // A finished run takes no updates; if it knew the approval, the
            // approval was closed before the run ended: a conflict, not "unknown".
            Err(ApprovalsError::NotFound(message)) => {
                match self.closed_on_finished_run(&approval_id).await {
                    Some(text) => Err(ApprovalsError::AlreadyDecided(text)),
                    None => Err(ApprovalsError::NotFound(message)),
                }
            }
            other => other,
        }
    }

    /// Decides several approvals of one run at once. Each decision is sent
    /// and validated on its own (one refused does not stop the others); the
    /// outcomes come back in the order given. Decisions for approvals of
    /// different runs are refused up front, before anything is sent.
    pub async fn decide_batch(
        &self,
        decisions: Vec<Decision>,
    ) -> Result<Vec<(String, Result<DecisionOutcome, ApprovalsError>)>, ApprovalsError> {
        let mut runs = decisions
            .iter()
            .map(|d| {
                workflow_id_of_approval(&d.approval_id)
                    .ok_or_else(|| ApprovalsError::InvalidApprovalId(d.approval_id.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        runs.sort();
        runs.dedup();
        if runs.len() > 1 {
            return Err(ApprovalsError::InvalidDecision(format!(
                "a batch decides approvals of one run; these belong to {}",
                runs.join(", ")
            )));
        }
        let outcomes = futures::future::join_all(decisions.into_iter().map(|d| async move {
            let id = d.approval_id.clone();
            (id, self.decide(d).await)
        }))
        .await;
        Ok(outcomes)
    }

    /// Sends a decision by the `approval_decision` signal (fire-and-forget:
    /// what the run cannot accept is recorded as rejected in its `run_state`).
    pub async fn send_decision(&self, decision: Decision) -> Result<(), ApprovalsError> {
        let decision = self.signed(decision);
        check_size(&decision)?;
        let handle = self.handle_for_approval(&decision.approval_id)?;
        let approval_id = decision.approval_id.clone();
        let span = tracing::info_span!(
            "signal_decision",
            approval_id = %decision.approval_id,
            workflow_id = handle.info().workflow_id.as_str(),
            reviewer = %decision.reviewer,
            kind = decision.kind().as_str_name(),
        );
        let payload = serde_json::to_value(&decision)
            .map_err(|e| ApprovalsError::InvalidDecision(e.to_string()))?;
        let sent = handle
            .signal(
                ApprovalDecisionSignal,
                payload,
                WorkflowSignalOptions::default(),
            )
            .instrument(span.clone())
            .await
            .map_err(|e| error::from_interaction(e, &approval_id));
        span.in_scope(|| match &sent {
            Ok(()) => tracing::info!("decision signalled"),
            Err(e) => tracing::info!(error = %e, "decision not signalled"),
        });
        sent
    }

    /// Approves a pending call (by update).
    pub async fn approve(
        &self,
        approval_id: &str,
        reviewer: &str,
        options: ApproveOptions,
    ) -> Result<DecisionOutcome, ApprovalsError> {
        self.decide(approve_decision(approval_id, reviewer, options)?)
            .await
    }

    /// Denies a pending call (by update); the model is told `reason`.
    pub async fn deny(
        &self,
        approval_id: &str,
        reviewer: &str,
        reason: &str,
    ) -> Result<DecisionOutcome, ApprovalsError> {
        self.decide(deny_decision(approval_id, reviewer, reason))
            .await
    }
}

/// The `Decision` that approves `approval_id` (scope: this call only).
pub fn approve_decision(
    approval_id: &str,
    reviewer: &str,
    options: ApproveOptions,
) -> Result<Decision, ApprovalsError> {
    let edited_arguments = options
        .edited_arguments
        .as_ref()
        .map(json_to_struct)
        .transpose()
        .map_err(|e| ApprovalsError::InvalidDecision(format!("edited arguments: {e}")))?;
    Ok(Decision {
        approval_id: approval_id.to_string(),
        kind: DecisionKind::Approve as i32,
        reviewer: reviewer.to_string(),
        reason: options.reason,
        edited_arguments,
        arguments_sha256: options.arguments_sha256.unwrap_or_default(),
        scope: if options.for_rest_of_run {
            DecisionScope::Run
        } else {
            DecisionScope::Once
        } as i32,
        signature: None,
    })
}

/// The `Decision` that denies `approval_id`; the model is told `reason`.
pub fn deny_decision(approval_id: &str, reviewer: &str, reason: &str) -> Decision {
    Decision {
        approval_id: approval_id.to_string(),
        kind: DecisionKind::Deny as i32,
        reviewer: reviewer.to_string(),
        reason: reason.to_string(),
        scope: DecisionScope::Once as i32,
        ..Default::default()
    }
}

/// Connects to Temporal with the SDK's standard environment variables and
/// `temporal.toml` profiles: [`connection_settings_from_env`], then
/// [`connect_with`].
pub async fn connect_from_env() -> Result<Client, ApprovalsError> {
    connect_with(connection_settings_from_env()?).await
}

/// The most characters of an update id Temporal takes (its default
/// `limit.maxIDLength`).
const MAX_UPDATE_ID_CHARS: usize = 1000;

/// The `decide` update's id: `decide:<approval id>:<reviewer>:<approve|deny>`,
/// so a retried request gets the first outcome and is not counted twice;
/// when that is longer than Temporal takes (a workflow id near its own
/// limit), `decide:sha256:<hex of that text>`, which dedupes the same way.
pub fn update_id(approval_id: &str, reviewer: &str, kind: &str) -> String {
    let readable = format!("decide:{approval_id}:{reviewer}:{kind}");
    if readable.chars().count() <= MAX_UPDATE_ID_CHARS {
        return readable;
    }
    use sha2::{Digest, Sha256};
    format!(
        "decide:sha256:{}",
        hex::encode(Sha256::digest(readable.as_bytes()))
    )
}

/// Refuses, before sending, a decision the run would refuse for its size or
/// form anyway ([`countersign_proto::contract::check_field_bounds`], the
/// bounds the run applies), with the same refusal code.
fn check_size(decision: &Decision) -> Result<(), ApprovalsError> {
    use countersign_proto::contract::{check_field_bounds, check_reason_bound};
    check_reason_bound(decision)
        .and_then(|()| check_field_bounds(decision))
        .map_err(|e| error::from_refusal(e.code, e.message))
}

#[cfg(test)]
mod update_id_tests {
    use super::*;

    #[test]
    fn update_ids_are_readable_and_fit_temporal() {
        assert_eq!(
            update_id("wf~1a2b", "bob@example.com", "approve"),
            "decide:wf~1a2b:bob@example.com:approve"
        );
        let long = format!("{}~1a2b3c4d", "w".repeat(1000));
        let id = update_id(&long, "bob@example.com", "approve");
        assert!(id.starts_with("decide:sha256:"), "{id}");
        assert!(id.len() <= MAX_UPDATE_ID_CHARS);
        // The same decision gets the same id (retries dedupe), another kind another.
        assert_eq!(id, update_id(&long, "bob@example.com", "approve"));
        assert_ne!(id, update_id(&long, "bob@example.com", "deny"));
    }
}
