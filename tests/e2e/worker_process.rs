//! The `countersign worker` process in production shape: SIGTERM drains the
//! tool call in flight (within the grace period, then exit 0) while waiting
//! runs stay waiting; a call that outlives the grace period is cancelled and
//! retried on the next worker.

use crate::gated_runs::pay_agent;
use crate::harness::*;
use anyhow::{Context, Result, bail, ensure};
use axum::{Json, Router, extract::State, http::HeaderMap, routing::post};
use countersign_proto::{ApprovalState, RunStatus};
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::sync::{Notify, watch};

/// A `countersign worker` child process whose stderr is kept for the test.
pub struct WorkerProcess {
    child: tokio::process::Child,
    log: Arc<Mutex<String>>,
}

impl WorkerProcess {
    /// Starts `countersign worker --task-queue Q ARGS` against the shared
    /// server with extra environment `vars`, and waits until it polls.
    pub async fn start(task_queue: &str, args: &[&str], vars: &[(&str, &str)]) -> Result<Self> {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(["worker", "--task-queue", task_queue])
            .args(args)
            .env("TEMPORAL_ADDRESS", server_address())
            .env("TEMPORAL_NAMESPACE", "default")
            .env_remove("TEMPORAL_PROFILE")
            .env_remove("TEMPORAL_CONFIG_FILE")
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting `countersign worker`")?;
        let log = Arc::new(Mutex::new(String::new()));
        let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("piped")).lines();
        let sink = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[worker] {line}");
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let worker = Self { child, log };
        worker.wait_for_log("polling task queue").await?;
        Ok(worker)
    }

    /// What the worker wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until the worker's stderr contains `needle`.
    pub async fn wait_for_log(&self, needle: &str) -> Result<()> {
        wait_for(&format!("`{needle}` from the worker"), || async {
            self.log().contains(needle).then_some(())
        })
        .await
        .with_context(|| format!("worker log so far:\n{}", self.log()))
    }

    /// Sends SIGTERM, as `docker stop` or Kubernetes does.
    pub fn terminate(&self) -> Result<()> {
        let pid = self.child.id().context("the worker already exited")?;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        ensure!(rc == 0, "kill: {}", std::io::Error::last_os_error());
        Ok(())
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn exit_status(&mut self, within: Duration) -> Result<ExitStatus> {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!(
                "the worker did not exit within {within:?}; its log:\n{}",
                self.log()
            ),
        }
    }
}

/// A local HTTP endpoint that records each POST's idempotency key and holds
/// the request open until the test releases it.
#[derive(Clone)]
struct HoldingSink {
    url: String,
    keys: Arc<Mutex<Vec<String>>>,
    answered: Arc<AtomicUsize>,
    arrived: Arc<Notify>,
    release: Arc<watch::Sender<bool>>,
}

impl HoldingSink {
    async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sink = Self {
            url: format!("http://{}", listener.local_addr()?),
            keys: Arc::default(),
            answered: Arc::default(),
            arrived: Arc::default(),
            release: Arc::new(watch::channel(false).0),
        };
        async fn hold(
            State(sink): State<HoldingSink>,
            headers: HeaderMap,
            Json(_body): Json<serde_json::Value>,
        ) -> Json<serde_json::Value> {
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            sink.keys.lock().unwrap().push(key.to_string());
            sink.arrived.notify_one();
            let mut released = sink.release.subscribe();
            let _ = released.wait_for(|released| *released).await;
            sink.answered.fetch_add(1, Ordering::SeqCst);
            Json(serde_json::json!({"ok": true}))
        }
        let app = Router::new()
            .route("/{*path}", post(hold))
            .with_state(sink.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(sink)
    }

    /// Waits until a request has arrived (and is being held).
    async fn arrived(&self) -> Result<()> {
        tokio::time::timeout(DEADLINE, self.arrived.notified())
            .await
            .context("no request reached the sink")
    }

    /// Answers every held request, and every later one at once.
    fn release(&self) {
        self.release.send_replace(true);
    }

    fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }
}

/// One call of `announce`, an `http_post` to the holding sink.
fn announce_agent(name: &str, sink: &HoldingSink, gated: bool) -> String {
    let mut toml = one_call_agent(
        name,
        "Announcing.",
        r#"{ tool = "announce", arguments = { text = "release 1.4" } }"#,
    );
    toml.push_str(&format!(
        r#"
[[tools]]
name = "announce"
requires_approval = {gated}
builtin = {{ kind = "http_post", url = "{}/announce" }}
"#,
        sink.url
    ));
    toml
}

#[tokio::test]
async fn sigterm_drains_the_tool_call_in_flight_and_leaves_waiting_runs_waiting() -> Result<()> {
    let env = TestEnv::new("sigterm").await?;
    let hold = HoldingSink::start().await?;
    // The grace period comes from the environment, as in a container.
    let mut first = WorkerProcess::start(
        &env.task_queue,
        &[],
        &[("COUNTERSIGN_WORKER_SHUTDOWN_GRACE", "25")],
    )
    .await?;
    ensure!(
        first.log().contains("shutdown grace 25s"),
        "{}",
        first.log()
    );

    // Run A: an approved announcement whose POST the sink holds open.
    let announcing = env
        .start(
            env.agent(&announce_agent("t-announce", &hold, true))?,
            "announce",
        )
        .await?;
    let approval = env.pending(&announcing, 1).await?.remove(0);
    // Run B: a payment that waits for a reviewer throughout.
    let paying = env.start(env.agent(&pay_agent())?, "pay invoice 7").await?;
    let payment = env.pending(&paying, 1).await?.remove(0);
    env.approvals
        .approve(&approval.approval_id, "bob", Default::default())
        .await?;
    hold.arrived().await?;

    // SIGTERM while the POST is in flight; answer it only once the worker
    // has begun shutting down, so the drain is what lets it finish.
    let signalled = Instant::now();
    first.terminate()?;
    first.wait_for_log("shutting down").await?;
    hold.release();
    let status = first.exit_status(DEADLINE).await?;
    let took = signalled.elapsed();
    eprintln!("SIGTERM to exit, draining one held tool call: {took:?}");
    ensure!(status.success(), "exit status {status}: {}", first.log());
    ensure!(first.log().contains("countersign worker stopped"));
    assert_eq!(hold.keys(), vec![approval.approval_id.clone()]);
    assert_eq!(hold.answered.load(Ordering::SeqCst), 1);

    // With no worker at all, B is still waiting for its reviewer.
    let waiting = env
        .approvals
        .list_runs(Some("AwaitingApproval"), None)
        .await?;
    ensure!(
        waiting.iter().any(|r| r.workflow_id == paying),
        "{paying} is not awaiting approval: {waiting:?}"
    );

    // A new worker: B is decided and completes; A continues from the
    // reported tool result, without calling the tool again.
    let _second = WorkerProcess::start(&env.task_queue, &[], &[]).await?;
    let still = env.pending(&paying, 1).await?.remove(0);
    assert_eq!(still.approval_id, payment.approval_id);
    assert_eq!(still.state(), ApprovalState::Pending);
    let outcome = env
        .approvals
        .approve(&payment.approval_id, "bob", Default::default())
        .await?;
    assert!(outcome.accepted);
    assert_eq!(env.result(&paying).await?.status(), RunStatus::Completed);
    assert_eq!(env.sink.received("/payments").len(), 1);
    let announced = env.result(&announcing).await?;
    assert_eq!(announced.status(), RunStatus::Completed);
    assert_eq!(hold.keys().len(), 1, "the drained call must not run again");
    Ok(())
}

#[tokio::test]
async fn a_tool_call_outliving_the_grace_period_is_cancelled_and_retried() -> Result<()> {
    let env = TestEnv::new("grace").await?;
    let hold = HoldingSink::start().await?;
    let mut first = WorkerProcess::start(&env.task_queue, &["--shutdown-grace", "1"], &[]).await?;
    let id = env
        .start(
            env.agent(&announce_agent("t-grace", &hold, false))?,
            "announce",
        )
        .await?;
    hold.arrived().await?;

    // The sink never answers this worker: after 1 s the call is cancelled,
    // reported as failed by the shutdown, and the process still exits 0.
    let signalled = Instant::now();
    first.terminate()?;
    let status = first.exit_status(DEADLINE).await?;
    let took = signalled.elapsed();
    eprintln!("SIGTERM to exit with a tool call held past a 1 s grace: {took:?}");
    ensure!(status.success(), "exit status {status}: {}", first.log());
    ensure!(
        took >= Duration::from_secs(1),
        "exited after {took:?}, before the grace period"
    );
    ensure!(
        took < Duration::from_secs(10),
        "exit took {took:?}: the grace period was not honoured"
    );

    // The next worker retries the call with the same idempotency key.
    hold.release();
    let _second = WorkerProcess::start(&env.task_queue, &[], &[]).await?;
    let state = env.result(&id).await?;
    assert_eq!(state.status(), RunStatus::Completed);
    let keys = hold.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], keys[1], "a retry carries the same key");
    Ok(())
}

/// The value of the sample of `name` whose labels include every one of
/// `labels` (`key="value"`), in Prometheus text.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn the_metrics_endpoint_serves_sdk_and_tool_metrics() -> Result<()> {
    let env = TestEnv::new("metrics").await?;
    let worker = WorkerProcess::start(&env.task_queue, &["--metrics", "127.0.0.1:0"], &[]).await?;
    let log = worker.log();
    let url = log
        .lines()
        .find_map(|line| line.strip_prefix("metrics at "))
        .with_context(|| format!("no metrics address in the worker's log:\n{log}"))?
        .to_string();
    // One call that succeeds and one that gets an error result.
    let agent = env.agent(
        r#"
name = "t-metrics"

[model]
provider = "scripted"

[[model.steps]]
say = "Reading and announcing."
calls = [
  { tool = "read", arguments = { path = "missing.txt" } },
  { tool = "notify", arguments = { text = "release 1.4" } },
]

[[model.steps]]
say = "Done."

[[tools]]
name = "read"
builtin = { kind = "read_file", root = "." }

[[tools]]
name = "notify"
requires_approval = false
builtin = { kind = "http_post", url = "{sink}/notify" }
"#,
    )?;
    let id = env.start(agent, "announce").await?;
    assert_eq!(env.result(&id).await?.status(), RunStatus::Completed);
    assert_eq!(env.sink.received("/notify").len(), 1);

    let queue = format!("task_queue=\"{}\"", env.task_queue);
    let http = reqwest::Client::new();
    let text = wait_for("the run's metrics", || async {
        let text = http.get(&url).send().await.ok()?.text().await.ok()?;
        sample(
            &text,
            "temporal_workflow_completed",
            &[&queue, "workflow_type=\"AgentRun\""],
        )
        .is_some()
        .then_some(text)
    })
    .await?;
    let executions = "countersign_tool_executions_total";
    let failures = "countersign_tool_failures_total";
    assert_eq!(
        sample(&text, executions, &["tool=\"notify\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, executions, &["tool=\"read\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            failures,
            &["tool=\"read\"", "reason=\"error_result\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, failures, &["tool=\"notify\""]),
        None,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "temporal_workflow_completed",
            &[&queue, "workflow_type=\"AgentRun\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "temporal_worker_start", &[&queue]).is_some(),
        "{text}"
    );
    eprintln!(
        "metrics endpoint: {} samples, {} temporal_* families",
        text.lines().filter(|l| !l.starts_with('#')).count(),
        text.lines()
            .filter(|l| l.starts_with("# TYPE temporal_"))
            .count()
    );
    Ok(())
}

/// The resident memory of a process, in KiB (Linux).
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS")
}

/// What the sticky cache trades, measured on a `countersign worker`
/// process: its memory with `RUNS` runs waiting for approval, cached
/// (`--max-cached-workflows 1000`) or not (`0`), and how long a decision
/// takes (the `decide` update's round trip, which waits for the run to
/// accept it: a cached run resumes, an evicted one is fetched and replayed).
/// Prints the figures; run with
/// `cargo test -p countersign --test e2e measure_the_cache -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn measure_the_cache_memory_and_replay_trade() -> Result<()> {
    const RUNS: usize = 200;
    const DECIDED: usize = 40;
    for cache in ["1000", "0"] {
        let env = TestEnv::new(&format!("cache{cache}")).await?;
        let worker =
            WorkerProcess::start(&env.task_queue, &["--max-cached-workflows", cache], &[]).await?;
        let pid = worker.child.id().context("worker pid")?;
        let agent = env.agent(&pay_agent())?;
        // Warm the worker up with one run, so the baseline includes the
        // code paths every run uses.
        let warm = env.start(agent.clone(), "pay invoice 0").await?;
        env.pending(&warm, 1).await?;
        let before = rss_kib(pid)?;
        let mut ids = Vec::new();
        for i in 0..RUNS {
            ids.push(
                env.start(agent.clone(), &format!("pay invoice {i}"))
                    .await?,
            );
        }
        let mut approvals = Vec::new();
        for id in &ids {
            approvals.push(env.pending(id, 1).await?.remove(0));
        }
        let after = rss_kib(pid)?;
        let mut took = Vec::new();
        for approval in approvals.iter().take(DECIDED) {
            let started = Instant::now();
            env.approvals
                .approve(&approval.approval_id, "bob", Default::default())
                .await?;
            took.push(started.elapsed());
        }
        took.sort();
        let mean = took.iter().sum::<Duration>() / took.len() as u32;
        eprintln!(
            "cache {cache}: RSS {before} KiB idle, {after} KiB with {RUNS} runs waiting \
             ({:+.1} KiB a run); decide round trip over {DECIDED}: median {:?}, mean {mean:?}, max {:?}",
            (after as f64 - before as f64) / RUNS as f64,
            took[took.len() / 2],
            took[took.len() - 1],
        );
        for id in ids.iter().take(DECIDED) {
            assert_eq!(env.result(id).await?.status(), RunStatus::Completed);
        }
    }
    Ok(())
}
