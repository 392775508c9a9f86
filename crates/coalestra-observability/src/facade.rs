//! [`MetricsFacadeSink`]: forwards counters and observations to the
//! `metrics` crate facade.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use coalestra_core::sink::Label;
use coalestra_core::MetricsSink;

/// The prefix [`MetricsFacadeSink`] puts before metric names by default.
pub const DEFAULT_METRIC_PREFIX: &str = "coalestra_";

/// A [`MetricsSink`] that forwards to whatever recorder is installed in the
/// [`metrics`] facade (a Prometheus exporter, StatsD, a test recorder).
///
/// [`increment`](MetricsSink::increment) becomes `counter!(..).increment(..)`
/// and [`observe`](MetricsSink::observe) becomes `histogram!(..).record(..)`.
/// Metric names get a prefix, [`DEFAULT_METRIC_PREFIX`] unless changed, so
/// `cache_access_total` is exported as `coalestra_cache_access_total`.
/// Labels are forwarded as they are; wrap the sink in a
/// [`CardinalityGuard`](crate::CardinalityGuard) to keep high-cardinality
/// labels out of the exporter.
///
/// When no recorder is installed the facade discards everything.
///
/// ```
/// use coalestra_core::MetricsSink;
/// use coalestra_observability::MetricsFacadeSink;
///
/// let sink = MetricsFacadeSink::new();
/// assert_eq!(sink.prefix(), "coalestra_");
/// sink.increment("snapshot_build_total", &[("status", "success")], 1);
/// sink.observe("source_fetch_latency_ms", &[("source", "primary")], 12.5);
/// ```
#[derive(Debug)]
pub struct MetricsFacadeSink {
    prefix: Arc<str>,
    /// Prefixed names, built once per metric name.
    names: RwLock<HashMap<&'static str, Arc<str>>>,
}

impl Default for MetricsFacadeSink {
    fn default() -> Self {
        Self::with_prefix(DEFAULT_METRIC_PREFIX)
    }
}

impl Clone for MetricsFacadeSink {
    fn clone(&self) -> Self {
        Self::with_prefix(&*self.prefix)
    }
}

impl MetricsFacadeSink {
    /// A sink using [`DEFAULT_METRIC_PREFIX`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A sink putting `prefix` before every metric name (may be empty).
    pub fn with_prefix(prefix: impl Into<Arc<str>>) -> Self {
        Self {
            prefix: prefix.into(),
            names: RwLock::new(HashMap::new()),
        }
    }

    /// A sink forwarding metric names unchanged.
    pub fn without_prefix() -> Self {
        Self::with_prefix("")
    }

    /// The prefix put before metric names.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The exported name of metric `name`.
    pub fn exported_name(&self, name: &'static str) -> Arc<str> {
        if let Some(known) = self
            .names
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(name)
        {
            return Arc::clone(known);
        }
        let mut names = self.names.write().unwrap_or_else(PoisonError::into_inner);
        let exported = names
            .entry(name)
            .or_insert_with(|| format!("{}{name}", self.prefix).into());
        Arc::clone(exported)
    }

    fn facade_labels(labels: &[Label<'_>]) -> Vec<metrics::Label> {
        labels
            .iter()
            .map(|(name, value)| metrics::Label::new(*name, (*value).to_owned()))
            .collect()
    }
}

impl MetricsSink for MetricsFacadeSink {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn increment(&self, name: &'static str, labels: &[Label<'_>], value: u64) {
        let name = self.exported_name(name);
        metrics::counter!(name, Self::facade_labels(labels)).increment(value);
    }

    fn observe(&self, name: &'static str, labels: &[Label<'_>], value: f64) {
        let name = self.exported_name(name);
        metrics::histogram!(name, Self::facade_labels(labels)).record(value);
    }
}
