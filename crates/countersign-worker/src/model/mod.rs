//! Model providers. A model turn takes the transcript so far and answers with
//! text and, optionally, tool calls.
//!
//! The `scripted` provider plays the steps of the agent file. It is a pure
//! function of the transcript, so a retried or replayed turn answers the same.

use countersign_policy::agent::{ModelConfig, ScriptedStep};
use countersign_proto::{TranscriptEntry, TranscriptRef};
use serde::{Deserialize, Serialize};

pub mod compaction;
pub mod openai;

/// The input of the `model_turn` activity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelTurnRequest {
    /// The provider and its settings.
    pub model: ModelConfig,
    /// The agent's system prompt.
    pub instructions: String,
    /// The conversation so far; with `stored_transcript`, only what came
    /// after the stored part.
    pub transcript: Vec<TranscriptEntry>,
    /// The tools the model may call.
    #[serde(default)]
    pub tools: Vec<ToolSpec>,
    /// The start of the conversation, kept in the payload store (issue 16):
    /// the activity reads it and puts `transcript` after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_transcript: Option<TranscriptRef>,
    /// Store `transcript` after `stored_transcript` and answer the
    /// reference to the whole ([`ModelTurn::stored_transcript`]), so the
    /// next turn's input carries only what is new.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub store_transcript: bool,
}

/// A tool as offered to a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    /// The name the model calls it by (may contain a `.`, e.g. `gmail.send`).
    pub name: String,
    /// What it does.
    pub description: String,
    /// The JSON schema of its arguments.
    pub input_schema: serde_json::Value,
}

/// Why a model turn failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Worth retrying (429, 5xx, timeout, connection refused).
    #[error("{0}")]
    Retryable(String),
    /// Will not succeed as configured (a 4xx other than 429, an answer that
    /// does not parse, a missing API key).
    #[error("{0}")]
    Fatal(String),
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestedCall {
    /// Unique within the run.
    pub id: String,
    /// The tool's name.
    pub name: String,
    /// The arguments, a JSON object.
    pub arguments: serde_json::Value,
}

/// The model's answer for one turn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelTurn {
    /// What the model says (its reasoning, or the final answer).
    pub content: String,
    /// The tools it wants to call; empty means this is the final answer.
    pub tool_calls: Vec<RequestedCall>,
    /// For a request with `store_transcript`: the stored transcript, now
    /// ending with the request's `transcript`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_transcript: Option<TranscriptRef>,
}

/// Plays one turn of the request's model given the transcript.
pub async fn play_turn(
    http: &reqwest::Client,
    request: &ModelTurnRequest,
) -> Result<ModelTurn, ModelError> {
    match &request.model {
        ModelConfig::Scripted { steps } => Ok(scripted_turn(steps, &request.transcript)),
        ModelConfig::Openai(model) => {
            openai::chat_turn(
                http,
                model,
                &request.instructions,
                &request.transcript,
                &request.tools,
            )
            .await
        }
    }
}

/// The scripted model: finds the current step by walking the transcript
/// (each assistant entry is one played step; its tool results choose the
/// next), then plays it.
pub fn scripted_turn(steps: &[ScriptedStep], transcript: &[TranscriptEntry]) -> ModelTurn {
    let position = |id: &str| {
        steps
            .iter()
            .enumerate()
            .position(|(i, s)| s.step_id(i) == id)
    };
    let mut current = 0usize;
    let mut turns_played = 0usize;
    let mut last_result = String::new();
    let mut last_error = String::new();
    let mut entries = transcript.iter().peekable();
    while let Some(entry) = entries.next() {
        if entry.role != "assistant" {
            continue;
        }
        turns_played += 1;
        let mut any_error = false;
        while let Some(result) = entries.next_if(|e| e.role == "tool") {
            last_result = result.content.clone();
            if result.is_error {
                any_error = true;
                last_error = result.content.clone();
            }
        }
        let Some(step) = steps.get(current) else {
            break;
        };
        let target = if any_error {
            step.on_error.as_ref().or(step.next.as_ref())
        } else {
            step.next.as_ref()
        };
        current = match target {
            Some(id) => position(id).unwrap_or(steps.len()),
            None => current + 1,
        };
    }
    let Some(step) = steps.get(current) else {
        return ModelTurn {
            content: "(the script has no more steps)".into(),
            tool_calls: vec![],
            stored_transcript: None,
        };
    };
    let content = step
        .say
        .replace("{last_error}", &last_error)
        .replace("{last_result}", &last_result);
    let tool_calls = step
        .calls
        .iter()
        .enumerate()
        .map(|(j, call)| RequestedCall {
            id: format!("call_{turns_played}_{j}"),
            name: call.tool.clone(),
            arguments: call.arguments.clone(),
        })
        .collect();
    ModelTurn {
        content,
        tool_calls,
        stored_transcript: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_policy::agent::ScriptedCall;
    use serde_json::json;

    fn step(id: &str, say: &str, tool: Option<&str>, on_error: Option<&str>) -> ScriptedStep {
        ScriptedStep {
            id: Some(id.into()),
            say: say.into(),
            calls: tool
                .map(|t| {
                    vec![ScriptedCall {
                        tool: t.into(),
                        arguments: json!({"x": 1}),
                    }]
                })
                .unwrap_or_default(),
            next: None,
            on_error: on_error.map(Into::into),
        }
    }

    fn entry(role: &str, content: &str, is_error: bool) -> TranscriptEntry {
        TranscriptEntry {
            role: role.into(),
            content: content.into(),
            is_error,
            ..Default::default()
        }
    }

    fn script() -> Vec<ScriptedStep> {
        vec![
            step("pay", "paying", Some("pay"), Some("todo")),
            step("done", "paid: {last_result}", None, None),
            step("todo", "not paid because {last_error}", None, None),
        ]
    }

    #[test]
    fn first_turn_plays_the_first_step() {
        let turn = scripted_turn(&script(), &[entry("user", "go", false)]);
        assert_eq!(turn.content, "paying");
        assert_eq!(turn.tool_calls.len(), 1);
        assert_eq!(turn.tool_calls[0].id, "call_0_0");
    }

    #[test]
    fn success_follows_next_and_error_follows_on_error() {
        let ok = [
            entry("user", "go", false),
            entry("assistant", "paying", false),
            entry("tool", "receipt 7", false),
        ];
        assert_eq!(scripted_turn(&script(), &ok).content, "paid: receipt 7");
        let denied = [
            entry("user", "go", false),
            entry("assistant", "paying", false),
            entry("tool", "denied: too much", true),
        ];
        let turn = scripted_turn(&script(), &denied);
        assert_eq!(turn.content, "not paid because denied: too much");
        assert!(turn.tool_calls.is_empty());
    }

    #[test]
    fn a_finished_script_answers_without_tools() {
        let steps = vec![step("only", "hi", Some("t"), None)];
        let t = [
            entry("user", "go", false),
            entry("assistant", "hi", false),
            entry("tool", "ok", false),
        ];
        assert!(scripted_turn(&steps, &t).tool_calls.is_empty());
    }
}
