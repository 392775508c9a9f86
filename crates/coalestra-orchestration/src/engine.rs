//! The engine state shared by a builder and all its clones, sessions and
//! background work.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use coalestra_concurrency::CapacityController;
use coalestra_core::{
    AuthorityResolver, ObservationPolicy, PolicyResolver, SharedClock, SnapshotCache,
};
use coalestra_resilience::CircuitBreakers;

use crate::catalog::SourceCatalog;
use crate::emit::Emitter;
use crate::flight::FlightTable;
use crate::refresh::RefreshRegistry;
use crate::tasks::TaskTracker;

/// Cumulative operational counters.
#[derive(Debug, Default)]
pub(crate) struct HealthCounters {
    pub(crate) queue_timeouts: AtomicU64,
    pub(crate) source_timeouts: AtomicU64,
    pub(crate) deadlines: AtomicU64,
    pub(crate) revalidations: AtomicU64,
    pub(crate) revalidation_failures: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) circuit_rejections: AtomicU64,
    pub(crate) transport_violations: dashmap::DashMap<String, u64>,
}

/// Buffered sinks the builder created (and must close).
#[derive(Default)]
pub(crate) struct Buffers {
    pub(crate) events: Option<Arc<coalestra_observability::BufferedEventSink>>,
    pub(crate) metrics: Option<Arc<coalestra_observability::BufferedMetricsSink>>,
}

/// Everything one builder owns.
pub(crate) struct Engine {
    pub(crate) catalog: SourceCatalog,
    pub(crate) cache: Arc<dyn SnapshotCache>,
    pub(crate) cache_validates_deps: bool,
    pub(crate) clock: SharedClock,
    pub(crate) policies: PolicyResolver,
    pub(crate) authority: AuthorityResolver,
    pub(crate) observation: ObservationPolicy,
    pub(crate) capacity: CapacityController,
    pub(crate) breakers: CircuitBreakers,
    pub(crate) max_pending: NonZeroUsize,
    pub(crate) flights: FlightTable,
    pub(crate) refreshes: RefreshRegistry,
    pub(crate) tasks: TaskTracker,
    pub(crate) emit: Emitter,
    pub(crate) buffers: Buffers,
    pub(crate) health: HealthCounters,
    pub(crate) closed: AtomicBool,
    pub(crate) active_workers: std::sync::atomic::AtomicUsize,
    pub(crate) transport_grace: std::time::Duration,
    pub(crate) dispatch_grace: std::time::Duration,
}

impl Engine {
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn note_retries(&self, job: &crate::job::Job, attempts: u32) {
        let extra = u64::from(attempts.saturating_sub(1));
        if extra > 0 {
            crate::stats::BuildStats::add(&job.stats.retries, extra);
            self.health.retries.fetch_add(extra, Ordering::Relaxed);
        }
    }

    /// Marks one dispatch worker busy until the guard drops.
    pub(crate) fn worker(&self) -> WorkerGuard<'_> {
        self.active_workers.fetch_add(1, Ordering::Relaxed);
        WorkerGuard(&self.active_workers)
    }

    /// Counts a deadline exceeded, once per job.
    pub(crate) fn note_deadline(&self, job: &crate::job::Job) {
        if !job.deadline_noted.swap(true, Ordering::Relaxed) {
            self.health.deadlines.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a source timeout that exhausted its attempt chain.
    pub(crate) fn note_final_error(
        &self,
        job: &crate::job::Job,
        error: &coalestra_core::SourceError,
    ) {
        if error.is_timeout() {
            self.health.source_timeouts.fetch_add(1, Ordering::Relaxed);
        }
        if error.is_deadline_exceeded() {
            self.note_deadline(job);
        }
    }
}

/// A busy dispatch worker.
pub(crate) struct WorkerGuard<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for WorkerGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
