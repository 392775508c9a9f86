//! [`FetchContext`]: what a source learns about the build calling it.

use std::sync::Arc;
use std::time::Instant;

use crate::clock::Timestamp;
use crate::metadata::Metadata;

/// The context of one source call.
///
/// `deadline` is on the async runtime's monotonic clock (converted to a
/// [`std::time::Instant`]); `deadline_at` is the same deadline in wall time.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct FetchContext {
    /// When the build started (wall time).
    pub requested_at: Timestamp,
    /// The build's absolute monotonic deadline, if any.
    pub deadline: Option<Instant>,
    /// The build's deadline in wall time, if any.
    pub deadline_at: Option<Timestamp>,
    /// The snapshot (or session) identity.
    pub snapshot_id: Arc<str>,
    /// Caller metadata (read-only).
    pub metadata: Metadata,
    /// The attempt number of this call, starting at 1.
    pub attempt: u32,
}

impl FetchContext {
    /// A context for `snapshot_id` requested at `requested_at`, without deadline.
    pub fn new(snapshot_id: impl Into<Arc<str>>, requested_at: Timestamp) -> Self {
        Self {
            requested_at,
            deadline: None,
            deadline_at: None,
            snapshot_id: snapshot_id.into(),
            metadata: Metadata::new(),
            attempt: 1,
        }
    }

    /// The same context with a deadline.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Instant, deadline_at: Timestamp) -> Self {
        self.deadline = Some(deadline);
        self.deadline_at = Some(deadline_at);
        self
    }

    /// The same context with caller metadata.
    #[must_use]
    pub fn with_metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// The same context for another attempt.
    #[must_use]
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }
}
