//! Agent definition files (TOML): who the agent is, which model drives it,
//! which tools it may call and how each is gated.
//!
//! [`AgentFile`] is the file format (serde). A worker reads the files of its
//! agent registry with [`AgentFile::from_file`], which resolves paths against
//! the file and `${VAR}` references on the worker; [`crate::Agent::new`]
//! turns an `AgentFile` into the validated [`crate::Agent`] that a run uses.
//! Everything here that checks a definition ([`AgentFile::check`]) is what
//! `Agent::new` runs, so a file and a definition that arrives any other way
//! (inline, continue-as-new, a child's input) pass the same rules.

use crate::sources::{
    Connector, ConnectorKind, McpServer, OpenApiSource, SubAgentTool, WorkflowTool,
};
use crate::{EffectClass, RunMode};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long an approval waits when the agent file does not say.
pub const DEFAULT_APPROVAL_EXPIRY: Duration = Duration::from_secs(24 * 60 * 60);

/// An agent definition, as read from its TOML file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentFile {
    /// The agent's name: letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// What the agent is for, shown to reviewers.
    #[serde(default)]
    pub description: String,
    /// The system prompt.
    #[serde(default)]
    pub instructions: String,
    /// The run mode when `run start` does not override it.
    #[serde(default)]
    pub mode: RunMode,
    /// How long a gated call waits for a decision before it expires (fail-closed).
    #[serde(default = "default_expiry", with = "duration_text")]
    pub approval_expiry: Duration,
    /// The most model turns a run may take; past it the run fails instead of
    /// looping forever.
    #[serde(default = "default_max_turns")]
    pub max_turns: u32,
    /// The model that drives the agent. Only an agent whose tools are all
    /// external (used through `ApprovalGate`, never run by Countersign) may
    /// leave it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelConfig>,
    /// Single tools the agent may call: built-ins, sub-agents, workflows.
    #[serde(default)]
    pub tools: Vec<ToolDefinition>,
    /// The reviewer groups that may decide this agent's approvals (default
    /// for every tool; empty: any authenticated reviewer).
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Reviewer groups and their members: group name → reviewer ids. The
    /// groups named in `approvers` must be defined here; the run refuses a
    /// decision from anyone outside them.
    #[serde(default)]
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
    /// The run's requester may not approve the run's own calls.
    #[serde(default)]
    pub separation_of_duties: bool,
    /// Decisions on this agent's calls must be signed by a key the worker
    /// trusts (`countersign worker --trusted-keys`); unsigned ones, e.g. typed
    /// into the `temporal` CLI, are refused. Default for every tool.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub require_signed_decisions: bool,
    /// After this long without a decision, remind the approvers (an audit
    /// record and a notification); must be shorter than the expiry.
    #[serde(default, with = "optional_duration_text")]
    pub remind_after: Option<Duration>,
    /// After this long without a decision, escalate: notify, and let the
    /// `escalate_to` groups decide too; must be shorter than the expiry.
    #[serde(default, with = "optional_duration_text")]
    pub escalate_after: Option<Duration>,
    /// The groups that may decide once a call is escalated.
    #[serde(default)]
    pub escalate_to: Vec<String>,
    /// Where to announce approvals as they open and close (Slack, a webhook).
    #[serde(default)]
    pub notify: Option<NotifyConfig>,
    /// MCP servers whose tools the agent may call.
    #[serde(default)]
    pub mcp_servers: Vec<McpServer>,
    /// HTTP APIs (OpenAPI 3 documents) whose operations the agent may call.
    #[serde(default)]
    pub openapi: Vec<OpenApiSource>,
    /// Connectors whose actions the agent may call.
    #[serde(default)]
    pub connectors: Vec<Connector>,
    /// The run continues as new once its history holds this many events
    /// (default [`DEFAULT_CONTINUE_AS_NEW_AFTER`], below Temporal's 10,240
    /// warning), or earlier when the server suggests it.
    #[serde(default)]
    pub continue_as_new_after: Option<u32>,
}

/// How many history events a run collects before it continues as new.
pub const DEFAULT_CONTINUE_AS_NEW_AFTER: u32 = 8_000;

fn default_expiry() -> Duration {
    DEFAULT_APPROVAL_EXPIRY
}

/// A step of waiting for a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitingStage {
    /// Remind the approvers.
    Remind,
    /// Widen the approvers to the escalation groups and tell them.
    Escalate,
    /// Nobody decided: the call expires (fail-closed).
    Expire,
}

/// How many model turns a run may take when the agent file does not say.
pub const DEFAULT_MAX_TURNS: u32 = 25;

fn default_max_turns() -> u32 {
    DEFAULT_MAX_TURNS
}

/// The model provider and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "provider", rename_all = "snake_case", deny_unknown_fields)]
pub enum ModelConfig {
    /// Plays a fixed script of steps, choosing the next step from the tool results.
    Scripted {
        /// The steps, played from the first.
        steps: Vec<ScriptedStep>,
    },
    /// An OpenAI-compatible chat completions endpoint with tool calling
    /// (OpenAI, Ollama, vLLM, LM Studio, ...).
    #[serde(alias = "openai_compatible")]
    Openai(OpenAiModel),
}

/// Where approvals are announced. Secrets are named by environment
/// variable and read on the worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Slack channel (id or `#name`) for a Block Kit message with Approve /
    /// Deny buttons per approval, updated once it is decided.
    #[serde(default)]
    pub slack_channel: Option<String>,
    /// The environment variable with the Slack bot token (default `SLACK_BOT_TOKEN`).
    #[serde(default)]
    pub slack_token_env: Option<String>,
    /// The Slack Web API base URL (default `https://slack.com/api`).
    #[serde(default)]
    pub slack_api_base_url: Option<String>,
    /// A URL that receives an HMAC-signed JSON POST when an approval opens and when it closes.
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// The environment variable with the webhook's HMAC secret.
    #[serde(default)]
    pub webhook_secret_env: Option<String>,
    /// The dashboard's public URL, linked from messages.
    #[serde(default)]
    pub dashboard_url: Option<String>,
}

impl NotifyConfig {
    /// Whether anything is configured.
    pub fn is_active(&self) -> bool {
        self.slack_channel.is_some() || self.webhook_url.is_some()
    }
}

/// Settings of an OpenAI-compatible model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenAiModel {
    /// The API base, e.g. `https://api.openai.com/v1` or `http://localhost:11434/v1`;
    /// requests go to `<base_url>/chat/completions`.
    pub base_url: String,
    /// The model name.
    pub model: String,
    /// The environment variable (on the worker) holding the API key; absent:
    /// no `Authorization` header (local servers).
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// Sampling temperature.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Upper bound on the tokens of one answer.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// How long one request may take (default 60 s); a timeout is retried.
    #[serde(default, with = "optional_duration_text")]
    pub timeout: Option<Duration>,
    /// How many bytes of conversation one request may carry (default
    /// 400,000, about 100,000 tokens). Past it, the contents of the oldest
    /// tool results (then assistant messages) are replaced by placeholders
    /// and the model is told; the user's request and the latest turn are
    /// always sent whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_bytes: Option<u64>,
}

/// One turn of a scripted model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedStep {
    /// The step's name, for `next` and `on_error`; defaults to its position.
    #[serde(default)]
    pub id: Option<String>,
    /// What the model says. `{last_error}` and `{last_result}` are replaced
    /// by the content of the latest error / latest tool result.
    #[serde(default)]
    pub say: String,
    /// The tool calls of this turn; a step without calls is the final answer.
    #[serde(default)]
    pub calls: Vec<ScriptedCall>,
    /// The step after this one (default: the following step).
    #[serde(default)]
    pub next: Option<String>,
    /// The step after this one when any of its tool results is an error
    /// (denied, expired or failed); default: as `next`.
    #[serde(default)]
    pub on_error: Option<String>,
}

/// A tool call in a scripted step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    /// The tool's name.
    pub tool: String,
    /// The call's arguments (a JSON object).
    #[serde(default = "empty_object")]
    pub arguments: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// A tool the agent may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolDefinition {
    /// The name the model calls it by: letters, digits, `_`, `-` (at most 64).
    pub name: String,
    /// What the tool does, for the model and for reviewers.
    #[serde(default)]
    pub description: String,
    /// The effect class; defaults to the implementation's own.
    #[serde(default)]
    pub effect: Option<EffectClass>,
    /// `true` forces approval, `false` lifts it (never for `money`).
    #[serde(default)]
    pub requires_approval: Option<bool>,
    /// Overrides the agent's `approval_expiry` for this tool.
    #[serde(default, with = "optional_duration_text")]
    pub approval_expiry: Option<Duration>,
    /// Overrides the agent's `approvers` for this tool.
    #[serde(default)]
    pub approvers: Option<Vec<String>>,
    /// How many distinct reviewers must approve a call (default 1).
    #[serde(default)]
    pub quorum: Option<u32>,
    /// The quorum applies only when this condition holds (e.g. `amount > 1000`);
    /// otherwise one approval is enough.
    #[serde(default)]
    pub quorum_when: Option<String>,
    /// Overrides the agent's `separation_of_duties` for this tool.
    #[serde(default)]
    pub separation_of_duties: Option<bool>,
    /// Overrides the agent's `require_signed_decisions` for this tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_signed_decisions: Option<bool>,
    /// A condition on the arguments that adds approval when it holds, e.g.
    /// `"amount > 100 and currency != \"USD\""` (see `countersign_policy::condition`).
    #[serde(default)]
    pub approval_when: Option<String>,
    /// The implementation, when it is a built-in tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtin: Option<BuiltinTool>,
    /// The implementation, when it is another agent (a child run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<SubAgentTool>,
    /// The implementation, when it is a workflow (a child workflow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowTool>,
    /// Set (`external = {}`) when the tool is carried out by someone else's
    /// workflow: Countersign never runs it and never offers it to a model;
    /// only an `ApprovalGate` can use it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalTool>,
    /// The JSON schema of an external tool's arguments (an object schema;
    /// default: any JSON object). Only external tools take it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<serde_json::Value>,
}

/// The (empty) table `external = {}` that marks a tool only a gate can use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalTool {}

/// What implements a [`ToolDefinition`]: exactly one of its four fields.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ToolImplementation<'a> {
    /// A built-in tool.
    Builtin(&'a BuiltinTool),
    /// Another agent.
    Agent(&'a SubAgentTool),
    /// A workflow.
    Workflow(&'a WorkflowTool),
    /// Someone else's workflow, after asking an `ApprovalGate`.
    External,
}

impl ToolDefinition {
    /// What implements the tool (validated at load to be exactly one).
    pub fn implementation(&self) -> Option<ToolImplementation<'_>> {
        match (&self.builtin, &self.agent, &self.workflow, &self.external) {
            (Some(b), None, None, None) => Some(ToolImplementation::Builtin(b)),
            (None, Some(a), None, None) => Some(ToolImplementation::Agent(a)),
            (None, None, Some(w), None) => Some(ToolImplementation::Workflow(w)),
            (None, None, None, Some(_)) => Some(ToolImplementation::External),
            _ => None,
        }
    }

    /// Whether only a gate can use this tool (`external = {}`).
    pub fn is_external(&self) -> bool {
        matches!(self.implementation(), Some(ToolImplementation::External))
    }

    /// The effect class the implementation has by itself.
    fn own_effect(&self) -> EffectClass {
        match self.implementation() {
            Some(ToolImplementation::Builtin(b)) => b.effect(),
            Some(ToolImplementation::Agent(a)) => a
                .definition
                .as_deref()
                .map(AgentFile::strongest_effect)
                .unwrap_or(EffectClass::WriteExternal),
            Some(ToolImplementation::Workflow(_) | ToolImplementation::External) | None => {
                EffectClass::WriteExternal
            }
        }
    }

    /// The effect class the policy judges this tool by.
    pub fn effect_class(&self) -> EffectClass {
        self.effect.unwrap_or_else(|| self.own_effect())
    }
}

/// The built-in tools, one per effect class, each with a side effect that can
/// be observed outside the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BuiltinTool {
    /// Reads a text file below `root` (`read`).
    ReadFile {
        /// The folder the tool may read from.
        root: PathBuf,
    },
    /// Appends an item to the user's todo list, a text file (`write_own`).
    AppendTodo {
        /// The todo file.
        path: PathBuf,
    },
    /// POSTs the arguments as JSON to a URL (`write_external`).
    HttpPost {
        /// Where to post.
        url: String,
    },
    /// Sends a payment request to a payments API (`money`).
    PaymentRequest {
        /// The payments endpoint.
        url: String,
    },
}

impl BuiltinTool {
    /// The implementation's own effect class.
    pub fn effect(&self) -> EffectClass {
        match self {
            BuiltinTool::ReadFile { .. } => EffectClass::Read,
            BuiltinTool::AppendTodo { .. } => EffectClass::WriteOwn,
            BuiltinTool::HttpPost { .. } => EffectClass::WriteExternal,
            BuiltinTool::PaymentRequest { .. } => EffectClass::Money,
        }
    }

    /// The kind's name as written in agent files.
    pub fn kind(&self) -> &'static str {
        match self {
            BuiltinTool::ReadFile { .. } => "read_file",
            BuiltinTool::AppendTodo { .. } => "append_todo",
            BuiltinTool::HttpPost { .. } => "http_post",
            BuiltinTool::PaymentRequest { .. } => "payment_request",
        }
    }
}

/// Why an agent file was refused. Every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum AgentFileError {
    /// The file could not be read.
    #[error("{path}: cannot read the agent file: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, not chained, so it prints once).
        error: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the format.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line, column and field.
        message: String,
    },
    /// A field has a value that cannot work.
    #[error("{path}: field `{field}`{}: {problem}", at_text(.at))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field, as a TOML path (e.g. `tools[2].builtin.url`).
        field: String,
        /// Where the field is in the file (1-based line and column), when known.
        at: Option<(usize, usize)>,
        /// What is wrong with it.
        problem: String,
    },
}

fn at_text(at: &Option<(usize, usize)>) -> String {
    at.map(|(line, column)| format!(" (line {line}, column {column})"))
        .unwrap_or_default()
}

/// A field of a definition that breaks a rule: what [`AgentFile::check`]
/// and [`crate::Agent::new`] refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {problem}")]
pub struct InvalidField {
    /// The field, as a TOML path (e.g. `tools[2].effect`).
    pub field: String,
    /// What is wrong with it.
    pub problem: String,
}

impl InvalidField {
    pub(crate) fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }

    /// The same problem inside a sub-agent: `tools[i].agent.definition.<field>`.
    fn within(self, prefix: &str) -> Self {
        Self {
            field: format!("{prefix}.{}", self.field),
            problem: self.problem,
        }
    }
}

impl AgentFile {
    /// Reads, checks and resolves an agent file: relative paths become
    /// relative to the file's folder, `${VAR}` / `${VAR:-default}` in paths
    /// and URLs are taken from the environment, and sub-agent files are read
    /// and carried inline (each checked with its own file and line in errors).
    /// OpenAPI documents are not read here: the worker reads them when a run
    /// starts, so a run's history carries only the operations it uses.
    pub fn from_file(path: &Path) -> Result<Self, AgentFileError> {
        Self::from_file_with_env(path, &|name| std::env::var(name).ok())
    }

    /// [`AgentFile::from_file`] with `${VAR}` looked up in `env`.
    pub fn from_file_with_env(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, AgentFileError> {
        Self::load(path, env, &mut Vec::new())
    }

    /// How deep sub-agents may nest.
    const MAX_NESTING: usize = 4;

    fn load(
        path: &Path,
        env: &dyn Fn(&str) -> Option<String>,
        parents: &mut Vec<PathBuf>,
    ) -> Result<Self, AgentFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| AgentFileError::Read {
            path: path.to_owned(),
            error,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut agent = Self::from_toml(&text, path, base, env)?;
        let invalid = |field: String, problem: String| AgentFileError::Invalid {
            path: path.to_owned(),
            at: locate_field(&text, &field),
            field,
            problem,
        };
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_owned());
        parents.push(canonical);
        for (i, tool) in agent.tools.iter_mut().enumerate() {
            let Some(sub) = &mut tool.agent else { continue };
            let field = format!("tools[{i}].agent.file");
            let child = sub.file.canonicalize().unwrap_or_else(|_| sub.file.clone());
            if parents.contains(&child) {
                return Err(invalid(
                    field,
                    format!("`{}` uses itself as a tool (a cycle)", sub.file.display()),
                ));
            }
            if parents.len() >= Self::MAX_NESTING {
                return Err(invalid(
                    field,
                    format!("sub-agents nest deeper than {}", Self::MAX_NESTING),
                ));
            }
            sub.definition = Some(Box::new(Self::load(&sub.file, env, parents)?));
        }
        parents.pop();
        Ok(agent)
    }

    /// Parses, validates and resolves agent TOML. `path` only names the source
    /// in errors; `base` anchors relative paths; `env` looks up variables.
    /// Files the agent refers to (sub-agents, OpenAPI documents) are not read:
    /// [`AgentFile::from_file`] does that.
    pub fn from_toml(
        text: &str,
        path: &Path,
        base: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, AgentFileError> {
        let mut agent: AgentFile = toml::from_str(text).map_err(|e| AgentFileError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let invalid = |field: String, problem: String| AgentFileError::Invalid {
            path: path.to_owned(),
            at: locate_field(text, &field),
            field,
            problem,
        };
        agent.check().map_err(|InvalidField { field, problem }| {
            // A condition's error points inside the condition: find its text.
            let at = agent
                .conditions()
                .into_iter()
                .find(|(f, _)| *f == field)
                .and_then(|(_, condition)| {
                    let offset = crate::condition::Condition::parse(condition)
                        .err()
                        .map_or(0, |e| e.offset);
                    text.find(condition)
                        .map(|start| line_and_column(text, start + offset))
                })
                .or_else(|| locate_field(text, &field));
            AgentFileError::Invalid {
                path: path.to_owned(),
                field,
                at,
                problem,
            }
        })?;
        let resolve_path = |p: &mut PathBuf, field: String| -> Result<(), AgentFileError> {
            let expanded =
                expand_env(&p.to_string_lossy(), env).map_err(|problem| invalid(field, problem))?;
            let expanded = PathBuf::from(expanded);
            *p = if expanded.is_absolute() {
                expanded
            } else {
                base.join(expanded)
            };
            Ok(())
        };
        let resolve_url = |url: &mut String, field: String| -> Result<(), AgentFileError> {
            let expanded =
                expand_env(url, env).map_err(|problem| invalid(field.clone(), problem))?;
            if !is_http_url(&expanded) {
                return Err(invalid(
                    field,
                    format!("`{expanded}` is not an http:// or https:// URL"),
                ));
            }
            *url = expanded;
            Ok(())
        };
        for (i, tool) in agent.tools.iter_mut().enumerate() {
            let field = |name: &str| format!("tools[{i}].{name}");
            if let Some(builtin) = &mut tool.builtin {
                match builtin {
                    BuiltinTool::ReadFile { root: p } | BuiltinTool::AppendTodo { path: p } => {
                        resolve_path(p, field("builtin.path"))?
                    }
                    BuiltinTool::HttpPost { url } | BuiltinTool::PaymentRequest { url } => {
                        resolve_url(url, field("builtin.url"))?
                    }
                }
            }
            if let Some(sub) = &mut tool.agent {
                resolve_path(&mut sub.file, field("agent.file"))?;
            }
        }
        for (i, server) in agent.mcp_servers.iter_mut().enumerate() {
            if let Some(url) = &mut server.url {
                resolve_url(url, format!("mcp_servers[{i}].url"))?;
            }
            for arg in server.args.iter_mut() {
                *arg = expand_env(arg, env)
                    .map_err(|problem| invalid(format!("mcp_servers[{i}].args"), problem))?;
            }
            for (name, value) in server.env.iter_mut() {
                *value = expand_env(value, env)
                    .map_err(|problem| invalid(format!("mcp_servers[{i}].env.{name}"), problem))?;
            }
        }
        for (i, api) in agent.openapi.iter_mut().enumerate() {
            let expanded = expand_env(&api.spec, env)
                .map_err(|problem| invalid(format!("openapi[{i}].spec"), problem))?;
            api.spec = if is_http_url(&expanded) || Path::new(&expanded).is_absolute() {
                expanded
            } else {
                base.join(expanded).to_string_lossy().into_owned()
            };
            if let Some(url) = &mut api.base_url {
                resolve_url(url, format!("openapi[{i}].base_url"))?;
            }
        }
        for (i, connector) in agent.connectors.iter_mut().enumerate() {
            let field = |name: &str| format!("connectors[{i}].{name}");
            if let Some(root) = &mut connector.root {
                resolve_path(root, field("root"))?;
            }
            if let Some(maildir) = &mut connector.maildir {
                resolve_path(maildir, field("maildir"))?;
            }
            if let Some(url) = &mut connector.base_url {
                resolve_url(url, field("base_url"))?;
            }
            if let Some(url) = &mut connector.smtp_url {
                *url =
                    expand_env(url, env).map_err(|problem| invalid(field("smtp_url"), problem))?;
            }
        }
        if let Some(ModelConfig::Openai(model)) = &mut agent.model {
            resolve_url(&mut model.base_url, "model.base_url".into())?;
        }
        if let Some(notify) = &mut agent.notify {
            if let Some(url) = &mut notify.webhook_url {
                resolve_url(url, "notify.webhook_url".into())?;
            }
            if let Some(url) = &mut notify.slack_api_base_url {
                resolve_url(url, "notify.slack_api_base_url".into())?;
            }
            if let Some(url) = &mut notify.dashboard_url {
                resolve_url(url, "notify.dashboard_url".into())?;
            }
            if notify.webhook_url.is_some() != notify.webhook_secret_env.is_some() {
                return Err(invalid(
                    "notify.webhook_secret_env".into(),
                    "a webhook needs `webhook_url` and `webhook_secret_env` (its HMAC secret) together".into(),
                ));
            }
        }
        Ok(agent)
    }

    /// Checks what serde cannot: names, references, conditions (each must
    /// parse: a condition is never silently dropped), the money rule, and the
    /// same again for every sub-agent definition carried inline. This is the
    /// rule book [`crate::Agent::new`] applies to whatever arrives.
    pub fn check(&self) -> Result<(), InvalidField> {
        self.validate()
            .map_err(|(field, problem)| InvalidField::new(field, problem))?;
        for (field, condition) in self.conditions() {
            if let Err(e) = crate::condition::Condition::parse(condition) {
                return Err(InvalidField::new(
                    field,
                    format!(
                        "condition `{}` does not parse: {}",
                        excerpt(condition, 200),
                        e.message
                    ),
                ));
            }
        }
        for (i, tool) in self.tools.iter().enumerate() {
            if let Some(definition) = tool.agent.as_ref().and_then(|a| a.definition.as_deref()) {
                definition
                    .check()
                    .map_err(|e| e.within(&format!("tools[{i}].agent.definition")))?;
            }
        }
        Ok(())
    }

    /// Checks what serde cannot, but conditions and sub-agents: names,
    /// references and the money rule. Returns the offending field and the problem.
    fn validate(&self) -> Result<(), (String, String)> {
        if !valid_name(&self.name, 128, true) {
            return Err((
                "name".into(),
                format!(
                    "`{}` must be 1-128 letters, digits, `-`, `_` or `.`",
                    self.name
                ),
            ));
        }
        if self.approval_expiry.is_zero() {
            return Err(("approval_expiry".into(), "must be longer than zero".into()));
        }
        if self.max_turns == 0 {
            return Err(("max_turns".into(), "must be at least 1".into()));
        }
        if self.continue_as_new_after.is_some_and(|n| n < 20) {
            return Err((
                "continue_as_new_after".into(),
                "must be at least 20 events".into(),
            ));
        }
        let mut named_groups: Vec<(String, &Vec<String>)> =
            vec![("approvers".into(), &self.approvers)];
        for (i, t) in self.tools.iter().enumerate() {
            if let Some(groups) = &t.approvers {
                named_groups.push((format!("tools[{i}].approvers"), groups));
            }
            if t.quorum == Some(0) {
                return Err((format!("tools[{i}].quorum"), "must be at least 1".into()));
            }
            if t.quorum_when.is_some() && t.quorum.is_none() {
                return Err((
                    format!("tools[{i}].quorum_when"),
                    "needs `quorum` (how many approvers when it holds)".into(),
                ));
            }
            if let Some(q) = t.quorum {
                let members = t
                    .approvers
                    .as_ref()
                    .unwrap_or(&self.approvers)
                    .iter()
                    .filter_map(|g| self.groups.get(g))
                    .flatten()
                    .collect::<std::collections::HashSet<_>>()
                    .len();
                if members > 0 && (members as u32) < q {
                    return Err((
                        format!("tools[{i}].quorum"),
                        format!(
                            "{q} approvers are required but the approver groups have only {members} members"
                        ),
                    ));
                }
            }
        }
        for (field, groups) in self
            .mcp_servers
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("mcp_servers[{i}].approvers"), &s.approvers))
            .chain(
                self.openapi
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (format!("openapi[{i}].approvers"), &a.approvers)),
            )
            .chain(
                self.connectors
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("connectors[{i}].approvers"), &c.approvers)),
            )
        {
            if let Some(groups) = groups {
                named_groups.push((field, groups));
            }
        }
        for (field, groups) in named_groups {
            for group in groups {
                match self.groups.get(group) {
                    None => {
                        return Err((
                            field,
                            format!(
                                "group `{group}` is not defined in [groups] (group = [reviewer ids])"
                            ),
                        ));
                    }
                    // An empty group would leave nobody to decide, and an
                    // empty approver list means "anyone": refuse it.
                    Some(members) if members.iter().all(|m| m.trim().is_empty()) => {
                        return Err((
                            format!("groups.{group}"),
                            "must list at least one reviewer id".into(),
                        ));
                    }
                    Some(_) => {}
                }
            }
        }
        // Tool names and source prefixes share one namespace: `a` and `a.x`
        // must not be confused, and two sources must not share a prefix.
        let mut seen = std::collections::HashSet::new();
        for (i, tool) in self.tools.iter().enumerate() {
            let field = |f: &str| format!("tools[{i}].{f}");
            if !valid_name(&tool.name, 64, false) {
                return Err((
                    field("name"),
                    format!("`{}` must be 1-64 letters, digits, `-` or `_`", tool.name),
                ));
            }
            if !seen.insert(tool.name.clone()) {
                return Err((field("name"), format!("`{}` is declared twice", tool.name)));
            }
            let Some(implementation) = tool.implementation() else {
                return Err((
                    format!("tools[{i}]"),
                    "give exactly one of `builtin`, `agent`, `workflow` or `external`".into(),
                ));
            };
            match (&tool.parameters, implementation) {
                (Some(_), i) if i != ToolImplementation::External => {
                    return Err((
                        field("parameters"),
                        "only an external tool takes `parameters` (a workflow tool has `workflow.input_schema`)".into(),
                    ));
                }
                (Some(schema), _)
                    if schema.get("type").and_then(serde_json::Value::as_str) != Some("object") =>
                {
                    return Err((
                        field("parameters"),
                        "must be a JSON schema of an object (`type = \"object\"`)".into(),
                    ));
                }
                _ => {}
            }
            if tool.effect_class() == EffectClass::Money && tool.requires_approval == Some(false) {
                return Err((
                    field("requires_approval"),
                    "a money tool always needs approval; `requires_approval = false` cannot lift it"
                        .into(),
                ));
            }
            if let ToolImplementation::Builtin(builtin) = implementation
                && builtin.effect() == EffectClass::Money
                && tool.effect.is_some_and(|e| e != EffectClass::Money)
            {
                return Err((
                    field("effect"),
                    format!(
                        "a {} tool moves money; its effect class must be `money`",
                        builtin.kind()
                    ),
                ));
            }
            if let ToolImplementation::Workflow(w) = implementation {
                if w.workflow_type.trim().is_empty() {
                    return Err((field("workflow.workflow_type"), "must not be empty".into()));
                }
                // The model's arguments would be the child's whole input: it
                // could pick the agent, the mode and the requester. Countersign's
                // own workflows are used through `agent = { file = ... }`.
                if RESERVED_WORKFLOW_TYPES.contains(&w.workflow_type.trim()) {
                    return Err((
                        field("workflow.workflow_type"),
                        format!(
                            "`{}` is Countersign's own workflow and cannot be a workflow tool (the model would write its input); use `agent = {{ file = \"...\" }}` for a sub-agent",
                            w.workflow_type.trim()
                        ),
                    ));
                }
                if let Some(schema) = &w.input_schema
                    && schema.get("type").and_then(|t| t.as_str()) != Some("object")
                {
                    return Err((
                        field("workflow.input_schema"),
                        "must be an object schema (`type = \"object\"`)".into(),
                    ));
                }
            }
            if tool.approval_expiry.is_some_and(|d| d.is_zero()) {
                return Err((field("approval_expiry"), "must be longer than zero".into()));
            }
        }
        let mut prefix = |field: String, name: &str| -> Result<(), (String, String)> {
            if !valid_name(name, 32, false) {
                return Err((
                    field,
                    format!("`{name}` must be 1-32 letters, digits, `-` or `_`"),
                ));
            }
            if !seen.insert(name.to_string()) {
                return Err((
                    field,
                    format!("`{name}` is already the name of a tool or another source"),
                ));
            }
            Ok(())
        };
        for (i, server) in self.mcp_servers.iter().enumerate() {
            prefix(format!("mcp_servers[{i}].name"), &server.name)?;
            if server.command.is_some() == server.url.is_some() {
                return Err((
                    format!("mcp_servers[{i}]"),
                    "give exactly one of `command` (stdio) or `url` (streamable HTTP)".into(),
                ));
            }
        }
        for (i, api) in self.openapi.iter().enumerate() {
            prefix(format!("openapi[{i}].name"), &api.name)?;
            for header in api.headers.keys() {
                if header.is_empty() || !header.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
                    return Err((
                        format!("openapi[{i}].headers"),
                        format!("`{header}` is not a header name"),
                    ));
                }
            }
        }
        for (i, connector) in self.connectors.iter().enumerate() {
            let field = |f: &str| format!("connectors[{i}].{f}");
            prefix(field("name"), connector.prefix())?;
            let required: &[(&str, bool)] = match connector.kind {
                ConnectorKind::Filesystem => &[("root", connector.root.is_some())],
                ConnectorKind::Mail => &[
                    ("smtp_url", connector.smtp_url.is_some()),
                    ("from", connector.from.is_some()),
                    ("maildir", connector.maildir.is_some()),
                ],
                ConnectorKind::Slack => &[],
            };
            if connector.username_env.is_some() != connector.password_env.is_some() {
                return Err((
                    field("username_env"),
                    "give both `username_env` and `password_env`, or neither".into(),
                ));
            }
            for (name, present) in required {
                if !present {
                    return Err((
                        field(name),
                        format!("a {} connector needs `{name}`", connector.kind.as_str()),
                    ));
                }
            }
        }
        match &self.model {
            Some(ModelConfig::Scripted { steps }) => self.validate_script(steps),
            Some(ModelConfig::Openai(model)) => {
                if model.model.trim().is_empty() {
                    return Err(("model.model".into(), "must not be empty".into()));
                }
                Ok(())
            }
            None if self.only_gates() => Ok(()),
            None => Err((
                "model".into(),
                "is required: only an agent whose tools are all `external = {}` (used through ApprovalGate) runs without a model".into(),
            )),
        }
    }

    fn validate_script(&self, steps: &[ScriptedStep]) -> Result<(), (String, String)> {
        if steps.is_empty() {
            return Err((
                "model.steps".into(),
                "a scripted model needs at least one step".into(),
            ));
        }
        let ids: Vec<String> = steps
            .iter()
            .enumerate()
            .map(|(i, s)| s.step_id(i))
            .collect();
        for (i, step) in steps.iter().enumerate() {
            for (name, target) in [("next", &step.next), ("on_error", &step.on_error)] {
                if let Some(target) = target
                    && !ids.contains(target)
                {
                    return Err((
                        format!("model.steps[{i}].{name}"),
                        format!("no step has the id `{target}`"),
                    ));
                }
            }
            for (j, call) in step.calls.iter().enumerate() {
                if !call.arguments.is_object() {
                    return Err((
                        format!("model.steps[{i}].calls[{j}].arguments"),
                        "must be a table (a JSON object)".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Whether the agent exists only to be asked by gates: it declares
    /// tools, all of them `external = {}`, and no sources of tools. Only
    /// such an agent may leave out `[model]`.
    pub fn only_gates(&self) -> bool {
        !self.tools.is_empty()
            && self.tools.iter().all(ToolDefinition::is_external)
            && self.mcp_servers.is_empty()
            && self.openapi.is_empty()
            && self.connectors.is_empty()
    }

    /// The strongest effect class of the agent's own tools, capped at
    /// `write_external` (its money tools are gated inside its own run):
    /// the default effect of using this agent as a tool.
    pub fn strongest_effect(&self) -> EffectClass {
        if !self.mcp_servers.is_empty() || !self.openapi.is_empty() || !self.connectors.is_empty() {
            return EffectClass::WriteExternal;
        }
        let rank = |e: EffectClass| match e {
            EffectClass::Read => 0,
            EffectClass::WriteOwn => 1,
            EffectClass::WriteExternal | EffectClass::Money => 2,
        };
        self.tools
            .iter()
            .map(|t| match t.effect_class() {
                EffectClass::Money => EffectClass::WriteExternal,
                e => e,
            })
            .max_by_key(|e| rank(*e))
            .unwrap_or(EffectClass::Read)
    }

    /// The reviewer groups that may decide a call to `tool`: the tool's or
    /// its source's `approvers`, else the agent's.
    pub fn approver_groups(&self, tool: &crate::catalog::CatalogTool) -> Vec<String> {
        let own = match self.source_rules(tool) {
            Some((approvers, _)) => approvers.clone(),
            None => self.tool(&tool.name).and_then(|t| t.approvers.clone()),
        };
        own.unwrap_or_else(|| self.approvers.clone())
    }

    /// For a tool of a source (MCP server, OpenAPI document, connector): the
    /// source's `approvers` and its `approval_when` conditions by tool name.
    /// `None` for single tools, whose rules sit on their own definition.
    #[allow(clippy::type_complexity)]
    fn source_rules(
        &self,
        tool: &crate::catalog::CatalogTool,
    ) -> Option<(
        &Option<Vec<String>>,
        &std::collections::BTreeMap<String, String>,
    )> {
        use crate::catalog::ToolKind;
        match tool.kind {
            ToolKind::Builtin | ToolKind::Agent | ToolKind::Workflow | ToolKind::External => None,
            ToolKind::Mcp => self
                .mcp_servers
                .iter()
                .find(|s| s.name == tool.provider)
                .map(|s| (&s.approvers, &s.approval_when)),
            ToolKind::Openapi => self
                .openapi
                .iter()
                .find(|a| a.name == tool.provider)
                .map(|a| (&a.approvers, &a.approval_when)),
            ToolKind::Connector => self
                .connectors
                .iter()
                .find(|c| c.prefix() == tool.provider)
                .map(|c| (&c.approvers, &c.approval_when)),
        }
    }

    /// The stages of waiting for a decision on a call that expires after
    /// `expiry`, as offsets from when it opened, in order; always ends with
    /// [`WaitingStage::Expire`]. Stages at or after the expiry are dropped.
    pub fn waiting_stages(&self, expiry: Duration) -> Vec<(Duration, WaitingStage)> {
        let mut stages: Vec<(Duration, WaitingStage)> = [
            (self.remind_after, WaitingStage::Remind),
            (self.escalate_after, WaitingStage::Escalate),
        ]
        .into_iter()
        .filter_map(|(at, stage)| at.filter(|at| *at < expiry).map(|at| (at, stage)))
        .collect();
        stages.sort_by_key(|(at, _)| *at);
        stages.push((expiry, WaitingStage::Expire));
        stages
    }

    /// The reviewers who may decide a call to `tool`: the members of its
    /// approver groups (empty: anyone).
    pub fn eligible_reviewers(&self, tool: &crate::catalog::CatalogTool) -> Vec<String> {
        let mut reviewers: Vec<String> = self
            .approver_groups(tool)
            .iter()
            .filter_map(|g| self.groups.get(g))
            .flatten()
            .cloned()
            .collect();
        reviewers.sort();
        reviewers.dedup();
        reviewers
    }

    /// Whether the requester is barred from approving calls to `tool`.
    pub fn separation_of_duties_for(&self, tool: &crate::catalog::CatalogTool) -> bool {
        self.tool(&tool.name)
            .and_then(|t| t.separation_of_duties)
            .unwrap_or(self.separation_of_duties)
    }

    /// Whether decisions on calls to `tool` must be signed by a trusted key:
    /// the tool's own setting, else the agent's (source tools always take
    /// the agent's).
    pub fn signed_decisions_required_for(&self, tool: &crate::catalog::CatalogTool) -> bool {
        self.tool(&tool.name)
            .and_then(|t| t.require_signed_decisions)
            .unwrap_or(self.require_signed_decisions)
    }

    /// Every condition in the file, with its TOML field path.
    fn conditions(&self) -> Vec<(String, &str)> {
        let mut all: Vec<(String, &str)> = Vec::new();
        for (i, t) in self.tools.iter().enumerate() {
            if let Some(c) = t.approval_when.as_deref() {
                all.push((format!("tools[{i}].approval_when"), c));
            }
            if let Some(c) = t.quorum_when.as_deref() {
                all.push((format!("tools[{i}].quorum_when"), c));
            }
        }
        let sources = self
            .mcp_servers
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("mcp_servers[{i}]"), &s.approval_when))
            .chain(
                self.openapi
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (format!("openapi[{i}]"), &a.approval_when)),
            )
            .chain(
                self.connectors
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (format!("connectors[{i}]"), &c.approval_when)),
            );
        for (field, conditions) in sources {
            for (tool, condition) in conditions {
                all.push((format!("{field}.approval_when.{tool}"), condition.as_str()));
            }
        }
        all
    }

    /// The tool of that name, if the agent declares it.
    pub fn tool(&self, name: &str) -> Option<&ToolDefinition> {
        self.tools.iter().find(|t| t.name == name)
    }
}

impl ScriptedStep {
    /// The step's id: its `id`, or its position as text.
    pub fn step_id(&self, index: usize) -> String {
        self.id.clone().unwrap_or_else(|| index.to_string())
    }
}

/// Workflow types that may not be used as workflow tools: Countersign's own.
pub const RESERVED_WORKFLOW_TYPES: [&str; 2] = ["AgentRun", "ApprovalGate"];

pub use countersign_proto::contract::excerpt;

/// Where a field (a TOML path such as `tools[2].builtin.url`) is in agent
/// TOML: the 1-based line and column of its key, or of the deepest part of
/// the path that exists. `None` when the text does not parse.
pub fn locate_field(text: &str, field: &str) -> Option<(usize, usize)> {
    use toml::de::{DeTable, DeValue};
    let root = DeTable::parse(text).ok()?;
    let mut table: &DeTable = root.get_ref();
    let mut found: Option<usize> = None;
    let mut value: Option<&DeValue> = None;
    for segment in field.split('.') {
        let (key, index) = match segment.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        if let Some(DeValue::Table(t)) = value {
            table = t;
        } else if value.is_some() {
            break;
        }
        let Some((name, entry)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == key) else {
            break;
        };
        found = Some(name.span().start);
        value = Some(entry.get_ref());
        if let Some(index) = index {
            let Some(DeValue::Array(items)) = value else {
                break;
            };
            let Some(item) = items.get(index) else { break };
            found = Some(item.span().start);
            value = Some(item.get_ref());
        }
    }
    found.map(|offset| line_and_column(text, offset))
}

/// 1-based line and column of a byte offset.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

fn is_http_url(text: &str) -> bool {
    text.starts_with("http://") || text.starts_with("https://")
}

fn valid_name(name: &str, max: usize, allow_dot: bool) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || (allow_dot && c == '.'))
}

/// Replaces `${VAR}` and `${VAR:-default}`; an unset variable without default is an error.
fn expand_env(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("`{text}` has an unclosed `${{`"))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable `{name}` is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(crate) mod duration_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration ({e}); write e.g. \"90s\", \"15m\" or \"24h\""
            ))
        })
    }
}

pub(crate) mod optional_duration_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration_text::serialize(d, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        #[derive(Deserialize)]
        struct Wrapped(#[serde(with = "super::duration_text")] Duration);
        Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(d)| d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
name = "payments"
instructions = "Pay invoices."
approval_expiry = "2h"

[model]
provider = "scripted"

[[model.steps]]
id = "pay"
say = "Paying."
calls = [{ tool = "send_payment", arguments = { to = "acme", amount = 10 } }]
on_error = "give_up"

[[model.steps]]
say = "Paid."

[[model.steps]]
id = "give_up"
say = "Not paid: {last_error}"

[[tools]]
name = "send_payment"
approval_expiry = "5m"
builtin = { kind = "payment_request", url = "${PAY_URL:-http://127.0.0.1:9}/pay" }

[[tools]]
name = "todo"
requires_approval = false
builtin = { kind = "append_todo", path = "todo.txt" }
"#;

    fn parse(text: &str) -> Result<AgentFile, AgentFileError> {
        AgentFile::from_toml(text, Path::new("agent.toml"), Path::new("/base"), &|n| {
            (n == "SET").then(|| "http://set.example".to_string())
        })
    }

    #[test]
    fn an_agent_of_external_tools_needs_no_model() {
        let a = parse(
            r#"
name = "payments"
[[tools]]
name = "wire_transfer"
effect = "money"
external = {}
parameters = { type = "object", properties = { amount = { type = "number" } }, required = ["amount"] }
[[tools]]
name = "lookup"
external = {}
"#,
        )
        .unwrap();
        assert!(a.model.is_none());
        assert!(a.only_gates());
        assert!(a.tool("wire_transfer").unwrap().is_external());
        assert_eq!(
            a.tool("lookup").unwrap().effect_class(),
            EffectClass::WriteExternal
        );
        assert_eq!(
            a.tool("wire_transfer").unwrap().effect_class(),
            EffectClass::Money
        );
    }

    #[test]
    fn external_tools_are_checked() {
        let cases = [
            (
                "name = \"a\"\n[[tools]]\nname = \"t\"\nbuiltin = { kind = \"append_todo\", path = \"t.txt\" }\n",
                "model",
                "is required",
            ),
            (
                "name = \"a\"\n[[tools]]\nname = \"t\"\nexternal = { kind = \"x\" }\n",
                "external",
                "unknown field `kind`",
            ),
            (
                "name = \"a\"\n[[tools]]\nname = \"t\"\nexternal = {}\nparameters = { type = \"string\" }\n",
                "tools[0].parameters",
                "JSON schema of an object",
            ),
            (
                "name = \"a\"\n[[tools]]\nname = \"t\"\nexternal = {}\nbuiltin = { kind = \"append_todo\", path = \"t.txt\" }\n",
                "tools[0]",
                "exactly one of",
            ),
            (
                "name = \"a\"\n[[tools]]\nname = \"t\"\neffect = \"money\"\nrequires_approval = false\nexternal = {}\n",
                "tools[0].requires_approval",
                "always needs approval",
            ),
        ];
        for (text, field, problem) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains(problem), "{text}: {e}");
        }
    }

    #[test]
    fn a_good_file_resolves_paths_urls_and_expiries() {
        let a = parse(GOOD).unwrap();
        assert_eq!(a.approval_expiry, Duration::from_secs(7200));
        assert_eq!(
            a.tool("send_payment").unwrap().approval_expiry,
            Some(Duration::from_secs(300))
        );
        assert_eq!(a.tool("todo").unwrap().approval_expiry, None);
        assert_eq!(
            a.tool("send_payment").unwrap().builtin,
            Some(BuiltinTool::PaymentRequest {
                url: "http://127.0.0.1:9/pay".into()
            })
        );
        assert_eq!(
            a.tool("todo").unwrap().builtin,
            Some(BuiltinTool::AppendTodo {
                path: "/base/todo.txt".into()
            })
        );
        assert_eq!(
            a.tool("todo").unwrap().effect_class(),
            EffectClass::WriteOwn
        );
        assert_eq!(a.mode, RunMode::Autonomous);
    }

    #[test]
    fn definitions_round_trip_through_json() {
        let a = parse(GOOD).unwrap();
        let back: AgentFile = serde_json::from_value(serde_json::to_value(&a).unwrap()).unwrap();
        assert_eq!(a, back);
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn unknown_fields_name_the_file_line_and_field() {
        let e = error_of(&GOOD.replace("approval_expiry = \"2h\"", "aproval_expiry = \"2h\""));
        assert!(e.starts_with("agent.toml: "), "{e}");
        assert!(e.contains("aproval_expiry"), "{e}");
        assert!(e.contains("line 4"), "{e}");
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let e = error_of(&GOOD.replace("\"2h\"", "\"two hours\""));
        assert!(e.contains("not a duration"), "{e}");
        let e = error_of(&GOOD.replace("name = \"payments\"", "name = \"pay ments\""));
        assert_eq!(
            e,
            "agent.toml: field `name` (line 2, column 1): `pay ments` must be 1-128 letters, digits, `-`, `_` or `.`"
        );
        let e = error_of(&GOOD.replace("name = \"todo\"", "name = \"send_payment\""));
        assert!(
            e.contains(
                "field `tools[1].name` (line 28, column 1): `send_payment` is declared twice"
            ),
            "{e}"
        );
        let e = error_of(&GOOD.replace("on_error = \"give_up\"", "on_error = \"nowhere\""));
        assert!(
            e.contains(
                "field `model.steps[0].on_error` (line 13, column 1): no step has the id `nowhere`"
            ),
            "{e}"
        );
        let e = error_of(&GOOD.replace("${PAY_URL:-http://127.0.0.1:9}", "${UNSET_VAR}"));
        assert!(e.contains("tools[0].builtin.url"), "{e}");
        assert!(e.contains("`UNSET_VAR` is not set"), "{e}");
        let e = error_of(&GOOD.replace("kind = \"payment_request\"", "kind = \"teleport\""));
        assert!(e.contains("teleport"), "{e}");
    }

    #[test]
    fn money_tools_cannot_be_declared_as_something_else() {
        let e = error_of(&GOOD.replace(
            "name = \"send_payment\"",
            "name = \"send_payment\"\neffect = \"read\"",
        ));
        assert!(e.contains("field `tools[0].effect`"), "{e}");
        assert!(e.contains("must be `money`"), "{e}");
    }

    #[test]
    fn conditions_are_checked_at_load_with_line_and_column() {
        let e = error_of(&GOOD.replace(
            "name = \"todo\"",
            "name = \"todo\"\napproval_when = \"amount = 100\"",
        ));
        assert!(e.contains("field `tools[1].approval_when`"), "{e}");
        assert!(e.contains("(line 29, column 25)"), "{e}");
        assert!(e.contains("`==`"), "{e}");
        let good = parse(&GOOD.replace(
            "name = \"todo\"",
            "name = \"todo\"\napproval_when = \"len(item) > 40\"",
        ))
        .unwrap();
        assert_eq!(
            good.tool("todo").unwrap().approval_when.as_deref(),
            Some("len(item) > 40")
        );
    }

    #[test]
    fn env_expansion() {
        let env = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand_env("${A}/${B:-y}", &env).unwrap(), "x/y");
        assert!(expand_env("${A", &env).is_err());
    }
}
