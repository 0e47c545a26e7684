//! Decisions over their bounds, sent by a client that is not ours: the
//! official Temporal Python SDK (tests/python/oversized_decisions.py), by
//! update and by signal, at sizes up to just under Temporal's blob limit.
//! None may fail a workflow task or push the run's state past Temporal's
//! limits; the next real decision is taken at once and the run completes.

use crate::gate_bypass::PAYER;
use crate::harness::*;
use crate::reliability::HistoryTally;
use anyhow::{Context, Result, ensure};
use countersign_approvals::ApproveOptions;
use countersign_proto::contract::{MAX_REJECTED_RECORDS, MAX_REVIEWER_CHARS};
use countersign_proto::{RefusalCode, RunStatus};
use prost::Message;
use serde_json::Value;

/// The interpreter with the Temporal Python SDK (`scripts/test.sh` sets it up).
fn python() -> Result<String> {
    std::env::var("COUNTERSIGN_PYTHON").context(
        "COUNTERSIGN_PYTHON is not set: run the tests with scripts/test.sh, which installs the \
         Temporal Python SDK (countersign_ensure_python_sdk in scripts/lib.sh)",
    )
}

#[tokio::test]
async fn oversized_decisions_from_the_python_sdk_are_refused_and_the_run_goes_on() -> Result<()> {
    let python = python()?;
    let env = TestEnv::new("bounds").await?;
    let agent = env.agent(PAYER)?;
    env.with_worker(async {
        let id = env.start(agent, "pay acme").await?;
        let approval = env.pending(&id, 1).await?.remove(0);
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/python/oversized_decisions.py");
        let out = tokio::process::Command::new(&python)
            .arg(script)
            .args([server_address(), &id, &approval.approval_id])
            .output()
            .await?;
        ensure!(
            out.status.success(),
            "the Python client failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8(out.stdout)?;
        // The SDK's own log lines go to stdout too: the results are the JSON ones.
        let lines: Vec<Value> = stdout
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .with_context(|| format!("the Python client printed: {stdout}"))?;
        let updates: Vec<&Value> = lines.iter().filter(|l| l["channel"] == "update").collect();
        assert_eq!(updates.len(), 8, "{lines:?}");
        for update in &updates {
            let field = update["field"].as_str().unwrap_or_default();
            assert_eq!(update["refused"], true, "{field}: {update}");
            match field {
                // Unknown enum values do not decode: the SDK refuses the
                // update before the validator sees it (no code).
                "scope" | "kind" => assert!(
                    update["code"].is_null() || update["code"] == "REFUSAL_CODE_INVALID",
                    "{field}: {update}"
                ),
                "argumentsSha256" => assert_eq!(
                    update["code"].as_str(),
                    Some(RefusalCode::Invalid.as_str_name()),
                    "{update}"
                ),
                _ => assert_eq!(
                    update["code"].as_str(),
                    Some(RefusalCode::TooLarge.as_str_name()),
                    "{field}: {update}"
                ),
            }
            assert!(
                update["message_chars"].as_u64().unwrap_or(u64::MAX) < 300,
                "{field}: the refusal quotes too much: {update}"
            );
        }

        // Every signal (8 oversized, 60 small) has been taken when the
        // refused records show the flood's last one.
        let last = format!("{}-nope-59", approval.approval_id);
        let state = wait_for("the signals to be recorded", || async {
            let state = env.approvals.run_state(&id).await.ok()?;
            state
                .decisions
                .iter()
                .any(|d| d.approval_id == last)
                .then_some(state)
        })
        .await?;
        let refused: Vec<_> = state.decisions.iter().filter(|d| !d.accepted).collect();
        assert_eq!(
            refused.len(),
            MAX_REJECTED_RECORDS,
            "the latest refusals are kept"
        );
        assert_eq!(
            state.rejected_decisions_dropped as usize,
            8 + 60 - MAX_REJECTED_RECORDS
        );
        for record in &refused {
            assert!(record.reviewer.chars().count() <= MAX_REVIEWER_CHARS);
            assert!(record.message.len() < 1_000, "{}", record.message);
            assert!(record.edited_arguments.is_none());
        }
        assert!(
            state.encoded_len() < 256 * 1024,
            "the run's state is {} bytes",
            state.encoded_len()
        );
        assert!(env.sink.received("/payments").is_empty());

        // The next real decision is taken at once, and the run completes.
        let outcome = env
            .approvals
            .approve(
                &approval.approval_id,
                "bob@example.com",
                ApproveOptions::default(),
            )
            .await?;
        assert!(outcome.accepted, "{}", outcome.message);
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert_eq!(env.sink.received("/payments").len(), 1);
        let tally = HistoryTally::of(&env.client, std::slice::from_ref(&id)).await?;
        assert_eq!(
            tally.workflow_tasks_failed, 0,
            "{:?}",
            tally.workflow_task_failures
        );
        Ok(())
    })
    .await
}
