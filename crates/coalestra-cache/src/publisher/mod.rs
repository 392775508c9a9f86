//! [`ResourcePublisher`]: pushes values into a cache tier from outside the
//! read path, as if a source had observed them.
//!
//! Event-stream consumers, webhook handlers and local reconciliation loops
//! publish through it. Every publication is stamped, ranked and validated
//! like a source read, then written with the cache's atomic conditional write,
//! so a published value never replaces a newer or more authoritative one
//! unless it is forced.

mod options;
mod outcome;
mod telemetry;

use std::fmt;
use std::sync::Arc;

use coalestra_core::value::ValueParts;
use coalestra_core::{
    CacheError, CacheHit, CacheWrite, CoalestraError, ConfigError, KeyMap, Metadata, Payload,
    ResourceKey, SnapshotCache, SnapshotValue, Timestamp, WriteOutcome,
};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

pub use self::options::{PublishOptions, PublisherConfig, ResourceUpdate};
pub use self::outcome::{PublishResult, PublishStatus};
use self::telemetry::Telemetry;

/// Publishes values into any [`SnapshotCache`] under the cache's write rules.
///
/// Each published revision carries the caller's `observed_at` (or the
/// clock's now), `fetched_at` set to now, the trimmed source name, the
/// source's authority rank for the key, and the caller's metadata plus
/// `published: true` (and `clock_skew_seconds` when `observed_at` is slightly
/// ahead of the clock). An `observed_at` beyond the observation policy's
/// tolerance is rejected before anything is written.
///
/// Clones share the cache, the configuration and the bound on background
/// publications.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
///
/// use coalestra_cache::{MemoryCache, PublishOptions, PublishStatus, PublisherConfig, ResourcePublisher};
/// use coalestra_core::{ManualClock, Payload, ResourceKey, SnapshotCache, Timestamp};
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let cache = MemoryCache::new();
///     let config = PublisherConfig {
///         clock: Arc::new(ManualClock::new(1_000.0)),
///         ..PublisherConfig::default()
///     };
///     let publisher = ResourcePublisher::new(Arc::new(cache.clone()), config);
///     let key = ResourceKey::new("market", "price", "ETHUSDT")?;
///
///     let first = publisher
///         .publish(key.clone(), Payload::new(3_120.0_f64), PublishOptions::new("ticker-stream"))
///         .await?;
///     assert_eq!(first.status, PublishStatus::Published);
///
///     // An older observation from the same source does not replace it.
///     let late = publisher
///         .publish(
///             key.clone(),
///             Payload::new(3_050.0_f64),
///             PublishOptions::new("ticker-stream").observed_at(Timestamp::from_secs(990.0)),
///         )
///         .await?;
///     assert_eq!(late.status.as_str(), "ignored_older");
///     assert_eq!(*late.value.value::<f64>()?, 3_120.0);
///
///     let stored = cache.peek(&key).expect("published");
///     assert_eq!(stored.metadata().get("published").and_then(|v| v.as_bool()), Some(true));
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct ResourcePublisher {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Arc<dyn SnapshotCache>,
    config: PublisherConfig,
    pending: Arc<Semaphore>,
}

/// A validated candidate revision and its write rules.
struct Candidate {
    value: SnapshotValue,
    force: bool,
    replace_equal: bool,
}

impl ResourcePublisher {
    /// A publisher writing into `cache`.
    pub fn new(cache: Arc<dyn SnapshotCache>, config: PublisherConfig) -> Self {
        let pending = Arc::new(Semaphore::new(config.max_pending_tasks.get()));
        Self {
            inner: Arc::new(Inner {
                cache,
                config,
                pending,
            }),
        }
    }

    /// The cache published into.
    pub fn cache(&self) -> &Arc<dyn SnapshotCache> {
        &self.inner.cache
    }

    /// The configuration.
    pub fn config(&self) -> &PublisherConfig {
        &self.inner.config
    }

    /// Publishes one value.
    ///
    /// # Errors
    ///
    /// A configuration error when the source name is empty, a source error
    /// ([`SourceError::InvalidTimestamp`]) when `observed_at` is too far in
    /// the future, or the cache's error. Nothing is stored on error.
    ///
    /// [`SourceError::InvalidTimestamp`]: coalestra_core::SourceError::InvalidTimestamp
    pub async fn publish(
        &self,
        key: ResourceKey,
        payload: Payload,
        options: PublishOptions,
    ) -> Result<PublishResult, CoalestraError> {
        let now = self.inner.config.clock.now();
        let candidate = self.candidate(ResourceUpdate::new(key, payload, options), now)?;
        let telemetry = self.telemetry();
        // The offered value is kept for reporting only when it is reported.
        let offered = telemetry.enabled().then(|| candidate.value.clone());
        let Candidate {
            value,
            force,
            replace_equal,
        } = candidate;
        let key = value.key().clone();
        let written = self
            .inner
            .cache
            .write(CacheWrite {
                value,
                force,
                replace_equal,
            })
            .await?;
        let result = PublishResult {
            key,
            status: PublishStatus::from_outcome(written.outcome),
            value: written.current,
            previous: written.previous,
            forced: force,
        };
        if let Some(offered) = &offered {
            telemetry.publication(&result, offered);
        }
        Ok(result)
    }

    /// Publishes several values with one batch write.
    ///
    /// Returns one result per distinct key, in the order each key first
    /// appears. Several updates of one key are reduced to the one that wins
    /// under the cache's write rules (higher authority, then newer
    /// observation) before the write, and only that one is reported. Every
    /// update is validated first: one invalid update fails the call and
    /// nothing is stored.
    ///
    /// # Errors
    ///
    /// As [`ResourcePublisher::publish`].
    pub async fn publish_many(
        &self,
        updates: Vec<ResourceUpdate>,
    ) -> Result<Vec<PublishResult>, CoalestraError> {
        if updates.is_empty() {
            return Ok(Vec::new());
        }
        let now = self.inner.config.clock.now();
        let mut slots: KeyMap<usize> = KeyMap::default();
        let mut winners: Vec<Candidate> = Vec::with_capacity(updates.len());
        for update in updates {
            let candidate = self.candidate(update, now)?;
            match slots.get(candidate.value.key()) {
                Some(&slot) => {
                    let held = &winners[slot];
                    let outcome = WriteOutcome::decide(
                        &candidate.value,
                        Some(&held.value),
                        candidate.force,
                        candidate.replace_equal,
                    );
                    if outcome.is_stored() {
                        winners[slot] = candidate;
                    }
                }
                None => {
                    slots.insert(candidate.value.key().clone(), winners.len());
                    winners.push(candidate);
                }
            }
        }
        let writes = winners
            .iter()
            .map(|candidate| CacheWrite {
                value: candidate.value.clone(),
                force: candidate.force,
                replace_equal: candidate.replace_equal,
            })
            .collect();
        let written = self.inner.cache.write_many(writes).await?;
        if written.len() != winners.len() {
            return Err(missing_results(winners.len(), written.len()));
        }
        let telemetry = self.telemetry();
        let results = winners
            .into_iter()
            .zip(written)
            .map(|(candidate, write)| {
                let result = PublishResult {
                    key: candidate.value.key().clone(),
                    status: PublishStatus::from_outcome(write.outcome),
                    value: write.current,
                    previous: write.previous,
                    forced: candidate.force,
                };
                telemetry.publication(&result, &candidate.value);
                result
            })
            .collect();
        Ok(results)
    }

    /// Publishes one update on a spawned task.
    ///
    /// Waits until fewer than
    /// [`max_pending_tasks`](PublisherConfig::max_pending_tasks) background
    /// publications are in flight, then spawns this one on the current tokio
    /// runtime; the returned handle yields its result. Must be called from
    /// within a tokio runtime.
    pub async fn spawn_publish(
        &self,
        update: ResourceUpdate,
    ) -> JoinHandle<Result<PublishResult, CoalestraError>> {
        // The semaphore is never closed, so acquiring only fails if that
        // changes; the publication then simply runs unbounded.
        let permit = Arc::clone(&self.inner.pending).acquire_owned().await.ok();
        let publisher = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let ResourceUpdate {
                key,
                payload,
                options,
            } = update;
            publisher.publish(key, payload, options).await
        })
    }

    /// How many more background publications may start right now.
    pub fn available_task_slots(&self) -> usize {
        self.inner.pending.available_permits()
    }

    /// Removes one key from the cache; returns whether it was present.
    ///
    /// `reason` is reported in the `resource_invalidated` event.
    ///
    /// # Errors
    ///
    /// The cache's error.
    pub async fn invalidate(
        &self,
        key: &ResourceKey,
        reason: &str,
    ) -> Result<bool, CoalestraError> {
        let removed = self
            .invalidate_many(std::slice::from_ref(key), reason)
            .await?;
        Ok(!removed.is_empty())
    }

    /// Removes several keys from the cache; returns the keys that were
    /// present. Each distinct requested key is reported once, whether or not
    /// it was present.
    ///
    /// # Errors
    ///
    /// The cache's error.
    pub async fn invalidate_many(
        &self,
        keys: &[ResourceKey],
        reason: &str,
    ) -> Result<Vec<ResourceKey>, CoalestraError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut seen: KeyMap<()> = KeyMap::default();
        let unique: Vec<ResourceKey> = keys
            .iter()
            .filter(|key| seen.insert((*key).clone(), ()).is_none())
            .cloned()
            .collect();
        let removed = self.inner.cache.invalidate_many(&unique).await?;
        let telemetry = self.telemetry();
        if telemetry.enabled() {
            let present: KeyMap<()> = removed.iter().map(|key| (key.clone(), ())).collect();
            for key in &unique {
                telemetry.invalidation(key, reason, present.contains_key(key));
            }
        }
        Ok(removed)
    }

    /// Reads `key` from the cache with its configured freshness policy at the
    /// clock's now.
    ///
    /// # Errors
    ///
    /// The cache's error.
    pub async fn current(&self, key: &ResourceKey) -> Result<Option<CacheHit>, CoalestraError> {
        let config = &self.inner.config;
        let policy = config.policies.resolve(key);
        Ok(self
            .inner
            .cache
            .get(key, policy, config.clock.now())
            .await?)
    }

    fn telemetry(&self) -> Telemetry<'_> {
        Telemetry {
            events: &*self.inner.config.events,
            metrics: &*self.inner.config.metrics,
        }
    }

    /// Validates one update and builds its revision.
    fn candidate(
        &self,
        update: ResourceUpdate,
        now: Timestamp,
    ) -> Result<Candidate, CoalestraError> {
        let config = &self.inner.config;
        let ResourceUpdate {
            key,
            payload,
            options,
        } = update;
        let source = trimmed_source(options.source)?;
        let observed_at = options.observed_at.unwrap_or(now);
        let skew = config.observation.check(observed_at, now)?;
        let mut metadata = if options.metadata.is_empty() {
            // One shared map for every publication without caller metadata.
            static PUBLISHED: std::sync::OnceLock<Metadata> = std::sync::OnceLock::new();
            PUBLISHED
                .get_or_init(|| Metadata::new().with("published", true))
                .clone()
        } else {
            options.metadata.with("published", true)
        };
        if let Some(skew) = skew {
            metadata = metadata.with("clock_skew_seconds", skew);
        }
        let authority_rank = config.authority.rank_for(&key, &source);
        let mut parts = ValueParts::new(key, payload, source, observed_at);
        parts.fetched_at = Some(now);
        parts.metadata = metadata;
        parts.authority_rank = authority_rank;
        Ok(Candidate {
            value: SnapshotValue::from_parts(parts),
            force: options.force,
            replace_equal: options.replace_equal,
        })
    }
}

impl fmt::Debug for ResourcePublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourcePublisher")
            .field("cache", &self.inner.cache)
            .field("config", &self.inner.config)
            .finish()
    }
}

/// The source name trimmed, sharing the original allocation when nothing was
/// trimmed.
fn trimmed_source(source: Arc<str>) -> Result<Arc<str>, ConfigError> {
    // Most names start and end with a visible ASCII character: nothing to
    // trim, and no need to scan for Unicode whitespace.
    let visible = |byte: &u8| byte.is_ascii() && !char::from(*byte).is_whitespace();
    let bytes = source.as_bytes();
    if bytes.first().is_some_and(visible) && bytes.last().is_some_and(visible) {
        return Ok(source);
    }
    let trimmed = source.trim();
    if trimmed.is_empty() {
        return Err(ConfigError::Empty {
            field: "source name",
        });
    }
    if trimmed.len() == source.len() {
        Ok(source)
    } else {
        Ok(Arc::from(trimmed))
    }
}

fn missing_results(expected: usize, received: usize) -> CoalestraError {
    CacheError::Unavailable(format!(
        "cache returned {received} write results for {expected} writes"
    ))
    .into()
}
