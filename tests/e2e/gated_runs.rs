//! Gated agent runs on a real Temporal dev server: approve, deny, expire,
//! parallel calls, refused decisions.

use crate::harness::*;
use anyhow::Result;
use countersign_approvals::{ApprovalsError, ApproveOptions};
use countersign_proto::{ApprovalState, RunStatus};
use serde_json::json;

/// The tools of the test agents: `pay` (money: always gated) and `notify`
/// (write_external, lifted by the flag), both posting to the test's sink.
const SINK_TOOLS: &str = r#"
[[tools]]
name = "pay"
builtin = { kind = "payment_request", url = "{sink}/payments" }

[[tools]]
name = "notify"
requires_approval = false
builtin = { kind = "http_post", url = "{sink}/notify" }
"#;

/// Pays an invoice; on an error result, notifies the team instead and finishes.
pub fn pay_agent() -> String {
    format!("{PAY_STEPS}{SINK_TOOLS}")
}

const PAY_STEPS: &str = r#"
name = "t-pay"
approval_expiry = "1h"

[model]
provider = "scripted"

[[model.steps]]
say = "Paying invoice 7."
calls = [{ tool = "pay", arguments = { to = "acme", amount = 120, currency = "EUR" } }]
on_error = "fallback"

[[model.steps]]
say = "Paid: {last_result}"

[[model.steps]]
id = "fallback"
say = "Payment refused ({last_error}); notifying the team instead."
calls = [{ tool = "notify", arguments = { text = "invoice 7 not paid" } }]

[[model.steps]]
say = "Done: the team knows invoice 7 is unpaid."
"#;

#[tokio::test]
async fn approved_call_runs_once_after_the_decision() -> Result<()> {
    let env = TestEnv::new("approve").await?;
    env.with_worker(async {
        let id = env.start(env.agent(&pay_agent())?, "pay invoice 7").await?;
        let pending = env.pending(&id, 1).await?;
        let approval = &pending[0];
        assert_eq!(approval.tool.as_ref().unwrap().name, "pay");
        assert_eq!(approval.effect_class, "money");
        assert!(approval.rule.starts_with("money"), "{}", approval.rule);
        assert_eq!(approval.requester, "alice@example.com");
        assert_eq!(approval.user_request, "pay invoice 7");
        assert_eq!(approval.model_reason, "Paying invoice 7.");
        assert_eq!(
            approval.arguments_sha256,
            countersign_proto::arguments_sha256(
                &json!({"to": "acme", "amount": 120, "currency": "EUR"})
            )
        );
        assert!(approval.expires_at.is_some());
        assert!(
            env.sink.received("/payments").is_empty(),
            "paid before approval"
        );

        let outcome = env
            .approvals
            .approve(
                &approval.approval_id,
                "bob@example.com",
                ApproveOptions {
                    reason: "invoice checked".into(),
                    arguments_sha256: Some(approval.arguments_sha256.clone()),
                    ..Default::default()
                },
            )
            .await?;
        assert!(outcome.accepted);
        assert_eq!(outcome.state(), ApprovalState::Approved);

        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert!(
            state.final_answer.starts_with("Paid: 200 OK"),
            "{}",
            state.final_answer
        );
        let payments = env.sink.received("/payments");
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].idempotency_key, approval.approval_id);
        assert_eq!(
            payments[0].body,
            json!({"to": "acme", "amount": 120, "currency": "EUR"})
        );
        assert!(env.sink.received("/notify").is_empty());
        let decision = &state.decisions[0];
        assert!(decision.accepted);
        assert_eq!(decision.reviewer, "bob@example.com");
        assert_eq!(decision.reason, "invoice checked");
        assert_eq!(decision.channel, "update");
        assert_eq!(
            state_of(approval_of(&state, "pay")),
            ApprovalState::Approved
        );

        env.record_and_replay(&id, "approve").await
    })
    .await
}

#[tokio::test]
async fn denied_call_never_runs_and_the_model_sees_the_reason() -> Result<()> {
    let env = TestEnv::new("deny").await?;
    env.with_worker(async {
        let id = env.start(env.agent(&pay_agent())?, "pay invoice 7").await?;
        let approval = env.pending(&id, 1).await?.remove(0);
        let outcome = env
            .approvals
            .deny(
                &approval.approval_id,
                "carol@example.com",
                "budget frozen this month",
            )
            .await?;
        assert_eq!(outcome.state(), ApprovalState::Denied);

        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert!(
            env.sink.received("/payments").is_empty(),
            "a denied payment ran"
        );
        assert_eq!(
            env.sink.received("/notify").len(),
            1,
            "the model took the other path"
        );
        let tool_result = state
            .transcript
            .iter()
            .find(|e| e.role == "tool" && e.tool_call_id == approval.tool_call_id)
            .expect("a tool result for the denied call");
        assert!(tool_result.is_error);
        assert!(tool_result.content.contains("denied by carol@example.com"));
        assert!(tool_result.content.contains("budget frozen this month"));
        let next_turn = state
            .transcript
            .iter()
            .filter(|e| e.role == "assistant")
            .nth(1)
            .expect("a turn after the denial");
        assert!(
            next_turn.content.contains("budget frozen this month"),
            "{}",
            next_turn.content
        );
        assert_eq!(next_turn.tool_calls[0].name, "notify");

        env.record_and_replay(&id, "deny").await
    })
    .await
}

#[tokio::test]
async fn unanswered_approval_expires_fail_closed() -> Result<()> {
    let env = TestEnv::new("expire").await?;
    env.with_worker(async {
        let agent = env
            .agent(&pay_agent().replace("approval_expiry = \"1h\"", "approval_expiry = \"1s\""))?;
        let id = env.start(agent, "pay invoice 7").await?;
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert!(
            env.sink.received("/payments").is_empty(),
            "an expired payment ran"
        );
        let approval = approval_of(&state, "pay");
        assert_eq!(state_of(approval), ApprovalState::Expired);
        let record = state
            .decisions
            .iter()
            .find(|d| d.approval_id == approval.approval_id)
            .unwrap();
        assert_eq!(record.channel, "timer");
        assert_eq!(record.resulting_state(), ApprovalState::Expired);
        let result = state
            .transcript
            .iter()
            .find(|e| e.role == "tool" && e.tool_call_id == approval.tool_call_id)
            .unwrap();
        assert!(result.is_error);
        assert!(
            result.content.starts_with("approval expired"),
            "{}",
            result.content
        );
        assert!(!result.content.contains("denied"));
        // A decision after expiry is refused.
        let late = env
            .approvals
            .deny(&approval.approval_id, "bob", "too late")
            .await;
        assert!(
            matches!(
                late,
                Err(ApprovalsError::NotFound(_)) | Err(ApprovalsError::AlreadyDecided(_))
            ),
            "{late:?}"
        );

        env.record_and_replay(&id, "expire").await
    })
    .await
}

const PARALLEL_STEPS: &str = r#"
name = "t-parallel"

[model]
provider = "scripted"

[[model.steps]]
say = "Notifying and paying two invoices at once."
calls = [
  { tool = "notify", arguments = { text = "paying invoices 1 and 2" } },
  { tool = "pay", arguments = { to = "acme", amount = 10, currency = "EUR" } },
  { tool = "pay", arguments = { to = "globex", amount = 20, currency = "EUR" } },
]

[[model.steps]]
say = "Done."
"#;

#[tokio::test]
async fn parallel_calls_are_independent() -> Result<()> {
    let env = TestEnv::new("parallel").await?;
    env.with_worker(async {
        let id = env
            .start(
                env.agent(&format!("{PARALLEL_STEPS}{SINK_TOOLS}"))?,
                "pay both",
            )
            .await?;
        let pending = env.pending(&id, 2).await?;
        // The ungated call ran while both payments wait.
        wait_for("the ungated notify call", || async {
            (env.sink.received("/notify").len() == 1).then_some(())
        })
        .await?;
        assert_eq!(env.approvals.pending_of_run(&id).await?.len(), 2);
        assert!(env.sink.received("/payments").is_empty());

        let to = |a: &countersign_proto::PendingApproval| {
            countersign_proto::struct_to_json(a.arguments.as_ref().unwrap())["to"].clone()
        };
        let acme = pending.iter().find(|a| to(a) == "acme").unwrap();
        let globex = pending.iter().find(|a| to(a) == "globex").unwrap();
        assert_ne!(acme.approval_id, globex.approval_id);
        env.approvals
            .deny(&globex.approval_id, "bob", "unknown supplier")
            .await?;
        assert_eq!(env.approvals.pending_of_run(&id).await?.len(), 1);
        env.approvals
            .approve(&acme.approval_id, "bob", ApproveOptions::default())
            .await?;

        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        let payments = env.sink.received("/payments");
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].body["to"], "acme");
        let results: Vec<_> = state
            .transcript
            .iter()
            .filter(|e| e.role == "tool")
            .collect();
        assert_eq!(results.len(), 3);
        assert!(!results[0].is_error && !results[1].is_error);
        assert!(results[2].is_error && results[2].content.contains("unknown supplier"));

        env.record_and_replay(&id, "parallel").await
    })
    .await
}

#[tokio::test]
async fn refused_decisions_say_why_and_change_nothing() -> Result<()> {
    let env = TestEnv::new("refused").await?;
    env.with_worker(async {
        let id = env.start(env.agent(&pay_agent())?, "pay invoice 7").await?;
        let approval = env.pending(&id, 1).await?.remove(0);

        let stale = env
            .approvals
            .approve(
                &approval.approval_id,
                "bob",
                ApproveOptions {
                    arguments_sha256: Some("0".repeat(64)),
                    ..Default::default()
                },
            )
            .await;
        match stale {
            Err(ApprovalsError::StaleArguments(m)) => {
                assert!(m.contains("stale argumentsSha256"), "{m}")
            }
            other => panic!("expected stale arguments, got {other:?}"),
        }
        let unknown = env
            .approvals
            .approve(&format!("{id}~nope"), "bob", ApproveOptions::default())
            .await;
        assert!(
            matches!(unknown, Err(ApprovalsError::NotFound(_))),
            "{unknown:?}"
        );
        let no_run = env
            .approvals
            .approve("no-such-run~x", "bob", ApproveOptions::default())
            .await;
        assert!(
            matches!(no_run, Err(ApprovalsError::NotFound(_))),
            "{no_run:?}"
        );
        let malformed = env
            .approvals
            .approve("no-separator", "bob", ApproveOptions::default())
            .await;
        assert!(
            matches!(malformed, Err(ApprovalsError::InvalidApprovalId(_))),
            "{malformed:?}"
        );
        let anonymous = env
            .approvals
            .approve(&approval.approval_id, " ", ApproveOptions::default())
            .await;
        assert!(
            matches!(anonymous, Err(ApprovalsError::Rejected(_))),
            "{anonymous:?}"
        );
        assert_eq!(
            env.approvals.pending_of_run(&id).await?.len(),
            1,
            "a refused decision changed the run"
        );

        let first = env
            .approvals
            .approve(&approval.approval_id, "bob", ApproveOptions::default())
            .await?;
        assert!(first.accepted);
        // The same request again (same update id) is answered, not counted twice.
        let retried = env
            .approvals
            .approve(&approval.approval_id, "bob", ApproveOptions::default())
            .await?;
        assert_eq!(retried, first);
        let second = env
            .approvals
            .deny(&approval.approval_id, "mallory", "no")
            .await;
        match second {
            Err(ApprovalsError::AlreadyDecided(m)) => {
                assert!(m.contains("already decided by bob"), "{m}");
                assert!(m.contains("APPROVED"), "{m}");
            }
            other => panic!("expected already decided, got {other:?}"),
        }

        let state = env.result(&id).await?;
        assert_eq!(env.sink.received("/payments").len(), 1);
        // Update rejections leave no trace in the run: only the accepted decision is recorded.
        assert_eq!(state.decisions.len(), 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn edited_arguments_must_fit_the_tool() -> Result<()> {
    let env = TestEnv::new("edit").await?;
    env.with_worker(async {
        let id = env.start(env.agent(&pay_agent())?, "pay invoice 7").await?;
        let approval = env.pending(&id, 1).await?.remove(0);
        let bad = env
            .approvals
            .approve(
                &approval.approval_id,
                "bob",
                ApproveOptions {
                    edited_arguments: Some(json!({"to": "acme", "amount": -5, "currency": "EUR"})),
                    ..Default::default()
                },
            )
            .await;
        match bad {
            Err(ApprovalsError::InvalidArguments(m)) => {
                assert!(
                    m.contains("edited arguments do not fit the tool `pay`"),
                    "{m}"
                );
                assert!(m.contains("`amount` must be greater than 0"), "{m}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        let outcome = env
            .approvals
            .approve(
                &approval.approval_id,
                "bob",
                ApproveOptions {
                    edited_arguments: Some(json!({"to": "acme", "amount": 60, "currency": "EUR"})),
                    ..Default::default()
                },
            )
            .await?;
        assert_eq!(outcome.state(), ApprovalState::ApprovedWithEdits);
        let state = env.result(&id).await?;
        let payments = env.sink.received("/payments");
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].body["amount"], 60);
        // The audit trail keeps both versions; the model is told about the edit.
        let approval = approval_of(&state, "pay");
        assert_eq!(
            countersign_proto::struct_to_json(approval.arguments.as_ref().unwrap())["amount"],
            120
        );
        let accepted = state.decisions.iter().find(|d| d.accepted).unwrap();
        assert_eq!(
            countersign_proto::struct_to_json(accepted.edited_arguments.as_ref().unwrap())["amount"],
            60
        );
        let result = state
            .transcript
            .iter()
            .find(|e| e.role == "tool" && e.tool_call_id == approval.tool_call_id)
            .unwrap();
        assert!(
            result.content.starts_with("Note: reviewer bob changed the arguments before approving"),
            "{}",
            result.content
        );
        Ok(())
    })
    .await
}

const MISBEHAVING_AGENT: &str = r#"
name = "t-misbehaving"
max_turns = 3

[model]
provider = "scripted"

[[model.steps]]
id = "loop"
say = "Paying without saying how much."
calls = [{ tool = "pay", arguments = { to = "acme", currency = "EUR" } }]
next = "loop"

[[tools]]
name = "pay"
builtin = { kind = "payment_request", url = "{sink}/payments" }
"#;

#[tokio::test]
async fn calls_that_cannot_run_are_refused_and_loops_end() -> Result<()> {
    let env = TestEnv::new("misbehaving").await?;
    env.with_worker(async {
        let id = env.start(env.agent(MISBEHAVING_AGENT)?, "pay").await?;
        let error = env
            .result(&id)
            .await
            .expect_err("the run must fail after max_turns");
        assert!(format!("{error:#}").contains("max_turns"), "{error:#}");
        let state = env.approvals.run_state(&id).await?;
        assert_eq!(state.status(), RunStatus::Failed);
        // Invalid arguments never reached a reviewer, nor the payments API.
        assert!(state.approvals.is_empty());
        assert!(env.sink.received("/payments").is_empty());
        let results: Vec<_> = state
            .transcript
            .iter()
            .filter(|e| e.role == "tool")
            .collect();
        assert_eq!(results.len(), 3);
        assert!(
            results
                .iter()
                .all(|r| r.is_error && r.content.contains("argument `amount` is required"))
        );
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_cancelled_run_closes_its_approvals() -> Result<()> {
    let env = TestEnv::new("cancel").await?;
    env.with_worker(async {
        let id = env.start(env.agent(&pay_agent())?, "pay invoice 7").await?;
        let approval = env.pending(&id, 1).await?.remove(0);
        env.client
            .get_workflow_handle::<countersign_approvals::AgentRunWorkflow>(&id)
            .cancel(Default::default())
            .await?;
        let error = env
            .result(&id)
            .await
            .expect_err("a cancelled run has no result");
        assert!(
            format!("{error:#}").to_lowercase().contains("cancel"),
            "{error:#}"
        );
        let state = env.approvals.run_state(&id).await?;
        assert_eq!(state.status(), RunStatus::Cancelled);
        assert_eq!(state_of(approval_of(&state, "pay")), ApprovalState::Expired);
        assert!(env.approvals.pending_of_run(&id).await?.is_empty());
        let late = env
            .approvals
            .approve(&approval.approval_id, "bob", Default::default())
            .await;
        assert!(late.is_err(), "{late:?}");
        assert!(env.sink.received("/payments").is_empty());
        env.record_and_replay(&id, "cancel").await
    })
    .await
}
