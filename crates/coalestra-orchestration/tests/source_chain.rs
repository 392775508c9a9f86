//! Catalogue area 5: the builder's source chain — priority order, single and
//! batch sources, partial batches and protocol errors, batch chunking, the
//! `supports` cache, stale source data, stale-on-error fallback, strict and
//! non-strict builds, authority ranks, execution modes (blocking pool or
//! inline), panics and payload sharing (B5.1–B5.40).

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::Duration;

use coalestra_cache::MemoryCache;
use coalestra_core::value::ValueParts;
use coalestra_core::{
    AuthorityResolver, CacheError, CacheWrite, CoalestraError, FetchContext, FnBatchSource,
    FnSource, FreshnessPolicy, ManualClock, Payload, ResourceKey, Snapshot, SnapshotValue,
    SourceAuthorityPolicy, SourceError, SourceOptions, SourceOutput, SourceRef, Timestamp,
};
use coalestra_orchestration::SnapshotBuilder;
use coalestra_test::{key, Gate, RecordingSink, ScriptedCache};

mod support;
use support::{
    batch_calls, entries, lenient, new_log, push, single_attempt_config as config, Batches, Log,
};

// ---------------------------------------------------------------- helpers

fn manual_clock() -> ManualClock {
    ManualClock::new(1_000.0)
}

/// A single source answering `value` for every key and logging `name:key`.
fn constant(name: &'static str, value: u64, log: &Log) -> FnSource {
    let log = log.clone();
    FnSource::new(name, move |key: ResourceKey, _ctx: FetchContext| {
        push(&log, format!("{name}:{key}"));
        async move { Ok(SourceOutput::new(value)) }
    })
}

/// A single source that always fails with `SourceUnavailableError`.
fn failing(name: &'static str, log: &Log) -> FnSource {
    let log = log.clone();
    FnSource::new(name, move |key: ResourceKey, _ctx: FetchContext| {
        push(&log, format!("{name}:{key}"));
        async move { Err(SourceError::unavailable(format!("{name} is down"))) }
    })
}

/// A single source answering `value` observed `age` before the clock's now.
fn aged(name: &'static str, value: u64, age: Duration, clock: &ManualClock, log: &Log) -> FnSource {
    let log = log.clone();
    let clock = clock.clone();
    FnSource::new(name, move |key: ResourceKey, _ctx: FetchContext| {
        push(&log, format!("{name}:{key}"));
        let observed = coalestra_core::Clock::now(&clock) - age;
        async move { Ok(SourceOutput::new(value).observed_at(observed)) }
    })
}

/// A builder over `sources` on `clock`, one attempt per source call.
fn chain(sources: Vec<SourceRef>, clock: &ManualClock) -> SnapshotBuilder {
    config(sources, clock).build().expect("valid builder")
}

/// Asserts that `key` resolved to `value` from `source`.
fn assert_resolved_by(snapshot: &Snapshot, key: &ResourceKey, value: u64, source: &str) {
    assert_eq!(*snapshot.value::<u64>(key).expect("value"), value);
    assert_eq!(snapshot.get(key).expect("value").source(), source);
}

/// A builder over `sources` on `clock` and its strict build of
/// `market:price:BTC`, which a fallback source must resolve.
async fn resolve_btc(
    sources: Vec<SourceRef>,
    clock: &ManualClock,
) -> (SnapshotBuilder, ResourceKey, Snapshot) {
    let builder = chain(sources, clock);
    let price = key("market:price:BTC");
    let snapshot = builder
        .build([price.clone()])
        .await
        .expect("fallback resolves");
    (builder, price, snapshot)
}

/// Builds `price`, invalidates its cached value and builds it again:
/// the second snapshot.
async fn build_after_invalidation(builder: &SnapshotBuilder, price: &ResourceKey) -> Snapshot {
    builder.build([price.clone()]).await.expect("first build");
    builder.cache().invalidate(price).await.expect("invalidate");
    builder.build([price.clone()]).await.expect("second build")
}

/// A builder over `rest` (answering 10 for prices) and the failing
/// `accounts` (for accounts), with a price key and an account key.
fn prices_and_failing_accounts(
    clock: &ManualClock,
    log: &Log,
) -> (SnapshotBuilder, ResourceKey, ResourceKey) {
    let rest = constant("rest", 10, log).with_supports(|k: &ResourceKey| k.name() == "price");
    let accounts = failing("accounts", log).with_supports(|k: &ResourceKey| k.name() == "account");
    let builder = chain(vec![rest.into(), accounts.into()], clock);
    (builder, key("market:price:BTC"), key("user:account:alice"))
}

/// The thread a synchronous fetcher ran on, once it ran.
type ThreadSlot = Arc<Mutex<Option<ThreadId>>>;

/// A synchronous single source "single" for prices answering 1, recording
/// its thread in `seen`.
fn sync_single(seen: &ThreadSlot) -> FnSource {
    let seen = Arc::clone(seen);
    FnSource::sync("single", move |_key: &ResourceKey, _ctx: &FetchContext| {
        *seen.lock().expect("lock") = Some(std::thread::current().id());
        Ok(SourceOutput::new(1_u64))
    })
    .with_supports(|k: &ResourceKey| k.name() == "price")
}

/// A synchronous batch source "batch" for marks answering 1 per key,
/// recording its thread in `seen`.
fn sync_batch(seen: &ThreadSlot) -> FnBatchSource {
    let seen = Arc::clone(seen);
    FnBatchSource::sync("batch", move |keys: &[ResourceKey], _ctx: &FetchContext| {
        *seen.lock().expect("lock") = Some(std::thread::current().id());
        all_ones(keys)
    })
    .with_supports(|k: &ResourceKey| k.name() == "mark")
}

fn now(clock: &ManualClock) -> Timestamp {
    coalestra_core::Clock::now(clock)
}

// ------------------------------------------------------ priority and kinds

#[tokio::test(start_paused = true)]
async fn b5_1_falls_back_to_lower_priority_source_in_call_order() {
    let clock = manual_clock();
    let log = new_log();
    let primary = failing("primary", &log).with_priority(100);
    let fallback = constant("fallback", 42, &log).with_priority(10);
    // Registered lowest priority first: the order must come from priorities.
    let (_builder, price, snapshot) =
        resolve_btc(vec![fallback.into(), primary.into()], &clock).await;

    assert_resolved_by(&snapshot, &price, 42, "fallback");
    assert_eq!(
        entries(&log),
        vec!["primary:market:price:BTC", "fallback:market:price:BTC"]
    );
}

#[tokio::test(start_paused = true)]
async fn b5_2_sources_are_ordered_by_descending_priority_stable_for_ties() {
    let log = new_log();
    let low = constant("low", 1, &log).with_priority(1);
    let high = FnBatchSource::new(
        "high",
        |keys: Vec<ResourceKey>, _ctx: FetchContext| async move {
            Ok(keys
                .into_iter()
                .map(|k| (k, SourceOutput::new(2_u64)))
                .collect())
        },
    )
    .with_priority(10);
    let tie_a = constant("tie-a", 3, &log).with_priority(5);
    let tie_b = constant("tie-b", 4, &log).with_priority(5);
    let high: SourceRef = high.into();
    assert_eq!(high.kind(), "batch");
    let builder = SnapshotBuilder::builder([low.into(), tie_a.into(), high, tie_b.into()])
        .build()
        .expect("valid builder");

    assert_eq!(
        builder.source_names(),
        vec!["high", "tie-a", "tie-b", "low"]
    );
}

// ------------------------------------------------------------ supports()

#[tokio::test(start_paused = true)]
async fn b5_3_support_cache_counts_misses_then_hits_and_can_be_cleared() {
    let clock = manual_clock();
    let log = new_log();
    let rest = constant("rest", 1, &log);
    let builder = config(vec![rest.into()], &clock)
        .default_policy(FreshnessPolicy::no_cache())
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");

    let first = builder.build([price.clone()]).await.expect("first build");
    let d1 = first.diagnostics().expect("diagnostics");
    assert_eq!((d1.support_cache_misses, d1.support_cache_hits), (1, 0));
    assert_eq!(builder.support_cache_entries(), 1);

    let second = builder.build([price.clone()]).await.expect("second build");
    let d2 = second.diagnostics().expect("diagnostics");
    assert_eq!((d2.support_cache_misses, d2.support_cache_hits), (0, 1));

    builder.clear_support_cache();
    assert_eq!(builder.support_cache_entries(), 0);
    let third = builder.build([price]).await.expect("third build");
    let d3 = third.diagnostics().expect("diagnostics");
    assert_eq!((d3.support_cache_misses, d3.support_cache_hits), (1, 0));
}

fn counting_supports(counter: &Arc<AtomicUsize>) -> impl Fn(&ResourceKey) -> bool + Send + Sync {
    let counter = Arc::clone(counter);
    move |_key: &ResourceKey| {
        counter.fetch_add(1, Ordering::SeqCst);
        true
    }
}

#[tokio::test(start_paused = true)]
async fn b5_4_supports_is_called_once_across_builds() {
    let clock = manual_clock();
    let log = new_log();
    let supports_calls = Arc::new(AtomicUsize::new(0));
    let rest = constant("rest", 1, &log).with_supports(counting_supports(&supports_calls));
    let builder = chain(vec![rest.into()], &clock);
    let price = key("market:price:BTC");

    let second = build_after_invalidation(&builder, &price).await;

    assert_eq!(supports_calls.load(Ordering::SeqCst), 1);
    assert!(
        second
            .diagnostics()
            .expect("diagnostics")
            .support_cache_hits
            >= 1
    );
    assert_eq!(
        entries(&log).len(),
        2,
        "the invalidated key is fetched again"
    );
}

#[tokio::test(start_paused = true)]
async fn b5_5_without_support_cache_calls_supports_every_time() {
    let clock = manual_clock();
    let log = new_log();
    let supports_calls = Arc::new(AtomicUsize::new(0));
    let rest = constant("rest", 1, &log)
        .with_supports(counting_supports(&supports_calls))
        .without_support_cache();
    let builder = chain(vec![rest.into()], &clock);
    let price = key("market:price:BTC");

    let second = build_after_invalidation(&builder, &price).await;

    assert_eq!(supports_calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        second
            .diagnostics()
            .expect("diagnostics")
            .support_cache_hits,
        0
    );
    assert_eq!(builder.support_cache_entries(), 0);
}

#[tokio::test(start_paused = true)]
async fn b5_6_support_cache_is_bounded_and_can_be_disabled_globally() {
    let clock = manual_clock();
    let log = new_log();
    let bounded = config(vec![constant("rest", 1, &log).into()], &clock)
        .support_cache(Some(2))
        .build()
        .expect("valid builder");
    for subject in ["A", "B", "C", "D", "E"] {
        bounded
            .build([key(&format!("market:price:{subject}"))])
            .await
            .expect("build");
        assert!(bounded.support_cache_entries() <= 2, "bounded to 2 entries");
    }

    let supports_calls = Arc::new(AtomicUsize::new(0));
    let rest = constant("rest", 1, &log).with_supports(counting_supports(&supports_calls));
    let disabled = config(vec![rest.into()], &clock)
        .support_cache(None)
        .default_policy(FreshnessPolicy::no_cache())
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");
    disabled.build([price.clone()]).await.expect("first build");
    disabled.build([price]).await.expect("second build");
    assert_eq!(supports_calls.load(Ordering::SeqCst), 2);
    assert_eq!(disabled.support_cache_entries(), 0);
}

#[tokio::test(start_paused = true)]
async fn b5_7_panicking_supports_counts_as_unsupported_and_lower_sources_are_tried() {
    let clock = manual_clock();
    let log = new_log();
    let primary = constant("primary", 1, &log)
        .with_priority(10)
        .with_supports(|_key: &ResourceKey| panic!("supports exploded"));
    let fallback = constant("fallback", 2, &log).with_priority(1);
    let (builder, price, snapshot) =
        resolve_btc(vec![primary.into(), fallback.into()], &clock).await;

    assert_resolved_by(&snapshot, &price, 2, "fallback");
    assert_eq!(entries(&log), vec!["fallback:market:price:BTC"]);
    // The builder keeps working after the panic.
    let again = builder
        .build([key("market:price:ETH")])
        .await
        .expect("usable");
    assert_eq!(again.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn b5_8_no_compatible_source_is_an_unsupported_resolution_error() {
    let clock = manual_clock();
    let log = new_log();
    let rest = constant("rest", 1, &log).with_supports(|k: &ResourceKey| k.name() == "price");
    let builder = chain(vec![rest.into()], &clock);
    let odd = key("market:volume:BTC");

    let snapshot = builder
        .build_with([odd.clone()], lenient())
        .await
        .expect("non-strict");
    let error = snapshot
        .error(&odd)
        .expect("an error for the unsupported key");
    assert!(error.is_unsupported());
    assert!(error.failures().is_empty());
    assert_eq!(error.error_type(), "ResourceResolutionError");
    let text = error.to_string();
    assert!(text.contains("no compatible source"), "{text}");
    assert!(text.contains("market:volume:BTC"), "{text}");
    assert!(entries(&log).is_empty(), "no source is called");

    let strict = builder
        .build([odd.clone()])
        .await
        .expect_err("strict build fails");
    let build_error = strict.as_build().expect("a build error");
    assert!(build_error
        .error(&odd)
        .expect("error of the key")
        .is_unsupported());
}

// ------------------------------------------------------------ cache reuse

#[tokio::test(start_paused = true)]
async fn b5_9_fresh_cache_avoids_second_source_call() {
    let clock = manual_clock();
    let log = new_log();
    let builder = config(vec![constant("rest", 7, &log).into()], &clock)
        .default_policy(
            FreshnessPolicy::new(Duration::from_secs(60), Duration::from_secs(60)).expect("policy"),
        )
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");

    let first = builder.build([price.clone()]).await.expect("first build");
    clock.advance(Duration::from_secs(30));
    let second = builder.build([price.clone()]).await.expect("second build");

    let first = first.get(&price).expect("first value");
    let second = second.get(&price).expect("second value");
    assert!(!first.is_from_cache());
    assert!(second.is_from_cache());
    assert!(!second.is_stale());
    assert_eq!(second.latency(), Duration::ZERO);
    assert_eq!(*second.value::<u64>().expect("u64"), 7);
    assert_eq!(entries(&log).len(), 1);
}

/// A source whose first call succeeds with `value` observed `age` ago and
/// every later call fails.
fn succeed_once(
    value: u64,
    age: Duration,
    clock: &ManualClock,
    calls: &Arc<AtomicUsize>,
) -> FnSource {
    let clock = clock.clone();
    let calls = Arc::clone(calls);
    FnSource::new("rest", move |_key: ResourceKey, _ctx: FetchContext| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        let observed = now(&clock) - age;
        async move {
            if n == 0 {
                Ok(SourceOutput::new(value).observed_at(observed))
            } else {
                Err(SourceError::unavailable("rest is down"))
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn b5_10_stale_cache_is_used_when_sources_fail() {
    let clock = manual_clock();
    let calls = Arc::new(AtomicUsize::new(0));
    let rest = succeed_once(100, Duration::from_secs(1), &clock, &calls);
    let builder = config(vec![rest.into()], &clock)
        .default_policy(
            FreshnessPolicy::new(Duration::ZERO, Duration::from_secs(60)).expect("policy"),
        )
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");

    builder.build([price.clone()]).await.expect("first build");
    let snapshot = builder
        .build([price.clone()])
        .await
        .expect("stale fallback");

    let value = snapshot.get(&price).expect("value");
    assert_eq!(*value.value::<u64>().expect("u64"), 100);
    assert!(value.is_stale());
    assert!(value.is_from_cache());
    assert_eq!(
        value
            .notes()
            .get("fallback_error_type")
            .and_then(|v| v.as_str()),
        Some("ResourceResolutionError")
    );
    let text = value
        .notes()
        .get("fallback_error")
        .and_then(|v| v.as_str())
        .expect("fallback_error note");
    assert!(text.contains("rest is down"), "{text}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn b5_10_stale_on_error_disabled_fails_instead_of_serving_the_cache() {
    let clock = manual_clock();
    let calls = Arc::new(AtomicUsize::new(0));
    let rest = succeed_once(100, Duration::ZERO, &clock, &calls);
    let policy = FreshnessPolicy::new(Duration::ZERO, Duration::from_secs(60))
        .expect("policy")
        .with_stale_on_error(false);
    let builder = config(vec![rest.into()], &clock)
        .default_policy(policy)
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");

    builder
        .build([price.clone()])
        .await
        .expect("first build is fresh");
    clock.advance(Duration::from_secs(1));
    let error = builder
        .build([price.clone()])
        .await
        .expect_err("no stale fallback");

    let build_error = error.as_build().expect("a build error");
    let failures = build_error
        .error(&price)
        .expect("error of the key")
        .failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].error.error_type(), "SourceUnavailableError");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn b5_11_stale_fallback_reports_metric_event_and_diagnostics() {
    let clock = manual_clock();
    let sink = RecordingSink::new();
    let calls = Arc::new(AtomicUsize::new(0));
    let rest = succeed_once(100, Duration::ZERO, &clock, &calls);
    let builder = config(vec![rest.into()], &clock)
        .default_policy(
            FreshnessPolicy::new(Duration::ZERO, Duration::from_secs(60)).expect("policy"),
        )
        .events(Arc::new(sink.clone()))
        .metrics(Arc::new(sink.clone()))
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");

    builder.build([price.clone()]).await.expect("first build");
    clock.advance(Duration::from_secs(1));
    sink.clear();
    let snapshot = builder
        .build([price.clone()])
        .await
        .expect("stale fallback");

    assert_eq!(snapshot.diagnostics().expect("diagnostics").stale_values, 1);
    assert_eq!(
        sink.counter("cache_access_total", &[("status", "stale_fallback")]),
        1
    );
    let events = sink.events_named("stale_fallback_used");
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].get("resource").and_then(|v| v.as_str()),
        Some("market:price:BTC")
    );
    assert_eq!(
        events[0].get("error_type").and_then(|v| v.as_str()),
        Some("ResourceResolutionError")
    );
}

// ----------------------------------------------------- stale source data

#[tokio::test(start_paused = true)]
async fn b5_12_source_data_older_than_ttl_is_not_fresh_and_the_next_source_is_tried() {
    let clock = manual_clock();
    let log = new_log();
    let ws = aged("ws", 1, Duration::from_secs(5), &clock, &log).with_priority(10);
    let rest = constant("rest", 2, &log).with_priority(1);
    let builder = chain(vec![ws.into(), rest.into()], &clock);
    let price = key("market:price:BTC");

    let snapshot = builder.build([price.clone()]).await.expect("rest resolves");

    let value = snapshot.get(&price).expect("value");
    assert_eq!(value.source(), "rest");
    assert_eq!(*value.value::<u64>().expect("u64"), 2);
    assert!(!value.is_stale());
    assert_eq!(
        entries(&log),
        vec!["ws:market:price:BTC", "rest:market:price:BTC"]
    );
}

#[tokio::test(start_paused = true)]
async fn b5_12_stale_source_data_is_recorded_as_a_stale_source_data_failure() {
    let clock = manual_clock();
    let log = new_log();
    let ws = aged("ws", 1, Duration::from_secs(5), &clock, &log).with_priority(10);
    let rest = failing("rest", &log).with_priority(1);
    let builder = config(vec![ws.into(), rest.into()], &clock)
        .default_policy(FreshnessPolicy::default().with_stale_on_error(false))
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");

    let snapshot = builder
        .build_with([price.clone()], lenient())
        .await
        .expect("non-strict");

    let failures = snapshot.error(&price).expect("error").failures();
    let types: Vec<(&str, &str)> = failures
        .iter()
        .map(|f| (&*f.source, f.error.error_type()))
        .collect();
    assert_eq!(
        types,
        vec![
            ("ws", "StaleSourceData"),
            ("rest", "SourceUnavailableError")
        ]
    );
    assert!(failures[0].error.is_stale_data());
    let text = failures[0].error.to_string();
    assert!(text.contains("exceeds ttl"), "{text}");
    assert_eq!(
        entries(&log).len(),
        2,
        "the lower source is tried after stale data"
    );
}

#[tokio::test(start_paused = true)]
async fn b5_13_newest_stale_candidate_is_returned_when_every_source_is_stale() {
    let clock = manual_clock();
    let log = new_log();
    let sink = RecordingSink::new();
    let older = aged("older", 1, Duration::from_secs(5), &clock, &log).with_priority(10);
    let newer = aged("newer", 2, Duration::from_secs(3), &clock, &log).with_priority(5);
    let oldest = aged("oldest", 3, Duration::from_secs(8), &clock, &log).with_priority(1);
    let builder = config(vec![older.into(), newer.into(), oldest.into()], &clock)
        .metrics(Arc::new(sink.clone()))
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");

    let snapshot = builder
        .build([price.clone()])
        .await
        .expect("stale candidate served");

    let value = snapshot.get(&price).expect("value");
    assert_eq!(value.source(), "newer");
    assert_eq!(*value.value::<u64>().expect("u64"), 2);
    assert!(value.is_stale());
    assert!(!value.is_from_cache());
    assert_eq!(
        entries(&log).len(),
        3,
        "every source is tried before settling for stale"
    );
    assert_eq!(
        sink.counter("source_fetch_total", &[("status", "stale")]),
        3
    );
    assert_eq!(snapshot.diagnostics().expect("diagnostics").stale_values, 1);
    let cached = builder
        .cache()
        .get(
            &price,
            FreshnessPolicy::fresh_for(FreshnessPolicy::UNBOUNDED),
            now(&clock),
        )
        .await
        .expect("cache read")
        .expect("the stale candidate is written to the cache");
    assert_eq!(cached.value.source(), "newer");
}

#[tokio::test(start_paused = true)]
async fn b5_14_stale_candidates_beyond_max_stale_or_with_stale_on_error_off_fail() {
    let clock = manual_clock();
    let price = key("market:price:BTC");

    // Older than max_stale (10 s).
    let log = new_log();
    let ancient = aged("ws", 1, Duration::from_secs(20), &clock, &log);
    let builder = chain(vec![ancient.into()], &clock);
    let error = builder.build([price.clone()]).await.expect_err("too old");
    let failures = error
        .as_build()
        .expect("build error")
        .error(&price)
        .expect("error")
        .failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].error.error_type(), "StaleSourceData");

    // Within max_stale, but stale-on-error disabled.
    let log = new_log();
    let stale = aged("ws", 1, Duration::from_secs(5), &clock, &log);
    let builder = config(vec![stale.into()], &clock)
        .default_policy(FreshnessPolicy::default().with_stale_on_error(false))
        .build()
        .expect("valid builder");
    let error = builder
        .build([price.clone()])
        .await
        .expect_err("stale not allowed");
    let resource_error = error
        .as_build()
        .expect("build error")
        .error(&price)
        .expect("error");
    assert_eq!(resource_error.error_type(), "ResourceResolutionError");
    assert!(resource_error
        .failures()
        .iter()
        .all(|f| f.error.is_stale_data()));
}

// ------------------------------------------------- strict and non-strict

#[tokio::test(start_paused = true)]
async fn b5_15_non_strict_build_returns_partial_snapshot() {
    let clock = manual_clock();
    let log = new_log();
    let (builder, price, account) = prices_and_failing_accounts(&clock, &log);

    let snapshot = builder
        .build_with([price.clone(), account.clone()], lenient())
        .await
        .expect("non-strict build returns a snapshot");

    assert_eq!(*snapshot.value::<u64>(&price).expect("price"), 10);
    assert!(snapshot.error(&account).is_some());
    assert!(snapshot.get(&account).is_none());
    assert!(!snapshot.is_complete());
    assert_eq!(snapshot.errors().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn b5_16_strict_build_raises_build_error_with_failed_key_and_partial_snapshot() {
    let clock = manual_clock();
    let log = new_log();
    let (builder, price, account) = prices_and_failing_accounts(&clock, &log);

    let error = builder
        .build([price.clone(), account.clone()])
        .await
        .expect_err("strict build fails");

    assert!(error.is_build());
    let build_error = error.as_build().expect("a build error");
    assert_eq!(build_error.errors().len(), 1);
    assert_eq!(build_error.errors()[0].key(), &account);
    assert!(error.to_string().contains("user:account:alice"), "{error}");
    let partial = build_error.snapshot().expect("a partial snapshot");
    assert_eq!(*partial.value::<u64>(&price).expect("price in partial"), 10);
    assert!(partial.error(&account).is_some());
}

#[tokio::test(start_paused = true)]
async fn b5_17_duplicate_keys_are_resolved_once_per_snapshot() {
    let clock = manual_clock();
    let log = new_log();
    let builder = chain(vec![constant("rest", 1, &log).into()], &clock);
    let price = key("market:price:BTC");

    let snapshot = builder
        .build([price.clone(), price.clone(), price.clone()])
        .await
        .expect("build");

    assert_eq!(snapshot.len(), 1);
    assert_eq!(entries(&log).len(), 1);
    assert_eq!(
        snapshot
            .diagnostics()
            .expect("diagnostics")
            .requested_resources,
        1
    );
}

#[tokio::test(start_paused = true)]
async fn b5_18_build_of_no_keys_is_rejected() {
    let clock = manual_clock();
    let log = new_log();
    let builder = chain(vec![constant("rest", 1, &log).into()], &clock);

    let error = builder
        .build(Vec::<ResourceKey>::new())
        .await
        .expect_err("rejected");

    assert!(
        matches!(error, CoalestraError::InvalidRequest(_)),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("at least one resource key is required"),
        "{error}"
    );
    assert!(entries(&log).is_empty());
}

#[tokio::test(start_paused = true)]
async fn b5_19_hundred_cache_misses_keep_request_order() {
    let clock = manual_clock();
    let log = new_log();
    let echo = FnSource::new("rest", |key: ResourceKey, _ctx: FetchContext| async move {
        Ok(SourceOutput::new(key.subject().to_owned()))
    });
    let builder = chain(vec![echo.into()], &clock);
    // A permutation of 0..100 that is neither sorted nor reversed.
    let keys: Vec<ResourceKey> = (0..100)
        .map(|i| key(&format!("market:price:K{:03}", (i * 37 + 11) % 100)))
        .collect();

    let snapshot = builder.build(keys.clone()).await.expect("build");

    let resolved: Vec<ResourceKey> = snapshot.keys().cloned().collect();
    assert_eq!(resolved, keys);
    for k in &keys {
        assert_eq!(snapshot.value::<String>(k).expect("value"), k.subject());
    }
    assert!(entries(&log).is_empty());
}

// ----------------------------------------------------------------- batches

/// A batch source recording each call's keys and answering with `answer`.
fn recording_batch<F>(name: &str, batches: &Batches, answer: F) -> FnBatchSource
where
    F: Fn(&[ResourceKey]) -> Result<Vec<(ResourceKey, SourceOutput)>, SourceError>
        + Send
        + Sync
        + 'static,
{
    let batches = Arc::clone(batches);
    let answer = Arc::new(answer);
    FnBatchSource::new(name, move |keys: Vec<ResourceKey>, _ctx: FetchContext| {
        batches
            .lock()
            .expect("batch log poisoned")
            .push(keys.clone());
        let answer = Arc::clone(&answer);
        async move { answer(&keys) }
    })
}

fn all_ones(keys: &[ResourceKey]) -> Result<Vec<(ResourceKey, SourceOutput)>, SourceError> {
    Ok(keys
        .iter()
        .map(|k| (k.clone(), SourceOutput::new(1_u64)))
        .collect())
}

#[tokio::test(start_paused = true)]
async fn b5_21_batch_source_resolves_many_resources_with_one_call_in_request_order() {
    let clock = manual_clock();
    let batches: Batches = Arc::default();
    let batch = recording_batch("batch", &batches, all_ones);
    let builder = chain(vec![batch.into()], &clock);
    let keys = vec![
        key("market:price:BTC"),
        key("market:price:ETH"),
        key("market:price:SOL"),
    ];

    let snapshot = builder.build(keys.clone()).await.expect("build");

    assert_eq!(batch_calls(&batches), vec![keys.clone()]);
    for k in &keys {
        assert_eq!(snapshot.get(k).expect("value").source(), "batch");
    }
    let diagnostics = snapshot.diagnostics().expect("diagnostics");
    assert_eq!((diagnostics.source_calls, diagnostics.batch_calls), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn b5_22_partial_batch_result_falls_back_only_for_omitted_keys() {
    let clock = manual_clock();
    let log = new_log();
    let batches: Batches = Arc::default();
    let eth = key("market:price:ETH");
    let omitted = eth.clone();
    let batch = recording_batch("batch", &batches, move |keys: &[ResourceKey]| {
        Ok(keys
            .iter()
            .filter(|k| **k != omitted)
            .map(|k| (k.clone(), SourceOutput::new(1_u64)))
            .collect())
    })
    .with_priority(10);
    let fallback = constant("fallback", 2, &log).with_priority(1);
    let builder = chain(vec![batch.into(), fallback.into()], &clock);
    let btc = key("market:price:BTC");
    let sol = key("market:price:SOL");

    let snapshot = builder
        .build([btc.clone(), eth.clone(), sol.clone()])
        .await
        .expect("build");

    assert_eq!(snapshot.get(&btc).expect("btc").source(), "batch");
    assert_eq!(snapshot.get(&sol).expect("sol").source(), "batch");
    assert_eq!(snapshot.get(&eth).expect("eth").source(), "fallback");
    assert_eq!(*snapshot.value::<u64>(&eth).expect("eth"), 2);
    assert_eq!(entries(&log), vec!["fallback:market:price:ETH"]);
    assert_eq!(batch_calls(&batches).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn b5_23_omitted_key_failure_names_the_batch_source() {
    let clock = manual_clock();
    let batches: Batches = Arc::default();
    let batch = recording_batch("batch", &batches, |keys: &[ResourceKey]| {
        Ok(keys
            .iter()
            .filter(|k| k.subject() != "ETH")
            .map(|k| (k.clone(), SourceOutput::new(1_u64)))
            .collect())
    });
    let builder = chain(vec![batch.into()], &clock);
    let btc = key("market:price:BTC");
    let eth = key("market:price:ETH");

    let snapshot = builder
        .build_with([btc.clone(), eth.clone()], lenient())
        .await
        .expect("non-strict");

    assert!(snapshot.get(&btc).is_some());
    let failures = snapshot.error(&eth).expect("eth failed").failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(&*failures[0].source, "batch");
    assert_eq!(failures[0].error.error_type(), "SourceUnavailableError");
    assert_eq!(
        failures[0].error.to_string(),
        "batch source batch omitted resource market:price:ETH"
    );
    assert_eq!(failures[0].attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn b5_24_unrequested_key_fails_the_whole_batch_and_every_key_falls_back() {
    let clock = manual_clock();
    let log = new_log();
    let batches: Batches = Arc::default();
    let batch = recording_batch("batch", &batches, |keys: &[ResourceKey]| {
        let mut out: Vec<(ResourceKey, SourceOutput)> = keys
            .iter()
            .map(|k| (k.clone(), SourceOutput::new(1_u64)))
            .collect();
        out.push((key("market:price:DOGE"), SourceOutput::new(1_u64)));
        Ok(out)
    })
    .with_priority(10);
    // The fallback resolves BTC and ETH only, so SOL's failures stay visible.
    let fallback = constant("fallback", 2, &log)
        .with_priority(1)
        .with_supports(|k: &ResourceKey| k.subject() != "SOL");
    let builder = chain(vec![batch.into(), fallback.into()], &clock);
    let btc = key("market:price:BTC");
    let eth = key("market:price:ETH");
    let sol = key("market:price:SOL");

    let snapshot = builder
        .build_with([btc.clone(), eth.clone(), sol.clone()], lenient())
        .await
        .expect("non-strict");

    assert_eq!(snapshot.get(&btc).expect("btc").source(), "fallback");
    assert_eq!(snapshot.get(&eth).expect("eth").source(), "fallback");
    assert!(!snapshot.contains(&key("market:price:DOGE")));
    assert_eq!(
        entries(&log),
        vec!["fallback:market:price:BTC", "fallback:market:price:ETH"]
    );
    let failures = snapshot.error(&sol).expect("sol failed").failures();
    assert_eq!(failures.len(), 1);
    assert_eq!(&*failures[0].source, "batch");
    assert_eq!(failures[0].error.error_type(), "SourceProtocolError");
    assert!(failures[0].error.to_string().contains("market:price:DOGE"));
}

#[tokio::test(start_paused = true)]
async fn b5_26_batch_source_respects_max_batch_size() {
    let clock = manual_clock();
    let batches: Batches = Arc::default();
    let batch = recording_batch("batch", &batches, all_ones)
        .with_max_batch_size(NonZeroUsize::new(3).expect("non-zero"));
    let builder = chain(vec![batch.into()], &clock);
    let keys: Vec<ResourceKey> = (0..7).map(|i| key(&format!("market:price:K{i}"))).collect();

    let snapshot = builder.build(keys.clone()).await.expect("build");

    let mut sizes: Vec<usize> = batch_calls(&batches).iter().map(Vec::len).collect();
    sizes.sort_unstable();
    assert_eq!(sizes, vec![1, 3, 3]);
    let diagnostics = snapshot.diagnostics().expect("diagnostics");
    assert_eq!(diagnostics.batch_chunks, 3);
    assert_eq!(diagnostics.batch_calls, 3);
    assert_eq!(snapshot.len(), 7);
}

#[tokio::test(start_paused = true)]
async fn b5_27_batch_chunking_matrix() {
    for size in [1_usize, 3, 7] {
        for n in 1_usize..=20 {
            let clock = manual_clock();
            let batches: Batches = Arc::default();
            let batch = recording_batch("batch", &batches, all_ones)
                .with_max_batch_size(NonZeroUsize::new(size).expect("non-zero"));
            let builder = config(vec![batch.into()], &clock)
                .max_concurrency(4)
                .build()
                .expect("valid builder");
            let keys: Vec<ResourceKey> =
                (0..n).map(|i| key(&format!("market:price:K{i}"))).collect();

            let snapshot = builder.build(keys.clone()).await.expect("build");

            let calls = batch_calls(&batches);
            let expected = n.div_ceil(size);
            assert_eq!(calls.len(), expected, "n={n} size={size}");
            assert!(
                calls.iter().all(|c| c.len() <= size),
                "n={n} size={size}: {calls:?}"
            );
            assert_eq!(
                calls.iter().map(Vec::len).sum::<usize>(),
                n,
                "n={n} size={size}"
            );
            let distinct: BTreeSet<String> =
                calls.iter().flatten().map(ToString::to_string).collect();
            assert_eq!(
                distinct.len(),
                n,
                "every key exactly once: n={n} size={size}"
            );
            let diagnostics = snapshot.diagnostics().expect("diagnostics");
            assert_eq!(
                diagnostics.batch_chunks, expected as u64,
                "n={n} size={size}"
            );
            assert_eq!(snapshot.len(), n);
        }
    }
}

/// A batch source (one key per call) measuring its peak concurrency.
fn peak_measuring_batch(current: &Arc<AtomicUsize>, peak: &Arc<AtomicUsize>) -> FnBatchSource {
    let current = Arc::clone(current);
    let peak = Arc::clone(peak);
    FnBatchSource::new(
        "batch",
        move |keys: Vec<ResourceKey>, _ctx: FetchContext| {
            let current = Arc::clone(&current);
            let peak = Arc::clone(&peak);
            async move {
                let now_running = current.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(now_running, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(10)).await;
                current.fetch_sub(1, Ordering::SeqCst);
                all_ones(&keys)
            }
        },
    )
    .with_max_batch_size(NonZeroUsize::new(1).expect("non-zero"))
}

#[tokio::test(start_paused = true)]
async fn b5_28_batch_chunks_run_in_waves_bounded_by_the_tightest_limit() {
    let keys: Vec<ResourceKey> = (0..6).map(|i| key(&format!("market:price:K{i}"))).collect();
    // (max_concurrency, max_pending_tasks, source limit) -> expected wave size.
    let cases: [(usize, Option<usize>, Option<usize>, usize); 3] = [
        (3, None, Some(2), 2),
        (8, Some(3), None, 3),
        (4, None, None, 4),
    ];
    for (max_concurrency, pending, source_limit, expected) in cases {
        let clock = manual_clock();
        let current = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let mut cfg = config(vec![peak_measuring_batch(&current, &peak).into()], &clock)
            .max_concurrency(max_concurrency);
        if let Some(p) = pending {
            cfg = cfg.max_pending_tasks(p);
        }
        if let Some(s) = source_limit {
            cfg = cfg.source_concurrency("batch", s);
        }
        let builder = cfg.build().expect("valid builder");

        let snapshot = builder.build(keys.clone()).await.expect("build");

        assert_eq!(snapshot.len(), 6);
        assert_eq!(
            peak.load(Ordering::SeqCst),
            expected,
            "max_concurrency={max_concurrency} pending={pending:?} source={source_limit:?}"
        );
    }
}

// ------------------------------------------------- observability of calls

#[tokio::test(start_paused = true)]
async fn b5_29_successful_calls_record_metrics_and_a_resolved_event() {
    let clock = manual_clock();
    let log = new_log();
    let sink = RecordingSink::new();
    let rest = constant("rest", 1, &log).with_supports(|k: &ResourceKey| k.name() == "price");
    let batches: Batches = Arc::default();
    let batch = recording_batch("batch", &batches, all_ones)
        .with_supports(|k: &ResourceKey| k.name() == "mark");
    let builder = config(vec![rest.into(), batch.into()], &clock)
        .events(Arc::new(sink.clone()))
        .metrics(Arc::new(sink.clone()))
        .build()
        .expect("valid builder");

    builder
        .build([
            key("market:price:BTC"),
            key("market:mark:BTC"),
            key("market:mark:ETH"),
        ])
        .await
        .expect("build");

    assert_eq!(
        sink.counter(
            "source_fetch_total",
            &[("status", "success"), ("source", "rest")]
        ),
        1
    );
    assert_eq!(
        sink.counter(
            "source_fetch_total",
            &[("status", "success"), ("source", "batch")]
        ),
        2
    );
    let latency_labels = sink.metric_labels("source_fetch_latency_ms");
    assert_eq!(latency_labels.len(), 3);
    assert_eq!(
        sink.counter(
            "source_batch_call_total",
            &[("status", "success"), ("source", "batch")]
        ),
        1
    );
    assert_eq!(sink.observations("source_batch_size"), vec![2.0]);

    let resolved = sink.events_named("resource_resolved");
    assert_eq!(resolved.len(), 3);
    let rest_event = resolved
        .iter()
        .find(|e| e.get("source").and_then(|v| v.as_str()) == Some("rest"))
        .expect("an event for the rest source");
    assert_eq!(
        rest_event.get("resource").and_then(|v| v.as_str()),
        Some("market:price:BTC")
    );
    assert_eq!(
        rest_event.get("source_kind").and_then(|v| v.as_str()),
        Some("single")
    );
    assert_eq!(
        rest_event.get("attempts").and_then(|v| v.as_f64()),
        Some(1.0)
    );
    assert!(rest_event.get("latency_ms").is_some());
    assert_eq!(
        rest_event.get("authority_rank").and_then(|v| v.as_f64()),
        Some(0.0)
    );
}

#[tokio::test(start_paused = true)]
async fn b5_30_failed_calls_record_a_failure_metric_and_a_source_failed_event() {
    let clock = manual_clock();
    let log = new_log();
    let sink = RecordingSink::new();
    let builder = config(vec![failing("rest", &log).into()], &clock)
        .events(Arc::new(sink.clone()))
        .metrics(Arc::new(sink.clone()))
        .build()
        .expect("valid builder");

    builder
        .build_with([key("market:price:BTC")], lenient())
        .await
        .expect("non-strict");

    assert_eq!(
        sink.counter(
            "source_fetch_total",
            &[("status", "failure"), ("source", "rest")]
        ),
        1
    );
    let failed = sink.events_named("source_failed");
    assert_eq!(failed.len(), 1);
    let event = &failed[0];
    assert_eq!(
        event.get("resource").and_then(|v| v.as_str()),
        Some("market:price:BTC")
    );
    assert_eq!(event.get("source").and_then(|v| v.as_str()), Some("rest"));
    assert_eq!(
        event.get("error_type").and_then(|v| v.as_str()),
        Some("SourceUnavailableError")
    );
    assert_eq!(
        event.get("error").and_then(|v| v.as_str()),
        Some("rest is down")
    );
}

// ---------------------------------------------------------------- authority

fn authority() -> AuthorityResolver {
    AuthorityResolver::new(
        SourceAuthorityPolicy::new(
            [
                ("reconciled-local", 300),
                ("user-data-stream", 200),
                ("rest", 100),
            ],
            0,
        )
        .expect("valid authority policy"),
    )
}

#[tokio::test(start_paused = true)]
async fn b5_31_builder_assigns_authority_rank_to_source_values() {
    let clock = manual_clock();
    let log = new_log();
    let builder = config(vec![constant("rest", 1, &log).into()], &clock)
        .authority(authority())
        .build()
        .expect("valid builder");
    let balance = key("account:balance:alice");

    let snapshot = builder.build([balance.clone()]).await.expect("build");

    assert_eq!(snapshot.get(&balance).expect("value").authority_rank(), 100);
}

#[tokio::test(start_paused = true)]
async fn b5_32_higher_authority_publication_supersedes_an_inflight_fetch() {
    let clock = manual_clock();
    let gate = Gate::new();
    let rest_gate = gate.clone();
    let rest = FnSource::new("rest", move |_key: ResourceKey, _ctx: FetchContext| {
        let gate = rest_gate.clone();
        async move {
            gate.pass().await;
            Ok(SourceOutput::new("rest".to_owned()))
        }
    });
    let builder = config(vec![rest.into()], &clock)
        .authority(authority())
        .build()
        .expect("valid builder");
    let balance = key("account:balance:alice");

    let build = tokio::spawn({
        let builder = builder.clone();
        let balance = balance.clone();
        async move { builder.build([balance]).await }
    });
    gate.wait_for_arrivals(1).await;
    let mut parts = ValueParts::new(
        balance.clone(),
        Payload::new("local".to_owned()),
        "reconciled-local",
        now(&clock),
    );
    parts.authority_rank = 300;
    let published = builder
        .cache()
        .write(CacheWrite::new(SnapshotValue::from_parts(parts)))
        .await
        .expect("publication");
    assert!(published.outcome.is_stored());
    gate.open();
    let snapshot = build.await.expect("build task").expect("build");

    let value = snapshot.get(&balance).expect("value");
    assert_eq!(value.value::<String>().expect("text"), "local");
    assert_eq!(value.source(), "reconciled-local");
    assert_eq!(value.authority_rank(), 300);
    assert_eq!(
        value
            .notes()
            .get("superseded_source")
            .and_then(|v| v.as_str()),
        Some("rest")
    );
}

// --------------------------------------------------------- custom caches

#[tokio::test(start_paused = true)]
async fn b5_33_cache_read_failure_fails_the_build_with_the_cache_error_itself() {
    let clock = manual_clock();
    let log = new_log();
    let builder = config(vec![constant("rest", 1, &log).into()], &clock)
        .cache(Arc::new(
            ScriptedCache::new(MemoryCache::new())
                .failing_reads(CacheError::Unavailable("cache read failed".into())),
        ))
        .max_pending_tasks(4)
        .build()
        .expect("valid builder");
    let keys: Vec<ResourceKey> = (0..20)
        .map(|i| key(&format!("market:price:K{i}")))
        .collect();

    let error = builder
        .build_with(keys, lenient())
        .await
        .expect_err("the cache error propagates");

    assert!(!error.is_build(), "not wrapped in a build error: {error:?}");
    assert!(
        matches!(&error, CoalestraError::Cache(CacheError::Unavailable(m)) if m == "cache read failed"),
        "{error:?}"
    );
    assert!(entries(&log).is_empty(), "no source is called");
    assert_eq!(builder.in_flight(), 0);
}

// ------------------------------------------------------ execution modes

#[tokio::test(start_paused = true)]
async fn b5_34_synchronous_fetchers_run_on_the_blocking_pool() {
    let clock = manual_clock();
    let caller = std::thread::current().id();
    let single_thread = ThreadSlot::default();
    let batch_thread = ThreadSlot::default();
    let single = sync_single(&single_thread);
    let batch = sync_batch(&batch_thread);
    let builder = chain(vec![single.into(), batch.into()], &clock);

    let snapshot = builder
        .build([key("market:price:BTC"), key("market:mark:BTC")])
        .await
        .expect("build");

    assert_eq!(snapshot.len(), 2);
    let single_thread = single_thread
        .lock()
        .expect("lock")
        .expect("single fetcher ran");
    let batch_thread = batch_thread
        .lock()
        .expect("lock")
        .expect("batch fetcher ran");
    assert_ne!(
        single_thread, caller,
        "sync single fetcher must not run on the runtime thread"
    );
    assert_ne!(
        batch_thread, caller,
        "sync batch fetcher must not run on the runtime thread"
    );
}

#[tokio::test(start_paused = true)]
async fn b5_35_inline_synchronous_fetchers_run_on_the_caller_thread() {
    let clock = manual_clock();
    let caller = std::thread::current().id();
    let single_thread = ThreadSlot::default();
    let batch_thread = ThreadSlot::default();
    let single = sync_single(&single_thread).inline();
    let batch = sync_batch(&batch_thread).inline();
    let builder = chain(vec![single.into(), batch.into()], &clock);

    builder
        .build([key("market:price:BTC"), key("market:mark:BTC")])
        .await
        .expect("build");

    assert_eq!(*single_thread.lock().expect("lock"), Some(caller));
    assert_eq!(*batch_thread.lock().expect("lock"), Some(caller));
}

// -------------------------------------------------- panics in fetchers

#[tokio::test(start_paused = true)]
async fn source_panicking_in_fetch_is_a_failure_and_the_builder_stays_usable() {
    let clock = manual_clock();
    let log = new_log();
    let async_panic = FnSource::new("async", |key: ResourceKey, _ctx: FetchContext| async move {
        if key.subject() == "BOOM" {
            panic!("async source exploded");
        }
        Ok(SourceOutput::new(1_u64))
    })
    .with_priority(30);
    let blocking_panic = FnSource::sync("blocking", |key: &ResourceKey, _ctx: &FetchContext| {
        if key.subject() == "BOOM" {
            panic!("blocking source exploded");
        }
        Ok(SourceOutput::new(2_u64))
    })
    .with_priority(20);
    let inline_panic = FnSource::sync("inline", |key: &ResourceKey, _ctx: &FetchContext| {
        if key.subject() == "BOOM" {
            panic!("inline source exploded");
        }
        Ok(SourceOutput::new(3_u64))
    })
    .inline()
    .with_priority(10);
    let fallback = constant("fallback", 4, &log)
        .with_priority(0)
        .with_supports(|k: &ResourceKey| k.name() == "fallback");
    let builder = config(
        vec![
            async_panic.into(),
            blocking_panic.into(),
            inline_panic.into(),
            fallback.into(),
        ],
        &clock,
    )
    .build()
    .expect("valid builder");
    let boom = key("market:price:BOOM");

    let snapshot = builder
        .build_with([boom.clone()], lenient())
        .await
        .expect("non-strict");

    let failures = snapshot
        .error(&boom)
        .expect("all sources panicked")
        .failures();
    let seen: Vec<(&str, &str)> = failures
        .iter()
        .map(|f| (&*f.source, f.error.error_type()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("async", "SourcePanicError"),
            ("blocking", "SourcePanicError"),
            ("inline", "SourcePanicError"),
        ]
    );
    assert!(failures.iter().all(|f| f.error.is_panic()));
    assert!(failures[0]
        .error
        .to_string()
        .contains("async source exploded"));
    assert!(failures[1]
        .error
        .to_string()
        .contains("blocking source exploded"));
    assert_eq!(builder.in_flight(), 0);
    assert_eq!(builder.capacity().global.in_use, 0);

    let after = builder
        .build([key("market:price:FINE")])
        .await
        .expect("still usable");
    assert_eq!(
        *after
            .value::<u64>(&key("market:price:FINE"))
            .expect("value"),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn panicking_primary_falls_back_to_the_next_source() {
    let clock = manual_clock();
    let log = new_log();
    let primary = FnSource::new(
        "primary",
        |_key: ResourceKey, _ctx: FetchContext| async move {
            if true {
                panic!("primary exploded");
            }
            Ok(SourceOutput::new(0_u64))
        },
    )
    .with_priority(10);
    let fallback = constant("fallback", 9, &log).with_priority(1);
    let (_builder, price, snapshot) =
        resolve_btc(vec![primary.into(), fallback.into()], &clock).await;

    assert_eq!(snapshot.get(&price).expect("value").source(), "fallback");
    assert_eq!(*snapshot.value::<u64>(&price).expect("value"), 9);
}

// ------------------------------------------------- payload immutability

#[tokio::test(start_paused = true)]
async fn b5_36_payloads_are_shared_immutable_arcs_not_copies() {
    let clock = manual_clock();
    let shared: Arc<Vec<u64>> = Arc::new(vec![1, 2, 3]);
    let calls = Arc::new(AtomicUsize::new(0));
    let source_payload = Arc::clone(&shared);
    let counter = Arc::clone(&calls);
    let rest = FnSource::new("rest", move |_key: ResourceKey, _ctx: FetchContext| {
        counter.fetch_add(1, Ordering::SeqCst);
        let payload = Payload::from_arc(Arc::clone(&source_payload));
        async move { Ok(SourceOutput::from_payload(payload)) }
    });
    let builder = config(vec![rest.into()], &clock)
        .default_policy(
            FreshnessPolicy::new(Duration::from_secs(60), Duration::from_secs(60)).expect("policy"),
        )
        .build()
        .expect("valid builder");
    let book = key("market:book:BTC");

    let first = builder.build([book.clone()]).await.expect("first build");
    let second = builder.build([book.clone()]).await.expect("second build");

    let first = first.get(&book).expect("first value");
    let second = second.get(&book).expect("second value");
    let delivered = first.payload().get_arc::<Vec<u64>>().expect("Vec<u64>");
    assert!(
        Arc::ptr_eq(&delivered, &shared),
        "the source's Arc is delivered as is"
    );
    assert!(second.is_from_cache());
    assert!(
        second.same_revision(first),
        "the cache hands out the stored revision"
    );
    assert!(second.payload().ptr_eq(first.payload()));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn b5_40_public_behaviour_of_a_single_source_build() {
    let clock = manual_clock();
    let log = new_log();
    let builder = chain(vec![constant("rest", 7, &log).into()], &clock);
    let price = key("market:price:BTC");

    let snapshot = builder.build([price.clone()]).await.expect("build");

    assert_eq!(*snapshot.value::<u64>(&price).expect("value"), 7);
    let value = snapshot.get(&price).expect("value");
    assert_eq!(value.attempts(), 1);
    assert_eq!(value.observed_at(), now(&clock));
    assert!(!value.is_from_cache() && !value.is_stale() && !value.is_coalesced());
}

/// Keys served by different sources do not wait for each other: a build's
/// latency is the slowest source's, not the sum over sources.
#[tokio::test(start_paused = true)]
async fn keys_of_different_sources_are_fetched_concurrently() {
    let slow = |name: &str, resource: &'static str| {
        FnSource::new(name, |_k: ResourceKey, _ctx: FetchContext| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(SourceOutput::new(1_u64))
        })
        .with_supports(move |k: &ResourceKey| k.name() == resource)
    };
    let builder = SnapshotBuilder::builder([
        slow("prices", "price").with_priority(10).into(),
        slow("balances", "balance").into(),
    ])
    .build()
    .expect("valid builder");
    let started = tokio::time::Instant::now();
    let snapshot = builder
        .build([
            ResourceKey::new("m", "price", "BTC").expect("key"),
            ResourceKey::new("a", "balance", "USD").expect("key"),
        ])
        .await
        .expect("build");
    assert_eq!(snapshot.len(), 2);
    assert_eq!(started.elapsed(), Duration::from_millis(100));
}

// A policy that allows no age at all never reads the cache: even a revision
// published at this very instant (a frozen manual clock) is not served, and
// the key counts as a cache miss without a read reaching the cache.
#[tokio::test]
async fn a_never_cached_policy_goes_to_the_source_without_reading_the_cache() {
    let clock = manual_clock();
    let log = new_log();
    let builder = config(vec![constant("rest", 7, &log).into()], &clock)
        .default_policy(FreshnessPolicy::no_cache())
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");
    builder
        .publisher()
        .publish(
            price.clone(),
            Payload::new(1_u64),
            coalestra_cache::PublishOptions::new("stream"),
        )
        .await
        .expect("published");
    let reads_before = builder.cache().stats();

    let snapshot = builder.build([price.clone()]).await.expect("build");

    assert_eq!(*snapshot.value::<u64>(&price).expect("value"), 7);
    assert!(!snapshot.get(&price).expect("value").is_from_cache());
    assert_eq!(entries(&log), vec![format!("rest:{price}")]);
    let reads_after = builder.cache().stats();
    assert_eq!(
        (reads_after.hits, reads_after.misses),
        (reads_before.hits, reads_before.misses),
        "the cache was not read"
    );
    let diagnostics = snapshot.diagnostics().expect("diagnostics");
    assert_eq!(diagnostics.cache_misses, 1);
}
