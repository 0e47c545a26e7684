//! Command-line parsing and the commands other than `dev` (see [`crate::demo`]).
//! Data for pipes goes to stdout (`--json` for lists and shows); progress and
//! logs go to stderr.

use crate::output::{approval_line, approval_text, run_text};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use countersign_approvals::{
    Approvals, ApproveOptions, PageRequest, PendingFilter, ReviewerFilter,
};
use countersign_policy::agent::AgentFile;
use countersign_policy::run::{AgentRunInput, AgentSpec, RunRequest};
use countersign_policy::{Agent, RunMode};
use countersign_proto::contract::TASK_QUEUE;
use std::io::Write;
use std::path::PathBuf;

/// Human approval gates for long-running AI agents, on Temporal.
///
/// Connection settings come from the Temporal SDK's standard environment
/// variables (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TLS
/// variables) and `temporal.toml` profiles (TEMPORAL_PROFILE).
#[derive(Parser, Debug)]
#[command(name = "countersign", version)]
pub struct Cli {
    /// Log lines on stderr: `text`, or `json` (one object a line, with the
    /// fields of its spans, such as approval_id, workflow_id and run_id, at
    /// the top level). `COUNTERSIGN_LOG` filters them (default `warn`).
    #[arg(
        long,
        global = true,
        value_enum,
        env = "COUNTERSIGN_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: crate::logging::LogFormat,
    /// Where payloads of 128 KiB and more go, leaving a reference in
    /// history: `file:///path` (or a plain path), `s3://bucket/prefix`,
    /// `gs://bucket/prefix`, `az://container/prefix` (credentials from the
    /// usual AWS_*, GOOGLE_*, AZURE_* variables). Workers, `serve` and the
    /// CLI of one namespace must all name the same store. `dev` uses
    /// STATE_DIR/payloads unless given one.
    #[arg(
        long,
        global = true,
        env = "COUNTERSIGN_PAYLOAD_STORE",
        value_name = "URL"
    )]
    pub payload_store: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The whole local stack on the embedded default: Temporal dev server
    /// (SQLite under .countersign/), search attributes, worker, and a demo run.
    Dev(crate::demo::DevArgs),
    /// Runs a worker for AgentRun workflows and their activities; SIGTERM or
    /// Ctrl-C drains the activities in flight, then exits.
    Worker(crate::worker::WorkerArgs),
    /// Starts, shows and lists agent runs.
    #[command(subcommand)]
    Run(RunCommand),
    /// Lists, shows and decides pending approvals.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// Checks agent files and shows their effective policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Serves the HTTP API, the dashboard and the Slack interactivity endpoint.
    Serve {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// The server config (reviewers with token hashes, Slack settings).
        #[arg(long, env = "COUNTERSIGN_SERVER_CONFIG")]
        config: Option<PathBuf>,
        /// The task queue `POST /runs` starts runs on.
        #[arg(long, default_value = TASK_QUEUE)]
        task_queue: String,
    },
    /// Creates reviewer tokens for the server config.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Creates keys that sign decisions.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand, Debug)]
enum KeysCommand {
    /// Writes a new Ed25519 key pair: OUT/ID.key (private, PKCS#8 PEM,
    /// mode 0600: for `serve`'s [signing] or `approvals --sign-key`) and
    /// OUT/ID.pub (public, SPKI PEM: for the workers' --trusted-keys).
    /// Never overwrites.
    New {
        /// The key id (1-64 letters, digits, `-`, `_`, `.`); decisions
        /// signed with it name it, and workers trust it as ID.pub.
        #[arg(long)]
        id: String,
        /// The folder to write both files to.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Prints a new random token (stdout) and the `[[reviewers]]` entry with
    /// its hash for the server config (stderr). Only the hash is stored.
    New {
        /// The reviewer identity recorded on their decisions.
        #[arg(long)]
        reviewer: String,
        /// Comma-separated groups.
        #[arg(long, default_value = "")]
        groups: String,
    },
}

#[derive(Subcommand, Debug)]
enum PolicyCommand {
    /// Validates an agent file as a worker does and prints, tool by tool,
    /// when a call needs approval and who may decide.
    Check {
        /// The agent file.
        agent: std::path::PathBuf,
        /// Also list the tools of its MCP servers and OpenAPI documents
        /// (connects to the servers and reads the documents, as a run's
        /// discovery does) with the gate of each.
        #[arg(long)]
        discover: bool,
    },
}

#[derive(Subcommand, Debug)]
enum RunCommand {
    /// Starts an agent run.
    Start(RunStartArgs),
    /// Shows a run: status, transcript and decisions.
    Show {
        /// The run's workflow id.
        id: String,
        /// Print the RunState as proto3 JSON.
        #[arg(long)]
        json: bool,
    },
    /// Lists runs, newest first.
    List {
        /// Only runs with this CountersignStatus (Running, AwaitingApproval, Completed, Failed, Cancelled).
        #[arg(long)]
        status: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Print a JSON array.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
struct RunStartArgs {
    /// The agent: the name of an agent the workers serve (their `--agents`
    /// folder), or an agent file (`*.toml`), sent inline for development
    /// (only workers started with --allow-inline-agents accept it, as
    /// `countersign dev`'s does).
    #[arg(long, value_name = "NAME|FILE")]
    agent: String,
    /// Pin the agent's definition: the run fails unless the worker's has
    /// this SHA-256 (the worker prints each agent's at start).
    #[arg(long, value_name = "HEX")]
    agent_sha256: Option<String>,
    /// The user's request.
    #[arg(long)]
    prompt: String,
    /// Overrides the agent file's mode.
    #[arg(long, value_parser = parse_mode)]
    mode: Option<RunMode>,
    /// Who asks for the run (an email or service name): recorded on the run
    /// and its approvals, and barred from approving them where separation of
    /// duties applies. Default: $COUNTERSIGN_REQUESTER, else $USER.
    #[arg(long)]
    requester: Option<String>,
    /// The workflow id (default: <agent>-<time>).
    #[arg(long)]
    id: Option<String>,
    /// The task queue of the worker.
    #[arg(long, default_value = TASK_QUEUE)]
    task_queue: String,
    /// Wait for the run to finish and print it.
    #[arg(long)]
    wait: bool,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum ApprovalsCommand {
    /// Lists pending approvals across runs, newest run first, from Temporal
    /// visibility (no run is asked: it works with every worker stopped).
    /// Entries are summaries: `approvals show ID` has the full arguments.
    List {
        /// Print every page as one JSON array of PendingApproval (proto3
        /// JSON, `argumentsExcerpt` instead of `arguments`), streamed.
        #[arg(long)]
        json: bool,
        /// Only approvals of this agent.
        #[arg(long)]
        agent: Option<String>,
        /// Only approvals of this tool (e.g. `pay`, `gmail.send`).
        #[arg(long)]
        tool: Option<String>,
        /// Only approvals of runs this person started.
        #[arg(long)]
        requester: Option<String>,
        /// Only approvals this reviewer may decide (named, in one of their
        /// `--group`s, or open to anyone; not their own request under
        /// separation of duties).
        #[arg(long)]
        approver: Option<String>,
        /// A group of `--approver` (repeat for several).
        #[arg(long = "group", requires = "approver")]
        groups: Vec<String>,
        /// Runs per page (1 to 1000).
        #[arg(long, default_value_t = 50)]
        page_size: u32,
        /// Start at this page (printed at the end of the previous one).
        #[arg(long)]
        page_token: Option<String>,
        /// Print every page, not just one (always so with --json).
        #[arg(long)]
        all: bool,
    },
    /// Shows one approval with full context.
    Show {
        /// The approval id.
        id: String,
        /// Print the PendingApproval as proto3 JSON.
        #[arg(long)]
        json: bool,
    },
    /// Approves pending calls (several ids: a batch of one run, each
    /// decided on its own, one line per outcome).
    Approve {
        /// The approval ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
        /// Run the call with these arguments instead (a JSON object).
        #[arg(long)]
        arguments: Option<String>,
        /// The argumentsSha256 you reviewed; refused if the call's differs
        /// (with --for-rest-of-run: only calls with these arguments ride on it).
        #[arg(long)]
        arguments_sha256: Option<String>,
        /// Approve this tool for the rest of the run (a sticky approval; never for money).
        #[arg(long)]
        for_rest_of_run: bool,
        /// Who decides (default: $COUNTERSIGN_REVIEWER, else $USER).
        #[arg(long)]
        reviewer: Option<String>,
        /// Send by signal (fire-and-forget) instead of update.
        #[arg(long)]
        signal: bool,
        /// Sign the decision with this private key (PKCS#8 PEM, from
        /// `countersign keys new`); its key id is the file's stem.
        #[arg(long, value_name = "FILE", env = "COUNTERSIGN_SIGN_KEY")]
        sign_key: Option<PathBuf>,
    },
    /// Denies pending calls (several ids: a batch of one run); the model is
    /// told the reason.
    Deny {
        /// The approval ids.
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        /// Why (the model sees it).
        #[arg(long)]
        reason: String,
        /// Who decides (default: $COUNTERSIGN_REVIEWER, else $USER).
        #[arg(long)]
        reviewer: Option<String>,
        /// Send by signal (fire-and-forget) instead of update.
        #[arg(long)]
        signal: bool,
        /// Sign the decision with this private key (PKCS#8 PEM, from
        /// `countersign keys new`); its key id is the file's stem.
        #[arg(long, value_name = "FILE", env = "COUNTERSIGN_SIGN_KEY")]
        sign_key: Option<PathBuf>,
    },
}

fn parse_mode(text: &str) -> Result<RunMode, String> {
    match text {
        "autonomous" => Ok(RunMode::Autonomous),
        "user-requested" | "user_requested" => Ok(RunMode::UserRequested),
        other => Err(format!(
            "`{other}` is not a mode: use autonomous or user-requested"
        )),
    }
}

/// Who is acting: the flag, else `$variable`, else `$USER`.
fn identity(explicit: Option<String>, variable: &str, flag: &str) -> Result<String> {
    explicit
        .or_else(|| std::env::var(variable).ok())
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.trim().is_empty())
        .with_context(|| {
            format!(
                "say who you are: pass {flag} WHO (an email or service name), or set {variable}; without them the default is $USER, which is not set here"
            )
        })
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<()> {
    let store_url = cli.payload_store.as_deref();
    match cli.command {
        Command::Dev(args) => crate::demo::dev(args, store_url).await,
        Command::Worker(args) => crate::worker::run(args, crate::payloads::open(store_url)?).await,
        Command::Run(command) => {
            run_command(command, crate::payloads::open(store_url)?.as_ref()).await
        }
        Command::Approvals(command) => {
            approvals_command(command, crate::payloads::open(store_url)?.as_ref()).await
        }
        Command::Serve {
            listen,
            config,
            task_queue,
        } => {
            let store = crate::payloads::open(store_url)?;
            serve(&listen, config.as_deref(), task_queue, store.as_ref()).await
        }
        Command::Keys(KeysCommand::New { id, out }) => {
            let (private, public) = crate::keys::new_key_pair(&id, &out)?;
            println!("{}", public.display());
            eprintln!(
                "wrote {} (private: keep it where only the signer reads it) and {} (public: copy it into each worker's --trusted-keys folder)",
                private.display(),
                public.display()
            );
            Ok(())
        }
        Command::Token(TokenCommand::New { reviewer, groups }) => {
            if reviewer.trim().is_empty() || reviewer.chars().any(char::is_control) {
                anyhow::bail!(
                    "--reviewer must name the reviewer (an email or service name, one line)"
                );
            }
            let token = new_token()?;
            // JSON strings are valid TOML basic strings: the stanza parses
            // whatever the names contain.
            let toml_string = |s: &str| serde_json::Value::from(s).to_string();
            let groups: Vec<String> = groups
                .split(',')
                .map(str::trim)
                .filter(|g| !g.is_empty())
                .map(toml_string)
                .collect();
            println!("{token}");
            eprintln!(
                "# Add to the server config (--config). Give the token printed on stdout to {reviewer}\n# only: the config keeps its SHA-256, so it cannot be shown again.\n[[reviewers]]\nid = {}\ntoken_sha256 = \"{}\"\ngroups = [{}]",
                toml_string(&reviewer),
                countersign_server::config::token_sha256(&token),
                groups.join(", ")
            );
            Ok(())
        }
        Command::Policy(PolicyCommand::Check { agent, discover }) => {
            let agent = load_agent(&agent)?;
            let discovered = if discover {
                let http = reqwest::Client::new();
                let discovery = countersign_worker::catalog::discover(&http, agent.file()).await;
                for problem in &discovery.problems {
                    eprintln!("warning: {problem}");
                }
                Some(discovery.tools)
            } else {
                None
            };
            print!(
                "{}",
                crate::policy_check::report(&agent, discovered.as_deref())
            );
            Ok(())
        }
    }
}

/// 32 random bytes from the OS, as hex: a reviewer token.
pub fn new_token() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(format!("cs_{}", hex_encode(&bytes)))
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn serve(
    listen: &str,
    config: Option<&std::path::Path>,
    task_queue: String,
    store: Option<&countersign_payloads::PayloadStore>,
) -> Result<()> {
    let config = match config {
        Some(path) => {
            let config = countersign_server::ServerConfig::from_file(path)?;
            if config.reviewers.is_empty() {
                eprintln!(
                    "warning: {} lists no [[reviewers]]: no one can authenticate (see `countersign token new`)",
                    path.display()
                );
            }
            config
        }
        None => {
            eprintln!(
                "warning: no --config: no reviewer can authenticate (see `countersign token new`)"
            );
            countersign_server::ServerConfig::default()
        }
    };
    let approvals = crate::payloads::connect_approvals(store).await?;
    let signing = config.signing.clone();
    let mut state = countersign_server::AppState::new(approvals, config, task_queue)?;
    if let Some(store) = store {
        state = state.with_payload_store(store.clone());
    }
    match signing {
        Some(signing) => {
            let key =
                crate::keys::read_key_file(&signing.key_file).context("[signing] key_file")?;
            state = state.with_signer(countersign_server::DecisionSigner::new(
                &signing.key_id,
                key,
            )?);
            eprintln!(
                "countersign serve: signing every decision with key `{}`",
                signing.key_id
            );
        }
        None => eprintln!(
            "countersign serve: no [signing] key: decisions are sent unsigned, and agents with require_signed_decisions refuse them"
        ),
    }
    if state.sessions.is_ephemeral() {
        eprintln!(
            "countersign serve: dashboard sessions are signed with a random key made at start, so they end when serve restarts; set [dashboard] session_key_env to keep them across restarts and replicas"
        );
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!(
        "countersign serve: http://{} (dashboard at /, API under /approvals and /runs, /openapi.json)",
        listener.local_addr()?
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    axum::serve(listener, countersign_server::app(state))
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
        })
        .await
        .context("the server stopped")
}

/// Reads an agent file as a worker does (paths resolve against the file,
/// `${VAR}` from this environment), validates it with the constructor the
/// workflow uses, and checks its OpenAPI documents, so a broken one is
/// reported now instead of to the model later.
pub fn load_agent(path: &std::path::Path) -> Result<Agent> {
    let file = AgentFile::from_file(path)?;
    let problems = countersign_worker::catalog::preflight(&file);
    if !problems.is_empty() {
        anyhow::bail!("{}: {}", path.display(), problems.join("; "));
    }
    Agent::new(file).with_context(|| format!("{}", path.display()))
}

/// What `run start --agent` names: an agent file (a path that exists or
/// ends in `.toml`), loaded here and sent inline, or a registry name.
fn agent_spec(agent: &str) -> Result<AgentSpec> {
    let path = std::path::Path::new(agent);
    if agent.ends_with(".toml") || path.is_file() {
        let agent = load_agent(path)?;
        return Ok(AgentSpec::Inline(Box::new(agent.file().clone())));
    }
    Ok(AgentSpec::Name(agent.to_string()))
}

async fn run_command(
    command: RunCommand,
    store: Option<&countersign_payloads::PayloadStore>,
) -> Result<()> {
    // A bad agent file or input is reported before any connection is attempted.
    let input = match &command {
        RunCommand::Start(args) => {
            let agent = agent_spec(&args.agent)?;
            let requester = identity(
                args.requester.clone(),
                "COUNTERSIGN_REQUESTER",
                "--requester",
            )?;
            let input = AgentRunInput {
                agent,
                mode: args.mode,
                agent_sha256: args.agent_sha256.clone(),
                ..AgentRunInput::named("", &args.prompt, &requester)
            };
            Some(RunRequest::new(input)?.input().clone())
        }
        _ => None,
    };
    let approvals = crate::payloads::connect_approvals(store).await?;
    match command {
        RunCommand::Start(args) => {
            let input = input.expect("built above");
            let id = args
                .id
                .unwrap_or_else(|| default_run_id(input.agent.name()));
            let id = approvals
                .start_run(input, &id, Some(&args.task_queue))
                .await?;
            eprintln!("started run {id}");
            if args.wait {
                let state = approvals.wait_for_run(&id).await?;
                if args.json {
                    println!("{}", serde_json::to_string_pretty(&state)?);
                } else {
                    print!("{}", run_text(&state));
                }
            } else if args.json {
                println!("{}", serde_json::json!({ "workflowId": id }));
            } else {
                println!("{id}");
            }
        }
        RunCommand::Show { id, json } => {
            let state = approvals
                .run_state(&id)
                .await
                .map_err(|e| crate::payloads::hint(e.into(), store.is_some()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&state)?);
            } else {
                print!("{}", run_text(&state));
            }
        }
        RunCommand::List {
            status,
            limit,
            json,
        } => {
            let runs = approvals.list_runs(status.as_deref(), Some(limit)).await?;
            if json {
                let rows: Vec<_> = runs
                    .iter()
                    .map(|r| {
                        serde_json::json!({
                            "workflowId": r.workflow_id,
                            "status": r.status,
                            "agent": r.agent,
                            "requester": r.requester,
                            "pendingTools": r.pending_tools,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in runs {
                    println!(
                        "{}  {}  agent={} requester={}{}",
                        r.workflow_id,
                        r.status,
                        r.agent,
                        r.requester,
                        if r.pending_tools.is_empty() {
                            String::new()
                        } else {
                            format!(" waiting: {}", r.pending_tools.join(","))
                        }
                    );
                }
            }
        }
    }
    Ok(())
}

async fn approvals_command(
    command: ApprovalsCommand,
    store: Option<&countersign_payloads::PayloadStore>,
) -> Result<()> {
    let approvals = crate::payloads::connect_approvals(store).await?;
    match command {
        ApprovalsCommand::List {
            json,
            agent,
            tool,
            requester,
            approver,
            groups,
            page_size,
            page_token,
            all,
        } => {
            let filter = PendingFilter {
                agent,
                tool,
                requester,
                approver: approver.map(|reviewer| ReviewerFilter { reviewer, groups }),
            };
            let mut page = PageRequest {
                page_size: Some(page_size),
                page_token,
            };
            let mut out = std::io::stdout().lock();
            let mut listed = 0usize;
            if json {
                write!(out, "[")?;
            }
            loop {
                let next = approvals.list_pending_page(&filter, &page).await?;
                for (workflow_id, problem) in &next.incomplete {
                    eprintln!("warning: run {workflow_id}: {problem}");
                }
                for a in &next.approvals {
                    if json {
                        let separator = if listed == 0 { "\n" } else { ",\n" };
                        write!(out, "{separator}{}", serde_json::to_string_pretty(a)?)?;
                    } else {
                        writeln!(out, "{}", approval_line(a))?;
                    }
                    listed += 1;
                }
                out.flush()?;
                match next.next_page_token {
                    Some(token) if json || all => page.page_token = Some(token),
                    Some(token) => {
                        eprintln!(
                            "more: countersign approvals list --page-token {token} (or --all)"
                        );
                        break;
                    }
                    None => break,
                }
            }
            if json {
                writeln!(out, "{}]", if listed == 0 { "" } else { "\n" })?;
            } else if listed == 0 {
                eprintln!("no pending approvals");
            }
        }
        ApprovalsCommand::Show { id, json } => {
            let approval = approvals.get(&id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&approval)?);
            } else {
                print!("{}", approval_text(&approval));
            }
        }
        ApprovalsCommand::Approve {
            ids,
            reason,
            arguments,
            arguments_sha256,
            for_rest_of_run,
            reviewer,
            signal,
            sign_key,
        } => {
            let approvals = signing(approvals, sign_key.as_deref())?;
            let reviewer = identity(reviewer, "COUNTERSIGN_REVIEWER", "--reviewer")?;
            let edited_arguments = arguments
                .map(|text| {
                    serde_json::from_str::<serde_json::Value>(&text)
                        .context("--arguments must be a JSON object")
                })
                .transpose()?;
            if edited_arguments.as_ref().is_some_and(|v| !v.is_object()) {
                bail!("--arguments must be a JSON object");
            }
            if ids.len() > 1 && (edited_arguments.is_some() || arguments_sha256.is_some()) {
                bail!("--arguments and --arguments-sha256 apply to one approval; give one id");
            }
            let decisions = ids
                .iter()
                .map(|id| {
                    countersign_approvals::approve_decision(
                        id,
                        &reviewer,
                        ApproveOptions {
                            reason: reason.clone(),
                            edited_arguments: edited_arguments.clone(),
                            arguments_sha256: arguments_sha256.clone(),
                            for_rest_of_run,
                        },
                    )
                })
                .collect::<Result<Vec<_>, _>>()?;
            send_decisions(&approvals, decisions, signal).await?;
        }
        ApprovalsCommand::Deny {
            ids,
            reason,
            reviewer,
            signal,
            sign_key,
        } => {
            let approvals = signing(approvals, sign_key.as_deref())?;
            let reviewer = identity(reviewer, "COUNTERSIGN_REVIEWER", "--reviewer")?;
            if reason.trim().is_empty() {
                bail!("--reason must say why: the model is told");
            }
            let decisions = ids
                .iter()
                .map(|id| countersign_approvals::deny_decision(id, &reviewer, &reason))
                .collect();
            send_decisions(&approvals, decisions, signal).await?;
        }
    }
    Ok(())
}

/// The client, signing with the key in `file` when one is given.
fn signing(approvals: Approvals, file: Option<&std::path::Path>) -> Result<Approvals> {
    let Some(file) = file else {
        return Ok(approvals);
    };
    let (key_id, key) = crate::keys::read_signing_key(file)?;
    Ok(approvals.with_signing_key(&key_id, key)?)
}

/// Sends decisions: one by update (its answer printed), several as a batch
/// (one line per approval; fails if any was refused), or by signal.
async fn send_decisions(
    approvals: &Approvals,
    decisions: Vec<countersign_proto::Decision>,
    signal: bool,
) -> Result<()> {
    if signal {
        for decision in decisions {
            let id = decision.approval_id.clone();
            approvals.send_decision(decision).await?;
            eprintln!("sent the decision on {id} by signal");
        }
        return Ok(());
    }
    if let [decision] = decisions.as_slice() {
        let outcome = approvals.decide(decision.clone()).await?;
        println!("{}", outcome.message);
        return Ok(());
    }
    let mut refused = 0;
    for (id, outcome) in approvals.decide_batch(decisions).await? {
        match outcome {
            Ok(outcome) => println!("{id}: {}", outcome.message),
            Err(e) => {
                refused += 1;
                println!("{id}: refused: {e}");
            }
        }
    }
    if refused > 0 {
        bail!("{refused} of the decisions were refused");
    }
    Ok(())
}

/// `<agent>-<unix millis>`: unique enough for a person starting runs by hand.
pub fn default_run_id(agent: &str) -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("{agent}-{millis}")
}
