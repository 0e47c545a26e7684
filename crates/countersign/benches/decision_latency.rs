//! Decision-to-side-effect latency on a real dev server.
//!
//! For each of N serial runs: start a run whose payment is gated, wait until
//! the approval is pending, then time (a) the `decide` update round trip and
//! (b) the decision until the payments sink receives the request (the tool's
//! side effect, observed outside the worker). Writes JSON to
//! `target/bench/decision_latency.json` and prints it.
//!
//! `cargo bench -p countersign --bench decision_latency` runs 200 runs;
//! under `cargo test` (no `--bench` argument) it runs 3 as a smoke test.
//! `COUNTERSIGN_BENCH_RUNS=N` overrides the count; `COUNTERSIGN_BENCH_UNTUNED=1`
//! starts the dev server without the dynamic-config values, to compare.

use anyhow::{Context, Result, bail};
use axum::{Router, extract::State, routing::post};
use countersign::devserver::{DevServer, DevServerOptions, free_port};
use countersign_approvals::{Approvals, ApproveOptions};
use countersign_policy::agent::AgentFile;
use countersign_policy::run::AgentRunInput;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The gated agent: one gated payment, then an answer.
const AGENT: &str = include_str!("bench-pay.toml");

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let runs: usize = match std::env::var("COUNTERSIGN_BENCH_RUNS") {
        Ok(n) => n.parse().context("COUNTERSIGN_BENCH_RUNS")?,
        Err(_) if benchmarking => 200,
        Err(_) => 3,
    };
    let tuned = std::env::var_os("COUNTERSIGN_BENCH_UNTUNED").is_none();
    let (_server, client) = DevServer::start(DevServerOptions {
        port: free_port()?,
        ui_port: None,
        db_file: None,
        log_file: None,
        tuned,
    })
    .await?;

    let (tx, mut received) = mpsc::unbounded_channel::<Instant>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let sink = format!("http://{}", listener.local_addr()?);
    let app = Router::new()
        .route(
            "/payments",
            post(
                |State(tx): State<mpsc::UnboundedSender<Instant>>| async move {
                    let _ = tx.send(Instant::now());
                    "{}"
                },
            ),
        )
        .with_state(tx);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let agent = AgentFile::from_toml(
        &AGENT.replace("{sink}", &sink),
        Path::new("bench.toml"),
        Path::new("."),
        &|_| None,
    )?;
    let approvals = Approvals::new(client.clone());
    let task_queue = format!("bench-{}", std::process::id());
    let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())?;
    let mut worker = countersign_worker::build_worker(
        &runtime,
        client,
        &task_queue,
        countersign_worker::AgentRegistry::empty().allowing_inline(true),
    )?;
    let worker_run = worker.run();
    tokio::pin!(worker_run);

    let measure = async {
        let mut update_ms = Vec::with_capacity(runs);
        let mut effect_ms = Vec::with_capacity(runs);
        let started = Instant::now();
        for i in 0..runs {
            let id = format!("{task_queue}-{i}");
            let input = AgentRunInput::inline(agent.clone(), "pay", "bench");
            approvals.start_run(input, &id, Some(&task_queue)).await?;
            let approval = pending(&approvals, &id).await?;
            let t0 = Instant::now();
            approvals
                .approve(&approval, "bench", ApproveOptions::default())
                .await?;
            let t1 = Instant::now();
            let effect = tokio::time::timeout(Duration::from_secs(30), received.recv())
                .await
                .context("no payment within 30 s")?
                .context("sink closed")?;
            update_ms.push((t1 - t0).as_secs_f64() * 1000.0);
            effect_ms.push((effect.saturating_duration_since(t0)).as_secs_f64() * 1000.0);
            approvals.wait_for_run(&id).await?;
        }
        let elapsed = started.elapsed().as_secs_f64();
        anyhow::Ok((update_ms, effect_ms, elapsed))
    };
    let (update_ms, effect_ms, elapsed) = tokio::select! {
        result = &mut worker_run => { result?; bail!("the worker stopped") }
        result = measure => result?,
    };

    let report = serde_json::json!({
        "benchmark": "decision_latency",
        "runs": runs,
        "dev_server_dynamic_config": if tuned { "tuned" } else { "default" },
        "decide_update_ms": summary(update_ms),
        "decision_to_side_effect_ms": summary(effect_ms),
        "serial_runs_per_second": runs as f64 / elapsed,
    });
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if benchmarking {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("decision_latency.json"), &text)?;
    }
    Ok(())
}

async fn pending(approvals: &Approvals, workflow_id: &str) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(pending) = approvals.pending_of_run(workflow_id).await
            && let Some(a) = pending.first()
        {
            return Ok(a.approval_id.clone());
        }
        if Instant::now() > deadline {
            bail!("run {workflow_id} never asked for approval");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn summary(mut samples: Vec<f64>) -> serde_json::Value {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    serde_json::json!({
        "p50": at(0.5),
        "p90": at(0.9),
        "p99": at(0.99),
        "max": at(1.0),
        "mean": samples.iter().sum::<f64>() / samples.len() as f64,
    })
}
