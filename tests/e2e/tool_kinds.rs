//! Each tool kind gated through a real run: an MCP server process, an HTTP
//! API described by OpenAPI, a connector, and an OpenAI-compatible model
//! served by a local server that speaks the Chat Completions wire format.

use crate::harness::*;
use anyhow::Result;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use axum::{Json, Router};
use countersign_approvals::ApproveOptions;
use countersign_policy::agent::AgentFile;
use countersign_proto::{ApprovalState, RunStatus};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

const EXAMPLE_MCP: &str = env!("CARGO_BIN_EXE_countersign-example-mcp");

/// The lines of the example MCP server's effect log.
fn mcp_calls(dir: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("calls.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test]
async fn a_gated_mcp_tool_runs_only_after_approval_exactly_once() -> Result<()> {
    let env = TestEnv::new("mcp").await?;
    let notes = env.dir.path().join("notes");
    std::fs::create_dir_all(&notes)?;
    let agent = env.agent(
        &r#"
name = "t-mcp"
approval_expiry = "1h"

[model]
provider = "scripted"

[[model.steps]]
say = "Looking at the notes."
calls = [{ tool = "notes.list_notes" }]

[[model.steps]]
say = "Writing the standup summary."
calls = [{ tool = "notes.add_note", arguments = { name = "standup", text = "ship it" } }]

[[model.steps]]
say = "Saved: {last_result}"

[[mcp_servers]]
name = "notes"
command = "BIN"
args = ["--dir", "DIR"]
require_approval = ["add_note"]
"#
        .replace("BIN", EXAMPLE_MCP)
        .replace("DIR", &notes.to_string_lossy()),
    )?;
    env.with_worker(async {
        let id = env.start(agent, "summarize the standup").await?;
        let gate = &env.pending(&id, 1).await?[0];
        let tool = gate.tool.as_ref().unwrap();
        assert_eq!(
            (
                tool.kind.as_str(),
                tool.provider.as_str(),
                tool.name.as_str()
            ),
            ("mcp", "notes", "notes.add_note")
        );
        assert_eq!(gate.rule, "tool flag: requires_approval = true");
        // The read ran at once; the write has not.
        let state = env.approvals.run_state(&id).await?;
        assert!(!state.transcript[2].is_error, "{:?}", state.transcript[2]);
        assert!(
            mcp_calls(&notes).is_empty(),
            "the note was written before approval"
        );

        env.approvals
            .approve(
                &gate.approval_id,
                "bob@example.com",
                ApproveOptions::default(),
            )
            .await?;
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        let calls = mcp_calls(&notes);
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(calls[0]["tool"], "add_note");
        assert_eq!(calls[0]["idempotency_key"], gate.approval_id.as_str());
        assert_eq!(
            std::fs::read_to_string(notes.join("standup.txt"))?,
            "ship it"
        );
        env.record_and_replay(&id, "mcp").await
    })
    .await
}

#[tokio::test]
async fn an_unreachable_mcp_server_is_a_notice_and_its_tools_never_run() -> Result<()> {
    let env = TestEnv::new("mcp-down").await?;
    let agent = env.agent(&format!(
        "{}{}",
        one_call_agent(
            "t-mcp-down",
            "Deleting the old note.",
            r#"{ tool = "notes.delete_note", arguments = { name = "old" } }"#,
        ),
        r#"
[[mcp_servers]]
name = "notes"
command = "/nonexistent/countersign-notes-server"
timeout = "2s"
"#
    ))?;
    env.with_worker(async {
        let id = env.start(agent, "clean up").await?;
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert_eq!(state.notices.len(), 1, "{:?}", state.notices);
        assert!(
            state.notices[0].contains("notes") && state.notices[0].contains("unavailable"),
            "{}",
            state.notices[0]
        );
        assert!(state.approvals.is_empty());
        assert!(
            state
                .final_answer
                .starts_with("Could not: there is no tool named `notes.delete_note`"),
            "{}",
            state.final_answer
        );
        Ok(())
    })
    .await
}

/// A tickets API: records every request it gets.
#[derive(Clone, Default)]
struct Tickets {
    requests: Arc<Mutex<Vec<(String, HeaderMap, Value)>>>,
}

impl Tickets {
    async fn start(&self) -> Result<String> {
        async fn list(State(t): State<Tickets>, headers: HeaderMap) -> (StatusCode, Json<Value>) {
            t.requests
                .lock()
                .unwrap()
                .push(("GET /tickets".into(), headers, Value::Null));
            (
                StatusCode::OK,
                Json(json!([{"id": 1, "title": "printer on fire"}])),
            )
        }
        async fn create(
            State(t): State<Tickets>,
            headers: HeaderMap,
            Json(body): Json<Value>,
        ) -> (StatusCode, Json<Value>) {
            t.requests
                .lock()
                .unwrap()
                .push(("POST /tickets".into(), headers, body));
            (StatusCode::CREATED, Json(json!({"id": 2})))
        }
        async fn close(
            State(t): State<Tickets>,
            UrlPath(id): UrlPath<u32>,
            headers: HeaderMap,
        ) -> StatusCode {
            t.requests.lock().unwrap().push((
                format!("DELETE /tickets/{id}"),
                headers,
                Value::Null,
            ));
            StatusCode::NO_CONTENT
        }
        let app = Router::new()
            .route("/tickets", get(list).post(create))
            .route("/tickets/{id}", axum::routing::delete(close))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(url)
    }

    fn requests(&self) -> Vec<(String, HeaderMap, Value)> {
        self.requests.lock().unwrap().clone()
    }
}

const TICKETS_OPENAPI: &str = r#"
openapi: 3.0.3
info: { title: Tickets, version: "1" }
servers: [{ url: "BASE" }]
paths:
  /tickets:
    get:
      operationId: listTickets
      summary: Lists open tickets
      responses: { "200": { description: ok } }
    post:
      operationId: createTicket
      summary: Opens a ticket
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              properties: { title: { type: string } }
              required: [title]
      responses: { "201": { description: created } }
  /tickets/{id}:
    delete:
      operationId: closeTicket
      parameters: [{ name: id, in: path, required: true, schema: { type: integer } }]
      responses: { "204": { description: closed } }
"#;

#[tokio::test]
async fn openapi_operations_are_tools_and_writes_wait_for_approval() -> Result<()> {
    let env = TestEnv::new("openapi").await?;
    let tickets = Tickets::default();
    let base = tickets.start().await?;
    std::fs::write(
        env.dir.path().join("tickets.yaml"),
        TICKETS_OPENAPI.replace("BASE", &base),
    )?;
    // SAFETY: a variable no other test reads or writes.
    unsafe { std::env::set_var("COUNTERSIGN_E2E_TICKETS_TOKEN", "Bearer t0ken") };
    let agent = AgentFile::from_file(&env.agent_file(
        "agent.toml",
        r#"
name = "t-openapi"
approval_expiry = "1h"

[model]
provider = "scripted"

[[model.steps]]
say = "Checking open tickets."
calls = [{ tool = "tickets.listTickets" }]

[[model.steps]]
say = "Opening a ticket and closing the old one."
calls = [
  { tool = "tickets.createTicket", arguments = { body = { title = "replace printer" } } },
  { tool = "tickets.closeTicket", arguments = { id = 1 } },
]

[[model.steps]]
say = "Done."

[[openapi]]
name = "tickets"
spec = "tickets.yaml"
headers = { Authorization = "COUNTERSIGN_E2E_TICKETS_TOKEN" }
require_approval = ["closeTicket"]
"#,
    )?)?;
    env.with_worker(async {
        let id = env.start(agent, "handle the printer").await?;
        let gates = env.pending(&id, 2).await?;
        let names: Vec<&str> = gates
            .iter()
            .map(|g| g.tool.as_ref().unwrap().name.as_str())
            .collect();
        assert_eq!(names, ["tickets.createTicket", "tickets.closeTicket"]);
        assert_eq!(gates[0].effect_class, "write_external");
        assert_eq!(gates[0].tool.as_ref().unwrap().kind, "openapi");
        // Only the read reached the API, with the header from the environment.
        let seen = tickets.requests();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0, "GET /tickets");
        assert_eq!(seen[0].1["authorization"], "Bearer t0ken");

        env.approvals
            .approve(
                &gates[0].approval_id,
                "bob@example.com",
                ApproveOptions::default(),
            )
            .await?;
        env.approvals
            .deny(&gates[1].approval_id, "bob@example.com", "keep it open")
            .await?;
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        let seen = tickets.requests();
        let writes: Vec<&String> = seen.iter().skip(1).map(|r| &r.0).collect();
        assert_eq!(writes, ["POST /tickets"], "the denied DELETE must not run");
        assert_eq!(seen[1].2, json!({"title": "replace printer"}));
        assert_eq!(seen[1].1["idempotency-key"], gates[0].approval_id.as_str());
        Ok(())
    })
    .await
}

#[tokio::test]
async fn connector_actions_are_gated_by_name() -> Result<()> {
    let env = TestEnv::new("connector").await?;
    let root = env.dir.path().join("files");
    std::fs::create_dir_all(&root)?;
    std::fs::write(root.join("draft.txt"), "v1")?;
    let agent = env.agent(
        r#"
name = "t-files"
approval_expiry = "1h"

[model]
provider = "scripted"

[[model.steps]]
say = "Reading the draft."
calls = [{ tool = "docs.read", arguments = { path = "draft.txt" } }]

[[model.steps]]
say = "Publishing it, and trying to read outside the folder."
calls = [
  { tool = "docs.write", arguments = { path = "published.txt", content = "v1 final" } },
  { tool = "docs.read", arguments = { path = "../secret.txt" } },
]

[[model.steps]]
say = "Done: {last_result}"

[[connectors]]
name = "docs"
kind = "filesystem"
root = "files"
require_approval = ["write"]
"#,
    )?;
    std::fs::write(env.dir.path().join("secret.txt"), "do not read")?;
    env.with_worker(async {
        let id = env.start(agent, "publish the draft").await?;
        let gate = &env.pending(&id, 1).await?[0];
        let tool = gate.tool.as_ref().unwrap();
        assert_eq!(
            (
                tool.kind.as_str(),
                tool.provider.as_str(),
                tool.name.as_str()
            ),
            ("connector", "docs", "docs.write")
        );
        assert!(!root.join("published.txt").exists());
        env.approvals
            .approve(
                &gate.approval_id,
                "bob@example.com",
                ApproveOptions::default(),
            )
            .await?;
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert_eq!(
            std::fs::read_to_string(root.join("published.txt"))?,
            "v1 final"
        );
        let escape = state
            .transcript
            .iter()
            .rfind(|e| e.role == "tool")
            .expect("a tool result");
        assert!(escape.is_error, "{escape:?}");
        assert!(escape.content.contains("outside"), "{}", escape.content);
        assert!(!escape.content.contains("do not read"));
        Ok(())
    })
    .await
}

/// A local server speaking the Chat Completions wire format. Its first
/// answer asks for two tool calls at once; its second answers with what the
/// tool results said.
#[derive(Clone, Default)]
struct ChatModel {
    requests: Arc<Mutex<Vec<Value>>>,
    /// Answers the first request with 429, as a provider under load does.
    rate_limited_once: Arc<std::sync::atomic::AtomicBool>,
}

impl ChatModel {
    async fn start(&self) -> Result<String> {
        async fn completions(
            State(model): State<ChatModel>,
            headers: HeaderMap,
            Json(body): Json<Value>,
        ) -> (StatusCode, Json<Value>) {
            if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk-test")
            {
                return (
                    StatusCode::UNAUTHORIZED,
                    Json(json!({"error": {"message": "bad key", "type": "invalid_request_error"}})),
                );
            }
            if !model
                .rate_limited_once
                .swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    Json(json!({"error": {"message": "slow down", "type": "rate_limit"}})),
                );
            }
            model.requests.lock().unwrap().push(body.clone());
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            let message = if messages.last().is_some_and(|m| m["role"] == "tool") {
                let results: Vec<String> = messages
                    .iter()
                    .filter(|m| m["role"] == "tool")
                    .map(|m| m["content"].as_str().unwrap_or_default().to_string())
                    .collect();
                json!({"role": "assistant", "content": format!("Summary: {}", results.join(" | "))})
            } else {
                json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [
                        {"id": "call_pay", "type": "function",
                         "function": {"name": "pay", "arguments": "{\"to\":\"acme\",\"amount\":99,\"currency\":\"EUR\"}"}},
                        {"id": "call_note", "type": "function",
                         "function": {"name": "notify", "arguments": "{\"text\":\"paying acme\"}"}}
                    ]
                })
            };
            (
                StatusCode::OK,
                Json(json!({
                    "id": "chatcmpl-1",
                    "object": "chat.completion",
                    "created": 1700000000,
                    "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
                })),
            )
        }
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/v1", listener.local_addr()?);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(url)
    }
}

#[tokio::test]
async fn an_openai_compatible_model_calls_tools_in_parallel_and_answers_after_a_denial()
-> Result<()> {
    let env = TestEnv::new("openai").await?;
    let model = ChatModel::default();
    let base_url = model.start().await?;
    // SAFETY: a variable no other test reads or writes.
    unsafe { std::env::set_var("COUNTERSIGN_E2E_OPENAI_KEY", "sk-test") };
    let agent = env.agent(
        &r#"
name = "t-openai"
instructions = "You pay invoices."
approval_expiry = "1h"

[model]
provider = "openai"
base_url = "BASE"
model = "gpt-test"
api_key_env = "COUNTERSIGN_E2E_OPENAI_KEY"

[[tools]]
name = "pay"
builtin = { kind = "payment_request", url = "{sink}/payments" }

[[tools]]
name = "notify"
requires_approval = false
builtin = { kind = "http_post", url = "{sink}/notify" }
"#
        .replace("BASE", &base_url),
    )?;
    env.with_worker(async {
        let id = env.start(agent, "pay acme").await?;
        let gate = &env.pending(&id, 1).await?[0];
        assert_eq!(gate.tool.as_ref().unwrap().name, "pay");
        assert_eq!(gate.tool_call_id, "call_pay");
        env.approvals
            .deny(&gate.approval_id, "bob@example.com", "wrong amount")
            .await?;
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert!(env.sink.received("/payments").is_empty());
        assert_eq!(env.sink.received("/notify").len(), 1);
        assert!(
            state
                .final_answer
                .contains("denied by bob@example.com: wrong amount"),
            "{}",
            state.final_answer
        );
        // The 429 was retried by Temporal as an activity retry.
        let requests = model.requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 2);
        let first = &requests[0];
        assert_eq!(first["model"], "gpt-test");
        assert_eq!(
            first["messages"][0],
            json!({"role": "system", "content": "You pay invoices."})
        );
        let offered: Vec<&str> = first["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(offered, ["pay", "notify"]);
        let second = requests[1]["messages"].as_array().unwrap();
        let tool_messages: Vec<&Value> = second.iter().filter(|m| m["role"] == "tool").collect();
        assert_eq!(tool_messages.len(), 2);
        assert_eq!(tool_messages[0]["tool_call_id"], "call_pay");
        assert_eq!(approval_of(&state, "pay").state(), ApprovalState::Denied);
        env.record_and_replay(&id, "openai").await
    })
    .await
}

#[tokio::test]
async fn a_model_request_the_provider_refuses_fails_the_run_with_its_message() -> Result<()> {
    let env = TestEnv::new("openai-401").await?;
    let model = ChatModel::default();
    model
        .rate_limited_once
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let base_url = model.start().await?;
    // SAFETY: a variable no other test reads or writes.
    unsafe { std::env::set_var("COUNTERSIGN_E2E_OPENAI_WRONG_KEY", "sk-wrong") };
    let agent = env.agent(&format!(
        r#"
name = "t-openai-401"
[model]
provider = "openai"
base_url = "{base_url}"
model = "gpt-test"
api_key_env = "COUNTERSIGN_E2E_OPENAI_WRONG_KEY"
"#
    ))?;
    env.with_worker(async {
        let id = env.start(agent, "hello").await?;
        let error = env
            .approvals
            .wait_for_run(&id)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("401") && error.contains("bad key"),
            "{error}"
        );
        let state = env.approvals.run_state(&id).await?;
        assert_eq!(state.status(), RunStatus::Failed);
        assert!(model.requests.lock().unwrap().is_empty());
        Ok(())
    })
    .await
}
