//! [`TieredCache`]: a moka L1 in front of the shared Redis L2, kept in step
//! with the other replicas through Redis pub/sub.

mod epoch;
mod subscriber;

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use coalestra_cache::MemoryCache;
use coalestra_core::{
    CacheError, CacheHit, CacheLookup, CacheRead, CacheStats, CacheWrite, ResourceKey,
    SnapshotCache, SnapshotValue, Timestamp, WriteResult,
};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use self::epoch::{EpochTable, Stamp};
use crate::config::{RedisCacheError, TieredCacheConfig};
use crate::remote::RedisCache;
use crate::stats::{bump, load, Counters, TieredStats};

/// Tiered counters beyond the core ones.
#[derive(Debug, Default)]
pub(crate) struct TierCounters {
    pub(crate) core: Counters,
    pub(crate) l1_hits: AtomicU64,
    pub(crate) l2_hits: AtomicU64,
    pub(crate) l2_fallbacks: AtomicU64,
    pub(crate) local_only: AtomicU64,
    pub(crate) notifications: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) flushes: AtomicU64,
}

/// Everything the cache handle and its subscriber task share.
pub(crate) struct Shared {
    pub(crate) l1: MemoryCache,
    pub(crate) l2: RedisCache,
    pub(crate) epochs: EpochTable,
    pub(crate) pubsub_connected: AtomicBool,
    /// Set by `close`: shared keys then bypass L1.
    pub(crate) closed: AtomicBool,
    pub(crate) counters: TierCounters,
    /// Woken whenever a notification is handled or the subscription state
    /// changes.
    pub(crate) changed: Notify,
    pub(crate) config: TieredCacheConfig,
}

impl Shared {
    /// Drops every L1 entry (after bumping every epoch).
    pub(crate) fn flush_l1(&self) -> u64 {
        self.epochs.bump_all();
        self.l1.invalidate_all()
    }

    /// Fills L1 with L2's revisions, following the epoch protocol.
    async fn fill(&self, fills: Vec<(SnapshotValue, Stamp)>) {
        if self.closed.load(Ordering::SeqCst) {
            return;
        }
        let fills: Vec<(SnapshotValue, Stamp)> = fills
            .into_iter()
            .filter(|(_, stamp)| self.epochs.unchanged(*stamp))
            .collect();
        if fills.is_empty() {
            return;
        }
        let writes: Vec<CacheWrite> = fills
            .iter()
            .map(|(value, _)| CacheWrite {
                value: value.clone(),
                force: true,
                replace_equal: true,
            })
            .collect();
        let _ = self.l1.write_many(writes).await;
        let changed: Vec<ResourceKey> = fills
            .iter()
            .filter(|(_, stamp)| !self.epochs.unchanged(*stamp))
            .map(|(value, _)| value.key().clone())
            .collect();
        if !changed.is_empty() {
            let _ = self.l1.invalidate_many(&changed).await;
        }
    }

    fn fallback(&self, error: &CacheError) {
        bump(&self.counters.l2_fallbacks, 1);
        tracing::debug!(target: "coalestra", %error, "redis tier unavailable; serving the local tier");
    }
}

/// A two-tier [`SnapshotCache`]: a moka [`MemoryCache`] (L1) in front of a
/// [`RedisCache`] (L2) shared by every replica.
///
/// - Reads hit L1 first; L1 misses are read from L2 in one batch and copied
///   into L1.
/// - Writes go through L2's write script, then L1 is updated with the winner
///   the script chose. Winning writes and invalidations are announced on the
///   L2 channel; the other replicas drop their L1 entry, so their next read
///   gets the new revision from L2.
/// - Values without a codec live in L1 only.
/// - While notifications cannot be received, L1 is emptied every
///   [`TieredCacheConfig::degraded_l1_ttl`], since other replicas' changes
///   would go unnoticed; L1 is emptied again once the subscription is back.
/// - While L2 is unavailable (its circuit is open, or calls fail), reads and
///   writes are served by L1 alone and [`TieredStats::degraded`] is set; the
///   cache recovers by itself when Redis is back.
///
/// The subscriber task is owned by the cache: [`TieredCache::close`] stops
/// and joins it (dropping the cache also stops it). Give each tiered cache
/// its own [`RedisCache`]: notifications from the same L2 instance are
/// treated as one's own and ignored.
pub struct TieredCache {
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    subscriber: Mutex<Option<JoinHandle<()>>>,
}

impl TieredCache {
    /// A tiered cache over `l2`; spawns the subscriber on the current tokio
    /// runtime.
    ///
    /// # Errors
    /// Returns [`RedisCacheError::NoRuntime`] outside a tokio runtime and
    /// [`RedisCacheError::Invalid`] for an out-of-range setting.
    pub fn new(l2: RedisCache, config: TieredCacheConfig) -> Result<Self, RedisCacheError> {
        config.validate()?;
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| RedisCacheError::NoRuntime)?;
        let shared = Arc::new(Shared {
            l1: MemoryCache::with_config(config.l1),
            l2,
            epochs: EpochTable::new(),
            pubsub_connected: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            counters: TierCounters::default(),
            changed: Notify::new(),
            config,
        });
        let (stop, stopped) = watch::channel(false);
        let task = runtime.spawn(subscriber::run(Arc::clone(&shared), stopped));
        Ok(Self {
            shared,
            stop,
            subscriber: Mutex::new(Some(task)),
        })
    }

    /// The L1 tier.
    pub fn l1(&self) -> &MemoryCache {
        &self.shared.l1
    }

    /// The L2 tier.
    pub fn l2(&self) -> &RedisCache {
        &self.shared.l2
    }

    /// Whether notifications from other replicas are being received.
    pub fn is_subscribed(&self) -> bool {
        self.shared.pubsub_connected.load(Ordering::SeqCst)
    }

    /// Whether L2 is unavailable or notifications are not received.
    pub fn is_degraded(&self) -> bool {
        !self.shared.l2.is_available() || !self.is_subscribed()
    }

    /// Waits until the notification subscription is live; `false` after
    /// `timeout`.
    pub async fn wait_for_subscription(&self, timeout: Duration) -> bool {
        self.wait_until(timeout, || self.is_subscribed()).await
    }

    /// Waits until at least `count` notifications from other replicas have
    /// been handled; `false` after `timeout`.
    pub async fn wait_for_notifications(&self, count: u64, timeout: Duration) -> bool {
        self.wait_until(timeout, || {
            load(&self.shared.counters.notifications) >= count
        })
        .await
    }

    async fn wait_until(&self, timeout: Duration, done: impl Fn() -> bool) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let changed = self.shared.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if done() {
                return true;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return done();
            }
        }
    }

    /// Stops and joins the subscriber task. Idempotent. The cache keeps
    /// working afterwards, but without notifications L1 cannot be trusted
    /// for shared keys: they are read from L2 directly and no longer kept in
    /// L1.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        let task = self
            .subscriber
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let _ = task.await;
        }
        self.shared.pubsub_connected.store(false, Ordering::SeqCst);
        self.shared.flush_l1();
    }

    /// Counters and state of both tiers.
    pub fn tiered_stats(&self) -> TieredStats {
        let shared = &self.shared;
        let l1 = shared.l1.stats();
        let l2 = shared.l2.redis_stats();
        let counters = &shared.counters;
        let mut cache = counters.core.merged_into(CacheStats::default());
        cache.size = l1.size;
        cache.max_entries = l1.max_entries;
        cache.evictions = l1.evictions;
        cache.expirations = l1.expirations + l2.cache.expirations;
        let pubsub_connected = self.is_subscribed();
        cache.degraded = !l2.available || !pubsub_connected;
        TieredStats {
            cache,
            l1,
            l2_available: l2.available,
            degraded: !l2.available || !pubsub_connected,
            l2,
            l1_hits: load(&counters.l1_hits),
            l2_hits: load(&counters.l2_hits),
            l2_fallbacks: load(&counters.l2_fallbacks),
            local_only_writes: load(&counters.local_only),
            pubsub_connected,
            notifications_received: load(&counters.notifications),
            l1_entries_dropped: load(&counters.dropped),
            degraded_l1_flushes: load(&counters.flushes),
        }
    }
}

impl fmt::Debug for TieredCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TieredCache")
            .field("l1", &self.shared.l1)
            .field("l2", &self.shared.l2)
            .field("subscribed", &self.is_subscribed())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SnapshotCache for TieredCache {
    async fn get_many(
        &self,
        reads: &[CacheRead],
        now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        let lookups: Vec<CacheLookup<'_>> = reads.iter().map(CacheLookup::from).collect();
        self.lookup_many(&lookups, now).await
    }

    // The local tier reads borrowed keys; only keys going to Redis are copied.
    async fn lookup_many(
        &self,
        reads: &[CacheLookup<'_>],
        now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        let shared = &self.shared;
        let counters = &shared.counters;
        let mut out = if shared.closed.load(Ordering::SeqCst) {
            // Only local-only keys are still kept in L1.
            let mut out: Vec<Option<CacheHit>> = vec![None; reads.len()];
            let local: Vec<usize> = (0..reads.len())
                .filter(|&i| !shared.l2.is_shared(reads[i].key))
                .collect();
            let local_reads: Vec<CacheLookup<'_>> = local.iter().map(|&i| reads[i]).collect();
            for (&i, hit) in local
                .iter()
                .zip(shared.l1.lookup_many(&local_reads, now).await?)
            {
                out[i] = hit;
            }
            out
        } else {
            shared.l1.lookup_many(reads, now).await?
        };
        let mut missing: Vec<usize> = Vec::new();
        for (i, hit) in out.iter().enumerate() {
            match hit {
                Some(hit) => {
                    bump(&counters.l1_hits, 1);
                    counters.core.hit(hit.freshness);
                }
                None if shared.l2.is_shared(reads[i].key) => missing.push(i),
                None => counters.core.miss(),
            }
        }
        if missing.is_empty() {
            return Ok(out);
        }
        let stamps: Vec<Stamp> = missing
            .iter()
            .map(|&i| shared.epochs.stamp(reads[i].key))
            .collect();
        let l2_reads: Vec<CacheRead> = missing.iter().map(|&i| reads[i].into()).collect();
        let hits = match shared.l2.get_many(&l2_reads, now).await {
            Ok(hits) => hits,
            Err(error) => {
                shared.fallback(&error);
                for _ in &missing {
                    counters.core.miss();
                }
                return Ok(out);
            }
        };
        let mut fills = Vec::new();
        for ((&i, hit), stamp) in missing.iter().zip(hits).zip(stamps) {
            match hit {
                Some(hit) => {
                    bump(&counters.l2_hits, 1);
                    counters.core.hit(hit.freshness);
                    fills.push((hit.value.clone(), stamp));
                    out[i] = Some(hit);
                }
                None => counters.core.miss(),
            }
        }
        if !fills.is_empty() {
            shared.fill(fills).await;
        }
        Ok(out)
    }

    async fn write_many(&self, writes: Vec<CacheWrite>) -> Result<Vec<WriteResult>, CacheError> {
        let shared = &self.shared;
        let mut results: Vec<Option<WriteResult>> = vec![None; writes.len()];
        let (local, remote): (Vec<usize>, Vec<usize>) =
            (0..writes.len()).partition(|&i| !shared.l2.is_shared(writes[i].value.key()));
        bump(&shared.counters.local_only, local.len() as u64);
        let mut l1_only: Vec<usize> = local;
        if !remote.is_empty() {
            let keys: Vec<ResourceKey> = remote
                .iter()
                .map(|&i| writes[i].value.key().clone())
                .collect();
            for key in &keys {
                shared.epochs.bump(key);
            }
            let remote_writes: Vec<CacheWrite> =
                remote.iter().map(|&i| writes[i].clone()).collect();
            match shared.l2.write_many(remote_writes).await {
                Ok(remote_results) => {
                    // Every result of a key names the same final revision.
                    // Bump every key first, then stamp: keys sharing an
                    // epoch slot must not void each other's fill.
                    let mut finals = Vec::new();
                    let mut seen = HashSet::new();
                    for (&i, result) in remote.iter().zip(remote_results) {
                        if seen.insert(writes[i].value.key().clone()) {
                            shared.epochs.bump(writes[i].value.key());
                            finals.push(result.current.clone());
                        }
                        results[i] = Some(result);
                    }
                    let fills = finals
                        .into_iter()
                        .map(|value| {
                            let stamp = shared.epochs.stamp(value.key());
                            (value, stamp)
                        })
                        .collect();
                    shared.fill(fills).await;
                }
                Err(CacheError::Unavailable(reason)) => {
                    shared.fallback(&CacheError::Unavailable(reason));
                    l1_only.extend(remote);
                }
                Err(error) => {
                    let _ = shared.l1.invalidate_many(&keys).await;
                    return Err(error);
                }
            }
        }
        if !l1_only.is_empty() {
            l1_only.sort_unstable();
            let l1_writes: Vec<CacheWrite> = l1_only.iter().map(|&i| writes[i].clone()).collect();
            let l1_results = shared.l1.write_many(l1_writes).await?;
            for (&i, result) in l1_only.iter().zip(l1_results) {
                results[i] = Some(result);
            }
        }
        let results: Vec<WriteResult> = results.into_iter().flatten().collect();
        for result in &results {
            shared.counters.core.write(result.outcome);
        }
        Ok(results)
    }

    async fn invalidate_many(&self, keys: &[ResourceKey]) -> Result<Vec<ResourceKey>, CacheError> {
        let shared = &self.shared;
        for key in keys {
            shared.epochs.bump(key);
        }
        let remote: Vec<ResourceKey> = keys
            .iter()
            .filter(|key| shared.l2.is_shared(key))
            .cloned()
            .collect();
        let mut removed: HashSet<ResourceKey> = HashSet::new();
        if !remote.is_empty() {
            match shared.l2.invalidate_many(&remote).await {
                Ok(keys) => removed.extend(keys),
                Err(error) => shared.fallback(&error),
            }
        }
        removed.extend(shared.l1.invalidate_many(keys).await?);
        let removed: Vec<ResourceKey> = keys
            .iter()
            .filter(|key| removed.remove(*key))
            .cloned()
            .collect();
        bump(&shared.counters.core.invalidations, removed.len() as u64);
        Ok(removed)
    }

    async fn invalidate_namespace(&self, namespace: &str) -> Result<Vec<ResourceKey>, CacheError> {
        let shared = &self.shared;
        shared.epochs.bump_all();
        let mut removed: Vec<ResourceKey> = Vec::new();
        match shared.l2.invalidate_namespace(namespace).await {
            Ok(keys) => removed.extend(keys),
            Err(error) => shared.fallback(&error),
        }
        let mut seen: HashSet<ResourceKey> = removed.iter().cloned().collect();
        for key in shared.l1.invalidate_namespace(namespace).await? {
            if seen.insert(key.clone()) {
                removed.push(key);
            }
        }
        bump(&shared.counters.core.invalidations, removed.len() as u64);
        Ok(removed)
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        let shared = &self.shared;
        shared.epochs.bump_all();
        let removed = match shared.l2.clear().await {
            Ok(remote) => {
                // L1 copies of shared entries were counted in L2 already.
                let l2 = &shared.l2;
                let local_only = shared.l1.invalidate_matching(|key| !l2.is_shared(key));
                shared.l1.invalidate_all();
                remote + local_only.len() as u64
            }
            Err(error) => {
                shared.fallback(&error);
                shared.l1.invalidate_all()
            }
        };
        bump(&shared.counters.core.invalidations, removed);
        Ok(removed)
    }

    fn stats(&self) -> CacheStats {
        self.tiered_stats().cache
    }

    fn validates_dependency_versions(&self) -> bool {
        true
    }
}
