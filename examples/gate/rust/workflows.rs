//! `PayInvoice`: a Rust workflow that asks Countersign before it pays.
//!
//! It runs the `ApprovalGate` workflow (Countersign's worker, task queue
//! `countersign`) as a child through `countersign_gate::gate_with`, and
//! calls its own `pay` activity only when the gate allows it, with the
//! arguments the gate returns (a reviewer's edits included) and the approval
//! id as the payment's idempotency key.
//!
//! Shared by `worker.rs`, `starter.rs` and the end-to-end test
//! (`tests/e2e/gate_callers.rs`); each uses part of it.
#![allow(dead_code, unreachable_pub)]

use countersign_gate::{GateOptions, GateOutcomeExt, gate_with};
use countersign_proto::{GateRequest, json_to_struct};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use temporalio_macros::{activities, workflow, workflow_methods};
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

/// The task queue of this example's own worker.
pub const TASK_QUEUE: &str = "pay-invoices";

/// What to pay, and where the payment API is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayInvoiceInput {
    pub invoice: String,
    pub amount: f64,
    pub to: String,
    pub requester: String,
    /// The payment API (POST, JSON, `Idempotency-Key`).
    pub pay_url: String,
    /// The registry agent whose policy applies (`payments` in
    /// examples/gate/agents/).
    #[serde(default = "default_agent")]
    pub agent: String,
    /// Countersign's task queue; `None`: `countersign`.
    #[serde(default)]
    pub gate_task_queue: Option<String>,
}

fn default_agent() -> String {
    "payments".into()
}

/// How it ended: the gate's state and message, and the payment if made.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PayInvoiceResult {
    /// The gate's state, e.g. `GATE_STATE_APPROVED`.
    pub state: String,
    pub message: String,
    pub approval_id: String,
    /// The payment API's HTTP status, when the payment was made.
    pub paid: Option<u16>,
}

/// One payment: the arguments the gate returned, keyed for idempotency.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    pub url: String,
    pub arguments: serde_json::Value,
    pub idempotency_key: String,
}

#[workflow]
#[derive(Default)]
pub struct PayInvoice;

#[workflow_methods]
impl PayInvoice {
    #[run]
    pub async fn run(
        ctx: &mut WorkflowContext<Self>,
        input: PayInvoiceInput,
    ) -> WorkflowResult<PayInvoiceResult> {
        let arguments = serde_json::json!({
            "invoice": input.invoice,
            "amount": input.amount,
            "to": input.to,
        });
        let request = GateRequest {
            agent: input.agent.clone(),
            tool: "pay_invoice".into(),
            arguments: json_to_struct(&arguments).ok(),
            requester: input.requester.clone(),
            context: format!(
                "PayInvoice: paying invoice {} to {}",
                input.invoice, input.to
            ),
            // Filled with this workflow's id when left empty.
            caller_workflow_id: String::new(),
            ..Default::default()
        };
        // One gate per invoice workflow, under a name an operator can find.
        let gate_id = format!("{}-gate", ctx.workflow_id());
        let options = GateOptions {
            workflow_id: Some(gate_id.clone()),
            task_queue: input.gate_task_queue.clone(),
        };
        let outcome = gate_with(ctx, request, options).await?;
        let mut result = PayInvoiceResult {
            state: outcome.state().as_str_name().to_string(),
            message: outcome.message.clone(),
            approval_id: outcome.approval_id.clone(),
            paid: None,
        };
        if outcome.allows_side_effect() {
            // The approval id keys the payment: a retried activity, or this
            // workflow replayed, never pays twice. NOT_REQUIRED has no
            // approval: the gate's workflow id stands in.
            let idempotency_key = if outcome.approval_id.is_empty() {
                gate_id
            } else {
                outcome.approval_id.clone()
            };
            let payment = Payment {
                url: input.pay_url.clone(),
                arguments: outcome.arguments_json(),
                idempotency_key,
            };
            let status = ctx
                .execute_activity(
                    PaymentActivities::pay,
                    payment,
                    ActivityOptions::start_to_close_timeout(Duration::from_secs(30)),
                )
                .await?;
            result.paid = Some(status);
        }
        Ok(result)
    }
}

pub struct PaymentActivities;

#[activities]
impl PaymentActivities {
    /// POSTs the payment with its idempotency key; the payee drops a retried
    /// duplicate. Answers the HTTP status.
    #[activity]
    pub async fn pay(_ctx: ActivityContext, payment: Payment) -> Result<u16, ActivityError> {
        let response = reqwest::Client::new()
            .post(&payment.url)
            .header("Idempotency-Key", &payment.idempotency_key)
            .json(&payment.arguments)
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?;
        Ok(response.status().as_u16())
    }
}
