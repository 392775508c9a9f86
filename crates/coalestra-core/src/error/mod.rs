//! Errors: what sources report ([`SourceError`]), what a resource failed with
//! ([`ResourceError`]), what a build fails with ([`BuildError`]), and
//! configuration errors ([`ConfigError`]).
//!
//! Every error is `#[non_exhaustive]`, renders a lowercase message without a
//! final period, and offers `is_*()` predicates. Errors shared by coalesced
//! waiters are cheap to clone (`Arc` inside). [`BuildError::to_json`] and
//! friends produce the versioned diagnostics schema.

mod json;
mod policy;
mod render;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::acceptance::AcceptanceViolation;
use crate::consistency::ConsistencyViolation;
use crate::key::{KeyError, ResourceKey};
use crate::snapshot::Snapshot;

pub use json::{
    ErrorDiagnostics, ResourceErrorDiagnostics, SourceFailureDiagnostics, ERROR_SCHEMA,
    ERROR_SCHEMA_VERSION,
};

/// Invalid configuration or input, reported at construction or call time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A number is NaN or infinite.
    #[error("{field} must be finite")]
    NotFinite {
        /// The offending field.
        field: &'static str,
    },
    /// A number is negative.
    #[error("{field} cannot be negative")]
    Negative {
        /// The offending field.
        field: &'static str,
    },
    /// A count or duration is zero.
    #[error("{field} must be at least 1")]
    Zero {
        /// The offending field.
        field: &'static str,
    },
    /// A name is empty.
    #[error("{field} cannot be empty")]
    Empty {
        /// The offending field.
        field: &'static str,
    },
    /// Any other rule.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The offending field.
        field: &'static str,
        /// What rule it breaks.
        reason: String,
    },
}

impl ConfigError {
    /// An `Invalid` error.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            reason: reason.into(),
        }
    }
}

/// A payload is not of the requested type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}contains {found}, expected {expected}", resource.as_ref().map(|r| format!("resource {r} ")).unwrap_or_default())]
pub struct TypeMismatch {
    /// The requested type.
    pub expected: &'static str,
    /// The stored type.
    pub found: &'static str,
    /// The resource, when known.
    pub resource: Option<String>,
}

impl TypeMismatch {
    /// The same mismatch naming a resource.
    pub fn for_resource(mut self, key: &ResourceKey) -> Self {
        self.resource = Some(key.to_string());
        self
    }
}

/// What a source (or the engine on its behalf) reports for one attempt.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// The backend is unavailable (transient).
    #[error("{message}")]
    Unavailable {
        /// Details.
        message: Arc<str>,
    },
    /// The source call exceeded its timeout budget.
    #[error("source {source_name} timed out after {:.3}s{}", budget.as_secs_f64(), resource.as_ref().map(|r| format!(" while resolving {r}")).unwrap_or_default())]
    Timeout {
        /// The source.
        source_name: Arc<str>,
        /// The budget that elapsed.
        budget: Duration,
        /// The resource being resolved, if one.
        resource: Option<ResourceKey>,
    },
    /// Waiting for capacity took longer than the source's queue timeout.
    #[error("source {source_name} waited more than {:.3}s for capacity", timeout.as_secs_f64())]
    QueueTimeout {
        /// The source.
        source_name: Arc<str>,
        /// The queue timeout.
        timeout: Duration,
    },
    /// The snapshot deadline passed.
    #[error("snapshot deadline exceeded {phase}")]
    DeadlineExceeded {
        /// What was happening (for example `before source call`).
        phase: Arc<str>,
    },
    /// The circuit for this source and key is open.
    #[error("{message}")]
    CircuitOpen {
        /// The rendered circuit identity.
        identity: Arc<str>,
        /// Details.
        message: Arc<str>,
    },
    /// The source broke its contract (wrong keys, bad shape).
    #[error("{message}")]
    Protocol {
        /// Details.
        message: Arc<str>,
    },
    /// The observation time was rejected (too far in the future).
    #[error("{message}")]
    InvalidTimestamp {
        /// Details.
        message: Arc<str>,
    },
    /// The returned value was older than the TTL.
    #[error("stale source data: age {:.3}s exceeds ttl {:.3}s", age.as_secs_f64(), ttl.as_secs_f64())]
    StaleData {
        /// The value's age.
        age: Duration,
        /// The TTL.
        ttl: Duration,
    },
    /// A derived value's dependencies could not be resolved.
    #[error("{message}")]
    Dependency {
        /// Details.
        message: Arc<str>,
        /// Whether the cause is a dependency cycle.
        cycle: Option<CycleError>,
    },
    /// The source panicked.
    #[error("source panicked: {message}")]
    Panicked {
        /// The panic message.
        message: Arc<str>,
    },
    /// Any other error, with its own type name.
    #[error("{message}")]
    Other {
        /// A stable type name for diagnostics (for example `ConnectTimeout`).
        error_type: Arc<str>,
        /// Details.
        message: Arc<str>,
        /// Whether retrying may help.
        transient: bool,
    },
}

impl SourceError {
    /// A transient "backend unavailable" error.
    pub fn unavailable(message: impl fmt::Display) -> Self {
        Self::Unavailable {
            message: message.to_string().into(),
        }
    }

    /// A contract violation by the source.
    pub fn protocol(message: impl fmt::Display) -> Self {
        Self::Protocol {
            message: message.to_string().into(),
        }
    }

    /// An error with its own type name; `transient` decides retries.
    pub fn custom(
        error_type: impl Into<Arc<str>>,
        message: impl fmt::Display,
        transient: bool,
    ) -> Self {
        Self::Other {
            error_type: error_type.into(),
            message: message.to_string().into(),
            transient,
        }
    }

    /// Wraps any error; its Rust type name (last path segment) becomes the
    /// diagnostic type.
    pub fn from_error<E: std::error::Error>(error: &E, transient: bool) -> Self {
        let full = std::any::type_name::<E>();
        let short = full.rsplit("::").next().unwrap_or(full);
        Self::custom(short, error, transient)
    }

    /// A deadline error for `phase`.
    pub fn deadline(phase: impl fmt::Display) -> Self {
        Self::DeadlineExceeded {
            phase: phase.to_string().into(),
        }
    }

    /// The stable diagnostic type name.
    pub fn error_type(&self) -> &str {
        match self {
            Self::Unavailable { .. } => "SourceUnavailableError",
            Self::Timeout { .. } => "SourceTimeoutError",
            Self::QueueTimeout { .. } => "SourceQueueTimeoutError",
            Self::DeadlineExceeded { .. } => "SnapshotDeadlineExceededError",
            Self::CircuitOpen { .. } => "CircuitOpenError",
            Self::Protocol { .. } => "SourceProtocolError",
            Self::InvalidTimestamp { .. } => "SourceProtocolError",
            Self::StaleData { .. } => "StaleSourceData",
            Self::Dependency { .. } => "DependencyResolutionError",
            Self::Panicked { .. } => "SourcePanicError",
            Self::Other { error_type, .. } => error_type,
        }
    }

    /// Whether retrying the same source may succeed: unavailability, source
    /// timeouts and custom errors marked transient. Queue timeouts, deadline
    /// errors and open circuits are not retried.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Unavailable { .. } | Self::Timeout { .. } => true,
            Self::Other { transient, .. } => *transient,
            _ => false,
        }
    }

    /// The opposite of [`SourceError::is_transient`].
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }

    /// Whether this is a source timeout.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Self::Timeout { .. })
    }

    /// Whether this is a capacity queue timeout.
    pub fn is_queue_timeout(&self) -> bool {
        matches!(self, Self::QueueTimeout { .. })
    }

    /// Whether this is a snapshot deadline error.
    pub fn is_deadline_exceeded(&self) -> bool {
        matches!(self, Self::DeadlineExceeded { .. })
    }

    /// Whether the call was skipped because a circuit is open.
    pub fn is_circuit_open(&self) -> bool {
        matches!(self, Self::CircuitOpen { .. })
    }

    /// Whether the source returned data older than the TTL.
    pub fn is_stale_data(&self) -> bool {
        matches!(self, Self::StaleData { .. })
    }

    /// Whether the source panicked.
    pub fn is_panic(&self) -> bool {
        matches!(self, Self::Panicked { .. })
    }

    /// Whether the failure says nothing about the source's health (queue
    /// timeout, deadline, open circuit, dependency failure): such outcomes do
    /// not charge a circuit breaker.
    pub fn is_skipped_outcome(&self) -> bool {
        matches!(
            self,
            Self::QueueTimeout { .. }
                | Self::DeadlineExceeded { .. }
                | Self::CircuitOpen { .. }
                | Self::Dependency { .. }
        )
    }
}

/// One source's failure for one resource.
#[derive(Debug, Clone)]
pub struct SourceFailure {
    /// The source name (`snapshot` for engine-level failures).
    pub source: Arc<str>,
    /// What went wrong.
    pub error: SourceError,
    /// Attempts used (0 when the source was never called).
    pub attempts: u32,
}

impl SourceFailure {
    /// A failure after `attempts` attempts.
    pub fn new(source: impl Into<Arc<str>>, error: SourceError, attempts: u32) -> Self {
        Self {
            source: source.into(),
            error,
            attempts,
        }
    }
}

impl fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}({}; attempts={})",
            self.source,
            self.error.error_type(),
            render::compact(&self.error.to_string(), 300),
            self.attempts
        )
    }
}

/// A derived resource's dependencies form a cycle.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "derived resource dependency cycle detected: {}",
    render::join_keys(path)
)]
pub struct CycleError {
    /// The cycle, first key repeated at the end (`a -> b -> a`).
    pub path: Arc<[ResourceKey]>,
}

/// A resource could not be resolved by any source.
#[derive(Debug, Clone)]
pub struct ResolutionError {
    /// The resource.
    pub key: ResourceKey,
    /// Every source failure, in the order sources were tried.
    pub failures: Vec<SourceFailure>,
}

impl fmt::Display for ResolutionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unable to resolve {}: ", self.key)?;
        render::failures(f, &self.failures)
    }
}

impl std::error::Error for ResolutionError {}

/// Why one resource is missing from (or unacceptable in) a snapshot.
///
/// Cheap to clone: coalesced waiters share one error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ResourceError {
    /// No source could resolve it.
    #[error("{0}")]
    Unresolved(Arc<ResolutionError>),
    /// It resolved but an acceptance rule rejected it.
    #[error("resource {key} rejected ({reason}): {message}")]
    Rejected {
        /// The resource.
        key: ResourceKey,
        /// A stable reason (`stale`, `too_old`, `insufficient_authority`, ...).
        reason: Arc<str>,
        /// Details.
        message: Arc<str>,
    },
    /// Any other failure.
    #[error("{message}")]
    Other {
        /// The resource.
        key: ResourceKey,
        /// A stable type name.
        error_type: Arc<str>,
        /// Details.
        message: Arc<str>,
    },
}

impl ResourceError {
    /// A resolution error from failures.
    pub fn unresolved(key: ResourceKey, failures: Vec<SourceFailure>) -> Self {
        Self::Unresolved(Arc::new(ResolutionError { key, failures }))
    }

    /// The resource concerned.
    pub fn key(&self) -> &ResourceKey {
        match self {
            Self::Unresolved(e) => &e.key,
            Self::Rejected { key, .. } | Self::Other { key, .. } => key,
        }
    }

    /// The source failures (empty unless unresolved).
    pub fn failures(&self) -> &[SourceFailure] {
        match self {
            Self::Unresolved(e) => &e.failures,
            _ => &[],
        }
    }

    /// The stable diagnostic type name.
    pub fn error_type(&self) -> &str {
        match self {
            Self::Unresolved(_) => "ResourceResolutionError",
            Self::Rejected { .. } => "ResourceAcceptanceError",
            Self::Other { error_type, .. } => error_type,
        }
    }

    /// Whether every failure is a deadline error (and there is at least one).
    pub fn is_deadline_exceeded(&self) -> bool {
        let failures = self.failures();
        !failures.is_empty() && failures.iter().all(|f| f.error.is_deadline_exceeded())
    }

    /// Whether no source supported the resource.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Self::Unresolved(e) if e.failures.is_empty())
    }

    /// Whether a retry later may succeed (some failure was transient, a
    /// timeout or a deadline).
    pub fn is_transient(&self) -> bool {
        self.failures().iter().any(|f| {
            f.error.is_transient()
                || f.error.is_deadline_exceeded()
                || f.error.is_queue_timeout()
                || f.error.is_circuit_open()
        })
    }
}

/// Which contract a failed build broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum BuildErrorKind {
    /// Required resources failed.
    Resolution,
    /// The snapshot broke its consistency policy.
    Consistency,
    /// The snapshot broke its acceptance policy.
    Acceptance,
}

impl BuildErrorKind {
    /// The stable diagnostic type name.
    pub fn error_type(self) -> &'static str {
        match self {
            Self::Resolution => "SnapshotBuildError",
            Self::Consistency => "SnapshotConsistencyError",
            Self::Acceptance => "SnapshotAcceptanceError",
        }
    }
}

/// A failed build: the per-resource errors and, when available, the partial
/// snapshot with every value already resolved.
#[derive(Debug, Clone)]
pub struct BuildError {
    kind: BuildErrorKind,
    errors: Vec<ResourceError>,
    snapshot: Option<Snapshot>,
    detail: Option<Arc<str>>,
    violation: Option<PolicyViolation>,
}

/// The policy verdict a consistency or acceptance error carries.
#[derive(Debug, Clone)]
enum PolicyViolation {
    Consistency(Box<ConsistencyViolation>),
    Acceptance(Arc<[AcceptanceViolation]>),
}

impl BuildError {
    /// A build error.
    pub fn new(
        kind: BuildErrorKind,
        errors: Vec<ResourceError>,
        snapshot: Option<Snapshot>,
    ) -> Self {
        Self {
            kind,
            errors,
            snapshot,
            detail: None,
            violation: None,
        }
    }

    /// The same error with a detail line (used by consistency errors).
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Arc<str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// Which contract was broken.
    pub fn kind(&self) -> BuildErrorKind {
        self.kind
    }

    /// The per-resource errors, in request order.
    pub fn errors(&self) -> &[ResourceError] {
        &self.errors
    }

    /// The error of one resource.
    pub fn error(&self, key: &ResourceKey) -> Option<&ResourceError> {
        self.errors.iter().find(|e| e.key() == key)
    }

    /// The partial snapshot, when one could be delivered.
    pub fn snapshot(&self) -> Option<&Snapshot> {
        self.snapshot.as_ref()
    }

    /// Takes the partial snapshot out.
    pub fn into_snapshot(self) -> Option<Snapshot> {
        self.snapshot
    }

    /// Whether every resource failed on the deadline.
    pub fn is_deadline_exceeded(&self) -> bool {
        !self.errors.is_empty() && self.errors.iter().all(ResourceError::is_deadline_exceeded)
    }

    /// Whether retrying the build later may succeed.
    pub fn is_transient(&self) -> bool {
        self.errors.iter().any(ResourceError::is_transient)
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        render::build_error(f, self)
    }
}

impl std::error::Error for BuildError {}

/// An error reading a value out of a snapshot.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The resource is not in the snapshot.
    #[error("resource {0} is not in the snapshot")]
    Missing(ResourceKey),
    /// The resource failed to resolve.
    #[error("resource {} failed: {}", .0.key(), .0)]
    Failed(ResourceError),
    /// The payload is of another type.
    #[error(transparent)]
    TypeMismatch(#[from] TypeMismatch),
}

impl ValueError {
    /// Whether the resource is absent.
    pub fn is_missing(&self) -> bool {
        matches!(self, Self::Missing(_))
    }
    /// Whether the payload type was wrong.
    pub fn is_type_mismatch(&self) -> bool {
        matches!(self, Self::TypeMismatch(_))
    }
}

/// The error of every fallible library operation.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum CoalestraError {
    /// A build failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Bad configuration or input.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key was invalid.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// A cache operation failed.
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// A source protocol rule was broken (for example a rejected timestamp).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The builder, session or facade is closed.
    #[error("{0} is closed")]
    Closed(&'static str),
    /// A request was malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(Arc<str>),
}

impl CoalestraError {
    /// Whether this is a closed-object error.
    pub fn is_closed(&self) -> bool {
        matches!(self, Self::Closed(_))
    }
    /// Whether this is a build failure.
    pub fn is_build(&self) -> bool {
        matches!(self, Self::Build(_))
    }
    /// Whether this is a configuration error.
    pub fn is_config(&self) -> bool {
        matches!(self, Self::Config(_))
    }
    /// The build error, if this is one.
    pub fn as_build(&self) -> Option<&BuildError> {
        match self {
            Self::Build(e) => Some(e),
            _ => None,
        }
    }
}
