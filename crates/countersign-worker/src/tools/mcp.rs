//! MCP servers (stdio or streamable HTTP), through the official Rust SDK
//! (`rmcp`): tool discovery and `tools/call`.
//!
//! Every operation opens its own connection and closes it afterwards: a
//! stdio server is started for the call and stopped when it is done, an HTTP
//! server gets a fresh session. Nothing is kept between activities, so a
//! retried activity on another worker behaves like the first attempt. Each
//! request (connecting included) is bounded by the server's `timeout`.
//!
//! Errors name the server (``MCP server `notes`: ...``). Failing to connect,
//! a process that cannot start or dies, a timeout, an HTTP 5xx are
//! [`ToolError::Transient`]; protocol errors (unknown tool, invalid
//! arguments), a rejected bearer token and a misconfiguration are
//! [`ToolError::Refused`]. A tool that answers `isError: true` is a normal
//! [`ToolOutput::error`].

use super::{ToolError, ToolOutput, truncate_output};
use countersign_policy::sources::McpServer;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities, ClientConfig,
    ContentBlock, ErrorCode, ErrorData, Implementation, JsonObject, PaginatedRequestParams,
    ProtocolVersion, RequestMetaObject, ResourceContents, Tool,
};
use rmcp::service::{ClientInitializeError, RunningService, ServiceError};
use rmcp::transport::streamable_http_client::{
    HttpStatusError, StreamableHttpClientTransportConfig, StreamableHttpError,
};
use rmcp::transport::{DynamicTransportError, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::error::Error as StdError;
use std::future::Future;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// How long one request may take when the server sets no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Results longer than this (in bytes) are cut, with a marker.
pub const MAX_RESULT_BYTES: usize = 64 * 1024;

/// The `_meta` key of `tools/call` requests that carries the idempotency key.
pub const IDEMPOTENCY_KEY_META: &str = "countersign.dev/idempotency-key";

/// How long closing a connection may take before it is abandoned (a stdio
/// server is then killed).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of a stdio server's stderr kept for error messages.
const STDERR_TAIL_BYTES: usize = 2048;

/// A guard against a server that hands out cursors forever.
const MAX_PAGES: usize = 1000;

/// A tool as an MCP server lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpToolInfo {
    /// The tool's name on the server.
    pub name: String,
    /// Its description.
    pub description: String,
    /// Its input JSON schema.
    pub input_schema: Value,
    /// The server's `readOnlyHint` annotation.
    pub read_only_hint: Option<bool>,
    /// The server's `destructiveHint` annotation.
    pub destructive_hint: Option<bool>,
}

/// Connects to `server` and lists its tools (every page).
pub async fn list_tools(server: &McpServer) -> Result<Vec<McpToolInfo>, ToolError> {
    let session = Session::connect(server).await?;
    let listed = session.list_all().await;
    session.close().await;
    Ok(listed?.into_iter().map(tool_info).collect())
}

/// Connects to `server` and calls `tool` with `arguments` (a JSON object),
/// passing `idempotency_key` in the request's `_meta`.
pub async fn call_tool(
    server: &McpServer,
    tool: &str,
    arguments: &Value,
    idempotency_key: &str,
) -> Result<ToolOutput, ToolError> {
    let arguments = match arguments {
        Value::Object(map) => map.clone(),
        // A tool without parameters is often called with `null`.
        Value::Null => JsonObject::new(),
        other => {
            return Err(ToolError::Refused(format!(
                "MCP server `{}`: the arguments of `{tool}` must be a JSON object, not {}",
                server.name,
                json_kind(other)
            )));
        }
    };
    let mut meta = RequestMetaObject::new();
    meta.0.insert(
        IDEMPOTENCY_KEY_META.to_string(),
        Value::String(idempotency_key.to_string()),
    );
    let mut params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
    params.meta = Some(meta);

    let session = Session::connect(server).await?;
    let answered = session.call(tool, params).await;
    session.close().await;
    Ok(tool_output(answered?))
}

/// One connection to a server, for one operation.
struct Session<'a> {
    server: &'a McpServer,
    timeout: Duration,
    client: RunningService<RoleClient, ClientConfig>,
    /// The end of a stdio server's stderr, for error messages.
    stderr: Option<StderrTail>,
}

impl<'a> Session<'a> {
    async fn connect(server: &'a McpServer) -> Result<Self, ToolError> {
        let timeout = server.timeout.unwrap_or(DEFAULT_TIMEOUT);
        match (&server.command, &server.url) {
            (Some(command), None) => Self::connect_stdio(server, command, timeout).await,
            (None, Some(url)) => Self::connect_http(server, url, timeout).await,
            (Some(_), Some(_)) => Err(refused(server, "set either `command` or `url`, not both")),
            (None, None) => Err(refused(
                server,
                "set `command` (stdio) or `url` (streamable HTTP)",
            )),
        }
    }

    async fn connect_stdio(
        server: &'a McpServer,
        command: &str,
        timeout: Duration,
    ) -> Result<Self, ToolError> {
        let mut cmd = tokio::process::Command::new(command);
        cmd.args(&server.args)
            .envs(&server.env)
            // Whatever happens to this future, the process goes with it.
            .kill_on_drop(true);
        let (transport, stderr) = TokioChildProcess::builder(cmd)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| transient(server, format!("cannot start `{command}`: {e}")))?;
        let stderr = stderr.map(StderrTail::collect);
        let connected = bounded(timeout, client_config().serve(transport)).await;
        let client = match connected {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                let mut error = init_error(server, &e);
                if let Some(stderr) = &stderr {
                    error = with_stderr(error, stderr).await;
                }
                return Err(error);
            }
            Err(()) => return Err(timed_out(server, "initialize", timeout)),
        };
        Ok(Self {
            server,
            timeout,
            client,
            stderr,
        })
    }

    async fn connect_http(
        server: &'a McpServer,
        url: &str,
        timeout: Duration,
    ) -> Result<Self, ToolError> {
        let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
        if let Some(variable) = &server.bearer_token_env {
            config = config.auth_header(bearer_token(server, variable)?);
        }
        install_crypto_provider();
        let transport = StreamableHttpClientTransport::from_config(config);
        let client = match bounded(timeout, client_config().serve(transport)).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return Err(init_error(server, &e)),
            Err(()) => return Err(timed_out(server, "initialize", timeout)),
        };
        Ok(Self {
            server,
            timeout,
            client,
            stderr: None,
        })
    }

    async fn list_all(&self) -> Result<Vec<Tool>, ToolError> {
        let mut tools = Vec::new();
        let mut cursor = None;
        for _ in 0..MAX_PAGES {
            let params = PaginatedRequestParams::default().with_cursor(cursor);
            let page = self
                .request("tools/list", self.client.list_tools(Some(params)))
                .await?;
            tools.extend(page.tools);
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => return Ok(tools),
            }
        }
        Err(refused(
            self.server,
            format!("tools/list did not end after {MAX_PAGES} pages"),
        ))
    }

    async fn call(
        &self,
        tool: &str,
        params: CallToolRequestParams,
    ) -> Result<CallToolResult, ToolError> {
        match self
            .request("tools/call", self.client.call_tool_once(params))
            .await?
        {
            CallToolResponse::Complete(result) => Ok(result),
            CallToolResponse::InputRequired(_) => Err(refused(
                self.server,
                format!("`{tool}` asked for more input, which Countersign cannot provide"),
            )),
            CallToolResponse::Task(_) => Err(refused(
                self.server,
                format!("`{tool}` answered with a task, which Countersign does not poll"),
            )),
            _ => Err(refused(
                self.server,
                format!("`{tool}` answered with an unknown kind of result"),
            )),
        }
    }

    /// Runs one request within the timeout and maps its error.
    async fn request<T>(
        &self,
        method: &str,
        request: impl Future<Output = Result<T, ServiceError>>,
    ) -> Result<T, ToolError> {
        match bounded(self.timeout, request).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                let error = service_error(self.server, method, &e);
                Err(match &self.stderr {
                    Some(stderr) if matches!(error, ToolError::Transient(_)) => {
                        with_stderr(error, stderr).await
                    }
                    _ => error,
                })
            }
            Err(()) => Err(timed_out(self.server, method, self.timeout)),
        }
    }

    /// Closes the connection: a stdio server sees its stdin close and is
    /// stopped (SIGTERM, then killed) if it does not exit by itself.
    async fn close(mut self) {
        // Past the timeout, dropping the client kills the process.
        let _ = self.client.close_with_timeout(CLOSE_TIMEOUT).await;
        if let Some(stderr) = &self.stderr {
            stderr.task.abort();
        }
    }
}

/// The identity and capabilities Countersign announces. The newest protocol
/// version that still has the `initialize` handshake is the one most servers
/// speak; a server may answer with an older one.
fn client_config() -> ClientConfig {
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("countersign", env!("CARGO_PKG_VERSION")),
    )
    .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
}

/// rmcp's HTTP client is built without a TLS crypto provider (to avoid a
/// second one in the build); ring, which the rest of the worker uses, is
/// installed as the process default unless something installed one already.
fn install_crypto_provider() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The token in the worker's environment variable `variable`.
fn bearer_token(server: &McpServer, variable: &str) -> Result<String, ToolError> {
    crate::secrets::from_env(variable, "bearer_token_env")
        .map_err(|problem| refused(server, problem))
}

/// `Err(())` when `future` did not finish within `timeout`.
async fn bounded<T>(timeout: Duration, future: impl Future<Output = T>) -> Result<T, ()> {
    tokio::time::timeout(timeout, future).await.map_err(|_| ())
}

fn refused(server: &McpServer, message: impl std::fmt::Display) -> ToolError {
    ToolError::Refused(format!("MCP server `{}`: {message}", server.name))
}

fn transient(server: &McpServer, message: impl std::fmt::Display) -> ToolError {
    ToolError::Transient(format!("MCP server `{}`: {message}", server.name))
}

fn timed_out(server: &McpServer, what: &str, timeout: Duration) -> ToolError {
    transient(
        server,
        format!("no answer to `{what}` within {}", humanize(timeout)),
    )
}

fn humanize(duration: Duration) -> String {
    if duration.subsec_millis() == 0 {
        format!("{}s", duration.as_secs())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

/// Why the connection could not be set up.
fn init_error(server: &McpServer, error: &ClientInitializeError) -> ToolError {
    if error.is_authorization_required() {
        return unauthorized(server);
    }
    match error {
        ClientInitializeError::JsonRpcError(e) => protocol_error(server, "initialize", e),
        ClientInitializeError::ConnectionClosed(_) => transient(
            server,
            "the connection closed before the server answered `initialize`",
        ),
        ClientInitializeError::TransportError { error, .. } => {
            transport_error(server, "cannot connect", error)
        }
        ClientInitializeError::NoCompatibleProtocolVersion { .. } => refused(server, error),
        other => transient(server, format!("cannot connect: {}", chain(other))),
    }
}

/// Why a request failed.
fn service_error(server: &McpServer, method: &str, error: &ServiceError) -> ToolError {
    if error.is_authorization_required() {
        return unauthorized(server);
    }
    match error {
        ServiceError::McpError(e) => protocol_error(server, method, e),
        ServiceError::TransportSend(e) => transport_error(server, &format!("`{method}` failed"), e),
        ServiceError::TransportClosed => {
            transient(server, format!("the connection closed during `{method}`"))
        }
        ServiceError::Timeout { timeout } => timed_out(server, method, *timeout),
        ServiceError::UnexpectedResponse => {
            refused(server, format!("unexpected answer to `{method}`"))
        }
        other => transient(server, format!("`{method}` failed: {}", chain(other))),
    }
}

/// A JSON-RPC error from the server: the request as made cannot succeed,
/// except for an internal error, which may be passing.
fn protocol_error(server: &McpServer, method: &str, error: &ErrorData) -> ToolError {
    let message = format!(
        "`{method}` failed: {} (JSON-RPC error {})",
        error.message, error.code.0
    );
    if error.code == ErrorCode::INTERNAL_ERROR {
        transient(server, message)
    } else {
        refused(server, message)
    }
}

/// A transport failure: an HTTP 429 / 5xx or a broken connection is worth
/// retrying; any other HTTP answer is not.
fn transport_error(server: &McpServer, context: &str, error: &DynamicTransportError) -> ToolError {
    // The wrapper's own text is the transport's type name: skip it.
    let error: &(dyn StdError + 'static) = error.error.as_ref();
    let mut source = Some(error);
    while let Some(current) = source {
        if let Some(status) = current.downcast_ref::<HttpStatusError>() {
            return transient(server, format!("{context}: HTTP {}", status.status));
        }
        source = current.source();
    }
    match error.downcast_ref::<StreamableHttpError<reqwest013::Error>>() {
        // This variant does not expose the reqwest error as its source, which
        // holds the useful part ("Connection refused").
        Some(StreamableHttpError::Client(e)) => {
            transient(server, format!("{context}: {}", chain(e)))
        }
        Some(StreamableHttpError::UnexpectedServerResponse(text)) => {
            refused(server, format!("{context}: unexpected answer: {text}"))
        }
        _ => transient(server, format!("{context}: {}", chain(error))),
    }
}

fn unauthorized(server: &McpServer) -> ToolError {
    let hint = match &server.bearer_token_env {
        Some(variable) => format!("check the token in `{variable}`"),
        None => "set `bearer_token_env`".to_string(),
    };
    refused(server, format!("unauthorized (HTTP 401): {hint}"))
}

/// An error and its sources, `: `-separated, without repeated parts.
fn chain(error: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(error);
    while let Some(current) = source {
        let text = current.to_string();
        if !text.is_empty() && !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = current.source();
    }
    parts.join(": ")
}

/// The last bytes a stdio server wrote to stderr, read as it runs (so a
/// chatty server never blocks on a full pipe).
struct StderrTail {
    tail: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StderrTail {
    fn collect(mut stderr: tokio::process::ChildStderr) -> Self {
        let tail = Arc::new(Mutex::new(Vec::new()));
        let sink = tail.clone();
        let task = tokio::spawn(async move {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stderr.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                let mut tail = sink.lock().unwrap_or_else(|e| e.into_inner());
                tail.extend_from_slice(&buffer[..n]);
                let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES);
                tail.drain(..excess);
            }
        });
        Self { tail, task }
    }

    /// The tail so far, after giving the reader a moment to catch up with a
    /// process that just exited.
    async fn text(&self) -> String {
        let _ = tokio::time::timeout(Duration::from_millis(200), async {
            while !self.task.is_finished() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let tail = self.tail.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&tail).trim().to_string()
    }
}

/// Adds the server's last stderr output to a transient error.
async fn with_stderr(error: ToolError, stderr: &StderrTail) -> ToolError {
    let text = stderr.text().await;
    match error {
        ToolError::Transient(message) if !text.is_empty() => {
            ToolError::Transient(format!("{message} (stderr: {text})"))
        }
        other => other,
    }
}

fn tool_info(tool: Tool) -> McpToolInfo {
    let annotations = tool.annotations.as_ref();
    McpToolInfo {
        name: tool.name.to_string(),
        description: tool.description.as_deref().unwrap_or_default().to_string(),
        input_schema: Value::Object(tool.input_schema.as_ref().clone()),
        read_only_hint: annotations.and_then(|a| a.read_only_hint),
        destructive_hint: annotations.and_then(|a| a.destructive_hint),
    }
}

/// The model-facing text of a tool result: text items joined with newlines,
/// other items summarized, the structured content when there is no text.
fn tool_output(result: CallToolResult) -> ToolOutput {
    let has_text = result
        .content
        .iter()
        .any(|c| matches!(c, ContentBlock::Text(_)));
    let mut parts: Vec<String> = Vec::new();
    if !has_text && let Some(structured) = &result.structured_content {
        parts.push(structured.to_string());
    }
    parts.extend(result.content.iter().map(content_text));
    let content = truncate_output(parts.join("\n"), MAX_RESULT_BYTES, "the result");
    if result.is_error == Some(true) {
        ToolOutput::error(content)
    } else {
        ToolOutput::ok(content)
    }
}

fn content_text(block: &ContentBlock) -> String {
    match block {
        ContentBlock::Text(text) => text.text.clone(),
        ContentBlock::Image(image) => format!("[image: {}]", image.mime_type),
        ContentBlock::Audio(audio) => format!("[audio: {}]", audio.mime_type),
        ContentBlock::Resource(embedded) => match &embedded.resource {
            ResourceContents::TextResourceContents { uri, text, .. } => {
                format!("[resource: {uri}]\n{text}")
            }
            ResourceContents::BlobResourceContents { uri, mime_type, .. } => match mime_type {
                Some(mime) => format!("[resource: {uri} ({mime})]"),
                None => format!("[resource: {uri}]"),
            },
            _ => "[resource]".to_string(),
        },
        ContentBlock::ResourceLink(link) => format!("[resource link: {}]", link.uri),
        _ => "[content]".to_string(),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_results_are_cut_with_a_marker() {
        let long = CallToolResult::success(vec![ContentBlock::text("é".repeat(MAX_RESULT_BYTES))]);
        let output = tool_output(long);
        assert!(output.content.len() < MAX_RESULT_BYTES + 100);
        assert!(
            output.content.contains("[truncated: the result has"),
            "{}",
            &output.content[MAX_RESULT_BYTES - 10..]
        );
    }

    #[test]
    fn text_items_are_joined_and_others_summarized() {
        let mut result = CallToolResult::success(vec![
            ContentBlock::text("one"),
            ContentBlock::image("AAAA", "image/png"),
            ContentBlock::text("two"),
        ]);
        result.structured_content = Some(serde_json::json!({"ignored": true}));
        assert_eq!(
            tool_output(result),
            ToolOutput::ok("one\n[image: image/png]\ntwo")
        );

        let mut structured = CallToolResult::success(vec![]);
        structured.structured_content = Some(serde_json::json!({"n": 1}));
        structured.is_error = Some(true);
        assert_eq!(tool_output(structured), ToolOutput::error(r#"{"n":1}"#));
    }
}
