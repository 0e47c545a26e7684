//! The shared end-to-end harness: one real `temporal server start-dev` for the
//! whole test binary (free port, in-memory database, Countersign's search
//! attributes and dynamic config), a worker per test on its own task queue,
//! and a local HTTP sink that records what tools sent.

use anyhow::{Context, Result, bail};
use axum::{Json, Router, extract::State, http::HeaderMap, routing::post};
use countersign::devserver::{self, DevServer, DevServerOptions};
use countersign_approvals::Approvals;
use countersign_policy::agent::AgentFile;
use countersign_policy::run::AgentRunInput;
use countersign_proto::{ApprovalState, PendingApproval, RunState};
use countersign_worker::AgentRegistry;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use temporalio_client::{Client, WorkflowFetchHistoryOptions};

/// How long any wait in a test may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// The address of the shared dev server, started on first use. The server
/// lives in a parked thread and dies with the test process (PDEATHSIG).
pub fn server_address() -> &'static str {
    static ADDRESS: OnceLock<String> = OnceLock::new();
    ADDRESS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            let started = runtime.block_on(async {
                let port = devserver::free_port()?;
                DevServer::start(DevServerOptions {
                    port,
                    ui_port: None,
                    db_file: None,
                    log_file: None,
                    tuned: true,
                })
                .await
            });
            match started {
                Ok((server, _client)) => {
                    tx.send(Ok(server.address.clone()))
                        .expect("harness channel");
                    // Keep the server (and this thread, its PDEATHSIG parent) alive.
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => tx.send(Err(format!("{e:#}"))).expect("harness channel"),
            }
        });
        rx.recv()
            .expect("harness thread")
            .unwrap_or_else(|e| panic!("cannot start the Temporal dev server: {e}"))
    })
}

/// A unique name for this test's task queue and workflow ids.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!(
        "{prefix}-{}-{millis}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

/// One test's view of the stack.
pub struct TestEnv {
    pub client: Client,
    pub approvals: Approvals,
    pub task_queue: String,
    pub sink: Sink,
    pub dir: tempfile::TempDir,
    /// The payload store the clients and the worker use, if any.
    pub payload_store: Option<countersign_payloads::PayloadStore>,
}

impl TestEnv {
    /// Connects to the shared server and starts a sink; the worker is run by
    /// [`TestEnv::with_worker`] (its future is not `Send`).
    pub async fn new(name: &str) -> Result<Self> {
        let client = devserver::connect(server_address()).await?;
        Ok(Self {
            approvals: Approvals::new(client.clone()),
            client,
            task_queue: unique(name),
            sink: Sink::start().await?,
            dir: tempfile::tempdir()?,
            payload_store: None,
        })
    }

    /// The same environment with `store` as the payload store of its client,
    /// its approvals client and its workers.
    pub fn with_payload_store(mut self, store: countersign_payloads::PayloadStore) -> Self {
        countersign_payloads::install(&mut self.client, store.clone());
        self.approvals = Approvals::new(self.client.clone()).with_transcripts(store.transcripts());
        self.payload_store = Some(store);
        self
    }

    /// Runs `body` while an in-process worker polls this test's task queue;
    /// it serves no registry and accepts inline agents ([`TestEnv::start`]).
    pub async fn with_worker<F: Future<Output = Result<()>>>(&self, body: F) -> Result<()> {
        self.with_worker_serving(AgentRegistry::empty().allowing_inline(true), body)
            .await
    }

    /// Runs `body` while an in-process worker serving `agents` polls this
    /// test's task queue.
    pub async fn with_worker_serving<F: Future<Output = Result<()>>>(
        &self,
        agents: AgentRegistry,
        body: F,
    ) -> Result<()> {
        let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())?;
        let agents = agents.with_payload_store(self.payload_store.as_ref());
        let mut worker = countersign_worker::build_worker(
            &runtime,
            self.client.clone(),
            &self.task_queue,
            agents,
        )?;
        let run = worker.run();
        tokio::select! {
            result = run => {
                result?;
                bail!("the worker stopped before the test finished")
            }
            result = body => result,
        }
    }

    /// Resolves agent TOML: `{sink}` becomes the sink's URL, relative paths
    /// the test's temporary folder.
    pub fn agent(&self, toml: &str) -> Result<AgentFile> {
        let text = toml.replace("{sink}", &self.sink.url);
        Ok(AgentFile::from_toml(
            &text,
            Path::new("test-agent.toml"),
            self.dir.path(),
            &|_| None,
        )?)
    }

    /// Writes agent TOML to `name` in the test's folder (`{sink}` replaced)
    /// and loads it as the CLI does, so files it refers to (sub-agents,
    /// OpenAPI documents) are read too.
    pub fn agent_file(&self, name: &str, toml: &str) -> Result<std::path::PathBuf> {
        let path = self.dir.path().join(name);
        std::fs::write(&path, toml.replace("{sink}", &self.sink.url))?;
        Ok(path)
    }

    /// Starts a run of `agent`, sent inline, on this test's task queue.
    pub async fn start(&self, agent: AgentFile, prompt: &str) -> Result<String> {
        let id = unique(&agent.name);
        let input = AgentRunInput::inline(agent, prompt, "alice@example.com");
        self.approvals
            .start_run(input, &id, Some(&self.task_queue))
            .await?;
        Ok(id)
    }

    /// Starts a run of the registry agent `name` on this test's task queue.
    pub async fn start_named(&self, name: &str, prompt: &str) -> Result<String> {
        let id = unique(name);
        let input = AgentRunInput::named(name, prompt, "alice@example.com");
        self.approvals
            .start_run(input, &id, Some(&self.task_queue))
            .await?;
        Ok(id)
    }

    /// Waits until the run has `n` pending approvals and returns them.
    pub async fn pending(&self, workflow_id: &str, n: usize) -> Result<Vec<PendingApproval>> {
        wait_for(
            &format!("{n} pending approvals in {workflow_id}"),
            || async {
                let pending = self.approvals.pending_of_run(workflow_id).await.ok()?;
                (pending.len() == n).then_some(pending)
            },
        )
        .await
    }

    /// Waits for the run's result.
    pub async fn result(&self, workflow_id: &str) -> Result<RunState> {
        tokio::time::timeout(DEADLINE, self.approvals.wait_for_run(workflow_id))
            .await
            .with_context(|| format!("run {workflow_id} did not finish within {DEADLINE:?}"))?
            .map_err(Into::into)
    }

    /// The run's history as the SDK's replay JSON; with
    /// `COUNTERSIGN_RECORD_HISTORIES=1` also stored as `tests/histories/NAME.json`
    /// when that file does not exist yet (`=overwrite` replaces it).
    pub async fn record_history(&self, workflow_id: &str, name: &str) -> Result<Vec<u8>> {
        let handle = self
            .client
            .get_workflow_handle::<countersign_approvals::AgentRunWorkflow>(workflow_id);
        let json = handle
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?;
        // Stored histories stand for runs of earlier versions still in
        // flight: recording adds missing ones and overwrites only on request.
        if let Some(mode) = std::env::var_os("COUNTERSIGN_RECORD_HISTORIES") {
            let path = histories_dir().join(format!("{name}.json"));
            if !path.exists() || mode == "overwrite" {
                std::fs::write(&path, &json)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
        }
        Ok(json)
    }

    /// Records the run's history and replays it against the current workflow code.
    pub async fn record_and_replay(&self, workflow_id: &str, name: &str) -> Result<()> {
        let history = self.record_history(workflow_id, name).await?;
        replay(&history).await
    }
}

/// Replays a history against the current workflow code.
pub async fn replay(history_json: &[u8]) -> Result<()> {
    replay_with(history_json, None).await
}

/// Replays a history against the current workflow code, reading its
/// references from `store` (when it has a payload store's references).
pub async fn replay_with(
    history_json: &[u8],
    store: Option<&countersign_payloads::PayloadStore>,
) -> Result<()> {
    use temporalio_client::WorkflowHistory;
    use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
    let data_converter = store
        .map(|s| countersign_payloads::data_converter(s.clone()))
        .unwrap_or_default();
    let replayer = WorkflowReplayer::new(
        WorkflowReplayerOptions::new()
            .data_converter(data_converter)
            .register_workflow::<countersign_worker::AgentRun>()?
            .register_workflow::<countersign_worker::ApprovalGate>()?
            .build(),
    )?;
    replayer
        .replay_workflow(WorkflowHistory::from_json(history_json)?)
        .await?;
    Ok(())
}

/// `tests/histories/` at the repository root.
pub fn histories_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/histories")
}

/// A scripted agent that makes one call (`call` is a TOML inline table) and
/// answers `Done.` or, on an error result, `Could not: <the error>`.
pub fn one_call_agent(name: &str, say: &str, call: &str) -> String {
    format!(
        r#"
name = "{name}"

[model]
provider = "scripted"

[[model.steps]]
say = "{say}"
calls = [{call}]
on_error = "report"

[[model.steps]]
say = "Done."

[[model.steps]]
id = "report"
say = "Could not: {{last_error}}"
"#
    )
}

/// Runs the `countersign` binary against the shared server (no profile, no
/// signing key from the environment). Async, so an in-process worker keeps
/// answering queries while the command runs.
pub async fn countersign(args: &[&str]) -> Result<std::process::Output> {
    Ok(
        tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(args)
            .env("TEMPORAL_ADDRESS", server_address())
            .env("TEMPORAL_NAMESPACE", "default")
            .env_remove("TEMPORAL_PROFILE")
            .env_remove("COUNTERSIGN_SIGN_KEY")
            .env_remove("COUNTERSIGN_PAYLOAD_STORE")
            .stdin(std::process::Stdio::null())
            .output()
            .await?,
    )
}

/// Starts an `AgentRun` with the real `temporal` CLI, as an operator or a
/// script would (`temporal workflow start --type AgentRun --input-file F`);
/// `input` is the JSON text, or `None` for no input at all.
pub async fn temporal_start(
    task_queue: &str,
    workflow_id: &str,
    input: Option<&str>,
) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut command = tokio::process::Command::new(devserver::temporal_cli()?);
    command
        .args(["workflow", "start", "--address", server_address()])
        .args(["--type", "AgentRun", "--task-queue", task_queue])
        .args(["--workflow-id", workflow_id]);
    if let Some(input) = input {
        let file = dir.path().join("input.json");
        std::fs::write(&file, input)?;
        command.arg("--input-file").arg(&file);
    }
    let out = command.output().await?;
    if !out.status.success() {
        bail!(
            "temporal workflow start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Sends `input` as the `approval_decision` signal with the real `temporal`
/// CLI, as an operator types it (through `--input-file`: the argument list
/// has a size limit).
pub async fn temporal_signal(workflow_id: &str, input: &str) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("input.json");
    std::fs::write(&file, input)?;
    let out = tokio::process::Command::new(devserver::temporal_cli()?)
        .args(["workflow", "signal", "--address", server_address()])
        .args(["--workflow-id", workflow_id, "--name", "approval_decision"])
        .arg("--input-file")
        .arg(&file)
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "temporal workflow signal failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// Polls `probe` until it answers `Some`, or fails after [`DEADLINE`].
pub async fn wait_for<T, F, Fut>(what: &str, probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_within(what, DEADLINE, probe).await
}

/// Polls `probe` until it answers `Some`, or fails after `deadline`.
pub async fn wait_within<T, F, Fut>(what: &str, deadline: Duration, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(value) = probe().await {
            return Ok(value);
        }
        if Instant::now() > until {
            bail!("timed out after {deadline:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The approval of a tool in a run's final state.
pub fn approval_of<'a>(state: &'a RunState, tool: &str) -> &'a PendingApproval {
    state
        .approvals
        .iter()
        .find(|a| a.tool.as_ref().is_some_and(|t| t.name == tool))
        .unwrap_or_else(|| panic!("no approval for {tool}"))
}

/// Shorthand for an approval's state.
pub fn state_of(a: &PendingApproval) -> ApprovalState {
    a.state()
}

/// A request the sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub idempotency_key: String,
    pub body: serde_json::Value,
}

/// A local HTTP server that records every POST: the outside observer of tool
/// side effects.
#[derive(Clone)]
pub struct Sink {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    async fn start() -> Result<Self> {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        async fn record(
            State(received): State<Arc<Mutex<Vec<Received>>>>,
            uri: axum::http::Uri,
            headers: HeaderMap,
            Json(body): Json<serde_json::Value>,
        ) -> Json<serde_json::Value> {
            received.lock().unwrap().push(Received {
                path: uri.path().to_string(),
                idempotency_key: headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_string(),
                body,
            });
            Json(serde_json::json!({"ok": true}))
        }
        let app = Router::new()
            .route("/{*path}", post(record))
            .with_state(received.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { url, received })
    }

    /// Everything received on `path`.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }
}

/// A real `countersign worker` process. Its stderr is kept (and echoed,
/// shown when a test fails) so tests can wait on what it says and check that
/// it never panicked.
pub struct WorkerProcess {
    child: tokio::process::Child,
    log: Arc<Mutex<String>>,
}

impl WorkerProcess {
    /// Starts `countersign worker --task-queue Q --allow-inline-agents ARGS`
    /// against the shared server with extra environment `vars`, and waits
    /// until it polls. (Tests send their agents inline, see [`TestEnv::start`].)
    pub async fn start(task_queue: &str, args: &[&str], vars: &[(&str, &str)]) -> Result<Self> {
        Self::start_on(server_address(), task_queue, args, vars).await
    }

    /// Like [`WorkerProcess::start`], against the server at `address`.
    pub async fn start_on(
        address: &str,
        task_queue: &str,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Result<Self> {
        let mut all = vec!["--allow-inline-agents"];
        all.extend_from_slice(args);
        Self::spawn(address, task_queue, &all, vars).await
    }

    /// Starts `countersign worker --task-queue Q --agents DIR` (inline
    /// agents refused, as in production) against the shared server.
    pub async fn start_serving(task_queue: &str, agents: &Path) -> Result<Self> {
        let agents = agents.to_string_lossy();
        Self::spawn(server_address(), task_queue, &["--agents", &agents], &[]).await
    }

    async fn spawn(
        address: &str,
        task_queue: &str,
        args: &[&str],
        vars: &[(&str, &str)],
    ) -> Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(["worker", "--task-queue", task_queue])
            .args(args)
            .env("TEMPORAL_ADDRESS", address)
            .env("TEMPORAL_NAMESPACE", "default")
            .env_remove("TEMPORAL_PROFILE")
            .env_remove("TEMPORAL_CONFIG_FILE")
            .env_remove("COUNTERSIGN_PAYLOAD_STORE")
            .envs(vars.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
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

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or_default()
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
        anyhow::ensure!(rc == 0, "kill: {}", std::io::Error::last_os_error());
        Ok(())
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn exit_status(&mut self, within: Duration) -> Result<std::process::ExitStatus> {
        match tokio::time::timeout(within, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => bail!(
                "the worker did not exit within {within:?}; its log:\n{}",
                self.log()
            ),
        }
    }

    /// SIGKILL: no graceful shutdown, nothing flushed, activities in flight
    /// abandoned. Fails if the worker had panicked before.
    pub async fn kill(mut self) -> Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        let log = self.log();
        if let Some(line) = log.lines().find(|l| l.contains("panicked")) {
            bail!("the worker panicked: {line}");
        }
        Ok(())
    }
}

/// One request an [`IdempotentApi`] received.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub idempotency_key: String,
    pub at: Instant,
}

#[derive(Default)]
struct Ledger {
    deliveries: Vec<Delivery>,
    /// Idempotency key → the body that created the effect.
    effects: std::collections::HashMap<String, serde_json::Value>,
    answered: usize,
}

/// An HTTP API (any path, POST) that honours `Idempotency-Key` the way real
/// payment APIs do: the first request with a key creates the effect; a retry
/// with the same key gets the same answer and creates nothing. While held,
/// it records the effect and then keeps the request open until released: the
/// tool is "in flight" with its effect applied and its answer not delivered.
#[derive(Clone)]
pub struct IdempotentApi {
    pub url: String,
    ledger: Arc<Mutex<Ledger>>,
    hold: Arc<tokio::sync::watch::Sender<bool>>,
}

impl IdempotentApi {
    /// Starts the API on a free port, answering at once until [`Self::hold`].
    pub async fn start() -> Result<Self> {
        let (hold, _) = tokio::sync::watch::channel(false);
        let api = Self {
            url: String::new(),
            ledger: Arc::default(),
            hold: Arc::new(hold),
        };
        async fn effect(
            State(api): State<IdempotentApi>,
            headers: HeaderMap,
            Json(body): Json<serde_json::Value>,
        ) -> Json<serde_json::Value> {
            let key = headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            {
                let mut ledger = api.ledger.lock().unwrap();
                ledger.deliveries.push(Delivery {
                    idempotency_key: key.clone(),
                    at: Instant::now(),
                });
                ledger.effects.entry(key.clone()).or_insert(body);
            }
            let mut held = api.hold.subscribe();
            let _ = held.wait_for(|holding| !*holding).await;
            api.ledger.lock().unwrap().answered += 1;
            Json(serde_json::json!({"ok": true, "payment": key}))
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let app = Router::new()
            .route("/{*path}", post(effect))
            .with_state(api.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { url, ..api })
    }

    /// Holds every request from now on until [`IdempotentApi::release`].
    pub fn hold(&self) {
        self.hold.send_replace(true);
    }

    /// Answers held requests and every later one at once.
    pub fn release(&self) {
        self.hold.send_replace(false);
    }

    /// Every request received so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.ledger.lock().unwrap().deliveries.clone()
    }

    /// The idempotency keys of every request received so far, in order.
    pub fn keys(&self) -> Vec<String> {
        self.deliveries()
            .into_iter()
            .map(|d| d.idempotency_key)
            .collect()
    }

    /// Effects created, by idempotency key.
    pub fn effects(&self) -> std::collections::HashMap<String, serde_json::Value> {
        self.ledger.lock().unwrap().effects.clone()
    }

    /// Requests answered (held ones count once released).
    pub fn answered(&self) -> usize {
        self.ledger.lock().unwrap().answered
    }

    /// Waits until at least one request has arrived.
    pub async fn arrived(&self) -> Result<()> {
        wait_for("a request at the API", || async {
            (!self.deliveries().is_empty()).then_some(())
        })
        .await
    }
}
