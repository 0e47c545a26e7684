//! The dashboard (`GET /`), end to end: a reviewer in real headless Chromium
//! (chromedriver + fantoccini) signs in, sees a gated payment and approves
//! it; and, through `oneshot`, sign-in and cookies, CSRF and cross-site
//! refusals, escaping of model-provided text, edited arguments, approver
//! groups and refused decisions. Every decision path ends by checking what
//! the run and the payments sink saw.

use crate::harness::*;
use anyhow::{Context, Result, bail, ensure};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode, header};
use countersign_proto::{ApprovalState, RunStatus};
use countersign_server::{AppState, ServerConfig, config::token_sha256};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tower::ServiceExt;

const BOB_TOKEN: &str = "bob-dashboard-token-3f9a1c";
const CAROL_TOKEN: &str = "carol-dashboard-token-77e2b0";

/// A payment whose memo carries HTML, as a prompt-injected model might send.
const MEMO: &str = "<script>document.title='pwned'</script><b>bold</b>";

/// Pays invoice 9 (money: always gated); `{approvers}` is spliced in.
fn pay_agent(name: &str, approvers: &str) -> String {
    format!(
        r#"
name = "{name}"
approval_expiry = "1h"
{approvers}

[model]
provider = "scripted"

[[model.steps]]
say = "Paying invoice 9."
calls = [{{ tool = "pay", arguments = {{ to = "acme", amount = 120, currency = "EUR", memo = "{MEMO}" }} }}]
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

/// Bob is in `finance`, Carol in `support`.
fn server_config(secure_cookies: bool) -> Result<ServerConfig> {
    let text = format!(
        r#"
[[reviewers]]
id = "bob@example.com"
token_sha256 = "{}"
groups = ["finance"]

[[reviewers]]
id = "carol@example.com"
token_sha256 = "{}"
groups = ["support"]

[dashboard]
secure_cookies = {secure_cookies}
"#,
        token_sha256(BOB_TOKEN),
        token_sha256(CAROL_TOKEN)
    );
    Ok(ServerConfig::from_toml(&text, Path::new("server.toml"))?)
}

fn server_state(env: &TestEnv, secure_cookies: bool) -> Result<AppState> {
    Ok(AppState::new(
        env.approvals.clone(),
        server_config(secure_cookies)?,
        env.task_queue.clone(),
    )?)
}

fn server(env: &TestEnv, secure_cookies: bool) -> Result<Router> {
    Ok(countersign_server::app(server_state(env, secure_cookies)?))
}

/// A response, read whole.
struct Page {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Page {
    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_string))
            .collect()
    }

    /// The `name=value` of a cookie this response sets.
    fn cookie(&self, name: &str) -> Option<String> {
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .map(|c| c.split(';').next().unwrap_or_default().to_string())
    }

    /// The CSRF token the page's forms carry.
    fn csrf(&self) -> Result<String> {
        let marker = "name=\"csrf\" value=\"";
        let at = self
            .body
            .find(marker)
            .context("no CSRF field on the page")?;
        Ok(self.body[at + marker.len()..at + marker.len() + 64].to_string())
    }
}

async fn send(app: &Router, request: Request<Body>) -> Result<Page> {
    let response = app.clone().oneshot(request).await?;
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    Ok(Page {
        status,
        headers,
        body: String::from_utf8(bytes.to_vec())?,
    })
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path).header(header::HOST, "127.0.0.1:8080");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::empty()).unwrap()
}

/// A form POST as a browser sends it from the dashboard itself, plus `extra`
/// headers (which replace the same-origin ones when they name them).
fn post(
    path: &str,
    cookie: Option<&str>,
    form: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Request<Body> {
    let body = form
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&");
    let mut request = Request::post(path)
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    let overrides = |name: &str| extra.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !overrides("origin") {
        request = request.header(header::ORIGIN, "http://127.0.0.1:8080");
    }
    if !overrides("sec-fetch-site") {
        request = request.header("sec-fetch-site", "same-origin");
    }
    for (k, v) in extra {
        request = request.header(*k, *v);
    }
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Body::from(body)).unwrap()
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The `/ui/approvals/{id}/{action}` path of an approval.
fn decide_path(approval_id: &str, action: &str) -> String {
    format!("/ui/approvals/{}/{action}", urlencode(approval_id))
}

/// Signs in through `POST /login` and returns the session cookie (`name=value`).
async fn sign_in(app: &Router, token: &str) -> Result<String> {
    let page = send(app, post("/login", None, &[("token", token)], &[])).await?;
    ensure!(
        page.status == StatusCode::SEE_OTHER && page.location() == "/",
        "sign-in answered {} ({})",
        page.status,
        page.body
    );
    page.cookie("countersign_session")
        .context("sign-in set no session cookie")
}

#[tokio::test]
async fn dashboard_sign_in_sets_a_strict_session_cookie() -> Result<()> {
    let env = TestEnv::new("dash-login").await?;
    let app = server(&env, false)?;

    // No session: to the sign-in page; a stale cookie is cleared on the way.
    let page = send(&app, get("/", None)).await?;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login");
    let page = send(&app, get("/", Some("countersign_session=nope"))).await?;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login");
    assert!(
        page.set_cookies()
            .iter()
            .any(|c| c.starts_with("countersign_session=;") && c.contains("Max-Age=0")),
        "{:?}",
        page.set_cookies()
    );
    // A bearer token is for the API, not a dashboard session.
    let request = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {BOB_TOKEN}"))
        .body(Body::empty())?;
    assert_eq!(send(&app, request).await?.status, StatusCode::SEE_OTHER);

    let page = send(&app, get("/login", None)).await?;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("name=\"token\""), "{}", page.body);
    let csp = page.headers[header::CONTENT_SECURITY_POLICY].to_str()?;
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(!csp.contains("script-src"), "{csp}");
    assert_eq!(page.headers[header::X_FRAME_OPTIONS], "DENY");

    // A wrong token: the form again, 401, no cookie.
    let page = send(&app, post("/login", None, &[("token", "guess")], &[])).await?;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("Unknown token"), "{}", page.body);
    assert!(page.body.contains("name=\"token\""));
    assert!(page.set_cookies().is_empty());

    // A sign-in posted from another site is refused.
    let page = send(
        &app,
        post(
            "/login",
            None,
            &[("token", BOB_TOKEN)],
            &[("origin", "https://evil.example")],
        ),
    )
    .await?;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.set_cookies().is_empty());

    // The right token: a session cookie, HttpOnly, SameSite=Strict, Path=/.
    let page = send(&app, post("/login", None, &[("token", BOB_TOKEN)], &[])).await?;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/");
    let set = page
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with("countersign_session="))
        .context("no session cookie")?;
    // The cookie is a signed session, never the token (nor its hash).
    let value = set
        .trim_start_matches("countersign_session=")
        .split(';')
        .next()
        .unwrap_or_default();
    assert!(value.contains('.'), "{set}");
    assert!(!set.contains(BOB_TOKEN), "{set}");
    assert!(!set.contains(&token_sha256(BOB_TOKEN)), "{set}");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(attribute), "{set}");
    }
    assert!(!set.contains("Secure"), "{set}");
    let secure = server(&env, true)?;
    let page = send(&secure, post("/login", None, &[("token", BOB_TOKEN)], &[])).await?;
    let set = page.set_cookies().join(" | ");
    assert!(set.contains("; Secure"), "{set}");

    // Signed in: the dashboard, with who is signed in.
    let session = sign_in(&app, BOB_TOKEN).await?;
    let page = send(&app, get("/", Some(&session))).await?;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("bob@example.com"), "{}", page.body);
    assert!(page.body.contains("Waiting for me"));
    assert!(page.body.contains("All pending"));
    assert!(page.body.contains("Recent decisions"));
    // An approval id of any length in the URL is refused without being
    // quoted back; an unknown one says so.
    let long = send(
        &app,
        get(&format!("/?approval={}", "x".repeat(5000)), Some(&session)),
    )
    .await?;
    assert!(
        long.body
            .contains("an approval id is at most 1024 characters"),
        "{}",
        long.body
    );
    assert!(!long.body.contains(&"x".repeat(100)));
    let unknown = send(&app, get("/?approval=no-such-run~00000000", Some(&session))).await?;
    assert!(
        unknown.body.contains("Cannot show this approval"),
        "{}",
        unknown.body
    );
    let csrf = page.csrf()?;

    // Sign-out needs the CSRF token too.
    let page = send(&app, post("/logout", Some(&session), &[], &[])).await?;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    let page = send(
        &app,
        post("/logout", Some(&session), &[("csrf", &csrf)], &[]),
    )
    .await?;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), "/login");
    assert!(
        page.set_cookies()
            .iter()
            .any(|c| c.starts_with("countersign_session=;") && c.contains("Max-Age=0"))
    );
    Ok(())
}

/// Whether the dashboard refuses `cookie` (`countersign_session=<value>`):
/// `GET /` goes to the sign-in form and clears it, and a decision POST with
/// the CSRF token derived from it gets the 401 "Signed out" page.
async fn refuses_session(app: &Router, cookie: &str) -> Result<()> {
    let page = send(app, get("/", Some(cookie))).await?;
    ensure!(
        page.status == StatusCode::SEE_OTHER && page.location() == "/login",
        "GET / with {cookie}: {} {}",
        page.status,
        page.location()
    );
    ensure!(
        page.set_cookies()
            .iter()
            .any(|c| c.starts_with("countersign_session=;") && c.contains("Max-Age=0")),
        "the refused cookie is not cleared: {:?}",
        page.set_cookies()
    );
    let value = cookie.trim_start_matches("countersign_session=");
    let csrf = countersign_server::dashboard::csrf_token(value);
    let page = send(
        app,
        post(
            &decide_path("nobody-waits~00000000", "deny"),
            Some(cookie),
            &[("csrf", &csrf), ("reason", "forged")],
            &[],
        ),
    )
    .await?;
    ensure!(
        page.status == StatusCode::UNAUTHORIZED && page.body.contains("Signed out"),
        "POST with {cookie}: {} {}",
        page.status,
        page.body
    );
    Ok(())
}

/// A fresh environment variable name, set to `value` for this test only.
fn unique_env(label: &str, value: &str) -> String {
    let name = unique(&format!("COUNTERSIGN_E2E_{label}"))
        .to_uppercase()
        .replace('-', "_");
    // SAFETY: the name is unique to this call, so no other thread reads or
    // writes this variable while it is set; std's environment lock orders
    // the write with concurrent std::env reads of other variables.
    unsafe { std::env::set_var(&name, value) };
    name
}

#[tokio::test]
async fn dashboard_sessions_are_signed_expire_and_end_with_their_reviewer() -> Result<()> {
    let env = TestEnv::new("dash-session").await?;
    let state = server_state(&env, false)?;
    let app = countersign_server::app(state.clone());
    let session = sign_in(&app, BOB_TOKEN).await?;
    let value = session
        .trim_start_matches("countersign_session=")
        .to_string();
    assert_eq!(
        send(&app, get("/", Some(&session))).await?.status,
        StatusCode::OK
    );
    let bob = state
        .config
        .reviewer_by_id("bob@example.com")
        .context("bob")?
        .clone();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();

    // The raw token (what the cookie used to hold) is no session.
    refuses_session(&app, &format!("countersign_session={BOB_TOKEN}")).await?;
    // Tampered: another reviewer's payload (id and expiry), bob's signature kept.
    let (payload, tag) = value.split_once('.').context("no signature")?;
    let carol = state
        .config
        .reviewer_by_id("carol@example.com")
        .context("carol")?;
    let carol_session = state.sessions.issue(carol, now + 3600);
    let (carol_payload, _) = carol_session.split_once('.').context("no signature")?;
    refuses_session(&app, &format!("countersign_session={carol_payload}.{tag}")).await?;
    // Tampered: one character of the signature changed.
    let mut flipped = tag.to_string();
    let last = if flipped.ends_with('A') { "B" } else { "A" };
    flipped.replace_range(flipped.len() - 1.., last);
    refuses_session(&app, &format!("countersign_session={payload}.{flipped}")).await?;
    // Forged: signed with another key (another server, or this one before a
    // restart without `session_key_env`).
    let forged = server_state(&env, false)?.sessions.issue_now(&bob);
    refuses_session(&app, &format!("countersign_session={forged}")).await?;
    // Expired: signed by this server, but its time is up.
    let expired = state.sessions.issue(&bob, now - 1);
    refuses_session(&app, &format!("countersign_session={expired}")).await?;
    // Bob removed from the config (same key): his sessions end.
    let mut without_bob = (*state.config).clone();
    without_bob.reviewers.retain(|r| r.id != bob.id);
    let revoked = countersign_server::app(AppState {
        config: Arc::new(without_bob),
        ..state.clone()
    });
    refuses_session(&revoked, &session).await?;
    // Bob given a new token (same key): sessions made with the old one end.
    let mut rotated = (*state.config).clone();
    for reviewer in &mut rotated.reviewers {
        if reviewer.id == bob.id {
            reviewer.token_sha256 = token_sha256("bob-new-token");
        }
    }
    let rotated = countersign_server::app(AppState {
        config: Arc::new(rotated),
        ..state.clone()
    });
    refuses_session(&rotated, &session).await?;
    // The original session still works where nothing changed.
    assert_eq!(
        send(&app, get("/", Some(&session))).await?.status,
        StatusCode::OK
    );

    // Replicas given the same key in `session_key_env` share sessions.
    let key_env = unique_env("SESSION_KEY", &"5a".repeat(32));
    let text = format!(
        "[[reviewers]]\nid = \"bob@example.com\"\ntoken_sha256 = \"{}\"\n\n[dashboard]\nsession_key_env = \"{key_env}\"\n",
        token_sha256(BOB_TOKEN)
    );
    let replica = |text: &str| -> Result<Router> {
        let config = ServerConfig::from_toml(text, Path::new("server.toml"))?;
        let state = AppState::new(env.approvals.clone(), config, env.task_queue.clone())?;
        ensure!(!state.sessions.is_ephemeral());
        Ok(countersign_server::app(state))
    };
    let (first, second) = (replica(&text)?, replica(&text)?);
    let shared = sign_in(&first, BOB_TOKEN).await?;
    let page = send(&second, get("/", Some(&shared))).await?;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("bob@example.com"));
    // A key variable that is named but unset is refused at start.
    let unset = text.replace(&key_env, &unique("COUNTERSIGN_E2E_UNSET").to_uppercase());
    let error = replica(&unset)
        .err()
        .context("an unset key variable was accepted")?;
    assert!(format!("{error:#}").contains("not set"), "{error:#}");
    Ok(())
}

#[tokio::test]
async fn dashboard_refuses_forged_and_cross_site_decisions() -> Result<()> {
    let env = TestEnv::new("dash-csrf").await?;
    let app = server(&env, false)?;
    env.with_worker(async {
        let id = env
            .start(env.agent(&pay_agent("t-dash-csrf", ""))?, "pay invoice 9")
            .await?;
        let approval = env.pending(&id, 1).await?.remove(0);
        let session = sign_in(&app, BOB_TOKEN).await?;
        // The approval's card (asked of the run), beside the inbox's table.
        let opened = format!("/?approval={}", urlencode(&approval.approval_id));
        let page = send(&app, get(&opened, Some(&session))).await?;
        assert_eq!(page.status, StatusCode::OK);
        let csrf = page.csrf()?;

        // Model-provided HTML is text on the page, never markup.
        assert!(
            page.body
                .contains("&lt;script&gt;document.title=&#39;pwned&#39;&lt;/script&gt;"),
            "{}",
            page.body
        );
        assert!(!page.body.contains("<script"), "{}", page.body);
        assert!(!page.body.contains("<b>bold</b>"));

        let approve = decide_path(&approval.approval_id, "approve");
        let sha = approval.arguments_sha256.as_str();
        let wrong = "ab".repeat(32);
        type Fields<'a> = Vec<(&'a str, &'a str)>;
        let forged: Vec<(&str, Fields, Fields)> = vec![
            // No CSRF token.
            ("no token", vec![("arguments_sha256", sha)], vec![]),
            // A made-up token.
            (
                "wrong token",
                vec![("csrf", &wrong), ("arguments_sha256", sha)],
                vec![],
            ),
            // The right token, but posted from another site.
            (
                "cross-site origin",
                vec![("csrf", &csrf), ("arguments_sha256", sha)],
                vec![("origin", "https://evil.example")],
            ),
            (
                "cross-site fetch",
                vec![("csrf", &csrf), ("arguments_sha256", sha)],
                vec![("sec-fetch-site", "cross-site")],
            ),
        ];
        for (what, form, headers) in forged {
            let page = send(&app, post(&approve, Some(&session), &form, &headers)).await?;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{what}: {}", page.body);
            assert!(page.body.contains("Nothing was decided"), "{what}");
        }
        // No session at all.
        let page = send(
            &app,
            post(
                &approve,
                None,
                &[("csrf", &csrf), ("arguments_sha256", sha)],
                &[],
            ),
        )
        .await?;
        assert_eq!(page.status, StatusCode::UNAUTHORIZED);
        // Carol's CSRF token does not work with Bob's session.
        let carol = sign_in(&app, CAROL_TOKEN).await?;
        let carol_csrf = send(&app, get("/", Some(&carol))).await?.csrf()?;
        assert_ne!(carol_csrf, csrf);
        let page = send(
            &app,
            post(
                &approve,
                Some(&session),
                &[("csrf", &carol_csrf), ("arguments_sha256", sha)],
                &[],
            ),
        )
        .await?;
        assert_eq!(page.status, StatusCode::FORBIDDEN);

        // Nothing was decided.
        let still = env.approvals.get(&approval.approval_id).await?;
        assert_eq!(still.state(), ApprovalState::Pending);
        assert!(env.approvals.run_state(&id).await?.decisions.is_empty());
        assert!(env.sink.received("/payments").is_empty());

        // A denial needs a reason.
        let deny = decide_path(&approval.approval_id, "deny");
        let page = send(
            &app,
            post(
                &deny,
                Some(&session),
                &[("csrf", &csrf), ("reason", "  ")],
                &[],
            ),
        )
        .await?;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(
            page.body.contains("A denial needs a reason"),
            "{}",
            page.body
        );
        assert!(env.approvals.run_state(&id).await?.decisions.is_empty());

        // A proper denial: 303 to the dashboard with a flash message.
        let page = send(
            &app,
            post(
                &deny,
                Some(&session),
                &[("csrf", &csrf), ("reason", "not our supplier")],
                &[],
            ),
        )
        .await?;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        assert_eq!(page.location(), "/");
        let flash = page
            .cookie("countersign_flash")
            .context("no flash cookie")?;
        let shown = send(&app, get("/", Some(&format!("{session}; {flash}")))).await?;
        assert!(shown.body.contains("Denied `pay`"), "{}", shown.body);
        assert!(
            shown
                .set_cookies()
                .iter()
                .any(|c| c.starts_with("countersign_flash=;")),
            "the flash is shown once"
        );

        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert!(
            state.final_answer.contains("not our supplier"),
            "{}",
            state.final_answer
        );
        assert!(env.sink.received("/payments").is_empty());
        let decision = &state.decisions[0];
        assert!(decision.accepted);
        assert_eq!(decision.reviewer, "bob@example.com");
        assert_eq!(decision.channel, "update");

        // Deciding again: 409, nothing changes.
        let page = send(
            &app,
            post(
                &approve,
                Some(&session),
                &[("csrf", &csrf), ("arguments_sha256", sha)],
                &[],
            ),
        )
        .await?;
        assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
        assert!(page.body.contains("no longer pending"), "{}", page.body);
        Ok(())
    })
    .await
}

#[tokio::test]
async fn dashboard_edits_arguments_and_enforces_approver_groups() -> Result<()> {
    let env = TestEnv::new("dash-edit").await?;
    let app = server(&env, false)?;
    let approvers = "approvers = [\"finance\"]\ngroups = { finance = [\"bob@example.com\"] }";
    env.with_worker(async {
        let id = env
            .start(
                env.agent(&pay_agent("t-dash-edit", approvers))?,
                "pay invoice 9",
            )
            .await?;
        let approval = env.pending(&id, 1).await?.remove(0);
        assert_eq!(approval.approver_groups, vec!["finance".to_string()]);
        let approve = decide_path(&approval.approval_id, "approve");
        let sha = approval.arguments_sha256.clone();

        // Carol (support) sees the call under "All pending", not under
        // "Waiting for me"; its card has a disabled form, and she cannot post.
        let carol = sign_in(&app, CAROL_TOKEN).await?;
        let row = format!(
            "<tr class=\"effect-money\" data-approval-id=\"{}\"",
            approval.approval_id
        );
        wait_for("the approval under All pending", || async {
            let page = send(&app, get("/?view=all", Some(&carol))).await.ok()?;
            page.body.contains(&row).then_some(())
        })
        .await?;
        let mine = send(&app, get("/", Some(&carol))).await?;
        assert!(
            !mine.body.contains(&row),
            "not waiting for Carol: {}",
            mine.body
        );
        let bobs = sign_in(&app, BOB_TOKEN).await?;
        let for_bob = send(&app, get("/", Some(&bobs))).await?;
        assert!(
            for_bob.body.contains(&row),
            "waiting for Bob: {}",
            for_bob.body
        );
        let opened = format!("/?view=all&approval={}", urlencode(&approval.approval_id));
        let page = send(&app, get(&opened, Some(&carol))).await?;
        let card_at = page
            .body
            .find(&format!("data-approval-id=\"{}\"", approval.approval_id))
            .context("Carol does not see the approval")?;
        let card = &page.body[card_at..];
        let card = &card[..card.find("</article>").unwrap_or(card.len())];
        assert!(card.contains("<fieldset disabled"), "{card}");
        assert!(
            card.contains("Only bob@example.com may decide this call (approver groups: finance)."),
            "{card}"
        );
        let carol_csrf = page.csrf()?;
        let page = send(
            &app,
            post(
                &approve,
                Some(&carol),
                &[("csrf", &carol_csrf), ("arguments_sha256", &sha)],
                &[],
            ),
        )
        .await?;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(
            page.body
                .contains("Only bob@example.com may decide this call")
        );

        // Bob: edited arguments that are not JSON are refused, nothing decided.
        let bob = sign_in(&app, BOB_TOKEN).await?;
        let csrf = send(&app, get("/", Some(&bob))).await?.csrf()?;
        let broken = "{\"to\": \"acme\", \"amount\": 99,";
        let page = send(
            &app,
            post(
                &approve,
                Some(&bob),
                &[
                    ("csrf", &csrf),
                    ("arguments_sha256", &sha),
                    ("arguments", broken),
                ],
                &[],
            ),
        )
        .await?;
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert!(page.body.contains("not valid JSON"), "{}", page.body);
        // The reviewer's text is kept for correction.
        assert!(page.body.contains("&quot;amount&quot;: 99,</textarea>"));
        // Edits that fail the tool's schema: 422 from the run.
        let page = send(
            &app,
            post(
                &approve,
                Some(&bob),
                &[
                    ("csrf", &csrf),
                    ("arguments_sha256", &sha),
                    (
                        "arguments",
                        r#"{"to": "acme", "amount": "lots", "currency": "EUR"}"#,
                    ),
                ],
                &[],
            ),
        )
        .await?;
        assert_eq!(
            page.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            page.body
        );
        assert!(env.approvals.run_state(&id).await?.decisions.is_empty());

        // The same arguments reformatted are no edit; a changed amount is.
        let edited = json!({"to": "acme", "amount": 99, "currency": "EUR", "memo": MEMO});
        let page = send(
            &app,
            post(
                &approve,
                Some(&bob),
                &[
                    ("csrf", &csrf),
                    ("arguments_sha256", &sha),
                    ("reason", "agreed discount"),
                    ("arguments", &serde_json::to_string_pretty(&edited)?),
                ],
                &[],
            ),
        )
        .await?;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        let flash = page.cookie("countersign_flash").context("no flash")?;
        let shown = send(&app, get("/", Some(&format!("{bob}; {flash}")))).await?;
        assert!(
            shown
                .body
                .contains("Approved `pay` with your edited arguments"),
            "{}",
            shown.body
        );

        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        let payments = env.sink.received("/payments");
        assert_eq!(payments.len(), 1);
        assert_eq!(payments[0].body, edited);
        assert_eq!(payments[0].idempotency_key, approval.approval_id);
        let decision = &state.decisions[0];
        assert_eq!(decision.reviewer, "bob@example.com");
        assert_eq!(decision.reason, "agreed discount");
        assert_eq!(
            state_of(approval_of(&state, "pay")),
            ApprovalState::ApprovedWithEdits
        );
        Ok(())
    })
    .await
}

// ---- headless Chromium ----

const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL_HINT: &str = "install them with `sudo apt-get install -y chromium chromium-driver` (Debian/Ubuntu), or run ./scripts/test.sh, which installs them when missing";

/// chromedriver in its own process group, killed (with the browsers it
/// started) when dropped.
struct ChromeDriver {
    child: std::process::Child,
    url: String,
}

impl ChromeDriver {
    async fn start(log: &Path) -> Result<Self> {
        use std::os::unix::process::CommandExt;
        let Some(binary) = find_on_path("chromedriver") else {
            bail!("chromedriver is not on PATH: {INSTALL_HINT}");
        };
        if !Path::new(CHROMIUM).exists() {
            bail!("{CHROMIUM} does not exist: {INSTALL_HINT}");
        }
        let port = countersign::devserver::free_port()?;
        let mut command = std::process::Command::new(&binary);
        command
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let status = format!("{}/status", driver.url);
        wait_for("chromedriver to answer /status", || async {
            let response = http.get(&status).send().await.ok()?;
            let body: serde_json::Value = response.json().await.ok()?;
            body["value"]["ready"].as_bool().filter(|r| *r)
        })
        .await
        .with_context(|| {
            format!(
                "chromedriver log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            )
        })?;
        Ok(driver)
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and any browser it left behind.
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) on the process group this test created.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// `target/test-output/` of the workspace (or of `CARGO_TARGET_DIR`).
fn test_output_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root.join(dir),
        None => root.join("target"),
    };
    target.join("test-output")
}

#[tokio::test]
async fn dashboard_in_chromium_approves_a_gated_payment() -> Result<()> {
    let env = TestEnv::new("dash-browser").await?;
    let driver = ChromeDriver::start(&env.dir.path().join("chromedriver.log")).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = server(&env, false)?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    env.with_worker(async {
        let id = env
            .start(
                env.agent(&pay_agent("t-dash-browser", ""))?,
                "pay invoice 9",
            )
            .await?;
        let approval = env.pending(&id, 1).await?.remove(0);

        let profile = tempfile::tempdir()?;
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1600",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let browser = fantoccini::ClientBuilder::new(
            hyper_util::client::legacy::connect::HttpConnector::new(),
        )
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .context("starting a Chromium session through chromedriver")?;
        let mut outcome = approve_in_browser(&browser, &base, &approval).await;
        if outcome.is_err() {
            // Say where the browser was and what it showed.
            let url = browser.current_url().await.map(|u| u.to_string());
            let source = browser.source().await.unwrap_or_default();
            outcome = outcome.with_context(|| format!("browser at {url:?} showing:\n{source}"));
        }
        let _ = browser.close().await;
        outcome?;

        let state = env.result(&id).await?;
        assert_eq!(state.status(), RunStatus::Completed);
        assert!(
            state.final_answer.starts_with("Paid: 200 OK"),
            "{}",
            state.final_answer
        );
        let payments = env.sink.received("/payments");
        assert_eq!(payments.len(), 1, "paid exactly once");
        assert_eq!(payments[0].idempotency_key, approval.approval_id);
        let decision = &state.decisions[0];
        assert!(decision.accepted);
        assert_eq!(decision.reviewer, "bob@example.com");
        assert_eq!(decision.reason, "invoice 9 checked in the browser");
        assert_eq!(decision.channel, "update");
        assert_eq!(
            state_of(approval_of(&state, "pay")),
            ApprovalState::Approved
        );
        Ok(())
    })
    .await?;
    drop(driver);
    Ok(())
}

async fn approve_in_browser(
    browser: &fantoccini::Client,
    base: &str,
    approval: &countersign_proto::PendingApproval,
) -> Result<()> {
    use fantoccini::Locator;
    let wait = || browser.wait().at_most(DEADLINE);

    // Not signed in: the dashboard sends the browser to the sign-in form.
    browser.goto(&format!("{base}/")).await?;
    assert_eq!(browser.current_url().await?.path(), "/login");
    wait()
        .for_element(Locator::Css("input[name=token]"))
        .await
        .context("waiting for the sign-in form")?
        .send_keys(BOB_TOKEN)
        .await?;
    browser
        .find(Locator::Css("form[action='/login'] button[type=submit]"))
        .await?
        .click()
        .await?;

    // "Waiting for me": a row of the table, read from visibility (which may
    // lag the run by a moment: reload until it is there).
    wait()
        .for_element(Locator::Css("#tab-mine.current"))
        .await
        .context("waiting for the dashboard after signing in")?;
    assert_eq!(browser.current_url().await?.path(), "/");
    let row_css = format!("tr[data-approval-id='{}']", approval.approval_id);
    let row = wait_for("the approval's row in the inbox", || async {
        match browser.find(Locator::Css(&row_css)).await {
            Ok(row) => Some(row),
            Err(_) => {
                browser.refresh().await.ok()?;
                None
            }
        }
    })
    .await?;
    let row_text = row.text().await?;
    for expected in [
        "pay",
        "money",
        "t-dash-browser",
        "alice@example.com",
        "0 of 1",
    ] {
        assert!(
            row_text.contains(expected),
            "`{expected}` not in the row:\n{row_text}"
        );
    }
    let dir = test_output_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("dashboard-inbox.png"), browser.screenshot().await?)?;

    // The row opens the card, asked of the run, with its whole context.
    row.find(Locator::Css("a.open")).await?.click().await?;
    let card_css = format!("article[data-approval-id='{}']", approval.approval_id);
    let card = wait()
        .for_element(Locator::Css(&card_css))
        .await
        .context("waiting for the approval's card after opening its row")?;
    let text = card.text().await?;
    for expected in [
        "pay",
        "money",
        "t-dash-browser",
        "alice@example.com",
        "pay invoice 9",
        "Paying invoice 9.",
        "\"to\": \"acme\"",
        "\"amount\": 120",
        approval.arguments_sha256.as_str(),
        approval.approval_id.as_str(),
        "expires in ",
    ] {
        assert!(
            text.contains(expected),
            "`{expected}` not in the card:\n{text}"
        );
    }
    // The memo's HTML is shown as text and never ran.
    let arguments = card
        .find(Locator::Css("pre.arguments"))
        .await?
        .text()
        .await?;
    assert!(arguments.contains(MEMO), "{arguments}");
    assert!(browser.find_all(Locator::Css("script")).await?.is_empty());
    assert!(
        card.find_all(Locator::Css("pre.arguments b"))
            .await?
            .is_empty()
    );
    assert_ne!(browser.title().await?, "pwned");

    std::fs::write(dir.join("dashboard.png"), browser.screenshot().await?)?;

    // Approve with a reason.
    card.find(Locator::Css("form.approve input[name=reason]"))
        .await?
        .send_keys("invoice 9 checked in the browser")
        .await?;
    card.find(Locator::Css("form.approve button[type=submit]"))
        .await?
        .click()
        .await?;
    let flash = wait()
        .for_element(Locator::Css("#flash"))
        .await
        .context("waiting for the flash message after approving")?;
    let flash_text = flash.text().await?;
    assert!(flash_text.contains("Approved `pay`"), "{flash_text}");
    assert_eq!(browser.current_url().await?.path(), "/");
    // The card is gone: the call is no longer pending.
    assert!(browser.find_all(Locator::Css(&card_css)).await?.is_empty());
    // The decision is listed with who made it, how and why, once the run
    // completes (recent decisions are read from completed runs' results).
    let recent = wait_for("the decision under Recent decisions", || async {
        let text = browser
            .find(Locator::Css("#recent"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        if text.contains("invoice 9 checked in the browser") {
            Some(text)
        } else {
            browser.refresh().await.ok()?;
            None
        }
    })
    .await?;
    for expected in [
        "APPROVED",
        "bob@example.com",
        "update",
        "invoice 9 checked in the browser",
    ] {
        assert!(
            recent.contains(expected),
            "`{expected}` not in recent decisions:\n{recent}"
        );
    }
    std::fs::write(
        dir.join("dashboard-decided.png"),
        browser.screenshot().await?,
    )?;
    Ok(())
}
