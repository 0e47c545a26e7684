//! The input of an agent run: what the CLI, the HTTP API, the `temporal`
//! CLI, the Web UI's "Start Workflow" or any SDK passes to `AgentRun`.
//!
//! On the wire it is one JSON object in the proto3-JSON style (camelCase):
//!
//! ```json
//! {"agent": "accounts-payable", "prompt": "Pay INV-42", "requester": "alice@example.com",
//!  "mode": "user_requested", "conversationId": "c-1", "agentSha256": "<64 hex>"}
//! ```
//!
//! `agent` names an agent of the worker's registry; a whole definition (an
//! object) is accepted only by workers started with `--allow-inline-agents`.
//! The workflow decodes the input itself ([`RunRequest::decode`]), so an
//! input of the wrong shape ends the run with a clear message instead of
//! failing workflow tasks.

use crate::RunMode;
use crate::agent::{AgentFile, excerpt};
use crate::catalog::CatalogTool;
use countersign_proto::RunState;
use serde::{Deserialize, Serialize};

/// The most characters of a prompt.
pub const MAX_PROMPT_CHARS: usize = 32 * 1024;
/// The most characters of a requester, a conversation id, a parent
/// workflow id or an agent name.
pub const MAX_ID_CHARS: usize = 256;

/// How a run names its agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AgentSpec {
    /// An agent of the worker's registry, by its `name`.
    Name(String),
    /// A whole definition (accepted only by workers that allow inline agents).
    Inline(Box<AgentFile>),
}

impl AgentSpec {
    /// The agent's name, as the input gives it.
    pub fn name(&self) -> &str {
        match self {
            AgentSpec::Name(name) => name,
            AgentSpec::Inline(file) => &file.name,
        }
    }
}

/// The `AgentRun` input as it travels (serde; the JSON schema is in the
/// module docs). Older runs used snake_case names; they are still read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentRunInput {
    /// The agent: a registry name, or an inline definition.
    pub agent: AgentSpec,
    /// The user's request.
    pub prompt: String,
    /// Who asked for the run (an email or service name).
    #[serde(default)]
    pub requester: String,
    /// Overrides the agent's default mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<RunMode>,
    /// The conversation this run belongs to; empty: the workflow id.
    #[serde(
        default,
        alias = "conversation_id",
        skip_serializing_if = "String::is_empty"
    )]
    pub conversation_id: String,
    /// Pins the exact definition: the run fails unless the agent's
    /// SHA-256 (see `countersign_policy::Agent::sha256`) is this.
    #[serde(
        default,
        alias = "agent_sha256",
        skip_serializing_if = "Option::is_none"
    )]
    pub agent_sha256: Option<String>,
    /// The run that started this one as a sub-agent; empty for a top-level run.
    #[serde(
        default,
        alias = "parent_workflow_id",
        skip_serializing_if = "String::is_empty"
    )]
    pub parent_workflow_id: String,
    /// Set only when a long run continues as new: what the previous run had.
    /// Accepted only in a run that Temporal started by continue-as-new.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<Box<CarriedState>>,
}

impl AgentRunInput {
    /// A run of the registry agent `agent`.
    pub fn named(agent: &str, prompt: &str, requester: &str) -> Self {
        Self {
            agent: AgentSpec::Name(agent.to_string()),
            prompt: prompt.to_string(),
            requester: requester.to_string(),
            mode: None,
            conversation_id: String::new(),
            agent_sha256: None,
            parent_workflow_id: String::new(),
            carried: None,
        }
    }

    /// A run of an inline definition.
    pub fn inline(agent: AgentFile, prompt: &str, requester: &str) -> Self {
        Self {
            agent: AgentSpec::Inline(Box::new(agent)),
            ..Self::named("", prompt, requester)
        }
    }
}

/// What a run hands to its continuation (continue-as-new). It happens only
/// between model turns, when no approval is open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarriedState {
    /// Transcript, decisions, approvals, status so far.
    pub state: RunState,
    /// The tool catalog (the continuation rebuilds the agent's own tools from
    /// the validated agent and keeps only discovered tools of its sources).
    pub catalog: Vec<CatalogTool>,
    /// Model turns taken so far (counted against `max_turns`).
    pub turns_taken: u32,
}

/// Why a run's input was refused. Messages quote at most a short prefix of
/// what was sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Not the JSON object described in the module docs.
    #[error(
        "the AgentRun input does not fit its schema ({0}); send {{\"agent\": \"<name>\", \"prompt\": \"...\", \"requester\": \"...\"}} with optional mode, conversationId, agentSha256"
    )]
    Shape(String),
    /// A field has a value that cannot work.
    #[error("the AgentRun input's `{field}` {problem}")]
    Field {
        /// The field (camelCase, as sent).
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

/// A run's input after decoding and checking every field's bound: the only
/// form the workflow works from. The agent itself is validated when it is
/// resolved (`countersign_policy::Agent::new`).
#[derive(Debug, Clone, PartialEq)]
pub struct RunRequest {
    input: AgentRunInput,
}

impl RunRequest {
    /// Decodes the JSON bytes of an `AgentRun` input and checks its fields.
    pub fn decode(json: &[u8]) -> Result<Self, InputError> {
        let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| {
            InputError::Shape(format!("not JSON: {}", excerpt(&e.to_string(), 200)))
        })?;
        if !value.is_object() {
            return Err(InputError::Shape("not a JSON object".into()));
        }
        match value.get("agent") {
            Some(serde_json::Value::String(_) | serde_json::Value::Object(_)) => {}
            Some(_) => {
                return Err(InputError::Field {
                    field: "agent",
                    problem: "must be an agent's name (a string) or a definition (an object)"
                        .into(),
                });
            }
            None => return Err(InputError::Shape("`agent` is missing".into())),
        }
        // An inline definition is decoded on its own so that its errors
        // name the definition's field, not an untagged enum's.
        let inline = match value.get("agent") {
            Some(object @ serde_json::Value::Object(_)) => Some(
                serde_json::from_value::<AgentFile>(object.clone()).map_err(|e| {
                    InputError::Field {
                        field: "agent",
                        problem: format!(
                            "is not an agent definition: {}",
                            excerpt(&e.to_string(), 300)
                        ),
                    }
                })?,
            ),
            _ => None,
        };
        let mut input: AgentRunInput = serde_json::from_value(value)
            .map_err(|e| InputError::Shape(excerpt(&e.to_string(), 300)))?;
        if let Some(file) = inline {
            input.agent = AgentSpec::Inline(Box::new(file));
        }
        Self::new(input)
    }

    /// Checks the fields of an input built in code (a child run's, a continuation's).
    pub fn new(input: AgentRunInput) -> Result<Self, InputError> {
        let field = |field: &'static str, problem: &str| InputError::Field {
            field,
            problem: problem.to_string(),
        };
        let bounded = |name: &'static str, text: &str, max: usize| {
            if text.chars().count() > max {
                Err(field(name, &format!("is longer than {max} characters")))
            } else if text.chars().any(char::is_control) {
                Err(field(name, "must be one line without control characters"))
            } else {
                Ok(())
            }
        };
        if let AgentSpec::Name(name) = &input.agent {
            bounded("agent", name, MAX_ID_CHARS)?;
            if name.trim().is_empty() {
                return Err(field("agent", "must name an agent"));
            }
        }
        if input.prompt.trim().is_empty() {
            return Err(field("prompt", "must say what the agent should do"));
        }
        if input.prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(field(
                "prompt",
                &format!("is longer than {MAX_PROMPT_CHARS} characters"),
            ));
        }
        if input.requester.trim().is_empty() {
            return Err(field(
                "requester",
                "must say who asked for the run (an email or service name): approvals show it and separation of duties depends on it",
            ));
        }
        bounded("requester", &input.requester, MAX_ID_CHARS)?;
        bounded("conversationId", &input.conversation_id, MAX_ID_CHARS)?;
        bounded("parentWorkflowId", &input.parent_workflow_id, MAX_ID_CHARS)?;
        if let Some(sha) = &input.agent_sha256
            && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(field("agentSha256", "must be 64 hex digits"));
        }
        Ok(Self { input })
    }

    /// The input as decoded.
    pub fn input(&self) -> &AgentRunInput {
        &self.input
    }

    /// Takes the carried state out (a continuation uses it once).
    pub fn take_carried(&mut self) -> Option<Box<CarriedState>> {
        self.input.carried.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(text: &str) -> Result<RunRequest, InputError> {
        RunRequest::decode(text.as_bytes())
    }

    #[test]
    fn a_one_line_input_names_the_agent() {
        let r = decode(r#"{"agent":"accounts-payable","prompt":"Pay INV-42","requester":"alice","mode":"user_requested","conversationId":"c1","agentSha256":"00000000000000000000000000000000000000000000000000000000000000aa"}"#).unwrap();
        let input = r.input();
        assert_eq!(input.agent, AgentSpec::Name("accounts-payable".into()));
        assert_eq!(input.mode, Some(RunMode::UserRequested));
        assert_eq!(input.conversation_id, "c1");
        assert!(input.agent_sha256.is_some());
    }

    #[test]
    fn inputs_of_the_wrong_shape_say_what_to_send() {
        for (text, expected) in [
            ("[1,2]", "not a JSON object"),
            (
                "{\"prompt\":\"x\",\"requester\":\"a\"}",
                "`agent` is missing",
            ),
            (
                "{\"agent\":5,\"prompt\":\"x\",\"requester\":\"a\"}",
                "agent's name",
            ),
            ("{\"agent\":\"a\",\"prompt\":\"x\"}", "who asked"),
            (
                "{\"agent\":\"a\",\"prompt\":\" \",\"requester\":\"r\"}",
                "what the agent should do",
            ),
            (
                "{\"agent\":\"a\",\"prompt\":\"x\",\"requester\":\"r\",\"agentSha\":\"1\"}",
                "unknown field",
            ),
            (
                "{\"agent\":\"a\",\"prompt\":\"x\",\"requester\":\"r\",\"agentSha256\":\"12\"}",
                "64 hex",
            ),
            (
                "{\"agent\":{\"name\":\"x\",\"tools\":5},\"prompt\":\"x\",\"requester\":\"r\"}",
                "not an agent definition",
            ),
            ("not json", "not JSON"),
        ] {
            let e = decode(text).unwrap_err().to_string();
            assert!(e.contains(expected), "{text}: {e}");
        }
    }

    #[test]
    fn refusals_never_quote_unbounded_input() {
        let huge = "x".repeat(100_000);
        let text = format!("{{\"agent\":\"a\",\"prompt\":\"p\",\"requester\":\"r\",\"{huge}\":1}}");
        let e = decode(&text).unwrap_err().to_string();
        assert!(e.len() < 1_000, "{} bytes", e.len());
        let text = format!("{{\"agent\":\"{huge}\",\"prompt\":\"p\",\"requester\":\"r\"}}");
        let e = decode(&text).unwrap_err().to_string();
        assert!(e.len() < 1_000 && e.contains("longer than"), "{e}");
    }

    #[test]
    fn older_snake_case_inputs_are_still_read() {
        let r = decode(r#"{"agent":"a","prompt":"p","requester":"r","mode":null,"conversation_id":"c","parent_workflow_id":"w"}"#).unwrap();
        assert_eq!(r.input().conversation_id, "c");
        assert_eq!(r.input().parent_workflow_id, "w");
    }
}
