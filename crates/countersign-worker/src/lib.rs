//! The Countersign worker: the `AgentRun` workflow, its activities, the
//! built-in tools and the model providers.
//!
//! Workflow code ([`workflow`]) is deterministic: it evaluates the policy,
//! records approvals and waits; everything that touches the world (model
//! calls, tool calls) runs in [`activities`].

pub mod activities;
pub mod catalog;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod registry;
mod secrets;
pub mod tools;
pub mod workflow;

pub use activities::CountersignActivities;
pub use metrics::ToolMetrics;
pub use registry::AgentRegistry;
pub use workflow::{AgentRun, ApprovalGate};

use temporalio_client::Client;
use temporalio_sdk::{Worker, WorkerOptions};

/// Errors building a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The workflow could not be registered.
    #[error("cannot register the AgentRun workflow: {0}")]
    Registration(String),
    /// The SDK refused the worker.
    #[error("cannot create the worker: {0}")]
    Create(String),
}

/// How a worker uses its machine: the workflow cache, task slots and pollers,
/// and how long shutdown waits for activities in flight.
///
/// A run waiting for approval holds no slot and no poller; it only occupies a
/// cache entry until it is evicted, after which a decision replays its
/// history (one extra history fetch) instead of resuming from memory.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerTuning {
    /// Workflow runs kept in memory between tasks (sticky cache).
    pub max_cached_workflows: usize,
    /// Workflow tasks processed at once.
    pub max_concurrent_workflow_tasks: usize,
    /// Activities (model turns, tool calls, notifications) run at once.
    pub max_concurrent_activities: usize,
    /// Concurrent long polls for workflow tasks (at least 2 with a cache).
    pub workflow_task_pollers: usize,
    /// Concurrent long polls for activity tasks.
    pub activity_task_pollers: usize,
    /// On shutdown, how long activities in flight may run before they are
    /// cancelled (and retried by another worker).
    pub graceful_shutdown: std::time::Duration,
}

impl Default for WorkerTuning {
    fn default() -> Self {
        Self {
            max_cached_workflows: 1000,
            max_concurrent_workflow_tasks: 100,
            max_concurrent_activities: 100,
            workflow_task_pollers: 5,
            activity_task_pollers: 5,
            graceful_shutdown: std::time::Duration::from_secs(30),
        }
    }
}

/// Builds a worker that runs `AgentRun` workflows and Countersign activities
/// on `task_queue`, serving `agents`, with the default [`WorkerTuning`].
/// Call `run()` on the result.
pub fn build_worker(
    runtime: &temporalio_sdk::Runtime,
    client: Client,
    task_queue: &str,
    agents: AgentRegistry,
) -> Result<Worker, WorkerError> {
    build_tuned_worker(
        runtime,
        client,
        task_queue,
        agents,
        &WorkerTuning::default(),
    )
}

/// Builds a worker like [`build_worker`], tuned by `tuning`.
pub fn build_tuned_worker(
    runtime: &temporalio_sdk::Runtime,
    client: Client,
    task_queue: &str,
    agents: AgentRegistry,
    tuning: &WorkerTuning,
) -> Result<Worker, WorkerError> {
    build_worker_with_metrics(runtime, client, task_queue, agents, tuning, None)
}

/// Builds a worker like [`build_tuned_worker`] that also counts tool
/// executions on `metrics` (see [`ToolMetrics`]); the SDK's own worker
/// metrics go to the meter of `runtime`'s telemetry.
pub fn build_worker_with_metrics(
    runtime: &temporalio_sdk::Runtime,
    client: Client,
    task_queue: &str,
    agents: AgentRegistry,
    tuning: &WorkerTuning,
    metrics: Option<&ToolMetrics>,
) -> Result<Worker, WorkerError> {
    use temporalio_sdk::runtime::{
        PollerBehavior,
        worker_tuner::{FixedSizeSlotSupplier, TunerHolder},
    };
    let tuner = TunerHolder::builder()
        .workflow_task_slot_supplier(FixedSizeSlotSupplier::new(
            tuning.max_concurrent_workflow_tasks,
        ))
        .activity_task_slot_supplier(FixedSizeSlotSupplier::new(tuning.max_concurrent_activities))
        // Countersign starts no local activities and no Nexus operations.
        .local_activity_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .nexus_task_slot_supplier(FixedSizeSlotSupplier::new(1))
        .build();
    let mut options = WorkerOptions::new(task_queue)
        .register_workflow::<AgentRun>()
        .map_err(|e| WorkerError::Registration(e.to_string()))?
        .register_workflow::<ApprovalGate>()
        .map_err(|e| WorkerError::Registration(e.to_string()))?
        .register_activities(CountersignActivities::new(agents))
        .max_cached_workflows(tuning.max_cached_workflows)
        .tuner(tuner)
        .workflow_task_poller_behavior(PollerBehavior::SimpleMaximum(
            tuning.workflow_task_pollers.max(2),
        ))
        .activity_task_poller_behavior(PollerBehavior::SimpleMaximum(
            tuning.activity_task_pollers.max(1),
        ))
        .graceful_shutdown_period(tuning.graceful_shutdown);
    if let Some(metrics) = metrics {
        options = options.activity_inbound_interceptor(metrics.interceptor());
    }
    let options = options.build();
    Worker::new(runtime, client, options).map_err(|e| WorkerError::Create(e.to_string()))
}
