//! The issue-16 benchmark: what long agents put into Temporal's history and
//! into the payload store, with and without the store.
//!
//! An agent reads a file of 4 KB or 64 KB on each of 10, 100 or 200 turns,
//! then answers. Its model is a local server speaking OpenAI's Chat
//! Completions wire format (it calls `read` until the conversation holds the
//! wanted number of tool results), so the model's settings are as small as a
//! real agent's and each turn's request carries the whole conversation to
//! the model. For each of the 12 combinations, on one tuned dev server (in
//! memory) with a fresh in-process worker and, with the store, a fresh
//! folder store: how the run ended, turns taken, runs (continue-as-new),
//! history bytes (protobuf, per run and in all), the largest payload left
//! in history, failed workflow tasks, and the store's bytes (large payloads
//! and transcript segments).
//!
//! `scripts/bench.sh payloads` runs it (`cargo bench -p countersign --bench
//! payloads`) and copies `target/bench/payloads.json` to `bench/results/`.
//! Under `cargo test` it runs a smoke version (3 turns of 4 KB, with and
//! without the store), checks that every agent completed without a failed
//! workflow task, and writes nothing. Environment: `COUNTERSIGN_BENCH_TURNS`
//! (`10,100,200`), `COUNTERSIGN_BENCH_RESULT_BYTES` (`4096,65536`),
//! `COUNTERSIGN_BENCH_OUT`.

use anyhow::{Context, Result, bail};
use axum::extract::DefaultBodyLimit;
use axum::{Json, Router, routing::post};
use countersign::devserver::{DevServer, DevServerOptions, free_port};
use countersign_approvals::Approvals;
use countersign_payloads::PayloadStore;
use countersign_policy::agent::AgentFile;
use countersign_policy::run::AgentRunInput;
use countersign_worker::AgentRegistry;
use history_sizes::{histories, history_bytes, largest_payload};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

/// How long one agent may take.
const RUN_DEADLINE: Duration = Duration::from_secs(900);

#[path = "../../../tests/e2e/history_sizes.rs"]
mod history_sizes;

fn main() -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // `cargo bench` passes `--bench`; `cargo test` does not.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    runtime.block_on(bench(benchmarking))
}

fn list(variable: &str, default: &str) -> Result<Vec<usize>> {
    std::env::var(variable)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|n| {
            n.trim()
                .parse()
                .with_context(|| format!("{variable}: `{n}`"))
        })
        .collect()
}

async fn bench(benchmarking: bool) -> Result<()> {
    let (turns, sizes) = if benchmarking {
        (
            list("COUNTERSIGN_BENCH_TURNS", "10,100,200")?,
            list("COUNTERSIGN_BENCH_RESULT_BYTES", "4096,65536")?,
        )
    } else {
        (vec![3], vec![4096])
    };
    let out = std::env::var("COUNTERSIGN_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bench/payloads.json")
        });
    let model = start_model().await?;
    let port = free_port()?;
    let (server, _client) = DevServer::start(DevServerOptions {
        port,
        ui_port: None,
        db_file: None,
        log_file: None,
        tuned: true,
    })
    .await?;
    let load_before = load_average();
    let mut results = Vec::new();
    for with_store in [false, true] {
        for &bytes in &sizes {
            for &turns in &turns {
                let started = Instant::now();
                let figures = one_agent(&server.address, &model, turns, bytes, with_store).await?;
                eprintln!(
                    "payloads: {turns} turns × {bytes} B, store {with_store}: {figures} ({:.1} s)",
                    started.elapsed().as_secs_f64()
                );
                results.push(figures);
            }
        }
    }
    if !benchmarking {
        for figures in &results {
            anyhow::ensure!(
                figures["outcome"] == "completed" && figures["workflow_tasks_failed"] == 0,
                "smoke run: {figures}"
            );
        }
        return Ok(());
    }
    let report = json!({
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
        "store_threshold_bytes": countersign_payloads::DEFAULT_THRESHOLD,
        "continue_as_new_after_bytes":
            countersign_worker::workflow::payload_limit::CONTINUE_AS_NEW_AFTER_BYTES,
        "results": results,
    });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&report)?)?;
    eprintln!("payloads: wrote {}", out.display());
    Ok(())
}

/// One agent, `turns` reads of `bytes`, on a fresh worker.
async fn one_agent(
    address: &str,
    model: &str,
    turns: usize,
    bytes: usize,
    with_store: bool,
) -> Result<Value> {
    let dir = tempfile::tempdir()?;
    let blobs = dir.path().join("store");
    let line = "The quick brown fox jumps over the lazy dog, again and again. ";
    let text = line.repeat(bytes / line.len() + 1)[..bytes].to_string();
    std::fs::write(dir.path().join("big.txt"), text)?;
    let mut client = countersign::devserver::connect(address).await?;
    let store = if with_store {
        let store = PayloadStore::from_url(&format!("file://{}", blobs.display()))?;
        countersign_payloads::install(&mut client, store.clone());
        Some(store)
    } else {
        None
    };
    let agent = AgentFile::from_toml(
        &format!(
            r#"
name = "bench-reader"
max_turns = {max_turns}

[model]
provider = "openai"
base_url = "{model}"
model = "read-{turns}"

[[tools]]
name = "read"
builtin = {{ kind = "read_file", root = "." }}
"#,
            max_turns = turns + 10
        ),
        Path::new("bench-reader.toml"),
        dir.path(),
        &|_| None,
    )?;
    let task_queue = format!("bench-payloads-{turns}-{bytes}-{with_store}");
    let agents = AgentRegistry::empty()
        .allowing_inline(true)
        .with_payload_store(store.as_ref());
    let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())?;
    let mut worker =
        countersign_worker::build_worker(&runtime, client.clone(), &task_queue, agents)?;
    let approvals = Approvals::new(client.clone());
    let id = format!("{task_queue}-{}", std::process::id());
    let started = Instant::now();
    let body = async {
        approvals
            .start_run(
                AgentRunInput::inline(agent, "read big.txt until told", "bench@example.com"),
                &id,
                Some(&task_queue),
            )
            .await?;
        let outcome = tokio::time::timeout(RUN_DEADLINE, approvals.wait_for_run(&id))
            .await
            .context("the run did not end in time")?;
        Ok::<_, anyhow::Error>(outcome)
    };
    let outcome = tokio::select! {
        result = worker.run() => {
            result?;
            bail!("the worker stopped")
        }
        outcome = body => outcome?,
    };
    let seconds = started.elapsed().as_secs_f64();
    let runs = histories(&client, &id).await?;
    let per_run: Vec<usize> = runs.iter().map(|r| history_bytes(r)).collect();
    let count = |kind: EventType| -> usize {
        runs.iter()
            .flatten()
            .filter(|e| e.event_type() == kind)
            .count()
    };
    let model_turns = runs
        .iter()
        .flatten()
        .filter(|e| match &e.attributes {
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => a
                .activity_type
                .as_ref()
                .is_some_and(|t| t.name == "model_turn"),
            _ => false,
        })
        .count();
    let (payload_objects, payload_bytes) = folder_bytes(&blobs.join("v0/d/sha256"))?;
    let (segments, segment_bytes) = folder_bytes(&blobs.join("v0/countersign/transcript/sha256"))?;
    let history_total: usize = per_run.iter().sum();
    Ok(json!({
        "turns": turns,
        "result_bytes": bytes,
        "payload_store": with_store,
        "outcome": match &outcome {
            Ok(_) => "completed".to_string(),
            Err(e) => format!("failed: {}", e.to_string().chars().take(160).collect::<String>()),
        },
        "model_turns": model_turns,
        "runs": runs.len(),
        "events": runs.iter().map(Vec::len).sum::<usize>(),
        "workflow_tasks_failed": count(EventType::WorkflowTaskFailed),
        "history_bytes_total": history_total,
        "history_bytes_per_run_max": per_run.iter().max().copied().unwrap_or(0),
        "history_bytes_per_run_mean": history_total / runs.len().max(1),
        "largest_payload_in_history": runs.iter().map(|r| largest_payload(r)).max().unwrap_or(0),
        "store_payload_objects": payload_objects,
        "store_payload_bytes": payload_bytes,
        "store_transcript_segments": segments,
        "store_transcript_bytes": segment_bytes,
        "stored_bytes_total": history_total + payload_bytes + segment_bytes,
        "seconds": (seconds * 10.0).round() / 10.0,
    }))
}

/// A Chat Completions endpoint whose model `read-N` calls `read` until the
/// conversation holds N tool results, then answers.
async fn start_model() -> Result<String> {
    async fn completions(Json(body): Json<Value>) -> Json<Value> {
        let wanted: usize = body["model"]
            .as_str()
            .and_then(|m| m.strip_prefix("read-"))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let results = body["messages"]
            .as_array()
            .map(|m| m.iter().filter(|m| m["role"] == "tool").count())
            .unwrap_or(0);
        let message = if results < wanted {
            json!({"role": "assistant", "content": null, "tool_calls": [{
                "id": format!("call_{results}"),
                "type": "function",
                "function": {"name": "read", "arguments": "{\"path\":\"big.txt\"}"},
            }]})
        } else {
            json!({"role": "assistant", "content": "Read it all."})
        };
        Json(json!({
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }))
    }
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        // A 200-turn conversation of 64 KB results is ~13 MB of JSON.
        .layer(DefaultBodyLimit::max(256 * 1024 * 1024));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// (files, bytes) in `folder`; (0, 0) when it does not exist.
fn folder_bytes(folder: &Path) -> Result<(usize, usize)> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Ok((0, 0));
    };
    let (mut files, mut bytes) = (0, 0);
    for entry in entries {
        files += 1;
        bytes += entry?.metadata()?.len() as usize;
    }
    Ok((files, bytes))
}

fn load_average() -> Value {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .filter_map(|n| n.parse::<f64>().ok())
                .collect::<Vec<_>>()
        })
        .map_or(Value::Null, |l| json!(l))
}
