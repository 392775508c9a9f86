//! One limit (global or per source): a semaphore plus an exact waiter count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

use super::snapshot::LimitSnapshot;

/// A counting limit whose queue length is tracked for snapshots.
#[derive(Debug)]
pub(super) struct Limiter {
    limit: usize,
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
}

impl Limiter {
    /// Creates a limiter; `limit` must not exceed [`Semaphore::MAX_PERMITS`].
    pub(super) fn new(limit: usize) -> Self {
        Self {
            limit,
            slots: Arc::new(Semaphore::new(limit)),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Takes a free slot without waiting, if there is one.
    pub(super) fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }

    /// Waits for a slot. Cancel-safe: dropping the future gives up the place
    /// in the queue, and a slot assigned but not yet observed is returned.
    pub(super) async fn acquire(&self) -> OwnedSemaphorePermit {
        // Fast path: a free slot is taken without ever counting as waiting.
        // Tokio hands released slots to queued waiters first, so this cannot
        // overtake an earlier waiter.
        match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(permit) => return permit,
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => {}
        }
        let _queued = QueuedWaiter::enter(&self.waiting);
        Arc::clone(&self.slots)
            .acquire_owned()
            .await
            .expect("capacity semaphores are never closed")
    }

    /// Slots currently taken.
    pub(super) fn in_use(&self) -> usize {
        self.limit.saturating_sub(self.slots.available_permits())
    }

    /// Acquisitions currently queued for a slot.
    pub(super) fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// The configured limit.
    pub(super) fn limit(&self) -> usize {
        self.limit
    }

    /// Current limit, usage and queue length.
    pub(super) fn snapshot(&self) -> LimitSnapshot {
        LimitSnapshot {
            limit: self.limit,
            in_use: self.in_use(),
            waiting: self.waiting(),
        }
    }
}

/// Counts one queued acquisition for as long as it lives, so that completion,
/// timeout and cancellation all leave the counter exact.
struct QueuedWaiter<'a> {
    waiting: &'a AtomicUsize,
}

impl<'a> QueuedWaiter<'a> {
    fn enter(waiting: &'a AtomicUsize) -> Self {
        waiting.fetch_add(1, Ordering::Relaxed);
        Self { waiting }
    }
}

impl Drop for QueuedWaiter<'_> {
    fn drop(&mut self) {
        self.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}
