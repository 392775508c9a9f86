//! [`DeliveryQueue`]: the bounded queue and delivery thread behind both
//! buffered sinks.
//!
//! Producers push under a short critical section and never wait. One
//! dedicated thread pops records in order and hands them to the inner sink
//! outside the lock, so a slow or stuck inner sink delays only that thread,
//! never a producer nor an async runtime worker. Waiters for progress are
//! woken through a [`Condvar`] (blocking callers) and a [`Notify`] (async
//! callers).

use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::{self, JoinHandle};

use coalestra_core::ConfigError;
use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::config::{BufferConfig, OverflowPolicy};
use super::stats::BufferStats;
use crate::error::ObservabilityShutdownTimeout;

struct State<R> {
    /// Queued records with their sequence numbers (1-based, increasing).
    queue: VecDeque<(u64, R)>,
    /// The sequence number of the record being delivered.
    in_flight: Option<u64>,
    enqueued: u64,
    delivered: u64,
    dropped: u64,
    failures: u64,
    peak_pending: usize,
    shutdown_timeout_count: u64,
    closed: bool,
    worker_alive: bool,
    /// Whether the worker is parked waiting for records.
    worker_idle: bool,
}

impl<R> State<R> {
    fn pending(&self) -> usize {
        self.queue.len() + usize::from(self.in_flight.is_some())
    }

    /// Whether every record up to sequence `target` has left the queue and
    /// the worker, or can never do so because the worker is gone.
    fn is_settled_through(&self, target: u64) -> bool {
        !self.worker_alive
            || (self.in_flight.is_none_or(|seq| seq > target)
                && self.queue.front().is_none_or(|(seq, _)| *seq > target))
    }
}

struct Shared<R> {
    state: Mutex<State<R>>,
    /// Wakes the worker when a record arrives or the queue closes.
    work: Condvar,
    /// Wakes blocking waiters after every change of progress.
    settled: Condvar,
    /// Wakes async waiters after every change of progress.
    progress: Notify,
    /// A lock-free copy of `State::closed` for `enabled()` checks.
    closed: AtomicBool,
}

impl<R> Shared<R> {
    fn lock(&self) -> MutexGuard<'_, State<R>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn notify_progress(&self) {
        self.settled.notify_all();
        self.progress.notify_waiters();
    }

    /// Marks the queue closed; returns the guard for further work.
    fn close_queue(&self) -> MutexGuard<'_, State<R>> {
        let mut state = self.lock();
        state.closed = true;
        self.closed.store(true, Ordering::Release);
        self.work.notify_all();
        state
    }
}

/// The worker loop: deliver records in order until closed and drained.
fn deliver_until_closed<R>(shared: Arc<Shared<R>>, mut deliver: impl FnMut(R)) {
    loop {
        let next = {
            let mut state = shared.lock();
            loop {
                if let Some((seq, record)) = state.queue.pop_front() {
                    state.in_flight = Some(seq);
                    break Some(record);
                }
                if state.closed {
                    break None;
                }
                state.worker_idle = true;
                state = shared
                    .work
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                state.worker_idle = false;
            }
        };
        let Some(record) = next else { break };
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| deliver(record)));
        {
            let mut state = shared.lock();
            state.in_flight = None;
            if outcome.is_ok() {
                state.delivered += 1;
            } else {
                state.failures += 1;
            }
        }
        shared.notify_progress();
    }
    // Release the inner sink before reporting the worker gone, so a joiner
    // never waits on the inner sink's destructor.
    drop(deliver);
    shared.lock().worker_alive = false;
    shared.notify_progress();
}

/// A bounded queue of records of type `R` drained by one delivery thread.
pub(crate) struct DeliveryQueue<R> {
    shared: Arc<Shared<R>>,
    config: BufferConfig,
    worker: Mutex<Option<JoinHandle<()>>>,
}

impl<R: Send + 'static> DeliveryQueue<R> {
    /// Validates `config` and starts the delivery thread, which passes every
    /// record to `deliver`.
    pub(crate) fn start<F>(
        config: BufferConfig,
        thread_name: &str,
        deliver: F,
    ) -> Result<Self, ConfigError>
    where
        F: FnMut(R) + Send + 'static,
    {
        config.validate()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                in_flight: None,
                enqueued: 0,
                delivered: 0,
                dropped: 0,
                failures: 0,
                peak_pending: 0,
                shutdown_timeout_count: 0,
                closed: false,
                worker_alive: true,
                worker_idle: false,
            }),
            work: Condvar::new(),
            settled: Condvar::new(),
            progress: Notify::new(),
            closed: AtomicBool::new(false),
        });
        let worker_shared = Arc::clone(&shared);
        let worker = thread::Builder::new()
            .name(thread_name.to_owned())
            .spawn(move || deliver_until_closed(worker_shared, deliver));
        let worker = match worker {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!(
                    target: "coalestra",
                    %error,
                    "could not start the observability delivery thread; records will be dropped"
                );
                shared.lock().worker_alive = false;
                None
            }
        };
        Ok(Self {
            shared,
            config,
            worker: Mutex::new(worker),
        })
    }
}

impl<R> DeliveryQueue<R> {
    /// The settings in force.
    pub(crate) fn config(&self) -> BufferConfig {
        self.config
    }

    /// Whether the queue stopped accepting records.
    pub(crate) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Queues `record` without waiting, applying the overflow policy.
    pub(crate) fn push(&self, record: R) {
        let mut state = self.shared.lock();
        if state.closed || !state.worker_alive {
            state.dropped += 1;
            return;
        }
        let mut evicted = None;
        if state.queue.len() >= self.config.max_pending.get() {
            match self.config.overflow {
                OverflowPolicy::DropNewest => {
                    state.dropped += 1;
                    return;
                }
                OverflowPolicy::DropOldest => {
                    evicted = state.queue.pop_front();
                    state.dropped += 1;
                }
            }
        }
        state.enqueued += 1;
        let seq = state.enqueued;
        state.queue.push_back((seq, record));
        state.peak_pending = state.peak_pending.max(state.pending());
        let wake_worker = state.worker_idle;
        drop(state);
        if wake_worker {
            self.shared.work.notify_one();
        }
        if evicted.is_some() {
            // A flush may have been waiting for the evicted record.
            drop(evicted);
            self.shared.notify_progress();
        }
    }

    /// The current counters.
    pub(crate) fn stats(&self) -> BufferStats {
        let state = self.shared.lock();
        BufferStats {
            enqueued: state.enqueued,
            delivered: state.delivered,
            dropped: state.dropped,
            failures: state.failures,
            pending: state.pending(),
            closed: state.closed,
            max_pending: self.config.max_pending.get(),
            peak_pending: state.peak_pending,
            worker_alive: state.worker_alive,
            shutdown_timeout_count: state.shutdown_timeout_count,
        }
    }

    /// Waits until every record queued before the call (not before the
    /// first poll) has been delivered, failed or dropped.
    pub(crate) fn flush(&self) -> impl Future<Output = ()> + Send + '_
    where
        R: Send,
    {
        let target = self.shared.lock().enqueued;
        async move {
            loop {
                let mut notified = pin!(self.shared.progress.notified());
                notified.as_mut().enable();
                if self.shared.lock().is_settled_through(target) {
                    return;
                }
                notified.await;
            }
        }
    }

    /// [`flush`](Self::flush), blocking the calling thread.
    pub(crate) fn flush_blocking(&self) {
        let state = self.shared.lock();
        let target = state.enqueued;
        let _settled = self
            .shared
            .settled
            .wait_while(state, |state| !state.is_settled_through(target))
            .unwrap_or_else(PoisonError::into_inner);
    }

    /// Stops accepting records, waits up to the shutdown timeout for the
    /// queue to drain and the worker to stop, then joins the worker.
    ///
    /// On timeout the records still queued are discarded (counted as
    /// dropped) and the worker stops after its current delivery; a later
    /// call waits for it again.
    pub(crate) fn close_blocking(&self) -> Result<(), ObservabilityShutdownTimeout> {
        let timeout = self.config.shutdown_timeout;
        let state = self.shared.close_queue();
        let (mut state, _) = self
            .shared
            .settled
            .wait_timeout_while(state, timeout, |state| state.worker_alive)
            .unwrap_or_else(PoisonError::into_inner);
        if state.worker_alive {
            let pending_records = state.pending();
            let discarded = std::mem::take(&mut state.queue);
            state.dropped += discarded.len() as u64;
            state.shutdown_timeout_count += 1;
            drop(state);
            drop(discarded);
            self.shared.notify_progress();
            return Err(ObservabilityShutdownTimeout::new(timeout, pending_records));
        }
        drop(state);
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(worker) = worker {
            // The worker has reported itself gone: this join returns at once.
            // Its deliveries ran under `catch_unwind`, so it cannot have
            // panicked; there is nothing to report either way.
            let _ = worker.join();
        }
        Ok(())
    }
}

impl<R: Send + 'static> DeliveryQueue<R> {
    /// [`close_blocking`](Self::close_blocking) run on the runtime's blocking
    /// pool, so the timeout is measured in real time and, under a paused test
    /// clock, time does not jump while the worker drains.
    pub(crate) async fn close(self: &Arc<Self>) -> Result<(), ObservabilityShutdownTimeout> {
        let Ok(runtime) = Handle::try_current() else {
            return self.close_blocking();
        };
        let queue = Arc::clone(self);
        match runtime.spawn_blocking(move || queue.close_blocking()).await {
            Ok(result) => result,
            // The runtime is shutting down and never ran the closure.
            Err(_) => self.close_blocking(),
        }
    }
}

impl<R> Drop for DeliveryQueue<R> {
    /// Closes the queue without waiting: the worker delivers what is queued
    /// and stops on its own. Call `close` to wait for it and join it.
    fn drop(&mut self) {
        drop(self.shared.close_queue());
    }
}

impl<R> fmt::Debug for DeliveryQueue<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeliveryQueue")
            .field("config", &self.config)
            .field("stats", &self.stats())
            .finish()
    }
}
