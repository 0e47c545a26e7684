//! The activities of an agent run: a model turn and a tool execution. They
//! are the only code of a run that touches the world.

use crate::model::{ModelTurn, ModelTurnRequest, play_turn};
use crate::tools::{ToolError, ToolInvocation, ToolOutput, run_builtin};
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
    /// One model turn.
    #[activity(name = "model_turn")]
    pub async fn model_turn(
        self: Arc<Self>,
        _ctx: ActivityContext,
        request: ModelTurnRequest,
    ) -> Result<ModelTurn, ActivityError> {
        Ok(play_turn(&request))
    }

    /// Runs a tool. Refusals become error results for the model; transient
    /// failures are retried by Temporal.
    #[activity(name = "execute_tool")]
    pub async fn execute_tool(
        self: Arc<Self>,
        _ctx: ActivityContext,
        invocation: ToolInvocation,
    ) -> Result<ToolOutput, ActivityError> {
        match run_builtin(&self.http, &invocation).await {
            Ok(output) => Ok(output),
            Err(ToolError::Refused(message)) => Ok(ToolOutput::error(message)),
            Err(ToolError::Transient(message)) => {
                Err(ActivityError::from(ApplicationFailure::new(message)))
            }
        }
    }
}
