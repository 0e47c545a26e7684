//! How a run takes decisions: one set of rules for the `decide` update, the
//! `approval_decision` signal and the expiry timer. Pure state changes; the
//! waiting call in the run loop notices them.

use super::{AgentRun, Resolution, approval_arguments, timestamp};
use countersign_policy::schema::check_arguments;
use countersign_proto::{
    ApprovalState, Decision, DecisionKind, DecisionOutcome, DecisionRecord, DecisionScope,
    PendingApproval, struct_to_json,
};
use std::time::SystemTime;
use temporalio_common::data_converters::RawValue;

/// Why a decision was not taken; the text goes back to the sender (update) or
/// into the audit trail (signal).
pub(super) type Rejection = String;

/// Decodes a signal payload as a proto3-JSON `Decision`.
pub(super) fn decode_signal_payload(payload: &RawValue) -> Result<Decision, Rejection> {
    let [first] = payload.payloads.as_slice() else {
        return Err(format!(
            "malformed decision: expected one JSON payload, got {}",
            payload.payloads.len()
        ));
    };
    let encoding = first
        .metadata
        .get("encoding")
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .unwrap_or_default();
    if encoding != "json/plain" {
        return Err(format!(
            "malformed decision: expected a json/plain payload, got encoding `{encoding}`"
        ));
    }
    serde_json::from_slice::<Decision>(&first.data).map_err(|e| format!("malformed decision: {e}"))
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

    /// Checks a decision against the run's state; `Ok` is the approval it decides.
    pub(super) fn check_decision(&self, d: &Decision) -> Result<&PendingApproval, Rejection> {
        if d.approval_id.is_empty() {
            return Err("approvalId is required".into());
        }
        let Some(approval) = self.approval(&d.approval_id) else {
            return Err(format!(
                "unknown approval id `{}` in run `{}`",
                d.approval_id, self.state.workflow_id
            ));
        };
        match approval.state() {
            ApprovalState::Pending => {}
            ApprovalState::Expired => {
                return Err(format!(
                    "approval `{}` expired: nobody decided in time and the call did not run",
                    d.approval_id
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
                return Err(format!(
                    "approval `{}` was already decided{by}: {}",
                    d.approval_id,
                    decided.as_str_name()
                ));
            }
        }
        if d.kind() == DecisionKind::Unspecified {
            return Err("kind must be DECISION_KIND_APPROVE or DECISION_KIND_DENY".into());
        }
        if d.reviewer.trim().is_empty() {
            return Err("reviewer is required: every decision names who took it".into());
        }
        if !d.arguments_sha256.is_empty() && d.arguments_sha256 != approval.arguments_sha256 {
            return Err(format!(
                "stale argumentsSha256: the reviewer saw arguments hashing to {}, the call waiting has {}",
                d.arguments_sha256, approval.arguments_sha256
            ));
        }
        if d.scope() == DecisionScope::Run {
            return Err(
                "scope DECISION_SCOPE_RUN (sticky approval) is not supported yet; decide each call"
                    .into(),
            );
        }
        if let Some(edited) = &d.edited_arguments {
            if d.kind() == DecisionKind::Deny {
                return Err("editedArguments only go with an approval".into());
            }
            let tool = approval.tool.as_ref().and_then(|t| self.tool(&t.name));
            if let Some(tool) = tool {
                check_arguments(&tool.input_schema, &struct_to_json(edited)).map_err(
                    |problem| {
                        format!(
                            "edited arguments do not fit the tool `{}`: {problem}",
                            tool.name
                        )
                    },
                )?;
            }
        }
        Ok(approval)
    }

    /// Applies a decision if it passes the checks; records it either way.
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
            ..Default::default()
        };
        let (accepted, state, message) = match self.check_decision(&d) {
            Err(rejection) => {
                let current = self
                    .approval(&d.approval_id)
                    .map_or(ApprovalState::Unspecified, |a| a.state());
                (false, current, rejection)
            }
            Ok(_) => {
                let (new_state, verb) = match (d.kind(), d.edited_arguments.is_some()) {
                    (DecisionKind::Deny, _) => (ApprovalState::Denied, "denied"),
                    (_, true) => (
                        ApprovalState::ApprovedWithEdits,
                        "approved with edited arguments",
                    ),
                    (_, false) => (ApprovalState::Approved, "approved"),
                };
                if let Some(approval) = self.approval_mut(&d.approval_id) {
                    approval.state = new_state as i32;
                    if new_state != ApprovalState::Denied {
                        approval.approvals_given.push(d.reviewer.clone());
                    }
                }
                (true, new_state, format!("{verb} by {}", d.reviewer))
            }
        };
        record.accepted = accepted;
        record.message = message.clone();
        record.resulting_state = state as i32;
        let outcome = DecisionOutcome {
            accepted,
            state: state as i32,
            message,
            approval_id: d.approval_id.clone(),
        };
        self.state.decisions.push(record);
        outcome
    }

    /// Records a signal payload that was not a decision at all.
    pub(super) fn record_malformed(&mut self, problem: Rejection, now: Option<SystemTime>) {
        self.state.decisions.push(DecisionRecord {
            accepted: false,
            message: problem,
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
        let tool = approval
            .tool
            .as_ref()
            .map(|t| t.name.clone())
            .unwrap_or_default();
        self.state.decisions.push(DecisionRecord {
            approval_id: approval_id.to_string(),
            tool,
            accepted: true,
            message: "expired: nobody decided in time; the call did not run".into(),
            decided_at: now.map(timestamp),
            resulting_state: ApprovalState::Expired as i32,
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
