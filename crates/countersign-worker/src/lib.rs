//! The Countersign worker: the `AgentRun` workflow, its activities, the
//! built-in tools and the model providers.
//!
//! Workflow code ([`workflow`]) is deterministic: it evaluates the policy,
//! records approvals and waits; everything that touches the world (model
//! calls, tool calls) runs in [`activities`].

pub mod activities;
pub mod catalog;
pub mod model;
pub mod notify;
mod secrets;
pub mod tools;
pub mod workflow;

pub use activities::CountersignActivities;
pub use workflow::AgentRun;

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

/// Builds a worker that runs `AgentRun` workflows and Countersign activities
/// on `task_queue`. Call `run()` on the result.
pub fn build_worker(
    runtime: &temporalio_sdk::Runtime,
    client: Client,
    task_queue: &str,
) -> Result<Worker, WorkerError> {
    let options = WorkerOptions::new(task_queue)
        .register_workflow::<AgentRun>()
        .map_err(|e| WorkerError::Registration(e.to_string()))?
        .register_activities(CountersignActivities::new())
        .build();
    Worker::new(runtime, client, options).map_err(|e| WorkerError::Create(e.to_string()))
}
