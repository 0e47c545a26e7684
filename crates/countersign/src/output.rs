//! Human-readable rendering of approvals and runs (stdout), shared by the CLI
//! and the demo. `--json` output is the proto3 JSON of the same messages.

use countersign_proto::{
    ApprovalState, DecisionKind, DecisionRecord, PendingApproval, RunState, canonical_json,
    struct_to_json,
};

/// A multi-line description of one approval.
pub fn approval_text(a: &PendingApproval) -> String {
    let tool = a.tool.as_ref();
    let args = a
        .arguments
        .as_ref()
        .map(|s| serde_json::to_string_pretty(&struct_to_json(s)).unwrap_or_default())
        .unwrap_or_else(|| "{}".into());
    format!(
        "approval   {id}\n\
         state      {state}\n\
         tool       {tool} ({kind}, effect {effect})\n\
         rule       {rule}\n\
         run        {wf} (agent {agent}, requested by {requester}){parent}\n\
         request    {request}\n\
         model says {reason}\n\
         expires    {expires}\n\
         approvals  {given}/{required}\n\
         signatures {signatures}\n\
         sha256     {sha}\n\
         arguments  {args}\n",
        id = a.approval_id,
        state = a
            .state()
            .as_str_name()
            .trim_start_matches("APPROVAL_STATE_"),
        tool = tool.map_or("?", |t| t.name.as_str()),
        kind = tool.map_or("?".into(), |t| if t.provider.is_empty() {
            t.kind.clone()
        } else {
            format!("{} {}", t.kind, t.provider)
        }),
        effect = a.effect_class,
        rule = a.rule,
        wf = a.workflow_id,
        parent = if a.parent_workflow_id.is_empty() {
            String::new()
        } else {
            format!(", sub-agent of {}", a.parent_workflow_id)
        },
        agent = a.agent,
        requester = if a.requester.is_empty() {
            "-"
        } else {
            &a.requester
        },
        request = a.user_request,
        reason = a.model_reason,
        expires = timestamp_text(a.expires_at.as_ref()),
        given = a.approvals_given.len(),
        required = a.required_approvals,
        signatures = if a.signed_decisions_required {
            "required: only decisions signed by a key the worker trusts are accepted"
        } else {
            "not required: unsigned decisions are accepted"
        },
        sha = a.arguments_sha256,
        args = args.replace('\n', "\n           "),
    )
}

/// One line per approval, for lists.
pub fn approval_line(a: &PendingApproval) -> String {
    // A listing's entry carries an excerpt instead of the arguments.
    let args = a
        .arguments
        .as_ref()
        .map(|s| canonical_json(&struct_to_json(s)))
        .unwrap_or_else(|| a.arguments_excerpt.clone());
    format!(
        "{}  {}  {}({})  agent={} requester={} expires={}",
        a.approval_id,
        a.effect_class,
        a.tool.as_ref().map_or("?", |t| t.name.as_str()),
        args,
        a.agent,
        a.requester,
        timestamp_text(a.expires_at.as_ref())
    )
}

/// A readable account of a run: status, transcript and decisions.
pub fn run_text(r: &RunState) -> String {
    let mut out = format!(
        "run {} (agent {}, requested by {}, mode {}): {}\n",
        r.workflow_id,
        r.agent,
        r.requester,
        r.mode,
        r.status().as_str_name().trim_start_matches("RUN_STATUS_")
    );
    if !r.parent_workflow_id.is_empty() {
        out.push_str(&format!("sub-agent of run {}\n", r.parent_workflow_id));
    }
    if r.continued > 0 {
        out.push_str(&format!("continued as new {} times\n", r.continued));
    }
    for notice in &r.notices {
        out.push_str(&format!("notice: {notice}\n"));
    }
    out.push_str("transcript:\n");
    if let Some(stored) = &r.stored_transcript {
        out.push_str(&format!(
            "  ({} earlier entries are in the payload store: give the workers' --payload-store URL to see them)\n",
            stored.entries
        ));
    }
    for e in &r.transcript {
        match e.role.as_str() {
            "assistant" => {
                out.push_str(&format!("  model: {}\n", e.content));
                for c in &e.tool_calls {
                    let args = c
                        .arguments
                        .as_ref()
                        .map(|s| canonical_json(&struct_to_json(s)))
                        .unwrap_or_default();
                    out.push_str(&format!("    calls {}({args})\n", c.name));
                }
            }
            "tool" => out.push_str(&format!(
                "  tool {}{}: {}\n",
                e.tool_call_id,
                if e.is_error { " (error)" } else { "" },
                // Keep multi-line results inside the transcript's indentation.
                e.content.trim_end().replace('\n', "\n      ")
            )),
            role => out.push_str(&format!("  {role}: {}\n", e.content)),
        }
    }
    if !r.decisions.is_empty() {
        out.push_str("decisions:\n");
        for d in &r.decisions {
            let what = match (d.accepted, d.resulting_state()) {
                (true, ApprovalState::Expired) => "EXPIRED".to_string(),
                (true, _) => match d.kind() {
                    DecisionKind::Approve => "APPROVED".into(),
                    DecisionKind::Deny => "DENIED".into(),
                    DecisionKind::Unspecified => "?".into(),
                },
                (false, _) => "REJECTED".into(),
            };
            out.push_str(&format!(
                "  {} {} {} by {} via {}{}{}: {}\n",
                timestamp_text(d.decided_at.as_ref()),
                what,
                if d.tool.is_empty() {
                    &d.approval_id
                } else {
                    &d.tool
                },
                if d.reviewer.is_empty() {
                    "-"
                } else {
                    &d.reviewer
                },
                d.channel,
                signature_text(d),
                if d.reason.is_empty() {
                    String::new()
                } else {
                    format!(" (\"{}\")", d.reason)
                },
                d.message
            ));
        }
    }
    if !r.final_answer.is_empty() {
        out.push_str(&format!("answer: {}\n", r.final_answer));
    }
    out
}

/// Who signed a reviewer's decision: ", signed by <key id>", ", unsigned",
/// or nothing for records no reviewer sent (timer, sticky, malformed).
pub fn signature_text(d: &DecisionRecord) -> String {
    if !matches!(d.channel.as_str(), "update" | "signal") || d.reviewer.is_empty() {
        String::new()
    } else if d.signed_by.is_empty() {
        ", unsigned".into()
    } else {
        format!(", signed by {}", d.signed_by)
    }
}

fn timestamp_text<T: serde::Serialize>(t: Option<&T>) -> String {
    t.and_then(|t| serde_json::to_value(t).ok())
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| "-".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_say_who_signed_them() {
        let mut record = DecisionRecord {
            reviewer: "bob@example.com".into(),
            channel: "update".into(),
            ..Default::default()
        };
        assert_eq!(signature_text(&record), ", unsigned");
        record.signed_by = "serve-1".into();
        assert_eq!(signature_text(&record), ", signed by serve-1");
        record.channel = "sticky".into();
        assert_eq!(signature_text(&record), "");
        let approval = PendingApproval {
            signed_decisions_required: true,
            ..Default::default()
        };
        assert!(approval_text(&approval).contains("signatures required"));
    }
}
