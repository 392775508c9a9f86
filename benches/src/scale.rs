//! `scale-1m`: distinct keys streamed through a builder whose
//! [`MemoryCache`] is bounded at 100,000 entries, in builds of 1,000 keys
//! from an inline batch source with a one-hour TTL (so every key is written
//! to the cache and, once the cache is full, evicts an older one).
//!
//! Reports throughput, the largest cache size seen (it must never exceed the
//! bound) and the process's resident memory from `/proc/self/status`
//! (`VmRSS` sampled during the run, `VmHWM` for the peak). After a warm-up of
//! `min(2 × bound, keys / 2)` keys, resident memory must stay within 10 % of
//! its value at the end of the warm-up while the remaining keys stream
//! through.
//!
//! The default is 200,000 keys so the suite stays short on a two-core
//! machine; `COALESTRA_SCALE_KEYS=1000000` runs the full million.

use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use coalestra::{FreshnessPolicy, MemoryCache, ResourceKey, SnapshotBuilder};
use tokio::time::Instant;

use crate::key;
use crate::measure::Record;
use crate::read_path::{check_complete, local_batch_source, HOT_TTL};

/// The environment variable overriding the number of keys.
pub const KEYS_VAR: &str = "COALESTRA_SCALE_KEYS";
/// Keys streamed by default.
pub const DEFAULT_KEYS: usize = 200_000;
/// The cache bound.
pub const BOUND: u64 = 100_000;
/// Keys per build.
pub const BATCH: usize = 1_000;
/// Builds between two samples of resident memory (the cache size is
/// checked after every build).
const SAMPLE_EVERY: usize = 10;
/// The largest allowed growth of resident memory after warm-up.
pub const MAX_RSS_GROWTH: f64 = 0.10;

/// Resident memory of this process, in KiB, from `/proc/self/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_kib: u64,
    /// `VmHWM`: the peak resident size so far.
    pub hwm_kib: u64,
}

impl Memory {
    /// Reads `/proc/self/status`; zeros where it is unavailable.
    pub fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Self::parse(&status)
    }

    fn parse(status: &str) -> Self {
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        Self {
            rss_kib: field("VmRSS:"),
            hwm_kib: field("VmHWM:"),
        }
    }
}

/// What a scale run measured.
#[derive(Debug, Clone)]
pub struct ScaleReport {
    /// Keys streamed.
    pub keys: usize,
    /// The cache bound.
    pub bound: u64,
    /// Keys counted as warm-up.
    pub warm_up_keys: usize,
    /// Time spent in builds (sampling excluded).
    pub build_time: Duration,
    /// The largest cache size sampled.
    pub max_cache_size: u64,
    /// Resident memory at the end of the warm-up.
    pub rss_after_warm_up_kib: u64,
    /// The largest resident memory sampled after the warm-up.
    pub rss_max_after_warm_up_kib: u64,
    /// Resident memory at the end.
    pub rss_final_kib: u64,
    /// The peak resident memory of the process (`VmHWM`).
    pub peak_rss_kib: u64,
}

impl ScaleReport {
    /// Keys per second of build time.
    pub fn keys_per_sec(&self) -> f64 {
        self.keys as f64 / self.build_time.as_secs_f64()
    }

    /// Relative growth of resident memory after the warm-up.
    pub fn rss_growth(&self) -> f64 {
        if self.rss_after_warm_up_kib == 0 {
            return 0.0;
        }
        self.rss_max_after_warm_up_kib as f64 / self.rss_after_warm_up_kib as f64 - 1.0
    }

    /// Whether the cache never exceeded its bound.
    pub fn bound_respected(&self) -> bool {
        self.max_cache_size <= self.bound
    }

    /// Whether resident memory stayed flat after the warm-up.
    pub fn memory_flat(&self) -> bool {
        self.rss_growth() <= MAX_RSS_GROWTH
    }

    /// The report as a JSON line for `cargo xtask bench-compare`.
    pub fn record(&self) -> Record {
        let per_key = self.build_time / self.keys.max(1) as u32;
        Record::new("scale-1m")
            .int("keys", self.keys as u64)
            .int("bound", self.bound)
            .int("warm_up_keys", self.warm_up_keys as u64)
            .int("runs", 1)
            .int("iters_per_run", 1)
            .ms("median_ms", self.build_time)
            .ms("min_ms", self.build_time)
            .ms("max_ms", self.build_time)
            .num("us_per_key", per_key.as_secs_f64() * 1e6)
            .num("keys_per_sec", self.keys_per_sec())
            .int("max_cache_size", self.max_cache_size)
            .flag("bound_respected", self.bound_respected())
            .num("rss_after_warm_up_mib", mib(self.rss_after_warm_up_kib))
            .num(
                "rss_max_after_warm_up_mib",
                mib(self.rss_max_after_warm_up_kib),
            )
            .num("rss_final_mib", mib(self.rss_final_kib))
            .num("peak_rss_mib", mib(self.peak_rss_kib))
            .num("rss_growth_pct", self.rss_growth() * 100.0)
            .flag("memory_flat", self.memory_flat())
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// The number of keys to stream: `COALESTRA_SCALE_KEYS` or the default.
///
/// # Panics
///
/// When the variable is set but not a positive integer.
pub fn keys_from_env() -> usize {
    match std::env::var(KEYS_VAR) {
        Ok(text) => text
            .trim()
            .replace('_', "")
            .parse::<usize>()
            .ok()
            .filter(|&n| n >= BATCH)
            .unwrap_or_else(|| panic!("{KEYS_VAR} must be an integer >= {BATCH}, got {text:?}")),
        Err(_) => DEFAULT_KEYS,
    }
}

/// Streams `total` distinct keys through a cache bounded at [`BOUND`].
///
/// # Panics
///
/// When a build fails.
pub async fn run(total: usize) -> ScaleReport {
    let bound = NonZeroU64::new(BOUND).expect("non-zero bound");
    let cache = MemoryCache::with_capacity(bound);
    let builder = SnapshotBuilder::builder([local_batch_source("batch").into()])
        .cache(Arc::new(cache.clone()))
        .default_policy(FreshnessPolicy::fresh_for(HOT_TTL))
        .build()
        .expect("scale builder");
    let warm_up_keys = (2 * BOUND as usize).min(total / 2);
    let mut report = ScaleReport {
        keys: 0,
        bound: BOUND,
        warm_up_keys,
        build_time: Duration::ZERO,
        max_cache_size: 0,
        rss_after_warm_up_kib: 0,
        rss_max_after_warm_up_kib: 0,
        rss_final_kib: 0,
        peak_rss_kib: 0,
    };
    let mut next = 0usize;
    let mut builds = 0usize;
    while next < total {
        let end = (next + BATCH).min(total);
        let keys: Vec<ResourceKey> = (next..end).map(|i| key("scale", "S", i)).collect();
        let started = Instant::now();
        let snapshot = builder.build(keys).await.expect("scale build");
        report.build_time += started.elapsed();
        check_complete(&snapshot, end - next);
        drop(snapshot);
        let crossed_warm_up = next < warm_up_keys && end >= warm_up_keys;
        next = end;
        builds += 1;
        report.max_cache_size = report.max_cache_size.max(cache.len());
        if builds % SAMPLE_EVERY == 0 || crossed_warm_up || next == total {
            let memory = Memory::read();
            if crossed_warm_up {
                report.rss_after_warm_up_kib = memory.rss_kib;
            } else if next > warm_up_keys {
                report.rss_max_after_warm_up_kib =
                    report.rss_max_after_warm_up_kib.max(memory.rss_kib);
            }
        }
    }
    let memory = Memory::read();
    report.keys = total;
    report.rss_final_kib = memory.rss_kib;
    report.peak_rss_kib = memory.hwm_kib;
    report.rss_max_after_warm_up_kib = report.rss_max_after_warm_up_kib.max(memory.rss_kib);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_status() {
        let status = "Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n";
        let memory = Memory::parse(status);
        assert_eq!((memory.rss_kib, memory.hwm_kib), (1024, 2048));
        assert_eq!(Memory::parse(""), Memory::default());
    }
}
