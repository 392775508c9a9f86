//! Error classification, rendering and the versioned JSON diagnostics.

use std::sync::Arc;
use std::time::Duration;

use coalestra_core::error::{ERROR_SCHEMA, ERROR_SCHEMA_VERSION};
use coalestra_core::{
    BuildError, BuildErrorKind, CoalestraError, ConfigError, CycleError, ResolutionError,
    ResourceError, ResourceKey, Snapshot, SourceError, SourceFailure, Timestamp,
};
use serde_json::{json, Value};

fn key(text: &str) -> ResourceKey {
    ResourceKey::parse(text).unwrap()
}

fn dependency_error() -> SourceError {
    SourceError::Dependency {
        message: "dependency failed".into(),
        cycle: None,
    }
}

/// One error of every variant with its diagnostic type name, transience and
/// "skipped outcome" classification.
fn catalogue() -> Vec<(SourceError, &'static str, bool, bool)> {
    vec![
        (
            SourceError::unavailable("down"),
            "SourceUnavailableError",
            true,
            false,
        ),
        (
            SourceError::Timeout {
                source_name: "rest".into(),
                budget: Duration::from_millis(10),
                resource: None,
            },
            "SourceTimeoutError",
            true,
            false,
        ),
        (
            SourceError::QueueTimeout {
                source_name: "rest".into(),
                timeout: Duration::from_millis(250),
            },
            "SourceQueueTimeoutError",
            false,
            true,
        ),
        (
            SourceError::deadline("before source call"),
            "SnapshotDeadlineExceededError",
            false,
            true,
        ),
        (
            SourceError::CircuitOpen {
                identity: "rest[source]".into(),
                message: "circuit open".into(),
            },
            "CircuitOpenError",
            false,
            true,
        ),
        (
            SourceError::protocol("bad shape"),
            "SourceProtocolError",
            false,
            false,
        ),
        (
            SourceError::InvalidTimestamp {
                message: "in the future".into(),
            },
            "SourceProtocolError",
            false,
            false,
        ),
        (
            SourceError::StaleData {
                age: Duration::from_secs(5),
                ttl: Duration::from_secs(1),
            },
            "StaleSourceData",
            false,
            false,
        ),
        (dependency_error(), "DependencyResolutionError", false, true),
        (
            SourceError::Panicked {
                message: "boom".into(),
            },
            "SourcePanicError",
            false,
            false,
        ),
        (
            SourceError::custom("ConnectTimeout", "tls", true),
            "ConnectTimeout",
            true,
            false,
        ),
        (
            SourceError::custom("ValueError", "bad", false),
            "ValueError",
            false,
            false,
        ),
    ]
}

#[test]
fn source_errors_have_stable_type_names_and_classifications() {
    for (error, error_type, transient, skipped) in catalogue() {
        assert_eq!(error.error_type(), error_type, "{error:?}");
        assert_eq!(error.is_transient(), transient, "{error:?}");
        assert_eq!(error.is_permanent(), !transient, "{error:?}");
        assert_eq!(error.is_skipped_outcome(), skipped, "{error:?}");
    }
}

#[test]
fn source_error_predicates_match_exactly_one_variant() {
    let errors = catalogue();
    let count =
        |predicate: fn(&SourceError) -> bool| errors.iter().filter(|e| predicate(&e.0)).count();
    assert_eq!(count(SourceError::is_timeout), 1);
    assert_eq!(count(SourceError::is_queue_timeout), 1);
    assert_eq!(count(SourceError::is_deadline_exceeded), 1);
    assert_eq!(count(SourceError::is_circuit_open), 1);
    assert_eq!(count(SourceError::is_stale_data), 1);
    assert_eq!(count(SourceError::is_panic), 1);
    assert!(errors[1].0.is_timeout() && errors[2].0.is_queue_timeout());
}

#[test]
fn source_errors_render_lowercase_messages_with_their_budgets() {
    let timeout = SourceError::Timeout {
        source_name: "rest".into(),
        budget: Duration::from_millis(10),
        resource: Some(key("ns:k")),
    };
    assert_eq!(
        timeout.to_string(),
        "source rest timed out after 0.010s while resolving ns:k"
    );
    let rendered: Vec<String> = catalogue().iter().map(|(e, ..)| e.to_string()).collect();
    assert_eq!(rendered[1], "source rest timed out after 0.010s");
    assert_eq!(
        rendered[2],
        "source rest waited more than 0.250s for capacity"
    );
    assert_eq!(rendered[3], "snapshot deadline exceeded before source call");
    assert_eq!(
        rendered[7],
        "stale source data: age 5.000s exceeds ttl 1.000s"
    );
    assert_eq!(rendered[9], "source panicked: boom");
}

#[derive(Debug)]
struct ConnectTimeout;

impl std::fmt::Display for ConnectTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TLS handshake exceeded the connection budget")
    }
}

impl std::error::Error for ConnectTimeout {}

#[test]
fn wrapped_errors_use_their_short_type_name() {
    let error = SourceError::from_error(&ConnectTimeout, true);
    assert_eq!(error.error_type(), "ConnectTimeout");
    assert_eq!(
        error.to_string(),
        "TLS handshake exceeded the connection budget"
    );
    assert!(error.is_transient());
}

#[test]
fn source_failures_render_source_type_message_and_attempts() {
    let failure = SourceFailure::new("rest", SourceError::unavailable("down"), 2);
    assert_eq!(
        failure.to_string(),
        "rest: SourceUnavailableError(down; attempts=2)"
    );
    let blank = SourceFailure::new("rest", SourceError::unavailable("  \n "), 1);
    assert_eq!(
        blank.to_string(),
        "rest: SourceUnavailableError(<no message>; attempts=1)"
    );
    let long = SourceFailure::new("rest", SourceError::unavailable("x".repeat(1_000)), 1);
    assert!(long
        .to_string()
        .contains(&format!("{}...; attempts=1", "x".repeat(297))));
}

#[test]
fn a_resolution_without_failures_reports_no_compatible_source() {
    let error = ResolutionError {
        key: key("ns:k"),
        failures: vec![],
    };
    assert_eq!(
        error.to_string(),
        "unable to resolve ns:k: no compatible source"
    );
    let resource = ResourceError::unresolved(key("ns:k"), vec![]);
    assert!(resource.is_unsupported());
    assert!(!resource.is_transient());
    assert_eq!(resource.error_type(), "ResourceResolutionError");
    assert_eq!(error.to_json()["failures"], json!([]));
    assert_eq!(error.to_json()["resource"], json!("ns:k"));
}

#[test]
fn resource_errors_classify_their_failures() {
    let deadline = SourceFailure::new("rest", SourceError::deadline("before call"), 0);
    let permanent = SourceFailure::new("rest", SourceError::protocol("bad"), 1);
    let only_deadline = ResourceError::unresolved(key("ns:a"), vec![deadline.clone()]);
    assert!(only_deadline.is_deadline_exceeded());
    assert!(only_deadline.is_transient());
    let mixed = ResourceError::unresolved(key("ns:b"), vec![deadline, permanent.clone()]);
    assert!(!mixed.is_deadline_exceeded());
    assert!(mixed.is_transient());
    let hard = ResourceError::unresolved(key("ns:c"), vec![permanent]);
    assert!(!hard.is_transient() && !hard.is_unsupported());

    let build = BuildError::new(
        BuildErrorKind::Resolution,
        vec![only_deadline.clone()],
        None,
    );
    assert!(build.is_deadline_exceeded() && build.is_transient());
    assert!(build.error(&key("ns:a")).is_some());
    assert!(build.error(&key("ns:zzz")).is_none());
    let build = BuildError::new(BuildErrorKind::Resolution, vec![only_deadline, hard], None);
    assert!(!build.is_deadline_exceeded());
    assert!(!BuildError::new(BuildErrorKind::Resolution, vec![], None).is_deadline_exceeded());
}

fn exchange_error(source: &str, error: SourceError) -> ResourceError {
    ResourceError::unresolved(
        key("exchange:info"),
        vec![SourceFailure::new(source, error, 2)],
    )
}

#[test]
fn build_errors_render_nested_source_failures() {
    let timeout = SourceError::Timeout {
        source_name: "alphora-rest-exchange".into(),
        budget: Duration::from_millis(10),
        resource: None,
    };
    let error = BuildError::new(
        BuildErrorKind::Resolution,
        vec![exchange_error("alphora-rest-exchange", timeout)],
        None,
    );
    let text = error.to_string();
    assert!(text.starts_with("snapshot build failed: "), "{text}");
    for needle in [
        "exchange:info=ResourceResolutionError",
        "alphora-rest-exchange",
        "SourceTimeoutError",
        "attempts=2",
        "timed out after 0.010s",
    ] {
        assert!(text.contains(needle), "{needle:?} missing from {text}");
    }
}

#[test]
fn build_error_rendering_is_bounded() {
    let failures: Vec<SourceFailure> = (0..6)
        .map(|i| {
            SourceFailure::new(
                format!("source-{i}"),
                SourceError::unavailable("m".repeat(1_000)),
                1,
            )
        })
        .collect();
    let error = BuildError::new(
        BuildErrorKind::Resolution,
        vec![ResourceError::unresolved(key("exchange:info"), failures)],
        None,
    );
    let text = error.to_string();
    assert!(text.contains("+3 more failure(s)"), "{text}");
    assert!(
        text.chars().count() < 1_200,
        "{} chars",
        text.chars().count()
    );
    assert!(!text.contains("source-3"));
    let json = error.to_json();
    assert_eq!(json["errors"][0]["failures"].as_array().unwrap().len(), 6);

    let many: Vec<ResourceError> = (0..7)
        .map(|i| ResourceError::unresolved(key(&format!("ns:r{i}")), vec![]))
        .collect();
    let text = BuildError::new(BuildErrorKind::Resolution, many, None).to_string();
    assert!(text.contains("+2 more resource error(s)"), "{text}");
    assert!(
        text.contains("ns:r4=ResourceResolutionError[no compatible source]"),
        "{text}"
    );
    assert!(!text.contains("ns:r5"), "{text}");
}

#[test]
fn to_json_produces_the_exact_versioned_envelope() {
    let resource_error = exchange_error(
        "rest",
        SourceError::custom(
            "ConnectTimeout",
            "TLS handshake exceeded the connection budget",
            true,
        ),
    );
    let partial = Snapshot::parts("s-1", Timestamp::from_secs(1.0)).finish();
    let error = BuildError::new(
        BuildErrorKind::Resolution,
        vec![resource_error.clone()],
        Some(partial),
    );
    assert_eq!(
        error.to_json(),
        json!({
            "schema": "coalestra.error-diagnostics",
            "schema_version": 1,
            "error_type": "SnapshotBuildError",
            "message": error.to_string(),
            "partial_snapshot_available": true,
            "has_partial_snapshot": true,
            "errors": [{
                "schema": "coalestra.error-diagnostics",
                "schema_version": 1,
                "resource": "exchange:info",
                "error_type": "ResourceResolutionError",
                "message": resource_error.to_string(),
                "failures": [{
                    "schema": "coalestra.error-diagnostics",
                    "schema_version": 1,
                    "source": "rest",
                    "error_type": "ConnectTimeout",
                    "message": "TLS handshake exceeded the connection budget",
                    "attempts": 2
                }]
            }]
        })
    );
    assert_eq!(ERROR_SCHEMA, "coalestra.error-diagnostics");
    assert_eq!(ERROR_SCHEMA_VERSION, 1);
    assert_eq!(error.diagnostics().errors[0].failures[0].attempts, 2);
    assert!(error.snapshot().is_some());
    assert!(error.into_snapshot().is_some());
}

#[test]
fn generic_resource_errors_use_the_same_envelope_without_failures() {
    let resource_error = ResourceError::Other {
        key: key("account:balance"),
        error_type: "ValueError".into(),
        message: "invalid account payload".into(),
    };
    let error = BuildError::new(BuildErrorKind::Resolution, vec![resource_error], None);
    let json = error.to_json();
    assert_eq!(json["partial_snapshot_available"], json!(false));
    assert_eq!(json["has_partial_snapshot"], json!(false));
    assert_eq!(
        json["errors"][0],
        json!({
            "schema": "coalestra.error-diagnostics",
            "schema_version": 1,
            "resource": "account:balance",
            "error_type": "ValueError",
            "message": "invalid account payload",
            "failures": []
        })
    );
    assert!(error
        .to_string()
        .contains("account:balance=ValueError(invalid account payload)"));
}

fn compacted(message: &str) -> String {
    let failure = SourceFailure::new("rest", SourceError::unavailable(message), 1);
    failure.to_json()["message"].as_str().unwrap().to_owned()
}

#[test]
fn serialized_messages_are_compacted() {
    assert_eq!(
        compacted("  TLS \n\t handshake   failed "),
        "TLS handshake failed"
    );
    assert_eq!(compacted(""), "<no message>");
    assert_eq!(compacted(" \n "), "<no message>");
    let exactly = "a".repeat(300);
    assert_eq!(compacted(&exactly), exactly);
    let long = compacted(&"b".repeat(301));
    assert_eq!(long, format!("{}...", "b".repeat(297)));
    assert_eq!(long.chars().count(), 300);
    let wide = compacted(&"é".repeat(400));
    assert_eq!(
        wide.chars().count(),
        300,
        "counted in characters, not bytes"
    );
    assert!(wide.ends_with("é..."));
}

fn assert_plain_json(value: &Value, path: &str) {
    match value {
        Value::String(_) | Value::Bool(_) => {}
        Value::Number(n) => assert!(n.is_u64() || n.is_i64(), "{path} is not an integer: {n}"),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                assert_plain_json(item, &format!("{path}[{i}]"));
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                assert_plain_json(v, &format!("{path}.{k}"));
            }
        }
        Value::Null => panic!("{path} is null"),
    }
}

#[test]
fn diagnostics_hold_only_plain_json_and_are_versioned_at_every_level() {
    let error = BuildError::new(
        BuildErrorKind::Resolution,
        vec![
            exchange_error("rest", SourceError::unavailable("down")),
            ResourceError::unresolved(key("ns:k?x=1"), vec![]),
        ],
        None,
    );
    let json = error.to_json();
    assert_plain_json(&json, "$");
    assert_eq!(
        json["has_partial_snapshot"],
        json["partial_snapshot_available"]
    );
    let levels = [
        &json,
        &json["errors"][0],
        &json["errors"][0]["failures"][0],
        &json["errors"][1],
    ];
    for level in levels {
        assert_eq!(level["schema"], json!(ERROR_SCHEMA));
        assert_eq!(level["schema_version"], json!(1));
    }
    let text = serde_json::to_string(&json).unwrap();
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), json);
}

#[test]
fn consistency_and_acceptance_errors_use_their_own_type_names() {
    assert_eq!(
        BuildErrorKind::Resolution.error_type(),
        "SnapshotBuildError"
    );
    let consistency = BuildError::new(BuildErrorKind::Consistency, vec![], None)
        .with_detail("observation skew 2000.0 ms exceeds 500.0 ms");
    let json = consistency.to_json();
    assert_eq!(json["error_type"], json!("SnapshotConsistencyError"));
    assert_eq!(json["errors"], json!([]));
    assert_eq!(
        consistency.to_string(),
        "snapshot consistency violated (observation skew 2000.0 ms exceeds 500.0 ms)"
    );
    assert_eq!(consistency.kind(), BuildErrorKind::Consistency);

    let rejected = ResourceError::Rejected {
        key: key("market:price:BTC"),
        reason: "too_old".into(),
        message: "age 5.0s exceeds 1.0s".into(),
    };
    let acceptance = BuildError::new(BuildErrorKind::Acceptance, vec![rejected], None);
    let json = acceptance.to_json();
    assert_eq!(json["error_type"], json!("SnapshotAcceptanceError"));
    assert_eq!(
        json["errors"][0]["error_type"],
        json!("ResourceAcceptanceError")
    );
    assert_eq!(json["errors"][0]["failures"], json!([]));
    assert!(acceptance
        .to_string()
        .starts_with("snapshot acceptance failed: "));
}

#[test]
fn rejected_resources_report_their_details() {
    let rejected = ResourceError::Rejected {
        key: key("market:price:BTC"),
        reason: "too_old".into(),
        message: "age 5.0s exceeds 1.0s".into(),
    };
    assert!(
        rejected.to_string().contains("age 5.0s exceeds 1.0s"),
        "{rejected}"
    );
    let json = rejected.to_json();
    assert!(
        json["message"]
            .as_str()
            .unwrap()
            .contains("age 5.0s exceeds 1.0s"),
        "{json}"
    );
}

#[test]
fn cycles_render_their_path() {
    let cycle = CycleError {
        path: Arc::from(vec![key("ns:a"), key("ns:b"), key("ns:a")]),
    };
    assert_eq!(
        cycle.to_string(),
        "derived resource dependency cycle detected: ns:a -> ns:b -> ns:a"
    );
}

#[test]
fn configuration_and_top_level_errors_render_and_convert() {
    assert_eq!(
        ConfigError::Zero {
            field: "max_entries"
        }
        .to_string(),
        "max_entries must be at least 1"
    );
    assert_eq!(
        ConfigError::invalid("ttl", "too long").to_string(),
        "invalid ttl: too long"
    );

    let build: CoalestraError = BuildError::new(BuildErrorKind::Resolution, vec![], None).into();
    assert!(build.is_build() && build.as_build().is_some());
    assert!(!build.is_config() && !build.is_closed());
    let config: CoalestraError = ConfigError::Negative { field: "ttl" }.into();
    assert!(config.is_config() && config.as_build().is_none());
    assert_eq!(config.to_string(), "ttl cannot be negative");
    let closed = CoalestraError::Closed("builder");
    assert!(closed.is_closed());
    assert_eq!(closed.to_string(), "builder is closed");
    let key_error: CoalestraError = ResourceKey::parse("bad").unwrap_err().into();
    assert!(key_error.to_string().contains("invalid resource key"));
}
