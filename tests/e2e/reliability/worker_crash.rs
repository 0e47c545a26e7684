//! SIGKILL the worker at each stage of a gated call, with many runs at that
//! stage at once: a model turn in flight, waiting for a decision, between
//! the decision and the tool's completion, and the tool in flight (its
//! effect applied, its answer not delivered). After each kill a new worker
//! process takes over. Every run must finish; every approved payment must
//! exist exactly once at the payments API; no denied or expired one may.

use super::*;
use crate::harness::TestEnv;
use countersign_approvals::{ApproveOptions, approve_decision, deny_decision};
use countersign_proto::{ApprovalState, RunStatus};
use futures::future::try_join_all;

/// What each run's approval gets.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fate {
    /// Approved by signal while no worker runs.
    ApproveBySignal,
    /// Approved by update once a new worker runs.
    ApproveByUpdate,
    /// Denied by signal while no worker runs.
    Deny,
    /// Left to expire.
    Expire,
}

fn fate(i: usize) -> Fate {
    match i % 5 {
        0 | 1 => Fate::ApproveByUpdate,
        2 => Fate::ApproveBySignal,
        3 => Fate::Deny,
        _ => Fate::Expire,
    }
}

/// A crash costs at most a heartbeat or sticky-queue timeout (10 s) plus a
/// retry; this leaves room for a loaded machine.
const STAGE_DEADLINE: Duration = Duration::from_secs(120);

#[tokio::test]
async fn every_run_survives_worker_kills_at_each_stage() -> Result<()> {
    let runs = scale(20, 100);
    let env = TestEnv::new("crash").await?;
    let model = HoldingModel::start().await?;
    let payments = IdempotentApi::start().await?;
    let key = [(MODEL_KEY_ENV, "sk-reliability")];
    let start_worker = || WorkerProcess::start(&env.task_queue, &[], &key);
    let started = Instant::now();
    let mut kills = Vec::new();

    // Stage 1: every run's first model turn is in flight.
    model.hold();
    let worker = start_worker().await?;
    let waiting = env.agent(&paying_agent("crash-wait", &model, &payments, "1h"))?;
    let expiring = env.agent(&paying_agent("crash-expire", &model, &payments, "20s"))?;
    let ids: Vec<String> = try_join_all((0..runs).map(|i| {
        let agent = if fate(i) == Fate::Expire {
            expiring.clone()
        } else {
            waiting.clone()
        };
        let env = &env;
        async move { env.start(agent, &format!("pay invoice {i}")).await }
    }))
    .await?;
    wait_within(
        "every first model turn in flight",
        STAGE_DEADLINE,
        || async { (model.first_turns() >= runs).then_some(()) },
    )
    .await?;
    worker.kill().await?;
    kills.push(("model turn in flight", started.elapsed()));
    model.release();

    // Stage 2: every run waits for a decision.
    let worker = start_worker().await?;
    let mut approvals = Vec::with_capacity(runs);
    for id in &ids {
        let pending = wait_within(&format!("the approval of {id}"), STAGE_DEADLINE, || async {
            let mut pending = env.approvals.pending_of_run(id).await.ok()?;
            (pending.len() == 1).then(|| pending.remove(0))
        })
        .await?;
        approvals.push(pending);
    }
    worker.kill().await?;
    kills.push(("waiting for a decision", started.elapsed()));
    // Signals land in history with no worker running.
    for (i, approval) in approvals.iter().enumerate() {
        let decision = match fate(i) {
            Fate::ApproveBySignal => approve_decision(
                &approval.approval_id,
                "ops@example.com",
                ApproveOptions::default(),
            )?,
            Fate::Deny => deny_decision(&approval.approval_id, "ops@example.com", "not this one"),
            _ => continue,
        };
        env.approvals.send_decision(decision).await?;
    }

    // Stage 3: decisions accepted, tools not finished (the API holds them).
    payments.hold();
    let worker = start_worker().await?;
    try_join_all(
        approvals
            .iter()
            .enumerate()
            .filter(|(i, _)| fate(*i) == Fate::ApproveByUpdate)
            .map(|(_, approval)| async {
                let outcome = env
                    .approvals
                    .approve(
                        &approval.approval_id,
                        "bob@example.com",
                        ApproveOptions::default(),
                    )
                    .await?;
                anyhow::ensure!(outcome.accepted, "{outcome:?}");
                anyhow::Ok(())
            }),
    )
    .await?;
    worker.kill().await?;
    kills.push(("between decision and tool completion", started.elapsed()));

    // Stage 4: every approved payment in flight on the new worker.
    let approved: Vec<&str> = approvals
        .iter()
        .enumerate()
        .filter(|(i, _)| matches!(fate(*i), Fate::ApproveBySignal | Fate::ApproveByUpdate))
        .map(|(_, a)| a.approval_id.as_str())
        .collect();
    let stage4 = Instant::now();
    let worker = start_worker().await?;
    wait_within(
        "every approved payment in flight on the new worker",
        STAGE_DEADLINE,
        || async {
            let deliveries = payments.deliveries();
            approved
                .iter()
                .all(|key| {
                    deliveries
                        .iter()
                        .any(|d| d.idempotency_key == *key && d.at > stage4)
                })
                .then_some(())
        },
    )
    .await?;
    worker.kill().await?;
    kills.push(("tool in flight", started.elapsed()));
    payments.release();

    // Recovery: a last worker finishes everything.
    let worker = start_worker().await?;
    let approvals_client = &env.approvals;
    let states = try_join_all(ids.iter().map(|id| async move {
        tokio::time::timeout(STAGE_DEADLINE, approvals_client.wait_for_run(id))
            .await
            .with_context(|| format!("{id} did not finish"))?
            .map_err(anyhow::Error::from)
    }))
    .await?;
    let tally = HistoryTally::of(&env.client, &ids).await?;
    worker.kill().await?;
    // One run through all four kills, replayed on every test run from now
    // on (tests/histories/worker_crash_stages.json).
    env.record_and_replay(&ids[0], "worker_crash_stages")
        .await?;

    let made = payments.effects();
    let deliveries = payments.deliveries();
    let mut outcome_counts: HashMap<String, usize> = HashMap::new();
    for (i, (state, approval)) in states.iter().zip(&approvals).enumerate() {
        let key = approval.approval_id.as_str();
        assert_eq!(state.status(), RunStatus::Completed, "run {i}: {state:?}");
        let final_state = state
            .approvals
            .iter()
            .find(|a| a.approval_id == key)
            .map(|a| a.state())
            .context("the approval in the final state")?;
        *outcome_counts
            .entry(format!("{final_state:?}"))
            .or_default() += 1;
        match fate(i) {
            Fate::ApproveBySignal | Fate::ApproveByUpdate => {
                assert_eq!(final_state, ApprovalState::Approved, "run {i}");
                assert!(made.contains_key(key), "run {i}: approved but never paid");
                assert!(
                    state.final_answer.contains(key),
                    "run {i}: {}",
                    state.final_answer
                );
            }
            Fate::Deny => {
                assert_eq!(final_state, ApprovalState::Denied, "run {i}");
                assert!(
                    deliveries.iter().all(|d| d.idempotency_key != key),
                    "run {i}: denied but sent"
                );
            }
            Fate::Expire => {
                assert_eq!(final_state, ApprovalState::Expired, "run {i}");
                assert!(
                    deliveries.iter().all(|d| d.idempotency_key != key),
                    "run {i}: expired but sent"
                );
            }
        }
    }
    // Exactly once: one payment per approved call and nothing else, however
    // many times the tool was delivered.
    assert_eq!(made.len(), approved.len(), "payments made vs approved");
    assert_eq!(tally.workflow_tasks_failed, 0, "{tally:?}");

    write_report(
        "worker_crash",
        &json!({
            "runs": runs,
            "kills": kills.iter().map(|(stage, at)| json!({"stage": stage, "at_s": at.as_secs_f64()})).collect::<Vec<_>>(),
            "outcomes": outcome_counts,
            "approved": approved.len(),
            "payments_made": made.len(),
            "payment_deliveries": deliveries.len(),
            "duplicate_deliveries_absorbed_by_idempotency_key": deliveries.len() - made.len(),
            "model_first_turn_requests": model.first_turns(),
            "histories": tally,
            "elapsed_s": started.elapsed().as_secs_f64(),
        }),
    )
}
