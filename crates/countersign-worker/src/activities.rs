//! The activities of an agent run: resolving its agent, tool discovery, a
//! model turn, a tool execution and notifications. They are the only code of
//! a run that touches the world.

use crate::catalog::{Discovery, discover};
use crate::model::{ModelError, ModelTurn, ModelTurnRequest, play_turn};
use crate::notify::{NotifyOutcome, NotifyRequest};
use crate::registry::{AgentLookup, AgentRegistry, ResolvedAgent};
use crate::tools::{ToolError, ToolInvocation, ToolOutput, run_tool};
use countersign_payloads::TranscriptError;
use countersign_policy::agent::AgentFile;
use countersign_proto::TranscriptRef;
use countersign_proto::contract::workflow_id_of_approval;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tracing::Instrument;

/// The Countersign activities, sharing one HTTP client and the worker's
/// agent registry.
pub struct CountersignActivities {
    http: reqwest::Client,
    agents: AgentRegistry,
}

impl CountersignActivities {
    /// Activities serving `agents`, with a fresh HTTP client (30 s request timeout).
    pub fn new(agents: AgentRegistry) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self { http, agents }
    }

    /// The request with its whole transcript (the stored part read from the
    /// payload store), and, when the request asks, the reference to the
    /// stored transcript now ending with the request's new entries.
    async fn whole_transcript(
        &self,
        mut request: ModelTurnRequest,
    ) -> Result<(ModelTurnRequest, Option<TranscriptRef>), ApplicationFailure> {
        if request.stored_transcript.is_none() && !request.store_transcript {
            return Ok((request, None));
        }
        let Some(transcripts) = self.agents.transcripts() else {
            // Another worker of the fleet may have the store: retried.
            return Err(ApplicationFailure::new(
                "this run keeps its transcript in a payload store and this worker has none: \
                 start the worker with --payload-store URL (COUNTERSIGN_PAYLOAD_STORE), the same \
                 store as the rest of the fleet",
            ));
        };
        let failure = |e: TranscriptError| {
            if e.is_transient() {
                ApplicationFailure::new(e.to_string())
            } else {
                ApplicationFailure::non_retryable(e.to_string())
            }
        };
        let previous = request.stored_transcript.take();
        let stored = match (request.store_transcript, request.transcript.is_empty()) {
            (true, false) => Some(
                transcripts
                    .append(previous.as_ref(), request.transcript.clone())
                    .await
                    .map_err(failure)?,
            ),
            (true, true) => previous.clone(),
            (false, _) => None,
        };
        if let Some(previous) = &previous {
            let mut whole = transcripts.load(previous).await.map_err(failure)?;
            whole.append(&mut request.transcript);
            request.transcript = whole;
        }
        Ok((request, stored))
    }
}

impl Default for CountersignActivities {
    /// No agents, inline definitions refused.
    fn default() -> Self {
        Self::new(AgentRegistry::empty())
    }
}

/// How often an activity still running reports that it is alive. The
/// workflow sets a heartbeat timeout ([`crate::workflow::HEARTBEAT_TIMEOUT`])
/// well above this, so an activity whose worker died is retried elsewhere
/// within seconds instead of after its whole start-to-close timeout. The
/// first heartbeat goes out only after this long: quick activities (most of
/// them) cost no extra round trip.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);

/// Runs `work`, heartbeating every [`HEARTBEAT_EVERY`] until it finishes.
async fn heartbeating<T>(ctx: &ActivityContext, work: impl Future<Output = T>) -> T {
    tokio::pin!(work);
    let mut ticks = tokio::time::interval_at(
        tokio::time::Instant::now() + HEARTBEAT_EVERY,
        HEARTBEAT_EVERY,
    );
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = ticks.tick() => {
                if let Err(e) = ctx.record_heartbeat(()).await {
                    tracing::warn!(error = %e, "cannot record a heartbeat");
                }
            }
        }
    }
}

/// Runs `work` until it finishes or the activity is cancelled: by the worker
/// shutting down after its grace period (`WorkerTuning::graceful_shutdown`;
/// the SDK then reports the attempt as failed with `WorkerShutdown`, and
/// Temporal retries it on another worker), by the run's cancellation, or by
/// a timeout. Without this, a call still running at the end of the grace
/// period would hold the worker's shutdown until the call itself gave up.
async fn until_cancelled<T>(
    ctx: &ActivityContext,
    work: impl Future<Output = T>,
) -> Result<T, ActivityError> {
    tokio::select! {
        done = work => Ok(done),
        _ = ctx.cancelled() => Err(ActivityError::Cancelled { details: None }),
    }
}

/// The span of a tool execution: `workflow_id`, `run_id`, `tool`,
/// `attempt`, and for a call a reviewer approved, its `approval_id` (a gated
/// call's idempotency key is its approval id).
fn tool_span(ctx: &ActivityContext, invocation: &ToolInvocation) -> tracing::Span {
    let info = ctx.info();
    let workflow_id = info.workflow_id.as_deref().unwrap_or_default();
    let approval_id = (workflow_id_of_approval(&invocation.idempotency_key) == Some(workflow_id))
        .then_some(invocation.idempotency_key.as_str());
    tracing::info_span!(
        "execute_tool",
        workflow_id,
        run_id = info.workflow_run_id.as_deref().unwrap_or_default(),
        approval_id,
        tool = %invocation.tool.name,
        attempt = info.attempt,
    )
}

/// Logs what came of a tool execution, in its [`tool_span`].
fn log_tool_result(result: &Result<ToolOutput, ToolError>) {
    match result {
        Ok(output) => tracing::info!(is_error = output.is_error, "tool ran"),
        Err(ToolError::Refused(message)) => tracing::info!(%message, "tool refused the call"),
        Err(ToolError::Transient(message)) => {
            tracing::warn!(%message, "tool failed; Temporal retries it")
        }
    }
}

#[activities]
impl CountersignActivities {
    /// Resolves the agent a run names: the registry's definition, or
    /// permission to use the run's inline one. A refusal is final (the run
    /// fails with it): an unknown name lists the names served.
    #[activity(name = "resolve_agent")]
    pub async fn resolve_agent(
        self: Arc<Self>,
        _ctx: ActivityContext,
        lookup: AgentLookup,
    ) -> Result<ResolvedAgent, ActivityError> {
        self.agents
            .resolve(&lookup)
            .map_err(|e| ActivityError::from(ApplicationFailure::non_retryable(e.to_string())))
    }

    /// Lists the tools of the agent's MCP servers and OpenAPI documents.
    #[activity(name = "discover_tools")]
    pub async fn discover_tools(
        self: Arc<Self>,
        ctx: ActivityContext,
        agent: AgentFile,
    ) -> Result<Discovery, ActivityError> {
        until_cancelled(&ctx, heartbeating(&ctx, discover(&self.http, &agent))).await
    }

    /// One model turn. Rate limits and server errors are retried by
    /// Temporal with backoff; a request the provider refuses is not. A run
    /// that keeps its transcript in the payload store sends only what is new
    /// (see [`ModelTurnRequest::stored_transcript`]): the turn reads the
    /// stored part, stores the new part, then plays the whole.
    #[activity(name = "model_turn")]
    pub async fn model_turn(
        self: Arc<Self>,
        ctx: ActivityContext,
        request: ModelTurnRequest,
    ) -> Result<ModelTurn, ActivityError> {
        let work = async {
            let (request, stored) = self.whole_transcript(request).await?;
            let mut turn = play_turn(&self.http, &request).await.map_err(|e| match e {
                ModelError::Retryable(message) => ApplicationFailure::new(message),
                ModelError::Fatal(message) => ApplicationFailure::non_retryable(message),
            })?;
            turn.stored_transcript = stored;
            Ok::<_, ApplicationFailure>(turn)
        };
        until_cancelled(&ctx, heartbeating(&ctx, work))
            .await?
            .map_err(ActivityError::from)
    }

    /// Announces an approval (Slack, webhook). Never fails: problems are
    /// reported in the outcome, so a chat outage cannot hold up a run.
    #[activity(name = "notify")]
    pub async fn notify(
        self: Arc<Self>,
        ctx: ActivityContext,
        request: NotifyRequest,
    ) -> Result<NotifyOutcome, ActivityError> {
        let outcome = until_cancelled(
            &ctx,
            heartbeating(&ctx, crate::notify::notify(&self.http, &request)),
        )
        .await?;
        // `notify` logged its problems, in the approval's span.
        Ok(outcome)
    }

    /// Runs a tool. Refusals become error results for the model; transient
    /// failures are retried by Temporal.
    #[activity(name = "execute_tool")]
    pub async fn execute_tool(
        self: Arc<Self>,
        ctx: ActivityContext,
        invocation: ToolInvocation,
    ) -> Result<ToolOutput, ActivityError> {
        let span = tool_span(&ctx, &invocation);
        let result = until_cancelled(&ctx, heartbeating(&ctx, run_tool(&self.http, &invocation)))
            .instrument(span.clone())
            .await?;
        span.in_scope(|| log_tool_result(&result));
        match result {
            Ok(output) => Ok(output),
            Err(ToolError::Refused(message)) => Ok(ToolOutput::error(message)),
            Err(ToolError::Transient(message)) => {
                Err(ActivityError::from(ApplicationFailure::new(message)))
            }
        }
    }
}
