//! Runs waiting for approval survive a restart of the Temporal server: a dev
//! server on a SQLite file is stopped with runs waiting and started again on
//! the same file and port. The same worker process rides through the outage;
//! every run accepts its decision and finishes, its payment made once.

use super::*;
use countersign::devserver::{DevServer, DevServerOptions, free_port};
use countersign_approvals::{Approvals, ApproveOptions};
use countersign_policy::agent::AgentFile;
use countersign_policy::run::AgentRunInput;
use countersign_proto::{ApprovalState, RunStatus};
use futures::future::try_join_all;

const DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test]
async fn waiting_runs_survive_a_server_restart() -> Result<()> {
    let runs = scale(10, 100);
    let dir = scenario_dir("server_restart")?;
    let options = DevServerOptions {
        port: free_port()?,
        ui_port: None,
        db_file: Some(dir.join("temporal.db")),
        log_file: Some(dir.join("server.log")),
        tuned: true,
    };
    let (server, client) = DevServer::start(options.clone()).await?;
    let approvals = Approvals::new(client.clone());
    let task_queue = crate::harness::unique("restart");
    let model = HoldingModel::start().await?;
    let payments = IdempotentApi::start().await?;
    let worker = WorkerProcess::start_on(
        &server.address,
        &task_queue,
        &[],
        &[(MODEL_KEY_ENV, "sk-reliability")],
    )
    .await?;
    let agent = AgentFile::from_toml(
        &paying_agent("restart", &model, &payments, "1h"),
        Path::new("restart.toml"),
        &dir,
        &|_| None,
    )?;
    let ids: Vec<String> = try_join_all((0..runs).map(|i| {
        let (approvals, agent, task_queue) = (&approvals, agent.clone(), &task_queue);
        async move {
            let id = format!("{task_queue}-{i}");
            let input =
                AgentRunInput::inline(agent, &format!("pay invoice {i}"), "alice@example.com");
            approvals.start_run(input, &id, Some(task_queue)).await?;
            anyhow::Ok(id)
        }
    }))
    .await?;
    let waiting_query =
        format!("TaskQueue = '{task_queue}' AND CountersignStatus = 'AwaitingApproval'");
    wait_within("every run waiting", DEADLINE, || async {
        let count = client
            .count_workflows(waiting_query.as_str(), Default::default())
            .await
            .ok()?;
        (count.count() == runs).then_some(())
    })
    .await?;
    let db_bytes_before = std::fs::metadata(dir.join("temporal.db"))?.len();

    // The outage: the server stops, its state only on disk.
    let outage = Instant::now();
    drop(client);
    server.stop(Duration::from_secs(20)).await?;
    let (server, client) = DevServer::start(options).await?;
    let restarted_after = outage.elapsed();
    let approvals = Approvals::new(client.clone());

    // Every run still waits, and accepts its decision through the same worker.
    let decided = Instant::now();
    try_join_all(ids.iter().map(|id| {
        let approvals = &approvals;
        async move {
            let pending = wait_within(&format!("the approval of {id}"), DEADLINE, || async {
                let mut pending = approvals.pending_of_run(id).await.ok()?;
                (pending.len() == 1).then(|| pending.remove(0))
            })
            .await?;
            let outcome = approvals
                .approve(
                    &pending.approval_id,
                    "bob@example.com",
                    ApproveOptions::default(),
                )
                .await?;
            anyhow::ensure!(outcome.accepted, "{outcome:?}");
            let state = tokio::time::timeout(DEADLINE, approvals.wait_for_run(id))
                .await
                .with_context(|| format!("{id} did not finish"))??;
            anyhow::ensure!(state.status() == RunStatus::Completed, "{state:?}");
            anyhow::ensure!(
                state
                    .approvals
                    .iter()
                    .all(|a| a.state() == ApprovalState::Approved),
                "{state:?}"
            );
            anyhow::Ok(pending.approval_id)
        }
    }))
    .await?;
    let decisions_took = decided.elapsed();
    let tally = HistoryTally::of(&client, &ids).await?;
    worker.kill().await?;
    drop(server);

    assert_eq!(payments.effects().len(), runs, "one payment per run");
    assert_eq!(tally.workflow_tasks_failed, 0, "{tally:?}");
    write_report(
        "server_restart",
        &json!({
            "runs": runs,
            "db_bytes_before_restart": db_bytes_before,
            "server_back_after_s": restarted_after.as_secs_f64(),
            "decide_and_finish_all_s": decisions_took.as_secs_f64(),
            "payments_made": payments.effects().len(),
            "payment_deliveries": payments.deliveries().len(),
            "histories": tally,
        }),
    )
}
