//! Timers, activities and child workflows whose cancellation does not keep
//! the run's context alive after the run has left the worker's cache.
//!
//! In `temporalio-workflow` 1.1.1 every timer, activity and child workflow
//! registers a callback in the cancellation token it is given, by default
//! the run's own (`BaseWorkflowContext::cancellation_token`,
//! `workflow_context.rs:1015`), which lives inside the run's context
//! (`WorkflowContextInner::cancellation_token`). The callback holds the
//! operation's cancellation handle, a closure that owns a clone of the
//! context (`BaseWorkflowContext::cancellation_handle`,
//! `workflow_context.rs:1087`; registered by
//! `CancellableWorkflowOutboundFuture::with_cancellation_token`,
//! `workflow_interceptors.rs:961`). It is removed only when the operation's
//! future completes (`workflow_interceptors.rs:1003`):
//! `WorkflowCancellationRegistration` has no `Drop` (`cancellation.rs:134`).
//! An operation dropped before it completes (the expiry timer a decision
//! cancelled; anything in flight when the run is evicted, which is every
//! waiting run's timer) leaves a cycle context → token → callback →
//! context, so the whole context (the run's start event with its input,
//! memo, search attributes, last activation, command buffers) is never
//! freed: about 11 KiB of worker RSS for every run started, waiting or
//! completed, without bound (BENCHMARKS.md, "Worker memory").
//!
//! The helpers here give each operation a token of its own, a child of the
//! run's token, owned by the returned future (or, for child workflows, by
//! the caller for as long as it awaits the child). The operation's callback
//! then lives in that child token, which is freed with the future; the run's
//! token only keeps a weak reference to it. Workflow cancellation still
//! reaches every operation in flight, in the same order (one child token
//! per operation, created right before it), so the commands a run emits are
//! unchanged and recorded histories replay as before.

use futures::future::FusedFuture;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use temporalio_common::ActivityDefinition;
use temporalio_common::data_converters::TemporalDeserializable;
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, CancellableFuture, TimerOptions, TimerResult,
    WorkflowCancellationToken, WorkflowContext,
};

/// A token for one operation: cancelled with the run, freed with the
/// operation.
pub(super) fn token<W>(ctx: &WorkflowContext<W>) -> WorkflowCancellationToken {
    ctx.cancellation_token().child_token()
}

/// `ctx.timer(duration)`, without the leak.
pub(super) fn timer<W>(
    ctx: &WorkflowContext<W>,
    duration: Duration,
) -> Scoped<impl CancellableFuture<Output = TimerResult>> {
    let token = token(ctx);
    let options = TimerOptions::builder(duration)
        .cancellation_token(token.clone())
        .build();
    Scoped::new(ctx.timer(options), token)
}

/// `ctx.execute_activity(activity, input, options)`, without the leak.
pub(super) fn activity<W, AD>(
    ctx: &WorkflowContext<W>,
    activity: AD,
    input: impl Into<AD::Input>,
    mut options: ActivityOptions,
) -> Scoped<impl CancellableFuture<Output = Result<AD::Output, ActivityExecutionError>>>
where
    AD: ActivityDefinition,
    AD::Output: TemporalDeserializable,
{
    let token = token(ctx);
    options.cancellation_token = Some(token.clone());
    Scoped::new(ctx.execute_activity(activity, input, options), token)
}

/// An operation's future with the token it was started under.
pub(super) struct Scoped<F> {
    future: Pin<Box<F>>,
    _token: WorkflowCancellationToken,
}

impl<F> Scoped<F> {
    fn new(future: F, token: WorkflowCancellationToken) -> Self {
        Self {
            future: Box::pin(future),
            _token: token,
        }
    }
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.future.as_mut().poll(cx)
    }
}

impl<F: FusedFuture> FusedFuture for Scoped<F> {
    fn is_terminated(&self) -> bool {
        self.future.is_terminated()
    }
}

impl<F: CancellableFuture> CancellableFuture for Scoped<F> {
    fn cancel(&self) {
        self.future.cancel();
    }
}
