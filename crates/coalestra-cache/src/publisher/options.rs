//! What a publisher is configured with ([`PublisherConfig`]) and what each
//! publication carries ([`PublishOptions`], [`ResourceUpdate`]).

use std::num::NonZeroUsize;
use std::sync::Arc;

use coalestra_core::{
    AuthorityResolver, EventSink, Metadata, MetadataValue, MetricsSink, NullSink,
    ObservationPolicy, Payload, PolicyResolver, ResourceKey, SharedClock, SystemClock, Timestamp,
};

/// How a [`ResourcePublisher`](super::ResourcePublisher) stamps, ranks and
/// reports what it publishes.
///
/// Build one with struct update syntax over [`Default`]:
///
/// ```
/// use std::sync::Arc;
///
/// use coalestra_cache::PublisherConfig;
/// use coalestra_core::ManualClock;
///
/// let config = PublisherConfig {
///     clock: Arc::new(ManualClock::new(1_000.0)),
///     ..PublisherConfig::default()
/// };
/// assert_eq!(config.max_pending_tasks.get(), 8);
/// ```
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// The wall clock stamping `fetched_at`, and `observed_at` when the caller
    /// gives none (default: the system clock).
    pub clock: SharedClock,
    /// The authority rank of each source for each key.
    pub authority: AuthorityResolver,
    /// How far ahead of the clock an `observed_at` may be.
    pub observation: ObservationPolicy,
    /// The freshness policy of each key, used by
    /// [`ResourcePublisher::current`](super::ResourcePublisher::current).
    pub policies: PolicyResolver,
    /// Receives `resource_published`, `resource_publish_ignored` and
    /// `resource_invalidated` events.
    pub events: Arc<dyn EventSink>,
    /// Receives the `resource_publish_total` and
    /// `resource_invalidation_total` counters.
    pub metrics: Arc<dyn MetricsSink>,
    /// How many publications started with
    /// [`ResourcePublisher::spawn_publish`](super::ResourcePublisher::spawn_publish)
    /// may be in flight at once (default 8).
    pub max_pending_tasks: NonZeroUsize,
}

impl PublisherConfig {
    /// The default bound on background publications.
    pub const DEFAULT_MAX_PENDING_TASKS: NonZeroUsize = match NonZeroUsize::new(8) {
        Some(bound) => bound,
        None => NonZeroUsize::MIN,
    };
}

impl Default for PublisherConfig {
    /// The system clock, no authority rules, the default observation and
    /// freshness policies, null sinks and eight pending tasks.
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            authority: AuthorityResolver::default(),
            observation: ObservationPolicy::default(),
            policies: PolicyResolver::default(),
            events: Arc::new(NullSink),
            metrics: Arc::new(NullSink),
            max_pending_tasks: Self::DEFAULT_MAX_PENDING_TASKS,
        }
    }
}

/// How one value is published: which source it comes from, when it was
/// observed, its metadata and its write rules.
///
/// ```
/// use coalestra_cache::PublishOptions;
/// use coalestra_core::Timestamp;
///
/// let options = PublishOptions::new("ticker-stream")
///     .observed_at(Timestamp::from_secs(1_700_000_000.0))
///     .with_metadata("partition", 3_i64);
/// assert_eq!(&*options.source, "ticker-stream");
/// assert!(!options.force);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PublishOptions {
    /// The name of the source the value is published as; trimmed, and
    /// rejected when empty.
    pub source: Arc<str>,
    /// When the origin observed the value (default: the publisher's clock).
    pub observed_at: Option<Timestamp>,
    /// Metadata stored with the revision (`published` is always added).
    pub metadata: Metadata,
    /// Store regardless of the authority and age of the stored revision.
    pub force: bool,
    /// Replace a stored revision of equal authority and observation time.
    pub replace_equal: bool,
}

impl PublishOptions {
    /// Options publishing as `source`, observed now, without metadata.
    pub fn new(source: impl Into<Arc<str>>) -> Self {
        Self {
            source: source.into(),
            observed_at: None,
            metadata: Metadata::new(),
            force: false,
            replace_equal: false,
        }
    }

    /// Sets when the origin observed the value.
    #[must_use]
    pub fn observed_at(mut self, at: Timestamp) -> Self {
        self.observed_at = Some(at);
        self
    }

    /// Replaces the metadata.
    #[must_use]
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Adds one metadata entry.
    #[must_use]
    pub fn with_metadata(mut self, name: &str, value: impl Into<MetadataValue>) -> Self {
        self.metadata = self.metadata.with(name, value);
        self
    }

    /// Stores regardless of the stored revision's authority and age.
    #[must_use]
    pub fn force(mut self, force: bool) -> Self {
        self.force = force;
        self
    }

    /// Replaces a stored revision of equal authority and observation time.
    #[must_use]
    pub fn replace_equal(mut self, replace_equal: bool) -> Self {
        self.replace_equal = replace_equal;
        self
    }
}

/// One value to publish with
/// [`ResourcePublisher::publish_many`](super::ResourcePublisher::publish_many).
#[derive(Debug, Clone)]
pub struct ResourceUpdate {
    /// The resource.
    pub key: ResourceKey,
    /// The value.
    pub payload: Payload,
    /// How it is published.
    pub options: PublishOptions,
}

impl ResourceUpdate {
    /// An update of `key` to `payload`.
    pub fn new(key: ResourceKey, payload: Payload, options: PublishOptions) -> Self {
        Self {
            key,
            payload,
            options,
        }
    }
}
