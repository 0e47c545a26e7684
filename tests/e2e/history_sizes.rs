//! What a workflow id's histories hold, for the payload tests and the
//! payload benchmark (`crates/countersign/benches/payloads.rs` includes this
//! file): every run of its continue-as-new chain, their protobuf size, and
//! the largest payload they carry.

use anyhow::{Result, bail};
use temporalio_client::{Client, WorkflowExecutionInfo, WorkflowFetchHistoryOptions};
use temporalio_common::protos::temporal::api::common::v1::Payloads;
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

/// The histories of every run of workflow `id`, first run first: a run that
/// continued as new names the one before it.
pub async fn histories(client: &Client, id: &str) -> Result<Vec<Vec<HistoryEvent>>> {
    let mut runs = Vec::new();
    let mut run_id: Option<String> = None;
    // Bounded: a 200-turn agent continues as new about 50 times.
    for _ in 0..10_000 {
        let events = WorkflowExecutionInfo::builder()
            .namespace("default")
            .workflow_id(id)
            .maybe_run_id(run_id.clone())
            .build()
            .bind_untyped(client.clone())
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
            .await?;
        let previous = match events.first().and_then(|e| e.attributes.as_ref()) {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                a.continued_execution_run_id.clone()
            }
            _ => String::new(),
        };
        runs.push(events);
        if previous.is_empty() {
            runs.reverse();
            return Ok(runs);
        }
        run_id = Some(previous);
    }
    bail!("more than 10,000 runs of {id}")
}

/// The protobuf size of a history: what Temporal stores for it.
pub fn history_bytes(events: &[HistoryEvent]) -> usize {
    use prost::Message;
    events.iter().map(Message::encoded_len).sum()
}

/// The largest payload (protobuf bytes) in the events that carry the run's
/// data: its input and result, activity inputs and results.
pub fn largest_payload(events: &[HistoryEvent]) -> usize {
    use prost::Message;
    let sizes = |payloads: &Option<Payloads>| -> Vec<usize> {
        payloads
            .iter()
            .flat_map(|p| p.payloads.iter().map(Message::encoded_len))
            .collect()
    };
    events
        .iter()
        .flat_map(|e| match &e.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => sizes(&a.input),
            Some(Attributes::WorkflowExecutionCompletedEventAttributes(a)) => sizes(&a.result),
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => sizes(&a.input),
            Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => sizes(&a.result),
            _ => vec![],
        })
        .max()
        .unwrap_or(0)
}
