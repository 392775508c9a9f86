//! The versioned error-diagnostics schema (`coalestra.error-diagnostics`, v1).
//!
//! Consumers must reject unknown schema names and ignore unknown fields.

use serde::Serialize;

use super::render::compact;
use super::{BuildError, ResolutionError, ResourceError, SourceFailure};

/// The schema name.
pub const ERROR_SCHEMA: &str = "coalestra.error-diagnostics";
/// The schema version.
pub const ERROR_SCHEMA_VERSION: u32 = 1;
const MESSAGE_LIMIT: usize = 300;

/// One source failure, serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceFailureDiagnostics {
    /// Always [`ERROR_SCHEMA`].
    pub schema: &'static str,
    /// Always [`ERROR_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The source.
    pub source: String,
    /// The stable type name.
    pub error_type: String,
    /// The compacted message (at most 300 characters).
    pub message: String,
    /// Attempts used.
    pub attempts: u32,
}

/// One resource error, serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceErrorDiagnostics {
    /// Always [`ERROR_SCHEMA`].
    pub schema: &'static str,
    /// Always [`ERROR_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The rendered resource key.
    pub resource: String,
    /// The stable type name.
    pub error_type: String,
    /// The compacted message.
    pub message: String,
    /// Source failures (empty for non-resolution errors).
    pub failures: Vec<SourceFailureDiagnostics>,
}

/// A build error, serialized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorDiagnostics {
    /// Always [`ERROR_SCHEMA`].
    pub schema: &'static str,
    /// Always [`ERROR_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `SnapshotBuildError`, `SnapshotConsistencyError` or `SnapshotAcceptanceError`.
    pub error_type: String,
    /// The compacted message.
    pub message: String,
    /// Whether the error carries a partial snapshot.
    pub partial_snapshot_available: bool,
    /// Alias of `partial_snapshot_available`, always equal.
    pub has_partial_snapshot: bool,
    /// Per-resource errors, in error order.
    pub errors: Vec<ResourceErrorDiagnostics>,
}

impl SourceFailure {
    /// The serialized form.
    pub fn diagnostics(&self) -> SourceFailureDiagnostics {
        SourceFailureDiagnostics {
            schema: ERROR_SCHEMA,
            schema_version: ERROR_SCHEMA_VERSION,
            source: self.source.to_string(),
            error_type: self.error.error_type().to_owned(),
            message: compact(&self.error.to_string(), MESSAGE_LIMIT),
            attempts: self.attempts,
        }
    }

    /// The serialized form as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        to_value(&self.diagnostics())
    }
}

impl ResourceError {
    /// The serialized form.
    pub fn diagnostics(&self) -> ResourceErrorDiagnostics {
        ResourceErrorDiagnostics {
            schema: ERROR_SCHEMA,
            schema_version: ERROR_SCHEMA_VERSION,
            resource: self.key().to_string(),
            error_type: self.error_type().to_owned(),
            message: compact(&self.to_string(), MESSAGE_LIMIT),
            failures: self
                .failures()
                .iter()
                .map(SourceFailure::diagnostics)
                .collect(),
        }
    }

    /// The serialized form as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        to_value(&self.diagnostics())
    }
}

impl ResolutionError {
    /// The serialized form as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        ResourceError::Unresolved(std::sync::Arc::new(self.clone())).to_json()
    }
}

impl BuildError {
    /// The serialized form.
    pub fn diagnostics(&self) -> ErrorDiagnostics {
        let partial = self.snapshot().is_some();
        ErrorDiagnostics {
            schema: ERROR_SCHEMA,
            schema_version: ERROR_SCHEMA_VERSION,
            error_type: self.kind().error_type().to_owned(),
            message: compact(&self.to_string(), MESSAGE_LIMIT),
            partial_snapshot_available: partial,
            has_partial_snapshot: partial,
            errors: self
                .errors()
                .iter()
                .map(ResourceError::diagnostics)
                .collect(),
        }
    }

    /// The serialized form as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        to_value(&self.diagnostics())
    }
}

fn to_value<T: Serialize>(value: &T) -> serde_json::Value {
    // The diagnostics types hold only strings, integers, booleans and lists,
    // for which serialization cannot fail.
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}
