//! Signed decisions on a real dev server: an agent with
//! `require_signed_decisions` takes only decisions signed by a key the
//! worker trusts, whoever else can reach the run over Temporal; an agent
//! without it still takes the operators' unsigned ones. Payments are
//! counted at the test's sink.

use crate::gated_runs::pay_agent;
use crate::harness::*;
use anyhow::{Context, Result};
use countersign_approvals::{Approvals, ApprovalsError, ApproveOptions};
use countersign_proto::signing::{TrustedKeys, sign};
use countersign_proto::{RefusalCode, RunStatus};
use countersign_server::{DecisionSigner, ServerConfig};
use countersign_worker::AgentRegistry;
use countersign_worker::registry::load_trusted_keys;
use std::path::Path;

/// `countersign keys new --id ID --out DIR`, checked.
pub(crate) async fn new_keys(id: &str, dir: &Path) -> Result<()> {
    let out = countersign(&["keys", "new", "--id", id, "--out", dir.to_str().unwrap()]).await?;
    anyhow::ensure!(
        out.status.success(),
        "keys new failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

/// The payment agent, requiring signed decisions.
fn signed_pay_agent() -> String {
    pay_agent().replace(
        "approval_expiry = \"1h\"\n",
        "approval_expiry = \"1h\"\nrequire_signed_decisions = true\n",
    )
}

/// The worker for these tests: inline agents, trusting the keys in `dir`.
fn worker_trusting(dir: &Path) -> Result<AgentRegistry> {
    let keys: TrustedKeys = load_trusted_keys(dir)?;
    anyhow::ensure!(keys.len() == 1, "one trusted key expected");
    Ok(AgentRegistry::empty()
        .allowing_inline(true)
        .with_trusted_keys(keys))
}

#[tokio::test]
async fn only_decisions_signed_by_a_trusted_key_decide_where_signatures_are_required() -> Result<()>
{
    let env = TestEnv::new("signed").await?;
    let trusted_dir = env.dir.path().join("trusted");
    let other_dir = env.dir.path().join("other");
    new_keys("finance-signer", &trusted_dir).await?;
    new_keys("intruder", &other_dir).await?;
    // Only the public key goes to the worker.
    std::fs::rename(
        trusted_dir.join("finance-signer.key"),
        env.dir.path().join("finance-signer.key"),
    )?;
    let registry = worker_trusting(&trusted_dir)?;
    env.with_worker_serving(registry, async {
        let id = env
            .start(env.agent(&signed_pay_agent())?, "pay invoice 7")
            .await?;
        let approval = env.pending(&id, 1).await?.remove(0);
        assert!(approval.signed_decisions_required);
        let approval_id = approval.approval_id.clone();

        // 1. Anyone with namespace access types an approval as bob: recorded
        //    as rejected (UNSIGNED), nothing paid.
        temporal_signal(
            &id,
            &format!(
                r#"{{"approvalId":"{approval_id}","kind":"DECISION_KIND_APPROVE","reviewer":"bob@example.com","reason":"typed"}}"#
            ),
        )
        .await?;
        let rejected = wait_for("the unsigned signal's record", || async {
            let state = env.approvals.run_state(&id).await.ok()?;
            state.decisions.into_iter().find(|d| d.reason == "typed")
        })
        .await?;
        assert!(!rejected.accepted);
        assert_eq!(rejected.code(), RefusalCode::Unsigned);
        assert!(rejected.message.contains("--sign-key"), "{}", rejected.message);
        assert!(rejected.signed_by.is_empty());

        // 2. A decision signed by the trusted key, then changed (the reviewer
        //    replaced) before it was signalled: the signature no longer holds.
        let (_, key) =
            countersign::keys::read_signing_key(&env.dir.path().join("finance-signer.key"))?;
        let mut forged = countersign_approvals::approve_decision(
            &approval_id,
            "carol@example.com",
            ApproveOptions {
                reason: "forged".into(),
                ..Default::default()
            },
        )?;
        sign(&mut forged, "finance-signer", &key)?;
        forged.reviewer = "bob@example.com".into();
        temporal_signal(&id, &serde_json::to_string(&forged)?).await?;
        let refused = wait_for("the forged signal's record", || async {
            let state = env.approvals.run_state(&id).await.ok()?;
            state.decisions.into_iter().find(|d| d.reason == "forged")
        })
        .await?;
        assert!(!refused.accepted);
        assert_eq!(refused.code(), RefusalCode::Unsigned);
        assert!(refused.message.contains("does not verify"), "{}", refused.message);

        // 3. An unsigned update: refused with UNSIGNED, no trace.
        let unsigned = env
            .approvals
            .approve(&approval_id, "bob@example.com", ApproveOptions::default())
            .await;
        let Err(ApprovalsError::Unsigned(message)) = unsigned else {
            panic!("an unsigned update was not refused as unsigned: {unsigned:?}");
        };
        assert!(message.contains("countersign serve"), "{message}");

        // 4. Signed, but by a key the worker does not trust.
        let (intruder_id, intruder_key) =
            countersign::keys::read_signing_key(&other_dir.join("intruder.key"))?;
        let intruder = Approvals::new(env.client.clone()).with_signing_key(&intruder_id, intruder_key)?;
        let untrusted = intruder
            .approve(&approval_id, "bob@example.com", ApproveOptions::default())
            .await;
        let Err(ApprovalsError::Unsigned(message)) = untrusted else {
            panic!("an untrusted signature was not refused: {untrusted:?}");
        };
        assert!(message.contains("not a key this run trusts"), "{message}");
        assert!(env.sink.received("/payments").is_empty(), "paid without a signed decision");
        assert_eq!(env.pending(&id, 1).await?.len(), 1);

        // 5. Signed with the trusted key by the CLI: accepted, paid once.
        let key_file = env.dir.path().join("finance-signer.key");
        let out = countersign(&[
            "approvals",
            "approve",
            &approval_id,
            "--reviewer",
            "bob@example.com",
            "--reason",
            "checked the invoice",
            "--sign-key",
            key_file.to_str().unwrap(),
        ])
        .await?;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        let accepted: Vec<_> = state.decisions.iter().filter(|d| d.accepted).collect();
        assert_eq!(accepted.len(), 1, "{:?}", state.decisions);
        assert_eq!(accepted[0].reviewer, "bob@example.com");
        assert_eq!(accepted[0].signed_by, "finance-signer");
        assert_eq!(env.sink.received("/payments").len(), 1);

        // The run's text says who signed.
        let out = countersign(&["run", "show", &id]).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("signed by finance-signer"), "{text}");
        assert!(text.contains("via signal, unsigned"), "{text}");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn agents_without_the_flag_take_unsigned_decisions_and_signed_ones_name_their_key()
-> Result<()> {
    let env = TestEnv::new("unsigned-ok").await?;
    let keys = env.dir.path().join("keys");
    new_keys("ops-bot", &keys).await?;
    let (key_id, key) = countersign::keys::read_signing_key(&keys.join("ops-bot.key"))?;
    let registry = worker_trusting(&keys)?;
    env.with_worker_serving(registry, async {
        // The operators' path: an unsigned signal typed into the CLI.
        let plain = env.start(env.agent(&pay_agent())?, "pay invoice 7").await?;
        let approval = env.pending(&plain, 1).await?.remove(0);
        assert!(!approval.signed_decisions_required);
        temporal_signal(
            &plain,
            &format!(
                r#"{{"approvalId":"{}","kind":"DECISION_KIND_APPROVE","reviewer":"ops@example.com"}}"#,
                approval.approval_id
            ),
        )
        .await?;
        let state = env.result(&plain).await?;
        let decision = state.decisions.iter().find(|d| d.accepted).context("accepted")?;
        assert!(decision.signed_by.is_empty());
        assert_eq!(env.sink.received("/payments").len(), 1);

        // A signing service (the approvals crate) by signal, where
        // signatures are required: accepted, the record names the key.
        let signer = Approvals::new(env.client.clone()).with_signing_key(&key_id, key)?;
        let signed = env
            .start(env.agent(&signed_pay_agent())?, "pay invoice 8")
            .await?;
        let approval = env.pending(&signed, 1).await?.remove(0);
        signer
            .send_decision(countersign_approvals::approve_decision(
                &approval.approval_id,
                "bob@example.com",
                ApproveOptions::default(),
            )?)
            .await?;
        let state = env.result(&signed).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        let decision = state.decisions.iter().find(|d| d.accepted).context("accepted")?;
        assert_eq!(decision.signed_by, "ops-bot");
        assert_eq!(decision.channel, "signal");
        assert_eq!(env.sink.received("/payments").len(), 2);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn serve_signs_every_decision_with_its_signing_key() -> Result<()> {
    use crate::http_api::{BOB, Payload, call, state};
    use axum::http::StatusCode;
    let env = TestEnv::new("serve-signs").await?;
    let keys = env.dir.path().join("keys");
    new_keys("serve-1", &keys).await?;
    // serve's config names the key; the binary reads the file.
    let config = ServerConfig::from_toml(
        "[signing]\nkey_id = \"serve-1\"\nkey_file = \"keys/serve-1.key\"\n",
        Path::new("server.toml"),
    )?;
    let signing = config.signing.context("[signing]")?;
    assert_eq!(signing.key_id, "serve-1");
    let key = countersign::keys::read_key_file(&keys.join("serve-1.key"))?;
    let unsigned_app = countersign_server::app(state(&env, "")?);
    let app = countersign_server::app(
        state(&env, "")?.with_signer(DecisionSigner::new(&signing.key_id, key)?),
    );
    let registry = worker_trusting(&keys)?;
    env.with_worker_serving(registry, async {
        let id = env
            .start(env.agent(&signed_pay_agent())?, "pay invoice 9")
            .await?;
        let approval = env.pending(&id, 1).await?.remove(0);
        let uri = format!("/approvals/{}/approve", approval.approval_id);
        // A server without [signing]: its decision is refused by the run.
        let refused = call(&unsigned_app, "POST", &uri, Some(BOB), Payload::None).await?;
        assert_ne!(refused.status, StatusCode::OK, "{refused:?}");
        assert!(env.sink.received("/payments").is_empty());
        let answer = call(&app, "POST", &uri, Some(BOB), Payload::None).await?;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        let state = env.result(&id).await?;
        let decision = state
            .decisions
            .iter()
            .find(|d| d.accepted)
            .context("accepted")?;
        assert_eq!(decision.reviewer, "bob@example.com");
        assert_eq!(decision.signed_by, "serve-1");
        assert_eq!(env.sink.received("/payments").len(), 1);
        Ok(())
    })
    .await
}
