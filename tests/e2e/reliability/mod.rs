//! The reliability suite: worker crashes at every stage of a gated call, a
//! server restart with runs waiting, racing decisions, and bad input. Each
//! scenario checks invariants over every run it started and writes a JSON
//! report to `<target>/reliability/<scenario>.json`.
//!
//! Under `cargo test` the scenarios run at a small scale, beside the rest of
//! the suite. `scripts/reliability.sh` runs them at the issue's scale (100
//! crash runs, 100 waiting runs across a restart, 1,000 racing runs) with
//! `COUNTERSIGN_RELIABILITY=full`.

mod bad_input;
mod racing;
mod scale_out;
mod server_restart;
mod worker_crash;

pub use crate::harness::{IdempotentApi, WorkerProcess, wait_within};

use anyhow::{Context, Result, bail};
use axum::{Json, Router, extract::State, routing::post};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use temporalio_client::{Client, WorkflowFetchHistoryOptions};
use temporalio_common::protos::temporal::api::enums::v1::{EventType, WorkflowTaskFailedCause};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use tokio::sync::watch;

/// Whether to run at the issue's full scale.
pub fn full_scale() -> bool {
    std::env::var("COUNTERSIGN_RELIABILITY").is_ok_and(|v| v == "full")
}

/// `small` under `cargo test`, `full` under `scripts/reliability.sh`.
pub fn scale(small: usize, full: usize) -> usize {
    if full_scale() { full } else { small }
}

/// Writes a scenario's report as pretty JSON and prints where.
pub fn write_report(scenario: &str, report: &Value) -> Result<()> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .context("the target dir")?
        .join("reliability");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{scenario}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(report)?)?;
    eprintln!("reliability report: {}", path.display());
    Ok(())
}

/// Event counts over the histories of `workflow_ids`: what a crash or a bad
/// input cost, and proof that no workflow task failed.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct HistoryTally {
    pub runs: usize,
    pub workflow_tasks_completed: usize,
    /// Workflow tasks that failed (workflow code, payloads, determinism):
    /// must be zero.
    pub workflow_tasks_failed: usize,
    /// What those failures said.
    pub workflow_task_failures: Vec<String>,
    /// Completions the server refused because a decision arrived while the
    /// task ran (`UnhandledCommand`): retried at once with the new events.
    pub completions_refused_for_new_events: usize,
    pub workflow_tasks_timed_out: usize,
    pub activities_scheduled: usize,
    pub activities_timed_out: usize,
    pub signals: usize,
    pub updates_accepted: usize,
}

impl HistoryTally {
    /// Fetches each history and counts its events.
    pub async fn of(client: &Client, workflow_ids: &[String]) -> Result<Self> {
        let mut tally = Self::default();
        for id in workflow_ids {
            let events = client
                .get_workflow_handle::<countersign_approvals::AgentRunWorkflow>(id)
                .fetch_history(WorkflowFetchHistoryOptions::default())
                .into_events()
                .await
                .with_context(|| format!("history of {id}"))?;
            tally.runs += 1;
            for event in events {
                match event.event_type() {
                    EventType::WorkflowTaskCompleted => tally.workflow_tasks_completed += 1,
                    EventType::WorkflowTaskFailed => match &event.attributes {
                        // The server refused a completion because a signal or
                        // update arrived while the task ran; the SDK handles
                        // the new events in the next task. Temporal's normal
                        // flow, not a failure of workflow code.
                        Some(Attributes::WorkflowTaskFailedEventAttributes(a))
                            if a.cause() == WorkflowTaskFailedCause::UnhandledCommand =>
                        {
                            tally.completions_refused_for_new_events += 1
                        }
                        Some(Attributes::WorkflowTaskFailedEventAttributes(a)) => {
                            tally.workflow_tasks_failed += 1;
                            tally.workflow_task_failures.push(format!(
                                "{id}: {:?}: {}",
                                a.cause(),
                                a.failure
                                    .as_ref()
                                    .map(|f| f.message.as_str())
                                    .unwrap_or_default()
                            ));
                        }
                        _ => tally.workflow_tasks_failed += 1,
                    },
                    EventType::WorkflowTaskTimedOut => tally.workflow_tasks_timed_out += 1,
                    EventType::ActivityTaskScheduled => tally.activities_scheduled += 1,
                    EventType::ActivityTaskTimedOut => tally.activities_timed_out += 1,
                    EventType::WorkflowExecutionSignaled => tally.signals += 1,
                    EventType::WorkflowExecutionUpdateAccepted => tally.updates_accepted += 1,
                    _ => {}
                }
            }
        }
        Ok(tally)
    }
}

/// The reliability scenarios' model: an OpenAI-compatible endpoint whose
/// first turn asks to pay (the user's prompt as the memo) and whose second
/// turn answers with the tool's result. First turns can be held open, to
/// kill a worker while a model turn is in flight.
#[derive(Clone)]
pub struct HoldingModel {
    pub base_url: String,
    first_turns: Arc<Mutex<usize>>,
    hold: Arc<watch::Sender<bool>>,
}

/// The variable the worker reads the fake model's key from.
pub const MODEL_KEY_ENV: &str = "COUNTERSIGN_RELIABILITY_MODEL_KEY";

impl HoldingModel {
    /// Starts the endpoint on a free port.
    pub async fn start() -> Result<Self> {
        let (hold, _) = watch::channel(false);
        let model = Self {
            base_url: String::new(),
            first_turns: Arc::default(),
            hold: Arc::new(hold),
        };
        async fn completions(
            State(model): State<HoldingModel>,
            Json(body): Json<Value>,
        ) -> Json<Value> {
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            let message = match messages.iter().rev().find(|m| m["role"] == "tool") {
                Some(result) => json!({
                    "role": "assistant",
                    "content": format!("Done: {}", result["content"].as_str().unwrap_or_default()),
                }),
                None => {
                    *model.first_turns.lock().unwrap() += 1;
                    let mut held = model.hold.subscribe();
                    let _ = held.wait_for(|holding| !*holding).await;
                    let prompt = messages
                        .iter()
                        .rev()
                        .find(|m| m["role"] == "user")
                        .and_then(|m| m["content"].as_str())
                        .unwrap_or_default();
                    let arguments =
                        json!({"to": "acme", "amount": 10, "currency": "EUR", "memo": prompt});
                    json!({
                        "role": "assistant",
                        "content": null,
                        "tool_calls": [{"id": "call_pay", "type": "function",
                            "function": {"name": "pay", "arguments": arguments.to_string()}}]
                    })
                }
            };
            Json(json!({
                "id": "chatcmpl-reliability",
                "object": "chat.completion",
                "created": 1700000000,
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }))
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base_url = format!("http://{}/v1", listener.local_addr()?);
        let app = Router::new()
            .route("/v1/chat/completions", post(completions))
            .with_state(model.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { base_url, ..model })
    }

    /// Holds first turns from now on until [`HoldingModel::release`].
    pub fn hold(&self) {
        self.hold.send_replace(true);
    }

    /// Answers held turns and every later one at once.
    pub fn release(&self) {
        self.hold.send_replace(false);
    }

    /// First-turn requests received so far (retries included).
    pub fn first_turns(&self) -> usize {
        *self.first_turns.lock().unwrap()
    }
}

/// An agent that pays through `payments` after approval, with `model`
/// deciding, and approvals expiring after `expiry`.
pub fn paying_agent(
    name: &str,
    model: &HoldingModel,
    payments: &IdempotentApi,
    expiry: &str,
) -> String {
    format!(
        r#"
name = "{name}"
approval_expiry = "{expiry}"

[model]
provider = "openai"
base_url = "{}"
model = "gpt-test"
api_key_env = "{MODEL_KEY_ENV}"

[[tools]]
name = "pay"
builtin = {{ kind = "payment_request", url = "{}/payments" }}
"#,
        model.base_url, payments.url
    )
}

/// A scripted agent that pays once through `payments` after approval and
/// then says what the payment answered (or why it did not run).
pub fn scripted_paying_agent(name: &str, expiry: &str, payments: &IdempotentApi) -> String {
    format!(
        r#"
name = "{name}"
approval_expiry = "{expiry}"

[model]
provider = "scripted"

[[model.steps]]
say = "Paying."
calls = [{{ tool = "pay", arguments = {{ to = "acme", amount = 10, currency = "EUR" }} }}]
on_error = "report"

[[model.steps]]
say = "Paid: {{last_result}}"

[[model.steps]]
id = "report"
say = "Not paid: {{last_error}}"

[[tools]]
name = "pay"
builtin = {{ kind = "payment_request", url = "{}/payments" }}
"#,
        payments.url
    )
}

/// A temporary folder for a scenario's logs and databases, kept under the
/// target dir so a failed run can be inspected.
pub fn scenario_dir(scenario: &str) -> Result<PathBuf> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("reliability")
        .join(format!("{scenario}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
