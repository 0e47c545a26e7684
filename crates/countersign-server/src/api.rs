//! The JSON API: approvals and runs. Every decision goes through the
//! approvals crate with the *authenticated* reviewer; the run itself judges
//! who may decide (approver groups, separation of duties, quorum), and its
//! refusals come back as problem+json with the statuses of design.md §3.

use crate::auth::Authenticated;
use crate::{AppState, Problem};
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use countersign_approvals::{ApproveOptions, approve_decision, deny_decision};
use countersign_policy::RunMode;
use countersign_policy::agent::AgentDefinition;
use countersign_policy::run::AgentRunInput;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::sync::{Mutex, OnceLock};
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
        .route("/metrics", get(metrics))
}

/// A JSON body whose every rejection (bad JSON, wrong types, invalid UTF-8,
/// unknown fields, a missing content type) is a 400 problem, never axum's text.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Problem> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => Err(Problem::bad_request(match &rejection {
                JsonRejection::MissingJsonContentType(_) => {
                    "send the body as JSON (`Content-Type: application/json`)".to_string()
                }
                other => other.body_text(),
            })),
        }
    }
}

/// Filters of `GET /approvals`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ApprovalFilter {
    /// Only approvals of this agent.
    pub agent: Option<String>,
    /// Only approvals of this tool (e.g. `gmail.send`).
    pub tool: Option<String>,
    /// `pending` (the default; the only one listed).
    pub status: Option<String>,
}

/// The body of `POST /approvals/{id}/approve`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApproveBody {
    /// Why the reviewer approves.
    #[serde(default)]
    pub reason: String,
    /// Run the call with these arguments instead (checked against the tool's schema: 422 if they do not fit).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub edited_arguments: Option<Value>,
    /// The argumentsSha256 the reviewer saw (409 if the call's differs).
    #[serde(default)]
    pub arguments_sha256: Option<String>,
    /// Approve this tool for the rest of the run (sticky; never for money).
    #[serde(default)]
    pub for_rest_of_run: bool,
}

/// The body of `POST /approvals/{id}/deny`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DenyBody {
    /// Why: the model is told.
    pub reason: String,
}

/// The body of `POST /runs`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRunBody {
    /// The agent definition (as `countersign run start` resolves an agent file, in JSON).
    #[schema(value_type = Object)]
    pub agent: AgentDefinition,
    /// The user's request.
    pub prompt: String,
    /// `autonomous` or `user_requested` (default: the agent's).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub mode: Option<RunMode>,
    /// The conversation the run belongs to.
    #[serde(default)]
    pub conversation_id: String,
    /// The workflow id (default: `<agent>-<unique suffix>`).
    #[serde(default)]
    pub id: Option<String>,
}

/// The answer of `POST /runs`.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StartedRun {
    /// The run's workflow id.
    pub workflow_id: String,
}

#[utoipa::path(get, path = "/approvals", params(ApprovalFilter), security(("bearer" = [])),
    responses((status = 200, description = "`{approvals: [PendingApproval], unreachable: [workflow id]}`"), (status = 401, description = "no credentials")))]
async fn list_approvals(
    State(state): State<AppState>,
    _who: Authenticated,
    Query(filter): Query<ApprovalFilter>,
) -> Result<Json<Value>, Problem> {
    if filter.status.as_deref().is_some_and(|s| s != "pending") {
        return Err(Problem::bad_request(
            "status: only `pending` approvals are listed; decided ones are in GET /runs/{id}",
        ));
    }
    let listing = state
        .approvals
        .list_pending()
        .await
        .map_err(Problem::from)?;
    let approvals: Vec<_> = listing
        .approvals
        .into_iter()
        .filter(|a| filter.agent.as_ref().is_none_or(|agent| &a.agent == agent))
        .filter(|a| {
            filter
                .tool
                .as_ref()
                .is_none_or(|tool| a.tool.as_ref().is_some_and(|t| &t.name == tool))
        })
        .collect();
    Ok(Json(
        json!({ "approvals": approvals, "unreachable": listing.unreachable }),
    ))
}

#[utoipa::path(get, path = "/approvals/{id}", security(("bearer" = [])),
    params(("id" = String, Path, description = "approval id")),
    responses((status = 200, description = "the PendingApproval"), (status = 404, description = "unknown approval")))]
async fn get_approval(
    State(state): State<AppState>,
    _who: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let approval = state.approvals.get(&id).await.map_err(Problem::from)?;
    Ok(Json(serde_json::to_value(approval).unwrap_or(Value::Null)))
}

#[utoipa::path(post, path = "/approvals/{id}/approve", request_body = ApproveBody, security(("bearer" = [])),
    params(("id" = String, Path, description = "approval id")),
    responses((status = 200, description = "the DecisionOutcome"), (status = 400, description = "bad input"),
        (status = 401, description = "no credentials"), (status = 403, description = "not allowed to decide this call"),
        (status = 404, description = "unknown approval"), (status = 409, description = "already decided, expired or stale arguments"),
        (status = 422, description = "edited arguments do not fit the tool")))]
async fn approve(
    State(state): State<AppState>,
    Authenticated(reviewer): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ApproveBody>,
) -> Result<Json<Value>, Problem> {
    if body
        .edited_arguments
        .as_ref()
        .is_some_and(|v| !v.is_object())
    {
        return Err(Problem::bad_request(
            "editedArguments must be a JSON object",
        ));
    }
    let decision = approve_decision(
        &id,
        &reviewer.id,
        ApproveOptions {
            reason: body.reason,
            edited_arguments: body.edited_arguments,
            arguments_sha256: body.arguments_sha256,
            for_rest_of_run: body.for_rest_of_run,
        },
    )
    .map_err(Problem::from)?;
    decide(&state, decision).await
}

#[utoipa::path(post, path = "/approvals/{id}/deny", request_body = DenyBody, security(("bearer" = [])),
    params(("id" = String, Path, description = "approval id")),
    responses((status = 200, description = "the DecisionOutcome"), (status = 400, description = "no reason"),
        (status = 401, description = "no credentials"), (status = 403, description = "not allowed"),
        (status = 404, description = "unknown approval"), (status = 409, description = "already decided or expired")))]
async fn deny(
    State(state): State<AppState>,
    Authenticated(reviewer): Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DenyBody>,
) -> Result<Json<Value>, Problem> {
    if body.reason.trim().is_empty() {
        return Err(Problem::bad_request(
            "reason is required: the model is told why it was denied",
        ));
    }
    decide(&state, deny_decision(&id, &reviewer.id, &body.reason)).await
}

/// Sends a decision (by update: a retried request has the same update id,
/// so it returns the first outcome) and counts it.
async fn decide(
    state: &AppState,
    decision: countersign_proto::Decision,
) -> Result<Json<Value>, Problem> {
    let outcome = state.approvals.decide(decision).await;
    let label = match &outcome {
        Ok(o) => o
            .state()
            .as_str_name()
            .trim_start_matches("APPROVAL_STATE_")
            .to_lowercase(),
        Err(_) => "refused".to_string(),
    };
    metrics_registry().count_decision(&label);
    let outcome = outcome.map_err(Problem::from)?;
    Ok(Json(serde_json::to_value(outcome).unwrap_or(Value::Null)))
}

#[utoipa::path(post, path = "/runs", request_body = StartRunBody, security(("bearer" = [])),
    responses((status = 201, description = "started", body = StartedRun), (status = 400, description = "bad input")))]
async fn start_run(
    State(state): State<AppState>,
    Authenticated(reviewer): Authenticated,
    ApiJson(body): ApiJson<StartRunBody>,
) -> Result<Response, Problem> {
    if body.prompt.trim().is_empty() {
        return Err(Problem::bad_request("prompt must not be empty"));
    }
    let id = body.id.clone().unwrap_or_else(|| {
        let suffix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        format!("{}-{suffix}", body.agent.name)
    });
    let input = AgentRunInput {
        agent: body.agent,
        prompt: body.prompt,
        mode: body.mode,
        // The requester is who authenticated, never a body field.
        requester: reviewer.id,
        conversation_id: body.conversation_id,
        parent_workflow_id: String::new(),
        carried: None,
    };
    let workflow_id = state
        .approvals
        .start_run(input, &id, Some(&state.task_queue))
        .await
        .map_err(Problem::from)?;
    Ok((StatusCode::CREATED, Json(StartedRun { workflow_id })).into_response())
}

#[utoipa::path(get, path = "/runs/{id}", security(("bearer" = [])),
    params(("id" = String, Path, description = "workflow id")),
    responses((status = 200, description = "the RunState"), (status = 404, description = "unknown run")))]
async fn get_run(
    State(state): State<AppState>,
    _who: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Value>, Problem> {
    let run = state
        .approvals
        .run_state(&id)
        .await
        .map_err(Problem::from)?;
    Ok(Json(serde_json::to_value(run).unwrap_or(Value::Null)))
}

/// The OpenAPI document, generated from the handlers' annotations.
#[derive(OpenApi)]
#[openapi(
    info(title = "Countersign", description = "Human approval gates for AI agent tool calls"),
    paths(list_approvals, get_approval, approve, deny, start_run, get_run),
    components(schemas(ApproveBody, DenyBody, StartRunBody, StartedRun)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Process-wide counters for `/metrics`.
#[derive(Default)]
pub struct Metrics {
    decisions: Mutex<std::collections::BTreeMap<String, u64>>,
}

impl Metrics {
    fn count_decision(&self, outcome: &str) {
        if let Ok(mut map) = self.decisions.lock() {
            *map.entry(outcome.to_string()).or_default() += 1;
        }
    }
}

/// The counters of this process.
pub fn metrics_registry() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

async fn metrics() -> Response {
    let registry = metrics_registry();
    let mut text = String::from(
        "# HELP countersign_decisions_total Decisions sent through this server, by resulting state.\n# TYPE countersign_decisions_total counter\n",
    );
    if let Ok(map) = registry.decisions.lock() {
        for (outcome, n) in map.iter() {
            text.push_str(&format!(
                "countersign_decisions_total{{outcome=\"{outcome}\"}} {n}\n"
            ));
        }
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
