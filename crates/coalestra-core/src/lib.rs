//! The core model and traits of Coalestra.
//!
//! This crate is what implementers depend on: a custom source, cache, clock
//! or sink can be written against `coalestra-core` alone. It deliberately has
//! no async runtime dependency (neither tokio nor moka); the engine lives in
//! `coalestra-orchestration` and users normally depend on the `coalestra`
//! umbrella crate.
//!
//! The main concepts:
//! - [`ResourceKey`]: the identity of a resource (`namespace:name:subject?qualifiers`).
//! - [`Payload`]: an immutable, shared value with typed access.
//! - [`SnapshotValue`] and [`Snapshot`]: what a build returns.
//! - [`FreshnessPolicy`], [`ObservationPolicy`], [`SourceAuthorityPolicy`]: the rules.
//! - [`Source`], [`BatchSource`], [`DerivedSource`]: read-only sources.
//! - [`SnapshotCache`]: a cache tier, local or remote.
//! - [`SnapshotConsistencyPolicy`], [`SnapshotAcceptancePolicy`],
//!   [`RequestDegradationPolicy`]: what a finished snapshot must meet, and
//!   how a request's outcome is classified into a [`SnapshotResult`].
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod acceptance;
pub mod adapters;
pub mod authority;
pub mod cache;
pub mod clock;
pub mod consistency;
pub mod context;
pub mod degradation;
pub mod diagnostics;
pub mod error;
pub mod freshness;
pub mod key;
pub mod metadata;
pub mod observation;
pub mod payload;
mod positions;
pub mod request;
pub mod resilience;
pub mod sink;
pub mod snapshot;
pub mod source;
pub mod value;

pub use acceptance::{
    AcceptanceReason, AcceptanceViolation, RequirementKind, ResourceAcceptanceRule,
    SnapshotAcceptancePolicy, SnapshotAcceptancePolicyBuilder, SnapshotRequirement,
};
pub use adapters::{Declarations, FnBatchSource, FnDerivedSource, FnSource, SourceOptions};
/// The attribute macro source and cache traits are written with.
pub use async_trait::async_trait;
pub use authority::{AuthorityResolver, SourceAuthorityPolicy};
pub use cache::{
    CacheError, CacheHit, CacheLookup, CacheRead, CacheStats, CacheWrite, Freshness, SnapshotCache,
    WriteOutcome, WriteResult,
};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock, Timestamp};
pub use consistency::{ConsistencyViolation, SnapshotConsistencyPolicy};
pub use context::FetchContext;
pub use degradation::{
    RequestDegradationPolicy, RequestDegradationPolicyBuilder, ResultState, SnapshotResult,
};
pub use diagnostics::SnapshotDiagnostics;
pub use error::{
    BuildError, BuildErrorKind, CoalestraError, ConfigError, CycleError, ResolutionError,
    ResourceError, SourceError, SourceFailure, TypeMismatch, ValueError,
};
pub use freshness::{FreshnessPolicy, PolicyResolver, RefreshMode};
pub use key::{KeyError, KeyMap, KeyNormalizer, NormalizeParts, ResourceKey};
pub use metadata::{Metadata, MetadataValue};
pub use observation::ObservationPolicy;
pub use payload::Payload;
pub use request::{BuildOptions, SnapshotRequest};
pub use resilience::{CircuitBreakerPolicy, CircuitScope, ResiliencePolicy, RetryPolicy};
pub use sink::{Event, EventSink, MetricsSink, NullSink};
pub use snapshot::{Snapshot, SnapshotParts};
pub use source::{
    BatchOutput, BatchSource, DerivedSource, Execution, Source, SourceInfo, SourceOutput, SourceRef,
};
pub use value::{SnapshotValue, ValueParts, Version};
