//! Observability against the real dev server: `GET /metrics` of
//! `countersign serve`'s router (the pending-approvals gauge from Temporal
//! visibility, decisions by channel and outcome, the decision latency
//! histogram, and what is served when Temporal is gone), and the JSON log
//! lines of the `countersign` binary.

use crate::harness::*;
use anyhow::{Context, Result, ensure};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use countersign_proto::ApprovalState;
use countersign_server::config::token_sha256;
use countersign_server::{AppState, ServerConfig};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tower::ServiceExt;

const BOB: &str = "token-bob-observability";

/// Pays invoice 11 (money: always gated); anyone configured may decide.
fn pay_agent(name: &str) -> String {
    format!(
        r#"
name = "{name}"
approval_expiry = "1h"

[model]
provider = "scripted"

[[model.steps]]
say = "Paying invoice 11."
calls = [{{ tool = "pay", arguments = {{ to = "acme", amount = 80, currency = "EUR" }} }}]
on_error = "report"

[[model.steps]]
say = "Paid: {{last_result}}"

[[model.steps]]
id = "report"
say = "Could not: {{last_error}}"

[[tools]]
name = "pay"
builtin = {{ kind = "payment_request", url = "{{sink}}/payments" }}
"#
    )
}

fn state(approvals: countersign_approvals::Approvals, env: &TestEnv) -> Result<AppState> {
    let config = format!(
        "[[reviewers]]\nid = \"bob@example.com\"\ntoken_sha256 = \"{}\"\ngroups = [\"finance\"]\n",
        token_sha256(BOB)
    );
    Ok(AppState::new(
        approvals,
        ServerConfig::from_toml(&config, Path::new("server.toml"))?,
        env.task_queue.clone(),
    )?)
}

fn server(approvals: countersign_approvals::Approvals, env: &TestEnv) -> Result<Router> {
    Ok(countersign_server::app(state(approvals, env)?))
}

/// `GET /metrics` through the router (its counters are shared by clones).
async fn scrape(app: &Router) -> Result<String> {
    let response = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty())?)
        .await?;
    ensure!(response.status() == StatusCode::OK, "{}", response.status());
    let content_type = response.headers()[header::CONTENT_TYPE]
        .to_str()?
        .to_string();
    ensure!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    Ok(String::from_utf8(bytes.to_vec())?)
}

/// The value of the sample `series` (name and labels exactly), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn form(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_') {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn metrics_gauge_pending_approvals_and_count_and_time_decisions_by_channel() -> Result<()> {
    let env = TestEnv::new("metrics").await?;
    let state = state(env.approvals.clone(), &env)?;
    // Bob's dashboard session, as `POST /login` would sign it.
    let session = state.sessions.issue_now(&state.config.reviewers[0]);
    let app = countersign_server::app(state);
    // The gauge is namespace-wide: this test's runs have an agent of their own.
    let agent = unique("t-metrics");
    let gauge = format!("countersign_pending_approvals{{agent=\"{agent}\",tool=\"pay\"}}");
    env.with_worker(async {
        let by_api = env
            .start(env.agent(&pay_agent(&agent))?, "pay invoice 11")
            .await?;
        let by_dashboard = env
            .start(env.agent(&pay_agent(&agent))?, "pay invoice 11")
            .await?;
        let api_gate = env.pending(&by_api, 1).await?.remove(0);
        let dashboard_gate = env.pending(&by_dashboard, 1).await?.remove(0);

        // Before: two approvals wait (visibility may lag the runs a little).
        let before = wait_for("the pending gauge at 2", || async {
            let text = scrape(&app).await.ok()?;
            (sample(&text, &gauge) == Some(2.0)).then_some(text)
        })
        .await?;
        assert_eq!(
            sample(&before, "countersign_pending_approvals_up"),
            Some(1.0)
        );
        assert!(before.contains("# TYPE countersign_pending_approvals gauge\n"));
        assert!(before.contains("# TYPE countersign_decision_latency_seconds histogram\n"));
        for channel in ["api", "dashboard", "slack"] {
            let count =
                format!("countersign_decision_latency_seconds_count{{channel=\"{channel}\"}}");
            assert_eq!(sample(&before, &count), Some(0.0), "{before}");
        }

        // The API approves one...
        let response = app
            .clone()
            .oneshot(
                Request::post(format!("/approvals/{}/approve", api_gate.approval_id))
                    .header(header::AUTHORIZATION, format!("Bearer {BOB}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(r#"{"reason":"metrics test"}"#))?,
            )
            .await?;
        assert_eq!(response.status(), StatusCode::OK);
        // ...a second approval of it is refused (already decided)...
        let response = app
            .clone()
            .oneshot(
                Request::post(format!("/approvals/{}/deny", api_gate.approval_id))
                    .header(header::AUTHORIZATION, format!("Bearer {BOB}"))
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(r#"{"reason":"too late"}"#))?,
            )
            .await?;
        assert_eq!(response.status(), StatusCode::CONFLICT);
        // ...and the dashboard denies the other, as bob's session.
        let response = app
            .clone()
            .oneshot(
                Request::post(format!(
                    "/ui/approvals/{}/deny",
                    dashboard_gate.approval_id.replace('~', "%7E")
                ))
                .header(header::HOST, "127.0.0.1:8080")
                .header(header::ORIGIN, "http://127.0.0.1:8080")
                .header("sec-fetch-site", "same-origin")
                .header(header::COOKIE, format!("countersign_session={session}"))
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .body(Body::from(form(&[
                    ("csrf", &countersign_server::dashboard::csrf_token(&session)),
                    ("reason", "not this month"),
                ])))?,
            )
            .await?;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);

        let paid = env.result(&by_api).await?;
        assert_eq!(approval_of(&paid, "pay").state(), ApprovalState::Approved);
        let denied = env.result(&by_dashboard).await?;
        assert_eq!(approval_of(&denied, "pay").state(), ApprovalState::Denied);
        assert_eq!(env.sink.received("/payments").len(), 1);

        // After: nothing of this agent waits, and each decision was counted
        // under its channel, the accepted ones timed from requested_at.
        let after = wait_for("the pending gauge to drop this agent", || async {
            let text = scrape(&app).await.ok()?;
            sample(&text, &gauge).is_none().then_some(text)
        })
        .await?;
        for (series, value) in [
            ("countersign_pending_approvals_up", 1.0),
            (
                "countersign_decisions_total{channel=\"api\",outcome=\"approved\"}",
                1.0,
            ),
            (
                "countersign_decisions_total{channel=\"api\",outcome=\"refused\"}",
                1.0,
            ),
            (
                "countersign_decisions_total{channel=\"dashboard\",outcome=\"denied\"}",
                1.0,
            ),
            (
                "countersign_decisions_total{channel=\"slack\",outcome=\"approved\"}",
                0.0,
            ),
            (
                "countersign_decision_latency_seconds_count{channel=\"api\"}",
                1.0,
            ),
            (
                "countersign_decision_latency_seconds_count{channel=\"dashboard\"}",
                1.0,
            ),
            (
                "countersign_decision_latency_seconds_bucket{channel=\"api\",le=\"+Inf\"}",
                1.0,
            ),
            // Decided within seconds of the request: in the first buckets.
            (
                "countersign_decision_latency_seconds_bucket{channel=\"api\",le=\"60\"}",
                1.0,
            ),
        ] {
            assert_eq!(sample(&after, series), Some(value), "{series} in\n{after}");
        }
        let sum = sample(
            &after,
            "countersign_decision_latency_seconds_sum{channel=\"api\"}",
        )
        .context("no latency sum")?;
        assert!((0.0..60.0).contains(&sum), "{sum}");
        Ok(())
    })
    .await
}

/// A TCP proxy to the dev server that can be cut: every connection and the
/// listener go away at once.
struct Proxy {
    address: String,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: &str) -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?.to_string();
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let upstream = upstream.to_string();
        let connections = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let copy = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections.lock().unwrap().push(copy);
            }
        });
        tasks.lock().unwrap().push(accept);
        Ok(Self { address, tasks })
    }

    fn cut(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

#[tokio::test]
async fn metrics_are_served_when_temporal_is_unreachable() -> Result<()> {
    let env = TestEnv::new("metrics-down").await?;
    let proxy = Proxy::start(server_address()).await?;
    let client = countersign::devserver::connect(&proxy.address).await?;
    let app = server(countersign_approvals::Approvals::new(client), &env)?;
    let up = scrape(&app).await?;
    assert_eq!(
        sample(&up, "countersign_pending_approvals_up"),
        Some(1.0),
        "{up}"
    );

    proxy.cut();
    let started = Instant::now();
    let down = scrape(&app).await?;
    // Bounded: the visibility timeout, plus a little.
    assert!(
        started.elapsed()
            < countersign_server::metrics::PENDING_SCRAPE_TIMEOUT + Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        sample(&down, "countersign_pending_approvals_up"),
        Some(0.0),
        "{down}"
    );
    assert!(!down.contains("countersign_pending_approvals{"), "{down}");
    // The rest is there as usual, counting the first scrape too.
    assert_eq!(
        sample(
            &down,
            "countersign_http_requests_total{route=\"/metrics\",status=\"200\"}"
        ),
        Some(1.0),
        "{down}"
    );
    assert!(down.contains("countersign_decisions_total{channel=\"api\",outcome=\"approved\"} 0\n"));
    assert!(down.contains("# TYPE countersign_decision_latency_seconds histogram\n"));
    Ok(())
}

#[tokio::test]
async fn json_logs_carry_the_approval_workflow_and_run_ids() -> Result<()> {
    let env = TestEnv::new("json-logs").await?;
    env.with_worker(async {
        let id = env
            .start(env.agent(&pay_agent("t-json-logs"))?, "pay invoice 11")
            .await?;
        let gate = env.pending(&id, 1).await?.remove(0);
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args(["approvals", "approve", &gate.approval_id])
            .args(["--reason", "json logs", "--reviewer", "bob@example.com"])
            .env("TEMPORAL_ADDRESS", server_address())
            .env("TEMPORAL_NAMESPACE", "default")
            .env_remove("TEMPORAL_PROFILE")
            .env("COUNTERSIGN_LOG_FORMAT", "json")
            .env("COUNTERSIGN_LOG", "info")
            .output()
            .await?;
        let stderr = String::from_utf8(output.stderr)?;
        ensure!(output.status.success(), "{stderr}");
        // Every line on stderr is one JSON object...
        let lines = stderr
            .lines()
            .map(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .with_context(|| format!("not a JSON line: {line}"))
            })
            .collect::<Result<Vec<_>>>()?;
        for line in &lines {
            for key in ["timestamp", "level", "target", "message"] {
                ensure!(line[key].is_string(), "no {key} in {line}");
            }
        }
        // ...and the decision's line names the approval, its workflow and run.
        let answered = lines
            .iter()
            .find(|l| l["message"] == "decision answered")
            .with_context(|| format!("no `decision answered` line in\n{stderr}"))?;
        assert_eq!(answered["level"], "INFO");
        assert_eq!(answered["approval_id"], gate.approval_id.as_str());
        assert_eq!(answered["workflow_id"], id.as_str());
        assert_eq!(answered["run_id"], gate.run_id.as_str());
        assert!(!gate.run_id.is_empty());
        assert_eq!(answered["reviewer"], "bob@example.com");
        assert_eq!(answered["state"], "APPROVAL_STATE_APPROVED");
        assert_eq!(answered["spans"], serde_json::json!(["decide"]));
        // The data on stdout is untouched: the run's answer.
        assert!(String::from_utf8(output.stdout)?.contains("approved by bob@example.com"));

        // `--log-format text` (the flag beats the variable) is not JSON.
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
            .args([
                "--log-format",
                "text",
                "approvals",
                "show",
                &gate.approval_id,
            ])
            .env("TEMPORAL_ADDRESS", server_address())
            .env("TEMPORAL_NAMESPACE", "default")
            .env_remove("TEMPORAL_PROFILE")
            .env("COUNTERSIGN_LOG_FORMAT", "json")
            .env("COUNTERSIGN_LOG", "countersign=debug")
            .output()
            .await?;
        ensure!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        env.result(&id).await?;
        Ok(())
    })
    .await
}
