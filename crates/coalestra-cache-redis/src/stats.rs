//! Counters of the Redis tier and the report types [`RedisStats`] and
//! [`TieredStats`].

use std::sync::atomic::{AtomicU64, Ordering};

use coalestra_core::{CacheStats, Freshness, WriteOutcome};
use coalestra_resilience::CircuitState;
use serde::Serialize;

/// Relaxed atomic counters; each is exact on its own.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) fresh_hits: AtomicU64,
    pub(crate) stale_hits: AtomicU64,
    pub(crate) sets: AtomicU64,
    pub(crate) ignored_lower_authority: AtomicU64,
    pub(crate) ignored_older: AtomicU64,
    pub(crate) ignored_duplicate: AtomicU64,
    pub(crate) invalidations: AtomicU64,
    pub(crate) expirations: AtomicU64,
    pub(crate) local_only_writes: AtomicU64,
    pub(crate) encode_failures: AtomicU64,
    pub(crate) decode_failures: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, by: u64) {
    if by > 0 {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

pub(crate) fn load(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

impl Counters {
    pub(crate) fn hit(&self, freshness: Freshness) {
        bump(&self.hits, 1);
        if freshness.is_fresh() {
            bump(&self.fresh_hits, 1);
        } else {
            bump(&self.stale_hits, 1);
        }
    }

    pub(crate) fn miss(&self) {
        bump(&self.misses, 1);
    }

    pub(crate) fn write(&self, outcome: WriteOutcome) {
        let counter = match outcome {
            WriteOutcome::Stored => &self.sets,
            WriteOutcome::IgnoredLowerAuthority => &self.ignored_lower_authority,
            WriteOutcome::IgnoredOlder => &self.ignored_older,
            WriteOutcome::IgnoredDuplicate => &self.ignored_duplicate,
            _ => return,
        };
        bump(counter, 1);
    }

    /// These counters added to `base` (the local store's counters).
    pub(crate) fn merged_into(&self, mut base: CacheStats) -> CacheStats {
        base.hits += load(&self.hits);
        base.misses += load(&self.misses);
        base.fresh_hits += load(&self.fresh_hits);
        base.stale_hits += load(&self.stale_hits);
        base.sets += load(&self.sets);
        base.ignored_lower_authority += load(&self.ignored_lower_authority);
        base.ignored_older += load(&self.ignored_older);
        base.ignored_duplicate += load(&self.ignored_duplicate);
        base.invalidations += load(&self.invalidations);
        base.expirations += load(&self.expirations);
        base
    }
}

/// The state of a [`RedisCache`](crate::RedisCache).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RedisStats {
    /// Core counters, Redis and local store together. `size` counts only the
    /// local store (the shared entry count is not known without a round
    /// trip) and `max_entries` is the local bound.
    pub cache: CacheStats,
    /// Entries in the local store (values without a codec).
    pub local_entries: u64,
    /// Writes kept local because their resource type has no codec or their
    /// payload could not be encoded.
    pub local_only_writes: u64,
    /// Payloads that could not be encoded (kept local).
    pub encode_failures: u64,
    /// Stored records that could not be decoded (served as misses).
    pub decode_failures: u64,
    /// Operations that failed because Redis could not be reached or
    /// answered too late.
    pub unavailable_errors: u64,
    /// Operations refused by the open circuit without trying Redis.
    pub circuit_rejections: u64,
    /// Connections opened (the first one and every reconnection).
    pub connections_opened: u64,
    /// Whether the last operation reached Redis and the circuit is closed.
    pub available: bool,
    /// The `redis` circuit.
    pub circuit: CircuitState,
}

/// The state of a [`TieredCache`](crate::TieredCache).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct TieredStats {
    /// The tiered counters as core reports them (L1 hits and L2 hits are both
    /// hits; `size` is the L1 size).
    pub cache: CacheStats,
    /// The L1 (moka) counters.
    pub l1: CacheStats,
    /// The L2 (Redis) state.
    pub l2: RedisStats,
    /// Reads served by L1.
    pub l1_hits: u64,
    /// Reads that missed L1 and were served by L2.
    pub l2_hits: u64,
    /// Operations served by L1 alone because L2 was unavailable.
    pub l2_fallbacks: u64,
    /// Writes kept in L1 only because their resource type has no codec.
    pub local_only_writes: u64,
    /// Whether L2 is unavailable or notifications are not received.
    pub degraded: bool,
    /// Whether L2 is reachable (its circuit is closed and the last call
    /// succeeded).
    pub l2_available: bool,
    /// Whether the notification subscription is live.
    pub pubsub_connected: bool,
    /// Notifications received from other replicas.
    pub notifications_received: u64,
    /// L1 entries dropped because of those notifications.
    pub l1_entries_dropped: u64,
    /// Times the L1 was emptied while notifications were not received.
    pub degraded_l1_flushes: u64,
}
