//! The hand-written baseline of `hot-cache-200`: what any engine must do at
//! minimum to serve 200 warm keys, written directly against moka.
//!
//! Per build: read the clock once; per key: one moka `get`, one freshness
//! check of the entry's age against the TTL, one insert into the snapshot's
//! hash map (a [`KeyMap`], which reuses the key's own hash, as snapshots do). The moka cache is configured like
//! [`coalestra::MemoryCache::new`] (LRU, 10,000 entries, keys hashed once) and
//! stores the same
//! [`SnapshotValue`]s, so the ratio of the two measures the engine's own
//! overhead only.

use std::sync::Arc;
use std::time::Duration;

use coalestra::key::KeyHashing;
use coalestra::value::ValueParts;
use coalestra::{Clock, KeyMap, Payload, ResourceKey, SnapshotValue, SystemClock};
use moka::policy::EvictionPolicy;

use crate::read_path::{HOT_TTL, READ_KEYS};
use crate::{keys, value_for};

/// The moka cache of the baseline, with the same keys and values as
/// [`HotCache`](crate::read_path::HotCache).
pub struct Baseline {
    cache: moka::sync::Cache<ResourceKey, Arc<SnapshotValue>, KeyHashing>,
    keys: Vec<ResourceKey>,
    ttl: Duration,
}

impl Default for Baseline {
    fn default() -> Self {
        Self::new()
    }
}

impl Baseline {
    /// A warm cache holding the 200 keys of `hot-cache-200`.
    pub fn new() -> Self {
        let cache = moka::sync::Cache::builder()
            .eviction_policy(EvictionPolicy::lru())
            .max_capacity(10_000)
            .build_with_hasher(KeyHashing::default());
        let keys = keys("hot", "K", READ_KEYS);
        let now = SystemClock.now();
        for key in &keys {
            let parts = ValueParts::new(key.clone(), Payload::new(value_for(key)), "local", now);
            cache.insert(key.clone(), Arc::new(SnapshotValue::from_parts(parts)));
        }
        Self {
            cache,
            keys,
            ttl: HOT_TTL,
        }
    }

    /// One "build": every key read from moka, checked for freshness and
    /// inserted into the snapshot map.
    ///
    /// # Panics
    ///
    /// When a key is missing or stale (the cache is warm for an hour).
    pub fn run(&self) -> KeyMap<Arc<SnapshotValue>> {
        let now = SystemClock.now();
        let mut snapshot = KeyMap::with_capacity_and_hasher(self.keys.len(), KeyHashing::default());
        for key in &self.keys {
            let entry = self.cache.get(key).expect("baseline key is cached");
            assert!(entry.age_at(now) <= self.ttl, "baseline entry went stale");
            snapshot.insert(key.clone(), entry);
        }
        snapshot
    }
}
