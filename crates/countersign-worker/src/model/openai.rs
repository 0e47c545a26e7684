//! OpenAI-compatible chat completions with tool calling.
//!
//! One turn is one `POST <base_url>/chat/completions`: the instructions as a
//! `system` message, the transcript as messages, the tools as functions.
//! Tool names like `gmail.send` are not valid function names, so each
//! request encodes them (see [`ToolNames`]) and decodes the answer's.

use super::compaction::{DEFAULT_CONTEXT_BYTES, compact};
use super::{ModelError, ModelTurn, RequestedCall, ToolSpec};
use countersign_policy::agent::OpenAiModel;
use countersign_proto::{TranscriptEntry, struct_to_json};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// How long one request may take when the configuration does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest function name the API accepts.
const MAX_NAME_LEN: usize = 64;

/// One chat completion: the transcript as messages, the tools as functions.
///
/// 429, 5xx, timeouts and connection failures are [`ModelError::Retryable`];
/// other 4xx, an answer that does not parse and an unset API key variable
/// are [`ModelError::Fatal`].
pub async fn chat_turn(
    http: &reqwest::Client,
    model: &OpenAiModel,
    instructions: &str,
    transcript: &[TranscriptEntry],
    tools: &[ToolSpec],
) -> Result<ModelTurn, ModelError> {
    let api_key = match &model.api_key_env {
        Some(variable) => {
            Some(crate::secrets::from_env(variable, "api_key_env").map_err(ModelError::Fatal)?)
        }
        None => None,
    };
    let names = ToolNames::new(tools.iter().map(|t| t.name.as_str()));
    let budget = model.context_bytes.map_or(DEFAULT_CONTEXT_BYTES, |b| {
        usize::try_from(b).unwrap_or(usize::MAX)
    });
    let compacted = compact(transcript, budget);
    let instructions = match (&compacted.note, instructions.is_empty()) {
        (None, _) => instructions.to_string(),
        (Some(note), true) => note.clone(),
        (Some(note), false) => format!("{instructions}\n\n{note}"),
    };
    let body = request_body(model, &instructions, &compacted.transcript, tools, &names);
    let url = format!("{}/chat/completions", model.base_url.trim_end_matches('/'));

    let mut request = http
        .post(&url)
        .timeout(model.timeout.unwrap_or(DEFAULT_TIMEOUT))
        .json(&body);
    if let Some(key) = api_key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.map_err(|e| {
        // reqwest's message names the URL, never the headers (the key).
        let message = format!("the chat completions request to {url} failed: {e}");
        if e.is_builder() {
            ModelError::Fatal(message)
        } else {
            ModelError::Retryable(message)
        }
    })?;

    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response
        .text()
        .await
        .map_err(|e| ModelError::Retryable(format!("reading the answer from {url} failed: {e}")))?;

    if !status.is_success() {
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.pointer("/error/message")?.as_str().map(str::to_string))
            .unwrap_or_else(|| crate::tools::excerpt(&text));
        let mut message = format!("the model endpoint answered HTTP {status}: {detail}");
        // 408 is a timeout on the provider's side: worth another try too.
        if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
            if let Some(after) = retry_after {
                message.push_str(&format!(" (Retry-After: {after})"));
            }
            return Err(ModelError::Retryable(message));
        }
        return Err(ModelError::Fatal(message));
    }

    let answer: Value = serde_json::from_str(&text).map_err(|e| {
        ModelError::Fatal(format!(
            "the model's answer is not JSON ({e}): {}",
            crate::tools::excerpt(&text)
        ))
    })?;
    parse_turn(&answer, &names, transcript).ok_or_else(|| {
        ModelError::Fatal(format!(
            "the model's answer has no `choices[0].message`: {}",
            crate::tools::excerpt(&text)
        ))
    })
}

/// The request: model, messages, tools and sampling settings.
fn request_body(
    model: &OpenAiModel,
    instructions: &str,
    transcript: &[TranscriptEntry],
    tools: &[ToolSpec],
    names: &ToolNames,
) -> Value {
    let mut messages = Vec::new();
    if !instructions.trim().is_empty() {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    messages.extend(transcript.iter().map(|entry| message(entry, names)));

    let mut body = json!({"model": model.model, "messages": messages});
    if !tools.is_empty() {
        let functions: Vec<Value> = tools
            .iter()
            .map(|tool| {
                let mut function = json!({
                    "name": names.encode(&tool.name),
                    "parameters": tool.input_schema,
                });
                if !tool.description.is_empty() {
                    function["description"] = json!(tool.description);
                }
                json!({"type": "function", "function": function})
            })
            .collect();
        body["tools"] = json!(functions);
        body["tool_choice"] = json!("auto");
    }
    if let Some(temperature) = model.temperature {
        body["temperature"] = json!(temperature);
    }
    if let Some(max_tokens) = model.max_tokens {
        body["max_tokens"] = json!(max_tokens);
    }
    body
}

/// One transcript entry as a chat message.
fn message(entry: &TranscriptEntry, names: &ToolNames) -> Value {
    match entry.role.as_str() {
        "assistant" => {
            let mut message = json!({"role": "assistant"});
            message["content"] = if entry.content.is_empty() && !entry.tool_calls.is_empty() {
                Value::Null
            } else {
                json!(entry.content)
            };
            if !entry.tool_calls.is_empty() {
                let calls: Vec<Value> = entry
                    .tool_calls
                    .iter()
                    .map(|call| {
                        let arguments = call
                            .arguments
                            .as_ref()
                            .map(struct_to_json)
                            .unwrap_or_else(|| json!({}));
                        json!({
                            "id": call.id,
                            "type": "function",
                            "function": {
                                "name": names.encode(&call.name),
                                "arguments": arguments.to_string(),
                            },
                        })
                    })
                    .collect();
                message["tool_calls"] = json!(calls);
            }
            message
        }
        // Error results already say what happened ("denied by ..."): sent as they are.
        "tool" => json!({
            "role": "tool",
            "tool_call_id": entry.tool_call_id,
            "content": entry.content,
        }),
        "system" => json!({"role": "system", "content": entry.content}),
        _ => json!({"role": "user", "content": entry.content}),
    }
}

/// `choices[0].message` as a turn; `None` when the answer has none.
fn parse_turn(
    answer: &Value,
    names: &ToolNames,
    transcript: &[TranscriptEntry],
) -> Option<ModelTurn> {
    let message = answer.pointer("/choices/0/message")?.as_object()?;
    let content = match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        // Some servers answer with content parts.
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => message
            .get("refusal")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
    };
    // Ids are unique within the run; a server that leaves them out gets
    // ones made from the turn's position, so a retried turn makes the same.
    let turn = transcript.iter().filter(|e| e.role == "assistant").count();
    let tool_calls = message
        .get("tool_calls")
        .and_then(Value::as_array)
        .map(|calls| {
            calls
                .iter()
                .enumerate()
                .map(|(i, call)| {
                    let function = call.get("function");
                    let name = function
                        .and_then(|f| f.get("name"))
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    let id = call
                        .get("id")
                        .and_then(Value::as_str)
                        .filter(|id| !id.is_empty())
                        .map_or_else(|| format!("call_{turn}_{i}"), str::to_string);
                    RequestedCall {
                        id,
                        name: names.decode(name),
                        arguments: arguments(function.and_then(|f| f.get("arguments"))),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    Some(ModelTurn {
        content,
        tool_calls,
        stored_transcript: None,
    })
}

/// A call's arguments: the JSON its string holds. Text that does not parse
/// stays a string, so the workflow refuses it ("arguments must be a JSON object").
fn arguments(raw: Option<&Value>) -> Value {
    match raw {
        Some(Value::String(text)) if text.trim().is_empty() => json!({}),
        Some(Value::String(text)) => {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
        }
        // Some servers send the object itself.
        Some(other) => other.clone(),
        None => json!({}),
    }
}

/// The function names of one request: each offered tool gets a distinct
/// name matching `^[a-zA-Z0-9_-]{1,64}$`; names already valid keep
/// themselves, `.` becomes `__`, other characters `_`, and a name taken
/// already gets a `_2`, `_3`, ... suffix. The same tools in the same order
/// always encode the same way.
#[derive(Debug, Default)]
struct ToolNames {
    encoded: BTreeMap<String, String>,
    decoded: BTreeMap<String, String>,
}

impl ToolNames {
    fn new<'a>(tools: impl Iterator<Item = &'a str> + Clone) -> Self {
        let mut names = Self::default();
        let mut taken = BTreeSet::new();
        // Valid names first, so that they never have to give way.
        for name in tools.clone().filter(|n| is_valid_name(n)) {
            if taken.insert(name.to_string()) {
                names.insert(name, name.to_string());
            }
        }
        for name in tools.filter(|n| !is_valid_name(n)) {
            if names.encoded.contains_key(name) {
                continue;
            }
            let base = sanitize(name);
            let mut candidate = base.clone();
            let mut n = 2;
            while taken.contains(&candidate) {
                let suffix = format!("_{n}");
                candidate = format!("{}{suffix}", truncate(&base, MAX_NAME_LEN - suffix.len()));
                n += 1;
            }
            taken.insert(candidate.clone());
            names.insert(name, candidate);
        }
        names
    }

    fn insert(&mut self, name: &str, encoded: String) {
        self.decoded.insert(encoded.clone(), name.to_string());
        self.encoded.insert(name.to_string(), encoded);
    }

    /// The function name of `name`: its encoding when offered, else sanitized.
    fn encode(&self, name: &str) -> String {
        self.encoded
            .get(name)
            .cloned()
            .unwrap_or_else(|| sanitize(name))
    }

    /// The tool a function name stands for; a name that stands for no
    /// offered tool comes back unchanged (the workflow refuses it).
    fn decode(&self, name: &str) -> String {
        self.decoded
            .get(name)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }
}

fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `.` → `__`, other invalid characters → `_`, at most 64 characters.
fn sanitize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '-' => out.push(c),
            '.' => out.push_str("__"),
            _ => out.push('_'),
        }
    }
    if out.is_empty() {
        out.push('_');
    }
    truncate(&out, MAX_NAME_LEN).to_string()
}

/// The first `len` bytes (all ASCII here).
fn truncate(name: &str, len: usize) -> &str {
    &name[..name.len().min(len)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_distinct_and_reversible() {
        let long = format!("api.{}", "x".repeat(80));
        let offered = [
            "gmail.send",
            "gmail__send",
            "a b",
            "a_b",
            "search",
            &long,
            "é.x",
        ];
        let names = ToolNames::new(offered.iter().copied());
        let mut seen = BTreeSet::new();
        for name in offered {
            let encoded = names.encode(name);
            assert!(is_valid_name(&encoded), "{encoded}");
            assert!(seen.insert(encoded.clone()), "{encoded} is used twice");
            assert_eq!(names.decode(&encoded), name);
        }
        assert_eq!(names.encode("gmail__send"), "gmail__send");
        assert_eq!(names.encode("gmail.send"), "gmail__send_2");
        assert_eq!(names.encode("search"), "search");
        assert_eq!(names.decode("invented.tool"), "invented.tool");
    }

    #[test]
    fn operation_ids_with_slashes_round_trip() {
        // GitHub's operationIds: `issues/create` → `github.issues/create`.
        let offered = [
            "github.issues/create",
            "github.issues/get",
            "github.repos/get",
            // Encodes like `issues/create` would: one of them gives way.
            "github.issues_create",
        ];
        let names = ToolNames::new(offered.iter().copied());
        assert_eq!(
            names.encode("github.issues/create"),
            "github__issues_create"
        );
        assert_eq!(
            names.encode("github.issues_create"),
            "github__issues_create_2"
        );
        for name in offered {
            let encoded = names.encode(name);
            assert!(is_valid_name(&encoded), "{encoded}");
            assert_eq!(names.decode(&encoded), name);
        }

        // The model's answer names the function; the call names the tool.
        let answer = json!({"choices": [{"message": {"content": null, "tool_calls": [{
            "id": "call_1",
            "type": "function",
            "function": {
                "name": "github__issues_create",
                "arguments": "{\"owner\":\"octo\",\"repo\":\"hello\",\"body\":{\"title\":\"Hi\"}}"
            }
        }]}}]});
        let turn = parse_turn(&answer, &names, &[]).unwrap();
        assert_eq!(turn.tool_calls[0].name, "github.issues/create");
        assert_eq!(turn.tool_calls[0].arguments["body"]["title"], "Hi");
    }
}
