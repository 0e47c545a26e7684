//! The connectors against real local counterparts: a temp folder, an SMTP
//! server and a Maildir, and an HTTP server speaking Slack's wire format.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use countersign_policy::EffectClass;
use countersign_policy::sources::Connector;
use countersign_worker::tools::connectors::{actions, run};
use countersign_worker::tools::{ToolError, ToolOutput};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

fn connector(value: Value) -> Connector {
    serde_json::from_value(value).expect("a valid connector")
}

async fn call(connector: &Connector, action: &str, args: Value) -> Result<ToolOutput, ToolError> {
    run(&reqwest::Client::new(), connector, action, &args, "key-1").await
}

fn refused(result: Result<ToolOutput, ToolError>) -> String {
    match result {
        Err(ToolError::Refused(message)) => message,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn transient(result: Result<ToolOutput, ToolError>) -> String {
    match result {
        Err(ToolError::Transient(message)) => message,
        other => panic!("expected a transient error, got {other:?}"),
    }
}

fn json_output(result: Result<ToolOutput, ToolError>) -> Value {
    let output = result.expect("the action succeeds");
    assert!(!output.is_error, "{}", output.content);
    serde_json::from_str(&output.content).expect("JSON output")
}

// ---------------------------------------------------------------- actions()

#[test]
fn actions_are_named_after_the_prefix_with_effects_and_flags() {
    let gmail = connector(json!({
        "name": "gmail", "kind": "mail",
        "smtp_url": "smtp://127.0.0.1:25", "from": "a@example.com", "maildir": "/tmp/x",
        "require_approval": ["send"]
    }));
    let tools = actions(&gmail);
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["gmail.send", "gmail.list", "gmail.read"]);
    let send = &tools[0];
    assert_eq!(send.provider, "gmail");
    assert_eq!(send.kind.as_str(), "connector");
    assert_eq!(send.effect, EffectClass::WriteExternal);
    assert_eq!(send.requires_approval, Some(true));
    assert_eq!(
        send.input_schema["required"],
        json!(["to", "subject", "body"])
    );
    assert_eq!(tools[1].effect, EffectClass::Read);
    assert_eq!(tools[1].requires_approval, None);

    let fs = connector(json!({
        "kind": "filesystem", "root": "/tmp/x",
        "effects": {"write": "write_external"},
        "require_approval": "never",
        "actions": ["read", "write"]
    }));
    let tools = actions(&fs);
    let summary: Vec<(&str, EffectClass, Option<bool>)> = tools
        .iter()
        .map(|t| (t.name.as_str(), t.effect, t.requires_approval))
        .collect();
    assert_eq!(
        summary,
        [
            ("filesystem.read", EffectClass::Read, Some(false)),
            ("filesystem.write", EffectClass::WriteExternal, Some(false)),
        ]
    );

    let slack = connector(json!({"kind": "slack", "require_approval": "always"}));
    let tools = actions(&slack);
    let summary: Vec<(&str, EffectClass, Option<bool>)> = tools
        .iter()
        .map(|t| (t.name.as_str(), t.effect, t.requires_approval))
        .collect();
    assert_eq!(
        summary,
        [
            ("slack.post_message", EffectClass::WriteExternal, Some(true)),
            ("slack.history", EffectClass::Read, Some(true)),
        ]
    );
}

#[test]
fn action_schemas_accept_good_arguments_and_name_missing_ones() {
    let mail = connector(json!({
        "kind": "mail", "smtp_url": "smtp://h", "from": "a@example.com", "maildir": "/tmp/x"
    }));
    let send = &actions(&mail)[0];
    let check =
        |args: Value| countersign_policy::schema::check_arguments(&send.input_schema, &args);
    assert_eq!(
        check(json!({"to": "b@example.com", "subject": "s", "body": "b"})),
        Ok(())
    );
    assert_eq!(
        check(json!({"to": ["b@example.com"], "cc": "c@example.com", "subject": "s", "body": "b"})),
        Ok(())
    );
    assert_eq!(
        check(json!({"to": "b@example.com", "body": "b"})),
        Err("argument `subject` is required".into())
    );
    assert!(check(json!({"to": [1], "subject": "s", "body": "b"})).is_err());
}

// ---------------------------------------------------------------- filesystem

#[tokio::test]
async fn filesystem_lists_reads_writes_and_deletes_inside_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.txt"), "hello").unwrap();
    let fs = connector(json!({"kind": "filesystem", "root": root}));

    let written = call(
        &fs,
        "write",
        json!({"path": "notes/2024/todo.md", "content": "- pay acme"}),
    )
    .await
    .unwrap();
    assert!(
        written.content.contains("wrote 10 bytes"),
        "{}",
        written.content
    );
    assert_eq!(
        std::fs::read_to_string(root.join("notes/2024/todo.md")).unwrap(),
        "- pay acme"
    );
    // Idempotent: the same write again leaves the same file.
    call(
        &fs,
        "write",
        json!({"path": "notes/2024/todo.md", "content": "- pay acme"}),
    )
    .await
    .unwrap();

    let listing = json_output(call(&fs, "list", json!({})).await);
    assert_eq!(
        listing["entries"],
        json!([
            {"name": "a.txt", "type": "file", "size": 5},
            {"name": "notes", "type": "folder"}
        ])
    );
    let listing = json_output(call(&fs, "list", json!({"path": "notes/2024"})).await);
    assert_eq!(listing["entries"][0]["name"], "todo.md");

    let read = call(&fs, "read", json!({"path": "./notes/../a.txt"}))
        .await
        .unwrap();
    assert_eq!(read.content, "hello");
    assert!(
        refused(call(&fs, "read", json!({"path": "missing.txt"})).await).contains("missing.txt")
    );

    call(&fs, "delete", json!({"path": "a.txt"})).await.unwrap();
    assert!(!root.join("a.txt").exists());
    // A retried delete finds nothing to do and still succeeds.
    call(&fs, "delete", json!({"path": "a.txt"})).await.unwrap();
    assert!(refused(call(&fs, "delete", json!({"path": "notes"})).await).contains("notes"));
    assert!(refused(call(&fs, "delete", json!({"path": "."})).await).contains("root itself"));
}

#[cfg(unix)]
#[tokio::test]
async fn filesystem_refuses_every_path_that_leads_outside_its_root() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(dir.path().join("x"), "secret").unwrap();
    std::fs::write(outside.join("secret.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(outside.join("secret.txt"), root.join("link.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, root.join("linked")).unwrap();
    let fs = connector(json!({"kind": "filesystem", "root": root}));

    let attempts = [
        ("read", json!({"path": "../x"})),
        ("read", json!({"path": "/etc/passwd"})),
        ("read", json!({"path": "link.txt"})),
        ("read", json!({"path": "linked/secret.txt"})),
        ("list", json!({"path": "linked"})),
        ("list", json!({"path": ".."})),
        ("write", json!({"path": "../x", "content": "owned"})),
        ("write", json!({"path": "link.txt", "content": "owned"})),
        (
            "write",
            json!({"path": "linked/new.txt", "content": "owned"}),
        ),
        (
            "write",
            json!({"path": "linked/deeper/new.txt", "content": "owned"}),
        ),
        ("delete", json!({"path": "../x"})),
        ("delete", json!({"path": "linked/secret.txt"})),
    ];
    for (action, args) in attempts {
        let message = refused(call(&fs, action, args.clone()).await);
        assert!(
            message.contains("outside the connector's root"),
            "{action} {args}: {message}"
        );
    }
    // Nothing outside was written, changed or removed.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("x")).unwrap(),
        "secret"
    );
    assert_eq!(
        std::fs::read_to_string(outside.join("secret.txt")).unwrap(),
        "secret"
    );
    let outside_entries: Vec<_> = std::fs::read_dir(&outside).unwrap().collect();
    assert_eq!(outside_entries.len(), 1);

    // Deleting a link removes the link, never what it points to.
    call(&fs, "delete", json!({"path": "link.txt"}))
        .await
        .unwrap();
    assert!(std::fs::symlink_metadata(root.join("link.txt")).is_err());
    assert!(outside.join("secret.txt").exists());
}

// ---------------------------------------------------------------- mail: SMTP

/// What the test SMTP server received in one transaction.
#[derive(Debug, Clone, Default)]
struct Envelope {
    from: String,
    to: Vec<String>,
    data: String,
}

/// A minimal SMTP server: one transaction per connection, recorded before
/// the final `250`, so a finished send has always been recorded.
struct SmtpServer {
    url: String,
    received: Arc<Mutex<Vec<Envelope>>>,
}

async fn smtp_server(rcpt_reply: &'static str) -> SmtpServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("smtp://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let record = received.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let record = record.clone();
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                let mut envelope = Envelope::default();
                write.write_all(b"220 test ESMTP\r\n").await.unwrap();
                while let Ok(Some(line)) = lines.next_line().await {
                    let upper = line.to_ascii_uppercase();
                    let reply: &str = if upper.starts_with("EHLO") {
                        "250-test greets you\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("HELO") {
                        "250 test\r\n"
                    } else if upper.starts_with("MAIL FROM:") {
                        envelope.from = line[10..].trim().to_string();
                        "250 OK\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        if rcpt_reply.starts_with("250") {
                            envelope.to.push(line[8..].trim().to_string());
                        }
                        rcpt_reply
                    } else if upper == "DATA" {
                        write.write_all(b"354 go ahead\r\n").await.unwrap();
                        let mut data = String::new();
                        while let Ok(Some(line)) = lines.next_line().await {
                            if line == "." {
                                break;
                            }
                            // Undo dot-stuffing.
                            data.push_str(line.strip_prefix('.').unwrap_or(&line));
                            data.push('\n');
                        }
                        envelope.data = data;
                        record.lock().unwrap().push(std::mem::take(&mut envelope));
                        "250 queued\r\n"
                    } else if upper == "QUIT" {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        "250 OK\r\n"
                    };
                    if write.write_all(reply.as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    SmtpServer { url, received }
}

fn mail_connector(smtp_url: &str, maildir: &Path) -> Connector {
    connector(json!({
        "name": "gmail", "kind": "mail",
        "smtp_url": smtp_url, "from": "Agent <agent@example.com>", "maildir": maildir
    }))
}

#[tokio::test]
async fn mail_send_delivers_with_the_key_derived_message_id() {
    let server = smtp_server("250 OK\r\n").await;
    let dir = tempfile::tempdir().unwrap();
    let mail = mail_connector(&server.url, dir.path());
    let args = json!({
        "to": ["bob@example.com", "Carol <carol@example.com>"],
        "cc": "dave@example.com",
        "subject": "Invoice 42",
        "body": "Please pay invoice 42.\n.\nThanks"
    });
    let http = reqwest::Client::new();
    let output = run(&http, &mail, "send", &args, "approval-7")
        .await
        .unwrap();
    let digest = hex::encode(Sha256::digest(b"approval-7"));
    let message_id = format!("<{}@countersign.local>", &digest[..32]);
    let answer: Value = serde_json::from_str(&output.content).unwrap();
    assert_eq!(answer["message_id"], message_id);

    let received = server.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let envelope = &received[0];
    assert_eq!(envelope.from, "<agent@example.com>");
    assert_eq!(
        envelope.to,
        [
            "<bob@example.com>",
            "<carol@example.com>",
            "<dave@example.com>"
        ]
    );
    let parsed = mail_parser::MessageParser::default()
        .parse(envelope.data.as_bytes())
        .unwrap();
    assert_eq!(parsed.subject(), Some("Invoice 42"));
    assert_eq!(
        parsed.message_id(),
        Some(&message_id[1..message_id.len() - 1])
    );
    assert_eq!(
        parsed.body_text(0).unwrap().trim_end(),
        "Please pay invoice 42.\n.\nThanks"
    );
    assert!(
        envelope.data.contains(&format!("Message-ID: {message_id}")),
        "{}",
        envelope.data
    );

    // A retry of the same call carries the same Message-ID.
    run(&http, &mail, "send", &args, "approval-7")
        .await
        .unwrap();
    let again = server.received.lock().unwrap()[1].clone();
    assert!(again.data.contains(&format!("Message-ID: {message_id}")));
}

#[tokio::test]
async fn mail_send_refusals_and_transient_failures() {
    let server = smtp_server("550 5.1.1 no such user\r\n").await;
    let dir = tempfile::tempdir().unwrap();
    let mail = mail_connector(&server.url, dir.path());
    let args = json!({"to": "nobody@example.com", "subject": "s", "body": "b"});
    let message = refused(call(&mail, "send", args.clone()).await);
    assert!(message.contains("550"), "{message}");
    assert!(server.received.lock().unwrap().is_empty());

    let bad = json!({"to": "not an address", "subject": "s", "body": "b"});
    assert!(refused(call(&mail, "send", bad).await).contains("not an email address"));

    // Nothing listens on a port we just released: a connection failure.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let closed = mail_connector(&format!("smtp://127.0.0.1:{port}"), dir.path());
    transient(call(&closed, "send", args.clone()).await);

    let mut with_login = mail_connector(&server.url, dir.path());
    with_login.username_env = Some("COUNTERSIGN_TEST_SMTP_USER_UNSET".into());
    with_login.password_env = Some("COUNTERSIGN_TEST_SMTP_PASSWORD_UNSET".into());
    let message = refused(call(&with_login, "send", args).await);
    assert!(
        message.contains("COUNTERSIGN_TEST_SMTP_USER_UNSET"),
        "{message}"
    );
}

// ---------------------------------------------------------------- mail: Maildir

const PLAIN: &str = "From: Alice <alice@example.com>\r\n\
To: agent@example.com\r\n\
Subject: Lunch?\r\n\
Date: Mon, 13 Nov 2023 10:00:00 +0000\r\n\
Message-ID: <plain@example.com>\r\n\
\r\n\
Noon at the usual place.\r\n";

const MULTIPART: &str = "From: Bob <bob@example.com>\r\n\
To: agent@example.com\r\n\
Subject: =?UTF-8?Q?Invoice_=E2=82=AC42?=\r\n\
Date: Tue, 14 Nov 2023 09:30:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/alternative; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Please pay =E2=82=AC42 by Friday. This line is long enough to be wrapped by =\r\n\
the encoder.\r\n\
--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>Please pay &euro;42 by Friday.</p>\r\n\
--b1--\r\n";

fn maildir_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["new", "cur", "tmp"] {
        std::fs::create_dir(dir.path().join(folder)).unwrap();
    }
    std::fs::write(dir.path().join("cur/1699869600.M1P1.host:2,S"), PLAIN).unwrap();
    std::fs::write(dir.path().join("new/1699954200.M2P1.host"), MULTIPART).unwrap();
    // Unfinished deliveries and dot files are not messages.
    std::fs::write(dir.path().join("tmp/1699999999.M3P1.host"), PLAIN).unwrap();
    std::fs::write(dir.path().join("new/.hidden"), PLAIN).unwrap();
    dir
}

#[tokio::test]
async fn mail_list_shows_messages_newest_first() {
    let dir = maildir_fixture();
    let mail = mail_connector("smtp://127.0.0.1:1", dir.path());
    let listing = json_output(call(&mail, "list", json!({})).await);
    assert_eq!(listing["total"], 2);
    let messages = listing["messages"].as_array().unwrap();
    assert_eq!(messages[0]["id"], "1699954200.M2P1.host");
    assert_eq!(messages[0]["folder"], "new");
    assert_eq!(messages[0]["from"], "Bob <bob@example.com>");
    assert_eq!(messages[0]["subject"], "Invoice €42");
    assert_eq!(messages[1]["id"], "1699869600.M1P1.host");
    assert_eq!(messages[1]["to"], "agent@example.com");
    assert_eq!(messages[1]["subject"], "Lunch?");
    assert!(
        messages[1]["date"]
            .as_str()
            .unwrap()
            .starts_with("2023-11-13T10:00:00")
    );

    let one = json_output(call(&mail, "list", json!({"limit": 1})).await);
    assert_eq!(one["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn mail_read_decodes_the_text_and_refuses_path_ids() {
    let dir = maildir_fixture();
    let mail = mail_connector("smtp://127.0.0.1:1", dir.path());
    let text = call(&mail, "read", json!({"id": "1699954200.M2P1.host"}))
        .await
        .unwrap()
        .content;
    assert!(text.contains("From: Bob <bob@example.com>\n"), "{text}");
    assert!(text.contains("Subject: Invoice €42\n"), "{text}");
    assert!(
        text.contains(
            "Please pay €42 by Friday. This line is long enough to be wrapped by the encoder."
        ),
        "{text}"
    );
    assert!(!text.contains("<p>"), "{text}");

    let text = call(&mail, "read", json!({"id": "1699869600.M1P1.host"}))
        .await
        .unwrap()
        .content;
    assert!(text.contains("Message-ID: <plain@example.com>\n"), "{text}");
    assert!(text.contains("\n\nNoon at the usual place."), "{text}");

    for id in ["../cur/1699869600.M1P1.host:2,S", "cur/x", "..", ".hidden"] {
        assert!(refused(call(&mail, "read", json!({"id": id})).await).contains("not a message id"));
    }
    assert!(
        refused(call(&mail, "read", json!({"id": "1699999999.M3P1.host"})).await)
            .contains("no message")
    );
}

// ---------------------------------------------------------------- slack

const TOKEN: &str = "xoxb-test-token";

#[derive(Clone, Default)]
struct SlackState {
    posts: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    history_queries: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn post_message(
    State(state): State<SlackState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    if !authorized(&headers) {
        return Json(json!({"ok": false, "error": "invalid_auth"})).into_response();
    }
    let body: Value = serde_json::from_str(&body).unwrap();
    let channel = body["channel"].as_str().unwrap_or_default().to_string();
    state.posts.lock().unwrap().push((headers, body.clone()));
    match channel.as_str() {
        "C1" => Json(json!({
            "ok": true, "channel": "C1", "ts": "1700000000.000100",
            "message": {"type": "message", "user": "U0BOT", "text": body["text"], "ts": "1700000000.000100"}
        }))
        .into_response(),
        "C_BUSY" => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "30")], "").into_response(),
        "C_SLOW" => Json(json!({"ok": false, "error": "ratelimited"})).into_response(),
        _ => Json(json!({"ok": false, "error": "channel_not_found"})).into_response(),
    }
}

async fn history(
    State(state): State<SlackState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Json<Value> {
    if !authorized(&headers) {
        return Json(json!({"ok": false, "error": "not_authed"}));
    }
    state.history_queries.lock().unwrap().push(query);
    Json(json!({
        "ok": true,
        "messages": [
            {"type": "message", "user": "U1", "text": "hi", "ts": "1700000001.000200"},
            {"type": "message", "bot_id": "B1", "text": "beep", "ts": "1700000000.000100"}
        ],
        "has_more": false
    }))
}

async fn slack_server() -> (String, SlackState) {
    let state = SlackState::default();
    let app = axum::Router::new()
        .route("/api/chat.postMessage", post(post_message))
        .route("/api/conversations.history", get(history))
        .with_state(state.clone());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/api", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, state)
}

/// The token variable of the Slack tests (and one with a wrong token), set
/// once: names no other test reads or changes.
fn slack_token_env() -> &'static str {
    const NAME: &str = "COUNTERSIGN_TEST_SLACK_TOKEN";
    static SET: std::sync::Once = std::sync::Once::new();
    // SAFETY: set once, before any reader of these variables, and std's own
    // environment lock orders it with the other tests' std::env reads.
    SET.call_once(|| unsafe {
        std::env::set_var(NAME, TOKEN);
        std::env::set_var(WRONG_TOKEN_ENV, "xoxb-wrong");
    });
    NAME
}

const WRONG_TOKEN_ENV: &str = "COUNTERSIGN_TEST_SLACK_WRONG_TOKEN";

fn slack_connector(base: &str) -> Connector {
    connector(
        json!({"name": "team", "kind": "slack", "base_url": base, "token_env": slack_token_env()}),
    )
}

#[tokio::test]
async fn slack_post_message_sends_the_wire_format() {
    let (base, state) = slack_server().await;
    let slack = slack_connector(&base);
    let http = reqwest::Client::new();
    let args = json!({"channel": "C1", "text": "Invoice paid", "thread_ts": "1699999999.000001"});
    let output = json_output(run(&http, &slack, "post_message", &args, "approval-9").await);
    assert_eq!(output["channel"], "C1");
    assert_eq!(output["ts"], "1700000000.000100");

    let posts = state.posts.lock().unwrap().clone();
    assert_eq!(posts.len(), 1);
    let (headers, body) = &posts[0];
    assert_eq!(headers["content-type"], "application/json; charset=utf-8");
    assert_eq!(
        body,
        &json!({
            "channel": "C1",
            "text": "Invoice paid",
            "thread_ts": "1699999999.000001",
            "metadata": {
                "event_type": "countersign_tool_call",
                "event_payload": {"idempotency_key": "approval-9"}
            }
        })
    );
}

#[tokio::test]
async fn slack_errors_are_refused_or_transient() {
    let (base, _state) = slack_server().await;
    let slack = slack_connector(&base);
    let message = refused(
        call(
            &slack,
            "post_message",
            json!({"channel": "C404", "text": "x"}),
        )
        .await,
    );
    assert!(message.contains("channel_not_found"), "{message}");
    let message = transient(
        call(
            &slack,
            "post_message",
            json!({"channel": "C_BUSY", "text": "x"}),
        )
        .await,
    );
    assert!(message.contains("Retry-After: 30"), "{message}");
    transient(
        call(
            &slack,
            "post_message",
            json!({"channel": "C_SLOW", "text": "x"}),
        )
        .await,
    );

    let mut wrong_token = slack.clone();
    wrong_token.token_env = Some(WRONG_TOKEN_ENV.into());
    assert!(
        refused(call(&wrong_token, "history", json!({"channel": "C1"})).await)
            .contains("not_authed")
    );

    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let mut closed = slack.clone();
    closed.base_url = Some(format!("http://127.0.0.1:{port}/api"));
    transient(call(&closed, "history", json!({"channel": "C1"})).await);
}

#[tokio::test]
async fn slack_without_its_token_variable_is_refused_naming_it() {
    let slack = connector(json!({
        "kind": "slack", "base_url": "http://127.0.0.1:1/api",
        "token_env": "COUNTERSIGN_TEST_SLACK_TOKEN_NEVER_SET"
    }));
    let message = refused(
        call(
            &slack,
            "post_message",
            json!({"channel": "C1", "text": "x"}),
        )
        .await,
    );
    assert!(
        message.contains("COUNTERSIGN_TEST_SLACK_TOKEN_NEVER_SET"),
        "{message}"
    );
}

#[tokio::test]
async fn slack_history_lists_messages() {
    let (base, state) = slack_server().await;
    let slack = slack_connector(&base);
    let output = json_output(call(&slack, "history", json!({"channel": "C1", "limit": 2})).await);
    assert_eq!(
        output,
        json!({
            "channel": "C1",
            "messages": [
                {"user": "U1", "ts": "1700000001.000200", "text": "hi"},
                {"user": "B1", "ts": "1700000000.000100", "text": "beep"}
            ],
            "has_more": false
        })
    );
    let queries = state.history_queries.lock().unwrap().clone();
    assert_eq!(queries[0]["channel"], "C1");
    assert_eq!(queries[0]["limit"], "2");
}
