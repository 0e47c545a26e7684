//! A signed webhook for chat tools other than Slack (Teams, Mattermost,
//! Discord bridges, an incident tool, your own service).
//!
//! When an approval opens and when it closes, the worker POSTs JSON to the
//! agent's `webhook_url`:
//!
//! ```json
//! {"event": "approval.pending",  "approval": { …PendingApproval… }, "decision": null}
//! {"event": "approval.decided",  "approval": { …final state… },     "decision": { …DecisionRecord… }}
//! ```
//!
//! `approval` and `decision` are the proto3 JSON of `countersign.v1.PendingApproval`
//! and `countersign.v1.DecisionRecord` (camelCase, enums by name);
//! `decision` is `null` when the approval opened or expired. Headers:
//!
//! - `X-Countersign-Timestamp: <unix seconds>`
//! - `X-Countersign-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`
//! - `Idempotency-Key: <approval id>:<event>`, e.g. `pay-1~9b44f9bc:approval.pending`
//!
//! The secret is the value of the environment variable named by the agent's
//! `webhook_secret_env`, read on the worker; without it nothing is sent.
//!
//! # Verifying a delivery
//!
//! 1. Take the raw body bytes, exactly as received (before any JSON parsing),
//!    and the two `X-Countersign-*` headers.
//! 2. Refuse the request if the timestamp is more than 5 minutes away from
//!    your clock (a replayed delivery).
//! 3. Compute `"v1=" + hex(HMAC-SHA256(key = secret, message = timestamp + "." + body))`
//!    and compare it with `X-Countersign-Signature` in constant time.
//! 4. Deduplicate on `Idempotency-Key`: a retried delivery carries the same
//!    key (with a fresh timestamp and signature).
//!
//! From a shell: `printf '%s.%s' "$TS" "$BODY" | openssl dgst -sha256 -hmac "$SECRET"`.
//! In Python: `"v1=" + hmac.new(secret, ts.encode() + b"." + body, hashlib.sha256).hexdigest()`,
//! compared with `hmac.compare_digest`. In Rust: [`verify_signature`].

use super::{Attempt, NotifyEvent, REQUEST_TIMEOUT, classify_response};
use countersign_policy::agent::NotifyConfig;
use hmac::{Hmac, Mac};
use reqwest::header::CONTENT_TYPE;
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The header with the signing time (unix seconds).
pub const TIMESTAMP_HEADER: &str = "X-Countersign-Timestamp";
/// The header with `v1=<hex HMAC-SHA256>`.
pub const SIGNATURE_HEADER: &str = "X-Countersign-Signature";
/// The header with `<approval id>:<event>`.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// How far a receiver should let a timestamp stray from its clock.
pub const TOLERANCE: Duration = Duration::from_secs(300);

/// The event's name on the wire: `approval.pending` or `approval.decided`.
pub fn event_name(event: &NotifyEvent) -> &'static str {
    match event {
        NotifyEvent::Pending { .. } => "approval.pending",
        NotifyEvent::Waiting {
            escalated: false, ..
        } => "approval.reminder",
        NotifyEvent::Waiting {
            escalated: true, ..
        } => "approval.escalated",
        NotifyEvent::Decided { .. } => "approval.decided",
    }
}

/// The JSON body of an event: `{"event", "approval", "decision"}`.
pub fn body(event: &NotifyEvent) -> Result<Value, String> {
    let (approval, decision) = match event {
        NotifyEvent::Pending { approval } | NotifyEvent::Waiting { approval, .. } => {
            (approval, None)
        }
        NotifyEvent::Decided {
            approval, decision, ..
        } => (approval, decision.as_ref()),
    };
    let approval = serde_json::to_value(approval).map_err(|e| format!("the approval: {e}"))?;
    let decision = match decision {
        Some(d) => serde_json::to_value(d).map_err(|e| format!("the decision: {e}"))?,
        None => Value::Null,
    };
    let mut body = json!({"event": event_name(event), "approval": approval, "decision": decision});
    if let NotifyEvent::Waiting { note, .. } = event {
        body["note"] = json!(note);
    }
    Ok(body)
}

/// `v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key size");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a delivery as a receiver should: the timestamp within
/// [`TOLERANCE`] of `now` (unix seconds) and the signature, compared in
/// constant time.
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: u64,
) -> bool {
    let Ok(sent) = timestamp.trim().parse::<u64>() else {
        return false;
    };
    if sent.abs_diff(now) > TOLERANCE.as_secs() {
        return false;
    }
    let Some(Ok(given)) = signature.trim().strip_prefix("v1=").map(hex::decode) else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key size");
    mac.update(sent.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).is_ok()
}

/// POSTs the event, signed; retries transient failures.
pub(super) async fn announce(
    http: &reqwest::Client,
    config: &NotifyConfig,
    url: &str,
    event: &NotifyEvent,
) -> Result<(), String> {
    let secret_env = config
        .webhook_secret_env
        .as_deref()
        .ok_or("`webhook_secret_env` is not set: deliveries are never sent unsigned")?;
    let secret = crate::secrets::from_env(secret_env, "the webhook's HMAC secret")?;
    let body = body(event)?.to_string();
    let approval_id = match event {
        NotifyEvent::Pending { approval }
        | NotifyEvent::Waiting { approval, .. }
        | NotifyEvent::Decided { approval, .. } => &approval.approval_id,
    };
    let key = format!("{approval_id}:{}", event_name(event));
    super::with_retries(|| async {
        // Each attempt is signed afresh, so a retry is not refused as stale.
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let sent = http
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(
                SIGNATURE_HEADER,
                signature(secret.as_bytes(), timestamp, body.as_bytes()),
            )
            .header(IDEMPOTENCY_HEADER, &key)
            .timeout(REQUEST_TIMEOUT)
            .body(body.clone())
            .send()
            .await;
        match classify_response(event_name(event), sent) {
            Ok(_) => Attempt::Done(()),
            Err(attempt) => attempt,
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_proto::{ApprovalState, DecisionKind, DecisionRecord, PendingApproval};

    #[test]
    fn signatures_are_hmac_sha256_over_timestamp_dot_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(b"secret", 1_700_000_000, br#"{"a":1}"#),
            "v1=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[test]
    fn verification_checks_signature_body_secret_and_age() {
        let body = br#"{"event":"approval.pending"}"#;
        let now = 1_700_000_000;
        let good = signature(b"s3cret", now, body);
        assert!(verify_signature(b"s3cret", "1700000000", &good, body, now));
        assert!(verify_signature(
            b"s3cret",
            "1700000000",
            &good,
            body,
            now + 299
        ));
        assert!(!verify_signature(
            b"s3cret",
            "1700000000",
            &good,
            body,
            now + 301
        ));
        assert!(!verify_signature(b"other", "1700000000", &good, body, now));
        assert!(!verify_signature(b"s3cret", "1700000001", &good, body, now));
        assert!(!verify_signature(
            b"s3cret",
            "1700000000",
            &good,
            b"{}",
            now
        ));
        assert!(!verify_signature(
            b"s3cret",
            "1700000000",
            &good[3..],
            body,
            now
        ));
        assert!(!verify_signature(
            b"s3cret",
            "1700000000",
            "v1=zz",
            body,
            now
        ));
        assert!(!verify_signature(b"s3cret", "soon", &good, body, now));
    }

    #[test]
    fn bodies_carry_the_event_and_proto3_json() {
        let approval = PendingApproval {
            approval_id: "wf~1".into(),
            effect_class: "money".into(),
            state: ApprovalState::Denied as i32,
            ..Default::default()
        };
        let pending = body(&NotifyEvent::Pending {
            approval: approval.clone(),
        })
        .unwrap();
        assert_eq!(pending["event"], "approval.pending");
        assert_eq!(pending["approval"]["approvalId"], "wf~1");
        assert_eq!(pending["approval"]["effectClass"], "money");
        assert_eq!(pending["decision"], Value::Null);

        let decided = body(&NotifyEvent::Decided {
            approval,
            decision: Some(DecisionRecord {
                approval_id: "wf~1".into(),
                kind: DecisionKind::Deny as i32,
                reviewer: "bob".into(),
                reason: "no".into(),
                accepted: true,
                ..Default::default()
            }),
            slack_message: None,
        })
        .unwrap();
        assert_eq!(decided["event"], "approval.decided");
        assert_eq!(decided["approval"]["state"], "APPROVAL_STATE_DENIED");
        assert_eq!(decided["decision"]["kind"], "DECISION_KIND_DENY");
        assert_eq!(decided["decision"]["reviewer"], "bob");
    }
}
