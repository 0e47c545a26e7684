//! `countersign policy check AGENT_FILE [--discover]`: the effective policy
//! of an agent, tool by tool, before anything runs: when a call needs
//! approval (in both run modes), which conditions add approval, how many
//! approvers, who may decide, and how long a call waits. Every line comes
//! from [`Agent::gate`], the function the workflow itself asks.

use countersign_policy::catalog::CatalogTool;
use countersign_policy::{Agent, RunMode};
use std::fmt::Write;

/// The report for an agent (and its sub-agents), as text. `discovered`
/// holds the tools of its MCP servers and OpenAPI documents when they were
/// listed (`--discover`); without it those sources are described by their
/// rules only.
pub fn report(agent: &Agent, discovered: Option<&[CatalogTool]>) -> String {
    let mut out = String::new();
    write_agent(&mut out, agent, discovered, 0);
    out
}

fn write_agent(out: &mut String, agent: &Agent, discovered: Option<&[CatalogTool]>, depth: usize) {
    let pad = "  ".repeat(depth);
    let _ = writeln!(
        out,
        "{pad}agent {} (default mode {}, approvals expire after {}, sha256 {})",
        agent.name,
        agent.mode,
        humantime_text(agent.approval_expiry),
        agent.sha256()
    );
    for tool in countersign_worker::catalog::static_tools(agent) {
        write_tool(out, agent, &tool, &pad);
    }
    for server in &agent.mcp_servers {
        let _ = writeln!(
            out,
            "{pad}  mcp server `{}`: {}; {}",
            server.name,
            if discovered.is_some() {
                "tools listed below"
            } else {
                "tools discovered when a run starts (--discover lists them)"
            },
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
    for tool in discovered.unwrap_or_default() {
        write_tool(out, agent, tool, &pad);
    }
    for tool in &agent.tools {
        if let Some(sub) = agent.sub_agent(&tool.name) {
            let _ = writeln!(out, "{pad}  sub-agent of `{}`:", tool.name);
            write_agent(out, sub, None, depth + 2);
        }
    }
}

fn write_tool(out: &mut String, agent: &Agent, tool: &CatalogTool, pad: &str) {
    // Arguments are not known here: a condition is shown, not evaluated.
    let no_arguments = serde_json::json!({});
    let autonomous = agent.gate(Some(tool), &no_arguments, RunMode::Autonomous);
    let asked = agent.gate(Some(tool), &no_arguments, RunMode::UserRequested);
    let when = |needs: bool| if needs { "approval" } else { "runs" };
    let condition = agent.approval_condition(&tool.name);
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
        autonomous.effect,
        when(autonomous.needs_approval),
        when(asked.needs_approval),
    );
    let _ = writeln!(out, "{pad}      rule: {}", autonomous.rule);
    if let Some(condition) = condition {
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
    if !autonomous.needs_approval && condition.is_none() {
        return;
    }
    let who = if autonomous.approver_groups.is_empty() {
        "any reviewer".to_string()
    } else {
        format!(
            "groups {} ({})",
            autonomous.approver_groups.join(", "),
            autonomous.approvers.join(", ")
        )
    };
    let _ = writeln!(
        out,
        "{pad}      decided by {who}{}; waits {}",
        if autonomous.separation_of_duties {
            ", never the run's requester"
        } else {
            ""
        },
        humantime_text(autonomous.expiry)
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
