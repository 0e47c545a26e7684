//! The dashboard: server-rendered HTML at `/` for reviewers in a browser.
//!
//! - `GET /login` shows a token form; `POST /login` checks the token against
//!   the configured reviewers and sets the `countersign_session` cookie
//!   (HttpOnly, SameSite=Strict, Path=/, Secure when
//!   `dashboard.secure_cookies`): the reviewer id and an expiry, signed with
//!   the server's session key ([`crate::session`]), never the token;
//!   `POST /logout` clears it.
//! - `GET /` lists the pending approvals (newest first) with their full
//!   context and Approve / Deny forms, and the decisions of recent runs.
//! - `POST /ui/approvals/{id}/approve` and `/deny` decide through
//!   [`crate::decisions::decide`], as the session's reviewer (never a form
//!   field), then redirect to `/` with a flash message (a short-lived
//!   cookie). What could not be decided renders the page again with the
//!   reason ([`refusal_text`]) and the reviewer's input kept.
//!
//! Every state-changing form carries a CSRF token, HMAC-SHA256 keyed with the
//! session cookie's value (so it needs no server state and lasts as long as
//! the session), checked in constant time; POSTs whose `Sec-Fetch-Site` is
//! not `same-origin` or whose `Origin` is not this host are refused with 403
//! before anything else. Pages send a CSP without any script source, and
//! every string from a run is HTML-escaped.

mod render;

use crate::auth::cookie;
use crate::decisions::{Decided, DecisionError, Verdict, decide, tool_name};
use crate::metrics::{Channel, Metrics};
pub use crate::session::{SESSION_COOKIE, SESSION_MAX_AGE};
use crate::{AppState, Problem, Reviewer};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Router};
use countersign_approvals::{
    Approvals, ApproveOptions, PageRequest, PendingFilter, PendingPage, ReviewerFilter,
};
use countersign_proto::contract::MAX_APPROVAL_ID_CHARS;
use countersign_proto::{ApprovalState, DecisionOutcome, arguments_sha256};
use hmac::{Hmac, Mac};
use render::{Draft, Notice, NoticeKind, Page, Recent, RecentDecision};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// The flash-message cookie: what the last decision did, shown once by `GET /`.
pub const FLASH_COOKIE: &str = "countersign_flash";
/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";
/// How many recent runs "Recent decisions" reads.
const RECENT_RUNS: usize = 20;
/// How many decisions "Recent decisions" shows.
const RECENT_DECISIONS: usize = 30;
/// How long the page waits for one recent run's result.
const RUN_STATE_TIMEOUT: Duration = Duration::from_secs(2);
/// The message the CSRF token is an HMAC of.
const CSRF_LABEL: &[u8] = b"countersign dashboard csrf v1";
/// The page's Content-Security-Policy: no scripts at all, styles and forms
/// from this origin only, no framing.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
const STYLESHEET: &str = include_str!("../assets/dashboard.css");

/// The dashboard's routes: `/`, `/login`, `/logout`, `/ui/…`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/ui/dashboard.css", get(stylesheet))
        .route("/ui/approvals/{id}/approve", post(approve))
        .route("/ui/approvals/{id}/deny", post(deny))
}

/// The CSRF token of a session: hex HMAC-SHA256 of a fixed label, keyed
/// with the session cookie's value (signed by the server, never the
/// reviewer's token). Only someone who holds the (HttpOnly) session cookie
/// can compute it, and it changes with every sign-in.
pub fn csrf_token(session: &str) -> String {
    hex::encode(csrf_mac(session).finalize().into_bytes())
}

fn csrf_mac(session: &str) -> Hmac<Sha256> {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(session.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(CSRF_LABEL);
    mac
}

/// Whether `submitted` is the session's CSRF token (constant-time comparison).
pub fn csrf_matches(session: &str, submitted: &str) -> bool {
    match hex::decode(submitted.trim()) {
        Ok(bytes) => csrf_mac(session).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// Why a state-changing request looks cross-site, if it does:
/// `Sec-Fetch-Site` other than `same-origin` (or `none`, a user action), or
/// an `Origin` whose host is not the one the request was sent to. Requests
/// without either header (non-browser clients) pass; the CSRF token still
/// applies to them.
pub fn cross_site(headers: &HeaderMap, uri: &Uri) -> Option<String> {
    if let Some(site) = headers.get("sec-fetch-site") {
        let site = site.to_str().unwrap_or("?");
        if !matches!(site, "same-origin" | "none") {
            return Some(format!(
                "cross-site request refused (Sec-Fetch-Site: {site})"
            ));
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("?");
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
            .or_else(|| uri.authority().map(|a| a.to_string()));
        let same = match (origin.split_once("://"), host) {
            (Some((scheme, authority)), Some(host)) => {
                let default_port = if scheme.eq_ignore_ascii_case("https") {
                    ":443"
                } else {
                    ":80"
                };
                authority
                    .trim_end_matches(default_port)
                    .eq_ignore_ascii_case(host.trim_end_matches(default_port))
            }
            _ => false,
        };
        if !same {
            return Some(format!(
                "cross-site request refused (Origin: {origin} is not this site)"
            ));
        }
    }
    None
}

/// A signed-in reviewer, from the `countersign_session` cookie only (bearer
/// tokens are for the API): signed with the server's session key, not
/// expired, for a reviewer still in the config with the same token. Without
/// one, a `GET` is redirected to `/login` and anything else gets a 401 page.
struct Session {
    /// The cookie's value: what the CSRF token is derived from.
    value: String,
    reviewer: Reviewer,
}

fn session_of(parts: &Parts, state: &AppState) -> Option<Session> {
    let value = cookie(parts, SESSION_COOKIE).filter(|v| !v.is_empty())?;
    let reviewer = state
        .sessions
        .verify_now(&value, &state.config)
        .inspect_err(|e| tracing::debug!(error = %e, "dashboard session refused"))
        .ok()?
        .clone();
    Some(Session { value, reviewer })
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        if let Some(session) = session_of(parts, state) {
            return Ok(session);
        }
        let stale = cookie(parts, SESSION_COOKIE).is_some();
        let secure = state.config.dashboard.secure_cookies;
        let mut response = if parts.method == Method::GET || parts.method == Method::HEAD {
            redirect("/login")
        } else {
            html(
                StatusCode::UNAUTHORIZED,
                render::message_page(
                    "Signed out",
                    "Your session is missing or no longer valid: sign in again. Nothing was decided.",
                ),
            )
        };
        if stale {
            set_cookie(&mut response, SESSION_COOKIE, "", Some(0), secure);
        }
        Err(response)
    }
}

/// The reviewer signed in to the dashboard, if the request has a valid
/// session cookie (the codec endpoint takes it from allowed Web UIs).
pub(crate) fn session_reviewer(parts: &Parts, state: &AppState) -> Option<Reviewer> {
    session_of(parts, state).map(|session| session.reviewer)
}

/// The session, if the request has a valid one.
struct MaybeSession(Option<Session>);

impl FromRequestParts<AppState> for MaybeSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, std::convert::Infallible> {
        Ok(MaybeSession(session_of(parts, state)))
    }
}

/// The flash message left by the last POST, if any, and whether the
/// request carried the flash cookie at all (then it is cleared).
struct Flash(Option<Notice>, bool);

impl<S: Send + Sync> FromRequestParts<S> for Flash {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _: &S,
    ) -> Result<Self, std::convert::Infallible> {
        let value = cookie(parts, FLASH_COOKIE);
        let present = value.is_some();
        Ok(Flash(value.and_then(|v| decode_flash(&v)), present))
    }
}

fn encode_flash(notice: &Notice) -> String {
    let kind = match notice.kind {
        NoticeKind::Ok => 'o',
        NoticeKind::Error => 'e',
        NoticeKind::Warn => 'w',
    };
    // Cookies are small: keep the first 1000 bytes, on a char boundary.
    let mut text = notice.text.as_str();
    if text.len() > 1000 {
        let mut end = 1000;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text = &text[..end];
    }
    hex::encode(format!("{kind}{text}"))
}

fn decode_flash(value: &str) -> Option<Notice> {
    let text = String::from_utf8(hex::decode(value).ok()?).ok()?;
    let mut chars = text.chars();
    let kind = match chars.next()? {
        'o' => NoticeKind::Ok,
        'e' => NoticeKind::Error,
        'w' => NoticeKind::Warn,
        _ => return None,
    };
    Some(Notice {
        kind,
        text: chars.as_str().to_string(),
    })
}

/// Whether a value can be a cookie value as is (RFC 6265 cookie-octets).
#[cfg(test)]
fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token
            .bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x2B | 0x2D..=0x3A | 0x3C..=0x5B | 0x5D..=0x7E))
}

fn set_cookie(
    response: &mut Response,
    name: &str,
    value: &str,
    max_age: Option<u64>,
    secure: bool,
) {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        text.push_str("; Secure");
    }
    if let Ok(v) = HeaderValue::from_str(&text) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// An HTML response with the dashboard's security headers.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    security_headers(headers);
    response
}

fn security_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Not `no-referrer`: under it browsers send `Origin: null` with the
    // page's own form posts, which the cross-site check must refuse.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// A 303 See Other to `to`.
fn redirect(to: &'static str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    security_headers(response.headers_mut());
    response
}

fn forbidden(why: &str) -> Response {
    html(
        StatusCode::FORBIDDEN,
        render::message_page("Forbidden", &format!("{why}. Nothing was decided.")),
    )
}

async fn stylesheet() -> Response {
    let mut response = STYLESHEET.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/css; charset=utf-8"),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=300"),
    );
    response
}

/// What `GET /` shows: which list, which page of it, and which approval's
/// card is open.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct View {
    /// `all` for every pending approval; otherwise "waiting for me".
    #[serde(default)]
    pub view: Option<String>,
    /// The page of the list (its token, from the previous page's link).
    #[serde(default)]
    pub page_token: Option<String>,
    /// The approval whose card is open (fetched from its run).
    #[serde(default)]
    pub approval: Option<String>,
}

impl View {
    /// Whether the list is "waiting for me" (the default: what a reviewer
    /// opens first) rather than everything pending.
    pub(crate) fn mine(&self) -> bool {
        self.view.as_deref() != Some("all")
    }
}

/// How many waiting runs one page of the dashboard's table lists.
pub const DASHBOARD_PAGE_SIZE: u32 = 50;

async fn index(
    State(state): State<AppState>,
    session: Session,
    Flash(flash, had_flash): Flash,
    Query(view): Query<View>,
) -> Response {
    let mut response = render_dashboard(
        &state,
        &session,
        flash.into_iter().collect(),
        None,
        StatusCode::OK,
        &view,
    )
    .await;
    if had_flash {
        set_cookie(
            &mut response,
            FLASH_COOKIE,
            "",
            Some(0),
            state.config.dashboard.secure_cookies,
        );
    }
    response
}

/// Reads a page of pending approvals (visibility only), the open card's
/// approval (from its run), and the recent decisions, and renders the page.
async fn render_dashboard(
    state: &AppState,
    session: &Session,
    mut notices: Vec<Notice>,
    draft: Option<Draft>,
    status: StatusCode,
    view: &View,
) -> Response {
    let filter = PendingFilter {
        approver: view.mine().then(|| ReviewerFilter {
            reviewer: session.reviewer.id.clone(),
            groups: session.reviewer.groups.clone(),
        }),
        ..Default::default()
    };
    let page = PageRequest {
        page_size: Some(DASHBOARD_PAGE_SIZE),
        page_token: view.page_token.clone(),
    };
    // A refused decision shows its card again, with what was typed.
    let open = draft
        .as_ref()
        .map(|d| d.approval_id.clone())
        .or_else(|| view.approval.clone());
    let (pending, recent, opened) = tokio::join!(
        state.approvals.list_pending_page(&filter, &page),
        recent_decisions(&state.approvals),
        async {
            match &open {
                // Never quote an unbounded query parameter back.
                Some(id) if id.chars().count() > MAX_APPROVAL_ID_CHARS => Some(Err(format!(
                    "an approval id is at most {MAX_APPROVAL_ID_CHARS} characters"
                ))),
                Some(id) => Some(
                    state
                        .approvals
                        .get(id)
                        .await
                        .map_err(|e| Problem::from(e).detail),
                ),
                None => None,
            }
        }
    );
    let mut status = status;
    let pending: Result<PendingPage, String> = pending.map_err(|e| {
        let problem = Problem::from(e);
        if status == StatusCode::OK {
            status = problem.status_code();
        }
        problem.detail
    });
    if let Some(draft) = &draft
        && !draft.error.is_empty()
        && !notices.iter().any(|n| n.text == draft.error)
    {
        notices.push(Notice {
            kind: NoticeKind::Error,
            text: draft.error.clone(),
        });
    }
    let csrf = csrf_token(&session.value);
    let body = render::dashboard_page(&Page {
        reviewer: &session.reviewer,
        csrf: &csrf,
        now: SystemTime::now(),
        notices,
        view: view.clone(),
        pending,
        opened,
        recent,
        draft,
    });
    html(status, body)
}

/// The decisions of the most recently completed runs, newest first, read
/// from their results (a history read: no workflow query, no worker needed,
/// however many runs wait), each within [`RUN_STATE_TIMEOUT`], all at once.
/// A run still in flight shows its decisions once it completes; the flash
/// message after a decision says what the run answered at once.
async fn recent_decisions(approvals: &Approvals) -> Recent {
    let runs = match approvals
        .list_runs(Some("Completed"), Some(RECENT_RUNS))
        .await
    {
        Ok(runs) => runs,
        Err(e) => {
            return Recent {
                error: Some(e.to_string()),
                ..Default::default()
            };
        }
    };
    let answers = futures::future::join_all(runs.iter().map(|run| async move {
        let read = approvals.wait_for_run(&run.workflow_id);
        (run, tokio::time::timeout(RUN_STATE_TIMEOUT, read).await)
    }))
    .await;
    let mut recent = Recent::default();
    for (run, answer) in answers {
        match answer {
            Ok(Ok(state)) => {
                let agent = if state.agent.is_empty() {
                    run.agent.clone()
                } else {
                    state.agent.clone()
                };
                recent
                    .decisions
                    .extend(state.decisions.into_iter().map(|record| RecentDecision {
                        workflow_id: run.workflow_id.clone(),
                        agent: agent.clone(),
                        record,
                    }));
            }
            _ => recent.silent_runs.push(run.workflow_id.clone()),
        }
    }
    recent.decisions.sort_by_key(|d| {
        std::cmp::Reverse(
            d.record
                .decided_at
                .as_ref()
                .map_or((0, 0), |t| (t.seconds, t.nanos)),
        )
    });
    recent.decisions.truncate(RECENT_DECISIONS);
    recent
}

async fn login_form() -> Response {
    html(StatusCode::OK, render::login_page(None))
}

/// The sign-in form.
#[derive(Debug, Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<LoginForm>,
) -> Response {
    if let Some(why) = cross_site(&headers, &uri) {
        return forbidden(&why);
    }
    let Some(reviewer) = state.config.reviewer_by_token(form.token.trim()) else {
        return html(
            StatusCode::UNAUTHORIZED,
            render::login_page(Some("Unknown token: no reviewer has it.")),
        );
    };
    let mut response = redirect("/");
    set_cookie(
        &mut response,
        SESSION_COOKIE,
        &state.sessions.issue_now(reviewer),
        Some(SESSION_MAX_AGE.as_secs()),
        state.config.dashboard.secure_cookies,
    );
    response
}

/// A form that only carries the CSRF token.
#[derive(Debug, Deserialize)]
struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

async fn logout(
    State(state): State<AppState>,
    MaybeSession(session): MaybeSession,
    headers: HeaderMap,
    uri: Uri,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(why) = cross_site(&headers, &uri) {
        return forbidden(&why);
    }
    if let Some(session) = &session
        && !csrf_matches(&session.value, &form.csrf)
    {
        return forbidden("missing or wrong CSRF token");
    }
    let mut response = redirect("/login");
    set_cookie(
        &mut response,
        SESSION_COOKIE,
        "",
        Some(0),
        state.config.dashboard.secure_cookies,
    );
    response
}

/// The Approve form.
#[derive(Debug, Deserialize)]
struct ApproveForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
    /// The arguments textarea; absent: approve what was shown.
    #[serde(default)]
    arguments: Option<String>,
    /// The `argumentsSha256` of the arguments the page showed.
    #[serde(default)]
    arguments_sha256: String,
    /// `run`: approve this tool for the rest of the run.
    #[serde(default)]
    scope: String,
}

/// The Deny form.
#[derive(Debug, Deserialize)]
struct DenyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// The checks every decision POST passes first: same-site, then the CSRF token.
fn check_post(headers: &HeaderMap, uri: &Uri, session: &Session, csrf: &str) -> Option<Response> {
    if let Some(why) = cross_site(headers, uri) {
        return Some(forbidden(&why));
    }
    if !csrf_matches(&session.value, csrf) {
        return Some(forbidden(
            "missing or wrong CSRF token (reload the dashboard and try again)",
        ));
    }
    None
}

/// What the arguments textarea asks for: `None` when it holds the arguments
/// that were shown (compared by `argumentsSha256`, so whitespace and key
/// order do not count as edits), else the edited object.
pub fn edited_arguments(text: &str, shown_sha256: &str) -> Result<Option<Value>, String> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        format!("The edited arguments are not valid JSON ({e}). Nothing was decided.")
    })?;
    if !value.is_object() {
        return Err(
            "The edited arguments must be a JSON object ({\"name\": value, …}). Nothing was decided."
                .into(),
        );
    }
    if arguments_sha256(&value) == shown_sha256 {
        Ok(None)
    } else {
        Ok(Some(value))
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What a refused decision says on the page shown again.
pub fn refusal_text(e: &DecisionError, approve: bool) -> String {
    format!("{} Nothing was decided.", refusal_reason(e, approve))
}

/// Why a decision was refused, as the dashboard says it (also on a card
/// whose forms are disabled): the dashboard's one mapping of [`DecisionError`].
pub fn refusal_reason(e: &DecisionError, approve: bool) -> String {
    match e {
        DecisionError::ReasonRequired => "A denial needs a reason: the model is told why.".into(),
        DecisionError::NotAnApprover {
            approvers,
            approver_groups,
            ..
        } => format!(
            "Only {} may decide this call (approver groups: {}).",
            approvers.join(", "),
            approver_groups.join(", ")
        ),
        DecisionError::OwnRequest { .. } => {
            "You started this run: separation of duties needs another reviewer.".into()
        }
        DecisionError::AlreadyApproved { missing, .. } => format!(
            "You already approved this call; it waits for {missing} more approval(s) from others."
        ),
        DecisionError::Closed {
            approval_id, state, ..
        } => format!(
            "Approval {approval_id} is no longer pending: it is {}.",
            crate::decisions::state_name(*state)
        ),
        other => format!(
            "Not {}: {other}.",
            if approve { "approved" } else { "denied" }
        ),
    }
}

/// The flash message for a run's answer.
fn outcome_notice(tool: &str, outcome: &DecisionOutcome) -> Notice {
    if !outcome.accepted {
        return Notice {
            kind: NoticeKind::Error,
            text: format!(
                "The run did not accept the decision on `{tool}`: {}",
                outcome.message
            ),
        };
    }
    let text = match outcome.state() {
        ApprovalState::Approved => format!("Approved `{tool}`: {}", outcome.message),
        ApprovalState::ApprovedWithEdits => format!(
            "Approved `{tool}` with your edited arguments: {}",
            outcome.message
        ),
        ApprovalState::Denied => format!("Denied `{tool}`: {}", outcome.message),
        ApprovalState::Pending => format!(
            "Your approval of `{tool}` is recorded; the call waits for more approvals. {}",
            outcome.message
        ),
        other => format!(
            "Decision on `{tool}` recorded ({}): {}",
            other.as_str_name().trim_start_matches("APPROVAL_STATE_"),
            outcome.message
        ),
    };
    Notice {
        kind: NoticeKind::Ok,
        text,
    }
}

/// 303 to `/` with a flash message saying what the run answered.
fn decided_page(state: &AppState, decided: &Decided) -> Response {
    let notice = outcome_notice(&tool_name(&decided.approval), &decided.outcome);
    let mut response = redirect("/");
    set_cookie(
        &mut response,
        FLASH_COOKIE,
        &encode_flash(&notice),
        Some(60),
        state.config.dashboard.secure_cookies,
    );
    response
}

async fn approve(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    metrics: Option<Extension<Arc<Metrics>>>,
    Form(form): Form<ApproveForm>,
) -> Response {
    if let Some(refused) = check_post(&headers, &uri, &session, &form.csrf) {
        return refused;
    }
    let mut draft = Draft {
        approval_id: id.clone(),
        arguments: form.arguments.clone(),
        approve_reason: form.reason.clone(),
        ..Default::default()
    };
    let again = |draft: Draft, status: StatusCode| {
        let state = state.clone();
        let session = &session;
        async move {
            render_dashboard(
                &state,
                session,
                Vec::new(),
                Some(draft),
                status,
                &View::default(),
            )
            .await
        }
    };
    if !is_sha256_hex(&form.arguments_sha256) {
        draft.error = "The form did not say which arguments it showed (argumentsSha256); reload the dashboard. Nothing was decided.".into();
        return again(draft, StatusCode::BAD_REQUEST).await;
    }
    let edited = match form
        .arguments
        .as_deref()
        .map(|text| edited_arguments(text, &form.arguments_sha256))
        .transpose()
    {
        Ok(edited) => edited.flatten(),
        Err(message) => {
            draft.error = message;
            return again(draft, StatusCode::BAD_REQUEST).await;
        }
    };
    let verdict = Verdict::Approve(ApproveOptions {
        reason: form.reason,
        edited_arguments: edited,
        arguments_sha256: Some(form.arguments_sha256),
        for_rest_of_run: form.scope == "run",
    });
    let metrics = metrics.as_deref().map(Arc::as_ref);
    match decide(
        &state,
        metrics,
        Channel::Dashboard,
        &session.reviewer,
        &id,
        verdict,
    )
    .await
    {
        Ok(decided) => decided_page(&state, &decided),
        Err(e) => {
            draft.error = refusal_text(&e, true);
            again(draft, e.status()).await
        }
    }
}

async fn deny(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    metrics: Option<Extension<Arc<Metrics>>>,
    Form(form): Form<DenyForm>,
) -> Response {
    if let Some(refused) = check_post(&headers, &uri, &session, &form.csrf) {
        return refused;
    }
    let mut draft = Draft {
        approval_id: id.clone(),
        deny_reason: form.reason.clone(),
        ..Default::default()
    };
    let verdict = Verdict::Deny {
        reason: form.reason,
    };
    let metrics = metrics.as_deref().map(Arc::as_ref);
    match decide(
        &state,
        metrics,
        Channel::Dashboard,
        &session.reviewer,
        &id,
        verdict,
    )
    .await
    {
        Ok(decided) => decided_page(&state, &decided),
        Err(e) => {
            draft.error = refusal_text(&e, false);
            render_dashboard(
                &state,
                &session,
                Vec::new(),
                Some(draft),
                e.status(),
                &View::default(),
            )
            .await
        }
    }
}

#[cfg(test)]
mod tests;
