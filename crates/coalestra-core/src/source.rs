//! Source traits for implementers: [`Source`] (one key per call),
//! [`BatchSource`] (many keys per call) and [`DerivedSource`] (computed from
//! other resources), with their shared declarations in [`SourceInfo`].
//!
//! Sources are read-only: the library never writes to them.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::context::FetchContext;
use crate::error::SourceError;
use crate::key::ResourceKey;
use crate::metadata::{Metadata, MetadataValue};
use crate::payload::Payload;
use crate::resilience::ResiliencePolicy;
use crate::snapshot::Snapshot;

/// How the engine runs a source's work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Execution {
    /// Await the async method on the runtime (default).
    #[default]
    Async,
    /// Call the `*_blocking` method on the runtime's blocking pool.
    Blocking,
    /// Call the `*_blocking` method inline; only for work that never blocks.
    Inline,
}

/// What a source returns for one key: the payload and, optionally, when it
/// was observed, metadata and a stale flag.
#[derive(Debug, Clone)]
pub struct SourceOutput {
    /// The value.
    pub payload: Payload,
    /// When the origin observed it (defaults to the fetch time).
    pub observed_at: Option<Timestamp>,
    /// Source metadata.
    pub metadata: Metadata,
    /// Whether the source itself knows the value is stale.
    pub stale: bool,
}

impl SourceOutput {
    /// An output holding `value`.
    pub fn new<T: std::any::Any + Send + Sync>(value: T) -> Self {
        Self::from_payload(Payload::new(value))
    }

    /// An output holding an existing payload.
    pub fn from_payload(payload: Payload) -> Self {
        Self {
            payload,
            observed_at: None,
            metadata: Metadata::new(),
            stale: false,
        }
    }

    /// Sets the observation time.
    #[must_use]
    pub fn observed_at(mut self, at: Timestamp) -> Self {
        self.observed_at = Some(at);
        self
    }

    /// Adds a metadata entry.
    #[must_use]
    pub fn with_metadata(mut self, name: &str, value: impl Into<MetadataValue>) -> Self {
        self.metadata = self.metadata.with(name, value);
        self
    }

    /// Marks the output stale.
    #[must_use]
    pub fn stale(mut self) -> Self {
        self.stale = true;
        self
    }
}

/// A batch result: a possibly partial list of outputs. Keys the source did
/// not return continue to lower-priority sources.
pub type BatchOutput = Vec<(ResourceKey, SourceOutput)>;

/// The declarations every source makes.
pub trait SourceInfo: Send + Sync {
    /// The unique source name.
    fn name(&self) -> &str;
    /// Higher priorities are tried first (default 0).
    fn priority(&self) -> i32 {
        0
    }
    /// Whether the source can resolve `key` (default: every key).
    fn supports(&self, _key: &ResourceKey) -> bool {
        true
    }
    /// Whether `supports` answers may be cached per key (default `true`).
    fn cache_supports(&self) -> bool {
        true
    }
    /// The per-call timeout (default none).
    fn timeout(&self) -> Option<Duration> {
        None
    }
    /// How long a call may wait for capacity (default: the deadline only).
    fn queue_timeout(&self) -> Option<Duration> {
        None
    }
    /// A per-source concurrency limit (default none).
    fn max_concurrency(&self) -> Option<NonZeroUsize> {
        None
    }
    /// A source-declared resilience policy (default: the builder's).
    fn resilience(&self) -> Option<ResiliencePolicy> {
        None
    }
    /// How the engine runs this source (default [`Execution::Async`]).
    fn execution(&self) -> Execution {
        Execution::Async
    }
    /// Whether a call performs blocking I/O (default `false`).
    fn blocking_io(&self) -> bool {
        false
    }
    /// The timeout enforced by the blocking transport itself (default none).
    fn transport_timeout(&self) -> Option<Duration> {
        None
    }
}

/// A source resolving one key per call.
#[async_trait]
pub trait Source: SourceInfo {
    /// Fetches one resource.
    async fn fetch(
        &self,
        key: &ResourceKey,
        ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError>;

    /// Fetches synchronously; called instead of [`Source::fetch`] when
    /// [`SourceInfo::execution`] is not `Async`.
    fn fetch_blocking(
        &self,
        key: &ResourceKey,
        ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        let _ = (key, ctx);
        Err(SourceError::protocol(format!(
            "source {} declared synchronous execution without fetch_blocking",
            self.name()
        )))
    }
}

/// A source resolving many keys per call.
#[async_trait]
pub trait BatchSource: SourceInfo {
    /// The largest number of keys per call (default unbounded).
    fn max_batch_size(&self) -> Option<NonZeroUsize> {
        None
    }

    /// Fetches several resources; omitted keys fall through to other sources,
    /// keys that were not requested make the whole call a protocol error.
    async fn fetch_many(
        &self,
        keys: &[ResourceKey],
        ctx: &FetchContext,
    ) -> Result<BatchOutput, SourceError>;

    /// Synchronous variant, used when [`SourceInfo::execution`] is not `Async`.
    fn fetch_many_blocking(
        &self,
        keys: &[ResourceKey],
        ctx: &FetchContext,
    ) -> Result<BatchOutput, SourceError> {
        let _ = (keys, ctx);
        Err(SourceError::protocol(format!(
            "source {} declared synchronous execution without fetch_many_blocking",
            self.name()
        )))
    }
}

/// A source computing a resource from other resources.
#[async_trait]
pub trait DerivedSource: SourceInfo {
    /// The resources `key` is computed from.
    fn dependencies(&self, key: &ResourceKey) -> Result<Vec<ResourceKey>, SourceError>;

    /// Computes the value from an immutable snapshot of the dependencies.
    async fn derive(
        &self,
        key: &ResourceKey,
        dependencies: &Snapshot,
        ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError>;

    /// Synchronous variant, used when [`SourceInfo::execution`] is not `Async`.
    fn derive_blocking(
        &self,
        key: &ResourceKey,
        dependencies: &Snapshot,
        ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        let _ = (key, dependencies, ctx);
        Err(SourceError::protocol(format!(
            "source {} declared synchronous execution without derive_blocking",
            self.name()
        )))
    }
}

/// A registered source of any kind.
#[derive(Clone)]
#[non_exhaustive]
pub enum SourceRef {
    /// One key per call.
    Single(Arc<dyn Source>),
    /// Many keys per call.
    Batch(Arc<dyn BatchSource>),
    /// Computed from dependencies.
    Derived(Arc<dyn DerivedSource>),
}

impl SourceRef {
    /// Registers a single-key source.
    pub fn single(source: impl Source + 'static) -> Self {
        Self::Single(Arc::new(source))
    }
    /// Registers a batch source.
    pub fn batch(source: impl BatchSource + 'static) -> Self {
        Self::Batch(Arc::new(source))
    }
    /// Registers a derived source.
    pub fn derived(source: impl DerivedSource + 'static) -> Self {
        Self::Derived(Arc::new(source))
    }

    /// The source's declarations.
    pub fn info(&self) -> &dyn SourceInfo {
        match self {
            Self::Single(s) => &**s,
            Self::Batch(s) => &**s,
            Self::Derived(s) => &**s,
        }
    }

    /// The source name.
    pub fn name(&self) -> &str {
        self.info().name()
    }

    /// `single`, `batch` or `derived`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Single(_) => "single",
            Self::Batch(_) => "batch",
            Self::Derived(_) => "derived",
        }
    }
}

impl fmt::Debug for SourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SourceRef::{}({:?})", self.kind(), self.name())
    }
}

impl<S: Source + 'static> From<Arc<S>> for SourceRef {
    fn from(source: Arc<S>) -> Self {
        Self::Single(source)
    }
}

/// Checks a source's declarations: a non-empty name, non-zero timeouts, and
/// a transport timeout only on a source declaring blocking I/O.
pub fn validate_declarations(info: &dyn SourceInfo) -> Result<(), crate::ConfigError> {
    use crate::ConfigError;
    if info.name().trim().is_empty() {
        return Err(ConfigError::Empty {
            field: "source name",
        });
    }
    let positive = |d: Option<Duration>, field: &'static str| match d {
        Some(d) if d.is_zero() => Err(ConfigError::invalid(field, "must be positive")),
        _ => Ok(()),
    };
    positive(info.timeout(), "timeout")?;
    positive(info.queue_timeout(), "queue_timeout")?;
    positive(info.transport_timeout(), "transport_timeout")?;
    if info.transport_timeout().is_some() && !info.blocking_io() {
        return Err(ConfigError::invalid(
            "transport_timeout",
            "requires a source declaring blocking_io",
        ));
    }
    Ok(())
}
