//! The capability contract: what this build of the library offers, so that
//! integrations can check it at start-up.

use std::collections::BTreeMap;

use serde::Serialize;

/// Stable feature names, sorted.
pub const FEATURES: &[&str] = &[
    "automatic_observability_buffering",
    "blocking_source_timeout_guarantees",
    "builder_health_assessment",
    "builder_health_serialization",
    "degraded_snapshot_results",
    "partitioned_request_builds",
    "snapshot_acceptance",
    "snapshot_consistency",
    "snapshot_requests",
    "source_authority",
    "sync_submission_backlog",
    "transactional_revalidation",
    "versioned_error_diagnostics",
];

/// What the installed library supports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capabilities {
    /// Always `coalestra.capabilities`.
    pub schema: &'static str,
    /// Always 1.
    pub schema_version: u32,
    /// The crate version.
    pub package_version: &'static str,
    /// The API stability line (major.minor).
    pub api_stability: String,
    /// The minimum supported Rust version.
    pub rust_version: &'static str,
    /// `beta` before 1.0, `stable` after.
    pub stability: &'static str,
    /// Stable feature names.
    pub features: Vec<&'static str>,
    /// Schema versions by schema name.
    pub schemas: BTreeMap<&'static str, u32>,
    /// Safety defaults.
    pub defaults: BTreeMap<&'static str, serde_json::Value>,
}

impl Capabilities {
    /// Whether a feature is supported.
    pub fn supports(&self, feature: &str) -> bool {
        self.features.contains(&feature)
    }

    /// The JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// The installed capabilities.
pub fn capabilities() -> Capabilities {
    let version = env!("CARGO_PKG_VERSION");
    let api = version.splitn(3, '.').take(2).collect::<Vec<_>>().join(".");
    let mut schemas = BTreeMap::new();
    schemas.insert("builder_health", crate::health::HEALTH_SCHEMA_VERSION);
    schemas.insert("builder_health_assessment", 1);
    schemas.insert("capabilities", 1);
    schemas.insert(
        "error_diagnostics",
        coalestra_core::error::ERROR_SCHEMA_VERSION,
    );
    let mut defaults = BTreeMap::new();
    defaults.insert(
        "allow_unsafe_blocking_sources",
        serde_json::Value::Bool(false),
    );
    defaults.insert(
        "max_concurrency",
        serde_json::Value::from(crate::config::DEFAULT_MAX_CONCURRENCY),
    );
    Capabilities {
        schema: "coalestra.capabilities",
        schema_version: 1,
        package_version: version,
        api_stability: api,
        rust_version: env!("CARGO_PKG_RUST_VERSION"),
        stability: if version.starts_with("0.") {
            "beta"
        } else {
            "stable"
        },
        features: FEATURES.to_vec(),
        schemas,
        defaults,
    }
}

/// Missing capabilities.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("coalestra capability requirements were not met (missing features: {}; schema requirements: {})", if missing_features.is_empty() { "none".to_owned() } else { missing_features.join(", ") }, render_schemas(schema_mismatches))]
#[non_exhaustive]
pub struct CapabilityRequirementError {
    /// Features not supported, sorted.
    pub missing_features: Vec<String>,
    /// Schemas below the required version: name → (required, installed).
    pub schema_mismatches: BTreeMap<String, (u32, Option<u32>)>,
}

fn render_schemas(m: &BTreeMap<String, (u32, Option<u32>)>) -> String {
    if m.is_empty() {
        return "none".to_owned();
    }
    m.iter()
        .map(|(name, (min, cur))| match cur {
            Some(cur) => format!("{name}>={min} (installed={cur})"),
            None => format!("{name}>={min} (installed=none)"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that the installed library supports `features` and at least the
/// given schema versions.
pub fn require_capabilities(
    features: &[&str],
    schemas: &[(&str, u32)],
) -> Result<Capabilities, CapabilityRequirementError> {
    let caps = capabilities();
    let mut missing: Vec<String> = features
        .iter()
        .filter(|f| !caps.supports(f))
        .map(|f| (*f).to_owned())
        .collect();
    missing.sort();
    missing.dedup();
    let mut mismatches = BTreeMap::new();
    for (name, min) in schemas {
        let current = caps.schemas.get(name).copied();
        if *min < 1 || current.is_none_or(|c| c < *min) {
            mismatches.insert((*name).to_owned(), (*min, current));
        }
    }
    if missing.is_empty() && mismatches.is_empty() {
        Ok(caps)
    } else {
        Err(CapabilityRequirementError {
            missing_features: missing,
            schema_mismatches: mismatches,
        })
    }
}
