//! Catalogue area 13 (sessions, resolution side): one identity, one creation
//! time and one absolute deadline shared by every stage; pinned values that
//! survive cache expiry and later publications (B4.10); sticky failures and
//! `retry_errors`; internal dependencies kept out of sight; immutable stage
//! snapshots with diagnostics; closing; sharing the builder's capacity and
//! single-flight table; the shared session deadline (B11.7, B13.22), zero
//! deadlines (B11.29) and empty stages rejected before any work (B22.39).
//!
//! Revalidation lives in `revalidation.rs`, request contracts in
//! `contracts.rs`, the `try_*` API in `degradation.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coalestra_cache::PublishOptions;
use coalestra_core::{
    BuildErrorKind, Clock, CoalestraError, FetchContext, FnSource, FreshnessPolicy, ManualClock,
    Payload, ResourceKey, Snapshot, SourceError, SourceOutput, Timestamp,
};
use coalestra_orchestration::{
    ResolveOptions, RevalidateOptions, SessionOptions, SnapshotBuilder, SnapshotSession,
};
use coalestra_test::{MockHandle, MockSource};

mod support;
use support::{
    a, b, chain_deriver, chained, doubled, long_ttl, numbered, raw,
    single_attempt_config as config, text, Calls, HANG_GUARD,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A builder over [`numbered`] "rest" on a manual clock at 1000 s, with
/// the clock and the call counts.
fn numbered_rest() -> (ManualClock, Calls, SnapshotBuilder) {
    let clock = ManualClock::new(1_000.0);
    let calls = Calls::default();
    let builder = config(vec![numbered("rest", &calls).into()], &clock)
        .build()
        .expect("valid builder");
    (clock, calls, builder)
}

/// Resolves `keys` as a default stage of `session`, which must succeed.
async fn stage<const N: usize>(
    session: &SnapshotSession,
    keys: [ResourceKey; N],
    label: &str,
) -> Snapshot {
    session
        .resolve(keys, ResolveOptions::new())
        .await
        .expect(label)
}

/// raw (source "raw", value 1) → doubled = raw * 2 → chained = doubled + 1.
fn chain_builder(clock: &ManualClock) -> (SnapshotBuilder, MockHandle, MockHandle) {
    let raw_source = MockSource::new("raw")
        .value(raw(), 1_u64)
        .with_supports(|k| k.name() == "raw");
    let derive = chain_deriver();
    let (raw_handle, derive_handle) = (raw_source.handle(), derive.handle());
    let builder = config(vec![raw_source.into(), derive.into()], clock)
        .default_policy(long_ttl())
        .build()
        .expect("valid builder");
    (builder, raw_handle, derive_handle)
}

// ------------------------------------------------- identity and pinning

// B13.1
#[tokio::test(start_paused = true)]
async fn b13_1_stages_share_one_identity_and_pin_values_despite_zero_ttl() {
    let clock = ManualClock::new(1_000.0);
    let calls = Calls::default();
    let builder = config(vec![numbered("rest", &calls).into()], &clock)
        .default_policy(FreshnessPolicy::no_cache())
        .build()
        .expect("valid builder");
    let session = builder
        .session(SessionOptions::new().snapshot_id("cycle-1"))
        .expect("session");
    assert_eq!(session.id(), "cycle-1");
    assert_eq!(session.created_at(), Timestamp::from_secs(1_000.0));

    let first = stage(&session, [a()], "stage 1").await;
    clock.advance_secs(5.0);
    let second = stage(&session, [a(), b()], "stage 2").await;
    let current = session.snapshot().await.expect("snapshot");

    for snapshot in [&first, &second, &current] {
        assert_eq!(snapshot.id(), "cycle-1");
        assert_eq!(snapshot.created_at(), session.created_at());
    }
    assert_eq!(text(&current, &a()), "A-1");
    assert_eq!(text(&current, &b()), "B-1");
    assert_eq!((calls.of(&a()), calls.of(&b())), (1, 1));
    assert_eq!(
        current.get(&a()).expect("A").version(),
        first.get(&a()).expect("A").version(),
        "A is the very revision pinned by stage 1"
    );

    // Outside the session, a TTL of zero means a new fetch.
    let fresh = builder.build([a()]).await.expect("build");
    assert_eq!(text(&fresh, &a()), "A-2");
    assert_eq!(
        text(&session.snapshot().await.expect("snapshot"), &a()),
        "A-1"
    );
}

#[tokio::test(start_paused = true)]
async fn pinned_values_survive_cache_ttl_expiry_between_stages() {
    let clock = ManualClock::new(1_000.0);
    let calls = Calls::default();
    let builder = config(vec![numbered("rest", &calls).into()], &clock)
        .default_policy(
            FreshnessPolicy::new(Duration::from_secs(1), Duration::from_secs(2)).expect("policy"),
        )
        .build()
        .expect("valid builder");
    let session = builder.session(SessionOptions::new()).expect("session");

    let first = stage(&session, [a()], "stage 1").await;
    let pinned = first.get(&a()).expect("A").clone();
    // Far past the TTL and the stale window: the cache entry is gone.
    clock.advance_secs(60.0);
    let second = stage(&session, [a(), b()], "stage 2").await;

    let a_now = second.get(&a()).expect("A");
    assert_eq!(text(&second, &a()), "A-1");
    assert_eq!(a_now.version(), pinned.version());
    assert_eq!(a_now.observed_at(), pinned.observed_at());
    assert_eq!(calls.of(&a()), 1, "A is not fetched again");

    let outside = builder.build([a()]).await.expect("build");
    assert_eq!(text(&outside, &a()), "A-2", "the cache entry did expire");
}

#[tokio::test(start_paused = true)]
async fn later_stages_derive_from_values_pinned_by_earlier_stages() {
    let clock = ManualClock::new(1_000.0);
    let (builder, raw_handle, derive_handle) = chain_builder(&clock);
    let session = builder.session(SessionOptions::new()).expect("session");

    let first = stage(&session, [raw()], "stage 1").await;
    assert_eq!(first.value::<u64>(&raw()).expect("raw"), &1);
    let raw_version = first.get(&raw()).expect("raw").version();
    // The source moves on and the cache forgets raw: stage 2 must still
    // derive from the pinned raw.
    raw_handle.script().value(raw(), 50_u64);
    builder
        .cache()
        .invalidate(&raw())
        .await
        .expect("invalidate");

    let second = stage(&session, [doubled()], "stage 2").await;

    assert_eq!(second.value::<u64>(&doubled()).expect("doubled"), &2);
    assert_eq!(
        second
            .get(&doubled())
            .expect("doubled")
            .dependency_versions(),
        [(raw(), raw_version)]
    );
    assert_eq!(raw_handle.calls_for(raw()), 1);
    assert_eq!(derive_handle.calls_for(doubled()), 1);
}

// -------------------------------------------------------- failed keys

/// A source answering 99, or failing while `down` is set.
fn switchable(down: &Arc<AtomicBool>, calls: &Calls) -> FnSource {
    let (down, calls) = (Arc::clone(down), calls.clone());
    FnSource::new("rest", move |key: ResourceKey, ctx: FetchContext| {
        calls.bump(&key, &ctx);
        let failing = down.load(Ordering::SeqCst);
        async move {
            if failing {
                Err(SourceError::unavailable("rest is down"))
            } else {
                Ok(SourceOutput::new(99_u64))
            }
        }
    })
}

// B13.2
#[tokio::test(start_paused = true)]
async fn b13_2_retry_errors_refetches_a_previously_failed_resource() {
    let clock = ManualClock::new(1_000.0);
    let (down, calls) = (Arc::new(AtomicBool::new(true)), Calls::default());
    let builder = config(vec![switchable(&down, &calls).into()], &clock)
        .build()
        .expect("valid builder");
    let session = builder.session(SessionOptions::new()).expect("session");

    let failed = session
        .resolve([a()], ResolveOptions::new().strict(false))
        .await
        .expect("non-strict stage");
    assert!(failed.error(&a()).is_some(), "{failed:?}");

    down.store(false, Ordering::SeqCst);
    let retried = session
        .resolve([a()], ResolveOptions::new().retry_errors(true))
        .await
        .expect("the retry succeeds");

    assert_eq!(retried.value::<u64>(&a()).expect("A"), &99);
    assert!(retried.error(&a()).is_none());
    assert_eq!(calls.of(&a()), 2);
    let current = session.snapshot().await.expect("snapshot");
    assert!(current.errors().is_empty(), "{:?}", current.errors());
    assert_eq!(current.value::<u64>(&a()).expect("A"), &99);
}

// B13.3
#[tokio::test(start_paused = true)]
async fn b13_3_a_failed_resource_stays_failed_without_retry_errors() {
    let clock = ManualClock::new(1_000.0);
    let (down, calls) = (Arc::new(AtomicBool::new(true)), Calls::default());
    let builder = config(vec![switchable(&down, &calls).into()], &clock)
        .build()
        .expect("valid builder");
    let session = builder.session(SessionOptions::new()).expect("session");
    session
        .resolve([a()], ResolveOptions::new().strict(false))
        .await
        .expect("non-strict stage");
    down.store(false, Ordering::SeqCst);

    let error = session
        .resolve([a()], ResolveOptions::new())
        .await
        .expect_err("the earlier failure is sticky");
    let build = error.as_build().expect("a build error");
    assert_eq!(build.kind(), BuildErrorKind::Resolution);
    assert!(build.error(&a()).is_some(), "{build:?}");

    let lenient = session
        .resolve([a()], ResolveOptions::new().strict(false))
        .await
        .expect("non-strict stage");
    assert!(lenient.error(&a()).is_some());
    assert_eq!(calls.of(&a()), 1, "no refetch without retry_errors");
}

// --------------------------------------------- visibility and snapshots

#[tokio::test(start_paused = true)]
async fn internal_dependencies_are_pinned_but_hidden_until_requested() {
    let clock = ManualClock::new(1_000.0);
    let (builder, raw_handle, derive_handle) = chain_builder(&clock);
    let session = builder.session(SessionOptions::new()).expect("session");

    let first = stage(&session, [chained()], "stage 1").await;
    assert_eq!(first.value::<u64>(&chained()).expect("chained"), &3);
    for snapshot in [&first, &session.snapshot().await.expect("snapshot")] {
        assert_eq!(
            snapshot.keys().cloned().collect::<Vec<_>>(),
            vec![chained()]
        );
        assert!(snapshot.get(&raw()).is_none() && snapshot.get(&doubled()).is_none());
        assert!(snapshot.errors().is_empty());
    }

    // Requesting them later exposes the very revisions chained was built on.
    let second = stage(&session, [raw(), doubled()], "stage 2").await;
    let (raw_v, doubled_v, chained_v) = (
        second.get(&raw()).expect("raw"),
        second.get(&doubled()).expect("doubled"),
        second.get(&chained()).expect("chained"),
    );
    assert_eq!(doubled_v.dependency_versions(), [(raw(), raw_v.version())]);
    assert_eq!(
        chained_v.dependency_versions(),
        [(doubled(), doubled_v.version())]
    );
    assert_eq!(raw_handle.calls_for(raw()), 1);
    assert_eq!(derive_handle.calls_for(doubled()), 1);
    assert_eq!(derive_handle.calls_for(chained()), 1);
}

#[tokio::test(start_paused = true)]
async fn stage_snapshots_are_immutable_and_the_session_snapshot_has_diagnostics() {
    let (_clock, _calls, builder) = numbered_rest();
    let session = builder.session(SessionOptions::new()).expect("session");

    let first = stage(&session, [a()], "stage 1").await;
    let second = stage(&session, [b()], "stage 2").await;

    assert_eq!(first.keys().cloned().collect::<Vec<_>>(), vec![a()]);
    assert_eq!(second.keys().cloned().collect::<Vec<_>>(), vec![a(), b()]);
    let current = session.snapshot().await.expect("snapshot");
    assert_eq!(current.keys().cloned().collect::<Vec<_>>(), vec![a(), b()]);
    assert!(current.is_complete());
    let diagnostics = current.diagnostics().expect("diagnostics");
    assert_eq!(
        diagnostics.resolved_resources,
        diagnostics.requested_resources
    );
    assert_eq!(diagnostics.failed_resources, 0);
}

// B13.23 (source-only in the original)
#[tokio::test(start_paused = true)]
async fn b13_23_session_diagnostics_accumulate_across_stages() {
    let (_clock, _calls, builder) = numbered_rest();
    let session = builder.session(SessionOptions::new()).expect("session");
    stage(&session, [a()], "stage 1").await;
    stage(&session, [b()], "stage 2").await;

    let current = session.snapshot().await.expect("snapshot");
    let diagnostics = current.diagnostics().expect("diagnostics");
    assert_eq!(diagnostics.requested_resources, 2, "{diagnostics:?}");
    assert_eq!(diagnostics.resolved_resources, 2, "{diagnostics:?}");
    assert_eq!(diagnostics.source_calls, 2, "{diagnostics:?}");
}

// --------------------------------------------------------- publication

// B4.10
#[tokio::test(start_paused = true)]
async fn b4_10_a_publication_after_pinning_is_seen_by_new_builds_not_by_the_session() {
    let clock = ManualClock::new(1_000.0);
    let calls = Calls::default();
    let builder = config(vec![numbered("rest", &calls).into()], &clock)
        .default_policy(long_ttl())
        .build()
        .expect("valid builder");
    let publisher = builder.publisher();
    let published = publisher
        .publish(
            a(),
            Payload::new("v1".to_owned()),
            PublishOptions::new("stream").observed_at(clock.now()),
        )
        .await
        .expect("publish v1");
    assert!(published.is_published());

    let session = builder.session(SessionOptions::new()).expect("session");
    let first = stage(&session, [a()], "stage 1").await;
    assert_eq!(text(&first, &a()), "v1");

    clock.advance_secs(1.0);
    let published = publisher
        .publish(
            a(),
            Payload::new("v2".to_owned()),
            PublishOptions::new("stream").observed_at(clock.now()),
        )
        .await
        .expect("publish v2");
    assert!(published.is_published());

    let again = stage(&session, [a()], "stage 2").await;
    assert_eq!(text(&again, &a()), "v1");
    assert_eq!(
        text(&session.snapshot().await.expect("snapshot"), &a()),
        "v1"
    );

    let build = builder.build([a()]).await.expect("build");
    assert_eq!(text(&build, &a()), "v2");
    let other = builder.session(SessionOptions::new()).expect("session");
    let other_stage = other
        .resolve([a()], ResolveOptions::new())
        .await
        .expect("new session");
    assert_eq!(text(&other_stage, &a()), "v2");
    assert_eq!(calls.total(), 0, "everything came from publications");
}

// ------------------------------------------------------------- closing

// B13.4
#[tokio::test(start_paused = true)]
async fn b13_4_a_closed_session_refuses_work_and_the_builder_keeps_working() {
    let (_clock, calls, builder) = numbered_rest();
    let session = builder.session(SessionOptions::new()).expect("session");
    stage(&session, [a()], "stage").await;

    session.close().await;
    session.close().await; // idempotent
    assert!(session.is_closed());

    let error = session
        .resolve([b()], ResolveOptions::new())
        .await
        .expect_err("closed");
    assert!(error.is_closed(), "{error:?}");
    assert_eq!(error.to_string(), "snapshot session is closed");
    let request = coalestra_core::SnapshotRequest::required([b()]).expect("request");
    assert!(session
        .resolve_request(&request, ResolveOptions::new())
        .await
        .expect_err("closed")
        .is_closed());
    assert!(session.snapshot().await.expect_err("closed").is_closed());
    assert!(session
        .revalidate([a()], RevalidateOptions::new())
        .await
        .expect_err("closed")
        .is_closed());
    assert_eq!(calls.of(&b()), 0, "a closed session calls no source");

    assert!(!builder.is_closed());
    builder
        .build([b()])
        .await
        .expect("the builder still builds");
}

#[tokio::test(start_paused = true)]
async fn closing_a_session_releases_its_pinned_values() {
    let clock = ManualClock::new(1_000.0);
    let marker = Arc::new(());
    let in_source = Arc::clone(&marker);
    let source = FnSource::new("rest", move |_key: ResourceKey, _ctx: FetchContext| {
        let payload = Arc::clone(&in_source);
        async move { Ok(SourceOutput::new(payload)) }
    });
    // Nothing is cached: only the session can hold the payload.
    let builder = config(vec![source.into()], &clock)
        .default_policy(FreshnessPolicy::no_cache())
        .build()
        .expect("valid builder");
    let session = builder.session(SessionOptions::new()).expect("session");
    drop(stage(&session, [a()], "stage").await);
    let baseline = 2; // the test and the source closure
    assert_eq!(
        Arc::strong_count(&marker),
        baseline + 1,
        "the session pins the payload"
    );

    session.close().await;

    assert_eq!(Arc::strong_count(&marker), baseline, "closing releases it");
}

#[tokio::test(start_paused = true)]
async fn a_closed_builder_opens_no_session() {
    let (_clock, calls, builder) = numbered_rest();
    let session = builder.session(SessionOptions::new()).expect("session");
    builder.close().await;

    let error = builder
        .session(SessionOptions::new())
        .expect_err("closed builder");
    assert!(error.is_closed(), "{error:?}");
    assert!(error.to_string().contains("snapshot builder is closed"));
    let stage = session
        .resolve([a()], ResolveOptions::new())
        .await
        .expect_err("an open session of a closed builder refuses work");
    assert!(stage.is_closed(), "{stage:?}");
    assert_eq!(calls.total(), 0);
}

// ------------------------------------------ shared single-flight / capacity

#[tokio::test(start_paused = true)]
async fn a_session_stage_joins_a_concurrent_build_of_the_same_key() {
    let clock = ManualClock::new(1_000.0);
    let source = MockSource::new("rest").value(a(), 7_u64);
    let handle = source.handle();
    let builder = config(vec![source.into()], &clock)
        .build()
        .expect("valid builder");
    let gate = handle.gate();
    let build = tokio::spawn({
        let builder = builder.clone();
        async move { builder.build([a()]).await }
    });
    gate.wait_for_arrivals(1).await;
    let session = builder.session(SessionOptions::new()).expect("session");

    let (stage, ()) = tokio::time::timeout(HANG_GUARD, async {
        tokio::join!(session.resolve([a()], ResolveOptions::new()), async {
            // Paused time only advances once the stage is parked on the
            // shared fetch.
            tokio::time::sleep(ms(1)).await;
            gate.open();
        })
    })
    .await
    .expect("no hang");

    let stage = stage.expect("stage");
    let built = build.await.expect("join").expect("build");
    assert_eq!(handle.calls(), 1, "one fetch for the build and the session");
    assert_eq!(stage.value::<u64>(&a()).expect("A"), &7);
    assert!(stage.get(&a()).expect("A").is_coalesced());
    assert_eq!(
        stage.get(&a()).expect("A").version(),
        built.get(&a()).expect("A").version()
    );
}

#[tokio::test(start_paused = true)]
async fn a_session_stage_waits_for_the_builders_capacity() {
    let clock = ManualClock::new(1_000.0);
    let source = MockSource::new("rest").value(a(), 1_u64).value(b(), 2_u64);
    let handle = source.handle();
    let builder = config(vec![source.into()], &clock)
        .max_concurrency(1)
        .build()
        .expect("valid builder");
    let gate = handle.gate();
    let build = tokio::spawn({
        let builder = builder.clone();
        async move { builder.build([a()]).await }
    });
    gate.wait_for_arrivals(1).await;
    let session = builder.session(SessionOptions::new()).expect("session");

    let (stage, waiting) = tokio::time::timeout(HANG_GUARD, async {
        tokio::join!(session.resolve([b()], ResolveOptions::new()), async {
            tokio::time::sleep(ms(1)).await;
            let waiting = builder.capacity().global.waiting;
            assert_eq!(handle.calls(), 1, "B waits for the slot A holds");
            gate.open();
            waiting
        })
    })
    .await
    .expect("no hang");

    assert_eq!(waiting, 1, "the session queued for the builder's only slot");
    assert_eq!(stage.expect("stage").value::<u64>(&b()).expect("B"), &2);
    build.await.expect("join").expect("build");
    assert_eq!(handle.calls(), 2);
}

// ---------------------------------------------------------- deadlines

/// What a source call saw: the key's subject, the snapshot id, the deadline.
type Seen = Arc<Mutex<Vec<(String, String, Option<std::time::Instant>)>>>;

/// A source sleeping 30 ms for A and 40 ms otherwise, recording each call.
fn slow_recording(seen: &Seen, calls: &Calls) -> FnSource {
    let (seen, calls) = (Arc::clone(seen), calls.clone());
    FnSource::new("rest", move |key: ResourceKey, ctx: FetchContext| {
        calls.bump(&key, &ctx);
        seen.lock().expect("lock").push((
            key.subject().to_owned(),
            ctx.snapshot_id.to_string(),
            ctx.deadline,
        ));
        let latency = if key.subject() == "A" { ms(30) } else { ms(40) };
        async move {
            tokio::time::sleep(latency).await;
            Ok(SourceOutput::new(format!("{}-done", key.subject())))
        }
    })
}

// B11.7
#[tokio::test(start_paused = true)]
async fn b11_7_one_session_deadline_covers_every_stage() {
    let clock = ManualClock::new(1_000.0);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls = Calls::default();
    let builder = config(vec![slow_recording(&seen, &calls).into()], &clock)
        .build()
        .expect("valid builder");
    let session = builder
        .session(SessionOptions::new().snapshot_id("s-1").deadline(ms(50)))
        .expect("session");
    let start = tokio::time::Instant::now();

    let first = session
        .resolve([a()], ResolveOptions::new().strict(false))
        .await
        .expect("stage 1");
    assert_eq!(text(&first, &a()), "A-done");
    // 30 ms used: 20 ms left for B, which needs 40.
    let second = tokio::time::timeout(
        HANG_GUARD,
        session.resolve([b()], ResolveOptions::new().strict(false)),
    )
    .await
    .expect("no hang")
    .expect("non-strict stage");

    assert_eq!(start.elapsed(), ms(50), "the stage ends at the deadline");
    let error = second.error(&b()).expect("B missed the deadline");
    assert!(error.is_deadline_exceeded(), "{error:?}");
    assert_eq!(
        error.failures()[0].error.error_type(),
        "SnapshotDeadlineExceededError"
    );
    assert_eq!(text(&second, &a()), "A-done", "A stays pinned");

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen.iter().all(|(_, id, _)| id == "s-1"), "{seen:?}");
    assert!(seen[0].2.is_some(), "sources see the session deadline");
    assert_eq!(seen[0].2, seen[1].2, "both stages share one deadline");
}

// B13.22
#[tokio::test(start_paused = true)]
async fn b13_22_a_strict_stage_past_the_deadline_fails_without_a_snapshot() {
    let clock = ManualClock::new(1_000.0);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let calls = Calls::default();
    let builder = config(vec![slow_recording(&seen, &calls).into()], &clock)
        .build()
        .expect("valid builder");
    let session = builder
        .session(SessionOptions::new().deadline(ms(50)))
        .expect("session");
    tokio::time::advance(ms(60)).await;

    let error = session
        .resolve([a()], ResolveOptions::new())
        .await
        .expect_err("the deadline has passed");

    let build = error.as_build().expect("a build error");
    assert_eq!(build.kind(), BuildErrorKind::Resolution);
    assert!(build.is_deadline_exceeded(), "{build:?}");
    assert!(build.snapshot().is_none(), "no partial snapshot");
    assert_eq!(calls.total(), 0, "no source is called past the deadline");
    assert_eq!(builder.health().deadline_exceeded_count, 1);
}

// B11.29
#[tokio::test(start_paused = true)]
async fn b11_29_a_zero_session_deadline_is_rejected() {
    let (_clock, _calls, builder) = numbered_rest();

    let error = builder
        .session(SessionOptions::new().deadline(Duration::ZERO))
        .expect_err("zero deadline");

    assert!(error.is_config(), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("deadline") && text.contains("positive"),
        "{text}"
    );
    builder
        .session(SessionOptions::new().deadline(Duration::from_nanos(1)))
        .expect("any positive deadline is fine");
}

// ------------------------------------------------------- empty stages

// B22.39
#[tokio::test(start_paused = true)]
async fn b22_39_resolving_no_keys_is_rejected_before_any_work() {
    let (_clock, calls, builder) = numbered_rest();
    let session = builder.session(SessionOptions::new()).expect("session");

    let error = session
        .resolve(Vec::<ResourceKey>::new(), ResolveOptions::new())
        .await
        .expect_err("nothing to resolve");

    assert!(
        matches!(error, CoalestraError::InvalidRequest(_)),
        "{error:?}"
    );
    assert_eq!(calls.total(), 0);
    let current = session.snapshot().await.expect("snapshot");
    assert!(current.is_empty() && current.errors().is_empty());
    assert!(!session.is_closed());
}
