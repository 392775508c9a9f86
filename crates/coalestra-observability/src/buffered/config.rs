//! [`BufferConfig`] and [`OverflowPolicy`]: how a buffered sink queues.

use std::num::NonZeroUsize;
use std::time::Duration;

use coalestra_core::ConfigError;
use serde::Serialize;

/// What a buffered sink does with a new record when its queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OverflowPolicy {
    /// Discard the oldest queued record (not the one being delivered) and
    /// queue the new one: the most recent activity is kept.
    #[default]
    DropOldest,
    /// Discard the new record: the queue keeps the oldest activity.
    DropNewest,
}

/// The settings of a buffered sink.
///
/// ```
/// use std::num::NonZeroUsize;
/// use std::time::Duration;
/// use coalestra_observability::{BufferConfig, OverflowPolicy};
///
/// let config = BufferConfig::default()
///     .with_max_pending(NonZeroUsize::new(1_000).unwrap())
///     .with_overflow(OverflowPolicy::DropNewest)
///     .with_shutdown_timeout(Duration::from_secs(1));
/// assert!(config.validate().is_ok());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct BufferConfig {
    /// How many records may wait in the queue (default 10 000). The record
    /// being delivered is not counted, so up to `max_pending + 1` records
    /// can be pending.
    pub max_pending: NonZeroUsize,
    /// What happens when the queue is full (default
    /// [`OverflowPolicy::DropOldest`]).
    pub overflow: OverflowPolicy,
    /// How long closing may wait for the queue to drain (default 5 s).
    pub shutdown_timeout: Duration,
}

impl BufferConfig {
    /// The default queue bound.
    pub const DEFAULT_MAX_PENDING: NonZeroUsize = match NonZeroUsize::new(10_000) {
        Some(bound) => bound,
        None => unreachable!(),
    };

    /// The default shutdown timeout.
    pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

    /// The same settings with another queue bound.
    #[must_use]
    pub fn with_max_pending(mut self, max_pending: NonZeroUsize) -> Self {
        self.max_pending = max_pending;
        self
    }

    /// The same settings with another overflow policy.
    #[must_use]
    pub fn with_overflow(mut self, overflow: OverflowPolicy) -> Self {
        self.overflow = overflow;
        self
    }

    /// The same settings with another shutdown timeout.
    #[must_use]
    pub fn with_shutdown_timeout(mut self, shutdown_timeout: Duration) -> Self {
        self.shutdown_timeout = shutdown_timeout;
        self
    }

    /// Checks the settings: the shutdown timeout must be positive.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.shutdown_timeout.is_zero() {
            return Err(ConfigError::Zero {
                field: "shutdown_timeout",
            });
        }
        Ok(())
    }
}

impl Default for BufferConfig {
    fn default() -> Self {
        Self {
            max_pending: Self::DEFAULT_MAX_PENDING,
            overflow: OverflowPolicy::default(),
            shutdown_timeout: Self::DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}
