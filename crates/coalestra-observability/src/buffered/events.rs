//! [`BufferedEventSink`]: takes event delivery off the caller's path.

use std::future::Future;
use std::sync::Arc;

use coalestra_core::{ConfigError, Event, EventSink};

use super::config::BufferConfig;
use super::delivery::DeliveryQueue;
use super::stats::BufferStats;
use crate::error::ObservabilityShutdownTimeout;

/// An [`EventSink`] that queues events and delivers them to an inner sink
/// from a dedicated delivery thread.
///
/// [`emit`](EventSink::emit) never waits: the event joins a bounded queue
/// and, when the queue is full, the [`OverflowPolicy`](crate::OverflowPolicy)
/// decides which event is dropped. Events reach the inner sink one at a
/// time, in emission order. A panic in the inner sink is caught, counted in
/// [`BufferStats::failures`] and does not stop the delivery thread.
///
/// Clones share the queue. Call [`close`](Self::close) at shutdown: it
/// drains the queue within the shutdown timeout and joins the delivery
/// thread. Dropping the last clone without closing lets the thread deliver
/// what is queued and stop on its own, unjoined.
///
/// ```
/// use std::sync::Arc;
/// use coalestra_core::{Event, EventSink};
/// use coalestra_observability::{BufferConfig, BufferedEventSink, MemoryEventSink};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let memory = MemoryEventSink::new();
/// let sink = BufferedEventSink::new(Arc::new(memory.clone()), BufferConfig::default()).unwrap();
/// sink.emit(Event::new("cache_hit"));
/// sink.flush().await;
/// assert_eq!(memory.names(), ["cache_hit"]);
/// sink.close().await.unwrap();
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct BufferedEventSink {
    inner: Arc<dyn EventSink>,
    queue: Arc<DeliveryQueue<Event>>,
}

impl BufferedEventSink {
    /// Starts a delivery thread feeding `inner`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Zero`] when `config.shutdown_timeout` is zero.
    pub fn new(inner: Arc<dyn EventSink>, config: BufferConfig) -> Result<Self, ConfigError> {
        let target = Arc::clone(&inner);
        let queue = DeliveryQueue::start(config, "coalestra-events", move |event| {
            target.emit(event);
        })?;
        Ok(Self {
            inner,
            queue: Arc::new(queue),
        })
    }

    /// The sink events are delivered to.
    pub fn inner(&self) -> &Arc<dyn EventSink> {
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

    /// Whether the sink stopped accepting events.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Waits until every event emitted before the call has been delivered
    /// (or failed, or been dropped). Returns at once if the delivery thread
    /// has stopped.
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

    /// Stops accepting events (later ones are dropped and counted), waits up
    /// to the shutdown timeout for the queue to drain, then joins the
    /// delivery thread.
    ///
    /// The wait runs on the runtime's blocking pool and is measured in real
    /// time, also under a paused test clock. Dropping the returned future
    /// does not stop the shutdown, which ends within the timeout anyway.
    /// Closing again is harmless: once the thread has been joined it returns
    /// at once.
    ///
    /// # Errors
    ///
    /// [`ObservabilityShutdownTimeout`] when the queue did not drain in time.
    /// The events still queued are then dropped, the delivery thread stops
    /// after its current event, and a later `close` waits for it again.
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

impl EventSink for BufferedEventSink {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn emit(&self, event: Event) {
        self.queue.push(event);
    }

    fn enabled(&self) -> bool {
        !self.queue.is_closed() && self.inner.enabled()
    }
}
