//! [`BufferedMetricsSink`]: takes metric delivery off the caller's path.

use std::future::Future;
use std::sync::Arc;

use coalestra_core::sink::Label;
use coalestra_core::{ConfigError, MetricsSink};

use super::config::BufferConfig;
use super::delivery::DeliveryQueue;
use super::stats::BufferStats;
use crate::error::ObservabilityShutdownTimeout;

/// One queued metric operation, with owned label values.
#[derive(Debug)]
enum MetricRecord {
    Increment {
        name: &'static str,
        labels: Box<[(&'static str, Box<str>)]>,
        value: u64,
    },
    Observe {
        name: &'static str,
        labels: Box<[(&'static str, Box<str>)]>,
        value: f64,
    },
}

fn owned(labels: &[Label<'_>]) -> Box<[(&'static str, Box<str>)]> {
    labels
        .iter()
        .map(|(name, value)| (*name, Box::from(*value)))
        .collect()
}

fn borrowed<'a>(labels: &'a [(&'static str, Box<str>)]) -> Vec<Label<'a>> {
    labels
        .iter()
        .map(|(name, value)| (*name, &**value))
        .collect()
}

impl MetricRecord {
    fn deliver(self, sink: &dyn MetricsSink) {
        match self {
            Self::Increment {
                name,
                labels,
                value,
            } => sink.increment(name, &borrowed(&labels), value),
            Self::Observe {
                name,
                labels,
                value,
            } => sink.observe(name, &borrowed(&labels), value),
        }
    }
}

/// A [`MetricsSink`] that queues counter increments and observations and
/// delivers them to an inner sink from a dedicated delivery thread.
///
/// It behaves like [`BufferedEventSink`](crate::BufferedEventSink):
/// recording never waits, overflow follows the
/// [`OverflowPolicy`](crate::OverflowPolicy), operations reach the inner
/// sink in order, inner panics are counted as failures, and
/// [`close`](Self::close) drains and joins the delivery thread.
///
/// ```
/// use std::sync::Arc;
/// use coalestra_core::MetricsSink;
/// use coalestra_observability::{BufferConfig, BufferedMetricsSink, MemoryMetricsSink};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let memory = MemoryMetricsSink::new();
/// let sink = BufferedMetricsSink::new(Arc::new(memory.clone()), BufferConfig::default()).unwrap();
/// sink.increment("snapshot_build_total", &[("status", "success")], 1);
/// sink.observe("source_fetch_latency_ms", &[("source", "primary")], 12.5);
/// sink.flush().await;
/// assert_eq!(memory.counter("snapshot_build_total", &[("status", "success")]), 1);
/// assert_eq!(memory.observations("source_fetch_latency_ms"), [12.5]);
/// sink.close().await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BufferedMetricsSink {
    inner: Arc<dyn MetricsSink>,
    queue: Arc<DeliveryQueue<MetricRecord>>,
}

impl BufferedMetricsSink {
    /// Starts a delivery thread feeding `inner`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Zero`] when `config.shutdown_timeout` is zero.
    pub fn new(inner: Arc<dyn MetricsSink>, config: BufferConfig) -> Result<Self, ConfigError> {
        let target = Arc::clone(&inner);
        let queue =
            DeliveryQueue::start(config, "coalestra-metrics", move |record: MetricRecord| {
                record.deliver(&*target);
            })?;
        Ok(Self {
            inner,
            queue: Arc::new(queue),
        })
    }

    /// The sink metrics are delivered to.
    pub fn inner(&self) -> &Arc<dyn MetricsSink> {
        &self.inner
    }

    /// The settings in force.
    pub fn config(&self) -> BufferConfig {
        self.queue.config()
    }

    /// The current queue and delivery counters.
    pub fn stats(&self) -> BufferStats {
        self.queue.stats()
    }

    /// Whether the sink stopped accepting metrics.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Waits until every operation recorded before the call has been
    /// delivered (or failed, or been dropped). Returns at once if the
    /// delivery thread has stopped.
    ///
    /// The records to wait for are fixed when `flush` is called, not when
    /// the returned future is first polled.
    pub fn flush(&self) -> impl Future<Output = ()> + Send + '_ {
        self.queue.flush()
    }

    /// [`flush`](Self::flush) for synchronous callers. Blocks the calling
    /// thread: never call it from async code.
    pub fn flush_blocking(&self) {
        self.queue.flush_blocking();
    }

    /// Stops accepting metrics, waits up to the shutdown timeout for the
    /// queue to drain, then joins the delivery thread. See
    /// [`BufferedEventSink::close`](crate::BufferedEventSink::close).
    ///
    /// # Errors
    ///
    /// [`ObservabilityShutdownTimeout`] when the queue did not drain in time.
    pub async fn close(&self) -> Result<(), ObservabilityShutdownTimeout> {
        self.queue.close().await
    }

    /// [`close`](Self::close) for synchronous callers. Blocks the calling
    /// thread: never call it from async code.
    ///
    /// # Errors
    ///
    /// As for [`close`](Self::close).
    pub fn close_blocking(&self) -> Result<(), ObservabilityShutdownTimeout> {
        self.queue.close_blocking()
    }
}

impl MetricsSink for BufferedMetricsSink {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn increment(&self, name: &'static str, labels: &[Label<'_>], value: u64) {
        self.queue.push(MetricRecord::Increment {
            name,
            labels: owned(labels),
            value,
        });
    }

    fn observe(&self, name: &'static str, labels: &[Label<'_>], value: f64) {
        self.queue.push(MetricRecord::Observe {
            name,
            labels: owned(labels),
            value,
        });
    }

    fn enabled(&self) -> bool {
        !self.queue.is_closed() && self.inner.enabled()
    }
}
