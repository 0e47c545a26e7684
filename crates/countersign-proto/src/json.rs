//! Conversions between `serde_json::Value` and protobuf `Struct`, and the
//! canonical JSON form that `argumentsSha256` is computed over.

use pbjson_types::Struct;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A JSON value that cannot become a protobuf `Struct`.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// Tool arguments must be a JSON object.
    #[error("expected a JSON object, got {0}")]
    NotAnObject(&'static str),
    /// The value could not be converted.
    #[error("invalid JSON value: {0}")]
    Invalid(#[from] serde_json::Error),
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Converts a JSON object into a protobuf `Struct`.
pub fn json_to_struct(value: &Value) -> Result<Struct, JsonError> {
    if !value.is_object() {
        return Err(JsonError::NotAnObject(kind_name(value)));
    }
    Ok(serde_json::from_value(value.clone())?)
}

/// Converts a protobuf `Struct` into a JSON object. Integral numbers come back
/// as integers (`Struct` stores every number as a double).
pub fn struct_to_json(s: &Struct) -> Value {
    // A Struct always serializes to a JSON object; this cannot fail.
    let mut v = serde_json::to_value(s).unwrap_or(Value::Object(Default::default()));
    integral_numbers_as_integers(&mut v);
    v
}

fn integral_numbers_as_integers(v: &mut Value) {
    match v {
        Value::Number(n) => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9_007_199_254_740_992.0
            {
                *v = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(map) => map.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

/// The canonical JSON text of a value: object keys sorted, no whitespace, and
/// every number read as a double and written without a fraction when it is
/// integral (`5`, never `5.0`). Arguments carried through a protobuf `Struct`
/// (where every number is a double) therefore hash the same as the model's
/// original JSON, in the worker, the CLI and any client that follows these rules.
pub fn canonical_json(value: &Value) -> String {
    // serde_json's Map is a BTreeMap (no `preserve_order` feature), so keys
    // already serialize sorted.
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&map[*k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(v, out);
            }
            out.push(']');
        }
        Value::Number(n) => out.push_str(&canonical_number(n)),
        other => out.push_str(&other.to_string()),
    }
}

fn canonical_number(n: &serde_json::Number) -> String {
    const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < MAX_SAFE_INTEGER => format!("{}", f as i64),
        Some(f) => serde_json::Number::from_f64(f)
            .map(|n| n.to_string())
            .unwrap_or_else(|| n.to_string()),
        None => n.to_string(),
    }
}

/// Lowercase hex SHA-256 of the canonical JSON of `value`.
pub fn arguments_sha256(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(value).as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{Decision, DecisionKind};
    use serde_json::json;

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let v = json!({"b": 1, "a": {"z": [1, {"y": 2, "x": 1}], "c": "é"}});
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"é","z":[1,{"x":1,"y":2}]},"b":1}"#
        );
    }

    #[test]
    fn hash_ignores_key_order_but_not_values() {
        let a = arguments_sha256(&json!({"to": "x", "amount": 5}));
        let b = arguments_sha256(&json!({"amount": 5, "to": "x"}));
        let c = arguments_sha256(&json!({"amount": 6, "to": "x"}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn decision_decodes_from_hand_typed_proto3_json() {
        let typed = r#"{"approvalId":"ap-1","kind":"DECISION_KIND_APPROVE","reviewer":"ops@example.com","reason":"looks right"}"#;
        let d: Decision = serde_json::from_str(typed).unwrap();
        assert_eq!(d.approval_id, "ap-1");
        assert_eq!(d.kind(), DecisionKind::Approve);
        assert_eq!(d.reviewer, "ops@example.com");
        assert!(d.edited_arguments.is_none());
    }

    #[test]
    fn decision_with_edited_arguments_round_trips() {
        let typed = r#"{"approvalId":"ap-1","kind":"DECISION_KIND_APPROVE","editedArguments":{"amount":5,"to":"bob"}}"#;
        let d: Decision = serde_json::from_str(typed).unwrap();
        let args = struct_to_json(d.edited_arguments.as_ref().unwrap());
        assert_eq!(args, json!({"amount": 5, "to": "bob"}));
        assert_eq!(
            arguments_sha256(&args),
            arguments_sha256(&json!({"to": "bob", "amount": 5.0}))
        );
        let back = serde_json::to_value(&d).unwrap();
        assert_eq!(back["kind"], "DECISION_KIND_APPROVE");
    }

    #[test]
    fn non_objects_are_not_structs() {
        assert!(matches!(
            json_to_struct(&json!([1])),
            Err(JsonError::NotAnObject("an array"))
        ));
    }
}
