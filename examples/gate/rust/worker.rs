//! The worker of the `PayInvoice` example: polls `pay-invoices` for the
//! workflow and its `pay` activity. Countersign's worker (`countersign
//! worker --agents examples/gate/agents`, or `countersign dev`) runs the
//! gates on `countersign`.
//!
//! ```text
//! cargo run -p countersign-gate --example gate-worker
//! ```
//!
//! Connection settings come from the SDK's environment variables and
//! `temporal.toml` profiles (default `localhost:7233`, namespace `default`).

mod workflows;

use temporalio_client::{
    Client, ClientOptions, Connection, envconfig::LoadClientConfigProfileOptions,
};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use workflows::{PayInvoice, PaymentActivities, TASK_QUEUE};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let (conn_opts, client_opts) =
        ClientOptions::load_from_config(LoadClientConfigProfileOptions::default())?;
    let connection = Connection::connect(conn_opts).await?;
    let client = Client::new(connection, client_opts)?;

    let worker_options = WorkerOptions::new(TASK_QUEUE)
        .register_workflow::<PayInvoice>()?
        .register_activities(PaymentActivities)
        .build();

    let mut worker = Worker::new(&runtime, client, worker_options)?;
    worker.run().await?;
    Ok(())
}
