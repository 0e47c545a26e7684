//! `countersign serve`: the HTTP API, the dashboard and the Slack
//! interactivity endpoint. Every route is a front end to the approvals crate,
//! the one place that sends decisions; the reviewer recorded on a decision
//! is always the authenticated identity, never a field the client fills in.
//!
//! [`app`] builds the whole router from an [`AppState`], so tests drive it
//! with `oneshot` and `countersign serve` binds it to a listener.

pub mod api;
pub mod auth;
pub mod codec;
pub mod config;
pub mod dashboard;
pub mod decisions;
pub mod metrics;
pub mod problem;
pub mod session;
pub mod slack;

use axum::Router;
use axum::routing::get;
use countersign_approvals::Approvals;
use std::sync::Arc;

pub use config::{CodecConfig, ConfigError, Reviewer, ServerConfig, SigningConfig, WebOrigin};
pub use problem::Problem;
pub use session::{SessionKey, SessionKeyError};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Sends decisions and reads runs.
    pub approvals: Approvals,
    /// Reviewers, tokens, Slack settings.
    pub config: Arc<ServerConfig>,
    /// The task queue `POST /runs` starts runs on.
    pub task_queue: String,
    /// Signs and checks the dashboard's session cookies.
    pub sessions: SessionKey,
    /// Signs every decision [`decisions::decide`] sends (`[signing]`); `None`:
    /// unsigned.
    pub signer: Option<Arc<DecisionSigner>>,
    /// The payload store `POST /codec/decode` reads references from;
    /// `None`: payloads come back as they are.
    pub payload_store: Option<countersign_payloads::PayloadStore>,
}

/// A key decisions are signed with, and the id workers trust it under.
pub struct DecisionSigner {
    key_id: String,
    key: countersign_proto::signing::SigningKey,
}

impl DecisionSigner {
    /// A signer for `key` under `key_id` (checked: 1-64 letters, digits,
    /// `-`, `_`, `.`).
    pub fn new(
        key_id: &str,
        key: countersign_proto::signing::SigningKey,
    ) -> Result<Self, countersign_proto::signing::InvalidKeyId> {
        countersign_proto::signing::check_key_id(key_id)?;
        Ok(Self {
            key_id: key_id.to_string(),
            key,
        })
    }

    /// The key id.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Signs `decision` (replacing any signature it had).
    pub fn sign(&self, decision: &mut countersign_proto::Decision) {
        // The key id was checked in `new`.
        let _ = countersign_proto::signing::sign(decision, &self.key_id, &self.key);
    }
}

impl std::fmt::Debug for DecisionSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// The state for `config`, with the session key it asks for: from the
    /// variable `[dashboard] session_key_env` names, else random (then
    /// [`SessionKey::is_ephemeral`]: sessions end when the process does).
    pub fn new(
        approvals: Approvals,
        config: impl Into<Arc<ServerConfig>>,
        task_queue: impl Into<String>,
    ) -> Result<Self, SessionKeyError> {
        let config = config.into();
        let sessions = SessionKey::from_config(&config.dashboard)?;
        Ok(Self {
            approvals,
            config,
            task_queue: task_queue.into(),
            sessions,
            signer: None,
            payload_store: None,
        })
    }

    /// The same state, resolving payload references from `store` in
    /// `POST /codec/decode` and reading the transcripts runs keep in it
    /// (`GET /runs/{id}` gives the whole conversation). The client in
    /// `approvals` should use the same store: `countersign_payloads::install`.
    pub fn with_payload_store(mut self, store: countersign_payloads::PayloadStore) -> Self {
        self.approvals = self.approvals.with_transcripts(store.transcripts());
        self.payload_store = Some(store);
        self
    }

    /// The same state, signing every decision with `signer`.
    pub fn with_signer(mut self, signer: DecisionSigner) -> Self {
        self.signer = Some(Arc::new(signer));
        self
    }
}

/// The whole HTTP surface: API, dashboard, Slack, health, OpenAPI document.
pub fn app(state: AppState) -> Router {
    // `instrument` counts every request for `/metrics`.
    metrics::instrument(
        Router::new()
            .merge(api::routes())
            .merge(dashboard::routes())
            .merge(slack::routes())
            .merge(codec::routes())
            .route("/healthz", get(|| async { "ok" }))
            // Unknown paths and methods get problems too, not axum's empty
            // 404/405: clients parse one error shape.
            .fallback(|uri: axum::http::Uri| async move {
                Problem::not_found(format!("no route for `{}`", uri.path()))
            })
            .method_not_allowed_fallback(|method: axum::http::Method| async move {
                Problem::new(
                    axum::http::StatusCode::METHOD_NOT_ALLOWED,
                    format!("`{method}` is not allowed on this route"),
                )
            }),
    )
    .with_state(state)
}
