//! The cache tier contract: [`SnapshotCache`].
//!
//! Designed so a remote, shared cache can implement it as well as a local
//! one: reads and writes are batched, freshness is judged from the caller's
//! clock (`now` is passed in), and writes are conditional and atomic per key
//! (forced writes win; otherwise higher authority wins, then newer
//! observation; equal observations are duplicates unless `replace_equal`).

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::freshness::FreshnessPolicy;
use crate::key::ResourceKey;
use crate::value::SnapshotValue;

/// How a cached value relates to its freshness policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Freshness {
    /// Within the TTL.
    Fresh,
    /// Within the TTL but inside the refresh-ahead window.
    RefreshDue,
    /// Past the TTL but within `max_stale`.
    StaleUsable,
    /// Past `max_stale`: not served (and removed on access).
    Expired,
}

impl Freshness {
    /// Whether the value may be served as fresh.
    pub fn is_fresh(self) -> bool {
        matches!(self, Self::Fresh | Self::RefreshDue)
    }
    /// Whether the value may be served at all.
    pub fn is_usable(self) -> bool {
        !matches!(self, Self::Expired)
    }
}

/// One key to read with its freshness policy.
#[derive(Debug, Clone)]
pub struct CacheRead {
    /// The key.
    pub key: ResourceKey,
    /// The key's policy.
    pub policy: FreshnessPolicy,
}

/// One key to read with its freshness policy, both borrowed: what
/// [`SnapshotCache::lookup_many`] takes, so a batch read copies no key.
#[derive(Debug, Clone, Copy)]
pub struct CacheLookup<'a> {
    /// The key.
    pub key: &'a ResourceKey,
    /// The key's policy.
    pub policy: &'a FreshnessPolicy,
}

impl From<CacheLookup<'_>> for CacheRead {
    /// An owned read: the key is cloned (a reference count).
    fn from(lookup: CacheLookup<'_>) -> Self {
        Self {
            key: lookup.key.clone(),
            policy: *lookup.policy,
        }
    }
}

impl<'a> From<&'a CacheRead> for CacheLookup<'a> {
    fn from(read: &'a CacheRead) -> Self {
        Self {
            key: &read.key,
            policy: &read.policy,
        }
    }
}

/// A cache hit.
#[derive(Debug, Clone)]
pub struct CacheHit {
    /// The stored revision, delivered as a cached read.
    pub value: SnapshotValue,
    /// Its classification.
    pub freshness: Freshness,
    /// Its age at the read.
    pub age: Duration,
}

/// One conditional write.
#[derive(Debug, Clone)]
pub struct CacheWrite {
    /// The candidate revision.
    pub value: SnapshotValue,
    /// Store regardless of authority and age.
    pub force: bool,
    /// Replace an equal-rank, equal-time revision.
    pub replace_equal: bool,
}

impl CacheWrite {
    /// An ordinary (monotonic) write.
    pub fn new(value: SnapshotValue) -> Self {
        Self {
            value,
            force: false,
            replace_equal: false,
        }
    }
}

/// The outcome of a conditional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WriteOutcome {
    /// The candidate was stored.
    Stored,
    /// A higher-authority revision is stored.
    IgnoredLowerAuthority,
    /// A newer revision of the same authority is stored.
    IgnoredOlder,
    /// An equal revision is stored and `replace_equal` was not set.
    IgnoredDuplicate,
}

impl WriteOutcome {
    /// Whether the candidate was stored.
    pub fn is_stored(self) -> bool {
        matches!(self, Self::Stored)
    }
    /// A stable lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::IgnoredLowerAuthority => "ignored_lower_authority",
            Self::IgnoredOlder => "ignored_older",
            Self::IgnoredDuplicate => "ignored_duplicate",
        }
    }

    /// Decides a write: force, no previous, authority, then observation time.
    pub fn decide(
        candidate: &SnapshotValue,
        previous: Option<&SnapshotValue>,
        force: bool,
        replace_equal: bool,
    ) -> Self {
        let Some(previous) = previous else {
            return Self::Stored;
        };
        if force {
            return Self::Stored;
        }
        match candidate.authority_rank().cmp(&previous.authority_rank()) {
            std::cmp::Ordering::Less => return Self::IgnoredLowerAuthority,
            std::cmp::Ordering::Greater => return Self::Stored,
            std::cmp::Ordering::Equal => {}
        }
        match candidate.observed_at().total_cmp(&previous.observed_at()) {
            std::cmp::Ordering::Less => Self::IgnoredOlder,
            std::cmp::Ordering::Equal if !replace_equal => Self::IgnoredDuplicate,
            _ => Self::Stored,
        }
    }
}

/// The result of a conditional write.
#[derive(Debug, Clone)]
pub struct WriteResult {
    /// What happened.
    pub outcome: WriteOutcome,
    /// The revision stored before the write (always present when ignored).
    pub previous: Option<SnapshotValue>,
    /// The revision stored after the write.
    pub current: SnapshotValue,
}

/// A cache failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CacheError {
    /// The cache backend is unavailable.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The cache was closed.
    #[error("cache is closed")]
    Closed,
    /// A value could not be encoded or decoded.
    #[error("cache codec error: {0}")]
    Codec(String),
}

impl CacheError {
    /// Whether retrying may help.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Cache counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CacheStats {
    /// Entries currently stored.
    pub size: u64,
    /// The bound, if any.
    pub max_entries: Option<u64>,
    /// Fresh or stale hits.
    pub hits: u64,
    /// Misses (absent, expired or invalid derived entries).
    pub misses: u64,
    /// Fresh hits.
    pub fresh_hits: u64,
    /// Stale hits.
    pub stale_hits: u64,
    /// Stored writes.
    pub sets: u64,
    /// Writes ignored for lower authority.
    pub ignored_lower_authority: u64,
    /// Writes ignored for being older.
    pub ignored_older: u64,
    /// Writes ignored as duplicates.
    pub ignored_duplicate: u64,
    /// Entries removed by invalidation (including derived entries whose
    /// dependencies changed).
    pub invalidations: u64,
    /// Entries removed by the size bound.
    pub evictions: u64,
    /// Entries removed because they were past `max_stale`.
    pub expirations: u64,
    /// Whether the cache works with reduced guarantees (for example a remote
    /// tier unreachable and only a local tier serving).
    pub degraded: bool,
}

/// A cache tier.
///
/// Implementations must make each key's compare-and-store atomic: two
/// concurrent writers can never leave the losing revision stored.
#[async_trait]
pub trait SnapshotCache: Send + Sync + fmt::Debug {
    /// Reads several keys at `now`. Expired entries are reported as `None`.
    async fn get_many(
        &self,
        reads: &[CacheRead],
        now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError>;

    /// Reads several borrowed keys at `now`, like [`get_many`](Self::get_many).
    ///
    /// The engine reads through this method. The default copies the keys
    /// into [`CacheRead`]s and calls `get_many`; a cache that can read from
    /// borrowed keys overrides it to save those copies.
    async fn lookup_many(
        &self,
        lookups: &[CacheLookup<'_>],
        now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        let reads: Vec<CacheRead> = lookups.iter().copied().map(CacheRead::from).collect();
        self.get_many(&reads, now).await
    }

    /// Writes several revisions conditionally; results follow input order.
    /// Several candidates for one key keep the winner whatever their order.
    async fn write_many(&self, writes: Vec<CacheWrite>) -> Result<Vec<WriteResult>, CacheError>;

    /// Removes keys; returns the keys that were present.
    async fn invalidate_many(&self, keys: &[ResourceKey]) -> Result<Vec<ResourceKey>, CacheError>;

    /// Removes every key of a namespace; returns the removed keys.
    async fn invalidate_namespace(&self, namespace: &str) -> Result<Vec<ResourceKey>, CacheError>;

    /// Removes everything; returns the number of removed entries.
    async fn clear(&self) -> Result<u64, CacheError>;

    /// Counters.
    fn stats(&self) -> CacheStats;

    /// Reads one key.
    async fn get(
        &self,
        key: &ResourceKey,
        policy: FreshnessPolicy,
        now: Timestamp,
    ) -> Result<Option<CacheHit>, CacheError> {
        let reads = [CacheRead {
            key: key.clone(),
            policy,
        }];
        Ok(self.get_many(&reads, now).await?.pop().flatten())
    }

    /// Writes one revision.
    async fn write(&self, write: CacheWrite) -> Result<WriteResult, CacheError> {
        self.write_many(vec![write])
            .await?
            .pop()
            .ok_or_else(|| CacheError::Unavailable("cache returned no write result".into()))
    }

    /// Removes one key; returns whether it was present.
    async fn invalidate(&self, key: &ResourceKey) -> Result<bool, CacheError> {
        Ok(!self
            .invalidate_many(std::slice::from_ref(key))
            .await?
            .is_empty())
    }

    /// Whether reads already drop derived entries whose dependency versions
    /// changed (default `false`: the engine then checks them itself).
    fn validates_dependency_versions(&self) -> bool {
        false
    }
}
