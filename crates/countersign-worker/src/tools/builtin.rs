//! Built-in tools: one per effect class, each with a side effect that can be
//! observed outside the worker (a file, an HTTP request).

use super::{ToolError, ToolOutput};
use countersign_policy::agent::BuiltinTool;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The JSON schema of a built-in tool's arguments, as offered to models.
pub fn arguments_schema(tool: &BuiltinTool) -> Value {
    match tool {
        BuiltinTool::ReadFile { .. } => json!({
            "type": "object",
            "properties": {"path": {"type": "string", "description": "file path below the tool's root"}},
            "required": ["path"]
        }),
        BuiltinTool::AppendTodo { .. } => json!({
            "type": "object",
            "properties": {"item": {"type": "string"}},
            "required": ["item"]
        }),
        BuiltinTool::HttpPost { .. } => json!({
            "type": "object",
            "description": "posted as the JSON body"
        }),
        BuiltinTool::PaymentRequest { .. } => json!({
            "type": "object",
            "properties": {
                "to": {"type": "string"},
                "amount": {"type": "number", "exclusiveMinimum": 0},
                "currency": {"type": "string"},
                "memo": {"type": "string"}
            },
            "required": ["to", "amount", "currency"]
        }),
    }
}

/// Runs a built-in tool.
pub async fn run(
    http: &reqwest::Client,
    tool: &BuiltinTool,
    args: &Value,
    idempotency_key: &str,
) -> Result<ToolOutput, ToolError> {
    match tool {
        BuiltinTool::ReadFile { root } => read_file(root, string_arg(args, "path")?),
        BuiltinTool::AppendTodo { path } => {
            append_todo(path, string_arg(args, "item")?, idempotency_key)
        }
        BuiltinTool::HttpPost { url } => post_json(http, url, args, idempotency_key).await,
        BuiltinTool::PaymentRequest { url } => {
            let to = string_arg(args, "to")?;
            let currency = string_arg(args, "currency")?;
            let amount = args.get("amount").and_then(Value::as_f64).unwrap_or(0.0);
            if !(amount > 0.0 && amount.is_finite()) {
                return Err(ToolError::Refused(
                    "`amount` must be a number greater than zero".into(),
                ));
            }
            if to.trim().is_empty() || currency.trim().is_empty() {
                return Err(ToolError::Refused(
                    "`to` and `currency` must not be empty".into(),
                ));
            }
            post_json(http, url, args, idempotency_key).await
        }
    }
}

fn string_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, ToolError> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::Refused(format!("argument `{name}` (a string) is required")))
}

fn read_file(root: &Path, relative: &str) -> Result<ToolOutput, ToolError> {
    const MAX_BYTES: usize = 64 * 1024;
    let root = root
        .canonicalize()
        .map_err(|e| ToolError::Refused(format!("the tool's root {}: {e}", root.display())))?;
    let path: PathBuf = root.join(relative);
    let path = path
        .canonicalize()
        .map_err(|e| ToolError::Refused(format!("{relative}: {e}")))?;
    if !path.starts_with(&root) {
        return Err(ToolError::Refused(format!(
            "{relative}: outside the folder this tool may read"
        )));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ToolError::Refused(format!("{relative}: {e}")))?;
    Ok(ToolOutput::ok(super::truncate_output(
        text, MAX_BYTES, "the file",
    )))
}

fn append_todo(path: &Path, item: &str, key: &str) -> Result<ToolOutput, ToolError> {
    use std::io::Write;
    let item = item.replace(['\n', '\r'], " ");
    let marker = format!("(countersign:{key})");
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(ToolError::Transient(format!("{}: {e}", path.display()))),
    };
    if existing.lines().any(|l| l.ends_with(&marker)) {
        return Ok(ToolOutput::ok(format!("already on the todo list: {item}")));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| ToolError::Transient(format!("{}: {e}", parent.display())))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| ToolError::Transient(format!("{}: {e}", path.display())))?;
    writeln!(file, "- [ ] {item} {marker}")
        .map_err(|e| ToolError::Transient(format!("{}: {e}", path.display())))?;
    Ok(ToolOutput::ok(format!("added to the todo list: {item}")))
}

async fn post_json(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    key: &str,
) -> Result<ToolOutput, ToolError> {
    let response = http
        .post(url)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .map_err(|e| ToolError::Transient(format!("POST {url}: {e}")))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let text: String = text.chars().take(4096).collect();
    if status.is_server_error() || status.as_u16() == 429 {
        return Err(ToolError::Transient(format!(
            "POST {url}: {status}: {text}"
        )));
    }
    if !status.is_success() {
        return Err(ToolError::Refused(format!("POST {url}: {status}: {text}")));
    }
    Ok(ToolOutput::ok(format!("{status}: {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_file_refuses_paths_outside_its_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("root")).unwrap();
        std::fs::write(dir.path().join("root/a.txt"), "hello").unwrap();
        std::fs::write(dir.path().join("secret.txt"), "no").unwrap();
        let root = dir.path().join("root");
        assert_eq!(read_file(&root, "a.txt").unwrap().content, "hello");
        let err = read_file(&root, "../secret.txt").unwrap_err().to_string();
        assert!(err.contains("outside"), "{err}");
    }

    #[test]
    fn arguments_are_checked_against_the_schema() {
        let check_arguments = |tool: &BuiltinTool, args: &Value| {
            countersign_policy::schema::check_arguments(&arguments_schema(tool), args)
        };
        let pay = BuiltinTool::PaymentRequest {
            url: "http://x".into(),
        };
        assert!(check_arguments(&pay, &json!({"to": "a", "amount": 5, "currency": "EUR"})).is_ok());
        assert_eq!(
            check_arguments(&pay, &json!({"to": "a", "currency": "EUR"})).unwrap_err(),
            "argument `amount` is required"
        );
        assert_eq!(
            check_arguments(&pay, &json!({"to": "a", "amount": "5", "currency": "EUR"}))
                .unwrap_err(),
            "argument `amount` must be a number"
        );
        assert_eq!(
            check_arguments(&pay, &json!({"to": "a", "amount": 0, "currency": "EUR"})).unwrap_err(),
            "argument `amount` must be greater than 0"
        );
        assert!(check_arguments(&pay, &json!([1])).is_err());
        let post = BuiltinTool::HttpPost {
            url: "http://x".into(),
        };
        assert!(check_arguments(&post, &json!({"anything": [1, 2]})).is_ok());
    }

    #[test]
    fn todo_appends_once_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("todo.md");
        append_todo(&path, "pay acme", "k1").unwrap();
        let again = append_todo(&path, "pay acme", "k1").unwrap();
        assert!(again.content.starts_with("already"));
        append_todo(&path, "pay acme", "k2").unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}
