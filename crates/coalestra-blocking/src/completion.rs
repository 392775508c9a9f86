//! The hand-over of one operation's outcome from the runtime to a plain
//! thread: [`Completion`] (filled once by the runtime) and
//! [`SubmissionHandle`] (read by the producer).

use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use coalestra_core::CoalestraError;

use crate::error::{inside_async_context, SubmissionError};

/// Where an operation stands.
enum Outcome<T> {
    Pending,
    Finished(Result<T, CoalestraError>),
    Cancelled,
    /// The value was moved out by [`SubmissionHandle::wait`].
    Taken,
}

/// A write-once slot with blocking waits.
pub(crate) struct Completion<T> {
    outcome: Mutex<Outcome<T>>,
    ready: Condvar,
}

impl<T> Completion<T> {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            outcome: Mutex::new(Outcome::Pending),
            ready: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Outcome<T>> {
        // Nothing panics while holding the lock; recover the state anyway.
        self.outcome.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the operation's result (ignored when already settled).
    pub(crate) fn finish(&self, result: Result<T, CoalestraError>) {
        self.settle(Outcome::Finished(result));
    }

    /// Records that the operation will never complete.
    pub(crate) fn cancel(&self) {
        self.settle(Outcome::Cancelled);
    }

    fn settle(&self, outcome: Outcome<T>) {
        let mut current = self.lock();
        if matches!(*current, Outcome::Pending) {
            *current = outcome;
            self.ready.notify_all();
        }
    }

    fn is_settled(&self) -> bool {
        !matches!(*self.lock(), Outcome::Pending)
    }

    /// Waits without a bound and moves the result out.
    pub(crate) fn take(&self) -> Result<T, SubmissionError> {
        let guard = self.lock();
        let mut guard = self
            .ready
            .wait_while(guard, |o| matches!(o, Outcome::Pending))
            .unwrap_or_else(PoisonError::into_inner);
        match std::mem::replace(&mut *guard, Outcome::Taken) {
            Outcome::Finished(result) => result.map_err(SubmissionError::Failed),
            // `Taken` cannot be observed: only the single owner takes.
            Outcome::Cancelled | Outcome::Taken | Outcome::Pending => {
                Err(SubmissionError::Cancelled)
            }
        }
    }

    /// Waits up to `timeout` and clones the result out.
    fn peek_within(&self, timeout: Duration) -> Result<T, SubmissionError>
    where
        T: Clone,
    {
        let guard = self.lock();
        let deadline = Instant::now().checked_add(timeout);
        let guard = match deadline {
            Some(deadline) => {
                let mut guard = guard;
                loop {
                    if !matches!(*guard, Outcome::Pending) {
                        break guard;
                    }
                    let remaining = deadline.saturating_duration_since(Instant::now());
                    if remaining.is_zero() {
                        return Err(SubmissionError::Timeout { timeout });
                    }
                    guard = self
                        .ready
                        .wait_timeout(guard, remaining)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
            }
            // A timeout too large to represent is no bound at all.
            None => self
                .ready
                .wait_while(guard, |o| matches!(o, Outcome::Pending))
                .unwrap_or_else(PoisonError::into_inner),
        };
        match &*guard {
            Outcome::Finished(result) => result.clone().map_err(SubmissionError::Failed),
            _ => Err(SubmissionError::Cancelled),
        }
    }
}

/// The producer's handle on one submitted operation.
///
/// The operation runs on the facade's runtime whether or not the handle is
/// kept: dropping the handle discards the outcome, never the work. The
/// outcome is the operation's own result or error; it stays available until
/// [`SubmissionHandle::wait`] consumes the handle.
#[must_use = "the handle reports the operation's outcome; dropping it discards that outcome"]
pub struct SubmissionHandle<T> {
    completion: Arc<Completion<T>>,
    id: u64,
}

impl<T> SubmissionHandle<T> {
    pub(crate) fn new(completion: Arc<Completion<T>>, id: u64) -> Self {
        Self { completion, id }
    }

    /// The submission's sequence number within its facade (increasing in
    /// acceptance order).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// Whether the operation completed, failed or was cancelled.
    pub fn is_finished(&self) -> bool {
        self.completion.is_settled()
    }

    /// Waits until the operation is over and returns its outcome.
    ///
    /// # Errors
    ///
    /// [`SubmissionError::Failed`] with the operation's own error,
    /// [`SubmissionError::Cancelled`] when it was cancelled, or
    /// [`SubmissionError::InsideAsyncContext`] when the operation is still
    /// running and this thread runs an async runtime (blocking it could
    /// deadlock).
    pub fn wait(self) -> Result<T, SubmissionError> {
        if !self.is_finished() && inside_async_context() {
            return Err(SubmissionError::InsideAsyncContext);
        }
        self.completion.take()
    }

    /// Waits at most `timeout` and returns a copy of the outcome; the handle
    /// stays usable, so a timed-out wait can be repeated.
    ///
    /// # Errors
    ///
    /// As [`SubmissionHandle::wait`], plus [`SubmissionError::Timeout`] when
    /// the operation is still running after `timeout` (it is not cancelled).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<T, SubmissionError>
    where
        T: Clone,
    {
        if !self.is_finished() && inside_async_context() {
            return Err(SubmissionError::InsideAsyncContext);
        }
        self.completion.peek_within(timeout)
    }
}

impl<T> fmt::Debug for SubmissionHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubmissionHandle")
            .field("id", &self.id)
            .field("finished", &self.is_finished())
            .finish()
    }
}
