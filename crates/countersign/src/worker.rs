//! `countersign worker`: a worker process for `AgentRun` workflows and their
//! activities, serving the agents of a folder (`--agents DIR`), tuned from
//! flags or `COUNTERSIGN_WORKER_*` variables, that
//! drains its activities in flight on SIGTERM or Ctrl-C, and optionally
//! serves Prometheus metrics (the SDK's and Countersign's tool counters).

use anyhow::{Context, Result, bail};
use clap::Args;
use countersign_proto::contract::TASK_QUEUE;
use countersign_proto::signing::TrustedKeys;
use countersign_worker::{AgentRegistry, ToolMetrics, WorkerTuning};
use std::sync::Arc;
use std::time::Duration;
use temporalio_sdk::runtime::RuntimeOptions;

/// The options of `countersign worker`. Every tuning flag has a
/// `COUNTERSIGN_WORKER_*` variable; a flag given on the command line wins.
#[derive(Args, Debug, Clone)]
pub struct WorkerArgs {
    /// The task queue to poll.
    #[arg(long, default_value = TASK_QUEUE)]
    pub task_queue: String,
    /// The agent registry: every `*.toml` under DIR (recursively) is an
    /// agent, keyed by its `name`; runs name one. Paths inside a file
    /// resolve against that file. A broken file, or two agents with one
    /// name, stops the worker at start.
    #[arg(long, value_name = "DIR", env = "COUNTERSIGN_AGENTS")]
    pub agents: Option<std::path::PathBuf>,
    /// Also accept runs that carry a whole agent definition in their input
    /// (for local development: an inline agent brings its own commands,
    /// URLs, approvers and policy, so anyone who can start a workflow
    /// decides what this worker runs).
    #[arg(long, env = "COUNTERSIGN_ALLOW_INLINE_AGENTS")]
    pub allow_inline_agents: bool,
    /// The public keys trusted to sign decisions: every `*.pub` file in DIR
    /// (SPKI PEM, from `countersign keys new`), its key id being the file's
    /// stem. Each run records the keys when it starts; agents with
    /// `require_signed_decisions` refuse decisions not signed by one of them.
    #[arg(long, value_name = "DIR", env = "COUNTERSIGN_TRUSTED_KEYS")]
    pub trusted_keys: Option<std::path::PathBuf>,
    /// Workflow runs kept in memory between tasks (the sticky cache). A run
    /// waiting for approval costs one entry until it is evicted; after that,
    /// its next decision replays its history once. 0 turns the cache off.
    #[arg(long, env = "COUNTERSIGN_WORKER_MAX_CACHED_WORKFLOWS",
          default_value_t = WorkerTuning::default().max_cached_workflows)]
    pub max_cached_workflows: usize,
    /// Workflow tasks processed at once (at least 2).
    #[arg(long, env = "COUNTERSIGN_WORKER_MAX_CONCURRENT_WORKFLOW_TASKS",
          default_value_t = WorkerTuning::default().max_concurrent_workflow_tasks,
          value_parser = at_least(2))]
    pub max_concurrent_workflow_tasks: usize,
    /// Activities (model turns, tool calls, notifications) run at once.
    #[arg(long, env = "COUNTERSIGN_WORKER_MAX_CONCURRENT_ACTIVITIES",
          default_value_t = WorkerTuning::default().max_concurrent_activities,
          value_parser = at_least(1))]
    pub max_concurrent_activities: usize,
    /// Concurrent long polls for workflow tasks (at least 2).
    #[arg(long, env = "COUNTERSIGN_WORKER_WORKFLOW_POLLERS",
          default_value_t = WorkerTuning::default().workflow_task_pollers,
          value_parser = at_least(2))]
    pub workflow_pollers: usize,
    /// Concurrent long polls for activity tasks.
    #[arg(long, env = "COUNTERSIGN_WORKER_ACTIVITY_POLLERS",
          default_value_t = WorkerTuning::default().activity_task_pollers,
          value_parser = at_least(1))]
    pub activity_pollers: usize,
    /// On SIGTERM or Ctrl-C, how many seconds activities in flight may take
    /// to finish before they are cancelled (and retried by another worker).
    #[arg(long, value_name = "SECONDS", env = "COUNTERSIGN_WORKER_SHUTDOWN_GRACE",
          default_value_t = WorkerTuning::default().graceful_shutdown.as_secs())]
    pub shutdown_grace: u64,
    /// Serve Prometheus metrics at http://ADDR/metrics: the Temporal SDK's
    /// worker metrics (`temporal_*`) and Countersign's tool counters. Off
    /// unless given; port 0 picks a free port (printed at start).
    #[arg(long, value_name = "ADDR", env = "COUNTERSIGN_WORKER_METRICS")]
    pub metrics: Option<std::net::SocketAddr>,
}

fn at_least(minimum: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |text| {
        let n: usize = text
            .parse()
            .map_err(|_| format!("`{text}` is not a whole number"))?;
        if n < minimum {
            return Err(format!("must be at least {minimum}"));
        }
        Ok(n)
    }
}

impl WorkerArgs {
    /// The tuning these options ask for.
    pub fn tuning(&self) -> WorkerTuning {
        WorkerTuning {
            max_cached_workflows: self.max_cached_workflows,
            max_concurrent_workflow_tasks: self.max_concurrent_workflow_tasks,
            max_concurrent_activities: self.max_concurrent_activities,
            workflow_task_pollers: self.workflow_pollers,
            activity_task_pollers: self.activity_pollers,
            graceful_shutdown: Duration::from_secs(self.shutdown_grace),
        }
    }
}

/// Starts the SDK's Prometheus exporter on `address` and returns runtime
/// options that send the SDK's metrics to it, Countersign's tool counters on
/// the same meter (so one endpoint serves both), and the bound address.
fn with_prometheus(
    address: std::net::SocketAddr,
) -> Result<(RuntimeOptions, ToolMetrics, std::net::SocketAddr)> {
    use temporalio_common::telemetry::{
        PrometheusExporterOptions, TelemetryOptions, metrics::CoreMeter,
        start_prometheus_metric_exporter,
    };
    let exporter = start_prometheus_metric_exporter(
        PrometheusExporterOptions::builder()
            .socket_addr(address)
            .build(),
    )
    .with_context(|| format!("cannot serve metrics on {address}"))?;
    let meter: Arc<dyn CoreMeter> = exporter.meter;
    let telemetry = TelemetryOptions::builder().metrics(meter.clone()).build();
    let options = RuntimeOptions::builder()
        .telemetry_options(telemetry)
        .build()
        .map_err(|e| anyhow::anyhow!("runtime options: {e}"))?;
    Ok((options, ToolMetrics::new(meter), exporter.bound_addr))
}

/// Loads the agent registry (or none) and says on stderr what it serves.
pub fn load_registry(dir: Option<&std::path::Path>, allow_inline: bool) -> Result<AgentRegistry> {
    let registry = match dir {
        Some(dir) => AgentRegistry::load(dir)?,
        None => AgentRegistry::empty(),
    }
    .allowing_inline(allow_inline);
    match dir {
        Some(dir) => {
            eprintln!("serving {} agents from {}:", registry.len(), dir.display());
            for (agent, path) in registry.agents() {
                eprintln!(
                    "  {} (sha256 {}, {})",
                    agent.name,
                    agent.sha256(),
                    path.display()
                );
            }
        }
        None if !allow_inline => eprintln!(
            "warning: no --agents DIR: this worker serves no agents, and every run it picks up fails (start runs of agents from a folder with --agents DIR)"
        ),
        None => {}
    }
    if allow_inline {
        eprintln!(
            "warning: --allow-inline-agents: runs may carry their own agent definitions (commands, URLs, approvers); for local development only"
        );
    }
    Ok(registry)
}

/// Loads the trusted public keys (or none) and says on stderr which.
pub fn load_trusted_keys(dir: Option<&std::path::Path>) -> Result<TrustedKeys> {
    let Some(dir) = dir else {
        return Ok(TrustedKeys::new());
    };
    let keys = countersign_worker::registry::load_trusted_keys(dir)?;
    if keys.is_empty() {
        eprintln!(
            "warning: --trusted-keys {}: no *.pub files; every signed decision is refused",
            dir.display()
        );
    } else {
        eprintln!(
            "trusting {} decision signing keys from {}: {}",
            keys.len(),
            dir.display(),
            keys.ids().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(keys)
}

/// How long after the grace period shutdown may still take (workflow tasks
/// in flight, reporting the cancelled activities) before the process gives up.
const SHUTDOWN_MARGIN: Duration = Duration::from_secs(15);

/// Refuses to serve a namespace without Countersign's search attributes:
/// every run would fail its workflow tasks at its first upsert. When the
/// server cannot say (no operator API), it warns and goes on.
async fn check_search_attributes(client: &temporalio_client::Client) -> Result<()> {
    match countersign_approvals::Approvals::new(client.clone())
        .missing_search_attributes()
        .await
    {
        Ok(missing) if missing.is_empty() => Ok(()),
        Ok(missing) => {
            let commands: Vec<String> = missing
                .iter()
                .map(|(name, kind)| {
                    format!("temporal operator search-attribute create --name {name} --type {kind}")
                })
                .collect();
            anyhow::bail!(
                "this namespace lacks search attributes every run sets ({}); create them first: {}",
                missing
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
                commands.join(" && ")
            )
        }
        Err(e) => {
            eprintln!("warning: could not check the search attributes ({e}); continuing");
            Ok(())
        }
    }
}

/// Runs the worker until SIGTERM or Ctrl-C, then drains: polling stops,
/// activities in flight get the grace period to finish, and the process
/// returns `Ok` (exit status 0). Runs waiting for approval are not touched:
/// they live in Temporal. A second signal stops at once, with an error.
pub async fn run(
    args: WorkerArgs,
    payload_store: Option<countersign_payloads::PayloadStore>,
) -> Result<()> {
    let tuning = args.tuning();
    // A broken agent file stops the worker before it connects.
    let agents = load_registry(args.agents.as_deref(), args.allow_inline_agents)?
        .with_trusted_keys(load_trusted_keys(args.trusted_keys.as_deref())?)
        .with_payload_store(payload_store.as_ref());
    let settings = countersign_approvals::connection_settings_from_env()?;
    let server = settings.summary();
    let mut client = countersign_approvals::connect_with(settings).await?;
    crate::payloads::install(&mut client, payload_store.as_ref());
    if let Some(store) = &payload_store {
        eprintln!("payloads of 128 KiB and more go to {}", store.url());
    }
    check_search_attributes(&client).await?;
    let (runtime_options, tool_metrics) = match args.metrics {
        Some(address) => {
            let (runtime_options, tool_metrics, bound) = with_prometheus(address)?;
            eprintln!("metrics at http://{bound}/metrics");
            (runtime_options, Some(tool_metrics))
        }
        None => (RuntimeOptions::default(), None),
    };
    let runtime = temporalio_sdk::Runtime::from_current_tokio(runtime_options)
        .context("starting the Temporal runtime")?;
    let mut worker = countersign_worker::build_worker_with_metrics(
        &runtime,
        client,
        &args.task_queue,
        agents,
        &tuning,
        tool_metrics.as_ref(),
    )?;
    let shutdown = worker.shutdown_handle();
    // Signals are caught before the first poll, so no task is ever taken
    // by a process that a SIGTERM would then kill outright.
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let run = worker.run();
    tokio::pin!(run);
    eprintln!(
        "countersign worker polling task queue `{}` on {server} (cache {}, workflow tasks {}, activities {}, pollers {}/{}, shutdown grace {}s)",
        args.task_queue,
        tuning.max_cached_workflows,
        tuning.max_concurrent_workflow_tasks,
        tuning.max_concurrent_activities,
        tuning.workflow_task_pollers,
        tuning.activity_task_pollers,
        args.shutdown_grace,
    );
    tokio::select! {
        result = &mut run => return result.context("the worker stopped"),
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!(
        "shutting down: no new tasks; activities in flight have {}s to finish (a second signal stops at once)",
        args.shutdown_grace
    );
    shutdown();
    let limit = tuning.graceful_shutdown + SHUTDOWN_MARGIN;
    tokio::select! {
        result = tokio::time::timeout(limit, &mut run) => match result {
            Ok(result) => result.context("the worker stopped")?,
            Err(_) => bail!("the worker did not stop within {}s", limit.as_secs()),
        },
        _ = tokio::signal::ctrl_c() => bail!("stopped before activities in flight finished"),
        _ = terminate.recv() => bail!("stopped before activities in flight finished"),
    }
    eprintln!("countersign worker stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        worker: WorkerArgs,
    }

    fn parse(args: &[&str]) -> Result<WorkerArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("worker").chain(args.iter().copied()))
            .map(|cli| cli.worker)
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        let args = parse(&[]).unwrap();
        assert_eq!(args.task_queue, TASK_QUEUE);
        assert_eq!(args.tuning(), WorkerTuning::default());
    }

    #[test]
    fn flags_set_every_knob() {
        let args = parse(&[
            "--max-cached-workflows",
            "0",
            "--max-concurrent-workflow-tasks",
            "8",
            "--max-concurrent-activities",
            "3",
            "--workflow-pollers",
            "2",
            "--activity-pollers",
            "1",
            "--shutdown-grace",
            "7",
        ])
        .unwrap();
        assert_eq!(
            args.tuning(),
            WorkerTuning {
                max_cached_workflows: 0,
                max_concurrent_workflow_tasks: 8,
                max_concurrent_activities: 3,
                workflow_task_pollers: 2,
                activity_task_pollers: 1,
                graceful_shutdown: Duration::from_secs(7),
            }
        );
    }

    #[test]
    fn values_the_sdk_would_refuse_are_refused_by_name() {
        for (flag, value) in [
            ("--workflow-pollers", "1"),
            ("--max-concurrent-workflow-tasks", "1"),
            ("--max-concurrent-activities", "0"),
            ("--activity-pollers", "0"),
            ("--shutdown-grace", "-1"),
        ] {
            let error = parse(&[&format!("{flag}={value}")])
                .unwrap_err()
                .to_string();
            assert!(error.contains(flag), "{flag} {value}: {error}");
        }
    }
}
