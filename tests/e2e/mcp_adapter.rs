//! The MCP adapter against the example notes server
//! (`countersign-example-mcp`), over stdio and streamable HTTP. No Temporal
//! here: the adapter's `list_tools` / `call_tool` are called directly.

use anyhow::{Context, Result, bail};
use countersign_policy::sources::McpServer;
use countersign_worker::tools::ToolError;
use countersign_worker::tools::mcp::{McpToolInfo, call_tool, list_tools};
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

/// The example server binary.
const NOTES: &str = env!("CARGO_BIN_EXE_countersign-example-mcp");

/// How long any wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// An `McpServer` from its agent-file form (so new optional fields need no change here).
fn server(config: Value) -> McpServer {
    serde_json::from_value(config).expect("a valid MCP server configuration")
}

/// The notes server over stdio, on `dir`.
fn stdio_server(dir: &Path) -> McpServer {
    server(json!({
        "name": "notes",
        "command": NOTES,
        "args": ["--dir", dir],
        "timeout": "20s",
    }))
}

/// The lines of `<dir>/calls.jsonl` (none if it does not exist).
fn calls(dir: &Path) -> Vec<Value> {
    match std::fs::read_to_string(dir.join("calls.jsonl")) {
        Ok(text) => text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

fn tool<'a>(tools: &'a [McpToolInfo], name: &str) -> &'a McpToolInfo {
    tools
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tool `{name}` in {tools:?}"))
}

fn required(tool: &McpToolInfo) -> Vec<&str> {
    let mut names: Vec<&str> = tool.input_schema["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn stdio_lists_the_four_tools_with_annotations_and_schemas() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut tools = list_tools(&stdio_server(dir.path())).await?;
    tools.sort_by(|a, b| a.name.cmp(&b.name));
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        ["add_note", "delete_note", "list_notes", "read_note"]
    );

    let list = tool(&tools, "list_notes");
    assert_eq!(list.read_only_hint, Some(true));
    assert!(!list.description.is_empty());
    assert_eq!(list.input_schema["type"], "object");

    let read = tool(&tools, "read_note");
    assert_eq!(read.read_only_hint, Some(true));
    assert_eq!(required(read), ["name"]);
    assert_eq!(read.input_schema["properties"]["name"]["type"], "string");

    let add = tool(&tools, "add_note");
    assert_eq!(add.read_only_hint, Some(false));
    assert_eq!(add.destructive_hint, Some(false));
    assert_eq!(required(add), ["name", "text"]);

    let delete = tool(&tools, "delete_note");
    assert_eq!(delete.destructive_hint, Some(true));
    assert_eq!(required(delete), ["name"]);
    Ok(())
}

#[tokio::test]
async fn stdio_add_note_happens_once_per_idempotency_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let notes = stdio_server(dir.path());
    let arguments = json!({"name": "groceries", "text": "milk\neggs"});

    let first = call_tool(&notes, "add_note", &arguments, "run-1/call-1").await?;
    assert!(!first.is_error, "{first:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("groceries.txt"))?,
        "milk\neggs"
    );
    let logged = calls(dir.path());
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["tool"], "add_note");
    assert_eq!(logged[0]["arguments"], arguments);
    assert_eq!(logged[0]["idempotency_key"], "run-1/call-1");

    // A retried activity: same key, a new connection (a new process).
    let again = call_tool(&notes, "add_note", &arguments, "run-1/call-1").await?;
    assert_eq!(again, first);
    assert_eq!(calls(dir.path()).len(), 1);

    // Another key is another call: the note exists, so it is an error result, not logged.
    let other = call_tool(&notes, "add_note", &arguments, "run-1/call-2").await?;
    assert!(other.is_error, "{other:?}");
    assert!(other.content.contains("already exists"), "{other:?}");
    assert_eq!(calls(dir.path()).len(), 1);

    let read = call_tool(&notes, "read_note", &json!({"name": "groceries"}), "k-read").await?;
    assert!(!read.is_error, "{read:?}");
    assert_eq!(read.content, "milk\neggs");

    let listed = call_tool(&notes, "list_notes", &json!({}), "k-list").await?;
    assert_eq!(listed.content, "groceries");
    Ok(())
}

#[tokio::test]
async fn stdio_tool_errors_are_error_results_and_protocol_errors_are_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let notes = stdio_server(dir.path());

    let missing = call_tool(&notes, "read_note", &json!({"name": "nothing"}), "k1").await?;
    assert!(missing.is_error, "{missing:?}");
    assert!(
        missing.content.contains("no note named `nothing`"),
        "{missing:?}"
    );

    let escape = call_tool(&notes, "read_note", &json!({"name": "../etc/passwd"}), "k2").await?;
    assert!(escape.is_error, "{escape:?}");
    assert!(escape.content.contains("invalid note name"), "{escape:?}");

    let deleted = call_tool(&notes, "delete_note", &json!({"name": "nothing"}), "k3").await?;
    assert!(deleted.is_error, "{deleted:?}");
    assert!(calls(dir.path()).is_empty());

    match call_tool(&notes, "no_such_tool", &json!({}), "k4").await {
        Err(ToolError::Refused(message)) => {
            assert!(message.contains("MCP server `notes`"), "{message}")
        }
        other => bail!("expected Refused for an unknown tool, got {other:?}"),
    }
    // rmcp servers report arguments that do not fit the schema as a tool
    // error (so the model can correct them), not as a protocol error.
    let invalid = call_tool(&notes, "read_note", &json!({"title": "x"}), "k5").await?;
    assert!(invalid.is_error, "{invalid:?}");
    assert!(invalid.content.contains("name"), "{invalid:?}");
    match call_tool(&notes, "read_note", &json!(["x"]), "k6").await {
        Err(ToolError::Refused(message)) => assert!(message.contains("JSON object"), "{message}"),
        other => bail!("expected Refused for non-object arguments, got {other:?}"),
    }
    Ok(())
}

/// The notes server over streamable HTTP, killed when dropped.
struct HttpNotes {
    url: String,
    _child: tokio::process::Child,
}

impl HttpNotes {
    async fn start(dir: &Path, token: &str) -> Result<Self> {
        let mut child = tokio::process::Command::new(NOTES)
            .arg("--dir")
            .arg(dir)
            .args(["--http", "127.0.0.1:0", "--bearer-token", token])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start the notes server")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(DEADLINE, lines.next_line())
            .await
            .context("the notes server did not print its address in time")??
            .context("the notes server exited before printing its address")?;
        let url = line
            .strip_prefix("listening on ")
            .with_context(|| format!("unexpected first line `{line}`"))?
            .to_string();
        Ok(Self { url, _child: child })
    }
}

/// A process-unique environment variable name.
fn unique_variable(test: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "COUNTERSIGN_E2E_MCP_{}_{}_{}",
        test.to_uppercase(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn set_variable(name: &str, value: &str) {
    // SAFETY: each test sets its own, never-read-elsewhere variable; no
    // other code in this process writes the environment concurrently.
    unsafe { std::env::set_var(name, value) };
}

fn http_server(url: &str, token_env: &str) -> McpServer {
    server(json!({
        "name": "remote-notes",
        "url": url,
        "bearer_token_env": token_env,
        "timeout": "20s",
    }))
}

#[tokio::test]
async fn http_with_a_bearer_token_lists_and_calls() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let notes = HttpNotes::start(dir.path(), "s3cret-token").await?;
    let variable = unique_variable("ok");
    set_variable(&variable, "s3cret-token");
    let remote = http_server(&notes.url, &variable);

    let tools = list_tools(&remote).await?;
    assert_eq!(tools.len(), 4, "{tools:?}");
    assert_eq!(tool(&tools, "delete_note").destructive_hint, Some(true));

    let arguments = json!({"name": "todo", "text": "ship it"});
    let added = call_tool(&remote, "add_note", &arguments, "approval-7").await?;
    assert!(!added.is_error, "{added:?}");
    let again = call_tool(&remote, "add_note", &arguments, "approval-7").await?;
    assert_eq!(again, added);
    let logged = calls(dir.path());
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert_eq!(logged[0]["idempotency_key"], "approval-7");

    let read = call_tool(&remote, "read_note", &json!({"name": "todo"}), "k").await?;
    assert_eq!(read.content, "ship it");

    let deleted = call_tool(
        &remote,
        "delete_note",
        &json!({"name": "todo"}),
        "approval-8",
    )
    .await?;
    assert!(!deleted.is_error, "{deleted:?}");
    assert!(!dir.path().join("todo.txt").exists());
    assert_eq!(calls(dir.path()).len(), 2);
    Ok(())
}

#[tokio::test]
async fn http_with_an_unset_token_variable_is_refused_naming_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let notes = HttpNotes::start(dir.path(), "s3cret-token").await?;
    let variable = unique_variable("unset");
    let remote = http_server(&notes.url, &variable);

    for outcome in [
        list_tools(&remote).await.map(|_| ()),
        call_tool(&remote, "list_notes", &json!({}), "k")
            .await
            .map(|_| ()),
    ] {
        match outcome {
            Err(ToolError::Refused(message)) => {
                assert!(message.contains(&variable), "{message}");
                assert!(message.contains("MCP server `remote-notes`"), "{message}");
            }
            other => bail!("expected Refused naming {variable}, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn http_with_a_wrong_token_is_unauthorized() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let notes = HttpNotes::start(dir.path(), "s3cret-token").await?;
    let variable = unique_variable("wrong");
    set_variable(&variable, "not-the-token");
    let remote = http_server(&notes.url, &variable);

    let error = list_tools(&remote)
        .await
        .expect_err("a wrong token must not list tools");
    let message = error.to_string();
    assert!(
        message.contains("unauthorized") && message.contains("401"),
        "{message}"
    );
    assert!(
        !message.contains("not-the-token"),
        "the token leaked: {message}"
    );

    let error = call_tool(&remote, "add_note", &json!({"name": "a", "text": "b"}), "k")
        .await
        .expect_err("a wrong token must not call tools");
    assert!(error.to_string().contains("unauthorized"), "{error}");
    assert!(calls(dir.path()).is_empty());
    Ok(())
}

#[tokio::test]
async fn a_command_that_does_not_exist_fails_quickly_naming_the_server() -> Result<()> {
    let missing = server(json!({
        "name": "ghost",
        "command": "/nonexistent/countersign-no-such-mcp-server",
        "timeout": "2s",
    }));
    let started = Instant::now();
    match list_tools(&missing).await {
        Err(ToolError::Transient(message)) => {
            assert!(message.contains("MCP server `ghost`"), "{message}");
            assert!(message.contains("cannot start"), "{message}");
        }
        other => bail!("expected Transient, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test]
async fn a_url_where_nothing_listens_fails_quickly_naming_the_server() -> Result<()> {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let nowhere = server(json!({
        "name": "offline",
        "url": format!("http://127.0.0.1:{port}/mcp"),
        "timeout": "2s",
    }));
    let started = Instant::now();
    match call_tool(&nowhere, "list_notes", &json!({}), "k").await {
        Err(ToolError::Transient(message)) => {
            assert!(message.contains("MCP server `offline`"), "{message}");
        }
        other => bail!("expected Transient, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() -> Result<()> {
    // `sleep` reads nothing and writes nothing: initialization never completes.
    let silent = server(json!({
        "name": "silent",
        "command": "sleep",
        "args": ["60"],
        "timeout": "500ms",
    }));
    let started = Instant::now();
    match list_tools(&silent).await {
        Err(ToolError::Transient(message)) => {
            assert!(message.contains("MCP server `silent`"), "{message}");
            assert!(message.contains("500ms"), "{message}");
        }
        other => bail!("expected Transient, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}
