//! [`BlockingOptions`]: the backlog bound and shutdown behaviour of a
//! [`BlockingSnapshotBuilder`](crate::BlockingSnapshotBuilder).

use std::time::Duration;

use coalestra_core::ConfigError;

/// The default bound on pending non-blocking submissions.
pub const DEFAULT_MAX_PENDING_SUBMISSIONS: usize = 256;

/// The default time `close` lets accepted work drain before cancelling it.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// Options of a blocking facade.
///
/// ```
/// use std::time::Duration;
/// use coalestra_blocking::BlockingOptions;
///
/// let options = BlockingOptions::new()
///     .max_pending_submissions(64)
///     .shutdown_timeout(Duration::from_secs(2));
/// assert_eq!(options.max_pending_submissions, 64);
/// assert!(options.close_builder);
/// assert!(options.validate().is_ok());
/// assert!(BlockingOptions::new().max_pending_submissions(0).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockingOptions {
    /// How many non-blocking submissions may be pending at once; a
    /// submission beyond it fails at once with a backlog-full error
    /// (default 256, at least 1).
    pub max_pending_submissions: usize,
    /// How long closing lets accepted work drain before cancelling the
    /// rest; also bounds the wait for the builder's background work and the
    /// runtime's stop (default 5 s, positive).
    pub shutdown_timeout: Duration,
    /// Whether closing the facade closes the wrapped builder (default
    /// `true`); otherwise closing only waits for its background refreshes
    /// and the builder stays usable by its other owners.
    pub close_builder: bool,
}

impl Default for BlockingOptions {
    fn default() -> Self {
        Self {
            max_pending_submissions: DEFAULT_MAX_PENDING_SUBMISSIONS,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            close_builder: true,
        }
    }
}

impl BlockingOptions {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the bound on pending submissions.
    #[must_use]
    pub fn max_pending_submissions(mut self, limit: usize) -> Self {
        self.max_pending_submissions = limit;
        self
    }

    /// Sets the shutdown timeout.
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Sets whether closing the facade closes the builder.
    #[must_use]
    pub fn close_builder(mut self, close: bool) -> Self {
        self.close_builder = close;
        self
    }

    /// Checks the options.
    ///
    /// # Errors
    ///
    /// A zero `max_pending_submissions` or a zero `shutdown_timeout`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_pending_submissions == 0 {
            return Err(ConfigError::Zero {
                field: "max_pending_submissions",
            });
        }
        if self.shutdown_timeout.is_zero() {
            return Err(ConfigError::invalid("shutdown_timeout", "must be positive"));
        }
        Ok(())
    }
}
