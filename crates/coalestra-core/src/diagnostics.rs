//! [`SnapshotDiagnostics`]: what one build did.

use std::collections::BTreeMap;
use std::time::Duration;

/// Counters describing one build, immutable once attached to a snapshot.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct SnapshotDiagnostics {
    /// Total build duration.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    /// Distinct explicitly requested keys.
    pub requested_resources: u64,
    /// Requested keys resolved.
    pub resolved_resources: u64,
    /// Requested keys failed.
    pub failed_resources: u64,
    /// Fresh (and stale-while-revalidate) cache hits.
    pub cache_hits: u64,
    /// Cache misses.
    pub cache_misses: u64,
    /// Batch cache reads performed.
    pub cache_batch_reads: u64,
    /// Batch cache writes performed.
    pub cache_batch_writes: u64,
    /// Stale values delivered.
    pub stale_values: u64,
    /// Keys served by joining another caller's fetch.
    pub coalesced_requests: u64,
    /// Source invocations (single, batch and derived).
    pub source_calls: u64,
    /// Batch invocations.
    pub batch_calls: u64,
    /// Derive invocations.
    pub derived_calls: u64,
    /// Batch chunks dispatched.
    pub batch_chunks: u64,
    /// Background refreshes scheduled by this build.
    pub refresh_scheduled: u64,
    /// Background refreshes completed (recorded on later builds).
    pub refresh_completed: u64,
    /// Background refreshes failed.
    pub refresh_failed: u64,
    /// Support predicate cache hits.
    pub support_cache_hits: u64,
    /// Support predicate cache misses.
    pub support_cache_misses: u64,
    /// Extra attempts beyond the first.
    pub retries: u64,
    /// Values rejected for future observation times.
    pub future_timestamp_rejections: u64,
    /// Newest minus oldest `observed_at` over resolved values (0 below two).
    #[serde(rename = "observation_skew_ms", serialize_with = "millis")]
    pub observation_skew: Duration,
    /// Source invocations per source.
    pub source_calls_by_source: BTreeMap<String, u64>,
    /// Summed source latency per source.
    #[serde(rename = "source_latency_ms_by_source", serialize_with = "millis_map")]
    pub source_latency_by_source: BTreeMap<String, Duration>,
}

impl SnapshotDiagnostics {
    /// Total build duration in milliseconds.
    pub fn duration_ms(&self) -> f64 {
        self.duration.as_secs_f64() * 1000.0
    }
    /// Observation skew in milliseconds.
    pub fn observation_skew_ms(&self) -> f64 {
        self.observation_skew.as_secs_f64() * 1000.0
    }
    /// Serializes to JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

fn millis_map<S: serde::Serializer>(
    m: &BTreeMap<String, Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(m.iter().map(|(k, v)| (k, v.as_secs_f64() * 1000.0)))
}
