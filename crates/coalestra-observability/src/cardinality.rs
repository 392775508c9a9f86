//! Low-cardinality metric labels: the allow-list and [`CardinalityGuard`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use coalestra_core::sink::Label;
use coalestra_core::{MetricsSink, ResourceKey};

/// The label names a metric may carry. Each takes its values from a small,
/// fixed set (a status, a reason) or from configuration (a source name, a
/// resource namespace and name), never from request data.
const ALLOWED_METRIC_LABELS: [&str; 8] = [
    "resource_namespace",
    "resource_name",
    "source",
    "status",
    "outcome",
    "reason",
    "rule",
    "phase",
];

/// The label names a metric may carry: `resource_namespace`,
/// `resource_name`, `source`, `status`, `outcome`, `reason`, `rule` and
/// `phase`.
///
/// Subjects, qualifiers and rendered keys are deliberately absent: one
/// series per subject would make an exporter's memory grow with traffic.
pub fn allowed_metric_labels() -> &'static [&'static str] {
    &ALLOWED_METRIC_LABELS
}

/// Whether `name` is in [`allowed_metric_labels`].
pub fn is_allowed_metric_label(name: &str) -> bool {
    ALLOWED_METRIC_LABELS.contains(&name)
}

/// The labels identifying a resource in metrics: its namespace and name
/// only. Every subject and qualifier combination of one resource type
/// shares these labels.
///
/// ```
/// use coalestra_core::ResourceKey;
/// use coalestra_observability::resource_metric_labels;
///
/// let key = ResourceKey::parse("market:price:BTCUSDT?venue=spot").unwrap();
/// assert_eq!(
///     resource_metric_labels(&key),
///     [("resource_namespace", "market"), ("resource_name", "price")],
/// );
/// ```
pub fn resource_metric_labels(key: &ResourceKey) -> [Label<'_>; 2] {
    [
        ("resource_namespace", key.namespace()),
        ("resource_name", key.name()),
    ]
}

#[derive(Debug, Default)]
struct DroppedLabels {
    count: AtomicU64,
    names: Mutex<BTreeSet<&'static str>>,
}

/// A [`MetricsSink`] wrapper that removes every label not in
/// [`allowed_metric_labels`] before forwarding.
///
/// A metric passing through the guard can never carry a subject, a
/// qualifier or a full key, whatever the caller passed. Removed labels are
/// counted ([`dropped_labels`](Self::dropped_labels)) and their names kept
/// ([`dropped_label_names`](Self::dropped_label_names)) so the offending
/// call site can be found. Clones share the counts.
///
/// ```
/// use std::sync::Arc;
/// use coalestra_core::MetricsSink;
/// use coalestra_observability::{CardinalityGuard, MemoryMetricsSink};
///
/// let memory = MemoryMetricsSink::new();
/// let guard = CardinalityGuard::new(Arc::new(memory.clone()));
/// guard.increment("resource_refresh_total", &[("status", "success"), ("subject", "BTCUSDT")], 1);
/// assert_eq!(memory.label_names("resource_refresh_total"), ["status"]);
/// assert_eq!(guard.dropped_labels(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct CardinalityGuard {
    inner: Arc<dyn MetricsSink>,
    dropped: Arc<DroppedLabels>,
}

impl CardinalityGuard {
    /// A guard forwarding allowed labels to `inner`.
    pub fn new(inner: Arc<dyn MetricsSink>) -> Self {
        Self {
            inner,
            dropped: Arc::default(),
        }
    }

    /// The sink receiving the filtered metrics.
    pub fn inner(&self) -> &Arc<dyn MetricsSink> {
        &self.inner
    }

    /// How many labels have been removed so far.
    pub fn dropped_labels(&self) -> u64 {
        self.dropped.count.load(Ordering::Relaxed)
    }

    /// The names of the labels removed so far, sorted.
    pub fn dropped_label_names(&self) -> Vec<&'static str> {
        self.dropped
            .names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .copied()
            .collect()
    }

    /// Calls `forward` with the allowed labels, counting the others.
    fn filtered<'a>(&self, labels: &[Label<'a>], forward: impl FnOnce(&[Label<'a>])) {
        if labels.iter().all(|(name, _)| is_allowed_metric_label(name)) {
            return forward(labels);
        }
        let mut kept = Vec::with_capacity(labels.len());
        let mut removed = 0u64;
        {
            let mut names = self
                .dropped
                .names
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for label in labels {
                if is_allowed_metric_label(label.0) {
                    kept.push(*label);
                } else {
                    removed += 1;
                    names.insert(label.0);
                }
            }
        }
        self.dropped.count.fetch_add(removed, Ordering::Relaxed);
        forward(&kept);
    }
}

impl MetricsSink for CardinalityGuard {
    fn is_non_blocking(&self) -> bool {
        self.inner().is_non_blocking()
    }

    fn increment(&self, name: &'static str, labels: &[Label<'_>], value: u64) {
        self.filtered(labels, |labels| self.inner.increment(name, labels, value));
    }

    fn observe(&self, name: &'static str, labels: &[Label<'_>], value: f64) {
        self.filtered(labels, |labels| self.inner.observe(name, labels, value));
    }

    fn enabled(&self) -> bool {
        self.inner.enabled()
    }
}
