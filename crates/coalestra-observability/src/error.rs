//! [`ObservabilityShutdownTimeout`]: a buffered sink could not drain in time.

use std::time::Duration;

/// Closing a buffered sink did not finish within its shutdown timeout.
///
/// The records still queued were discarded (and counted as dropped); the
/// record being delivered, if any, is left to finish. Closing again waits
/// once more for the delivery worker and succeeds once it has stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("observability shutdown timed out after {timeout:?} with {pending_records} record(s) undelivered")]
#[non_exhaustive]
pub struct ObservabilityShutdownTimeout {
    /// The shutdown timeout that elapsed.
    pub timeout: Duration,
    /// The records not delivered when it elapsed (queued and in delivery).
    pub pending_records: usize,
}

impl ObservabilityShutdownTimeout {
    /// An error for `pending_records` undelivered records after `timeout`.
    pub fn new(timeout: Duration, pending_records: usize) -> Self {
        Self {
            timeout,
            pending_records,
        }
    }

    /// Whether records were still undelivered when the timeout elapsed (the
    /// delivery worker was busy or stuck), rather than merely slow to stop.
    pub fn is_undelivered(&self) -> bool {
        self.pending_records > 0
    }
}
