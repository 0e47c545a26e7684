//! Tool sources that offer many tools at once: MCP servers, OpenAPI
//! documents and connectors, as configured in an agent file.
//!
//! Each source names its tools `<source>.<tool>` (e.g. `gmail.send`), carries
//! a [`RequireApproval`] switch and per-tool effect classes. MCP servers and
//! OpenAPI documents are discovered by an activity when a run starts; the
//! configuration here is what the workflow and that activity share.

use crate::EffectClass;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// Which tools of a source need approval, on top of the effect-class defaults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RequireApproval {
    /// `"always"` or `"never"` for every tool of the source (`never` cannot
    /// lift approval from a `money` tool).
    All(ApprovalSwitch),
    /// These tools always need approval; the others follow the defaults of
    /// their effect class.
    Only(Vec<String>),
}

/// `"always"` or `"never"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalSwitch {
    /// Every tool needs approval.
    Always,
    /// No tool needs approval (except `money` ones).
    Never,
}

impl RequireApproval {
    /// The `requires_approval` flag this switch gives the tool `name`
    /// (unqualified): `None` means "follow the effect-class defaults".
    pub fn flag_for(&self, name: &str) -> Option<bool> {
        match self {
            RequireApproval::All(ApprovalSwitch::Always) => Some(true),
            RequireApproval::All(ApprovalSwitch::Never) => Some(false),
            RequireApproval::Only(names) => names.iter().any(|n| n == name).then_some(true),
        }
    }

    /// The tool names a list form mentions (empty for `always` / `never`).
    pub fn named(&self) -> &[String] {
        match self {
            RequireApproval::Only(names) => names,
            RequireApproval::All(_) => &[],
        }
    }
}

/// An MCP server whose tools the agent may call, over stdio (`command`) or
/// streamable HTTP (`url`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServer {
    /// Prefix of the server's tools (`<name>.<tool>`): letters, digits, `-`, `_`.
    pub name: String,
    /// Stdio transport: the program to start (found on the worker's PATH, or a path).
    #[serde(default)]
    pub command: Option<String>,
    /// Arguments of `command`.
    #[serde(default)]
    pub args: Vec<String>,
    /// Extra environment for `command` (not secrets: the agent file travels
    /// in the run's history; the worker's own environment is inherited).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Streamable HTTP transport: the server's endpoint URL.
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable (on the worker) that holds a bearer token for `url`.
    #[serde(default)]
    pub bearer_token_env: Option<String>,
    /// Which tools need approval; absent: the effect-class defaults.
    #[serde(default)]
    pub require_approval: Option<RequireApproval>,
    /// The reviewer groups that may decide calls to this source's tools
    /// (default: the agent's `approvers`).
    #[serde(default)]
    pub approvers: Option<Vec<String>>,
    /// Conditions on arguments that add approval, by tool name (see
    /// `countersign_policy::condition`), e.g. `{ send = "domain(to) != \"example.com\"" }`.
    #[serde(default)]
    pub approval_when: BTreeMap<String, String>,
    /// Effect classes by tool name; they override the server's annotations
    /// (`readOnlyHint` → `read`, otherwise `write_external`).
    #[serde(default)]
    pub effects: BTreeMap<String, EffectClass>,
    /// Offer only these tools to the model (default: all the server lists).
    #[serde(default)]
    pub tools: Option<Vec<String>>,
    /// How long one request to the server may take (default 30 s).
    #[serde(default, with = "crate::agent::optional_duration_text")]
    pub timeout: Option<Duration>,
}

/// An HTTP API described by an OpenAPI 3 document: each operation becomes a
/// tool named `<name>.<operationId>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApiSource {
    /// Prefix of the API's tools.
    pub name: String,
    /// The document: a file path (relative to the agent file) or an http(s)
    /// URL, read by the worker when a run starts (the `discover_tools`
    /// activity), never carried in a run's input.
    pub spec: String,
    /// Overrides the document's first `servers` URL.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Headers sent with every request: header name → the environment
    /// variable (on the worker) holding its value. Never the value itself.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Which operations need approval; absent: GET/HEAD are `read`, other
    /// methods `write_external`.
    #[serde(default)]
    pub require_approval: Option<RequireApproval>,
    /// The reviewer groups that may decide calls to this source's tools
    /// (default: the agent's `approvers`).
    #[serde(default)]
    pub approvers: Option<Vec<String>>,
    /// Conditions on arguments that add approval, by tool name (see
    /// `countersign_policy::condition`), e.g. `{ send = "domain(to) != \"example.com\"" }`.
    #[serde(default)]
    pub approval_when: BTreeMap<String, String>,
    /// Effect classes by operationId.
    #[serde(default)]
    pub effects: BTreeMap<String, EffectClass>,
    /// Offer only these operations (default: every operation with an operationId).
    #[serde(default)]
    pub operations: Option<Vec<String>>,
    /// How long one request may take (default 30 s).
    #[serde(default, with = "crate::agent::optional_duration_text")]
    pub timeout: Option<Duration>,
}

/// The connectors Countersign ships.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectorKind {
    /// `list`, `read` (read), `write`, `delete` (write_own) inside `root`.
    Filesystem,
    /// `send` over SMTP (write_external); `list`, `read` from a Maildir (read).
    Mail,
    /// Slack Web API: `post_message` (`chat.postMessage`, write_external),
    /// `history` (`conversations.history`, read).
    Slack,
}

impl ConnectorKind {
    /// The kind's name as written in agent files.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectorKind::Filesystem => "filesystem",
            ConnectorKind::Mail => "mail",
            ConnectorKind::Slack => "slack",
        }
    }
}

/// A connector: a named set of actions (`<name>.<action>`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connector {
    /// Prefix of the actions (default: the kind, e.g. `mail`).
    #[serde(default)]
    pub name: Option<String>,
    /// Which connector.
    pub kind: ConnectorKind,
    /// Which actions need approval; absent: the effect-class defaults.
    #[serde(default)]
    pub require_approval: Option<RequireApproval>,
    /// The reviewer groups that may decide calls to this source's tools
    /// (default: the agent's `approvers`).
    #[serde(default)]
    pub approvers: Option<Vec<String>>,
    /// Conditions on arguments that add approval, by tool name (see
    /// `countersign_policy::condition`), e.g. `{ send = "domain(to) != \"example.com\"" }`.
    #[serde(default)]
    pub approval_when: BTreeMap<String, String>,
    /// Effect classes by action name, overriding the connector's own.
    #[serde(default)]
    pub effects: BTreeMap<String, EffectClass>,
    /// Offer only these actions (default: all).
    #[serde(default)]
    pub actions: Option<Vec<String>>,
    /// `filesystem`: the folder every path is confined to.
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// `mail`: the SMTP server, `smtp://host:port` (plain, STARTTLS when
    /// offered) or `smtps://host:port` (TLS).
    #[serde(default)]
    pub smtp_url: Option<String>,
    /// `mail`: the sender address.
    #[serde(default)]
    pub from: Option<String>,
    /// `mail`: the Maildir that `list` and `read` read.
    #[serde(default)]
    pub maildir: Option<PathBuf>,
    /// `mail`: environment variables (on the worker) with the SMTP user name and password.
    #[serde(default)]
    pub username_env: Option<String>,
    /// See `username_env`.
    #[serde(default)]
    pub password_env: Option<String>,
    /// `slack`: the Web API base URL (default `https://slack.com/api`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// `slack`: the environment variable (on the worker) with the bot token
    /// (default `SLACK_BOT_TOKEN`).
    #[serde(default)]
    pub token_env: Option<String>,
}

impl Connector {
    /// The prefix of this connector's action names.
    pub fn prefix(&self) -> &str {
        self.name.as_deref().unwrap_or(self.kind.as_str())
    }
}

/// Another agent, used as a tool: it runs as a child `AgentRun`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubAgentTool {
    /// The child agent's file, relative to this agent file.
    pub file: PathBuf,
    /// The child agent, read from `file` when this agent file is loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<Box<crate::agent::AgentFile>>,
}

/// Any workflow type, on any task queue, used as a tool: it runs as a child
/// workflow with the call's arguments as its input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowTool {
    /// The workflow type to start.
    pub workflow_type: String,
    /// Its task queue (default: the run's own).
    #[serde(default)]
    pub task_queue: Option<String>,
    /// The JSON schema of its input, offered to the model and checked before
    /// the call (default: any JSON object).
    #[serde(default)]
    pub input_schema: Option<serde_json::Value>,
    /// How long the child may run (default: no limit).
    #[serde(default, with = "crate::agent::optional_duration_text")]
    pub timeout: Option<Duration>,
}
