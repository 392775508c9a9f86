//! Buffered sinks: event and metric delivery moved off the request path.
//!
//! [`BufferedEventSink`] and [`BufferedMetricsSink`] wrap any sink. Recording
//! pushes into a bounded queue and returns at once; one dedicated delivery
//! thread per buffered sink drains the queue into the inner sink, so a slow
//! exporter can neither add latency to a snapshot build nor occupy an async
//! runtime worker. [`BufferConfig`] bounds the queue and chooses the
//! [`OverflowPolicy`]; [`BufferStats`] reports what was queued, delivered,
//! dropped or failed.

mod config;
mod delivery;
mod events;
mod metrics;
mod stats;

pub use config::{BufferConfig, OverflowPolicy};
pub use events::BufferedEventSink;
pub use metrics::BufferedMetricsSink;
pub use stats::BufferStats;
