//! [`MemoryCache`]: the in-process cache tier, stored in moka.
//!
//! Moka only stores entries and evicts the least recently used one when the
//! size bound is reached. Whether an entry may be served is decided here, from
//! the `now` each read passes in and the entry's `observed_at`, so a test
//! clock (or any other clock) is followed exactly.

mod counters;
mod dependencies;
mod locks;
mod slot;
mod write;

use std::fmt;
use std::num::NonZeroU64;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coalestra_core::key::KeyHashing;
use coalestra_core::{
    CacheError, CacheHit, CacheLookup, CacheRead, CacheStats, CacheWrite, Freshness,
    PolicyResolver, ResourceKey, SnapshotCache, SnapshotValue, Timestamp, WriteResult,
};
use moka::notification::RemovalCause;
use moka::ops::compute::Op;
use moka::policy::EvictionPolicy;

use self::counters::Counters;
use self::locks::KeyLocks;
use self::slot::Slot;

/// The moka store behind a [`MemoryCache`].
///
/// Keys carry a hash computed once at construction; the store passes it
/// through instead of hashing every lookup again.
pub(crate) type Store = moka::sync::Cache<ResourceKey, Arc<Slot>, KeyHashing>;

/// How a [`MemoryCache`] is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryCacheConfig {
    /// The most entries kept; the least recently used entry is evicted beyond
    /// it. `None` keeps every entry until it is invalidated, pruned or read
    /// after its stale window.
    pub max_entries: Option<NonZeroU64>,
}

impl MemoryCacheConfig {
    /// The bound used by [`MemoryCache::new`].
    pub const DEFAULT_MAX_ENTRIES: NonZeroU64 = match NonZeroU64::new(10_000) {
        Some(bound) => bound,
        None => NonZeroU64::MIN,
    };

    /// A configuration keeping at most `max_entries` entries.
    pub fn bounded(max_entries: NonZeroU64) -> Self {
        Self {
            max_entries: Some(max_entries),
        }
    }

    /// A configuration without a size bound.
    pub fn unbounded() -> Self {
        Self { max_entries: None }
    }
}

impl Default for MemoryCacheConfig {
    /// Bounded at [`MemoryCacheConfig::DEFAULT_MAX_ENTRIES`] entries.
    fn default() -> Self {
        Self::bounded(Self::DEFAULT_MAX_ENTRIES)
    }
}

/// An in-process [`SnapshotCache`] with least-recently-used eviction and
/// atomic, authority-aware writes.
///
/// - Reads classify each entry with the reader's [`FreshnessPolicy`] from
///   the `now` they pass in; an entry past its stale window is removed and
///   reported as a miss.
/// - Writes are decided per key by [`WriteOutcome::decide`] inside one atomic
///   compare-and-store, so concurrent writers never leave a losing revision
///   stored.
/// - A derived entry is served only while every dependency it records is
///   still stored with the recorded version (checked transitively).
///
/// - In a bounded cache, a write that adds an entry applies moka's pending
///   maintenance before returning whenever the entries added since the last
///   pass could reach the bound (and at least every 64 of them), so eviction
///   follows recency exactly; [`SnapshotCache::stats`] applies it too and
///   reports exact sizes. A write replacing a stored revision replaces it in
///   place and adds no entry.
///
/// Clones share one store and one set of counters.
///
/// [`FreshnessPolicy`]: coalestra_core::FreshnessPolicy
/// [`WriteOutcome::decide`]: coalestra_core::WriteOutcome::decide
///
/// # Examples
///
/// ```
/// use std::time::Duration;
///
/// use coalestra_cache::MemoryCache;
/// use coalestra_core::value::ValueParts;
/// use coalestra_core::{
///     CacheWrite, Freshness, FreshnessPolicy, Payload, ResourceKey, SnapshotCache,
///     SnapshotValue, Timestamp,
/// };
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let cache = MemoryCache::new();
///     let key = ResourceKey::new("market", "price", "BTCUSDT")?;
///     let value = SnapshotValue::from_parts(ValueParts::new(
///         key.clone(),
///         Payload::new(64_250.5_f64),
///         "exchange",
///         Timestamp::from_secs(100.0),
///     ));
///     let written = cache.write(CacheWrite::new(value)).await?;
///     assert!(written.outcome.is_stored());
///
///     let policy = FreshnessPolicy::new(Duration::from_secs(5), Duration::from_secs(20))?;
///     let hit = cache
///         .get(&key, policy, Timestamp::from_secs(110.0))
///         .await?
///         .expect("still inside the stale window");
///     assert_eq!(hit.freshness, Freshness::StaleUsable);
///     assert_eq!(*hit.value.value::<f64>()?, 64_250.5);
///     assert!(hit.value.is_from_cache());
///
///     // Past max_stale the entry is gone.
///     let later = cache.get(&key, policy, Timestamp::from_secs(121.0)).await?;
///     assert!(later.is_none());
///     assert_eq!(cache.stats().expirations, 1);
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct MemoryCache {
    store: Store,
    /// Serializes each key's conditional writes and removals.
    locks: Arc<KeyLocks>,
    counters: Arc<Counters>,
    max_entries: Option<NonZeroU64>,
    /// Stored writes since the last maintenance pass.
    unsettled: Arc<std::sync::atomic::AtomicU64>,
}

impl MemoryCache {
    /// A cache bounded at [`MemoryCacheConfig::DEFAULT_MAX_ENTRIES`] entries.
    pub fn new() -> Self {
        Self::with_config(MemoryCacheConfig::default())
    }

    /// A cache bounded at `max_entries` entries.
    pub fn with_capacity(max_entries: NonZeroU64) -> Self {
        Self::with_config(MemoryCacheConfig::bounded(max_entries))
    }

    /// A cache without a size bound.
    pub fn unbounded() -> Self {
        Self::with_config(MemoryCacheConfig::unbounded())
    }

    /// A cache sized by `config`.
    pub fn with_config(config: MemoryCacheConfig) -> Self {
        let counters = Arc::new(Counters::default());
        let mut builder = moka::sync::Cache::builder().eviction_policy(EvictionPolicy::lru());
        // Only a bounded cache evicts, and only evictions need the listener:
        // with one, moka also locks each key around every insert and removal.
        if let Some(bound) = config.max_entries {
            let listener_counters = Arc::clone(&counters);
            builder =
                builder
                    .max_capacity(bound.get())
                    .eviction_listener(move |_key, _value, cause| {
                        if cause == RemovalCause::Size {
                            listener_counters.evicted();
                        }
                    });
        }
        Self {
            store: builder.build_with_hasher(KeyHashing::default()),
            locks: Arc::new(KeyLocks::new()),
            counters,
            max_entries: config.max_entries,
            unsettled: Arc::default(),
        }
    }

    /// The size bound, if any.
    pub fn max_entries(&self) -> Option<NonZeroU64> {
        self.max_entries
    }

    /// The number of entries stored, after pending evictions are applied.
    pub fn len(&self) -> u64 {
        self.settle();
        self.store.entry_count()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The revision stored for `key`, as it was written, whatever its age.
    ///
    /// Unlike a read through [`SnapshotCache::get_many`] this neither judges
    /// freshness nor counts a hit or a miss; it still marks the entry as
    /// recently used.
    pub fn peek(&self, key: &ResourceKey) -> Option<SnapshotValue> {
        self.store.get(key).map(|slot| slot.value())
    }

    /// Every stored key, in no particular order.
    pub fn keys(&self) -> Vec<ResourceKey> {
        self.store.iter().map(|(key, _)| (*key).clone()).collect()
    }

    /// Removes every entry whose key matches `predicate`; returns the removed
    /// keys. Each removal counts as an invalidation.
    pub fn invalidate_matching(
        &self,
        mut predicate: impl FnMut(&ResourceKey) -> bool,
    ) -> Vec<ResourceKey> {
        let candidates: Vec<ResourceKey> = self
            .store
            .iter()
            .filter(|(key, _)| predicate(key))
            .map(|(key, _)| (*key).clone())
            .collect();
        self.remove_keys(candidates)
    }

    /// Removes every entry of one resource type (`namespace`, `name`);
    /// returns the removed keys.
    pub fn invalidate_resource_type(&self, namespace: &str, name: &str) -> Vec<ResourceKey> {
        self.invalidate_matching(|key| key.namespace() == namespace && key.name() == name)
    }

    /// Removes every entry older than the stale window its key's policy
    /// allows at `now`; returns the removed keys. Each removal counts as an
    /// expiration.
    pub fn prune(&self, now: Timestamp, policies: &PolicyResolver) -> Vec<ResourceKey> {
        let expired: Vec<(ResourceKey, Arc<Slot>, u64)> = self
            .store
            .iter()
            .filter_map(|(key, slot)| {
                let max_stale = policies.resolve(&key).max_stale();
                let revision = slot.revision();
                (revision.value.age_at(now) > max_stale)
                    .then(|| ((*key).clone(), slot, revision.generation))
            })
            .collect();
        let mut removed = Vec::with_capacity(expired.len());
        for (key, slot, generation) in expired {
            if self.remove_if_current(&key, &slot, generation) {
                removed.push(key);
            }
        }
        self.counters.expired(removed.len() as u64);
        removed
    }

    /// Removes every entry; returns how many were removed. Each removal counts
    /// as an invalidation.
    pub fn invalidate_all(&self) -> u64 {
        self.invalidate_matching(|_| true).len() as u64
    }

    /// Applies moka's pending maintenance (recency updates and size-bound
    /// evictions) so that sizes and eviction counts are exact.
    pub fn run_pending_tasks(&self) {
        self.settle();
    }

    /// Runs maintenance when the writes since the last pass could have
    /// reached the bound, and at least every 64 writes otherwise: small
    /// caches stay exact, large ones do not pay a pass per write.
    fn settle_if_near_bound(&self, written: u64) {
        use std::sync::atomic::Ordering;
        let Some(bound) = self.max_entries else {
            return;
        };
        let pending = self.unsettled.fetch_add(written, Ordering::Relaxed) + written;
        if pending >= 64 || self.store.entry_count() + pending >= bound.get() {
            self.settle();
        }
    }

    fn settle(&self) {
        self.unsettled
            .store(0, std::sync::atomic::Ordering::Relaxed);
        self.store.run_pending_tasks();
        let Some(bound) = self.max_entries else {
            return;
        };
        // One maintenance pass evicts a bounded batch; a burst of writes may
        // need a few more passes to get back under the bound.
        for _ in 0..64 {
            if self.store.entry_count() <= bound.get() {
                break;
            }
            self.store.run_pending_tasks();
        }
    }

    fn remove_keys(&self, keys: Vec<ResourceKey>) -> Vec<ResourceKey> {
        let removed: Vec<ResourceKey> = keys
            .into_iter()
            .filter(|key| {
                let _guard = self.locks.lock(key);
                self.store.remove(key).is_some()
            })
            .collect();
        self.counters.invalidated(removed.len() as u64);
        removed
    }

    /// Removes `key` only while revision `generation` of `slot` is still its
    /// stored revision, so a revision written concurrently is never removed
    /// by mistake.
    fn remove_if_current(&self, key: &ResourceKey, slot: &Arc<Slot>, generation: u64) -> bool {
        // Revisions are replaced only under the key's lock, so the slot's
        // generation cannot move while it is held.
        let _guard = self.locks.lock(key);
        if slot.generation() != generation {
            return false;
        }
        let result = self
            .store
            .entry_by_ref(key)
            .and_compute_with(|existing| match existing {
                Some(current) if Arc::ptr_eq(current.value(), slot) => Op::Remove,
                _ => Op::Nop,
            });
        matches!(result, moka::ops::compute::CompResult::Removed(_))
    }

    /// One conditional write, then the size bound when it stored.
    fn write_one(&self, write: CacheWrite) -> WriteResult {
        let applied = write::apply_one(&self.store, &self.locks, &self.counters, write);
        // Only a new entry can take the cache over its bound; a replaced
        // revision stays in its entry.
        if applied.inserted {
            self.settle_if_near_bound(1);
        }
        applied.result
    }

    /// Reads a batch; hit counters are added once per batch, not per key.
    fn read_all<'a>(
        &self,
        lookups: impl ExactSizeIterator<Item = CacheLookup<'a>>,
        now: Timestamp,
    ) -> Vec<Option<CacheHit>> {
        let hits: Vec<Option<CacheHit>> = lookups.map(|l| self.read_one(l, now)).collect();
        let (mut fresh, mut stale, mut missed) = (0, 0, 0);
        for hit in &hits {
            match hit {
                Some(h) if h.freshness.is_fresh() => fresh += 1,
                Some(_) => stale += 1,
                None => missed += 1,
            }
        }
        self.counters.record_reads(fresh, stale, missed);
        hits
    }

    fn read_one(&self, read: CacheLookup<'_>, now: Timestamp) -> Option<CacheHit> {
        let slot = self.store.get(read.key)?;
        let hit = |value: &SnapshotValue, age: Duration, freshness: Freshness| CacheHit {
            value: value.as_cached(now, freshness == Freshness::StaleUsable),
            freshness,
            age,
        };
        // The common case, a usable revision without recorded dependencies,
        // is answered under the slot's read lock without copying it out.
        let (stored, age, freshness) = match slot.with(|stored| {
            let age: Duration = stored.value.age_at(now);
            let freshness = read.policy.classify(age);
            if freshness.is_usable() && stored.value.dependency_versions().is_empty() {
                Ok(hit(&stored.value, age, freshness))
            } else {
                Err((stored.clone(), age, freshness))
            }
        }) {
            Ok(hit) => return Some(hit),
            Err(judged) => judged,
        };
        if !freshness.is_usable() {
            if self.remove_if_current(read.key, &slot, stored.generation) {
                self.counters.expired(1);
            }
            return None;
        }
        if !dependencies::dependencies_hold(&self.store, &stored.value) {
            if self.remove_if_current(read.key, &slot, stored.generation) {
                self.counters.invalidated(1);
            }
            return None;
        }
        Some(hit(&stored.value, age, freshness))
    }
}

impl Default for MemoryCache {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryCache")
            .field("max_entries", &self.max_entries)
            .field("entries", &self.store.entry_count())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SnapshotCache for MemoryCache {
    async fn get_many(
        &self,
        reads: &[CacheRead],
        now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        Ok(self.read_all(reads.iter().map(CacheLookup::from), now))
    }

    async fn lookup_many(
        &self,
        lookups: &[CacheLookup<'_>],
        now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        Ok(self.read_all(lookups.iter().copied(), now))
    }

    async fn write_many(
        &self,
        mut writes: Vec<CacheWrite>,
    ) -> Result<Vec<WriteResult>, CacheError> {
        if writes.len() <= 1 {
            return Ok(writes
                .pop()
                .map(|w| self.write_one(w))
                .into_iter()
                .collect());
        }
        let (results, inserted) =
            write::apply_batch(&self.store, &self.locks, &self.counters, writes);
        // Applying the size bound right away keeps eviction strictly least
        // recently used (reads are folded in before the new entries) and the
        // size exact; a batch that added no entry added nothing to evict.
        if inserted > 0 {
            self.settle_if_near_bound(inserted);
        }
        Ok(results)
    }

    async fn write(&self, write: CacheWrite) -> Result<WriteResult, CacheError> {
        Ok(self.write_one(write))
    }

    async fn invalidate_many(&self, keys: &[ResourceKey]) -> Result<Vec<ResourceKey>, CacheError> {
        Ok(self.remove_keys(keys.to_vec()))
    }

    async fn invalidate_namespace(&self, namespace: &str) -> Result<Vec<ResourceKey>, CacheError> {
        Ok(self.invalidate_matching(|key| key.namespace() == namespace))
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        Ok(self.invalidate_all())
    }

    fn stats(&self) -> CacheStats {
        self.settle();
        self.counters.snapshot(
            self.store.entry_count(),
            self.max_entries.map(NonZeroU64::get),
        )
    }

    fn validates_dependency_versions(&self) -> bool {
        true
    }
}
