//! What the blocking facade fails with: [`BlockingError`] for calls on the
//! facade, [`SubmissionError`] for the outcome of one submitted operation and
//! [`SubmissionBacklogFull`] when a submission is refused.

use std::time::Duration;

use coalestra_core::{CoalestraError, ConfigError};

/// A submission was refused because the backlog of pending operations is at
/// its limit. The producer is never blocked: it decides whether to retry,
/// drop or degrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("submission backlog is full: {pending} of {limit} operations pending")]
#[non_exhaustive]
pub struct SubmissionBacklogFull {
    /// The configured `max_pending_submissions`.
    pub limit: usize,
    /// Operations pending when the submission was refused.
    pub pending: usize,
}

impl SubmissionBacklogFull {
    pub(crate) fn new(limit: usize, pending: usize) -> Self {
        Self { limit, pending }
    }
}

/// The error of a call on the blocking facade.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum BlockingError {
    /// The operation itself failed (build, publication, configuration, ...).
    #[error(transparent)]
    Coalestra(#[from] CoalestraError),
    /// The facade is closed or closing: no new work is accepted.
    #[error("blocking snapshot builder is closed")]
    Closed,
    /// A submission was refused because the backlog is full.
    #[error(transparent)]
    BacklogFull(#[from] SubmissionBacklogFull),
    /// The operation was cancelled before it completed (by a shutdown that
    /// outlasted `shutdown_timeout`, or because its task ended abnormally).
    #[error("operation was cancelled before it completed")]
    Cancelled,
    /// Waiting took longer than the caller's timeout; the awaited work is
    /// not cancelled and still completes later.
    #[error("timed out after {:.3}s with {pending} submission(s) still pending", timeout.as_secs_f64())]
    Timeout {
        /// The caller's timeout.
        timeout: Duration,
        /// The awaited operations still pending.
        pending: usize,
    },
    /// A blocking method was called from inside an async runtime, where
    /// blocking could deadlock; async code should use the async API.
    #[error("blocking call made inside an async runtime; use the async api there instead")]
    InsideAsyncContext,
    /// Closing did not finish within `shutdown_timeout`: the remaining
    /// operations were cancelled (or background work abandoned). The facade
    /// is closed all the same.
    #[error("shutdown exceeded {:.3}s: {pending} operation(s) cancelled or unfinished", timeout.as_secs_f64())]
    ShutdownTimeout {
        /// The configured `shutdown_timeout`.
        timeout: Duration,
        /// Operations cancelled plus background tasks left unfinished.
        pending: usize,
    },
    /// The runtime thread could not be started or stopped abnormally.
    #[error("runtime thread unavailable: {reason}")]
    RuntimeUnavailable {
        /// What went wrong.
        reason: String,
    },
}

impl BlockingError {
    /// Whether the facade (or the wrapped builder or session) is closed.
    pub fn is_closed(&self) -> bool {
        match self {
            Self::Closed => true,
            Self::Coalestra(error) => error.is_closed(),
            _ => false,
        }
    }

    /// Whether this is the operation's own error.
    pub fn is_coalestra(&self) -> bool {
        matches!(self, Self::Coalestra(_))
    }

    /// Whether this is a configuration error.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Coalestra(error) if error.is_config())
    }

    /// Whether a submission was refused because the backlog is full.
    pub fn is_backlog_full(&self) -> bool {
        matches!(self, Self::BacklogFull(_))
    }

    /// Whether the operation was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled)
    }

    /// Whether the caller's wait timed out.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// Whether a blocking call was made inside an async runtime.
    pub fn is_inside_async_context(&self) -> bool {
        matches!(self, Self::InsideAsyncContext)
    }

    /// Whether closing outlasted `shutdown_timeout`.
    pub fn is_shutdown_timeout(&self) -> bool {
        matches!(self, Self::ShutdownTimeout { .. })
    }

    /// Whether the runtime thread is unavailable.
    pub fn is_runtime_unavailable(&self) -> bool {
        matches!(self, Self::RuntimeUnavailable { .. })
    }

    /// The operation's own error, if this is one.
    pub fn as_coalestra(&self) -> Option<&CoalestraError> {
        match self {
            Self::Coalestra(error) => Some(error),
            _ => None,
        }
    }

    /// The refused submission's backlog state, if this is one.
    pub fn as_backlog_full(&self) -> Option<SubmissionBacklogFull> {
        match self {
            Self::BacklogFull(full) => Some(*full),
            _ => None,
        }
    }
}

impl From<ConfigError> for BlockingError {
    fn from(error: ConfigError) -> Self {
        Self::Coalestra(error.into())
    }
}

/// The outcome of waiting for one submitted operation that did not
/// produce a value.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SubmissionError {
    /// The operation ran and failed with its own error.
    #[error(transparent)]
    Failed(#[from] CoalestraError),
    /// The operation was cancelled before it completed.
    #[error("submitted operation was cancelled before it completed")]
    Cancelled,
    /// The operation did not finish within the caller's timeout; it is not
    /// cancelled and can be waited for again.
    #[error("submitted operation did not finish within {:.3}s", timeout.as_secs_f64())]
    Timeout {
        /// The caller's timeout.
        timeout: Duration,
    },
    /// The wait would block inside an async runtime.
    #[error("waiting for a submission inside an async runtime would block it")]
    InsideAsyncContext,
}

impl SubmissionError {
    /// Whether the operation failed with its own error.
    pub fn is_failed(&self) -> bool {
        matches!(self, Self::Failed(_))
    }

    /// Whether the operation was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self, Self::Cancelled)
    }

    /// Whether the wait timed out (the operation may still complete).
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// Whether the wait was refused inside an async runtime.
    pub fn is_inside_async_context(&self) -> bool {
        matches!(self, Self::InsideAsyncContext)
    }

    /// The operation's own error, if it failed.
    pub fn as_failed(&self) -> Option<&CoalestraError> {
        match self {
            Self::Failed(error) => Some(error),
            _ => None,
        }
    }
}

impl From<SubmissionError> for BlockingError {
    fn from(error: SubmissionError) -> Self {
        match error {
            SubmissionError::Failed(error) => Self::Coalestra(error),
            SubmissionError::Cancelled => Self::Cancelled,
            SubmissionError::Timeout { timeout } => Self::Timeout {
                timeout,
                pending: 1,
            },
            SubmissionError::InsideAsyncContext => Self::InsideAsyncContext,
        }
    }
}

/// Refuses a blocking wait on a thread that runs an async runtime.
pub(crate) fn ensure_blocking_allowed() -> Result<(), BlockingError> {
    if inside_async_context() {
        Err(BlockingError::InsideAsyncContext)
    } else {
        Ok(())
    }
}

/// Whether the current thread is inside a tokio runtime context.
pub(crate) fn inside_async_context() -> bool {
    tokio::runtime::Handle::try_current().is_ok()
}
