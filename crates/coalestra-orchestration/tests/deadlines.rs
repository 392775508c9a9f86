//! Catalogue area 11 (the rules about builds, B11.1–B11.10): one absolute
//! snapshot deadline bounding source calls, capacity waits, shared-fetch
//! waits, cache reads and writes and consecutive fallback attempts; source
//! timeouts and their effective budget; errors that merely look like timeouts;
//! the post-call deadline check; zero deadlines rejected. Deadlines and
//! timeouts run on tokio's (paused) clock.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra_cache::MemoryCache;
use coalestra_core::{
    BuildOptions, CoalestraError, FetchContext, FnSource, FreshnessPolicy, ResourceError,
    ResourceKey, Snapshot, SourceError, SourceOptions, SourceOutput, Timestamp,
};
use coalestra_orchestration::SnapshotBuilder;
use coalestra_test::{key, Gate, ScriptedCache};
use tokio::time::Instant;

mod support;
use support::{counted, counter, failure_details, single_attempt, HANG_GUARD};

const DEADLINE: Duration = Duration::from_millis(20);

fn price() -> ResourceKey {
    key("market:price:BTC")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Asserts `elapsed` is `expected` on the paused clock (timer granularity is
/// one millisecond).
fn assert_elapsed(elapsed: Duration, expected: Duration) {
    assert!(
        elapsed >= expected && elapsed <= expected + ms(1),
        "elapsed {elapsed:?}, expected {expected:?} ± 1 ms"
    );
}

/// A source that sleeps `delay` before answering 1, counting calls.
fn slow_source(name: &str, delay: Duration, calls: Arc<AtomicUsize>) -> FnSource {
    FnSource::new(name, move |_k: ResourceKey, _ctx: FetchContext| {
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            Ok(SourceOutput::new(1_u64))
        }
    })
}

fn resource_error<'a>(error: &'a CoalestraError, k: &ResourceKey) -> &'a ResourceError {
    error
        .as_build()
        .unwrap_or_else(|| panic!("a build error, got {error}"))
        .error(k)
        .unwrap_or_else(|| panic!("an error for {k}: {error}"))
}

fn snapshot_error<'a>(snapshot: &'a Snapshot, k: &ResourceKey) -> &'a ResourceError {
    snapshot
        .error(k)
        .unwrap_or_else(|| panic!("{k} should have failed: {snapshot:?}"))
}

/// A source holding calls for `gated` at `gate`; counts calls per key.
fn gated_source(
    gate: Gate,
    gated: ResourceKey,
    calls: Arc<std::sync::Mutex<Vec<ResourceKey>>>,
) -> FnSource {
    FnSource::new("rest", move |k: ResourceKey, _ctx: FetchContext| {
        let gate = gate.clone();
        let gated = gated.clone();
        let calls = Arc::clone(&calls);
        async move {
            calls.lock().expect("lock").push(k.clone());
            if k == gated {
                gate.pass().await;
            }
            Ok(SourceOutput::new(7_u64))
        }
    })
}

/// Builds `keys` strictly under [`DEADLINE`], failing the test when the
/// build outlives [`HANG_GUARD`].
async fn strict_by_deadline(
    builder: &SnapshotBuilder,
    keys: &[ResourceKey],
) -> Result<Snapshot, CoalestraError> {
    guarded(builder.build_with(keys.to_vec(), BuildOptions::new().deadline(DEADLINE))).await
}

/// [`strict_by_deadline`] for a non-strict build.
async fn lenient_by_deadline(
    builder: &SnapshotBuilder,
    keys: &[ResourceKey],
) -> Result<Snapshot, CoalestraError> {
    let options = BuildOptions::new().deadline(DEADLINE).strict(false);
    guarded(builder.build_with(keys.to_vec(), options)).await
}

/// Awaits `build`, asserting that it returns at [`DEADLINE`].
async fn at_the_deadline<F: std::future::Future>(build: F) -> F::Output {
    let start = Instant::now();
    let output = build.await;
    assert_elapsed(start.elapsed(), DEADLINE);
    output
}

/// Awaits `build`, failing the test when it outlives [`HANG_GUARD`].
async fn guarded<F: std::future::Future>(build: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, build)
        .await
        .expect("the build returns at its deadline")
}

/// Builds the price non-strictly under `deadline`.
async fn lenient_within(builder: &SnapshotBuilder, deadline: Duration) -> Snapshot {
    builder
        .build_with(
            [price()],
            BuildOptions::new().deadline(deadline).strict(false),
        )
        .await
        .expect("non-strict build")
}

// B11.1
#[tokio::test(start_paused = true)]
async fn snapshot_deadline_limits_source_resolution() {
    let calls = counter();
    let builder = SnapshotBuilder::builder([slow_source("rest", ms(200), Arc::clone(&calls))
        .with_timeout(Duration::from_secs(1))
        .into()])
    .build()
    .expect("valid builder");

    let result = at_the_deadline(strict_by_deadline(&builder, &[price()])).await;

    let error = result.expect_err("a strict build past its deadline fails");
    let build = error.as_build().expect("a build error");
    assert!(build.is_deadline_exceeded(), "{error}");
    let resource = resource_error(&error, &price());
    assert_eq!(resource.error_type(), "ResourceResolutionError");
    let failures = failure_details(resource);
    assert_eq!(
        failures[0].1, "SnapshotDeadlineExceededError",
        "{failures:?}"
    );
    assert!(resource.is_deadline_exceeded());
    assert_eq!(counted(&calls), 1);
    assert_eq!(builder.timeout_counts(), (0, 0, 1));
}

// B11.1: a source that never answers cannot hold a build past its deadline.
#[tokio::test(start_paused = true)]
async fn build_returns_at_the_deadline_even_if_the_source_never_answers() {
    let source = FnSource::new("stuck", |_k: ResourceKey, _ctx: FetchContext| async {
        std::future::pending::<Result<SourceOutput, SourceError>>().await
    });
    let builder = SnapshotBuilder::builder([source.into()])
        .build()
        .expect("valid builder");

    let result = at_the_deadline(lenient_by_deadline(&builder, &[price()])).await;
    let snapshot = result.expect("a non-strict build returns a snapshot");
    let failures = failure_details(snapshot_error(&snapshot, &price()));
    assert_eq!(
        failures[0].1, "SnapshotDeadlineExceededError",
        "{failures:?}"
    );
}

// B11.4, B11.6
#[tokio::test(start_paused = true)]
async fn source_timeout_reports_the_effective_budget() {
    let calls = counter();
    let builder = SnapshotBuilder::builder([slow_source("slow", ms(50), Arc::clone(&calls))
        .with_timeout(ms(10))
        .into()])
    .resilience(single_attempt())
    .build()
    .expect("valid builder");

    let start = Instant::now();
    let error = builder
        .build([price()])
        .await
        .expect_err("the source times out");
    assert_elapsed(start.elapsed(), ms(10));
    let failures = failure_details(resource_error(&error, &price()));
    assert_eq!(failures.len(), 1, "{failures:?}");
    let (source, error_type, message, attempts) = &failures[0];
    assert_eq!(source, "slow");
    assert_eq!(error_type, "SourceTimeoutError");
    assert!(message.contains("timed out after 0.010s"), "{message}");
    assert!(
        message.contains(&format!("while resolving {}", price())),
        "{message}"
    );
    assert_eq!(*attempts, 1);
    assert_eq!(
        builder.timeout_counts(),
        (0, 1, 0),
        "one source timeout, no deadline"
    );
}

// B11.4: the budget is min(remaining deadline, source timeout); the timeout is
// reported as such when it is the smaller.
#[tokio::test(start_paused = true)]
async fn source_timeout_shorter_than_the_deadline_is_a_source_timeout() {
    let builder = SnapshotBuilder::builder([slow_source("slow", ms(50), counter())
        .with_timeout(ms(10))
        .into()])
    .resilience(single_attempt())
    .build()
    .expect("valid builder");

    let snapshot = lenient_within(&builder, Duration::from_secs(1)).await;
    let failures = failure_details(snapshot_error(&snapshot, &price()));
    assert_eq!(failures[0].1, "SourceTimeoutError", "{failures:?}");
    assert!(
        failures[0].2.contains("timed out after 0.010s"),
        "{failures:?}"
    );
    let (_, source_timeouts, deadlines) = builder.timeout_counts();
    assert_eq!((source_timeouts, deadlines), (1, 0));
}

// B11.2
#[tokio::test(start_paused = true)]
async fn deadline_during_cache_read_is_reported_per_resource() {
    let calls = counter();
    let cache = Arc::new(
        ScriptedCache::new(MemoryCache::new()).reads_after(|| tokio::time::sleep(ms(200))),
    );
    let builder =
        SnapshotBuilder::builder([slow_source("rest", Duration::ZERO, Arc::clone(&calls)).into()])
            .cache(cache)
            .build()
            .expect("valid builder");
    let keys = [price(), key("market:price:ETH")];

    let error = at_the_deadline(strict_by_deadline(&builder, &keys))
        .await
        .expect_err("the cache read outlives the deadline");

    let build = error.as_build().expect("a build error");
    assert!(
        build.snapshot().is_none(),
        "no partial snapshot after the deadline"
    );
    assert_eq!(build.errors().len(), keys.len());
    for k in &keys {
        let failures = failure_details(resource_error(&error, k));
        assert_eq!(failures.len(), 1, "{k}: {failures:?}");
        assert_eq!(failures[0].0, "snapshot", "{k}: {failures:?}");
        assert_eq!(
            failures[0].1, "SnapshotDeadlineExceededError",
            "{k}: {failures:?}"
        );
    }
    assert_eq!(counted(&calls), 0, "no source is called after the deadline");
}

// B11.10: cache writes are covered by the same budget.
#[tokio::test(start_paused = true)]
async fn slow_cache_write_cannot_hold_the_build_past_its_deadline() {
    let cache = Arc::new(
        ScriptedCache::new(MemoryCache::new()).writes_after(|| tokio::time::sleep(ms(200))),
    );
    let builder = SnapshotBuilder::builder([slow_source("rest", ms(5), counter()).into()])
        .cache(cache)
        .build()
        .expect("valid builder");

    let start = Instant::now();
    let result = strict_by_deadline(&builder, &[price()]).await;
    assert!(
        start.elapsed() <= DEADLINE + ms(1),
        "elapsed {:?}",
        start.elapsed()
    );
    if let Err(error) = result {
        assert!(
            error.as_build().is_some_and(|b| b.is_deadline_exceeded()),
            "only a deadline error may fail it: {error}"
        );
    }
}

// B11.5
#[tokio::test(start_paused = true)]
async fn transport_timeout_is_not_misclassified_as_deadline() {
    let calls = counter();
    let source = {
        let calls = Arc::clone(&calls);
        FnSource::new("transport", move |_k: ResourceKey, _ctx: FetchContext| {
            let calls = Arc::clone(&calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                Err::<SourceOutput, _>(SourceError::custom(
                    "TimeoutError",
                    "transport timeout",
                    true,
                ))
            }
        })
    };
    let builder = SnapshotBuilder::builder([source.into()])
        .build()
        .expect("valid builder");

    let snapshot = lenient_within(&builder, Duration::from_secs(1)).await;
    let error = snapshot_error(&snapshot, &price());
    let failures = failure_details(error);
    assert_eq!(failures[0].0, "transport");
    assert_eq!(failures[0].1, "TimeoutError", "{failures:?}");
    assert!(failures[0].2.contains("transport timeout"), "{failures:?}");
    assert!(!error.is_deadline_exceeded());
    assert!(
        failures
            .iter()
            .all(|f| f.1 != "SnapshotDeadlineExceededError"),
        "{failures:?}"
    );
    assert!(counted(&calls) >= 1);
    assert_eq!(builder.timeout_counts(), (0, 0, 0));
}

fn capacity_builder(
    gate: &Gate,
    calls: &Arc<std::sync::Mutex<Vec<ResourceKey>>>,
) -> SnapshotBuilder {
    let one = NonZeroUsize::new(1).expect("non-zero");
    SnapshotBuilder::builder([gated_source(gate.clone(), price(), Arc::clone(calls))
        .with_max_concurrency(one)
        .with_queue_timeout(Duration::from_secs(1))
        .into()])
    .build()
    .expect("valid builder")
}

// B11.3, B11.10: the deadline bounds capacity waits and does not trip the
// circuit; the held call is unaffected.
#[tokio::test(start_paused = true)]
async fn deadline_bounds_capacity_waits() {
    let gate = Gate::new();
    let calls: Arc<std::sync::Mutex<Vec<ResourceKey>>> = Arc::default();
    let builder = capacity_builder(&gate, &calls);
    let other = key("market:price:ETH");

    let holder = {
        let builder = builder.clone();
        tokio::spawn(async move { builder.build([price()]).await })
    };
    gate.wait_for_arrivals(1).await;

    let snapshot = at_the_deadline(lenient_by_deadline(&builder, std::slice::from_ref(&other)))
        .await
        .expect("non-strict build");
    let failures = failure_details(snapshot_error(&snapshot, &other));
    assert!(!failures.is_empty());
    assert_eq!(
        failures[0].1, "SnapshotDeadlineExceededError",
        "{failures:?}"
    );
    assert!(
        !calls.lock().expect("lock").contains(&other),
        "the waiting key was never called"
    );
    for (identity, state) in builder.circuits() {
        assert_eq!(
            state.failures, 0,
            "circuit {identity} charged by a deadline: {state:?}"
        );
    }
    assert_eq!(
        builder.capacity().global.waiting,
        0,
        "the waiter left the queue"
    );

    assert!(!holder.is_finished());
    gate.open();
    let held = holder
        .await
        .expect("holder task")
        .expect("the held call succeeds");
    assert_eq!(held.value::<u64>(&price()).ok(), Some(&7));
}

// B11.3: the capacity-wait deadline is counted in the deadline counter.
#[tokio::test(start_paused = true)]
async fn capacity_wait_deadline_is_counted() {
    let gate = Gate::new();
    let calls: Arc<std::sync::Mutex<Vec<ResourceKey>>> = Arc::default();
    let builder = capacity_builder(&gate, &calls);

    let holder = {
        let builder = builder.clone();
        tokio::spawn(async move { builder.build([price()]).await })
    };
    gate.wait_for_arrivals(1).await;
    let _ = lenient_by_deadline(&builder, &[key("market:price:ETH")])
        .await
        .expect("non-strict build");
    gate.open();
    holder.await.expect("holder task").expect("held call");

    assert_eq!(
        builder.timeout_counts(),
        (0, 0, 1),
        "(queue, source, deadline)"
    );
}

// B11.10: waiting for another build's shared fetch is bounded too.
#[tokio::test(start_paused = true)]
async fn deadline_bounds_waiting_for_a_shared_fetch() {
    let gate = Gate::new();
    let calls: Arc<std::sync::Mutex<Vec<ResourceKey>>> = Arc::default();
    let builder =
        SnapshotBuilder::builder([gated_source(gate.clone(), price(), Arc::clone(&calls)).into()])
            .build()
            .expect("valid builder");

    let owner = {
        let builder = builder.clone();
        tokio::spawn(async move { builder.build([price()]).await })
    };
    gate.wait_for_arrivals(1).await;

    let error = at_the_deadline(strict_by_deadline(&builder, &[price()]))
        .await
        .expect_err("the shared fetch outlives the deadline");
    let failures = failure_details(resource_error(&error, &price()));
    assert_eq!(
        failures[0].1, "SnapshotDeadlineExceededError",
        "{failures:?}"
    );

    gate.open();
    let owned = owner
        .await
        .expect("owner task")
        .expect("the owner's build succeeds");
    assert_eq!(owned.value::<u64>(&price()).ok(), Some(&7));
    assert_eq!(calls.lock().expect("lock").len(), 1, "one shared fetch");
}

// B11.10: one absolute budget across consecutive fallback attempts.
#[tokio::test(start_paused = true)]
async fn one_budget_covers_consecutive_fallback_sources() {
    let primary_calls = counter();
    let fallback_calls = counter();
    let primary = {
        let calls = Arc::clone(&primary_calls);
        FnSource::new("primary", move |_k: ResourceKey, _ctx: FetchContext| {
            let calls = Arc::clone(&calls);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(ms(30)).await;
                Err::<SourceOutput, _>(SourceError::unavailable("primary down"))
            }
        })
        .with_priority(2)
    };
    let fallback = slow_source("fallback", ms(40), Arc::clone(&fallback_calls)).with_priority(1);
    let builder = SnapshotBuilder::builder([primary.into(), fallback.into()])
        .resilience(single_attempt())
        .build()
        .expect("valid builder");

    let start = Instant::now();
    let error = builder
        .build_with([price()], BuildOptions::new().deadline(ms(50)))
        .await
        .expect_err("30 ms + 40 ms exceeds a 50 ms budget");
    assert_elapsed(start.elapsed(), ms(50));
    let failures = failure_details(resource_error(&error, &price()));
    assert!(!failures.is_empty());
    assert!(
        failures
            .iter()
            .all(|f| f.1 == "SnapshotDeadlineExceededError"),
        "{failures:?}"
    );
    assert_eq!(counted(&primary_calls), 1);
    assert_eq!(
        counted(&fallback_calls),
        1,
        "the fallback got the remaining 20 ms"
    );
}

/// A source that moves tokio's clock by `advance` and then returns `result`
/// without any timer firing (the Rust analogue of the original's injected
/// monotonic clock).
fn clock_moving_source(
    name: &str,
    advance: Duration,
    fail: bool,
    calls: Arc<AtomicUsize>,
) -> FnSource {
    FnSource::new(name, move |_k: ResourceKey, _ctx: FetchContext| {
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::advance(advance).await;
            if fail {
                Err(SourceError::unavailable("down"))
            } else {
                Ok(SourceOutput::new(1_u64))
            }
        }
    })
}

// B11.7, B11.8 (build form): the deadline is re-checked after a source returns.
#[tokio::test(start_paused = true)]
async fn deadline_is_rechecked_after_the_source_returns() {
    let first_calls = counter();
    let second_calls = counter();
    let builder = SnapshotBuilder::builder([
        clock_moving_source("first", ms(30), true, Arc::clone(&first_calls))
            .with_priority(2)
            .into(),
        clock_moving_source("second", ms(40), false, Arc::clone(&second_calls))
            .with_priority(1)
            .into(),
    ])
    .resilience(single_attempt())
    .build()
    .expect("valid builder");

    let snapshot = lenient_within(&builder, ms(50)).await;
    let error = snapshot_error(&snapshot, &price());
    let failures = failure_details(error);
    assert!(
        failures
            .iter()
            .all(|f| f.1 == "SnapshotDeadlineExceededError"),
        "{failures:?}"
    );
    assert!(snapshot.get(&price()).is_none());

    // Let the detached fetch finish: the second source returned a value
    // after the deadline without any timer firing; that value is discarded,
    // so it never reaches the cache.
    builder.close().await;
    assert_eq!(counted(&first_calls), 1);
    assert_eq!(counted(&second_calls), 1);
    let cached = builder
        .cache()
        .get(
            &price(),
            FreshnessPolicy::fresh_for(FreshnessPolicy::UNBOUNDED),
            Timestamp::from_secs(0.0),
        )
        .await
        .expect("cache read");
    assert!(
        cached.is_none(),
        "a value returned after the deadline must not be used: {cached:?}"
    );
}

// B11.9: once the deadline has passed, no further phase starts.
#[tokio::test(start_paused = true)]
async fn no_source_is_called_once_the_deadline_has_passed() {
    let first_calls = counter();
    let second_calls = counter();
    let builder = SnapshotBuilder::builder([
        clock_moving_source("first", ms(30), true, Arc::clone(&first_calls))
            .with_priority(2)
            .into(),
        slow_source("second", Duration::ZERO, Arc::clone(&second_calls))
            .with_priority(1)
            .into(),
    ])
    .resilience(single_attempt())
    .build()
    .expect("valid builder");

    let error = builder
        .build_with([price()], BuildOptions::new().deadline(DEADLINE))
        .await
        .expect_err("the deadline passed during the first call");
    let resource = resource_error(&error, &price());
    let failures = failure_details(resource);
    // Let the detached fetch run to its end before counting calls.
    builder.close().await;
    assert_eq!(counted(&first_calls), 1);
    assert_eq!(
        counted(&second_calls),
        0,
        "the second source is never started"
    );
    assert!(!failures.is_empty());
    assert!(
        failures
            .iter()
            .all(|f| f.1 == "SnapshotDeadlineExceededError"),
        "{failures:?}"
    );
    assert!(error.as_build().is_some_and(|b| b.is_deadline_exceeded()));
}

// Zero deadlines are rejected.
#[tokio::test(start_paused = true)]
async fn zero_deadline_is_rejected() {
    let calls = counter();
    let builder =
        SnapshotBuilder::builder([slow_source("rest", Duration::ZERO, Arc::clone(&calls)).into()])
            .build()
            .expect("valid builder");

    let error = builder
        .build_with([price()], BuildOptions::new().deadline(Duration::ZERO))
        .await
        .expect_err("a zero deadline is invalid");
    assert!(error.is_config(), "{error}");
    assert!(error.as_build().is_none());
    assert_eq!(counted(&calls), 0);

    let ok = builder
        .build_with(
            [price()],
            BuildOptions::new().deadline(Duration::from_nanos(1_000_000)),
        )
        .await;
    assert!(ok.is_ok(), "a positive deadline is accepted");
}
