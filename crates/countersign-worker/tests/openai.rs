//! The OpenAI-compatible provider against a local server that speaks the
//! Chat Completions wire format and records the requests it receives.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use countersign_policy::agent::OpenAiModel;
use countersign_proto::{ToolCall, TranscriptEntry, json_to_struct};
use countersign_worker::model::openai::chat_turn;
use countersign_worker::model::{ModelError, ModelTurn, RequestedCall, ToolSpec};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex, Once};

const KEY_VAR: &str = "COUNTERSIGN_OPENAI_TEST_KEY";
const KEY: &str = "sk-test-123";

fn set_key() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        // SAFETY: set once, before any request reads it; nothing in these
        // tests reads the environment from C code.
        unsafe { std::env::set_var(KEY_VAR, KEY) };
    });
}

type Responder = Box<dyn Fn(&Value) -> Response + Send + Sync>;

struct FakeProvider {
    /// The `Authorization` header and the body of each request.
    received: Mutex<Vec<(Option<String>, Value)>>,
    respond: Responder,
}

async fn completions(
    State(provider): State<Arc<FakeProvider>>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    provider.received.lock().unwrap().push((auth, body.clone()));
    (provider.respond)(&body)
}

/// Starts a provider answering with `respond`; its `/v1` base URL.
async fn start(respond: Responder) -> (String, Arc<FakeProvider>) {
    let provider = Arc::new(FakeProvider {
        received: Mutex::new(Vec::new()),
        respond,
    });
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(provider.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{address}/v1"), provider)
}

/// A Chat Completions answer with this message.
fn completion(message: Value, finish_reason: &str) -> Response {
    axum::Json(json!({
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-test-2025",
        "system_fingerprint": "fp_1",
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_reason
        }],
        "usage": {"prompt_tokens": 120, "completion_tokens": 40, "total_tokens": 160}
    }))
    .into_response()
}

fn model(base_url: &str, api_key_env: Option<&str>) -> OpenAiModel {
    OpenAiModel {
        base_url: base_url.into(),
        model: "gpt-test".into(),
        api_key_env: api_key_env.map(Into::into),
        temperature: None,
        max_tokens: None,
        timeout: None,
        context_bytes: None,
    }
}

fn tools() -> Vec<ToolSpec> {
    vec![
        ToolSpec {
            name: "gmail.send".into(),
            description: "Send an email".into(),
            input_schema: json!({
                "type": "object",
                "properties": {"to": {"type": "string"}, "subject": {"type": "string"}},
                "required": ["to"]
            }),
        },
        ToolSpec {
            name: "tickets.getTicket".into(),
            description: "One ticket".into(),
            input_schema: json!({"type": "object", "properties": {"id": {"type": "string"}}}),
        },
    ]
}

fn entry(role: &str, content: &str) -> TranscriptEntry {
    TranscriptEntry {
        role: role.into(),
        content: content.into(),
        ..Default::default()
    }
}

fn result(call_id: &str, content: &str, is_error: bool) -> TranscriptEntry {
    TranscriptEntry {
        role: "tool".into(),
        content: content.into(),
        tool_call_id: call_id.into(),
        is_error,
        ..Default::default()
    }
}

fn call(id: &str, name: &str, arguments: Value) -> ToolCall {
    ToolCall {
        id: id.into(),
        name: name.into(),
        arguments: Some(json_to_struct(&arguments).unwrap()),
    }
}

fn fatal(result: Result<ModelTurn, ModelError>) -> String {
    match result {
        Err(ModelError::Fatal(message)) => message,
        other => panic!("expected Fatal, got {other:?}"),
    }
}

fn retryable(result: Result<ModelTurn, ModelError>) -> String {
    match result {
        Err(ModelError::Retryable(message)) => message,
        other => panic!("expected Retryable, got {other:?}"),
    }
}

#[tokio::test]
async fn parallel_tool_calls_round_trip_through_encoded_names() {
    set_key();
    let (base, provider) = start(Box::new(|_| {
        completion(
            json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {
                        "name": "gmail__send",
                        "arguments": "{\"to\":\"bob@example.com\",\"subject\":\"Hi\"}"}},
                    {"id": "call_b", "type": "function", "function": {
                        "name": "tickets__getTicket", "arguments": "{\"id\":\"T-1\"}"}}
                ],
                "refusal": null
            }),
            "tool_calls",
        )
    }))
    .await;
    let mut settings = model(&format!("{base}/"), Some(KEY_VAR));
    settings.temperature = Some(0.25);
    settings.max_tokens = Some(512);
    let transcript = [entry("user", "Email Bob about ticket T-1")];
    let turn = chat_turn(
        &reqwest::Client::new(),
        &settings,
        "You are a helpful agent.",
        &transcript,
        &tools(),
    )
    .await
    .unwrap();

    assert_eq!(
        turn,
        ModelTurn {
            content: String::new(),
            tool_calls: vec![
                RequestedCall {
                    id: "call_a".into(),
                    name: "gmail.send".into(),
                    arguments: json!({"to": "bob@example.com", "subject": "Hi"}),
                },
                RequestedCall {
                    id: "call_b".into(),
                    name: "tickets.getTicket".into(),
                    arguments: json!({"id": "T-1"}),
                },
            ],
            stored_transcript: None,
        }
    );
    let received = provider.received.lock().unwrap();
    let (auth, body) = &received[0];
    assert_eq!(auth.as_deref(), Some("Bearer sk-test-123"));
    assert_eq!(
        body,
        &json!({
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "You are a helpful agent."},
                {"role": "user", "content": "Email Bob about ticket T-1"}
            ],
            "tools": [
                {"type": "function", "function": {
                    "name": "gmail__send",
                    "description": "Send an email",
                    "parameters": tools()[0].input_schema}},
                {"type": "function", "function": {
                    "name": "tickets__getTicket",
                    "description": "One ticket",
                    "parameters": tools()[1].input_schema}}
            ],
            "tool_choice": "auto",
            "temperature": 0.25,
            "max_tokens": 512
        })
    );
}

#[tokio::test]
async fn a_follow_up_carries_the_calls_and_their_results_and_gets_the_answer() {
    let (base, provider) = start(Box::new(|_| {
        completion(
            json!({"role": "assistant", "content": "Ticket T-1 is open; I did not email Bob."}),
            "stop",
        )
    }))
    .await;
    let transcript = [
        entry("user", "Email Bob about ticket T-1"),
        TranscriptEntry {
            role: "assistant".into(),
            tool_calls: vec![
                call(
                    "call_a",
                    "gmail.send",
                    json!({"to": "bob@example.com", "subject": "Hi"}),
                ),
                call(
                    "call_b",
                    "tickets.getTicket",
                    json!({"id": "T-1", "depth": 2}),
                ),
            ],
            ..Default::default()
        },
        result("call_a", "denied by alice@example.com: not to Bob", true),
        result("call_b", "HTTP 200 OK\n{\"status\":\"open\"}", false),
    ];
    let turn = chat_turn(
        &reqwest::Client::new(),
        &model(&base, None),
        "",
        &transcript,
        &tools(),
    )
    .await
    .unwrap();
    assert_eq!(
        turn,
        ModelTurn {
            content: "Ticket T-1 is open; I did not email Bob.".into(),
            tool_calls: vec![],
            stored_transcript: None,
        }
    );

    let received = provider.received.lock().unwrap();
    let (auth, body) = &received[0];
    assert_eq!(auth, &None, "no key configured, no Authorization header");
    assert!(body.get("temperature").is_none() && body.get("max_tokens").is_none());
    assert_eq!(
        body["messages"],
        json!([
            {"role": "user", "content": "Email Bob about ticket T-1"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_a", "type": "function", "function": {
                    "name": "gmail__send",
                    "arguments": "{\"subject\":\"Hi\",\"to\":\"bob@example.com\"}"}},
                {"id": "call_b", "type": "function", "function": {
                    "name": "tickets__getTicket",
                    "arguments": "{\"depth\":2,\"id\":\"T-1\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_a",
             "content": "denied by alice@example.com: not to Bob"},
            {"role": "tool", "tool_call_id": "call_b",
             "content": "HTTP 200 OK\n{\"status\":\"open\"}"}
        ])
    );
}

#[tokio::test]
async fn colliding_names_stay_distinct() {
    // Answers with one call to each function offered, in order.
    let (base, provider) = start(Box::new(|request| {
        let calls: Vec<Value> = request["tools"]
            .as_array()
            .unwrap()
            .iter()
            .enumerate()
            .map(|(i, tool)| {
                json!({"id": format!("call_{i}"), "type": "function", "function": {
                    "name": tool["function"]["name"], "arguments": "{}"}})
            })
            .collect();
        completion(
            json!({"role": "assistant", "content": "", "tool_calls": calls}),
            "tool_calls",
        )
    }))
    .await;
    let offered = ["gmail.send", "gmail__send", "web search", "web_search"];
    let specs: Vec<ToolSpec> = offered
        .iter()
        .map(|name| ToolSpec {
            name: name.to_string(),
            description: String::new(),
            input_schema: json!({"type": "object"}),
        })
        .collect();
    let turn = chat_turn(
        &reqwest::Client::new(),
        &model(&base, None),
        "",
        &[entry("user", "go")],
        &specs,
    )
    .await
    .unwrap();
    let names: Vec<&str> = turn.tool_calls.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, offered);

    let received = provider.received.lock().unwrap();
    let sent: Vec<&str> = received[0].1["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        sent,
        ["gmail__send_2", "gmail__send", "web_search_2", "web_search"]
    );
}

#[tokio::test]
async fn invented_names_and_unparsable_arguments_pass_through() {
    let (base, _provider) = start(Box::new(|_| {
        completion(
            json!({"role": "assistant", "content": "Let me look.", "tool_calls": [
                {"id": "call_x", "type": "function", "function": {
                    "name": "web__search", "arguments": "{\"q\": \"printers\""}},
                {"id": "call_y", "type": "function", "function": {
                    "name": "tickets__getTicket", "arguments": "[1, 2]"}}
            ]}),
            "tool_calls",
        )
    }))
    .await;
    let turn = chat_turn(
        &reqwest::Client::new(),
        &model(&base, None),
        "",
        &[entry("user", "go")],
        &tools(),
    )
    .await
    .unwrap();
    assert_eq!(turn.content, "Let me look.");
    assert_eq!(turn.tool_calls[0].name, "web__search");
    assert_eq!(
        turn.tool_calls[0].arguments,
        Value::String("{\"q\": \"printers\"".into())
    );
    assert_eq!(turn.tool_calls[1].name, "tickets.getTicket");
    assert_eq!(turn.tool_calls[1].arguments, json!([1, 2]));
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retryable() {
    let (base, _provider) = start(Box::new(|request| {
        if request["model"] == "busy" {
            (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "7")],
                axum::Json(json!({"error": {
                    "message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})),
            )
                .into_response()
        } else {
            (StatusCode::BAD_GATEWAY, "upstream down").into_response()
        }
    }))
    .await;
    let http = reqwest::Client::new();
    let mut settings = model(&base, None);
    settings.model = "busy".into();
    let message = retryable(chat_turn(&http, &settings, "", &[entry("user", "go")], &[]).await);
    assert!(
        message.contains("429")
            && message.contains("Rate limit reached")
            && message.contains("Retry-After: 7"),
        "{message}"
    );
    let message =
        retryable(chat_turn(&http, &model(&base, None), "", &[entry("user", "go")], &[]).await);
    assert!(
        message.contains("502") && message.contains("upstream down"),
        "{message}"
    );

    // Nobody listening: a port bound, then closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}/v1", listener.local_addr().unwrap());
    drop(listener);
    retryable(
        chat_turn(
            &http,
            &model(&closed, None),
            "",
            &[entry("user", "go")],
            &[],
        )
        .await,
    );
}

#[tokio::test]
async fn client_errors_and_malformed_answers_are_fatal() {
    let (base, _provider) = start(Box::new(|request| match request["model"].as_str() {
        Some("no-choices") => axum::Json(json!({"object": "chat.completion", "choices": []})).into_response(),
        Some("not-json") => "<html>gateway</html>".into_response(),
        _ => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {
                "message": "bad model", "type": "invalid_request_error", "param": "model", "code": null}})),
        )
            .into_response(),
    }))
    .await;
    let http = reqwest::Client::new();
    let turn = |name: &str| {
        let mut settings = model(&base, None);
        settings.model = name.into();
        let http = http.clone();
        async move { chat_turn(&http, &settings, "", &[entry("user", "go")], &[]).await }
    };
    let message = fatal(turn("gpt-nonexistent").await);
    assert!(
        message.contains("400") && message.contains("bad model"),
        "{message}"
    );
    let message = fatal(turn("no-choices").await);
    assert!(message.contains("choices"), "{message}");
    let message = fatal(turn("not-json").await);
    assert!(message.contains("<html>gateway</html>"), "{message}");
}

#[tokio::test]
async fn an_unset_key_variable_is_fatal() {
    let (base, provider) = start(Box::new(|_| completion(json!({"content": "hi"}), "stop"))).await;
    let unset = "COUNTERSIGN_OPENAI_TEST_NEVER_SET";
    let message = fatal(
        chat_turn(
            &reqwest::Client::new(),
            &model(&base, Some(unset)),
            "",
            &[entry("user", "go")],
            &[],
        )
        .await,
    );
    assert!(message.contains(unset), "{message}");
    assert!(provider.received.lock().unwrap().is_empty());
}

/// A conversation over the model's `context_bytes` goes out with the oldest
/// tool results replaced by placeholders and a note in the system message;
/// the latest result is sent whole.
#[tokio::test]
async fn a_conversation_over_the_context_is_compacted_and_the_model_told() {
    let (base_url, provider) = start(Box::new(|_| {
        completion(json!({"role": "assistant", "content": "done"}), "stop")
    }))
    .await;
    let mut transcript = vec![entry("user", "read the log every turn")];
    for turn in 0..20 {
        let id = format!("call_{turn}");
        transcript.push(TranscriptEntry {
            role: "assistant".into(),
            tool_calls: vec![call(&id, "tickets.getTicket", json!({"id": "T-1"}))],
            ..Default::default()
        });
        transcript.push(result(
            &id,
            &format!("{turn}:{}", "y".repeat(10_000)),
            false,
        ));
    }
    let model = OpenAiModel {
        context_bytes: Some(50_000),
        ..model(&base_url, None)
    };
    let turn = chat_turn(
        &reqwest::Client::new(),
        &model,
        "You read logs.",
        &transcript,
        &tools(),
    )
    .await
    .unwrap();
    assert_eq!(turn.content, "done");
    let (_, body) = provider.received.lock().unwrap().pop().unwrap();
    let messages = body["messages"].as_array().unwrap();
    // system + every entry: nothing is dropped, so calls keep their results.
    assert_eq!(messages.len(), 1 + transcript.len());
    let system = messages[0]["content"].as_str().unwrap();
    assert!(system.starts_with("You read logs."), "{system}");
    assert!(system.contains("replaced by placeholders"), "{system}");
    let first_result = messages[3]["content"].as_str().unwrap();
    assert!(
        first_result.starts_with("[removed to fit"),
        "{first_result}"
    );
    let last = messages.last().unwrap()["content"].as_str().unwrap();
    assert!(
        last.starts_with("19:yyy") && last.len() > 10_000,
        "the latest result is whole"
    );
    let sent: usize = messages[1..]
        .iter()
        .map(|m| m["content"].as_str().map_or(0, str::len))
        .sum();
    assert!(sent <= 50_000, "{sent} bytes of conversation sent");
}
