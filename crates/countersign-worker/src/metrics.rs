//! Countersign's own worker metrics, recorded on the Temporal SDK's metric
//! meter so they are exported with the SDK's worker metrics (one Prometheus
//! endpoint, one registry).
//!
//! The counts are taken by an activity interceptor around `execute_tool`, so
//! every attempt is counted once, whatever the tool kind, without touching
//! the activities themselves.

use crate::tools::{ToolInvocation, ToolOutput};
use std::sync::Arc;
use temporalio_common::telemetry::metrics::{
    CoreMeter, Counter, MetricKeyValue, MetricParameters, NewAttributes,
};
use temporalio_sdk::activities::ActivityError;
use temporalio_sdk::interceptors::{
    ActivityInboundInterceptor, ExecuteActivityInput, ExecuteActivityOutput, ExecuteActivityResult,
    Next,
};

/// Tool executions (`execute_tool` attempts), by tool.
pub const TOOL_EXECUTIONS: &str = "countersign_tool_executions_total";
/// Tool executions that did not succeed, by tool and reason.
pub const TOOL_FAILURES: &str = "countersign_tool_failures_total";

/// Counters for tool executions, by tool name (the catalog's name, e.g.
/// `send_payment` or `notes.add_note`).
///
/// `countersign_tool_executions_total{tool}` counts every attempt.
/// `countersign_tool_failures_total{tool,reason}` counts the attempts that
/// did not succeed: `error_result` (the tool refused the call, e.g. a 4xx;
/// the model gets an error result), `retryable` (a transient failure that
/// Temporal retries) and `cancelled` (the worker shut down, or the run was
/// cancelled, while the call ran).
#[derive(Clone)]
pub struct ToolMetrics {
    meter: Arc<dyn CoreMeter>,
    executions: Counter,
    failures: Counter,
}

impl std::fmt::Debug for ToolMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolMetrics").finish_non_exhaustive()
    }
}

/// How one tool execution ended, for [`ToolMetrics::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolOutcome {
    /// The tool answered.
    Succeeded,
    /// The tool refused the call; the model gets an error result.
    ErrorResult,
    /// A transient failure; Temporal retries the call.
    Retryable,
    /// The activity was cancelled while the call ran.
    Cancelled,
}

impl ToolOutcome {
    /// The `reason` label of a failure; `None` for a success.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Self::Succeeded => None,
            Self::ErrorResult => Some("error_result"),
            Self::Retryable => Some("retryable"),
            Self::Cancelled => Some("cancelled"),
        }
    }

    fn of(result: &ExecuteActivityResult) -> Self {
        match result {
            Ok(value) => match value.downcast_ref::<ToolOutput>() {
                Some(output) if output.is_error => Self::ErrorResult,
                _ => Self::Succeeded,
            },
            Err(ActivityError::Cancelled { .. }) => Self::Cancelled,
            Err(_) => Self::Retryable,
        }
    }
}

impl ToolMetrics {
    /// Counters registered on `meter`: pass the meter given to the SDK's
    /// runtime (`TelemetryOptions::metrics`) to export them with its metrics.
    pub fn new(meter: Arc<dyn CoreMeter>) -> Self {
        let executions = meter.counter(
            MetricParameters::builder()
                .name(TOOL_EXECUTIONS)
                .description("Tool executions (execute_tool attempts), by tool")
                .build(),
        );
        let failures = meter.counter(
            MetricParameters::builder()
                .name(TOOL_FAILURES)
                .description(
                    "Tool executions that did not succeed, by tool and reason \
                     (error_result, retryable, cancelled)",
                )
                .build(),
        );
        Self {
            meter,
            executions,
            failures,
        }
    }

    /// Counts one execution of `tool` that ended with `outcome`.
    pub fn record(&self, tool: &str, outcome: ToolOutcome) {
        let tool = MetricKeyValue::new("tool", tool.to_string());
        let attributes = self
            .meter
            .new_attributes(NewAttributes::from(vec![tool.clone()]));
        self.executions.add(1, &attributes);
        if let Some(reason) = outcome.reason() {
            let attributes = self.meter.new_attributes(NewAttributes::from(vec![
                tool,
                MetricKeyValue::new("reason", reason),
            ]));
            self.failures.add(1, &attributes);
        }
    }

    /// The activity interceptor that counts `execute_tool` attempts.
    pub fn interceptor(&self) -> ToolMetricsInterceptor {
        ToolMetricsInterceptor {
            metrics: self.clone(),
        }
    }
}

/// Counts each `execute_tool` attempt on [`ToolMetrics`]; other activities
/// pass through untouched.
pub struct ToolMetricsInterceptor {
    metrics: ToolMetrics,
}

impl ActivityInboundInterceptor for ToolMetricsInterceptor {
    fn execute_activity<'a>(
        &'a self,
        input: ExecuteActivityInput,
        next: Next<'a, ExecuteActivityInput, ExecuteActivityOutput<'a>>,
    ) -> ExecuteActivityOutput<'a> {
        let tool = (input.activity_info().activity_type == "execute_tool")
            .then(|| input.args_ref::<ToolInvocation>())
            .flatten()
            .map(|invocation| invocation.tool.name.clone());
        let Some(tool) = tool else {
            return next.run(input);
        };
        let execution = next.run(input);
        Box::pin(async move {
            let result = execution.await;
            self.metrics.record(&tool, ToolOutcome::of(&result));
            result
        })
    }
}
