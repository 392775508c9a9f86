//! [`BuilderHealth`]: an immutable, aggregate view of a builder's runtime
//! state, taken without calling any source.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use coalestra_concurrency::CapacitySnapshot;
use coalestra_core::CacheStats;
use coalestra_resilience::{CircuitState, CircuitStatus};
use serde::Serialize;

use crate::assessment::{HealthAssessment, HealthAssessmentPolicy};
use crate::builder::SnapshotBuilder;
use crate::guarantee::{GuaranteeStatus, TimeoutGuarantee};

/// The health schema name.
pub const HEALTH_SCHEMA: &str = "coalestra.builder-health";
/// The health schema version.
pub const HEALTH_SCHEMA_VERSION: u32 = 1;

/// Counters of one buffered observability sink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BufferHealth {
    /// Records accepted.
    pub enqueued: u64,
    /// Records delivered downstream.
    pub delivered: u64,
    /// Records dropped (overflow or after close).
    pub dropped: u64,
    /// Downstream failures.
    pub failures: u64,
    /// Records waiting.
    pub pending: u64,
    /// The queue bound.
    pub max_pending: u64,
    /// The highest backlog seen.
    pub peak_pending: u64,
    /// Whether the buffer was closed.
    pub closed: bool,
    /// Whether its worker runs.
    pub worker_alive: bool,
    /// Close calls that timed out.
    pub shutdown_timeout_count: u64,
}

/// A builder's runtime state. Only aggregates: no subject or qualifier value
/// ever appears here.
///
/// Serializes (derive-based, so no field can be forgotten) to the versioned
/// `coalestra.builder-health` schema.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct BuilderHealth {
    /// Always [`HEALTH_SCHEMA`].
    pub schema: &'static str,
    /// Always [`HEALTH_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Whether the builder is closed.
    pub closed: bool,
    /// Background refreshes pending.
    pub background_refreshes: u64,
    /// Keys being fetched.
    pub singleflight_in_flight: u64,
    /// Entries in the `supports` answer cache.
    pub source_support_cache_entries: u64,
    /// Capacity limits, use and waiters.
    pub capacity: CapacitySnapshot,
    /// Cache counters.
    pub cache: CacheStats,
    /// Circuit states by identity (`source[scope]` or `source[scope]:discriminator`).
    pub circuits: BTreeMap<String, CircuitState>,
    /// Dispatch workers running a source attempt.
    pub active_dispatch_workers: u64,
    /// Callers waiting for capacity, over every limiter.
    pub waiting_for_capacity: u64,
    /// Capacity queue timeouts so far.
    pub queue_timeout_count: u64,
    /// Source timeouts so far.
    pub source_timeout_count: u64,
    /// Snapshot deadlines exceeded so far.
    pub deadline_exceeded_count: u64,
    /// Session revalidations attempted.
    pub revalidation_attempt_count: u64,
    /// Session revalidations that kept the previous state.
    pub revalidation_failure_count: u64,
    /// Retries (attempts beyond the first) so far.
    pub retry_count: u64,
    /// Calls refused by an open circuit so far.
    pub circuit_rejection_count: u64,
    /// Timeout contracts per source.
    pub source_timeout_guarantees: BTreeMap<String, TimeoutGuarantee>,
    /// Sources declaring blocking I/O.
    pub blocking_source_count: u64,
    /// Blocking sources with a protected contract.
    pub protected_blocking_source_count: u64,
    /// Blocking sources with an unsafe contract.
    pub unsafe_blocking_source_count: u64,
    /// Sources without a declaration (always 0: Rust sources declare through their traits).
    pub undeclared_source_timeout_count: u64,
    /// Protected calls that overran their transport timeout.
    pub source_transport_timeout_violation_count: u64,
    /// Transport timeout violations per source.
    pub source_transport_timeout_violations: BTreeMap<String, u64>,
    /// Blocking-facade submissions pending (0 for an async builder).
    pub pending_submissions: u64,
    /// The blocking facade's backlog bound (`None` for an async builder).
    pub max_pending_submissions: Option<u64>,
    /// Buffered observability sinks owned by the builder.
    pub observability_buffers: BTreeMap<String, BufferHealth>,
    /// Records waiting in those buffers.
    pub observability_pending: u64,
    /// The highest backlog any of those buffers saw.
    pub observability_peak_pending: u64,
    /// Records dropped by those buffers.
    pub observability_dropped_count: u64,
    /// Downstream failures of those buffers.
    pub observability_failure_count: u64,
    /// Buffer close calls that timed out.
    pub observability_shutdown_timeout_count: u64,
    /// Whether a buffer was closed but its worker still runs.
    pub observability_shutdown_incomplete: bool,
    /// The assessment against the default policy.
    pub assessment: Option<HealthAssessment>,
}

impl BuilderHealth {
    /// The JSON form (schema `coalestra.builder-health`, version 1).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Assesses this state; counters are compared with `previous` when given.
    pub fn assess(
        &self,
        policy: &HealthAssessmentPolicy,
        previous: Option<&BuilderHealth>,
    ) -> HealthAssessment {
        crate::assessment::assess(self, policy, previous)
    }

    /// Circuits in a given state.
    pub fn circuits_in(&self, status: CircuitStatus) -> usize {
        self.circuits.values().filter(|c| c.state == status).count()
    }

    /// Overlays a blocking facade's submission backlog.
    pub fn with_submissions(mut self, pending: u64, max: u64) -> Self {
        self.pending_submissions = pending;
        self.max_pending_submissions = Some(max);
        self.assessment = Some(self.assess(&HealthAssessmentPolicy::default(), None));
        self
    }

    /// Overlays buffered sink counters.
    pub fn with_buffer(mut self, name: &str, buffer: BufferHealth) -> Self {
        self.observability_pending += buffer.pending;
        self.observability_dropped_count += buffer.dropped;
        self.observability_failure_count += buffer.failures;
        self.observability_shutdown_timeout_count += buffer.shutdown_timeout_count;
        self.observability_peak_pending = self.observability_peak_pending.max(buffer.peak_pending);
        self.observability_shutdown_incomplete |= buffer.closed && buffer.worker_alive;
        self.observability_buffers.insert(name.to_owned(), buffer);
        self.assessment = Some(self.assess(&HealthAssessmentPolicy::default(), None));
        self
    }
}

impl SnapshotBuilder {
    /// The builder's runtime state, without calling any source.
    pub fn health(&self) -> BuilderHealth {
        let e = self.engine_ref();
        let capacity = e.capacity.snapshot();
        let waiting = capacity.global.waiting as u64
            + capacity
                .sources
                .values()
                .map(|s| s.waiting as u64)
                .sum::<u64>();
        let guarantees: BTreeMap<String, TimeoutGuarantee> = e
            .catalog
            .entries()
            .iter()
            .map(|entry| (entry.name.to_string(), entry.guarantee.clone()))
            .collect();
        let count = |f: &dyn Fn(&TimeoutGuarantee) -> bool| {
            guarantees.values().filter(|g| f(g)).count() as u64
        };
        let violations: BTreeMap<String, u64> = e
            .health
            .transport_violations
            .iter()
            .map(|r| (r.key().clone(), *r.value()))
            .collect();
        let h = &e.health;
        let mut health = BuilderHealth {
            schema: HEALTH_SCHEMA,
            schema_version: HEALTH_SCHEMA_VERSION,
            closed: e.is_closed(),
            background_refreshes: e.refreshes.len() as u64,
            singleflight_in_flight: e.flights.len() as u64,
            source_support_cache_entries: e.catalog.support_cache_entries() as u64,
            capacity,
            cache: e.cache.stats(),
            circuits: e.breakers.snapshot(),
            active_dispatch_workers: e.active_workers.load(Ordering::Relaxed) as u64,
            waiting_for_capacity: waiting,
            queue_timeout_count: h.queue_timeouts.load(Ordering::Relaxed),
            source_timeout_count: h.source_timeouts.load(Ordering::Relaxed),
            deadline_exceeded_count: h.deadlines.load(Ordering::Relaxed),
            revalidation_attempt_count: h.revalidations.load(Ordering::Relaxed),
            revalidation_failure_count: h.revalidation_failures.load(Ordering::Relaxed),
            retry_count: h.retries.load(Ordering::Relaxed),
            circuit_rejection_count: h.circuit_rejections.load(Ordering::Relaxed),
            blocking_source_count: count(&|g| g.blocking_io),
            protected_blocking_source_count: count(&|g| g.status == GuaranteeStatus::Protected),
            unsafe_blocking_source_count: count(&|g| g.status.is_unsafe()),
            undeclared_source_timeout_count: 0,
            source_timeout_guarantees: guarantees,
            source_transport_timeout_violation_count: violations.values().sum(),
            source_transport_timeout_violations: violations,
            pending_submissions: 0,
            max_pending_submissions: None,
            observability_buffers: BTreeMap::new(),
            observability_pending: 0,
            observability_peak_pending: 0,
            observability_dropped_count: 0,
            observability_shutdown_incomplete: false,
            observability_failure_count: 0,
            observability_shutdown_timeout_count: 0,
            assessment: None,
        };
        let buffers = [
            ("events", e.buffers.events.as_ref().map(|b| b.stats())),
            ("metrics", e.buffers.metrics.as_ref().map(|b| b.stats())),
        ];
        for (name, stats) in buffers {
            if let Some(s) = stats {
                health = health.with_buffer(
                    name,
                    BufferHealth {
                        enqueued: s.enqueued,
                        delivered: s.delivered,
                        dropped: s.dropped,
                        failures: s.failures,
                        pending: s.pending as u64,
                        max_pending: s.max_pending as u64,
                        peak_pending: s.peak_pending as u64,
                        closed: s.closed,
                        worker_alive: s.worker_alive,
                        shutdown_timeout_count: s.shutdown_timeout_count,
                    },
                );
            }
        }
        health.assessment = Some(health.assess(&HealthAssessmentPolicy::default(), None));
        health
    }
}
