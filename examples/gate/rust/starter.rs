//! Starts one `PayInvoice` workflow and prints its result as one JSON line.
//!
//! ```text
//! cargo run -p countersign-gate --example gate-starter -- \
//!     pay-1 INV-7 250 ACME http://127.0.0.1:8099/payments
//! ```
//!
//! Arguments: workflow id, invoice, amount, payee, payment API URL. Above
//! 100 the `payments` agent's policy asks a reviewer: approve or deny in
//! `countersign approvals list` / the dashboard, and the workflow goes on.

mod workflows;

use temporalio_client::{
    Client, ClientOptions, Connection, WorkflowGetResultOptions, WorkflowStartOptions,
    envconfig::LoadClientConfigProfileOptions,
};
use workflows::{PayInvoice, PayInvoiceInput, TASK_QUEUE};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [workflow_id, invoice, amount, to, pay_url] = args.as_slice() else {
        return Err("usage: gate-starter WORKFLOW_ID INVOICE AMOUNT PAYEE PAY_URL".into());
    };
    let (conn_opts, client_opts) =
        ClientOptions::load_from_config(LoadClientConfigProfileOptions::default())?;
    let connection = Connection::connect(conn_opts).await?;
    let client = Client::new(connection, client_opts)?;

    let input = PayInvoiceInput {
        invoice: invoice.clone(),
        amount: amount.parse()?,
        to: to.clone(),
        requester: "alice@example.com".into(),
        pay_url: pay_url.clone(),
        agent: "payments".into(),
        gate_task_queue: None,
    };
    let handle = client
        .start_workflow(
            PayInvoice::run,
            input,
            WorkflowStartOptions::new(TASK_QUEUE, workflow_id.clone()).build(),
        )
        .await?;
    eprintln!("started {workflow_id}; waiting for the gate's decision");
    let result = handle
        .get_result(WorkflowGetResultOptions::default())
        .await?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
