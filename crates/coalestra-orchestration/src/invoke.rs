//! Calling a source once: capacity, timeout budget, execution mode and panic
//! isolation.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use coalestra_core::{Event, Execution, ResourceKey, SourceError};
use tokio::time::Instant;
use tracing::Instrument;

use crate::catalog::SourceEntry;
use crate::engine::Engine;
use crate::job::Job;

/// Turns a panic payload into text.
pub(crate) fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-text panic payload".to_owned()
    }
}

/// A source call that reports a panic while it is polled as an error
/// (the panic's text). It wraps the boxed, `Unpin` futures sources return, so
/// it needs neither an allocation nor pin projection.
pub(crate) struct CatchPanics<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchPanics<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| Pin::new(&mut self.0).poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload))),
        }
    }
}

/// A call bounded by an optional budget: `None` when the budget elapsed
/// first. A bounded call runs inside `tokio::time::timeout`, boxed: only
/// calls with a budget carry (and allocate) its timer, so an unbounded
/// call's future stays as small as the call itself.
pub(crate) enum Bounded<F> {
    Unbounded(F),
    Within(Pin<Box<tokio::time::Timeout<F>>>),
}

pub(crate) fn bounded<F: Future>(budget: Option<Duration>, call: F) -> Bounded<F> {
    match budget {
        Some(budget) => Bounded::Within(Box::pin(tokio::time::timeout(budget, call))),
        None => Bounded::Unbounded(call),
    }
}

impl<F: Future + Unpin> Future for Bounded<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut *self {
            Bounded::Unbounded(call) => Pin::new(call).poll(cx).map(Some),
            Bounded::Within(call) => call.as_mut().poll(cx).map(Result::ok),
        }
    }
}

impl Engine {
    /// Records a finished [`invoke`](Self::invoke) in the job's per-source
    /// call statistics, unless it ended waiting for capacity or at the
    /// deadline; returns whether it was recorded.
    pub(crate) fn record_call<T>(
        &self,
        entry: &SourceEntry,
        job: &Job,
        call: &Result<(T, Duration), SourceError>,
    ) -> bool {
        let counted = !matches!(call, Err(e) if e.is_queue_timeout() || e.is_deadline_exceeded());
        if counted {
            let elapsed = call.as_ref().map(|(_, l)| *l).unwrap_or_default();
            job.stats.source_call(&entry.name, elapsed);
        }
        counted
    }

    /// Runs one source call under the source's capacity, the job deadline and
    /// the source timeout. Returns the result and the call latency.
    /// `blocking_call` makes the call for blocking and inline sources; it
    /// is only asked for when the source runs that way.
    pub(crate) async fn invoke<T, Fut, B>(
        &self,
        entry: &SourceEntry,
        job: &Job,
        resource: Option<&ResourceKey>,
        async_call: impl FnOnce() -> Fut,
        blocking_call: impl FnOnce() -> B,
    ) -> Result<(T, Duration), SourceError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, SourceError>> + Unpin,
        B: FnOnce() -> Result<T, SourceError> + Send + 'static,
    {
        if job.expired() {
            return Err(SourceError::deadline(format_args!(
                "before waiting for {} capacity",
                entry.name
            )));
        }
        let info = entry.source.info();
        // Free capacity is taken at once; only a call that must queue makes
        // (and boxes) the waiting future, which keeps every call's future
        // small.
        let permit = match self.capacity.try_acquire(&entry.name) {
            Some(permit) => Ok(permit),
            None => {
                Box::pin(self.capacity.acquire(
                    Arc::clone(&entry.name),
                    info.queue_timeout(),
                    job.deadline,
                ))
                .await
            }
        };
        let permit = permit.map_err(|e| {
            let reason = if e.is_queue_timeout() {
                "queue_timeout"
            } else {
                "snapshot_deadline"
            };
            self.emit.count(
                "source_capacity_timeout_total",
                &[("source", &entry.name), ("reason", reason)],
            );
            if e.is_queue_timeout() {
                self.health
                    .queue_timeouts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                SourceError::QueueTimeout {
                    source_name: entry.name.clone(),
                    timeout: info.queue_timeout().unwrap_or_default(),
                }
            } else {
                SourceError::deadline(format_args!("while waiting for {} capacity", entry.name))
            }
        })?;
        self.emit.observe(
            "source_capacity_wait_ms",
            &[("source", &entry.name)],
            permit.wait_time().as_secs_f64() * 1000.0,
        );
        let start = Instant::now();
        let remaining = job.deadline.map(|d| d.saturating_duration_since(start));
        if remaining == Some(Duration::ZERO) {
            return Err(SourceError::deadline(format_args!(
                "before calling {}",
                entry.name
            )));
        }
        let (budget, deadline_binds) = match (remaining, info.timeout()) {
            (Some(r), Some(t)) if r <= t => (Some(r), true),
            (_, Some(t)) => (Some(t), false),
            (Some(r), None) => (Some(r), true),
            (None, None) => (None, false),
        };
        let transport = entry.guarantee.protected_transport();
        if let (Some(transport), Some(available)) = (transport, budget) {
            self.check_transport_budget(entry, resource, transport, available, deadline_binds)?;
        }
        let outcome = match entry.execution() {
            Execution::Async => {
                let span = tracing::trace_span!(
                    "coalestra.source_call",
                    source = %entry.name,
                    snapshot_id = %job.ctx.snapshot_id
                );
                bounded(budget, CatchPanics(async_call()))
                    .instrument(span)
                    .await
            }
            Execution::Blocking => {
                let handle = tokio::task::spawn_blocking(blocking_call());
                match bounded(budget, handle).await {
                    Some(Ok(r)) => Some(Ok(r)),
                    Some(Err(join)) if join.is_panic() => {
                        Some(Err(panic_message(join.into_panic())))
                    }
                    Some(Err(_)) => Some(Err("blocking call was cancelled".to_owned())),
                    None => None,
                }
            }
            _ => Some(catch_unwind(AssertUnwindSafe(blocking_call())).map_err(panic_message)),
        };
        drop(permit);
        let latency = start.elapsed();
        if let Some(transport) = transport {
            let late = match &outcome {
                None => Some("coalestra_timeout"),
                Some(_) if latency <= transport + self.transport_grace => None,
                Some(Ok(Ok(_))) => Some("completed_late"),
                Some(_) => Some("failed_late"),
            };
            if let Some(kind) = late {
                self.record_violation(entry, resource, kind, transport, latency);
            }
        }
        match outcome {
            None if deadline_binds => Err(SourceError::deadline(format_args!(
                "while calling {}",
                entry.name
            ))),
            None => Err(SourceError::Timeout {
                source_name: entry.name.clone(),
                budget: budget.unwrap_or_default(),
                resource: resource.cloned(),
            }),
            Some(Err(panic)) => Err(SourceError::Panicked {
                message: panic.into(),
            }),
            Some(Ok(result)) => {
                if job.expired() {
                    return Err(SourceError::deadline(format_args!(
                        "after {} returned",
                        entry.name
                    )));
                }
                result.map(|v| (v, latency))
            }
        }
    }
}

impl Engine {
    fn check_transport_budget(
        &self,
        entry: &SourceEntry,
        resource: Option<&ResourceKey>,
        transport: Duration,
        available: Duration,
        deadline_binds: bool,
    ) -> Result<(), SourceError> {
        if transport <= available {
            return Ok(());
        }
        let gap = transport - available;
        let resource_text = || resource.map(ToString::to_string).unwrap_or_default();
        if deadline_binds && transport < available + self.dispatch_grace {
            self.emit.event(|| {
                Event::new("source_dispatch_under_deadline_pressure")
                    .field("source", &*entry.name)
                    .field("resource", resource_text())
                    .field("transport_timeout_seconds", transport.as_secs_f64())
                    .field("available_budget_seconds", available.as_secs_f64())
                    .field(
                        "deadline_dispatch_grace_seconds",
                        self.dispatch_grace.as_secs_f64(),
                    )
                    .field("gap_seconds", gap.as_secs_f64())
            });
            return Ok(());
        }
        let reason = if deadline_binds {
            "snapshot_deadline"
        } else {
            "source_timeout"
        };
        self.emit.count(
            "source_transport_budget_rejection_total",
            &[("source", &entry.name), ("reason", reason)],
        );
        self.emit.event(|| {
            Event::new("source_transport_budget_rejected")
                .field("source", &*entry.name)
                .field("resource", resource_text())
                .field("transport_timeout_seconds", transport.as_secs_f64())
                .field("available_budget_seconds", available.as_secs_f64())
        });
        let detail = format!(
            "{} not started: its transport timeout does not fit the remaining budget (budget={:.3}s, transport_timeout={:.3}s, gap={:.3}s)",
            entry.name,
            available.as_secs_f64(),
            transport.as_secs_f64(),
            gap.as_secs_f64()
        );
        if deadline_binds {
            Err(SourceError::deadline(format_args!(
                "before calling {detail}"
            )))
        } else {
            Err(SourceError::custom("SourceTimeoutError", detail, false))
        }
    }

    fn record_violation(
        &self,
        entry: &SourceEntry,
        resource: Option<&ResourceKey>,
        outcome: &'static str,
        transport: Duration,
        elapsed: Duration,
    ) {
        *self
            .health
            .transport_violations
            .entry(entry.name.to_string())
            .or_insert(0) += 1;
        self.emit.count(
            "source_transport_timeout_violation_total",
            &[("source", &entry.name), ("outcome", outcome)],
        );
        self.emit.event(|| {
            Event::new("source_transport_timeout_violated")
                .field("source", &*entry.name)
                .field(
                    "resource",
                    resource.map(ToString::to_string).unwrap_or_default(),
                )
                .field("outcome", outcome)
                .field(
                    "declared_transport_timeout_seconds",
                    transport.as_secs_f64(),
                )
                .field("observed_elapsed_seconds", elapsed.as_secs_f64())
                .field("grace_seconds", self.transport_grace.as_secs_f64())
        });
    }
}
