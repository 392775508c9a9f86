//! The acquisition engine of Coalestra: [`SnapshotBuilder`].
//!
//! A build resolves every requested key through, in order: one batch cache
//! read with the key's freshness policy, a single-flight reservation shared
//! by every build of the builder, then the sources in descending priority
//! (single, batch, derived). Fresh results are written back through the
//! cache's atomic authority-aware write. Shared fetches run detached from the
//! caller, so cancelling one caller never cancels work others wait for.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod assessment;
mod attempt;
mod builder;
mod cache_read;
mod capabilities;
mod catalog;
mod chain;
mod config;
mod degradation;
mod derive;
mod emit;
mod engine;
mod evaluate;
mod flight;
mod guarantee;
mod health;
mod invoke;
mod job;
mod owned;
mod refresh;
mod resolve;
mod revalidate;
mod session;
mod stats;
mod tasks;

pub use assessment::{
    Finding, HealthAssessment, HealthAssessmentPolicy, Severity, ASSESSMENT_SCHEMA,
};
pub use builder::SnapshotBuilder;
pub use capabilities::{
    capabilities, require_capabilities, Capabilities, CapabilityRequirementError, FEATURES,
};
pub use config::{
    BuilderConfig, ObservabilityBuffering, DEFAULT_MAX_CONCURRENCY, DEFAULT_SUPPORT_CACHE_ENTRIES,
};
pub use guarantee::{GuaranteeStatus, TimeoutGuarantee};
pub use health::{BufferHealth, BuilderHealth, HEALTH_SCHEMA, HEALTH_SCHEMA_VERSION};
pub use revalidate::RevalidateOptions;
pub use session::{ResolveOptions, SessionOptions, SnapshotSession};
