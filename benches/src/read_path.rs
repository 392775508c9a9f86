//! The read-path workloads: `hot-cache-200` (every key fresh in the cache),
//! `cold-local-200` (one inline sync source, caching disabled) and
//! `batch-1000` (one inline batch source, caching disabled).

use std::time::Duration;

use coalestra::{
    FnBatchSource, FnSource, FreshnessPolicy, ResourceKey, Snapshot, SnapshotBuilder,
    SourceOptions, SourceOutput,
};

use crate::{keys, value_for};

/// Keys of `hot-cache-200` and `cold-local-200`.
pub const READ_KEYS: usize = 200;
/// Keys of `batch-1000`.
pub const BATCH_KEYS: usize = 1_000;
/// The TTL of the warm cache of `hot-cache-200`: far longer than any run.
pub const HOT_TTL: Duration = Duration::from_secs(3_600);

/// An inline sync source returning [`value_for`] each key.
pub fn local_source(name: &str) -> FnSource {
    FnSource::sync(name, |key: &ResourceKey, _ctx| {
        Ok(SourceOutput::new(value_for(key)))
    })
    .inline()
}

/// An inline sync batch source returning [`value_for`] every key it is given.
pub fn local_batch_source(name: &str) -> FnBatchSource {
    FnBatchSource::sync(name, |keys: &[ResourceKey], _ctx| {
        Ok(keys
            .iter()
            .map(|key| (key.clone(), SourceOutput::new(value_for(key))))
            .collect())
    })
    .inline()
}

/// Asserts that a snapshot resolved exactly `expected` keys.
///
/// # Panics
///
/// When it did not: a benchmark of a failing build measures nothing.
pub fn check_complete(snapshot: &Snapshot, expected: usize) {
    assert!(snapshot.is_complete(), "benchmark build failed");
    assert_eq!(snapshot.len(), expected, "benchmark build lost keys");
}

/// `hot-cache-200`: 200 keys, all fresh in the builder's memory cache.
pub struct HotCache {
    builder: SnapshotBuilder,
    keys: Vec<ResourceKey>,
}

impl HotCache {
    /// A builder with a one-hour TTL whose cache already holds every key.
    ///
    /// # Panics
    ///
    /// When the builder cannot be created or the warm-up build fails.
    pub async fn new() -> Self {
        let builder = SnapshotBuilder::builder([local_source("local").into()])
            .default_policy(FreshnessPolicy::fresh_for(HOT_TTL))
            .build()
            .expect("hot-cache builder");
        let keys = keys("hot", "K", READ_KEYS);
        let warm = builder.build(keys.clone()).await.expect("warm-up build");
        check_complete(&warm, READ_KEYS);
        Self { builder, keys }
    }

    /// One build of the 200 keys, every one a cache hit.
    ///
    /// # Panics
    ///
    /// When the build fails.
    pub async fn run(&self) -> Snapshot {
        let snapshot = self
            .builder
            .build(self.keys.iter().cloned())
            .await
            .expect("hot-cache build");
        debug_assert_eq!(snapshot.len(), READ_KEYS);
        snapshot
    }

    /// The keys the build asks for.
    pub fn keys(&self) -> &[ResourceKey] {
        &self.keys
    }

    /// The builder (for profiling and checks).
    pub fn builder(&self) -> &SnapshotBuilder {
        &self.builder
    }
}

/// `cold-local-200` (`batch = false`) and `batch-1000` (`batch = true`):
/// every key is fetched from an inline source on every build because the
/// default policy never caches.
pub struct ColdLocal {
    builder: SnapshotBuilder,
    keys: Vec<ResourceKey>,
}

impl ColdLocal {
    /// `cold-local-200`: 200 keys from one inline single-key source.
    ///
    /// # Panics
    ///
    /// When the builder cannot be created.
    pub fn single() -> Self {
        let builder = SnapshotBuilder::builder([local_source("local").into()])
            .default_policy(FreshnessPolicy::no_cache())
            .build()
            .expect("cold-local builder");
        Self {
            builder,
            keys: keys("cold", "K", READ_KEYS),
        }
    }

    /// `batch-1000`: 1,000 keys from one inline batch source.
    ///
    /// # Panics
    ///
    /// When the builder cannot be created.
    pub fn batch() -> Self {
        let builder = SnapshotBuilder::builder([local_batch_source("batch").into()])
            .default_policy(FreshnessPolicy::no_cache())
            .build()
            .expect("batch builder");
        Self {
            builder,
            keys: keys("batch", "K", BATCH_KEYS),
        }
    }

    /// One build of every key.
    ///
    /// # Panics
    ///
    /// When the build fails.
    pub async fn run(&self) -> Snapshot {
        let snapshot = self
            .builder
            .build(self.keys.iter().cloned())
            .await
            .expect("cold build");
        debug_assert_eq!(snapshot.len(), self.keys.len());
        snapshot
    }

    /// The number of keys per build.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the workload has no keys (never).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
