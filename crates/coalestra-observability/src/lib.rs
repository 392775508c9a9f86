//! Ready-made implementations of the [`EventSink`] and [`MetricsSink`]
//! traits from `coalestra-core`.
//!
//! | sink | what it does |
//! |---|---|
//! | [`TracingEventSink`] | logs each event through `tracing` (target `coalestra`) |
//! | [`MetricsFacadeSink`] | forwards counters and observations to the [`metrics`] facade |
//! | [`CardinalityGuard`] | strips every label outside [`allowed_metric_labels`] |
//! | [`MemoryEventSink`], [`MemoryMetricsSink`] | record everything for assertions |
//! | [`BufferedEventSink`], [`BufferedMetricsSink`] | queue records and deliver them from a dedicated thread |
//!
//! The engine only ever sees the traits, so sinks compose: a typical
//! production set-up guards labels, then buffers, then exports.
//!
//! ```
//! use std::sync::Arc;
//! use coalestra_core::{Event, EventSink, MetricsSink};
//! use coalestra_observability::{
//!     BufferConfig, BufferedEventSink, BufferedMetricsSink, CardinalityGuard,
//!     MetricsFacadeSink, TracingEventSink,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let events = BufferedEventSink::new(Arc::new(TracingEventSink::new()), BufferConfig::default())?;
//! let metrics = BufferedMetricsSink::new(
//!     Arc::new(CardinalityGuard::new(Arc::new(MetricsFacadeSink::new()))),
//!     BufferConfig::default(),
//! )?;
//!
//! // What the engine does on a cache hit:
//! events.emit(Event::new("cache_hit").field("resource", "market:price:BTCUSDT"));
//! metrics.increment(
//!     "cache_access_total",
//!     &[("status", "fresh"), ("resource_namespace", "market"), ("resource_name", "price")],
//!     1,
//! );
//!
//! // At shutdown: drain the queues and join the delivery threads.
//! events.close().await?;
//! metrics.close().await?;
//! # Ok(())
//! # }
//! ```
//!
//! In tests, the memory sinks make assertions direct:
//!
//! ```
//! use std::sync::Arc;
//! use coalestra_core::MetricsSink;
//! use coalestra_observability::{CardinalityGuard, MemoryMetricsSink};
//!
//! let memory = MemoryMetricsSink::new();
//! let guarded = CardinalityGuard::new(Arc::new(memory.clone()));
//! guarded.increment("resource_publish_total", &[("status", "published"), ("subject", "BTCUSDT")], 1);
//! assert_eq!(memory.counter("resource_publish_total", &[("status", "published")]), 1);
//! assert_eq!(memory.label_names("resource_publish_total"), ["status"]);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod buffered;
pub mod cardinality;
pub mod error;
pub mod facade;
pub mod memory_events;
pub mod memory_metrics;
pub mod tracing_sink;

pub use buffered::{
    BufferConfig, BufferStats, BufferedEventSink, BufferedMetricsSink, OverflowPolicy,
};
pub use cardinality::{
    allowed_metric_labels, is_allowed_metric_label, resource_metric_labels, CardinalityGuard,
};
pub use error::ObservabilityShutdownTimeout;
pub use facade::{MetricsFacadeSink, DEFAULT_METRIC_PREFIX};
pub use memory_events::MemoryEventSink;
pub use memory_metrics::{MemoryMetricsSink, OwnedLabels};
pub use tracing_sink::{TracingEventSink, TRACING_TARGET};

#[doc(no_inline)]
pub use coalestra_core::{Event, EventSink, MetricsSink, NullSink};
