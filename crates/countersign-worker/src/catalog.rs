//! Builds a run's tool catalog from its agent definition.
//!
//! Single tools (built-ins, sub-agents, workflows) and connector actions are
//! known from the definition alone, so workflow code builds them directly
//! ([`static_tools`], pure). MCP servers and OpenAPI documents must be asked:
//! the `discover_tools` activity does that ([`discover`]) when a run starts.

use crate::tools::{builtin, connectors, mcp, openapi};
use countersign_policy::EffectClass;
use countersign_policy::agent::{AgentFile, ToolImplementation};
use countersign_policy::catalog::{
    CatalogTool, ToolBinding, ToolKind, qualified_name, source_tool_policy,
};
use countersign_policy::sources::McpServer;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// What discovery found: the tools of the MCP servers and OpenAPI documents
/// that answered, and a problem per source that did not.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Discovery {
    /// The discovered tools.
    pub tools: Vec<CatalogTool>,
    /// One line per source that could not be used (its tools are not offered).
    pub problems: Vec<String>,
}

/// Whether the agent has sources that only an activity can list.
pub fn needs_discovery(agent: &AgentFile) -> bool {
    !agent.mcp_servers.is_empty() || !agent.openapi.is_empty()
}

/// Whether `tool` is one that discovery can have found for `agent`: an
/// MCP tool of a server it declares (within that server's `tools` list),
/// or an operation of an OpenAPI source it declares (within `operations`).
/// A continued run keeps only such tools of what it carried over.
pub fn is_discovered_by(agent: &AgentFile, tool: &CatalogTool) -> bool {
    let unqualified = |prefix: &str| {
        tool.name
            .strip_prefix(&format!("{prefix}."))
            .map(str::to_string)
    };
    match (&tool.kind, &tool.binding) {
        (ToolKind::Mcp, ToolBinding::Mcp { server, tool: name }) => agent
            .mcp_servers
            .iter()
            .find(|s| s.name == tool.provider)
            .is_some_and(|declared| {
                declared == server
                    && unqualified(&declared.name).as_ref() == Some(name)
                    && declared
                        .tools
                        .as_ref()
                        .is_none_or(|only| only.contains(name))
            }),
        (ToolKind::Openapi, ToolBinding::Http(_)) => agent
            .openapi
            .iter()
            .find(|a| a.name == tool.provider)
            .is_some_and(|declared| {
                unqualified(&declared.name).is_some_and(|operation| {
                    declared
                        .operations
                        .as_ref()
                        .is_none_or(|only| only.contains(&operation))
                })
            }),
        _ => false,
    }
}

/// Checks, when a worker loads its registry, what can be checked without
/// talking to the tool sources: every OpenAPI document given as a file is
/// read, parses and fits its configuration, in this agent and its
/// sub-agents. Returns one line per problem (empty: fine). MCP servers and
/// URL documents are only reached when a run starts.
pub fn preflight(agent: &AgentFile) -> Vec<String> {
    let mut problems = Vec::new();
    for api in agent
        .openapi
        .iter()
        .filter(|api| !openapi::is_http_url(&api.spec))
    {
        let checked = std::fs::read_to_string(&api.spec)
            .map_err(|e| format!("cannot read the document: {e}"))
            .and_then(|document| openapi::operations(api, &document));
        if let Err(e) = checked {
            problems.push(format!(
                "agent `{}`: openapi `{}` ({}): {e}",
                agent.name, api.name, api.spec
            ));
        }
    }
    for tool in &agent.tools {
        if let Some(sub) = tool.agent.as_ref().and_then(|a| a.definition.as_deref()) {
            problems.extend(preflight(sub));
        }
    }
    problems
}

/// The tools known from the definition alone: single tools and connector actions.
pub fn static_tools(agent: &AgentFile) -> Vec<CatalogTool> {
    let mut tools = Vec::new();
    for tool in &agent.tools {
        let Some(implementation) = tool.implementation() else {
            continue;
        };
        let (kind, input_schema, binding) = match implementation {
            ToolImplementation::Builtin(b) => (
                ToolKind::Builtin,
                builtin::arguments_schema(b),
                ToolBinding::Builtin(b.clone()),
            ),
            ToolImplementation::Agent(sub) => {
                let Some(definition) = &sub.definition else {
                    continue;
                };
                (
                    ToolKind::Agent,
                    json!({
                        "type": "object",
                        "properties": {"prompt": {"type": "string", "description": "what the agent should do"}},
                        "required": ["prompt"]
                    }),
                    ToolBinding::Agent(definition.clone()),
                )
            }
            ToolImplementation::Workflow(w) => (
                ToolKind::Workflow,
                w.input_schema
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object"})),
                ToolBinding::Workflow(w.clone()),
            ),
            ToolImplementation::External => (
                ToolKind::External,
                tool.parameters
                    .clone()
                    .unwrap_or_else(|| json!({"type": "object"})),
                ToolBinding::External,
            ),
        };
        tools.push(CatalogTool {
            name: tool.name.clone(),
            description: tool.description.clone(),
            input_schema,
            kind,
            provider: String::new(),
            effect: tool.effect_class(),
            requires_approval: tool.requires_approval,
            approval_expiry: tool.approval_expiry,
            binding,
        });
    }
    for connector in &agent.connectors {
        tools.extend(connectors::actions(connector));
    }
    tools
}

/// Asks every MCP server for its tools and parses every OpenAPI document.
/// A source that fails is reported in [`Discovery::problems`], never fatal:
/// the run goes on without its tools.
pub async fn discover(http: &reqwest::Client, agent: &AgentFile) -> Discovery {
    let mut discovery = Discovery::default();
    let servers = futures::future::join_all(
        agent
            .mcp_servers
            .iter()
            .map(|server| async move { (server, mcp::list_tools(server).await) }),
    )
    .await;
    for (server, listed) in servers {
        match listed {
            Ok(listed) => {
                let offered: Vec<CatalogTool> = listed
                    .into_iter()
                    .filter(|t| {
                        server
                            .tools
                            .as_ref()
                            .is_none_or(|only| only.contains(&t.name))
                    })
                    .map(|t| mcp_tool(server, t))
                    .collect();
                discovery.problems.extend(unknown_names(
                    &server.name,
                    server_names(server),
                    &offered,
                ));
                discovery.tools.extend(offered);
            }
            Err(e) => discovery.problems.push(format!("unavailable: {e}")),
        }
    }
    for api in &agent.openapi {
        // Read here, on the worker: the run's history keeps only the
        // operations it offers, never the document.
        let document = if openapi::is_http_url(&api.spec) {
            openapi::fetch_document(http, &api.spec).await
        } else {
            tokio::fs::read_to_string(&api.spec)
                .await
                .map_err(|e| format!("cannot read the document: {e}"))
        };
        match document.and_then(|text| openapi::operations(api, &text)) {
            Ok(tools) => discovery.tools.extend(tools),
            Err(e) => discovery.problems.push(format!(
                "HTTP API `{}` ({}) is unavailable: {e}",
                api.name, api.spec
            )),
        }
    }
    discovery
}

/// The tool names a server's configuration mentions.
fn server_names(server: &McpServer) -> Vec<&String> {
    let mut names: Vec<&String> = server.effects.keys().collect();
    if let Some(r) = &server.require_approval {
        names.extend(r.named());
    }
    names
}

/// A problem for each configured name the server does not offer: likely a
/// typo that would leave a tool with the wrong policy.
fn unknown_names(source: &str, names: Vec<&String>, offered: &[CatalogTool]) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| {
            let qualified = qualified_name(source, n);
            !offered.iter().any(|t| t.name == qualified)
        })
        .map(|n| format!("`{source}` configures tool `{n}`, which it does not offer"))
        .collect()
}

/// An MCP tool as a catalog tool: effect from the configuration, else from
/// the server's annotations (`readOnlyHint` → read), else `write_external`.
fn mcp_tool(server: &McpServer, tool: mcp::McpToolInfo) -> CatalogTool {
    let annotated = if tool.read_only_hint == Some(true) {
        EffectClass::Read
    } else {
        EffectClass::WriteExternal
    };
    let (effect, requires_approval) = source_tool_policy(
        server.require_approval.as_ref(),
        &server.effects,
        &tool.name,
        annotated,
    );
    let mut input_schema = tool.input_schema;
    if !input_schema.is_object() {
        input_schema = json!({"type": "object"});
    }
    CatalogTool {
        name: qualified_name(&server.name, &tool.name),
        description: tool.description,
        input_schema,
        kind: ToolKind::Mcp,
        provider: server.name.clone(),
        effect,
        requires_approval,
        approval_expiry: None,
        binding: ToolBinding::Mcp {
            server: server.clone(),
            tool: tool.name,
        },
    }
}
