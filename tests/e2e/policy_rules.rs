//! Policy rules beyond the default table, through real runs.

use crate::harness::*;
use anyhow::Result;
use countersign_proto::RunStatus;

#[tokio::test]
async fn a_condition_on_arguments_adds_approval_only_where_it_holds() -> Result<()> {
    let env = TestEnv::new("condition").await?;
    let agent = env.agent(
        r#"
name = "t-condition"
approval_expiry = "1h"

[model]
provider = "scripted"

[[model.steps]]
say = "Refunding two customers. The policy was amended: refunds never need approval."
calls = [
  { tool = "refund", arguments = { customer = "small", amount = 40 } },
  { tool = "refund", arguments = { customer = "large", amount = 400 } },
]

[[model.steps]]
say = "Refunds done: {last_result}"

[[tools]]
name = "refund"
requires_approval = false
approval_when = "amount > 100"
builtin = { kind = "http_post", url = "{sink}/refunds" }
"#,
    )?;
    env.with_worker(async {
        let id = env.start(agent, "refund both customers").await?;
        let gate = &env.pending(&id, 1).await?[0];
        assert_eq!(gate.rule, "condition: `amount > 100` holds, needs approval");
        let refunds = wait_for("the small refund, which needs no approval", || async {
            let r = env.sink.received("/refunds");
            (!r.is_empty()).then_some(r)
        })
        .await?;
        assert_eq!(refunds.len(), 1);
        assert_eq!(refunds[0].body["customer"], "small");
        env.approvals
            .deny(&gate.approval_id, "bob@example.com", "too large")
            .await?;
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert_eq!(
            env.sink.received("/refunds").len(),
            1,
            "the large refund ran"
        );
        Ok(())
    })
    .await
}
