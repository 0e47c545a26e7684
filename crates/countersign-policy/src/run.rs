//! The input of an agent run: what the CLI, the HTTP API or any Temporal
//! client passes to the `AgentRun` workflow.

use crate::RunMode;
use crate::agent::AgentDefinition;
use crate::catalog::CatalogTool;
use countersign_proto::RunState;
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
    /// The run that started this one as a sub-agent; empty for a top-level run.
    #[serde(default)]
    pub parent_workflow_id: String,
    /// Set only when a long run continues as new: what the previous run
    /// had, so nothing is lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<Box<CarriedState>>,
}

/// What a run hands to its continuation (continue-as-new). It happens only
/// between model turns, when no approval is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarriedState {
    /// Transcript, decisions, approvals, status so far.
    pub state: RunState,
    /// The tool catalog (not discovered again: the model keeps the same tools).
    pub catalog: Vec<CatalogTool>,
    /// Model turns taken so far (counted against `max_turns`).
    pub turns_taken: u32,
}

impl AgentRunInput {
    /// The mode the run uses: the override, else the agent's default.
    pub fn effective_mode(&self) -> RunMode {
        self.mode.unwrap_or(self.agent.mode)
    }
}
