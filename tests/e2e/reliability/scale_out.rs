//! Scaling out: two worker processes on one task queue share the runs; one
//! is SIGKILLed with payments in flight, and the other finishes everything,
//! each payment made once.

use super::*;
use crate::harness::TestEnv;
use countersign_approvals::ApproveOptions;
use countersign_proto::RunStatus;
use futures::future::try_join_all;

const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test]
async fn two_workers_share_runs_and_one_dying_loses_nothing() -> Result<()> {
    let runs = scale(12, 100);
    let env = TestEnv::new("scale-out").await?;
    let payments = IdempotentApi::start().await?;
    let first = WorkerProcess::start(&env.task_queue, &[], &[]).await?;
    let second = WorkerProcess::start(&env.task_queue, &[], &[]).await?;
    let pids = (first.pid(), second.pid());
    let agent = env.agent(&scripted_paying_agent("scale-out", "1h", &payments))?;
    let ids: Vec<String> = try_join_all((0..runs).map(|i| {
        let (env, agent) = (&env, agent.clone());
        async move { env.start(agent, &format!("pay invoice {i}")).await }
    }))
    .await?;

    // Every payment in flight, held by the API, spread over both workers.
    payments.hold();
    let env = &env;
    try_join_all(ids.iter().map(|id| async move {
        let approval = wait_within(&format!("the approval of {id}"), DEADLINE, || async {
            env.approvals
                .pending_of_run(id)
                .await
                .ok()?
                .into_iter()
                .next()
        })
        .await?;
        env.approvals
            .approve(
                &approval.approval_id,
                "bob@example.com",
                ApproveOptions::default(),
            )
            .await?;
        anyhow::Ok(())
    }))
    .await?;
    wait_within("every payment in flight", DEADLINE, || async {
        (payments.effects().len() == runs).then_some(())
    })
    .await?;
    let identities = activity_identities(env, &ids).await?;
    let ran_on = |pid: u32| {
        identities
            .iter()
            .filter(|i| i.starts_with(&format!("{pid}@")))
            .count()
    };
    let shared = (ran_on(pids.0), ran_on(pids.1));
    assert!(
        shared.0 > 0 && shared.1 > 0,
        "both workers take activities: {identities:?} {pids:?}"
    );

    // One worker dies mid-run; the other takes over its calls.
    first.kill().await?;
    payments.release();
    let states = try_join_all(ids.iter().map(|id| async move {
        tokio::time::timeout(DEADLINE, env.approvals.wait_for_run(id))
            .await
            .with_context(|| format!("{id} did not finish"))?
            .map_err(anyhow::Error::from)
    }))
    .await?;
    assert!(states.iter().all(|s| s.status() == RunStatus::Completed));
    assert_eq!(payments.effects().len(), runs, "one payment per run");
    let tally = HistoryTally::of(&env.client, &ids).await?;
    second.kill().await?;
    assert_eq!(tally.workflow_tasks_failed, 0, "{tally:?}");
    write_report(
        "scale_out",
        &json!({
            "runs": runs,
            "activities_before_the_kill": {"first": shared.0, "second": shared.1},
            "payments_made": payments.effects().len(),
            "payment_deliveries": payments.deliveries().len(),
            "histories": tally,
        }),
    )
}

/// The identity of the worker that started each activity attempt recorded.
async fn activity_identities(env: &TestEnv, ids: &[String]) -> Result<Vec<String>> {
    use temporalio_client::WorkflowFetchHistoryOptions;
    let mut identities = Vec::new();
    for id in ids {
        let events = env
            .client
            .get_workflow_handle::<countersign_approvals::AgentRunWorkflow>(id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
            .await?;
        for event in events {
            if let Some(Attributes::ActivityTaskStartedEventAttributes(a)) = event.attributes {
                identities.push(a.identity);
            }
        }
    }
    Ok(identities)
}
