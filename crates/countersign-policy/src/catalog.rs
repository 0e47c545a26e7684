//! The tool catalog of a run: every tool the model may call, whatever its
//! kind, with its schema, its effect class, its approval flag and how to run
//! it. The workflow judges calls against this, and only against this: a name
//! the catalog does not hold is never executed.

use crate::agent::{AgentFile, BuiltinTool};
use crate::sources::{Connector, McpServer, RequireApproval, WorkflowTool};
use crate::{EffectClass, ToolPolicy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// The most tools a run offers its model. Models choose badly among many
/// tools (and APIs cap the list); an agent over this is refused when its run
/// starts, with a pointer to `operations` / `tools`.
pub const MAX_TOOLS_OFFERED: usize = 128;

/// The kind of a tool, as shown to reviewers (`ToolRef.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolKind {
    /// A built-in tool.
    Builtin,
    /// A tool of an MCP server.
    Mcp,
    /// An operation of an HTTP API (OpenAPI).
    Openapi,
    /// An action of a connector.
    Connector,
    /// Another agent, run as a child workflow.
    Agent,
    /// A workflow type, run as a child workflow.
    Workflow,
    /// Carried out by someone else's workflow after an `ApprovalGate`.
    External,
}

impl ToolKind {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ToolKind::Builtin => "builtin",
            ToolKind::Mcp => "mcp",
            ToolKind::Openapi => "openapi",
            ToolKind::Connector => "connector",
            ToolKind::Agent => "agent",
            ToolKind::Workflow => "workflow",
            ToolKind::External => "external",
        }
    }
}

/// One tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogTool {
    /// The name the model calls it by: `<source>.<tool>` for tools of MCP
    /// servers, OpenAPI documents and connectors, the plain name otherwise.
    pub name: String,
    /// What it does, for the model and reviewers.
    pub description: String,
    /// The JSON schema of its arguments (always an object schema).
    pub input_schema: serde_json::Value,
    /// The kind of tool.
    pub kind: ToolKind,
    /// The server, API or connector it belongs to (empty for single tools).
    pub provider: String,
    /// The effect class the policy judges it by.
    pub effect: EffectClass,
    /// The configured approval flag (`None`: the effect-class defaults).
    pub requires_approval: Option<bool>,
    /// Overrides the agent's approval expiry for this tool.
    pub approval_expiry: Option<Duration>,
    /// How to run it.
    pub binding: ToolBinding,
}

impl CatalogTool {
    /// The policy-relevant part of this tool.
    pub fn policy(&self) -> ToolPolicy {
        ToolPolicy {
            effect: self.effect,
            requires_approval: self.requires_approval,
        }
    }
}

/// How a tool is run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToolBinding {
    /// A built-in tool, run by the `execute_tool` activity.
    Builtin(BuiltinTool),
    /// `tools/call` on an MCP server, from the `execute_tool` activity.
    Mcp {
        /// The server.
        server: McpServer,
        /// The tool's name on the server.
        tool: String,
    },
    /// An HTTP request, from the `execute_tool` activity.
    Http(HttpOperation),
    /// A connector action, from the `execute_tool` activity.
    Connector {
        /// The connector.
        connector: Connector,
        /// The action (unqualified, e.g. `send`).
        action: String,
    },
    /// A child `AgentRun` with this agent; the call's `prompt` is its prompt.
    Agent(Box<AgentFile>),
    /// A child workflow; the call's arguments are its input.
    Workflow(WorkflowTool),
    /// Never run by Countersign: someone else's workflow carries it out
    /// after asking an `ApprovalGate`. `execute_tool` refuses it and no
    /// model is offered it.
    External,
}

/// Where an argument of an HTTP operation goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParameterLocation {
    /// Replaces `{name}` in the path.
    Path,
    /// A query-string parameter.
    Query,
    /// A request header.
    Header,
}

/// A parameter of an HTTP operation; the tool argument of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpParameter {
    /// The parameter's (and the argument's) name.
    pub name: String,
    /// Where it goes.
    pub location: ParameterLocation,
}

/// An HTTP API operation, resolved from an OpenAPI document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpOperation {
    /// The API's base URL (no trailing slash).
    pub base_url: String,
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path template, e.g. `/pets/{petId}`.
    pub path: String,
    /// Path, query and header parameters.
    pub parameters: Vec<HttpParameter>,
    /// Whether the operation takes a JSON body: the tool argument `body`.
    pub has_body: bool,
    /// Headers from the worker's environment: header name → variable name.
    pub headers_from_env: BTreeMap<String, String>,
    /// Request timeout.
    pub timeout: Duration,
}

/// The effect class of an HTTP method when the configuration does not say.
pub fn http_method_effect(method: &str) -> EffectClass {
    if method.eq_ignore_ascii_case("GET") || method.eq_ignore_ascii_case("HEAD") {
        EffectClass::Read
    } else {
        EffectClass::WriteExternal
    }
}

/// The effect class and approval flag of tool `tool` (unqualified) of a
/// source (MCP server, OpenAPI document, connector): the source's `effects`
/// entry beats the tool's `own` class, and its `require_approval` gives the flag.
pub fn source_tool_policy(
    require_approval: Option<&RequireApproval>,
    effects: &BTreeMap<String, EffectClass>,
    tool: &str,
    own: EffectClass,
) -> (EffectClass, Option<bool>) {
    let effect = effects.get(tool).copied().unwrap_or(own);
    (effect, require_approval.and_then(|r| r.flag_for(tool)))
}

/// The name the model calls a source's tool by.
pub fn qualified_name(source: &str, tool: &str) -> String {
    format!("{source}.{tool}")
}
