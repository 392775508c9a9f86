//! The events and counters a publisher reports.
//!
//! Nothing is formatted unless the sink says it is enabled. Metric labels
//! carry only low-cardinality parts (status, source, namespace, name), never
//! the subject, qualifiers or the rendered key; events may name the key.

use coalestra_core::{Event, EventSink, MetricsSink, ResourceKey, SnapshotValue};

use super::outcome::PublishResult;

/// The counter of publications, by status.
pub(crate) const PUBLISH_TOTAL: &str = "resource_publish_total";
/// The counter of invalidations requested through a publisher.
pub(crate) const INVALIDATION_TOTAL: &str = "resource_invalidation_total";

/// Where a publisher reports.
pub(crate) struct Telemetry<'a> {
    pub(crate) events: &'a dyn EventSink,
    pub(crate) metrics: &'a dyn MetricsSink,
}

impl Telemetry<'_> {
    /// Whether either sink wants anything.
    pub(crate) fn enabled(&self) -> bool {
        self.events.enabled() || self.metrics.enabled()
    }

    /// Reports one publication; `candidate` is the value that was offered.
    pub(crate) fn publication(&self, result: &PublishResult, candidate: &SnapshotValue) {
        let key = &result.key;
        let status = result.status.as_str();
        if self.metrics.enabled() {
            self.metrics.increment(
                PUBLISH_TOTAL,
                &[
                    ("status", status),
                    ("source", candidate.source()),
                    ("resource_namespace", key.namespace()),
                    ("resource_name", key.name()),
                ],
                1,
            );
        }
        if !self.events.enabled() {
            return;
        }
        let event = if result.is_published() {
            Event::new("resource_published")
                .field("resource", key.to_string())
                .field("source", candidate.source())
                .field("observed_at", candidate.observed_at().as_secs())
                .field("replaced", result.previous.is_some())
                .field("forced", result.forced)
                .field("authority_rank", candidate.authority_rank())
        } else {
            let cached = result.previous.as_ref().unwrap_or(&result.value);
            Event::new("resource_publish_ignored")
                .field("resource", key.to_string())
                .field("source", candidate.source())
                .field("status", status)
                .field("observed_at", candidate.observed_at().as_secs())
                .field("cached_observed_at", cached.observed_at().as_secs())
                .field("candidate_authority_rank", candidate.authority_rank())
                .field("cached_authority_rank", cached.authority_rank())
        };
        self.events.emit(event);
    }

    /// Reports one invalidation request for `key`.
    pub(crate) fn invalidation(&self, key: &ResourceKey, reason: &str, removed: bool) {
        if self.metrics.enabled() {
            self.metrics.increment(
                INVALIDATION_TOTAL,
                &[
                    ("resource_namespace", key.namespace()),
                    ("resource_name", key.name()),
                ],
                1,
            );
        }
        if self.events.enabled() {
            self.events.emit(
                Event::new("resource_invalidated")
                    .field("resource", key.to_string())
                    .field("reason", reason)
                    .field("removed", removed),
            );
        }
    }
}
