//! The input of an agent run: what the CLI, the HTTP API or any Temporal
//! client passes to the `AgentRun` workflow.

use crate::RunMode;
use crate::agent::AgentDefinition;
use serde::{Deserialize, Serialize};

/// Everything an `AgentRun` needs, resolved before it starts (the workflow
/// reads no files and no environment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRunInput {
    /// The agent, as resolved from its file.
    pub agent: AgentDefinition,
    /// The user's request.
    pub prompt: String,
    /// Overrides the agent's default mode.
    #[serde(default)]
    pub mode: Option<RunMode>,
    /// Who asked for the run (an email or service name).
    #[serde(default)]
    pub requester: String,
    /// The conversation this run belongs to; empty: the workflow id.
    #[serde(default)]
    pub conversation_id: String,
}

impl AgentRunInput {
    /// The mode the run uses: the override, else the agent's default.
    pub fn effective_mode(&self) -> RunMode {
        self.mode.unwrap_or(self.agent.mode)
    }
}
