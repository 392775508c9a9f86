//! [`BufferStats`]: the counters of a buffered sink.

use serde::Serialize;

/// A point-in-time view of a buffered sink's queue and delivery worker.
///
/// Every accepted record is eventually counted once in `delivered`,
/// `failures` or `dropped`, or is still `pending`; records refused on
/// arrival (queue full under [`DropNewest`](crate::OverflowPolicy::DropNewest),
/// sink closed) are counted in `dropped` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct BufferStats {
    /// Records accepted into the queue.
    pub enqueued: u64,
    /// Records the inner sink took without panicking.
    pub delivered: u64,
    /// Records discarded: on overflow, after closing, or left queued when a
    /// shutdown timed out.
    pub dropped: u64,
    /// Records whose delivery panicked in the inner sink.
    pub failures: u64,
    /// Records queued or being delivered now (at most `max_pending + 1`).
    pub pending: usize,
    /// Whether the sink has been closed.
    pub closed: bool,
    /// The queue bound.
    pub max_pending: usize,
    /// The highest `pending` seen.
    pub peak_pending: usize,
    /// Whether the delivery worker is running.
    pub worker_alive: bool,
    /// How many closes timed out before the queue drained.
    pub shutdown_timeout_count: u64,
}

impl BufferStats {
    /// Whether the sink was closed but its delivery worker has not stopped
    /// yet (a close timed out, or is in progress).
    pub fn is_shutdown_incomplete(&self) -> bool {
        self.closed && self.worker_alive
    }

    /// Whether the delivery worker stopped although the sink is open, so
    /// nothing will be delivered.
    pub fn is_worker_stopped(&self) -> bool {
        !self.closed && !self.worker_alive
    }
}
