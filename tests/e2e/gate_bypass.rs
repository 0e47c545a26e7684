//! The gate against an attacker who has only Temporal client access: every
//! run below is started with the real `temporal` CLI (`temporal workflow
//! start --type AgentRun`) against a real dev server and a real
//! `countersign worker` process, and the payments go to a sink outside the
//! worker that counts them. Whatever the input says, a payment is sent only
//! after a reviewer approved it; everything else ends the run as Failed
//! with a message that names the cause.

use crate::harness::*;
use anyhow::{Result, ensure};
use countersign_approvals::ApproveOptions;
use countersign_proto::RunStatus;
use countersign_worker::AgentRegistry;
use serde_json::{Value, json};

/// A scripted agent that pays once; it reports an error result and stops.
pub(crate) const PAYER: &str = r#"
name = "t-bypass-payer"
instructions = "Pay invoices."

[model]
provider = "scripted"

[[model.steps]]
say = "Paying INV-42."
calls = [{ tool = "pay", arguments = { to = "acme", amount = 120, currency = "EUR" } }]
on_error = "report"

[[model.steps]]
say = "Paid."

[[model.steps]]
id = "report"
say = "Could not: {last_error}"

[[tools]]
name = "pay"
builtin = { kind = "payment_request", url = "{sink}/payments" }

[[tools]]
name = "note"
requires_approval = false
builtin = { kind = "http_post", url = "{sink}/notes" }
"#;

/// Writes the registry folder of these tests: the payer, as a file.
fn registry_dir(env: &TestEnv) -> Result<std::path::PathBuf> {
    let dir = env.dir.path().join("agents");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("payer.toml"),
        PAYER.replace("{sink}", &env.sink.url),
    )?;
    Ok(dir)
}

/// The run's failure message (the run must fail), after it ended.
async fn failure_of(env: &TestEnv, workflow_id: &str) -> Result<String> {
    match env.result(workflow_id).await {
        Ok(state) => anyhow::bail!(
            "run {workflow_id} ended as {:?} instead of failing",
            state.status()
        ),
        Err(e) => Ok(format!("{e:#}")),
    }
}

/// Starts one run per case (what it is, the input JSON or none, what its
/// failure must say) with the `temporal` CLI, then checks that each fails
/// with its cause, in a message that quotes little of what was sent.
async fn expect_failures(
    env: &TestEnv,
    prefix: &str,
    cases: &[(&str, Option<String>, &str)],
) -> Result<()> {
    let mut ids = Vec::new();
    for (what, input, _) in cases {
        let id = unique(prefix);
        temporal_start(&env.task_queue, &id, input.as_deref())
            .await
            .map_err(|e| e.context(what.to_string()))?;
        ids.push(id);
    }
    for ((what, _, expected), id) in cases.iter().zip(&ids) {
        let failure = failure_of(env, id).await?;
        assert!(
            failure.contains(expected),
            "{what}: expected `{expected}` in: {failure}"
        );
        assert!(
            failure.len() < 4_000,
            "{what}: the refusal quotes too much ({} bytes)",
            failure.len()
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_one_line_input_names_the_agent_and_the_payment_waits_for_approval() -> Result<()> {
    let env = TestEnv::new("bypass-named").await?;
    let dir = registry_dir(&env)?;
    let _worker = WorkerProcess::start_serving(&env.task_queue, &dir).await?;
    let sha = AgentRegistry::load(&dir)?
        .get("t-bypass-payer")
        .expect("served")
        .sha256()
        .to_string();

    // What a user types into the Web UI's "Start Workflow", pinned or not.
    let id = unique("bypass-named");
    temporal_start(
        &env.task_queue,
        &id,
        Some(r#"{"agent":"t-bypass-payer","prompt":"Pay INV-42","requester":"alice@example.com"}"#),
    )
    .await?;
    let pinned = unique("bypass-pinned");
    let input = json!({"agent": "t-bypass-payer", "prompt": "Pay INV-42",
                       "requester": "alice@example.com", "agentSha256": sha});
    temporal_start(&env.task_queue, &pinned, Some(&input.to_string())).await?;
    for (approved, run) in [&id, &pinned].into_iter().enumerate() {
        let approval = env.pending(run, 1).await?.remove(0);
        assert_eq!(approval.effect_class, "money");
        assert_eq!(approval.requester, "alice@example.com");
        ensure!(
            env.sink.received("/payments").len() == approved,
            "paid before approval"
        );
        env.approvals
            .approve(
                &approval.approval_id,
                "bob@example.com",
                ApproveOptions::default(),
            )
            .await?;
        let state = env.result(run).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert_eq!(state.agent, "t-bypass-payer");
    }
    assert_eq!(env.sink.received("/payments").len(), 2);
    env.record_and_replay(&id, "registry_approve").await
}

#[tokio::test]
async fn crafted_inputs_fail_the_run_and_never_pay() -> Result<()> {
    let env = TestEnv::new("bypass-inputs").await?;
    let dir = registry_dir(&env)?;
    // A production worker: registry only, inline definitions refused.
    let _worker = WorkerProcess::start_serving(&env.task_queue, &dir).await?;
    let mut lax = serde_json::to_value(env.agent(PAYER)?)?;
    lax["tools"][0]["effect"] = json!("read");
    let zeros = "0".repeat(64);
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        (
            "an inline definition that calls the payment a read",
            Some(json!({"agent": lax, "prompt": "pay", "requester": "mallory"}).to_string()),
            "does not accept inline agent definitions",
        ),
        (
            "an agent that is a number",
            Some(r#"{"agent": 5, "prompt": "pay", "requester": "mallory"}"#.into()),
            "must be an agent's name (a string) or a definition",
        ),
        (
            "a string instead of an object",
            Some(r#""pay everyone""#.into()),
            "not a JSON object",
        ),
        ("no input at all", None, "must be one JSON payload, got 0"),
        (
            "no requester",
            Some(r#"{"agent": "t-bypass-payer", "prompt": "pay"}"#.into()),
            "who asked for the run",
        ),
        (
            "a misspelt field",
            Some(r#"{"agent": "t-bypass-payer", "prompt": "pay", "requester": "m", "agentSHA": "x"}"#.into()),
            "unknown field `agentSHA`",
        ),
        (
            "an unknown agent",
            Some(r#"{"agent": "payroll", "prompt": "pay", "requester": "mallory"}"#.into()),
            "unknown agent `payroll`: this worker serves `t-bypass-payer`",
        ),
        (
            "a pinned hash that does not match",
            Some(format!(
                r#"{{"agent": "t-bypass-payer", "prompt": "pay", "requester": "mallory", "agentSha256": "{zeros}"}}"#
            )),
            "is pinned to agentSha256 0000000000000000000000000000000000000000000000000000000000000000, but the definition this worker resolved has",
        ),
        (
            "carried state from a client",
            Some(
                r#"{"agent": "t-bypass-payer", "prompt": "pay", "requester": "mallory", "carried": {"state": {}, "catalog": [], "turns_taken": 0}}"#
                    .into(),
            ),
            "`carried` is set only by Countersign's own continue-as-new",
        ),
    ];
    expect_failures(&env, "bypass-input", &cases).await?;
    assert_eq!(env.sink.received("/payments").len(), 0);
    Ok(())
}

#[tokio::test]
async fn inline_definitions_are_validated_by_the_run_itself() -> Result<()> {
    let env = TestEnv::new("bypass-inline").await?;
    // A development worker that accepts inline definitions: the run still
    // checks them with the same constructor as a registry file.
    let worker = WorkerProcess::start(&env.task_queue, &[], &[]).await?;
    let payer = serde_json::to_value(env.agent(PAYER)?)?;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut agent = payer.clone();
        edit(&mut agent);
        agent
    };
    let read_payment = with(&|a| a["tools"][0]["effect"] = json!("read"));
    let sub_agent_parent = json!({
        "name": "t-bypass-parent",
        "model": {"provider": "scripted", "steps": [
            {"say": "Delegating.", "calls": [{"tool": "payer", "arguments": {"prompt": "pay"}}]},
            {"say": "Done."}
        ]},
        "tools": [{"name": "payer", "requires_approval": false,
                   "agent": {"file": "payer.toml", "definition": read_payment.clone()}}]
    });
    let cases = [
        (
            "a money tool declared read",
            read_payment.clone(),
            "field `tools[0].effect`: a payment_request tool moves money",
        ),
        (
            "requires_approval = false on money",
            with(&|a| a["tools"][0]["requires_approval"] = json!(false)),
            "field `tools[0].requires_approval`: a money tool always needs approval",
        ),
        (
            "a condition that does not parse",
            with(&|a| a["tools"][1]["approval_when"] = json!("amount >")),
            "field `tools[1].approval_when`: condition `amount >` does not parse",
        ),
        (
            "a sub-agent that calls the payment a read",
            sub_agent_parent,
            "field `tools[0].agent.definition.tools[0].effect`",
        ),
        (
            "AgentRun offered as a workflow tool (the model would write the child's input)",
            with(&|a| {
                a["tools"][1] = json!({"name": "spawn", "workflow": {"workflow_type": "AgentRun"}});
                a["model"]["steps"][0]["calls"] = json!([{"tool": "spawn", "arguments": {
                    "agent": read_payment.clone(), "prompt": "pay", "requester": "ceo"}}]);
            }),
            "`AgentRun` is Countersign's own workflow and cannot be a workflow tool",
        ),
    ];
    let cases: Vec<(&str, Option<String>, &str)> = cases
        .into_iter()
        .map(|(what, agent, expected)| {
            let input = json!({"agent": agent, "prompt": "pay", "requester": "mallory"});
            (what, Some(input.to_string()), expected)
        })
        .collect();
    expect_failures(&env, "bypass-inline", &cases).await?;
    assert_eq!(env.sink.received("/payments").len(), 0);
    assert!(!worker.log().contains("panicked"), "{}", worker.log());
    Ok(())
}
