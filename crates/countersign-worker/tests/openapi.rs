//! OpenAPI tools against a real HTTP server: a small tickets API served by
//! axum on a free local port, which records every request it receives.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use countersign_policy::EffectClass;
use countersign_policy::agent::{AgentFile, ModelConfig};
use countersign_policy::catalog::MAX_TOOLS_OFFERED;
use countersign_policy::catalog::{
    CatalogTool, HttpOperation, HttpParameter, ParameterLocation, ToolBinding, ToolKind,
};
use countersign_policy::evaluate;
use countersign_policy::schema::check_arguments;
use countersign_policy::sources::OpenApiSource;
use countersign_worker::model::scripted_turn;
use countersign_worker::tools::ToolError;
use countersign_worker::tools::openapi::{call, fetch_document, operations};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

const TICKETS_YAML: &str = r##"
openapi: 3.0.3
info:
  title: Tickets
  version: "1.0"
servers:
  - url: "{scheme}://tickets.example.com/v1/"
    variables:
      scheme:
        default: https
paths:
  /tickets:
    get:
      operationId: listTickets
      summary: List tickets
      parameters:
        - name: status
          in: query
          description: Only tickets with this status
          schema:
            $ref: "#/components/schemas/Status"
        - name: tag
          in: query
          schema: { type: array, items: { type: string } }
      responses:
        200: { description: The tickets }
    post:
      operationId: createTicket
      summary: Open a ticket
      requestBody:
        $ref: "#/components/requestBodies/NewTicket"
      responses:
        "201": { description: Created }
  /tickets/{id}:
    parameters:
      - $ref: "#/components/parameters/TicketId"
    get:
      operationId: getTicket
      summary: One ticket
      description: The ticket with its comments.
      parameters:
        - name: X-Trace
          in: header
          schema: { type: string }
      responses:
        "200": { description: The ticket }
    delete:
      operationId: deleteTicket
      parameters:
        - name: id
          in: path
          required: true
          description: The ticket to delete
          schema: { type: string, minLength: 1 }
      responses:
        "204": { description: Deleted }
  /health:
    get:
      summary: Has no operationId, so it is no tool
      responses:
        "200": { description: OK }
components:
  parameters:
    TicketId:
      name: id
      in: path
      required: true
      description: The ticket's id
      schema: { type: string }
  requestBodies:
    NewTicket:
      required: true
      content:
        application/json:
          schema:
            $ref: "#/components/schemas/NewTicket"
  schemas:
    Status:
      type: string
      enum: [open, closed]
    NewTicket:
      type: object
      required: [id, title]
      properties:
        id: { type: string, readOnly: true }
        title: { type: string, minLength: 1 }
        status: { $ref: "#/components/schemas/Status" }
        assignee: { type: string, nullable: true }
        parent: { $ref: "#/components/schemas/NewTicket" }
"##;

/// The same API as [`TICKETS_YAML`], written as JSON by hand.
const TICKETS_JSON: &str = r##"{
  "openapi": "3.0.3",
  "info": {"title": "Tickets", "version": "1.0"},
  "servers": [{"url": "{scheme}://tickets.example.com/v1/",
               "variables": {"scheme": {"default": "https"}}}],
  "paths": {
    "/tickets": {
      "get": {
        "operationId": "listTickets",
        "summary": "List tickets",
        "parameters": [
          {"name": "status", "in": "query", "description": "Only tickets with this status",
           "schema": {"$ref": "#/components/schemas/Status"}},
          {"name": "tag", "in": "query", "schema": {"type": "array", "items": {"type": "string"}}}
        ],
        "responses": {"200": {"description": "The tickets"}}
      },
      "post": {
        "operationId": "createTicket",
        "summary": "Open a ticket",
        "requestBody": {"$ref": "#/components/requestBodies/NewTicket"},
        "responses": {"201": {"description": "Created"}}
      }
    },
    "/tickets/{id}": {
      "parameters": [{"$ref": "#/components/parameters/TicketId"}],
      "get": {
        "operationId": "getTicket",
        "summary": "One ticket",
        "description": "The ticket with its comments.",
        "parameters": [{"name": "X-Trace", "in": "header", "schema": {"type": "string"}}],
        "responses": {"200": {"description": "The ticket"}}
      },
      "delete": {
        "operationId": "deleteTicket",
        "parameters": [{"name": "id", "in": "path", "required": true,
                        "description": "The ticket to delete",
                        "schema": {"type": "string", "minLength": 1}}],
        "responses": {"204": {"description": "Deleted"}}
      }
    },
    "/health": {
      "get": {"summary": "Has no operationId, so it is no tool",
              "responses": {"200": {"description": "OK"}}}
    }
  },
  "components": {
    "parameters": {
      "TicketId": {"name": "id", "in": "path", "required": true,
                   "description": "The ticket's id", "schema": {"type": "string"}}
    },
    "requestBodies": {
      "NewTicket": {"required": true, "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/NewTicket"}}}}
    },
    "schemas": {
      "Status": {"type": "string", "enum": ["open", "closed"]},
      "NewTicket": {
        "type": "object",
        "required": ["id", "title"],
        "properties": {
          "id": {"type": "string", "readOnly": true},
          "title": {"type": "string", "minLength": 1},
          "status": {"$ref": "#/components/schemas/Status"},
          "assignee": {"type": "string", "nullable": true},
          "parent": {"$ref": "#/components/schemas/NewTicket"}
        }
      }
    }
  }
}"##;

/// The variable holding the test server's credential.
const TOKEN_VAR: &str = "COUNTERSIGN_OPENAPI_TEST_TOKEN";
const TOKEN: &str = "Bearer secret-token";

fn set_token() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        // SAFETY: set once, before any request reads it; nothing in these
        // tests reads the environment from C code.
        unsafe { std::env::set_var(TOKEN_VAR, TOKEN) };
    });
}

fn source(config: Value) -> OpenApiSource {
    let mut fields = json!({"name": "tickets", "spec": "tickets.yaml"});
    fields
        .as_object_mut()
        .unwrap()
        .extend(config.as_object().unwrap().clone());
    serde_json::from_value(fields).expect("a valid OpenAPI source")
}

fn tool<'a>(tools: &'a [CatalogTool], name: &str) -> &'a CatalogTool {
    tools
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no tool {name}"))
}

fn http_operation(tool: &CatalogTool) -> &HttpOperation {
    match &tool.binding {
        ToolBinding::Http(operation) => operation,
        other => panic!("not an HTTP tool: {other:?}"),
    }
}

fn names(tools: &[CatalogTool]) -> Vec<&str> {
    tools.iter().map(|t| t.name.as_str()).collect()
}

#[test]
fn yaml_and_json_documents_give_the_same_tools() {
    let api = source(json!({"headers": {"Authorization": TOKEN_VAR}}));
    let from_yaml = operations(&api, TICKETS_YAML).expect("the YAML document");
    let from_json = operations(&api, TICKETS_JSON).expect("the JSON document");
    assert_eq!(from_yaml, from_json);

    let tools = from_yaml;
    assert_eq!(
        names(&tools),
        [
            "tickets.listTickets",
            "tickets.createTicket",
            "tickets.getTicket",
            "tickets.deleteTicket"
        ]
    );
    for t in &tools {
        assert_eq!(t.kind, ToolKind::Openapi);
        assert_eq!(t.provider, "tickets");
        assert_eq!(t.requires_approval, None);
        let operation = http_operation(t);
        assert_eq!(operation.base_url, "https://tickets.example.com/v1");
        assert_eq!(operation.timeout, Duration::from_secs(30));
        assert_eq!(
            operation
                .headers_from_env
                .get("Authorization")
                .map(String::as_str),
            Some(TOKEN_VAR)
        );
    }
    let effect = |name: &str| tool(&tools, name).effect;
    assert_eq!(effect("tickets.listTickets"), EffectClass::Read);
    assert_eq!(effect("tickets.getTicket"), EffectClass::Read);
    assert_eq!(effect("tickets.createTicket"), EffectClass::WriteExternal);
    assert_eq!(effect("tickets.deleteTicket"), EffectClass::WriteExternal);

    let get = tool(&tools, "tickets.getTicket");
    assert_eq!(
        get.description,
        "One ticket\n\nThe ticket with its comments."
    );
    assert_eq!(
        get.input_schema,
        json!({
            "type": "object",
            "properties": {
                "id": {"type": "string", "description": "The ticket's id"},
                "X-Trace": {"type": "string"}
            },
            "required": ["id"],
            "additionalProperties": false
        })
    );
    assert_eq!(
        http_operation(get),
        &HttpOperation {
            base_url: "https://tickets.example.com/v1".into(),
            method: "GET".into(),
            path: "/tickets/{id}".into(),
            parameters: vec![
                HttpParameter {
                    name: "id".into(),
                    location: ParameterLocation::Path
                },
                HttpParameter {
                    name: "X-Trace".into(),
                    location: ParameterLocation::Header
                },
            ],
            has_body: false,
            headers_from_env: [("Authorization".to_string(), TOKEN_VAR.to_string())].into(),
            timeout: Duration::from_secs(30),
        }
    );

    // The operation's own `id` replaces the path-level one.
    let delete = tool(&tools, "tickets.deleteTicket");
    assert_eq!(delete.description, "DELETE /tickets/{id}");
    assert_eq!(
        delete.input_schema["properties"]["id"],
        json!({"type": "string", "minLength": 1, "description": "The ticket to delete"})
    );
    assert_eq!(http_operation(delete).parameters.len(), 1);

    let list = tool(&tools, "tickets.listTickets");
    assert_eq!(
        list.input_schema,
        json!({
            "type": "object",
            "properties": {
                "status": {"type": "string", "enum": ["open", "closed"],
                           "description": "Only tickets with this status"},
                "tag": {"type": "array", "items": {"type": "string"}}
            },
            "additionalProperties": false
        })
    );
}

#[test]
fn refs_are_inlined_into_schemas_the_argument_checker_reads() {
    let tools = operations(&source(json!({})), TICKETS_YAML).unwrap();
    let create = tool(&tools, "tickets.createTicket");
    assert!(http_operation(create).has_body);
    assert_eq!(http_operation(create).method, "POST");
    assert_eq!(
        create.input_schema,
        json!({
            "type": "object",
            "properties": {
                "body": {
                    "type": "object",
                    // `id` is readOnly: a request does not send it.
                    "required": ["title"],
                    "properties": {
                        "title": {"type": "string", "minLength": 1},
                        "status": {"type": "string", "enum": ["open", "closed"]},
                        "assignee": {"type": ["string", "null"]},
                        // A recursive reference accepts anything.
                        "parent": {}
                    }
                }
            },
            "required": ["body"],
            "additionalProperties": false
        })
    );

    let schema = &create.input_schema;
    let fine = json!({"body": {"title": "Printer on fire", "status": "open", "assignee": null}});
    assert_eq!(check_arguments(schema, &fine), Ok(()));
    let cases = [
        (json!({}), "argument `body` is required"),
        (json!({"body": {}}), "argument `body.title` is required"),
        (
            json!({"body": {"title": "x", "status": "lost"}}),
            "argument `body.status` must be one of \"open\", \"closed\"",
        ),
        (
            json!({"body": {"title": "x"}, "force": true}),
            "argument `force` is not a parameter of this tool",
        ),
    ];
    for (arguments, expected) in cases {
        assert_eq!(check_arguments(schema, &arguments), Err(expected.into()));
    }
    let get = tool(&tools, "tickets.getTicket");
    assert_eq!(
        check_arguments(&get.input_schema, &json!({})),
        Err("argument `id` is required".into())
    );
}

#[test]
fn effects_and_require_approval_override_the_defaults() {
    let api = source(json!({
        "effects": {"deleteTicket": "write_own", "listTickets": "money"},
        "require_approval": ["getTicket"]
    }));
    let tools = operations(&api, TICKETS_YAML).unwrap();
    let policy = |name: &str| {
        let t = tool(&tools, name);
        (t.effect, t.requires_approval)
    };
    assert_eq!(
        policy("tickets.deleteTicket"),
        (EffectClass::WriteOwn, None)
    );
    assert_eq!(policy("tickets.listTickets"), (EffectClass::Money, None));
    assert_eq!(policy("tickets.getTicket"), (EffectClass::Read, Some(true)));
    assert_eq!(
        policy("tickets.createTicket"),
        (EffectClass::WriteExternal, None)
    );

    let never = operations(&source(json!({"require_approval": "never"})), TICKETS_YAML).unwrap();
    assert!(never.iter().all(|t| t.requires_approval == Some(false)));
    let always = operations(&source(json!({"require_approval": "always"})), TICKETS_YAML).unwrap();
    assert!(always.iter().all(|t| t.requires_approval == Some(true)));
}

#[test]
fn the_allow_list_filters_operations() {
    let api = source(json!({"operations": ["getTicket", "listTickets"]}));
    let tools = operations(&api, TICKETS_YAML).unwrap();
    assert_eq!(names(&tools), ["tickets.listTickets", "tickets.getTicket"]);
}

#[test]
fn configured_names_that_are_not_operations_are_errors() {
    let cases = [
        (
            json!({"effects": {"deleteTickets": "write_own"}}),
            "`deleteTickets` (in `effects`)",
        ),
        (
            json!({"require_approval": ["removeTicket"]}),
            "`removeTicket` (in `require_approval`)",
        ),
        (
            json!({"operations": ["getTicket", "gettTicket"]}),
            "`gettTicket` (in `operations`)",
        ),
    ];
    for (config, expected) in cases {
        let error = operations(&source(config), TICKETS_YAML).unwrap_err();
        assert!(error.contains(expected), "{error}");
        assert!(
            error.contains("`getTicket`"),
            "lists the real ones: {error}"
        );
    }
}

#[test]
fn swagger_2_and_garbage_are_clear_errors() {
    let swagger = "swagger: \"2.0\"\ninfo: {title: Old, version: \"1\"}\npaths: {}\n";
    let error = operations(&source(json!({})), swagger).unwrap_err();
    assert!(
        error.contains("Swagger 2.0") && error.contains("OpenAPI 3"),
        "{error}"
    );

    let error = operations(&source(json!({})), "openapi: \"4.0.0\"\npaths: {}\n").unwrap_err();
    assert!(error.contains("OpenAPI 4.0.0 is not supported"), "{error}");

    let error = operations(&source(json!({})), "openapi: 3.1.0\npaths: [unclosed\n").unwrap_err();
    assert!(
        error.contains("not valid YAML") && error.contains("line 2"),
        "{error}"
    );

    let error = operations(
        &source(json!({})),
        "{\n  \"openapi\": \"3.1.0\",\n  oops\n}",
    )
    .unwrap_err();
    assert!(
        error.contains("not valid JSON") && error.contains("line 3"),
        "{error}"
    );

    let error = operations(&source(json!({})), "just some words").unwrap_err();
    assert!(error.contains("not an OpenAPI document"), "{error}");

    let error = operations(&source(json!({})), "title: no version\npaths: {}\n").unwrap_err();
    assert!(error.contains("no `openapi` version field"), "{error}");
}

#[test]
fn broken_refs_and_missing_base_urls_are_errors() {
    let broken = TICKETS_YAML.replace(
        "$ref: \"#/components/schemas/Status\"\n        - name: tag",
        "$ref: \"#/components/schemas/Statuz\"\n        - name: tag",
    );
    assert_ne!(broken, TICKETS_YAML);
    let error = operations(&source(json!({})), &broken).unwrap_err();
    assert!(
        error.contains("listTickets") && error.contains("#/components/schemas/Statuz"),
        "{error}"
    );

    let serverless = "openapi: 3.1.0\npaths:\n  /a:\n    get:\n      operationId: a\n";
    let error = operations(&source(json!({})), serverless).unwrap_err();
    assert!(error.contains("base_url"), "{error}");
    let tools = operations(
        &source(json!({"base_url": "http://localhost:9/api/"})),
        serverless,
    )
    .unwrap();
    assert_eq!(http_operation(&tools[0]).base_url, "http://localhost:9/api");
    // A relative server URL needs a spec URL to be resolved against.
    let relative = "openapi: 3.1.0\nservers: [{url: /api}]\npaths: {}\n";
    let error = operations(&source(json!({})), relative).unwrap_err();
    assert!(error.contains("relative"), "{error}");
}

#[test]
fn unusual_parameters_and_bodies() {
    let document = r#"
openapi: 3.1.0
servers: [{url: "https://files.example.com"}]
paths:
  /folders/{folder}/files:
    post:
      operationId: uploadFile
      requestBody:
        required: true
        content:
          multipart/form-data:
            schema: {type: object}
    put:
      operationId: putFile
      summary: Replace a file
      parameters:
        - {name: X-Api-Key, in: header, required: true, schema: {type: string}}
        - {name: session, in: cookie, schema: {type: string}}
        - name: filter
          in: query
          content:
            application/json:
              schema: {type: object, properties: {size: {type: integer}}}
      requestBody:
        content:
          application/merge-patch+json:
            schema: {type: object}
"#;
    let api = source(json!({"headers": {"x-api-key": "FILES_KEY"}}));
    let tools = operations(&api, document).unwrap();
    // uploadFile takes only multipart bodies: not offered.
    assert_eq!(names(&tools), ["tickets.putFile"]);
    let put = &tools[0];
    // The key comes from the environment, cookies are not sent, the
    // undeclared `{folder}` is still a required argument.
    assert_eq!(
        put.input_schema,
        json!({
            "type": "object",
            "properties": {
                "folder": {"type": "string"},
                "filter": {"type": "object", "properties": {"size": {"type": "integer"}}},
                "body": {"type": "object"}
            },
            "required": ["folder"],
            "additionalProperties": false
        })
    );
    assert!(http_operation(put).has_body);

    // Asked for by name, an operation that cannot be called is an error.
    let api = source(json!({"operations": ["uploadFile"]}));
    let error = operations(&api, document).unwrap_err();
    assert!(
        error.contains("uploadFile") && error.contains("not JSON"),
        "{error}"
    );
}

// ---- documents shaped like GitHub's ----------------------------------------

/// A small OpenAPI 3.1 document in the shape of GitHub's: operationIds with
/// a `/`, parameters and bodies through `components`, references that nest
/// (a body to a schema to another schema), `$defs` reached through
/// `components`, a recursive type, keywords beside `$ref` and an operation
/// that no allow-list here asks for.
const GITHUB_LIKE: &str = r##"{
  "openapi": "3.1.0",
  "info": {"title": "Issues", "version": "1.0"},
  "servers": [{"url": "https://api.github.example"}],
  "paths": {
    "/repos/{owner}/{repo}": {
      "parameters": [
        {"$ref": "#/components/parameters/owner"},
        {"$ref": "#/components/parameters/repo"}
      ],
      "get": {
        "operationId": "repos/get",
        "summary": "Get a repository",
        "responses": {"200": {"$ref": "#/components/responses/repository"}}
      }
    },
    "/repos/{owner}/{repo}/issues": {
      "get": {
        "operationId": "issues/list-for-repo",
        "parameters": [
          {"$ref": "#/components/parameters/owner"},
          {"$ref": "#/components/parameters/repo"}
        ],
        "responses": {"200": {"description": "Issues"}}
      },
      "post": {
        "operationId": "issues/create",
        "summary": "Create an issue",
        "parameters": [
          {"$ref": "#/components/parameters/owner"},
          {"$ref": "#/components/parameters/repo"}
        ],
        "requestBody": {"$ref": "#/components/requestBodies/issue-create"},
        "responses": {"201": {"description": "Created"}}
      }
    },
    "/repos/{owner}/{repo}/issues/{issue_number}": {
      "get": {
        "operationId": "issues/get",
        "parameters": [
          {"$ref": "#/components/parameters/owner"},
          {"$ref": "#/components/parameters/repo"},
          {"$ref": "#/components/parameters/issue-number"}
        ],
        "responses": {"200": {"description": "The issue"}}
      }
    }
  },
  "components": {
    "parameters": {
      "owner": {"name": "owner", "in": "path", "required": true,
                "description": "The account owner",
                "schema": {"$ref": "#/components/schemas/login"}},
      "repo": {"name": "repo", "in": "path", "required": true, "schema": {"type": "string"}},
      "issue-number": {"name": "issue_number", "in": "path", "required": true,
                       "schema": {"type": "integer"}}
    },
    "requestBodies": {
      "issue-create": {
        "required": true,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/issue-create"}}}
      }
    },
    "responses": {
      "repository": {"description": "A repository",
                     "content": {"application/json": {"schema": {"$ref": "#/components/schemas/nowhere"}}}}
    },
    "schemas": {
      "login": {"type": "string", "minLength": 1},
      "issue-create": {
        "type": "object",
        "required": ["title"],
        "properties": {
          "title": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
          "assignee": {"$ref": "#/components/schemas/login",
                       "description": "Who works on it"},
          "labels": {"type": "array",
                     "items": {"$ref": "#/components/schemas/issue-create/$defs/label"}},
          "default": {"$ref": "#/components/schemas/issue-create/$defs/color"}
        },
        "$defs": {
          "label": {
            "type": "object",
            "required": ["name"],
            "properties": {
              "name": {"type": "string"},
              "color": {"$ref": "#/components/schemas/issue-create/$defs/color"},
              "parent": {"$ref": "#/components/schemas/issue-create/$defs/label"}
            }
          },
          "color": {"type": ["string", "null"], "pattern": "^[0-9a-f]{6}$",
                    "examples": [{"$ref": "not a reference, an example"}]}
        }
      }
    }
  }
}"##;

/// The allow-list of the GitHub example agent.
const GITHUB_OPERATIONS: [&str; 3] = ["issues/create", "issues/get", "repos/get"];

fn github_source(config: Value) -> OpenApiSource {
    let mut fields = json!({"name": "github", "spec": "github.json"});
    fields
        .as_object_mut()
        .unwrap()
        .extend(config.as_object().unwrap().clone());
    serde_json::from_value(fields).expect("a valid OpenAPI source")
}

/// Every key of `value`, at any depth, except inside `examples` (data).
fn keys(value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| {
                let inner = if k == "examples" { vec![] } else { keys(v) };
                std::iter::once(k.clone()).chain(inner)
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(keys).collect(),
        _ => vec![],
    }
}

#[test]
fn selected_operations_with_slashes_have_every_ref_resolved() {
    let api = github_source(json!({"operations": GITHUB_OPERATIONS}));
    let tools = operations(&api, GITHUB_LIKE).expect("the document");
    // Only the allow-list, in the document's order (paths sorted, then methods).
    assert_eq!(
        names(&tools),
        [
            "github.repos/get",
            "github.issues/create",
            "github.issues/get"
        ]
    );
    for t in &tools {
        let keys = keys(&t.input_schema);
        assert!(
            !keys.iter().any(|k| k == "$ref"),
            "{}: {}",
            t.name,
            t.input_schema
        );
        assert!(
            !keys.iter().any(|k| k == "$defs"),
            "{}: {}",
            t.name,
            t.input_schema
        );
    }

    let create = tool(&tools, "github.issues/create");
    assert_eq!(create.effect, EffectClass::WriteExternal);
    let operation = http_operation(create);
    assert_eq!(
        (operation.method.as_str(), operation.path.as_str()),
        ("POST", "/repos/{owner}/{repo}/issues")
    );
    assert_eq!(operation.base_url, "https://api.github.example");
    assert!(operation.has_body);
    let color = json!({"type": ["string", "null"], "pattern": "^[0-9a-f]{6}$",
                       "examples": [{"$ref": "not a reference, an example"}]});
    assert_eq!(
        create.input_schema,
        json!({
            "type": "object",
            "properties": {
                "owner": {"type": "string", "minLength": 1, "description": "The account owner"},
                "repo": {"type": "string"},
                "body": {
                    "type": "object",
                    "required": ["title"],
                    "properties": {
                        "title": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
                        // A keyword beside `$ref` joins the referenced schema.
                        "assignee": {"type": "string", "minLength": 1,
                                     "description": "Who works on it"},
                        "labels": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["name"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "color": color,
                                    // Recursive: anything goes.
                                    "parent": {}
                                }
                            }
                        },
                        // A property named like a keyword is still a schema.
                        "default": color
                    }
                }
            },
            "required": ["owner", "repo", "body"],
            "additionalProperties": false
        })
    );
    let schema = &create.input_schema;
    let fine = json!({"owner": "octo", "repo": "hello",
                      "body": {"title": "Printer on fire", "labels": [{"name": "bug", "color": "ff0000"}]}});
    assert_eq!(check_arguments(schema, &fine), Ok(()));
    assert_eq!(
        check_arguments(
            schema,
            &json!({"owner": "", "repo": "hello", "body": {"title": "x"}})
        ),
        Err("argument `owner` must have at least 1 characters".into())
    );
    assert_eq!(
        check_arguments(
            schema,
            &json!({"owner": "octo", "repo": "hello", "body": {"labels": []}})
        ),
        Err("argument `body.title` is required".into())
    );
    assert_eq!(
        check_arguments(
            schema,
            &json!({"owner": "octo", "repo": "hello", "body": {"title": "x", "labels": [{"color": "red"}]}})
        ),
        Err("argument `body.labels[0].name` is required".into())
    );

    let get = tool(&tools, "github.issues/get");
    assert_eq!(get.effect, EffectClass::Read);
    assert_eq!(
        get.input_schema["required"],
        json!(["owner", "repo", "issue_number"])
    );
    assert_eq!(
        get.input_schema["properties"]["issue_number"],
        json!({"type": "integer"})
    );
    // Responses are not resolved: `repos/get`'s points nowhere, and that is fine.
    assert_eq!(
        http_operation(tool(&tools, "github.repos/get")).method,
        "GET"
    );
}

#[test]
fn operation_names_with_slashes_configure_policy() {
    let api = github_source(json!({
        "operations": GITHUB_OPERATIONS,
        "require_approval": ["issues/get"],
        "effects": {"repos/get": "write_own"}
    }));
    let tools = operations(&api, GITHUB_LIKE).unwrap();
    assert_eq!(
        tool(&tools, "github.issues/get").requires_approval,
        Some(true)
    );
    assert_eq!(
        tool(&tools, "github.repos/get").effect,
        EffectClass::WriteOwn
    );

    let typo = github_source(json!({"operations": ["issues/create", "issue/get"]}));
    let error = operations(&typo, GITHUB_LIKE).unwrap_err();
    assert!(error.contains("`issue/get` (in `operations`)"), "{error}");
    assert!(
        error.contains("`issues/get`"),
        "lists the real ones: {error}"
    );
}

#[test]
fn the_github_example_agent_calls_a_tool_named_with_a_slash() {
    let text = include_str!("../../../bench/github/github-issues.toml");
    let file = Path::new("bench/github/github-issues.toml");
    let agent = AgentFile::from_toml(text, file, Path::new("bench/github"), &|_| None)
        .expect("the example agent file is valid");
    let [api] = &agent.openapi[..] else {
        panic!("one API: {:?}", agent.openapi)
    };
    assert_eq!(
        api.operations.as_deref(),
        Some(&GITHUB_OPERATIONS.map(String::from)[..])
    );
    assert_eq!(api.base_url.as_deref(), Some("http://127.0.0.1:4010"));
    assert!(
        Path::new(&api.spec).ends_with("bench/github/api.github.com.json"),
        "{}",
        api.spec
    );

    // The scripted model names the tool as written; nothing rewrites the `/`.
    let Some(ModelConfig::Scripted { steps }) = &agent.model else {
        panic!("a scripted model")
    };
    let first = scripted_turn(steps, &[]);
    let [call] = &first.tool_calls[..] else {
        panic!("one call: {first:?}")
    };
    assert_eq!(call.name, "github.issues/create");

    // The tool of that name exists, takes those arguments and needs approval.
    let tools = operations(api, GITHUB_LIKE).unwrap();
    let create = tool(&tools, &call.name);
    assert_eq!(
        check_arguments(&create.input_schema, &call.arguments),
        Ok(())
    );
    let verdict = evaluate(Some(&create.policy()), agent.mode);
    assert!(verdict.needs_approval, "{verdict:?}");
    assert_eq!(verdict.effect, EffectClass::WriteExternal);
}

/// A document with `count` operations `op0`, `op1`, ... (one path each).
fn document_with_operations(count: usize) -> String {
    let paths: serde_json::Map<String, Value> = (0..count)
        .map(|i| {
            (
                format!("/things/{i}"),
                json!({"get": {"operationId": format!("op{i}"), "responses": {"200": {"description": "OK"}}}}),
            )
        })
        .collect();
    json!({
        "openapi": "3.0.3",
        "info": {"title": "Many", "version": "1"},
        "servers": [{"url": "https://many.example.com"}],
        "paths": paths
    })
    .to_string()
}

#[test]
fn more_operations_than_a_model_takes_need_an_allow_list() {
    let at_limit = document_with_operations(MAX_TOOLS_OFFERED);
    let tools = operations(&github_source(json!({})), &at_limit).unwrap();
    assert_eq!(tools.len(), MAX_TOOLS_OFFERED);

    let over = document_with_operations(MAX_TOOLS_OFFERED + 1);
    let error = operations(&github_source(json!({})), &over).unwrap_err();
    assert!(
        error.contains(&format!(
            "the document has {} operations",
            MAX_TOOLS_OFFERED + 1
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!("more than the {MAX_TOOLS_OFFERED}")),
        "{error}"
    );
    assert!(error.contains("`operations = [...]`"), "{error}");

    // An allow-list picks a few out of many.
    let picked = operations(
        &github_source(json!({"operations": ["op7", "op100"]})),
        &over,
    )
    .unwrap();
    assert_eq!(names(&picked), ["github.op100", "github.op7"]);

    // A list as long as the document is still too many.
    let all: Vec<String> = (0..=MAX_TOOLS_OFFERED).map(|i| format!("op{i}")).collect();
    let error = operations(&github_source(json!({"operations": all})), &over).unwrap_err();
    assert!(
        error.contains(&format!(
            "`operations` lists {} operations",
            MAX_TOOLS_OFFERED + 1
        )),
        "{error}"
    );
}

#[test]
fn openapi_3_0_nullable_becomes_json_schema() {
    let document = r#"
openapi: 3.0.3
servers: [{url: "https://api.example.com"}]
paths:
  /issues:
    post:
      operationId: issues/update
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              properties:
                milestone: {oneOf: [{type: string}, {type: integer}], nullable: true}
                state_reason: {type: string, enum: [completed, not_planned], nullable: true}
                nullable: {type: boolean}
                title: {type: string, nullable: false}
"#;
    let tools = operations(&github_source(json!({})), document).unwrap();
    assert_eq!(
        tools[0].input_schema["properties"]["body"]["properties"],
        json!({
            "milestone": {"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]},
            "state_reason": {"type": ["string", "null"], "enum": ["completed", "not_planned", null]},
            // A property called `nullable` is not the keyword.
            "nullable": {"type": "boolean"},
            "title": {"type": "string"}
        })
    );
    let schema = &tools[0].input_schema;
    assert_eq!(
        check_arguments(
            schema,
            &json!({"body": {"state_reason": null, "milestone": null}})
        ),
        Ok(())
    );
}

// ---- against a server ---------------------------------------------------

/// A request the test server received.
#[derive(Debug, Clone)]
struct Received {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: String,
}

#[derive(Default)]
struct TicketsServer {
    received: Mutex<Vec<Received>>,
}

async fn handle(State(server): State<Arc<TicketsServer>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let received = Received {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts.headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    server.received.lock().unwrap().push(received.clone());

    let path = received.path.as_str();
    if path == "/specs/tickets.yaml" {
        let document = TICKETS_YAML.replace("\"{scheme}://tickets.example.com/v1/\"", "../api/");
        return document.into_response();
    }
    let Some(path) = path.strip_prefix("/api") else {
        return (StatusCode::NOT_FOUND, "no such page").into_response();
    };
    let authorized = received
        .headers
        .get("authorization")
        .is_some_and(|v| v == TOKEN);
    if !authorized {
        return (StatusCode::UNAUTHORIZED, "who are you?").into_response();
    }
    let json = |status: StatusCode, value: Value| (status, axum::Json(value)).into_response();
    match (&received.method, path) {
        (&Method::GET, "/tickets") if received.query.as_deref() == Some("status=big") => {
            "x".repeat(40_000).into_response()
        }
        (&Method::GET, "/tickets") => json(StatusCode::OK, json!([{"id": "T-1"}])),
        (&Method::POST, "/tickets") => {
            let mut ticket: Value = serde_json::from_str(&received.body).unwrap();
            ticket["id"] = json!("T-2");
            json(StatusCode::CREATED, ticket)
        }
        (&Method::GET, "/tickets/missing") => json(
            StatusCode::NOT_FOUND,
            json!({"error": "there is no ticket `missing`"}),
        ),
        (&Method::GET, "/tickets/overloaded") => {
            (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response()
        }
        (&Method::GET, "/tickets/busy") => {
            (StatusCode::TOO_MANY_REQUESTS, "slow down").into_response()
        }
        (&Method::GET, p) if p.starts_with("/tickets/") => {
            json(StatusCode::OK, json!({"id": &p["/tickets/".len()..]}))
        }
        (&Method::DELETE, p) if p.starts_with("/tickets/") => Response::builder()
            .status(StatusCode::NO_CONTENT)
            .body(Body::empty())
            .unwrap(),
        _ => (StatusCode::NOT_FOUND, "no such page").into_response(),
    }
}

/// Starts the tickets API; its base URL and what it received.
async fn start_server() -> (String, Arc<TicketsServer>) {
    let server = Arc::new(TicketsServer::default());
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(server.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}"), server)
}

/// The tools of the tickets API served at `base`, authorized by [`TOKEN_VAR`].
fn served_tools(base: &str, headers: Value) -> Vec<CatalogTool> {
    let api = source(json!({"base_url": format!("{base}/api/"), "headers": headers}));
    operations(&api, TICKETS_YAML).unwrap()
}

fn operation<'a>(tools: &'a [CatalogTool], name: &str) -> &'a HttpOperation {
    http_operation(tool(tools, name))
}

fn refused(result: Result<impl std::fmt::Debug, ToolError>) -> String {
    match result {
        Err(ToolError::Refused(message)) => message,
        other => panic!("expected Refused, got {other:?}"),
    }
}

#[tokio::test]
async fn calls_send_path_query_headers_body_and_idempotency_key() {
    set_token();
    let (base, server) = start_server().await;
    let tools = served_tools(&base, json!({"Authorization": TOKEN_VAR}));
    let http = reqwest::Client::new();

    let listed = call(
        &http,
        operation(&tools, "tickets.listTickets"),
        &json!({"status": "open", "tag": ["a b", "c"]}),
        "approval-1",
    )
    .await
    .unwrap();
    assert!(!listed.is_error);
    assert_eq!(listed.content, "HTTP 200 OK\n[{\"id\":\"T-1\"}]");

    let got = call(
        &http,
        operation(&tools, "tickets.getTicket"),
        &json!({"id": "a b/c?d", "X-Trace": "trace-7"}),
        "run-1/call_0",
    )
    .await
    .unwrap();
    assert!(got.content.starts_with("HTTP 200 OK\n"), "{}", got.content);

    let created = call(
        &http,
        operation(&tools, "tickets.createTicket"),
        &json!({"body": {"title": "Printer on fire", "status": "open"}}),
        "approval-2",
    )
    .await
    .unwrap();
    let answer: Value =
        serde_json::from_str(created.content.strip_prefix("HTTP 201 Created\n").unwrap()).unwrap();
    assert_eq!(answer["id"], "T-2");

    let deleted = call(
        &http,
        operation(&tools, "tickets.deleteTicket"),
        &json!({"id": 42}),
        "approval-3",
    )
    .await
    .unwrap();
    assert_eq!(deleted.content, "HTTP 204 No Content\n");

    let received = server.received.lock().unwrap().clone();
    assert_eq!(received.len(), 4);
    for (request, key) in
        received
            .iter()
            .zip(["approval-1", "run-1/call_0", "approval-2", "approval-3"])
    {
        assert_eq!(request.headers["authorization"], TOKEN);
        assert_eq!(request.headers["idempotency-key"], key);
    }
    let [list, get, create, delete] = &received[..] else {
        unreachable!()
    };
    assert_eq!(
        (&list.method, list.path.as_str()),
        (&Method::GET, "/api/tickets")
    );
    assert_eq!(list.query.as_deref(), Some("status=open&tag=a+b&tag=c"));
    assert_eq!(get.path, "/api/tickets/a%20b%2Fc%3Fd");
    assert_eq!(get.query, None);
    assert_eq!(get.headers["x-trace"], "trace-7");
    assert_eq!(create.method, Method::POST);
    assert_eq!(create.headers["content-type"], "application/json");
    assert_eq!(
        serde_json::from_str::<Value>(&create.body).unwrap(),
        json!({"title": "Printer on fire", "status": "open"})
    );
    assert_eq!(
        (&delete.method, delete.path.as_str()),
        (&Method::DELETE, "/api/tickets/42")
    );
    assert_eq!(delete.body, "");
}

#[tokio::test]
async fn error_statuses_are_refused_or_transient() {
    set_token();
    let (base, _server) = start_server().await;
    let tools = served_tools(&base, json!({"Authorization": TOKEN_VAR}));
    let get = operation(&tools, "tickets.getTicket");
    let http = reqwest::Client::new();

    let message = refused(call(&http, get, &json!({"id": "missing"}), "k1").await);
    assert!(
        message.contains("404") && message.contains("there is no ticket `missing`"),
        "{message}"
    );
    for (id, status) in [("overloaded", "503"), ("busy", "429")] {
        match call(&http, get, &json!({"id": id}), "k2").await {
            Err(ToolError::Transient(message)) => assert!(message.contains(status), "{message}"),
            other => panic!("expected Transient, got {other:?}"),
        }
    }
    // Without the credential, the API answers 401: a refusal, not a retry.
    let tools = served_tools(&base, json!({}));
    let message = refused(
        call(
            &http,
            operation(&tools, "tickets.getTicket"),
            &json!({"id": "1"}),
            "k3",
        )
        .await,
    );
    assert!(message.contains("401"), "{message}");
}

#[tokio::test]
async fn connection_failures_are_transient() {
    // A port nobody listens on: bind one, then close it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let tools = served_tools(&format!("http://{address}"), json!({}));
    let result = call(
        &reqwest::Client::new(),
        operation(&tools, "tickets.listTickets"),
        &json!({}),
        "k",
    )
    .await;
    assert!(matches!(result, Err(ToolError::Transient(_))), "{result:?}");
}

#[tokio::test]
async fn missing_arguments_and_unset_variables_are_refused_before_sending() {
    let (base, server) = start_server().await;
    let http = reqwest::Client::new();
    let unset = "COUNTERSIGN_OPENAPI_TEST_NEVER_SET";
    let tools = served_tools(&base, json!({"Authorization": unset}));
    let message = refused(
        call(
            &http,
            operation(&tools, "tickets.getTicket"),
            &json!({"id": "1"}),
            "k",
        )
        .await,
    );
    assert!(
        message.contains(unset) && message.contains("Authorization"),
        "{message}"
    );

    let tools = served_tools(&base, json!({}));
    let message = refused(
        call(
            &http,
            operation(&tools, "tickets.getTicket"),
            &json!({"X-Trace": "t"}),
            "k",
        )
        .await,
    );
    assert!(message.contains("`id` is required"), "{message}");
    assert!(server.received.lock().unwrap().is_empty());
}

#[tokio::test]
async fn long_answers_are_cut_at_16_kib() {
    set_token();
    let (base, _server) = start_server().await;
    let tools = served_tools(&base, json!({"Authorization": TOKEN_VAR}));
    let output = call(
        &reqwest::Client::new(),
        operation(&tools, "tickets.listTickets"),
        &json!({"status": "big"}),
        "k",
    )
    .await
    .unwrap();
    assert!(output.content.len() < 17 * 1024, "{}", output.content.len());
    assert!(output.content.contains(&"x".repeat(16 * 1024)));
    assert!(output.content.ends_with("(cut at 16 KiB)"));
}

#[tokio::test]
async fn documents_fetched_by_url_resolve_relative_servers() {
    set_token();
    let (base, _server) = start_server().await;
    let http = reqwest::Client::new();
    let spec = format!("{base}/specs/tickets.yaml");
    let document = fetch_document(&http, &spec).await.unwrap();
    let api = source(json!({"spec": spec, "headers": {"Authorization": TOKEN_VAR}}));
    let tools = operations(&api, &document).unwrap();
    let get = operation(&tools, "tickets.getTicket");
    assert_eq!(get.base_url, format!("{base}/api"));
    let output = call(&http, get, &json!({"id": "T-9"}), "k").await.unwrap();
    assert_eq!(output.content, "HTTP 200 OK\n{\"id\":\"T-9\"}");

    let error = fetch_document(&http, &format!("{base}/specs/missing.yaml"))
        .await
        .unwrap_err();
    assert!(error.contains("404"), "{error}");
}
