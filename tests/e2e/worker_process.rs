//! The `countersign worker` process in production shape: SIGTERM drains the
//! tool call in flight (within the grace period, then exit 0) while waiting
//! runs stay waiting; a call that outlives the grace period is cancelled and
//! retried on the next worker.

use crate::gated_runs::pay_agent;
use crate::harness::*;
use anyhow::{Context, Result, ensure};
use countersign_proto::{ApprovalState, RunStatus};
use std::time::{Duration, Instant};

/// One call of `announce`, an `http_post` to `sink`.
fn announce_agent(name: &str, sink: &IdempotentApi, gated: bool) -> String {
    let mut toml = one_call_agent(
        name,
        "Announcing.",
        r#"{ tool = "announce", arguments = { text = "release 1.4" } }"#,
    );
    toml.push_str(&format!(
        r#"
[[tools]]
name = "announce"
requires_approval = {gated}
builtin = {{ kind = "http_post", url = "{}/announce" }}
"#,
        sink.url
    ));
    toml
}

#[tokio::test]
async fn sigterm_drains_the_tool_call_in_flight_and_leaves_waiting_runs_waiting() -> Result<()> {
    let env = TestEnv::new("sigterm").await?;
    let hold = IdempotentApi::start().await?;
    hold.hold();
    // The grace period comes from the environment, as in a container.
    let mut first = WorkerProcess::start(
        &env.task_queue,
        &[],
        &[("COUNTERSIGN_WORKER_SHUTDOWN_GRACE", "25")],
    )
    .await?;
    ensure!(
        first.log().contains("shutdown grace 25s"),
        "{}",
        first.log()
    );

    // Run A: an approved announcement whose POST the sink holds open.
    let announcing = env
        .start(
            env.agent(&announce_agent("t-announce", &hold, true))?,
            "announce",
        )
        .await?;
    let approval = env.pending(&announcing, 1).await?.remove(0);
    // Run B: a payment that waits for a reviewer throughout.
    let paying = env.start(env.agent(&pay_agent())?, "pay invoice 7").await?;
    let payment = env.pending(&paying, 1).await?.remove(0);
    env.approvals
        .approve(&approval.approval_id, "bob", Default::default())
        .await?;
    hold.arrived().await?;

    // SIGTERM while the POST is in flight; answer it only once the worker
    // has begun shutting down, so the drain is what lets it finish.
    let signalled = Instant::now();
    first.terminate()?;
    first.wait_for_log("shutting down").await?;
    hold.release();
    let status = first.exit_status(DEADLINE).await?;
    let took = signalled.elapsed();
    eprintln!("SIGTERM to exit, draining one held tool call: {took:?}");
    ensure!(status.success(), "exit status {status}: {}", first.log());
    ensure!(first.log().contains("countersign worker stopped"));
    assert_eq!(hold.keys(), vec![approval.approval_id.clone()]);
    assert_eq!(hold.answered(), 1);

    // With no worker at all, B is still waiting for its reviewer.
    let waiting = env
        .approvals
        .list_runs(Some("AwaitingApproval"), None)
        .await?;
    ensure!(
        waiting.iter().any(|r| r.workflow_id == paying),
        "{paying} is not awaiting approval: {waiting:?}"
    );

    // A new worker: B is decided and completes; A continues from the
    // reported tool result, without calling the tool again.
    let _second = WorkerProcess::start(&env.task_queue, &[], &[]).await?;
    let still = env.pending(&paying, 1).await?.remove(0);
    assert_eq!(still.approval_id, payment.approval_id);
    assert_eq!(still.state(), ApprovalState::Pending);
    let outcome = env
        .approvals
        .approve(&payment.approval_id, "bob", Default::default())
        .await?;
    assert!(outcome.accepted);
    assert_eq!(env.result(&paying).await?.status(), RunStatus::Completed);
    assert_eq!(env.sink.received("/payments").len(), 1);
    let announced = env.result(&announcing).await?;
    assert_eq!(announced.status(), RunStatus::Completed);
    assert_eq!(hold.keys().len(), 1, "the drained call must not run again");
    Ok(())
}

#[tokio::test]
async fn a_tool_call_outliving_the_grace_period_is_cancelled_and_retried() -> Result<()> {
    let env = TestEnv::new("grace").await?;
    let hold = IdempotentApi::start().await?;
    hold.hold();
    let mut first = WorkerProcess::start(&env.task_queue, &["--shutdown-grace", "1"], &[]).await?;
    let id = env
        .start(
            env.agent(&announce_agent("t-grace", &hold, false))?,
            "announce",
        )
        .await?;
    hold.arrived().await?;

    // The sink never answers this worker: after 1 s the call is cancelled,
    // reported as failed by the shutdown, and the process still exits 0.
    let signalled = Instant::now();
    first.terminate()?;
    let status = first.exit_status(DEADLINE).await?;
    let took = signalled.elapsed();
    eprintln!("SIGTERM to exit with a tool call held past a 1 s grace: {took:?}");
    ensure!(status.success(), "exit status {status}: {}", first.log());
    ensure!(
        took >= Duration::from_secs(1),
        "exited after {took:?}, before the grace period"
    );
    ensure!(
        took < Duration::from_secs(10),
        "exit took {took:?}: the grace period was not honoured"
    );

    // The next worker retries the call with the same idempotency key.
    hold.release();
    let _second = WorkerProcess::start(&env.task_queue, &[], &[]).await?;
    let state = env.result(&id).await?;
    assert_eq!(state.status(), RunStatus::Completed);
    let keys = hold.keys();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert_eq!(keys[0], keys[1], "a retry carries the same key");
    Ok(())
}

/// The value of the sample of `name` whose labels include every one of
/// `labels` (`key="value"`), in Prometheus text.
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next()?.parse().ok())
}

#[tokio::test]
async fn the_metrics_endpoint_serves_sdk_and_tool_metrics() -> Result<()> {
    let env = TestEnv::new("metrics").await?;
    let worker = WorkerProcess::start(&env.task_queue, &["--metrics", "127.0.0.1:0"], &[]).await?;
    let log = worker.log();
    let url = log
        .lines()
        .find_map(|line| line.strip_prefix("metrics at "))
        .with_context(|| format!("no metrics address in the worker's log:\n{log}"))?
        .to_string();
    // One call that succeeds and one that gets an error result.
    let agent = env.agent(
        r#"
name = "t-metrics"

[model]
provider = "scripted"

[[model.steps]]
say = "Reading and announcing."
calls = [
  { tool = "read", arguments = { path = "missing.txt" } },
  { tool = "notify", arguments = { text = "release 1.4" } },
]

[[model.steps]]
say = "Done."

[[tools]]
name = "read"
builtin = { kind = "read_file", root = "." }

[[tools]]
name = "notify"
requires_approval = false
builtin = { kind = "http_post", url = "{sink}/notify" }
"#,
    )?;
    let id = env.start(agent, "announce").await?;
    assert_eq!(env.result(&id).await?.status(), RunStatus::Completed);
    assert_eq!(env.sink.received("/notify").len(), 1);

    let queue = format!("task_queue=\"{}\"", env.task_queue);
    let http = reqwest::Client::new();
    let text = wait_for("the run's metrics", || async {
        let text = http.get(&url).send().await.ok()?.text().await.ok()?;
        sample(
            &text,
            "temporal_workflow_completed",
            &[&queue, "workflow_type=\"AgentRun\""],
        )
        .is_some()
        .then_some(text)
    })
    .await?;
    let executions = "countersign_tool_executions_total";
    let failures = "countersign_tool_failures_total";
    assert_eq!(
        sample(&text, executions, &["tool=\"notify\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, executions, &["tool=\"read\""]),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            failures,
            &["tool=\"read\"", "reason=\"error_result\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, failures, &["tool=\"notify\""]),
        None,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "temporal_workflow_completed",
            &[&queue, "workflow_type=\"AgentRun\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        sample(&text, "temporal_worker_start", &[&queue]).is_some(),
        "{text}"
    );
    eprintln!(
        "metrics endpoint: {} samples, {} temporal_* families",
        text.lines().filter(|l| !l.starts_with('#')).count(),
        text.lines()
            .filter(|l| l.starts_with("# TYPE temporal_"))
            .count()
    );
    Ok(())
}
