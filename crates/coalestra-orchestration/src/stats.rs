//! Per-build counters, shared by every task working for one build.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use coalestra_core::SnapshotDiagnostics;

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Atomic counters of one build.
        #[derive(Debug, Default)]
        pub(crate) struct BuildStats {
            $(pub(crate) $name: AtomicU64,)*
            per_source: Mutex<BTreeMap<String, (u64, Duration)>>,
        }

        impl BuildStats {
            fn fill(&self, d: &mut SnapshotDiagnostics) {
                $(d.$name = self.$name.load(Ordering::Relaxed);)*
            }
        }

        /// Adds every counter of `stage` to `total` (the counters listed
        /// once, below, for both).
        pub(crate) fn add_counters(total: &mut SnapshotDiagnostics, stage: &SnapshotDiagnostics) {
            $(total.$name += stage.$name;)*
        }
    };
}

counters!(
    cache_hits,
    cache_misses,
    cache_batch_reads,
    cache_batch_writes,
    stale_values,
    coalesced_requests,
    source_calls,
    batch_calls,
    derived_calls,
    batch_chunks,
    refresh_scheduled,
    refresh_completed,
    refresh_failed,
    support_cache_hits,
    support_cache_misses,
    retries,
    future_timestamp_rejections,
);

impl BuildStats {
    /// Adds one to a counter.
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n` to a counter.
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Records one source invocation and its latency.
    pub(crate) fn source_call(&self, source: &str, latency: Duration) {
        Self::bump(&self.source_calls);
        let mut map = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
        // The name is copied once per source and build, not once per call.
        match map.get_mut(source) {
            Some(entry) => {
                entry.0 += 1;
                entry.1 += latency;
            }
            None => {
                map.insert(source.to_owned(), (1, latency));
            }
        }
    }

    /// Fills diagnostics.
    pub(crate) fn diagnostics(&self) -> SnapshotDiagnostics {
        let mut d = SnapshotDiagnostics::default();
        self.fill(&mut d);
        let map = self.per_source.lock().unwrap_or_else(|p| p.into_inner());
        for (name, (calls, latency)) in map.iter() {
            d.source_calls_by_source.insert(name.clone(), *calls);
            d.source_latency_by_source.insert(name.clone(), *latency);
        }
        d
    }
}

/// The spread of observation times over resolved values.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Skew {
    oldest: Option<coalestra_core::Timestamp>,
    newest: Option<coalestra_core::Timestamp>,
}

impl Skew {
    /// Takes one value's observation time into account.
    #[inline]
    pub(crate) fn note(&mut self, at: coalestra_core::Timestamp) {
        self.oldest = Some(self.oldest.map_or(at, |o| if at < o { at } else { o }));
        self.newest = Some(self.newest.map_or(at, |n| if at > n { at } else { n }));
    }

    /// Newest minus oldest (zero below two values).
    pub(crate) fn spread(&self) -> Duration {
        match (self.oldest, self.newest) {
            (Some(o), Some(n)) => n.saturating_since(o),
            _ => Duration::ZERO,
        }
    }
}
