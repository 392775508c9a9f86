//! Background refresh: at most one per key per builder, using the same
//! single-flight, capacity and resilience as foreground builds.

use std::sync::Arc;

use coalestra_core::key::KeyHashing;
use coalestra_core::{Event, FetchContext, ResourceKey, Version};
use dashmap::DashMap;
use tokio::sync::Notify;

use crate::engine::Engine;
use crate::flight::Reservation;
use crate::job::Job;
use crate::stats::BuildStats;

/// Keys with a pending background refresh.
#[derive(Debug, Default)]
pub(crate) struct RefreshRegistry {
    pending: DashMap<ResourceKey, (), KeyHashing>,
    idle: Notify,
}

impl RefreshRegistry {
    pub(crate) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Waits until no refresh is pending (refreshes may schedule more).
    pub(crate) async fn wait(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.pending.is_empty() {
                return;
            }
            notified.await;
        }
    }

    fn finish(&self, key: &ResourceKey) {
        self.pending.remove(key);
        if self.pending.is_empty() {
            self.idle.notify_waiters();
        }
    }
}

impl Engine {
    /// Schedules a refresh of `key` unless one is pending or the builder is
    /// closed. Returns whether a refresh is (now or already) pending.
    pub(crate) fn request_refresh(
        self: &Arc<Self>,
        key: &ResourceKey,
        reason: &'static str,
        parent: &Job,
    ) -> bool {
        if parent.refresh || self.is_closed() {
            return false;
        }
        if self.refreshes.pending.insert(key.clone(), ()).is_some() {
            return true;
        }
        BuildStats::bump(&parent.stats.refresh_scheduled);
        self.emit
            .count_resource("resource_refresh_total", key, &[("status", "scheduled")]);
        let snapshot_id = format!(
            "{}:refresh:{}",
            parent.ctx.snapshot_id,
            &Version::next().to_string()[24..]
        );
        self.emit.event(|| {
            Event::new("resource_refresh_scheduled")
                .field("resource", key.to_string())
                .field("reason", reason)
                .field("snapshot_id", snapshot_id.clone())
        });
        let ctx = FetchContext::new(snapshot_id, self.clock.now()).with_metadata(
            parent
                .ctx
                .metadata
                .with("background_refresh", true)
                .with("refresh_reason", reason)
                .with("parent_snapshot_id", &*parent.ctx.snapshot_id),
        );
        let mut job = Job::new(self, ctx, None);
        job.refresh = true;
        job.bypass_cache = true;
        let job = Arc::new(job);
        let engine = Arc::clone(self);
        let key = key.clone();
        self.tasks.spawn(async move {
            engine.run_refresh(&key, &job, reason).await;
            engine.refreshes.finish(&key);
        });
        true
    }

    async fn run_refresh(
        self: &Arc<Self>,
        key: &ResourceKey,
        job: &Arc<Job>,
        reason: &'static str,
    ) {
        let outcome = match self.flights.reserve(key) {
            Reservation::Joined(flight) => flight.wait().await,
            Reservation::Owner(guard) => {
                job.tree.own(std::slice::from_ref(key));
                let outcome = self
                    .run_chain(std::slice::from_ref(key), job, &[])
                    .await
                    .pop()
                    .unwrap_or_else(|| crate::resolve::deadline_outcome(key, "refresh"));
                guard.complete(outcome.clone());
                outcome
            }
        };
        match outcome {
            Ok(value) if !value.is_stale() => {
                self.emit
                    .count_resource("resource_refresh_total", key, &[("status", "success")]);
                self.emit.event(|| {
                    Event::new("resource_refresh_completed")
                        .field("resource", key.to_string())
                        .field("source", value.source())
                        .field("reason", reason)
                });
            }
            other => {
                self.emit
                    .count_resource("resource_refresh_total", key, &[("status", "failure")]);
                let (error_type, error) = match &other {
                    Err(e) => (e.error_type().to_owned(), e.to_string()),
                    Ok(_) => (
                        "StaleSourceData".to_owned(),
                        "refresh returned stale data".to_owned(),
                    ),
                };
                self.emit.event(|| {
                    Event::new("resource_refresh_failed")
                        .field("resource", key.to_string())
                        .field("reason", reason)
                        .field("error_type", error_type)
                        .field("error", error)
                });
            }
        }
    }
}
