//! `countersign policy check AGENT_FILE`: the effective policy of an agent,
//! tool by tool, before anything runs: when a call needs approval (in both
//! run modes), which conditions add approval, how many approvers, who may
//! decide, and how long a call waits.

use countersign_policy::agent::AgentDefinition;
use countersign_policy::catalog::CatalogTool;
use countersign_policy::{RunMode, ToolPolicy, evaluate};
use std::fmt::Write;

/// The report for an agent (and its sub-agents), as text.
pub fn report(agent: &AgentDefinition) -> String {
    let mut out = String::new();
    write_agent(&mut out, agent, 0);
    out
}

fn write_agent(out: &mut String, agent: &AgentDefinition, depth: usize) {
    let pad = "  ".repeat(depth);
    let _ = writeln!(
        out,
        "{pad}agent {} (default mode {}, approvals expire after {})",
        agent.name,
        agent.mode,
        humantime_text(agent.approval_expiry)
    );
    for tool in countersign_worker::catalog::static_tools(agent) {
        write_tool(out, agent, &tool, &pad);
    }
    for server in &agent.mcp_servers {
        let _ = writeln!(
            out,
            "{pad}  mcp server `{}`: tools discovered when a run starts; {}",
            server.name,
            source_rules(
                server.require_approval.as_ref(),
                &server.effects,
                &server.approval_when
            )
        );
    }
    for api in &agent.openapi {
        let _ = writeln!(
            out,
            "{pad}  openapi `{}` ({}): GET/HEAD read, other methods write_external; {}",
            api.name,
            api.spec,
            source_rules(
                api.require_approval.as_ref(),
                &api.effects,
                &api.approval_when
            )
        );
    }
    for tool in &agent.tools {
        if let Some(sub) = tool.agent.as_ref().and_then(|a| a.definition.as_deref()) {
            let _ = writeln!(out, "{pad}  sub-agent of `{}`:", tool.name);
            write_agent(out, sub, depth + 2);
        }
    }
}

fn write_tool(out: &mut String, agent: &AgentDefinition, tool: &CatalogTool, pad: &str) {
    let policy: ToolPolicy = tool.policy();
    let when = |mode: RunMode| {
        let verdict = evaluate(Some(&policy), mode);
        if verdict.needs_approval {
            "approval".to_string()
        } else {
            "runs".to_string()
        }
    };
    let _ = writeln!(
        out,
        "{pad}  {} ({}{}, effect {}): autonomous → {}, user_requested → {}",
        tool.name,
        tool.kind.as_str(),
        if tool.provider.is_empty() {
            String::new()
        } else {
            format!(" {}", tool.provider)
        },
        tool.effect,
        when(RunMode::Autonomous),
        when(RunMode::UserRequested),
    );
    let verdict = evaluate(Some(&policy), RunMode::Autonomous);
    let _ = writeln!(out, "{pad}      rule: {}", verdict.rule);
    if let Some(condition) = agent.approval_condition(tool) {
        let _ = writeln!(
            out,
            "{pad}      also needs approval when `{}`",
            condition.source()
        );
    }
    if let Some(definition) = agent.tool(&tool.name)
        && let Some(quorum) = definition.quorum
    {
        let _ = writeln!(
            out,
            "{pad}      {quorum} distinct approvers{}",
            definition
                .quorum_when
                .as_ref()
                .map(|c| format!(" when `{c}` (otherwise 1)"))
                .unwrap_or_default()
        );
    }
    let never_gated = !evaluate(Some(&policy), RunMode::Autonomous).needs_approval
        && agent.approval_condition(tool).is_none();
    if never_gated {
        return;
    }
    let groups = agent.approver_groups(tool);
    let who = if groups.is_empty() {
        "any reviewer".to_string()
    } else {
        format!(
            "groups {} ({})",
            groups.join(", "),
            agent.eligible_reviewers(tool).join(", ")
        )
    };
    let _ = writeln!(
        out,
        "{pad}      decided by {who}{}; waits {}",
        if agent.separation_of_duties_for(tool) {
            ", never the run's requester"
        } else {
            ""
        },
        humantime_text(tool.approval_expiry.unwrap_or(agent.approval_expiry))
    );
}

fn source_rules(
    require_approval: Option<&countersign_policy::sources::RequireApproval>,
    effects: &std::collections::BTreeMap<String, countersign_policy::EffectClass>,
    conditions: &std::collections::BTreeMap<String, String>,
) -> String {
    use countersign_policy::sources::{ApprovalSwitch, RequireApproval};
    let mut parts = vec![match require_approval {
        None => "approval by effect class".to_string(),
        Some(RequireApproval::All(ApprovalSwitch::Always)) => "every tool needs approval".into(),
        Some(RequireApproval::All(ApprovalSwitch::Never)) => {
            "no tool needs approval (except money)".into()
        }
        Some(RequireApproval::Only(names)) => format!("always gated: {}", names.join(", ")),
    }];
    for (tool, effect) in effects {
        parts.push(format!("{tool} is {effect}"));
    }
    for (tool, condition) in conditions {
        parts.push(format!("{tool} also needs approval when `{condition}`"));
    }
    parts.join("; ")
}

fn humantime_text(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    match secs {
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}
