//! Catalogue area 6: single-flight, coalescing and cancellation — one fetch
//! per key across concurrent builds (single and batch sources), joiners
//! marked coalesced, cancellation of waiters and of the only caller, shared
//! failures, the in-flight registry never leaking, dependencies owned by the
//! same resolution tree, and joiners honouring their own deadline
//! (B6.1–B6.13).

use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra_cache::MemoryCache;
use coalestra_core::{
    BuildOptions, CoalestraError, FetchContext, FnBatchSource, FnDerivedSource, FnSource,
    ManualClock, ResourceKey, Snapshot, SourceError, SourceOptions, SourceOutput,
};
use coalestra_orchestration::{BuilderConfig, SnapshotBuilder};
use coalestra_test::{key, Gate, RecordingSink, ScriptedCache};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

mod support;
use support::{
    batch_calls, count, entries, new_log, push, single_attempt_config as config, Batches, Log,
};

// ---------------------------------------------------------------- helpers

/// Sleeps 1 ms on the paused clock, so every spawned task runs until all
/// of them are blocked: with paused time the runtime only advances the
/// clock once nothing else can run. (Unlike `support::settle`, this moves
/// the clock.)
async fn sleep_a_tick() {
    tokio::time::sleep(Duration::from_millis(1)).await;
}

/// A single source `name` logging each key and passing `gate`, then
/// answering what `answer` resolves to.
fn logged_at_gate<F, Fut>(name: &'static str, gate: &Gate, log: &Log, answer: F) -> FnSource
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: Future<Output = Result<SourceOutput, SourceError>> + Send + 'static,
{
    let gate = gate.clone();
    let log = log.clone();
    FnSource::new(name, move |key: ResourceKey, _ctx: FetchContext| {
        let gate = gate.clone();
        let log = log.clone();
        let answer = answer.clone();
        async move {
            push(&log, key.to_string());
            gate.pass().await;
            answer().await
        }
    })
}

/// A single source logging each key, held at `gate`, then answering `value`.
fn gated(name: &'static str, value: u64, gate: &Gate, log: &Log) -> FnSource {
    logged_at_gate(name, gate, log, move || async move {
        Ok(SourceOutput::new(value))
    })
}

/// A single source held at `gate`, then failing.
fn gated_failure(gate: &Gate, log: &Log) -> FnSource {
    logged_at_gate("rest", gate, log, || async {
        Err(SourceError::unavailable("rest is down"))
    })
}

/// A batch source recording its calls, held at `gate`, answering 1 per key.
fn gated_batch(gate: &Gate, batches: &Batches) -> FnBatchSource {
    let gate = gate.clone();
    let batches = Arc::clone(batches);
    FnBatchSource::new(
        "batch",
        move |keys: Vec<ResourceKey>, _ctx: FetchContext| {
            let gate = gate.clone();
            batches
                .lock()
                .expect("batch log poisoned")
                .push(keys.clone());
            async move {
                gate.pass().await;
                Ok(keys
                    .into_iter()
                    .map(|k| (k, SourceOutput::new(1_u64)))
                    .collect())
            }
        },
    )
}

/// A builder over one source on a manual clock, with the source's gate, its
/// call log and the key to build (`market:price:BTC`), in that order.
type Gated = (Gate, Log, SnapshotBuilder, ResourceKey);

/// The most common setup: one gated `rest` source answering 42.
fn gated_builder() -> Gated {
    gated_rest(42)
}

/// [`gated_builder`] with the source answering `value`.
fn gated_rest(value: u64) -> Gated {
    gated_with(|gate, log| gated("rest", value, gate, log))
}

/// A builder over the source `source` makes from a fresh gate and call log.
fn gated_with(source: impl FnOnce(&Gate, &Log) -> FnSource) -> Gated {
    gated_configured(source, |config| config)
}

/// [`gated_with`], the builder configuration adjusted by `configure`.
fn gated_configured(
    source: impl FnOnce(&Gate, &Log) -> FnSource,
    configure: impl FnOnce(BuilderConfig) -> BuilderConfig,
) -> Gated {
    let clock = ManualClock::new(1_000.0);
    let gate = Gate::new();
    let log = new_log();
    let builder = configure(config(vec![source(&gate, &log).into()], &clock))
        .build()
        .expect("valid builder");
    (gate, log, builder, key("market:price:BTC"))
}

/// A builder over [`gated_batch`] on a manual clock, with its gate and its
/// batch log.
fn gated_batch_builder() -> (Gate, Batches, SnapshotBuilder) {
    let clock = ManualClock::new(1_000.0);
    let gate = Gate::new();
    let batches: Batches = Arc::default();
    let builder = config(vec![gated_batch(&gate, &batches).into()], &clock)
        .build()
        .expect("valid builder");
    (gate, batches, builder)
}

/// Spawns a default build of `price`.
fn spawn_price(builder: &SnapshotBuilder, price: &ResourceKey) -> BuildTask {
    spawn_build(builder, vec![price.clone()], BuildOptions::new())
}

/// Spawns a default build of `price` and waits until its source call is
/// parked at `gate`.
async fn spawn_parked(builder: &SnapshotBuilder, price: &ResourceKey, gate: &Gate) -> BuildTask {
    let owner = spawn_price(builder, price);
    gate.wait_for_arrivals(1).await;
    owner
}

/// Asserts that `snapshot` holds 42 for `price`, obtained by joining
/// another caller's fetch.
fn assert_joined_42(snapshot: &Snapshot, price: &ResourceKey) {
    assert_eq!(*snapshot.value::<u64>(price).expect("value"), 42);
    assert!(snapshot.get(price).expect("value").is_coalesced());
}

/// A spawned build.
type BuildTask = JoinHandle<Result<Snapshot, CoalestraError>>;

fn spawn_build(
    builder: &SnapshotBuilder,
    keys: Vec<ResourceKey>,
    options: BuildOptions,
) -> BuildTask {
    let builder = builder.clone();
    tokio::spawn(async move { builder.build_with(keys, options).await })
}

// ------------------------------------------------------------- coalescing

#[tokio::test(start_paused = true)]
async fn b6_1_concurrent_builds_coalesce_an_identical_resource() {
    let (gate, log, builder, price) = gated_rest(123);

    let first = spawn_price(&builder, &price);
    let second = spawn_parked(&builder, &price, &gate).await;
    sleep_a_tick().await;
    assert_eq!(
        gate.arrivals(),
        1,
        "the second build joins instead of calling"
    );
    assert_eq!(builder.in_flight(), 1);
    gate.open();
    let first = first.await.expect("task").expect("first build");
    let second = second.await.expect("task").expect("second build");

    assert_eq!(*first.value::<u64>(&price).expect("value"), 123);
    assert_eq!(*second.value::<u64>(&price).expect("value"), 123);
    assert_eq!(entries(&log).len(), 1);
    let coalesced = [&first, &second]
        .iter()
        .filter(|s| s.get(&price).expect("value").is_coalesced())
        .count();
    assert_eq!(coalesced, 1, "exactly the joiner is marked coalesced");
    assert_eq!(builder.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn overlapping_builds_fetch_the_shared_key_once() {
    let (gate, log, builder, _) = gated_rest(5);
    let (a, b, c) = (
        key("market:price:A"),
        key("market:price:B"),
        key("market:price:C"),
    );

    let first = spawn_build(&builder, vec![a.clone(), b.clone()], BuildOptions::new());
    gate.wait_for_arrivals(2).await;
    let second = spawn_build(&builder, vec![b.clone(), c.clone()], BuildOptions::new());
    gate.wait_for_arrivals(3).await;
    sleep_a_tick().await;
    assert_eq!(gate.arrivals(), 3, "B is not fetched a second time");
    assert_eq!(builder.in_flight(), 3);
    gate.open();
    let first = first.await.expect("task").expect("first build");
    let second = second.await.expect("task").expect("second build");

    assert_eq!(count(&log, "market:price:A"), 1);
    assert_eq!(count(&log, "market:price:B"), 1);
    assert_eq!(count(&log, "market:price:C"), 1);
    assert_eq!(entries(&log).len(), 3);
    assert!(!first.get(&a).expect("a").is_coalesced());
    assert!(!first.get(&b).expect("b").is_coalesced());
    assert!(second.get(&b).expect("b").is_coalesced());
    assert!(!second.get(&c).expect("c").is_coalesced());
    assert!(first
        .get(&b)
        .expect("b")
        .same_revision(second.get(&b).expect("b")));
    assert_eq!(
        second
            .diagnostics()
            .expect("diagnostics")
            .coalesced_requests,
        1
    );
    assert_eq!(builder.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn thousand_concurrent_builds_of_one_key_make_exactly_one_source_call() {
    let (gate, log, builder, price) = gated_rest(7);

    let mut builds = JoinSet::new();
    for _ in 0..1_000 {
        let builder = builder.clone();
        let price = price.clone();
        builds.spawn(async move { builder.build([price]).await });
    }
    gate.wait_for_arrivals(1).await;
    sleep_a_tick().await;
    assert_eq!(gate.arrivals(), 1);
    gate.open();
    let mut coalesced = 0;
    let mut done = 0;
    while let Some(result) = builds.join_next().await {
        let snapshot = result.expect("task").expect("build");
        assert_eq!(*snapshot.value::<u64>(&price).expect("value"), 7);
        if snapshot.get(&price).expect("value").is_coalesced() {
            coalesced += 1;
        }
        done += 1;
    }

    assert_eq!(done, 1_000);
    assert_eq!(entries(&log).len(), 1);
    assert_eq!(coalesced, 999);
    assert_eq!(builder.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn b6_2_concurrent_identical_batch_builds_share_one_batch_call() {
    let (gate, batches, builder) = gated_batch_builder();
    let keys = vec![
        key("market:price:BTC"),
        key("market:price:ETH"),
        key("market:price:SOL"),
    ];

    let first = spawn_build(&builder, keys.clone(), BuildOptions::new());
    let second = spawn_build(&builder, keys.clone(), BuildOptions::new());
    gate.wait_for_arrivals(1).await;
    sleep_a_tick().await;
    gate.open();
    let first = first.await.expect("task").expect("first build");
    let second = second.await.expect("task").expect("second build");

    assert_eq!(batch_calls(&batches), vec![keys.clone()]);
    for snapshot in [&first, &second] {
        for k in &keys {
            assert_eq!(*snapshot.value::<u64>(k).expect("value"), 1);
        }
    }
    let all_coalesced = |s: &Snapshot| keys.iter().all(|k| s.get(k).expect("value").is_coalesced());
    let none_coalesced = |s: &Snapshot| {
        keys.iter()
            .all(|k| !s.get(k).expect("value").is_coalesced())
    };
    assert!(
        (all_coalesced(&first) && none_coalesced(&second))
            || (all_coalesced(&second) && none_coalesced(&first)),
        "one snapshot joined every key, the other joined none"
    );
}

#[tokio::test(start_paused = true)]
async fn b6_3_overlapping_batch_builds_coalesce_shared_keys() {
    let (gate, batches, builder) = gated_batch_builder();
    let (btc, eth, sol) = (
        key("market:price:BTC"),
        key("market:price:ETH"),
        key("market:price:SOL"),
    );

    let first = spawn_build(
        &builder,
        vec![btc.clone(), eth.clone()],
        BuildOptions::new(),
    );
    gate.wait_for_arrivals(1).await;
    let second = spawn_build(
        &builder,
        vec![eth.clone(), sol.clone()],
        BuildOptions::new(),
    );
    gate.wait_for_arrivals(2).await;
    gate.open();
    let first = first.await.expect("task").expect("first build");
    let second = second.await.expect("task").expect("second build");

    let calls = batch_calls(&batches);
    assert_eq!(
        calls,
        vec![vec![btc.clone(), eth.clone()], vec![sol.clone()]]
    );
    assert_eq!(calls.iter().flatten().filter(|k| **k == eth).count(), 1);
    assert!(first.contains(&eth) && second.contains(&eth));
    assert!(second.get(&eth).expect("eth").is_coalesced());
    assert!(!second.get(&sol).expect("sol").is_coalesced());
}

#[tokio::test(start_paused = true)]
async fn b6_6_joiner_is_marked_coalesced_counted_and_metered_by_resource_type() {
    let clock = ManualClock::new(1_000.0);
    let gate = Gate::new();
    let log = new_log();
    let sink = RecordingSink::new();
    let builder = config(vec![gated("rest", 1, &gate, &log).into()], &clock)
        .metrics(Arc::new(sink.clone()))
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");

    let owner = spawn_parked(&builder, &price, &gate).await;
    let joiner = spawn_price(&builder, &price);
    sleep_a_tick().await;
    gate.open();
    let owner = owner.await.expect("task").expect("owner build");
    let joiner = joiner.await.expect("task").expect("joiner build");

    assert!(!owner.get(&price).expect("value").is_coalesced());
    assert!(joiner.get(&price).expect("value").is_coalesced());
    assert_eq!(
        owner.diagnostics().expect("diagnostics").coalesced_requests,
        0
    );
    assert_eq!(
        joiner
            .diagnostics()
            .expect("diagnostics")
            .coalesced_requests,
        1
    );
    assert_eq!(
        sink.metric_labels("singleflight_join_total"),
        vec![vec![
            ("resource_namespace".to_owned(), "market".to_owned()),
            ("resource_name".to_owned(), "price".to_owned()),
        ]],
        "labelled by resource type only, never by subject"
    );
}

// ----------------------------------------------------------- cancellation

#[tokio::test(start_paused = true)]
async fn b6_4_cancelled_waiter_does_not_cancel_shared_work_or_leak_the_registry() {
    let (gate, log, builder, price) = gated_builder();

    let owner = spawn_parked(&builder, &price, &gate).await;
    let waiter = spawn_price(&builder, &price);
    sleep_a_tick().await;
    waiter.abort();
    let cancelled = waiter.await.expect_err("the waiter was cancelled");
    assert!(cancelled.is_cancelled());
    assert_eq!(builder.in_flight(), 1, "the shared fetch is still running");
    assert_eq!(gate.waiting(), 1);
    gate.open();
    let owner = owner.await.expect("task").expect("owner build");

    let value = owner.get(&price).expect("value");
    assert_eq!(*value.value::<u64>().expect("u64"), 42);
    assert!(!value.is_coalesced());
    assert_eq!(entries(&log).len(), 1);
    assert_eq!(builder.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn cancelled_owner_does_not_cancel_the_fetch_its_joiner_waits_for() {
    let (gate, log, builder, price) = gated_builder();

    let owner = spawn_parked(&builder, &price, &gate).await;
    let joiner = spawn_price(&builder, &price);
    sleep_a_tick().await;
    owner.abort();
    assert!(owner.await.expect_err("cancelled").is_cancelled());
    gate.open();
    let joiner = joiner
        .await
        .expect("task")
        .expect("joiner gets the shared value");

    assert_joined_42(&joiner, &price);
    assert_eq!(entries(&log).len(), 1);
    assert_eq!(builder.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn b6_5_cancelling_the_only_caller_lets_the_fetch_finish_and_releases_capacity() {
    let clock = ManualClock::new(1_000.0);
    let gate = Gate::new();
    let log = new_log();
    let rest = gated("rest", 42, &gate, &log)
        .with_max_concurrency(NonZeroUsize::new(1).expect("non-zero"));
    let builder = config(vec![rest.into()], &clock)
        .max_concurrency(1)
        .build()
        .expect("valid builder");
    let price = key("market:price:BTC");

    let only = spawn_parked(&builder, &price, &gate).await;
    let held = builder.capacity();
    assert_eq!(held.global.in_use, 1);
    assert_eq!(held.sources.get("rest").expect("rest limit").in_use, 1);
    only.abort();
    assert!(only.await.expect_err("cancelled").is_cancelled());
    assert_eq!(gate.waiting(), 1, "the producer keeps running");
    gate.open();
    sleep_a_tick().await;

    let released = builder.capacity();
    assert_eq!(released.global.in_use, 0);
    assert_eq!(released.sources.get("rest").expect("rest limit").in_use, 0);
    assert_eq!(builder.in_flight(), 0);
    assert_eq!(builder.active_tasks(), 0);
    let later = tokio::time::timeout(Duration::from_millis(500), builder.build([price.clone()]))
        .await
        .expect("a new build completes promptly")
        .expect("build");
    let value = later.get(&price).expect("value");
    assert!(
        value.is_from_cache(),
        "the cancelled caller's fetch landed in the cache"
    );
    assert_eq!(*value.value::<u64>().expect("u64"), 42);
    assert_eq!(entries(&log).len(), 1, "no new source call");
}

// --------------------------------------------------------------- failures

#[tokio::test(start_paused = true)]
async fn b6_7_shared_failure_reaches_every_caller_with_one_source_call() {
    let (gate, log, builder, price) = gated_with(gated_failure);

    let first = spawn_price(&builder, &price);
    let second = spawn_parked(&builder, &price, &gate).await;
    sleep_a_tick().await;
    gate.open();
    let first = first.await.expect("task").expect_err("first fails");
    let second = second.await.expect("task").expect_err("second fails");

    for error in [&first, &second] {
        let resource_error = error
            .as_build()
            .expect("build error")
            .error(&price)
            .expect("error of the key");
        assert_eq!(resource_error.error_type(), "ResourceResolutionError");
        assert_eq!(
            resource_error.failures()[0].error.error_type(),
            "SourceUnavailableError"
        );
    }
    assert_eq!(entries(&log).len(), 1);
    assert_eq!(builder.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn b6_8_waiters_get_an_error_when_the_shared_fetch_dies_without_an_outcome() {
    // The shared fetch's task dies writing to the cache, before it can
    // publish its outcome.
    let cache =
        Arc::new(ScriptedCache::new(MemoryCache::new()).panicking_writes("cache write exploded"));
    let (gate, _log, builder, price) = gated_configured(
        |gate, log| gated("rest", 1, gate, log),
        |config| config.cache(cache.clone()),
    );

    let first = spawn_price(&builder, &price);
    let second = spawn_parked(&builder, &price, &gate).await;
    sleep_a_tick().await;
    gate.open();
    let outcomes = tokio::time::timeout(Duration::from_secs(5), async {
        (first.await, second.await)
    })
    .await
    .expect("waiters are woken instead of hanging");

    for outcome in [outcomes.0, outcomes.1] {
        let error = outcome
            .expect("task")
            .expect_err("no outcome was published");
        let resource_error = error
            .as_build()
            .expect("build error")
            .error(&price)
            .expect("error");
        assert!(!resource_error.failures().is_empty());
    }
    // One shared fetch, and it died in its one cache write.
    assert_eq!(cache.writes(), 1);
    assert_eq!(builder.in_flight(), 0);
    assert_eq!(builder.active_tasks(), 0);
}

// ----------------------------------------------------------- the registry

#[tokio::test(start_paused = true)]
async fn b6_9_in_flight_is_zero_when_idle_and_never_leaks() {
    let clock = ManualClock::new(1_000.0);
    let hang = Gate::new();
    let slow_gate = hang.clone();
    let source = FnSource::new("rest", move |key: ResourceKey, _ctx: FetchContext| {
        let gate = slow_gate.clone();
        async move {
            match key.subject() {
                "OK" => Ok(SourceOutput::new(1_u64)),
                "ERR" => Err(SourceError::unavailable("down")),
                "PANIC" => panic!("source exploded"),
                // Held until the source timeout or the deadline.
                _ => {
                    gate.pass().await;
                    Ok(SourceOutput::new(2_u64))
                }
            }
        }
    })
    .with_timeout(Duration::from_millis(100));
    let builder = config(vec![source.into()], &clock)
        .default_policy(coalestra_core::FreshnessPolicy::no_cache())
        .build()
        .expect("valid builder");
    assert_eq!(builder.in_flight(), 0, "idle");
    assert_eq!(builder.health().singleflight_in_flight, 0, "idle health");

    builder
        .build([key("market:price:OK")])
        .await
        .expect("success");
    assert_eq!(builder.in_flight(), 0, "after success");

    builder
        .build([key("market:price:ERR")])
        .await
        .expect_err("error");
    assert_eq!(builder.in_flight(), 0, "after error");

    builder
        .build([key("market:price:PANIC")])
        .await
        .expect_err("panic");
    assert_eq!(builder.in_flight(), 0, "after panic");

    let timed_out = builder
        .build([key("market:price:SLOW")])
        .await
        .expect_err("timeout");
    let failure = &timed_out.as_build().expect("build error").errors()[0].failures()[0];
    assert!(failure.error.is_timeout(), "{failure}");
    assert_eq!(builder.in_flight(), 0, "after source timeout");

    let expired = builder
        .build_with(
            [key("market:price:SLOWER")],
            BuildOptions::new().deadline(Duration::from_millis(20)),
        )
        .await
        .expect_err("deadline");
    assert!(expired
        .as_build()
        .expect("build error")
        .is_deadline_exceeded());
    // The caller returns at its deadline; the detached fetch, bound by the
    // same deadline, ends at that instant in its own task. Let it finish
    // (the gate stays closed: nothing but the deadline can end it).
    sleep_a_tick().await;
    assert_eq!(builder.in_flight(), 0, "after deadline");
    assert_eq!(
        hang.waiting(),
        0,
        "the held call was dropped at the deadline"
    );

    let cancelled = spawn_build(
        &builder,
        vec![key("market:price:HELD")],
        BuildOptions::new(),
    );
    hang.wait_for_arrivals(3).await;
    assert_eq!(builder.health().singleflight_in_flight, 1, "while held");
    cancelled.abort();
    assert!(cancelled.await.expect_err("cancelled").is_cancelled());
    hang.open();
    sleep_a_tick().await;
    assert_eq!(builder.in_flight(), 0, "after cancellation");
    assert_eq!(builder.health().singleflight_in_flight, 0);
    assert_eq!(builder.active_tasks(), 0);
    assert_eq!(builder.capacity().global.in_use, 0);
}

#[tokio::test(start_paused = true)]
async fn b6_10_requested_resource_can_also_be_a_dependency_without_deadlock() {
    let clock = ManualClock::new(1_000.0);
    let raw_calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&raw_calls);
    let raw = FnSource::new("raw", move |_key: ResourceKey, _ctx: FetchContext| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(SourceOutput::new(10_u64))
        }
    })
    .with_supports(|k: &ResourceKey| k.name() == "raw");
    let value_a = FnDerivedSource::sync(
        "value-a",
        |k: &ResourceKey| vec![key(&format!("calc:raw:{}", k.subject()))],
        |k: &ResourceKey, deps: &Snapshot, _ctx: &FetchContext| {
            let raw = deps
                .value::<u64>(&key(&format!("calc:raw:{}", k.subject())))
                .map_err(SourceError::protocol)?;
            Ok(SourceOutput::new(raw * 2))
        },
    )
    .with_supports(|k: &ResourceKey| k.name() == "value_a");
    let chain = FnDerivedSource::sync(
        "chain",
        |k: &ResourceKey| vec![key(&format!("calc:value_a:{}", k.subject()))],
        |k: &ResourceKey, deps: &Snapshot, _ctx: &FetchContext| {
            let a = deps
                .value::<u64>(&key(&format!("calc:value_a:{}", k.subject())))
                .map_err(SourceError::protocol)?;
            Ok(SourceOutput::new(a + 1))
        },
    )
    .with_supports(|k: &ResourceKey| k.name() == "chain");
    let builder = config(vec![chain.into(), value_a.into(), raw.into()], &clock)
        .build()
        .expect("valid builder");
    let (chain_key, a_key, raw_key) = (
        key("calc:chain:X"),
        key("calc:value_a:X"),
        key("calc:raw:X"),
    );

    let snapshot = tokio::time::timeout(
        Duration::from_secs(1),
        builder.build([chain_key.clone(), a_key.clone(), raw_key.clone()]),
    )
    .await
    .expect("no self-deadlock")
    .expect("build");

    assert_eq!(*snapshot.value::<u64>(&raw_key).expect("raw"), 10);
    assert_eq!(*snapshot.value::<u64>(&a_key).expect("value_a"), 20);
    assert_eq!(*snapshot.value::<u64>(&chain_key).expect("chain"), 21);
    assert_eq!(raw_calls.load(Ordering::SeqCst), 1);
    assert_eq!(builder.in_flight(), 0);
}

// -------------------------------------------------------------- deadlines

/// A source that counts arrivals at `arrivals` (opened by the caller), then
/// takes 300 ms to answer 9.
fn slow_source(arrivals: &Gate, log: &Log) -> FnSource {
    logged_at_gate("rest", arrivals, log, || async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(SourceOutput::new(9_u64))
    })
}

#[tokio::test(start_paused = true)]
async fn b6_11_joiner_honours_its_own_deadline_while_the_owner_gets_the_value() {
    let (arrivals, log, builder, price) = gated_with(slow_source);
    arrivals.open();

    let owner_started = Instant::now();
    let owner = spawn_price(&builder, &price);
    arrivals.wait_for_arrivals(1).await;
    let joiner_started = Instant::now();
    let error = builder
        .build_with(
            [price.clone()],
            BuildOptions::new().deadline(Duration::from_millis(50)),
        )
        .await
        .expect_err("the joiner's deadline expires first");
    let joiner_elapsed = joiner_started.elapsed();

    assert_eq!(
        joiner_elapsed,
        Duration::from_millis(50),
        "returned at its own deadline"
    );
    let build_error = error.as_build().expect("build error");
    assert!(build_error.is_deadline_exceeded(), "{error}");
    let failure = &build_error.error(&price).expect("error").failures()[0];
    assert_eq!(failure.error.error_type(), "SnapshotDeadlineExceededError");
    assert_eq!(&*failure.source, "snapshot");
    assert!(
        build_error.snapshot().is_none(),
        "no partial snapshot past the deadline"
    );

    let owner = owner.await.expect("task").expect("owner build");
    assert_eq!(owner_started.elapsed(), Duration::from_millis(300));
    assert_eq!(*owner.value::<u64>(&price).expect("value"), 9);
    assert_eq!(entries(&log).len(), 1);
    assert_eq!(builder.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn b6_12_non_strict_joiner_past_its_deadline_reports_the_key_only_as_an_error() {
    let (arrivals, _log, builder, price) = gated_with(slow_source);
    arrivals.open();

    let owner = spawn_price(&builder, &price);
    arrivals.wait_for_arrivals(1).await;
    let snapshot = builder
        .build_with(
            [price.clone()],
            BuildOptions::new()
                .deadline(Duration::from_millis(50))
                .strict(false),
        )
        .await
        .expect("non-strict");

    assert!(
        snapshot.get(&price).is_none(),
        "not both a value and an error"
    );
    assert!(snapshot
        .error(&price)
        .expect("error")
        .is_deadline_exceeded());
    owner.await.expect("task").expect("owner build");
}

// ---------------------------------------------------------- shared payload

#[tokio::test(start_paused = true)]
async fn b6_13_coalesced_callers_share_one_immutable_payload() {
    let clock = ManualClock::new(1_000.0);
    let gate = Gate::new();
    let gate_in = gate.clone();
    let rest = FnSource::new("rest", move |_key: ResourceKey, _ctx: FetchContext| {
        let gate = gate_in.clone();
        async move {
            gate.pass().await;
            Ok(SourceOutput::new(vec![1_u64, 2, 3]))
        }
    });
    let builder = config(vec![rest.into()], &clock)
        .build()
        .expect("valid builder");
    let book = key("market:book:BTC");

    let first = spawn_build(&builder, vec![book.clone()], BuildOptions::new());
    let second = spawn_build(&builder, vec![book.clone()], BuildOptions::new());
    gate.wait_for_arrivals(1).await;
    sleep_a_tick().await;
    gate.open();
    let first = first.await.expect("task").expect("first build");
    let second = second.await.expect("task").expect("second build");

    let a = first.get(&book).expect("value");
    let b = second.get(&book).expect("value");
    assert!(
        a.payload().ptr_eq(b.payload()),
        "one Arc shared by both callers"
    );
    assert!(a.same_revision(b));
    assert_eq!(gate.arrivals(), 1);
}

// ------------------------------------------------- inline start of owned work

/// Polls `future` exactly once.
async fn poll_once<F: std::future::Future + Unpin>(future: &mut F) -> bool {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(std::pin::Pin::new(&mut *future).poll(cx).is_ready())
    })
    .await
}

#[tokio::test(start_paused = true)]
async fn the_first_caller_starts_the_source_call_within_its_own_first_poll() {
    let (gate, log, builder, price) = gated_builder();

    let mut build = Box::pin(builder.build([price.clone()]));
    assert!(
        !poll_once(&mut build).await,
        "the source is held at the gate"
    );
    // No other task ran in between: the call started inside that one poll.
    assert_eq!(entries(&log).len(), 1);
    assert_eq!(gate.waiting(), 1);
    assert_eq!(builder.active_tasks(), 1, "inline work counts as active");

    gate.open();
    let snapshot = build.await.expect("build");
    assert_eq!(*snapshot.value::<u64>(&price).expect("value"), 42);
    assert_eq!(builder.active_tasks(), 0);
    assert_eq!(builder.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_caller_dropped_after_its_first_poll_hands_the_work_to_a_task() {
    let (gate, log, builder, price) = gated_builder();

    let mut build = Box::pin(builder.build([price.clone()]));
    assert!(!poll_once(&mut build).await);
    drop(build);
    assert_eq!(
        builder.active_tasks(),
        1,
        "the work moved to a tracked task"
    );
    let joiner = spawn_price(&builder, &price);
    sleep_a_tick().await;
    gate.open();
    let joined = joiner.await.expect("task").expect("shared value");

    assert_joined_42(&joined, &price);
    assert_eq!(entries(&log).len(), 1, "one call for both callers");
    sleep_a_tick().await;
    assert_eq!(builder.active_tasks(), 0);
    assert_eq!(builder.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn close_waits_for_work_running_inside_a_caller() {
    let (gate, _log, builder, price) = gated_builder();

    let caller = spawn_parked(&builder, &price, &gate).await;
    let closing = {
        let builder = builder.clone();
        tokio::spawn(async move { builder.close().await })
    };
    sleep_a_tick().await;
    assert!(!closing.is_finished(), "close waits for the running fetch");
    gate.open();
    closing.await.expect("close");
    assert_eq!(builder.active_tasks(), 0);
    let snapshot = caller.await.expect("task").expect("build finished");
    assert_eq!(*snapshot.value::<u64>(&price).expect("value"), 42);
}
