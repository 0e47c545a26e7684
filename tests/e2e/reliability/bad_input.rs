//! Bad input from every door, against one waiting run: malformed signal
//! payloads typed into the real `temporal` CLI, updates for unknown or
//! malformed approval ids, oversized payloads, random bytes and wrong types
//! at the HTTP API (property-based), and broken agent files. Nothing may
//! fail a workflow task, panic, or change the run; every refusal says why.
//! Forged Slack requests are covered in `slack.rs`.

use super::*;
use crate::harness::{TestEnv, server_address, temporal_signal};
use crate::http_api::{Payload, call, state as app_state};
use countersign_approvals::{ApprovalsError, ApproveOptions, approve_decision};
use countersign_proto::contract::{
    MAX_APPROVAL_ID_CHARS, MAX_DECISION_BYTES, MAX_EDITED_ARGUMENTS_BYTES, MAX_REASON_CHARS,
    MAX_REJECTED_RECORDS, MAX_REVIEWER_CHARS,
};
use countersign_proto::{
    ApprovalState, Decision, DecisionKind, RefusalCode, RunStatus, json_to_struct,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// The scripted paying agent; its requester may not approve.
fn agent(payments: &IdempotentApi) -> String {
    scripted_paying_agent("bad-input", "1h", payments).replace(
        "approval_expiry = \"1h\"",
        "approval_expiry = \"1h\"\nseparation_of_duties = true",
    )
}

#[tokio::test]
async fn bad_input_is_refused_with_a_reason_and_changes_nothing() -> Result<()> {
    let env = TestEnv::new("bad-input").await?;
    let dir = scenario_dir("bad_input")?;
    let payments = IdempotentApi::start().await?;
    let worker = WorkerProcess::start(&env.task_queue, &[], &[]).await?;
    let id = env
        .start(env.agent(&agent(&payments))?, "pay invoice 1")
        .await?;
    let approval = wait_within("the approval", Duration::from_secs(60), || async {
        env.approvals
            .pending_of_run(&id)
            .await
            .ok()?
            .into_iter()
            .next()
    })
    .await?;
    let approval_id = approval.approval_id.as_str();

    // 1. Malformed signals, typed as an operator would.
    let huge_reason = "x".repeat(300_000);
    let signals = [
        "{}".to_string(),
        "null".into(),
        "[1, 2]".into(),
        r#""approve""#.into(),
        "42".into(),
        r#"{"approvalId": 42}"#.into(),
        format!(r#"{{"approvalId": "{approval_id}", "kind": "DECISION_KIND_APPROVE"}}"#),
        format!(r#"{{"approvalId": "{approval_id}", "kind": 7, "reviewer": "ops"}}"#),
        format!(
            r#"{{"approvalId": "{approval_id}", "kind": "DECISION_KIND_APPROVE", "reviewer": "ops", "editedArguments": "all of it"}}"#
        ),
        format!(
            r#"{{"approvalId": "{approval_id}", "kind": "DECISION_KIND_APPROVE", "reviewer": "ops", "scope": "DECISION_SCOPE_FOREVER"}}"#
        ),
        format!(
            r#"{{"approvalId": "{approval_id}", "kind": "DECISION_KIND_APPROVE", "reviewer": "ops", "editedArguments": {{"to": "acme", "amount": "lots", "currency": "EUR"}}}}"#
        ),
        format!(
            r#"{{"approvalId": "{approval_id}", "kind": "DECISION_KIND_APPROVE", "reviewer": "alice@example.com"}}"#
        ),
        format!(
            r#"{{"approvalId": "{id}~nope", "kind": "DECISION_KIND_APPROVE", "reviewer": "ops"}}"#
        ),
        format!(
            r#"{{"approvalId": "{approval_id}", "kind": "DECISION_KIND_APPROVE", "reviewer": "ops", "argumentsSha256": "00ff"}}"#
        ),
        format!(
            r#"{{"approvalId": "{approval_id}", "kind": "DECISION_KIND_DENY", "reviewer": "ops", "reason": "{huge_reason}"}}"#
        ),
    ];
    for input in &signals {
        if let Err(e) = temporal_signal(&id, input).await {
            let state = env.approvals.run_state(&id).await?;
            bail!(
                "signalling {}: {e}; the run's decisions: {:?}",
                input.chars().take(200).collect::<String>(),
                state.decisions
            );
        }
    }
    let state = wait_within(
        "every bad signal judged",
        Duration::from_secs(60),
        || async {
            let state = env.approvals.run_state(&id).await.ok()?;
            (state.decisions.len() >= signals.len()).then_some(state)
        },
    )
    .await?;
    let mut signal_reasons = Vec::new();
    for record in &state.decisions {
        assert!(!record.accepted, "a bad signal was accepted: {record:?}");
        assert!(!record.message.trim().is_empty(), "{record:?}");
        signal_reasons.push(record.message.chars().take(160).collect::<String>());
    }
    // The oversized deny was refused as a whole; no 300 kB reason is kept.
    assert!(
        state.decisions.iter().all(|d| d.reason.len() <= 4096),
        "a huge reason was stored"
    );

    // 2. Updates: unknown and malformed ids, oversized and wrong input.
    let mut update_reasons = Vec::new();
    let unknown = format!("{id}~0000");
    for (what, result) in [
        (
            "unknown approval id",
            env.approvals
                .approve(&unknown, "ops", ApproveOptions::default())
                .await,
        ),
        (
            "not an approval id",
            env.approvals
                .approve("garbage", "ops", ApproveOptions::default())
                .await,
        ),
        (
            "no such run",
            env.approvals
                .approve("nobody-here~1", "ops", ApproveOptions::default())
                .await,
        ),
        (
            "edited arguments of the wrong type",
            env.approvals
                .approve(
                    approval_id,
                    "ops",
                    ApproveOptions {
                        edited_arguments: Some(
                            json!({"to": "acme", "amount": "lots", "currency": "EUR"}),
                        ),
                        ..Default::default()
                    },
                )
                .await,
        ),
        (
            "the requester approving",
            env.approvals
                .approve(approval_id, "alice@example.com", ApproveOptions::default())
                .await,
        ),
        (
            "stale arguments hash",
            env.approvals
                .approve(
                    approval_id,
                    "ops",
                    ApproveOptions {
                        arguments_sha256: Some("00ff".into()),
                        ..Default::default()
                    },
                )
                .await,
        ),
        (
            "a 3 MB reason",
            env.approvals
                .decide(countersign_approvals::deny_decision(
                    approval_id,
                    "ops",
                    &"y".repeat(3 << 20),
                ))
                .await,
        ),
        (
            "a 100 kB reason",
            env.approvals
                .decide(countersign_approvals::deny_decision(
                    approval_id,
                    "ops",
                    &"y".repeat(100_000),
                ))
                .await,
        ),
    ] {
        match result {
            Ok(outcome) => {
                assert!(!outcome.accepted, "{what}: accepted {outcome:?}");
                assert!(!outcome.message.is_empty(), "{what}: {outcome:?}");
                update_reasons.push(json!({"input": what, "refused": outcome.message}));
            }
            Err(e) => {
                let text = e.to_string();
                assert!(!text.trim().is_empty(), "{what}");
                assert!(
                    !matches!(e, ApprovalsError::Connection(_)),
                    "{what}: {text}"
                );
                update_reasons.push(
                    json!({"input": what, "refused": text.chars().take(200).collect::<String>()}),
                );
            }
        }
    }

    // 2b. Every bound of a decision, at its limit and one past it, by
    //     update (the approvals crate applies the run's bounds before
    //     sending, with the run's codes; decision_bounds.rs sends them raw
    //     from the Python SDK) and by signal (the `temporal` CLI). At the limit a decision is judged (here: an
    //     unknown approval id, NOT_FOUND); one past it, it is refused for
    //     its size (TOO_LARGE, or INVALID for a hash that is not 64 hex).
    let bounds = decision_bounds(&id);
    let mut bound_refusals = Vec::new();
    for (field, decision, expected) in &bounds {
        let refused = match env.approvals.decide(decision.clone()).await {
            Ok(outcome) => bail!("{field}: an update was accepted: {outcome:?}"),
            Err(e) => e,
        };
        assert_eq!(
            refused.code(),
            Some(*expected),
            "{field} by update: {refused}"
        );
        assert!(refused.to_string().len() < 400, "{field}: {refused}");
        bound_refusals.push(json!({"case": field, "update": expected.as_str_name()}));
    }
    let before = env.approvals.run_state(&id).await?.decisions.len();
    for (field, decision, _) in &bounds {
        let text = serde_json::to_string(decision)?;
        temporal_signal(&id, &text)
            .await
            .with_context(|| format!("signalling {field}"))?;
    }
    let state = wait_within(
        "every bound judged by signal",
        Duration::from_secs(60),
        || async {
            let state = env.approvals.run_state(&id).await.ok()?;
            (state.decisions.len() >= before + bounds.len()).then_some(state)
        },
    )
    .await?;
    for ((field, _, expected), record) in bounds.iter().zip(&state.decisions[before..]) {
        assert!(!record.accepted, "{field}: {record:?}");
        assert_eq!(record.code(), *expected, "{field} by signal: {record:?}");
        assert!(record.message.len() < 400, "{field}: {}", record.message);
    }

    // 3. The HTTP API: random bytes, invalid UTF-8 and wrong JSON types on
    //    every route that takes input. Never a 5xx, always a problem.
    let app = countersign_server::app(app_state(&env, "")?);
    let cases = 200;
    let mut runner = TestRunner::deterministic();
    // A run of its own: a random body may well be a valid decision.
    let http_target = env
        .start(env.agent(&agent(&payments))?, "pay invoice 2")
        .await?;
    let http_approval = wait_within(
        "the HTTP target's approval",
        Duration::from_secs(60),
        || async {
            env.approvals
                .pending_of_run(&http_target)
                .await
                .ok()?
                .into_iter()
                .next()
        },
    )
    .await?;
    let strategy = http_request_strategy(http_approval.approval_id);
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for _ in 0..cases {
        let (method, path, body, as_json) = strategy
            .new_tree(&mut runner)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .current();
        let payload = if as_json {
            Payload::Json(&body)
        } else {
            Payload::Raw(&body)
        };
        let answer = call(&app, method, &path, Some(crate::http_api::BOB), payload).await?;
        *statuses.entry(answer.status.as_u16()).or_default() += 1;
        assert!(
            !answer.status.is_server_error(),
            "{method} {path}: {answer:?}"
        );
        if answer.status.is_client_error() {
            answer.problem(answer.status);
        }
    }

    // 4. Broken agent files, through the CLI.
    let broken = [
        ("not TOML", "name = \"x\"\n[model\n"),
        ("no model", "name = \"x\"\n"),
        (
            "unknown provider",
            "name = \"x\"\n[model]\nprovider = \"oracle\"\n",
        ),
        (
            "bad condition",
            "name = \"x\"\n[model]\nprovider = \"scripted\"\nsteps = []\n[[tools]]\nname = \"pay\"\napproval_when = \"amount >\"\nbuiltin = { kind = \"payment_request\", url = \"http://127.0.0.1:1/\" }\n",
        ),
        (
            "bad duration",
            "name = \"x\"\napproval_expiry = \"soon\"\n[model]\nprovider = \"scripted\"\nsteps = []\n",
        ),
        (
            "empty group",
            "name = \"x\"\napprovers = [\"finance\"]\n[groups]\nfinance = []\n[model]\nprovider = \"scripted\"\nsteps = []\n",
        ),
    ];
    let mut agent_file_errors = Vec::new();
    for (what, text) in broken {
        let path = dir.join(format!("{}.toml", what.replace(' ', "-")));
        std::fs::write(&path, text)?;
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(["run", "start", "--prompt", "hi", "--agent"])
            .arg(&path)
            .env("TEMPORAL_ADDRESS", server_address())
            .output()
            .await?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains(&*path.file_name().unwrap().to_string_lossy()),
            "{what}: the error names the file: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{what}: {stderr}");
        agent_file_errors.push(json!({"input": what, "error": stderr.trim()}));
    }

    // The run never moved: still waiting, nothing paid; a good decision now
    // finishes it.
    assert_eq!(env.approvals.pending_of_run(&id).await?.len(), 1);
    assert!(
        payments
            .deliveries()
            .iter()
            .all(|d| d.idempotency_key != approval_id)
    );
    env.approvals
        .decide(approve_decision(
            approval_id,
            "ops",
            ApproveOptions::default(),
        )?)
        .await?;
    let state =
        tokio::time::timeout(Duration::from_secs(60), env.approvals.wait_for_run(&id)).await??;
    assert_eq!(state.status(), RunStatus::Completed);
    assert_eq!(state.approvals[0].state(), ApprovalState::Approved);
    assert!(payments.effects().contains_key(approval_id));
    let tally = HistoryTally::of(&env.client, &[id.clone(), http_target]).await?;
    worker.kill().await?;
    assert_eq!(tally.workflow_tasks_failed, 0, "{tally:?}");

    write_report(
        "bad_input",
        &json!({
            "malformed_signals": signals.len(),
            "signal_refusals": signal_reasons,
            "update_refusals": update_reasons,
            "bounds": {
                "approval_id_chars": MAX_APPROVAL_ID_CHARS,
                "reviewer_chars": MAX_REVIEWER_CHARS,
                "reason_chars": MAX_REASON_CHARS,
                "arguments_sha256": "64 hex digits",
                "edited_arguments_bytes": MAX_EDITED_ARGUMENTS_BYTES,
                "decision_bytes": MAX_DECISION_BYTES,
                "rejected_records_kept": MAX_REJECTED_RECORDS,
                "cases": bound_refusals,
            },
            "http_cases": cases,
            "http_statuses": statuses,
            "agent_file_errors": agent_file_errors,
            "histories": tally,
        }),
    )
}

/// For each bound of a decision: (case, decision, the refusal it gets).
/// At the limit the decision names an approval that does not exist, so it
/// is judged and refused as NOT_FOUND; one past, its size refuses it first.
fn decision_bounds(workflow_id: &str) -> Vec<(String, Decision, RefusalCode)> {
    use RefusalCode::{Invalid, NotFound, TooLarge};
    let unknown = format!("{workflow_id}~0000");
    let base = Decision {
        approval_id: unknown.clone(),
        kind: DecisionKind::Approve as i32,
        reviewer: "ops".into(),
        ..Default::default()
    };
    let with = |edit: &dyn Fn(&mut Decision)| {
        let mut d = base.clone();
        edit(&mut d);
        d
    };
    // `{"k":"…"}` is 8 bytes of canonical JSON around the string.
    let edited =
        |bytes: usize| json_to_struct(&json!({"k": "x".repeat(bytes - 8)})).expect("an object");
    let id_at = |chars: usize| format!("{unknown}{}", "0".repeat(chars - unknown.len()));
    let mut cases = Vec::new();
    for (limit, past) in [(0, NotFound), (1, TooLarge)] {
        let n = |max: usize| max + limit;
        cases.extend([
            (
                format!("approvalId {}", n(MAX_APPROVAL_ID_CHARS)),
                with(&|d| d.approval_id = id_at(n(MAX_APPROVAL_ID_CHARS))),
                past,
            ),
            (
                format!("reviewer {}", n(MAX_REVIEWER_CHARS)),
                with(&|d| d.reviewer = "r".repeat(n(MAX_REVIEWER_CHARS))),
                past,
            ),
            (
                format!("reason {}", n(MAX_REASON_CHARS)),
                with(&|d| d.reason = "y".repeat(n(MAX_REASON_CHARS))),
                past,
            ),
            (
                format!("editedArguments {} bytes", n(MAX_EDITED_ARGUMENTS_BYTES)),
                with(&|d| d.edited_arguments = Some(edited(n(MAX_EDITED_ARGUMENTS_BYTES)))),
                past,
            ),
            (
                format!("argumentsSha256 {} hex", 64 + limit),
                with(&|d| d.arguments_sha256 = "a".repeat(64 + limit)),
                if limit == 0 { NotFound } else { Invalid },
            ),
        ]);
    }
    cases
}

/// A request with input: a route that takes some, any path id, and a body
/// of random bytes (often not UTF-8), random JSON, or the right fields with
/// the wrong types; sent as JSON or with no content type.
fn http_request_strategy(
    approval_id: String,
) -> impl Strategy<Value = (&'static str, String, Vec<u8>, bool)> {
    let id = prop_oneof![
        Just(approval_id),
        "[a-zA-Z0-9~%._-]{0,40}",
        Just("%FF%FE".to_string()),
    ];
    let route = prop_oneof![
        Just(("POST", "/approvals/{id}/approve")),
        Just(("POST", "/approvals/{id}/deny")),
        Just(("POST", "/runs")),
        Just(("GET", "/approvals/{id}")),
        Just(("GET", "/runs/{id}")),
        Just(("GET", "/approvals?status={id}")),
    ];
    let json_value =
        any::<i64>()
            .prop_map(|n| json!(n))
            .boxed()
            .prop_recursive(3, 16, 4, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                    prop::collection::hash_map("[a-zA-Z]{1,12}", inner, 0..4)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                    ".{0,20}".prop_map(Value::String),
                    Just(Value::Null),
                    any::<bool>().prop_map(Value::Bool),
                ]
            });
    let wrong_types = (json_value.clone(), json_value.clone(), json_value.clone()).prop_map(|(a, b, c)| {
        json!({"reason": a, "editedArguments": b, "argumentsSha256": c, "agent": a, "prompt": b, "mode": c})
    });
    let body = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value.prop_map(|v| serde_json::to_vec(&v).unwrap()),
        wrong_types.prop_map(|v| serde_json::to_vec(&v).unwrap()),
    ];
    (route, id, body, any::<bool>()).prop_map(|((method, template), id, body, as_json)| {
        (method, template.replace("{id}", &id), body, as_json)
    })
}
