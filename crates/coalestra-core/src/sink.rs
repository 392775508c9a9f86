//! Event and metrics sink traits. Implementations live in
//! `coalestra-observability`; the engine checks [`EventSink::enabled`] and
//! [`MetricsSink::enabled`] before formatting anything, so null sinks cost
//! nothing on the hot path.

use std::fmt;

use crate::metadata::MetadataValue;

/// A structured event: a stable name and named fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The stable event name (for example `resource_resolved`).
    pub name: &'static str,
    /// The fields, in emission order.
    pub fields: Vec<(&'static str, MetadataValue)>,
}

impl Event {
    /// An event without fields.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            fields: Vec::new(),
        }
    }

    /// Adds a field.
    #[must_use]
    pub fn field(mut self, name: &'static str, value: impl Into<MetadataValue>) -> Self {
        self.fields.push((name, value.into()));
        self
    }

    /// Looks a field up.
    pub fn get(&self, name: &str) -> Option<&MetadataValue> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}

/// Receives structured events.
pub trait EventSink: Send + Sync + fmt::Debug {
    /// Records one event. Must not block.
    fn emit(&self, event: Event);
    /// Whether events are wanted at all (default `true`).
    fn enabled(&self) -> bool {
        true
    }
    /// Whether `emit` returns at once, whatever the downstream does
    /// (default `false`: the builder then buffers the sink off the
    /// acquisition path).
    fn is_non_blocking(&self) -> bool {
        false
    }
}

/// A metric label: a low-cardinality name and value.
pub type Label<'a> = (&'static str, &'a str);

/// Receives counters and observations.
pub trait MetricsSink: Send + Sync + fmt::Debug {
    /// Adds `value` to a counter.
    fn increment(&self, name: &'static str, labels: &[Label<'_>], value: u64);
    /// Records one observation (a latency, a size).
    fn observe(&self, name: &'static str, labels: &[Label<'_>], value: f64);
    /// Whether metrics are wanted at all (default `true`).
    fn enabled(&self) -> bool {
        true
    }
    /// Whether recording returns at once, whatever the downstream does
    /// (default `false`: the builder then buffers the sink off the
    /// acquisition path).
    fn is_non_blocking(&self) -> bool {
        false
    }
}

/// A sink that discards everything and reports itself disabled.
#[derive(Debug, Clone, Copy, Default)]
pub struct NullSink;

impl EventSink for NullSink {
    fn emit(&self, _event: Event) {}
    fn enabled(&self) -> bool {
        false
    }
    fn is_non_blocking(&self) -> bool {
        true
    }
}

impl MetricsSink for NullSink {
    fn increment(&self, _name: &'static str, _labels: &[Label<'_>], _value: u64) {}
    fn observe(&self, _name: &'static str, _labels: &[Label<'_>], _value: f64) {}
    fn enabled(&self) -> bool {
        false
    }
    fn is_non_blocking(&self) -> bool {
        true
    }
}
