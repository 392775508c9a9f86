//! The RAII permit handed out by a successful acquisition.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;

/// Capacity held by one caller: a global slot and, when the source has an
/// explicit limit, a slot of that source.
///
/// Both slots are released when the permit is dropped.
#[derive(Debug)]
#[must_use = "capacity is released as soon as the permit is dropped"]
pub struct CapacityPermit {
    source_name: Arc<str>,
    wait_time: Duration,
    // Field order is drop order: the global slot is released before the
    // source slot, so a queued caller of the same source can never observe a
    // free source slot while this permit still holds its global slot.
    _global_slot: OwnedSemaphorePermit,
    source_slot: Option<OwnedSemaphorePermit>,
}

impl CapacityPermit {
    pub(super) fn new(
        source_name: Arc<str>,
        wait_time: Duration,
        global: OwnedSemaphorePermit,
        source: Option<OwnedSemaphorePermit>,
    ) -> Self {
        Self {
            source_name,
            wait_time,
            _global_slot: global,
            source_slot: source,
        }
    }

    /// How long the acquisition waited before both slots were obtained.
    #[must_use]
    pub fn wait_time(&self) -> Duration {
        self.wait_time
    }

    /// The source the permit was acquired for.
    #[must_use]
    pub fn source_name(&self) -> &str {
        &self.source_name
    }

    /// Whether the permit holds a slot of a per-source limit.
    #[must_use]
    pub fn holds_source_slot(&self) -> bool {
        self.source_slot.is_some()
    }
}
