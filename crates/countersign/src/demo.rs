//! `countersign dev`: the local stack on the embedded default and a demo run
//! that pauses on a gated payment, shows the pending approval, takes a
//! decision and finishes.

use crate::devserver::{self, DevServer, DevServerOptions};
use crate::output::{approval_text, run_text};
use anyhow::{Context, Result, bail};
use axum::{Json, Router, extract::State, http::HeaderMap, routing::post};
use clap::Args;
use countersign_approvals::{Approvals, ApproveOptions};
use countersign_policy::Agent;
use countersign_policy::agent::AgentFile;
use countersign_policy::run::{AgentRunInput, AgentSpec};
use countersign_proto::contract::{SEARCH_ATTRIBUTES, TASK_QUEUE};
use countersign_proto::{ApprovalState, PendingApproval, RunStatus};
use countersign_worker::AgentRegistry;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Options of `countersign dev`.
#[derive(Args, Debug)]
pub struct DevArgs {
    /// The Temporal gRPC port (reused if a server already listens there).
    #[arg(long, default_value_t = 7233)]
    port: u16,
    /// The Temporal Web UI port.
    #[arg(long, default_value_t = 8233)]
    ui_port: u16,
    /// The state folder (SQLite database, logs, the demo's todo list).
    #[arg(long, default_value = ".countersign")]
    state_dir: PathBuf,
    /// The agent registry the local worker serves (default: the repository's
    /// `examples/`). The local worker also accepts inline agents
    /// (`countersign run start --agent FILE.toml`).
    #[arg(long, value_name = "DIR", env = "COUNTERSIGN_AGENTS")]
    agents: Option<PathBuf>,
    /// The demo's agent: a name the registry serves (default
    /// `accounts-payable`), or an agent file, sent inline.
    #[arg(long)]
    agent: Option<String>,
    /// How the demo decides: ask on the terminal (the default when stdin is a
    /// terminal), approve, deny, or wait for a decision from elsewhere
    /// (another terminal, the Web UI, `temporal workflow signal`).
    #[arg(long, value_parser = ["ask", "approve", "deny", "wait"])]
    decide: Option<String>,
    /// Stop the stack after the demo instead of serving until Ctrl-C.
    #[arg(long)]
    exit_after_demo: bool,
    /// Start the stack without a demo run.
    #[arg(long)]
    no_demo: bool,
    /// Where to serve the dashboard and HTTP API (`off`: not at all). A
    /// fresh reviewer token is printed and written to `<state dir>/dev-token`.
    #[arg(long, default_value = "127.0.0.1:8080")]
    http: String,
}

/// The demo's payments API: prints and records what it receives, so the
/// side effect of an approved call is visible outside the worker.
#[derive(Clone, Default)]
struct PaymentsApi {
    received: Arc<Mutex<Vec<serde_json::Value>>>,
}

async fn receive_payment(
    State(api): State<PaymentsApi>,
    headers: HeaderMap,
    Json(body): Json<serde_json::Value>,
) -> Json<serde_json::Value> {
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    eprintln!("[payments API] received payment request {body} (Idempotency-Key {key})");
    let mut received = api.received.lock().expect("payments lock");
    received.push(body);
    Json(serde_json::json!({"status": "accepted", "payment": format!("pay_{}", received.len())}))
}

/// Runs `countersign dev`.
pub async fn dev(args: DevArgs, payload_store: Option<&str>) -> Result<()> {
    std::fs::create_dir_all(&args.state_dir)
        .with_context(|| format!("creating {}", args.state_dir.display()))?;
    // Large payloads go to STATE_DIR/payloads unless a store is named.
    let default_store = std::fs::canonicalize(&args.state_dir)?
        .join("payloads")
        .display()
        .to_string();
    let payload_store = crate::payloads::open(Some(payload_store.unwrap_or(&default_store)))?;
    let address = format!("127.0.0.1:{}", args.port);

    let (_server, mut client) = if devserver::is_listening(&address) {
        eprintln!("• reusing the Temporal server already listening on {address}");
        let client = devserver::connect(&address).await?;
        ensure_search_attributes(&address)?;
        (None, client)
    } else {
        let db = args.state_dir.join("temporal.db");
        eprintln!(
            "• starting Temporal dev server on {address} (SQLite {}, log {})",
            db.display(),
            args.state_dir.join("temporal.log").display()
        );
        let (server, client) = DevServer::start(DevServerOptions {
            port: args.port,
            ui_port: Some(args.ui_port),
            db_file: Some(db),
            log_file: Some(args.state_dir.join("temporal.log")),
            tuned: true,
        })
        .await?;
        (Some(server), client)
    };
    crate::payloads::install(&mut client, payload_store.as_ref());
    if let Some(store) = &payload_store {
        eprintln!("• payloads of 128 KiB and more go to {}", store.url());
    }
    let ui = format!("http://localhost:{}", args.ui_port);
    eprintln!(
        "• search attributes: {}",
        SEARCH_ATTRIBUTES.map(|(n, _)| n).join(", ")
    );

    let dashboard = if args.http == "off" {
        None
    } else {
        serve_dashboard(&args, client.clone(), payload_store.as_ref()).await
    };

    // The demo's payments API and todo file are set up before the registry
    // loads: the demo agent's file names them through ${VAR} references.
    let payments = PaymentsApi::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let payments_url = format!("http://{}/payments", listener.local_addr()?);
    let app = Router::new()
        .route("/payments", post(receive_payment))
        .with_state(payments.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let state_dir = std::fs::canonicalize(&args.state_dir)?;
    let vars = [
        ("COUNTERSIGN_DEMO_PAYMENTS_URL", payments_url),
        (
            "COUNTERSIGN_DEMO_TODO",
            state_dir.join("todo.md").display().to_string(),
        ),
    ];
    let env = |name: &str| {
        vars.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
            .or_else(|| std::env::var(name).ok())
    };
    let agents_dir = args
        .agents
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples"));
    let registry = AgentRegistry::load_with_env(&agents_dir, &env)
        .with_context(|| format!("loading the agents in {}", agents_dir.display()))?
        .allowing_inline(true)
        .with_payload_store(payload_store.as_ref());
    eprintln!(
        "• agents served from {}: {}",
        agents_dir.display(),
        registry
            .agents()
            .map(|(a, _)| a.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let demo_agent = match &args.agent {
        Some(file) if file.ends_with(".toml") || std::path::Path::new(file).is_file() => {
            let file = AgentFile::from_file_with_env(std::path::Path::new(file), &env)?;
            AgentSpec::Inline(Box::new(Agent::new(file)?.file().clone()))
        }
        Some(name) => AgentSpec::Name(name.clone()),
        None => AgentSpec::Name("accounts-payable".into()),
    };

    let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())
        .context("starting the Temporal runtime")?;
    let mut worker =
        countersign_worker::build_worker(&runtime, client.clone(), TASK_QUEUE, registry)?;
    // The worker's future is not Send: it runs in this task, beside the demo.
    let worker_run = worker.run();
    tokio::pin!(worker_run);
    eprintln!("• worker polling task queue `{TASK_QUEUE}`");

    if !args.no_demo {
        tokio::select! {
            result = &mut worker_run => {
                result?;
                bail!("the worker stopped during the demo");
            }
            result = demo(&args, client, payload_store.as_ref(), &ui, demo_agent, &payments) => result?,
        }
    }
    if args.exit_after_demo {
        return Ok(());
    }
    eprintln!("\nThe stack is up: Temporal on {address}, Web UI {ui}, worker on `{TASK_QUEUE}`.");
    if let Some(url) = &dashboard {
        eprintln!("Dashboard and HTTP API: {url}");
    }
    eprintln!("In another terminal: TEMPORAL_ADDRESS={address} countersign approvals list");
    eprintln!("Ctrl-C stops everything.");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => eprintln!("stopping"),
        result = &mut worker_run => result?,
    }
    Ok(())
}

/// Serves the dashboard and the HTTP API for one local reviewer with a fresh
/// token (printed, and written to `<state dir>/dev-token`). A port in use is
/// a warning, not a failure: the rest of the stack works without it.
async fn serve_dashboard(
    args: &DevArgs,
    client: temporalio_client::Client,
    payload_store: Option<&countersign_payloads::PayloadStore>,
) -> Option<String> {
    let listener = match tokio::net::TcpListener::bind(&args.http).await {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!(
                "• no dashboard: cannot listen on {} ({e}); use --http ADDR",
                args.http
            );
            return None;
        }
    };
    let token = match crate::cli::new_token() {
        Ok(token) => token,
        Err(e) => {
            eprintln!("• no dashboard: {e:#}");
            return None;
        }
    };
    let reviewer = std::env::var("COUNTERSIGN_REVIEWER")
        .or_else(|_| std::env::var("USER").map(|u| format!("{u}@localhost")))
        .unwrap_or_else(|_| "reviewer@localhost".into());
    let config = countersign_server::ServerConfig {
        reviewers: vec![countersign_server::Reviewer {
            id: reviewer.clone(),
            token_sha256: countersign_server::config::token_sha256(&token),
            groups: vec![],
            slack_user_id: None,
        }],
        // The dev server's Web UI may show stored payloads through
        // `/codec/decode` (its "Codec Server browser endpoint" setting).
        codec: countersign_server::CodecConfig {
            web_ui_origins: ["localhost", "127.0.0.1"]
                .iter()
                .filter_map(|host| {
                    countersign_server::WebOrigin::parse(&format!("http://{host}:{}", args.ui_port))
                        .ok()
                })
                .collect(),
        },
        ..Default::default()
    };
    let token_file = args.state_dir.join("dev-token");
    if let Err(e) = std::fs::write(&token_file, format!("{token}\n")) {
        eprintln!("• could not write {}: {e}", token_file.display());
    }
    let url = format!("http://{}", listener.local_addr().ok()?);
    let state = match countersign_server::AppState::new(Approvals::new(client), config, TASK_QUEUE)
    {
        Ok(state) => match payload_store {
            Some(store) => state.with_payload_store(store.clone()),
            None => state,
        },
        Err(e) => {
            eprintln!("• no dashboard: {e}");
            return None;
        }
    };
    tokio::spawn(async move { axum::serve(listener, countersign_server::app(state)).await });
    eprintln!(
        "• dashboard and HTTP API on {url}: sign in as {reviewer} with the token in {} ({token})",
        token_file.display()
    );
    Some(url)
}

/// Registers the search attributes on a server we did not start.
fn ensure_search_attributes(address: &str) -> Result<()> {
    let cli = devserver::temporal_cli()?;
    for (name, kind) in SEARCH_ATTRIBUTES {
        // Fails harmlessly when the attribute already exists.
        let _ = std::process::Command::new(&cli)
            .args([
                "operator",
                "search-attribute",
                "create",
                "--address",
                address,
                "--name",
                name,
                "--type",
                kind,
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
    Ok(())
}

async fn demo(
    args: &DevArgs,
    client: temporalio_client::Client,
    payload_store: Option<&countersign_payloads::PayloadStore>,
    ui: &str,
    agent: AgentSpec,
    api: &PaymentsApi,
) -> Result<()> {
    // The demo prints the whole transcript, stored part included.
    let approvals = match payload_store {
        Some(store) => Approvals::new(client).with_transcripts(store.transcripts()),
        None => Approvals::new(client),
    };
    let requester = std::env::var("USER").unwrap_or_else(|_| "demo-user".into());
    let prompt = "Pay the ACME invoice in invoices/acme-inv-42.txt.".to_string();
    let workflow_id = crate::cli::default_run_id(agent.name());
    let input = AgentRunInput {
        agent,
        ..AgentRunInput::named("", &prompt, &requester)
    };
    approvals.start_run(input, &workflow_id, None).await?;
    eprintln!("\n▶ started run {workflow_id} for {requester}: \"{prompt}\"");
    eprintln!("  see it in the Web UI: {ui}/namespaces/default/workflows/{workflow_id}");

    let approval = wait_for_pending(&approvals, &workflow_id).await?;
    eprintln!(
        "\n⏸ the run is PAUSED before `{}` runs: it waits for a reviewer's decision.\n  \
         The worker holds nothing for it; the wait is a timer and a condition in Temporal.\n",
        approval.tool.as_ref().map_or("?", |t| t.name.as_str())
    );
    println!("{}", approval_text(&approval));
    eprintln!(
        "  decide from anywhere, e.g.\n    countersign approvals approve '{id}' --reason 'invoice checked'\n    \
         countersign approvals deny '{id}' --reason 'wrong amount'\n    \
         temporal workflow signal --workflow-id '{wf}' --name approval_decision \\\n      \
         --input '{{\"approvalId\":\"{id}\",\"kind\":\"DECISION_KIND_APPROVE\",\"reviewer\":\"you@example.com\",\"reason\":\"ok\"}}'\n",
        id = approval.approval_id,
        wf = workflow_id
    );

    let mode = args.decide.clone().unwrap_or_else(|| {
        if std::io::stdin().is_terminal() {
            "ask"
        } else {
            "approve"
        }
        .to_string()
    });
    let reviewer = format!("{requester}@demo");
    let choice = match mode.as_str() {
        "ask" => ask()?,
        other => Choice::from(other),
    };
    match choice {
        Choice::Approve => {
            let outcome = approvals
                .approve(
                    &approval.approval_id,
                    &reviewer,
                    ApproveOptions {
                        reason: "invoice matches the purchase order".into(),
                        arguments_sha256: Some(approval.arguments_sha256.clone()),
                        ..Default::default()
                    },
                )
                .await?;
            eprintln!(
                "✔ decision taken: {}. The run resumes and the payment runs.",
                outcome.message
            );
        }
        Choice::Deny(reason) => {
            let outcome = approvals
                .deny(&approval.approval_id, &reviewer, &reason)
                .await?;
            eprintln!(
                "✘ decision taken: {}. The run resumes; the model is told why and takes another path.",
                outcome.message
            );
        }
        Choice::Wait => eprintln!("… waiting for a decision from elsewhere"),
    }

    let state = approvals.wait_for_run(&workflow_id).await?;
    eprintln!();
    println!("{}", run_text(&state));
    let payments = api.received.lock().expect("payments lock").len();
    eprintln!("payments API received {payments} payment request(s).");
    if state.status() != RunStatus::Completed {
        bail!("the demo run ended as {:?}", state.status());
    }
    eprintln!(
        "■ run {workflow_id} completed. Web UI: {ui}/namespaces/default/workflows/{workflow_id}"
    );
    Ok(())
}

enum Choice {
    Approve,
    Deny(String),
    Wait,
}

impl From<&str> for Choice {
    fn from(mode: &str) -> Self {
        match mode {
            "deny" => Choice::Deny("the amount needs a second look".into()),
            "wait" => Choice::Wait,
            _ => Choice::Approve,
        }
    }
}

fn ask() -> Result<Choice> {
    loop {
        eprint!(
            "Approve this payment? [a]pprove / [d]eny / [w]ait for a decision from elsewhere: "
        );
        std::io::stderr().flush()?;
        let mut line = String::new();
        if std::io::stdin().lock().read_line(&mut line)? == 0 {
            return Ok(Choice::Wait);
        }
        match line.trim().chars().next().map(|c| c.to_ascii_lowercase()) {
            Some('a') => return Ok(Choice::Approve),
            Some('w') => return Ok(Choice::Wait),
            Some('d') => {
                eprint!("Reason (the model is told): ");
                std::io::stderr().flush()?;
                let mut reason = String::new();
                std::io::stdin().lock().read_line(&mut reason)?;
                let reason = reason.trim();
                return Ok(Choice::Deny(if reason.is_empty() {
                    "denied by the reviewer".into()
                } else {
                    reason.to_string()
                }));
            }
            _ => continue,
        }
    }
}

async fn wait_for_pending(approvals: &Approvals, workflow_id: &str) -> Result<PendingApproval> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let state = approvals.run_state(workflow_id).await;
        if let Ok(state) = &state
            && let Some(a) = state
                .approvals
                .iter()
                .find(|a| a.state() == ApprovalState::Pending)
        {
            return Ok(a.clone());
        }
        if let Ok(state) = &state
            && state.status() != RunStatus::Running
        {
            bail!(
                "the demo run ended before asking for approval: {:?}",
                state.status()
            );
        }
        if Instant::now() > deadline {
            bail!("the demo run did not ask for approval within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
