//! Large payloads (issue 16): a run whose transcript outgrows Temporal's
//! payload limit ends as Failed with a message saying what to change,
//! instead of failing workflow tasks forever.

use crate::harness::{TestEnv, countersign, replay, server_address};
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

/// The histories of every run of a workflow id, first run first: the run
/// continues as new when the server suggests it (its history passed the
/// dev server's suggestion size), so one workflow id may span several runs.
async fn histories(env: &TestEnv, id: &str) -> Result<Vec<Vec<HistoryEvent>>> {
    let mut runs = Vec::new();
    let mut run_id: Option<String> = None;
    // Bounded: these tests' runs continue as new a few times at most.
    for _ in 0..50 {
        let info = WorkflowExecutionInfo::builder()
            .namespace("default")
            .workflow_id(id)
            .maybe_run_id(run_id.clone())
            .build();
        let events = info
            .bind_untyped(env.client.clone())
            .fetch_history(WorkflowFetchHistoryOptions::default())
            .into_events()
            .await?;
        let previous = match events.first().and_then(|e| e.attributes.as_ref()) {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                a.continued_execution_run_id.clone()
            }
            _ => String::new(),
        };
        runs.push(events);
        if previous.is_empty() {
            runs.reverse();
            return Ok(runs);
        }
        run_id = Some(previous);
    }
    bail!("more than 50 runs of {id}")
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

/// The protobuf size of a history: what Temporal stores for it.
fn history_bytes(events: &[HistoryEvent]) -> usize {
    use prost::Message;
    events.iter().map(Message::encoded_len).sum()
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

        let runs = histories(&env, &id).await?;
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

/// The largest payload (protobuf bytes) in the events that carry the run's
/// data: its input and result, activity inputs and results.
fn largest_payload(events: &[HistoryEvent]) -> usize {
    use prost::Message;
    use temporalio_common::protos::temporal::api::common::v1::Payloads;
    let sizes = |payloads: &Option<Payloads>| -> Vec<usize> {
        payloads
            .iter()
            .flat_map(|p| p.payloads.iter().map(Message::encoded_len))
            .collect()
    };
    events
        .iter()
        .flat_map(|e| match &e.attributes {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => sizes(&a.input),
            Some(Attributes::WorkflowExecutionCompletedEventAttributes(a)) => sizes(&a.result),
            Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => sizes(&a.input),
            Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => sizes(&a.result),
            _ => vec![],
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn with_a_payload_store_a_long_run_completes_with_a_small_history() -> Result<()> {
    const TURNS: usize = 30;
    let blobs = tempfile::tempdir()?;
    let store = countersign_payloads::PayloadStore::from_url(&format!(
        "file://{}",
        blobs.path().display()
    ))?;
    let env = TestEnv::new("payload-store")
        .await?
        .with_payload_store(store.clone());
    std::fs::write(env.dir.path().join("big.txt"), big_text())?;
    env.with_worker(async {
        let agent = env.agent(&reading_agent(TURNS))?;
        let id = env.start(agent, "read it thirty times").await?;
        let state = tokio::time::timeout(
            Duration::from_secs(180),
            env.approvals.wait_for_run(&id),
        )
        .await
        .context("the run did not end within 180 s")??;
        assert_eq!(state.final_answer, "Read it all.");
        let results: Vec<_> = state
            .transcript
            .iter()
            .filter(|e| e.role == "tool")
            .collect();
        assert_eq!(results.len(), TURNS);
        assert!(results.iter().all(|r| !r.is_error && r.content == big_text()));
        // Past the limit a run without a store has.
        let transcript = countersign_worker::workflow::payload_limit::serialized_size(
            &state.transcript,
        );
        assert!(transcript > MAX_PAYLOAD_BYTES, "{transcript}");

        let runs = histories(&env, &id).await?;
        let events: Vec<HistoryEvent> = runs.iter().flatten().cloned().collect();
        assert_eq!(
            events
                .iter()
                .filter(|e| e.event_type() == EventType::WorkflowTaskFailed)
                .count(),
            0
        );
        let bytes = history_bytes(&events);
        // Linear in the turns: each tool result (64 KB, under the store's
        // threshold) stays inline; transcripts travel as references.
        assert!(
            bytes < TURNS * (FILE_BYTES + 16 * 1024),
            "history of {bytes} bytes"
        );
        let largest = largest_payload(&events);
        assert!(
            largest < countersign_payloads::DEFAULT_THRESHOLD,
            "a payload of {largest} bytes stayed in history"
        );

        // The blobs are in the folder, each under the SHA-256 of its bytes.
        let dir = blobs.path().join("v0/d/sha256");
        let mut stored = 0;
        let mut stored_bytes = 0;
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let content = std::fs::read(entry.path())?;
            use sha2::Digest;
            assert_eq!(
                entry.file_name().to_string_lossy(),
                hex::encode(sha2::Sha256::digest(&content))
            );
            stored += 1;
            stored_bytes += content.len();
        }
        assert!(stored >= TURNS - 2, "{stored} blobs");
        eprintln!(
            "payload store: {TURNS} turns, {} runs, {} events, {bytes} history bytes, largest payload in history {largest} bytes, {stored} blobs of {stored_bytes} bytes",
            runs.len(),
            events.len()
        );

        // Every run's history replays with the codec, which reads the same blobs.
        for run in &runs {
            let run_id = run_id_of(run).context("a run id")?;
            let json = history_json(&env, &id, &run_id).await?;
            crate::harness::replay_with(&json, Some(&store)).await?;
        }

        // `run show` reads through the store; without it, the stored state
        // cannot be read.
        let store_url = store.url().to_string();
        let shown = countersign(&["run", "show", &id, "--json", "--payload-store", &store_url]).await?;
        assert!(
            shown.status.success(),
            "{}",
            String::from_utf8_lossy(&shown.stderr)
        );
        let shown: serde_json::Value = serde_json::from_slice(&shown.stdout)?;
        assert_eq!(shown["finalAnswer"], "Read it all.");
        let blind = countersign(&["run", "show", &id, "--json"]).await?;
        assert!(!blind.status.success(), "read a stored state without the store");
        assert!(
            String::from_utf8_lossy(&blind.stderr).contains("--payload-store"),
            "{}",
            String::from_utf8_lossy(&blind.stderr)
        );
        eprintln!(
            "run show without the store: {}",
            String::from_utf8_lossy(&blind.stderr).trim()
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
            shown.as_ref().is_none_or(|(encoding, _)| encoding == "json/protobuf"),
            "the codec endpoint answered without a token"
        );
        Ok(())
    })
    .await
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
