//! Tool adapters: how each kind of tool in a run's catalog is executed by
//! the `execute_tool` activity. Sub-agents and workflows are not here: they
//! run as child workflows, started by the workflow itself.
//!
//! Every invocation carries an idempotency key (the approval id, or
//! `<run id>/<tool call id>` for ungated calls). Each adapter hands it to the
//! system it calls (an `Idempotency-Key` header, MCP request `_meta`, a
//! marker in the written data), so an activity retried after a worker crash
//! does not repeat the effect where that system deduplicates.

pub mod builtin;
pub mod connectors;
pub mod mcp;
pub mod openapi;

use countersign_policy::catalog::{CatalogTool, ToolBinding};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The input of the `execute_tool` activity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolInvocation {
    /// The tool, from the run's catalog.
    pub tool: CatalogTool,
    /// The arguments to run it with (the edited ones, when a reviewer edited them).
    pub arguments: Value,
    /// Deduplicates the side effect across retries.
    pub idempotency_key: String,
}

/// What a tool answered; fed back to the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolOutput {
    /// The result text.
    pub content: String,
    /// Whether the result is an error (the model should take another path).
    pub is_error: bool,
}

impl ToolOutput {
    /// A successful result.
    pub fn ok(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
        }
    }

    /// An error result.
    pub fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
        }
    }
}

/// Why a tool did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// The call cannot succeed as made (bad arguments, path escape, a 4xx):
    /// the model gets an error result, nothing is retried.
    #[error("{0}")]
    Refused(String),
    /// A failure worth retrying (connection refused, 5xx, I/O).
    #[error("{0}")]
    Transient(String),
}

/// Runs one tool call with the adapter of its kind.
pub async fn run_tool(
    http: &reqwest::Client,
    invocation: &ToolInvocation,
) -> Result<ToolOutput, ToolError> {
    let arguments = &invocation.arguments;
    let key = &invocation.idempotency_key;
    match &invocation.tool.binding {
        ToolBinding::Builtin(tool) => builtin::run(http, tool, arguments, key).await,
        ToolBinding::Mcp { server, tool } => mcp::call_tool(server, tool, arguments, key).await,
        ToolBinding::Http(operation) => openapi::call(http, operation, arguments, key).await,
        ToolBinding::Connector { connector, action } => {
            connectors::run(http, connector, action, arguments, key).await
        }
        ToolBinding::Agent(_) | ToolBinding::Workflow(_) => Err(ToolError::Refused(format!(
            "`{}` runs as a child workflow, not as an activity",
            invocation.tool.name
        ))),
        ToolBinding::External => Err(ToolError::Refused(format!(
            "`{}` is an external tool: Countersign never runs it; the caller's workflow does, after an ApprovalGate",
            invocation.tool.name
        ))),
    }
}

/// Cuts `text` to at most `max` bytes (on a character boundary) and says so.
pub(crate) fn truncate_output(mut text: String, max: usize, what: &str) -> String {
    if text.len() > max {
        let total = text.len();
        let cut = (0..=max)
            .rev()
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push_str(&format!(
            "\n[truncated: {what} has {total} bytes; the first {cut} are shown]"
        ));
    }
    text
}

/// How much of an answer body an error message quotes.
const MAX_EXCERPT_CHARS: usize = 500;

/// The start of an answer body (e.g. of an HTTP error), on one line, for
/// error messages.
pub(crate) fn excerpt(body: &str) -> String {
    let flat = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        return "(empty body)".into();
    }
    match flat.char_indices().nth(MAX_EXCERPT_CHARS) {
        Some((at, _)) => format!("{}…", &flat[..at]),
        None => flat,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters_and_says_so() {
        let text = truncate_output("ééé".to_string(), 3, "the file");
        assert!(text.starts_with("é\n[truncated"), "{text}");
        assert_eq!(truncate_output("abc".into(), 3, "x"), "abc");
    }
}
