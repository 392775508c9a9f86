//! Shared workloads of the Coalestra benches.
//!
//! Every workload of issue 9 is set up here once and driven from two places:
//! the criterion benches under `benches/benches/` (`cargo bench -p
//! coalestra-benches`) and the `bench-report` binary, which times each
//! workload itself and prints one JSON object per line for `cargo xtask
//! bench-compare`. The Python scripts under `benches/python/` implement the
//! same workloads (same keys, latencies and policies) with the Python
//! original, so the two sides can be compared line by line.
//!
//! | Workload | Module |
//! | --- | --- |
//! | `hot-cache-200` and its hand-written moka baseline | [`read_path`], [`baseline`] |
//! | `cold-local-200`, `batch-1000` | [`read_path`] |
//! | `coalesce-1000`, `latency-20` | [`concurrency`], over a simulated [`remote`] backend |
//! | `publish` (distinct keys, one key) | [`publish`] |
//! | `session-revalidate` | [`session`] |
//! | `scale-1m` | [`scale`] |
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod baseline;
pub mod concurrency;
pub mod measure;
pub mod publish;
pub mod read_path;
pub mod remote;
pub mod scale;
pub mod session;

use coalestra::ResourceKey;

/// The namespace of every benchmark key.
pub const NAMESPACE: &str = "bench";

/// `count` distinct keys `bench/<name>/<prefix><index>`, zero-padded like
/// the Python scripts (`ResourceKey("bench", name, f"{prefix}{i:07d}")`).
///
/// # Panics
///
/// Never for the names used here; a key with an empty name would panic.
pub fn keys(name: &str, prefix: &str, count: usize) -> Vec<ResourceKey> {
    (0..count).map(|i| key(name, prefix, i)).collect()
}

/// The key `bench/<name>/<prefix><index>` (index zero-padded to 7 digits).
///
/// # Panics
///
/// When `name` is empty.
pub fn key(name: &str, prefix: &str, index: usize) -> ResourceKey {
    ResourceKey::new(NAMESPACE, name, format!("{prefix}{index:07}"))
        .expect("benchmark keys are valid")
}

/// The value every benchmark source returns for a key: the length of its
/// subject as a float (the Python scripts return `float(len(key.subject))`).
pub fn value_for(key: &ResourceKey) -> f64 {
    key.subject().len() as f64
}

/// A current-thread tokio runtime with timers: the Python side runs on one
/// asyncio event loop, so the Rust side runs on one thread too.
///
/// # Panics
///
/// When the runtime cannot be created.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread tokio runtime")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_and_padded() {
        let keys = keys("price", "K", 3);
        assert_eq!(keys[2].subject(), "K0000002");
        assert_eq!(value_for(&keys[0]), 8.0);
        assert_ne!(keys[0], keys[1]);
    }
}
