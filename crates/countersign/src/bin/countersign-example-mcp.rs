//! `countersign-example-mcp`: a small MCP server ("notes") for examples and
//! tests, written with the official Rust SDK (`rmcp`).
//!
//! Notes are text files (`<name>.txt`) in one directory (`--dir` or
//! `NOTES_DIR`). Tools: `list_notes`, `read_note` (read-only), `add_note`
//! (additive) and `delete_note` (destructive).
//!
//! Each performed effect of a mutating tool appends one JSON line
//! `{"tool", "arguments", "idempotency_key", "result"}` to
//! `<dir>/calls.jsonl`. The idempotency key comes from the request's
//! `_meta` (`countersign.dev/idempotency-key`); a call repeating a key gets
//! the earlier result back, with no second effect and no second line. The
//! file is locked while a call runs, so this holds across processes too
//! (over stdio, every connection is a new process).
//!
//! Transports: stdio by default; `--http 127.0.0.1:0` serves streamable HTTP
//! at `/mcp` and prints `listening on http://ADDR/mcp` once bound;
//! `--bearer-token` (or `NOTES_BEARER_TOKEN`) makes it answer 401 to
//! requests without that token. Logs go to stderr (`NOTES_LOG` filter).

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clap::Parser;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ErrorData};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, ServiceExt, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `_meta` key that carries a call's idempotency key.
const IDEMPOTENCY_KEY_META: &str = "countersign.dev/idempotency-key";

/// The log of performed effects, inside the notes directory.
const CALLS_FILE: &str = "calls.jsonl";

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "countersign-example-mcp",
    about = "An example MCP server: notes in a directory"
)]
struct Args {
    /// The directory that holds the notes (created if missing).
    #[arg(long, env = "NOTES_DIR")]
    dir: PathBuf,
    /// Serve streamable HTTP at `http://ADDR/mcp` instead of stdio.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    /// With --http: answer 401 to requests without `Authorization: Bearer TOKEN`.
    #[arg(long, env = "NOTES_BEARER_TOKEN", hide_env_values = true)]
    bearer_token: Option<String>,
}

#[tokio::main]
async fn main() -> Result<()> {
    // stdout is the stdio transport: logs go to stderr only.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("NOTES_LOG")
                .unwrap_or_else(|_| "warn".into()),
        )
        .init();
    let args = Args::parse();
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("cannot create {}", args.dir.display()))?;
    let notes = Notes {
        dir: Arc::new(args.dir),
    };
    match args.http {
        None => {
            let running = notes.serve(rmcp::transport::stdio()).await?;
            running.waiting().await?;
        }
        Some(addr) => serve_http(notes, addr, args.bearer_token).await?,
    }
    Ok(())
}

async fn serve_http(notes: Notes, addr: SocketAddr, token: Option<String>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    // Loopback hosts are allowed by default (DNS rebinding protection); a
    // server bound elsewhere must also accept its own address.
    let mut config = StreamableHttpServerConfig::default();
    if !bound.ip().is_loopback() {
        config.allowed_hosts.push(bound.ip().to_string());
    }
    let service = StreamableHttpService::new(
        move || Ok(notes.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let mut router = axum::Router::new().nest_service("/mcp", service);
    if let Some(token) = token {
        router = router.layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            require_bearer,
        ));
    }
    println!("listening on http://{bound}/mcp");
    std::io::stdout().flush()?;
    axum::serve(listener, router).await?;
    Ok(())
}

/// Answers 401 unless the request carries the bearer token.
async fn require_bearer(
    State(token): State<Arc<String>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if presented.is_some_and(|p| constant_time_eq(p.as_bytes(), token.as_bytes())) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, r#"Bearer realm="notes""#)],
            "unauthorized\n",
        )
            .into_response()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The notes server.
#[derive(Debug, Clone)]
struct Notes {
    dir: Arc<PathBuf>,
}

/// `read_note` / `delete_note` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct NoteName {
    /// The note's name: letters, digits, spaces, `-`, `_`, `.` (no `/`, no `..`).
    name: String,
}

/// `add_note` arguments.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct NewNote {
    /// The note's name: letters, digits, spaces, `-`, `_`, `.` (no `/`, no `..`).
    name: String,
    /// The note's text.
    text: String,
}

#[tool_router]
impl Notes {
    /// Lists the names of all notes.
    #[tool(annotations(read_only_hint = true))]
    async fn list_notes(&self) -> Result<CallToolResult, ErrorData> {
        let mut names = Vec::new();
        let entries = std::fs::read_dir(self.dir.as_path()).map_err(internal)?;
        for entry in entries {
            let file = entry.map_err(internal)?.file_name();
            if let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".txt")) {
                names.push(name.to_string());
            }
        }
        names.sort();
        let text = if names.is_empty() {
            "(no notes)".to_string()
        } else {
            names.join("\n")
        };
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }

    /// Returns the text of a note.
    #[tool(annotations(read_only_hint = true))]
    async fn read_note(
        &self,
        Parameters(NoteName { name }): Parameters<NoteName>,
    ) -> Result<CallToolResult, ErrorData> {
        let path = match self.note_path(&name) {
            Ok(path) => path,
            Err(message) => return Ok(tool_error(message)),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(CallToolResult::success(vec![ContentBlock::text(text)])),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Ok(tool_error(format!("no note named `{name}`")))
            }
            Err(e) => Err(internal(e)),
        }
    }

    /// Adds a new note (an existing note is never replaced).
    #[tool(annotations(read_only_hint = false, destructive_hint = false))]
    async fn add_note(
        &self,
        Parameters(NewNote { name, text }): Parameters<NewNote>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let arguments = json!({"name": name, "text": text});
        self.once("add_note", arguments, &context, move |dir| {
            let path = note_path(dir, &name)?;
            let mut file = match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    return Err(format!("a note named `{name}` already exists"));
                }
                Err(e) => return Err(format!("cannot write `{name}`: {e}")),
            };
            file.write_all(text.as_bytes())
                .map_err(|e| format!("cannot write `{name}`: {e}"))?;
            Ok(format!("added note `{name}`"))
        })
        .await
    }

    /// Deletes a note.
    #[tool(annotations(read_only_hint = false, destructive_hint = true))]
    async fn delete_note(
        &self,
        Parameters(NoteName { name }): Parameters<NoteName>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let arguments = json!({"name": name});
        self.once("delete_note", arguments, &context, move |dir| {
            let path = note_path(dir, &name)?;
            match std::fs::remove_file(&path) {
                Ok(()) => Ok(format!("deleted note `{name}`")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(format!("no note named `{name}`"))
                }
                Err(e) => Err(format!("cannot delete `{name}`: {e}")),
            }
        })
        .await
    }
}

#[tool_handler(
    name = "notes",
    instructions = "Notes kept as text files: list, read, add and delete them."
)]
impl ServerHandler for Notes {}

impl Notes {
    fn note_path(&self, name: &str) -> Result<PathBuf, String> {
        note_path(&self.dir, name)
    }

    /// Performs a mutating call at most once per idempotency key: under an
    /// exclusive lock on the calls log, a key already logged returns its
    /// result; otherwise `effect` runs and, if it succeeds, is logged.
    async fn once(
        &self,
        tool: &'static str,
        arguments: Value,
        context: &RequestContext<RoleServer>,
        effect: impl FnOnce(&Path) -> Result<String, String> + Send + 'static,
    ) -> Result<CallToolResult, ErrorData> {
        let key = context
            .meta
            .0
            .get(IDEMPOTENCY_KEY_META)
            .and_then(Value::as_str)
            .map(str::to_string);
        let dir = self.dir.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            perform_once(&dir, tool, arguments, key.as_deref(), effect)
        })
        .await
        .map_err(internal)?
        .map_err(internal)?;
        Ok(match outcome {
            Ok(text) => CallToolResult::success(vec![ContentBlock::text(text)]),
            Err(message) => tool_error(message),
        })
    }
}

/// See [`Notes::once`]. The outer error is an I/O failure of the log; the
/// inner one is the tool's own error result.
fn perform_once(
    dir: &Path,
    tool: &str,
    arguments: Value,
    key: Option<&str>,
    effect: impl FnOnce(&Path) -> Result<String, String>,
) -> std::io::Result<Result<String, String>> {
    let log = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(dir.join(CALLS_FILE))?;
    let _lock = FileLock::exclusive(&log)?;
    if let Some(key) = key
        && let Some(result) = logged_result(&log, tool, key)?
    {
        return Ok(Ok(result));
    }
    let outcome = effect(dir);
    if let Ok(result) = &outcome {
        let line = json!({
            "tool": tool,
            "arguments": arguments,
            "idempotency_key": key,
            "result": result,
        });
        // `&File` writes, so the lock (which borrows the file) can stay held.
        writeln!(&log, "{line}")?;
        log.sync_data()?;
    }
    Ok(outcome)
}

/// The result logged for `key` by an earlier call of `tool`.
fn logged_result(log: &File, tool: &str, key: &str) -> std::io::Result<Option<String>> {
    for line in BufReader::new(log).lines() {
        let Ok(entry) = serde_json::from_str::<Value>(&line?) else {
            continue;
        };
        if entry["tool"] == tool && entry["idempotency_key"] == key {
            return Ok(entry["result"].as_str().map(str::to_string));
        }
    }
    Ok(None)
}

/// An exclusive `flock` on a file, released on drop.
struct FileLock<'a>(&'a File);

impl<'a> FileLock<'a> {
    fn exclusive(file: &'a File) -> std::io::Result<Self> {
        // SAFETY: flock on a descriptor this process owns for the lock's lifetime.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self(file))
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// The file of note `name`, refusing names that could leave the directory.
fn note_path(dir: &Path, name: &str) -> Result<PathBuf, String> {
    let valid = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'));
    if valid {
        Ok(dir.join(format!("{name}.txt")))
    } else {
        Err(format!(
            "invalid note name `{name}`: use letters, digits, spaces, `-`, `_`, `.` (no `/`, no `..`)"
        ))
    }
}

fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

fn internal(error: impl std::fmt::Display) -> ErrorData {
    ErrorData::internal_error(error.to_string(), None)
}
