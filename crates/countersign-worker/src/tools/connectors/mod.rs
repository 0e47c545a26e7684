//! Connectors: named sets of actions (`filesystem`, `mail`, `slack`).
//!
//! Each connector kind lists its actions with their own effect class; the
//! agent file's `effects`, `require_approval` and `actions` entries adjust
//! and filter them. The actions are offered to the model as
//! `<prefix>.<action>` and run here, from the `execute_tool` activity.

mod filesystem;
mod mail;
mod slack;

use super::{ToolError, ToolOutput};
use countersign_policy::EffectClass;
use countersign_policy::catalog::{
    CatalogTool, ToolBinding, ToolKind, qualified_name, source_tool_policy,
};
use countersign_policy::sources::{Connector, ConnectorKind};
use serde_json::Value;

/// One action of a connector kind, before the agent file's settings apply.
struct ActionSpec {
    /// The unqualified name, e.g. `send`.
    name: &'static str,
    /// What it does, for the model and reviewers.
    description: &'static str,
    /// The connector's own effect class for it.
    effect: EffectClass,
    /// The JSON schema of its arguments.
    schema: Value,
}

fn specs(kind: ConnectorKind) -> Vec<ActionSpec> {
    match kind {
        ConnectorKind::Filesystem => filesystem::specs(),
        ConnectorKind::Mail => mail::specs(),
        ConnectorKind::Slack => slack::specs(),
    }
}

fn offered(connector: &Connector, action: &str) -> bool {
    connector
        .actions
        .as_ref()
        .is_none_or(|only| only.iter().any(|a| a == action))
}

/// The actions `connector` offers, as catalog tools (`<prefix>.<action>`),
/// with the effect classes and approval flags its configuration gives them.
pub fn actions(connector: &Connector) -> Vec<CatalogTool> {
    let prefix = connector.prefix();
    specs(connector.kind)
        .into_iter()
        .filter(|spec| offered(connector, spec.name))
        .map(|spec| {
            let (effect, requires_approval) = source_tool_policy(
                connector.require_approval.as_ref(),
                &connector.effects,
                spec.name,
                spec.effect,
            );
            CatalogTool {
                name: qualified_name(prefix, spec.name),
                description: spec.description.to_string(),
                input_schema: spec.schema,
                kind: ToolKind::Connector,
                provider: prefix.to_string(),
                effect,
                requires_approval,
                approval_expiry: None,
                binding: ToolBinding::Connector {
                    connector: connector.clone(),
                    action: spec.name.to_string(),
                },
            }
        })
        .collect()
}

/// Runs one action (`action` unqualified, e.g. `send`).
///
/// An action the connector kind does not have, or that its `actions` list
/// leaves out, is refused: the catalog should never have offered it.
pub async fn run(
    http: &reqwest::Client,
    connector: &Connector,
    action: &str,
    arguments: &Value,
    idempotency_key: &str,
) -> Result<ToolOutput, ToolError> {
    let known = specs(connector.kind).iter().any(|s| s.name == action);
    if !known || !offered(connector, action) {
        return Err(ToolError::Refused(format!(
            "`{}` is not an action of this {} connector",
            qualified_name(connector.prefix(), action),
            connector.kind.as_str()
        )));
    }
    match connector.kind {
        ConnectorKind::Filesystem => filesystem::run(connector, action, arguments).await,
        ConnectorKind::Mail => mail::run(connector, action, arguments, idempotency_key).await,
        ConnectorKind::Slack => {
            slack::run(http, connector, action, arguments, idempotency_key).await
        }
    }
}

/// A required string argument.
fn string_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, ToolError> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::Refused(format!("argument `{name}` (a string) is required")))
}

/// An optional string argument (absent or null: `None`).
fn optional_string<'a>(args: &'a Value, name: &str) -> Result<Option<&'a str>, ToolError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ToolError::Refused(format!(
            "argument `{name}` must be a string"
        ))),
    }
}

/// An optional count argument, clamped to `1..=max`.
fn optional_limit(args: &Value, name: &str, default: u64, max: u64) -> Result<u64, ToolError> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .filter(|n| *n >= 1)
            .map(|n| n.min(max))
            .ok_or_else(|| {
                ToolError::Refused(format!("argument `{name}` must be a positive integer"))
            }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn connector(value: Value) -> Connector {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn every_schema_is_an_object_schema_whose_required_fields_exist() {
        for kind in [
            ConnectorKind::Filesystem,
            ConnectorKind::Mail,
            ConnectorKind::Slack,
        ] {
            for spec in specs(kind) {
                assert_eq!(spec.schema["type"], "object", "{}", spec.name);
                for name in spec.schema["required"].as_array().into_iter().flatten() {
                    let name = name.as_str().unwrap();
                    assert!(
                        spec.schema["properties"].get(name).is_some(),
                        "{}: {name}",
                        spec.name
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn actions_left_out_by_the_allow_list_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let fs = connector(json!({
            "kind": "filesystem", "root": dir.path(), "actions": ["list"]
        }));
        let http = reqwest::Client::new();
        let err = run(
            &http,
            &fs,
            "write",
            &json!({"path": "a", "content": "x"}),
            "k",
        )
        .await
        .unwrap_err();
        assert!(matches!(err, ToolError::Refused(_)), "{err}");
        assert!(!dir.path().join("a").exists());
        let err = run(&http, &fs, "chmod", &json!({}), "k").await.unwrap_err();
        assert!(err.to_string().contains("filesystem.chmod"), "{err}");
    }
}
