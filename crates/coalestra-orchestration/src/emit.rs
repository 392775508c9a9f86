//! Event and metric emission, gated on the sinks being enabled so that null
//! sinks cost nothing.

use std::sync::Arc;

use coalestra_core::sink::Label;
use coalestra_core::{Event, EventSink, MetricsSink, ResourceKey};

/// The builder's sinks.
#[derive(Debug, Clone)]
pub(crate) struct Emitter {
    events: Arc<dyn EventSink>,
    metrics: Arc<dyn MetricsSink>,
}

impl Emitter {
    pub(crate) fn new(events: Arc<dyn EventSink>, metrics: Arc<dyn MetricsSink>) -> Self {
        Self { events, metrics }
    }

    pub(crate) fn events(&self) -> &Arc<dyn EventSink> {
        &self.events
    }

    pub(crate) fn metrics(&self) -> &Arc<dyn MetricsSink> {
        &self.metrics
    }

    /// Whether metrics are recorded (callers looping over many keys check
    /// once instead of per key).
    pub(crate) fn metrics_enabled(&self) -> bool {
        self.metrics.enabled()
    }

    /// Whether events are emitted.
    pub(crate) fn events_enabled(&self) -> bool {
        self.events.enabled()
    }

    /// Emits an event built lazily.
    pub(crate) fn event(&self, build: impl FnOnce() -> Event) {
        if self.events.enabled() {
            self.events.emit(build());
        }
    }

    /// Increments a counter.
    pub(crate) fn count(&self, name: &'static str, labels: &[Label<'_>]) {
        if self.metrics.enabled() {
            self.metrics.increment(name, labels, 1);
        }
    }

    /// Increments a counter labelled by resource type plus `extra`.
    pub(crate) fn count_resource(
        &self,
        name: &'static str,
        key: &ResourceKey,
        extra: &[Label<'_>],
    ) {
        if !self.metrics.enabled() {
            return;
        }
        let resource = [
            ("resource_namespace", key.namespace()),
            ("resource_name", key.name()),
        ];
        // Engine call sites pass at most two extra labels: no allocation.
        let mut labels: [Label<'_>; 4] = [("", ""); 4];
        if extra.len() <= 2 {
            labels[..extra.len()].copy_from_slice(extra);
            labels[extra.len()..extra.len() + 2].copy_from_slice(&resource);
            self.metrics.increment(name, &labels[..extra.len() + 2], 1);
        } else {
            let all: Vec<Label<'_>> = extra.iter().chain(&resource).copied().collect();
            self.metrics.increment(name, &all, 1);
        }
    }

    /// Records an observation.
    pub(crate) fn observe(&self, name: &'static str, labels: &[Label<'_>], value: f64) {
        if self.metrics.enabled() {
            self.metrics.observe(name, labels, value);
        }
    }
}
