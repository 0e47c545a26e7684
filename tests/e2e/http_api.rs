//! The HTTP API against the real dev server: `app()` driven with `oneshot`
//! for the edges, a listening server (reqwest) for approve-with-edits, and
//! the `countersign serve` / `countersign token new` binaries end to end.

use crate::harness::*;
use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use countersign_proto::{ApprovalState, RunStatus};
use countersign_server::config::token_sha256;
use countersign_server::{AppState, ServerConfig};
use countersign_worker::AgentRegistry;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use tower::ServiceExt;

/// In `finance` on the server and in the agent's `finance` group.
pub(crate) const BOB: &str = "token-bob";
/// Also in `finance` on both sides.
const DAVE: &str = "token-dave";
/// In `marketing` only: the server refuses her decisions (403).
const CAROL: &str = "token-carol";
/// In `finance` on the server, but not a member of the agent's group: the
/// run refuses her decisions (403 from the run's validator).
const ERIN: &str = "token-erin";

/// Pays invoice 7 (money: always gated) for approvers in `finance`.
const PAY_AGENT: &str = r#"
name = "t-http-pay"
approval_expiry = "1h"
approvers = ["finance"]

[groups]
finance = ["bob@example.com", "dave@example.com"]

[model]
provider = "scripted"

[[model.steps]]
say = "Paying invoice 7."
calls = [{ tool = "pay", arguments = { to = "acme", amount = 120, currency = "EUR" } }]
on_error = "stopped"

[[model.steps]]
say = "Paid: {last_result}"

[[model.steps]]
id = "stopped"
say = "Stopped: {last_error}"

[[tools]]
name = "pay"
builtin = { kind = "payment_request", url = "{sink}/payments" }
"#;

/// Posts to the team (write_external: gated in an autonomous run), for anyone.
const ANNOUNCE_AGENT: &str = r#"
name = "t-http-announce"
approval_expiry = "1h"

[model]
provider = "scripted"

[[model.steps]]
say = "Announcing."
calls = [{ tool = "announce", arguments = { text = "release 1.4" } }]
on_error = "stopped"

[[model.steps]]
say = "Announced."

[[model.steps]]
id = "stopped"
say = "Stopped: {last_error}"

[[tools]]
name = "announce"
builtin = { kind = "http_post", url = "{sink}/announce" }
"#;

/// The server config of these tests; `runs` is the `[runs]` section.
pub(crate) fn state(env: &TestEnv, runs: &str) -> Result<AppState> {
    let mut text = String::new();
    for (id, token, groups) in [
        ("bob@example.com", BOB, r#"["finance"]"#),
        ("dave@example.com", DAVE, r#"["finance"]"#),
        ("carol@example.com", CAROL, r#"["marketing"]"#),
        ("erin@example.com", ERIN, r#"["finance"]"#),
    ] {
        text.push_str(&format!(
            "[[reviewers]]\nid = \"{id}\"\ntoken_sha256 = \"{}\"\ngroups = {groups}\n\n",
            token_sha256(token)
        ));
    }
    text.push_str(runs);
    let config = ServerConfig::from_toml(&text, Path::new("server.toml"))?;
    Ok(AppState::new(
        env.approvals.clone(),
        config,
        env.task_queue.clone(),
    )?)
}

/// An answer: status, content type, JSON body (`Null` when not JSON) and text.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    content_type: String,
    json: Value,
    text: String,
}

impl Answer {
    /// Asserts a problem+json answer with `status` and a detail; returns the detail.
    pub(crate) fn problem(&self, status: StatusCode) -> &str {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(self.content_type, "application/problem+json", "{self:?}");
        assert_eq!(self.json["status"], status.as_u16(), "{self:?}");
        let detail = self.json["detail"].as_str().unwrap_or_default();
        assert!(!detail.is_empty(), "{self:?}");
        detail
    }
}

/// What a request carries.
pub(crate) enum Payload<'a> {
    None,
    /// Bytes sent as `application/json`.
    Json(&'a [u8]),
    /// Bytes with no content type.
    Raw(&'a [u8]),
}

/// Sends one request through the router (cloned: its metrics are shared).
pub(crate) async fn call(
    app: &Router,
    method: &str,
    uri: &str,
    token: Option<&str>,
    payload: Payload<'_>,
) -> Result<Answer> {
    let mut request = Request::builder().method(method).uri(uri);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let body = match payload {
        Payload::None => Body::empty(),
        Payload::Json(bytes) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(bytes.to_vec())
        }
        Payload::Raw(bytes) => Body::from(bytes.to_vec()),
    };
    let response = app.clone().oneshot(request.body(body)?).await?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    Ok(Answer {
        status,
        content_type,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text: String::from_utf8_lossy(&bytes).into_owned(),
    })
}

fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("JSON")
}

#[tokio::test]
async fn http_api_refuses_bad_requests_with_problems_and_decides_nothing() -> Result<()> {
    let env = TestEnv::new("http-edges").await?;
    let app = countersign_server::app(state(&env, "")?);
    env.with_worker(async {
        let id = env.start(env.agent(PAY_AGENT)?, "pay invoice 7").await?;
        let gate = env.pending(&id, 1).await?.remove(0);
        let approve_uri = format!("/approvals/{}/approve", gate.approval_id);
        let deny_uri = format!("/approvals/{}/deny", gate.approval_id);

        // Who is calling: no token, an unknown one, another scheme.
        call(&app, "GET", "/approvals", None, Payload::None)
            .await?
            .problem(StatusCode::UNAUTHORIZED);
        call(&app, "GET", "/approvals", Some("nope"), Payload::None)
            .await?
            .problem(StatusCode::UNAUTHORIZED);
        let basic = app
            .clone()
            .oneshot(
                Request::get("/approvals")
                    .header(header::AUTHORIZATION, "Basic Ym9iOnNlY3JldA==")
                    .body(Body::empty())?,
            )
            .await?;
        assert_eq!(basic.status(), StatusCode::UNAUTHORIZED);
        call(&app, "POST", &approve_uri, None, Payload::Json(b"{}"))
            .await?
            .problem(StatusCode::UNAUTHORIZED);

        // Unknown and malformed ids: 404, for reads and decisions.
        for uri in [
            "/approvals/nope~12345678",
            "/approvals/no-tilde-here",
            "/approvals/nope~12345678/approve",
            "/approvals/no-tilde-here/deny",
        ] {
            let (method, payload) = if uri.ends_with("/approve") {
                ("POST", Payload::Json(b"{}"))
            } else if uri.ends_with("/deny") {
                ("POST", Payload::Json(br#"{"reason": "no"}"#))
            } else {
                ("GET", Payload::None)
            };
            call(&app, method, uri, Some(BOB), payload)
                .await?
                .problem(StatusCode::NOT_FOUND);
        }

        // Bad input: 400 problems that say what is wrong.
        let bad_denials: [(Payload, &str); 8] = [
            (Payload::Json(br#"{}"#), "missing field `reason`"),
            (Payload::Json(br#"{"reason": "  "}"#), "reason is required"),
            (Payload::Json(br#"{"reason": 5}"#), "invalid type: integer"),
            (Payload::Json(br#"{"reason": "x""#), "invalid JSON body"),
            (
                Payload::Json(b"{\"reason\": \"\xff\xfe\"}"),
                "not valid UTF-8",
            ),
            (Payload::Json(b""), "invalid JSON body"),
            (
                Payload::Raw(br#"{"reason": "fine"}"#),
                "Content-Type: application/json",
            ),
            (
                Payload::Json(br#"{"reason": "ok", "reviewer": "mallory@example.com"}"#),
                "unknown field `reviewer`",
            ),
        ];
        for (payload, says) in bad_denials {
            let answer = call(&app, "POST", &deny_uri, Some(BOB), payload).await?;
            let detail = answer.problem(StatusCode::BAD_REQUEST);
            assert!(detail.contains(says), "{detail:?} should say {says:?}");
        }
        for (body, says) in [
            (
                json!({"editedArguments": [1, 2]}),
                "editedArguments must be a JSON object",
            ),
            (json!({"argumentsSha256": "0000"}), "64 hex digits"),
            (json!({"reason": ["a"]}), "invalid type: sequence"),
            (json!({"forRestOfRun": "yes"}), "invalid type: string"),
            (
                json!({"reviewer": "mallory@example.com"}),
                "unknown field `reviewer`",
            ),
        ] {
            let answer = call(
                &app,
                "POST",
                &approve_uri,
                Some(BOB),
                Payload::Json(&json_bytes(&body)),
            )
            .await?;
            let detail = answer.problem(StatusCode::BAD_REQUEST);
            assert!(detail.contains(says), "{detail:?} should say {says:?}");
        }
        for uri in ["/approvals?status=decided", "/approvals?colour=red"] {
            call(&app, "GET", uri, Some(BOB), Payload::None)
                .await?
                .problem(StatusCode::BAD_REQUEST);
        }

        // Outside the approver groups: refused by the server, naming who may decide...
        let detail = call(
            &app,
            "POST",
            &approve_uri,
            Some(CAROL),
            Payload::Json(b"{}"),
        )
        .await?
        .problem(StatusCode::FORBIDDEN)
        .to_string();
        // ...as the run resolved them (the agent's [groups]), not the server config.
        assert!(
            detail.contains("finance") && detail.contains("bob@example.com"),
            "{detail}"
        );
        call(
            &app,
            "POST",
            &deny_uri,
            Some(CAROL),
            Payload::Json(br#"{"reason": "no"}"#),
        )
        .await?
        .problem(StatusCode::FORBIDDEN);
        // The server config's groups do not decide: erin is in `finance`
        // there, but the agent's [groups] (the run's policy) does not list her.
        let detail = call(&app, "POST", &approve_uri, Some(ERIN), Payload::None)
            .await?
            .problem(StatusCode::FORBIDDEN)
            .to_string();
        assert!(
            detail.contains("erin@example.com may not decide"),
            "{detail}"
        );

        // None of that decided anything or paid anything.
        let run = call(
            &app,
            "GET",
            &format!("/runs/{id}"),
            Some(BOB),
            Payload::None,
        )
        .await?;
        assert_eq!(run.status, StatusCode::OK, "{}", run.text);
        // (`RunState.status` stays RUNNING while a call waits; the search
        // attribute `CountersignStatus` is what says AwaitingApproval.)
        assert_eq!(run.json["status"], "RUN_STATUS_RUNNING");
        assert_eq!(run.json["approvals"][0]["state"], "APPROVAL_STATE_PENDING");
        assert!(
            run.json["decisions"]
                .as_array()
                .is_none_or(|d| d.iter().all(|d| d["accepted"] != true)),
            "{}",
            run.json["decisions"]
        );
        let shown = call(
            &app,
            "GET",
            &format!("/approvals/{}", gate.approval_id),
            Some(CAROL),
            Payload::None,
        )
        .await?;
        assert_eq!(shown.status, StatusCode::OK);
        assert_eq!(shown.json["state"], "APPROVAL_STATE_PENDING");
        assert_eq!(shown.json["approverGroups"], json!(["finance"]));
        assert!(env.sink.received("/payments").is_empty());

        // A denial with a reason works; its retry gets the same answer; an
        // approval after it conflicts, from the same reviewer or another.
        let reason = br#"{"reason": "wrong supplier"}"#;
        let denied = call(&app, "POST", &deny_uri, Some(BOB), Payload::Json(reason)).await?;
        assert_eq!(denied.status, StatusCode::OK, "{}", denied.text);
        assert_eq!(denied.json["state"], "APPROVAL_STATE_DENIED");
        assert_eq!(denied.json["accepted"], true);
        let again = call(&app, "POST", &deny_uri, Some(BOB), Payload::Json(reason)).await?;
        assert_eq!((again.status, &again.json), (StatusCode::OK, &denied.json));
        call(&app, "POST", &approve_uri, Some(BOB), Payload::None)
            .await?
            .problem(StatusCode::CONFLICT);
        let late = call(&app, "POST", &approve_uri, Some(DAVE), Payload::None).await?;
        late.problem(StatusCode::CONFLICT);
        // The refusal's code, for programs, beside the detail.
        assert_eq!(
            late.json["code"], "REFUSAL_CODE_ALREADY_DECIDED",
            "{late:?}"
        );

        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert!(
            state.final_answer.contains("wrong supplier"),
            "{}",
            state.final_answer
        );
        assert!(env.sink.received("/payments").is_empty());
        let accepted: Vec<_> = state.decisions.iter().filter(|d| d.accepted).collect();
        assert_eq!(accepted.len(), 1, "{:?}", state.decisions);
        assert_eq!(accepted[0].reviewer, "bob@example.com");
        assert_eq!(accepted[0].reason, "wrong supplier");
        Ok(())
    })
    .await
}

#[tokio::test]
async fn http_api_approves_with_edits_once_over_a_listening_server() -> Result<()> {
    let env = TestEnv::new("http-edits").await?;
    let state = state(&env, "")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let served = countersign_server::app(state);
    tokio::spawn(async move { axum::serve(listener, served).await });
    let http = reqwest::Client::new();
    env.with_worker(async {
        let id = env.start(env.agent(PAY_AGENT)?, "pay invoice 7").await?;
        let gate = env.pending(&id, 1).await?.remove(0);
        let approve_url = format!("{base}/approvals/{}/approve", gate.approval_id);
        let post = |token: &'static str, body: Value| {
            http.post(&approve_url)
                .bearer_auth(token)
                .json(&body)
                .send()
        };

        // What the reviewer saw is no longer what waits: 409.
        let stale = post(BOB, json!({"argumentsSha256": "ab".repeat(32)})).await?;
        assert_eq!(stale.status(), StatusCode::CONFLICT);
        assert_eq!(
            stale.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(stale.text().await?.contains("stale"));
        // Edits that do not fit the tool's schema: 422.
        let misfit = post(
            BOB,
            json!({"editedArguments": {"to": "acme", "amount": -1, "currency": "EUR"}}),
        )
        .await?;
        assert_eq!(misfit.status(), StatusCode::UNPROCESSABLE_ENTITY);
        // A body naming another reviewer is refused outright.
        let spoof = post(
            BOB,
            json!({"reason": "ok", "reviewer": "mallory@example.com"}),
        )
        .await?;
        assert_eq!(spoof.status(), StatusCode::BAD_REQUEST);

        // Approve with edits, then retry the very same request.
        let body = json!({
            "reason": "half now",
            "editedArguments": {"to": "acme", "amount": 60, "currency": "EUR"},
            "argumentsSha256": gate.arguments_sha256,
        });
        let first = post(BOB, body.clone()).await?;
        assert_eq!(first.status(), StatusCode::OK);
        let first: Value = first.json().await?;
        assert_eq!(first["accepted"], true);
        assert_eq!(first["state"], "APPROVAL_STATE_APPROVED_WITH_EDITS");
        assert_eq!(first["approvalId"], gate.approval_id.as_str());
        let again = post(BOB, body.clone()).await?;
        assert_eq!(again.status(), StatusCode::OK);
        assert_eq!(
            again.json::<Value>().await?,
            first,
            "a retried request gets the first outcome"
        );

        let finished = env.result(&id).await?;
        assert_eq!(finished.status(), RunStatus::Completed);
        assert!(
            finished.final_answer.starts_with("Paid:"),
            "{}",
            finished.final_answer
        );
        // A retry after the run finished still gets the first outcome
        // (Temporal keeps completed updates' outcomes with the closed run).
        let late = post(BOB, body.clone()).await?;
        assert_eq!(late.status(), StatusCode::OK);
        assert_eq!(late.json::<Value>().await?, first);
        // Another reviewer, or another kind of decision: 409.
        assert_eq!(post(DAVE, json!({})).await?.status(), StatusCode::CONFLICT);
        let deny = http
            .post(format!("{base}/approvals/{}/deny", gate.approval_id))
            .bearer_auth(BOB)
            .json(&json!({"reason": "changed my mind"}))
            .send()
            .await?;
        assert_eq!(deny.status(), StatusCode::CONFLICT);

        // The edited call ran exactly once, keyed by the approval id.
        let payments = env.sink.received("/payments");
        assert_eq!(payments.len(), 1, "{payments:?}");
        assert_eq!(
            payments[0].body,
            json!({"to": "acme", "amount": 60, "currency": "EUR"})
        );
        assert_eq!(payments[0].idempotency_key, gate.approval_id);
        // The decision on record is the authenticated reviewer's.
        let accepted: Vec<_> = finished.decisions.iter().filter(|d| d.accepted).collect();
        assert_eq!(accepted.len(), 1, "{:?}", finished.decisions);
        assert_eq!(accepted[0].reviewer, "bob@example.com");
        assert_eq!(accepted[0].reason, "half now");
        assert_eq!(accepted[0].channel, "update");
        assert_eq!(
            accepted[0].resulting_state(),
            ApprovalState::ApprovedWithEdits
        );
        assert!(
            finished
                .decisions
                .iter()
                .all(|d| d.reviewer != "mallory@example.com")
        );

        // The metrics of this server saw it.
        let metrics = reqwest::get(format!("{base}/metrics"))
            .await?
            .text()
            .await?;
        for line in [
            "countersign_decisions_total{channel=\"api\",outcome=\"approved_with_edits\"} 3",
            "countersign_http_requests_total{route=\"/approvals/{id}/approve\",status=\"409\"}",
            "countersign_http_requests_total{route=\"/approvals/{id}/approve\",status=\"422\"} 1",
            "countersign_http_requests_total{route=\"/approvals/{id}/approve\",status=\"400\"} 1",
            "countersign_http_requests_total{route=\"/approvals/{id}/deny\",status=\"409\"} 1",
        ] {
            assert!(metrics.contains(line), "{line} missing from\n{metrics}");
        }
        Ok(())
    })
    .await
}

#[tokio::test]
async fn http_api_refuses_the_dashboard_session_cookie() -> Result<()> {
    // A browser signed in to the dashboard attaches its session cookie to
    // any request to this host, including a `text/plain` POST (no CORS
    // preflight) from a page served on another port. The JSON API must
    // not take it as credentials.
    let env = TestEnv::new("http-cookie").await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let host = listener.local_addr()?.to_string();
    let base = format!("http://{host}");
    let served = countersign_server::app(state(&env, "")?);
    tokio::spawn(async move { axum::serve(listener, served).await });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    // Bob signs in to the dashboard.
    let signed_in = http
        .post(format!("{base}/login"))
        .header("origin", &base)
        .form(&[("token", BOB)])
        .send()
        .await?;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let session = signed_in
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("countersign_session="))
        .and_then(|c| c.split(';').next())
        .context("no session cookie")?
        .to_string();
    assert!(!session.contains(BOB), "{session}");

    env.with_worker(async {
        let id = env.start(env.agent(PAY_AGENT)?, "pay invoice 7").await?;
        let gate = env.pending(&id, 1).await?.remove(0);
        let approve_url = format!("{base}/approvals/{}/approve", gate.approval_id);

        // What a malicious page on http://127.0.0.1:<other port> can send:
        // an empty text/plain POST, the cookie attached by the browser.
        let evil_origin = "http://127.0.0.1:1";
        let forged = http
            .post(&approve_url)
            .header(header::COOKIE, &session)
            .header(header::CONTENT_TYPE, "text/plain")
            .header("origin", evil_origin)
            .header("sec-fetch-site", "same-site")
            .body("")
            .send()
            .await?;
        assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            forged.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let detail = forged.text().await?;
        assert!(detail.contains("Bearer"), "{detail}");
        // Nor with JSON, nor for denials, reads or starting runs.
        let deny = http
            .post(format!("{base}/approvals/{}/deny", gate.approval_id))
            .header(header::COOKIE, &session)
            .json(&json!({"reason": "forged"}))
            .send()
            .await?;
        assert_eq!(deny.status(), StatusCode::UNAUTHORIZED);
        for path in ["/approvals".to_string(), format!("/runs/{id}")] {
            let read = http
                .get(format!("{base}{path}"))
                .header(header::COOKIE, &session)
                .send()
                .await?;
            assert_eq!(read.status(), StatusCode::UNAUTHORIZED, "{path}");
        }
        let start = http
            .post(format!("{base}/runs"))
            .header(header::COOKIE, &session)
            .json(&json!({"agent": "t-http-pay", "prompt": "pay again"}))
            .send()
            .await?;
        assert_eq!(start.status(), StatusCode::UNAUTHORIZED);

        // Nothing was decided: the run still waits, nothing was paid.
        let still = env.approvals.get(&gate.approval_id).await?;
        assert_eq!(still.state(), ApprovalState::Pending);
        assert!(env.approvals.run_state(&id).await?.decisions.is_empty());
        assert!(env.sink.received("/payments").is_empty());

        // The same request with bob's bearer token decides.
        let approved = http.post(&approve_url).bearer_auth(BOB).send().await?;
        assert_eq!(approved.status(), StatusCode::OK);
        let finished = env.result(&id).await?;
        assert_eq!(finished.status(), RunStatus::Completed);
        assert_eq!(env.sink.received("/payments").len(), 1);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn http_api_lists_with_filters_starts_runs_and_describes_itself() -> Result<()> {
    let env = TestEnv::new("http-runs").await?;
    let agents = env.dir.path().join("agents");
    std::fs::create_dir(&agents)?;
    std::fs::write(
        agents.join("announcer.toml"),
        ANNOUNCE_AGENT
            .replace("{sink}", &env.sink.url)
            .replace("t-http-announce", "t-http-announcer"),
    )?;
    // The worker serves the folder; the server only passes names on.
    let registry = AgentRegistry::load(&agents)?.allowing_inline(true);
    let app = countersign_server::app(state(&env, "")?);
    let inline_app = countersign_server::app(state(&env, "[runs]\nallow_inline_agents = true\n")?);
    env.with_worker_serving(registry, async {
        let pay = env.start(env.agent(PAY_AGENT)?, "pay invoice 7").await?;
        let announce = env
            .start(env.agent(ANNOUNCE_AGENT)?, "announce 1.4")
            .await?;
        let pay_gate = env.pending(&pay, 1).await?.remove(0);
        let announce_gate = env.pending(&announce, 1).await?.remove(0);

        // Filters: by agent, by tool, both; other tests' runs may be listed too.
        let ids_of = |answer: &Answer| -> Vec<String> {
            answer.json["approvals"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|a| a["approvalId"].as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        let everything = wait_for("both approvals in GET /approvals", || async {
            // Other tests share the server: one page of the most runs.
            let answer = call(
                &app,
                "GET",
                "/approvals?pageSize=1000",
                Some(CAROL),
                Payload::None,
            )
            .await
            .ok()?;
            let ids = ids_of(&answer);
            (ids.contains(&pay_gate.approval_id) && ids.contains(&announce_gate.approval_id))
                .then_some(answer)
        })
        .await?;
        assert!(everything.json["incomplete"].is_array());
        // Listed entries are summaries: an excerpt, not the arguments.
        let listed_pay = everything.json["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["approvalId"] == pay_gate.approval_id.as_str())
            .unwrap();
        assert!(listed_pay.get("arguments").is_none(), "{listed_pay}");
        assert!(
            listed_pay["argumentsExcerpt"]
                .as_str()
                .is_some_and(|e| e.starts_with('{')),
            "{listed_pay}"
        );
        assert_eq!(
            listed_pay["argumentsSha256"],
            pay_gate.arguments_sha256.as_str()
        );

        // Pages of one run each, followed to the end, list both once.
        let mut token: Option<String> = None;
        let mut walked = Vec::new();
        for _ in 0..2000 {
            let query = match &token {
                Some(t) => {
                    format!("/approvals?requester=alice@example.com&pageSize=1&pageToken={t}")
                }
                None => "/approvals?requester=alice@example.com&pageSize=1".to_string(),
            };
            let answer = call(&app, "GET", &query, Some(CAROL), Payload::None).await?;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            let runs: std::collections::BTreeSet<String> = answer.json["approvals"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["workflowId"].as_str().unwrap().to_string())
                .collect();
            assert!(runs.len() <= 1, "a page of one run: {}", answer.text);
            walked.extend(ids_of(&answer));
            token = answer.json["nextPageToken"].as_str().map(String::from);
            if token.is_none() {
                break;
            }
        }
        assert!(token.is_none(), "pages never ended");
        for id in [&pay_gate.approval_id, &announce_gate.approval_id] {
            assert_eq!(walked.iter().filter(|w| *w == id).count(), 1, "{id}");
        }

        // A filter or page that does not fit is a 400 that quotes nothing.
        for query in [
            "?pageSize=0",
            "?pageSize=1001",
            "?agent=a%27%20OR%20%27x%27%3D%27x",
            "?approver=",
        ] {
            let answer = call(
                &app,
                "GET",
                &format!("/approvals{query}"),
                Some(CAROL),
                Payload::None,
            )
            .await?;
            assert_eq!(
                answer.status,
                StatusCode::BAD_REQUEST,
                "{query}: {}",
                answer.text
            );
            assert!(!answer.text.contains("OR 'x'"), "{}", answer.text);
        }
        // A page token this listing did not give: no such page.
        for token in ["AAAAAAAAAAAAAAAAAAAA", "not%20base64!"] {
            let answer = call(
                &app,
                "GET",
                &format!("/approvals?pageToken={token}"),
                Some(CAROL),
                Payload::None,
            )
            .await?;
            assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text);
        }
        for (query, pay_listed, announce_listed) in [
            ("?agent=t-http-pay", true, false),
            ("?tool=announce", false, true),
            ("?agent=t-http-pay&tool=pay", true, false),
            ("?agent=t-http-pay&tool=announce", false, false),
            ("?status=pending&agent=t-http-announce", false, true),
            ("?requester=alice@example.com&agent=t-http-pay", true, false),
            ("?requester=nobody@example.com", false, false),
            // Waiting for bob: the payment (his group) and the announcement
            // (anyone's); for carol only the announcement.
            ("?approver=bob@example.com&agent=t-http-pay", true, false),
            ("?approver=carol@example.com&agent=t-http-pay", false, false),
            (
                "?approver=carol@example.com&agent=t-http-announce",
                false,
                true,
            ),
        ] {
            let answer = call(
                &app,
                "GET",
                &format!("/approvals{query}"),
                Some(CAROL),
                Payload::None,
            )
            .await?;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
            let ids = ids_of(&answer);
            assert_eq!(ids.contains(&pay_gate.approval_id), pay_listed, "{query}");
            assert_eq!(
                ids.contains(&announce_gate.approval_id),
                announce_listed,
                "{query}"
            );
            for a in answer.json["approvals"].as_array().unwrap() {
                if query.contains("agent=t-http-pay") {
                    assert_eq!(a["agent"], "t-http-pay");
                }
                if query.contains("tool=announce") {
                    assert_eq!(a["tool"]["name"], "announce");
                }
            }
        }

        // A run of an agent the worker serves; the requester is the caller.
        let run_id = unique("http-started");
        let start = json_bytes(&json!({
            "agent": "t-http-announcer",
            "prompt": "announce 1.5",
            "mode": "user_requested",
            "id": run_id,
        }));
        let started = call(&app, "POST", "/runs", Some(CAROL), Payload::Json(&start)).await?;
        assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
        assert_eq!(started.json, json!({"workflowId": run_id}));
        let shown = wait_for("the started run's state", || async {
            let answer = call(
                &app,
                "GET",
                &format!("/runs/{run_id}"),
                Some(BOB),
                Payload::None,
            )
            .await
            .ok()?;
            (answer.status == StatusCode::OK).then_some(answer)
        })
        .await?;
        assert_eq!(shown.json["requester"], "carol@example.com");
        assert_eq!(shown.json["agent"], "t-http-announcer");
        assert_eq!(shown.json["mode"], "user_requested");
        // The same id again: 409, and still one run.
        call(&app, "POST", "/runs", Some(CAROL), Payload::Json(&start))
            .await?
            .problem(StatusCode::CONFLICT);
        // Not names: refused by the server.
        for agent in [json!("../agents/announcer"), json!(42)] {
            let body = json_bytes(&json!({"agent": agent, "prompt": "hi"}));
            call(&app, "POST", "/runs", Some(CAROL), Payload::Json(&body))
                .await?
                .problem(StatusCode::BAD_REQUEST);
        }
        // A name no worker serves: the run fails at once, listing the names served.
        let unknown = json_bytes(&json!({"agent": "no-such-agent", "prompt": "hi"}));
        let started = call(&app, "POST", "/runs", Some(CAROL), Payload::Json(&unknown)).await?;
        assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
        let unknown_id = started.json["workflowId"].as_str().unwrap().to_string();
        let failure = env.result(&unknown_id).await.unwrap_err().to_string();
        assert!(
            failure
                .contains("unknown agent `no-such-agent`: this worker serves `t-http-announcer`"),
            "{failure}"
        );
        let body = json_bytes(&json!({"agent": "t-http-announcer", "prompt": " "}));
        call(&app, "POST", "/runs", Some(CAROL), Payload::Json(&body))
            .await?
            .problem(StatusCode::BAD_REQUEST);
        let body = json_bytes(
            &json!({"agent": "t-http-announcer", "prompt": "hi", "requester": "ceo@example.com"}),
        );
        call(&app, "POST", "/runs", Some(CAROL), Payload::Json(&body))
            .await?
            .problem(StatusCode::BAD_REQUEST);
        call(&app, "GET", "/runs/no-such-run", Some(BOB), Payload::None)
            .await?
            .problem(StatusCode::NOT_FOUND);
        call(&app, "POST", "/runs", None, Payload::Json(&start))
            .await?
            .problem(StatusCode::UNAUTHORIZED);

        // Inline definitions: refused unless the config allows them, and
        // then checked like an agent file.
        let inline = serde_json::to_value(env.agent(&one_call_agent(
            "t-http-inline",
            "Reading.",
            r#"{ tool = "nothing_here" }"#,
        ))?)?;
        let body = json_bytes(&json!({"agent": inline, "prompt": "try"}));
        call(&app, "POST", "/runs", Some(CAROL), Payload::Json(&body))
            .await?
            .problem(StatusCode::FORBIDDEN);
        let started = call(
            &inline_app,
            "POST",
            "/runs",
            Some(CAROL),
            Payload::Json(&body),
        )
        .await?;
        assert_eq!(started.status, StatusCode::CREATED, "{}", started.text);
        let inline_id = started.json["workflowId"].as_str().unwrap().to_string();
        assert!(inline_id.starts_with("t-http-inline-"), "{inline_id}");
        let finished = env.result(&inline_id).await?;
        assert_eq!(finished.requester, "carol@example.com");
        let mut broken = inline.clone();
        broken["name"] = json!("not a valid name!");
        let body = json_bytes(&json!({"agent": broken, "prompt": "try"}));
        let detail = call(
            &inline_app,
            "POST",
            "/runs",
            Some(CAROL),
            Payload::Json(&body),
        )
        .await?
        .problem(StatusCode::BAD_REQUEST)
        .to_string();
        assert!(detail.contains("name"), "{detail}");

        // The OpenAPI document: generated, 3.1, every route, bearer auth.
        let doc = call(&app, "GET", "/openapi.json", None, Payload::None).await?;
        assert_eq!(doc.status, StatusCode::OK);
        assert_eq!(doc.json["openapi"], "3.1.0");
        for (path, method) in [
            ("/approvals", "get"),
            ("/approvals/{id}", "get"),
            ("/approvals/{id}/approve", "post"),
            ("/approvals/{id}/deny", "post"),
            ("/runs", "post"),
            ("/runs/{id}", "get"),
            ("/metrics", "get"),
        ] {
            assert!(
                doc.json["paths"][path][method].is_object(),
                "{method} {path} missing from openapi.json"
            );
        }
        assert_eq!(
            doc.json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert!(
            doc.json["components"]["schemas"]["ApproveBody"]["properties"]["editedArguments"]
                .is_object()
        );

        // The metrics of this router: what the test sent, by route and status.
        let metrics = call(&app, "GET", "/metrics", None, Payload::None).await?;
        assert_eq!(metrics.status, StatusCode::OK);
        assert!(
            metrics.content_type.starts_with("text/plain"),
            "{}",
            metrics.content_type
        );
        for line in [
            "# TYPE countersign_http_requests_total counter",
            "countersign_http_requests_total{route=\"/approvals\",status=\"200\"}",
            "countersign_http_requests_total{route=\"/runs\",status=\"201\"} 2",
            "countersign_http_requests_total{route=\"/runs\",status=\"409\"} 1",
            "countersign_http_requests_total{route=\"/runs\",status=\"403\"} 1",
            "countersign_http_requests_total{route=\"/runs\",status=\"401\"} 1",
            "countersign_http_requests_total{route=\"/runs/{id}\",status=\"404\"} 1",
            "countersign_http_requests_total{route=\"/openapi.json\",status=\"200\"} 1",
            "# TYPE countersign_decisions_total counter",
        ] {
            assert!(
                metrics.text.contains(line),
                "{line} missing from\n{}",
                metrics.text
            );
        }
        // Unknown routes are counted under one label, not by their path.
        call(&app, "GET", "/no/such/route", None, Payload::None).await?;
        let metrics = call(&app, "GET", "/metrics", None, Payload::None).await?;
        assert!(
            metrics
                .text
                .contains("countersign_http_requests_total{route=\"unmatched\",status=\"404\"} 1"),
            "{}",
            metrics.text
        );
        assert!(!metrics.text.contains("/no/such/route"));

        // Leave no run waiting: deny what is open, and see the runs finish.
        let started_gate = env.pending(&run_id, 1).await?.remove(0);
        for (gate, run) in [
            (&pay_gate.approval_id, &pay),
            (&announce_gate.approval_id, &announce),
            (&started_gate.approval_id, &run_id),
        ] {
            let denied = call(
                &app,
                "POST",
                &format!("/approvals/{gate}/deny"),
                Some(BOB),
                Payload::Json(br#"{"reason": "test over"}"#),
            )
            .await?;
            assert_eq!(
                denied.json["state"], "APPROVAL_STATE_DENIED",
                "{}",
                denied.text
            );
            assert_eq!(env.result(run).await?.status(), RunStatus::Completed);
        }
        Ok(())
    })
    .await
}

/// A `countersign` binary run against the shared dev server.
fn countersign(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_countersign"));
    command
        .args(args)
        .env("TEMPORAL_ADDRESS", server_address())
        .env("TEMPORAL_NAMESPACE", "default")
        .env_remove("TEMPORAL_PROFILE")
        .env_remove("COUNTERSIGN_SERVER_CONFIG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn countersign_serve_approves_over_http_with_a_token_from_token_new() -> Result<()> {
    let env = TestEnv::new("http-serve").await?;

    // `token new`: the token on stdout, its config entry on stderr.
    let out = countersign(&[
        "token",
        "new",
        "--reviewer",
        "bob@example.com",
        "--groups",
        "finance, ops",
    ])
    .output()
    .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout)?.trim().to_string();
    let hex = token.strip_prefix("cs_").context("token prefix")?;
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{token}"
    );
    let stanza = String::from_utf8(out.stderr)?;
    assert!(!stanza.contains(&token), "the secret goes to stdout only");
    let config_path = env.dir.path().join("server.toml");
    std::fs::write(&config_path, &stanza)?;
    let config = ServerConfig::from_file(&config_path)?;
    let bob = config
        .reviewer_by_token(&token)
        .context("the stanza's hash matches")?;
    assert_eq!(bob.id, "bob@example.com");
    assert_eq!(bob.groups, ["finance", "ops"]);
    let second = countersign(&["token", "new", "--reviewer", "bob@example.com"])
        .output()
        .await?;
    assert_ne!(
        String::from_utf8(second.stdout)?.trim(),
        token,
        "tokens are random"
    );

    // A broken config is refused before anything else, naming file and line.
    let broken = env.dir.path().join("broken.toml");
    std::fs::write(&broken, "[[reviewers]]\nid = \"x\"\ntoken_sha256 = 12\n")?;
    let out = countersign(&["serve", "--config", broken.to_str().unwrap()])
        .output()
        .await?;
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("broken.toml") && error.contains("line 3"),
        "{error}"
    );

    // `serve` on a free port, on this test's task queue.
    let mut server = countersign(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        config_path.to_str().unwrap(),
        "--task-queue",
        &env.task_queue,
    ])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .context("starting `countersign serve`")?;
    let mut lines = BufReader::new(server.stderr.take().context("stderr")?).lines();
    let mut before_url = Vec::new();
    let base = tokio::time::timeout(DEADLINE, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(at) = line.find("http://") {
                let url = line[at..].split_whitespace().next().unwrap_or_default();
                return Ok(url.trim_end_matches('/').to_string());
            }
            before_url.push(line);
        }
        bail!("`countersign serve` exited without printing its URL")
    })
    .await
    .context("waiting for `countersign serve` to print its URL")??;
    // Without `session_key_env`, it says that sessions end with the process.
    assert!(
        before_url
            .iter()
            .any(|l| l.contains("sessions") && l.contains("end when serve restarts")),
        "{before_url:?}"
    );
    // Keep draining stderr so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let http = reqwest::Client::new();
    let health = http.get(format!("{base}/healthz")).send().await?;
    assert_eq!(health.status(), StatusCode::OK);

    env.with_worker(async {
        // Started inline, as `run start --agent FILE.toml` would.
        let id = env.start(env.agent(PAY_AGENT)?, "pay invoice 7").await?;
        let gate = env.pending(&id, 1).await?.remove(0);
        // The list reads visibility, which may lag the run by a moment.
        wait_for("the approval in GET /approvals", || async {
            let listed: Value = http
                .get(format!("{base}/approvals?agent=t-http-pay"))
                .bearer_auth(&token)
                .send()
                .await
                .ok()?
                .error_for_status()
                .ok()?
                .json()
                .await
                .ok()?;
            listed["approvals"]
                .as_array()?
                .iter()
                .any(|a| a["approvalId"] == gate.approval_id.as_str())
                .then_some(())
        })
        .await?;
        let outcome: Value = http
            .post(format!("{base}/approvals/{}/approve", gate.approval_id))
            .bearer_auth(&token)
            .json(&json!({"reason": "invoice checked", "argumentsSha256": gate.arguments_sha256}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(outcome["state"], "APPROVAL_STATE_APPROVED");

        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        let payments = env.sink.received("/payments");
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].idempotency_key, gate.approval_id);
        let run: Value = http
            .get(format!("{base}/runs/{id}"))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        assert_eq!(run["status"], "RUN_STATUS_COMPLETED");
        assert_eq!(run["decisions"][0]["reviewer"], "bob@example.com");
        Ok(())
    })
    .await?;

    // SIGTERM: a graceful shutdown and a clean exit.
    let pid = server.id().context("server pid")? as i32;
    // SAFETY: `pid` is our own child, still running (not yet waited for).
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let status = tokio::time::timeout(DEADLINE, server.wait())
        .await
        .context("`countersign serve` did not stop on SIGTERM")??;
    assert!(status.success(), "{status}");
    Ok(())
}
