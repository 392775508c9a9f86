//! Catalogue area 2, the observation-policy and value-conversion behaviours
//! that need the engine (B2.7, B2.8, B2.10, B2.14–B2.18): default observation
//! times, how a source payload becomes a snapshot value, future timestamps
//! rejected (with fallback, diagnostics, circuit charge, metric and event) or
//! accepted with their clock skew recorded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra_core::{
    AuthorityResolver, CircuitBreakerPolicy, Clock, FetchContext, FnDerivedSource, FnSource,
    FreshnessPolicy, ManualClock, ObservationPolicy, ResiliencePolicy, ResourceKey, RetryPolicy,
    Snapshot, SnapshotValue, SourceAuthorityPolicy, SourceError, SourceOptions, SourceOutput,
    SourceRef, Timestamp,
};
use coalestra_orchestration::{BuilderConfig, SnapshotBuilder};
use coalestra_test::key;

fn price() -> ResourceKey {
    key("market:price:BTC")
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn no_retry() -> ResiliencePolicy {
    ResiliencePolicy::new(RetryPolicy::none(), CircuitBreakerPolicy::default())
}

/// A source answering `value`, observed at `offset` seconds from the clock's
/// now (or with no observation time when `None`).
fn observed_source(name: &str, clock: &ManualClock, value: u64, offset: Option<f64>) -> FnSource {
    let clock = clock.clone();
    FnSource::new(name, move |_k: ResourceKey, _ctx: FetchContext| {
        let out = SourceOutput::new(value);
        let out = match offset {
            Some(offset) => out.observed_at(Timestamp::from_secs(clock.now().as_secs() + offset)),
            None => out,
        };
        async move { Ok(out) }
    })
}

/// `first` (priority 2, observed `offset` seconds from the clock's now)
/// ahead of "fallback" (priority 1, no observation time), both answering
/// their priority's value (1 and 2).
fn with_fallback(clock: &ManualClock, first: &str, offset: f64) -> Vec<SourceRef> {
    vec![
        observed_source(first, clock, 1, Some(offset))
            .with_priority(2)
            .into(),
        observed_source("fallback", clock, 2, None)
            .with_priority(1)
            .into(),
    ]
}

/// A builder configuration over `sources` on `clock`, accepting observation
/// times up to `tolerance` in the future.
fn observing(sources: Vec<SourceRef>, clock: &ManualClock, tolerance: Duration) -> BuilderConfig {
    SnapshotBuilder::builder(sources)
        .clock(Arc::new(clock.clone()))
        .observation(ObservationPolicy::new(tolerance))
}

fn value_of<'a>(snapshot: &'a Snapshot, k: &ResourceKey) -> &'a SnapshotValue {
    snapshot
        .get(k)
        .unwrap_or_else(|| panic!("{k} should be resolved: {snapshot:?}"))
}

/// How many future observation times the build of `snapshot` rejected.
fn future_rejections(snapshot: &Snapshot) -> u64 {
    snapshot
        .diagnostics()
        .expect("diagnostics")
        .future_timestamp_rejections
}

fn skew_of(value: &SnapshotValue) -> Option<f64> {
    value
        .metadata()
        .get("clock_skew_seconds")
        .and_then(|v| v.as_f64())
}

/// Records events and counters (the support crate's recording sink).
use coalestra_test::RecordingSink as Recorder;

mod support;
use support::{failure_details, lenient};

fn circuit_failures(builder: &SnapshotBuilder, source: &str) -> u32 {
    builder
        .circuits()
        .iter()
        .filter(|(identity, _)| identity.starts_with(&format!("{source}[")))
        .map(|(_, state)| state.failures)
        .sum()
}

// B2.7
#[tokio::test(start_paused = true)]
async fn payload_without_observed_at_is_observed_now() {
    let clock = ManualClock::new(1_234.5);
    let builder = SnapshotBuilder::builder([observed_source("rest", &clock, 1, None).into()])
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid builder");

    let snapshot = builder.build([price()]).await.expect("build");
    let value = value_of(&snapshot, &price());
    assert_eq!(value.observed_at(), clock.now());
    assert_eq!(value.fetched_at(), clock.now());
    assert_eq!(value.observed_at(), Timestamp::from_secs(1_234.5));
    assert_eq!(value.age(), Duration::ZERO);
    assert!(!value.is_stale());
    assert_eq!(skew_of(value), None, "no skew for a value observed now");
}

// B2.8: age, staleness, delivery fields, authority rank and version.
#[tokio::test(start_paused = true)]
async fn source_payload_becomes_a_snapshot_value() {
    let clock = ManualClock::new(1_000.0);
    let source = {
        let clock = clock.clone();
        FnSource::new("rest", move |_k: ResourceKey, _ctx: FetchContext| {
            let at = clock.now() - Duration::from_millis(500);
            async move {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Ok(SourceOutput::new(1_u64).observed_at(at))
            }
        })
    };
    let authority = AuthorityResolver::new(
        SourceAuthorityPolicy::new([("rest", 7_i64)], 0).expect("valid authority"),
    );
    let builder = SnapshotBuilder::builder([source.into()])
        .clock(Arc::new(clock.clone()))
        .authority(authority)
        .default_policy(FreshnessPolicy::new(secs(1), secs(10)).expect("valid policy"))
        .build()
        .expect("valid builder");

    let snapshot = builder.build([price()]).await.expect("build");
    let value = value_of(&snapshot, &price());
    assert_eq!(value.fetched_at(), clock.now());
    assert_eq!(
        value.observed_at(),
        clock.now() - Duration::from_millis(500)
    );
    assert!(
        (value.age().as_secs_f64() - 0.5).abs() < 1e-9,
        "age {:?}",
        value.age()
    );
    assert!(!value.is_stale(), "0.5 s is within the 1 s ttl");
    assert!(!value.is_from_cache());
    assert!(
        value.latency() >= Duration::from_millis(5) && value.latency() <= Duration::from_millis(6),
        "latency measured on the paused clock: {:?}",
        value.latency()
    );
    assert_eq!(value.attempts(), 1);
    assert_eq!(value.authority_rank(), 7);
    assert_eq!(value.source(), "rest");

    // Every fetch makes a new revision; a cached read keeps it.
    let cached = builder.build([price()]).await.expect("cached build");
    let cached_value = value_of(&cached, &price());
    assert!(cached_value.is_from_cache());
    assert_eq!(cached_value.version(), value.version());
    assert_eq!(cached_value.latency(), Duration::ZERO);
    clock.advance(secs(11));
    let refetched = builder.build([price()]).await.expect("refetch");
    assert_ne!(value_of(&refetched, &price()).version(), value.version());
}

// B2.8: attempts count the retries used.
#[tokio::test(start_paused = true)]
async fn attempts_count_retries() {
    let calls = Arc::new(AtomicUsize::new(0));
    let source = {
        let calls = Arc::clone(&calls);
        FnSource::new("flaky", move |_k: ResourceKey, _ctx: FetchContext| {
            let n = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err(SourceError::unavailable("blip"))
                } else {
                    Ok(SourceOutput::new(1_u64))
                }
            }
        })
    };
    let builder = SnapshotBuilder::builder([source.into()])
        .build()
        .expect("valid builder");

    let snapshot = builder.build([price()]).await.expect("the retry succeeds");
    assert_eq!(value_of(&snapshot, &price()).attempts(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

// B2.8: stale = age > ttl.
#[tokio::test(start_paused = true)]
async fn value_older_than_ttl_is_stale() {
    let clock = ManualClock::new(1_000.0);
    let builder = SnapshotBuilder::builder([observed_source("rest", &clock, 1, Some(-5.0)).into()])
        .clock(Arc::new(clock.clone()))
        .default_policy(FreshnessPolicy::new(secs(1), secs(10)).expect("valid policy"))
        .resilience(no_retry())
        .build()
        .expect("valid builder");

    let snapshot = builder
        .build([price()])
        .await
        .expect("a stale value is usable");
    let value = value_of(&snapshot, &price());
    assert!(value.is_stale());
    assert_eq!(value.age(), secs(5));
    assert!(!value.is_from_cache());
}

// B2.10
#[tokio::test(start_paused = true)]
async fn source_metadata_is_carried_into_the_value() {
    let source = FnSource::new("rest", |_k: ResourceKey, _ctx: FetchContext| async {
        Ok(SourceOutput::new(1_u64).with_metadata("transport", "test"))
    });
    let builder = SnapshotBuilder::builder([source.into()])
        .build()
        .expect("valid builder");

    let snapshot = builder.build([price()]).await.expect("build");
    let value = value_of(&snapshot, &price());
    assert_eq!(
        value.metadata().get("transport").and_then(|v| v.as_str()),
        Some("test")
    );
}

// B2.14
#[tokio::test(start_paused = true)]
async fn future_source_payload_falls_back_to_next_source() {
    let clock = ManualClock::new(1_000.0);
    let builder = observing(
        with_fallback(&clock, "future", 60.0),
        &clock,
        Duration::ZERO,
    )
    .build()
    .expect("valid builder");

    let snapshot = builder
        .build([price()])
        .await
        .expect("the fallback resolves it");
    let value = value_of(&snapshot, &price());
    assert_eq!(value.value::<u64>().ok(), Some(&2));
    assert_eq!(value.source(), "fallback");
    assert!(future_rejections(&snapshot) >= 1);
}

// B2.14: the rejection itself is a protocol error mentioning the future.
#[tokio::test(start_paused = true)]
async fn future_payload_is_rejected_as_a_protocol_error() {
    let clock = ManualClock::new(1_000.0);
    let builder = observing(
        vec![observed_source("future", &clock, 1, Some(60.0)).into()],
        &clock,
        Duration::ZERO,
    )
    .build()
    .expect("valid builder");

    let snapshot = builder
        .build_with([price()], lenient())
        .await
        .expect("non-strict build");
    let error = snapshot
        .error(&price())
        .expect("the future value is rejected");
    let failures = failure_details(error);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "future");
    assert_eq!(failures[0].1, "SourceProtocolError");
    assert!(failures[0].2.contains("in the future"), "{failures:?}");
    assert_eq!(future_rejections(&snapshot), 1);
}

// B2.15
#[tokio::test(start_paused = true)]
async fn small_future_clock_skew_is_recorded() {
    let clock = ManualClock::new(1_000.0);
    let builder = observing(
        vec![observed_source("rest", &clock, 1, Some(0.5)).into()],
        &clock,
        secs(1),
    )
    .build()
    .expect("valid builder");

    let snapshot = builder
        .build([price()])
        .await
        .expect("accepted within tolerance");
    let value = value_of(&snapshot, &price());
    let skew = skew_of(value).expect("clock_skew_seconds recorded");
    assert!(skew > 0.0);
    assert!((skew - 0.5).abs() < 1e-6, "skew {skew}");
    assert_eq!(value.age(), Duration::ZERO, "age never goes negative");
    assert_eq!(future_rejections(&snapshot), 0);
}

// B2.14/B2.15 boundary: a skew equal to the tolerance is accepted.
#[tokio::test(start_paused = true)]
async fn skew_equal_to_the_tolerance_is_accepted() {
    let clock = ManualClock::new(1_000.0);
    let builder = observing(with_fallback(&clock, "edge", 1.0), &clock, secs(1))
        .build()
        .expect("valid builder");

    let snapshot = builder.build([price()]).await.expect("build");
    let value = value_of(&snapshot, &price());
    assert_eq!(value.source(), "edge");
    assert!(skew_of(value).is_some_and(|s| (s - 1.0).abs() < 1e-9));
}

// B2.18: by default one second of skew is tolerated and more is rejected.
#[tokio::test(start_paused = true)]
async fn default_observation_policy_tolerates_one_second() {
    let clock = ManualClock::new(1_000.0);
    let near = key("market:price:NEAR");
    let far = key("market:price:FAR");
    let source = {
        let clock = clock.clone();
        FnSource::new("rest", move |k: ResourceKey, _ctx: FetchContext| {
            let offset = if k.subject() == "NEAR" { 0.5 } else { 2.0 };
            let at = Timestamp::from_secs(clock.now().as_secs() + offset);
            async move { Ok(SourceOutput::new(1_u64).observed_at(at)) }
        })
    };
    let builder = SnapshotBuilder::builder([source.into()])
        .clock(Arc::new(clock.clone()))
        .build()
        .expect("valid builder");

    let snapshot = builder
        .build_with([near.clone(), far.clone()], lenient())
        .await
        .expect("non-strict build");
    assert!(snapshot.get(&near).is_some());
    let error = snapshot
        .error(&far)
        .expect("2 s ahead is rejected by default");
    assert_eq!(
        error.failures()[0].error.error_type(),
        "SourceProtocolError"
    );
}

// B2.16 (single source): circuit failure, one attempt, metric and event.
#[tokio::test(start_paused = true)]
async fn rejected_future_payload_charges_the_circuit_and_is_reported() {
    let clock = ManualClock::new(1_000.0);
    let recorder = Arc::new(Recorder::default());
    let builder = observing(
        with_fallback(&clock, "future", 60.0),
        &clock,
        Duration::ZERO,
    )
    .events(recorder.clone())
    .metrics(recorder.clone())
    .build()
    .expect("valid builder");

    builder.build([price()]).await.expect("fallback");
    assert_eq!(
        circuit_failures(&builder, "future"),
        1,
        "circuits: {:?}",
        builder.circuits()
    );
    assert_eq!(circuit_failures(&builder, "fallback"), 0);
    assert_eq!(
        recorder.counter(
            "source_fetch_total",
            &[("status", "invalid_timestamp"), ("source", "future")]
        ),
        1
    );
    let rejected = recorder.events_named("source_payload_rejected");
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        rejected[0].get("source").and_then(|v| v.as_str()),
        Some("future")
    );
    assert_eq!(
        rejected[0].get("resource").and_then(|v| v.as_str()),
        Some(price().to_string().as_str())
    );

    // Without a fallback, the failure shows the single attempt.
    let alone = observing(
        vec![observed_source("future", &clock, 1, Some(60.0)).into()],
        &clock,
        Duration::ZERO,
    )
    .build()
    .expect("valid builder");
    let snapshot = alone
        .build_with([price()], lenient())
        .await
        .expect("non-strict build");
    let failures = failure_details(snapshot.error(&price()).expect("rejected"));
    assert_eq!(failures[0].3, 1, "{failures:?}");
}

// B2.16 (derived source)
#[tokio::test(start_paused = true)]
async fn rejected_future_derived_payload_charges_the_derived_circuit() {
    let clock = ManualClock::new(1_000.0);
    let base = key("market:base:BTC");
    let derived_key = key("market:derived:BTC");
    let recorder = Arc::new(Recorder::default());
    let derived = {
        let clock = clock.clone();
        let base = base.clone();
        FnDerivedSource::sync(
            "deriver",
            move |_k: &ResourceKey| vec![base.clone()],
            move |_k: &ResourceKey, _deps: &Snapshot, _ctx: &FetchContext| {
                Ok(SourceOutput::new(2_u64).observed_at(clock.now() + secs(60)))
            },
        )
        .with_supports(|k| k.name() == "derived")
    };
    let builder = SnapshotBuilder::builder([
        observed_source("base", &clock, 1, None)
            .with_supports(|k| k.name() == "base")
            .into(),
        derived.into(),
    ])
    .clock(Arc::new(clock.clone()))
    .observation(ObservationPolicy::new(Duration::ZERO))
    .events(recorder.clone())
    .metrics(recorder.clone())
    .build()
    .expect("valid builder");

    let snapshot = builder
        .build_with([derived_key.clone()], lenient())
        .await
        .expect("non-strict build");
    let failures = failure_details(snapshot.error(&derived_key).expect("rejected"));
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "deriver");
    assert_eq!(failures[0].1, "SourceProtocolError");
    assert_eq!(failures[0].3, 1);
    assert_eq!(
        circuit_failures(&builder, "deriver"),
        1,
        "circuits: {:?}",
        builder.circuits()
    );
    assert!(future_rejections(&snapshot) >= 1);
    assert_eq!(
        recorder.counter(
            "source_fetch_total",
            &[("status", "invalid_timestamp"), ("source", "deriver")]
        ),
        1
    );
    assert_eq!(recorder.events_named("source_payload_rejected").len(), 1);
}

// B2.17
#[tokio::test(start_paused = true)]
async fn far_future_payload_is_accepted_when_rejection_is_off() {
    let clock = ManualClock::new(1_000.0);
    let builder =
        SnapshotBuilder::builder([observed_source("rest", &clock, 1, Some(3_600.0)).into()])
            .clock(Arc::new(clock.clone()))
            .observation(ObservationPolicy::new(secs(1)).with_reject_future(false))
            .build()
            .expect("valid builder");

    let snapshot = builder.build([price()]).await.expect("accepted");
    let value = value_of(&snapshot, &price());
    assert_eq!(value.value::<u64>().ok(), Some(&1));
    assert_eq!(value.observed_at(), clock.now() + secs(3_600));
    let skew = skew_of(value).expect("clock_skew_seconds recorded");
    assert!((skew - 3_600.0).abs() < 1e-6, "skew {skew}");
    assert_eq!(future_rejections(&snapshot), 0);
}
