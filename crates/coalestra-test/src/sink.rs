//! [`RecordingSink`]: an event and metrics sink that keeps everything for
//! assertions.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use coalestra_core::sink::Label;
use coalestra_core::{Event, EventSink, MetricsSink};

/// A recorded metric value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MetricValue {
    /// A counter increment.
    Counter(u64),
    /// An observation (a latency, a size).
    Observation(f64),
}

/// One recorded metric call.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSample {
    /// The metric name.
    pub name: &'static str,
    /// The labels, in emission order.
    pub labels: Vec<(String, String)>,
    /// The increment or observation.
    pub value: MetricValue,
}

impl MetricSample {
    /// Whether every `(name, value)` in `subset` is among the labels.
    pub fn has_labels(&self, subset: &[(&str, &str)]) -> bool {
        subset
            .iter()
            .all(|(n, v)| self.labels.iter().any(|(ln, lv)| ln == n && lv == v))
    }

    /// The label value of `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Recorded {
    events: Vec<Event>,
    samples: Vec<MetricSample>,
}

/// Records every event and metric call; clones share one record, so a test
/// keeps a clone while the engine owns another.
///
/// ```
/// use coalestra_core::{Event, EventSink, MetricsSink};
/// use coalestra_test::RecordingSink;
///
/// let sink = RecordingSink::new();
/// sink.emit(Event::new("cache_hit").field("resource", "market:price:BTC"));
/// sink.increment("source_fetch_total", &[("status", "success"), ("source", "rest")], 1);
/// sink.increment("source_fetch_total", &[("status", "failure"), ("source", "rest")], 2);
/// assert_eq!(sink.events_named("cache_hit").len(), 1);
/// assert_eq!(sink.counter("source_fetch_total", &[("source", "rest")]), 3);
/// assert_eq!(sink.counter("source_fetch_total", &[("status", "failure")]), 2);
/// ```
#[derive(Clone, Default)]
pub struct RecordingSink(Arc<Mutex<Recorded>>);

impl RecordingSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Every event, in emission order.
    pub fn events(&self) -> Vec<Event> {
        self.recorded().events.clone()
    }

    /// The events named `name`, in emission order.
    pub fn events_named(&self, name: &str) -> Vec<Event> {
        self.recorded()
            .events
            .iter()
            .filter(|e| e.name == name)
            .cloned()
            .collect()
    }

    /// The names of every event, in emission order.
    pub fn event_names(&self) -> Vec<&'static str> {
        self.recorded().events.iter().map(|e| e.name).collect()
    }

    /// Every metric call, in order.
    pub fn samples(&self) -> Vec<MetricSample> {
        self.recorded().samples.clone()
    }

    /// The sum of the increments of counter `name` whose labels include every
    /// pair of `labels` (an empty subset matches every increment).
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.recorded()
            .samples
            .iter()
            .filter(|s| s.name == name && s.has_labels(labels))
            .map(|s| match s.value {
                MetricValue::Counter(n) => n,
                MetricValue::Observation(_) => 0,
            })
            .sum()
    }

    /// The observations of metric `name`, in order.
    pub fn observations(&self, name: &str) -> Vec<f64> {
        self.observations_with(name, &[])
    }

    /// The observations of metric `name` carrying every label of `labels`,
    /// in order.
    pub fn observations_with(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.recorded()
            .samples
            .iter()
            .filter(|s| s.name == name && s.has_labels(labels))
            .filter_map(|s| match s.value {
                MetricValue::Observation(x) => Some(x),
                MetricValue::Counter(_) => None,
            })
            .collect()
    }

    /// The label sets of every call of metric `name`, in order.
    pub fn metric_labels(&self, name: &str) -> Vec<Vec<(String, String)>> {
        self.recorded()
            .samples
            .iter()
            .filter(|s| s.name == name)
            .map(|s| s.labels.clone())
            .collect()
    }

    /// The distinct metric names, in first-use order.
    pub fn metric_names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for sample in &self.recorded().samples {
            if !names.contains(&sample.name) {
                names.push(sample.name);
            }
        }
        names
    }

    /// Forgets everything recorded so far.
    pub fn clear(&self) {
        let mut recorded = self.recorded();
        recorded.events.clear();
        recorded.samples.clear();
    }

    fn record(&self, name: &'static str, labels: &[Label<'_>], value: MetricValue) {
        let labels = labels
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        self.recorded().samples.push(MetricSample {
            name,
            labels,
            value,
        });
    }
}

impl EventSink for RecordingSink {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn emit(&self, event: Event) {
        self.recorded().events.push(event);
    }
}

impl MetricsSink for RecordingSink {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn increment(&self, name: &'static str, labels: &[Label<'_>], value: u64) {
        self.record(name, labels, MetricValue::Counter(value));
    }

    fn observe(&self, name: &'static str, labels: &[Label<'_>], value: f64) {
        self.record(name, labels, MetricValue::Observation(value));
    }
}

impl fmt::Debug for RecordingSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let recorded = self.recorded();
        f.debug_struct("RecordingSink")
            .field("events", &recorded.events.len())
            .field("samples", &recorded.samples.len())
            .finish()
    }
}
