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
        if self.metrics.enabled() {
            let mut labels: Vec<Label<'_>> = Vec::with_capacity(extra.len() + 2);
            labels.extend_from_slice(extra);
            labels.push(("resource_namespace", key.namespace()));
            labels.push(("resource_name", key.name()));
            self.metrics.increment(name, &labels, 1);
        }
    }

    /// Records an observation.
    pub(crate) fn observe(&self, name: &'static str, labels: &[Label<'_>], value: f64) {
        if self.metrics.enabled() {
            self.metrics.observe(name, labels, value);
        }
    }
}
