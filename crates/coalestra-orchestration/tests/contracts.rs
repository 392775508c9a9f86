//! Catalogue areas 14 and 15, and the precedence of B12.6: request
//! contracts applied after resolution, through builds, session stages and
//! transactional revalidation.
//!
//! - Consistency (observation skew): violations with the full partial
//!   snapshot and the oldest and newest resources, the inclusive boundary,
//!   optional resources, the session request group, revalidation that keeps
//!   the previous state even when lenient, the forced-refresh fallback that
//!   re-acquires the oldest value through the next source without touching
//!   the shared cache, and only requested keys participating on revalidation
//!   (B14.1–B14.8, B14.10–B14.16).
//! - Acceptance: current age, stale state recomputed at evaluation time,
//!   minimum authority, per-resource overrides, all-of / any-of / at-least-N
//!   groups, optional resources, violation details and metrics, and
//!   revalidation (B15.1–B15.11, B15.14–B15.19).
//! - Precedence: required errors, then consistency, then acceptance (B12.6).

use std::time::Duration;

use coalestra_cache::PublishOptions;
use coalestra_core::{
    AcceptanceReason, AuthorityResolver, BuildError, BuildErrorKind, BuildOptions, Clock,
    CoalestraError, FreshnessPolicy, ManualClock, Payload, PolicyResolver, ResourceAcceptanceRule,
    ResourceKey, Snapshot, SnapshotAcceptancePolicy, SnapshotConsistencyPolicy, SnapshotRequest,
    SnapshotRequirement, SourceAuthorityPolicy, SourceError, SourceOutput, SourceRef, Timestamp,
};
use coalestra_orchestration::{
    BuilderConfig, ResolveOptions, RevalidateOptions, SessionOptions, SnapshotBuilder,
    SnapshotSession,
};
use coalestra_test::{
    key, MockBatchSource, MockDerivedSource, MockHandle, MockSource, RecordingSink,
};

mod support;
use support::{a, b, c, long_ttl, recording, single_attempt_config, text};

fn opt() -> ResourceKey {
    key("market:price:OPTIONAL")
}
fn unrelated() -> ResourceKey {
    key("market:price:UNRELATED")
}
fn failing() -> ResourceKey {
    key("market:price:FAIL")
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn at(s: f64) -> Timestamp {
    Timestamp::from_secs(s)
}

fn config(sources: Vec<SourceRef>, clock: &ManualClock, sink: &RecordingSink) -> BuilderConfig {
    recording(
        single_attempt_config(sources, clock).default_policy(long_ttl()),
        sink,
    )
}

/// A source "rest" answering `"<subject>"` for each key observed at the
/// given time, and failing `market:price:FAIL`.
fn observed(observations: &[(ResourceKey, f64)]) -> MockSource {
    let mut source =
        MockSource::new("rest").always_fail(failing(), SourceError::unavailable("FAIL is down"));
    for (k, t) in observations {
        source = source
            .value(k, k.subject().to_owned())
            .observed_at(k, at(*t));
    }
    source
}

/// A builder over `observed(observations)` at wall time `now`.
fn builder_at(
    now: f64,
    observations: &[(ResourceKey, f64)],
) -> (SnapshotBuilder, MockHandle, ManualClock, RecordingSink) {
    let clock = ManualClock::new(now);
    let sink = RecordingSink::new();
    let source = observed(observations);
    let handle = source.handle();
    let builder = config(vec![source.into()], &clock, &sink)
        .build()
        .expect("valid builder");
    (builder, handle, clock, sink)
}

fn skew(limit: f64) -> SnapshotConsistencyPolicy {
    SnapshotConsistencyPolicy::new(secs(limit))
}

fn required(keys: &[ResourceKey]) -> SnapshotRequest {
    SnapshotRequest::required(keys.to_vec()).expect("request")
}

fn request(required: &[ResourceKey], optional: &[ResourceKey]) -> SnapshotRequest {
    SnapshotRequest::new(required.to_vec(), optional.to_vec()).expect("request")
}

fn max_age(limit: f64) -> ResourceAcceptanceRule {
    ResourceAcceptanceRule::unconstrained()
        .max_age_secs(limit)
        .expect("valid rule")
}

fn default_rule(rule: ResourceAcceptanceRule) -> SnapshotAcceptancePolicy {
    SnapshotAcceptancePolicy::builder()
        .default_rule(rule)
        .build()
        .expect("valid policy")
}

/// Builds `request` under the acceptance `policy` with default options.
async fn build_accepting(
    builder: &SnapshotBuilder,
    request: SnapshotRequest,
    policy: SnapshotAcceptancePolicy,
) -> Result<Snapshot, CoalestraError> {
    builder
        .build_request(
            &request.with_acceptance(policy).expect("policy"),
            BuildOptions::new(),
        )
        .await
}

/// Builds `request` under the `consistency` policy with default options.
async fn build_consistent(
    builder: &SnapshotBuilder,
    request: SnapshotRequest,
    consistency: SnapshotConsistencyPolicy,
) -> Result<Snapshot, CoalestraError> {
    builder
        .build_request(&request.with_consistency(consistency), BuildOptions::new())
        .await
}

/// Revalidates A and B in `session` with `options`, allowing at most
/// `limit` seconds of observation skew.
async fn revalidate_within(
    session: &SnapshotSession,
    limit: f64,
    options: RevalidateOptions,
) -> Result<Snapshot, CoalestraError> {
    session
        .revalidate([a(), b()], options.consistency(skew(limit)))
        .await
}

/// [`revalidate_within`] with a forced refresh.
async fn force_refresh_within(
    session: &SnapshotSession,
    limit: f64,
) -> Result<Snapshot, CoalestraError> {
    revalidate_within(session, limit, RevalidateOptions::new().force_refresh(true)).await
}

/// An any-of requirement over `keys` named "position".
fn position_any_of<const N: usize>(keys: [ResourceKey; N]) -> SnapshotRequirement {
    SnapshotRequirement::any_of(keys)
        .expect("group")
        .named("position")
}

fn build_error(error: &CoalestraError) -> &BuildError {
    error
        .as_build()
        .unwrap_or_else(|| panic!("a build error, got {error:?}"))
}

fn versions(snapshot: &Snapshot) -> Vec<(ResourceKey, coalestra_core::Version)> {
    snapshot
        .values()
        .map(|v| (v.key().clone(), v.version()))
        .collect()
}

fn revalidation_counts(builder: &SnapshotBuilder) -> (u64, u64) {
    let health = builder.health();
    (
        health.revalidation_attempt_count,
        health.revalidation_failure_count,
    )
}

async fn resolved(session: &SnapshotSession, keys: Vec<ResourceKey>) -> Snapshot {
    session
        .resolve(keys, ResolveOptions::new())
        .await
        .expect("stage")
}

fn field_str<'a>(event: &'a coalestra_core::Event, name: &str) -> &'a str {
    event
        .get(name)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("event {} has no text field {name}: {event:?}", event.name))
}

fn field_f64(event: &coalestra_core::Event, name: &str) -> f64 {
    event.get(name).and_then(|v| v.as_f64()).unwrap_or_else(|| {
        panic!(
            "event {} has no numeric field {name}: {event:?}",
            event.name
        )
    })
}

// =================================================== 14. consistency

// B14.1, B14.2, B14.16
#[tokio::test(start_paused = true)]
async fn b14_1_excessive_required_skew_is_a_consistency_error_with_the_partial_snapshot() {
    let (builder, _h, _clock, sink) = builder_at(110.0, &[(a(), 100.0), (b(), 104.0)]);

    let error = build_consistent(&builder, required(&[a(), b()]), skew(2.0))
        .await
        .expect_err("4 s apart, 2 s allowed");

    let build = build_error(&error);
    assert_eq!(build.kind(), BuildErrorKind::Consistency);
    assert!(build.is_consistency());
    assert!(build.errors().is_empty(), "{:?}", build.errors());
    let partial = build.snapshot().expect("the full partial snapshot");
    assert_eq!((text(partial, &a()), text(partial, &b())), ("A", "B"));
    let violation = build.consistency_violation().expect("violation");
    assert_eq!(violation.oldest(), &a());
    assert_eq!(violation.newest(), &b());
    assert_eq!(violation.oldest_observed_at(), at(100.0));
    assert_eq!(violation.newest_observed_at(), at(104.0));
    assert_eq!(violation.observation_skew(), secs(4.0));
    assert_eq!(violation.max_observation_skew(), secs(2.0));
    assert_eq!(violation.keys(), [a(), b()]);

    // B14.16: message, event.
    let message = error.to_string().to_lowercase();
    assert!(
        message.contains(
            "snapshot observation skew 4.000000s exceeds the allowed 2.000000s across 2 resource(s)"
        ),
        "{message}"
    );
    assert!(message.contains("oldest=market:price:a@"), "{message}");
    assert!(message.contains("newest=market:price:b@"), "{message}");
    let events = sink.events_named("snapshot_consistency_failed");
    assert_eq!(events.len(), 1);
    assert_eq!(field_str(&events[0], "oldest_resource"), "market:price:A");
    assert_eq!(field_str(&events[0], "newest_resource"), "market:price:B");
    assert_eq!(field_f64(&events[0], "observation_skew_ms"), 4_000.0);
    assert_eq!(field_f64(&events[0], "max_observation_skew_ms"), 2_000.0);
    assert_eq!(field_f64(&events[0], "resources"), 2.0);

    // B14.2: metrics and diagnostics.
    assert_eq!(
        sink.counter(
            "snapshot_consistency_total",
            &[("status", "error"), ("rule", "observation_skew")]
        ),
        1
    );
    assert_eq!(
        sink.counter("snapshot_build_total", &[("status", "error")]),
        1
    );
    let json = build.to_json();
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["error_type"], "SnapshotConsistencyError");
    assert_eq!(json["partial_snapshot_available"], true);
    assert_eq!(json["errors"], serde_json::json!([]));
}

// B14.3
#[tokio::test(start_paused = true)]
async fn b14_3_the_skew_limit_is_inclusive() {
    let (builder, _h, _clock, sink) = builder_at(110.0, &[(a(), 100.0), (b(), 102.0)]);

    let snapshot = build_consistent(&builder, required(&[a(), b()]), skew(2.0))
        .await
        .expect("exactly at the limit");

    assert_eq!(snapshot.len(), 2);
    assert_eq!(
        sink.counter("snapshot_consistency_total", &[("status", "error")]),
        0
    );
}

// B14.4
#[tokio::test(start_paused = true)]
async fn b14_4_optional_resources_are_excluded_by_default() {
    let (builder, _h, _clock, _sink) =
        builder_at(150.0, &[(a(), 100.0), (b(), 101.0), (opt(), 150.0)]);

    let snapshot = build_consistent(&builder, request(&[a(), b()], &[opt()]), skew(2.0))
        .await
        .expect("the optional outlier does not count");

    assert_eq!(text(&snapshot, &opt()), "OPTIONAL");
}

// B14.5, B14.6
#[tokio::test(start_paused = true)]
async fn b14_5_optional_resources_participate_when_included() {
    let (builder, _h, _clock, _sink) = builder_at(
        150.0,
        &[(a(), 100.0), (b(), 101.0), (c(), 105.0), (opt(), 150.0)],
    );
    let included = skew(2.0).including_optional(true);

    let only_optional = build_consistent(&builder, request(&[], &[a(), c()]), included)
        .await
        .expect_err("optional-only requests can opt in");
    assert_eq!(
        build_error(&only_optional).kind(),
        BuildErrorKind::Consistency
    );

    let error = build_consistent(&builder, request(&[a(), b()], &[opt()]), included)
        .await
        .expect_err("the optional outlier counts");
    let violation = build_error(&error)
        .consistency_violation()
        .expect("violation");
    assert_eq!(violation.newest(), &opt());
    assert_eq!(violation.oldest(), &a());
    assert_eq!(violation.keys(), [a(), b(), opt()]);
}

// B14.14
#[tokio::test(start_paused = true)]
async fn b14_14_fewer_than_two_resolved_participants_never_violate() {
    let (builder, _h, _clock, _sink) = builder_at(110.0, &[(a(), 100.0), (opt(), 10.0)]);

    let snapshot = builder
        .build_request(
            &request(&[a(), failing()], &[opt()]).with_consistency(skew(1.0)),
            BuildOptions::new().strict(false),
        )
        .await
        .expect("one participant: no violation");

    assert_eq!(text(&snapshot, &a()), "A");
    assert!(snapshot.error(&failing()).is_some());
}

// B14.7
#[tokio::test(start_paused = true)]
async fn b14_7_a_session_request_checks_only_its_own_group() {
    let (builder, _h, _clock, _sink) =
        builder_at(101.0, &[(unrelated(), 10.0), (a(), 100.0), (b(), 101.0)]);
    let session = builder.session(SessionOptions::new()).expect("session");
    resolved(&session, vec![unrelated()]).await;

    let snapshot = session
        .resolve_request(
            &required(&[a(), b()]).with_consistency(skew(2.0)),
            ResolveOptions::new(),
        )
        .await
        .expect("only A and B are checked");

    assert_eq!(snapshot.len(), 3);
    let diagnostics = snapshot.diagnostics().expect("diagnostics");
    assert_eq!(diagnostics.observation_skew_ms(), 91_000.0);
}

/// A session pinning A@100 and B@100.5 from one source, now observing
/// A@200 and B@205 (clock 210).
async fn skewed_session() -> (
    SnapshotBuilder,
    MockHandle,
    SnapshotSession,
    Snapshot,
    RecordingSink,
) {
    let (builder, handle, clock, sink) = builder_at(101.0, &[(a(), 100.0), (b(), 100.5)]);
    let session = builder.session(SessionOptions::new()).expect("session");
    let before = resolved(&session, vec![a(), b()]).await;
    handle
        .script()
        .observed_at(a(), at(200.0))
        .observed_at(b(), at(205.0));
    clock.set(at(210.0));
    (builder, handle, session, before, sink)
}

// B14.8, B14.11
#[tokio::test(start_paused = true)]
async fn b14_8_an_inconsistent_revalidation_keeps_the_previous_state_even_when_lenient() {
    let (builder, handle, session, before, sink) = skewed_session().await;

    let error = revalidate_within(
        &session,
        2.0,
        RevalidateOptions::new().strict(false).force_refresh(true),
    )
    .await
    .expect_err("a consistency violation is raised even when lenient");

    let build = build_error(&error);
    assert_eq!(build.kind(), BuildErrorKind::Consistency);
    let retained = build.snapshot().expect("the retained snapshot");
    assert_eq!(versions(retained), versions(&before));
    assert_eq!(
        versions(&session.snapshot().await.expect("snapshot")),
        versions(&before)
    );
    assert_eq!(revalidation_counts(&builder), (1, 1));
    // B14.11: the only source of A was excluded: the fallback is exhausted.
    assert_eq!(handle.calls_for(a()), 2, "no further call for A");
    assert_eq!(
        sink.counter(
            "snapshot_consistency_fallback_total",
            &[("status", "exhausted")]
        ),
        1
    );
    let exhausted = sink.events_named("snapshot_consistency_fallback_exhausted");
    assert_eq!(exhausted.len(), 1);
    assert_eq!(field_str(&exhausted[0], "resource"), "market:price:A");
    assert_eq!(field_str(&exhausted[0], "excluded_source"), "rest");
    assert!(field_str(&exhausted[0], "failed_resources").contains("market:price:A"));
}

// B14.12
#[tokio::test(start_paused = true)]
async fn b14_12_without_force_refresh_an_inconsistent_revalidation_gets_no_fallback() {
    let (builder, handle, session, before, sink) = skewed_session().await;
    let publisher = builder.publisher();
    for (k, t) in [(a(), 200.0), (b(), 205.0)] {
        publisher
            .publish(
                k.clone(),
                Payload::new(format!("{}-published", k.subject())),
                PublishOptions::new("rest").observed_at(at(t)),
            )
            .await
            .expect("publish");
    }

    let error = revalidate_within(&session, 2.0, RevalidateOptions::new().strict(false))
        .await
        .expect_err("inconsistent publications");

    assert_eq!(build_error(&error).kind(), BuildErrorKind::Consistency);
    assert_eq!(handle.calls(), 2, "only the initial fetches");
    assert_eq!(
        sink.counter("snapshot_consistency_fallback_total", &[]),
        0,
        "no fallback without force_refresh"
    );
    assert_eq!(
        versions(&session.snapshot().await.expect("snapshot")),
        versions(&before)
    );
    assert_eq!(revalidation_counts(&builder), (1, 1));
}

/// `rest` now observes A and B at 206, and the clock reads 210.
fn rest_observes_206_at_210(rest: &MockHandle, clock: &ManualClock) {
    rest.script()
        .observed_at(a(), at(206.0))
        .observed_at(b(), at(206.0));
    clock.set(at(210.0));
}

/// local (priority 100, rank 300) serves A; the batch source rest
/// (priority 10, rank 30) serves A and B. Everything observed at 100.
fn fallback_builder(
    clock: &ManualClock,
    sink: &RecordingSink,
    extra: Option<MockSource>,
) -> (SnapshotBuilder, MockHandle, MockHandle) {
    let local = MockSource::new("local")
        .with_priority(100)
        .with_supports(|k| k.subject() == "A")
        .value(a(), "local-A".to_owned())
        .observed_at(a(), at(100.0));
    let rest = MockBatchSource::new("rest")
        .with_priority(10)
        .value(a(), "rest-A".to_owned())
        .observed_at(a(), at(100.0))
        .value(b(), "rest-B".to_owned())
        .observed_at(b(), at(100.0));
    let (local_handle, rest_handle) = (local.handle(), rest.handle());
    let authority = AuthorityResolver::new(
        SourceAuthorityPolicy::new([("local", 300), ("mid", 100), ("rest", 30)], 0)
            .expect("valid ranks"),
    );
    let mut sources: Vec<SourceRef> = vec![local.into(), rest.into()];
    sources.extend(extra.map(SourceRef::from));
    let builder = config(sources, clock, sink)
        .authority(authority)
        .build()
        .expect("valid builder");
    (builder, local_handle, rest_handle)
}

// B14.10, B14.11, B14.13
#[tokio::test(start_paused = true)]
async fn b14_10_force_refresh_reacquires_the_oldest_value_through_the_next_source() {
    let clock = ManualClock::new(100.0);
    let sink = RecordingSink::new();
    let (builder, local, rest) = fallback_builder(&clock, &sink, None);
    let session = builder.session(SessionOptions::new()).expect("session");
    let before = resolved(&session, vec![a(), b()]).await;
    assert_eq!(before.get(&a()).expect("A").source(), "local");
    assert_eq!((rest.calls_for(a()), rest.calls_for(b())), (0, 1));
    local.script().observed_at(a(), at(200.0));
    rest_observes_206_at_210(&rest, &clock);

    let after = force_refresh_within(&session, 5.0)
        .await
        .expect("the fallback fixes the skew");

    let a_value = after.get(&a()).expect("A");
    assert_eq!(
        (a_value.source(), a_value.observed_at()),
        ("rest", at(206.0))
    );
    assert_eq!(a_value.authority_rank(), 30);
    assert_eq!(text(&after, &a()), "rest-A");
    assert_eq!(after.get(&b()).expect("B").observed_at(), at(206.0));
    assert_eq!(local.calls(), 2);
    assert_eq!((rest.calls_for(a()), rest.calls_for(b())), (1, 2));
    assert_eq!(revalidation_counts(&builder), (1, 0));
    let committed = session.snapshot().await.expect("snapshot");
    assert_eq!(committed.get(&a()).expect("A").source(), "rest");

    // The fallback value never reached the shared cache.
    let cached = builder
        .cache()
        .get(&a(), long_ttl(), clock.now())
        .await
        .expect("cache read")
        .expect("A is cached");
    assert_eq!(cached.value.source(), "local");
    assert_eq!(cached.value.authority_rank(), 300);
    assert_eq!(cached.value.observed_at(), at(200.0));

    // B14.13: metrics and events.
    let count =
        |status: &str| sink.counter("snapshot_consistency_fallback_total", &[("status", status)]);
    assert_eq!(
        (count("attempt"), count("success"), count("exhausted")),
        (1, 1, 0)
    );
    assert_eq!(
        sink.counter(
            "source_fetch_total",
            &[("status", "consistency_excluded"), ("source", "local")]
        ),
        1
    );
    let started = sink.events_named("snapshot_consistency_fallback_started");
    assert_eq!(started.len(), 1);
    assert_eq!(field_str(&started[0], "resource"), "market:price:A");
    assert_eq!(field_str(&started[0], "excluded_source"), "local");
    assert_eq!(field_f64(&started[0], "observation_skew_ms"), 6_000.0);
    assert_eq!(field_f64(&started[0], "max_observation_skew_ms"), 5_000.0);
    let succeeded = sink.events_named("snapshot_consistency_fallback_succeeded");
    assert_eq!(succeeded.len(), 1);
    assert_eq!(field_str(&succeeded[0], "replacement_source"), "rest");
    assert_eq!(field_f64(&succeeded[0], "replacement_observed_at"), 206.0);
    let excluded = sink.events_named("source_excluded");
    assert_eq!(excluded.len(), 1);
    assert_eq!(field_str(&excluded[0], "source"), "local");
    assert_eq!(field_str(&excluded[0], "reason"), "consistency_fallback");
}

// B14.11
#[tokio::test(start_paused = true)]
async fn b14_11_the_fallback_repeats_while_new_sources_remain() {
    let clock = ManualClock::new(100.0);
    let sink = RecordingSink::new();
    let mid = MockSource::new("mid")
        .with_priority(50)
        .with_supports(|k| k.subject() == "A")
        .value(a(), "mid-A".to_owned())
        .observed_at(a(), at(100.0));
    let mid_handle = mid.handle();
    let (builder, local, rest) = fallback_builder(&clock, &sink, Some(mid));
    let session = builder.session(SessionOptions::new()).expect("session");
    resolved(&session, vec![a(), b()]).await;
    local.script().observed_at(a(), at(200.0));
    mid_handle.script().observed_at(a(), at(200.5));
    rest_observes_206_at_210(&rest, &clock);

    let after = force_refresh_within(&session, 5.0)
        .await
        .expect("the second fallback fixes the skew");

    assert_eq!(after.get(&a()).expect("A").source(), "rest");
    assert_eq!(mid_handle.calls(), 1, "mid was tried once, then excluded");
    assert_eq!(rest.calls_for(a()), 1);
    let count =
        |status: &str| sink.counter("snapshot_consistency_fallback_total", &[("status", status)]);
    assert_eq!((count("attempt"), count("success")), (2, 1));
    let excluded: Vec<String> = sink
        .events_named("source_excluded")
        .iter()
        .map(|e| field_str(e, "source").to_owned())
        .collect();
    assert_eq!(excluded, ["local", "mid"]);
}

// B14.15
#[tokio::test(start_paused = true)]
async fn b14_15_revalidation_checks_only_the_requested_keys() {
    let clock = ManualClock::new(101.0);
    let sink = RecordingSink::new();
    let source = observed(&[(a(), 100.0), (b(), 100.5)]);
    let handle = source.handle();
    let derived_key = key("market:derived:A");
    // Derived values are observed when derived (the clock's time).
    let derive = MockDerivedSource::new("derive", |_key, deps| {
        let v = deps.value::<String>(&a()).map_err(SourceError::protocol)?;
        Ok(SourceOutput::new(format!("{v}+")))
    })
    .depends_on(derived_key.clone(), [a()])
    .with_supports(|k| k.name() == "derived");
    let builder = config(vec![source.into(), derive.into()], &clock, &sink)
        .build()
        .expect("valid builder");
    let session = builder.session(SessionOptions::new()).expect("session");
    resolved(&session, vec![a(), b(), derived_key.clone()]).await;
    handle
        .script()
        .observed_at(a(), at(200.0))
        .observed_at(b(), at(201.0));
    clock.set(at(210.0));

    let after = force_refresh_within(&session, 2.0)
        .await
        .expect("the dependent refreshed at 210 does not participate");

    let dependent = after.get(&derived_key).expect("dependent");
    assert_eq!(dependent.observed_at(), at(210.0));
    assert_eq!(
        dependent.dependency_versions(),
        [(a(), after.get(&a()).expect("A").version())]
    );
    assert_eq!(revalidation_counts(&builder), (1, 0));
}

// ==================================================== 15. acceptance

// B15.1, B15.2, B15.17
#[tokio::test(start_paused = true)]
async fn b15_1_a_value_older_than_max_age_is_rejected() {
    let (builder, _h, _clock, sink) = builder_at(100.0, &[(a(), 95.0)]);

    let error = build_accepting(&builder, required(&[a()]), default_rule(max_age(3.0)))
        .await
        .expect_err("5 s old, 3 s allowed");

    let build = build_error(&error);
    assert_eq!(build.kind(), BuildErrorKind::Acceptance);
    assert!(build.is_acceptance());
    assert_eq!(text(build.snapshot().expect("partial"), &a()), "A");
    let violations = build.acceptance_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    let v = &violations[0];
    assert_eq!(v.reason(), AcceptanceReason::TooOld);
    assert_eq!(v.key(), Some(&a()));
    assert_eq!(v.current_age(), Some(secs(5.0)));
    assert_eq!(v.max_age(), Some(secs(3.0)));
    assert!(error
        .to_string()
        .to_lowercase()
        .contains("acceptance failed with 1 violation(s): too_old"));

    // B15.2
    assert_eq!(
        sink.counter("snapshot_acceptance_total", &[("status", "error")]),
        1
    );
    assert_eq!(
        sink.counter(
            "snapshot_acceptance_violation_total",
            &[("reason", "too_old")]
        ),
        1
    );
    assert_eq!(
        sink.counter("snapshot_build_total", &[("status", "error")]),
        1
    );
    let json = build.to_json();
    assert_eq!(json["error_type"], "SnapshotAcceptanceError");
    assert_eq!(json["partial_snapshot_available"], true);
    assert_eq!(json["errors"][0]["error_type"], "ResourceAcceptanceError");
    assert_eq!(json["errors"][0]["resource"], "market:price:A");
    let events = sink.events_named("snapshot_acceptance_failed");
    assert_eq!(events.len(), 1);
    assert_eq!(field_f64(&events[0], "violations"), 1.0);
    assert_eq!(field_str(&events[0], "reasons"), "too_old");
}

#[tokio::test(start_paused = true)]
async fn an_acceptable_snapshot_records_acceptance_success() {
    let (builder, _h, _clock, sink) = builder_at(100.0, &[(a(), 99.0)]);

    build_accepting(&builder, required(&[a()]), default_rule(max_age(3.0)))
        .await
        .expect("1 s old, 3 s allowed");

    assert_eq!(
        sink.counter("snapshot_acceptance_total", &[("status", "success")]),
        1
    );
    assert!(sink.events_named("snapshot_acceptance_failed").is_empty());
}

// B15.3
#[tokio::test(start_paused = true)]
async fn b15_3_staleness_is_recomputed_when_a_session_request_is_evaluated() {
    let clock = ManualClock::new(100.0);
    let sink = RecordingSink::new();
    let source = MockSource::new("rest").value(a(), "A".to_owned());
    let policies = PolicyResolver::new(long_ttl()).with_override(
        a(),
        FreshnessPolicy::new(secs(2.0), secs(10.0)).expect("policy"),
    );
    let builder = config(vec![source.into()], &clock, &sink)
        .policies(policies)
        .build()
        .expect("valid builder");
    let session = builder.session(SessionOptions::new()).expect("session");
    resolved(&session, vec![a()]).await;
    clock.set(at(103.0));

    let pinned = session.snapshot().await.expect("snapshot");
    assert!(
        !pinned.get(&a()).expect("A").is_stale(),
        "the pinned value keeps its delivered state"
    );
    let no_stale = default_rule(ResourceAcceptanceRule::unconstrained().allow_stale(false));
    let error = session
        .resolve_request(
            &required(&[a()]).with_acceptance(no_stale).expect("policy"),
            ResolveOptions::new(),
        )
        .await
        .expect_err("stale at evaluation time");

    let violations = build_error(&error).acceptance_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].reason(), AcceptanceReason::Stale);
    assert_eq!(violations[0].current_age(), Some(secs(3.0)));
    assert_eq!(violations[0].stale(), Some(true));
}

// B15.4
#[tokio::test(start_paused = true)]
async fn b15_4_a_source_below_the_minimum_authority_is_rejected() {
    let clock = ManualClock::new(100.0);
    let sink = RecordingSink::new();
    let builder = config(vec![observed(&[(a(), 100.0)]).into()], &clock, &sink)
        .authority(AuthorityResolver::new(
            SourceAuthorityPolicy::new([("rest", 40)], 0).expect("ranks"),
        ))
        .build()
        .expect("valid builder");
    let policy = default_rule(ResourceAcceptanceRule::unconstrained().minimum_authority_rank(100));

    let error = build_accepting(&builder, required(&[a()]), policy)
        .await
        .expect_err("rank 40 < 100");

    let violations = build_error(&error).acceptance_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    let v = &violations[0];
    assert_eq!(v.reason(), AcceptanceReason::InsufficientAuthority);
    assert_eq!(v.authority_rank(), Some(40));
    assert_eq!(v.minimum_authority_rank(), Some(100));
}

// B15.5
#[tokio::test(start_paused = true)]
async fn b15_5_any_of_accepts_one_healthy_optional_resource() {
    let (builder, _h, _clock, _sink) = builder_at(100.0, &[(a(), 100.0)]);
    let policy = SnapshotAcceptancePolicy::builder()
        .requirement(position_any_of([a(), failing()]))
        .build()
        .expect("policy");

    let snapshot = build_accepting(&builder, request(&[], &[a(), failing()]), policy)
        .await
        .expect("one member suffices");

    assert_eq!(text(&snapshot, &a()), "A");
    assert!(snapshot.error(&failing()).is_some());
}

// B15.6
#[tokio::test(start_paused = true)]
async fn b15_6_requirements_count_only_members_passing_their_rules() {
    let (builder, _h, _clock, _sink) = builder_at(100.0, &[(a(), 90.0), (b(), 99.0)]);
    let policy = SnapshotAcceptancePolicy::builder()
        .default_rule(max_age(5.0))
        .requirement(SnapshotRequirement::any_of([a(), b()]).expect("group"))
        .build()
        .expect("policy");

    let snapshot = build_accepting(&builder, request(&[], &[a(), b()]), policy.clone())
        .await
        .expect("B (1 s old) satisfies the group; A is not enforced directly");
    assert_eq!(snapshot.len(), 2);

    // Without B, A alone (10 s old) does not count.
    let (builder, _h, _clock, _sink) = builder_at(100.0, &[(a(), 90.0)]);
    let error = build_accepting(&builder, request(&[], &[a(), b()]), policy)
        .await
        .expect_err("no member passes its rule");
    let reasons: Vec<AcceptanceReason> = build_error(&error)
        .acceptance_violations()
        .iter()
        .map(|v| v.reason())
        .collect();
    assert_eq!(
        reasons,
        [
            AcceptanceReason::TooOld,
            AcceptanceReason::RequirementUnsatisfied
        ]
    );
}

// B15.7
#[tokio::test(start_paused = true)]
async fn b15_7_a_resource_rule_override_exempts_one_required_resource() {
    let (builder, _h, _clock, _sink) = builder_at(100.0, &[(a(), 50.0), (b(), 100.0)]);
    let exempt = SnapshotAcceptancePolicy::builder()
        .default_rule(max_age(2.0))
        .resource_rule(a(), ResourceAcceptanceRule::unconstrained())
        .requirement(SnapshotRequirement::all_of([a(), b()]).expect("group"))
        .build()
        .expect("policy");

    build_accepting(&builder, required(&[a(), b()]), exempt)
        .await
        .expect("A is exempt from the default rule");

    let strict = SnapshotAcceptancePolicy::builder()
        .default_rule(max_age(2.0))
        .requirement(SnapshotRequirement::all_of([a(), b()]).expect("group"))
        .build()
        .expect("policy");
    let error = build_accepting(&builder, required(&[a(), b()]), strict)
        .await
        .expect_err("without the override A is too old");
    let violations = build_error(&error).acceptance_violations();
    assert_eq!(violations[0].reason(), AcceptanceReason::TooOld);
    assert_eq!(violations[0].key(), Some(&a()));
    let group = violations.last().expect("group violation");
    assert_eq!(group.reason(), AcceptanceReason::RequirementUnsatisfied);
    assert_eq!(
        (group.accepted_count(), group.required_count()),
        (Some(1), Some(2))
    );
}

// B15.8, B15.17
#[tokio::test(start_paused = true)]
async fn b15_8_an_unsatisfied_at_least_requirement_reports_group_details() {
    let (builder, _h, _clock, sink) = builder_at(100.0, &[]);
    let policy = SnapshotAcceptancePolicy::builder()
        .requirement(
            SnapshotRequirement::at_least(2, [a(), b(), c()])
                .expect("group")
                .named("quorum"),
        )
        .build()
        .expect("policy");

    let error = build_accepting(&builder, request(&[], &[a(), b(), c()]), policy)
        .await
        .expect_err("no member resolved");

    let build = build_error(&error);
    let violations = build.acceptance_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    let v = &violations[0];
    assert_eq!(v.reason(), AcceptanceReason::RequirementUnsatisfied);
    assert_eq!(v.requirement_name(), Some("quorum"));
    assert_eq!((v.accepted_count(), v.required_count()), (Some(0), Some(2)));
    assert_eq!(v.keys(), [a(), b(), c()]);
    assert_eq!(v.key(), None);
    // B15.17: one acceptance error per group member.
    let errors: Vec<(String, &str)> = build
        .errors()
        .iter()
        .map(|e| (e.key().to_string(), e.error_type()))
        .collect();
    assert_eq!(
        errors,
        [
            ("market:price:A".to_owned(), "ResourceAcceptanceError"),
            ("market:price:B".to_owned(), "ResourceAcceptanceError"),
            ("market:price:C".to_owned(), "ResourceAcceptanceError"),
        ]
    );
    assert_eq!(
        sink.counter(
            "snapshot_acceptance_violation_total",
            &[("reason", "requirement_unsatisfied")]
        ),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn all_of_needs_every_member_and_at_least_accepts_enough_members() {
    let (builder, _h, _clock, _sink) = builder_at(100.0, &[(a(), 100.0), (b(), 100.0)]);
    let group = |requirement: SnapshotRequirement| {
        request(&[], &[a(), b(), failing()])
            .with_acceptance(
                SnapshotAcceptancePolicy::builder()
                    .requirement(requirement)
                    .build()
                    .expect("policy"),
            )
            .expect("request")
    };

    let error = builder
        .build_request(
            &group(SnapshotRequirement::all_of([a(), b(), failing()]).expect("group")),
            BuildOptions::new(),
        )
        .await
        .expect_err("one member is missing");
    let v = &build_error(&error).acceptance_violations()[0];
    assert_eq!(v.reason(), AcceptanceReason::RequirementUnsatisfied);
    assert_eq!((v.accepted_count(), v.required_count()), (Some(2), Some(3)));
    assert!(
        v.message().contains("'all_of' accepted 2 of 3"),
        "{}",
        v.message()
    );

    builder
        .build_request(
            &group(SnapshotRequirement::at_least(2, [a(), b(), failing()]).expect("group")),
            BuildOptions::new(),
        )
        .await
        .expect("two of three suffice");
}

// B15.9, B15.10
#[tokio::test(start_paused = true)]
async fn b15_9_optional_resources_are_quality_checked_only_on_request() {
    let (builder, _h, _clock, _sink) = builder_at(100.0, &[(a(), 100.0), (b(), 50.0)]);
    let policy = |include: bool| {
        SnapshotAcceptancePolicy::builder()
            .default_rule(max_age(2.0))
            .include_optional_resources(include)
            .build()
            .expect("policy")
    };

    build_accepting(&builder, request(&[a()], &[b()]), policy(false))
        .await
        .expect("optional B is not enforced by default");

    let error = build_accepting(&builder, request(&[a()], &[b()]), policy(true))
        .await
        .expect_err("B is enforced when included");
    let violations = build_error(&error).acceptance_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert_eq!(violations[0].key(), Some(&b()));
}

// B15.15
#[tokio::test(start_paused = true)]
async fn b15_15_an_unsatisfied_requirement_reports_its_members_violations_first() {
    let (builder, _h, _clock, _sink) = builder_at(100.0, &[(a(), 90.0), (b(), 80.0)]);
    let policy = SnapshotAcceptancePolicy::builder()
        .default_rule(max_age(5.0))
        .requirement(position_any_of([a(), b()]))
        .build()
        .expect("policy");

    let error = build_accepting(&builder, request(&[], &[a(), b()]), policy)
        .await
        .expect_err("both members are too old");

    let violations = build_error(&error).acceptance_violations();
    let summary: Vec<(AcceptanceReason, Option<ResourceKey>)> = violations
        .iter()
        .map(|v| (v.reason(), v.key().cloned()))
        .collect();
    assert_eq!(
        summary,
        [
            (AcceptanceReason::TooOld, Some(a())),
            (AcceptanceReason::TooOld, Some(b())),
            (AcceptanceReason::RequirementUnsatisfied, None),
        ]
    );
    assert_eq!(
        violations[2].message(),
        "snapshot requirement 'position' accepted 0 of 2 resource(s), but requires at least 1"
    );
}

// B15.16
#[tokio::test(start_paused = true)]
async fn b15_16_an_unresolved_enforced_key_produces_no_acceptance_violation() {
    let (builder, _h, _clock, sink) = builder_at(100.0, &[(a(), 100.0)]);

    let snapshot = builder
        .build_request(
            &required(&[a(), failing()])
                .with_acceptance(default_rule(max_age(1.0)))
                .expect("policy"),
            BuildOptions::new().strict(false),
        )
        .await
        .expect("the missing key is a resource error, not a violation");

    assert_eq!(
        snapshot.error(&failing()).expect("FAIL").error_type(),
        "ResourceResolutionError"
    );
    assert_eq!(
        sink.counter("snapshot_acceptance_total", &[("status", "success")]),
        1
    );
}

// B15.11, B15.19
#[tokio::test(start_paused = true)]
async fn b15_11_an_unacceptable_revalidation_keeps_the_previous_state() {
    let (builder, handle, clock, _sink) = builder_at(100.0, &[(a(), 100.0)]);
    let session = builder.session(SessionOptions::new()).expect("session");
    let before = resolved(&session, vec![a()]).await;
    clock.set(at(120.0));

    let error = session
        .revalidate(
            [a()],
            RevalidateOptions::new()
                .strict(false)
                .force_refresh(true)
                .acceptance(default_rule(max_age(5.0))),
        )
        .await
        .expect_err("the source still observes 100: 20 s old");

    assert_eq!(handle.calls_for(a()), 2, "the candidate was fetched");
    let build = build_error(&error);
    assert_eq!(build.kind(), BuildErrorKind::Acceptance);
    let v = &build.acceptance_violations()[0];
    assert_eq!(v.reason(), AcceptanceReason::TooOld);
    assert_eq!(v.current_age(), Some(secs(20.0)));
    // B15.19: the error carries the previous (retained) snapshot.
    let retained = build.snapshot().expect("retained snapshot");
    assert_eq!(versions(retained), versions(&before));
    assert_eq!(
        versions(&session.snapshot().await.expect("snapshot")),
        versions(&before)
    );
    assert_eq!(revalidation_counts(&builder), (1, 1));
}

// B15.19
#[tokio::test(start_paused = true)]
async fn b15_19_revalidation_acceptance_applies_to_the_requested_keys_only() {
    let (builder, handle, clock, _sink) = builder_at(100.0, &[(a(), 100.0), (b(), 50.0)]);
    let session = builder.session(SessionOptions::new()).expect("session");
    let before = resolved(&session, vec![a(), b()]).await;
    clock.set(at(120.0));
    handle.script().observed_at(a(), at(119.0));

    let after = session
        .revalidate(
            [a()],
            RevalidateOptions::new()
                .force_refresh(true)
                .acceptance(default_rule(max_age(5.0))),
        )
        .await
        .expect("B (70 s old) is not requested, A (1 s old) passes");

    assert_eq!(after.get(&a()).expect("A").observed_at(), at(119.0));
    assert_eq!(
        after.get(&b()).expect("B").version(),
        before.get(&b()).expect("B").version()
    );
    assert_eq!(revalidation_counts(&builder), (1, 0));
}

// ========================================== B12.6: contract precedence

/// A@100, B@130 (30 s skew) and a failing required key, at clock 140.
fn precedence_request(with_failure: bool) -> SnapshotRequest {
    let mut keys = vec![a(), b()];
    if with_failure {
        keys.push(failing());
    }
    required(&keys)
        .with_consistency(skew(1.0))
        .with_acceptance(default_rule(max_age(5.0)))
        .expect("request")
}

// B12.6
#[tokio::test(start_paused = true)]
async fn b12_6_required_errors_then_consistency_then_acceptance_in_builds() {
    let (builder, _h, _clock, _sink) = builder_at(140.0, &[(a(), 100.0), (b(), 130.0)]);

    let error = builder
        .build_request(&precedence_request(true), BuildOptions::new())
        .await
        .expect_err("all three contracts broken");
    let build = build_error(&error);
    assert_eq!(build.kind(), BuildErrorKind::Resolution);
    assert!(build.error(&failing()).is_some());

    let error = builder
        .build_request(&precedence_request(false), BuildOptions::new())
        .await
        .expect_err("consistency and acceptance broken");
    assert_eq!(build_error(&error).kind(), BuildErrorKind::Consistency);

    let only_acceptance = required(&[a()])
        .with_consistency(skew(1.0))
        .with_acceptance(default_rule(max_age(5.0)))
        .expect("request");
    let error = builder
        .build_request(&only_acceptance, BuildOptions::new())
        .await
        .expect_err("acceptance broken");
    assert_eq!(build_error(&error).kind(), BuildErrorKind::Acceptance);
}

// B12.6
#[tokio::test(start_paused = true)]
async fn b12_6_session_requests_follow_the_same_precedence() {
    let (builder, _h, _clock, _sink) = builder_at(140.0, &[(a(), 100.0), (b(), 130.0)]);
    let session = builder.session(SessionOptions::new()).expect("session");

    let error = session
        .resolve_request(&precedence_request(true), ResolveOptions::new())
        .await
        .expect_err("all three contracts broken");
    assert_eq!(build_error(&error).kind(), BuildErrorKind::Resolution);

    let error = session
        .resolve_request(&precedence_request(false), ResolveOptions::new())
        .await
        .expect_err("consistency and acceptance broken");
    assert_eq!(build_error(&error).kind(), BuildErrorKind::Consistency);
    let partial = build_error(&error).snapshot().expect("partial snapshot");
    assert_eq!((text(partial, &a()), text(partial, &b())), ("A", "B"));
}
