//! The JSON API: approvals and runs, the OpenAPI document and the metrics.
//!
//! Every route takes a bearer token only ([`Authenticated`]), never the
//! dashboard's session cookie. Every decision goes through
//! [`crate::decisions::decide`], the pipeline the dashboard and Slack use
//! too, with the *authenticated* reviewer as its reviewer: the approval is
//! looked up (404 when unknown) and the reviewer checked against the
//! approvers the run resolved (403). The run then judges again (its own
//! group members, separation of duties, quorum), and every refusal comes
//! back as problem+json with its [`crate::decisions::DecisionError::status`].
//! Every rejection of a request's body, query or path is a problem too, never
//! axum's plain-text answers.

use crate::auth::Authenticated;
use crate::config::RunsConfig;
use crate::decisions::{Verdict, decide};
use crate::metrics::{Channel, Metrics};
use crate::{AppState, Problem};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use countersign_approvals::{
    ApprovalsError, ApproveOptions, PageRequest, PendingFilter, ReviewerFilter,
};
use countersign_policy::agent::{AgentFile, excerpt};
use countersign_policy::run::{AgentRunInput, AgentSpec, RunRequest};
use countersign_policy::{Agent, RunMode};
use countersign_proto::{DecisionOutcome, PendingApproval, RunState};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema};
use utoipa::{IntoParams, OpenApi, ToSchema};

/// The routes of the JSON API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/approvals", get(list_approvals))
        .route("/approvals/{id}", get(get_approval))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/deny", post(deny))
        .route("/runs", post(start_run))
        .route("/runs/{id}", get(get_run))
        .route("/openapi.json", get(openapi_json))
        .route("/metrics", get(crate::metrics::metrics))
}

// ---------------------------------------------------------------------------
// Extractors whose rejections are problems.

/// A JSON request body. Every rejection is a problem: 400 for a missing or
/// wrong content type, invalid UTF-8, malformed JSON, wrong types, missing
/// or unknown fields; 413 for a body over axum's limit.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let (is_json, bytes) = body_of(req, state).await?;
        parse_json(is_json, &bytes).map(ApiJson)
    }
}

/// Like [`ApiJson`], but a request without a body stands for
/// `T::default()`: `POST /approvals/{id}/approve` with no body approves the
/// call as shown.
pub struct ApiJsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        let (is_json, bytes) = body_of(req, state).await?;
        // `null` is what some clients send for "no body".
        if bytes.is_empty() || bytes.trim_ascii() == b"null" {
            return Ok(ApiJsonOrEmpty(T::default()));
        }
        parse_json(is_json, &bytes).map(ApiJsonOrEmpty)
    }
}

async fn body_of<S: Send + Sync>(req: Request, state: &S) -> Result<(bool, Bytes), Problem> {
    let is_json = is_json_content_type(req.headers());
    let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
        let status = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::BAD_REQUEST,
        };
        Problem::new(
            status,
            format!("cannot read the body: {}", rejection.body_text()),
        )
    })?;
    Ok((is_json, bytes))
}

/// `application/json` or `application/<something>+json`, with any parameters.
fn is_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn parse_json<T: DeserializeOwned>(is_json: bool, bytes: &[u8]) -> Result<T, Problem> {
    if !is_json {
        return Err(Problem::bad_request(
            "send the body as JSON, with `Content-Type: application/json`",
        ));
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(Problem::bad_request(format!(
            "the body is not valid UTF-8 (bad byte at offset {})",
            e.valid_up_to()
        )));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| Problem::bad_request(format!("invalid JSON body: {e}")))
}

/// Query parameters; a query that does not fit is a 400 problem.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(value)| ApiQuery(value))
            .map_err(|rejection| {
                Problem::bad_request(format!("invalid query: {}", rejection.body_text()))
            })
    }
}

/// Path parameters; a path that does not decode is a problem.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| ApiPath(value))
            .map_err(|rejection| Problem::new(rejection.status(), rejection.body_text()))
    }
}

// ---------------------------------------------------------------------------
// Request and response types.

/// Filters and paging of `GET /approvals`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ApprovalFilter {
    /// Only approvals of this agent.
    #[param(
        min_length = 1,
        max_length = 256,
        pattern = r#"^[^'"\\\x00-\x1f\x7f-\x9f]+$"#
    )]
    pub agent: Option<String>,
    /// Only approvals of this tool (its name, e.g. `pay` or `gmail.send`).
    #[param(
        min_length = 1,
        max_length = 256,
        pattern = r#"^[^'"\\\x00-\x1f\x7f-\x9f]+$"#
    )]
    pub tool: Option<String>,
    /// Only approvals of runs this person started.
    #[param(
        min_length = 1,
        max_length = 256,
        pattern = r#"^[^'"\\\x00-\x1f\x7f-\x9f]+$"#
    )]
    pub requester: Option<String>,
    /// Only approvals this reviewer may decide ("waiting for me"): named by
    /// the run, or open to anyone; not their own request under separation
    /// of duties, nor one they already approved. A configured reviewer's
    /// groups widen the search.
    #[param(
        min_length = 1,
        max_length = 256,
        pattern = r#"^[^'"\\\x00-\x1f\x7f-\x9f]+$"#
    )]
    pub approver: Option<String>,
    /// Runs per page (1 to 1000, default 100); a page holds the open
    /// approvals of that many runs, usually one each.
    #[param(minimum = 1, maximum = 1000)]
    pub page_size: Option<u32>,
    /// The `nextPageToken` of the previous page.
    #[param(min_length = 1, max_length = 4096, pattern = "^[A-Za-z0-9_-]+$")]
    pub page_token: Option<String>,
    /// `pending`, the default and the only value: decided approvals are in
    /// `GET /runs/{id}`.
    #[param(pattern = "^pending$")]
    pub status: Option<String>,
}

/// The answer of `GET /approvals`: one page.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalList {
    /// The pending approvals on this page, newest run first, as summaries
    /// (`argumentsExcerpt` instead of `arguments`: `GET /approvals/{id}`
    /// has the whole approval).
    #[schema(value_type = Vec<PendingApprovalSchema>)]
    pub approvals: Vec<PendingApproval>,
    /// Where the next page starts (pass it as `pageToken`); absent on the
    /// last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
    /// Runs on this page whose approvals are not all listed, and why.
    pub incomplete: Vec<IncompleteRun>,
}

/// A run whose approvals the page does not all list.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IncompleteRun {
    /// The run's workflow id.
    pub workflow_id: String,
    /// What is missing, and where to find it.
    pub error: String,
}

/// The body of `POST /approvals/{id}/approve` (optional: no body approves
/// the call as shown).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApproveBody {
    /// Why the reviewer approves.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub reason: String,
    /// Run the call with these arguments instead. They are checked against
    /// the tool's schema (422 if they do not fit).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub edited_arguments: Option<Value>,
    /// The `argumentsSha256` the reviewer saw (64 hex digits). The decision
    /// is refused with 409 if the waiting call's arguments hash differently.
    #[serde(default)]
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub arguments_sha256: Option<String>,
    /// Approve this tool for the rest of the run (scope `RUN`); never for money.
    #[serde(default)]
    pub for_rest_of_run: bool,
}

/// The body of `POST /approvals/{id}/deny`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DenyBody {
    /// Why the call is denied (required, not blank): the model is told.
    #[schema(pattern = "\\S", max_length = 2000)]
    pub reason: String,
}

/// The body of `POST /runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRunBody {
    /// The agent: the `name` of an agent the workers serve (their
    /// `--agents` folder; an unknown name fails the run at once with the
    /// names they serve), or, only when the server config sets
    /// `[runs] allow_inline_agents = true` (and the workers allow inline
    /// agents), an agent definition as JSON (the agent file's fields).
    #[schema(schema_with = agent_schema)]
    pub agent: Value,
    /// The user's request (not blank).
    #[schema(pattern = "\\S")]
    pub prompt: String,
    /// `autonomous` or `user_requested` (default: the agent's).
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "user_requested", pattern = "^(autonomous|user_requested)$")]
    pub mode: Option<RunMode>,
    /// The conversation the run belongs to (one line, at most 256 characters).
    #[serde(default)]
    #[schema(max_length = 256, pattern = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$")]
    pub conversation_id: String,
    /// Pins the agent's definition: the run fails unless the worker's has
    /// this SHA-256 (`countersign agents list` prints them).
    #[serde(default)]
    #[schema(pattern = "^[0-9a-fA-F]{64}$")]
    pub agent_sha256: Option<String>,
    /// The workflow id (default: `<agent>-<unix millis>-<n>`). While a run
    /// with this id is open, starting another is a 409: pass an id to make
    /// a retried request safe.
    #[serde(default)]
    pub id: Option<String>,
}

/// `StartRunBody.agent`: a name (a non-empty string) or a definition (an object).
fn agent_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(128))
                .pattern(Some("^[A-Za-z0-9._-]+$"))
                .description(Some("the name of an agent the workers serve")),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .description(Some(
                    "an inline agent definition (only with `allow_inline_agents`)",
                )),
        )
        .build()
        .into()
}

/// The answer of `POST /runs`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartedRun {
    /// The run's workflow id.
    pub workflow_id: String,
}

/// The answer of `POST /approvals/{id}/approve|deny`: `countersign.v1.DecisionOutcome`.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = DecisionOutcome)]
#[allow(dead_code)] // documentation only: the handlers send the proto type
struct DecisionOutcomeSchema {
    /// Whether the run took the decision.
    accepted: bool,
    /// `APPROVAL_STATE_APPROVED`, `APPROVAL_STATE_APPROVED_WITH_EDITS`,
    /// `APPROVAL_STATE_DENIED`, or `APPROVAL_STATE_PENDING` while a quorum is
    /// incomplete.
    state: String,
    /// What the run says about it.
    message: String,
    /// The approval decided.
    approval_id: String,
}

/// Errors: `application/problem+json` (RFC 9457).
#[derive(Serialize, ToSchema)]
#[schema(as = Problem)]
#[allow(dead_code)] // documentation only: `crate::Problem` is what is sent
struct ProblemSchema {
    /// `about:blank`.
    #[serde(rename = "type")]
    kind: String,
    /// The status's reason phrase.
    title: String,
    /// The HTTP status.
    status: u16,
    /// What went wrong with this request.
    detail: String,
    /// For a decision the run (or the server) refused: the machine-readable
    /// `countersign.v1.RefusalCode` name, e.g. `REFUSAL_CODE_ALREADY_DECIDED`.
    #[schema(pattern = "^REFUSAL_CODE_[A-Z_]+$")]
    code: Option<String>,
}

/// A proto message sent as proto3 JSON, described by reference to its
/// `.proto` definition rather than field by field.
macro_rules! proto_schema {
    ($marker:ident, $name:literal, $description:literal) => {
        #[doc = $description]
        struct $marker;

        impl utoipa::PartialSchema for $marker {
            fn schema() -> RefOr<Schema> {
                RefOr::T(Schema::Object(
                    ObjectBuilder::new().description(Some($description)).build(),
                ))
            }
        }

        impl ToSchema for $marker {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

proto_schema!(
    PendingApprovalSchema,
    "PendingApproval",
    "`countersign.v1.PendingApproval` in proto3 JSON (camelCase): approvalId, workflowId, agent, requester, tool {kind, provider, name}, arguments, argumentsSha256, effectClass, rule, approverGroups, requiredApprovals, approvalsGiven, requestedAt, expiresAt, userRequest, modelReason, state, … (proto/countersign/v1/approvals.proto)"
);
proto_schema!(
    RunStateSchema,
    "RunState",
    "`countersign.v1.RunState` in proto3 JSON (camelCase): workflowId, agent, requester, mode, status, transcript, decisions (who, when, what, why), approvals, finalAnswer, … (proto/countersign/v1/approvals.proto)"
);

// ---------------------------------------------------------------------------
// Handlers.

#[utoipa::path(get, path = "/approvals", tag = "approvals", params(ApprovalFilter),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Pending approvals", body = ApprovalList),
        (status = 400, description = "A filter, page size or page token that does not fit", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown token", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "A pageToken this listing did not give (another filter's, or made up)", body = ProblemSchema, content_type = "application/problem+json")))]
async fn list_approvals(
    State(state): State<AppState>,
    _who: Authenticated,
    ApiQuery(filter): ApiQuery<ApprovalFilter>,
) -> Result<Json<ApprovalList>, Problem> {
    if filter.status.as_deref().is_some_and(|s| s != "pending") {
        return Err(Problem::bad_request(
            "status: only `pending` approvals are listed; a run's decided ones are in GET /runs/{id}",
        ));
    }
    let approver = filter.approver.map(|reviewer| {
        let groups = state
            .config
            .reviewers
            .iter()
            .find(|r| r.id == reviewer)
            .map(|r| r.groups.clone())
            .unwrap_or_default();
        ReviewerFilter { reviewer, groups }
    });
    let pending = PendingFilter {
        agent: filter.agent,
        tool: filter.tool,
        requester: filter.requester,
        approver,
    };
    let page = PageRequest {
        page_size: filter.page_size,
        page_token: filter.page_token,
    };
    let listing = state.approvals.list_pending_page(&pending, &page).await?;
    Ok(Json(ApprovalList {
        approvals: listing.approvals,
        next_page_token: listing.next_page_token,
        incomplete: listing
            .incomplete
            .into_iter()
            .map(|(workflow_id, error)| IncompleteRun { workflow_id, error })
            .collect(),
    }))
}

#[utoipa::path(get, path = "/approvals/{id}", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "The approval id, `<workflow id>~<suffix>`")),
    responses(
        (status = 200, description = "The approval, in whatever state it is", body = PendingApprovalSchema),
        (status = 401, description = "No or unknown token", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "Unknown or malformed approval id", body = ProblemSchema, content_type = "application/problem+json")))]
async fn get_approval(
    State(state): State<AppState>,
    _who: Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<PendingApproval>, Problem> {
    Ok(Json(state.approvals.get(&id).await?))
}

#[utoipa::path(post, path = "/approvals/{id}/approve", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "The approval id")),
    request_body(content = Option<ApproveBody>, description = "Optional: no body approves the call as shown"),
    responses(
        (status = 200, description = "The run's answer; a retried request gets the first answer", body = DecisionOutcomeSchema),
        (status = 400, description = "Malformed body, wrong types, unknown fields (a `reviewer` among them), editedArguments not an object, argumentsSha256 not 64 hex digits", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown token", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "The reviewer may not decide this approval (approver groups, separation of duties)", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "Unknown or malformed approval id", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 409, description = "Already decided, expired, or stale argumentsSha256", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 422, description = "Edited arguments that do not fit the tool's schema", body = ProblemSchema, content_type = "application/problem+json")))]
async fn approve(
    State(state): State<AppState>,
    Authenticated(reviewer): Authenticated,
    ApiPath(id): ApiPath<String>,
    metrics: Option<Extension<Arc<Metrics>>>,
    ApiJsonOrEmpty(body): ApiJsonOrEmpty<ApproveBody>,
) -> Result<Json<DecisionOutcome>, Problem> {
    let verdict = Verdict::Approve(ApproveOptions {
        reason: body.reason,
        edited_arguments: body.edited_arguments,
        arguments_sha256: body.arguments_sha256,
        for_rest_of_run: body.for_rest_of_run,
    });
    let metrics = metrics.as_deref().map(Arc::as_ref);
    let decided = decide(&state, metrics, Channel::Api, &reviewer, &id, verdict).await?;
    Ok(Json(decided.outcome))
}

#[utoipa::path(post, path = "/approvals/{id}/deny", tag = "approvals", security(("bearer" = [])),
    params(("id" = String, Path, description = "The approval id")),
    request_body = DenyBody,
    responses(
        (status = 200, description = "The run's answer; a retried request gets the first answer", body = DecisionOutcomeSchema),
        (status = 400, description = "No reason, malformed body, wrong types, unknown fields", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown token", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "The reviewer may not decide this approval", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "Unknown or malformed approval id", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 409, description = "Already decided or expired", body = ProblemSchema, content_type = "application/problem+json")))]
async fn deny(
    State(state): State<AppState>,
    Authenticated(reviewer): Authenticated,
    ApiPath(id): ApiPath<String>,
    metrics: Option<Extension<Arc<Metrics>>>,
    ApiJson(body): ApiJson<DenyBody>,
) -> Result<Json<DecisionOutcome>, Problem> {
    let verdict = Verdict::Deny {
        reason: body.reason,
    };
    let metrics = metrics.as_deref().map(Arc::as_ref);
    let decided = decide(&state, metrics, Channel::Api, &reviewer, &id, verdict).await?;
    Ok(Json(decided.outcome))
}

#[utoipa::path(post, path = "/runs", tag = "runs", security(("bearer" = [])),
    request_body = StartRunBody,
    responses(
        (status = 201, description = "Started; the requester is the caller", body = StartedRun),
        (status = 400, description = "Malformed body, an invalid agent definition or name, an empty prompt", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 401, description = "No or unknown token", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 403, description = "Inline agent definitions are not allowed by the server config", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "No such agent in the agents folder (or none configured)", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 409, description = "A run with this id is already running", body = ProblemSchema, content_type = "application/problem+json")))]
async fn start_run(
    State(state): State<AppState>,
    Authenticated(requester): Authenticated,
    ApiJson(body): ApiJson<StartRunBody>,
) -> Result<Response, Problem> {
    if body.prompt.trim().is_empty() {
        return Err(Problem::bad_request("prompt must not be empty"));
    }
    let agent = agent_spec(&state.config.runs, body.agent)?;
    let id = match body.id {
        Some(id) if !id.trim().is_empty() => id,
        _ => default_run_id(agent.name()),
    };
    let input = AgentRunInput {
        agent,
        prompt: body.prompt,
        mode: body.mode,
        // The requester is who authenticated, never a body field.
        requester: requester.id,
        conversation_id: body.conversation_id,
        agent_sha256: body.agent_sha256,
        parent_workflow_id: String::new(),
        carried: None,
    };
    // The same bounds the run applies, answered as a 400 instead of a failed run.
    let input = RunRequest::new(input)
        .map_err(|e| Problem::bad_request(e.to_string()))?
        .input()
        .clone();
    let workflow_id = state
        .approvals
        .start_run(input, &id, Some(&state.task_queue))
        .await
        .map_err(|e| match e {
            ApprovalsError::Temporal(message) if message.contains("already started") => {
                Problem::new(StatusCode::CONFLICT, message)
            }
            other => other.into(),
        })?;
    Ok((StatusCode::CREATED, Json(StartedRun { workflow_id })).into_response())
}

/// The agent a `POST /runs` names (an agent of the workers' registry) or
/// carries inline (when the config allows it; validated here with the same
/// constructor the workflow uses, and again by the run itself).
fn agent_spec(runs: &RunsConfig, agent: Value) -> Result<AgentSpec, Problem> {
    match agent {
        Value::String(name) => {
            let valid = !name.is_empty()
                && name.len() <= 128
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
            if !valid {
                return Err(Problem::bad_request(format!(
                    "agent `{}`: a name is 1-128 letters, digits, `-`, `_` and `.`: the `name` of an agent the workers serve",
                    excerpt(&name, 128)
                )));
            }
            Ok(AgentSpec::Name(name))
        }
        Value::Object(_) if !runs.allow_inline_agents => Err(Problem::forbidden(
            "inline agent definitions are not allowed: name an agent the workers serve (`countersign worker --agents DIR`), or set `[runs] allow_inline_agents = true` in the server config (the workers must allow them too)",
        )),
        Value::Object(_) => {
            let file: AgentFile = serde_json::from_value(agent).map_err(|e| {
                Problem::bad_request(format!("agent: {}", excerpt(&e.to_string(), 300)))
            })?;
            let agent =
                Agent::new(file).map_err(|e| Problem::bad_request(format!("agent: {e}")))?;
            Ok(AgentSpec::Inline(Box::new(agent.file().clone())))
        }
        _ => Err(Problem::bad_request(
            "agent must be the name of an agent (a string) or an agent definition (an object)",
        )),
    }
}

/// `<agent>-<unix millis>-<n>`: unique within this process.
fn default_run_id(agent: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or_default();
    format!("{agent}-{millis}-{}", N.fetch_add(1, Ordering::Relaxed))
}

#[utoipa::path(get, path = "/runs/{id}", tag = "runs", security(("bearer" = [])),
    params(("id" = String, Path, description = "The run's workflow id")),
    responses(
        (status = 200, description = "The run's state, running or closed", body = RunStateSchema),
        (status = 401, description = "No or unknown token", body = ProblemSchema, content_type = "application/problem+json"),
        (status = 404, description = "Unknown run", body = ProblemSchema, content_type = "application/problem+json")))]
async fn get_run(
    State(state): State<AppState>,
    _who: Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunState>, Problem> {
    Ok(Json(state.approvals.run_state(&id).await?))
}

// ---------------------------------------------------------------------------
// OpenAPI.

/// The OpenAPI 3.1 document, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Countersign",
        description = "Human approval gates for AI agent tool calls. Every route but /openapi.json, /metrics and /healthz needs `Authorization: Bearer <token>`; the reviewer recorded on a decision is the token's reviewer."
    ),
    paths(list_approvals, get_approval, approve, deny, start_run, get_run, openapi_json, crate::metrics::metrics),
    components(schemas(ApproveBody, DenyBody, StartRunBody, StartedRun, ApprovalList, IncompleteRun)),
    modifiers(&BearerAuth),
    tags(
        (name = "approvals", description = "Pending approvals and decisions"),
        (name = "runs", description = "Agent runs"),
        (name = "operations", description = "The API's description and metrics")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A reviewer token; the server config holds its SHA-256 (`countersign token new`)",
                    ))
                    .build(),
            ),
        );
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document (OpenAPI 3.1)", content_type = "application/json")))]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().unwrap());
            is_json_content_type(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(with("application/merge-patch+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!is_json_content_type(&HeaderMap::new()));
    }

    #[test]
    fn the_openapi_document_lists_every_route_with_bearer_auth() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        for path in [
            "/approvals",
            "/approvals/{id}",
            "/approvals/{id}/approve",
            "/approvals/{id}/deny",
            "/runs",
            "/runs/{id}",
            "/openapi.json",
            "/metrics",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert_eq!(
            doc["paths"]["/approvals/{id}/approve"]["post"]["security"][0]["bearer"],
            serde_json::json!([])
        );
        for schema in [
            "PendingApproval",
            "DecisionOutcome",
            "Problem",
            "ApproveBody",
        ] {
            assert!(
                doc["components"]["schemas"][schema].is_object(),
                "schema {schema} missing"
            );
        }
    }
}
