//! Catalogue area 9: capacity as wired into the engine — the builder-wide
//! global limit shared by concurrent builds, per-source limits (declared with
//! `with_max_concurrency`, overridden by `source_concurrency`), acquisition
//! order (source slot before global slot), a batch call costing one slot,
//! derived sources holding a slot only while deriving, no slot held during
//! retry back-off, bounded dispatch (`max_pending_tasks` workers, never one
//! queued task per key), the capacity snapshot, batched cache operations, and
//! queue timeouts / deadlines while waiting for capacity (B9.1–B9.21, with
//! B10.27, B11.3, B11.4 and B11.6 where they concern capacity waits).

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use coalestra_core::value::ValueParts;
use coalestra_core::{
    BuildOptions, CacheError, CacheHit, CacheRead, CacheStats, CacheWrite, CircuitBreakerPolicy,
    CircuitScope, Clock, EventSink, FetchContext, FnBatchSource, FnDerivedSource, FnSource,
    Freshness, ManualClock, MetricsSink, Payload, ResiliencePolicy, ResourceKey, RetryPolicy,
    Snapshot, SnapshotCache, SnapshotValue, SourceError, SourceOptions, SourceOutput, Timestamp,
    Version, WriteOutcome, WriteResult,
};
use coalestra_orchestration::SnapshotBuilder;
use coalestra_resilience::CircuitStatus;
/// Records metrics and events (the support crate's recording sink).
use coalestra_test::RecordingSink as Recorder;
use coalestra_test::{key, Gate};
use tokio::task::JoinHandle;

mod support;
use support::{
    drain, failure_messages, failures, join, one_failure, settle, single_attempt, spawn_lenient,
    spawn_strict as spawn_build, text, wall_clock_config as config,
};

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("non-zero limit")
}

/// `n` keys `<prefix>000`, `<prefix>001`, ... in order.
fn numbered_keys(prefix: &str, n: usize) -> Vec<ResourceKey> {
    (0..n).map(|i| key(&format!("{prefix}{i:03}"))).collect()
}

/// Counts calls, concurrently active calls and their peak.
#[derive(Debug, Default)]
struct Tracker {
    calls: AtomicUsize,
    active: AtomicUsize,
    peak: AtomicUsize,
    keys: Mutex<Vec<ResourceKey>>,
}

impl Tracker {
    fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    fn enter(self: &Arc<Self>, key: Option<&ResourceKey>) -> Active {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.active.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        if let Some(key) = key {
            self.keys.lock().expect("tracker lock").push(key.clone());
        }
        Active(Arc::clone(self))
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }
    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// One active call; leaving drops the active count.
struct Active(Arc<Tracker>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A single-key source that enters every tracker, waits at the gate and
/// answers `"<name>:<subject>"`.
fn gated_source(name: &str, gate: &Gate, trackers: &[&Arc<Tracker>]) -> FnSource {
    let gate = gate.clone();
    let trackers: Vec<Arc<Tracker>> = trackers.iter().map(|t| Arc::clone(t)).collect();
    let label = name.to_owned();
    FnSource::new(name, move |key: ResourceKey, _ctx: FetchContext| {
        let gate = gate.clone();
        let trackers = trackers.clone();
        let label = label.clone();
        async move {
            let _active: Vec<Active> = trackers.iter().map(|t| t.enter(Some(&key))).collect();
            gate.pass().await;
            Ok(SourceOutput::new(format!("{label}:{}", key.subject())))
        }
    })
}

/// A single-key source that sleeps `latency` (paused clock) per call.
fn sleeping_source(name: &str, latency: Duration, tracker: &Arc<Tracker>) -> FnSource {
    let tracker = Arc::clone(tracker);
    let label = name.to_owned();
    FnSource::new(name, move |key: ResourceKey, _ctx: FetchContext| {
        let tracker = Arc::clone(&tracker);
        let label = label.clone();
        async move {
            let _active = tracker.enter(Some(&key));
            tokio::time::sleep(latency).await;
            Ok(SourceOutput::new(format!("{label}:{}", key.subject())))
        }
    })
}

/// Capacity settings of [`gated_rest`].
#[derive(Clone, Copy)]
struct Limits {
    global: usize,
    workers: Option<usize>,
    rest: Option<usize>,
}

impl Limits {
    /// `global` slots; dispatch workers and the source limit left default.
    fn global(global: usize) -> Self {
        Self {
            global,
            workers: None,
            rest: None,
        }
    }
    fn workers(self, workers: usize) -> Self {
        Self {
            workers: Some(workers),
            ..self
        }
    }
    fn rest(self, rest: usize) -> Self {
        Self {
            rest: Some(rest),
            ..self
        }
    }
}

/// A builder over one gated "rest" source with `limits`, with the closed
/// gate its calls wait at and the tracker they enter.
fn gated_rest(limits: Limits) -> (SnapshotBuilder, Gate, Arc<Tracker>) {
    let gate = Gate::new();
    let tracker = Tracker::new();
    let mut config = config(vec![gated_source("rest", &gate, &[&tracker]).into()])
        .max_concurrency(limits.global);
    if let Some(workers) = limits.workers {
        config = config.max_pending_tasks(workers);
    }
    if let Some(rest) = limits.rest {
        config = config.source_concurrency("rest", rest);
    }
    (config.build().expect("valid builder"), gate, tracker)
}

/// A builder over `source` alone with one attempt per call.
fn single_attempt_builder(source: FnSource) -> SnapshotBuilder {
    config(vec![source.into()])
        .resilience(single_attempt())
        .build()
        .expect("valid builder")
}

/// Builds `keys` non-strictly under a snapshot `deadline`.
async fn build_within(
    builder: &SnapshotBuilder,
    keys: Vec<ResourceKey>,
    deadline: Duration,
) -> Snapshot {
    join(spawn_lenient(
        builder,
        keys,
        BuildOptions::new().deadline(deadline),
    ))
    .await
}

async fn assert_idle(builder: &SnapshotBuilder) {
    drain(builder).await;
    let capacity = builder.capacity();
    assert_eq!(capacity.global.in_use, 0, "global in use: {capacity:?}");
    assert_eq!(capacity.global.waiting, 0, "global waiting: {capacity:?}");
    for (name, limit) in &capacity.sources {
        assert_eq!(limit.in_use, 0, "{name} in use: {capacity:?}");
        assert_eq!(limit.waiting, 0, "{name} waiting: {capacity:?}");
    }
    assert_eq!(builder.in_flight(), 0, "nothing in flight");
}

// B9.1
#[tokio::test(start_paused = true)]
async fn independent_resources_are_fetched_concurrently_up_to_max_concurrency() {
    let tracker = Tracker::new();
    let source = sleeping_source("rest", Duration::from_millis(30), &tracker);
    let builder = config(vec![source.into()])
        .max_concurrency(3)
        .build()
        .expect("valid builder");
    let keys: Vec<ResourceKey> = ["A", "B", "C"]
        .iter()
        .map(|s| key(&format!("market:price:{s}")))
        .collect();

    let snapshot = join(spawn_build(&builder, keys.clone())).await;

    assert_eq!(tracker.peak(), 3, "all three keys are fetched at once");
    assert_eq!(tracker.calls(), 3);
    for k in &keys {
        assert_eq!(text(&snapshot, k), format!("rest:{}", k.subject()));
    }
    assert_idle(&builder).await;
}

// B9.2: the global limit is shared by every build of the builder.
#[tokio::test(start_paused = true)]
async fn global_capacity_is_shared_across_concurrent_builds() {
    let (builder, gate, tracker) = gated_rest(Limits::global(2));
    let handles: Vec<JoinHandle<Snapshot>> = (0..3)
        .map(|b| {
            let keys = (0..4)
                .map(|i| key(&format!("market:price:B{b}K{i}")))
                .collect();
            spawn_build(&builder, keys)
        })
        .collect();
    settle().await;

    assert_eq!(tracker.active(), 2, "only max_concurrency calls run");
    let capacity = builder.capacity();
    assert_eq!(capacity.global.limit, 2);
    assert_eq!(capacity.global.in_use, 2);
    // Each build dispatches with max_pending_tasks (= max_concurrency = 2)
    // workers: 6 workers, 2 running, 4 queued for a global slot.
    assert_eq!(capacity.global.waiting, 4, "{capacity:?}");

    gate.open();
    for handle in handles {
        let snapshot = join(handle).await;
        assert_eq!(snapshot.len(), 4);
    }
    assert_eq!(
        tracker.peak(),
        2,
        "peak concurrency never exceeds the global limit"
    );
    assert_eq!(tracker.calls(), 12);
    assert_idle(&builder).await;
}

// B9.3 and B9.17: a declared per-source limit, an explicit builder override
// winning over the declaration, and the capacity snapshot listing both.
#[tokio::test(start_paused = true)]
async fn source_limits_are_independent_and_the_builder_override_wins() {
    let gate = Gate::new();
    let a = Tracker::new();
    let b = Tracker::new();
    let total = Tracker::new();
    let source_a = gated_source("source-a", &gate, &[&a, &total])
        .with_max_concurrency(nz(3))
        .with_supports(|k| k.namespace() == "a");
    let source_b = gated_source("source-b", &gate, &[&b, &total])
        .with_max_concurrency(nz(2))
        .with_supports(|k| k.namespace() == "b");
    let unlimited =
        gated_source("unlimited", &gate, &[&total]).with_supports(|k| k.namespace() == "u");
    let builder = config(vec![source_a.into(), source_b.into(), unlimited.into()])
        .max_concurrency(3)
        .source_concurrency("source-a", 1)
        .build()
        .expect("valid builder");

    let capacity = builder.capacity();
    assert_eq!(capacity.global.limit, 3);
    assert_eq!(
        capacity.sources.get("source-a").map(|l| l.limit),
        Some(1),
        "the explicit override wins over the declared 3: {capacity:?}"
    );
    assert_eq!(capacity.sources.get("source-b").map(|l| l.limit), Some(2));
    assert!(
        !capacity.sources.contains_key("unlimited"),
        "only limited sources are listed: {capacity:?}"
    );

    let keys_a: Vec<ResourceKey> = (0..4).map(|i| key(&format!("a:price:K{i}"))).collect();
    let keys_b: Vec<ResourceKey> = (0..4).map(|i| key(&format!("b:price:K{i}"))).collect();
    let build_a = spawn_build(&builder, keys_a);
    let build_b = spawn_build(&builder, keys_b);
    settle().await;

    assert_eq!(a.active(), 1, "source-a is limited to 1");
    assert_eq!(b.active(), 2, "source-b is limited to 2");
    let capacity = builder.capacity();
    assert_eq!(capacity.global.in_use, 3, "{capacity:?}");
    assert_eq!(capacity.sources["source-a"].in_use, 1);
    assert_eq!(capacity.sources["source-b"].in_use, 2);
    // 3 dispatch workers per build: a has 2 queued behind its own limit, b 1.
    assert_eq!(capacity.sources["source-a"].waiting, 2, "{capacity:?}");
    assert_eq!(capacity.sources["source-b"].waiting, 1, "{capacity:?}");
    assert_eq!(capacity.global.waiting, 0, "{capacity:?}");

    gate.open();
    assert_eq!(join(build_a).await.len(), 4);
    assert_eq!(join(build_b).await.len(), 4);
    assert_eq!(a.peak(), 1);
    assert_eq!(b.peak(), 2);
    assert!(
        (2..=3).contains(&total.peak()),
        "total peak {} within 2..=3",
        total.peak()
    );
    assert_idle(&builder).await;
}

// B9.5: the source slot is taken before the global slot, so callers queued
// behind their own source's limit never hold global slots.
#[tokio::test(start_paused = true)]
async fn callers_queued_behind_a_source_limit_hold_no_global_slot() {
    let gate = Gate::new();
    let slow_calls = Tracker::new();
    let fast_calls = Tracker::new();
    let slow = gated_source("slow", &gate, &[&slow_calls])
        .with_max_concurrency(nz(1))
        .with_supports(|k| k.namespace() == "slow");
    let fast = sleeping_source("fast", Duration::from_millis(5), &fast_calls)
        .with_supports(|k| k.namespace() == "fast");
    let builder = config(vec![slow.into(), fast.into()])
        .max_concurrency(2)
        .build()
        .expect("valid builder");

    let slow_builds: Vec<JoinHandle<Snapshot>> = ["A", "B", "C"]
        .iter()
        .map(|s| spawn_build(&builder, vec![key(&format!("slow:price:{s}"))]))
        .collect();
    settle().await;

    let capacity = builder.capacity();
    assert_eq!(slow_calls.active(), 1);
    assert_eq!(capacity.sources["slow"].in_use, 1, "{capacity:?}");
    assert_eq!(capacity.sources["slow"].waiting, 2, "{capacity:?}");
    assert_eq!(
        capacity.global.in_use, 1,
        "queued callers hold no global slot: {capacity:?}"
    );
    assert_eq!(capacity.global.waiting, 0, "{capacity:?}");

    // Another source still runs while the slow source's callers wait.
    let fast_key = key("fast:price:X");
    let snapshot = tokio::time::timeout(Duration::from_secs(5), builder.build([fast_key.clone()]))
        .await
        .expect("the fast source is not starved by callers queued on the slow source")
        .expect("fast build succeeds");
    assert_eq!(text(&snapshot, &fast_key), "fast:X");
    assert_eq!(slow_calls.calls(), 1, "the slow source is still gated");
    assert_eq!(builder.capacity().sources["slow"].waiting, 2);

    gate.open();
    for handle in slow_builds {
        assert_eq!(join(handle).await.len(), 1);
    }
    assert_eq!(slow_calls.peak(), 1);
    assert_idle(&builder).await;
}

// B9.4: a caller holding its source slot while queued for a global slot
// releases the source slot when its wait ends (here by queue timeout).
#[tokio::test(start_paused = true)]
async fn a_timed_out_partial_acquisition_releases_the_source_slot() {
    let gate = Gate::new();
    let other_calls = Tracker::new();
    let rest_calls = Tracker::new();
    let other =
        gated_source("other", &gate, &[&other_calls]).with_supports(|k| k.namespace() == "other");
    let rest = gated_source("rest", &gate, &[&rest_calls])
        .with_max_concurrency(nz(1))
        .with_queue_timeout(Duration::from_millis(10))
        .with_supports(|k| k.namespace() == "rest");
    let builder = config(vec![other.into(), rest.into()])
        .max_concurrency(1)
        .build()
        .expect("valid builder");

    let holder = spawn_build(&builder, vec![key("other:price:X")]);
    settle().await;
    assert_eq!(builder.capacity().global.in_use, 1);

    let rest_key = key("rest:price:Y");
    let waiter = spawn_lenient(&builder, vec![rest_key.clone()], BuildOptions::new());
    settle().await;
    let capacity = builder.capacity();
    assert_eq!(
        capacity.sources["rest"].in_use, 1,
        "rest took its own slot first: {capacity:?}"
    );
    assert_eq!(capacity.global.waiting, 1, "{capacity:?}");

    let snapshot = join(waiter).await;
    assert_eq!(
        failures(&snapshot, &rest_key),
        one_failure("rest", "SourceQueueTimeoutError", 1)
    );
    assert_eq!(rest_calls.calls(), 0);
    let capacity = builder.capacity();
    assert_eq!(capacity.sources["rest"].in_use, 0, "{capacity:?}");
    assert_eq!(capacity.sources["rest"].waiting, 0, "{capacity:?}");
    assert_eq!(capacity.global.in_use, 1, "{capacity:?}");
    assert_eq!(capacity.global.waiting, 0, "{capacity:?}");

    gate.open();
    join(holder).await;
    assert_idle(&builder).await;
}

// B9.10: a batch call holds one slot whatever its size.
#[tokio::test(start_paused = true)]
async fn a_batch_call_of_50_keys_holds_one_slot() {
    let gate = Gate::new();
    let calls: Arc<Mutex<Vec<usize>>> = Arc::default();
    // The batch call itself records the builder's global use while it runs.
    let observed: Arc<OnceLock<SnapshotBuilder>> = Arc::default();
    let peak_in_use = Arc::new(AtomicUsize::new(0));
    let batch = {
        let gate = gate.clone();
        let calls = Arc::clone(&calls);
        let observed = Arc::clone(&observed);
        let peak_in_use = Arc::clone(&peak_in_use);
        FnBatchSource::new(
            "batch",
            move |keys: Vec<ResourceKey>, _ctx: FetchContext| {
                let gate = gate.clone();
                let calls = Arc::clone(&calls);
                let observed = Arc::clone(&observed);
                let peak_in_use = Arc::clone(&peak_in_use);
                async move {
                    calls.lock().expect("calls lock").push(keys.len());
                    if let Some(builder) = observed.get() {
                        peak_in_use.fetch_max(builder.capacity().global.in_use, Ordering::SeqCst);
                    }
                    gate.pass().await;
                    Ok(keys
                        .into_iter()
                        .map(|k| {
                            let v = format!("batch:{}", k.subject());
                            (k, SourceOutput::new(v))
                        })
                        .collect())
                }
            },
        )
    };
    let builder = config(vec![batch.into()])
        .max_concurrency(8)
        .build()
        .expect("valid builder");
    observed
        .set(builder.clone())
        .expect("the builder is registered once");
    let keys = numbered_keys("market:price:K", 50);

    let handle = spawn_build(&builder, keys.clone());
    settle().await;
    let capacity = builder.capacity();
    assert_eq!(
        *calls.lock().expect("calls lock"),
        vec![50],
        "one call for 50 keys"
    );
    assert_eq!(
        capacity.global.in_use, 1,
        "one slot for the whole batch: {capacity:?}"
    );
    assert_eq!(capacity.global.waiting, 0);

    gate.open();
    let snapshot = join(handle).await;
    assert_eq!(snapshot.len(), 50);
    for k in &keys {
        assert_eq!(text(&snapshot, k), format!("batch:{}", k.subject()));
    }
    assert_eq!(
        peak_in_use.load(Ordering::SeqCst),
        1,
        "peak in use during the call"
    );
    assert_eq!(calls.lock().expect("calls lock").len(), 1);
    assert_idle(&builder).await;
}

// B9.10 with chunks: each chunk call takes one slot, and a source limit
// bounds the chunk calls in flight.
#[tokio::test(start_paused = true)]
async fn batch_chunks_take_one_slot_each_within_the_source_limit() {
    let gate = Gate::new();
    let tracker = Tracker::new();
    let sizes: Arc<Mutex<Vec<usize>>> = Arc::default();
    let batch = {
        let gate = gate.clone();
        let tracker = Arc::clone(&tracker);
        let sizes = Arc::clone(&sizes);
        FnBatchSource::new(
            "batch",
            move |keys: Vec<ResourceKey>, _ctx: FetchContext| {
                let gate = gate.clone();
                let tracker = Arc::clone(&tracker);
                let sizes = Arc::clone(&sizes);
                async move {
                    let _active = tracker.enter(None);
                    sizes.lock().expect("sizes lock").push(keys.len());
                    gate.pass().await;
                    Ok(keys
                        .into_iter()
                        .map(|k| (k, SourceOutput::new(1_u32)))
                        .collect())
                }
            },
        )
        .with_max_batch_size(nz(10))
        .with_max_concurrency(nz(2))
    };
    let builder = config(vec![batch.into()])
        .max_concurrency(8)
        .build()
        .expect("valid builder");
    let keys = numbered_keys("market:price:K", 50);

    let handle = spawn_build(&builder, keys);
    settle().await;
    let capacity = builder.capacity();
    assert_eq!(
        tracker.active(),
        2,
        "two chunk calls within the source limit"
    );
    assert_eq!(capacity.global.in_use, 2, "{capacity:?}");
    assert_eq!(capacity.sources["batch"].in_use, 2, "{capacity:?}");
    assert_eq!(
        capacity.sources["batch"].waiting, 0,
        "chunk workers are bounded by the source limit: {capacity:?}"
    );

    gate.open();
    assert_eq!(join(handle).await.len(), 50);
    assert_eq!(tracker.calls(), 5);
    assert_eq!(tracker.peak(), 2);
    assert_eq!(*sizes.lock().expect("sizes lock"), vec![10; 5]);
    assert_idle(&builder).await;
}

// Issue 4: a derived source holds a slot only while its derive function runs;
// its dependencies take their own slots.
#[tokio::test(start_paused = true)]
async fn a_derived_source_holds_no_slot_while_its_dependencies_are_fetched() {
    let raw_gate = Gate::new();
    let derive_gate = Gate::new();
    let raw_calls = Tracker::new();
    let derive_calls = Tracker::new();
    let raw = {
        let gate = raw_gate.clone();
        let calls = Arc::clone(&raw_calls);
        FnSource::new("raw", move |key: ResourceKey, _ctx: FetchContext| {
            let gate = gate.clone();
            let calls = Arc::clone(&calls);
            async move {
                let _active = calls.enter(Some(&key));
                gate.pass().await;
                Ok(SourceOutput::new(21_u64))
            }
        })
        .with_supports(|k| k.name() == "raw")
    };
    let derived = {
        let gate = derive_gate.clone();
        let calls = Arc::clone(&derive_calls);
        FnDerivedSource::new(
            "double",
            |k: &ResourceKey| {
                vec![ResourceKey::new(k.namespace(), "raw", k.subject()).expect("valid key")]
            },
            move |k: ResourceKey, deps: Snapshot, _ctx: FetchContext| {
                let gate = gate.clone();
                let calls = Arc::clone(&calls);
                async move {
                    let _active = calls.enter(Some(&k));
                    gate.pass().await;
                    let dep = ResourceKey::new(k.namespace(), "raw", k.subject())
                        .map_err(SourceError::protocol)?;
                    let v = *deps.value::<u64>(&dep).map_err(SourceError::protocol)?;
                    Ok(SourceOutput::new(v * 2))
                }
            },
        )
        .with_supports(|k| k.name() == "double")
        .with_max_concurrency(nz(1))
    };
    // A global limit of 1: a derived source holding a slot while waiting for
    // its dependency would deadlock.
    let builder = config(vec![raw.into(), derived.into()])
        .max_concurrency(1)
        .build()
        .expect("valid builder");
    let double = key("market:double:BTC");

    let handle = spawn_build(&builder, vec![double.clone()]);
    settle().await;
    let capacity = builder.capacity();
    assert_eq!(raw_calls.active(), 1, "the dependency is being fetched");
    assert_eq!(derive_calls.calls(), 0);
    assert_eq!(capacity.global.in_use, 1, "{capacity:?}");
    assert_eq!(
        capacity.sources["double"].in_use, 0,
        "no derived slot while the dependency is fetched: {capacity:?}"
    );

    raw_gate.open();
    settle().await;
    let capacity = builder.capacity();
    assert_eq!(derive_calls.active(), 1, "the derive function is running");
    assert_eq!(raw_calls.active(), 0);
    assert_eq!(capacity.sources["double"].in_use, 1, "{capacity:?}");
    assert_eq!(capacity.global.in_use, 1, "{capacity:?}");

    derive_gate.open();
    let snapshot = join(handle).await;
    assert_eq!(*snapshot.value::<u64>(&double).expect("derived value"), 42);
    assert_idle(&builder).await;
}

// B9.10 / issue 4: a retry back-off sleep holds no slot.
#[tokio::test(start_paused = true)]
async fn retry_backoff_holds_no_capacity_slot() {
    let first_gate = Gate::new();
    let tracker = Tracker::new();
    let flaky = {
        let gate = first_gate.clone();
        let tracker = Arc::clone(&tracker);
        FnSource::new("flaky", move |key: ResourceKey, _ctx: FetchContext| {
            let gate = gate.clone();
            let tracker = Arc::clone(&tracker);
            async move {
                let first = tracker.calls() == 0;
                let _active = tracker.enter(Some(&key));
                if first {
                    gate.pass().await;
                    return Err(SourceError::unavailable("first call fails"));
                }
                Ok(SourceOutput::new("recovered".to_owned()))
            }
        })
        .with_max_concurrency(nz(1))
    };
    let retry = RetryPolicy::builder()
        .max_attempts(2)
        .initial_backoff(Duration::from_secs(1))
        .max_backoff(Duration::from_secs(1))
        .jitter(0.0)
        .build()
        .expect("valid retry policy");
    let builder = config(vec![flaky.into()])
        .resilience(ResiliencePolicy::new(
            retry,
            CircuitBreakerPolicy::disabled(),
        ))
        .build()
        .expect("valid builder");
    let k = key("market:price:BTC");

    let started = tokio::time::Instant::now();
    let handle = spawn_build(&builder, vec![k.clone()]);
    settle().await;
    assert_eq!(
        builder.capacity().global.in_use,
        1,
        "the first call holds a slot"
    );
    assert_eq!(builder.capacity().sources["flaky"].in_use, 1);

    // Only the first call waits at the gate.
    first_gate.open();
    settle().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let capacity = builder.capacity();
    assert_eq!(tracker.calls(), 1, "still backing off");
    assert!(!handle.is_finished());
    assert_eq!(
        capacity.global.in_use, 0,
        "no slot during back-off: {capacity:?}"
    );
    assert_eq!(capacity.sources["flaky"].in_use, 0, "{capacity:?}");

    let snapshot = join(handle).await;
    let value = snapshot.get(&k).expect("resolved after the retry");
    assert_eq!(value.value::<String>().expect("text"), "recovered");
    assert_eq!(value.attempts(), 2);
    assert_eq!(tracker.calls(), 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "the back-off was slept"
    );
    assert_idle(&builder).await;
}

// B9.6: 100 keys, max_concurrency 4 (max_pending_tasks defaults to 4):
// exactly 4 fetches start, nothing is queued per key, results keep order.
#[tokio::test(start_paused = true)]
async fn dispatch_of_100_keys_uses_max_pending_tasks_workers_and_keeps_order() {
    let gate = Gate::new();
    let tracker = Tracker::new();
    let source = {
        let gate = gate.clone();
        let tracker = Arc::clone(&tracker);
        FnSource::new("rest", move |key: ResourceKey, _ctx: FetchContext| {
            let gate = gate.clone();
            let tracker = Arc::clone(&tracker);
            async move {
                let _active = tracker.enter(Some(&key));
                gate.pass().await;
                // Later keys finish sooner: completion order is not input order.
                let index: u64 = key.subject()[1..].parse().map_err(SourceError::protocol)?;
                tokio::time::sleep(Duration::from_millis(100 - index)).await;
                Ok(SourceOutput::new(format!("value:{}", key.subject())))
            }
        })
    };
    let builder = config(vec![source.into()])
        .max_concurrency(4)
        .build()
        .expect("valid builder");
    let keys = numbered_keys("bulk:item:k", 100);

    let handle = spawn_build(&builder, keys.clone());
    settle().await;
    let capacity = builder.capacity();
    assert_eq!(tracker.calls(), 4, "exactly 4 fetches start");
    assert_eq!(capacity.global.in_use, 4, "{capacity:?}");
    assert_eq!(
        capacity.global.waiting, 0,
        "no task per key queued on the semaphore: {capacity:?}"
    );

    gate.open();
    let snapshot = join(handle).await;
    assert_eq!(tracker.calls(), 100);
    assert_eq!(tracker.peak(), 4);
    let order: Vec<ResourceKey> = snapshot.keys().cloned().collect();
    assert_eq!(order, keys, "results keep request order");
    for k in &keys {
        assert_eq!(text(&snapshot, k), format!("value:{}", k.subject()));
    }
    assert_idle(&builder).await;
}

// B9.7: max_pending_tasks below max_concurrency reduces dispatch parallelism.
#[tokio::test(start_paused = true)]
async fn max_pending_tasks_can_reduce_dispatch_parallelism() {
    let (builder, gate, tracker) = gated_rest(Limits::global(8).workers(2));
    let keys = numbered_keys("bulk:item:k", 20);

    let handle = spawn_build(&builder, keys);
    settle().await;
    let capacity = builder.capacity();
    assert_eq!(tracker.calls(), 2, "only two workers dispatch");
    assert_eq!(capacity.global.in_use, 2, "{capacity:?}");
    assert_eq!(capacity.global.waiting, 0, "{capacity:?}");

    gate.open();
    assert_eq!(join(handle).await.len(), 20);
    assert_eq!(tracker.peak(), 2);
    assert_idle(&builder).await;
}

// B9.21: max_pending_tasks above max_concurrency lets extra workers wait.
#[tokio::test(start_paused = true)]
async fn max_pending_tasks_above_max_concurrency_lets_workers_wait() {
    let (builder, gate, tracker) = gated_rest(Limits::global(2).workers(4));
    let keys = numbered_keys("bulk:item:k", 8);

    let handle = spawn_build(&builder, keys);
    settle().await;
    let capacity = builder.capacity();
    assert_eq!(tracker.calls(), 2);
    assert_eq!(capacity.global.in_use, 2, "{capacity:?}");
    assert_eq!(
        capacity.global.waiting, 2,
        "two extra workers wait: {capacity:?}"
    );

    gate.open();
    assert_eq!(join(handle).await.len(), 8);
    assert_eq!(tracker.peak(), 2);
    assert_idle(&builder).await;
}

/// A build of 8 keys over 4 dispatch workers against a gated "rest" source
/// limited to one call, settled with the first call parked at the gate.
async fn rest_limited_to_one_call() -> (SnapshotBuilder, Gate, Arc<Tracker>, JoinHandle<Snapshot>) {
    let (builder, gate, tracker) = gated_rest(Limits::global(4).workers(4).rest(1));
    let handle = spawn_build(&builder, numbered_keys("bulk:item:k", 8));
    settle().await;
    (builder, gate, tracker, handle)
}

// B9.16 (capacity part): a source limited to 1 with 4 workers shows 3
// waiters on the source; after completion everything is back to zero.
#[tokio::test(start_paused = true)]
async fn waiters_behind_a_source_limit_are_reported_and_cleared() {
    let (builder, gate, tracker, handle) = rest_limited_to_one_call().await;
    let capacity = builder.capacity();
    assert_eq!(tracker.active(), 1);
    assert_eq!(capacity.sources["rest"].in_use, 1, "{capacity:?}");
    assert_eq!(capacity.sources["rest"].waiting, 3, "{capacity:?}");
    assert_eq!(capacity.global.in_use, 1, "{capacity:?}");
    assert_eq!(capacity.global.waiting, 0, "{capacity:?}");

    gate.open();
    assert_eq!(join(handle).await.len(), 8);
    assert_eq!(tracker.peak(), 1);
    assert_idle(&builder).await;
}

// B9.16: health reports the dispatch workers of a running source attempt
// (4 with max_pending_tasks 4) and the capacity waiters; both return to 0.
#[tokio::test(start_paused = true)]
async fn health_reports_active_dispatch_workers_and_capacity_waiters() {
    let (builder, gate, _tracker, handle) = rest_limited_to_one_call().await;
    let health = builder.health();
    assert!(
        health.waiting_for_capacity >= 3,
        "waiting {}",
        health.waiting_for_capacity
    );
    assert_eq!(health.active_dispatch_workers, 4);

    gate.open();
    join(handle).await;
    assert_idle(&builder).await;
    let health = builder.health();
    assert_eq!(health.waiting_for_capacity, 0);
    assert_eq!(health.active_dispatch_workers, 0);
}

// B9.11: the source timeout starts only once capacity is acquired.
#[tokio::test(start_paused = true)]
async fn source_timeout_starts_after_capacity_is_acquired() {
    let rest_calls = Tracker::new();
    let holder_calls = Tracker::new();
    // Each call takes 10 ms, well inside the 40 ms timeout; the wait for
    // capacity (60 ms) is not.
    let rest = sleeping_source("rest", Duration::from_millis(10), &rest_calls)
        .with_timeout(Duration::from_millis(40))
        .with_queue_timeout(Duration::from_millis(200));
    let holder = sleeping_source("holder", Duration::from_millis(60), &holder_calls)
        .with_supports(|k| k.namespace() == "hold")
        .with_priority(10);
    // The only global slot is held for 60 ms by the other source.
    let builder = config(vec![holder.into(), rest.into()])
        .max_concurrency(1)
        .resilience(single_attempt())
        .build()
        .expect("valid builder");

    let holding = spawn_build(&builder, vec![key("hold:price:HOLD")]);
    settle().await;
    let waiter_key = key("market:price:BTC");
    let waiter = spawn_lenient(&builder, vec![waiter_key.clone()], BuildOptions::new());
    settle().await;
    assert_eq!(holder_calls.active(), 1);
    assert_eq!(rest_calls.calls(), 0, "no call while waiting for capacity");

    let snapshot = join(waiter).await;
    assert_eq!(
        snapshot
            .maybe_value::<String>(&waiter_key)
            .map(String::as_str),
        Some("rest:BTC"),
        "failures: {:?}",
        snapshot.error(&waiter_key).map(ToString::to_string)
    );
    assert_eq!(rest_calls.calls(), 1);
    join(holding).await;
    assert_eq!(builder.timeout_counts(), (0, 0, 0));
    assert_idle(&builder).await;
}

/// A builder whose "rest" source is limited to one call (retried 3 times
/// under a threshold-1 source circuit), with that call held at the gate by a
/// build of `hold:price:HOLD`.
struct HeldRest {
    builder: SnapshotBuilder,
    gate: Gate,
    tracker: Arc<Tracker>,
    holder: JoinHandle<Snapshot>,
}

impl HeldRest {
    /// Builds the builder with `queue_timeout` on "rest" (and `recorder` as
    /// its metrics and event sink) and parks the holding call.
    async fn start(queue_timeout: Duration, recorder: Option<Arc<Recorder>>) -> Self {
        let gate = Gate::new();
        let tracker = Tracker::new();
        let source = gated_source("rest", &gate, &[&tracker])
            .with_max_concurrency(nz(1))
            .with_queue_timeout(queue_timeout);
        let retry = RetryPolicy::new(3, Duration::ZERO, Duration::ZERO).expect("valid retry");
        let circuit = CircuitBreakerPolicy::new(CircuitScope::Source, 1, Duration::from_secs(10))
            .expect("valid circuit");
        let mut config =
            config(vec![source.into()]).resilience(ResiliencePolicy::new(retry, circuit));
        if let Some(recorder) = recorder {
            config = config
                .metrics(Arc::clone(&recorder) as Arc<dyn MetricsSink>)
                .events(recorder as Arc<dyn EventSink>);
        }
        let builder = config.build().expect("valid builder");
        let holder = spawn_build(&builder, vec![key("hold:price:HOLD")]);
        settle().await;
        Self {
            builder,
            gate,
            tracker,
            holder,
        }
    }

    /// Opens the gate and waits for the holding build.
    async fn release(self) -> SnapshotBuilder {
        self.gate.open();
        join(self.holder).await;
        self.builder
    }
}

fn circuit_state(builder: &SnapshotBuilder, identity: &str) -> CircuitStatus {
    builder
        .circuits()
        .get(identity)
        .map(|s| s.state)
        .unwrap_or_default()
}

// B9.12, B9.13, B10.27: a queue timeout is its own error, not retried, does
// not charge the circuit, and is counted.
#[tokio::test(start_paused = true)]
async fn queue_timeout_is_not_retried_and_does_not_trip_the_circuit() {
    let held = HeldRest::start(Duration::from_millis(10), None).await;
    let (builder, tracker) = (held.builder.clone(), Arc::clone(&held.tracker));
    assert_eq!(tracker.calls(), 1);

    let waiter_key = key("market:price:BTC");
    let snapshot = join(spawn_lenient(
        &builder,
        vec![waiter_key.clone()],
        BuildOptions::new(),
    ))
    .await;

    assert_eq!(
        failures(&snapshot, &waiter_key),
        one_failure("rest", "SourceQueueTimeoutError", 1),
        "one failure, one attempt: a queue timeout is not retried"
    );
    let messages = failure_messages(&snapshot, &waiter_key);
    assert!(
        messages[0].starts_with("source rest waited more than 0.010s for capacity"),
        "message: {messages:?}"
    );
    assert_eq!(tracker.calls(), 1, "the waiter never called the source");
    assert_eq!(builder.timeout_counts().0, 1, "one queue timeout");
    assert_eq!(builder.health().queue_timeout_count, 1);
    assert_eq!(builder.timeout_counts().1, 0);
    assert_eq!(
        circuit_state(&builder, "rest[source]"),
        CircuitStatus::Closed,
        "a queue timeout does not trip a threshold-1 circuit: {:?}",
        builder.circuits()
    );
    assert_eq!(
        builder.circuits().get("rest[source]").map(|s| s.failures),
        Some(0),
        "{:?}",
        builder.circuits()
    );

    let builder = held.release().await;
    assert_eq!(
        circuit_state(&builder, "rest[source]"),
        CircuitStatus::Closed
    );
    assert_idle(&builder).await;
}

// B9.14: capacity wait metrics and timeout counters by reason.
#[tokio::test(start_paused = true)]
async fn capacity_waits_and_timeouts_are_measured() {
    let recorder = Arc::new(Recorder::default());
    let held = HeldRest::start(Duration::from_millis(10), Some(Arc::clone(&recorder))).await;

    let queued = key("market:price:Q");
    join(spawn_lenient(
        &held.builder,
        vec![queued],
        BuildOptions::new(),
    ))
    .await;
    // A deadline shorter than the queue timeout ends the next wait.
    build_within(
        &held.builder,
        vec![key("market:price:D")],
        Duration::from_millis(5),
    )
    .await;
    settle().await;

    assert_eq!(
        recorder.counter(
            "source_capacity_timeout_total",
            &[("source", "rest"), ("reason", "queue_timeout")]
        ),
        1
    );
    assert_eq!(
        recorder.counter(
            "source_capacity_timeout_total",
            &[("source", "rest"), ("reason", "snapshot_deadline")]
        ),
        1
    );

    let builder = held.release().await;
    assert!(
        !recorder
            .observations_with("source_capacity_wait_ms", &[("source", "rest")])
            .is_empty(),
        "every acquired wait is observed"
    );
    assert_idle(&builder).await;
}

// B11.3, B10.27: a deadline reached while waiting for capacity fails with a
// deadline error, never calls the source and does not charge the circuit.
#[tokio::test(start_paused = true)]
async fn deadline_while_waiting_for_capacity_does_not_trip_the_circuit() {
    let held = HeldRest::start(Duration::from_secs(1), None).await;
    let builder = held.builder.clone();

    let waiter_key = key("market:price:BTC");
    let snapshot = build_within(
        &builder,
        vec![waiter_key.clone()],
        Duration::from_millis(20),
    )
    .await;

    assert_single_deadline_failure(&snapshot, &waiter_key);
    assert_eq!(
        held.tracker.calls(),
        1,
        "the waiter never called the source"
    );
    settle().await;
    assert_eq!(
        builder.timeout_counts(),
        (0, 0, 1),
        "one deadline exceeded, no queue or source timeout"
    );
    assert_eq!(builder.health().deadline_exceeded_count, 1);
    assert_eq!(
        circuit_state(&builder, "rest[source]"),
        CircuitStatus::Closed,
        "{:?}",
        builder.circuits()
    );

    let builder = held.release().await;
    assert_idle(&builder).await;
}

/// Asserts that `key` failed once, with a snapshot deadline error.
fn assert_single_deadline_failure(snapshot: &Snapshot, key: &ResourceKey) {
    let found = failures(snapshot, key);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "SnapshotDeadlineExceededError", "{found:?}");
}

// B11.4 / B11.6 through capacity: a call budget is min(remaining deadline,
// source timeout); the source timeout is counted and reported with it.
#[tokio::test(start_paused = true)]
async fn source_timeout_reports_its_effective_budget() {
    let tracker = Tracker::new();
    let slow = sleeping_source("slow", Duration::from_millis(50), &tracker)
        .with_timeout(Duration::from_millis(10))
        .with_max_concurrency(nz(1));
    let builder = single_attempt_builder(slow);
    let k = key("market:price:BTC");

    let snapshot = build_within(&builder, vec![k.clone()], Duration::from_secs(1)).await;

    assert_eq!(
        failures(&snapshot, &k),
        one_failure("slow", "SourceTimeoutError", 1)
    );
    assert_eq!(
        failure_messages(&snapshot, &k),
        vec!["source slow timed out after 0.010s while resolving market:price:BTC".to_owned()]
    );
    assert_eq!(builder.timeout_counts(), (0, 1, 0));
    assert_idle(&builder).await;
}

/// A build of `market:price:BTC` under a 20 ms deadline against a source
/// taking 200 ms within a 1 s timeout: the deadline is the tighter bound.
async fn deadline_bound_build() -> (SnapshotBuilder, Arc<Tracker>, ResourceKey, Snapshot) {
    let tracker = Tracker::new();
    let slow = sleeping_source("slow", Duration::from_millis(200), &tracker)
        .with_timeout(Duration::from_secs(1));
    let builder = single_attempt_builder(slow);
    let k = key("market:price:BTC");
    let snapshot = build_within(&builder, vec![k.clone()], Duration::from_millis(20)).await;
    (builder, tracker, k, snapshot)
}

// B11.4: when the deadline is the tighter bound, the error is a deadline error.
#[tokio::test(start_paused = true)]
async fn deadline_bound_call_budget_reports_a_deadline_error() {
    let (builder, tracker, k, snapshot) = deadline_bound_build().await;

    assert_single_deadline_failure(&snapshot, &k);
    assert_eq!(tracker.calls(), 1);
    assert_idle(&builder).await;
    assert_eq!(builder.timeout_counts().0, 0, "not a queue timeout");
    assert_eq!(builder.timeout_counts().1, 0, "not a source timeout");
    assert!(builder.timeout_counts().2 >= 1, "the deadline is counted");
}

// B11.3 / B11.4: one build exceeding its deadline on one key is one deadline.
#[tokio::test(start_paused = true)]
async fn a_deadline_during_the_call_is_counted_once() {
    let (builder, _tracker, _key, _snapshot) = deadline_bound_build().await;

    assert_idle(&builder).await;
    assert_eq!(builder.timeout_counts(), (0, 0, 1), "one deadline exceeded");
    assert_eq!(builder.health().deadline_exceeded_count, 1);
}

/// A plain map cache that counts batch calls and concurrent operations, and
/// leaves dependency-version checks to the engine.
#[derive(Debug, Default)]
struct CountingCache {
    entries: Mutex<HashMap<ResourceKey, SnapshotValue>>,
    get_calls: Mutex<Vec<usize>>,
    write_calls: Mutex<Vec<usize>>,
    invalidated: AtomicUsize,
    in_get: AtomicUsize,
    peak_get: AtomicUsize,
    in_write: AtomicUsize,
    peak_write: AtomicUsize,
    in_invalidate: AtomicUsize,
    peak_invalidate: AtomicUsize,
}

struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn enter(counter: &'a AtomicUsize, peak: &AtomicUsize) -> Self {
        let now = counter.fetch_add(1, Ordering::SeqCst) + 1;
        peak.fetch_max(now, Ordering::SeqCst);
        Self(counter)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl SnapshotCache for CountingCache {
    async fn get_many(
        &self,
        reads: &[CacheRead],
        now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        let _busy = Busy::enter(&self.in_get, &self.peak_get);
        self.get_calls.lock().expect("cache lock").push(reads.len());
        tokio::task::yield_now().await;
        let entries = self.entries.lock().expect("cache lock");
        Ok(reads
            .iter()
            .map(|read| {
                let value = entries.get(&read.key)?;
                let age = value.age_at(now);
                let freshness = read.policy.classify(age);
                (freshness != Freshness::Expired).then(|| CacheHit {
                    value: value.as_cached(now, !freshness.is_fresh()),
                    freshness,
                    age,
                })
            })
            .collect())
    }

    async fn write_many(&self, writes: Vec<CacheWrite>) -> Result<Vec<WriteResult>, CacheError> {
        let _busy = Busy::enter(&self.in_write, &self.peak_write);
        self.write_calls
            .lock()
            .expect("cache lock")
            .push(writes.len());
        tokio::task::yield_now().await;
        let mut entries = self.entries.lock().expect("cache lock");
        Ok(writes
            .into_iter()
            .map(|write| {
                let previous = entries.insert(write.value.key().clone(), write.value.clone());
                WriteResult {
                    outcome: WriteOutcome::Stored,
                    previous,
                    current: write.value,
                }
            })
            .collect())
    }

    async fn invalidate_many(&self, keys: &[ResourceKey]) -> Result<Vec<ResourceKey>, CacheError> {
        let _busy = Busy::enter(&self.in_invalidate, &self.peak_invalidate);
        tokio::task::yield_now().await;
        let mut entries = self.entries.lock().expect("cache lock");
        let removed: Vec<ResourceKey> = keys
            .iter()
            .filter(|k| entries.remove(k).is_some())
            .cloned()
            .collect();
        self.invalidated.fetch_add(removed.len(), Ordering::SeqCst);
        Ok(removed)
    }

    async fn invalidate_namespace(&self, namespace: &str) -> Result<Vec<ResourceKey>, CacheError> {
        let mut entries = self.entries.lock().expect("cache lock");
        let keys: Vec<ResourceKey> = entries
            .keys()
            .filter(|k| k.namespace() == namespace)
            .cloned()
            .collect();
        for k in &keys {
            entries.remove(k);
        }
        Ok(keys)
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        let mut entries = self.entries.lock().expect("cache lock");
        let n = entries.len() as u64;
        entries.clear();
        Ok(n)
    }

    fn stats(&self) -> CacheStats {
        CacheStats::default()
    }
}

// B9.8 (Rust form): cache reads and writes of a build are batched — one read
// call and one write call for 60 keys, never one operation per key.
#[tokio::test(start_paused = true)]
async fn cache_reads_and_writes_of_a_build_are_batched() {
    let cache = Arc::new(CountingCache::default());
    let tracker = Tracker::new();
    let source = sleeping_source("rest", Duration::from_millis(1), &tracker);
    let builder = config(vec![source.into()])
        .cache(Arc::clone(&cache) as Arc<dyn SnapshotCache>)
        .max_concurrency(12)
        .max_pending_tasks(4)
        .build()
        .expect("valid builder");
    let keys = numbered_keys("bulk:item:k", 60);

    let first = join(spawn_build(&builder, keys.clone())).await;
    let second = join(spawn_build(&builder, keys.clone())).await;

    assert_eq!(first.len(), 60);
    assert_eq!(second.len(), 60);
    assert!(second.values().all(SnapshotValue::is_from_cache));
    assert_eq!(
        tracker.calls(),
        60,
        "the second build is served from the cache"
    );
    assert_eq!(*cache.get_calls.lock().expect("cache lock"), vec![60, 60]);
    assert_eq!(*cache.write_calls.lock().expect("cache lock"), vec![60]);
    assert!(cache.peak_get.load(Ordering::SeqCst) <= 4);
    assert!(cache.peak_write.load(Ordering::SeqCst) <= 4);
    assert_eq!(
        tracker.peak(),
        4,
        "source calls are bounded by max_pending_tasks"
    );
}

// B9.9: cleaning up 48 derived entries whose dependency vanished is bounded
// by max_pending_tasks, and every key is fetched again.
#[tokio::test(start_paused = true)]
async fn dependency_cleanup_is_bounded_and_keys_are_refetched() {
    let clock = ManualClock::new(1_000.0);
    let cache = Arc::new(CountingCache::default());
    let keys = numbered_keys("demo:derived:S", 48);
    let seeded: Vec<CacheWrite> = keys
        .iter()
        .map(|k| {
            let mut parts = ValueParts::new(
                k.clone(),
                Payload::new("old".to_owned()),
                "derived",
                clock.now(),
            );
            let missing = ResourceKey::new("demo", "missing", k.subject()).expect("valid key");
            parts.dependency_versions = vec![(missing, Version::next())];
            CacheWrite::new(SnapshotValue::from_parts(parts))
        })
        .collect();
    cache.write_many(seeded).await.expect("seed the cache");
    let tracker = Tracker::new();
    let source = sleeping_source("value", Duration::from_millis(1), &tracker);
    let builder = SnapshotBuilder::builder([source.into()])
        .clock(Arc::new(clock.clone()))
        .cache(Arc::clone(&cache) as Arc<dyn SnapshotCache>)
        .max_concurrency(8)
        .max_pending_tasks(3)
        .build()
        .expect("valid builder");

    let snapshot = join(spawn_build(&builder, keys.clone())).await;

    for k in &keys {
        assert_eq!(text(&snapshot, k), format!("value:{}", k.subject()));
    }
    assert_eq!(tracker.calls(), 48, "every key is fetched again");
    assert_eq!(cache.invalidated.load(Ordering::SeqCst), 48);
    let peak = cache.peak_invalidate.load(Ordering::SeqCst);
    assert!(
        (1..=3).contains(&peak),
        "invalidations are bounded by max_pending_tasks (peak {peak})"
    );
}

// B9.19 / B9.21 configuration: limits are validated when the builder is built.
#[tokio::test]
async fn capacity_configuration_is_validated() {
    let source = || {
        FnSource::new("rest", |_k: ResourceKey, _ctx: FetchContext| async {
            Ok(SourceOutput::new(1_u8))
        })
    };
    assert!(config(vec![source().into()])
        .max_concurrency(0)
        .build()
        .is_err());
    assert!(config(vec![source().into()])
        .max_pending_tasks(0)
        .build()
        .is_err());
    assert!(config(vec![source().into()])
        .source_concurrency("rest", 0)
        .build()
        .is_err());
    assert!(
        config(vec![source().into()])
            .source_concurrency("unknown", 1)
            .build()
            .is_err(),
        "a limit for an unknown source is rejected"
    );
    let builder = config(vec![source().into()])
        .build()
        .expect("defaults are valid");
    let capacity = builder.capacity();
    assert_eq!(capacity.global.limit, 8, "default max_concurrency");
    assert!(capacity.sources.is_empty());
}

// Issue 4: after failures, timeouts and queue timeouts in-use returns to zero.
#[tokio::test(start_paused = true)]
async fn capacity_returns_to_zero_after_failures_and_timeouts() {
    let calls = Tracker::new();
    let source = {
        let calls = Arc::clone(&calls);
        FnSource::new("mixed", move |key: ResourceKey, _ctx: FetchContext| {
            let calls = Arc::clone(&calls);
            async move {
                let _active = calls.enter(Some(&key));
                match key.name() {
                    "fail" => Err(SourceError::unavailable("down")),
                    "slow" => {
                        tokio::time::sleep(Duration::from_secs(5)).await;
                        Ok(SourceOutput::new(0_u8))
                    }
                    "panic" => panic!("source bug"),
                    _ => {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        Ok(SourceOutput::new(1_u8))
                    }
                }
            }
        })
        .with_max_concurrency(nz(2))
        .with_timeout(Duration::from_millis(20))
        .with_queue_timeout(Duration::from_millis(30))
    };
    let builder = config(vec![source.into()])
        .max_concurrency(3)
        .build()
        .expect("valid builder");
    let mut handles = Vec::new();
    for i in 0..40 {
        let name = ["ok", "fail", "slow", "panic"][i % 4];
        let keys = vec![
            key(&format!("mixed:{name}:K{i}")),
            key(&format!("mixed:ok:K{i}")),
        ];
        let options = if i % 3 == 0 {
            BuildOptions::new().deadline(Duration::from_millis(10))
        } else {
            BuildOptions::new()
        };
        handles.push(spawn_lenient(&builder, keys, options));
    }
    for handle in handles {
        join(handle).await;
    }
    let (queue, source_timeouts, _) = builder.timeout_counts();
    assert!(queue > 0, "the storm produced queue timeouts");
    assert!(source_timeouts > 0, "the storm produced source timeouts");
    assert_idle(&builder).await;
    assert_eq!(calls.active(), 0);
}
