//! Catalogue area 8: refresh modes — blocking, stale-while-revalidate,
//! refresh-ahead, at most one background refresh per key, refreshes never
//! writing older or stale data, refresh contexts, metrics and events, and
//! refreshes around `close()` (B8.1–B8.14).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coalestra_cache::MemoryCache;
use coalestra_core::value::ValueParts;
use coalestra_core::{
    BuildOptions, CacheWrite, Clock, Event, FetchContext, FnSource, FreshnessPolicy, ManualClock,
    Metadata, Payload, RefreshMode, ResourceKey, Snapshot, SnapshotValue, SourceError,
    SourceOutput, Timestamp,
};
use coalestra_orchestration::{BuilderConfig, SnapshotBuilder};
use coalestra_test::{key, Gate, ScriptedCache};

mod support;
use support::single_attempt;

fn price() -> ResourceKey {
    key("market:price:BTC")
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn swr(ttl: u64, max_stale: u64) -> FreshnessPolicy {
    FreshnessPolicy::new(secs(ttl), secs(max_stale))
        .expect("valid policy")
        .with_refresh_mode(RefreshMode::StaleWhileRevalidate)
        .expect("valid mode")
}

fn refresh_ahead(ttl: u64, max_stale: u64, window: u64) -> FreshnessPolicy {
    FreshnessPolicy::new(secs(ttl), secs(max_stale))
        .expect("valid policy")
        .with_refresh_mode(RefreshMode::RefreshAhead {
            window: secs(window),
        })
        .expect("valid mode")
}

fn blocking(ttl: u64, max_stale: u64) -> FreshnessPolicy {
    FreshnessPolicy::new(secs(ttl), secs(max_stale)).expect("valid policy")
}

type Reply = Arc<dyn Fn(u64, &ManualClock) -> Result<SourceOutput, SourceError> + Send + Sync>;

/// A source whose n-th call (1-based) answers `reply(n)`; calls from
/// `gate_from` on wait for `gate` first. Records every call's context.
struct Scripted {
    calls: Arc<AtomicUsize>,
    contexts: Arc<Mutex<Vec<FetchContext>>>,
    gate: Gate,
}

impl Scripted {
    fn new() -> Self {
        Self {
            calls: Arc::default(),
            contexts: Arc::default(),
            gate: Gate::new(),
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn source(&self, clock: &ManualClock, gate_from: Option<u64>, reply: Reply) -> FnSource {
        let calls = Arc::clone(&self.calls);
        let contexts = Arc::clone(&self.contexts);
        let gate = self.gate.clone();
        let clock = clock.clone();
        FnSource::new("rest", move |_k: ResourceKey, ctx: FetchContext| {
            let n = calls.fetch_add(1, Ordering::SeqCst) as u64 + 1;
            contexts.lock().expect("lock").push(ctx);
            let gate = gate.clone();
            let reply = Arc::clone(&reply);
            let clock = clock.clone();
            async move {
                if gate_from.is_some_and(|from| n >= from) {
                    gate.pass().await;
                }
                reply(n, &clock)
            }
        })
    }

    /// The n-th call answers n.
    fn counting(&self, clock: &ManualClock, gate_from: Option<u64>) -> FnSource {
        self.source(clock, gate_from, Arc::new(|n, _| Ok(SourceOutput::new(n))))
    }
}

/// A builder configuration over `source` on `clock` with `policy`.
fn refresh_config(source: FnSource, clock: &ManualClock, policy: FreshnessPolicy) -> BuilderConfig {
    SnapshotBuilder::builder([source.into()])
        .clock(Arc::new(clock.clone()))
        .default_policy(policy)
}

/// A builder over `script`'s counting source (see [`Scripted::counting`])
/// on `clock` with `policy`.
fn counting_builder(
    script: &Scripted,
    clock: &ManualClock,
    gate_from: Option<u64>,
    policy: FreshnessPolicy,
) -> SnapshotBuilder {
    refresh_config(script.counting(clock, gate_from), clock, policy)
        .build()
        .expect("valid builder")
}

/// Caches the price with a first build, then ages it by `age` seconds.
async fn cache_then_age(builder: &SnapshotBuilder, clock: &ManualClock, age: u64) {
    builder.build([price()]).await.expect("first build");
    clock.advance(secs(age));
}

/// Asserts that `snapshot` scheduled no refresh, none is pending, and the
/// source was called `calls` times in all.
async fn assert_no_refresh(
    builder: &SnapshotBuilder,
    snapshot: &Snapshot,
    script: &Scripted,
    calls: usize,
) {
    assert_eq!(
        snapshot
            .diagnostics()
            .expect("diagnostics")
            .refresh_scheduled,
        0
    );
    assert_eq!(builder.background_refreshes(), 0);
    builder.wait_for_refreshes().await;
    assert_eq!(script.calls(), calls);
}

/// Records events and counters (the support crate's recording sink).
use coalestra_test::RecordingSink as Recorder;

fn field<'a>(event: &'a Event, name: &str) -> Option<&'a str> {
    event.get(name).and_then(|v| v.as_str())
}

fn note<'a>(value: &'a SnapshotValue, name: &str) -> Option<&'a str> {
    value
        .notes()
        .get(name)
        .or_else(|| value.metadata().get(name))
        .and_then(|v| v.as_str())
}

async fn cached_value(
    builder: &SnapshotBuilder,
    clock: &ManualClock,
    k: &ResourceKey,
) -> SnapshotValue {
    builder
        .cache()
        .get(
            k,
            FreshnessPolicy::fresh_for(FreshnessPolicy::UNBOUNDED),
            clock.now(),
        )
        .await
        .expect("cache read")
        .unwrap_or_else(|| panic!("{k} should be cached"))
        .value
}

// B8.1, B8.2
#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_returns_immediately_and_refreshes_cache() {
    let clock = ManualClock::new(1_000.0);
    let script = Scripted::new();
    let recorder = Arc::new(Recorder::default());
    let builder = refresh_config(script.counting(&clock, None), &clock, swr(1, 10))
        .metrics(recorder.clone())
        .build()
        .expect("valid builder");

    let first = builder.build([price()]).await.expect("first build");
    assert_eq!(first.value::<u64>(&price()).ok(), Some(&1));

    clock.advance(secs(2));
    let stale = builder.build([price()]).await.expect("stale build");
    let value = stale.get(&price()).expect("price");
    assert_eq!(
        value.value::<u64>().ok(),
        Some(&1),
        "the stale value is returned at once"
    );
    assert!(value.is_stale());
    assert!(value.is_from_cache());
    assert!(value.refresh_scheduled());
    assert_eq!(note(value, "refresh_mode"), Some("stale_while_revalidate"));
    let diagnostics = stale.diagnostics().expect("diagnostics");
    assert_eq!(diagnostics.refresh_scheduled, 1);
    assert_eq!(diagnostics.cache_hits, 1);
    assert_eq!(diagnostics.stale_values, 1);
    assert_eq!(
        recorder.counter(
            "cache_access_total",
            &[("status", "stale_while_revalidate")]
        ),
        1
    );

    builder.wait_for_refreshes().await;
    assert_eq!(builder.background_refreshes(), 0);
    let refreshed = builder.build([price()]).await.expect("refreshed build");
    let value = refreshed.get(&price()).expect("price");
    assert_eq!(value.value::<u64>().ok(), Some(&2));
    assert!(!value.is_stale());
    assert!(value.is_from_cache(), "the refresh wrote the cache");
    assert!(!value.refresh_scheduled());
    assert_eq!(script.calls(), 2);
}

// B8.3
#[tokio::test(start_paused = true)]
async fn refresh_ahead_keeps_fresh_value_and_updates_in_background() {
    let clock = ManualClock::new(1_000.0);
    let script = Scripted::new();
    let builder = counting_builder(&script, &clock, None, refresh_ahead(10, 20, 3));

    let first = builder.build([price()]).await.expect("first build");
    assert_eq!(first.value::<u64>(&price()).ok(), Some(&1));

    clock.advance(secs(8));
    let ahead = builder.build([price()]).await.expect("refresh-ahead build");
    let value = ahead.get(&price()).expect("price");
    assert_eq!(value.value::<u64>().ok(), Some(&1));
    assert!(!value.is_stale(), "still inside the ttl");
    assert!(value.is_from_cache());
    assert!(value.refresh_scheduled());
    assert_eq!(
        ahead.diagnostics().expect("diagnostics").refresh_scheduled,
        1
    );

    builder.wait_for_refreshes().await;
    let refreshed = builder.build([price()]).await.expect("refreshed build");
    assert_eq!(refreshed.value::<u64>(&price()).ok(), Some(&2));
    assert_eq!(script.calls(), 2);
}

// B8.14
#[tokio::test(start_paused = true)]
async fn fresh_value_outside_the_refresh_ahead_window_schedules_nothing() {
    let clock = ManualClock::new(1_000.0);
    let script = Scripted::new();
    let builder = counting_builder(&script, &clock, None, refresh_ahead(10, 20, 3));

    cache_then_age(&builder, &clock, 5).await;
    let snapshot = builder.build([price()]).await.expect("second build");
    let value = snapshot.get(&price()).expect("price");
    assert_eq!(value.value::<u64>().ok(), Some(&1));
    assert!(value.is_from_cache());
    assert!(!value.refresh_scheduled());
    assert_eq!(note(value, "refresh_mode"), None);
    assert_no_refresh(&builder, &snapshot, &script, 1).await;
}

// B8.5
#[tokio::test(start_paused = true)]
async fn at_most_one_refresh_per_key_is_pending() {
    let clock = ManualClock::new(1_000.0);
    let script = Scripted::new();
    let builder = counting_builder(&script, &clock, Some(2), swr(1, 10));

    cache_then_age(&builder, &clock, 2).await;

    let scheduling = builder.build([price()]).await.expect("scheduling build");
    assert_eq!(
        scheduling
            .diagnostics()
            .expect("diagnostics")
            .refresh_scheduled,
        1
    );
    script.gate.wait_for_arrivals(1).await;

    for _ in 0..3 {
        let snapshot = builder
            .build([price()])
            .await
            .expect("build during refresh");
        let value = snapshot.get(&price()).expect("price");
        assert_eq!(value.value::<u64>().ok(), Some(&1));
        assert!(
            value.refresh_scheduled(),
            "a refresh is pending for the value"
        );
        assert_eq!(
            snapshot
                .diagnostics()
                .expect("diagnostics")
                .refresh_scheduled,
            0,
            "no second refresh scheduled"
        );
        assert_eq!(builder.background_refreshes(), 1);
    }
    assert_eq!(script.calls(), 2);

    script.gate.open();
    builder.wait_for_refreshes().await;
    assert_eq!(builder.background_refreshes(), 0);
    assert_eq!(script.calls(), 2);
    let refreshed = builder.build([price()]).await.expect("refreshed build");
    assert_eq!(refreshed.value::<u64>(&price()).ok(), Some(&2));
}

/// Writes `value` for `price()` observed at `at` into the builder's cache.
async fn publish(builder: &SnapshotBuilder, value: &str, at: Timestamp) {
    let revision = SnapshotValue::from_parts(ValueParts::new(
        price(),
        Payload::new(value.to_owned()),
        "stream",
        at,
    ));
    let result = builder
        .cache()
        .write(CacheWrite {
            value: revision,
            force: true,
            replace_equal: false,
        })
        .await
        .expect("cache write");
    assert!(result.outcome.is_stored());
}

/// Publishes "newer" observed at 100 s, then builds on `now` with `policy`
/// against a source answering "older" observed at `older_at`: a refresh is
/// scheduled and runs once, and the cache keeps the newer revision. Returns
/// the build's snapshot.
async fn refresh_with_an_older_result(
    now: f64,
    older_at: f64,
    policy: FreshnessPolicy,
) -> Snapshot {
    let clock = ManualClock::new(now);
    let script = Scripted::new();
    let older: Reply = Arc::new(move |_, _| {
        Ok(SourceOutput::new("older".to_owned()).observed_at(Timestamp::from_secs(older_at)))
    });
    let builder = refresh_config(script.source(&clock, None, older), &clock, policy)
        .build()
        .expect("valid builder");
    publish(&builder, "newer", Timestamp::from_secs(100.0)).await;

    let snapshot = builder.build([price()]).await.expect("build");
    assert!(snapshot.get(&price()).expect("price").refresh_scheduled());
    builder.wait_for_refreshes().await;
    assert_eq!(script.calls(), 1, "the refresh ran");

    let cached = cached_value(&builder, &clock, &price()).await;
    assert_eq!(cached.value::<String>().map(String::as_str), Ok("newer"));
    assert_eq!(cached.observed_at(), Timestamp::from_secs(100.0));
    snapshot
}

// B8.4
#[tokio::test(start_paused = true)]
async fn background_refresh_does_not_replace_cache_with_older_value() {
    let snapshot = refresh_with_an_older_result(102.0, 90.0, swr(1, 100)).await;
    let value = snapshot.get(&price()).expect("price");
    assert_eq!(value.value::<String>().map(String::as_str), Ok("newer"));
}

// B8.4 with a refresh result that is still fresh but older than the cache:
// the monotonic cache write keeps the newer revision.
#[tokio::test(start_paused = true)]
async fn refresh_ahead_result_older_than_the_cache_is_not_written() {
    refresh_with_an_older_result(108.0, 99.0, refresh_ahead(10, 20, 5)).await;
}

/// A stale-while-revalidate builder (ttl 1 s, max stale 10 s) over a source
/// answering `reply`, one attempt per call, recording events and metrics.
fn recorded_swr_builder(
    script: &Scripted,
    clock: &ManualClock,
    reply: Reply,
) -> (SnapshotBuilder, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let builder = refresh_config(script.source(clock, None, reply), clock, swr(1, 10))
        .resilience(single_attempt())
        .events(recorder.clone())
        .metrics(recorder.clone())
        .build()
        .expect("valid builder");
    (builder, recorder)
}

/// Asserts one `resource_refresh_failed` event for the price, with the
/// stale-while-revalidate reason, and returns it.
fn assert_one_refresh_failed(recorder: &Recorder) -> Event {
    let mut failed = recorder.events_named("resource_refresh_failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(
        field(&failed[0], "resource"),
        Some(price().to_string().as_str())
    );
    assert_eq!(field(&failed[0], "reason"), Some("stale_while_revalidate"));
    failed.remove(0)
}

// B8.6, B8.9, B8.10
#[tokio::test(start_paused = true)]
async fn refresh_returning_stale_data_is_a_failure_and_is_not_written() {
    let clock = ManualClock::new(1_000.0);
    let script = Scripted::new();
    let reply: Reply = Arc::new(|n, _| {
        let out = SourceOutput::new(n);
        Ok(if n >= 2 { out.stale() } else { out })
    });
    let (builder, recorder) = recorded_swr_builder(&script, &clock, reply);

    let first = builder.build([price()]).await.expect("first build");
    let original = first.get(&price()).expect("price").version();
    clock.advance(secs(2));
    builder.build([price()]).await.expect("stale build");
    builder.wait_for_refreshes().await;
    assert_eq!(script.calls(), 2);

    let cached = cached_value(&builder, &clock, &price()).await;
    assert_eq!(
        cached.value::<u64>().ok(),
        Some(&1),
        "the stale refresh result is not cached"
    );
    assert_eq!(cached.version(), original);

    let labels = [("resource_namespace", "market"), ("resource_name", "price")];
    assert_eq!(
        recorder.counter(
            "resource_refresh_total",
            &[("status", "scheduled"), labels[0], labels[1]]
        ),
        1
    );
    assert_eq!(
        recorder.counter(
            "resource_refresh_total",
            &[("status", "failure"), labels[0], labels[1]]
        ),
        1
    );
    assert_eq!(
        recorder.counter("resource_refresh_total", &[("status", "success")]),
        0
    );
    assert_one_refresh_failed(&recorder);
    assert!(recorder
        .events_named("resource_refresh_completed")
        .is_empty());
}

// B8.9, B8.10: a failing refresh keeps the stale value; scheduled and failed
// events carry the resource, reason and error.
#[tokio::test(start_paused = true)]
async fn failing_background_refresh_keeps_the_cached_value_and_reports() {
    let clock = ManualClock::new(1_000.0);
    let script = Scripted::new();
    let reply: Reply = Arc::new(|n, _| {
        if n >= 2 {
            Err(SourceError::unavailable("backend down"))
        } else {
            Ok(SourceOutput::new(n))
        }
    });
    let (builder, recorder) = recorded_swr_builder(&script, &clock, reply);

    cache_then_age(&builder, &clock, 2).await;
    let stale = builder
        .build_with([price()], BuildOptions::new().snapshot_id("parent-1"))
        .await
        .expect("stale build");
    assert!(stale.get(&price()).expect("price").refresh_scheduled());
    builder.wait_for_refreshes().await;

    let scheduled = recorder.events_named("resource_refresh_scheduled");
    assert_eq!(scheduled.len(), 1);
    assert_eq!(
        field(&scheduled[0], "resource"),
        Some(price().to_string().as_str())
    );
    assert_eq!(
        field(&scheduled[0], "reason"),
        Some("stale_while_revalidate")
    );
    let refresh_id = field(&scheduled[0], "snapshot_id").expect("snapshot_id field");
    assert!(refresh_id.starts_with("parent-1:refresh:"), "{refresh_id}");
    let failed = assert_one_refresh_failed(&recorder);
    assert!(field(&failed, "error_type").is_some_and(|t| !t.is_empty()));
    assert!(field(&failed, "error").is_some_and(|e| e.contains("backend down")));
    assert_eq!(
        recorder.counter("resource_refresh_total", &[("status", "failure")]),
        1
    );

    // The stale value is still served, and a new refresh may be scheduled.
    let again = builder.build([price()]).await.expect("stale again");
    let value = again.get(&price()).expect("price");
    assert_eq!(value.value::<u64>().ok(), Some(&1));
    assert!(value.is_stale());
    assert!(value.refresh_scheduled());
    builder.wait_for_refreshes().await;
    assert_eq!(script.calls(), 3);
}

// B8.11
#[tokio::test(start_paused = true)]
async fn refresh_runs_with_its_own_context_and_no_deadline() {
    let clock = ManualClock::new(1_000.0);
    let script = Scripted::new();
    let builder = counting_builder(&script, &clock, None, swr(1, 10));

    cache_then_age(&builder, &clock, 2).await;
    let options = BuildOptions::new()
        .snapshot_id("parent-1")
        .deadline(secs(5))
        .metadata(Metadata::new().with("tenant", "acme"));
    builder
        .build_with([price()], options)
        .await
        .expect("stale build");
    builder.wait_for_refreshes().await;

    let contexts = script.contexts.lock().expect("lock").clone();
    assert_eq!(contexts.len(), 2);
    let ctx = &contexts[1];
    let suffix = ctx
        .snapshot_id
        .strip_prefix("parent-1:refresh:")
        .unwrap_or_else(|| panic!("refresh snapshot id: {}", ctx.snapshot_id));
    assert_eq!(suffix.len(), 8, "{suffix}");
    assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()), "{suffix}");
    assert!(ctx.deadline.is_none(), "a refresh has no deadline");
    assert_eq!(
        ctx.metadata
            .get("background_refresh")
            .and_then(|v| v.as_bool()),
        Some(true)
    );
    assert_eq!(
        ctx.metadata.get("refresh_reason").and_then(|v| v.as_str()),
        Some("stale_while_revalidate")
    );
    assert_eq!(
        ctx.metadata
            .get("parent_snapshot_id")
            .and_then(|v| v.as_str()),
        Some("parent-1")
    );
    assert_eq!(
        ctx.metadata.get("tenant").and_then(|v| v.as_str()),
        Some("acme")
    );
}

// B8.7
#[tokio::test(start_paused = true)]
async fn swr_value_older_than_max_stale_is_fetched_blocking() {
    let clock = ManualClock::new(1_000.0);
    let script = Scripted::new();
    let builder = counting_builder(&script, &clock, None, swr(1, 10));

    cache_then_age(&builder, &clock, 11).await;
    let snapshot = builder.build([price()]).await.expect("expired build");
    let value = snapshot.get(&price()).expect("price");
    assert_eq!(value.value::<u64>().ok(), Some(&2));
    assert!(!value.is_from_cache());
    assert!(!value.is_stale());
    assert!(!value.refresh_scheduled());
    assert_no_refresh(&builder, &snapshot, &script, 2).await;
}

// B8.8
#[tokio::test(start_paused = true)]
async fn blocking_mode_past_ttl_calls_the_source_synchronously() {
    let clock = ManualClock::new(1_000.0);
    let script = Scripted::new();
    let builder = counting_builder(&script, &clock, None, blocking(1, 10));

    cache_then_age(&builder, &clock, 2).await;
    let snapshot = builder.build([price()]).await.expect("second build");
    let value = snapshot.get(&price()).expect("price");
    assert_eq!(
        value.value::<u64>().ok(),
        Some(&2),
        "the source was awaited"
    );
    assert!(!value.is_from_cache());
    assert!(!value.is_stale());
    assert!(!value.refresh_scheduled());
    assert_eq!(builder.background_refreshes(), 0);
    assert_eq!(script.calls(), 2);
}

// B8.8: the stale cached value is used only when every source fails.
#[tokio::test(start_paused = true)]
async fn blocking_mode_uses_the_stale_value_only_when_sources_fail() {
    let clock = ManualClock::new(1_000.0);
    let script = Scripted::new();
    let reply: Reply = Arc::new(|n, _| {
        if n >= 2 {
            Err(SourceError::unavailable("backend down"))
        } else {
            Ok(SourceOutput::new(n))
        }
    });
    let builder = refresh_config(script.source(&clock, None, reply), &clock, blocking(1, 10))
        .resilience(single_attempt())
        .build()
        .expect("valid builder");

    cache_then_age(&builder, &clock, 2).await;
    let snapshot = builder.build([price()]).await.expect("stale fallback");
    let value = snapshot.get(&price()).expect("price");
    assert_eq!(value.value::<u64>().ok(), Some(&1));
    assert!(value.is_stale());
    assert!(!value.refresh_scheduled());
    assert_eq!(script.calls(), 2, "the source was tried first");
    assert_eq!(builder.background_refreshes(), 0);
}

// B8.13: close awaits pending refreshes, then builds fail.
#[tokio::test(start_paused = true)]
async fn close_waits_for_pending_refreshes_then_builds_fail() {
    let clock = ManualClock::new(1_000.0);
    let script = Scripted::new();
    let builder = counting_builder(&script, &clock, Some(2), swr(1, 10));

    cache_then_age(&builder, &clock, 2).await;
    builder.build([price()]).await.expect("stale build");
    script.gate.wait_for_arrivals(1).await;

    let closing = {
        let builder = builder.clone();
        tokio::spawn(async move { builder.close().await })
    };
    // Let the close task run as far as it can: it must wait for the refresh.
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(secs(60)).await;
    assert!(
        !closing.is_finished(),
        "close must wait for the pending refresh"
    );
    assert!(builder.is_closed());
    assert_eq!(builder.background_refreshes(), 1);

    script.gate.open();
    tokio::time::timeout(secs(30), closing)
        .await
        .expect("close finishes once the refresh completes")
        .expect("close task");
    assert_eq!(builder.background_refreshes(), 0);
    assert_eq!(builder.active_tasks(), 0);
    let cached = cached_value(&builder, &clock, &price()).await;
    assert_eq!(
        cached.value::<u64>().ok(),
        Some(&2),
        "the awaited refresh completed"
    );

    let error = builder
        .build([price()])
        .await
        .expect_err("builds fail after close");
    assert!(error.is_closed(), "{error}");
    builder.close().await; // idempotent
}

// B8.13: no refresh is scheduled once the builder is closed.
#[tokio::test(start_paused = true)]
async fn no_refresh_is_scheduled_after_close() {
    let clock = ManualClock::new(1_000.0);
    let script = Scripted::new();
    let gate = Gate::new();
    let armed = Arc::new(AtomicBool::new(false));
    // Once armed, cache reads are held at the gate.
    let cache = Arc::new(ScriptedCache::new(MemoryCache::new()).reads_after({
        let (armed, gate) = (Arc::clone(&armed), gate.clone());
        move || {
            let (armed, gate) = (Arc::clone(&armed), gate.clone());
            async move {
                if armed.load(Ordering::SeqCst) {
                    gate.pass().await;
                }
            }
        }
    }));
    let builder = refresh_config(script.counting(&clock, None), &clock, swr(1, 10))
        .cache(cache.clone())
        .build()
        .expect("valid builder");

    cache_then_age(&builder, &clock, 2).await;
    armed.store(true, Ordering::SeqCst);
    let in_progress = {
        let builder = builder.clone();
        tokio::spawn(async move { builder.build([price()]).await })
    };
    gate.wait_for_arrivals(1).await;
    builder.close().await;
    gate.open();

    let snapshot = in_progress
        .await
        .expect("build task")
        .expect("a build started before close completes");
    let value = snapshot.get(&price()).expect("price");
    assert_eq!(value.value::<u64>().ok(), Some(&1));
    assert!(value.is_stale());
    assert!(!value.refresh_scheduled(), "no refresh after close");
    assert_no_refresh(&builder, &snapshot, &script, 1).await;
}

// B8.12: waiting with nothing pending returns at once, and waiting twice is
// harmless.
#[tokio::test(start_paused = true)]
async fn wait_for_refreshes_returns_when_nothing_is_pending() {
    let clock = ManualClock::new(1_000.0);
    let script = Scripted::new();
    let builder = counting_builder(&script, &clock, None, swr(1, 10));

    tokio::time::timeout(secs(1), builder.wait_for_refreshes())
        .await
        .expect("nothing pending");
    cache_then_age(&builder, &clock, 2).await;
    builder.build([price()]).await.expect("stale build");
    tokio::time::timeout(secs(30), builder.wait_for_refreshes())
        .await
        .expect("refresh completes");
    tokio::time::timeout(secs(1), builder.wait_for_refreshes())
        .await
        .expect("still nothing pending");
    assert_eq!(script.calls(), 2);
}
