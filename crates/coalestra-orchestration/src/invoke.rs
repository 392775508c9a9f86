//! Calling a source once: capacity, timeout budget, execution mode and panic
//! isolation.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use coalestra_core::{Execution, ResourceKey, SourceError};
use tokio::time::Instant;

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

/// A future that reports a panic of its inner future as an error.
pub(crate) struct CatchUnwind<F>(Pin<Box<F>>);

impl<F> CatchUnwind<F> {
    pub(crate) fn new(future: F) -> Self {
        Self(Box::pin(future))
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(panic_message(payload))),
        }
    }
}

impl Engine {
    /// Runs one source call under the source's capacity, the job deadline and
    /// the source timeout. Returns the result and the call latency.
    pub(crate) async fn invoke<T, Fut, B>(
        &self,
        entry: &SourceEntry,
        job: &Job,
        resource: Option<&ResourceKey>,
        async_call: impl FnOnce() -> Fut,
        blocking_call: B,
    ) -> Result<(T, Duration), SourceError>
    where
        T: Send + 'static,
        Fut: Future<Output = Result<T, SourceError>>,
        B: FnOnce() -> Result<T, SourceError> + Send + 'static,
    {
        if job.expired() {
            return Err(SourceError::deadline(format_args!(
                "before waiting for {} capacity",
                entry.name
            )));
        }
        let info = entry.source.info();
        let permit = self
            .capacity
            .acquire(&entry.name, info.queue_timeout(), job.deadline)
            .await
            .map_err(|e| {
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
        let outcome = match entry.execution() {
            Execution::Async => {
                let call = CatchUnwind::new(async_call());
                bounded(budget, call).await
            }
            Execution::Blocking => {
                let handle = tokio::task::spawn_blocking(blocking_call);
                match bounded(budget, handle).await {
                    Some(Ok(r)) => Some(Ok(r)),
                    Some(Err(join)) if join.is_panic() => {
                        Some(Err(panic_message(join.into_panic())))
                    }
                    Some(Err(_)) => Some(Err("blocking call was cancelled".to_owned())),
                    None => None,
                }
            }
            _ => Some(catch_unwind(AssertUnwindSafe(blocking_call)).map_err(panic_message)),
        };
        drop(permit);
        let latency = start.elapsed();
        match outcome {
            None if deadline_binds => {
                self.health
                    .deadlines
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(SourceError::deadline(format_args!(
                    "while calling {}",
                    entry.name
                )))
            }
            None => {
                self.health
                    .source_timeouts
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Err(SourceError::Timeout {
                    source_name: entry.name.clone(),
                    budget: budget.unwrap_or_default(),
                    resource: resource.cloned(),
                })
            }
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

async fn bounded<F: Future>(budget: Option<Duration>, future: F) -> Option<F::Output> {
    match budget {
        Some(b) => tokio::time::timeout(b, future).await.ok(),
        None => Some(future.await),
    }
}
