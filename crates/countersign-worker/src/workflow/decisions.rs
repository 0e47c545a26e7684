//! How a run takes decisions: one set of rules for the `decide` update, the
//! `approval_decision` signal and the expiry timer. Pure state changes; the
//! waiting call in the run loop notices them.

use super::{AgentRun, Resolution, approval_arguments, format_duration, timestamp};
use countersign_policy::EffectClass;
use countersign_policy::schema::check_arguments;
use countersign_proto::contract::{
    self, MAX_DECISION_BYTES, MAX_QUOTED_CHARS, MAX_REJECTED_RECORDS,
};
use countersign_proto::signing::{SignatureError, verify};
use countersign_proto::{
    ApprovalState, Decision, DecisionKind, DecisionOutcome, DecisionRecord, DecisionScope,
    PendingApproval, RefusalCode, StickyApproval, struct_to_json,
};
use std::time::{Duration, SystemTime};
use temporalio_common::data_converters::RawValue;
use temporalio_sdk::ApplicationFailure;

/// Why a decision was not taken: a code for programs and a message for
/// people. The message goes back to the sender (update) or into the audit
/// trail (signal); it quotes at most [`MAX_QUOTED_CHARS`] of any value sent.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Refusal {
    pub(super) code: RefusalCode,
    pub(super) message: String,
}

impl Refusal {
    fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub(super) fn too_large(message: impl Into<String>) -> Self {
        Self::new(RefusalCode::TooLarge, message)
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(RefusalCode::Invalid, message)
    }
}

/// A refusal as the update validator's error: the message, with the code as
/// the application failure type of its cause, so clients read the code
/// without parsing the message.
#[derive(Debug)]
pub(super) struct RefusedUpdate {
    message: String,
    code: ApplicationFailure,
}

impl From<Refusal> for RefusedUpdate {
    fn from(refusal: Refusal) -> Self {
        let name = refusal.code.as_str_name();
        Self {
            code: ApplicationFailure::builder(name)
                .type_name(name.to_string())
                .non_retryable(true)
                .build(),
            message: refusal.message,
        }
    }
}

impl std::fmt::Display for RefusedUpdate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RefusedUpdate {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.code)
    }
}

/// A value sent to the run, quoted in a message: at most [`MAX_QUOTED_CHARS`].
pub(super) fn quoted(text: &str) -> String {
    countersign_policy::agent::excerpt(text, MAX_QUOTED_CHARS)
}

/// Refuses a reason longer than [`countersign_proto::contract::MAX_REASON_CHARS`].
pub(super) fn check_reason(d: &Decision) -> Result<(), Refusal> {
    contract::check_reason_bound(d).map_err(Refusal::from)
}

/// Refuses a decision whose other fields are over their bounds or of the
/// wrong form ([`contract::check_field_bounds`], the one home of the bounds).
pub(super) fn check_bounds(d: &Decision) -> Result<(), Refusal> {
    contract::check_field_bounds(d).map_err(Refusal::from)
}

impl From<contract::OutOfBounds> for Refusal {
    fn from(e: contract::OutOfBounds) -> Self {
        Refusal::new(e.code, e.message)
    }
}

/// The bytes of a raw workflow input or signal: exactly one `json/plain`
/// payload. The one reader of raw payloads (the `AgentRun` and
/// `ApprovalGate` inputs, the `approval_decision` signal); its refusal says
/// what was wrong without quoting what was sent.
pub(super) fn json_payload(raw: &RawValue) -> Result<&[u8], String> {
    let [payload] = raw.payloads.as_slice() else {
        return Err(format!(
            "must be one JSON payload, got {}",
            raw.payloads.len()
        ));
    };
    let encoding = payload
        .metadata
        .get("encoding")
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .unwrap_or_default();
    if encoding != "json/plain" {
        return Err(format!(
            "must be a json/plain payload, got encoding `{}`",
            quoted(&encoding)
        ));
    }
    Ok(&payload.data)
}

/// Decodes a signal payload as a proto3-JSON `Decision`.
pub(super) fn decode_signal_payload(payload: &RawValue) -> Result<Decision, Refusal> {
    let data = json_payload(payload)
        .map_err(|problem| Refusal::invalid(format!("malformed decision: the signal {problem}")))?;
    serde_json::from_slice::<Decision>(data).map_err(|e| {
        Refusal::invalid(format!(
            "malformed decision: {}",
            countersign_policy::agent::excerpt(&e.to_string(), 200)
        ))
    })
}

/// Refuses a signalled decision with a field over its bound, or over
/// [`MAX_DECISION_BYTES`] as a whole (earlier runs accepted them).
pub(super) const PATCH_BOUND_DECISION_FIELDS: &str = "bound-decision-fields";
/// Refuses a signalled decision whose reason exceeds
/// [`countersign_proto::contract::MAX_REASON_CHARS`] (earlier runs accepted it).
pub(super) const PATCH_LIMIT_REASON_LENGTH: &str = "limit-reason-length";

/// The size of a signal's payload, to refuse one over [`MAX_DECISION_BYTES`]
/// before decoding it.
pub(super) fn signal_payload_size(payload: &RawValue) -> usize {
    payload.payloads.iter().map(|p| p.data.len()).sum()
}

impl AgentRun {
    pub(super) fn approval(&self, approval_id: &str) -> Option<&PendingApproval> {
        self.state
            .approvals
            .iter()
            .find(|a| a.approval_id == approval_id)
    }

    fn approval_mut(&mut self, approval_id: &str) -> Option<&mut PendingApproval> {
        self.state
            .approvals
            .iter_mut()
            .find(|a| a.approval_id == approval_id)
    }

    /// Approvals still waiting for a decision.
    pub(super) fn open_approvals(&self) -> impl Iterator<Item = &PendingApproval> {
        self.state
            .approvals
            .iter()
            .filter(|a| a.state() == ApprovalState::Pending)
    }

    pub(super) fn is_pending(&self, approval_id: &str) -> bool {
        self.approval(approval_id)
            .is_some_and(|a| a.state() == ApprovalState::Pending)
    }

    /// The `decide` update's validator, for every workflow that keeps an
    /// approval book: bounds, then the run's rules; a refusal carries its code.
    pub(super) fn validate_update(
        &self,
        decision: &Decision,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        check_reason(decision)
            .and_then(|()| check_bounds(decision))
            .and_then(|()| self.check_decision(decision).map(|_| ()))
            .map_err(|refusal| RefusedUpdate::from(refusal).into())
    }

    /// Takes an `approval_decision` signal: decoded here, so a malformed one
    /// is recorded as refused instead of failing the workflow task; one over
    /// a bound is recorded as refused. `patched(id)` says whether the run
    /// takes the limit of patch `id` (runs recorded before a limit took any
    /// size; `AgentRun` asks `ctx.patched`, which writes the marker only
    /// when such a decision arrives; newer workflow types take every limit).
    pub(super) fn take_signal(
        &mut self,
        payload: &RawValue,
        now: Option<SystemTime>,
        patched: &mut dyn FnMut(&str) -> bool,
    ) {
        let size = signal_payload_size(payload);
        if size > MAX_DECISION_BYTES && patched(PATCH_BOUND_DECISION_FIELDS) {
            let refusal = Refusal::too_large(format!(
                "the decision is too large ({size} bytes; at most {MAX_DECISION_BYTES}); it was not read"
            ));
            self.record_malformed(refusal, now);
            return;
        }
        match decode_signal_payload(payload) {
            Ok(decision) => {
                if let Err(refusal) = check_reason(&decision)
                    && patched(PATCH_LIMIT_REASON_LENGTH)
                {
                    self.reject(decision, refusal, now, "signal");
                } else if let Err(refusal) = check_bounds(&decision)
                    && patched(PATCH_BOUND_DECISION_FIELDS)
                {
                    self.reject(decision, refusal, now, "signal");
                } else {
                    self.apply_decision(decision, now, "signal");
                }
            }
            Err(refusal) => self.record_malformed(refusal, now),
        }
    }

    /// Checks a decision against the run's state; `Ok` is the approval it decides.
    pub(super) fn check_decision(&self, d: &Decision) -> Result<&PendingApproval, Refusal> {
        use RefusalCode::*;
        if d.approval_id.is_empty() {
            return Err(Refusal::invalid("approvalId is required"));
        }
        let Some(approval) = self.approval(&d.approval_id) else {
            return Err(Refusal::new(
                NotFound,
                format!(
                    "unknown approval id `{}` in run `{}`",
                    quoted(&d.approval_id),
                    self.state.workflow_id
                ),
            ));
        };
        match approval.state() {
            ApprovalState::Pending => {}
            ApprovalState::Expired => {
                return Err(Refusal::new(
                    Expired,
                    format!(
                        "approval `{}` expired: nobody decided in time and the call did not run",
                        d.approval_id
                    ),
                ));
            }
            decided => {
                let by = self
                    .state
                    .decisions
                    .iter()
                    .rev()
                    .find(|r| r.approval_id == d.approval_id && r.accepted)
                    .map(|r| format!(" by {}", r.reviewer))
                    .unwrap_or_default();
                return Err(Refusal::new(
                    AlreadyDecided,
                    format!(
                        "approval `{}` was already decided{by}: {}",
                        d.approval_id,
                        decided.as_str_name()
                    ),
                ));
            }
        }
        if d.kind() == DecisionKind::Unspecified {
            return Err(Refusal::invalid(
                "kind must be DECISION_KIND_APPROVE or DECISION_KIND_DENY",
            ));
        }
        self.check_signature(d, approval)?;
        if d.reviewer.trim().is_empty() {
            return Err(Refusal::invalid(
                "reviewer is required: every decision names who took it",
            ));
        }
        let reviewer = d.reviewer.trim();
        if !approval.approvers.is_empty() && !approval.approvers.iter().any(|r| r == reviewer) {
            return Err(Refusal::new(
                NotAllowed,
                format!(
                    "not allowed: `{}` is not in the approver groups of this call ({})",
                    quoted(reviewer),
                    approval.approver_groups.join(", ")
                ),
            ));
        }
        if d.kind() == DecisionKind::Approve
            && approval.separation_of_duties
            && reviewer == approval.requester
        {
            return Err(Refusal::new(
                NotAllowed,
                format!(
                    "not allowed: separation of duties: `{reviewer}` asked for this run and cannot approve its calls"
                ),
            ));
        }
        if d.kind() == DecisionKind::Approve
            && approval.approvals_given.iter().any(|r| r == reviewer)
        {
            return Err(Refusal::new(
                NotAllowed,
                format!(
                    "already approved by {reviewer}: {} of {} approvals given; the others must come from other reviewers",
                    approval.approvals_given.len(),
                    approval.required_approvals
                ),
            ));
        }
        if approval.required_approvals > 1 && d.edited_arguments.is_some() {
            return Err(Refusal::invalid(format!(
                "editedArguments are refused on a call that needs {} approvers: they would change what the others approve",
                approval.required_approvals
            )));
        }
        if !d.arguments_sha256.is_empty() && d.arguments_sha256 != approval.arguments_sha256 {
            return Err(Refusal::new(
                StaleArguments,
                format!(
                    "stale argumentsSha256: the reviewer saw arguments hashing to {}, the call waiting has {}",
                    d.arguments_sha256, approval.arguments_sha256
                ),
            ));
        }
        if d.scope() == DecisionScope::Run && d.kind() == DecisionKind::Approve {
            if approval.effect_class == EffectClass::Money.as_str() {
                return Err(Refusal::invalid(
                    "scope DECISION_SCOPE_RUN is never allowed for money: each payment is approved on its own",
                ));
            }
            if approval.required_approvals > 1 {
                return Err(Refusal::invalid(
                    "scope DECISION_SCOPE_RUN is refused on a call that needs several approvers",
                ));
            }
            if d.edited_arguments.is_some() {
                return Err(Refusal::invalid(
                    "scope DECISION_SCOPE_RUN approves the tool as the model calls it; it cannot carry editedArguments",
                ));
            }
        }
        if let Some(edited) = &d.edited_arguments {
            if d.kind() == DecisionKind::Deny {
                return Err(Refusal::invalid("editedArguments only go with an approval"));
            }
            let tool = approval.tool.as_ref().and_then(|t| self.tool(&t.name));
            if let Some(tool) = tool {
                check_arguments(&tool.input_schema, &struct_to_json(edited)).map_err(
                    |problem| {
                        Refusal::new(
                            InvalidArguments,
                            format!(
                                "edited arguments do not fit the tool `{}`: {problem}",
                                tool.name
                            ),
                        )
                    },
                )?;
            }
        }
        Ok(approval)
    }

    /// A signed decision must verify against a key this run trusts; an
    /// approval that requires signatures refuses an unsigned one. `Ok` is
    /// the id of the key that signed (`None`: unsigned, and allowed).
    fn check_signature(
        &self,
        d: &Decision,
        approval: &PendingApproval,
    ) -> Result<Option<String>, Refusal> {
        let unsigned = |message: String| Refusal::new(RefusalCode::Unsigned, message);
        match verify(d, &self.trusted_keys) {
            Ok(Some(key_id)) => Ok(Some(key_id)),
            Ok(None) if approval.signed_decisions_required => Err(unsigned(format!(
                "unsigned decision refused: agent `{}` requires decisions signed by a key the worker trusts \
                 (require_signed_decisions), so whoever can reach the run cannot decide as a reviewer; \
                 decide through `countersign serve` (it signs with its [signing] key), or with \
                 `countersign approvals approve|deny --sign-key FILE`",
                self.state.agent
            ))),
            Ok(None) => Ok(None),
            Err(SignatureError::UnknownKey(key_id)) => Err(unsigned(format!(
                "signed by `{}`, which is not a key this run trusts (the worker's --trusted-keys when the run started: {})",
                quoted(&key_id),
                if self.trusted_keys.is_empty() {
                    "none".to_string()
                } else {
                    self.trusted_keys.ids().collect::<Vec<_>>().join(", ")
                }
            ))),
            Err(SignatureError::Mismatch(key_id)) => Err(unsigned(format!(
                "the signature does not verify under key `{}`: the decision was changed after signing, or signed by another key",
                quoted(&key_id)
            ))),
            Err(SignatureError::KeyId(_)) => Err(unsigned(
                "signature.keyId is not a key id (1-64 letters, digits, `-`, `_`, `.`)".to_string(),
            )),
            Err(SignatureError::Malformed) => Err(unsigned(
                "signature.signature is not base64 of a 64-byte Ed25519 signature".to_string(),
            )),
            Err(SignatureError::Key(problem)) => Err(unsigned(problem.to_string())),
        }
    }

    /// Records a decision refused before judging (a field over its bound),
    /// keeping only excerpts of what it carried.
    pub(super) fn reject(
        &mut self,
        d: Decision,
        refusal: Refusal,
        now: Option<SystemTime>,
        channel: &str,
    ) {
        let state = self
            .approval(&d.approval_id)
            .map_or(ApprovalState::Unspecified, |a| a.state());
        self.push_record(DecisionRecord {
            approval_id: quoted(&d.approval_id),
            kind: d.kind,
            reviewer: quoted(&d.reviewer),
            reason: countersign_policy::agent::excerpt(&d.reason, MAX_QUOTED_CHARS * 4),
            decided_at: now.map(timestamp),
            channel: channel.to_string(),
            accepted: false,
            message: refusal.message,
            code: refusal.code as i32,
            resulting_state: state as i32,
            ..Default::default()
        });
    }

    /// Adds a record to the audit trail. Refused decisions are capped at
    /// [`MAX_REJECTED_RECORDS`] (the oldest go, counted in
    /// `rejected_decisions_dropped`); accepted ones and timer records are
    /// bounded by the approvals themselves and always kept.
    fn push_record(&mut self, record: DecisionRecord) {
        let refused = !record.accepted;
        self.state.decisions.push(record);
        if !refused {
            return;
        }
        let kept = self.state.decisions.iter().filter(|r| !r.accepted).count();
        if kept > MAX_REJECTED_RECORDS
            && let Some(oldest) = self.state.decisions.iter().position(|r| !r.accepted)
        {
            self.state.decisions.remove(oldest);
            self.state.rejected_decisions_dropped += 1;
        }
    }

    pub(super) fn apply_decision(
        &mut self,
        d: Decision,
        now: Option<SystemTime>,
        channel: &str,
    ) -> DecisionOutcome {
        let tool = self
            .approval(&d.approval_id)
            .and_then(|a| a.tool.as_ref().map(|t| t.name.clone()))
            .unwrap_or_default();
        let mut record = DecisionRecord {
            approval_id: d.approval_id.clone(),
            tool,
            kind: d.kind,
            reviewer: d.reviewer.clone(),
            reason: d.reason.clone(),
            decided_at: now.map(timestamp),
            channel: channel.to_string(),
            edited_arguments: d.edited_arguments.clone(),
            scope: d.scope,
            ..Default::default()
        };
        let (accepted, state, message, code) = match self.check_decision(&d) {
            Err(refusal) => {
                let current = self
                    .approval(&d.approval_id)
                    .map_or(ApprovalState::Unspecified, |a| a.state());
                // A refused record keeps what identifies it, not what it carried.
                record.edited_arguments = None;
                (false, current, refusal.message, refusal.code)
            }
            Ok(approval) => {
                let given = approval.approvals_given.len() as u32 + 1;
                let required = approval.required_approvals.max(1);
                let tool = approval
                    .tool
                    .as_ref()
                    .map(|t| t.name.clone())
                    .unwrap_or_default();
                let (new_state, verb) = match (d.kind(), d.edited_arguments.is_some()) {
                    (DecisionKind::Deny, _) => (ApprovalState::Denied, "denied".to_string()),
                    // A quorum in progress: counted, still pending.
                    (_, _) if given < required => (
                        ApprovalState::Pending,
                        format!("approval {given} of {required} given"),
                    ),
                    (_, true) => (
                        ApprovalState::ApprovedWithEdits,
                        "approved with edited arguments".to_string(),
                    ),
                    (_, false) => (ApprovalState::Approved, "approved".to_string()),
                };
                let reviewer = d.reviewer.trim().to_string();
                if d.scope() == DecisionScope::Run && new_state == ApprovalState::Approved {
                    self.state.sticky_approvals.push(StickyApproval {
                        tool,
                        arguments_sha256: d.arguments_sha256.clone(),
                        reviewer: reviewer.clone(),
                        approval_id: d.approval_id.clone(),
                    });
                }
                if let Some(approval) = self.approval_mut(&d.approval_id) {
                    approval.state = new_state as i32;
                    if d.kind() == DecisionKind::Approve {
                        approval.approvals_given.push(reviewer.clone());
                    }
                }
                record.signed_by = d
                    .signature
                    .as_ref()
                    .map(|s| s.key_id.clone())
                    .unwrap_or_default();
                (
                    true,
                    new_state,
                    format!("{verb} by {reviewer}"),
                    RefusalCode::Unspecified,
                )
            }
        };
        record.accepted = accepted;
        record.message = message.clone();
        record.resulting_state = state as i32;
        record.code = code as i32;
        let outcome = DecisionOutcome {
            accepted,
            state: state as i32,
            message,
            approval_id: d.approval_id.clone(),
            code: code as i32,
        };
        self.push_record(record);
        outcome
    }

    /// The sticky approval that covers a newly gated call, if any: same tool,
    /// same arguments when the grant names them, never money, one approver.
    pub(super) fn sticky_grant(&self, approval: &PendingApproval) -> Option<&StickyApproval> {
        if approval.effect_class == EffectClass::Money.as_str() || approval.required_approvals > 1 {
            return None;
        }
        let tool = approval.tool.as_ref()?;
        self.state.sticky_approvals.iter().find(|g| {
            g.tool == tool.name
                && (g.arguments_sha256.is_empty()
                    || g.arguments_sha256 == approval.arguments_sha256)
                && (approval.approvers.is_empty() || approval.approvers.contains(&g.reviewer))
        })
    }

    /// Approves a new approval on the strength of a sticky one, and says so
    /// in the audit trail.
    pub(super) fn ride_on(
        &mut self,
        approval_id: &str,
        grant: &StickyApproval,
        now: Option<SystemTime>,
    ) {
        if let Some(approval) = self.approval_mut(approval_id) {
            approval.state = ApprovalState::Approved as i32;
            approval.approvals_given.push(grant.reviewer.clone());
        }
        self.state.decisions.push(DecisionRecord {
            approval_id: approval_id.to_string(),
            tool: grant.tool.clone(),
            kind: DecisionKind::Approve as i32,
            reviewer: grant.reviewer.clone(),
            reason: format!("covered by the sticky approval `{}`", grant.approval_id),
            decided_at: now.map(timestamp),
            accepted: true,
            message: format!(
                "approved by {}'s sticky approval `{}` (scope RUN)",
                grant.reviewer, grant.approval_id
            ),
            resulting_state: ApprovalState::Approved as i32,
            channel: "sticky".into(),
            scope: DecisionScope::Run as i32,
            rode_on: grant.approval_id.clone(),
            ..Default::default()
        });
    }

    /// Records that an approval is still waiting after `after` (a reminder).
    pub(super) fn remind(&mut self, approval_id: &str, after: Duration, now: Option<SystemTime>) {
        if !self.is_pending(approval_id) {
            return;
        }
        let message = format!(
            "reminder: still waiting for a decision after {}",
            format_duration(after)
        );
        self.record_timer(approval_id, message, ApprovalState::Pending, now);
    }

    /// Escalates a still-pending approval: the agent's `escalate_to` groups
    /// may decide it too, from now on.
    pub(super) fn escalate(&mut self, approval_id: &str, now: Option<SystemTime>) {
        let Some(agent) = &self.agent else { return };
        let groups = agent.escalate_to.clone();
        let members: Vec<String> = groups
            .iter()
            .filter_map(|g| agent.groups.get(g))
            .flatten()
            .cloned()
            .collect();
        let Some(approval) = self
            .approval_mut(approval_id)
            .filter(|a| a.state() == ApprovalState::Pending)
        else {
            return;
        };
        // An approval anyone may decide stays open to anyone.
        if !approval.approvers.is_empty() {
            for member in members {
                if !approval.approvers.contains(&member) {
                    approval.approvers.push(member);
                }
            }
        }
        for group in &groups {
            if !approval.approver_groups.contains(group) {
                approval.approver_groups.push(group.clone());
            }
        }
        let message = format!("escalated: {} may now decide", groups.join(", "));
        self.record_timer(approval_id, message, ApprovalState::Pending, now);
    }

    /// Records a signal payload that was not a decision at all.
    pub(super) fn record_malformed(&mut self, refusal: Refusal, now: Option<SystemTime>) {
        self.push_record(DecisionRecord {
            accepted: false,
            message: refusal.message,
            code: refusal.code as i32,
            decided_at: now.map(timestamp),
            channel: "signal".into(),
            ..Default::default()
        });
    }

    /// Ends a still-pending approval as expired (fail-closed).
    pub(super) fn expire(&mut self, approval_id: &str, now: Option<SystemTime>) {
        let Some(approval) = self.approval_mut(approval_id) else {
            return;
        };
        if approval.state() != ApprovalState::Pending {
            return;
        }
        approval.state = ApprovalState::Expired as i32;
        self.record_timer(
            approval_id,
            "expired: nobody decided in time; the call did not run".into(),
            ApprovalState::Expired,
            now,
        );
    }

    /// Records what a waiting stage did (reminder, escalation, expiry) in
    /// the audit trail, as channel `timer`.
    fn record_timer(
        &mut self,
        approval_id: &str,
        message: String,
        resulting: ApprovalState,
        now: Option<SystemTime>,
    ) {
        let tool = self
            .approval(approval_id)
            .and_then(|a| a.tool.as_ref())
            .map(|t| t.name.clone())
            .unwrap_or_default();
        self.state.decisions.push(DecisionRecord {
            approval_id: approval_id.to_string(),
            tool,
            accepted: true,
            message,
            decided_at: now.map(timestamp),
            resulting_state: resulting as i32,
            channel: "timer".into(),
            ..Default::default()
        });
    }

    /// How a no-longer-pending approval ended.
    pub(super) fn resolution(&self, approval_id: &str) -> Resolution {
        let Some(approval) = self.approval(approval_id) else {
            return Resolution::Expired;
        };
        let decision = self
            .state
            .decisions
            .iter()
            .rev()
            .find(|r| r.approval_id == approval_id && r.accepted);
        match approval.state() {
            ApprovalState::Approved | ApprovalState::ApprovedWithEdits => {
                let edited = decision.and_then(|r| r.edited_arguments.as_ref());
                Resolution::Approved {
                    arguments: edited
                        .map(struct_to_json)
                        .unwrap_or_else(|| approval_arguments(approval)),
                    edited_by: edited.and(decision).map(|r| r.reviewer.clone()),
                }
            }
            ApprovalState::Denied => Resolution::Denied {
                reviewer: decision.map(|r| r.reviewer.clone()).unwrap_or_default(),
                reason: decision.map(|r| r.reason.clone()).unwrap_or_default(),
            },
            _ => Resolution::Expired,
        }
    }

    /// What the Temporal Web UI shows as the run's current activity.
    pub(super) fn current_details(&self, open: &[&PendingApproval]) -> String {
        if open.is_empty() {
            return format!(
                "{}: {}",
                self.state.agent,
                self.state.status().as_str_name()
            );
        }
        let mut text = format!(
            "Waiting for approval ({} open) in agent `{}`, requested by {}:\n",
            open.len(),
            self.state.agent,
            if self.state.requester.is_empty() {
                "unknown"
            } else {
                &self.state.requester
            }
        );
        for a in open {
            let tool = a.tool.as_ref().map(|t| t.name.as_str()).unwrap_or("?");
            text.push_str(&format!(
                "- {tool} ({}; {}) args {} — approval id {}\n",
                a.effect_class,
                a.rule,
                countersign_proto::canonical_json(&approval_arguments(a)),
                a.approval_id
            ));
        }
        text.push_str(
            "Decide: send signal `approval_decision` with \
             {\"approvalId\":\"…\",\"kind\":\"DECISION_KIND_APPROVE\",\"reviewer\":\"you@example.com\",\"reason\":\"…\"}",
        );
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use countersign_policy::agent::AgentFile;
    use countersign_policy::run::{AgentRunInput, RunRequest};
    use countersign_proto::{RunState, ToolRef};
    use proptest::prelude::*;
    use std::path::Path;

    const REVIEWERS: [&str; 4] = ["alice", "bob", "carol", "dave"];

    /// A run holding one pending approval that needs `required` approvers,
    /// asked for by alice, decidable by bob, carol and dave (and alice,
    /// unless separation of duties applies).
    fn run_with_approval(required: u32, separation_of_duties: bool) -> AgentRun {
        let agent = AgentFile::from_toml(
            "name = \"t\"\n[model]\nprovider = \"scripted\"\n[[model.steps]]\nsay = \"hi\"\n",
            Path::new("t.toml"),
            Path::new("."),
            &|_| None,
        )
        .unwrap();
        let approval = PendingApproval {
            approval_id: "wf~1".into(),
            requester: "alice".into(),
            tool: Some(ToolRef {
                kind: "builtin".into(),
                provider: String::new(),
                name: "post".into(),
            }),
            effect_class: "write_external".into(),
            required_approvals: required,
            approvers: REVIEWERS.iter().map(|r| r.to_string()).collect(),
            separation_of_duties,
            state: ApprovalState::Pending as i32,
            ..Default::default()
        };
        AgentRun {
            request: Some(
                RunRequest::new(AgentRunInput::inline(agent.clone(), "p", "alice")).unwrap(),
            ),
            refused: None,
            agent: Some(countersign_policy::Agent::new(agent).unwrap()),
            from_registry: false,
            trusted_keys: countersign_proto::signing::TrustedKeys::new(),
            payload_store: false,
            state: RunState {
                approvals: vec![approval],
                ..Default::default()
            },
            catalog: vec![],
            turns_taken: 0,
            published: None,
        }
    }

    fn decision(reviewer: &str, approve: bool, sticky: bool) -> Decision {
        Decision {
            approval_id: "wf~1".into(),
            kind: if approve {
                DecisionKind::Approve
            } else {
                DecisionKind::Deny
            } as i32,
            reviewer: reviewer.into(),
            reason: "r".into(),
            scope: if sticky {
                DecisionScope::Run
            } else {
                DecisionScope::Once
            } as i32,
            ..Default::default()
        }
    }

    #[test]
    fn signatures_are_checked_against_the_run_and_the_approval() {
        use countersign_proto::signing::{SigningKey, TrustedKeys, sign};
        let trusted_key = SigningKey::from_bytes(&[1; 32]);
        let other_key = SigningKey::from_bytes(&[2; 32]);
        let mut run = run_with_approval(1, false);
        run.trusted_keys = TrustedKeys::new()
            .with("serve-1", &trusted_key.verifying_key())
            .unwrap();
        let signed = |key: &SigningKey, id: &str| {
            let mut d = decision("bob", true, false);
            sign(&mut d, id, key).unwrap();
            d
        };

        // Not required: unsigned decisions pass; a signature must still verify.
        assert!(run.check_decision(&decision("bob", true, false)).is_ok());
        let refused = run
            .check_decision(&signed(&other_key, "serve-1"))
            .unwrap_err();
        assert_eq!(refused.code, RefusalCode::Unsigned, "{}", refused.message);
        let refused = run
            .check_decision(&signed(&other_key, "intruder"))
            .unwrap_err();
        assert_eq!(refused.code, RefusalCode::Unsigned);
        assert!(
            refused.message.contains("not a key this run trusts"),
            "{}",
            refused.message
        );

        run.state.approvals[0].signed_decisions_required = true;
        let refused = run
            .check_decision(&decision("bob", true, false))
            .unwrap_err();
        assert_eq!(refused.code, RefusalCode::Unsigned);
        assert!(
            refused.message.contains("--sign-key"),
            "{}",
            refused.message
        );
        // A signed decision whose reviewer was changed afterwards.
        let mut forged = signed(&trusted_key, "serve-1");
        forged.reviewer = "carol".into();
        assert_eq!(
            run.check_decision(&forged).unwrap_err().code,
            RefusalCode::Unsigned
        );

        let outcome = run.apply_decision(signed(&trusted_key, "serve-1"), None, "signal");
        assert!(outcome.accepted, "{}", outcome.message);
        let record = run.state.decisions.last().unwrap();
        assert_eq!(record.signed_by, "serve-1");
        assert!(record.accepted);
    }

    #[test]
    fn signature_fields_are_bounded() {
        let mut d = decision("bob", true, false);
        d.signature = Some(countersign_proto::DecisionSignature {
            key_id: "k".repeat(65),
            signature: "A".repeat(88),
        });
        assert_eq!(check_bounds(&d).unwrap_err().code, RefusalCode::TooLarge);
        d.signature.as_mut().unwrap().key_id = "k".into();
        d.signature.as_mut().unwrap().signature = "A".repeat(100_000);
        let refusal = check_bounds(&d).unwrap_err();
        assert_eq!(refusal.code, RefusalCode::TooLarge);
        assert!(refusal.message.len() < 200, "{}", refusal.message);
        d.signature.as_mut().unwrap().signature = "A".repeat(87);
        assert_eq!(check_bounds(&d).unwrap_err().code, RefusalCode::Invalid);
        d.signature.as_mut().unwrap().signature = "A".repeat(88);
        assert!(check_bounds(&d).is_ok());
    }

    proptest! {
        /// Whatever decisions arrive, in whatever order: an approval ends
        /// approved only with `required` distinct eligible approvers, never
        /// with the requester's approval under separation of duties, and
        /// once it has ended nothing changes it.
        #[test]
        fn quorum_never_completes_with_fewer_distinct_approvers(
            required in 1u32..4,
            separation in any::<bool>(),
            decisions in prop::collection::vec((0usize..5, prop::bool::weighted(0.8), any::<bool>()), 0..12),
        ) {
            let mut run = run_with_approval(required, separation);
            let mut ended_as: Option<ApprovalState> = None;
            for (who, approve, sticky) in decisions {
                let reviewer = REVIEWERS.get(who).copied().unwrap_or("mallory");
                run.apply_decision(decision(reviewer, approve, sticky), None, "update");
                let approval = run.approval("wf~1").unwrap();
                if let Some(ended) = ended_as {
                    prop_assert_eq!(approval.state(), ended, "a closed approval changed");
                    continue;
                }
                let mut given = approval.approvals_given.clone();
                given.sort();
                given.dedup();
                prop_assert_eq!(given.len(), approval.approvals_given.len(), "a reviewer counted twice");
                prop_assert!(!approval.approvals_given.iter().any(|r| r == "mallory"));
                if separation {
                    prop_assert!(!approval.approvals_given.iter().any(|r| r == "alice"));
                }
                match approval.state() {
                    ApprovalState::Approved | ApprovalState::ApprovedWithEdits => {
                        prop_assert!(approval.approvals_given.len() as u32 >= required);
                        ended_as = Some(approval.state());
                    }
                    ApprovalState::Denied => ended_as = Some(ApprovalState::Denied),
                    ApprovalState::Pending => {
                        prop_assert!((approval.approvals_given.len() as u32) < required);
                    }
                    other => prop_assert!(false, "unexpected state {:?}", other),
                }
            }
        }
    }
}
