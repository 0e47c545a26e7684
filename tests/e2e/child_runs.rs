//! Tools that run as child workflows (a sub-agent, any workflow type), tools
//! the model invents, and long runs that continue as new.

use crate::harness::*;
use anyhow::Result;
use countersign_approvals::ApproveOptions;
use countersign_policy::agent::AgentFile;
use countersign_proto::{ApprovalState, RunStatus};
use serde_json::json;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowResult};

async fn approve(env: &TestEnv, approval_id: &str) -> Result<()> {
    let outcome = env
        .approvals
        .approve(approval_id, "bob@example.com", ApproveOptions::default())
        .await?;
    anyhow::ensure!(outcome.accepted, "not accepted: {}", outcome.message);
    Ok(())
}

const CHILD_AGENT: &str = r#"
name = "t-child-payer"
description = "Pays one supplier."
approval_expiry = "1h"

[model]
provider = "scripted"

[[model.steps]]
say = "Paying the supplier."
calls = [{ tool = "pay", arguments = { to = "supplier", amount = 40, currency = "EUR" } }]

[[model.steps]]
say = "Supplier paid: {last_result}"

[[tools]]
name = "pay"
builtin = { kind = "payment_request", url = "{sink}/payments" }
"#;

const PARENT_AGENT: &str = r#"
name = "t-parent"
approval_expiry = "1h"

[model]
provider = "scripted"

[[model.steps]]
say = "Delegating the payment."
calls = [{ tool = "payer", arguments = { prompt = "pay the supplier 40 EUR" } }]

[[model.steps]]
say = "Delegated: {last_result}"

[[tools]]
name = "payer"
description = "An agent that pays suppliers."
requires_approval = true
agent = { file = "child.toml" }
"#;

#[tokio::test]
async fn a_sub_agent_is_gated_before_it_starts_and_its_own_calls_are_gated_too() -> Result<()> {
    let env = TestEnv::new("subagent").await?;
    env.agent_file("child.toml", CHILD_AGENT)?;
    let parent = AgentFile::from_file(&env.agent_file("parent.toml", PARENT_AGENT)?)?;
    env.with_worker(async {
        let id = env.start(parent, "pay our supplier").await?;
        let gate = &env.pending(&id, 1).await?[0];
        let tool = gate.tool.as_ref().unwrap();
        assert_eq!((tool.kind.as_str(), tool.name.as_str()), ("agent", "payer"));
        assert_eq!(gate.rule, "tool flag: requires_approval = true");
        let child_id = format!("{id}--payer--call_0_0");
        assert!(
            env.approvals.run_state(&child_id).await.is_err(),
            "the sub-agent started before its approval"
        );

        approve(&env, &gate.approval_id).await?;
        // The child's own money call waits for its own decision, linked to the parent.
        let child_gate = &env.pending(&child_id, 1).await?[0];
        assert_eq!(child_gate.tool.as_ref().unwrap().name, "pay");
        assert_eq!(child_gate.parent_workflow_id, id);
        assert_eq!(child_gate.requester, "alice@example.com");
        let listed = wait_for("the child's approval in approvals list", || async {
            let listing = env.approvals.list_pending(&Default::default()).await.ok()?;
            listing
                .approvals
                .into_iter()
                .find(|a| a.approval_id == child_gate.approval_id)
        })
        .await?;
        assert_eq!(listed.parent_workflow_id, id);
        assert!(env.sink.received("/payments").is_empty());

        approve(&env, &child_gate.approval_id).await?;
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert!(
            state
                .final_answer
                .starts_with("Delegated: Supplier paid: 200 OK"),
            "{}",
            state.final_answer
        );
        let payments = env.sink.received("/payments");
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].idempotency_key, child_gate.approval_id);
        let child = env.approvals.wait_for_run(&child_id).await?;
        assert_eq!(child.parent_workflow_id, id);
        assert_eq!(child.conversation_id, state.conversation_id);

        env.record_and_replay(&id, "sub_agent").await
    })
    .await
}

#[tokio::test]
async fn a_registry_agents_sub_agent_is_started_by_name_and_hash() -> Result<()> {
    let env = TestEnv::new("subagent-registry").await?;
    let dir = env.dir.path().join("agents");
    std::fs::create_dir(&dir)?;
    std::fs::write(dir.join("parent.toml"), PARENT_AGENT)?;
    // The sub-agent's file sits beside its parent; `child.toml` is a path
    // relative to the parent's file, resolved on the worker.
    std::fs::write(
        dir.join("child.toml"),
        CHILD_AGENT.replace("{sink}", &env.sink.url),
    )?;
    let registry = countersign_worker::AgentRegistry::load(&dir)?;
    // No inline definitions: the child can only be started by its name.
    assert!(!registry.allows_inline());
    env.with_worker_serving(registry, async {
        let id = env.start_named("t-parent", "pay our supplier").await?;
        let gate = &env.pending(&id, 1).await?[0];
        approve(&env, &gate.approval_id).await?;
        let child_id = format!("{id}--payer--call_0_0");
        let child_gate = &env.pending(&child_id, 1).await?[0];
        assert_eq!(child_gate.agent, "t-child-payer");
        assert!(env.sink.received("/payments").is_empty());
        approve(&env, &child_gate.approval_id).await?;
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed, "{state:?}");
        assert_eq!(env.sink.received("/payments").len(), 1);
        Ok(())
    })
    .await
}

/// A workflow type of the test's own, on its own task queue: the
/// "workflow as a tool" peer.
#[workflow]
#[derive(Default)]
pub struct TestReindex;

#[workflow_methods]
impl TestReindex {
    #[run(name = "TestReindex")]
    pub async fn run(
        _ctx: &mut WorkflowContext<Self>,
        input: serde_json::Value,
    ) -> WorkflowResult<serde_json::Value> {
        let index = input["index"].as_str().unwrap_or("?").to_string();
        Ok(json!({"reindexed": index, "documents": 3}))
    }
}

#[tokio::test]
async fn a_workflow_tool_runs_as_a_child_on_its_own_queue_after_approval() -> Result<()> {
    let env = TestEnv::new("wftool").await?;
    let other_queue = unique("reindex-queue");
    let agent = env.agent(
        &r#"
name = "t-reindex"
approval_expiry = "1h"

[model]
provider = "scripted"

[[model.steps]]
say = "Reindexing."
calls = [{ tool = "reindex", arguments = { index = "invoices" } }]

[[model.steps]]
say = "Result: {last_result}"

[[tools]]
name = "reindex"
description = "Rebuilds a search index."
workflow = { workflow_type = "TestReindex", task_queue = "QUEUE", input_schema = { type = "object", properties = { index = { type = "string" } }, required = ["index"] } }
"#
        .replace("QUEUE", &other_queue),
    )?;
    let runtime = temporalio_sdk::Runtime::from_current_tokio(Default::default())?;
    let options = temporalio_sdk::WorkerOptions::new(&other_queue)
        .register_workflow::<TestReindex>()?
        .build();
    let mut reindex_worker = temporalio_sdk::Worker::new(&runtime, env.client.clone(), options)?;
    let reindex_worker = reindex_worker.run();
    let test = env.with_worker(async {
        let id = env.start(agent, "reindex invoices").await?;
        let gate = &env.pending(&id, 1).await?[0];
        let tool = gate.tool.as_ref().unwrap();
        assert_eq!(tool.kind, "workflow");
        assert_eq!(gate.effect_class, "write_external");
        let child_id = format!("{id}--reindex--call_0_0");
        assert!(env.approvals.run_state(&child_id).await.is_err());
        approve(&env, &gate.approval_id).await?;
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        let result: serde_json::Value = serde_json::from_str(
            state
                .final_answer
                .strip_prefix("Result: ")
                .expect("the script's answer"),
        )?;
        assert_eq!(result, json!({"reindexed": "invoices", "documents": 3}));
        Ok(())
    });
    tokio::select! {
        result = reindex_worker => anyhow::bail!("the reindex worker stopped: {result:?}"),
        result = test => result,
    }
}

#[tokio::test]
async fn a_tool_the_model_invents_is_refused_without_asking_anyone() -> Result<()> {
    let env = TestEnv::new("invented").await?;
    let agent = env.agent(&format!(
        "{}{}",
        one_call_agent(
            "t-invented",
            "Approval already granted by admin; transferring everything.",
            r#"{ tool = "transfer_all", arguments = { to = "mallory" } }"#,
        ),
        r#"
[[tools]]
name = "pay"
builtin = { kind = "payment_request", url = "{sink}/payments" }
"#
    ))?;
    env.with_worker(async {
        let id = env.start(agent, "move the money").await?;
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert!(state.approvals.is_empty(), "{:?}", state.approvals);
        assert_eq!(
            state.final_answer,
            "Could not: there is no tool named `transfer_all`; the tools are: `pay`. Nothing ran."
        );
        assert!(env.sink.received("/payments").is_empty());
        env.record_and_replay(&id, "invented_tool").await
    })
    .await
}

#[tokio::test]
async fn a_long_run_continues_as_new_and_keeps_its_transcript_and_gates() -> Result<()> {
    let env = TestEnv::new("can").await?;
    let mut toml = String::from(
        r#"
name = "t-long"
approval_expiry = "1h"
continue_as_new_after = 20

[model]
provider = "scripted"
"#,
    );
    for i in 0..6 {
        toml.push_str(&format!(
            "\n[[model.steps]]\nsay = \"note {i}\"\ncalls = [{{ tool = \"notify\", arguments = {{ n = {i} }} }}]\n"
        ));
    }
    toml.push_str(
        r#"
[[model.steps]]
say = "Paying."
calls = [{ tool = "pay", arguments = { to = "acme", amount = 5, currency = "EUR" } }]

[[model.steps]]
say = "All done."

[[tools]]
name = "pay"
builtin = { kind = "payment_request", url = "{sink}/payments" }

[[tools]]
name = "notify"
requires_approval = false
builtin = { kind = "http_post", url = "{sink}/notify" }
"#,
    );
    let agent = env.agent(&toml)?;
    env.with_worker(async {
        let id = env.start(agent, "six notes and a payment").await?;
        let gate = &env.pending(&id, 1).await?[0];
        let before = env.approvals.run_state(&id).await?;
        assert!(
            before.continued >= 2,
            "continued {} times",
            before.continued
        );
        approve(&env, &gate.approval_id).await?;
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert_eq!(state.final_answer, "All done.");
        // user + 8 assistant turns + 7 tool results: nothing lost across runs.
        assert_eq!(state.transcript.len(), 16, "{:#?}", state.transcript);
        let notes: Vec<i64> = env
            .sink
            .received("/notify")
            .iter()
            .map(|r| r.body["n"].as_i64().unwrap())
            .collect();
        assert_eq!(notes, vec![0, 1, 2, 3, 4, 5], "each note exactly once");
        assert_eq!(env.sink.received("/payments").len(), 1);
        assert_eq!(approval_of(&state, "pay").state(), ApprovalState::Approved);
        // The history of the last run, which started from carried state.
        env.record_and_replay(&id, "continue_as_new").await
    })
    .await
}
