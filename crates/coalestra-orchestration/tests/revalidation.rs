//! Catalogue area 13 (sessions, revalidation side): transactional
//! `revalidate` — newest cached or published revision by default, the source
//! chain with `force_refresh`, transitive refresh of pinned derived
//! dependents (visible or internal), commit of everything or nothing,
//! `strict=false` errors that are returned but never stored, the session's
//! identity and deadline, health counters, metrics and events, `close`
//! waiting for a revalidation, and unresolved keys rejected before any work
//! (B13.6–B13.21, B22.39).
//!
//! Consistency and acceptance on revalidation live in `contracts.rs`.

use std::sync::Arc;
use std::time::Duration;

use coalestra_cache::PublishOptions;
use coalestra_core::{
    BuildErrorKind, Clock, CoalestraError, FetchContext, FnSource, ManualClock, Payload,
    ResourceKey, Snapshot, SourceError, SourceOptions, SourceOutput, SourceRef,
};
use coalestra_orchestration::{
    BuilderConfig, ResolveOptions, RevalidateOptions, SessionOptions, SnapshotBuilder,
    SnapshotSession,
};
use coalestra_test::{key, MockHandle, MockSource, RecordingSink};

mod support;
use support::{
    a, b, chain_deriver, chained, doubled, long_ttl, numbered, raw, recording,
    single_attempt_config, text, Calls, HANG_GUARD,
};

fn unrelated() -> ResourceKey {
    key("demo:unrelated:x")
}

/// A single-attempt configuration over `sources` on `clock` with the long
/// TTL.
fn config(sources: Vec<SourceRef>, clock: &ManualClock) -> BuilderConfig {
    single_attempt_config(sources, clock).default_policy(long_ttl())
}

fn force() -> RevalidateOptions {
    RevalidateOptions::new().force_refresh(true)
}

fn lenient_force() -> RevalidateOptions {
    force().strict(false)
}

fn numbered_builder(clock: &ManualClock) -> (SnapshotBuilder, Calls) {
    let calls = Calls::default();
    let builder = config(vec![numbered("rest", &calls).into()], clock)
        .build()
        .expect("valid builder");
    (builder, calls)
}

fn number(snapshot: &Snapshot, key: &ResourceKey) -> u64 {
    *snapshot
        .value::<u64>(key)
        .unwrap_or_else(|e| panic!("{key} should hold a number: {e}"))
}

/// Every key's version in `snapshot`.
fn versions(snapshot: &Snapshot) -> Vec<(ResourceKey, coalestra_core::Version)> {
    snapshot
        .values()
        .map(|v| (v.key().clone(), v.version()))
        .collect()
}

/// raw and unrelated from source "raw" (1 and 100), doubled = raw * 2 and
/// chained = doubled + 1 from the derived source "derive".
fn chain_builder(
    clock: &ManualClock,
    sink: Option<&RecordingSink>,
) -> (SnapshotBuilder, MockHandle, MockHandle) {
    let raw_source = MockSource::new("raw")
        .value(raw(), 1_u64)
        .value(unrelated(), 100_u64)
        .with_supports(|k| k.name() == "raw" || k.name() == "unrelated");
    let derive = chain_deriver();
    let (raw_handle, derive_handle) = (raw_source.handle(), derive.handle());
    let mut config = config(vec![raw_source.into(), derive.into()], clock);
    if let Some(sink) = sink {
        config = recording(config, sink);
    }
    let builder = config.build().expect("valid builder");
    (builder, raw_handle, derive_handle)
}

/// A builder over the mock `source` on a manual clock at 1000 s, with the
/// source's handle, a session and the snapshot of its stage resolving `keys`.
async fn mock_session(
    source: MockSource,
    keys: Vec<ResourceKey>,
) -> (SnapshotBuilder, MockHandle, SnapshotSession, Snapshot) {
    let clock = ManualClock::new(1_000.0);
    let handle = source.handle();
    let builder = config(vec![source.into()], &clock)
        .build()
        .expect("valid builder");
    let session = builder.session(SessionOptions::new()).expect("session");
    let resolved = resolved(&session, keys).await;
    (builder, handle, session, resolved)
}

async fn resolved(session: &SnapshotSession, keys: Vec<ResourceKey>) -> Snapshot {
    session
        .resolve(keys, ResolveOptions::new())
        .await
        .expect("stage")
}

async fn current(session: &SnapshotSession) -> Snapshot {
    session.snapshot().await.expect("session snapshot")
}

// ------------------------------------------------ what revalidation reads

// B13.6
#[tokio::test(start_paused = true)]
async fn b13_6_revalidation_reads_a_newer_published_revision() {
    let clock = ManualClock::new(1_000.0);
    let source = MockSource::new("rest")
        .value(a(), "source".to_owned())
        .value(b(), "source".to_owned());
    let handle = source.handle();
    let builder = config(vec![source.into()], &clock)
        .build()
        .expect("valid builder");
    let publisher = builder.publisher();
    publisher
        .publish(
            a(),
            Payload::new("published-1".to_owned()),
            PublishOptions::new("stream").observed_at(clock.now()),
        )
        .await
        .expect("publish 1");
    let session = builder.session(SessionOptions::new()).expect("session");
    let before = resolved(&session, vec![a(), b()]).await;
    assert_eq!(text(&before, &a()), "published-1");
    assert_eq!(text(&before, &b()), "source");

    clock.advance_secs(1.0);
    publisher
        .publish(
            a(),
            Payload::new("published-2".to_owned()),
            PublishOptions::new("stream").observed_at(clock.now()),
        )
        .await
        .expect("publish 2");
    let after = session
        .revalidate([a()], RevalidateOptions::new())
        .await
        .expect("revalidation");

    assert_eq!(text(&after, &a()), "published-2");
    assert_eq!(text(&after, &b()), "source");
    assert_eq!(
        after.get(&b()).expect("B").version(),
        before.get(&b()).expect("B").version()
    );
    assert_eq!(handle.calls(), 1, "only B was ever fetched");
    assert_eq!(text(&current(&session).await, &a()), "published-2");
}

// B13.7
#[tokio::test(start_paused = true)]
async fn b13_7_force_refresh_refetches_the_selected_resource_only() {
    let clock = ManualClock::new(1_000.0);
    let (builder, calls) = numbered_builder(&clock);
    let session = builder
        .session(SessionOptions::new().snapshot_id("cycle-7"))
        .expect("session");
    let before = resolved(&session, vec![a(), b()]).await;
    clock.advance_secs(1.0);

    let after = session
        .revalidate([a()], force())
        .await
        .expect("revalidation");

    assert_eq!(text(&after, &a()), "A-2");
    assert_ne!(
        after.get(&a()).expect("A").version(),
        before.get(&a()).expect("A").version()
    );
    assert_eq!(text(&after, &b()), "B-1");
    assert_eq!(
        after.get(&b()).expect("B").version(),
        before.get(&b()).expect("B").version()
    );
    assert_eq!(
        (after.id(), after.created_at()),
        ("cycle-7", before.created_at())
    );
    assert_eq!((calls.of(&a()), calls.of(&b())), (2, 1));
    assert!(
        calls.ids().iter().all(|id| id == "cycle-7"),
        "the revalidation runs under the session identity: {:?}",
        calls.ids()
    );
    assert_eq!(versions(&current(&session).await), versions(&after));
}

// B13.17
#[tokio::test(start_paused = true)]
async fn default_revalidation_reads_the_cache_while_force_refresh_reaches_the_source() {
    let clock = ManualClock::new(1_000.0);
    let sink = RecordingSink::new();
    let calls = Calls::default();
    let builder = config(vec![numbered("rest", &calls).into()], &clock)
        .events(Arc::new(sink.clone()))
        .metrics(Arc::new(sink.clone()))
        .build()
        .expect("valid builder");
    let session = builder.session(SessionOptions::new()).expect("session");
    let before = resolved(&session, vec![a()]).await;

    let cached = session
        .revalidate([a()], RevalidateOptions::new())
        .await
        .expect("default revalidation");
    assert_eq!(calls.of(&a()), 1, "the fresh cache entry answers");
    assert_eq!(text(&cached, &a()), "A-1");
    assert!(cached.get(&a()).expect("A").is_from_cache());
    assert_eq!(
        sink.counter("cache_access_total", &[("status", "revalidation_bypass")]),
        0
    );
    assert_eq!(versions(&cached), versions(&before));

    // A newer observation, so the monotonic cache takes the forced revision.
    clock.advance_secs(1.0);
    let forced = session.revalidate([a()], force()).await.expect("forced");
    assert_eq!(
        calls.of(&a()),
        2,
        "force_refresh skips the fresh cache entry"
    );
    assert_eq!(text(&forced, &a()), "A-2");
    assert!(!forced.get(&a()).expect("A").is_from_cache());
    assert_eq!(
        sink.counter("cache_access_total", &[("status", "revalidation_bypass")]),
        1
    );
    // The forced revision reached the shared cache: a new build sees it.
    assert_eq!(
        text(&builder.build([a()]).await.expect("build"), &a()),
        "A-2"
    );
    assert_eq!(calls.of(&a()), 2);
}

// ----------------------------------------------------- derived dependents

// B13.8, B13.16
#[tokio::test(start_paused = true)]
async fn b13_8_derived_dependents_are_refreshed_transitively() {
    let clock = ManualClock::new(1_000.0);
    let (builder, raw_handle, derive_handle) = chain_builder(&clock, None);
    let session = builder.session(SessionOptions::new()).expect("session");
    let before = resolved(&session, vec![raw(), doubled(), chained(), unrelated()]).await;
    assert_eq!(
        [&raw(), &doubled(), &chained(), &unrelated()].map(|k| number(&before, k)),
        [1, 2, 3, 100]
    );
    raw_handle.script().value(raw(), 2_u64);

    let after = session
        .revalidate([raw()], force())
        .await
        .expect("revalidation");

    assert_eq!(
        [&raw(), &doubled(), &chained(), &unrelated()].map(|k| number(&after, k)),
        [2, 4, 5, 100]
    );
    assert_eq!(
        after.get(&unrelated()).expect("unrelated").version(),
        before.get(&unrelated()).expect("unrelated").version()
    );
    assert_eq!(raw_handle.calls_for(raw()), 2);
    assert_eq!(raw_handle.calls_for(unrelated()), 1);
    assert_eq!(derive_handle.calls_for(doubled()), 2);
    assert_eq!(derive_handle.calls_for(chained()), 2);
    let committed = current(&session).await;
    assert_eq!(number(&committed, &chained()), 5);
    assert_eq!(
        committed.keys().cloned().collect::<Vec<_>>(),
        vec![raw(), doubled(), chained(), unrelated()]
    );
}

// B13.9, B13.16
#[tokio::test(start_paused = true)]
async fn b13_9_revalidating_an_internal_dependency_refreshes_the_visible_dependent() {
    let clock = ManualClock::new(1_000.0);
    let (builder, raw_handle, derive_handle) = chain_builder(&clock, None);
    let session = builder.session(SessionOptions::new()).expect("session");
    assert_eq!(
        number(&resolved(&session, vec![chained()]).await, &chained()),
        3
    );
    raw_handle.script().value(raw(), 2_u64);

    let after = session
        .revalidate([raw()], force())
        .await
        .expect("an internal dependency may be revalidated");

    assert_eq!(after.keys().cloned().collect::<Vec<_>>(), vec![chained()]);
    assert_eq!(number(&after, &chained()), 5);
    assert_eq!(raw_handle.calls_for(raw()), 2);
    assert_eq!(derive_handle.calls_for(doubled()), 2);
    let committed = current(&session).await;
    assert_eq!(
        committed.keys().cloned().collect::<Vec<_>>(),
        vec![chained()]
    );
    assert_eq!(number(&committed, &chained()), 5);
}

// B13.15
#[tokio::test(start_paused = true)]
async fn b13_15_a_published_dependency_update_cascades_to_pinned_dependents() {
    let clock = ManualClock::new(1_000.0);
    let (builder, raw_handle, derive_handle) = chain_builder(&clock, None);
    raw_handle.script().value(raw(), 2_u64);
    let session = builder.session(SessionOptions::new()).expect("session");
    let before = resolved(&session, vec![raw(), doubled()]).await;
    assert_eq!(
        (number(&before, &raw()), number(&before, &doubled())),
        (2, 4)
    );

    clock.advance_secs(1.0);
    builder
        .publisher()
        .publish(
            raw(),
            Payload::new(5_u64),
            PublishOptions::new("raw").observed_at(clock.now()),
        )
        .await
        .expect("publish");
    let after = session
        .revalidate([raw()], RevalidateOptions::new())
        .await
        .expect("revalidation");

    assert_eq!(
        (number(&after, &raw()), number(&after, &doubled())),
        (5, 10)
    );
    assert_eq!(
        raw_handle.calls_for(raw()),
        1,
        "raw came from the publication"
    );
    assert_eq!(derive_handle.calls_for(doubled()), 2);
}

// --------------------------------------------------- commit or roll back

// B13.10, B13.18
#[tokio::test(start_paused = true)]
async fn b13_10_a_failed_lenient_revalidation_returns_errors_but_keeps_the_session() {
    let clock = ManualClock::new(1_000.0);
    let (builder, raw_handle, _derive) = chain_builder(&clock, None);
    raw_handle.script().value(raw(), 4_u64);
    let session = builder.session(SessionOptions::new()).expect("session");
    let before = resolved(&session, vec![raw(), doubled(), unrelated()]).await;
    assert_eq!(
        (number(&before, &raw()), number(&before, &doubled())),
        (4, 8)
    );
    raw_handle
        .script()
        .always_fail(raw(), SourceError::unavailable("raw is down"));

    let returned = session
        .revalidate([raw()], lenient_force())
        .await
        .expect("a lenient revalidation returns a snapshot");

    // This call's errors are returned (a snapshot holds one entry per key:
    // an error replaces the kept value of its key) next to the kept values.
    let error = returned.error(&raw()).expect("raw failed");
    assert_eq!(error.failures()[0].source.as_ref(), "raw");
    assert_eq!(number(&returned, &unrelated()), 100, "kept value");
    assert_eq!(
        returned.get(&unrelated()).expect("unrelated").version(),
        before.get(&unrelated()).expect("unrelated").version()
    );
    assert_eq!(returned.id(), before.id());
    let kept = current(&session).await;
    assert!(kept.errors().is_empty(), "errors are not stored: {kept:?}");
    assert_eq!(versions(&kept), versions(&before));
    assert_eq!((number(&kept, &raw()), number(&kept, &doubled())), (4, 8));
    let health = builder.health();
    assert_eq!(
        (
            health.revalidation_attempt_count,
            health.revalidation_failure_count
        ),
        (1, 1)
    );
}

// B13.11
#[tokio::test(start_paused = true)]
async fn b13_11_a_failed_strict_revalidation_raises_with_the_retained_snapshot() {
    let (_builder, handle, session, before) =
        mock_session(MockSource::new("rest").value(a(), 7_u64), vec![a()]).await;
    handle
        .script()
        .always_fail(a(), SourceError::unavailable("rest is down"));

    let error = session
        .revalidate([a()], force())
        .await
        .expect_err("strict revalidation fails");

    let build = error.as_build().expect("a build error");
    assert_eq!(build.kind(), BuildErrorKind::Resolution);
    assert!(build.error(&a()).is_some(), "{build:?}");
    let retained = build.snapshot().expect("the retained snapshot");
    assert_eq!(number(retained, &a()), 7);
    assert_eq!(versions(retained), versions(&before));
    let kept = current(&session).await;
    assert!(kept.errors().is_empty());
    assert_eq!(versions(&kept), versions(&before));
}

#[tokio::test(start_paused = true)]
async fn one_failing_key_keeps_every_key_of_the_revalidation() {
    let (_builder, handle, session, before) = mock_session(
        MockSource::new("rest").value(a(), 1_u64).value(b(), 1_u64),
        vec![a(), b()],
    )
    .await;
    handle.script().value(a(), 2_u64);
    handle
        .script()
        .always_fail(b(), SourceError::unavailable("B is down"));

    let returned = session
        .revalidate([a(), b()], lenient_force())
        .await
        .expect("lenient");

    assert_eq!(handle.calls_for(a()), 2, "A was fetched again");
    assert_eq!(number(&returned, &a()), 1, "but its new value is not kept");
    assert!(returned.error(&b()).is_some());
    assert_eq!(versions(&current(&session).await), versions(&before));

    // Once B recovers, both commit together.
    handle.script().recover(b());
    let committed = session
        .revalidate([a(), b()], force())
        .await
        .expect("revalidation");
    assert_eq!((number(&committed, &a()), number(&committed, &b())), (2, 1));
    assert_ne!(
        committed.get(&b()).expect("B").version(),
        before.get(&b()).expect("B").version()
    );
}

#[tokio::test(start_paused = true)]
async fn a_failing_dependent_derivation_rolls_back_its_dependency() {
    let clock = ManualClock::new(1_000.0);
    let (builder, raw_handle, derive_handle) = chain_builder(&clock, None);
    let session = builder.session(SessionOptions::new()).expect("session");
    let before = resolved(&session, vec![raw(), doubled()]).await;
    raw_handle.script().value(raw(), 2_u64);
    derive_handle
        .script()
        .always_fail(doubled(), SourceError::protocol("cannot derive"));

    let error = session
        .revalidate([raw()], force())
        .await
        .expect_err("the dependent failed");

    let build = error.as_build().expect("a build error");
    assert!(build.error(&doubled()).is_some(), "{build:?}");
    assert_eq!(raw_handle.calls_for(raw()), 2, "raw itself resolved");
    let kept = current(&session).await;
    assert_eq!((number(&kept, &raw()), number(&kept, &doubled())), (1, 2));
    assert_eq!(versions(&kept), versions(&before));
}

// ------------------------------------------------------------ deadline

// B13.14
#[tokio::test(start_paused = true)]
async fn b13_14_revalidation_uses_the_sessions_original_deadline() {
    let clock = ManualClock::new(1_000.0);
    let (builder, calls) = numbered_builder(&clock);
    let session = builder
        .session(SessionOptions::new().deadline(Duration::from_secs(1)))
        .expect("session");
    let before = resolved(&session, vec![a()]).await;
    tokio::time::advance(Duration::from_secs(2)).await;

    let returned = tokio::time::timeout(HANG_GUARD, session.revalidate([a()], lenient_force()))
        .await
        .expect("no hang")
        .expect("lenient");

    assert_eq!(calls.of(&a()), 1, "no source call past the deadline");
    let error = returned.error(&a()).expect("A failed on the deadline");
    assert!(error.is_deadline_exceeded(), "{error:?}");
    let kept = current(&session).await;
    assert_eq!(text(&kept, &a()), "A-1");
    assert_eq!(versions(&kept), versions(&before));
    assert!(kept.errors().is_empty());
}

// --------------------------------------------------- validation, health

// B13.12, B22.39
#[tokio::test(start_paused = true)]
async fn b13_12_revalidating_unresolved_keys_is_rejected_before_any_work() {
    let clock = ManualClock::new(1_000.0);
    let calls = Calls::default();
    let failing = FnSource::new("down", |_key: ResourceKey, _ctx: FetchContext| async {
        Err::<SourceOutput, _>(SourceError::unavailable("down"))
    });
    let builder = config(
        vec![
            numbered("rest", &calls).with_supports(|k| k.subject() != "F"),
            failing,
        ]
        .into_iter()
        .map(SourceRef::from)
        .collect(),
        &clock,
    )
    .build()
    .expect("valid builder");
    let failed_key = key("market:price:F");
    let session = builder.session(SessionOptions::new()).expect("session");
    resolved(&session, vec![a()]).await;
    session
        .resolve([failed_key.clone()], ResolveOptions::new().strict(false))
        .await
        .expect("lenient stage");

    for keys in [vec![b()], vec![a(), b()], vec![failed_key.clone()]] {
        let error = session
            .revalidate(keys.clone(), force())
            .await
            .expect_err("not resolved in this session");
        assert!(
            matches!(error, CoalestraError::InvalidRequest(_)),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("resolved"), "{message}");
    }
    let error = session
        .revalidate(Vec::<ResourceKey>::new(), force())
        .await
        .expect_err("nothing to revalidate");
    assert!(matches!(error, CoalestraError::InvalidRequest(_)));

    assert_eq!((calls.of(&a()), calls.of(&b())), (1, 0));
    let health = builder.health();
    assert_eq!(
        (
            health.revalidation_attempt_count,
            health.revalidation_failure_count
        ),
        (0, 0),
        "rejected calls are not revalidation attempts"
    );
}

// B13.19
#[tokio::test(start_paused = true)]
async fn b13_19_health_counts_revalidation_attempts_and_failures() {
    let (builder, handle, session, _) =
        mock_session(MockSource::new("rest").value(a(), 1_u64), vec![a()]).await;
    let counts = |b: &SnapshotBuilder| {
        let h = b.health();
        (h.revalidation_attempt_count, h.revalidation_failure_count)
    };
    assert_eq!(counts(&builder), (0, 0));

    handle
        .script()
        .fail_times(a(), 1, SourceError::unavailable("blip"));
    session
        .revalidate([a()], force())
        .await
        .expect_err("fails once");
    assert_eq!(counts(&builder), (1, 1));

    session.revalidate([a()], force()).await.expect("succeeds");
    assert_eq!(counts(&builder), (2, 1));
}

// B13.20
#[tokio::test(start_paused = true)]
async fn b13_20_resolve_and_revalidate_report_metrics_and_events() {
    let clock = ManualClock::new(1_000.0);
    let sink = RecordingSink::new();
    let (builder, raw_handle, _derive) = chain_builder(&clock, Some(&sink));
    let session = builder
        .session(SessionOptions::new().snapshot_id("obs"))
        .expect("session");
    resolved(&session, vec![raw(), doubled()]).await;
    assert_eq!(
        sink.counter("snapshot_session_resolve_total", &[("status", "success")]),
        1
    );
    let resolved_events = sink.events_named("snapshot_session_resolved");
    assert_eq!(resolved_events.len(), 1);
    let event = &resolved_events[0];
    assert_eq!(
        event.get("snapshot_id").and_then(|v| v.as_str()),
        Some("obs")
    );
    assert_eq!(event.get("strict").and_then(|v| v.as_bool()), Some(true));
    assert_eq!(
        event.get("retry_errors").and_then(|v| v.as_bool()),
        Some(false)
    );

    session.revalidate([raw()], force()).await.expect("commit");
    raw_handle
        .script()
        .always_fail(raw(), SourceError::unavailable("down"));
    session
        .revalidate([raw()], lenient_force())
        .await
        .expect("lenient");

    assert_eq!(
        sink.counter(
            "snapshot_session_revalidate_total",
            &[("status", "success")]
        ),
        1
    );
    assert_eq!(
        sink.counter("snapshot_session_revalidate_total", &[("status", "error")]),
        1
    );
    let events = sink.events_named("snapshot_session_revalidated");
    assert_eq!(events.len(), 2);
    let flag = |i: usize, name: &str| events[i].get(name).and_then(|v| v.as_bool());
    assert_eq!(flag(0, "committed"), Some(true));
    assert_eq!(flag(0, "retained_previous"), Some(false));
    assert_eq!(flag(0, "force_refresh"), Some(true));
    assert_eq!(flag(1, "committed"), Some(false));
    assert_eq!(flag(1, "retained_previous"), Some(true));
    assert_eq!(flag(1, "strict"), Some(false));
    assert_eq!(flag(1, "consistency_failed"), Some(false));
    assert_eq!(flag(1, "acceptance_failed"), Some(false));
    let count = |i: usize, name: &str| events[i].get(name).and_then(|v| v.as_f64());
    assert_eq!(count(0, "requested"), Some(1.0));
    assert_eq!(count(0, "affected"), Some(2.0), "raw and doubled");
    assert_eq!(count(0, "refreshed"), Some(2.0));
    assert_eq!(count(0, "failed"), Some(0.0));
    assert_eq!(
        events[1].get("snapshot_id").and_then(|v| v.as_str()),
        Some("obs")
    );
}

// B13.21
#[tokio::test(start_paused = true)]
async fn b13_21_close_waits_for_a_running_revalidation() {
    let (_builder, handle, session, _) =
        mock_session(MockSource::new("rest").value(a(), 1_u64), vec![a()]).await;
    let session = Arc::new(session);
    handle.script().value(a(), 2_u64);
    let gate = handle.gate();

    let revalidation = tokio::spawn({
        let session = Arc::clone(&session);
        async move { session.revalidate([a()], force()).await }
    });
    gate.wait_for_arrivals(1).await;
    let closing = tokio::spawn({
        let session = Arc::clone(&session);
        async move { session.close().await }
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    assert!(
        !closing.is_finished(),
        "close waits for the revalidation in progress"
    );

    gate.open();
    let updated = tokio::time::timeout(HANG_GUARD, revalidation)
        .await
        .expect("no hang")
        .expect("join")
        .expect("the revalidation completes");
    assert_eq!(number(&updated, &a()), 2);
    tokio::time::timeout(HANG_GUARD, closing)
        .await
        .expect("no hang")
        .expect("join");
    assert!(session.is_closed());
    assert!(session.snapshot().await.expect_err("closed").is_closed());
}
