//! Catalogue area 17: diagnostics — the per-snapshot counters
//! (`SnapshotDiagnostics`: requests, cache, sources, batches, retries,
//! observation skew) and the versioned error diagnostics of failed builds
//! (`coalestra.error-diagnostics` v1: bounded rendering, JSON envelope)
//! (B17.1–B17.15).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra_core::error::ERROR_SCHEMA;
use coalestra_core::{
    BuildError, BuildErrorKind, BuildOptions, FetchContext, FnBatchSource, FnDerivedSource,
    FnSource, FreshnessPolicy, ManualClock, RefreshMode, ResourceError, ResourceKey, Snapshot,
    SourceError, SourceFailure, SourceOptions, SourceOutput, SourceRef, Timestamp,
};
use coalestra_orchestration::{BuilderConfig, SnapshotBuilder};
use coalestra_test::key;

mod support;
use support::single_attempt;

/// A config with a manual clock and the default resilience (two attempts
/// for transient errors).
fn config(sources: Vec<SourceRef>, clock: &ManualClock) -> BuilderConfig {
    SnapshotBuilder::builder(sources).clock(Arc::new(clock.clone()))
}

// ------------------------------------------------------ snapshot counters

#[tokio::test(start_paused = true)]
async fn b17_1_diagnostics_cover_batch_cache_and_observation_skew() {
    let clock = ManualClock::new(1_000.0);
    let batch = FnBatchSource::new(
        "batch",
        |keys: Vec<ResourceKey>, _ctx: FetchContext| async move {
            Ok(keys
                .into_iter()
                .map(|k| {
                    let at = if k.subject() == "A" { 100.0 } else { 102.0 };
                    (
                        k,
                        SourceOutput::new(1_u64).observed_at(Timestamp::from_secs(at)),
                    )
                })
                .collect())
        },
    );
    let builder = config(vec![batch.into()], &clock)
        .default_policy(FreshnessPolicy::fresh_for(FreshnessPolicy::UNBOUNDED))
        .build()
        .expect("valid builder");
    let keys = vec![key("market:price:A"), key("market:price:B")];

    let first = builder.build(keys.clone()).await.expect("first build");
    let d = first.diagnostics().expect("diagnostics");
    assert_eq!(d.requested_resources, 2);
    assert_eq!(d.resolved_resources, 2);
    assert_eq!(d.failed_resources, 0);
    assert_eq!(d.source_calls, 1);
    assert_eq!(d.batch_calls, 1);
    assert_eq!(
        d.source_calls_by_source,
        BTreeMap::from([("batch".to_owned(), 1_u64)])
    );
    assert_eq!(d.cache_batch_reads, 1);
    assert_eq!(d.cache_batch_writes, 1);
    assert_eq!(d.cache_misses, 2);
    assert_eq!(d.cache_hits, 0);
    assert_eq!(d.observation_skew, Duration::from_secs(2));
    assert_eq!(d.observation_skew_ms(), 2_000.0);

    let second = builder.build(keys).await.expect("second build");
    let d = second.diagnostics().expect("diagnostics");
    assert_eq!(d.cache_hits, 2);
    assert_eq!(d.cache_misses, 0);
    assert_eq!(d.source_calls, 0);
    assert_eq!(d.batch_calls, 0);
    assert_eq!(d.cache_batch_writes, 0);
    assert!(d.source_calls_by_source.is_empty());
    assert_eq!(d.observation_skew, Duration::from_secs(2));
}

// A build served entirely by fresh cache hits takes a shorter path when no
// sink observes single hits; with a sink it judges hit by hit. Both must
// give the same snapshot and counters.
#[tokio::test(start_paused = true)]
async fn a_warm_build_gives_the_same_snapshot_whether_or_not_a_sink_observes_hits() {
    let clock = ManualClock::new(1_000.0);
    let keys: Vec<ResourceKey> = (0..12)
        .map(|i| key(&format!("market:price:K{i}")))
        .collect();
    let warm_build = |sink: Option<coalestra_test::RecordingSink>| {
        let clock = clock.clone();
        let keys = keys.clone();
        async move {
            let source = FnSource::new("rest", |k: ResourceKey, _ctx: FetchContext| async move {
                let n: u64 = k.subject().trim_start_matches('K').parse().unwrap_or(0);
                Ok(SourceOutput::new(n).observed_at(Timestamp::from_secs(990.0 + n as f64)))
            });
            let mut config = config(vec![source.into()], &clock)
                .default_policy(FreshnessPolicy::fresh_for(Duration::from_secs(60)));
            if let Some(sink) = &sink {
                config = config.events(Arc::new(sink.clone()));
            }
            let builder = config.build().expect("valid builder");
            builder.build(keys.clone()).await.expect("cold build");
            builder.build(keys).await.expect("warm build")
        }
    };
    let sink = coalestra_test::RecordingSink::new();
    let plain = warm_build(None).await;
    let observed = warm_build(Some(sink.clone())).await;
    let summary = |s: &Snapshot| {
        let values: Vec<(String, u64, bool, bool)> = s
            .values()
            .map(|v| {
                let payload = *v.value::<u64>().expect("u64 payload");
                (
                    v.key().to_string(),
                    payload,
                    v.is_from_cache(),
                    v.is_stale(),
                )
            })
            .collect();
        let lookups: Vec<Option<u64>> = keys
            .iter()
            .map(|k| s.maybe_value::<u64>(k).copied())
            .collect();
        let d = s.diagnostics().expect("diagnostics");
        let counters = (
            d.cache_hits,
            d.cache_misses,
            d.cache_batch_reads,
            d.source_calls,
            d.resolved_resources,
            d.observation_skew,
        );
        (values, lookups, counters)
    };
    assert_eq!(summary(&plain), summary(&observed));
    let (values, _, counters) = summary(&plain);
    assert!(values.iter().all(|(_, _, cached, stale)| *cached && !stale));
    assert_eq!(
        counters,
        (12, 0, 1, 0, 12, Duration::from_secs(11)),
        "hits, misses, batch reads, source calls, resolved, skew"
    );
    assert_eq!(sink.events_named("cache_hit").len(), 12);
}

#[tokio::test(start_paused = true)]
async fn b17_2_diagnostics_expose_every_counter_and_per_source_maps() {
    let clock = ManualClock::new(1_000.0);
    let rest = FnSource::new("rest", |_key: ResourceKey, _ctx: FetchContext| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(SourceOutput::new(1_u64))
    });
    let builder = config(vec![rest.into()], &clock)
        .build()
        .expect("valid builder");

    let snapshot = builder
        .build([key("market:price:BTC")])
        .await
        .expect("build");

    let d = snapshot.diagnostics().expect("diagnostics");
    assert_eq!(d.duration, Duration::from_millis(10));
    assert_eq!(d.duration_ms(), 10.0);
    assert_eq!(
        d.source_latency_by_source,
        BTreeMap::from([("rest".to_owned(), Duration::from_millis(10))])
    );
    let json = d.to_json();
    let fields: BTreeSet<&str> = json
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    let expected: BTreeSet<&str> = [
        "duration_ms",
        "requested_resources",
        "resolved_resources",
        "failed_resources",
        "cache_hits",
        "cache_misses",
        "cache_batch_reads",
        "cache_batch_writes",
        "stale_values",
        "coalesced_requests",
        "source_calls",
        "batch_calls",
        "derived_calls",
        "refresh_scheduled",
        "refresh_completed",
        "refresh_failed",
        "support_cache_hits",
        "support_cache_misses",
        "retries",
        "batch_chunks",
        "future_timestamp_rejections",
        "observation_skew_ms",
        "source_calls_by_source",
        "source_latency_ms_by_source",
    ]
    .into_iter()
    .collect();
    assert_eq!(fields, expected);
    assert_eq!(
        json["duration_ms"].as_f64(),
        Some(10.0),
        "durations serialize as milliseconds"
    );
    assert_eq!(
        json["source_latency_ms_by_source"]["rest"].as_f64(),
        Some(10.0)
    );
    assert_eq!(json["source_calls_by_source"]["rest"].as_u64(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn b17_3_requested_counts_distinct_explicit_keys_and_hits_and_misses_split() {
    let clock = ManualClock::new(1_000.0);
    let rest = FnSource::new("rest", |_key: ResourceKey, _ctx: FetchContext| async move {
        Ok(SourceOutput::new(1_u64))
    });
    let builder = config(vec![rest.into()], &clock)
        .build()
        .expect("valid builder");
    let (a, b, c) = (
        key("market:price:A"),
        key("market:price:B"),
        key("market:price:C"),
    );
    builder.build([a.clone()]).await.expect("warm A");

    let snapshot = builder
        .build([a.clone(), b.clone(), c.clone(), b])
        .await
        .expect("build");

    let d = snapshot.diagnostics().expect("diagnostics");
    assert_eq!(d.requested_resources, 3);
    assert_eq!(d.cache_hits, 1);
    assert_eq!(d.cache_misses, 2);
    assert_eq!(d.source_calls, 2);
    assert_eq!(d.resolved_resources, 3);
}

#[tokio::test(start_paused = true)]
async fn b17_3_dependencies_are_not_requested_and_derive_calls_are_source_calls() {
    let clock = ManualClock::new(1_000.0);
    let price = FnSource::new("rest", |_key: ResourceKey, _ctx: FetchContext| async move {
        Ok(SourceOutput::new(21_u64))
    })
    .with_supports(|k: &ResourceKey| k.name() == "price");
    let double = FnDerivedSource::sync(
        "double",
        |k: &ResourceKey| vec![key(&format!("market:price:{}", k.subject()))],
        |k: &ResourceKey, deps: &Snapshot, _ctx: &FetchContext| {
            let p = deps
                .value::<u64>(&key(&format!("market:price:{}", k.subject())))
                .map_err(SourceError::protocol)?;
            Ok(SourceOutput::new(p * 2))
        },
    )
    .with_supports(|k: &ResourceKey| k.name() == "double");
    let builder = config(vec![price.into(), double.into()], &clock)
        .build()
        .expect("valid builder");
    let derived = key("market:double:BTC");

    let snapshot = builder.build([derived.clone()]).await.expect("build");

    assert_eq!(*snapshot.value::<u64>(&derived).expect("value"), 42);
    let d = snapshot.diagnostics().expect("diagnostics");
    assert_eq!(
        d.requested_resources, 1,
        "the dependency is not a requested resource"
    );
    assert_eq!(d.resolved_resources, 1);
    assert_eq!(d.source_calls, 2, "one single fetch and one derive");
    assert_eq!(d.derived_calls, 1);
    assert_eq!(
        d.source_calls_by_source,
        BTreeMap::from([("double".to_owned(), 1_u64), ("rest".to_owned(), 1_u64)])
    );
    assert_eq!(
        d.observation_skew,
        Duration::ZERO,
        "fewer than two resolved values"
    );
}

#[tokio::test(start_paused = true)]
async fn b17_3_retries_count_extra_attempts() {
    let clock = ManualClock::new(1_000.0);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    // Every key fails on its first call and succeeds on its second.
    let seen = Arc::new(std::sync::Mutex::new(BTreeSet::<String>::new()));
    let flaky = FnSource::new("rest", move |key: ResourceKey, _ctx: FetchContext| {
        counter.fetch_add(1, Ordering::SeqCst);
        let first = seen.lock().expect("lock").insert(key.to_string());
        async move {
            if first {
                Err(SourceError::unavailable("blip"))
            } else {
                Ok(SourceOutput::new(1_u64))
            }
        }
    });
    let builder = config(vec![flaky.into()], &clock)
        .build()
        .expect("valid builder");
    let (a, b) = (key("market:price:A"), key("market:price:B"));

    let snapshot = builder
        .build([a.clone(), b.clone()])
        .await
        .expect("retried");

    let d = snapshot.diagnostics().expect("diagnostics");
    assert_eq!(d.retries, 2, "one extra attempt per key");
    assert_eq!(d.source_calls, 4, "every attempt is a source call");
    assert_eq!(snapshot.get(&a).expect("a").attempts(), 2);
    assert_eq!(snapshot.get(&b).expect("b").attempts(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test(start_paused = true)]
async fn b17_3_stale_while_revalidate_hits_count_as_cache_hits_and_stale_values() {
    let clock = ManualClock::new(1_000.0);
    let rest = FnSource::new("rest", |_key: ResourceKey, _ctx: FetchContext| async move {
        Ok(SourceOutput::new(1_u64))
    });
    let policy = FreshnessPolicy::new(Duration::from_secs(1), Duration::from_secs(10))
        .expect("policy")
        .with_refresh_mode(RefreshMode::StaleWhileRevalidate)
        .expect("swr");
    let builder = config(vec![rest.into()], &clock)
        .default_policy(policy)
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");
    builder.build([price.clone()]).await.expect("warm");
    clock.advance(Duration::from_secs(5));

    let snapshot = builder.build([price.clone()]).await.expect("stale hit");
    builder.wait_for_refreshes().await;

    let d = snapshot.diagnostics().expect("diagnostics");
    assert!(snapshot.get(&price).expect("value").is_stale());
    assert_eq!(d.cache_hits, 1);
    assert_eq!(d.cache_misses, 0);
    assert_eq!(d.stale_values, 1);
    assert_eq!(d.refresh_scheduled, 1);
    assert_eq!(d.source_calls, 0, "the refresh runs in the background");
}

#[tokio::test(start_paused = true)]
async fn b17_3_failed_resources_are_counted() {
    let clock = ManualClock::new(1_000.0);
    let rest = FnSource::new("rest", |key: ResourceKey, _ctx: FetchContext| async move {
        if key.subject() == "FAIL" {
            Err(SourceError::protocol("bad payload"))
        } else {
            Ok(SourceOutput::new(1_u64))
        }
    });
    let builder = config(vec![rest.into()], &clock)
        .resilience(single_attempt())
        .build()
        .expect("valid builder");

    let snapshot = builder
        .build_with(
            [key("market:price:A"), key("market:price:FAIL")],
            BuildOptions::new().strict(false),
        )
        .await
        .expect("non-strict");

    let d = snapshot.diagnostics().expect("diagnostics");
    assert_eq!(
        (
            d.requested_resources,
            d.resolved_resources,
            d.failed_resources
        ),
        (2, 1, 1)
    );
    assert_eq!(d.retries, 0, "permanent errors are not retried");
}

// ------------------------------------------------------ error diagnostics

fn exchange_info() -> ResourceKey {
    key("exchange:info")
}

/// Builds `exchange:info` from one source with the default resilience
/// (two attempts) and returns the strict build's error.
async fn failing_build(source: FnSource, clock: &ManualClock) -> BuildError {
    let builder = config(vec![source.into()], clock)
        .build()
        .expect("valid builder");
    let error = builder
        .build([exchange_info()])
        .await
        .expect_err("the build fails");
    error.as_build().expect("a build error").clone()
}

#[tokio::test(start_paused = true)]
async fn b17_4_and_b17_10_rendering_includes_nested_source_failure_details() {
    let clock = ManualClock::new(1_000.0);
    let slow = FnSource::new(
        "alphora-rest-exchange",
        |_key: ResourceKey, _ctx: FetchContext| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok(SourceOutput::new(1_u64))
        },
    )
    .with_timeout(Duration::from_millis(10));

    let error = failing_build(slow, &clock).await;

    let text = error.to_string();
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

#[tokio::test(start_paused = true)]
async fn b17_5_build_error_exposes_the_structured_envelope() {
    let clock = ManualClock::new(1_000.0);
    let rest = FnSource::new("rest", |_key: ResourceKey, _ctx: FetchContext| async move {
        Err(SourceError::custom(
            "ConnectTimeout",
            "TLS handshake exceeded the connection budget",
            true,
        ))
    });

    let error = failing_build(rest, &clock).await;
    let json = error.to_json();

    let top: BTreeSet<&str> = json
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        top,
        BTreeSet::from([
            "schema",
            "schema_version",
            "error_type",
            "message",
            "partial_snapshot_available",
            "has_partial_snapshot",
            "errors",
        ])
    );
    assert_eq!(json["schema"], ERROR_SCHEMA);
    assert_eq!(json["schema"], "coalestra.error-diagnostics");
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["error_type"], "SnapshotBuildError");
    assert_eq!(json["message"].as_str(), Some(error.to_string().as_str()));
    assert_eq!(json["partial_snapshot_available"], true);
    assert_eq!(json["has_partial_snapshot"], true);
    let errors = json["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 1);
    let resource = &errors[0];
    let resource_keys: BTreeSet<&str> = resource
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        resource_keys,
        BTreeSet::from([
            "schema",
            "schema_version",
            "resource",
            "error_type",
            "message",
            "failures"
        ])
    );
    assert_eq!(resource["resource"], "exchange:info");
    assert_eq!(resource["error_type"], "ResourceResolutionError");
    assert_eq!(
        resource["message"].as_str(),
        Some(error.errors()[0].to_string().as_str())
    );
    let failures = resource["failures"].as_array().expect("failures");
    assert_eq!(failures.len(), 1);
    let failure = &failures[0];
    let failure_keys: BTreeSet<&str> = failure
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        failure_keys,
        BTreeSet::from([
            "schema",
            "schema_version",
            "source",
            "error_type",
            "message",
            "attempts"
        ])
    );
    assert_eq!(failure["source"], "rest");
    assert_eq!(failure["error_type"], "ConnectTimeout");
    assert_eq!(
        failure["message"],
        "TLS handshake exceeded the connection budget"
    );
    assert_eq!(failure["attempts"], 2);
}

#[test]
fn b17_6_default_rendering_is_bounded_but_json_keeps_every_failure() {
    let failures: Vec<SourceFailure> = (0..6)
        .map(|i| {
            SourceFailure::new(
                format!("source-{i}"),
                SourceError::unavailable("x".repeat(1_000)),
                1,
            )
        })
        .collect();
    let error = BuildError::new(
        BuildErrorKind::Resolution,
        vec![ResourceError::unresolved(exchange_info(), failures)],
        None,
    );

    let text = error.to_string();
    assert!(text.contains("+3 more failure(s)"), "{text}");
    assert!(
        text.chars().count() < 1_200,
        "rendering is bounded: {} chars",
        text.len()
    );
    let json = error.to_json();
    let serialized = json["errors"][0]["failures"].as_array().expect("failures");
    assert_eq!(serialized.len(), 6);
    for failure in serialized {
        let message = failure["message"].as_str().expect("message");
        assert_eq!(message.chars().count(), 300);
        assert!(message.ends_with("..."));
    }
}

#[tokio::test(start_paused = true)]
async fn b17_7_real_builder_failure_keeps_source_details() {
    let clock = ManualClock::new(1_000.0);
    let rest = FnSource::new(
        "rest-exchange",
        |_key: ResourceKey, _ctx: FetchContext| async move {
            Err(SourceError::unavailable("synthetic connect timeout"))
        },
    );

    let error = failing_build(rest, &clock).await;
    let json = error.to_json();

    assert_eq!(json["errors"][0]["resource"], "exchange:info");
    let failure = &json["errors"][0]["failures"][0];
    assert_eq!(failure["schema"], "coalestra.error-diagnostics");
    assert_eq!(failure["schema_version"], 1);
    assert_eq!(failure["source"], "rest-exchange");
    assert_eq!(failure["error_type"], "SourceUnavailableError");
    assert_eq!(failure["message"], "synthetic connect timeout");
    assert_eq!(failure["attempts"], 2);
    assert_eq!(failure.as_object().expect("object").len(), 6);
}

#[tokio::test(start_paused = true)]
async fn b17_8_and_b17_14_serialized_diagnostics_are_json_safe_and_versioned() {
    let clock = ManualClock::new(1_000.0);
    let rest = FnSource::new(
        "rest-exchange",
        |_key: ResourceKey, _ctx: FetchContext| async move {
            Err(SourceError::unavailable("synthetic connect timeout"))
        },
    );
    let error = failing_build(rest, &clock).await;
    let json = error.to_json();

    let encoded = json.to_string();
    assert!(
        encoded.contains("\"schema\":\"coalestra.error-diagnostics\""),
        "{encoded}"
    );
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["errors"][0]["schema_version"], 1);
    assert_eq!(json["errors"][0]["failures"][0]["schema_version"], 1);
    assert_eq!(
        json["has_partial_snapshot"],
        json["partial_snapshot_available"]
    );

    // Only strings, integers, booleans, lists and maps.
    let mut stack = vec![json.clone()];
    while let Some(value) = stack.pop() {
        if let Some(items) = value.as_array() {
            stack.extend(items.iter().cloned());
        } else if let Some(fields) = value.as_object() {
            stack.extend(fields.values().cloned());
        } else {
            assert!(
                value.is_string() || value.is_boolean() || value.is_u64() || value.is_i64(),
                "unexpected JSON value {value}"
            );
        }
    }
}

#[test]
fn b17_9_generic_resource_errors_use_the_same_envelope() {
    let error = BuildError::new(
        BuildErrorKind::Resolution,
        vec![ResourceError::Other {
            key: key("account:balance"),
            error_type: "ValueError".into(),
            message: "invalid account payload".into(),
        }],
        None,
    );

    let json = error.to_json();

    assert_eq!(json["partial_snapshot_available"], false);
    assert_eq!(json["has_partial_snapshot"], false);
    let resource = &json["errors"][0];
    assert_eq!(resource["schema"], "coalestra.error-diagnostics");
    assert_eq!(resource["schema_version"], 1);
    assert_eq!(resource["resource"], "account:balance");
    assert_eq!(resource["error_type"], "ValueError");
    assert_eq!(resource["message"], "invalid account payload");
    assert_eq!(resource["failures"].as_array().map(Vec::len), Some(0));
    assert_eq!(resource.as_object().expect("object").len(), 6);
}

#[test]
fn b17_11_messages_are_compacted() {
    let message = |text: String| {
        SourceFailure::new("rest", SourceError::unavailable(text), 1)
            .diagnostics()
            .message
    };

    assert_eq!(message("  a \n\t b   c  ".to_owned()), "a b c");
    assert_eq!(message(String::new()), "<no message>");
    assert_eq!(message(" \n ".to_owned()), "<no message>");
    let long = message("y".repeat(400));
    assert_eq!(long.chars().count(), 300);
    assert_eq!(long, format!("{}...", "y".repeat(297)));
    assert_eq!(
        message("z".repeat(300)),
        "z".repeat(300),
        "300 characters fit"
    );
}

#[test]
fn b17_12_rendering_lists_five_resources_and_three_failures() {
    let failure = |source: &str, message: &str| {
        SourceFailure::new(source, SourceError::unavailable(message), 2)
    };
    let mut errors = vec![ResourceError::unresolved(
        key("market:price:K0"),
        vec![
            failure("a", "one"),
            failure("b", "two"),
            failure("c", "three"),
            failure("d", "four"),
        ],
    )];
    errors.push(ResourceError::unresolved(
        key("market:price:K1"),
        Vec::new(),
    ));
    errors.push(ResourceError::Other {
        key: key("market:price:K2"),
        error_type: "ValueError".into(),
        message: "bad".into(),
    });
    for i in 3..7 {
        errors.push(ResourceError::unresolved(
            key(&format!("market:price:K{i}")),
            vec![failure("rest", "down")],
        ));
    }
    let error = BuildError::new(BuildErrorKind::Resolution, errors, None);

    let text = error.to_string();

    assert!(
        text.to_lowercase().starts_with("snapshot build failed: "),
        "{text}"
    );
    assert!(
        text.contains(
            "market:price:K0=ResourceResolutionError[a: SourceUnavailableError(one; attempts=2); \
             b: SourceUnavailableError(two; attempts=2); c: SourceUnavailableError(three; attempts=2); \
             +1 more failure(s)]"
        ),
        "{text}"
    );
    assert!(
        text.contains("market:price:K1=ResourceResolutionError[no compatible source]"),
        "{text}"
    );
    assert!(text.contains("market:price:K2=ValueError(bad)"), "{text}");
    assert!(text.contains("market:price:K4"), "{text}");
    assert!(
        !text.contains("market:price:K5"),
        "only five resources: {text}"
    );
    assert!(text.ends_with("+2 more resource error(s)"), "{text}");
}

#[test]
fn b17_13_consistency_and_acceptance_errors_share_the_envelope() {
    let snapshot = Snapshot::parts("s-1", Timestamp::from_secs(1_000.0)).finish();
    let consistency = BuildError::new(BuildErrorKind::Consistency, Vec::new(), Some(snapshot));
    let json = consistency.to_json();
    assert_eq!(json["error_type"], "SnapshotConsistencyError");
    assert_eq!(json["errors"].as_array().map(Vec::len), Some(0));
    assert_eq!(json["partial_snapshot_available"], true);

    let acceptance = BuildError::new(
        BuildErrorKind::Acceptance,
        vec![ResourceError::Rejected {
            key: key("market:price:BTC"),
            reason: "too_old".into(),
            message: "age 9s exceeds 5s".into(),
        }],
        None,
    );
    let json = acceptance.to_json();
    assert_eq!(json["error_type"], "SnapshotAcceptanceError");
    assert_eq!(json["errors"][0]["error_type"], "ResourceAcceptanceError");
    assert_eq!(
        json["errors"][0]["failures"].as_array().map(Vec::len),
        Some(0)
    );
}

#[tokio::test(start_paused = true)]
async fn error_json_of_a_builder_failure_round_trips_through_its_display() {
    // The message of the envelope is the rendered error (compacted), so logs
    // and structured diagnostics agree.
    let clock = ManualClock::new(1_000.0);
    let rest = FnSource::new("rest", |_key: ResourceKey, _ctx: FetchContext| async move {
        Err(SourceError::protocol("bad   payload"))
    });
    let builder = config(vec![rest.into()], &clock)
        .resilience(single_attempt())
        .build()
        .expect("valid builder");
    let error = builder.build([exchange_info()]).await.expect_err("fails");
    let build_error = error.as_build().expect("build error");

    let json = build_error.to_json();

    assert_eq!(json["errors"][0]["failures"][0]["message"], "bad payload");
    assert_eq!(json["errors"][0]["failures"][0]["attempts"], 1);
    assert_eq!(
        json["errors"][0]["failures"][0]["error_type"],
        "SourceProtocolError"
    );
}
