//! [`MemoryMetricsSink`]: records counters and observations in memory.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use coalestra_core::sink::Label;
use coalestra_core::MetricsSink;

/// Labels as recorded: owned values, sorted by label name.
pub type OwnedLabels = Vec<(&'static str, String)>;

#[derive(Debug, Default)]
struct Recording {
    /// Counter totals per metric name and label set.
    counters: BTreeMap<(&'static str, OwnedLabels), u64>,
    /// Every observation, in recording order.
    observations: Vec<(&'static str, OwnedLabels, f64)>,
}

/// A [`MetricsSink`] that keeps counters and observations in memory.
///
/// Counters are summed per metric name and label set; observations are kept
/// individually, in recording order. Queries take label filters that match
/// by subset: `counter("cache_access_total", &[("status", "miss")])` sums
/// every series carrying `status=miss`, whatever its other labels.
///
/// Clones share the same recording.
///
/// ```
/// use coalestra_core::MetricsSink;
/// use coalestra_observability::MemoryMetricsSink;
///
/// let metrics = MemoryMetricsSink::new();
/// metrics.increment("cache_access_total", &[("status", "miss"), ("resource_name", "price")], 1);
/// metrics.increment("cache_access_total", &[("status", "fresh"), ("resource_name", "price")], 2);
/// assert_eq!(metrics.counter("cache_access_total", &[]), 3);
/// assert_eq!(metrics.counter("cache_access_total", &[("status", "fresh")]), 2);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryMetricsSink {
    recording: Arc<Mutex<Recording>>,
}

fn owned_labels(labels: &[Label<'_>]) -> OwnedLabels {
    let mut owned: OwnedLabels = labels
        .iter()
        .map(|(name, value)| (*name, (*value).to_owned()))
        .collect();
    owned.sort_by(|a, b| a.0.cmp(b.0));
    owned
}

fn matches(labels: &OwnedLabels, filter: &[(&str, &str)]) -> bool {
    filter
        .iter()
        .all(|(name, value)| labels.iter().any(|(n, v)| n == name && v == value))
}

impl MemoryMetricsSink {
    /// An empty recording.
    pub fn new() -> Self {
        Self::default()
    }

    fn recording(&self) -> MutexGuard<'_, Recording> {
        self.recording
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The total of counter `name` over every series whose labels include
    /// all of `labels` (an empty filter sums every series).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.recording()
            .counters
            .iter()
            .filter(|((n, l), _)| *n == name && matches(l, labels))
            .map(|(_, total)| *total)
            .sum()
    }

    /// Every series of counter `name`: its labels (sorted by name) and total.
    pub fn series(&self, name: &str) -> Vec<(OwnedLabels, u64)> {
        self.recording()
            .counters
            .iter()
            .filter(|((n, _), _)| *n == name)
            .map(|((_, labels), total)| (labels.clone(), *total))
            .collect()
    }

    /// Every value observed for `name`, in recording order.
    pub fn observations(&self, name: &str) -> Vec<f64> {
        self.observations_with(name, &[])
    }

    /// The values observed for `name` whose labels include all of `labels`,
    /// in recording order.
    pub fn observations_with(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.recording()
            .observations
            .iter()
            .filter(|(n, l, _)| *n == name && matches(l, labels))
            .map(|(_, _, value)| *value)
            .collect()
    }

    /// Every observation of `name` with its labels, in recording order.
    pub fn observation_series(&self, name: &str) -> Vec<(OwnedLabels, f64)> {
        self.recording()
            .observations
            .iter()
            .filter(|(n, _, _)| *n == name)
            .map(|(_, labels, value)| (labels.clone(), *value))
            .collect()
    }

    /// The label names ever used with metric `name` (counter or
    /// observation), sorted and without duplicates.
    pub fn label_names(&self, name: &str) -> Vec<&'static str> {
        let recording = self.recording();
        let counters = recording
            .counters
            .keys()
            .filter(|(n, _)| *n == name)
            .flat_map(|(_, labels)| labels.iter().map(|(label, _)| *label));
        let observations = recording
            .observations
            .iter()
            .filter(|(n, _, _)| *n == name)
            .flat_map(|(_, labels, _)| labels.iter().map(|(label, _)| *label));
        counters
            .chain(observations)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// The names of every recorded metric, sorted and without duplicates.
    pub fn metric_names(&self) -> Vec<&'static str> {
        let recording = self.recording();
        recording
            .counters
            .keys()
            .map(|(name, _)| *name)
            .chain(recording.observations.iter().map(|(name, _, _)| *name))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    /// Forgets every counter and observation.
    pub fn clear(&self) {
        let mut recording = self.recording();
        recording.counters.clear();
        recording.observations.clear();
    }
}

impl MetricsSink for MemoryMetricsSink {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn increment(&self, name: &'static str, labels: &[Label<'_>], value: u64) {
        let key = (name, owned_labels(labels));
        let mut recording = self.recording();
        let total = recording.counters.entry(key).or_insert(0);
        *total = total.saturating_add(value);
    }

    fn observe(&self, name: &'static str, labels: &[Label<'_>], value: f64) {
        let labels = owned_labels(labels);
        self.recording().observations.push((name, labels, value));
    }
}
