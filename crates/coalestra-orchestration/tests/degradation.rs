//! Catalogue area 16: the non-failing `try_*` API through the builder and
//! sessions — `try_build_request`, `try_build_requests` and
//! `SnapshotSession::try_resolve_request` classify each request as
//! accepted, degraded or rejected under a `RequestDegradationPolicy`
//! instead of returning an error (B16.13–B16.26; the sync facade of B16.27
//! is tested with the blocking crate).

use std::num::NonZeroUsize;
use std::time::Duration;

use coalestra_core::{
    BuildErrorKind, BuildOptions, ManualClock, RequestDegradationPolicy, ResourceAcceptanceRule,
    ResourceKey, ResultState, SnapshotAcceptancePolicy, SnapshotConsistencyPolicy, SnapshotRequest,
    SnapshotResult, SourceError, Timestamp,
};
use coalestra_orchestration::{ResolveOptions, SessionOptions, SnapshotBuilder, SnapshotSession};
use coalestra_test::{key, MockHandle, MockSource, RecordingSink};

mod support;
use support::{a, b, c, long_ttl, recorded_by, single_attempt_config};

fn failing() -> ResourceKey {
    key("market:price:FAIL")
}
fn also_failing() -> ResourceKey {
    key("market:price:FAIL2")
}

/// A builder at wall time 110 over "rest": A=42 @100, B="hello" @104,
/// C=7 @110; FAIL and FAIL2 always fail.
fn fixture() -> (SnapshotBuilder, MockHandle, RecordingSink) {
    let clock = ManualClock::new(110.0);
    let sink = RecordingSink::new();
    let source = MockSource::new("rest")
        .value(a(), 42_u64)
        .observed_at(a(), Timestamp::from_secs(100.0))
        .value(b(), "hello".to_owned())
        .observed_at(b(), Timestamp::from_secs(104.0))
        .value(c(), 7_u64)
        .always_fail(failing(), SourceError::unavailable("FAIL is down"))
        .always_fail(also_failing(), SourceError::unavailable("FAIL2 is down"));
    let handle = source.handle();
    let config = single_attempt_config(vec![source.into()], &clock).default_policy(long_ttl());
    let builder = recorded_by(config, &sink);
    (builder, handle, sink)
}

fn request(required: &[ResourceKey], optional: &[ResourceKey]) -> SnapshotRequest {
    SnapshotRequest::new(required.to_vec(), optional.to_vec()).expect("request")
}

/// The result of resolving `request` in `session` with default options,
/// classified under `policy`.
async fn try_resolve(
    session: &SnapshotSession,
    request: &SnapshotRequest,
    policy: &RequestDegradationPolicy,
) -> SnapshotResult {
    session
        .try_resolve_request(request, ResolveOptions::new(), policy)
        .await
}

fn actions(result: &SnapshotResult) -> Vec<&str> {
    result.allowed_actions().iter().map(|a| &**a).collect()
}

fn error_keys(errors: &[coalestra_core::ResourceError]) -> Vec<ResourceKey> {
    errors.iter().map(|e| e.key().clone()).collect()
}

fn default_policy() -> RequestDegradationPolicy {
    RequestDegradationPolicy::default()
}

// --------------------------------------------- sessions: try_resolve_request

// B16.13
#[tokio::test(start_paused = true)]
async fn b16_13_everything_resolved_is_accepted() {
    let (builder, _h, _sink) = fixture();
    let session = builder.session(SessionOptions::new()).expect("session");

    let result = try_resolve(&session, &request(&[a()], &[]), &default_policy()).await;

    assert_eq!(result.state(), ResultState::Accepted);
    assert!(result.is_accepted() && !result.is_degraded() && !result.is_rejected());
    assert_eq!(result.snapshot().value::<u64>(&a()).expect("A"), &42);
    assert_eq!(result.reason(), "accepted");
    assert_eq!(actions(&result), ["read", "evaluate", "act"]);
    assert!(result.allows("read"));
    assert!(result.error().is_none());
    result.raise_for_rejected().expect("not rejected");
    // The stage pinned A like any other.
    let pinned = session.snapshot().await.expect("snapshot");
    assert_eq!(pinned.value::<u64>(&a()).expect("A"), &42);
}

// B16.14
#[tokio::test(start_paused = true)]
async fn b16_14_an_optional_failure_degrades_the_result() {
    let (builder, _h, _sink) = fixture();
    let session = builder.session(SessionOptions::new()).expect("session");

    let result = try_resolve(&session, &request(&[a()], &[failing()]), &default_policy()).await;

    assert_eq!(result.state(), ResultState::Degraded);
    assert_eq!(error_keys(result.optional_errors()), [failing()]);
    assert!(result.required_errors().is_empty());
    assert_eq!(result.reason(), "optional_errors");
    assert!(result.allows("read"));
    assert!(!result.allows("act"));
    assert_eq!(result.snapshot().value::<u64>(&a()).expect("A"), &42);
}

// B16.15
#[tokio::test(start_paused = true)]
async fn b16_15_nothing_resolved_is_rejected() {
    let (builder, _h, _sink) = fixture();
    let session = builder.session(SessionOptions::new()).expect("session");

    let result = try_resolve(&session, &request(&[failing()], &[]), &default_policy()).await;

    assert_eq!(result.state(), ResultState::Rejected);
    assert!(result.allowed_actions().is_empty());
    assert_eq!(error_keys(result.required_errors()), [failing()]);
    let error = result.raise_for_rejected().expect_err("rejected");
    let build = error.as_build().expect("a build error");
    assert_eq!(build.kind(), BuildErrorKind::Resolution);
    assert!(build.error(&failing()).is_some(), "{build:?}");
    assert!(result.require_accepted().is_err());
}

// B16.16
#[tokio::test(start_paused = true)]
async fn b16_16_a_required_error_with_other_resources_resolved_only_degrades() {
    let (builder, _h, _sink) = fixture();
    let session = builder.session(SessionOptions::new()).expect("session");

    let result = try_resolve(&session, &request(&[failing()], &[a()]), &default_policy()).await;

    assert_eq!(result.state(), ResultState::Degraded);
    assert_eq!(result.reason(), "required_errors");
    assert!(result.error().is_none());
    assert_eq!(result.snapshot().value::<u64>(&a()).expect("A"), &42);
}

// B16.17
#[tokio::test(start_paused = true)]
async fn b16_17_a_fail_closed_policy_rejects_an_optional_failure() {
    let (builder, _h, _sink) = fixture();
    let session = builder.session(SessionOptions::new()).expect("session");

    let result = try_resolve(
        &session,
        &request(&[a()], &[failing()]),
        &RequestDegradationPolicy::fail_closed(),
    )
    .await;

    assert_eq!(result.state(), ResultState::Rejected);
    assert_eq!(result.reason(), "optional_errors");
    assert!(result.allowed_actions().is_empty());
}

// B16.18
#[tokio::test(start_paused = true)]
async fn b16_18_reject_on_required_error_rejects_a_required_failure() {
    let (builder, _h, _sink) = fixture();
    let session = builder.session(SessionOptions::new()).expect("session");
    let policy = RequestDegradationPolicy::builder()
        .reject_on_required_error(true)
        .build()
        .expect("policy");

    let result = try_resolve(&session, &request(&[failing()], &[a()]), &policy).await;

    assert_eq!(result.state(), ResultState::Rejected);
    assert_eq!(error_keys(result.required_errors()), [failing()]);
    assert_eq!(result.reason(), "required_errors");
}

// B16.19, B16.20
#[tokio::test(start_paused = true)]
async fn b16_19_the_reason_lists_every_problem_in_a_fixed_order() {
    let (builder, _h, _sink) = fixture();
    let session = builder.session(SessionOptions::new()).expect("session");
    // A@100 and B@104 at clock 110: 4 s apart (1 s allowed), A 10 s old
    // (5 s allowed); FAIL required and FAIL2 optional both fail.
    let everything_wrong = request(&[a(), b(), failing()], &[also_failing()])
        .with_consistency(SnapshotConsistencyPolicy::new(Duration::from_secs(1)))
        .with_acceptance(
            SnapshotAcceptancePolicy::builder()
                .default_rule(
                    ResourceAcceptanceRule::unconstrained()
                        .max_age_secs(5.0)
                        .expect("rule"),
                )
                .build()
                .expect("policy"),
        )
        .expect("request");

    let result = session
        .try_resolve_request(
            &everything_wrong,
            ResolveOptions::new().strict(false),
            &default_policy(),
        )
        .await;

    assert_eq!(result.state(), ResultState::Degraded);
    assert_eq!(
        result.reason(),
        "required_errors, optional_errors, consistency_violation, acceptance_violation"
    );
    assert_eq!(error_keys(result.required_errors()), [failing()]);
    assert_eq!(error_keys(result.optional_errors()), [also_failing()]);
    let violation = result.consistency_violation().expect("consistency");
    assert_eq!((violation.oldest(), violation.newest()), (&a(), &b()));
    assert!(!result.acceptance_violations().is_empty());
    assert!(
        result.error().is_none(),
        "only a rejected result keeps an error"
    );
}

// B16.19
#[tokio::test(start_paused = true)]
async fn b16_19_too_few_resolved_resources_reject_an_otherwise_clean_result() {
    let (builder, _h, _sink) = fixture();
    let policy = RequestDegradationPolicy::builder()
        .minimum_resolved_resources(3)
        .build()
        .expect("policy");

    let result = builder
        .try_build_request(&request(&[a(), b()], &[]), BuildOptions::new(), &policy)
        .await;

    assert_eq!(result.state(), ResultState::Rejected);
    assert_eq!(result.reason(), "insufficient_resolved_resources");
    assert_eq!(
        result.snapshot().len(),
        2,
        "the snapshot is still delivered"
    );

    let policy = RequestDegradationPolicy::builder()
        .minimum_resolved_required_resources(2)
        .build()
        .expect("policy");
    let result = builder
        .try_build_request(
            &request(&[a(), failing()], &[b()]),
            BuildOptions::new(),
            &policy,
        )
        .await;
    assert_eq!(result.state(), ResultState::Rejected);
    assert_eq!(result.reason(), "required_errors");
}

// B16.21
#[tokio::test(start_paused = true)]
async fn b16_21_a_closed_session_gives_a_rejected_result_carrying_the_error() {
    let (builder, handle, _sink) = fixture();
    let session = builder
        .session(SessionOptions::new().snapshot_id("closed-1"))
        .expect("session");
    session.close().await;

    let result = try_resolve(&session, &request(&[a()], &[]), &default_policy()).await;

    assert_eq!(result.state(), ResultState::Rejected);
    assert_eq!(result.reason(), "SessionClosedError");
    assert!(result.snapshot().is_empty() && result.snapshot().errors().is_empty());
    assert_eq!(result.snapshot().id(), "closed-1");
    assert!(result.error().expect("stored error").is_closed());
    assert!(result
        .raise_for_rejected()
        .expect_err("rejected")
        .is_closed());
    assert_eq!(handle.calls(), 0);
}

// --------------------------------------------------- builder: try_build_*

// B16.20, B16.10
#[tokio::test(start_paused = true)]
async fn b16_20_contract_violations_are_reported_in_the_result_not_raised() {
    let (builder, _h, _sink) = fixture();
    let skewed = request(&[a(), b()], &[])
        .with_consistency(SnapshotConsistencyPolicy::new(Duration::from_secs(1)));

    let result = builder
        .try_build_request(&skewed, BuildOptions::new(), &default_policy())
        .await;
    assert_eq!(result.state(), ResultState::Degraded);
    assert_eq!(result.reason(), "consistency_violation");
    assert!(result.consistency_violation().is_some());
    assert_eq!(result.snapshot().len(), 2);
    let error = result.require_accepted().expect_err("not accepted");
    assert_eq!(
        error.as_build().expect("build error").kind(),
        BuildErrorKind::Consistency
    );

    let strict = RequestDegradationPolicy::builder()
        .reject_on_consistency_violation(true)
        .build()
        .expect("policy");
    let result = builder
        .try_build_request(&skewed, BuildOptions::new(), &strict)
        .await;
    assert_eq!(result.state(), ResultState::Rejected);

    let old = request(&[a()], &[])
        .with_acceptance(
            SnapshotAcceptancePolicy::builder()
                .default_rule(
                    ResourceAcceptanceRule::unconstrained()
                        .max_age_secs(1.0)
                        .expect("rule"),
                )
                .build()
                .expect("policy"),
        )
        .expect("request");
    let result = builder
        .try_build_request(&old, BuildOptions::new(), &default_policy())
        .await;
    assert_eq!(result.state(), ResultState::Degraded);
    assert_eq!(result.reason(), "acceptance_violation");
    assert_eq!(result.acceptance_violations().len(), 1);
    let error = result.require_accepted().expect_err("not accepted");
    assert_eq!(
        error.as_build().expect("build error").kind(),
        BuildErrorKind::Acceptance
    );
}

// B16.22
#[tokio::test(start_paused = true)]
async fn b16_22_try_build_request_accepts_or_rejects_without_raising() {
    let (builder, _h, _sink) = fixture();

    let accepted = builder
        .try_build_request(
            &request(&[b()], &[]),
            BuildOptions::new(),
            &default_policy(),
        )
        .await;
    assert_eq!(accepted.state(), ResultState::Accepted);
    assert_eq!(
        accepted.snapshot().value::<String>(&b()).expect("B"),
        "hello"
    );

    let rejected = builder
        .try_build_request(
            &request(&[failing()], &[]),
            BuildOptions::new(),
            &default_policy(),
        )
        .await;
    assert_eq!(rejected.state(), ResultState::Rejected);
    assert_eq!(error_keys(rejected.required_errors()), [failing()]);

    builder.close().await;
    let closed = builder
        .try_build_request(
            &request(&[b()], &[]),
            BuildOptions::new(),
            &default_policy(),
        )
        .await;
    assert_eq!(closed.state(), ResultState::Rejected);
    assert_eq!(closed.reason(), "ClosedError");
    assert!(closed.error().expect("stored error").is_closed());
}

// B16.23, B16.24
#[tokio::test(start_paused = true)]
async fn b16_23_try_build_requests_keeps_input_order_and_isolates_failures() {
    let (builder, _h, _sink) = fixture();
    let requests = [
        request(&[c()], &[]),
        request(&[failing()], &[]),
        request(&[a()], &[]),
    ];

    let results = builder
        .try_build_requests(&requests, BuildOptions::new(), &default_policy(), None)
        .await;

    let states: Vec<ResultState> = results.iter().map(SnapshotResult::state).collect();
    assert_eq!(
        states,
        [
            ResultState::Accepted,
            ResultState::Rejected,
            ResultState::Accepted
        ]
    );
    assert_eq!(results[0].snapshot().value::<u64>(&c()).expect("C"), &7);
    assert_eq!(results[2].snapshot().value::<u64>(&a()).expect("A"), &42);

    let none = builder
        .try_build_requests(&[], BuildOptions::new(), &default_policy(), None)
        .await;
    assert!(none.is_empty());
}

// B16.25
#[tokio::test(start_paused = true)]
async fn b16_25_try_build_requests_bounds_concurrency_and_prefixes_ids() {
    let (builder, handle, _sink) = fixture();
    handle.script().latency(Duration::from_millis(10));
    let requests = [
        request(&[a()], &[]),
        request(&[b()], &[]),
        request(&[c()], &[]),
    ];

    let results = builder
        .try_build_requests(
            &requests,
            BuildOptions::new().snapshot_id("p"),
            &default_policy(),
            Some(NonZeroUsize::new(1).expect("non-zero")),
        )
        .await;
    let ids: Vec<&str> = results.iter().map(|r| r.snapshot().id()).collect();
    assert_eq!(ids, ["p:0", "p:1", "p:2"]);
    assert_eq!(handle.max_in_flight(), 1, "one request at a time");

    // Default: min(requests, builder max_concurrency), here all three.
    builder.cache().clear().await.expect("clear");
    handle.reset_calls();
    let results = builder
        .try_build_requests(&requests, BuildOptions::new(), &default_policy(), None)
        .await;
    assert!(results.iter().all(SnapshotResult::is_accepted));
    assert_eq!(handle.max_in_flight(), 3);
}

// B16.26
#[tokio::test(start_paused = true)]
async fn b16_26_try_requests_record_their_state_and_build_status() {
    let (builder, _h, sink) = fixture();
    let session = builder.session(SessionOptions::new()).expect("session");

    builder
        .try_build_request(
            &request(&[a()], &[]),
            BuildOptions::new(),
            &default_policy(),
        )
        .await;
    builder
        .try_build_request(
            &request(&[a()], &[failing()]),
            BuildOptions::new(),
            &default_policy(),
        )
        .await;
    try_resolve(
        &session,
        &request(&[also_failing()], &[]),
        &default_policy(),
    )
    .await;

    let try_total =
        |status: &str| sink.counter("snapshot_try_request_total", &[("status", status)]);
    assert_eq!(
        (
            try_total("accepted"),
            try_total("degraded"),
            try_total("rejected")
        ),
        (1, 1, 1)
    );
    let build_total = |status: &str| sink.counter("snapshot_build_total", &[("status", status)]);
    assert_eq!((build_total("success"), build_total("error")), (1, 1));

    let events = sink.events_named("snapshot_try_request_resolved");
    assert_eq!(events.len(), 3);
    let degraded = &events[1];
    assert_eq!(
        degraded.get("state").and_then(|v| v.as_str()),
        Some("degraded")
    );
    assert_eq!(
        degraded.get("reason").and_then(|v| v.as_str()),
        Some("optional_errors")
    );
    assert_eq!(
        degraded.get("optional_errors").and_then(|v| v.as_f64()),
        Some(1.0)
    );
    assert_eq!(
        degraded.get("allowed_actions").and_then(|v| v.as_str()),
        Some("read,evaluate")
    );
    assert_eq!(
        events[2].get("snapshot_id").and_then(|v| v.as_str()),
        Some(session.id())
    );
}

#[tokio::test(start_paused = true)]
async fn a_multi_request_workload_keeps_its_healthy_parts() {
    let (builder, _h, _sink) = fixture();
    let workload = [
        request(&[a()], &[c()]),
        request(&[b()], &[failing()]),
        request(&[failing()], &[also_failing()]),
        request(&[also_failing()], &[c()]),
    ];

    let results = builder
        .try_build_requests(
            &workload,
            BuildOptions::new(),
            &RequestDegradationPolicy::read_only_degraded(),
            None,
        )
        .await;

    let summary: Vec<(ResultState, &str, Vec<&str>)> = results
        .iter()
        .map(|r| (r.state(), r.reason(), actions(r)))
        .collect();
    assert_eq!(
        summary,
        [
            (ResultState::Accepted, "accepted", vec!["read", "evaluate"]),
            (ResultState::Degraded, "optional_errors", vec!["read"]),
            (
                ResultState::Rejected,
                "required_errors, optional_errors",
                vec![]
            ),
            (ResultState::Degraded, "required_errors", vec!["read"]),
        ]
    );
    assert_eq!(results[3].snapshot().value::<u64>(&c()).expect("C"), &7);
}
