//! The inbox's index: what a run publishes to Temporal visibility about its
//! open approvals, so that listing them reads visibility and never asks a
//! run (an evicted run answers a query only after a replay, so asking every
//! waiting run does not scale past a few thousand).
//!
//! The worker writes, for each run (`AgentRun` or `ApprovalGate`):
//! - the memo key [`MEMO_APPROVALS`]: [`ApprovalSummaries`] in proto3 JSON,
//!   one [`summary`] per open approval, bounded by [`MAX_SUMMARIES`] and
//!   [`MAX_SUMMARIES_BYTES`];
//! - the search attribute `CountersignApprovers` ([`approver_keywords`]): the
//!   reviewer ids and groups that may decide something open, or
//!   [`ANY_REVIEWER`] for an approval anyone may decide.
//!
//! Clients read both back ([`may_decide`] narrows a run's summaries to what
//! one reviewer may decide). The run stays the source of truth: showing an
//! approval and deciding ask the run itself.

use crate::contract::excerpt;
use crate::{ApprovalSummaries, PendingApproval, canonical_json, struct_to_json};

/// The memo key holding a run's [`ApprovalSummaries`].
pub const MEMO_APPROVALS: &str = "countersignApprovals";
/// The most open approvals a run's memo summarizes; the rest are counted in
/// `ApprovalSummaries.omitted`.
pub const MAX_SUMMARIES: usize = 50;
/// The most bytes (proto3 JSON) of a run's summaries. Temporal refuses a
/// memo over 2 MiB by default (failing the workflow task), and visibility
/// rows are read by every listing, so summaries stay far smaller.
pub const MAX_SUMMARIES_BYTES: usize = 64 * 1024;
/// How many characters of the arguments' canonical JSON, the user's request,
/// the model's reason and the rule a summary keeps.
pub const MAX_EXCERPT_CHARS: usize = 200;
/// The `CountersignApprovers` value of an approval any reviewer may decide.
pub const ANY_REVIEWER: &str = "*";
/// The most values `CountersignApprovers` carries, and their most bytes in
/// all (Temporal limits a run's search attributes to 40 KB by default). Past
/// either, the attribute says [`ANY_REVIEWER`] instead: the inbox then shows
/// the approval to more reviewers than may decide it, never to fewer, and
/// the run itself still refuses a reviewer it does not allow.
pub const MAX_APPROVER_KEYWORDS: usize = 100;
/// See [`MAX_APPROVER_KEYWORDS`].
pub const MAX_APPROVER_KEYWORDS_BYTES: usize = 16 * 1024;

/// An approval as the inbox lists it: everything but the arguments (an
/// excerpt of their canonical JSON instead) and with the long texts cut.
pub fn summary(approval: &PendingApproval) -> PendingApproval {
    let arguments = approval
        .arguments
        .as_ref()
        .map(|a| canonical_json(&struct_to_json(a)))
        .unwrap_or_default();
    PendingApproval {
        arguments: None,
        arguments_excerpt: excerpt(&arguments, MAX_EXCERPT_CHARS),
        user_request: excerpt(&approval.user_request, MAX_EXCERPT_CHARS),
        model_reason: excerpt(&approval.model_reason, MAX_EXCERPT_CHARS),
        rule: excerpt(&approval.rule, MAX_EXCERPT_CHARS),
        ..approval.clone()
    }
}

/// The summaries of a run's open approvals, in order, within
/// [`MAX_SUMMARIES`] and [`MAX_SUMMARIES_BYTES`].
pub fn summaries<'a>(open: impl IntoIterator<Item = &'a PendingApproval>) -> ApprovalSummaries {
    let mut out = ApprovalSummaries::default();
    let mut bytes = 0;
    for approval in open {
        let entry = summary(approval);
        let size = serde_json::to_vec(&entry).map_or(usize::MAX, |v| v.len());
        if out.approvals.len() < MAX_SUMMARIES
            && out.omitted == 0
            && bytes + size <= MAX_SUMMARIES_BYTES
        {
            bytes += size;
            out.approvals.push(entry);
        } else {
            out.omitted += 1;
        }
    }
    out
}

/// The `CountersignApprovers` values for a run's open approvals: each
/// approval's allowed reviewers and their groups (for operators searching
/// by group), or [`ANY_REVIEWER`] when it names no reviewer (anyone may
/// decide it); sorted, without repeats, bounded (see
/// [`MAX_APPROVER_KEYWORDS`]).
pub fn approver_keywords<'a>(open: impl IntoIterator<Item = &'a PendingApproval>) -> Vec<String> {
    let mut keywords = std::collections::BTreeSet::new();
    for approval in open {
        if approval.approvers.is_empty() {
            keywords.insert(ANY_REVIEWER.to_string());
        } else {
            keywords.extend(approval.approvers.iter().cloned());
            keywords.extend(approval.approver_groups.iter().cloned());
        }
    }
    let bytes: usize = keywords.iter().map(String::len).sum();
    if keywords.len() > MAX_APPROVER_KEYWORDS || bytes > MAX_APPROVER_KEYWORDS_BYTES {
        return vec![ANY_REVIEWER.to_string()];
    }
    keywords.into_iter().collect()
}

/// Whether `reviewer` may decide `approval`, as far as its summary tells,
/// by the rules the run enforces: named in `approvers` (the run resolved
/// the approver groups into it when the approval opened; empty: anyone),
/// not the requester where separation of duties applies, and not one who
/// already approved it. The run's own validator has the last word.
pub fn may_decide(approval: &PendingApproval, reviewer: &str) -> bool {
    (approval.approvers.is_empty() || approval.approvers.iter().any(|a| a == reviewer))
        && !(approval.separation_of_duties && approval.requester == reviewer)
        && !approval.approvals_given.iter().any(|a| a == reviewer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json_to_struct;
    use serde_json::json;

    fn approval(id: &str) -> PendingApproval {
        PendingApproval {
            approval_id: id.into(),
            arguments: json_to_struct(
                &json!({"to": "ACME", "amount": 250, "memo": "x".repeat(500)}),
            )
            .ok(),
            user_request: "u".repeat(1000),
            model_reason: "because".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_summary_keeps_an_excerpt_of_the_arguments_and_cuts_long_texts() {
        let s = summary(&approval("a~1"));
        assert!(s.arguments.is_none());
        assert!(
            s.arguments_excerpt
                .starts_with(r#"{"amount":250,"memo":"xxx"#)
        );
        assert_eq!(s.arguments_excerpt.chars().count(), MAX_EXCERPT_CHARS + 1);
        assert_eq!(s.user_request.chars().count(), MAX_EXCERPT_CHARS + 1);
        assert_eq!(s.model_reason, "because");
        assert_eq!(s.approval_id, "a~1");
    }

    #[test]
    fn summaries_are_bounded_in_count_and_bytes() {
        let many: Vec<PendingApproval> = (0..80).map(|i| approval(&format!("a~{i}"))).collect();
        let s = summaries(&many);
        assert_eq!(s.approvals.len() + s.omitted as usize, 80);
        assert!(s.approvals.len() <= MAX_SUMMARIES);
        assert!(serde_json::to_vec(&s).unwrap().len() <= MAX_SUMMARIES_BYTES + 64);
        // In order, and nothing after the first omitted one.
        assert_eq!(s.approvals[0].approval_id, "a~0");

        let huge = PendingApproval {
            approval_id: "x".repeat(70_000),
            ..Default::default()
        };
        let s = summaries([&approval("a~0"), &huge, &approval("a~2")]);
        assert_eq!(s.approvals.len(), 1);
        assert_eq!(s.omitted, 2);
    }

    #[test]
    fn approvers_name_who_may_decide_or_anyone() {
        let anyone = PendingApproval {
            approver_groups: vec!["ops".into()],
            ..approval("a~1")
        };
        let named = PendingApproval {
            approvers: vec!["bob".into(), "ann".into()],
            approver_groups: vec!["finance".into()],
            ..approval("a~2")
        };
        assert_eq!(approver_keywords([&named]), ["ann", "bob", "finance"]);
        assert_eq!(approver_keywords([&anyone]), ["*"]);
        assert_eq!(
            approver_keywords([&anyone, &named, &named]),
            ["*", "ann", "bob", "finance"]
        );
        assert!(approver_keywords(std::iter::empty()).is_empty());

        let crowd = PendingApproval {
            approvers: (0..500).map(|i| format!("reviewer-{i}")).collect(),
            ..approval("a~3")
        };
        assert_eq!(approver_keywords([&crowd]), [ANY_REVIEWER]);
    }

    #[test]
    fn may_decide_follows_approvers_separation_of_duties_and_quorum() {
        let finance = PendingApproval {
            approvers: vec!["erin".into(), "carol".into(), "dave".into()],
            approver_groups: vec!["finance".into()],
            requester: "carol".into(),
            separation_of_duties: true,
            approvals_given: vec!["dave".into()],
            ..approval("a~1")
        };
        assert!(may_decide(&finance, "erin"));
        assert!(!may_decide(&finance, "frank"), "not named");
        assert!(!may_decide(&finance, "carol"), "own request");
        assert!(!may_decide(&finance, "dave"), "already approved");
        assert!(may_decide(&approval("a~2"), "anyone"));
    }
}
