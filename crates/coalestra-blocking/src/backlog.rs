//! [`Backlog`]: the register of every operation the facade has handed to its
//! runtime, with the bound on non-blocking submissions.
//!
//! Each operation holds a [`Ticket`] while it runs. Finishing or dropping the
//! ticket frees the operation's slot and settles its [`Completion`] in one
//! critical section, so an observer that sees the outcome also sees the slot
//! freed, and one that sees the slot freed (a flush) also sees the outcome.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use coalestra_core::{CoalestraError, ConfigError};
use tokio::sync::Notify;
use tokio::task::AbortHandle;

use crate::completion::Completion;
use crate::error::{ensure_blocking_allowed, BlockingError, SubmissionBacklogFull};

/// How an operation entered the facade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A blocking call; its caller waits for it. Not bounded, not counted.
    Call,
    /// A non-blocking submission; bounded by `max_pending_submissions`.
    Submission,
}

struct Entry {
    admission: Admission,
    abort: Option<AbortHandle>,
}

struct Register {
    accepting: bool,
    cancelling: bool,
    next_id: u64,
    entries: BTreeMap<u64, Entry>,
    submissions: usize,
}

impl Register {
    fn submissions_before(&self, watermark: u64) -> usize {
        self.entries
            .range(..watermark)
            .filter(|(_, entry)| entry.admission == Admission::Submission)
            .count()
    }
}

/// Every running operation of one facade.
pub(crate) struct Backlog {
    limit: usize,
    register: Mutex<Register>,
    /// Signalled whenever an operation leaves (for blocking flushes).
    left: Condvar,
    /// Signalled whenever an operation leaves (for the async drain).
    left_async: Notify,
}

impl Backlog {
    pub(crate) fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            register: Mutex::new(Register {
                accepting: true,
                cancelling: false,
                next_id: 0,
                entries: BTreeMap::new(),
                submissions: 0,
            }),
            left: Condvar::new(),
            left_async: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Register> {
        // No code panics while holding the lock; recover the state anyway.
        self.register.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bound on pending submissions.
    pub(crate) fn limit(&self) -> usize {
        self.limit
    }

    /// Admits one operation, or refuses it at once.
    pub(crate) fn admit<T>(
        self: &Arc<Self>,
        admission: Admission,
        completion: Arc<Completion<T>>,
    ) -> Result<Ticket<T>, BlockingError> {
        let mut register = self.lock();
        if !register.accepting {
            return Err(BlockingError::Closed);
        }
        if admission == Admission::Submission {
            if register.submissions >= self.limit {
                return Err(SubmissionBacklogFull::new(self.limit, register.submissions).into());
            }
            register.submissions += 1;
        }
        let id = register.next_id;
        register.next_id += 1;
        register.entries.insert(
            id,
            Entry {
                admission,
                abort: None,
            },
        );
        Ok(Ticket {
            backlog: Arc::clone(self),
            id,
            completion,
            settled: false,
        })
    }

    /// Records how to cancel a spawned operation. When the shutdown already
    /// started cancelling, the operation is cancelled right away.
    pub(crate) fn attach(&self, id: u64, abort: AbortHandle) {
        let mut register = self.lock();
        if register.cancelling {
            abort.abort();
            return;
        }
        if let Some(entry) = register.entries.get_mut(&id) {
            entry.abort = Some(abort);
        }
    }

    /// Frees an operation's slot and settles its outcome atomically.
    fn release(&self, id: u64, settle: impl FnOnce()) {
        {
            let mut register = self.lock();
            if let Some(entry) = register.entries.remove(&id) {
                if entry.admission == Admission::Submission {
                    register.submissions -= 1;
                }
            }
            settle();
        }
        self.left.notify_all();
        self.left_async.notify_waiters();
    }

    /// Submissions admitted and not yet over.
    pub(crate) fn pending_submissions(&self) -> usize {
        self.lock().submissions
    }

    /// Whether new operations are admitted.
    pub(crate) fn is_accepting(&self) -> bool {
        self.lock().accepting
    }

    /// Stops admitting operations.
    pub(crate) fn stop_accepting(&self) {
        self.lock().accepting = false;
    }

    /// Waits until every submission admitted before the call is over.
    pub(crate) fn flush(&self, timeout: Duration) -> Result<(), BlockingError> {
        if timeout.is_zero() {
            return Err(ConfigError::invalid("flush timeout", "must be positive").into());
        }
        let mut register = self.lock();
        let watermark = register.next_id;
        if register.submissions_before(watermark) == 0 {
            return Ok(());
        }
        drop(register);
        ensure_blocking_allowed()?;
        register = self.lock();
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let pending = register.submissions_before(watermark);
            if pending == 0 {
                return Ok(());
            }
            let remaining = match deadline {
                Some(deadline) => deadline.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if remaining.is_zero() {
                return Err(BlockingError::Timeout { timeout, pending });
            }
            register = self
                .left
                .wait_timeout(register, remaining)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Waits until no operation is running.
    pub(crate) async fn drained(&self) {
        loop {
            let left = self.left_async.notified();
            tokio::pin!(left);
            left.as_mut().enable();
            if self.lock().entries.is_empty() {
                return;
            }
            left.await;
        }
    }

    /// Cancels every running operation (and any still being spawned);
    /// returns how many were running.
    pub(crate) fn cancel_all(&self) -> usize {
        let mut register = self.lock();
        register.cancelling = true;
        for entry in register.entries.values() {
            if let Some(abort) = &entry.abort {
                abort.abort();
            }
        }
        register.entries.len()
    }
}

/// One admitted operation's claim on its slot and its outcome.
///
/// [`Ticket::finish`] records the result; dropping an unfinished ticket
/// (the task was aborted, panicked or never ran) records a cancellation.
pub(crate) struct Ticket<T> {
    backlog: Arc<Backlog>,
    id: u64,
    completion: Arc<Completion<T>>,
    settled: bool,
}

impl<T> Ticket<T> {
    /// The operation's sequence number.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Frees the slot and records the operation's result.
    pub(crate) fn finish(mut self, result: Result<T, CoalestraError>) {
        self.settled = true;
        let completion = &self.completion;
        self.backlog.release(self.id, || completion.finish(result));
    }
}

impl<T> Drop for Ticket<T> {
    fn drop(&mut self) {
        if !self.settled {
            let completion = &self.completion;
            self.backlog.release(self.id, || completion.cancel());
        }
    }
}
