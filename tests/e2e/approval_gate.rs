//! The `ApprovalGate` workflow (issue 15): any workflow asks for one
//! approval before its own side effect, with a registry agent's policy.

use crate::harness::*;
use anyhow::Result;
use countersign_approvals::ApproveOptions;
use countersign_proto::{GateOutcome, GateRequest, GateState, json_to_struct, struct_to_json};
use countersign_worker::AgentRegistry;
use serde_json::{Value, json};

/// An agent that exists only for gates: external tools, no model.
const PAYMENTS: &str = r#"
name = "t-gate-payments"
description = "Supplier payments, carried out by the finance workflows"
approval_expiry = "10m"

[[tools]]
name = "wire_transfer"
description = "Send money to a supplier"
effect = "money"
external = {}
parameters = { type = "object", properties = { amount = { type = "number" }, to = { type = "string" } }, required = ["amount", "to"] }

[[tools]]
name = "lookup_invoice"
description = "Read an invoice"
effect = "read"
external = {}
"#;

/// Writes the registry of these tests: the payments agent (gates only) and
/// an agent run whose one call waits for approval.
fn registry(env: &TestEnv) -> Result<AgentRegistry> {
    let dir = env.dir.path().join("agents");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("payments.toml"), PAYMENTS)?;
    let run = one_call_agent(
        "t-gate-run",
        "Posting the note.",
        r#"{ tool = "post", arguments = { text = "hi" } }"#,
    ) + &format!(
        r#"
[[tools]]
name = "post"
builtin = {{ kind = "http_post", url = "{}/notes" }}
"#,
        env.sink.url
    );
    std::fs::write(dir.join("run.toml"), run)?;
    Ok(AgentRegistry::load(&dir)?)
}

fn request(tool: &str, arguments: Value) -> GateRequest {
    GateRequest {
        agent: "t-gate-payments".into(),
        tool: tool.into(),
        arguments: json_to_struct(&arguments).ok(),
        requester: "alice@example.com".into(),
        context: "monthly supplier run".into(),
        caller_workflow_id: "finance-run-7".into(),
        ..Default::default()
    }
}

async fn start_gate(env: &TestEnv, request: GateRequest) -> Result<String> {
    let id = unique("gate");
    env.approvals
        .start_gate(request, &id, Some(&env.task_queue))
        .await?;
    Ok(id)
}

/// What every caller example's test does as the reviewer: approves the
/// gate `approval` (as bob), then denies the approval of the gate workflow
/// `denied_gate` with "no budget this month".
pub(crate) async fn approve_and_deny(
    env: &TestEnv,
    approval: &countersign_proto::PendingApproval,
    denied_gate: &str,
) -> Result<()> {
    env.approvals
        .approve(
            &approval.approval_id,
            "bob@example.com",
            ApproveOptions::default(),
        )
        .await?;
    let refusal = env.pending(denied_gate, 1).await?.remove(0);
    env.approvals
        .deny(
            &refusal.approval_id,
            "bob@example.com",
            "no budget this month",
        )
        .await?;
    Ok(())
}

async fn outcome(env: &TestEnv, id: &str) -> Result<GateOutcome> {
    Ok(tokio::time::timeout(DEADLINE, env.approvals.wait_for_gate(id)).await??)
}

#[tokio::test]
async fn a_gate_approves_denies_or_needs_no_approval_and_lists_beside_agent_runs() -> Result<()> {
    let env = TestEnv::new("gate").await?;
    let registry = registry(&env)?;
    env.with_worker_serving(registry, async {
        let run = env.start_named("t-gate-run", "post a note").await?;
        let approve = start_gate(
            &env,
            request("wire_transfer", json!({"amount": 250, "to": "ACME"})),
        )
        .await?;
        let deny = start_gate(
            &env,
            request("wire_transfer", json!({"amount": 9000, "to": "Initech"})),
        )
        .await?;
        let run_approval = env.pending(&run, 1).await?.remove(0);
        let approval = env.pending(&approve, 1).await?.remove(0);
        let denied = env.pending(&deny, 1).await?.remove(0);
        assert_eq!(approval.agent, "t-gate-payments");
        assert_eq!(approval.parent_workflow_id, "finance-run-7");
        assert_eq!(approval.user_request, "monthly supplier run");
        assert_eq!(approval.effect_class, "money");
        assert_eq!(approval.tool.as_ref().unwrap().kind, "external");

        // The inbox lists the gates' approvals beside the agent run's.
        wait_for("the gate's approval in the inbox", || async {
            let listing = env.approvals.list_pending(&Default::default()).await.ok()?;
            let ids: Vec<&str> = listing
                .approvals
                .iter()
                .map(|a| a.approval_id.as_str())
                .collect();
            [&run_approval, &approval, &denied]
                .iter()
                .all(|a| ids.contains(&a.approval_id.as_str()))
                .then_some(())
        })
        .await?;

        env.approvals
            .approve(
                &approval.approval_id,
                "bob@example.com",
                ApproveOptions::default(),
            )
            .await?;
        let approved = outcome(&env, &approve).await?;
        assert_eq!(approved.state(), GateState::Approved);
        assert_eq!(approved.message, "approved by bob@example.com");
        assert_eq!(
            approved.arguments.as_ref().map(struct_to_json),
            Some(json!({"amount": 250, "to": "ACME"}))
        );
        assert_eq!(approved.approval_id, approval.approval_id);
        assert!(approved.rule.contains("money"), "{}", approved.rule);
        assert!(
            approved
                .decisions
                .iter()
                .any(|d| d.accepted && d.reviewer == "bob@example.com")
        );

        env.approvals
            .deny(
                &denied.approval_id,
                "bob@example.com",
                "no budget this month",
            )
            .await?;
        let refused = outcome(&env, &deny).await?;
        assert_eq!(refused.state(), GateState::Denied);
        assert_eq!(
            refused.message,
            "denied by bob@example.com: no budget this month"
        );

        // A read needs no approval: the gate answers at once.
        let read = start_gate(&env, request("lookup_invoice", json!({"id": "INV-1"}))).await?;
        let free = outcome(&env, &read).await?;
        assert_eq!(free.state(), GateState::NotRequired);
        assert!(free.approval_id.is_empty());
        assert!(
            free.message.starts_with("no approval needed"),
            "{}",
            free.message
        );

        env.approvals
            .deny(&run_approval.approval_id, "bob@example.com", "not today")
            .await?;
        env.result(&run).await?;

        // What one gated decision costs through the gate.
        let history: Value =
            serde_json::from_slice(&env.record_history(&approve, "gate_approve").await?)?;
        let events = history["events"].as_array().cloned().unwrap_or_default();
        let tasks = events
            .iter()
            .filter(|e| {
                e["attributes"]
                    .get("WorkflowTaskCompletedEventAttributes")
                    .is_some()
            })
            .count();
        eprintln!(
            "gate_approve: {} events, {tasks} workflow tasks completed",
            events.len()
        );
        replay(&serde_json::to_vec(&history)?).await
    })
    .await
}

#[tokio::test]
async fn bad_gate_inputs_fail_at_once_without_an_approval() -> Result<()> {
    let env = TestEnv::new("gate-bad").await?;
    let registry = registry(&env)?;
    env.with_worker_serving(registry, async {
        let cases: Vec<(&str, GateRequest, &str)> = vec![
            (
                "an unknown agent",
                GateRequest {
                    agent: "t-gate-nobody".into(),
                    ..request("wire_transfer", json!({"amount": 1, "to": "x"}))
                },
                "t-gate-nobody",
            ),
            (
                "a tool the agent does not declare",
                request("shred_documents", json!({})),
                "declares no tool `shred_documents`",
            ),
            (
                "arguments that do not fit the schema",
                request("wire_transfer", json!({"amount": "lots"})),
                "invalid arguments for `wire_transfer`",
            ),
            (
                "a tool Countersign runs itself",
                GateRequest {
                    agent: "t-gate-run".into(),
                    ..request("post", json!({"text": "hi"}))
                },
                "a gate takes only tools declared `external = {}`",
            ),
            (
                "no requester",
                GateRequest {
                    requester: String::new(),
                    ..request("wire_transfer", json!({"amount": 1, "to": "x"}))
                },
                "`requester` is required",
            ),
            (
                "a context over its bound",
                GateRequest {
                    context: "x".repeat(5000),
                    ..request("wire_transfer", json!({"amount": 1, "to": "x"}))
                },
                "`context` is too long",
            ),
        ];
        let mut ids = Vec::new();
        for (_, request, _) in &cases {
            ids.push(start_gate(&env, request.clone()).await?);
        }
        for ((what, _, expected), id) in cases.iter().zip(&ids) {
            let failure = match outcome(&env, id).await {
                Ok(outcome) => anyhow::bail!("{what}: the gate ended as {:?}", outcome.state()),
                Err(e) => format!("{e:#}"),
            };
            assert!(
                failure.contains(expected),
                "{what}: expected `{expected}` in: {failure}"
            );
            let state = env.approvals.run_state(id).await?;
            assert!(state.approvals.is_empty(), "{what}: an approval opened");
        }
        Ok(())
    })
    .await
}

/// Runs `examples/gate/python/run.py` (a Python `PayInvoice` workflow with
/// its own worker, official SDK) for one invoice; answers the child process.
fn python_pay(
    env: &TestEnv,
    python: &str,
    workflow_id: &str,
    invoice: &str,
    amount: &str,
) -> Result<tokio::process::Child> {
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gate/python/run.py");
    Ok(tokio::process::Command::new(python)
        .arg(script)
        .args(["--address", server_address()])
        .args(["--gate-task-queue", &env.task_queue])
        .args(["--workflow-id", workflow_id, "--invoice", invoice])
        .args(["--amount", amount, "--to", "ACME"])
        .args(["--pay-url", &format!("{}/payments", env.sink.url)])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?)
}

/// The JSON line the Python workflow's result was printed as.
async fn python_result(child: tokio::process::Child) -> Result<Value> {
    let out = tokio::time::timeout(DEADLINE * 2, child.wait_with_output()).await??;
    anyhow::ensure!(
        out.status.success(),
        "the Python workflow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow::anyhow!("no result in: {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

#[tokio::test]
async fn a_python_child_workflow_pays_only_what_the_gate_allows() -> Result<()> {
    use anyhow::Context;
    let python = std::env::var("COUNTERSIGN_PYTHON").context(
        "COUNTERSIGN_PYTHON is not set: run the tests with scripts/test.sh, which installs the \
         Temporal Python SDK (countersign_ensure_python_sdk in scripts/lib.sh)",
    )?;
    let env = TestEnv::new("gate-py").await?;
    let agents =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gate/agents");
    env.with_worker_serving(AgentRegistry::load(&agents)?, async {
        let approved = unique("py-approve");
        let denied = unique("py-deny");
        let small = unique("py-small");
        let approve_run = python_pay(&env, &python, &approved, "INV-1", "250")?;
        let deny_run = python_pay(&env, &python, &denied, "INV-2", "300")?;
        let small_run = python_pay(&env, &python, &small, "INV-3", "20")?;

        let approval = env.pending(&format!("{approved}-gate"), 1).await?.remove(0);
        assert_eq!(approval.parent_workflow_id, approved);
        approve_and_deny(&env, &approval, &format!("{denied}-gate")).await?;

        let result = python_result(approve_run).await?;
        assert_eq!(result["state"], "GATE_STATE_APPROVED", "{result}");
        assert_eq!(result["message"], "approved by bob@example.com");
        let result = python_result(deny_run).await?;
        assert_eq!(result["state"], "GATE_STATE_DENIED", "{result}");
        assert_eq!(
            result["message"],
            "denied by bob@example.com: no budget this month"
        );
        assert_eq!(result["paid"], Value::Null);
        let result = python_result(small_run).await?;
        assert_eq!(result["state"], "GATE_STATE_NOT_REQUIRED", "{result}");

        // Exactly the approved and the small invoice were paid, the approved
        // one under its approval id.
        let payments = env.sink.received("/payments");
        let mut invoices: Vec<&str> = payments
            .iter()
            .filter_map(|p| p.body["invoice"].as_str())
            .collect();
        invoices.sort();
        assert_eq!(invoices, ["INV-1", "INV-3"]);
        let paid = payments
            .iter()
            .find(|p| p.body["invoice"] == "INV-1")
            .unwrap();
        assert_eq!(paid.idempotency_key, approval.approval_id);
        assert_eq!(paid.body["amount"].as_f64(), Some(250.0));
        Ok(())
    })
    .await
}

/// A gate cancelled before its approval opens (here: before any worker
/// picked it up) expires like one cancelled while it waits: EXPIRED, no
/// approval, nothing to decide.
#[tokio::test]
async fn a_gate_cancelled_before_its_approval_opens_expires() -> Result<()> {
    let env = TestEnv::new("gate-early-cancel").await?;
    let registry = registry(&env)?;
    let id = start_gate(
        &env,
        request("wire_transfer", json!({"amount": 10, "to": "acme"})),
    )
    .await?;
    env.client
        .get_workflow_handle::<countersign_approvals::ApprovalGateWorkflow>(&id)
        .cancel(Default::default())
        .await?;
    env.with_worker_serving(registry, async {
        let outcome = outcome(&env, &id).await?;
        assert_eq!(outcome.state(), GateState::Expired, "{outcome:?}");
        assert_eq!(
            outcome.message,
            "expired: the gate was cancelled before its approval opened"
        );
        assert!(outcome.approval_id.is_empty() && outcome.approval.is_none());
        assert!(env.approvals.pending_of_run(&id).await?.is_empty());
        env.record_and_replay(&id, "gate_cancel_early").await
    })
    .await
}
