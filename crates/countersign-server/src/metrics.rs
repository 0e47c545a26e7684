//! The one home of the server's metrics (`GET /metrics`, Prometheus text
//! exposition format 0.0.4) and of the tracing span every decision runs in.
//!
//! - `countersign_http_requests_total{route,status}`: every request, by route
//!   template (`unmatched` for unknown paths) and status ([`instrument`]).
//! - `countersign_decisions_total{channel,outcome}`: every decision that
//!   passes through the server, from the API, the dashboard or Slack, by what
//!   came of it ([`Channel`], [`Outcome`]).
//! - `countersign_decision_latency_seconds{channel}`: a histogram of the time
//!   from an approval's `requested_at` to the decision the run accepted.
//! - `countersign_pending_approvals{agent,tool}`: a gauge computed at scrape
//!   time from Temporal visibility (open runs and gates whose
//!   `CountersignStatus` is `AwaitingApproval`, with their `CountersignAgent` and
//!   `CountersignPendingTools`), bounded by [`PENDING_SCRAPE_TIMEOUT`] and
//!   [`PENDING_SCRAPE_MAX_RUNS`]; `countersign_pending_approvals_up` says
//!   whether it could be computed. When Temporal does not answer, the gauge
//!   is left out and the rest is served as usual.
//!
//! Counters live in a [`Metrics`] that [`instrument`] creates once per router
//! and puts in every request's extensions, so the handlers of every channel
//! count into the same set that `GET /metrics` renders.

use crate::AppState;
use axum::Extension;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use countersign_approvals::Approvals;
use countersign_proto::contract::workflow_id_of_approval;
use countersign_proto::{ApprovalState, DecisionOutcome, PendingApproval};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long a scrape waits for Temporal visibility before it leaves the
/// pending-approvals gauge out.
pub const PENDING_SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);
/// At most this many waiting runs are read per scrape (a warning is logged
/// when there are more).
pub const PENDING_SCRAPE_MAX_RUNS: usize = 10_000;
/// The upper bounds (seconds) of the decision latency histogram's buckets:
/// one second to a week, since people decide.
pub const LATENCY_BUCKETS: [f64; 16] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
    86400.0, 259200.0, 604800.0,
];

/// Where a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    /// `POST /approvals/{id}/approve|deny`.
    Api,
    /// The dashboard's forms.
    Dashboard,
    /// Slack's buttons and deny dialog.
    Slack,
}

impl Channel {
    /// Every channel, in label order.
    pub const ALL: [Channel; 3] = [Channel::Api, Channel::Dashboard, Channel::Slack];

    /// The `channel` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Api => "api",
            Channel::Dashboard => "dashboard",
            Channel::Slack => "slack",
        }
    }
}

/// What came of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    /// Approved as shown.
    Approved,
    /// Approved with the reviewer's edited arguments.
    ApprovedWithEdits,
    /// Denied.
    Denied,
    /// Accepted, but a quorum still waits for more approvals.
    Pending,
    /// Refused, by the server (not an approver, no longer pending, unknown)
    /// or by the run (already decided, stale arguments, …), or failed.
    Refused,
}

impl Outcome {
    /// Every outcome, in label order.
    pub const ALL: [Outcome; 5] = [
        Outcome::Approved,
        Outcome::ApprovedWithEdits,
        Outcome::Denied,
        Outcome::Pending,
        Outcome::Refused,
    ];

    /// The `outcome` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Approved => "approved",
            Outcome::ApprovedWithEdits => "approved_with_edits",
            Outcome::Denied => "denied",
            Outcome::Pending => "pending",
            Outcome::Refused => "refused",
        }
    }

    /// What the run's answer means; `None` (no answer) is a refusal.
    pub fn of(answer: Option<&DecisionOutcome>) -> Outcome {
        match answer {
            Some(o) if o.accepted => match o.state() {
                ApprovalState::Approved => Outcome::Approved,
                ApprovalState::ApprovedWithEdits => Outcome::ApprovedWithEdits,
                ApprovalState::Denied => Outcome::Denied,
                ApprovalState::Pending => Outcome::Pending,
                _ => Outcome::Refused,
            },
            _ => Outcome::Refused,
        }
    }
}

/// A Prometheus histogram with [`LATENCY_BUCKETS`].
#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        let i = LATENCY_BUCKETS
            .iter()
            .position(|&le| seconds <= le)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }
}

/// The counters behind `GET /metrics`, one set per router: [`instrument`]
/// puts them in every request's extensions.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    decisions: Mutex<BTreeMap<(Channel, Outcome), u64>>,
    latency: Mutex<BTreeMap<Channel, Histogram>>,
}

impl Metrics {
    /// Counts a request answered on `route` (the route template, e.g.
    /// `/approvals/{id}/approve`, or `unmatched`) with `status`.
    pub fn count_request(&self, route: &str, status: StatusCode) {
        *lock(&self.requests)
            .entry((route.to_string(), status.as_u16()))
            .or_default() += 1;
    }

    /// Counts a decision from `channel` by the run's `answer` (`None`: it
    /// was refused or failed before or at the run). An accepted decision on
    /// an approval with a `requested_at` is also observed in the latency
    /// histogram, measured to now.
    pub fn record_decision(
        &self,
        channel: Channel,
        approval: Option<&PendingApproval>,
        answer: Option<&DecisionOutcome>,
    ) {
        let outcome = Outcome::of(answer);
        *lock(&self.decisions).entry((channel, outcome)).or_default() += 1;
        if outcome == Outcome::Refused {
            return;
        }
        if let Some(seconds) = approval.and_then(|a| seconds_since_requested(a, SystemTime::now()))
        {
            self.observe_latency(channel, seconds);
        }
    }

    /// Observes one decision latency (seconds) for `channel`.
    pub fn observe_latency(&self, channel: Channel, seconds: f64) {
        lock(&self.latency)
            .entry(channel)
            .or_default()
            .observe(seconds.max(0.0));
    }

    /// The counters and the histogram in the Prometheus text format. Every
    /// channel and outcome is present from the start (at zero), so rates
    /// work from the first scrape.
    pub fn render(&self) -> String {
        let mut text = String::new();
        header(
            &mut text,
            "countersign_http_requests_total",
            "counter",
            "HTTP requests answered, by route template and status.",
        );
        for ((route, status), n) in lock(&self.requests).iter() {
            let _ = writeln!(
                text,
                "countersign_http_requests_total{{route=\"{}\",status=\"{status}\"}} {n}",
                label_value(route)
            );
        }
        header(
            &mut text,
            "countersign_decisions_total",
            "counter",
            "Decisions that passed through this server, by channel (api, dashboard, slack) and outcome (approved, approved_with_edits, denied, pending: a quorum still open, refused).",
        );
        let decisions = lock(&self.decisions);
        for channel in Channel::ALL {
            for outcome in Outcome::ALL {
                let n = decisions.get(&(channel, outcome)).copied().unwrap_or(0);
                let _ = writeln!(
                    text,
                    "countersign_decisions_total{{channel=\"{}\",outcome=\"{}\"}} {n}",
                    channel.as_str(),
                    outcome.as_str()
                );
            }
        }
        drop(decisions);
        header(
            &mut text,
            "countersign_decision_latency_seconds",
            "histogram",
            "Seconds from an approval's request to the decision the run accepted, by channel.",
        );
        let latency = lock(&self.latency);
        for channel in Channel::ALL {
            let h = latency.get(&channel).cloned().unwrap_or_default();
            let c = channel.as_str();
            let mut cumulative = 0;
            for (i, n) in h.buckets.iter().enumerate() {
                cumulative += n;
                let le = LATENCY_BUCKETS
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |le| le.to_string());
                let _ = writeln!(
                    text,
                    "countersign_decision_latency_seconds_bucket{{channel=\"{c}\",le=\"{le}\"}} {cumulative}"
                );
            }
            let _ = writeln!(
                text,
                "countersign_decision_latency_seconds_sum{{channel=\"{c}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                text,
                "countersign_decision_latency_seconds_count{{channel=\"{c}\"}} {}",
                h.count
            );
        }
        text
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Seconds from `approval.requested_at` to `now` (never negative), if the
/// approval says when it was requested.
pub fn seconds_since_requested(approval: &PendingApproval, now: SystemTime) -> Option<f64> {
    let requested = approval.requested_at.as_ref()?;
    let requested = requested.seconds as f64 + f64::from(requested.nanos) / 1e9;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs_f64();
    Some((now - requested).max(0.0))
}

/// `# HELP` and `# TYPE` lines (HELP text escaped as the format wants).
fn header(text: &mut String, name: &str, kind: &str, help: &str) {
    let help = help.replace('\\', "\\\\").replace('\n', "\\n");
    let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A Prometheus label value: backslash, quote and newline escaped.
pub fn label_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

// ---------------------------------------------------------------------------
// The pending-approvals gauge.

/// Pending approvals by (agent, tool), from Temporal visibility: each
/// waiting run counts once per entry of its `CountersignPendingTools` (one
/// per open approval). An error says why it could not be computed.
pub async fn pending_by_agent_and_tool(
    approvals: &Approvals,
) -> Result<BTreeMap<(String, String), u64>, String> {
    let runs = tokio::time::timeout(
        PENDING_SCRAPE_TIMEOUT,
        approvals.list_waiting(Some(PENDING_SCRAPE_MAX_RUNS)),
    )
    .await
    .map_err(|_| format!("Temporal visibility did not answer within {PENDING_SCRAPE_TIMEOUT:?}"))?
    .map_err(|e| e.to_string())?;
    if runs.len() >= PENDING_SCRAPE_MAX_RUNS {
        tracing::warn!(
            runs = runs.len(),
            "countersign_pending_approvals counts only the first {PENDING_SCRAPE_MAX_RUNS} waiting runs"
        );
    }
    let mut gauge = BTreeMap::new();
    for run in runs {
        for tool in run.pending_tools {
            *gauge.entry((run.agent.clone(), tool)).or_default() += 1;
        }
    }
    Ok(gauge)
}

/// The pending-approvals gauge and its `_up` companion in the Prometheus
/// text format; on an error, only `countersign_pending_approvals_up 0`.
pub fn render_pending(pending: &Result<BTreeMap<(String, String), u64>, String>) -> String {
    let mut text = String::new();
    if let Ok(gauge) = pending {
        header(
            &mut text,
            "countersign_pending_approvals",
            "gauge",
            "Approvals waiting for a decision, by agent and tool (Temporal visibility at scrape time).",
        );
        for ((agent, tool), n) in gauge {
            let _ = writeln!(
                text,
                "countersign_pending_approvals{{agent=\"{}\",tool=\"{}\"}} {n}",
                label_value(agent),
                label_value(tool)
            );
        }
    }
    header(
        &mut text,
        "countersign_pending_approvals_up",
        "gauge",
        "1 if countersign_pending_approvals was read from Temporal at this scrape, 0 if Temporal did not answer (the gauge is then left out).",
    );
    let _ = writeln!(
        text,
        "countersign_pending_approvals_up {}",
        u8::from(pending.is_ok())
    );
    text
}

// ---------------------------------------------------------------------------
// Wiring: the request counter, the handler, the decision span.

/// Counts every request of `router` in a fresh [`Metrics`] and makes the
/// counters available to the handlers (and to `GET /metrics`). [`crate::app`]
/// applies it to the whole router.
pub fn instrument<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    router
        .layer(middleware::from_fn(count_requests))
        .layer(Extension(Arc::new(Metrics::default())))
}

async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let metrics = request.extensions().get::<Arc<Metrics>>().cloned();
    let response = next.run(request).await;
    if let Some(metrics) = metrics {
        metrics.count_request(&route, response.status());
    }
    response
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format: countersign_http_requests_total{route,status}, countersign_decisions_total{channel,outcome}, countersign_decision_latency_seconds{channel} (histogram), countersign_pending_approvals{agent,tool} (gauge, from Temporal visibility at scrape time) and countersign_pending_approvals_up", content_type = "text/plain")))]
pub async fn metrics(
    State(state): State<AppState>,
    metrics: Option<Extension<Arc<Metrics>>>,
) -> Response {
    let mut text = metrics.map(|m| m.render()).unwrap_or_default();
    let pending = pending_by_agent_and_tool(&state.approvals).await;
    if let Err(e) = &pending {
        tracing::warn!(error = %e, "countersign_pending_approvals left out of /metrics");
    }
    text.push_str(&render_pending(&pending));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// The span a decision runs in, whatever its channel: every log line about
/// it (here and in the approvals crate) carries `approval_id`,
/// `workflow_id`, `run_id` (recorded by [`record_run_id`] once the approval
/// was read), `channel` and `reviewer`.
pub fn decision_span(channel: Channel, approval_id: &str, reviewer: &str) -> tracing::Span {
    tracing::info_span!(
        "decision",
        approval_id = %approval_id,
        workflow_id = workflow_id_of_approval(approval_id).unwrap_or_default(),
        run_id = tracing::field::Empty,
        channel = channel.as_str(),
        reviewer = %reviewer,
    )
}

/// Records the approval's run id on the current [`decision_span`].
pub fn record_run_id(approval: &PendingApproval) {
    tracing::Span::current().record("run_id", approval.run_id.as_str());
}

/// Counts a decision from `channel` that reached the run (when the router
/// has metrics): `answer` is the run's answer, `None` when it refused. The
/// approvals crate has logged it already, in the current [`decision_span`].
pub fn finish_decision(
    metrics: Option<&Metrics>,
    channel: Channel,
    approval: Option<&PendingApproval>,
    answer: Option<&DecisionOutcome>,
) {
    if let Some(metrics) = metrics {
        metrics.record_decision(channel, approval, answer);
    }
}

/// Counts and logs a decision from `channel` that the server refused before
/// it reached the run (unknown approval, no longer pending, not among its
/// approvers, Temporal unreachable), in the current [`decision_span`].
pub fn refuse_decision(metrics: Option<&Metrics>, channel: Channel, why: &dyn std::fmt::Display) {
    if let Some(metrics) = metrics {
        metrics.record_decision(channel, None, None);
    }
    tracing::info!(error = %why, "decision refused by the server");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approval_requested(seconds_ago: i64) -> PendingApproval {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut approval = PendingApproval {
            approval_id: "wf~00000000".into(),
            requested_at: Some(Default::default()),
            ..Default::default()
        };
        if let Some(t) = approval.requested_at.as_mut() {
            t.seconds = now - seconds_ago;
        }
        approval
    }

    fn answer(state: ApprovalState, accepted: bool) -> DecisionOutcome {
        DecisionOutcome {
            accepted,
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn counters_render_in_prometheus_text_format() {
        let metrics = Metrics::default();
        metrics.count_request("/approvals/{id}/approve", StatusCode::OK);
        metrics.count_request("/approvals/{id}/approve", StatusCode::OK);
        metrics.count_request("unmatched", StatusCode::NOT_FOUND);
        let text = metrics.render();
        assert!(text.contains(
            "countersign_http_requests_total{route=\"/approvals/{id}/approve\",status=\"200\"} 2\n"
        ));
        assert!(
            text.contains(
                "countersign_http_requests_total{route=\"unmatched\",status=\"404\"} 1\n"
            )
        );
        // Every metric has exactly one HELP and one TYPE line, before its samples.
        for (name, kind) in [
            ("countersign_http_requests_total", "counter"),
            ("countersign_decisions_total", "counter"),
            ("countersign_decision_latency_seconds", "histogram"),
        ] {
            assert_eq!(text.matches(&format!("# TYPE {name} {kind}\n")).count(), 1);
            assert_eq!(text.matches(&format!("# HELP {name} ")).count(), 1);
            let type_at = text.find(&format!("# TYPE {name} ")).unwrap();
            let first_sample = text
                .lines()
                .position(|l| l.starts_with(name))
                .map(|i| text.lines().take(i).map(|l| l.len() + 1).sum::<usize>())
                .unwrap();
            assert!(type_at < first_sample, "{name}");
        }
        // Every line is a comment or `name{labels} value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn decisions_count_by_channel_and_outcome_from_zero() {
        let metrics = Metrics::default();
        let text = metrics.render();
        for channel in ["api", "dashboard", "slack"] {
            for outcome in [
                "approved",
                "approved_with_edits",
                "denied",
                "pending",
                "refused",
            ] {
                let line = format!(
                    "countersign_decisions_total{{channel=\"{channel}\",outcome=\"{outcome}\"}} 0\n"
                );
                assert!(text.contains(&line), "{line}");
            }
        }
        let gate = approval_requested(42);
        metrics.record_decision(
            Channel::Dashboard,
            Some(&gate),
            Some(&answer(ApprovalState::Approved, true)),
        );
        metrics.record_decision(
            Channel::Slack,
            Some(&gate),
            Some(&answer(ApprovalState::Pending, true)),
        );
        metrics.record_decision(Channel::Api, Some(&gate), None);
        metrics.record_decision(
            Channel::Api,
            Some(&gate),
            Some(&answer(ApprovalState::Denied, false)),
        );
        metrics.record_decision(
            Channel::Api,
            None,
            Some(&answer(ApprovalState::ApprovedWithEdits, true)),
        );
        let text = metrics.render();
        for line in [
            "countersign_decisions_total{channel=\"dashboard\",outcome=\"approved\"} 1\n",
            "countersign_decisions_total{channel=\"slack\",outcome=\"pending\"} 1\n",
            "countersign_decisions_total{channel=\"api\",outcome=\"refused\"} 2\n",
            "countersign_decisions_total{channel=\"api\",outcome=\"approved_with_edits\"} 1\n",
            // Refusals and approvals without requested_at are not timed.
            "countersign_decision_latency_seconds_count{channel=\"api\"} 0\n",
            "countersign_decision_latency_seconds_count{channel=\"dashboard\"} 1\n",
            "countersign_decision_latency_seconds_count{channel=\"slack\"} 1\n",
            // 42 s: above 30, within 60.
            "countersign_decision_latency_seconds_bucket{channel=\"dashboard\",le=\"30\"} 0\n",
            "countersign_decision_latency_seconds_bucket{channel=\"dashboard\",le=\"60\"} 1\n",
            "countersign_decision_latency_seconds_bucket{channel=\"dashboard\",le=\"+Inf\"} 1\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn the_histogram_is_cumulative_and_sums() {
        let metrics = Metrics::default();
        for seconds in [0.5, 3.0, 3.0, 700.0, 1e7, -2.0] {
            metrics.observe_latency(Channel::Api, seconds);
        }
        let text = metrics.render();
        for line in [
            "countersign_decision_latency_seconds_bucket{channel=\"api\",le=\"1\"} 2\n",
            "countersign_decision_latency_seconds_bucket{channel=\"api\",le=\"5\"} 4\n",
            "countersign_decision_latency_seconds_bucket{channel=\"api\",le=\"600\"} 4\n",
            "countersign_decision_latency_seconds_bucket{channel=\"api\",le=\"1800\"} 5\n",
            "countersign_decision_latency_seconds_bucket{channel=\"api\",le=\"604800\"} 5\n",
            "countersign_decision_latency_seconds_bucket{channel=\"api\",le=\"+Inf\"} 6\n",
            "countersign_decision_latency_seconds_sum{channel=\"api\"} 10000706.5\n",
            "countersign_decision_latency_seconds_count{channel=\"api\"} 6\n",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        // Buckets never decrease.
        let counts: Vec<u64> = text
            .lines()
            .filter(|l| {
                l.starts_with("countersign_decision_latency_seconds_bucket{channel=\"api\"")
            })
            .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
            .collect();
        assert_eq!(counts.len(), LATENCY_BUCKETS.len() + 1);
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    }

    #[test]
    fn the_pending_gauge_escapes_labels_and_says_when_it_is_missing() {
        let mut gauge = BTreeMap::new();
        gauge.insert(("ap".to_string(), "pay".to_string()), 2);
        gauge.insert(("q\"a\\b".to_string(), "multi\nline".to_string()), 1);
        let text = render_pending(&Ok(gauge));
        assert!(text.contains("# TYPE countersign_pending_approvals gauge\n"));
        assert!(text.contains("countersign_pending_approvals{agent=\"ap\",tool=\"pay\"} 2\n"));
        assert!(text.contains(
            "countersign_pending_approvals{agent=\"q\\\"a\\\\b\",tool=\"multi\\nline\"} 1\n"
        ));
        assert!(text.contains("countersign_pending_approvals_up 1\n"));

        let text = render_pending(&Err("unreachable".into()));
        assert!(!text.contains("countersign_pending_approvals{"));
        assert!(!text.contains("# TYPE countersign_pending_approvals gauge"));
        assert!(text.contains("# TYPE countersign_pending_approvals_up gauge\n"));
        assert!(text.contains("countersign_pending_approvals_up 0\n"));
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
        assert_eq!(label_value("plain.tool-name"), "plain.tool-name");
        let mut text = String::new();
        header(&mut text, "m", "gauge", "back\\slash\nnewline");
        assert_eq!(text, "# HELP m back\\\\slash\\nnewline\n# TYPE m gauge\n");
    }

    #[test]
    fn latency_is_measured_from_requested_at() {
        let gate = approval_requested(90);
        let seconds = seconds_since_requested(&gate, SystemTime::now()).unwrap();
        assert!((89.0..100.0).contains(&seconds), "{seconds}");
        // A clock behind the run's: zero, never negative.
        let future = approval_requested(-60);
        assert_eq!(
            seconds_since_requested(&future, SystemTime::now()),
            Some(0.0)
        );
        assert_eq!(
            seconds_since_requested(&PendingApproval::default(), SystemTime::now()),
            None
        );
    }
}
