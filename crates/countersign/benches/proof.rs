//! The issue-6 benchmark: Countersign's gated runs against null flows and the
//! official Python SDK, on real dev servers, in one run, side by side.
//!
//! What it starts (all on this machine):
//!
//! - dev servers via [`countersign::devserver`]: *tuned* (the two
//!   dynamic-config values `countersign dev` passes) and *default*, both in
//!   memory, plus a tuned one with a SQLite file per SDK for the waiting phase
//!   (so the database size can be read);
//! - workers as separate processes, so their RSS and CPU come from `/proc`:
//!   the real `countersign worker` binary (`AgentRun`), this bench binary in
//!   `--null-worker` mode (the Rust null flows, written with the SDK's macros),
//!   and `bench/python/worker.py` (the Python peer, when
//!   `COUNTERSIGN_BENCH_PYTHON` names a Python with `temporalio`);
//! - an HTTP sink that timestamps every side effect by its `Idempotency-Key`,
//!   outside the workers.
//!
//! The flows:
//!
//! | flow | workflow | decision |
//! |---|---|---|
//! | `rust-null` | start → wait for signal `go` → one activity → complete | signal |
//! | `rust-null-agent` | activity → wait for update `decide` → activity → activity → complete (the gated run's round trips, no logic) | update |
//! | `countersign` | `AgentRun`: model turn → policy → pending approval → `decide` → tool → model turn → answer | update |
//! | `python-null` | as `rust-null`, Python SDK | signal |
//! | `python-gated` | `AgentRun`'s shape around one gated call, Python SDK | update |
//!
//! Phases: serial decisions (round robin over the flows), concurrent runs
//! (`COUNTERSIGN_BENCH_CONCURRENCY` in flight, one flow at a time, with the
//! CPU each process used), the history of one run per flow (workflow tasks
//! per gated call), then runs left waiting (100, 1,000, 10,000) with worker
//! RSS, idle CPU and the database size.
//!
//! `cargo bench -p countersign --bench proof` writes `target/bench/proof.json`
//! (`scripts/bench.sh` runs it with the Python peer and draws the chart).
//! Under `cargo test` it runs a smoke version (a few runs per flow, tuned
//! server only) and writes nothing. Environment: `COUNTERSIGN_BENCH_DECISIONS`
//! (default 1000), `COUNTERSIGN_BENCH_DEFAULT_DECISIONS` (default-server runs,
//! default 200), `COUNTERSIGN_BENCH_CONCURRENCY` (20),
//! `COUNTERSIGN_BENCH_WAITING` (`100,1000,10000`), `COUNTERSIGN_BENCH_CACHE`
//! (workflow cache size of every worker, default 200), `COUNTERSIGN_BENCH_PHASES`
//! (`latency,waiting`), `COUNTERSIGN_BENCH_SERVERS` (`tuned,default`),
//! `COUNTERSIGN_BENCH_OUT` (the JSON file), `COUNTERSIGN_BENCH_PYTHON`,
//! `COUNTERSIGN_BENCH_WAITING_NULL` (also leave Rust null agents waiting).

use anyhow::{Context, Result, bail};
use axum::{Router, extract::State, http::HeaderMap};
use countersign::devserver::{DevServer, DevServerOptions, free_port};
use countersign_approvals::{Approvals, ApproveOptions};
use countersign_policy::agent::AgentFile;
use countersign_policy::run::AgentRunInput;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use temporalio_client::{
    Client, HistoryEventFilterType, UntypedQuery, UntypedSignal, UntypedUpdate, UntypedWorkflow,
    WorkflowCountOptions, WorkflowExecuteUpdateOptions, WorkflowFetchHistoryOptions,
    WorkflowGetResultOptions, WorkflowQueryOptions, WorkflowSignalOptions, WorkflowStartOptions,
};
use temporalio_common::data_converters::RawValue;
use temporalio_common::protos::temporal::api::common::v1::Payload;
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use tokio::sync::oneshot;

/// The gated agent: one gated payment, then an answer.
const AGENT: &str = include_str!("bench-pay.toml");

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--null-worker") {
        let (address, task_queue, cache) = (&args[2], &args[3], args[4].parse()?);
        return tokio::runtime::Runtime::new()?
            .block_on(null::run_worker(address, task_queue, cache));
    }
    if args.get(1).map(String::as_str) == Some("--countersign-worker") {
        let (address, task_queue, cache) = (&args[2], &args[3], args[4].parse()?);
        return tokio::runtime::Runtime::new()?
            .block_on(countersign_worker_in_bench(address, task_queue, cache));
    }
    // The driver has a runtime of its own: two threads, so it does not
    // compete with the server and workers for more than it needs.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(drive(Config::from_env(
            args.iter().any(|a| a == "--bench"),
        )?))
}

/// What to run, from the environment (see the module docs).
#[derive(Debug, Clone)]
struct Config {
    benchmarking: bool,
    decisions: usize,
    default_decisions: usize,
    concurrency: usize,
    waiting: Vec<usize>,
    cache: usize,
    phases: Vec<String>,
    servers: Vec<String>,
    python: Option<PathBuf>,
    out: PathBuf,
}

impl Config {
    fn from_env(benchmarking: bool) -> Result<Self> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let number = |name: &str, full: usize, smoke: usize| -> Result<usize> {
            match var(name) {
                Some(v) => v.parse().with_context(|| format!("{name}={v}")),
                None if benchmarking => Ok(full),
                None => Ok(smoke),
            }
        };
        let list = |name: &str, full: &str, smoke: &str| -> Vec<String> {
            var(name)
                .unwrap_or_else(|| if benchmarking { full } else { smoke }.to_string())
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        Ok(Self {
            benchmarking,
            decisions: number("COUNTERSIGN_BENCH_DECISIONS", 1000, 4)?,
            default_decisions: number("COUNTERSIGN_BENCH_DEFAULT_DECISIONS", 200, 4)?,
            concurrency: number("COUNTERSIGN_BENCH_CONCURRENCY", 20, 2)?,
            waiting: list("COUNTERSIGN_BENCH_WAITING", "100,1000,10000", "5")
                .iter()
                .map(|s| s.parse().with_context(|| format!("waiting level {s}")))
                .collect::<Result<_>>()?,
            cache: number("COUNTERSIGN_BENCH_CACHE", 200, 200)?,
            phases: list(
                "COUNTERSIGN_BENCH_PHASES",
                "latency,waiting",
                "latency,waiting",
            ),
            servers: list("COUNTERSIGN_BENCH_SERVERS", "tuned,default", "tuned"),
            python: var("COUNTERSIGN_BENCH_PYTHON").map(PathBuf::from),
            out: var("COUNTERSIGN_BENCH_OUT")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/bench/proof.json")),
        })
    }
}

/// How a flow's driver talks to its runs.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Protocol {
    /// Query `waiting` until true, then signal `go`.
    Signal,
    /// Query `pending` for the approval id, then update `decide`.
    Update,
    /// `AgentRun` through the approvals crate (`pending_approvals`, `decide`).
    Countersign,
}

/// One flow under test.
#[derive(Debug, Clone)]
struct Flow {
    name: &'static str,
    workflow_type: &'static str,
    protocol: Protocol,
    /// Which worker process runs it (`countersign`, `rust-null`, `python`).
    worker: &'static str,
    task_queue: String,
    /// `NullAgent` only: also upsert `CountersignStatus` where `AgentRun`
    /// does and race the wait against a 24 h timer (the server work a
    /// gated run adds to the null agent's round trips).
    search_attributes: bool,
}

/// What the driver needs to run flows against one server.
#[derive(Clone)]
struct Driver {
    client: Client,
    approvals: Approvals,
    sink: Sink,
    agent: AgentFile,
}

/// One run's timings, in milliseconds.
#[derive(Debug, Clone, Copy)]
struct Sample {
    /// Start until the run answered that it waits.
    start_to_pending: f64,
    /// Decision sent until its RPC returned (update accepted and completed, or signal recorded).
    decision_rpc: f64,
    /// Decision sent until the sink received the tool's request.
    decision_to_effect: f64,
    /// Decision sent until the run closed (its close event's time).
    decision_to_complete: f64,
    /// The driver's whole cycle for this run: start until it saw the result.
    whole_run: f64,
}

/// An HTTP sink: timestamps each POST by its `Idempotency-Key`.
#[derive(Clone, Default)]
struct Sink {
    url: String,
    expected: Arc<Mutex<HashMap<String, oneshot::Sender<Instant>>>>,
    unexpected: Arc<AtomicUsize>,
}

impl Sink {
    async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let sink = Sink {
            url: format!("http://{}", listener.local_addr()?),
            ..Default::default()
        };
        let app = Router::new()
            .fallback(|State(sink): State<Sink>, headers: HeaderMap| async move {
                let now = Instant::now();
                let key = headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string();
                match sink.expected.lock().expect("sink lock").remove(&key) {
                    Some(tx) => {
                        let _ = tx.send(now);
                    }
                    None => {
                        sink.unexpected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                "{}"
            })
            .with_state(sink.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(sink)
    }

    fn expect(&self, key: &str) -> oneshot::Receiver<Instant> {
        let (tx, rx) = oneshot::channel();
        self.expected
            .lock()
            .expect("sink lock")
            .insert(key.to_string(), tx);
        rx
    }
}

fn json_payload(value: &Value) -> RawValue {
    RawValue::new(vec![Payload {
        metadata: HashMap::from([("encoding".to_string(), b"json/plain".to_vec())]),
        data: serde_json::to_vec(value).expect("JSON"),
        ..Default::default()
    }])
}

fn from_payload(raw: &RawValue) -> Result<Value> {
    let payload = raw.payloads.first().context("no payload")?;
    Ok(serde_json::from_slice(&payload.data)?)
}

impl Driver {
    /// Starts a run of `flow` with id `id`.
    async fn start(&self, flow: &Flow, id: &str) -> Result<()> {
        match flow.protocol {
            Protocol::Countersign => {
                let input = AgentRunInput::inline(self.agent.clone(), "pay", "bench");
                self.approvals
                    .start_run(input, id, Some(&flow.task_queue))
                    .await?;
            }
            _ => {
                self.client
                    .start_workflow(
                        UntypedWorkflow::new(flow.workflow_type),
                        json_payload(&json!({
                            "sink": format!("{}/effect", self.sink.url),
                            "searchAttributes": flow.search_attributes,
                        })),
                        WorkflowStartOptions::new(&flow.task_queue, id).build(),
                    )
                    .await
                    .with_context(|| format!("starting {id}"))?;
            }
        }
        Ok(())
    }

    /// Waits until the run waits for its decision; answers the key its side
    /// effect will carry (the approval id, or the workflow id of a null flow).
    async fn pending(&self, flow: &Flow, id: &str, poll: Duration) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let handle = self.client.get_workflow_handle::<UntypedWorkflow>(id);
        loop {
            let answer: Option<String> = match flow.protocol {
                Protocol::Countersign => self
                    .approvals
                    .pending_of_run(id)
                    .await
                    .ok()
                    .and_then(|p| p.first().map(|a| a.approval_id.clone())),
                Protocol::Signal => handle
                    .query(
                        UntypedQuery::new("waiting"),
                        RawValue::new(vec![]),
                        WorkflowQueryOptions::default(),
                    )
                    .await
                    .ok()
                    .and_then(|raw| from_payload(&raw).ok())
                    .filter(|v| v == &Value::Bool(true))
                    .map(|_| id.to_string()),
                Protocol::Update => handle
                    .query(
                        UntypedQuery::new("pending"),
                        RawValue::new(vec![]),
                        WorkflowQueryOptions::default(),
                    )
                    .await
                    .ok()
                    .and_then(|raw| from_payload(&raw).ok())
                    .and_then(|v| v.as_str().map(str::to_string))
                    .filter(|s| !s.is_empty()),
            };
            if let Some(key) = answer {
                return Ok(key);
            }
            if Instant::now() > deadline {
                bail!("run {id} never waited for a decision");
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Sends the decision (approve) for `key`.
    async fn decide(&self, flow: &Flow, id: &str, key: &str) -> Result<()> {
        let handle = self.client.get_workflow_handle::<UntypedWorkflow>(id);
        match flow.protocol {
            Protocol::Countersign => {
                self.approvals
                    .approve(key, "bench", ApproveOptions::default())
                    .await?;
            }
            Protocol::Signal => handle
                .signal(
                    UntypedSignal::new("go"),
                    json_payload(&json!({})),
                    WorkflowSignalOptions::default(),
                )
                .await
                .with_context(|| format!("signalling {id}"))?,
            Protocol::Update => {
                handle
                    .execute_update(
                        UntypedUpdate::new("decide"),
                        json_payload(&json!({ "approvalId": key, "reviewer": "bench" })),
                        WorkflowExecuteUpdateOptions::default(),
                    )
                    .await
                    .with_context(|| format!("deciding {id}"))?;
            }
        }
        Ok(())
    }

    /// Waits for the run's result.
    async fn result(&self, flow: &Flow, id: &str) -> Result<()> {
        match flow.protocol {
            Protocol::Countersign => {
                self.approvals.wait_for_run(id).await?;
            }
            _ => {
                self.client
                    .get_workflow_handle::<UntypedWorkflow>(id)
                    .get_result(WorkflowGetResultOptions::default())
                    .await
                    .with_context(|| format!("result of {id}"))?;
            }
        }
        Ok(())
    }

    /// Waits for the run's result. A result long poll that misses the close
    /// event waits out the server's 20 s long-poll timeout (seen once per
    /// few hundred runs), so each poll is capped and repeated.
    async fn wait_closed(&self, flow: &Flow, id: &str) -> Result<()> {
        for _ in 0..30 {
            if let Ok(result) =
                tokio::time::timeout(Duration::from_secs(2), self.result(flow, id)).await
            {
                return result;
            }
        }
        bail!("{id}: no result within 60 s")
    }

    /// When the run closed, by the server's clock (the close event's time).
    async fn closed_at(&self, id: &str) -> Result<SystemTime> {
        let events = self
            .client
            .get_workflow_handle::<UntypedWorkflow>(id)
            .fetch_history(
                WorkflowFetchHistoryOptions::builder()
                    .event_filter_type(HistoryEventFilterType::CloseEvent)
                    .build(),
            )
            .into_events()
            .await?;
        let time = events
            .last()
            .and_then(|e| e.event_time.as_ref())
            .with_context(|| format!("{id}: no close event"))?;
        Ok(SystemTime::UNIX_EPOCH + Duration::new(time.seconds as u64, time.nanos as u32))
    }

    /// One whole run: start, wait until pending, decide, side effect, result.
    async fn run_once(&self, flow: &Flow, id: String, poll: Duration) -> Result<Sample> {
        let started = Instant::now();
        self.start(flow, &id).await?;
        let key = self.pending(flow, &id, poll).await?;
        let pending_at = Instant::now();
        let effect = self.sink.expect(&key);
        let (t0, t0_wall) = (Instant::now(), SystemTime::now());
        self.decide(flow, &id, &key).await?;
        let acked = Instant::now();
        let effect = tokio::time::timeout(Duration::from_secs(60), effect)
            .await
            .with_context(|| format!("{id}: no side effect within 60 s"))?
            .context("sink closed")?;
        self.wait_closed(flow, &id).await?;
        let finished = Instant::now();
        let closed = self.closed_at(&id).await?;
        let ms = |later: Instant, earlier: Instant| {
            later.saturating_duration_since(earlier).as_secs_f64() * 1000.0
        };
        Ok(Sample {
            start_to_pending: ms(pending_at, started),
            decision_rpc: ms(acked, t0),
            decision_to_effect: ms(effect, t0),
            decision_to_complete: closed
                .duration_since(t0_wall)
                .unwrap_or_default()
                .as_secs_f64()
                * 1000.0,
            whole_run: ms(finished, started),
        })
    }
}

/// p50/p90/p99/max/mean of a sample set, in milliseconds.
fn summary(samples: &[f64]) -> Value {
    if samples.is_empty() {
        return Value::Null;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q).round() as usize];
    let round = |x: f64| (x * 100.0).round() / 100.0;
    json!({
        "n": sorted.len(),
        "p50": round(at(0.5)),
        "p90": round(at(0.9)),
        "p99": round(at(0.99)),
        "max": round(at(1.0)),
        "mean": round(sorted.iter().sum::<f64>() / sorted.len() as f64),
    })
}

fn summarize(samples: &[Sample]) -> Value {
    let pick = |f: fn(&Sample) -> f64| summary(&samples.iter().map(f).collect::<Vec<_>>());
    json!({
        "decision_to_effect_ms": pick(|s| s.decision_to_effect),
        "decision_to_complete_ms": pick(|s| s.decision_to_complete),
        "decision_rpc_ms": pick(|s| s.decision_rpc),
        "start_to_pending_ms": pick(|s| s.start_to_pending),
    })
}

// ---------------------------------------------------------------------------
// Processes: workers, the server, /proc.

/// A child process killed on drop (and with this process, via PDEATHSIG).
struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `command`, waits until a line of its output contains `ready`, and
/// keeps the rest of its output in `log`.
fn spawn_worker(name: &str, mut command: Command, ready: &str, log: &Path) -> Result<Proc> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
    }
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting the {name} worker"))?;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let log = Arc::new(Mutex::new(std::fs::File::create(log)?));
    for stream in [
        Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().expect("stderr")),
    ] {
        let (tx, log, ready) = (tx.clone(), log.clone(), ready.to_string());
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if line.contains(&ready) {
                    let _ = tx.send(());
                }
                use std::io::Write;
                let _ = writeln!(log.lock().expect("log lock"), "{line}");
            }
        });
    }
    let mut proc = Proc {
        name: name.to_string(),
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if rx.recv_timeout(Duration::from_millis(100)).is_ok() {
            return Ok(proc);
        }
        if let Some(status) = proc.child.try_wait()? {
            bail!("the {name} worker exited ({status}); see its log");
        }
        if Instant::now() > deadline {
            bail!("the {name} worker did not get ready within 120 s");
        }
    }
}

/// RSS, peak RSS (KiB) and CPU time (ms) of a process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
struct ProcStats {
    rss_kib: u64,
    hwm_kib: u64,
    cpu_ms: f64,
}

fn proc_stats(pid: u32) -> Result<ProcStats> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may contain spaces), 1-based from
    // field 3: utime is field 14, stime 15.
    let after = &stat[stat.rfind(')').context("stat")? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ProcStats {
        rss_kib: field("VmRSS:"),
        hwm_kib: field("VmHWM:"),
        cpu_ms: ticks as f64 * 1000.0 / hz,
    })
}

/// The pid of the `temporal server start-dev` listening on `port`.
fn server_pid(port: u16) -> Option<u32> {
    let needle = format!("--port\0{port}\0");
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.contains("start-dev") && cmdline.contains(&needle)).then_some(pid)
    })
}

fn load_average() -> Value {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let v: Vec<f64> = text
        .split_whitespace()
        .take(3)
        .filter_map(|s| s.parse().ok())
        .collect();
    json!(v)
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|s| s.trim_start_matches([' ', '\t', ':']).to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem = meminfo.lines().next().unwrap_or_default().to_string();
    let output = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model,
        "memory": mem,
        "kernel": output("uname", &["-r"]),
        "temporal_cli": countersign::devserver::temporal_cli().ok()
            .and_then(|cli| output(&cli.display().to_string(), &["--version"])),
        "git_commit": output("git", &["rev-parse", "--short", "HEAD"]),
    })
}

/// The worker processes of one server.
struct Workers {
    procs: Vec<(&'static str, Proc)>,
}

impl Workers {
    fn pid(&self, worker: &str) -> Option<u32> {
        self.procs
            .iter()
            .find(|(name, _)| *name == worker)
            .map(|(_, p)| p.pid())
    }
}

/// The `countersign` binary (release under `cargo bench`).
/// `COUNTERSIGN_BENCH_BIN` overrides it (a copy, safe from rebuilds during a run).
fn countersign_bin() -> PathBuf {
    std::env::var_os("COUNTERSIGN_BENCH_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_countersign")))
}

/// Whether `countersign worker` takes `--max-cached-workflows`.
fn worker_takes_cache_flag() -> bool {
    Command::new(countersign_bin())
        .args(["worker", "--help"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--max-cached-workflows"))
        .unwrap_or(false)
}

fn start_worker(
    kind: &'static str,
    address: &str,
    task_queue: &str,
    config: &Config,
    log_dir: &Path,
) -> Result<Proc> {
    let cache = config.cache.to_string();
    let log = log_dir.join(format!("worker-{kind}-{task_queue}.log"));
    match kind {
        "countersign" => {
            let mut command;
            if worker_takes_cache_flag() {
                command = Command::new(countersign_bin());
                command.args([
                    "worker",
                    "--task-queue",
                    task_queue,
                    "--max-cached-workflows",
                    &cache,
                    // The driver sends the bench agent inline (its sink URL
                    // is only known at run time).
                    "--allow-inline-agents",
                ]);
            } else {
                // Until the CLI has the flag: the same library code
                // (`build_tuned_worker`) in a process of its own.
                command = Command::new(std::env::current_exe()?);
                command.args(["--countersign-worker", address, task_queue, &cache]);
            }
            command
                .env("TEMPORAL_ADDRESS", address)
                .env("TEMPORAL_NAMESPACE", "default");
            spawn_worker(kind, command, "polling", &log)
        }
        "rust-null" => {
            let mut command = Command::new(std::env::current_exe()?);
            command.args(["--null-worker", address, task_queue, &cache]);
            spawn_worker(kind, command, "ready", &log)
        }
        "python" => {
            let python = config.python.as_ref().context("no Python")?;
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench/python/worker.py");
            let mut command = Command::new(python);
            command.arg(script).args([address, task_queue, &cache]);
            spawn_worker(kind, command, "ready", &log)
        }
        other => bail!("unknown worker {other}"),
    }
}

/// The bench's own copy of `countersign worker` (same library call), used
/// while the CLI has no `--max-cached-workflows` flag.
async fn countersign_worker_in_bench(address: &str, task_queue: &str, cache: usize) -> Result<()> {
    let client = countersign::devserver::connect(address).await?;
    let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())?;
    let tuning = countersign_worker::WorkerTuning {
        max_cached_workflows: cache,
        ..Default::default()
    };
    let mut worker = countersign_worker::build_tuned_worker(
        &runtime,
        client,
        task_queue,
        countersign_worker::AgentRegistry::empty().allowing_inline(true),
        &tuning,
    )?;
    eprintln!("countersign worker polling task queue `{task_queue}`");
    worker.run().await?;
    Ok(())
}

// ---------------------------------------------------------------------------
// The phases.

async fn drive(config: Config) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let log_dir = root.join("target/bench/logs");
    std::fs::create_dir_all(&log_dir)?;
    let mut report = json!({
        "benchmark": "proof",
        "when": humantime_now(),
        "machine": machine(),
        "load_average_at_start": load_average(),
        "config": {
            "decisions": config.decisions,
            "default_server_decisions": config.default_decisions,
            "concurrency": config.concurrency,
            "waiting_levels": config.waiting,
            "max_cached_workflows": config.cache,
            "python": config.python.is_some(),
            "countersign_worker": if worker_takes_cache_flag() { "countersign worker" } else { "build_tuned_worker in the bench binary" },
        },
        "servers": {},
    });
    let sink = Sink::start().await?;
    if config.phases.iter().any(|p| p == "latency") {
        for server in &config.servers {
            let tuned = server == "tuned";
            let decisions = if tuned {
                config.decisions
            } else {
                config.default_decisions
            };
            eprintln!("== {server} server: {decisions} decisions per flow");
            let result = latency_phase(&config, &sink, tuned, decisions, &log_dir).await?;
            report["servers"][server] = result;
        }
    }
    if config.phases.iter().any(|p| p == "waiting") {
        let mut waiting = serde_json::Map::new();
        let mut kinds = vec!["countersign"];
        if config.python.is_some() {
            kinds.push("python");
        }
        // The Rust null agent too (with its status upserts, so that
        // visibility can count it): tells the SDK's share from Countersign's.
        if std::env::var_os("COUNTERSIGN_BENCH_WAITING_NULL").is_some() {
            kinds.push("rust-null");
        }
        for kind in kinds {
            eprintln!("== waiting runs: {kind}");
            waiting.insert(
                kind.to_string(),
                waiting_phase(&config, &sink, kind, &log_dir).await?,
            );
        }
        report["waiting"] = Value::Object(waiting);
    }
    report["load_average_at_end"] = load_average();
    report["sink_unexpected_requests"] = json!(sink.unexpected.load(Ordering::Relaxed));
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if config.benchmarking {
        if let Some(dir) = config.out.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&config.out, &text)?;
        eprintln!("wrote {}", config.out.display());
    }
    Ok(())
}

fn humantime_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!("unix {secs}")
}

fn flows(python: bool, tag: &str) -> Vec<Flow> {
    let tq = |w: &str| format!("bench-{w}-{tag}-{}", std::process::id());
    let mut flows = vec![
        Flow {
            name: "rust-null",
            workflow_type: "NullFlow",
            protocol: Protocol::Signal,
            worker: "rust-null",
            task_queue: tq("rust-null"),
            search_attributes: false,
        },
        Flow {
            name: "rust-null-agent",
            workflow_type: "NullAgent",
            protocol: Protocol::Update,
            worker: "rust-null",
            task_queue: tq("rust-null"),
            search_attributes: false,
        },
        Flow {
            name: "rust-null-agent-sa",
            workflow_type: "NullAgent",
            protocol: Protocol::Update,
            worker: "rust-null",
            task_queue: tq("rust-null"),
            search_attributes: true,
        },
        Flow {
            name: "countersign",
            workflow_type: "AgentRun",
            protocol: Protocol::Countersign,
            worker: "countersign",
            task_queue: tq("countersign"),
            search_attributes: false,
        },
    ];
    if python {
        flows.extend([
            Flow {
                name: "python-null",
                workflow_type: "NullFlow",
                protocol: Protocol::Signal,
                worker: "python",
                task_queue: tq("python"),
                search_attributes: false,
            },
            Flow {
                name: "python-gated",
                workflow_type: "GatedAgent",
                protocol: Protocol::Update,
                worker: "python",
                task_queue: tq("python"),
                search_attributes: false,
            },
        ]);
    }
    flows
}

fn gated_agent(sink: &Sink) -> Result<AgentFile> {
    Ok(AgentFile::from_toml(
        &AGENT.replace("{sink}", &sink.url),
        Path::new("bench.toml"),
        Path::new("."),
        &|_| None,
    )?)
}

async fn start_server(tuned: bool, db_file: Option<PathBuf>) -> Result<(DevServer, Client, u16)> {
    let port = free_port()?;
    let (server, client) = DevServer::start(DevServerOptions {
        port,
        ui_port: None,
        db_file,
        log_file: None,
        tuned,
    })
    .await?;
    Ok((server, client, port))
}

/// Serial and concurrent decisions for every flow on one server.
async fn latency_phase(
    config: &Config,
    sink: &Sink,
    tuned: bool,
    decisions: usize,
    log_dir: &Path,
) -> Result<Value> {
    let (_server, client, port) = start_server(tuned, None).await?;
    let address = format!("127.0.0.1:{port}");
    let tag = if tuned { "tuned" } else { "default" };
    let flows = flows(config.python.is_some(), tag);
    let mut workers = Workers { procs: vec![] };
    for flow in &flows {
        if workers.pid(flow.worker).is_none() {
            let proc = start_worker(flow.worker, &address, &flow.task_queue, config, log_dir)?;
            workers.procs.push((flow.worker, proc));
        }
    }
    let driver = Driver {
        client: client.clone(),
        approvals: Approvals::new(client.clone()),
        sink: sink.clone(),
        agent: gated_agent(sink)?,
    };
    let server_pid = server_pid(port);
    let run_tag = format!("{tag}-{}", std::process::id());

    // Warm up every worker (first tasks pay for connections and lazy setup).
    for flow in &flows {
        for i in 0..config.concurrency.min(10) {
            driver
                .run_once(
                    flow,
                    format!("warm-{}-{run_tag}-{i}", flow.name),
                    Duration::from_millis(2),
                )
                .await?;
        }
    }

    // Serial: round robin in blocks, so drift in the machine's load touches
    // every flow alike.
    let mut serial: BTreeMap<&str, Vec<Sample>> = BTreeMap::new();
    let block = 50.min(decisions.max(1));
    let mut done = 0;
    let serial_started = Instant::now();
    while done < decisions {
        let n = block.min(decisions - done);
        for flow in &flows {
            for i in done..done + n {
                let id = format!("serial-{}-{run_tag}-{i}", flow.name);
                let sample = driver.run_once(flow, id, Duration::from_millis(2)).await?;
                serial.entry(flow.name).or_default().push(sample);
            }
        }
        done += n;
        eprintln!("  serial: {done}/{decisions}");
    }
    let serial_seconds = serial_started.elapsed().as_secs_f64();

    // Concurrent: one flow at a time, `concurrency` runs in flight.
    let mut concurrent = serde_json::Map::new();
    for flow in &flows {
        let before = cpu_snapshot(&workers, server_pid);
        let load_before = load_average();
        let next = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..config.concurrency)
            .map(|_| {
                let (driver, flow, next, run_tag) =
                    (driver.clone(), flow.clone(), next.clone(), run_tag.clone());
                tokio::spawn(async move {
                    let mut samples = vec![];
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= decisions {
                            return anyhow::Ok(samples);
                        }
                        let id = format!("conc-{}-{run_tag}-{i}", flow.name);
                        samples.push(driver.run_once(&flow, id, Duration::from_millis(5)).await?);
                    }
                })
            })
            .collect();
        let mut samples = vec![];
        for task in tasks {
            samples.extend(task.await??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        let after = cpu_snapshot(&workers, server_pid);
        let mut entry = summarize(&samples);
        entry["runs"] = json!(samples.len());
        entry["seconds"] = json!(round2(elapsed));
        entry["runs_per_second"] = json!(round2(samples.len() as f64 / elapsed));
        entry["cpu_ms_per_run"] = cpu_per_run(&before, &after, samples.len(), flow.worker);
        entry["cpu_utilisation"] = cpu_per_run(&before, &after, 0, flow.worker)
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            json!(round2(v.as_f64().unwrap_or(0.0) / (elapsed * 1000.0))),
                        )
                    })
                    .collect::<serde_json::Map<_, _>>()
            })
            .into();
        entry["load_average"] = json!([load_before, load_average()]);
        eprintln!(
            "  concurrent {}: {:.1} runs/s, effect p50 {} p90 {} ms",
            flow.name,
            samples.len() as f64 / elapsed,
            entry["decision_to_effect_ms"]["p50"],
            entry["decision_to_effect_ms"]["p90"]
        );
        concurrent.insert(flow.name.to_string(), entry);
    }

    // Histories: what one run of each flow costs in events and workflow tasks.
    let mut histories = serde_json::Map::new();
    for flow in &flows {
        let id = format!("serial-{}-{run_tag}-0", flow.name);
        histories.insert(flow.name.to_string(), history_counts(&client, &id).await?);
    }

    let mut serial_report = serde_json::Map::new();
    for (name, samples) in &serial {
        let mut entry = summarize(samples);
        entry["runs"] = json!(samples.len());
        serial_report.insert(name.to_string(), entry);
    }
    let mut memory = serde_json::Map::new();
    for (name, proc) in &workers.procs {
        let stats = proc_stats(proc.pid()).unwrap_or_default();
        memory.insert(
            name.to_string(),
            json!({ "rss_mib": mib(stats.rss_kib), "peak_rss_mib": mib(stats.hwm_kib), "process": proc.name }),
        );
    }
    Ok(json!({
        "dynamic_config": if tuned { json!(countersign::devserver::DYNAMIC_CONFIG) } else { json!("default") },
        "serial": serial_report,
        "serial_seconds_all_flows": round2(serial_seconds),
        "serial_runs_per_second": serial.iter().map(|(name, samples)| {
            // A serial run's whole cycle: start → pending → decision → result.
            let total: f64 = samples.iter().map(|s| s.whole_run).sum();
            (name.to_string(), json!(round2(samples.len() as f64 * 1000.0 / total)))
        }).collect::<serde_json::Map<_, _>>(),
        "concurrent": concurrent,
        "histories": histories,
        "worker_memory_after": memory,
    }))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn mib(kib: u64) -> f64 {
    round2(kib as f64 / 1024.0)
}

fn cpu_snapshot(workers: &Workers, server: Option<u32>) -> BTreeMap<String, f64> {
    let mut snap = BTreeMap::new();
    for (name, proc) in &workers.procs {
        if let Ok(s) = proc_stats(proc.pid()) {
            snap.insert(format!("worker:{name}"), s.cpu_ms);
        }
    }
    if let Some(pid) = server
        && let Ok(s) = proc_stats(pid)
    {
        snap.insert("server".into(), s.cpu_ms);
    }
    if let Ok(s) = proc_stats(std::process::id()) {
        snap.insert("driver".into(), s.cpu_ms);
    }
    snap
}

/// CPU ms per run (or total CPU ms when `runs` is 0) of the server, the
/// flow's worker and the driver between two snapshots.
fn cpu_per_run(
    before: &BTreeMap<String, f64>,
    after: &BTreeMap<String, f64>,
    runs: usize,
    worker: &str,
) -> Value {
    let mut out = serde_json::Map::new();
    for key in [
        "server".to_string(),
        format!("worker:{worker}"),
        "driver".into(),
    ] {
        if let (Some(a), Some(b)) = (after.get(&key), before.get(&key)) {
            let total = a - b;
            let value = if runs == 0 {
                total
            } else {
                total / runs as f64
            };
            out.insert(key.replace("worker:", "worker "), json!(round2(value)));
        }
    }
    Value::Object(out)
}

/// Counts a run's history events by type; the number of workflow tasks is
/// the count of `WorkflowTaskCompleted`.
async fn history_counts(client: &Client, id: &str) -> Result<Value> {
    let events = client
        .get_workflow_handle::<UntypedWorkflow>(id)
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .into_events()
        .await?;
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut sequence = vec![];
    for event in &events {
        let name = EventType::try_from(event.event_type)
            .map(|t| {
                t.as_str_name()
                    .trim_start_matches("EVENT_TYPE_")
                    .to_string()
            })
            .unwrap_or_else(|_| event.event_type.to_string());
        *counts.entry(name.clone()).or_default() += 1;
        sequence.push(name);
    }
    Ok(json!({
        "events": events.len(),
        "workflow_tasks": counts.get("WORKFLOW_TASK_COMPLETED").copied().unwrap_or(0),
        "by_type": counts,
        "sequence": sequence,
    }))
}

/// Runs left waiting for a decision: RSS, idle CPU and the database size at
/// each level, on a tuned server with a SQLite file.
async fn waiting_phase(
    config: &Config,
    sink: &Sink,
    kind: &'static str,
    log_dir: &Path,
) -> Result<Value> {
    let db = log_dir.join(format!("waiting-{kind}.db"));
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let (_server, client, port) = start_server(true, Some(db.clone())).await?;
    let address = format!("127.0.0.1:{port}");
    let wanted = match kind {
        "python" => "python-gated",
        "rust-null" => "rust-null-agent-sa",
        _ => "countersign",
    };
    let flow = flows(kind == "python", "waiting")
        .into_iter()
        .find(|f| f.name == wanted)
        .context("flow")?;
    let worker = start_worker(flow.worker, &address, &flow.task_queue, config, log_dir)?;
    let driver = Driver {
        client: client.clone(),
        approvals: Approvals::new(client.clone()),
        sink: sink.clone(),
        agent: gated_agent(sink)?,
    };
    let baseline = proc_stats(worker.pid())?;
    let server_pid = server_pid(port);
    let mut levels = vec![json!({
        "runs": 0,
        "rss_mib": mib(baseline.rss_kib),
    })];
    let mut started = 0;
    let query = format!(
        "WorkflowType = '{}' AND CountersignStatus = 'AwaitingApproval'",
        flow.workflow_type
    );
    for &level in &config.waiting {
        let begin = Instant::now();
        let next = Arc::new(AtomicUsize::new(started));
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let (driver, flow, next) = (driver.clone(), flow.clone(), next.clone());
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= level {
                            return anyhow::Ok(());
                        }
                        driver.start(&flow, &format!("wait-{kind}-{i}")).await?;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        started = level.max(started);
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let count = client
                .count_workflows(query.clone(), WorkflowCountOptions::default())
                .await?
                .count();
            if count >= level {
                break;
            }
            if Instant::now() > deadline {
                bail!("only {count} of {level} runs waiting after 30 min");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let to_waiting = begin.elapsed().as_secs_f64();
        // Settle, then measure CPU over an idle window.
        tokio::time::sleep(Duration::from_secs(if config.benchmarking { 5 } else { 1 })).await;
        let window = Duration::from_secs(if config.benchmarking { 20 } else { 2 });
        let before = proc_stats(worker.pid())?;
        let server_before = server_pid.and_then(|p| proc_stats(p).ok());
        tokio::time::sleep(window).await;
        let after = proc_stats(worker.pid())?;
        let server_after = server_pid.and_then(|p| proc_stats(p).ok());
        let db_bytes: u64 = ["", "-wal", "-shm"]
            .iter()
            .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
            .map(|m| m.len())
            .sum();
        let idle_pct = |a: ProcStats, b: ProcStats| {
            round2((a.cpu_ms - b.cpu_ms) / window.as_secs_f64() / 10.0)
        };
        let entry = json!({
            "runs": level,
            "seconds_to_all_waiting": round2(to_waiting),
            "rss_mib": mib(after.rss_kib),
            "peak_rss_mib": mib(after.hwm_kib),
            "worker_idle_cpu_percent": idle_pct(after, before),
            "server_idle_cpu_percent": match (server_after, server_before) {
                (Some(a), Some(b)) => json!(idle_pct(a, b)),
                _ => Value::Null,
            },
            "server_rss_mib": server_after.map(|s| mib(s.rss_kib)),
            "db_mib": round2(db_bytes as f64 / 1048576.0),
            "load_average": load_average(),
        });
        let mut entry = entry;
        if kind == "countersign" {
            entry["inbox"] = inbox_figures(&client, &worker, &flow.task_queue).await?;
        }
        eprintln!("  {kind} waiting {level}: {entry}");
        levels.push(entry);
    }
    Ok(json!({ "flow": flow.name, "levels": levels }))
}

/// The inbox with every run of this level waiting (issue 14): the time of
/// the whole list (every page, as `approvals list --json` reads it), of the
/// first `GET /approvals?pageSize=100` page, and of the dashboard's first
/// page (`/?view=all`, 50 runs, recent decisions included), through a real
/// `countersign serve` router on a loopback listener; first with the worker
/// running, then with it stopped (SIGSTOP: it answers nothing, so a list
/// that asked runs would wait on every one). Each figure is the median of 3.
async fn inbox_figures(client: &Client, worker: &Proc, task_queue: &str) -> Result<Value> {
    use countersign_approvals::PendingFilter;
    const TOKEN: &str = "bench-reviewer-token";
    let approvals = Approvals::new(client.clone());
    let config = countersign_server::ServerConfig::from_toml(
        &format!(
            "[[reviewers]]\nid = \"bench@example.com\"\ntoken_sha256 = \"{}\"\n",
            countersign_server::config::token_sha256(TOKEN)
        ),
        Path::new("bench-server.toml"),
    )?;
    let app = countersign_server::app(countersign_server::AppState::new(
        approvals.clone(),
        config,
        task_queue,
    )?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let login = http
        .post(format!("{base}/login"))
        .form(&[("token", TOKEN)])
        .send()
        .await?;
    let session = login
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("countersign_session="))
        .and_then(|c| c.split(';').next())
        .context("no session cookie from /login")?
        .to_string();

    let median = |mut samples: Vec<f64>| {
        samples.sort_by(f64::total_cmp);
        round2(samples[samples.len() / 2])
    };
    let measure = || async {
        let (mut list, mut api, mut dashboard) = (Vec::new(), Vec::new(), Vec::new());
        let mut listed = 0;
        let mut queried = 0;
        for _ in 0..3 {
            let begin = Instant::now();
            let all = approvals.list_pending(&PendingFilter::default()).await?;
            list.push(begin.elapsed().as_secs_f64());
            listed = all.approvals.len();
            queried = all.queried_runs;

            let begin = Instant::now();
            let page = http
                .get(format!("{base}/approvals?pageSize=100"))
                .bearer_auth(TOKEN)
                .send()
                .await?;
            anyhow::ensure!(
                page.status().is_success(),
                "GET /approvals: {}",
                page.status()
            );
            let page: Value = page.json().await?;
            api.push(begin.elapsed().as_secs_f64() * 1000.0);
            anyhow::ensure!(page["approvals"].as_array().is_some_and(|a| !a.is_empty()));

            let begin = Instant::now();
            let page = http
                .get(format!("{base}/?view=all"))
                .header(reqwest::header::COOKIE, &session)
                .send()
                .await?;
            anyhow::ensure!(page.status().is_success(), "GET /: {}", page.status());
            let _ = page.text().await?;
            dashboard.push(begin.elapsed().as_secs_f64() * 1000.0);
        }
        anyhow::Ok(json!({
            "list_all_seconds": median(list),
            "approvals_listed": listed,
            "runs_queried": queried,
            "api_first_page_ms": median(api),
            "dashboard_first_page_ms": median(dashboard),
        }))
    };
    let running = measure().await?;
    // SAFETY: plain kill(2) on the worker child this bench started.
    unsafe { libc::kill(worker.pid() as i32, libc::SIGSTOP) };
    let stopped = measure().await;
    unsafe { libc::kill(worker.pid() as i32, libc::SIGCONT) };
    server.abort();
    Ok(json!({ "worker_running": running, "worker_stopped": stopped? }))
}

/// The Rust null flows, run by this binary in `--null-worker` mode.
mod null {
    use anyhow::Result;
    use serde_json::{Value, json};
    use std::sync::Arc;
    use std::time::Duration;
    use temporalio_common::search_attributes::SearchAttributeKey;
    use temporalio_macros::{activities, workflow, workflow_methods};
    use temporalio_sdk::activities::{ActivityContext, ActivityError};
    use temporalio_sdk::{
        ActivityOptions, CancellableFuture, SyncWorkflowContext, WorkflowContext,
        WorkflowContextView, WorkflowResult,
    };

    const STATUS: SearchAttributeKey<String> = SearchAttributeKey::keyword("CountersignStatus");

    /// The null activities: `touch` POSTs to the sink, `model` answers at once.
    pub struct NullActivities {
        http: reqwest::Client,
    }

    #[activities]
    impl NullActivities {
        /// The side effect: one POST with the key as `Idempotency-Key`.
        #[activity(name = "touch")]
        pub async fn touch(
            self: Arc<Self>,
            _ctx: ActivityContext,
            call: Value,
        ) -> Result<String, ActivityError> {
            let url = call["sink"].as_str().unwrap_or_default().to_string();
            let key = call["key"].as_str().unwrap_or_default().to_string();
            let response = self
                .http
                .post(url)
                .header("Idempotency-Key", key)
                .json(&call)
                .send()
                .await
                .map_err(|e| ActivityError::from(anyhow::anyhow!("{e}")))?;
            Ok(response.status().to_string())
        }

        /// A model turn that costs nothing.
        #[activity(name = "model")]
        pub async fn model(
            self: Arc<Self>,
            _ctx: ActivityContext,
            turn: Value,
        ) -> Result<Value, ActivityError> {
            Ok(json!({ "turn": turn["turn"], "content": "ok" }))
        }
    }

    fn options() -> ActivityOptions {
        ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60)).build()
    }

    /// start → wait for signal `go` → `touch` → complete.
    #[workflow]
    #[derive(Default)]
    pub struct NullFlow {
        go: bool,
    }

    #[workflow_methods]
    impl NullFlow {
        #[run(name = "NullFlow")]
        pub async fn run(ctx: &mut WorkflowContext<Self>, input: Value) -> WorkflowResult<String> {
            let _ = ctx.wait_condition(|s: &NullFlow| s.go).await;
            let call = json!({ "sink": input["sink"], "key": ctx.workflow_id() });
            let _ = ctx
                .execute_activity(NullActivities::touch, call, options())
                .await;
            Ok("done".into())
        }

        #[signal(name = "go")]
        pub fn go(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _payload: Value) {
            self.go = true;
        }

        #[query(name = "waiting")]
        pub fn waiting(&self, _ctx: &WorkflowContextView) -> bool {
            !self.go
        }
    }

    /// The gated run's server round trips without its logic: `model` →
    /// wait for update `decide` → `touch` → `model` → complete.
    #[workflow]
    #[derive(Default)]
    pub struct NullAgent {
        approval_id: String,
        decided: bool,
    }

    #[workflow_methods]
    impl NullAgent {
        #[run(name = "NullAgent")]
        pub async fn run(ctx: &mut WorkflowContext<Self>, input: Value) -> WorkflowResult<String> {
            let sa = input["searchAttributes"].as_bool().unwrap_or(false);
            let status = |ctx: &WorkflowContext<Self>, value: &str| {
                if sa {
                    ctx.upsert_search_attributes(vec![STATUS.value_set(value.to_string())]);
                }
            };
            status(ctx, "Running");
            let _ = ctx
                .execute_activity(NullActivities::model, json!({ "turn": 0 }), options())
                .await;
            let approval_id = format!("{}~{}", ctx.workflow_id(), &ctx.uuid4()[..8]);
            ctx.state_mut(|s| s.approval_id = approval_id.clone());
            status(ctx, "AwaitingApproval");
            let expiry = sa.then(|| ctx.timer(Duration::from_secs(24 * 3600)));
            let _ = ctx.wait_condition(|s: &NullAgent| s.decided).await;
            if let Some(timer) = expiry {
                timer.cancel();
            }
            status(ctx, "Running");
            let call = json!({ "sink": input["sink"], "key": approval_id });
            let _ = ctx
                .execute_activity(NullActivities::touch, call, options())
                .await;
            let _ = ctx
                .execute_activity(NullActivities::model, json!({ "turn": 1 }), options())
                .await;
            status(ctx, "Completed");
            Ok("done".into())
        }

        #[update_validator(decide)]
        fn validate_decide(
            &self,
            _ctx: &WorkflowContextView,
            decision: &Value,
        ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
            if self.decided || decision["approvalId"].as_str() != Some(&self.approval_id) {
                return Err("unknown or decided approval".into());
            }
            Ok(())
        }

        #[update(name = "decide")]
        pub fn decide(&mut self, _ctx: &mut SyncWorkflowContext<Self>, _decision: Value) -> Value {
            self.decided = true;
            json!({ "accepted": true })
        }

        #[query(name = "pending")]
        pub fn pending(&self, _ctx: &WorkflowContextView) -> String {
            if self.decided {
                String::new()
            } else {
                self.approval_id.clone()
            }
        }
    }

    /// Runs the null worker until killed; prints `ready` once polling.
    pub async fn run_worker(address: &str, task_queue: &str, cache: usize) -> Result<()> {
        let client = countersign::devserver::connect(address).await?;
        use temporalio_sdk::runtime::{
            PollerBehavior,
            worker_tuner::{FixedSizeSlotSupplier, TunerHolder},
        };
        let tuning = countersign_worker::WorkerTuning::default();
        let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())?;
        let options = temporalio_sdk::WorkerOptions::new(task_queue)
            .register_workflow::<NullFlow>()?
            .register_workflow::<NullAgent>()?
            .register_activities(NullActivities {
                http: reqwest::Client::new(),
            })
            .max_cached_workflows(cache)
            // The same slots and pollers as `countersign worker`
            // (`WorkerTuning::default()`).
            .tuner(
                TunerHolder::builder()
                    .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(
                        tuning.max_concurrent_workflow_tasks,
                    ))
                    .activity_task_slot_supplier(FixedSizeSlotSupplier::new(
                        tuning.max_concurrent_activities,
                    ))
                    .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                    .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
                    .build(),
            )
            .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(
                tuning.workflow_task_pollers,
            ))
            .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(
                tuning.activity_task_pollers,
            ))
            .build();
        let mut worker = temporalio_sdk::Worker::new(&runtime, client, options)?;
        println!("ready");
        worker.run().await?;
        Ok(())
    }
}
