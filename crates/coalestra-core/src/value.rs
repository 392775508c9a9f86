//! [`SnapshotValue`]: one resolved resource revision as seen by one read.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crate::clock::Timestamp;
use crate::error::TypeMismatch;
use crate::key::ResourceKey;
use crate::metadata::Metadata;
use crate::payload::Payload;

/// An opaque identifier, unique per stored revision (also across processes,
/// with overwhelming probability), used to detect that a derived value's
/// dependencies changed.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Version(u128);

impl Version {
    /// A fresh version, never returned before by this process.
    pub fn next() -> Self {
        static BASE: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(1);
        let base = *BASE.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or_default(),
            );
            h.write_u32(std::process::id());
            h.finish()
        });
        let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
        Self((u128::from(base) << 64) | u128::from(counter))
    }

    /// Rebuilds a version from its raw form (for remote caches).
    pub const fn from_raw(raw: u128) -> Self {
        Self(raw)
    }

    /// The raw form.
    pub const fn as_raw(self) -> u128 {
        self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Version({self})")
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// What identifies a stored revision; shared by every read of it.
#[derive(Debug)]
struct Revision {
    key: ResourceKey,
    payload: Payload,
    source: Arc<str>,
    observed_at: Timestamp,
    metadata: Metadata,
    authority_rank: i64,
    version: Version,
    dependency_versions: Box<[(ResourceKey, Version)]>,
}

/// How one read delivered a revision.
#[derive(Debug, Clone)]
struct Delivery {
    fetched_at: Timestamp,
    stale: bool,
    from_cache: bool,
    latency: Duration,
    attempts: u32,
    coalesced: bool,
    refresh_scheduled: bool,
    notes: Metadata,
}

/// The parts of a [`SnapshotValue`], for sources of values other than the
/// engine (publishers, remote caches, tests).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ValueParts {
    /// The resource.
    pub key: ResourceKey,
    /// The value.
    pub payload: Payload,
    /// The source name.
    pub source: Arc<str>,
    /// When the value was observed at its origin.
    pub observed_at: Timestamp,
    /// When it was fetched (defaults to `observed_at`).
    pub fetched_at: Option<Timestamp>,
    /// Source-provided metadata.
    pub metadata: Metadata,
    /// The source's authority rank for this key.
    pub authority_rank: i64,
    /// The revision's version (a new one when `None`).
    pub version: Option<Version>,
    /// Versions of the dependencies a derived value was computed from.
    pub dependency_versions: Vec<(ResourceKey, Version)>,
}

impl ValueParts {
    /// Parts with defaults: no metadata, rank 0, a new version.
    pub fn new(
        key: ResourceKey,
        payload: Payload,
        source: impl Into<Arc<str>>,
        observed_at: Timestamp,
    ) -> Self {
        Self {
            key,
            payload,
            source: source.into(),
            observed_at,
            fetched_at: None,
            metadata: Metadata::new(),
            authority_rank: 0,
            version: None,
            dependency_versions: Vec::new(),
        }
    }
}

/// One resolved resource: a shared, immutable revision plus how this read
/// delivered it (from cache or not, stale or not, latency, attempts).
///
/// Cloning is cheap; no accessor hands out anything mutable.
#[derive(Clone)]
pub struct SnapshotValue {
    revision: Arc<Revision>,
    delivery: Delivery,
}

impl SnapshotValue {
    /// Assembles a value from its parts.
    pub fn from_parts(parts: ValueParts) -> Self {
        let fetched_at = parts.fetched_at.unwrap_or(parts.observed_at);
        Self {
            revision: Arc::new(Revision {
                key: parts.key,
                payload: parts.payload,
                source: parts.source,
                observed_at: parts.observed_at,
                metadata: parts.metadata,
                authority_rank: parts.authority_rank,
                version: parts.version.unwrap_or_else(Version::next),
                dependency_versions: parts.dependency_versions.into(),
            }),
            delivery: Delivery {
                fetched_at,
                stale: false,
                from_cache: false,
                latency: Duration::ZERO,
                attempts: 0,
                coalesced: false,
                refresh_scheduled: false,
                notes: Metadata::new(),
            },
        }
    }

    /// The resource key.
    pub fn key(&self) -> &ResourceKey {
        &self.revision.key
    }
    /// The payload.
    pub fn payload(&self) -> &Payload {
        &self.revision.payload
    }
    /// The payload as `T`, or a type mismatch naming the resource.
    pub fn value<T: std::any::Any>(&self) -> Result<&T, TypeMismatch> {
        self.revision
            .payload
            .get::<T>()
            .map_err(|e| e.for_resource(&self.revision.key))
    }
    /// The name of the source that produced the revision.
    pub fn source(&self) -> &str {
        &self.revision.source
    }
    /// When the value was observed at its origin.
    pub fn observed_at(&self) -> Timestamp {
        self.revision.observed_at
    }
    /// When this read obtained it.
    pub fn fetched_at(&self) -> Timestamp {
        self.delivery.fetched_at
    }
    /// Age at fetch time: `fetched_at - observed_at`, never negative.
    pub fn age(&self) -> Duration {
        self.delivery
            .fetched_at
            .saturating_since(self.revision.observed_at)
    }
    /// Age at `now`, never negative.
    pub fn age_at(&self, now: Timestamp) -> Duration {
        now.saturating_since(self.revision.observed_at)
    }
    /// Whether the value was older than its TTL when delivered.
    pub fn is_stale(&self) -> bool {
        self.delivery.stale
    }
    /// Whether this read was served from a cache.
    pub fn is_from_cache(&self) -> bool {
        self.delivery.from_cache
    }
    /// Time spent in the source call that produced this read (zero from cache).
    pub fn latency(&self) -> Duration {
        self.delivery.latency
    }
    /// Source attempts used (0 for cached or published values).
    pub fn attempts(&self) -> u32 {
        self.delivery.attempts
    }
    /// Whether this read joined another caller's in-flight fetch.
    pub fn is_coalesced(&self) -> bool {
        self.delivery.coalesced
    }
    /// Whether a background refresh was scheduled (or already pending) for it.
    pub fn refresh_scheduled(&self) -> bool {
        self.delivery.refresh_scheduled
    }
    /// Source-provided metadata of the revision (read-only).
    pub fn metadata(&self) -> &Metadata {
        &self.revision.metadata
    }
    /// Notes the engine attached to this read (fallback errors, refresh mode,
    /// superseded source).
    pub fn notes(&self) -> &Metadata {
        &self.delivery.notes
    }
    /// The authority rank of the producing source for this key.
    pub fn authority_rank(&self) -> i64 {
        self.revision.authority_rank
    }
    /// The revision's version.
    pub fn version(&self) -> Version {
        self.revision.version
    }
    /// The dependency versions a derived value was computed from.
    pub fn dependency_versions(&self) -> &[(ResourceKey, Version)] {
        &self.revision.dependency_versions
    }
    /// Whether two values share one stored revision.
    pub fn same_revision(&self, other: &SnapshotValue) -> bool {
        Arc::ptr_eq(&self.revision, &other.revision)
    }

    /// This revision as delivered by a cache read at `now`.
    #[must_use]
    pub fn as_cached(&self, now: Timestamp, stale: bool) -> Self {
        Self {
            revision: Arc::clone(&self.revision),
            delivery: Delivery {
                fetched_at: now,
                stale,
                from_cache: true,
                latency: Duration::ZERO,
                attempts: 0,
                coalesced: false,
                refresh_scheduled: false,
                notes: Metadata::new(),
            },
        }
    }

    /// The same read with a source-call outcome recorded.
    #[must_use]
    pub fn with_call(mut self, fetched_at: Timestamp, latency: Duration, attempts: u32) -> Self {
        self.delivery.fetched_at = fetched_at;
        self.delivery.latency = latency;
        self.delivery.attempts = attempts;
        self
    }

    /// The same read marked stale or not.
    #[must_use]
    pub fn with_stale(mut self, stale: bool) -> Self {
        self.delivery.stale = stale;
        self
    }

    /// The same read marked as joined to another caller's fetch.
    #[must_use]
    pub fn with_coalesced(mut self, coalesced: bool) -> Self {
        self.delivery.coalesced = coalesced;
        self
    }

    /// The same read marked as having a background refresh.
    #[must_use]
    pub fn with_refresh_scheduled(mut self, scheduled: bool) -> Self {
        self.delivery.refresh_scheduled = scheduled;
        self
    }

    /// The same read with an engine note added.
    #[must_use]
    pub fn with_note(
        mut self,
        name: impl Into<Arc<str>>,
        value: impl Into<crate::MetadataValue>,
    ) -> Self {
        self.delivery.notes = self.delivery.notes.with(name, value);
        self
    }
}

impl fmt::Debug for SnapshotValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotValue")
            .field("key", &self.revision.key)
            .field("payload", &self.revision.payload)
            .field("source", &self.revision.source)
            .field("observed_at", &self.revision.observed_at)
            .field("fetched_at", &self.delivery.fetched_at)
            .field("stale", &self.delivery.stale)
            .field("from_cache", &self.delivery.from_cache)
            .field("authority_rank", &self.revision.authority_rank)
            .field("version", &self.revision.version)
            .finish_non_exhaustive()
    }
}
