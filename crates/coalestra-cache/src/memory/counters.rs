//! The memory cache's running counters.
//!
//! Every counter is a relaxed atomic: each one is exact on its own, and a
//! [`CacheStats`] read while writers are busy is a set of individually exact
//! numbers rather than one instant of the whole cache.

use std::sync::atomic::{AtomicU64, Ordering};

use coalestra_core::{CacheStats, WriteOutcome};

/// Hit, miss, write and removal counts shared by every clone of a cache and
/// by its eviction listener.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    fresh_hits: AtomicU64,
    stale_hits: AtomicU64,
    sets: AtomicU64,
    ignored_lower_authority: AtomicU64,
    ignored_older: AtomicU64,
    ignored_duplicate: AtomicU64,
    invalidations: AtomicU64,
    evictions: AtomicU64,
    expirations: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    if by > 0 {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

impl Counters {
    /// Records a batch of reads: fresh hits, stale hits and misses.
    pub(crate) fn record_reads(&self, fresh: u64, stale: u64, missed: u64) {
        if fresh + stale > 0 {
            bump(&self.hits, fresh + stale);
        }
        if fresh > 0 {
            bump(&self.fresh_hits, fresh);
        }
        if stale > 0 {
            bump(&self.stale_hits, stale);
        }
        if missed > 0 {
            bump(&self.misses, missed);
        }
    }

    /// Records the decision taken for one write candidate.
    pub(crate) fn write(&self, outcome: WriteOutcome) {
        let counter = match outcome {
            WriteOutcome::Stored => &self.sets,
            WriteOutcome::IgnoredLowerAuthority => &self.ignored_lower_authority,
            WriteOutcome::IgnoredOlder => &self.ignored_older,
            WriteOutcome::IgnoredDuplicate => &self.ignored_duplicate,
            // An outcome added to core later has no counter here yet.
            _ => return,
        };
        bump(counter, 1);
    }

    /// Records entries removed by invalidation.
    pub(crate) fn invalidated(&self, count: u64) {
        bump(&self.invalidations, count);
    }

    /// Records entries removed because they were past their stale window.
    pub(crate) fn expired(&self, count: u64) {
        bump(&self.expirations, count);
    }

    /// Records one entry removed by the size bound.
    pub(crate) fn evicted(&self) {
        bump(&self.evictions, 1);
    }

    /// The counters as core's stats, with the size fields supplied.
    pub(crate) fn snapshot(&self, size: u64, max_entries: Option<u64>) -> CacheStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut stats = CacheStats::default();
        stats.size = size;
        stats.max_entries = max_entries;
        stats.hits = load(&self.hits);
        stats.misses = load(&self.misses);
        stats.fresh_hits = load(&self.fresh_hits);
        stats.stale_hits = load(&self.stale_hits);
        stats.sets = load(&self.sets);
        stats.ignored_lower_authority = load(&self.ignored_lower_authority);
        stats.ignored_older = load(&self.ignored_older);
        stats.ignored_duplicate = load(&self.ignored_duplicate);
        stats.invalidations = load(&self.invalidations);
        stats.evictions = load(&self.evictions);
        stats.expirations = load(&self.expirations);
        stats
    }
}
