//! Why an acquisition of capacity failed.

use std::time::Duration;

/// Why [`CapacityController::acquire`](super::CapacityController::acquire)
/// gave up before obtaining a permit.
///
/// The source is reported in a field named `source_name` rather than
/// `source`, because [`std::error::Error::source`] is reserved for the
/// underlying cause of an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CapacityError {
    /// The queue timeout elapsed before both slots were available.
    #[error("no capacity for source `{source_name}` within the queue timeout of {timeout:?}")]
    QueueTimeout {
        /// The source that asked for capacity.
        source_name: String,
        /// The queue timeout that elapsed.
        timeout: Duration,
    },
    /// The caller's deadline was reached (or had already passed) before both
    /// slots were available.
    #[error("deadline exceeded after waiting {waited:?} for capacity for source `{source_name}`")]
    DeadlineExceeded {
        /// The source that asked for capacity.
        source_name: String,
        /// How long the acquisition waited; zero when the deadline had
        /// already passed.
        waited: Duration,
    },
}

impl CapacityError {
    /// The source that asked for capacity.
    #[must_use]
    pub fn source_name(&self) -> &str {
        match self {
            Self::QueueTimeout { source_name, .. } | Self::DeadlineExceeded { source_name, .. } => {
                source_name
            }
        }
    }

    /// Whether the queue timeout was the limit that elapsed.
    #[must_use]
    pub fn is_queue_timeout(&self) -> bool {
        matches!(self, Self::QueueTimeout { .. })
    }

    /// Whether the caller's deadline was the limit that elapsed.
    #[must_use]
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(self, Self::DeadlineExceeded { .. })
    }
}
