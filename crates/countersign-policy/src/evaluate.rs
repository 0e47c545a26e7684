//! The default approval table and the per-tool `requires_approval` flag.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a tool call does to the world; the axis of the default policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectClass {
    /// Reads only; never needs approval.
    Read,
    /// Writes the requesting user's own data (their todo list, their drafts).
    WriteOwn,
    /// Writes shared or external systems (email, chat, tickets, other people's data).
    WriteExternal,
    /// Moves money. Always needs approval: no flag, rule or mode can lift it.
    Money,
}

impl EffectClass {
    /// The snake_case name used in agent files, search attributes and `PendingApproval.effectClass`.
    pub fn as_str(self) -> &'static str {
        match self {
            EffectClass::Read => "read",
            EffectClass::WriteOwn => "write_own",
            EffectClass::WriteExternal => "write_external",
            EffectClass::Money => "money",
        }
    }
}

impl fmt::Display for EffectClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who asked for the run's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunMode {
    /// The agent acts on its own initiative (the default, and the strict one).
    #[default]
    Autonomous,
    /// The user explicitly asked for these actions.
    #[serde(alias = "user-requested")]
    UserRequested,
}

impl RunMode {
    /// The snake_case name used on the command line and in agent files.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Autonomous => "autonomous",
            RunMode::UserRequested => "user_requested",
        }
    }
}

impl fmt::Display for RunMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The policy-relevant part of a tool's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolPolicy {
    /// The tool's effect class.
    pub effect: EffectClass,
    /// `Some(true)` forces approval; `Some(false)` lifts it (never for `money`);
    /// `None` follows the default table.
    pub requires_approval: Option<bool>,
}

/// The policy's answer for one tool call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Whether the call must wait for a decision before it runs.
    pub needs_approval: bool,
    /// The effect class the call was judged as.
    pub effect: EffectClass,
    /// The rule that decided, in words a reviewer can read.
    pub rule: String,
    /// How many distinct approvers must approve (1 in this version).
    pub required_approvals: u32,
}

/// Decides whether a call to a tool needs approval.
///
/// `tool` is `None` for a tool the agent file does not declare: it is judged as
/// `write_external`, the strictest class that is not money.
pub fn evaluate(tool: Option<&ToolPolicy>, mode: RunMode) -> Verdict {
    let (effect, flag, unknown) = match tool {
        Some(t) => (t.effect, t.requires_approval, false),
        None => (EffectClass::WriteExternal, None, true),
    };
    let verdict = |needs_approval: bool, rule: String| Verdict {
        needs_approval,
        effect,
        rule,
        required_approvals: u32::from(needs_approval),
    };
    if effect == EffectClass::Money {
        return verdict(
            true,
            "money: always needs approval (no flag, rule or mode lifts it)".into(),
        );
    }
    match flag {
        Some(true) => return verdict(true, "tool flag: requires_approval = true".into()),
        Some(false) => return verdict(false, "tool flag: requires_approval = false".into()),
        None => {}
    }
    let needs = match (effect, mode) {
        (EffectClass::Read, _) => false,
        (EffectClass::WriteOwn, RunMode::Autonomous) => true,
        (EffectClass::WriteOwn, RunMode::UserRequested) => false,
        (EffectClass::WriteExternal, _) | (EffectClass::Money, _) => true,
    };
    let rule = if unknown {
        "unknown tool: treated as write_external, needs approval".to_string()
    } else {
        format!(
            "default: {effect} in a run that is {mode} {}",
            if needs {
                "needs approval"
            } else {
                "runs without approval"
            }
        )
    };
    verdict(needs, rule)
}

/// Adds a condition to a verdict: when the call would run without approval
/// and the condition holds on its arguments (or cannot be decided), it needs
/// approval after all. A condition never removes approval.
pub fn apply_condition(
    verdict: Verdict,
    condition: Option<&crate::condition::Condition>,
    arguments: &serde_json::Value,
) -> Verdict {
    let Some(condition) = condition else {
        return verdict;
    };
    if verdict.needs_approval {
        return verdict;
    }
    let rule = match condition.evaluate(arguments) {
        Ok(false) => return verdict,
        Ok(true) => format!("condition: `{}` holds, needs approval", condition.source()),
        Err(problem) => format!(
            "condition: `{}` could not be decided ({problem}), needs approval",
            condition.source()
        ),
    };
    Verdict {
        needs_approval: true,
        required_approvals: verdict.required_approvals.max(1),
        rule,
        ..verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tool(effect: EffectClass, requires_approval: Option<bool>) -> ToolPolicy {
        ToolPolicy {
            effect,
            requires_approval,
        }
    }

    #[test]
    fn default_table_matches_the_design() {
        use EffectClass::*;
        use RunMode::*;
        let table = [
            (Read, Autonomous, false),
            (Read, UserRequested, false),
            (WriteOwn, Autonomous, true),
            (WriteOwn, UserRequested, false),
            (WriteExternal, Autonomous, true),
            (WriteExternal, UserRequested, true),
            (Money, Autonomous, true),
            (Money, UserRequested, true),
        ];
        for (effect, mode, expected) in table {
            let v = evaluate(Some(&tool(effect, None)), mode);
            assert_eq!(v.needs_approval, expected, "{effect} in {mode}");
            assert_eq!(v.required_approvals, u32::from(expected));
        }
    }

    #[test]
    fn flag_forces_and_lifts_except_for_money() {
        let forced = evaluate(
            Some(&tool(EffectClass::Read, Some(true))),
            RunMode::Autonomous,
        );
        assert!(forced.needs_approval);
        assert!(forced.rule.contains("requires_approval = true"));
        let lifted = evaluate(
            Some(&tool(EffectClass::WriteExternal, Some(false))),
            RunMode::Autonomous,
        );
        assert!(!lifted.needs_approval);
        let money = evaluate(
            Some(&tool(EffectClass::Money, Some(false))),
            RunMode::UserRequested,
        );
        assert!(money.needs_approval);
        assert!(money.rule.starts_with("money"));
    }

    #[test]
    fn unknown_tools_are_write_external() {
        let v = evaluate(None, RunMode::UserRequested);
        assert!(v.needs_approval);
        assert_eq!(v.effect, EffectClass::WriteExternal);
        assert!(v.rule.starts_with("unknown tool"));
    }

    fn any_effect() -> impl Strategy<Value = EffectClass> {
        prop_oneof![
            Just(EffectClass::Read),
            Just(EffectClass::WriteOwn),
            Just(EffectClass::WriteExternal),
            Just(EffectClass::Money),
        ]
    }

    fn any_mode() -> impl Strategy<Value = RunMode> {
        prop_oneof![Just(RunMode::Autonomous), Just(RunMode::UserRequested)]
    }

    proptest! {
        #[test]
        fn money_never_runs_without_approval(flag in proptest::option::of(any::<bool>()), mode in any_mode()) {
            let v = evaluate(Some(&tool(EffectClass::Money, flag)), mode);
            prop_assert!(v.needs_approval);
            prop_assert!(v.required_approvals >= 1);
        }

        #[test]
        fn flag_true_always_gates(effect in any_effect(), mode in any_mode()) {
            prop_assert!(evaluate(Some(&tool(effect, Some(true))), mode).needs_approval);
        }

        #[test]
        fn user_requested_never_needs_more_than_autonomous(effect in any_effect(), flag in proptest::option::of(any::<bool>())) {
            let t = tool(effect, flag);
            let auto = evaluate(Some(&t), RunMode::Autonomous).needs_approval;
            let asked = evaluate(Some(&t), RunMode::UserRequested).needs_approval;
            prop_assert!(auto || !asked);
        }
    }

    proptest! {
        /// A condition only ever adds approval: whatever the tool, mode,
        /// condition and arguments, a call that needed approval still does.
        #[test]
        fn conditions_never_remove_approval(
            effect in prop_oneof![Just(EffectClass::Read), Just(EffectClass::WriteOwn), Just(EffectClass::WriteExternal), Just(EffectClass::Money)],
            flag in prop_oneof![Just(None), Just(Some(true)), Just(Some(false))],
            autonomous in any::<bool>(),
            threshold in -1000i64..1000,
            amount in prop_oneof![Just(serde_json::Value::Null), (-2000i64..2000).prop_map(serde_json::Value::from), Just(serde_json::json!("text"))],
        ) {
            let mode = if autonomous { RunMode::Autonomous } else { RunMode::UserRequested };
            let base = evaluate(Some(&tool(effect, flag)), mode);
            let condition = crate::condition::Condition::parse(&format!("amount > {threshold}")).unwrap();
            let args = serde_json::json!({ "amount": amount });
            let with = apply_condition(base.clone(), Some(&condition), &args);
            prop_assert!(with.needs_approval || !base.needs_approval);
            if effect == EffectClass::Money {
                prop_assert!(with.needs_approval);
            }
        }
    }
}
