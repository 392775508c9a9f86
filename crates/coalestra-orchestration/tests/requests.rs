//! Catalogue area 12: snapshot requests — required and optional resources,
//! partial snapshots on error, strict and non-strict builds, error
//! precedence, closed builders, the build metric and event, and the fetch
//! context handed to sources (B12.1–B12.13).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coalestra_core::{
    BuildErrorKind, BuildOptions, CircuitBreakerPolicy, Clock, CoalestraError, FetchContext,
    FnSource, ManualClock, Metadata, ResiliencePolicy, ResourceKey, RetryPolicy,
    SnapshotConsistencyPolicy, SnapshotRequest, SourceError, SourceOutput, SourceRef, Timestamp,
};
use coalestra_orchestration::{BuilderConfig, SnapshotBuilder};
use coalestra_test::{key, RecordingSink};

fn single_attempt() -> ResiliencePolicy {
    ResiliencePolicy::new(RetryPolicy::none(), CircuitBreakerPolicy::disabled())
}

fn config(sources: Vec<SourceRef>, clock: &ManualClock) -> BuilderConfig {
    SnapshotBuilder::builder(sources)
        .clock(Arc::new(clock.clone()))
        .resilience(single_attempt())
}

/// A source answering 1 for `market:required:*`, 2 for `market:optional:*`
/// and failing every key whose subject is `FAIL`.
fn scripted(calls: &Arc<AtomicUsize>) -> FnSource {
    let calls = Arc::clone(calls);
    FnSource::new("rest", move |key: ResourceKey, _ctx: FetchContext| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            if key.subject() == "FAIL" {
                return Err(SourceError::unavailable(format!("{key} is unavailable")));
            }
            Ok(SourceOutput::new(if key.name() == "required" {
                1_u64
            } else {
                2_u64
            }))
        }
    })
}

fn scripted_builder(clock: &ManualClock) -> (SnapshotBuilder, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let builder = config(vec![scripted(&calls).into()], clock)
        .build()
        .expect("valid builder");
    (builder, calls)
}

// ------------------------------------------------------ request validation

#[test]
fn b12_1_a_key_both_required_and_optional_is_rejected() {
    let price = key("market:price:BTC");

    let error = SnapshotRequest::new([price.clone()], [price]).expect_err("overlap");

    assert!(
        matches!(error, CoalestraError::InvalidRequest(_)),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("market:price:BTC"), "{text}");
    assert!(text.contains("both required and optional"), "{text}");
}

#[test]
fn b12_2_an_empty_request_is_rejected() {
    let error = SnapshotRequest::new(Vec::<ResourceKey>::new(), Vec::<ResourceKey>::new())
        .expect_err("empty");

    assert!(
        matches!(error, CoalestraError::InvalidRequest(_)),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("snapshot request must contain at least one resource key"),
        "{error}"
    );
    assert!(SnapshotRequest::required(Vec::<ResourceKey>::new()).is_err());
}

#[test]
fn b12_5_request_keys_are_deduplicated_required_then_optional_in_declaration_order() {
    let (c, a, b, e, d) = (
        key("market:price:C"),
        key("market:price:A"),
        key("market:price:B"),
        key("market:price:E"),
        key("market:price:D"),
    );

    let request = SnapshotRequest::new(
        [c.clone(), a.clone(), c.clone(), b.clone()],
        [e.clone(), d.clone(), e.clone()],
    )
    .expect("valid request");

    assert_eq!(request.required_keys(), [c.clone(), a.clone(), b.clone()]);
    assert_eq!(request.optional_keys(), [e.clone(), d.clone()]);
    let keys: Vec<ResourceKey> = request.keys().cloned().collect();
    assert_eq!(keys, vec![c.clone(), a, b, e.clone(), d]);
    assert!(request.is_required(&c));
    assert!(!request.is_required(&e));
}

#[test]
fn b12_7_acceptance_policy_referencing_keys_outside_the_request_is_rejected() {
    use coalestra_core::{ResourceAcceptanceRule, SnapshotAcceptancePolicy};
    let (inside, outside) = (key("market:price:BTC"), key("market:price:DOGE"));
    let policy = SnapshotAcceptancePolicy::builder()
        .resource_rule(
            outside.clone(),
            ResourceAcceptanceRule::unconstrained().allow_stale(false),
        )
        .build()
        .expect("valid policy");

    let error = SnapshotRequest::required([inside])
        .expect("valid request")
        .with_acceptance(policy)
        .expect_err("outside key");

    let text = error.to_string();
    assert!(text.contains("outside the snapshot request"), "{text}");
    assert!(text.contains("market:price:DOGE"), "{text}");
}

// ---------------------------------------------------- required / optional

#[tokio::test(start_paused = true)]
async fn b12_3_only_required_failures_fail_a_request() {
    let clock = ManualClock::new(1_000.0);
    let (builder, _) = scripted_builder(&clock);
    let required = key("market:required:BTC");
    let optional = key("market:optional:FAIL");
    let request = SnapshotRequest::new([required.clone()], [optional.clone()]).expect("request");

    let snapshot = builder
        .build_request(&request, BuildOptions::new())
        .await
        .expect("an optional failure does not fail a strict build");

    assert_eq!(*snapshot.value::<u64>(&required).expect("required"), 1);
    assert!(snapshot.get(&optional).is_none());
    assert_eq!(snapshot.errors().len(), 1);
    assert_eq!(snapshot.errors()[0].key(), &optional);
    assert!(!snapshot.is_complete());
}

#[tokio::test(start_paused = true)]
async fn b12_4_required_failure_raises_with_a_partial_snapshot_holding_optional_values() {
    let clock = ManualClock::new(1_000.0);
    let (builder, _) = scripted_builder(&clock);
    let required = key("market:required:FAIL");
    let optional = key("market:optional:ETH");
    let request = SnapshotRequest::new([required.clone()], [optional.clone()]).expect("request");

    let error = builder
        .build_request(&request, BuildOptions::new())
        .await
        .expect_err("required failure");

    let build_error = error.as_build().expect("a build error");
    assert_eq!(build_error.kind(), BuildErrorKind::Resolution);
    assert_eq!(build_error.errors().len(), 1);
    assert_eq!(build_error.errors()[0].key(), &required);
    let partial = build_error.snapshot().expect("a partial snapshot");
    assert_eq!(*partial.value::<u64>(&optional).expect("optional value"), 2);
    assert!(partial.error(&required).is_some());
}

#[tokio::test(start_paused = true)]
async fn b12_9_non_strict_returns_errors_in_the_snapshot_and_strict_raises_only_required_ones() {
    let clock = ManualClock::new(1_000.0);
    let (builder, _) = scripted_builder(&clock);
    let (ok, req_fail, opt_fail) = (
        key("market:required:BTC"),
        key("market:required:FAIL"),
        key("market:optional:FAIL"),
    );
    let request =
        SnapshotRequest::new([ok.clone(), req_fail.clone()], [opt_fail.clone()]).expect("request");

    let snapshot = builder
        .build_request(&request, BuildOptions::new().strict(false))
        .await
        .expect("non-strict returns the snapshot");
    assert!(!snapshot.is_complete());
    assert_eq!(snapshot.errors().len(), 2);
    assert!(snapshot.error(&req_fail).is_some() && snapshot.error(&opt_fail).is_some());
    assert_eq!(*snapshot.value::<u64>(&ok).expect("ok"), 1);

    let error = builder
        .build_request(&request, BuildOptions::new())
        .await
        .expect_err("strict raises");
    let build_error = error.as_build().expect("build error");
    let failed: Vec<&ResourceKey> = build_error.errors().iter().map(|e| e.key()).collect();
    assert_eq!(
        failed,
        vec![&req_fail],
        "only the required errors are raised"
    );
    let partial = build_error.snapshot().expect("partial snapshot");
    assert_eq!(
        partial.errors().len(),
        2,
        "the partial snapshot keeps every error"
    );
    assert_eq!(*partial.value::<u64>(&ok).expect("ok"), 1);
}

#[tokio::test(start_paused = true)]
async fn b12_10_a_strict_failure_caused_by_the_deadline_carries_no_snapshot() {
    let clock = ManualClock::new(1_000.0);
    let slow = FnSource::new("slow", |_key: ResourceKey, _ctx: FetchContext| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(SourceOutput::new(1_u64))
    });
    let builder = config(vec![slow.into()], &clock)
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");

    let error = builder
        .build_with(
            [price.clone()],
            BuildOptions::new().deadline(Duration::from_millis(100)),
        )
        .await
        .expect_err("deadline");

    let build_error = error.as_build().expect("build error");
    assert!(build_error.is_deadline_exceeded(), "{error}");
    assert!(build_error.snapshot().is_none());
}

#[tokio::test(start_paused = true)]
async fn b12_6_required_errors_take_precedence_over_a_consistency_violation() {
    let clock = ManualClock::new(1_000.0);
    let observed = Arc::new(Mutex::new(Vec::<(String, Timestamp)>::new()));
    let at = Arc::clone(&observed);
    let clock_in = clock.clone();
    // A observed now, B observed 30 s ago: a 30 s skew.
    let source = FnSource::new("rest", move |key: ResourceKey, _ctx: FetchContext| {
        let now = clock_in.now();
        let observed_at = if key.subject() == "B" {
            now - Duration::from_secs(30)
        } else {
            now
        };
        at.lock()
            .expect("lock")
            .push((key.to_string(), observed_at));
        async move {
            if key.subject() == "FAIL" {
                return Err(SourceError::unavailable("down"));
            }
            Ok(SourceOutput::new(1_u64).observed_at(observed_at))
        }
    });
    let builder = config(vec![source.into()], &clock)
        .default_policy(
            coalestra_core::FreshnessPolicy::new(Duration::from_secs(60), Duration::from_secs(60))
                .expect("policy"),
        )
        .build()
        .expect("valid builder");
    let skew = SnapshotConsistencyPolicy::new(Duration::from_secs(1));

    let with_required_error = SnapshotRequest::required([
        key("market:price:A"),
        key("market:price:B"),
        key("market:price:FAIL"),
    ])
    .expect("request")
    .with_consistency(skew);
    let error = builder
        .build_request(&with_required_error, BuildOptions::new())
        .await
        .expect_err("required failure");
    assert_eq!(
        error.as_build().expect("build error").kind(),
        BuildErrorKind::Resolution
    );

    let only_skew = SnapshotRequest::required([key("market:price:A"), key("market:price:B")])
        .expect("request")
        .with_consistency(skew);
    let error = builder
        .build_request(&only_skew, BuildOptions::new())
        .await
        .expect_err("consistency violation");
    assert_eq!(
        error.as_build().expect("build error").kind(),
        BuildErrorKind::Consistency
    );
}

// ------------------------------------------------------------ closed builder

#[tokio::test(start_paused = true)]
async fn b12_12_a_closed_builder_refuses_every_build() {
    let clock = ManualClock::new(1_000.0);
    let (builder, calls) = scripted_builder(&clock);
    let price = key("market:required:BTC");
    builder
        .build([price.clone()])
        .await
        .expect("open builder builds");

    builder.close().await;
    builder.close().await; // idempotent

    assert!(builder.is_closed());
    let build = builder.build([price.clone()]).await.expect_err("closed");
    assert!(build.is_closed(), "{build:?}");
    assert!(build.to_string().contains("is closed"), "{build}");
    let with = builder
        .build_with([price.clone()], BuildOptions::new().strict(false))
        .await
        .expect_err("closed");
    assert!(with.is_closed());
    let request = SnapshotRequest::required([price]).expect("request");
    let req = builder
        .build_request(&request, BuildOptions::new())
        .await
        .expect_err("closed");
    assert!(req.is_closed());
    assert!(builder.clone().is_closed(), "clones share the closed state");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// ----------------------------------------------------- metric and event

#[tokio::test(start_paused = true)]
async fn b12_11_build_metric_status_and_build_event() {
    let clock = ManualClock::new(1_000.0);
    let sink = RecordingSink::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let builder = config(vec![scripted(&calls).into()], &clock)
        .events(Arc::new(sink.clone()))
        .metrics(Arc::new(sink.clone()))
        .build()
        .expect("valid builder");
    let status = |s: &str| sink.counter("snapshot_build_total", &[("status", s)]);

    builder
        .build([key("market:required:A")])
        .await
        .expect("success");
    assert_eq!((status("success"), status("error")), (1, 0));

    builder
        .build([key("market:required:FAIL")])
        .await
        .expect_err("raised");
    assert_eq!((status("success"), status("error")), (1, 1));

    builder
        .build_with(
            [key("market:required:FAIL")],
            BuildOptions::new().strict(false),
        )
        .await
        .expect("non-strict with errors");
    assert_eq!((status("success"), status("error")), (1, 2));

    let events = sink.events_named("snapshot_built");
    assert_eq!(events.len(), 3);
    let raised = &events[1];
    assert!(raised.get("snapshot_id").and_then(|v| v.as_str()).is_some());
    assert_eq!(raised.get("resources").and_then(|v| v.as_f64()), Some(1.0));
    assert_eq!(raised.get("resolved").and_then(|v| v.as_f64()), Some(0.0));
    assert_eq!(raised.get("failed").and_then(|v| v.as_f64()), Some(1.0));
    assert_eq!(
        raised.get("build_failed").and_then(|v| v.as_bool()),
        Some(true)
    );
    assert_eq!(raised.get("strict").and_then(|v| v.as_bool()), Some(true));
    let non_strict = &events[2];
    assert_eq!(
        non_strict.get("build_failed").and_then(|v| v.as_bool()),
        Some(false)
    );
    assert_eq!(
        non_strict.get("strict").and_then(|v| v.as_bool()),
        Some(false)
    );
}

#[tokio::test(start_paused = true)]
async fn b12_11_request_with_only_optional_errors_is_metered_as_success() {
    let clock = ManualClock::new(1_000.0);
    let sink = RecordingSink::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let builder = config(vec![scripted(&calls).into()], &clock)
        .metrics(Arc::new(sink.clone()))
        .build()
        .expect("valid builder");
    let request = SnapshotRequest::new([key("market:required:A")], [key("market:optional:FAIL")])
        .expect("request");

    builder
        .build_request(&request, BuildOptions::new())
        .await
        .expect("optional errors do not fail the build");

    assert_eq!(
        sink.counter("snapshot_build_total", &[("status", "success")]),
        1
    );
    assert_eq!(
        sink.counter("snapshot_build_total", &[("status", "error")]),
        0
    );
}

// ----------------------------------------------------------- fetch context

#[tokio::test(start_paused = true)]
async fn b12_13_sources_receive_the_build_context() {
    let clock = ManualClock::new(1_000.0);
    let contexts: Arc<Mutex<Vec<FetchContext>>> = Arc::default();
    let seen = Arc::clone(&contexts);
    let source = FnSource::new("rest", move |_key: ResourceKey, ctx: FetchContext| {
        seen.lock().expect("lock").push(ctx);
        async move { Ok(SourceOutput::new(1_u64)) }
    });
    let builder = config(vec![source.into()], &clock)
        .default_policy(coalestra_core::FreshnessPolicy::no_cache())
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");
    let metadata = Metadata::new().with("tenant", "acme");

    let snapshot = builder
        .build_with(
            [price.clone()],
            BuildOptions::new()
                .snapshot_id("snap-1")
                .metadata(metadata.clone())
                .deadline(Duration::from_secs(5)),
        )
        .await
        .expect("build");

    let ctx = contexts.lock().expect("lock")[0].clone();
    assert_eq!(&*ctx.snapshot_id, "snap-1");
    assert_eq!(snapshot.id(), "snap-1");
    assert_eq!(ctx.metadata, metadata);
    assert_eq!(snapshot.metadata(), &metadata);
    assert_eq!(ctx.requested_at, Timestamp::from_secs(1_000.0));
    assert_eq!(ctx.deadline_at, Some(Timestamp::from_secs(1_005.0)));
    assert!(ctx.deadline.is_some());
    assert_eq!(ctx.attempt, 1);

    // Without options: no deadline, a random hex snapshot id per build.
    let a = builder.build([price.clone()]).await.expect("build");
    let b = builder.build([price]).await.expect("build");
    let contexts = contexts.lock().expect("lock").clone();
    assert_eq!(&*contexts[1].snapshot_id, a.id());
    assert!(contexts[1].deadline.is_none() && contexts[1].deadline_at.is_none());
    assert_ne!(a.id(), b.id());
    for id in [a.id(), b.id()] {
        assert!(
            !id.is_empty() && id.chars().all(|c| c.is_ascii_hexdigit()),
            "{id}"
        );
    }
}
