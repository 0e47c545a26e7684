//! Racing decisions: many runs wait at once; several clients, each with its
//! own connection, send decisions for them in random order, by update and by
//! signal, with duplicates, approve/deny races between reviewers, and late
//! decisions after expiry. Each approval must end with exactly one outcome,
//! payments must equal approvals, and every refused decision must say why.

use super::*;
use crate::harness::{TestEnv, server_address};
use countersign::devserver;
use countersign_approvals::{Approvals, ApproveOptions, approve_decision, deny_decision};
use countersign_proto::{ApprovalState, Decision, DecisionKind, RunState, RunStatus};
use futures::{StreamExt, TryStreamExt, stream};

const DEADLINE: Duration = Duration::from_secs(240);
const CLIENTS: usize = 6;
const REVIEWERS: [&str; 3] = ["bob@example.com", "carol@example.com", "dave@example.com"];

/// A small deterministic generator (xorshift64*): the seed is in the report,
/// so a failing order can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[derive(Debug, Clone)]
struct Attempt {
    decision: Decision,
    by_update: bool,
}

/// What a client saw for one attempt.
#[derive(Debug)]
enum Seen {
    /// An update the run accepted, with the resulting state.
    Accepted(Decision, ApprovalState),
    /// An update (or a signal to a finished run) refused, with the reason.
    Refused(Decision, String),
    /// A signal delivered; the run judges it (see its decision records).
    Signalled,
}

#[tokio::test]
async fn racing_decisions_end_each_approval_exactly_once() -> Result<()> {
    let runs = scale(100, 1000);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let env = TestEnv::new("racing").await?;
    let payments = IdempotentApi::start().await?;
    let worker = WorkerProcess::start(&env.task_queue, &[], &[]).await?;
    let started = Instant::now();

    // One run in ten expires after 2 s and only ever gets late decisions.
    let waiting = env.agent(&scripted_paying_agent("race-wait", "1h", &payments))?;
    let expiring = env.agent(&scripted_paying_agent("race-expire", "2s", &payments))?;
    let expires = |i: usize| i % 10 == 9;
    let ids: Vec<String> = stream::iter(0..runs)
        .map(|i| {
            let agent = if expires(i) {
                expiring.clone()
            } else {
                waiting.clone()
            };
            let env = &env;
            async move { env.start(agent, &format!("pay invoice {i}")).await }
        })
        .buffered(32)
        .try_collect()
        .await?;
    let approval_ids: Vec<String> =
        stream::iter(ids.iter().enumerate().filter(|(i, _)| !expires(*i)))
            .map(|(_, id)| {
                let env = &env;
                async move {
                    wait_within(&format!("the approval of {id}"), DEADLINE, || async {
                        let pending = env.approvals.pending_of_run(id).await.ok()?;
                        pending.first().map(|p| p.approval_id.clone())
                    })
                    .await
                }
            })
            .buffered(32)
            .try_collect()
            .await?;
    let all_waiting_after = started.elapsed();

    // Two to four attempts per approval, random kind, reviewer and channel;
    // a third of them sent twice, as a retrying client does.
    let mut attempts = Vec::new();
    for approval_id in &approval_ids {
        for _ in 0..2 + rng.below(3) {
            let reviewer = REVIEWERS[rng.below(REVIEWERS.len())];
            let decision = if rng.below(2) == 0 {
                approve_decision(approval_id, reviewer, ApproveOptions::default())?
            } else {
                deny_decision(approval_id, reviewer, "not convinced")
            };
            let attempt = Attempt {
                decision,
                by_update: rng.below(2) == 0,
            };
            if rng.below(3) == 0 {
                attempts.push(attempt.clone());
            }
            attempts.push(attempt);
        }
    }
    for i in (1..attempts.len()).rev() {
        attempts.swap(i, rng.below(i + 1));
    }
    let mut per_client: Vec<Vec<Attempt>> = vec![Vec::new(); CLIENTS];
    for attempt in attempts {
        per_client[rng.below(CLIENTS)].push(attempt);
    }
    let attempts_sent: usize = per_client.iter().map(Vec::len).sum();

    let deciding = Instant::now();
    let seen: Vec<Vec<Seen>> =
        futures::future::try_join_all(per_client.into_iter().map(|attempts| async move {
            let approvals = Approvals::new(devserver::connect(server_address()).await?);
            let mut seen = Vec::with_capacity(attempts.len());
            for Attempt {
                decision,
                by_update,
            } in attempts
            {
                seen.push(send(&approvals, decision, by_update).await);
            }
            anyhow::Ok(seen)
        }))
        .await?;
    let decisions_took = deciding.elapsed();

    // Everything finishes; the expired runs then get their late decisions.
    let states: Vec<RunState> = stream::iter(&ids)
        .map(|id| {
            let env = &env;
            async move {
                tokio::time::timeout(DEADLINE, env.approvals.wait_for_run(id))
                    .await
                    .with_context(|| format!("{id} did not finish"))?
                    .map_err(anyhow::Error::from)
            }
        })
        .buffered(32)
        .try_collect()
        .await?;
    let late_client = Approvals::new(devserver::connect(server_address()).await?);
    let mut late = Vec::new();
    for state in states.iter().filter(|s| {
        s.approvals
            .iter()
            .any(|a| a.state() == ApprovalState::Expired)
    }) {
        let approval_id = &state.approvals[0].approval_id;
        let approve = approve_decision(approval_id, REVIEWERS[0], ApproveOptions::default())?;
        late.push(send(&late_client, approve.clone(), true).await);
        late.push(send(&late_client, approve, false).await);
    }
    let tally = HistoryTally::of(&env.client, &ids).await?;
    worker.kill().await?;

    // Invariants.
    let made = payments.effects();
    let mut finals: HashMap<String, ApprovalState> = HashMap::new();
    let (mut signal_accepted, mut signal_rejected) = (0, 0);
    for state in &states {
        assert_eq!(state.status(), RunStatus::Completed, "{state:?}");
        for approval in &state.approvals {
            let id = &approval.approval_id;
            let final_state = approval.state();
            assert!(
                matches!(
                    final_state,
                    ApprovalState::Approved | ApprovalState::Denied | ApprovalState::Expired
                ),
                "{id} ended {final_state:?}"
            );
            let accepted: Vec<_> = state
                .decisions
                .iter()
                .filter(|d| &d.approval_id == id && d.accepted)
                .collect();
            assert_eq!(
                accepted.len(),
                1,
                "{id}: one accepted decision, got {accepted:?}"
            );
            assert_eq!(accepted[0].resulting_state(), final_state, "{id}");
            assert_eq!(
                made.contains_key(id),
                final_state == ApprovalState::Approved,
                "{id}: payment vs {final_state:?}"
            );
            finals.insert(id.clone(), final_state);
        }
        for record in state.decisions.iter().filter(|d| d.channel == "signal") {
            if record.accepted {
                signal_accepted += 1;
            } else {
                signal_rejected += 1;
                assert!(
                    !record.message.trim().is_empty(),
                    "a rejected signal without a reason: {record:?}"
                );
            }
        }
    }
    let approved = finals
        .values()
        .filter(|s| **s == ApprovalState::Approved)
        .count();
    assert_eq!(made.len(), approved, "payments vs approvals");
    let mut refusal_reasons: HashMap<String, usize> = HashMap::new();
    let (mut updates_accepted, mut refused, mut signalled) = (0, 0, 0);
    for seen in seen.iter().flatten().chain(&late) {
        match seen {
            Seen::Accepted(decision, resulting) => {
                updates_accepted += 1;
                let expected = if decision.kind() == DecisionKind::Approve {
                    ApprovalState::Approved
                } else {
                    ApprovalState::Denied
                };
                assert_eq!(*resulting, expected, "{decision:?}");
                assert_eq!(
                    finals.get(&decision.approval_id),
                    Some(resulting),
                    "an accepted update must be the outcome: {decision:?}"
                );
            }
            Seen::Refused(decision, reason) => {
                refused += 1;
                assert!(
                    !reason.trim().is_empty(),
                    "a refusal without a reason: {decision:?}"
                );
                *refusal_reasons
                    .entry(reason_kind(reason, &decision.approval_id))
                    .or_default() += 1;
            }
            Seen::Signalled => signalled += 1,
        }
    }
    // Every late decision was refused: the run had finished.
    assert!(
        late.iter().all(|s| matches!(s, Seen::Refused(..))),
        "{late:?}"
    );
    assert_eq!(tally.workflow_tasks_failed, 0, "{tally:?}");

    write_report(
        "racing",
        &json!({
            "seed": seed,
            "runs": runs,
            "clients": CLIENTS,
            "all_waiting_after_s": all_waiting_after.as_secs_f64(),
            "decision_attempts": attempts_sent,
            "late_decisions": late.len(),
            "decisions_took_s": decisions_took.as_secs_f64(),
            "updates_accepted": updates_accepted,
            "refused_with_reason": refused,
            "refusal_reasons": refusal_reasons,
            "signals_delivered": signalled,
            "signal_decisions_accepted": signal_accepted,
            "signal_decisions_rejected_with_reason": signal_rejected,
            "approved": approved,
            "denied": finals.values().filter(|s| **s == ApprovalState::Denied).count(),
            "expired": finals.values().filter(|s| **s == ApprovalState::Expired).count(),
            "payments_made": made.len(),
            "payment_deliveries": payments.deliveries().len(),
            "histories": tally,
            "elapsed_s": started.elapsed().as_secs_f64(),
            "task_queue": env.task_queue,
        }),
    )
}

async fn send(approvals: &Approvals, decision: Decision, by_update: bool) -> Seen {
    if by_update {
        match approvals.decide(decision.clone()).await {
            Ok(outcome) if outcome.accepted => Seen::Accepted(decision, approval_state(&outcome)),
            Ok(outcome) => Seen::Refused(decision, outcome.message),
            Err(e) => Seen::Refused(decision, e.to_string()),
        }
    } else {
        match approvals.send_decision(decision.clone()).await {
            Ok(()) => Seen::Signalled,
            Err(e) => Seen::Refused(decision, e.to_string()),
        }
    }
}

fn approval_state(outcome: &countersign_proto::DecisionOutcome) -> ApprovalState {
    outcome.state()
}

/// A refusal's text with the approval id taken out, to group them.
fn reason_kind(reason: &str, approval_id: &str) -> String {
    reason
        .replace(approval_id, "<id>")
        .chars()
        .take(120)
        .collect()
}
