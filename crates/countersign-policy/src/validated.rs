//! The validated agent: what a run uses, and the one place a tool call's
//! gate is decided.
//!
//! An [`AgentFile`] is data as it arrived (a file on the worker, an inline
//! definition from a client, a continued run's input, a child's input).
//! [`Agent::new`] is the only way to get an [`Agent`]: it applies
//! [`AgentFile::check`] (names, references, the money rule, conditions that
//! must parse, Countersign's own workflow types refused as workflow tools),
//! requires every sub-agent to be present and valid, and keeps the parsed
//! conditions. Workflow code calls it on whatever it receives, so an `Agent`
//! in a run is one that passed these rules, whoever sent it.

use crate::agent::{AgentFile, InvalidField, ToolImplementation};
use crate::catalog::{CatalogTool, ToolKind, source_tool_policy};
use crate::condition::Condition;
use crate::{EffectClass, RunMode, ToolPolicy, apply_condition, evaluate};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ops::Deref;
use std::time::Duration;

/// An agent definition that passed every rule. Read it through `Deref`
/// (its fields are the file's); it cannot be changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    file: AgentFile,
    sha256: String,
    /// Parsed `approval_when` conditions by qualified tool name.
    approval_conditions: BTreeMap<String, Condition>,
    /// Parsed `quorum_when` conditions by tool name.
    quorum_conditions: BTreeMap<String, Condition>,
    /// Sub-agents by the name of the tool that runs them.
    sub_agents: BTreeMap<String, Agent>,
}

impl Deref for Agent {
    type Target = AgentFile;
    fn deref(&self) -> &AgentFile {
        &self.file
    }
}

/// How a call to one tool is gated: the whole answer of the policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    /// Whether the call waits for a decision before it runs.
    pub needs_approval: bool,
    /// The effect class the call was judged as.
    pub effect: EffectClass,
    /// The rule that decided, in words a reviewer can read.
    pub rule: String,
    /// How many distinct reviewers must approve (at least 1 when gated).
    pub quorum: u32,
    /// The reviewer groups that may decide (empty: any authenticated reviewer).
    pub approver_groups: Vec<String>,
    /// The members of those groups (empty: anyone).
    pub approvers: Vec<String>,
    /// Whether the run's requester is barred from approving it.
    pub separation_of_duties: bool,
    /// Whether decisions must be signed by a key the worker trusts.
    pub signed_decisions_required: bool,
    /// How long the call waits before it expires (fail-closed).
    pub expiry: Duration,
}

impl Agent {
    /// Checks `file` and everything it carries (sub-agents, conditions) and
    /// returns the validated agent, or the first field that breaks a rule.
    pub fn new(file: AgentFile) -> Result<Self, InvalidField> {
        file.check()?;
        let mut approval_conditions = BTreeMap::new();
        let mut quorum_conditions = BTreeMap::new();
        let parse = |field: &str, text: &str| {
            Condition::parse(text).map_err(|e| {
                InvalidField::new(
                    field,
                    format!(
                        "condition `{}` does not parse: {}",
                        crate::agent::excerpt(text, 200),
                        e.message
                    ),
                )
            })
        };
        for (i, tool) in file.tools.iter().enumerate() {
            if let Some(text) = &tool.approval_when {
                approval_conditions.insert(
                    tool.name.clone(),
                    parse(&format!("tools[{i}].approval_when"), text)?,
                );
            }
            if let Some(text) = &tool.quorum_when {
                quorum_conditions.insert(
                    tool.name.clone(),
                    parse(&format!("tools[{i}].quorum_when"), text)?,
                );
            }
        }
        let sources = file
            .mcp_servers
            .iter()
            .map(|s| (s.name.as_str(), &s.approval_when))
            .chain(
                file.openapi
                    .iter()
                    .map(|a| (a.name.as_str(), &a.approval_when)),
            )
            .chain(
                file.connectors
                    .iter()
                    .map(|c| (c.prefix(), &c.approval_when)),
            );
        for (source, conditions) in sources {
            for (tool, text) in conditions {
                let qualified = crate::catalog::qualified_name(source, tool);
                approval_conditions.insert(
                    qualified.clone(),
                    parse(&format!("{source}.approval_when.{tool}"), text)?,
                );
            }
        }
        let mut sub_agents = BTreeMap::new();
        for (i, tool) in file.tools.iter().enumerate() {
            if let Some(ToolImplementation::Agent(sub)) = tool.implementation() {
                let field = format!("tools[{i}].agent");
                let Some(definition) = sub.definition.as_deref() else {
                    return Err(InvalidField::new(
                        field,
                        "the sub-agent's definition was not loaded (it is read from `file` on the worker)",
                    ));
                };
                let agent = Agent::new(definition.clone()).map_err(|e| {
                    InvalidField::new(format!("{field}.definition.{}", e.field), e.problem)
                })?;
                sub_agents.insert(tool.name.clone(), agent);
            }
        }
        let sha256 = file.sha256();
        Ok(Self {
            file,
            sha256,
            approval_conditions,
            quorum_conditions,
            sub_agents,
        })
    }

    /// The definition as data (for activities and child runs).
    pub fn file(&self) -> &AgentFile {
        &self.file
    }

    /// SHA-256 (hex) of the definition's canonical JSON: what `agentSha256`
    /// pins. It covers sub-agents and resolved paths, so it names exactly
    /// what a worker runs.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// The condition that adds approval to calls of `tool` (its
    /// `approval_when`, or its source's entry), parsed.
    pub fn approval_condition(&self, tool: &str) -> Option<&Condition> {
        self.approval_conditions.get(tool)
    }

    /// The validated sub-agent run by tool `tool`.
    pub fn sub_agent(&self, tool: &str) -> Option<&Agent> {
        self.sub_agents.get(tool)
    }

    /// The agent and every sub-agent below it, depth first.
    pub fn with_sub_agents(&self) -> Vec<&Agent> {
        let mut all = vec![self];
        for sub in self.sub_agents.values() {
            all.extend(sub.with_sub_agents());
        }
        all
    }

    /// How a call to `tool` with `arguments` is gated in a run of `mode`:
    /// effect class and flag (from this definition, whatever the catalog
    /// entry claims, so money stays money), conditions, quorum, approvers,
    /// separation of duties and expiry. `None` is a tool the agent does not
    /// offer (judged as `write_external`; only runs recorded before unknown
    /// tools were refused get that far).
    pub fn gate(&self, tool: Option<&CatalogTool>, arguments: &Value, mode: RunMode) -> Gate {
        let Some(tool) = tool else {
            let verdict = evaluate(None, mode);
            return Gate {
                needs_approval: verdict.needs_approval,
                effect: verdict.effect,
                rule: verdict.rule,
                quorum: verdict.required_approvals,
                approver_groups: self.approvers.clone(),
                approvers: vec![],
                separation_of_duties: self.separation_of_duties,
                signed_decisions_required: self.require_signed_decisions,
                expiry: self.expiry_for(None),
            };
        };
        let policy = self.policy_of(tool);
        let verdict = apply_condition(
            evaluate(Some(&policy), mode),
            self.approval_conditions.get(&tool.name),
            arguments,
        );
        let quorum = if verdict.needs_approval {
            self.quorum_for(tool, arguments)
                .max(verdict.required_approvals)
        } else {
            0
        };
        Gate {
            needs_approval: verdict.needs_approval,
            effect: verdict.effect,
            rule: verdict.rule,
            quorum,
            approver_groups: self.approver_groups(tool),
            approvers: self.eligible_reviewers(tool),
            separation_of_duties: self.separation_of_duties_for(tool),
            signed_decisions_required: self.signed_decisions_required_for(tool),
            expiry: self.expiry_for(Some(tool)),
        }
    }

    /// The effect class and flag of a catalog tool, from this definition:
    /// a single tool's own declaration, or its source's `effects` and
    /// `require_approval` over what discovery found. A tool the definition
    /// cannot account for is judged `write_external` with no flag.
    fn policy_of(&self, tool: &CatalogTool) -> ToolPolicy {
        let unknown = ToolPolicy {
            effect: EffectClass::WriteExternal,
            requires_approval: None,
        };
        let unqualified = tool
            .name
            .strip_prefix(&format!("{}.", tool.provider))
            .unwrap_or(&tool.name);
        // The source's `effects` entry beats discovery's own class
        // (annotations, HTTP method), as when the catalog was built.
        let from_source = |require: Option<&crate::sources::RequireApproval>,
                           effects: &BTreeMap<String, EffectClass>| {
            let (effect, requires_approval) =
                source_tool_policy(require, effects, unqualified, tool.effect);
            ToolPolicy {
                effect,
                requires_approval,
            }
        };
        match tool.kind {
            ToolKind::Builtin | ToolKind::Agent | ToolKind::Workflow | ToolKind::External => {
                match self.tool(&tool.name) {
                    Some(definition) => ToolPolicy {
                        effect: definition.effect_class(),
                        requires_approval: definition.requires_approval,
                    },
                    None => unknown,
                }
            }
            ToolKind::Mcp => self
                .mcp_servers
                .iter()
                .find(|s| s.name == tool.provider)
                .map_or(unknown, |s| {
                    from_source(s.require_approval.as_ref(), &s.effects)
                }),
            ToolKind::Openapi => self
                .openapi
                .iter()
                .find(|a| a.name == tool.provider)
                .map_or(unknown, |a| {
                    from_source(a.require_approval.as_ref(), &a.effects)
                }),
            ToolKind::Connector => self
                .connectors
                .iter()
                .find(|c| c.prefix() == tool.provider)
                .map_or(unknown, |c| {
                    from_source(c.require_approval.as_ref(), &c.effects)
                }),
        }
    }

    /// How long a call to `tool` waits for a decision (`None`: a tool the
    /// agent does not offer).
    pub fn expiry_for(&self, tool: Option<&CatalogTool>) -> Duration {
        let Some(tool) = tool else {
            return self.approval_expiry;
        };
        let declared = match tool.kind {
            ToolKind::Builtin | ToolKind::Agent | ToolKind::Workflow | ToolKind::External => {
                self.tool(&tool.name).and_then(|t| t.approval_expiry)
            }
            _ => tool.approval_expiry,
        };
        declared.unwrap_or(self.approval_expiry)
    }

    /// How many distinct approvals a gated call to `tool` needs: the tool's
    /// `quorum` when its `quorum_when` holds (or cannot be decided:
    /// fail-closed), else 1.
    fn quorum_for(&self, tool: &CatalogTool, arguments: &Value) -> u32 {
        let Some(quorum) = self.tool(&tool.name).and_then(|t| t.quorum) else {
            return 1;
        };
        let applies = self
            .quorum_conditions
            .get(&tool.name)
            .is_none_or(|c| c.evaluate(arguments).unwrap_or(true));
        if applies { quorum.max(1) } else { 1 }
    }
}

impl AgentFile {
    /// SHA-256 (hex) of this definition's canonical JSON.
    pub fn sha256(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or(Value::Null);
        countersign_proto::arguments_sha256(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn file(text: &str) -> AgentFile {
        AgentFile::from_toml(text, Path::new("a.toml"), Path::new("/base"), &|_| None).unwrap()
    }

    const PAY: &str = r#"
name = "pay"
[model]
provider = "scripted"
steps = [{ say = "hi" }]
[[tools]]
name = "pay"
builtin = { kind = "payment_request", url = "http://127.0.0.1:9/pay" }
[[tools]]
name = "todo"
approval_when = "len(item) > 3"
builtin = { kind = "append_todo", path = "todo.txt" }
"#;

    /// The catalog entry the worker builds for a single tool of `agent`.
    fn catalog_tool(agent: &Agent, name: &str) -> CatalogTool {
        let definition = agent.tool(name).unwrap();
        let Some(ToolImplementation::Builtin(builtin)) = definition.implementation() else {
            panic!("{name} is a built-in in these tests");
        };
        CatalogTool {
            name: name.into(),
            description: String::new(),
            input_schema: serde_json::json!({"type": "object"}),
            kind: ToolKind::Builtin,
            provider: String::new(),
            effect: definition.effect_class(),
            requires_approval: definition.requires_approval,
            approval_expiry: definition.approval_expiry,
            binding: crate::catalog::ToolBinding::Builtin(builtin.clone()),
        }
    }

    #[test]
    fn a_definition_that_arrives_with_a_money_tool_declared_read_is_refused() {
        let mut f = file(PAY);
        f.tools[0].effect = Some(EffectClass::Read);
        let e = Agent::new(f).unwrap_err();
        assert_eq!(e.field, "tools[0].effect");
        assert!(e.problem.contains("must be `money`"), "{e}");
    }

    #[test]
    fn a_condition_that_does_not_parse_is_refused_not_dropped() {
        let mut f = file(PAY);
        f.tools[1].approval_when = Some("item ==".into());
        let e = Agent::new(f).unwrap_err();
        assert_eq!(e.field, "tools[1].approval_when");
    }

    #[test]
    fn countersign_workflows_cannot_be_workflow_tools() {
        let text = PAY.replace(
            "[[tools]]\nname = \"todo\"",
            "[[tools]]\nname = \"spawn\"\nworkflow = { workflow_type = \"AgentRun\" }\n[[tools]]\nname = \"todo\"",
        );
        let e = AgentFile::from_toml(&text, Path::new("a.toml"), Path::new("/"), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("tools[1].workflow.workflow_type"), "{e}");
        assert!(e.contains("(line "), "{e}");
    }

    #[test]
    fn money_is_gated_whatever_the_catalog_entry_claims() {
        let agent = Agent::new(file(PAY)).unwrap();
        let mut tool = catalog_tool(&agent, "pay");
        tool.effect = EffectClass::Read;
        tool.requires_approval = Some(false);
        let gate = agent.gate(Some(&tool), &serde_json::json!({}), RunMode::UserRequested);
        assert!(gate.needs_approval);
        assert_eq!(gate.effect, EffectClass::Money);
        assert_eq!(gate.quorum, 1);
    }

    #[test]
    fn signed_decisions_come_from_the_agent_or_the_tool_and_keep_old_hashes() {
        let plain = Agent::new(file(PAY)).unwrap();
        let pay = catalog_tool(&plain, "pay");
        let args = serde_json::json!({});
        assert!(
            !plain
                .gate(Some(&pay), &args, RunMode::Autonomous)
                .signed_decisions_required
        );
        // Not set: the definition's hash is what it was before the field existed.
        assert!(
            !serde_json::to_string(plain.file())
                .unwrap()
                .contains("signed")
        );

        let text = PAY.replace("[model]", "require_signed_decisions = true\n[model]");
        let mut f = file(&text);
        f.tools[1].require_signed_decisions = Some(false);
        let agent = Agent::new(f).unwrap();
        assert_ne!(agent.sha256(), plain.sha256());
        let gate = |name: &str| {
            agent
                .gate(
                    Some(&catalog_tool(&agent, name)),
                    &serde_json::json!({"item": "abcdef"}),
                    RunMode::Autonomous,
                )
                .signed_decisions_required
        };
        assert!(gate("pay"), "the agent-level default applies");
        assert!(!gate("todo"), "the tool's own setting wins");
        assert!(
            agent
                .gate(None, &args, RunMode::Autonomous)
                .signed_decisions_required
        );
    }

    #[test]
    fn gate_applies_conditions_and_the_mode() {
        let agent = Agent::new(file(PAY)).unwrap();
        let todo = catalog_tool(&agent, "todo");
        let short = serde_json::json!({"item": "ab"});
        let long = serde_json::json!({"item": "abcdef"});
        assert!(
            !agent
                .gate(Some(&todo), &short, RunMode::UserRequested)
                .needs_approval
        );
        let gate = agent.gate(Some(&todo), &long, RunMode::UserRequested);
        assert!(gate.needs_approval);
        assert!(gate.rule.contains("len(item) > 3"), "{}", gate.rule);
        assert!(
            agent
                .gate(Some(&todo), &short, RunMode::Autonomous)
                .needs_approval
        );
    }

    use proptest::prelude::*;

    fn any_effect() -> impl Strategy<Value = Option<EffectClass>> {
        proptest::option::of(prop_oneof![
            Just(EffectClass::Read),
            Just(EffectClass::WriteOwn),
            Just(EffectClass::WriteExternal),
            Just(EffectClass::Money),
        ])
    }

    fn any_condition() -> impl Strategy<Value = Option<String>> {
        proptest::option::of(prop_oneof![
            Just("amount > 100".to_string()),
            Just("amount >".to_string()),
            Just("to == \"acme\"".to_string()),
            Just("len(to) < 3 or amount <= 0".to_string()),
            "[a-z<>=! ()0-9\"]{0,16}",
        ])
    }

    proptest! {
        /// For any definition the generator builds (a money tool declared
        /// with any effect, flag and condition, at the top or inside a
        /// sub-agent) and any claim the catalog entry makes, in any mode:
        /// either the definition is refused, or a call to the money tool
        /// needs approval.
        #[test]
        fn money_never_runs_without_approval(
            effect in any_effect(),
            flag in proptest::option::of(any::<bool>()),
            condition in any_condition(),
            quorum in proptest::option::of(0u32..3),
            nested in any::<bool>(),
            claimed_effect in any_effect(),
            claimed_flag in proptest::option::of(any::<bool>()),
            user_requested in any::<bool>(),
            amount in -1000i64..1000,
        ) {
            let mut payer = file(PAY);
            payer.tools[0].effect = effect;
            payer.tools[0].requires_approval = flag;
            payer.tools[0].approval_when = condition;
            payer.tools[0].quorum = quorum;
            let agent = if nested {
                let mut parent = file(&PAY.replace("name = \"pay\"\n[model]", "name = \"parent\"\n[model]"));
                parent.tools[1] = crate::agent::ToolDefinition {
                    name: "payer".into(),
                    description: String::new(),
                    effect: Some(EffectClass::Read),
                    requires_approval: Some(false),
                    approval_expiry: None,
                    approvers: None,
                    quorum: None,
                    quorum_when: None,
                    separation_of_duties: None,
                    require_signed_decisions: None,
                    approval_when: None,
                    builtin: None,
                    agent: Some(crate::sources::SubAgentTool {
                        file: "payer.toml".into(),
                        definition: Some(Box::new(payer)),
                    }),
                    workflow: None,
                    external: None,
                    parameters: None,
                };
                Agent::new(parent).map(|a| a.sub_agent("payer").cloned().expect("validated sub-agent"))
            } else {
                Agent::new(payer)
            };
            let Ok(agent) = agent else {
                return Ok(());
            };
            let mut tool = catalog_tool(&agent, "pay");
            if let Some(claimed) = claimed_effect {
                tool.effect = claimed;
            }
            tool.requires_approval = claimed_flag;
            let mode = if user_requested { RunMode::UserRequested } else { RunMode::Autonomous };
            let arguments = serde_json::json!({"to": "acme", "amount": amount, "currency": "EUR"});
            let gate = agent.gate(Some(&tool), &arguments, mode);
            prop_assert!(gate.needs_approval, "{gate:?}");
            prop_assert_eq!(gate.effect, EffectClass::Money);
            prop_assert!(gate.quorum >= 1);
        }
    }

    #[test]
    fn the_hash_changes_with_the_definition() {
        let a = Agent::new(file(PAY)).unwrap();
        let b = Agent::new(file(&PAY.replace("todo.txt", "other.txt"))).unwrap();
        assert_eq!(a.sha256().len(), 64);
        assert_ne!(a.sha256(), b.sha256());
        assert_eq!(a.sha256(), Agent::new(file(PAY)).unwrap().sha256());
    }
}
