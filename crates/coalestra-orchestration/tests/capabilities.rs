//! Catalogue area 21 (capabilities manifest). Rust decisions: the manifest
//! reports `rust_version` (the MSRV) instead of Python's `python_requires`,
//! and omits the [py-only] payload-copy features
//! (`controlled_payload_copy_shutdown`, `payload_copy_health`,
//! `payload_copy_offload`).

use std::collections::BTreeMap;

use coalestra_core::{FetchContext, FnSource, ResourceKey, SourceOptions, SourceOutput};
use coalestra_orchestration::{
    capabilities, require_capabilities, CapabilityRequirementError, SnapshotBuilder,
    DEFAULT_MAX_CONCURRENCY, FEATURES, HEALTH_SCHEMA_VERSION,
};
use serde_json::Value;

/// The feature names of the Python original (B21.7).
const PYTHON_FEATURES: [&str; 16] = [
    "automatic_observability_buffering",
    "blocking_source_timeout_guarantees",
    "builder_health_assessment",
    "builder_health_serialization",
    "controlled_payload_copy_shutdown",
    "degraded_snapshot_results",
    "partitioned_request_builds",
    "payload_copy_health",
    "payload_copy_offload",
    "snapshot_acceptance",
    "snapshot_consistency",
    "snapshot_requests",
    "source_authority",
    "sync_submission_backlog",
    "transactional_revalidation",
    "versioned_error_diagnostics",
];

/// The [py-only] features a Rust build never advertises.
const PAYLOAD_COPY_FEATURES: [&str; 3] = [
    "controlled_payload_copy_shutdown",
    "payload_copy_health",
    "payload_copy_offload",
];

/// Features the Rust engine implements today.
const CORE_FEATURES: [&str; 12] = [
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

/// `[workspace.package] version` and `rust-version` of the workspace manifest.
fn workspace_package_field(field: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml");
    let manifest = std::fs::read_to_string(path).expect("the workspace manifest is readable");
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
            continue;
        }
        if !in_package {
            continue;
        }
        if let Some((name, value)) = line.split_once('=') {
            if name.trim() == field {
                return value.trim().trim_matches('"').to_owned();
            }
        }
    }
    panic!("no {field} in [workspace.package] of {path}");
}

/// B21.9: the advertised version is the crate's version, which is the
/// workspace version.
#[test]
fn package_version_is_the_crate_and_workspace_version() {
    let caps = capabilities();
    assert_eq!(caps.package_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(caps.package_version, workspace_package_field("version"));
    assert_eq!(caps.rust_version, env!("CARGO_PKG_RUST_VERSION"));
    assert_eq!(caps.rust_version, workspace_package_field("rust-version"));
    assert!(!caps.rust_version.is_empty());
}

/// B21.1: the version line, the stability marker, supported features and
/// the safety defaults.
#[test]
fn capabilities_publish_the_stable_contract() {
    let caps = capabilities();
    let mut parts = caps.package_version.split('.');
    let major = parts.next().expect("a major version");
    let minor = parts.next().expect("a minor version");
    assert_eq!(caps.api_stability, format!("{major}.{minor}"));
    let expected_stability = if major == "0" { "beta" } else { "stable" };
    assert_eq!(caps.stability, expected_stability);
    assert!(caps.supports("snapshot_acceptance"));
    assert!(caps.supports("blocking_source_timeout_guarantees"));
    assert!(!caps.supports("future-feature"));
    assert!(!caps.supports(""));
    assert_eq!(
        caps.defaults.get("allow_unsafe_blocking_sources"),
        Some(&Value::Bool(false))
    );
    assert_eq!(
        caps.defaults.get("max_concurrency"),
        Some(&Value::from(DEFAULT_MAX_CONCURRENCY))
    );
}

/// The advertised defaults are the builder's actual defaults.
#[tokio::test(start_paused = true)]
async fn advertised_defaults_match_the_builder() {
    let caps = capabilities();
    let source = || {
        FnSource::sync("blocking", |_k: &ResourceKey, _ctx: &FetchContext| {
            Ok(SourceOutput::new(1_u64))
        })
        .with_blocking_io(None)
    };
    let rejected = SnapshotBuilder::builder([source().into()]).build().is_err();
    assert_eq!(
        caps.defaults.get("allow_unsafe_blocking_sources"),
        Some(&Value::Bool(!rejected)),
        "unsafe blocking sources are rejected by default"
    );
    let plain = FnSource::new("rest", |_k: ResourceKey, _ctx: FetchContext| async {
        Ok(SourceOutput::new(1_u64))
    });
    let builder = SnapshotBuilder::builder([plain.into()])
        .build()
        .expect("a valid builder");
    assert_eq!(
        caps.defaults.get("max_concurrency"),
        Some(&Value::from(builder.capacity().global.limit))
    );
}

/// B21.2, B21.5: the JSON form is versioned, has exactly the documented
/// fields, and survives a JSON round trip.
#[test]
fn capabilities_json_is_versioned_and_lossless() {
    let caps = capabilities();
    let json = caps.to_json();

    assert_eq!(json["schema"], "coalestra.capabilities");
    assert_eq!(json["schema_version"], 1);
    let mut fields: Vec<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "api_stability",
            "defaults",
            "features",
            "package_version",
            "rust_version",
            "schema",
            "schema_version",
            "schemas",
            "stability",
        ]
    );
    assert_eq!(json["package_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(json["rust_version"], env!("CARGO_PKG_RUST_VERSION"));
    assert_eq!(
        json["schemas"],
        serde_json::json!({
            "builder_health": 1,
            "builder_health_assessment": 1,
            "capabilities": 1,
            "error_diagnostics": 1,
        })
    );
    assert_eq!(json["defaults"]["allow_unsafe_blocking_sources"], false);
    let features: Vec<&str> = json["features"]
        .as_array()
        .expect("a feature list")
        .iter()
        .map(|f| f.as_str().expect("feature names are strings"))
        .collect();
    assert_eq!(features, caps.features);

    let text = serde_json::to_string(&json).expect("encodes");
    let back: Value = serde_json::from_str(&text).expect("decodes");
    assert_eq!(back, json);
}

/// The advertised schema versions are the ones the library writes.
#[tokio::test(start_paused = true)]
async fn advertised_schema_versions_match_the_documents_written() {
    let caps = capabilities();
    let source = FnSource::new("rest", |_k: ResourceKey, _ctx: FetchContext| async {
        Ok(SourceOutput::new(1_u64))
    });
    let health = SnapshotBuilder::builder([source.into()])
        .build()
        .expect("a valid builder")
        .health()
        .to_json();
    assert_eq!(
        caps.schemas.get("builder_health"),
        Some(&HEALTH_SCHEMA_VERSION)
    );
    assert_eq!(
        health["schema_version"],
        Value::from(caps.schemas["builder_health"])
    );
    assert_eq!(
        health["assessment"]["schema_version"],
        Value::from(caps.schemas["builder_health_assessment"])
    );
    assert_eq!(
        caps.schemas.get("error_diagnostics"),
        Some(&coalestra_core::error::ERROR_SCHEMA_VERSION)
    );
    assert_eq!(
        caps.to_json()["schema_version"],
        Value::from(caps.schemas["capabilities"])
    );
}

/// B21.6, B21.7: feature names are non-empty, unique and sorted; the Rust
/// list is the Python list without the payload-copy features.
#[test]
fn feature_names_are_sorted_unique_and_exclude_payload_copy() {
    let caps = capabilities();
    assert_eq!(caps.features, FEATURES);
    assert!(caps.features.iter().all(|f| !f.is_empty()));
    let mut sorted = caps.features.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, caps.features, "unique and sorted");
    for feature in &caps.features {
        assert!(
            PYTHON_FEATURES.contains(feature),
            "{feature} is not a stable feature name of the original"
        );
    }
    for feature in PAYLOAD_COPY_FEATURES {
        assert!(!caps.supports(feature), "{feature} is py-only");
    }
    for feature in CORE_FEATURES {
        assert!(caps.supports(feature), "{feature} must be advertised");
    }
    assert!(caps.schemas.values().all(|v| *v >= 1));
}

/// B21.3: a supported contract is accepted and returns the installed
/// capabilities.
#[test]
fn supported_requirements_return_the_installed_capabilities() {
    let caps = require_capabilities(
        &[
            "builder_health_serialization",
            "snapshot_acceptance",
            "transactional_revalidation",
        ],
        &[("builder_health", 1), ("error_diagnostics", 1)],
    )
    .expect("the contract is supported");
    assert_eq!(caps.package_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(caps, capabilities());
    let everything: Vec<&str> = FEATURES.to_vec();
    let schemas: Vec<(&str, u32)> = capabilities().schemas.into_iter().collect();
    assert!(require_capabilities(&everything, &schemas).is_ok());
    assert!(require_capabilities(&[], &[]).is_ok());
}

/// B21.4, B21.8: a missing feature and a too-recent schema are both reported
/// in the error and in its message.
#[test]
fn missing_requirements_are_reported_with_a_clear_message() {
    let error: CapabilityRequirementError =
        require_capabilities(&["future-feature"], &[("builder_health", 999)])
            .expect_err("the contract is not supported");

    assert_eq!(error.missing_features, ["future-feature"]);
    let mut expected = BTreeMap::new();
    expected.insert("builder_health".to_owned(), (999, Some(1)));
    assert_eq!(error.schema_mismatches, expected);
    let message = error.to_string();
    assert!(
        message.contains("capability requirements were not met"),
        "{message}"
    );
    assert!(
        message.contains("missing features: future-feature"),
        "{message}"
    );
    assert!(
        message.contains("schema requirements: builder_health>=999 (installed=1)"),
        "{message}"
    );
}

/// B21.6: missing features are sorted and de-duplicated; an unknown schema
/// is a mismatch with no installed version; each part of the message says
/// "none" when nothing is missing there.
#[test]
fn requirement_errors_are_sorted_deduplicated_and_name_unknown_schemas() {
    let error = require_capabilities(
        &[
            "zeta-feature",
            "snapshot_acceptance",
            "alpha-feature",
            "zeta-feature",
        ],
        &[],
    )
    .expect_err("two features are missing");
    assert_eq!(error.missing_features, ["alpha-feature", "zeta-feature"]);
    assert!(error.schema_mismatches.is_empty());
    let message = error.to_string();
    assert!(
        message.contains("missing features: alpha-feature, zeta-feature"),
        "{message}"
    );
    assert!(message.contains("schema requirements: none"), "{message}");

    let error = require_capabilities(&["snapshot_acceptance"], &[("quantum_state", 1)])
        .expect_err("an unknown schema");
    assert!(error.missing_features.is_empty());
    assert_eq!(
        error.schema_mismatches.get("quantum_state"),
        Some(&(1, None))
    );
    let message = error.to_string();
    assert!(message.contains("missing features: none"), "{message}");
    assert!(
        message.contains("quantum_state>=1 (installed=none)"),
        "{message}"
    );
}

/// The capability list is defined once (`FEATURES`) and the public API guide
/// documents exactly that list.
#[test]
fn every_feature_is_documented_and_nothing_else() {
    let guide = include_str!("../../../docs/public-api.md");
    let documented: Vec<&str> = guide
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |").map(|(name, _)| name))
        .filter(|name| name.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect();
    let features: Vec<&str> = coalestra_orchestration::FEATURES.to_vec();
    assert_eq!(documented, features, "docs/public-api.md feature table");
}
