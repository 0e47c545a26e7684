//! What operators and other processes do: the `temporal` CLI, the
//! `countersign` CLI, a worker killed mid-wait, `countersign dev`, and the
//! stored replay histories.

use crate::gated_runs::pay_agent;
use crate::harness::*;
use anyhow::{Context, Result};
use countersign_proto::{ApprovalState, PendingApproval, RunStatus};
use serde_json::json;
use std::process::{Command, Stdio};

#[tokio::test]
async fn temporal_cli_signal_with_hand_written_json_resumes_the_run() -> Result<()> {
    let env = TestEnv::new("cli-signal").await?;
    env.with_worker(async {
        let id = env.start(env.agent(&pay_agent())?, "pay invoice 7").await?;
        let approval = env.pending(&id, 1).await?.remove(0);

        // An operator finds the waiting run by its search attribute.
        let query = format!("CountersignStatus = 'AwaitingApproval' AND WorkflowId = '{id}'");
        let listed = wait_for("the run in `temporal workflow list --query`", || async {
            let out = tokio::process::Command::new(countersign::devserver::temporal_cli().ok()?)
                .args(["workflow", "list", "--address", server_address(), "--query", &query, "-o", "json"])
                .output()
                .await
                .ok()?;
            let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
            rows.into_iter().next()
        })
        .await?;
        assert_eq!(listed["execution"]["workflowId"], id.as_str(), "{listed}");

        // Malformed payloads: recorded as rejected, the run stays healthy.
        temporal_signal(&id, r#"{"approvalId": 42, "kind": "DECISION_KIND_APPROVE"}"#).await?;
        temporal_signal(&id, r#""approve please""#).await?;
        temporal_signal(&id, &format!(r#"{{"approvalId":"{}","kind":"MAYBE","reviewer":"x"}}"#, approval.approval_id)).await?;
        let state = wait_for("three rejected signals", || async {
            let s = env.approvals.run_state(&id).await.ok()?;
            (s.decisions.iter().filter(|d| !d.accepted).count() == 3).then_some(s)
        })
        .await?;
        assert!(state.decisions.iter().all(|d| !d.accepted && d.channel == "signal"));
        assert!(state.decisions.iter().all(|d| d.message.starts_with("malformed decision")), "{:?}", state.decisions);
        assert_eq!(env.approvals.pending_of_run(&id).await?.len(), 1);

        // A decision typed by hand, with edited arguments.
        temporal_signal(
            &id,
            &format!(
                r#"{{"approvalId":"{}","kind":"DECISION_KIND_APPROVE","reviewer":"ops@example.com","reason":"pay part now","editedArguments":{{"to":"acme","amount":100,"currency":"EUR"}}}}"#,
                approval.approval_id
            ),
        ).await?;
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        let payments = env.sink.received("/payments");
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].body, json!({"to": "acme", "amount": 100, "currency": "EUR"}));
        let decision = state.decisions.iter().find(|d| d.accepted).unwrap();
        assert_eq!(decision.reviewer, "ops@example.com");
        assert_eq!(decision.resulting_state(), ApprovalState::ApprovedWithEdits);

        env.record_and_replay(&id, "signal_edit").await
    })
    .await
}

#[tokio::test]
async fn cli_lists_shows_and_decides_approvals() -> Result<()> {
    let env = TestEnv::new("cli").await?;
    env.with_worker(async {
        let id = env.start(env.agent(&pay_agent())?, "pay invoice 7").await?;
        let approval = env.pending(&id, 1).await?.remove(0);

        // Visibility may lag the run by a moment: poll the listing.
        let listed: PendingApproval =
            wait_for("the approval in `approvals list --json`", || async {
                let out = countersign(&["approvals", "list", "--json"]).await.ok()?;
                let all: Vec<PendingApproval> = serde_json::from_slice(&out.stdout).ok()?;
                all.into_iter()
                    .find(|a| a.approval_id == approval.approval_id)
            })
            .await?;
        assert_eq!(listed.tool.as_ref().unwrap().name, "pay");
        let out = countersign(&["run", "list", "--status", "AwaitingApproval", "--json"]).await?;
        let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)?;
        let row = rows
            .iter()
            .find(|r| r["workflowId"] == id.as_str())
            .expect("the waiting run is listed");
        assert_eq!(row["pendingTools"], json!(["pay"]));
        assert_eq!(listed.workflow_id, id);
        assert_eq!(listed.conversation_id, id);
        assert_eq!(listed.requester, "alice@example.com");
        assert!(listed.rule.starts_with("money"));
        assert!(listed.expires_at.is_some());
        // The list carries a summary: the arguments' canonical JSON as an
        // excerpt; `approvals show` asks the run for all of it.
        assert!(listed.arguments.is_none());
        assert_eq!(
            listed.arguments_excerpt,
            r#"{"amount":120,"currency":"EUR","to":"acme"}"#
        );
        // The raw JSON is proto3 JSON (camelCase).
        let out = countersign(&["approvals", "show", &approval.approval_id, "--json"]).await?;
        let raw: serde_json::Value = serde_json::from_slice(&out.stdout)?;
        assert_eq!(
            countersign_proto::canonical_json(&raw["arguments"]),
            listed.arguments_excerpt
        );
        assert_eq!(raw["approvalId"], approval.approval_id.as_str());
        assert_eq!(raw["argumentsSha256"], approval.arguments_sha256.as_str());
        assert_eq!(raw["state"], "APPROVAL_STATE_PENDING");

        let out = countersign(&[
            "approvals",
            "deny",
            &approval.approval_id,
            "--reviewer",
            "dave@example.com",
        ])
        .await?;
        assert!(!out.status.success(), "deny without --reason must fail");
        let out = countersign(&[
            "approvals",
            "deny",
            &approval.approval_id,
            "--reason",
            "not this week",
            "--reviewer",
            "dave@example.com",
        ])
        .await?;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("denied by dave@example.com"));
        let again = countersign(&[
            "approvals",
            "approve",
            &approval.approval_id,
            "--reviewer",
            "erin",
        ])
        .await?;
        assert!(!again.status.success());
        // Refused with who decided, whether the run is still finishing
        // ("already decided by …") or has finished ("closed (DENIED by …)").
        let refusal = String::from_utf8_lossy(&again.stderr);
        assert!(
            refusal.contains("by dave@example.com") && refusal.contains("DENIED"),
            "{refusal}"
        );

        let state = env.result(&id).await?;
        assert!(env.sink.received("/payments").is_empty());
        let completed = wait_for("the run listed as Completed", || async {
            let out = countersign(&["run", "list", "--status", "Completed", "--json"])
                .await
                .ok()?;
            let rows: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).ok()?;
            rows.into_iter().find(|r| r["workflowId"] == id.as_str())
        })
        .await?;
        assert_eq!(completed["agent"], "t-pay");
        assert_eq!(completed["requester"], "alice@example.com");
        assert_eq!(completed["pendingTools"], json!([]));
        let out = countersign(&["run", "show", &id]).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("COMPLETED"), "{text}");
        assert!(text.contains("DENIED pay by dave@example.com"), "{text}");
        assert_eq!(state.status(), RunStatus::Completed);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_killed_worker_loses_nothing() -> Result<()> {
    let env = TestEnv::new("sigkill").await?;
    let first = WorkerProcess::start(&env.task_queue, &[], &[]).await?;
    let id = env.start(env.agent(&pay_agent())?, "pay invoice 7").await?;
    let approval = env.pending(&id, 1).await?.remove(0);
    // SIGKILL: no graceful shutdown, nothing flushed.
    first.kill().await?;
    let _second = WorkerProcess::start(&env.task_queue, &[], &[]).await?;
    let outcome = env
        .approvals
        .approve(&approval.approval_id, "bob", Default::default())
        .await?;
    assert!(outcome.accepted);
    let state = env.result(&id).await?;
    assert_eq!(state.status(), RunStatus::Completed);
    let payments = env.sink.received("/payments");
    assert_eq!(
        payments.len(),
        1,
        "the approved payment must run exactly once"
    );
    assert_eq!(payments[0].idempotency_key, approval.approval_id);
    env.record_and_replay(&id, "crash_resume").await
}

#[tokio::test]
async fn stored_histories_replay_on_current_code() -> Result<()> {
    let mut replayed = Vec::new();
    for entry in std::fs::read_dir(histories_dir())? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let json = std::fs::read(&path)?;
            replay(&json)
                .await
                .with_context(|| format!("replaying {}", path.display()))?;
            replayed.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    replayed.sort();
    for expected in [
        "approve.json",
        "continue_as_new.json",
        "crash_resume.json",
        "deny.json",
        "escalate_expire.json",
        "expire.json",
        "gate_approve.json",
        "invented_tool.json",
        "mcp.json",
        "openai.json",
        "parallel.json",
        "quorum.json",
        "registry_approve.json",
        "signal_edit.json",
        "sticky.json",
        "sub_agent.json",
        "worker_crash_stages.json",
        "transcript_store.json",
        "gate_cancel_early.json",
    ] {
        assert!(
            replayed.iter().any(|r| r == expected),
            "missing history {expected}: {replayed:?}"
        );
    }
    Ok(())
}

#[tokio::test]
async fn countersign_dev_reuses_a_listening_server() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = server_address().rsplit(':').next().unwrap().to_string();
    let state_dir = dir.path().join("state");
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .args([
            "dev",
            "--exit-after-demo",
            "--decide",
            "approve",
            "--port",
            &port,
            "--http",
            "off",
        ])
        .arg("--state-dir")
        .arg(&state_dir)
        .stdin(Stdio::null())
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("reusing the Temporal server already listening"),
        "{stderr}"
    );
    assert!(!stderr.contains("starting Temporal dev server"), "{stderr}");
    assert!(stderr.contains("approved by"), "{stderr}");
    assert!(
        stderr.contains("payments API received 1 payment request(s)"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("COMPLETED"), "{stdout}");
    // The demo's run keeps its transcript in the dev payload store; the
    // demo prints all of it, the user's request first.
    assert!(stdout.contains("\n  user: "), "{stdout}");
    assert!(
        !stdout.contains("earlier entries are in the payload store"),
        "{stdout}"
    );
    assert!(
        !state_dir.join("temporal.db").exists(),
        "a second server was started"
    );
    Ok(())
}

#[tokio::test]
async fn countersign_dev_runs_the_demo_on_its_own_server() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let port = countersign::devserver::free_port()?.to_string();
    let ui_port = countersign::devserver::free_port()?.to_string();
    let state_dir = dir.path().join("state");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args([
                "dev",
                "--exit-after-demo",
                "--decide",
                "deny",
                "--port",
                &port,
                "--ui-port",
                &ui_port,
                "--http",
                "127.0.0.1:0",
            ])
            .arg("--state-dir")
            .arg(&state_dir)
            .stdin(Stdio::null())
            .output()
    })
    .await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the run is PAUSED before `send_payment`"),
        "{stderr}"
    );
    assert!(stderr.contains("denied by"), "{stderr}");
    assert!(
        stderr.contains("payments API received 0 payment request(s)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("/namespaces/default/workflows/"),
        "{stderr}"
    );
    assert!(stdout.contains("COMPLETED"), "{stdout}");
    assert!(stdout.contains("it is on your todo list"), "{stdout}");
    let todo = std::fs::read_to_string(dir.path().join("state/todo.md"))?;
    assert!(
        todo.contains("Review and pay ACME invoice INV-42"),
        "{todo}"
    );
    assert!(dir.path().join("state/temporal.db").exists());
    // The dashboard came up with a fresh reviewer token.
    assert!(
        stderr.contains("dashboard and HTTP API on http://127.0.0.1:"),
        "{stderr}"
    );
    let token = std::fs::read_to_string(dir.path().join("state/dev-token"))?;
    assert!(
        token.trim().starts_with("cs_") && token.trim().len() == 67,
        "{token}"
    );
    Ok(())
}

#[tokio::test]
async fn cli_decides_a_batch_of_one_runs_approvals() -> Result<()> {
    let env = TestEnv::new("cli-batch").await?;
    env.with_worker(async {
        let agent = env.agent(
            r#"
name = "t-cli-batch"
approval_expiry = "1h"

[model]
provider = "scripted"

[[model.steps]]
say = "Two posts."
calls = [{ tool = "post", arguments = { n = 1 } }, { tool = "post", arguments = { n = 2 } }]

[[model.steps]]
say = "Done: {last_result}"

[[tools]]
name = "post"
builtin = { kind = "http_post", url = "{sink}/posts" }
"#,
        )?;
        let id = env.start(agent, "post twice").await?;
        let gates = env.pending(&id, 2).await?;
        let out = countersign(&[
            "approvals",
            "deny",
            &gates[0].approval_id,
            &gates[1].approval_id,
            "--reason",
            "not today",
            "--reviewer",
            "bob@example.com",
        ])
        .await?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for gate in &gates {
            assert!(
                stdout.contains(&format!("{}: denied by bob@example.com", gate.approval_id)),
                "{stdout}"
            );
        }
        env.result(&id).await?;
        assert!(env.sink.received("/posts").is_empty());
        Ok(())
    })
    .await
}
