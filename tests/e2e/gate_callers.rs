//! Callers of the `ApprovalGate` workflow (issue 15) against a real dev
//! server: the Rust example (`examples/gate/rust/workflows.rs`, compiled
//! into this test), cancellation, quorum and signed decisions through a
//! gate. Payments are counted at the test's sink, outside every worker.

#[path = "../../examples/gate/rust/workflows.rs"]
mod workflows;

use crate::harness::*;
use anyhow::{Context, Result, bail};
use countersign_approvals::{Approvals, ApprovalsError, ApproveOptions};
use countersign_proto::{
    ApprovalState, GateOutcome, GateRequest, GateState, RunStatus, json_to_struct,
};
use countersign_worker::AgentRegistry;
use countersign_worker::registry::load_trusted_keys;
use serde_json::{Value, json};
use std::future::Future;
use std::path::{Path, PathBuf};
use temporalio_client::{WorkflowGetResultOptions, WorkflowStartOptions};
use temporalio_sdk::{Worker, WorkerOptions};
use workflows::{PayInvoice, PayInvoiceInput, PayInvoiceResult, PaymentActivities};

/// The agents every example caller gates with (`payments`).
fn example_agents() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gate/agents")
}

/// Runs `body` while the Rust example's worker (`PayInvoice` and its `pay`
/// activity) polls `task_queue`, as `examples/gate/rust/worker.rs` does.
async fn with_pay_worker<F: Future<Output = Result<()>>>(
    env: &TestEnv,
    task_queue: &str,
    body: F,
) -> Result<()> {
    let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())?;
    let options = WorkerOptions::new(task_queue)
        .register_workflow::<PayInvoice>()?
        .register_activities(PaymentActivities)
        .build();
    let mut worker = Worker::new(&runtime, env.client.clone(), options)?;
    tokio::select! {
        result = worker.run() => {
            result?;
            bail!("the PayInvoice worker stopped before the test finished")
        }
        result = body => result,
    }
}

/// Starts a `PayInvoice` as `examples/gate/rust/starter.rs` does, gated on
/// this test's Countersign task queue.
async fn start_pay(env: &TestEnv, task_queue: &str, invoice: &str, amount: f64) -> Result<String> {
    let id = unique(&format!("rs-{}", invoice.to_lowercase()));
    let input = PayInvoiceInput {
        invoice: invoice.into(),
        amount,
        to: "ACME".into(),
        requester: "alice@example.com".into(),
        pay_url: format!("{}/payments", env.sink.url),
        agent: "payments".into(),
        gate_task_queue: Some(env.task_queue.clone()),
    };
    env.client
        .start_workflow(
            PayInvoice::run,
            input,
            WorkflowStartOptions::new(task_queue, id.clone()).build(),
        )
        .await?;
    Ok(id)
}

/// The workflow's result, the way the starter waits for it.
async fn pay_result(env: &TestEnv, id: &str) -> Result<PayInvoiceResult> {
    let handle = env.client.get_workflow_handle::<PayInvoice>(id);
    Ok(tokio::time::timeout(
        DEADLINE,
        handle.get_result(WorkflowGetResultOptions::default()),
    )
    .await
    .context("PayInvoice did not finish in time")??)
}

/// The payments the sink received for `invoice`.
fn payments_of(env: &TestEnv, invoice: &str) -> Vec<Received> {
    env.sink
        .received("/payments")
        .into_iter()
        .filter(|p| p.body["invoice"] == invoice)
        .collect()
}

#[tokio::test]
async fn a_rust_workflow_pays_only_what_the_gate_allows_with_the_returned_arguments() -> Result<()>
{
    let env = TestEnv::new("gate-rs").await?;
    let pay_queue = unique("pay-invoices");
    env.with_worker_serving(AgentRegistry::load(&example_agents())?, async {
        with_pay_worker(&env, &pay_queue, async {
            let approved = start_pay(&env, &pay_queue, "INV-1", 250.0).await?;
            let denied = start_pay(&env, &pay_queue, "INV-2", 300.0).await?;
            let small = start_pay(&env, &pay_queue, "INV-3", 20.0).await?;
            let edited = start_pay(&env, &pay_queue, "INV-4", 900.0).await?;

            let approval = env.pending(&format!("{approved}-gate"), 1).await?.remove(0);
            assert_eq!(approval.parent_workflow_id, approved);
            assert_eq!(
                approval.user_request,
                "PayInvoice: paying invoice INV-1 to ACME"
            );
            crate::approval_gate::approve_and_deny(&env, &approval, &format!("{denied}-gate"))
                .await?;
            let edit = env.pending(&format!("{edited}-gate"), 1).await?.remove(0);
            env.approvals
                .approve(
                    &edit.approval_id,
                    "bob@example.com",
                    ApproveOptions {
                        edited_arguments: Some(
                            json!({"invoice": "INV-4", "amount": 450, "to": "ACME"}),
                        ),
                        reason: "half now, half on delivery".into(),
                        ..Default::default()
                    },
                )
                .await?;

            let result = pay_result(&env, &approved).await?;
            assert_eq!(result.state, "GATE_STATE_APPROVED", "{result:?}");
            assert_eq!(result.message, "approved by bob@example.com");
            assert_eq!(result.approval_id, approval.approval_id);
            assert_eq!(result.paid, Some(200));
            let result = pay_result(&env, &denied).await?;
            assert_eq!(result.state, "GATE_STATE_DENIED", "{result:?}");
            assert_eq!(
                result.message,
                "denied by bob@example.com: no budget this month"
            );
            assert_eq!(result.paid, None);
            let result = pay_result(&env, &small).await?;
            assert_eq!(result.state, "GATE_STATE_NOT_REQUIRED", "{result:?}");
            assert!(result.approval_id.is_empty());
            let result = pay_result(&env, &edited).await?;
            assert_eq!(result.state, "GATE_STATE_APPROVED_WITH_EDITS", "{result:?}");

            // Counted at the payee: the approved invoice once under its
            // approval id, the small one under the gate's id, the edited one
            // with the reviewer's amount, the denied one never.
            let paid = payments_of(&env, "INV-1");
            assert_eq!(paid.len(), 1, "{paid:?}");
            assert_eq!(paid[0].idempotency_key, approval.approval_id);
            assert_eq!(paid[0].body["amount"].as_f64(), Some(250.0));
            assert!(payments_of(&env, "INV-2").is_empty());
            let free = payments_of(&env, "INV-3");
            assert_eq!(free.len(), 1, "{free:?}");
            assert_eq!(free[0].idempotency_key, format!("{small}-gate"));
            let edited_payment = payments_of(&env, "INV-4");
            assert_eq!(edited_payment.len(), 1, "{edited_payment:?}");
            assert_eq!(edited_payment[0].body["amount"].as_f64(), Some(450.0));
            assert_eq!(edited_payment[0].idempotency_key, edit.approval_id);
            assert_eq!(env.sink.received("/payments").len(), 3);
            Ok(())
        })
        .await
    })
    .await
}

#[tokio::test]
async fn cancelling_the_caller_cancels_the_gate_which_expires_and_nothing_is_paid() -> Result<()> {
    let env = TestEnv::new("gate-cancel").await?;
    let pay_queue = unique("pay-invoices");
    env.with_worker_serving(AgentRegistry::load(&example_agents())?, async {
        with_pay_worker(&env, &pay_queue, async {
            let id = start_pay(&env, &pay_queue, "INV-9", 5000.0).await?;
            let gate = format!("{id}-gate");
            let approval = env.pending(&gate, 1).await?.remove(0);
            env.client
                .get_workflow_handle::<PayInvoice>(&id)
                .cancel(Default::default())
                .await?;

            let outcome: GateOutcome =
                tokio::time::timeout(DEADLINE, env.approvals.wait_for_gate(&gate)).await??;
            assert_eq!(outcome.state(), GateState::Expired, "{outcome:?}");
            assert_eq!(
                outcome.message,
                "expired: the gate was cancelled before anyone decided"
            );
            assert_eq!(outcome.approval_id, approval.approval_id);
            let state = env.approvals.run_state(&gate).await?;
            assert_eq!(state.status(), RunStatus::Cancelled);
            assert_eq!(state.approvals[0].state(), ApprovalState::Expired);
            assert!(env.approvals.pending_of_run(&gate).await?.is_empty());
            let late = env
                .approvals
                .approve(
                    &approval.approval_id,
                    "bob@example.com",
                    ApproveOptions::default(),
                )
                .await;
            assert!(late.is_err(), "a late approval was taken: {late:?}");

            // The caller sees the gate's EXPIRED, pays nothing and ends.
            let result = pay_result(&env, &id).await?;
            assert_eq!(result.state, "GATE_STATE_EXPIRED", "{result:?}");
            assert_eq!(result.paid, None);
            assert!(env.sink.received("/payments").is_empty());
            env.record_and_replay(&gate, "gate_cancel").await
        })
        .await
    })
    .await
}

/// A gates-only agent with a quorum on one tool and signatures on another.
const STRICT: &str = r#"
name = "t-gate-strict"
approval_expiry = "10m"
separation_of_duties = true

[groups]
finance = ["alice@example.com", "bob@example.com", "carol@example.com"]

[[tools]]
name = "wire_transfer"
description = "Send money to a supplier"
effect = "money"
approvers = ["finance"]
quorum = 2
external = {}
parameters = { type = "object", properties = { amount = { type = "number" }, to = { type = "string" } }, required = ["amount", "to"] }

[[tools]]
name = "close_account"
description = "Close a customer account"
effect = "write_external"
require_signed_decisions = true
external = {}
parameters = { type = "object", properties = { account = { type = "string" } }, required = ["account"] }
"#;

fn strict_request(tool: &str, arguments: Value) -> GateRequest {
    GateRequest {
        agent: "t-gate-strict".into(),
        tool: tool.into(),
        arguments: json_to_struct(&arguments).ok(),
        requester: "alice@example.com".into(),
        context: "quarter close".into(),
        caller_workflow_id: "finance-close-1".into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_gate_waits_for_its_quorum_and_refuses_unsigned_decisions_where_required() -> Result<()> {
    let env = TestEnv::new("gate-strict").await?;
    let agents = env.dir.path().join("agents");
    let keys = env.dir.path().join("trusted");
    std::fs::create_dir_all(&agents)?;
    std::fs::write(agents.join("strict.toml"), STRICT)?;
    crate::signed_decisions::new_keys("finance-signer", &keys).await?;
    let (key_id, key) = countersign::keys::read_signing_key(&keys.join("finance-signer.key"))?;
    std::fs::remove_file(keys.join("finance-signer.key"))?;
    let registry = AgentRegistry::load(&agents)?.with_trusted_keys(load_trusted_keys(&keys)?);
    env.with_worker_serving(registry, async {
        let quorum = unique("gate-quorum");
        env.approvals
            .start_gate(
                strict_request("wire_transfer", json!({"amount": 12000, "to": "ACME"})),
                &quorum,
                Some(&env.task_queue),
            )
            .await?;
        let signed = unique("gate-signed");
        env.approvals
            .start_gate(
                strict_request("close_account", json!({"account": "ACC-1"})),
                &signed,
                Some(&env.task_queue),
            )
            .await?;

        // Quorum: one approval of two leaves the gate waiting.
        let approval = env.pending(&quorum, 1).await?.remove(0);
        assert_eq!(approval.required_approvals, 2);
        let requester = env
            .approvals
            .approve(&approval.approval_id, "alice@example.com", ApproveOptions::default())
            .await;
        assert!(
            matches!(&requester, Err(ApprovalsError::NotAllowed(m)) if m.contains("separation of duties")),
            "{requester:?}"
        );
        let first = env
            .approvals
            .approve(&approval.approval_id, "bob@example.com", ApproveOptions::default())
            .await?;
        assert_eq!(first.state(), ApprovalState::Pending);
        let waiting = env.pending(&quorum, 1).await?.remove(0);
        assert_eq!(waiting.approvals_given, ["bob@example.com"]);
        assert_eq!(env.approvals.run_state(&quorum).await?.status(), RunStatus::Running);
        let second = env
            .approvals
            .approve(&approval.approval_id, "carol@example.com", ApproveOptions::default())
            .await?;
        assert_eq!(second.state(), ApprovalState::Approved);
        let outcome = tokio::time::timeout(DEADLINE, env.approvals.wait_for_gate(&quorum)).await??;
        assert_eq!(outcome.state(), GateState::Approved);
        assert_eq!(outcome.message, "approved by bob@example.com, carol@example.com");
        let accepted: Vec<&str> = outcome
            .decisions
            .iter()
            .filter(|d| d.accepted)
            .map(|d| d.reviewer.as_str())
            .collect();
        assert_eq!(accepted, ["bob@example.com", "carol@example.com"]);

        // Signatures: an unsigned decision is refused and changes nothing;
        // one signed by the trusted key decides.
        let approval = env.pending(&signed, 1).await?.remove(0);
        assert!(approval.signed_decisions_required);
        let unsigned = env
            .approvals
            .approve(&approval.approval_id, "bob@example.com", ApproveOptions::default())
            .await;
        assert!(
            matches!(&unsigned, Err(ApprovalsError::Unsigned(_))),
            "an unsigned decision was not refused as unsigned: {unsigned:?}"
        );
        assert_eq!(env.pending(&signed, 1).await?[0].approvals_given, Vec::<String>::new());
        let signer = Approvals::new(env.client.clone()).with_signing_key(&key_id, key)?;
        let decided = signer
            .approve(&approval.approval_id, "bob@example.com", ApproveOptions::default())
            .await?;
        assert_eq!(decided.state(), ApprovalState::Approved);
        let outcome = tokio::time::timeout(DEADLINE, env.approvals.wait_for_gate(&signed)).await??;
        assert_eq!(outcome.state(), GateState::Approved);
        let decision = outcome
            .decisions
            .iter()
            .find(|d| d.accepted)
            .context("no accepted decision")?;
        assert_eq!(decision.signed_by, "finance-signer");
        Ok(())
    })
    .await
}

/// The one pending approval of `workflow_id`, waiting up to two minutes: a
/// caller in another language first starts its runtime and worker.
async fn first_pending(
    env: &TestEnv,
    workflow_id: &str,
) -> Result<countersign_proto::PendingApproval> {
    wait_within(
        &format!("the pending approval of {workflow_id}"),
        std::time::Duration::from_secs(120),
        || async {
            let mut pending = env.approvals.pending_of_run(workflow_id).await.ok()?;
            (pending.len() == 1).then(|| pending.remove(0))
        },
    )
    .await
}

/// The TypeScript example built for this test: its sources copied next to
/// the dependencies `countersign_ensure_node_example` installed under the
/// cargo target folder (`COUNTERSIGN_GATE_TS`), compiled with their `tsc`.
/// The build folder is removed when the answer is dropped.
async fn build_typescript_example() -> Result<tempfile::TempDir> {
    let deps = std::env::var("COUNTERSIGN_GATE_TS").context(
        "COUNTERSIGN_GATE_TS is not set: run the tests with scripts/test.sh, which installs the \
         TypeScript gate example's dependencies (countersign_ensure_node_example in scripts/lib.sh)",
    )?;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gate/typescript");
    let dir = tempfile::Builder::new()
        .prefix("build-")
        .tempdir_in(&deps)?;
    let build = dir.path();
    std::fs::create_dir_all(build.join("src"))?;
    std::fs::copy(example.join("tsconfig.json"), build.join("tsconfig.json"))?;
    for entry in std::fs::read_dir(example.join("src"))? {
        let entry = entry?;
        std::fs::copy(entry.path(), build.join("src").join(entry.file_name()))?;
    }
    let out = tokio::process::Command::new(Path::new(&deps).join("node_modules/.bin/tsc"))
        .arg("-p")
        .arg(build)
        .output()
        .await?;
    anyhow::ensure!(
        out.status.success(),
        "tsc failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(dir)
}

/// `node lib/starter.js` for one invoice; answers the child process.
fn typescript_pay(
    lib: &Path,
    task_queue: &str,
    gate_task_queue: &str,
    workflow_id: &str,
    invoice: &str,
    amount: &str,
    pay_url: &str,
) -> Result<tokio::process::Child> {
    Ok(tokio::process::Command::new("node")
        .arg(lib.join("starter.js"))
        .args(["--address", server_address(), "--task-queue", task_queue])
        .args(["--gate-task-queue", gate_task_queue])
        .args(["--workflow-id", workflow_id, "--invoice", invoice])
        .args(["--amount", amount, "--to", "ACME", "--pay-url", pay_url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?)
}

/// The JSON line a starter printed.
async fn json_line(child: tokio::process::Child, what: &str) -> Result<Value> {
    let out = tokio::time::timeout(DEADLINE * 4, child.wait_with_output()).await??;
    anyhow::ensure!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout)?;
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .ok_or_else(|| anyhow::anyhow!("no result from {what} in: {stdout}"))?;
    Ok(serde_json::from_str(line)?)
}

#[tokio::test]
async fn a_typescript_workflow_pays_only_what_the_gate_allows() -> Result<()> {
    let build = build_typescript_example().await?;
    let lib = build.path().join("lib");
    let env = TestEnv::new("gate-ts").await?;
    let pay_queue = unique("pay-invoices-ts");
    env.with_worker_serving(AgentRegistry::load(&example_agents())?, async {
        // The worker's log (webpack's bundle report included) goes to a
        // file, shown if the first gate never opens.
        let log = env.dir.path().join("ts-worker.log");
        let _worker = tokio::process::Command::new("node")
            .arg(lib.join("worker.js"))
            .args(["--address", server_address(), "--task-queue", &pay_queue])
            .stdout(std::fs::File::create(&log)?)
            .stderr(std::fs::File::options().append(true).open(&log)?)
            .kill_on_drop(true)
            .spawn()
            .context("starting the TypeScript worker (node lib/worker.js)")?;
        let pay_url = format!("{}/payments", env.sink.url);
        let pay = |id: &str, invoice: &str, amount: &str| {
            typescript_pay(
                &lib,
                &pay_queue,
                &env.task_queue,
                id,
                invoice,
                amount,
                &pay_url,
            )
        };
        let approved = unique("ts-approve");
        let denied = unique("ts-deny");
        let small = unique("ts-small");
        let approve_run = pay(&approved, "INV-1", "250")?;
        let deny_run = pay(&denied, "INV-2", "300")?;
        let small_run = pay(&small, "INV-3", "20")?;

        // The first gate waits for the TypeScript worker to bundle its
        // workflows (webpack), which is slow on a loaded machine.
        let approval = first_pending(&env, &format!("{approved}-gate"))
            .await
            .with_context(|| {
                format!(
                    "the TypeScript worker's log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            })?;
        assert_eq!(approval.parent_workflow_id, approved);
        assert_eq!(
            approval.user_request,
            "PayInvoice: paying invoice INV-1 to ACME"
        );
        crate::approval_gate::approve_and_deny(&env, &approval, &format!("{denied}-gate")).await?;

        let result = json_line(approve_run, "the TypeScript starter").await?;
        assert_eq!(result["state"], "GATE_STATE_APPROVED", "{result}");
        assert_eq!(result["message"], "approved by bob@example.com");
        assert_eq!(result["paid"], 200);
        let result = json_line(deny_run, "the TypeScript starter").await?;
        assert_eq!(result["state"], "GATE_STATE_DENIED", "{result}");
        assert_eq!(
            result["message"],
            "denied by bob@example.com: no budget this month"
        );
        assert_eq!(result["paid"], Value::Null);
        let result = json_line(small_run, "the TypeScript starter").await?;
        assert_eq!(result["state"], "GATE_STATE_NOT_REQUIRED", "{result}");

        let paid = payments_of(&env, "INV-1");
        assert_eq!(paid.len(), 1, "{paid:?}");
        assert_eq!(paid[0].idempotency_key, approval.approval_id);
        assert!(payments_of(&env, "INV-2").is_empty());
        let free = payments_of(&env, "INV-3");
        assert_eq!(free.len(), 1, "{free:?}");
        assert_eq!(free[0].idempotency_key, format!("{small}-gate"));
        Ok(())
    })
    .await
}

/// Runs `examples/gate/python/run_agent.py` (an OpenAI Agents SDK agent on
/// Temporal, with the local fake model) for one prompt; answers the child.
fn python_agent(
    env: &TestEnv,
    python: &str,
    workflow_id: &str,
    prompt: &str,
    model_log: &Path,
) -> Result<tokio::process::Child> {
    let script =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/gate/python/run_agent.py");
    Ok(tokio::process::Command::new(python)
        .arg(script)
        .args(["--address", server_address()])
        .args(["--gate-task-queue", &env.task_queue])
        .args(["--workflow-id", workflow_id, "--prompt", prompt])
        .args(["--pay-url", &format!("{}/payments", env.sink.url)])
        .arg("--fake-model")
        .arg("--fake-model-log")
        .arg(model_log)
        // Nothing may reach OpenAI: no key, and the fake model's URL.
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?)
}

#[tokio::test]
async fn an_openai_agents_sdk_tool_asks_the_gate_and_a_denial_reaches_the_model() -> Result<()> {
    let python = std::env::var("COUNTERSIGN_PYTHON").context(
        "COUNTERSIGN_PYTHON is not set: run the tests with scripts/test.sh, which installs the \
         Temporal Python SDK with the OpenAI Agents SDK (countersign_ensure_python_sdk in \
         scripts/lib.sh)",
    )?;
    let env = TestEnv::new("gate-agents-sdk").await?;
    let model_log = env.dir.path().join("model.jsonl");
    env.with_worker_serving(AgentRegistry::load(&example_agents())?, async {
        let approved = unique("oa-approve");
        let denied = unique("oa-deny");
        let approve_run = python_agent(
            &env,
            &python,
            &approved,
            "Pay invoice INV-1 of 250 to ACME",
            &model_log,
        )?;
        let deny_run = python_agent(
            &env,
            &python,
            &denied,
            "Pay invoice INV-2 of 300 to Initech",
            &model_log,
        )?;

        // The first gate waits for the Python process to import the Agents
        // SDK and start its worker.
        let approval = first_pending(&env, &format!("{approved}-gate-INV-1")).await?;
        assert_eq!(approval.parent_workflow_id, approved);
        assert_eq!(
            approval
                .arguments
                .as_ref()
                .map(countersign_proto::struct_to_json),
            Some(json!({"invoice": "INV-1", "amount": 250, "to": "ACME"}))
        );
        crate::approval_gate::approve_and_deny(&env, &approval, &format!("{denied}-gate-INV-2"))
            .await?;

        let result = json_line(approve_run, "the Agents SDK example").await?;
        assert_eq!(result["paid"], json!(["INV-1"]), "{result}");
        assert_eq!(
            result["finalOutput"],
            "Done. Paid invoice INV-1 (approved by bob@example.com)"
        );
        let result = json_line(deny_run, "the Agents SDK example").await?;
        assert_eq!(result["paid"], json!([]), "{result}");
        assert_eq!(
            result["finalOutput"],
            "Done. Not paid: denied by bob@example.com: no budget this month"
        );

        // The model was handed the gate's message as the tool's result.
        let log = std::fs::read_to_string(&model_log)?;
        let saw_denial = log.lines().any(|line| {
            let entry: Value = serde_json::from_str(line).unwrap_or_default();
            entry["request"]["messages"]
                .as_array()
                .is_some_and(|messages| {
                    messages.iter().any(|m| {
                        m["role"] == "tool"
                            && m["content"]
                                == "Not paid: denied by bob@example.com: no budget this month"
                    })
                })
        });
        assert!(saw_denial, "no model request carried the denial: {log}");

        let paid = payments_of(&env, "INV-1");
        assert_eq!(paid.len(), 1, "{paid:?}");
        assert_eq!(paid[0].idempotency_key, approval.approval_id);
        assert!(payments_of(&env, "INV-2").is_empty());
        assert_eq!(env.sink.received("/payments").len(), 1);
        Ok(())
    })
    .await
}
