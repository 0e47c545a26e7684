//! The activities of an agent run: tool discovery, a model turn and a tool
//! execution. They are the only code of a run that touches the world.

use crate::catalog::{Discovery, discover};
use crate::model::{ModelError, ModelTurn, ModelTurnRequest, play_turn};
use crate::notify::{NotifyOutcome, NotifyRequest};
use crate::tools::{ToolError, ToolInvocation, ToolOutput, run_tool};
use countersign_policy::agent::AgentDefinition;
use std::sync::Arc;
use std::time::Duration;
use temporalio_macros::activities;
use temporalio_sdk::ApplicationFailure;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

/// The Countersign activities, sharing one HTTP client.
pub struct CountersignActivities {
    http: reqwest::Client,
}

impl CountersignActivities {
    /// Activities with a fresh HTTP client (30 s request timeout).
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_default();
        Self { http }
    }
}

impl Default for CountersignActivities {
    fn default() -> Self {
        Self::new()
    }
}

#[activities]
impl CountersignActivities {
    /// Lists the tools of the agent's MCP servers and OpenAPI documents.
    #[activity(name = "discover_tools")]
    pub async fn discover_tools(
        self: Arc<Self>,
        _ctx: ActivityContext,
        agent: AgentDefinition,
    ) -> Result<Discovery, ActivityError> {
        Ok(discover(&self.http, &agent).await)
    }

    /// One model turn. Rate limits and server errors are retried by
    /// Temporal with backoff; a request the provider refuses is not.
    #[activity(name = "model_turn")]
    pub async fn model_turn(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: ModelTurnRequest,
    ) -> Result<ModelTurn, ActivityError> {
        play_turn(&self.http, &request).await.map_err(|e| {
            ActivityError::from(match e {
                ModelError::Retryable(message) => ApplicationFailure::new(message),
                ModelError::Fatal(message) => ApplicationFailure::non_retryable(message),
            })
        })
    }

    /// Announces an approval (Slack, webhook). Never fails: problems are
    /// reported in the outcome, so a chat outage cannot hold up a run.
    #[activity(name = "notify")]
    pub async fn notify(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: NotifyRequest,
    ) -> Result<NotifyOutcome, ActivityError> {
        let outcome = crate::notify::notify(&self.http, &request).await;
        for problem in &outcome.problems {
            tracing::warn!(problem, "notification failed");
        }
        Ok(outcome)
    }

    /// Runs a tool. Refusals become error results for the model; transient
    /// failures are retried by Temporal.
    #[activity(name = "execute_tool")]
    pub async fn execute_tool(
        self: Arc<Self>,
        _ctx: ActivityContext,
        invocation: ToolInvocation,
    ) -> Result<ToolOutput, ActivityError> {
        match run_tool(&self.http, &invocation).await {
            Ok(output) => Ok(output),
            Err(ToolError::Refused(message)) => Ok(ToolOutput::error(message)),
            Err(ToolError::Transient(message)) => {
                Err(ActivityError::from(ApplicationFailure::new(message)))
            }
        }
    }
}
