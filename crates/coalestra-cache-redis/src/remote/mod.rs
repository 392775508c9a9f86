//! [`RedisCache`]: the shared cache tier, stored in Redis.

mod read;
mod write;

use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use coalestra_cache::MemoryCache;
use coalestra_core::{
    CacheError, CacheHit, CacheRead, CacheStats, CacheWrite, Event, EventSink, PolicyResolver,
    ResourceKey, SnapshotCache, Timestamp, WriteResult,
};
use redis::Client;

use crate::codec::{CodecError, CodecRegistry};
use crate::config::{RedisCacheConfig, RedisCacheError};
use crate::link::Link;
use crate::scripts::scripts;
use crate::stats::{bump, load, Counters, RedisStats};

/// Where a cache's keys live: `<prefix>:v:<key>` for revisions,
/// `<prefix>:ns:<namespace>` for namespace key sets, `<prefix>:namespaces`
/// for the namespace index and `<prefix>:invalidate` for notifications.
#[derive(Debug, Clone)]
pub(crate) struct KeySpace {
    data_prefix: String,
    set_prefix: String,
    index: String,
    channel: String,
}

impl KeySpace {
    fn new(prefix: &str) -> Self {
        Self {
            data_prefix: format!("{prefix}:v:"),
            set_prefix: format!("{prefix}:ns:"),
            index: format!("{prefix}:namespaces"),
            channel: format!("{prefix}:invalidate"),
        }
    }

    pub(crate) fn data(&self, key: &ResourceKey) -> String {
        format!("{}{key}", self.data_prefix)
    }

    pub(crate) fn set(&self, namespace: &str) -> String {
        format!("{}{namespace}", self.set_prefix)
    }

    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }
}

/// Everything shared by the clones of one cache.
pub(crate) struct Inner {
    pub(crate) link: Link,
    pub(crate) keys: KeySpace,
    pub(crate) policies: PolicyResolver,
    pub(crate) codecs: CodecRegistry,
    pub(crate) local: MemoryCache,
    pub(crate) counters: Counters,
    pub(crate) events: Arc<dyn EventSink>,
    /// The channel scripts publish on (empty: no announcements).
    pub(crate) publish_channel: String,
    pub(crate) instance_id: Arc<str>,
}

impl Inner {
    /// Records a record that could not be decoded: a counter, an error event
    /// and a log line.
    pub(crate) fn decode_failed(&self, key: &ResourceKey, error: &CodecError) {
        bump(&self.counters.decode_failures, 1);
        tracing::warn!(target: "coalestra", resource = %key, %error, "cached record could not be decoded");
        if self.events.enabled() {
            self.events.emit(
                Event::new("cache_decode_failed")
                    .field("resource", key.to_string())
                    .field("tier", "redis")
                    .field("error", error.to_string()),
            );
        }
    }

    /// Records a payload that could not be encoded (the value stays local).
    pub(crate) fn encode_failed(&self, key: &ResourceKey, error: &CodecError) {
        bump(&self.counters.encode_failures, 1);
        tracing::warn!(target: "coalestra", resource = %key, %error, "payload could not be encoded; kept local");
        if self.events.enabled() {
            self.events.emit(
                Event::new("cache_encode_failed")
                    .field("resource", key.to_string())
                    .field("tier", "redis")
                    .field("error", error.to_string()),
            );
        }
    }
}

/// A [`SnapshotCache`] shared by every process using the same Redis server
/// and key prefix.
///
/// - Batch reads are one `MGET` (plus one per level of derived dependencies
///   not in the batch); freshness is judged from the `now` each read passes
///   and the stored `observed_at`, with the reader's policy.
/// - Batch writes are one call of one Lua script that decides every candidate
///   exactly like [`WriteOutcome::decide`] (force, authority rank,
///   `observed_at`, `replace_equal`) and stores the winner atomically, so
///   concurrent writers in any number of processes never leave a losing
///   revision stored. The stored entry expires on the server after its
///   `max_stale` (no expiry for an unbounded window).
/// - Derived entries keep their dependency versions; a read drops one whose
///   dependencies changed, in any process.
/// - Each namespace keeps a key set, so namespace invalidation never scans
///   the keyspace.
/// - Payloads are encoded by the [`CodecRegistry`]; a value whose resource
///   type has no codec stays in a process-local store and is counted in
///   [`RedisStats::local_only_writes`]. A record that cannot be decoded is a
///   miss plus a `cache_decode_failed` event.
/// - Every call goes through a circuit breaker and a timeout: while Redis is
///   unreachable, calls fail fast with [`CacheError::Unavailable`].
///
/// Clones share one connection, one local store and one set of counters.
///
/// [`WriteOutcome::decide`]: coalestra_core::WriteOutcome::decide
#[derive(Clone)]
pub struct RedisCache {
    inner: Arc<Inner>,
}

fn instance_id() -> Arc<str> {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.write_u32(std::process::id());
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    format!("{:016x}", hasher.finish()).into()
}

impl RedisCache {
    /// A cache for `config`. No connection is opened until the first call,
    /// so a cache can be created while Redis is down.
    ///
    /// # Errors
    /// Returns [`RedisCacheError::InvalidUrl`] for an unparsable URL and
    /// [`RedisCacheError::Invalid`] for an out-of-range setting.
    pub fn new(config: RedisCacheConfig) -> Result<Self, RedisCacheError> {
        config.validate()?;
        let client = Client::open(config.url.as_str())
            .map_err(|e| RedisCacheError::InvalidUrl(e.to_string()))?;
        let keys = KeySpace::new(&config.key_prefix);
        let publish_channel = if config.publish_invalidations {
            keys.channel().to_owned()
        } else {
            String::new()
        };
        let link = Link::new(
            client,
            config.breakers,
            config.circuit_breaker,
            config.command_timeout,
            config.connect_timeout,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                link,
                keys,
                policies: config.policies,
                codecs: config.codecs,
                local: MemoryCache::with_config(config.local),
                counters: Counters::default(),
                events: config.events,
                publish_channel,
                instance_id: instance_id(),
            }),
        })
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// This cache's identity in notifications (random, per instance).
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// The notification channel (`<prefix>:invalidate`).
    pub fn channel(&self) -> &str {
        self.inner.keys.channel()
    }

    /// The codecs.
    pub fn codecs(&self) -> &CodecRegistry {
        &self.inner.codecs
    }

    /// Whether values of `key`'s resource type are stored in Redis.
    pub fn is_shared(&self, key: &ResourceKey) -> bool {
        self.inner.codecs.is_shared(key)
    }

    /// The Redis key holding `key`'s revision.
    pub fn redis_key(&self, key: &ResourceKey) -> String {
        self.inner.keys.data(key)
    }

    /// The Redis set holding the keys of `namespace`.
    pub fn namespace_set(&self, namespace: &str) -> String {
        self.inner.keys.set(namespace)
    }

    /// Sends `PING` through the breaker.
    ///
    /// # Errors
    /// Returns [`CacheError::Unavailable`] when Redis cannot be reached.
    pub async fn ping(&self) -> Result<(), CacheError> {
        self.inner
            .link
            .run("ping", |mut connection| async move {
                redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .map(drop)
            })
            .await
    }

    /// Whether the last call reached Redis and the circuit is closed.
    pub fn is_available(&self) -> bool {
        self.inner.link.is_available()
    }

    /// Tries to restore availability with a `PING` when the breaker would
    /// let one through; returns whether Redis is available afterwards.
    pub async fn recover(&self) -> bool {
        if self.is_available() {
            return true;
        }
        if !self.inner.link.probe_due() {
            return false;
        }
        self.ping().await.is_ok()
    }

    /// Counters and connection state.
    pub fn redis_stats(&self) -> RedisStats {
        let inner = &self.inner;
        let local = inner.local.stats();
        let local_entries = local.size;
        let link = &inner.link.counters;
        let mut cache = inner.counters.merged_into(local);
        cache.degraded = !inner.link.is_available();
        RedisStats {
            cache,
            local_entries,
            local_only_writes: load(&inner.counters.local_only_writes),
            encode_failures: load(&inner.counters.encode_failures),
            decode_failures: load(&inner.counters.decode_failures),
            unavailable_errors: load(&link.unavailable),
            circuit_rejections: load(&link.rejected),
            connections_opened: load(&link.reconnects),
            available: inner.link.is_available(),
            circuit: inner.link.circuit(),
        }
    }

    /// Splits keys into the local ones (no codec) and the shared ones.
    fn partition(
        &self,
        keys: impl Iterator<Item = ResourceKey>,
    ) -> (Vec<ResourceKey>, Vec<ResourceKey>) {
        keys.partition(|key| !self.inner.codecs.is_shared(key))
    }

    async fn invalidate_remote(&self, keys: &[ResourceKey]) -> Result<Vec<bool>, CacheError> {
        let inner = &self.inner;
        let mut invocation = scripts().invalidate.prepare_invoke();
        invocation
            .arg(inner.publish_channel.as_str())
            .arg(inner.instance_id.as_ref());
        for key in keys {
            invocation
                .key(inner.keys.data(key))
                .key(inner.keys.set(key.namespace()));
            invocation.arg(key.to_string()).arg("");
        }
        let removed: Vec<i64> = inner
            .link
            .run("invalidate", |mut connection| async move {
                invocation.invoke_async(&mut connection).await
            })
            .await?;
        let flags: Vec<bool> = removed.into_iter().map(|r| r == 1).collect();
        bump(
            &inner.counters.invalidations,
            flags.iter().filter(|r| **r).count() as u64,
        );
        Ok(flags)
    }
}

impl fmt::Debug for RedisCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCache")
            .field("prefix", &self.inner.keys.data_prefix)
            .field("instance_id", &self.inner.instance_id)
            .field("codecs", &self.inner.codecs)
            .field("available", &self.inner.link.is_available())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl SnapshotCache for RedisCache {
    async fn get_many(
        &self,
        reads: &[CacheRead],
        now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        read::get_many(&self.inner, reads, now).await
    }

    async fn write_many(&self, writes: Vec<CacheWrite>) -> Result<Vec<WriteResult>, CacheError> {
        write::write_many(&self.inner, writes).await
    }

    async fn invalidate_many(&self, keys: &[ResourceKey]) -> Result<Vec<ResourceKey>, CacheError> {
        let (local, shared) = self.partition(keys.iter().cloned());
        let mut removed: HashSet<ResourceKey> = HashSet::new();
        if !local.is_empty() {
            removed.extend(self.inner.local.invalidate_many(&local).await?);
        }
        if !shared.is_empty() {
            let flags = self.invalidate_remote(&shared).await?;
            removed.extend(
                shared
                    .into_iter()
                    .zip(flags)
                    .filter_map(|(key, removed)| removed.then_some(key)),
            );
        }
        // Input order, each removed key once.
        Ok(keys
            .iter()
            .filter(|key| removed.remove(*key))
            .cloned()
            .collect())
    }

    async fn invalidate_namespace(&self, namespace: &str) -> Result<Vec<ResourceKey>, CacheError> {
        let inner = &self.inner;
        let mut removed = inner.local.invalidate_namespace(namespace).await?;
        let mut invocation = scripts().invalidate_namespace.prepare_invoke();
        invocation
            .key(inner.keys.set(namespace))
            .key(inner.keys.index.as_str())
            .arg(inner.publish_channel.as_str())
            .arg(inner.instance_id.as_ref())
            .arg(inner.keys.data_prefix.as_str())
            .arg(namespace);
        let members: Vec<String> = inner
            .link
            .run("namespace invalidation", |mut connection| async move {
                invocation.invoke_async(&mut connection).await
            })
            .await?;
        bump(&inner.counters.invalidations, members.len() as u64);
        removed.extend(
            members
                .iter()
                .filter_map(|member| ResourceKey::parse(member).ok()),
        );
        Ok(removed)
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        let inner = &self.inner;
        let local = inner.local.clear().await?;
        let mut invocation = scripts().clear.prepare_invoke();
        invocation
            .key(inner.keys.index.as_str())
            .arg(inner.publish_channel.as_str())
            .arg(inner.instance_id.as_ref())
            .arg(inner.keys.data_prefix.as_str())
            .arg(inner.keys.set_prefix.as_str());
        let removed: u64 = inner
            .link
            .run("clear", |mut connection| async move {
                invocation.invoke_async(&mut connection).await
            })
            .await?;
        bump(&inner.counters.invalidations, removed);
        Ok(local + removed)
    }

    fn stats(&self) -> CacheStats {
        self.redis_stats().cache
    }

    fn validates_dependency_versions(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_space_layout() {
        let keys = KeySpace::new("p");
        let key = ResourceKey::new("market", "price", "BTC").unwrap();
        assert_eq!(keys.data(&key), "p:v:market:price:BTC");
        assert_eq!(keys.set("market"), "p:ns:market");
        assert_eq!(keys.channel(), "p:invalidate");
        assert_eq!(ResourceKey::parse("market:price:BTC").unwrap(), key);
    }
}
