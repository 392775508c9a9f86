//! Point-in-time view of a controller's limits, usage and queues.

use std::collections::BTreeMap;

use serde::Serialize;

/// Usage of one limit (the global one or one source's) at a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LimitSnapshot {
    /// The configured limit.
    pub limit: usize,
    /// Slots currently taken.
    pub in_use: usize,
    /// Acquisitions currently queued for a slot of this limit.
    pub waiting: usize,
}

/// Usage of a [`CapacityController`](super::CapacityController) at a point in time.
///
/// The numbers are read one after the other without a lock, so under
/// concurrent activity they may describe slightly different instants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CapacitySnapshot {
    /// The global limit. Its `waiting` counts acquisitions that already hold
    /// their source slot (or have no source limit) and queue for a global slot.
    pub global: LimitSnapshot,
    /// Every source with an explicit limit, by name. Their `waiting` counts
    /// acquisitions queued for a slot of that source.
    pub sources: BTreeMap<String, LimitSnapshot>,
}
