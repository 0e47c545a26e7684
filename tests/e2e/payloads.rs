//! Large payloads (issue 16): a run whose transcript outgrows Temporal's
//! payload limit ends as Failed with a message saying what to change,
//! instead of failing workflow tasks forever.

use crate::harness::{TestEnv, countersign, replay, server_address};
use crate::history_sizes::{histories, history_bytes, largest_payload};
use anyhow::{Context, Result, bail};
use countersign_worker::workflow::payload_limit::MAX_PAYLOAD_BYTES;
use std::time::Duration;
use temporalio_client::{WorkflowExecutionInfo, WorkflowFetchHistoryOptions};
use temporalio_common::protos::temporal::api::enums::v1::EventType;
use temporalio_common::protos::temporal::api::history::v1::HistoryEvent;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

/// The size of the file the agent reads each turn: the most `read_file`
/// returns at once.
const FILE_BYTES: usize = 64 * 1024;

/// An agent that reads the same 64 KB file on every turn, for up to 200
/// turns: its transcript grows by 64 KB a turn.
const READER_AGENT: &str = r#"
name = "t-reader"
max_turns = 200

[model]
provider = "scripted"

[[model.steps]]
id = "read"
say = "Reading the file again."
calls = [{ tool = "read", arguments = { path = "big.txt" } }]
next = "read"

[[tools]]
name = "read"
builtin = { kind = "read_file", root = "." }
"#;

/// 64 KB of text that needs no JSON escaping.
fn big_text() -> String {
    let line = "The quick brown fox jumps over the lazy dog, again and again. ";
    line.repeat(FILE_BYTES / line.len() + 1)[..FILE_BYTES].to_string()
}

/// The replay JSON of one run's history.
async fn history_json(env: &TestEnv, id: &str, run_id: &str) -> Result<Vec<u8>> {
    Ok(WorkflowExecutionInfo::builder()
        .namespace("default")
        .workflow_id(id)
        .run_id(run_id)
        .build()
        .bind_untyped(env.client.clone())
        .fetch_history(WorkflowFetchHistoryOptions::default())
        .to_json()
        .await?)
}

/// The run id a history belongs to (from its first workflow task).
fn run_id_of(events: &[HistoryEvent]) -> Option<String> {
    events.iter().find_map(|e| match &e.attributes {
        Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
            Some(a.original_execution_run_id.clone())
        }
        _ => None,
    })
}

#[tokio::test]
async fn a_transcript_over_the_payload_limit_fails_the_run_clearly() -> Result<()> {
    let env = TestEnv::new("payload-limit").await?;
    std::fs::write(env.dir.path().join("big.txt"), big_text())?;
    env.with_worker(async {
        let id = env.start(env.agent(READER_AGENT)?, "read it, forever").await?;
        // Bounded: about 24 turns pass the limit; a stuck run never ends.
        let error = tokio::time::timeout(
            Duration::from_secs(180),
            env.approvals.wait_for_run(&id),
        )
        .await
        .context("the run did not end within 180 s: stuck on payload size?")?
        .expect_err("the run must fail on the payload limit");
        let message = format!("{error:#}");
        for needle in [
            "payload too large",
            "model_turn",
            &MAX_PAYLOAD_BYTES.to_string(),
            "--payload-store",
            "COUNTERSIGN_PAYLOAD_STORE",
        ] {
            assert!(message.contains(needle), "`{needle}` in: {message}");
        }

        let runs = histories(&env.client, &id).await?;
        for events in &runs {
            let failed_tasks = events
                .iter()
                .filter(|e| e.event_type() == EventType::WorkflowTaskFailed)
                .count();
            assert_eq!(failed_tasks, 0, "no workflow task may fail");
        }
        let last = runs.last().context("no run")?;
        let Some(Attributes::WorkflowExecutionFailedEventAttributes(failed)) =
            &last.last().context("an empty history")?.attributes
        else {
            bail!("the run's last event is not WorkflowExecutionFailed");
        };
        let failure = failed.failure.as_ref().context("a failure")?;
        // The run got as far as the limit allows: the payload it refused
        // is over the limit by less than one more turn.
        let size: usize = failure
            .message
            .split("would be ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .context("the size in the message")?
            .parse()?;
        assert!(size > MAX_PAYLOAD_BYTES, "{}", failure.message);
        assert!(size < MAX_PAYLOAD_BYTES + 2 * FILE_BYTES, "{}", failure.message);
        let tool_results: usize = runs
            .iter()
            .flatten()
            .filter(|e| e.event_type() == EventType::ActivityTaskCompleted)
            .count();
        eprintln!(
            "payload limit without a store: {} runs (continued as new), {} events, {} history bytes (per run: {:?}), largest payload {} bytes, {tool_results} activities completed",
            runs.len(),
            runs.iter().map(Vec::len).sum::<usize>(),
            runs.iter().map(|r| history_bytes(r)).sum::<usize>(),
            runs.iter().map(|r| history_bytes(r)).collect::<Vec<_>>(),
            runs.iter().map(|r| largest_payload(r)).max().unwrap_or(0),
        );

        // Every run's history replays on the current code (the last one
        // with its patch marker).
        for events in &runs {
            let run_id = run_id_of(events).context("a run id")?;
            replay(&history_json(&env, &id, &run_id).await?).await?;
        }
        Ok(())
    })
    .await
}

/// The encoding and data of the run's result in `temporal workflow show
/// --output json`.
fn completed_result(stdout: &[u8]) -> Result<(String, Vec<u8>)> {
    use base64::Engine;
    let decode = |text: &serde_json::Value| -> Result<Vec<u8>> {
        Ok(base64::engine::general_purpose::STANDARD
            .decode(text.as_str().context("a base64 string")?)?)
    };
    let shown: serde_json::Value = serde_json::from_slice(stdout)?;
    let payload = shown["events"]
        .as_array()
        .and_then(|events| events.last())
        .map(|event| &event["workflowExecutionCompletedEventAttributes"]["result"]["payloads"][0])
        .context("no result in the history")?;
    let encoding = String::from_utf8(decode(&payload["metadata"]["encoding"])?)?;
    Ok((encoding, decode(&payload["data"])?))
}

/// An agent that reads the 64 KB file `turns` times, then answers.
fn reading_agent(turns: usize) -> String {
    let mut toml = String::from(
        r#"
name = "t-long-reader"
max_turns = 500

[model]
provider = "scripted"
"#,
    );
    for _ in 0..turns {
        toml.push_str(
            r#"
[[model.steps]]
say = "Reading the file again."
calls = [{ tool = "read", arguments = { path = "big.txt" } }]
"#,
        );
    }
    toml.push_str(
        r#"
[[model.steps]]
say = "Read it all."

[[tools]]
name = "read"
builtin = { kind = "read_file", root = "." }
"#,
    );
    toml
}

/// A payload store in the folder `dir`.
fn folder_store(dir: &tempfile::TempDir) -> Result<countersign_payloads::PayloadStore> {
    Ok(countersign_payloads::PayloadStore::from_url(&format!(
        "file://{}",
        dir.path().display()
    ))?)
}

/// The files under `folder` of a folder store: (count, bytes), each checked
/// to be named by the SHA-256 of its bytes.
fn stored_files(folder: &std::path::Path) -> Result<(usize, usize)> {
    use sha2::Digest;
    let (mut count, mut bytes) = (0, 0);
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Ok((0, 0));
    };
    for entry in entries {
        let entry = entry?;
        let content = std::fs::read(entry.path())?;
        assert_eq!(
            entry.file_name().to_string_lossy(),
            hex::encode(sha2::Sha256::digest(&content)),
            "a stored object not named by its hash"
        );
        count += 1;
        bytes += content.len();
    }
    Ok((count, bytes))
}

/// The issue's done-when: with a payload store, an agent that reads 64 KB on
/// each of 200 turns completes; every run's history stays under 1 MB (the
/// transcript travels by reference, runs continue as new by bytes), and
/// what is stored (histories and objects) grows linearly with the turns.
#[tokio::test]
async fn with_a_payload_store_a_200_turn_run_completes_with_small_histories() -> Result<()> {
    const TURNS: usize = 200;
    const MAX_RUN_HISTORY_BYTES: usize = 1024 * 1024;
    let blobs = tempfile::tempdir()?;
    let store = folder_store(&blobs)?;
    let env = TestEnv::new("payload-store")
        .await?
        .with_payload_store(store.clone());
    std::fs::write(env.dir.path().join("big.txt"), big_text())?;
    env.with_worker(async {
        let agent = env.agent(&reading_agent(TURNS))?;
        let id = env.start(agent, "read it two hundred times").await?;
        let state = tokio::time::timeout(
            Duration::from_secs(600),
            env.approvals.wait_for_run(&id),
        )
        .await
        .context("the run did not end within 600 s")??;
        assert_eq!(state.final_answer, "Read it all.");
        // The client read the stored transcript: the whole conversation.
        assert!(state.stored_transcript.is_none());
        assert_eq!(state.transcript.len(), 1 + 2 * TURNS + 1);
        let results: Vec<_> = state
            .transcript
            .iter()
            .filter(|e| e.role == "tool")
            .collect();
        assert_eq!(results.len(), TURNS);
        assert!(results.iter().all(|r| !r.is_error && r.content == big_text()));

        let runs = histories(&env.client, &id).await?;
        let per_run: Vec<usize> = runs.iter().map(|r| history_bytes(r)).collect();
        for (events, bytes) in runs.iter().zip(&per_run) {
            let failed = events
                .iter()
                .filter(|e| e.event_type() == EventType::WorkflowTaskFailed)
                .count();
            assert_eq!(failed, 0, "no workflow task may fail");
            assert!(*bytes < MAX_RUN_HISTORY_BYTES, "a run's history of {bytes} bytes");
        }
        let history_total: usize = per_run.iter().sum();
        let largest = runs.iter().map(|r| largest_payload(r)).max().unwrap_or(0);
        assert!(
            largest < countersign_payloads::DEFAULT_THRESHOLD,
            "a payload of {largest} bytes stayed in history"
        );
        let (payload_objects, payload_bytes) = stored_files(&blobs.path().join("v0/d/sha256"))?;
        let (segments, segment_bytes) =
            stored_files(&blobs.path().join("v0/countersign/transcript/sha256"))?;
        // Every entry is stored once: the segments hold the transcript, a
        // little more than the 64 KB results.
        assert!(segments >= TURNS, "{segments} segments");
        assert!(
            (TURNS * FILE_BYTES..TURNS * (FILE_BYTES + 4096)).contains(&segment_bytes),
            "{segment_bytes} bytes of segments"
        );
        // Linear: each turn's result is in history twice (the tool's answer,
        // the next turn's input) and in the store once; this scripted agent
        // also sends its 200 steps (~30 KB) with every turn and every
        // continued run resolves it again. Quadratic growth (the whole
        // transcript per turn) would be ~100 times this.
        let total = history_total + payload_bytes + segment_bytes;
        eprintln!(
            "payload store, {TURNS} turns of {FILE_BYTES} bytes: {} runs, {} events, history {history_total} bytes \
             (largest run {} bytes, mean {}), largest payload in history {largest} bytes, \
             {segments} transcript segments of {segment_bytes} bytes, {payload_objects} stored payloads of \
             {payload_bytes} bytes; total {total} bytes = {} per turn",
            runs.len(),
            runs.iter().map(Vec::len).sum::<usize>(),
            per_run.iter().max().unwrap_or(&0),
            history_total / runs.len().max(1),
            total / TURNS,
        );

        assert!(total < TURNS * 5 * FILE_BYTES, "{total} bytes stored in all");

        // Every run's history replays with the codec.
        for run in &runs {
            let run_id = run_id_of(run).context("a run id")?;
            let json = history_json(&env, &id, &run_id).await?;
            crate::harness::replay_with(&json, Some(&store)).await?;
        }

        // `run show` reads the transcript through the store; without it the
        // run's entries before the stored point are named, not shown.
        let store_url = store.url().to_string();
        let shown = countersign(&["run", "show", &id, "--json", "--payload-store", &store_url]).await?;
        assert!(
            shown.status.success(),
            "{}",
            String::from_utf8_lossy(&shown.stderr)
        );
        let shown: serde_json::Value = serde_json::from_slice(&shown.stdout)?;
        assert_eq!(shown["finalAnswer"], "Read it all.");
        assert_eq!(
            shown["transcript"].as_array().map(Vec::len),
            Some(1 + 2 * TURNS + 1)
        );
        let blind = countersign(&["run", "show", &id]).await?;
        let text = String::from_utf8_lossy(&blind.stdout);
        assert!(blind.status.success(), "{}", String::from_utf8_lossy(&blind.stderr));
        assert!(
            text.contains("earlier entries are in the payload store"),
            "{text}"
        );
        Ok(())
    })
    .await
}

/// With a payload store, each model turn's input carries the reference to
/// the stored transcript and only the entries new since the last turn; the
/// run's history (patch marker `transcript-store`) is kept for replay.
#[tokio::test]
async fn model_turns_send_only_what_is_new() -> Result<()> {
    let blobs = tempfile::tempdir()?;
    let store = folder_store(&blobs)?;
    let env = TestEnv::new("transcript-store")
        .await?
        .with_payload_store(store.clone());
    std::fs::write(env.dir.path().join("big.txt"), "a small file")?;
    env.with_worker(async {
        let id = env
            .start(
                env.agent(&reading_agent(2))?,
                "the unique prompt, said once",
            )
            .await?;
        let state = env.result(&id).await?;
        assert_eq!(state.transcript.len(), 6, "{:#?}", state.transcript);
        let history = env.record_history(&id, "transcript_store").await?;
        // The prompt is in the run's input and in the first turn's input,
        // never again; later turns name the stored transcript.
        let events = histories(&env.client, &id).await?.concat();
        assert!(
            events
                .iter()
                .any(|e| e.event_type() == EventType::MarkerRecorded),
            "no patch marker"
        );
        let inputs: Vec<String> = events
            .iter()
            .filter_map(|e| match &e.attributes {
                Some(Attributes::ActivityTaskScheduledEventAttributes(a))
                    if a.activity_type
                        .as_ref()
                        .is_some_and(|t| t.name == "model_turn") =>
                {
                    a.input.as_ref().map(|p| {
                        p.payloads
                            .iter()
                            .map(|p| String::from_utf8_lossy(&p.data).into_owned())
                            .collect()
                    })
                }
                _ => None,
            })
            .collect();
        assert_eq!(inputs.len(), 3);
        assert!(inputs[0].contains("the unique prompt, said once"));
        for later in &inputs[1..] {
            assert!(!later.contains("the unique prompt, said once"), "{later}");
            assert!(later.contains("stored_transcript"), "{later}");
        }
        replay(&history).await
    })
    .await
}

/// A store with a 200-byte threshold moves the run's result out of history:
/// `run show` reads it with the store and says what is missing without;
/// `countersign serve`'s codec endpoint shows it to the `temporal` CLI.
#[tokio::test]
async fn stored_payloads_are_read_by_run_show_and_the_codec_endpoint() -> Result<()> {
    let blobs = tempfile::tempdir()?;
    let store = folder_store(&blobs)?.with_threshold(200);
    let env = TestEnv::new("payload-codec")
        .await?
        .with_payload_store(store.clone());
    std::fs::write(env.dir.path().join("big.txt"), big_text())?;
    env.with_worker(async {
        let id = env
            .start(env.agent(&reading_agent(2))?, "read it twice")
            .await?;
        let state = env.approvals.wait_for_run(&id).await?;
        assert_eq!(state.final_answer, "Read it all.");
        let runs = histories(&env.client, &id).await?;
        let largest = runs.iter().map(|r| largest_payload(r)).max().unwrap_or(0);
        assert!(
            largest < 1024,
            "a payload of {largest} bytes stayed in history"
        );
        for run in &runs {
            let run_id = run_id_of(run).context("a run id")?;
            let json = history_json(&env, &id, &run_id).await?;
            crate::harness::replay_with(&json, Some(&store)).await?;
        }

        let store_url = store.url().to_string();
        let shown =
            countersign(&["run", "show", &id, "--json", "--payload-store", &store_url]).await?;
        assert!(
            shown.status.success(),
            "{}",
            String::from_utf8_lossy(&shown.stderr)
        );
        let shown: serde_json::Value = serde_json::from_slice(&shown.stdout)?;
        assert_eq!(shown["finalAnswer"], "Read it all.");
        let blind = countersign(&["run", "show", &id, "--json"]).await?;
        assert!(
            !blind.status.success(),
            "read a stored state without the store"
        );
        assert!(
            String::from_utf8_lossy(&blind.stderr).contains("--payload-store"),
            "{}",
            String::from_utf8_lossy(&blind.stderr)
        );

        // The codec endpoint shows the `temporal` CLI the stored result.
        let state = crate::http_api::state(&env, "")?.with_payload_store(store.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let codec = format!("http://{}/codec", listener.local_addr()?);
        let served = countersign_server::app(state);
        tokio::spawn(async move { axum::serve(listener, served).await });
        let show = |auth: Option<String>| {
            let mut command = tokio::process::Command::new(
                countersign::devserver::temporal_cli().expect("the temporal CLI"),
            );
            command.args([
                "workflow",
                "show",
                "--workflow-id",
                &id,
                "--address",
                server_address(),
                "--output",
                "json",
                "--codec-endpoint",
                &codec,
            ]);
            if let Some(auth) = auth {
                command.args(["--codec-auth", &auth]);
            }
            command.stdin(std::process::Stdio::null()).output()
        };
        let decoded = show(Some(format!("Bearer {}", crate::http_api::BOB))).await?;
        assert!(
            decoded.status.success(),
            "{}",
            String::from_utf8_lossy(&decoded.stderr)
        );
        let (encoding, data) = completed_result(&decoded.stdout)?;
        assert_eq!(encoding, "json/plain");
        let result: serde_json::Value = serde_json::from_slice(&data)?;
        assert_eq!(result["finalAnswer"], "Read it all.");
        // Without the token the endpoint refuses, and the reference shows.
        let refused = show(None).await?;
        let shown = completed_result(&refused.stdout).ok();
        assert!(
            shown
                .as_ref()
                .is_none_or(|(encoding, _)| encoding == "json/protobuf"),
            "the codec endpoint answered without a token"
        );

        // The Web UI calls it from the browser: its origin gets CORS and
        // the dashboard session counts; any other origin gets neither.
        let result = runs
            .last()
            .and_then(|run| run.last())
            .and_then(|event| match &event.attributes {
                Some(Attributes::WorkflowExecutionCompletedEventAttributes(a)) => {
                    a.result.as_ref()?.payloads.first().cloned()
                }
                _ => None,
            })
            .context("the run's result payload")?;
        browser_calls_codec(&env, &store, &result).await
    })
    .await
}

/// What a browser gets from `/codec/decode`, by origin and credentials.
async fn browser_calls_codec(
    env: &TestEnv,
    store: &countersign_payloads::PayloadStore,
    reference: &temporalio_common::protos::temporal::api::common::v1::Payload,
) -> Result<()> {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use base64::Engine;
    use tower::ServiceExt;
    const WEB_UI: &str = "http://localhost:8233";
    let state =
        crate::http_api::state(env, &format!("[codec]\nweb_ui_origins = [\"{WEB_UI}\"]\n"))?
            .with_payload_store(store.clone());
    let session = state.sessions.issue_now(&state.config.reviewers[0]);
    let app = countersign_server::app(state);
    let encode = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
    let body = serde_json::json!({"payloads": [{
        "metadata": reference
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), encode(v)))
            .collect::<std::collections::BTreeMap<_, _>>(),
        "data": encode(&reference.data),
    }]})
    .to_string();
    let send = |method: &str, origin: &str, cookie: bool| {
        let mut request = Request::builder()
            .method(method)
            .uri("/codec/decode")
            .header(header::ORIGIN, origin)
            .header(header::CONTENT_TYPE, "application/json")
            .header("x-namespace", "default");
        if cookie {
            request = request.header(
                header::COOKIE,
                format!(
                    "{}={session}",
                    countersign_server::dashboard::SESSION_COOKIE
                ),
            );
        }
        let body = if method == "POST" {
            Body::from(body.clone())
        } else {
            Body::empty()
        };
        app.clone().oneshot(request.body(body).expect("a request"))
    };
    let allowed_origin = |response: &axum::response::Response| {
        response
            .headers()
            .get(header::ACCESS_CONTROL_ALLOW_ORIGIN)
            .map(|v| v.to_str().unwrap_or_default().to_string())
    };

    let preflight = send("OPTIONS", WEB_UI, false).await?;
    assert_eq!(preflight.status(), StatusCode::NO_CONTENT);
    assert_eq!(allowed_origin(&preflight).as_deref(), Some(WEB_UI));
    let foreign = send("OPTIONS", "http://evil.example", false).await?;
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert_eq!(allowed_origin(&foreign), None);

    let decoded = send("POST", WEB_UI, true).await?;
    assert_eq!(decoded.status(), StatusCode::OK);
    assert_eq!(allowed_origin(&decoded).as_deref(), Some(WEB_UI));
    let answer: serde_json::Value =
        serde_json::from_slice(&axum::body::to_bytes(decoded.into_body(), 1 << 24).await?)?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(answer["payloads"][0]["data"].as_str().context("data")?)?;
    let result: serde_json::Value = serde_json::from_slice(&data)?;
    assert_eq!(result["finalAnswer"], "Read it all.");

    // The session cookie counts only from the listed origin.
    let cross = send("POST", "http://evil.example", true).await?;
    assert_eq!(cross.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(allowed_origin(&cross), None);
    let anonymous = send("POST", WEB_UI, false).await?;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(allowed_origin(&anonymous).as_deref(), Some(WEB_UI));
    Ok(())
}

#[tokio::test]
async fn a_call_with_oversized_arguments_is_refused_before_any_approval() -> Result<()> {
    use countersign_worker::workflow::payload_limit::MAX_CALL_ARGUMENTS_BYTES;
    let env = TestEnv::new("payload-arguments").await?;
    let text = "x".repeat(MAX_CALL_ARGUMENTS_BYTES + 1024);
    let agent = format!(
        r#"
name = "t-big-arguments"

[model]
provider = "scripted"

[[model.steps]]
say = "Announcing a lot."
calls = [{{ tool = "announce", arguments = {{ text = "{text}" }} }}]

[[model.steps]]
say = "Done: {{last_error}}"

[[tools]]
name = "announce"
builtin = {{ kind = "http_post", url = "{{sink}}/announce" }}
"#
    );
    env.with_worker(async {
        let id = env.start(env.agent(&agent)?, "announce it").await?;
        let state = env.result(&id).await?;
        // Refused before the policy: no approval opened, nothing sent.
        assert!(state.approvals.is_empty(), "{:?}", state.approvals);
        assert!(env.sink.received("/announce").is_empty());
        let result = state
            .transcript
            .iter()
            .find(|e| e.role == "tool")
            .context("a tool result")?;
        assert!(result.is_error);
        assert!(
            result.content.contains("arguments are")
                && result
                    .content
                    .contains(&MAX_CALL_ARGUMENTS_BYTES.to_string()),
            "{}",
            result.content
        );
        assert!(state.final_answer.starts_with("Done: the call's arguments"));
        // Its history (with the patch marker) replays.
        let json = env
            .client
            .get_workflow_handle::<countersign_approvals::AgentRunWorkflow>(&id)
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .to_json()
            .await?;
        replay(&json).await
    })
    .await
}
