//! # Coalestra
//!
//! Consistent, immutable snapshots of many resources, built from prioritized
//! read-only sources (REST APIs, databases, streams, local state) without
//! thundering herds, with bounded load on every backend and precise
//! deadlines.
//!
//! This umbrella crate re-exports the public API of the workspace; custom
//! sources and caches only need `coalestra-core`.
//!
//! ```
//! use coalestra::prelude::*;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let prices = FnSource::new("rest", |key: ResourceKey, _ctx| async move {
//!     Ok(SourceOutput::new(100.0_f64 + key.subject().len() as f64))
//! });
//! let builder = SnapshotBuilder::builder([prices.into()]).build()?;
//! let btc = ResourceKey::new("market", "price", "BTC")?;
//! let snapshot = builder.build([btc.clone()]).await?;
//! assert_eq!(*snapshot.value::<f64>(&btc)?, 103.0);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[doc(inline)]
pub use coalestra_core::{
    acceptance, adapters, authority, cache, clock, consistency, context, degradation, diagnostics,
    error, freshness, key, metadata, observation, payload, request, resilience, sink, snapshot,
    source, value,
};
#[doc(inline)]
pub use coalestra_core::{
    AcceptanceReason, AcceptanceViolation, ConsistencyViolation, RequestDegradationPolicy,
    RequestDegradationPolicyBuilder, RequirementKind, ResourceAcceptanceRule, ResultState,
    SnapshotAcceptancePolicy, SnapshotAcceptancePolicyBuilder, SnapshotConsistencyPolicy,
    SnapshotRequirement, SnapshotResult,
};
#[doc(inline)]
pub use coalestra_core::{
    AuthorityResolver, BatchOutput, BatchSource, BuildError, BuildErrorKind, BuildOptions,
    CacheError, CacheHit, CacheLookup, CacheRead, CacheStats, CacheWrite, CircuitBreakerPolicy,
    CircuitScope, Clock, CoalestraError, ConfigError, CycleError, Declarations, DerivedSource,
    Event, EventSink, Execution, FetchContext, FnBatchSource, FnDerivedSource, FnSource, Freshness,
    FreshnessPolicy, KeyError, KeyMap, KeyNormalizer, ManualClock, Metadata, MetadataValue,
    MetricsSink, NormalizeParts, NullSink, ObservationPolicy, Payload, PolicyResolver, RefreshMode,
    ResiliencePolicy, ResolutionError, ResourceError, ResourceKey, RetryPolicy, SharedClock,
    Snapshot, SnapshotCache, SnapshotDiagnostics, SnapshotParts, SnapshotRequest, SnapshotValue,
    Source, SourceAuthorityPolicy, SourceError, SourceFailure, SourceInfo, SourceOptions,
    SourceOutput, SourceRef, SystemClock, Timestamp, TypeMismatch, ValueError, ValueParts, Version,
    WriteOutcome, WriteResult,
};

#[doc(inline)]
pub use coalestra_blocking::{
    BlockingError, BlockingOptions, BlockingPublisher, BlockingSession, BlockingSnapshotBuilder,
    SubmissionBacklogFull, SubmissionError, SubmissionHandle,
};
#[doc(inline)]
pub use coalestra_cache::{
    MemoryCache, MemoryCacheConfig, PublishOptions, PublishResult, PublishStatus, PublisherConfig,
    ResourcePublisher, ResourceUpdate,
};
#[doc(inline)]
pub use coalestra_concurrency::{CapacitySnapshot, LimitSnapshot};
/// Re-exported so custom sources and caches need no extra dependency.
pub use coalestra_core::async_trait;
#[doc(inline)]
pub use coalestra_observability::{
    allowed_metric_labels, BufferConfig, BufferStats, BufferedEventSink, BufferedMetricsSink,
    CardinalityGuard, MemoryEventSink, MemoryMetricsSink, MetricsFacadeSink,
    ObservabilityShutdownTimeout, OverflowPolicy, TracingEventSink,
};
#[doc(inline)]
pub use coalestra_orchestration::{
    capabilities, require_capabilities, BufferHealth, BuilderConfig, BuilderHealth, Capabilities,
    CapabilityRequirementError, Finding, GuaranteeStatus, HealthAssessment, HealthAssessmentPolicy,
    ObservabilityBuffering, ResolveOptions, RevalidateOptions, SessionOptions, Severity,
    SnapshotBuilder, SnapshotSession, TimeoutGuarantee, ASSESSMENT_SCHEMA, HEALTH_SCHEMA,
    HEALTH_SCHEMA_VERSION,
};
#[doc(inline)]
pub use coalestra_resilience::{CircuitIdentity, CircuitState, CircuitStatus, RetryOn};

/// The items most programs need.
pub mod prelude {
    pub use crate::{
        BuildOptions, CoalestraError, FnBatchSource, FnDerivedSource, FnSource, FreshnessPolicy,
        PublishOptions, RefreshMode, ResourceKey, Snapshot, SnapshotBuilder, SnapshotRequest,
        SourceError, SourceOptions, SourceOutput, Timestamp,
    };
}

/// The API guide (`docs/public-api.md`): its examples run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/public-api.md")]
pub struct PublicApiGuide;
