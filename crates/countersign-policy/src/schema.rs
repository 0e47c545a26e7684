//! Checks tool arguments against a tool's JSON schema, in workflow code,
//! before a reviewer is asked and again for arguments a reviewer edited.
//!
//! A deliberate subset of JSON Schema that tool schemas (MCP, OpenAPI, the
//! built-ins) actually use: `type` (one or a list), `required`,
//! `properties`, `additionalProperties: false`, `enum`, `const`, `items`,
//! `minimum` / `maximum` / `exclusiveMinimum` / `exclusiveMaximum`,
//! `minLength` / `maxLength`, `minItems` / `maxItems`. Other keywords are
//! ignored: the tool checks its own input too; this check exists so that a
//! reviewer never approves a call that cannot run. Pure and deterministic.

use serde_json::Value;

/// Checks `arguments` against `schema`; the error says what is wrong, in
/// words for the model or the reviewer (e.g. "argument `amount` is required").
pub fn check_arguments(schema: &Value, arguments: &Value) -> Result<(), String> {
    if !arguments.is_object() {
        return Err("arguments must be a JSON object".into());
    }
    check(schema, arguments, "")
}

fn subject(path: &str) -> String {
    if path.is_empty() {
        "arguments".into()
    } else {
        format!("argument `{path}`")
    }
}

fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn type_fits(expected: &str, value: &Value) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    }
}

fn check(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let Some(schema) = schema.as_object() else {
        return Ok(());
    };
    match schema.get("type") {
        Some(Value::String(expected)) if !type_fits(expected, value) => {
            let article = if expected.starts_with(['a', 'e', 'i', 'o', 'u']) {
                "an"
            } else {
                "a"
            };
            return Err(format!("{} must be {article} {expected}", subject(path)));
        }
        Some(Value::Array(options))
            if !options
                .iter()
                .filter_map(Value::as_str)
                .any(|t| type_fits(t, value)) =>
        {
            let names: Vec<&str> = options.iter().filter_map(Value::as_str).collect();
            return Err(format!(
                "{} must be one of the types {}",
                subject(path),
                names.join(", ")
            ));
        }
        _ => {}
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let shown: Vec<String> = allowed.iter().map(Value::to_string).collect();
        return Err(format!(
            "{} must be one of {}",
            subject(path),
            shown.join(", ")
        ));
    }
    if let Some(expected) = schema.get("const")
        && expected != value
    {
        return Err(format!("{} must be {expected}", subject(path)));
    }
    if let Some(n) = value.as_f64() {
        let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
        if let Some(min) = bound("exclusiveMinimum").filter(|min| n <= *min) {
            return Err(format!("{} must be greater than {min}", subject(path)));
        }
        if let Some(min) = bound("minimum").filter(|min| n < *min) {
            return Err(format!("{} must be at least {min}", subject(path)));
        }
        if let Some(max) = bound("exclusiveMaximum").filter(|max| n >= *max) {
            return Err(format!("{} must be less than {max}", subject(path)));
        }
        if let Some(max) = bound("maximum").filter(|max| n > *max) {
            return Err(format!("{} must be at most {max}", subject(path)));
        }
    }
    let limit = |key: &str| schema.get(key).and_then(Value::as_u64);
    if let Some(s) = value.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = limit("minLength").filter(|min| len < *min) {
            return Err(format!(
                "{} must have at least {min} characters",
                subject(path)
            ));
        }
        if let Some(max) = limit("maxLength").filter(|max| len > *max) {
            return Err(format!(
                "{} must have at most {max} characters",
                subject(path)
            ));
        }
    }
    if let Some(items) = value.as_array() {
        let len = items.len() as u64;
        if let Some(min) = limit("minItems").filter(|min| len < *min) {
            return Err(format!("{} must have at least {min} items", subject(path)));
        }
        if let Some(max) = limit("maxItems").filter(|max| len > *max) {
            return Err(format!("{} must have at most {max} items", subject(path)));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                check(item_schema, item, &format!("{}[{i}]", subject_path(path)))?;
            }
        }
    }
    if let Some(object) = value.as_object() {
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !object.contains_key(name) {
                return Err(format!("{} is required", subject(&child(path, name))));
            }
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
        for (name, field) in object {
            match properties.and_then(|p| p.get(name)) {
                Some(field_schema) => check(field_schema, field, &child(path, name))?,
                None if closed => {
                    return Err(format!(
                        "{} is not a parameter of this tool",
                        subject(&child(path, name))
                    ));
                }
                None => {}
            }
        }
    }
    Ok(())
}

fn subject_path(path: &str) -> &str {
    if path.is_empty() { "arguments" } else { path }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn payment() -> Value {
        json!({
            "type": "object",
            "properties": {
                "to": {"type": "string", "minLength": 1},
                "amount": {"type": "number", "exclusiveMinimum": 0},
                "currency": {"type": "string", "enum": ["EUR", "USD"]},
                "lines": {"type": "array", "items": {"type": "integer"}, "maxItems": 2}
            },
            "required": ["to", "amount", "currency"],
            "additionalProperties": false
        })
    }

    #[test]
    fn fitting_arguments_pass() {
        let ok = json!({"to": "acme", "amount": 5, "currency": "EUR", "lines": [1, 2]});
        assert_eq!(check_arguments(&payment(), &ok), Ok(()));
        assert_eq!(check_arguments(&json!({}), &json!({"x": [1]})), Ok(()));
    }

    #[test]
    fn each_problem_is_named() {
        let cases = [
            (json!([1]), "arguments must be a JSON object"),
            (
                json!({"to": "a", "currency": "EUR"}),
                "argument `amount` is required",
            ),
            (
                json!({"to": "a", "amount": "5", "currency": "EUR"}),
                "argument `amount` must be a number",
            ),
            (
                json!({"to": "a", "amount": 0, "currency": "EUR"}),
                "argument `amount` must be greater than 0",
            ),
            (
                json!({"to": "a", "amount": 1, "currency": "GBP"}),
                "argument `currency` must be one of \"EUR\", \"USD\"",
            ),
            (
                json!({"to": "", "amount": 1, "currency": "EUR"}),
                "argument `to` must have at least 1 characters",
            ),
            (
                json!({"to": "a", "amount": 1, "currency": "EUR", "lines": [1.5]}),
                "argument `lines[0]` must be an integer",
            ),
            (
                json!({"to": "a", "amount": 1, "currency": "EUR", "lines": [1, 2, 3]}),
                "argument `lines` must have at most 2 items",
            ),
            (
                json!({"to": "a", "amount": 1, "currency": "EUR", "memo": "x"}),
                "argument `memo` is not a parameter of this tool",
            ),
        ];
        for (arguments, expected) in cases {
            assert_eq!(
                check_arguments(&payment(), &arguments),
                Err(expected.to_string()),
                "{arguments}"
            );
        }
    }
}
