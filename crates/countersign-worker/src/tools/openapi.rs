//! HTTP APIs described by OpenAPI 3 documents: operations become tools.
//!
//! [`operations`] reads a document (JSON or YAML, OpenAPI 3.0 or 3.1) when a
//! run starts, inlines its local `$ref`s and turns each operation with an
//! `operationId` into a tool `<api>.<operationId>`. The tool's arguments are
//! the operation's path, query and header parameters, plus `body` for a JSON
//! request body. [`call`] makes the request from those arguments.

use super::{ToolError, ToolOutput};
use countersign_policy::catalog::{
    CatalogTool, HttpOperation, HttpParameter, ParameterLocation, ToolBinding, ToolKind,
    http_method_effect, qualified_name, source_tool_policy,
};
use countersign_policy::sources::OpenApiSource;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value, json};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::time::Duration;

// The most tools one OpenAPI document may offer a model (the run's limit,
// which OpenAI-compatible APIs share): a larger document needs an
// `operations` allow-list.
use countersign_policy::catalog::MAX_TOOLS_OFFERED;
/// How long one request may take when the configuration does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long fetching a document may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a response body handed to the model.
const MAX_RESULT_BYTES: usize = 16 * 1024;
/// How deep `$ref`s may nest before we stop following them.
const MAX_REF_DEPTH: usize = 64;
/// How many `$ref`s one operation's schemas may inline: shared schemas that
/// reference each other many times over would otherwise grow exponentially.
const MAX_INLINED_REFS: usize = 5_000;
/// The operation keys of a path item, in the order tools are listed.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// Header parameters OpenAPI says to ignore (they are set otherwise).
const IGNORED_HEADERS: [&str; 3] = ["accept", "content-type", "authorization"];
/// Everything but RFC 3986 unreserved characters is escaped in a path segment,
/// so an argument can never add a segment or a query.
const PATH_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The tools of `api`, parsed from its document text (JSON or YAML).
///
/// Errors name what is wrong: a document that does not parse (with the
/// parser's line and column), one that is not OpenAPI 3, a `$ref` that
/// points nowhere, no base URL, or configured operation names (`effects`,
/// `require_approval`, `operations`) that are not operationIds of the
/// document. Operations whose required request body is not JSON are left
/// out, unless the `operations` allow-list names them (then it is an error).
/// A document with more than [`MAX_TOOLS_OFFERED`] operations needs an
/// allow-list, and the list may not name more than that.
///
/// Only the offered operations are built: with an allow-list, a large
/// document (GitHub's has over a thousand operations) costs its parsing and
/// little more.
pub fn operations(api: &OpenApiSource, document: &str) -> Result<Vec<CatalogTool>, String> {
    let root = parse_document(document)?;
    let resolver = Resolver::new(&root);
    let found = find_operations(&resolver)?;

    let known: BTreeSet<&str> = found.iter().map(|o| o.id.as_str()).collect();
    check_configured_names(api, &known)?;
    check_tool_count(api, &found)?;
    let base_url = base_url(api, &root)?;
    let timeout = api.timeout.unwrap_or(DEFAULT_TIMEOUT);

    let mut tools = Vec::new();
    for operation in &found {
        if let Some(only) = &api.operations
            && !only.contains(&operation.id)
        {
            continue;
        }
        let listed = api.operations.is_some();
        if let Some(tool) = build_tool(api, &resolver, operation, &base_url, timeout, listed)
            .map_err(|e| format!("operation `{}`: {e}", operation.id))?
        {
            tools.push(tool);
        }
    }
    Ok(tools)
}

/// Fetches a document given by URL.
pub async fn fetch_document(http: &reqwest::Client, url: &str) -> Result<String, String> {
    if !is_http_url(url) {
        return Err(format!("`{url}` is not an http(s) URL"));
    }
    let response = http
        .get(url)
        .timeout(FETCH_TIMEOUT)
        .send()
        .await
        .map_err(|e| format!("cannot fetch the document: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("fetching the document answered HTTP {status}"));
    }
    response
        .text()
        .await
        .map_err(|e| format!("cannot read the document: {e}"))
}

/// Calls one operation with the tool's arguments.
///
/// 2xx answers are the result (status and body, cut at 16 KiB); 429, 5xx,
/// timeouts and connection failures are [`ToolError::Transient`]; any other
/// status, a missing path argument or an unset header variable is
/// [`ToolError::Refused`].
pub async fn call(
    http: &reqwest::Client,
    operation: &HttpOperation,
    arguments: &Value,
    idempotency_key: &str,
) -> Result<ToolOutput, ToolError> {
    let Some(arguments) = arguments.as_object() else {
        return Err(ToolError::Refused("arguments must be a JSON object".into()));
    };
    // Credentials first: a call without them must not be sent at all. They
    // are added last, so that no argument can replace them.
    let mut credentials = HeaderMap::new();
    for (header, variable) in &operation.headers_from_env {
        let value = crate::secrets::from_env(variable, &format!("for header `{header}`"))
            .map_err(ToolError::Refused)?;
        // Never quote the value: it is a secret.
        let invalid = || {
            ToolError::Refused(format!(
                "header `{header}` (from `{variable}`) is not a valid header"
            ))
        };
        let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| invalid())?;
        let mut value = HeaderValue::from_str(&value).map_err(|_| invalid())?;
        value.set_sensitive(true);
        credentials.insert(name, value);
    }

    let mut headers = HeaderMap::new();
    let mut path = operation.path.clone();
    let mut query: Vec<(String, String)> = Vec::new();
    for parameter in &operation.parameters {
        let name = &parameter.name;
        let value = arguments.get(name).filter(|v| !v.is_null());
        match parameter.location {
            ParameterLocation::Path => {
                let Some(value) = value else {
                    return Err(ToolError::Refused(format!(
                        "argument `{name}` is required (it is part of the path {})",
                        operation.path
                    )));
                };
                let encoded = utf8_percent_encode(&joined_text(value), PATH_SEGMENT).to_string();
                path = path.replace(&format!("{{{name}}}"), &encoded);
            }
            ParameterLocation::Query => match value {
                Some(Value::Array(items)) => {
                    query.extend(items.iter().map(|item| (name.clone(), scalar_text(item))));
                }
                Some(value) => query.push((name.clone(), scalar_text(value))),
                None => {}
            },
            ParameterLocation::Header => {
                if let Some(value) = value {
                    let invalid = || {
                        ToolError::Refused(format!(
                            "argument `{name}` is not a valid value for the header `{name}`"
                        ))
                    };
                    let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
                    let value =
                        HeaderValue::from_str(&joined_text(value)).map_err(|_| invalid())?;
                    headers.insert(header, value);
                }
            }
        }
    }
    let key = HeaderValue::from_str(idempotency_key).map_err(|_| {
        ToolError::Refused("the idempotency key is not a valid header value".into())
    })?;
    headers.insert("idempotency-key", key);
    for (name, value) in credentials {
        if let Some(name) = name {
            headers.insert(name, value);
        }
    }

    let url = format!("{}{}", operation.base_url, path);
    let method = reqwest::Method::from_bytes(operation.method.as_bytes())
        .map_err(|_| ToolError::Refused(format!("`{}` is not an HTTP method", operation.method)))?;
    let what = format!("{} {}", operation.method, operation.path);
    let mut request = http
        .request(method, &url)
        .headers(headers)
        .timeout(operation.timeout);
    if !query.is_empty() {
        request = request.query(&query);
    }
    if operation.has_body
        && let Some(body) = arguments.get("body")
    {
        request = request.json(body);
    }
    let response = request.send().await.map_err(|e| {
        let message = format!("{what} failed: {e}");
        if e.is_builder() {
            ToolError::Refused(message)
        } else {
            ToolError::Transient(message)
        }
    })?;

    let status = response.status();
    let (body, truncated) = read_capped(response, MAX_RESULT_BYTES)
        .await
        .map_err(|e| ToolError::Transient(format!("{what}: reading the answer failed: {e}")))?;
    if status.is_success() {
        let mut content = format!("HTTP {status}\n{body}");
        if truncated {
            content.push_str("\n… (cut at 16 KiB)");
        }
        return Ok(ToolOutput::ok(content));
    }
    let message = format!(
        "{what} answered HTTP {status}: {}",
        crate::tools::excerpt(&body)
    );
    if status.as_u16() == 429 || status.is_server_error() {
        Err(ToolError::Transient(message))
    } else {
        Err(ToolError::Refused(message))
    }
}

// ---- the document -------------------------------------------------------

/// Parses JSON or YAML into JSON values and checks that it is OpenAPI 3.
fn parse_document(text: &str) -> Result<Value, String> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let root = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| format!("the document is not valid JSON: {e}"))?
    } else {
        let mut yaml: serde_norway::Value = serde_norway::from_str(text)
            .map_err(|e| format!("the document is not valid YAML: {e}"))?;
        yaml.apply_merge()
            .map_err(|e| format!("the document is not valid YAML: {e}"))?;
        yaml_to_json(yaml)
    };
    let Some(fields) = root.as_object() else {
        return Err(
            "the document is not an OpenAPI document (its top level is not a mapping)".into(),
        );
    };
    if let Some(version) = fields.get("swagger") {
        return Err(format!(
            "the document is Swagger {} (OpenAPI 2); only OpenAPI 3.0 and 3.1 are supported: convert it first (e.g. with swagger2openapi)",
            scalar_text(version)
        ));
    }
    let version = match fields.get("openapi") {
        Some(v @ (Value::String(_) | Value::Number(_))) => scalar_text(v),
        _ => {
            return Err(
                "the document is not an OpenAPI document (it has no `openapi` version field)"
                    .into(),
            );
        }
    };
    if !version.starts_with("3.") {
        return Err(format!(
            "OpenAPI {version} is not supported; only 3.0.x and 3.1.x are"
        ));
    }
    Ok(root)
}

/// YAML values as JSON values; keys that are not strings (`200:`) become text.
fn yaml_to_json(value: serde_norway::Value) -> Value {
    use serde_norway::Value as Yaml;
    match value {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Value::Null, Value::Number)
            }
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Yaml::Mapping(mapping) => Value::Object(
            mapping
                .into_iter()
                .map(|(k, v)| (scalar_text(&yaml_to_json(k)), yaml_to_json(v)))
                .collect(),
        ),
        Yaml::Tagged(tagged) => yaml_to_json(tagged.value),
    }
}

/// Follows and inlines local `$ref`s (`#/components/...`).
struct Resolver<'a> {
    root: &'a Value,
    /// `$ref`s inlined so far for the current operation.
    inlined: Cell<usize>,
}

impl<'a> Resolver<'a> {
    fn new(root: &'a Value) -> Self {
        Self {
            root,
            inlined: Cell::new(0),
        }
    }

    /// The value a `$ref` points at.
    fn lookup(&self, reference: &str) -> Result<&'a Value, String> {
        let Some(pointer) = reference.strip_prefix('#') else {
            return Err(format!(
                "`$ref: {reference}` points outside the document; only local references (`#/...`) are supported"
            ));
        };
        let pointer = percent_decode_str(pointer).decode_utf8_lossy();
        self.root
            .pointer(&pointer)
            .ok_or_else(|| format!("`$ref: {reference}` points at nothing in the document"))
    }

    /// `value` with the `$ref`s at its top followed (a parameter, a request
    /// body, a path item).
    fn follow(&self, mut value: &'a Value) -> Result<&'a Value, String> {
        for _ in 0..MAX_REF_DEPTH {
            match value.get("$ref").and_then(Value::as_str) {
                Some(reference) => value = self.lookup(reference)?,
                None => return Ok(value),
            }
        }
        Err("`$ref`s nest too deep (a reference cycle?)".into())
    }

    /// A schema with every `$ref` inlined. A reference back into a schema
    /// being inlined (a recursive type) becomes `{}`: anything goes there.
    /// References are JSON pointers into the document, so they reach
    /// `components` and `$defs` alike (`#/components/schemas/A/$defs/B`);
    /// the result leaves out `$defs` and `definitions`, which nothing
    /// refers to any more.
    fn schema(&self, value: &Value, stack: &mut Vec<String>) -> Result<Value, String> {
        let map = match value {
            Value::Object(map) => map,
            // `items` in its old tuple form.
            Value::Array(items) => {
                return items
                    .iter()
                    .map(|v| self.schema(v, stack))
                    .collect::<Result<_, _>>()
                    .map(Value::Array);
            }
            other => return Ok(other.clone()),
        };
        let reference = map.get("$ref").and_then(Value::as_str);
        let mut out = match reference {
            Some(reference) => {
                let inlined = if stack.iter().any(|r| r == reference)
                    || stack.len() >= MAX_REF_DEPTH
                    || self.inlined.get() >= MAX_INLINED_REFS
                {
                    json!({})
                } else {
                    self.inlined.set(self.inlined.get() + 1);
                    let target = self.lookup(reference)?;
                    stack.push(reference.to_string());
                    let inlined = self.schema(target, stack);
                    stack.pop();
                    inlined?
                };
                match inlined {
                    Value::Object(out) => out,
                    // A boolean schema: keywords beside it have nothing to join.
                    other => return Ok(other),
                }
            }
            None => Map::new(),
        };
        // OpenAPI 3.1 allows keywords beside `$ref` (e.g. a description);
        // they win over the referenced schema's.
        for (key, v) in map {
            if (reference.is_some() && key == "$ref") || DEFINITIONS.contains(&key.as_str()) {
                continue;
            }
            let v = if LITERAL_KEYWORDS.contains(&key.as_str()) {
                // A `$ref` in an example is not a reference.
                v.clone()
            } else if let (true, Value::Object(schemas)) =
                (SCHEMA_MAP_KEYWORDS.contains(&key.as_str()), v)
            {
                // Names, not keywords: a property may be called `default`.
                let mut inlined = Map::new();
                for (name, schema) in schemas {
                    inlined.insert(name.clone(), self.schema(schema, stack)?);
                }
                Value::Object(inlined)
            } else {
                self.schema(v, stack)?
            };
            out.insert(key.clone(), v);
        }
        Ok(Value::Object(out))
    }

    /// An inlined schema in the dialect the argument checker reads.
    fn request_schema(&self, schema: &Value) -> Result<Value, String> {
        self.inlined.set(0);
        let mut schema = self.schema(schema, &mut Vec::new())?;
        normalize(&mut schema);
        Ok(schema)
    }
}

/// Schema keywords whose values are data, not schemas.
const LITERAL_KEYWORDS: [&str; 5] = ["enum", "const", "default", "example", "examples"];
/// Schema keywords whose values map names to schemas.
const SCHEMA_MAP_KEYWORDS: [&str; 4] = [
    "properties",
    "patternProperties",
    "dependentSchemas",
    "dependencies",
];
/// Schema keywords whose values are a schema or a list of schemas.
const SUBSCHEMA_KEYWORDS: [&str; 15] = [
    "items",
    "additionalItems",
    "prefixItems",
    "contains",
    "additionalProperties",
    "unevaluatedProperties",
    "unevaluatedItems",
    "propertyNames",
    "not",
    "if",
    "then",
    "else",
    "allOf",
    "anyOf",
    "oneOf",
];
/// Where schemas keep definitions for `$ref`s (JSON Schema 2019+ and older).
const DEFINITIONS: [&str; 2] = ["$defs", "definitions"];

/// Rewrites OpenAPI 3.0 schema keywords into their JSON Schema forms
/// (`nullable`, boolean `exclusiveMinimum`) and drops `readOnly`
/// properties, which a request does not send. Walks schema keywords only,
/// so a property named like a keyword (`nullable`) is left alone.
fn normalize(schema: &mut Value) {
    let map = match schema {
        Value::Object(map) => map,
        Value::Array(items) => return items.iter_mut().for_each(normalize),
        _ => return,
    };
    for (key, v) in map.iter_mut() {
        if SUBSCHEMA_KEYWORDS.contains(&key.as_str()) {
            normalize(v);
        } else if SCHEMA_MAP_KEYWORDS.contains(&key.as_str())
            && let Value::Object(schemas) = v
        {
            schemas.values_mut().for_each(normalize);
        }
    }
    if let Some(Value::Bool(nullable)) = map.get("nullable") {
        let nullable = *nullable;
        map.remove("nullable");
        if nullable {
            allow_null(map);
        }
    }
    for (exclusive, inclusive) in [
        ("exclusiveMinimum", "minimum"),
        ("exclusiveMaximum", "maximum"),
    ] {
        if let Some(Value::Bool(flag)) = map.get(exclusive).cloned() {
            map.remove(exclusive);
            if flag && let Some(bound) = map.remove(inclusive) {
                map.insert(exclusive.into(), bound);
            }
        }
    }
    let read_only: Vec<String> = map
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .filter(|(_, s)| s.get("readOnly") == Some(&Value::Bool(true)))
                .map(|(name, _)| name.clone())
                .collect()
        })
        .unwrap_or_default();
    if !read_only.is_empty() {
        if let Some(Value::Object(properties)) = map.get_mut("properties") {
            properties.retain(|name, _| !read_only.contains(name));
        }
        if let Some(Value::Array(required)) = map.get_mut("required") {
            required.retain(|name| {
                !name
                    .as_str()
                    .is_some_and(|n| read_only.iter().any(|r| r == n))
            });
        }
    }
}

/// OpenAPI 3.0's `nullable: true` in JSON Schema terms: `null` joins the
/// `type` (or the `oneOf` / `anyOf` choices when there is no `type`) and
/// the `enum`, as APIs that mark an enum nullable accept `null` for it.
fn allow_null(map: &mut Map<String, Value>) {
    match map.get_mut("type") {
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            map.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(types)) => {
            if !types.iter().any(|t| t == "null") {
                types.push(json!("null"));
            }
        }
        _ => {
            let choice = if map.contains_key("oneOf") {
                "oneOf"
            } else {
                "anyOf"
            };
            if let Some(Value::Array(choices)) = map.get_mut(choice) {
                choices.push(json!({"type": "null"}));
            }
        }
    }
    if let Some(Value::Array(allowed)) = map.get_mut("enum")
        && !allowed.contains(&Value::Null)
    {
        allowed.push(Value::Null);
    }
}

/// One operation of the document.
struct FoundOperation<'a> {
    id: String,
    method: &'static str,
    path: &'a str,
    path_item: &'a Map<String, Value>,
    operation: &'a Map<String, Value>,
}

/// Every operation with an `operationId`, by path (sorted) and method.
fn find_operations<'a>(resolver: &Resolver<'a>) -> Result<Vec<FoundOperation<'a>>, String> {
    let mut found = Vec::new();
    let mut seen = BTreeSet::new();
    let Some(paths) = resolver.root.get("paths").and_then(Value::as_object) else {
        return Ok(found);
    };
    for (path, item) in paths {
        let Some(path_item) = resolver
            .follow(item)
            .map_err(|e| format!("path {path}: {e}"))?
            .as_object()
        else {
            continue;
        };
        for method in METHODS {
            let Some(operation) = path_item.get(method).and_then(Value::as_object) else {
                continue;
            };
            let Some(id) = operation.get("operationId").and_then(Value::as_str) else {
                continue;
            };
            if !seen.insert(id.to_string()) {
                return Err(format!(
                    "the operationId `{id}` is used by more than one operation"
                ));
            }
            found.push(FoundOperation {
                id: id.to_string(),
                method,
                path,
                path_item,
                operation,
            });
        }
    }
    Ok(found)
}

/// Configured operation names must be operationIds of the document: a typo
/// would otherwise leave an operation with the wrong policy.
fn check_configured_names(api: &OpenApiSource, known: &BTreeSet<&str>) -> Result<(), String> {
    let mut unknown = Vec::new();
    let mut note = |names: &mut dyn Iterator<Item = &String>, field: &str| {
        for name in names {
            if !known.contains(name.as_str()) {
                unknown.push(format!("`{name}` (in `{field}`)"));
            }
        }
    };
    note(&mut api.effects.keys(), "effects");
    if let Some(r) = &api.require_approval {
        note(&mut r.named().iter(), "require_approval");
    }
    if let Some(only) = &api.operations {
        note(&mut only.iter(), "operations");
    }
    if unknown.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 30;
    let mut ids: Vec<String> = known
        .iter()
        .take(SHOWN)
        .map(|id| format!("`{id}`"))
        .collect();
    if known.len() > SHOWN {
        ids.push(format!("and {} more", known.len() - SHOWN));
    }
    let ids = if ids.is_empty() {
        "none".to_string()
    } else {
        ids.join(", ")
    };
    Err(format!(
        "the configuration names operations that are not operationIds of the document: {}; the document's operationIds are {ids}",
        unknown.join(", ")
    ))
}

/// At most [`MAX_TOOLS_OFFERED`] operations may become tools.
fn check_tool_count(api: &OpenApiSource, found: &[FoundOperation<'_>]) -> Result<(), String> {
    match &api.operations {
        None if found.len() > MAX_TOOLS_OFFERED => {
            let examples: Vec<String> = found
                .iter()
                .take(2)
                .map(|o| format!("\"{}\"", o.id))
                .collect();
            Err(format!(
                "the document has {} operations, more than the {MAX_TOOLS_OFFERED} tools an API may offer; \
                 choose the ones the agent needs with `operations = [...]` (e.g. `operations = [{}]`)",
                found.len(),
                examples.join(", ")
            ))
        }
        Some(only) => {
            let listed = only.iter().collect::<BTreeSet<_>>().len();
            if listed > MAX_TOOLS_OFFERED {
                return Err(format!(
                    "`operations` lists {listed} operations, more than the {MAX_TOOLS_OFFERED} tools an API may offer"
                ));
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// `base_url`, else the document's first server URL (variables at their
/// defaults, a relative URL resolved against the spec URL); no trailing slash.
fn base_url(api: &OpenApiSource, root: &Value) -> Result<String, String> {
    if let Some(url) = &api.base_url {
        return Ok(url.trim_end_matches('/').to_string());
    }
    let Some(server) = root
        .get("servers")
        .and_then(Value::as_array)
        .and_then(|s| s.first())
    else {
        return Err(
            "no base URL: the document lists no `servers` and the configuration sets no `base_url`"
                .into(),
        );
    };
    let Some(template) = server.get("url").and_then(Value::as_str) else {
        return Err("the document's first server has no `url`; set `base_url`".into());
    };
    let mut url = template.to_string();
    if let Some(variables) = server.get("variables").and_then(Value::as_object) {
        for (name, variable) in variables {
            if let Some(default) = variable.get("default") {
                url = url.replace(&format!("{{{name}}}"), &scalar_text(default));
            }
        }
    }
    if url.contains('{') {
        return Err(format!(
            "the document's server URL `{template}` has a variable without a default; set `base_url`"
        ));
    }
    if !is_http_url(&url) {
        if !is_http_url(&api.spec) {
            return Err(format!(
                "the document's server URL `{url}` is relative and the spec is not a URL; set `base_url`"
            ));
        }
        let spec = reqwest::Url::parse(&api.spec).map_err(|e| format!("spec URL: {e}"))?;
        url = spec
            .join(&url)
            .map_err(|e| format!("the document's server URL `{url}`: {e}"))?
            .to_string();
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The tool for one operation; `None` when it cannot be called with a JSON
/// body and was not asked for by name.
fn build_tool(
    api: &OpenApiSource,
    resolver: &Resolver<'_>,
    found: &FoundOperation<'_>,
    base_url: &str,
    timeout: Duration,
    listed: bool,
) -> Result<Option<CatalogTool>, String> {
    // Operation-level parameters override path-level ones of the same name and location.
    let mut declared: Vec<(String, String, &Map<String, Value>)> = Vec::new();
    for level in [found.path_item, found.operation] {
        let Some(list) = level.get("parameters").and_then(Value::as_array) else {
            continue;
        };
        for parameter in list {
            let parameter = resolver
                .follow(parameter)?
                .as_object()
                .ok_or("a parameter is not a mapping")?;
            let name = parameter
                .get("name")
                .and_then(Value::as_str)
                .ok_or("a parameter has no `name`")?;
            let location = parameter
                .get("in")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("parameter `{name}` has no `in`"))?;
            let entry = (name.to_string(), location.to_string(), parameter);
            match declared
                .iter_mut()
                .find(|(n, l, _)| n == name && l == location)
            {
                Some(existing) => *existing = entry,
                None => declared.push(entry),
            }
        }
    }

    let mut properties = Map::new();
    let mut required = Vec::new();
    let mut parameters = Vec::new();
    for (name, location, parameter) in declared {
        let location = match location.as_str() {
            "path" => ParameterLocation::Path,
            "query" => ParameterLocation::Query,
            "header" if IGNORED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) => continue,
            // The configuration supplies it from the environment: not the model's to set.
            "header" if api.headers.keys().any(|h| h.eq_ignore_ascii_case(&name)) => continue,
            "header" => ParameterLocation::Header,
            // Cookies are not sent.
            _ => continue,
        };
        if properties.contains_key(&name) {
            return Err(format!(
                "two parameters are named `{name}`; tool arguments need distinct names"
            ));
        }
        let schema = parameter.get("schema").or_else(|| {
            // The `content` form: one media type with its schema.
            parameter
                .get("content")
                .and_then(Value::as_object)
                .and_then(|c| c.values().next())
                .and_then(|m| m.get("schema"))
        });
        let mut schema = match schema {
            Some(schema) => resolver.request_schema(schema)?,
            None => json!({}),
        };
        if let (Some(description), Value::Object(fields)) =
            (parameter.get("description"), &mut schema)
        {
            fields
                .entry("description")
                .or_insert_with(|| description.clone());
        }
        if location == ParameterLocation::Path
            || parameter.get("required") == Some(&Value::Bool(true))
        {
            required.push(Value::String(name.clone()));
        }
        properties.insert(name.clone(), schema);
        parameters.push(HttpParameter { name, location });
    }
    // A `{name}` in the path that no parameter declares is still an argument.
    for name in template_names(found.path) {
        if !parameters
            .iter()
            .any(|p| p.location == ParameterLocation::Path && p.name == name)
        {
            if properties.contains_key(&name) {
                return Err(format!(
                    "the path parameter `{name}` is not declared, and another parameter has its name"
                ));
            }
            properties.insert(name.clone(), json!({"type": "string"}));
            required.push(Value::String(name.clone()));
            parameters.push(HttpParameter {
                name,
                location: ParameterLocation::Path,
            });
        }
    }

    let mut has_body = false;
    if let Some(body) = found.operation.get("requestBody") {
        let body = resolver
            .follow(body)?
            .as_object()
            .ok_or("the request body is not a mapping")?;
        let body_required = body.get("required") == Some(&Value::Bool(true));
        let media = body
            .get("content")
            .and_then(Value::as_object)
            .and_then(|content| {
                content.get("application/json").or_else(|| {
                    content
                        .iter()
                        .find(|(media, _)| is_json_media_type(media))
                        .map(|(_, m)| m)
                })
            });
        match media {
            Some(media) => {
                if properties.contains_key("body") {
                    return Err(
                        "a parameter is named `body`, which is the request body's argument".into(),
                    );
                }
                let mut schema = match media.get("schema") {
                    Some(schema) => resolver.request_schema(schema)?,
                    None => json!({}),
                };
                if let (Some(description), Value::Object(fields)) =
                    (body.get("description"), &mut schema)
                {
                    fields
                        .entry("description")
                        .or_insert_with(|| description.clone());
                }
                properties.insert("body".into(), schema);
                if body_required {
                    required.push(Value::String("body".into()));
                }
                has_body = true;
            }
            None if body_required && listed => {
                return Err("its request body is not JSON, which is not supported".into());
            }
            None if body_required => return Ok(None),
            None => {}
        }
    }

    let mut input_schema = json!({
        "type": "object",
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        input_schema["required"] = Value::Array(required);
    }

    let method = found.method.to_ascii_uppercase();
    let (effect, requires_approval) = source_tool_policy(
        api.require_approval.as_ref(),
        &api.effects,
        &found.id,
        http_method_effect(&method),
    );
    Ok(Some(CatalogTool {
        name: qualified_name(&api.name, &found.id),
        description: description(found.operation, &method, found.path),
        input_schema,
        kind: ToolKind::Openapi,
        provider: api.name.clone(),
        effect,
        requires_approval,
        approval_expiry: None,
        binding: ToolBinding::Http(HttpOperation {
            base_url: base_url.to_string(),
            method,
            path: found.path.to_string(),
            parameters,
            has_body,
            headers_from_env: api.headers.clone(),
            timeout,
        }),
    }))
}

/// The summary and the description, or the method and path when there are none.
fn description(operation: &Map<String, Value>, method: &str, path: &str) -> String {
    let text = |key: &str| {
        operation
            .get(key)
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    };
    match (text("summary"), text("description")) {
        (Some(summary), Some(description)) if summary != description => {
            format!("{summary}\n\n{description}")
        }
        (Some(text), _) | (None, Some(text)) => text.to_string(),
        (None, None) => format!("{method} {path}"),
    }
}

/// The `{name}`s of a path template, in order.
fn template_names(path: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        names.push(rest[start + 1..start + len].to_string());
        rest = &rest[start + len + 1..];
    }
    names
}

/// `application/json`, `application/problem+json`, with parameters or not.
fn is_json_media_type(media: &str) -> bool {
    let essence = media.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
        || (essence.to_ascii_lowercase().starts_with("application/") && essence.ends_with("+json"))
}

/// Whether `text` is an http(s) URL (else a document's `spec` is a file).
pub fn is_http_url(text: &str) -> bool {
    let lower = text.trim_start().to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

// ---- the request --------------------------------------------------------

/// A scalar as text (strings unquoted); objects and arrays as JSON.
fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Arrays as comma-separated items (OpenAPI's `simple` style).
fn joined_text(value: &Value) -> String {
    match value {
        Value::Array(items) => items.iter().map(scalar_text).collect::<Vec<_>>().join(","),
        other => scalar_text(other),
    }
}

/// The body as text, at most `cap` bytes of it; `true` when it was cut.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<(String, bool), reqwest::Error> {
    let mut bytes = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await? {
        let room = cap - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            truncated = true;
            break;
        }
        bytes.extend_from_slice(&chunk);
    }
    if truncated {
        // Do not end on half a character.
        while !bytes.is_empty()
            && std::str::from_utf8(&bytes).is_err_and(|e| e.error_len().is_none())
        {
            bytes.pop();
        }
    }
    Ok((String::from_utf8_lossy(&bytes).into_owned(), truncated))
}
