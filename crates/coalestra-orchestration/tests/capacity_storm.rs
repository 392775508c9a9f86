//! Catalogue areas 9 and 10 under load: a seeded storm of concurrent builds
//! (random latency, failures, queue timeouts, source timeouts, short
//! deadlines, open circuits, background refreshes, and build futures dropped
//! or aborted mid-flight) on the paused clock. Afterwards every capacity slot
//! and waiter is released, nothing is in flight, `close` leaves no task
//! behind, and the builder still serves a correct build (issue 4: "after any
//! storm of cancellations, timeouts and failures, in-use returns to zero").

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coalestra_core::{
    BuildOptions, CircuitBreakerPolicy, CircuitScope, CoalestraError, FetchContext, FnBatchSource,
    FnDerivedSource, FnSource, FreshnessPolicy, ManualClock, PolicyResolver, RefreshMode,
    ResiliencePolicy, ResourceKey, RetryPolicy, Snapshot, SourceError, SourceOptions, SourceOutput,
    SourceRef,
};
use coalestra_orchestration::SnapshotBuilder;

const KEYS: usize = 40;
const BUILDS: usize = 300;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("non-zero limit")
}

fn price(i: usize) -> ResourceKey {
    ResourceKey::new("storm", "price", format!("S{i:02}")).expect("valid key")
}

fn spread(i: usize) -> ResourceKey {
    ResourceKey::new("storm", "spread", format!("S{i:02}")).expect("valid key")
}

/// The two price keys a spread is derived from.
fn spread_inputs(key: &ResourceKey) -> Vec<ResourceKey> {
    let i: usize = key.subject()[1..]
        .parse()
        .expect("storm subjects are numbered");
    vec![price(i), price((i + 1) % KEYS)]
}

/// SplitMix64: a small seeded generator, so the storm is reproducible.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Latency and failure draws shared by every source; `calm` turns the chaos
/// off for the final build.
#[derive(Debug)]
struct Chaos {
    rng: Mutex<Rng>,
    calm: AtomicBool,
}

impl Chaos {
    fn new(seed: u64) -> Arc<Self> {
        Arc::new(Self {
            rng: Mutex::new(Rng(seed)),
            calm: AtomicBool::new(false),
        })
    }
    /// (latency, fail?) for one call.
    fn draw(&self, max_latency_ms: u64, fail_percent: u64) -> (Duration, bool) {
        if self.calm.load(Ordering::SeqCst) {
            return (Duration::ZERO, false);
        }
        let mut rng = self.rng.lock().expect("chaos lock");
        (ms(rng.below(max_latency_ms + 1)), rng.chance(fail_percent))
    }
}

fn text_for(source: &str, key: &ResourceKey) -> String {
    format!("{source}:{}", key.subject())
}

/// Subjects whose primary source is down for the whole storm.
const BROKEN_SUBJECTS: [&str; 4] = ["S00", "S10", "S20", "S30"];

/// Single-key source: latency up to `max_latency_ms`, 10 % failures, and
/// (for the primary) broken subjects that always fail.
fn chaotic_single(name: &'static str, chaos: &Arc<Chaos>, max_latency_ms: u64) -> FnSource {
    let chaos = Arc::clone(chaos);
    FnSource::new(name, move |key: ResourceKey, _ctx: FetchContext| {
        let (latency, mut fail) = chaos.draw(max_latency_ms, 10);
        if name == "alpha"
            && BROKEN_SUBJECTS.contains(&key.subject())
            && !chaos.calm.load(Ordering::SeqCst)
        {
            fail = true;
        }
        async move {
            tokio::time::sleep(latency).await;
            if fail {
                return Err(SourceError::unavailable(format!("{name} failed for {key}")));
            }
            Ok(SourceOutput::new(text_for(name, &key)))
        }
    })
    .with_supports(|k| k.name() == "price")
}

/// Batch source: whole-call failures and omitted keys, 10 % each.
fn chaotic_batch(name: &'static str, chaos: &Arc<Chaos>, max_latency_ms: u64) -> FnBatchSource {
    let chaos = Arc::clone(chaos);
    FnBatchSource::new(name, move |keys: Vec<ResourceKey>, _ctx: FetchContext| {
        let (latency, fail) = chaos.draw(max_latency_ms, 10);
        let omit: Vec<bool> = keys.iter().map(|_| chaos.draw(0, 10).1).collect();
        async move {
            tokio::time::sleep(latency).await;
            if fail {
                return Err(SourceError::unavailable(format!("{name} batch failed")));
            }
            Ok(keys
                .into_iter()
                .zip(omit)
                .filter(|(_, omitted)| !omitted)
                .map(|(k, _)| {
                    let text = text_for(name, &k);
                    (k, SourceOutput::new(text))
                })
                .collect())
        }
    })
    .with_supports(|k| k.name() == "price")
}

/// Derived spreads: the two prices' texts joined, limited to one derivation.
fn chaotic_derived(chaos: &Arc<Chaos>) -> FnDerivedSource {
    let chaos = Arc::clone(chaos);
    FnDerivedSource::new(
        "spread",
        spread_inputs,
        move |key: ResourceKey, deps: Snapshot, _ctx: FetchContext| {
            let (latency, fail) = chaos.draw(8, 10);
            async move {
                tokio::time::sleep(latency).await;
                if fail {
                    return Err(SourceError::unavailable("spread failed"));
                }
                let mut parts = Vec::new();
                for input in spread_inputs(&key) {
                    let text = deps
                        .value::<String>(&input)
                        .map_err(SourceError::protocol)?;
                    parts.push(text.clone());
                }
                Ok(SourceOutput::new(parts.join("|")))
            }
        },
    )
    .with_supports(|k| k.name() == "spread")
    .with_max_concurrency(nz(1))
    .with_queue_timeout(ms(5))
}

/// The keys a storm draws from.
fn key_pool(with_derived: bool) -> Vec<ResourceKey> {
    let mut keys: Vec<ResourceKey> = (0..KEYS).map(price).collect();
    if with_derived {
        keys.extend((0..10).map(spread));
    }
    keys
}

/// Freshness: the first half never cached, then blocking refresh, then
/// stale-while-revalidate (background refreshes).
fn storm_policies() -> PolicyResolver {
    let cached = FreshnessPolicy::new(Duration::from_secs(1), Duration::from_secs(10))
        .expect("valid policy");
    let swr = cached
        .with_refresh_mode(RefreshMode::StaleWhileRevalidate)
        .expect("valid refresh mode");
    let mut policies = PolicyResolver::new(FreshnessPolicy::no_cache());
    for i in 20..30 {
        policies = policies.with_override(price(i), cached);
    }
    for i in 30..KEYS {
        policies = policies.with_override(price(i), swr);
    }
    policies
}

fn storm_builder(chaos: &Arc<Chaos>, clock: &ManualClock, with_derived: bool) -> SnapshotBuilder {
    let alpha = chaotic_single("alpha", chaos, 30)
        .with_priority(30)
        .with_max_concurrency(nz(2))
        .with_queue_timeout(ms(20))
        .with_timeout(ms(20));
    let beta = chaotic_batch("beta", chaos, 10)
        .with_priority(20)
        .with_max_batch_size(nz(4))
        .with_max_concurrency(nz(1))
        .with_queue_timeout(ms(15));
    let gamma = chaotic_single("gamma", chaos, 5).with_priority(10);
    let mut sources: Vec<SourceRef> = vec![alpha.into(), beta.into(), gamma.into()];
    if with_derived {
        sources.push(chaotic_derived(chaos).into());
    }
    let retry = RetryPolicy::new(2, ms(2), ms(10)).expect("valid retry policy");
    let circuit =
        CircuitBreakerPolicy::new(CircuitScope::Subject, 2, ms(500)).expect("valid circuit policy");
    SnapshotBuilder::builder(sources)
        .clock(Arc::new(clock.clone()))
        .policies(storm_policies())
        .max_concurrency(6)
        .max_pending_tasks(3)
        .resilience(ResiliencePolicy::new(retry, circuit))
        .build()
        .expect("valid builder")
}

#[derive(Debug, Clone, Copy)]
enum Cancel {
    None,
    /// The build future is dropped by `select!` after this long.
    Select(Duration),
    /// The build task is aborted after this long.
    Abort(Duration),
}

#[derive(Debug)]
struct Plan {
    start: Duration,
    keys: Vec<ResourceKey>,
    deadline: Option<Duration>,
    strict: bool,
    cancel: Cancel,
}

fn plans(seed: u64, pool: &[ResourceKey]) -> Vec<Plan> {
    let mut rng = Rng(seed ^ 0x5EED);
    (0..BUILDS)
        .map(|_| {
            let wanted = 1 + rng.below(6) as usize;
            let mut chosen = BTreeSet::new();
            while chosen.len() < wanted {
                chosen.insert(rng.below(pool.len() as u64) as usize);
            }
            let deadline = rng.chance(30).then(|| ms(5 + rng.below(60)));
            let cancel = match rng.below(100) {
                0..12 => Cancel::Select(ms(rng.below(40))),
                12..24 => Cancel::Abort(ms(rng.below(40))),
                _ => Cancel::None,
            };
            Plan {
                start: ms(rng.below(3_000)),
                keys: chosen.into_iter().map(|i| pool[i].clone()).collect(),
                deadline,
                strict: rng.chance(20),
                cancel,
            }
        })
        .collect()
}

const EXPECTED_ERRORS: [&str; 6] = [
    "SourceUnavailableError",
    "SourceQueueTimeoutError",
    "SourceTimeoutError",
    "SnapshotDeadlineExceededError",
    "CircuitOpenError",
    "DependencyResolutionError",
];

/// Every value carries its own source's text for its own key; every failure
/// is one the storm can cause.
fn check_snapshot(snapshot: &Snapshot, keys: &[ResourceKey]) {
    for key in keys {
        if let Some(value) = snapshot.get(key) {
            let text = value
                .value::<String>()
                .unwrap_or_else(|e| panic!("{key}: unexpected payload type: {e}"));
            if key.name() == "spread" {
                assert_eq!(value.source(), "spread", "{key}");
                let inputs = spread_inputs(key);
                let parts: Vec<&str> = text.split('|').collect();
                assert_eq!(parts.len(), 2, "{key}: {text}");
                for (part, input) in parts.iter().zip(&inputs) {
                    assert!(
                        part.ends_with(&format!(":{}", input.subject())),
                        "{key}: {text} does not match {input}"
                    );
                }
            } else {
                assert_eq!(
                    *text,
                    text_for(value.source(), key),
                    "crossed wires for {key}"
                );
            }
        } else {
            let error = snapshot
                .error(key)
                .unwrap_or_else(|| panic!("{key} is neither resolved nor failed"));
            assert!(!error.failures().is_empty(), "{key}: {error}");
            for failure in error.failures() {
                assert!(
                    EXPECTED_ERRORS.contains(&failure.error.error_type()),
                    "{key}: unexpected failure {} ({})",
                    failure.error.error_type(),
                    failure.error
                );
            }
        }
    }
}

#[derive(Debug, Default)]
struct Tally {
    completed: usize,
    strict_failures: usize,
    dropped: usize,
    aborted: usize,
}

/// Waits on the paused clock until no detached work or refresh remains.
async fn drain(builder: &SnapshotBuilder) {
    for _ in 0..100_000 {
        if builder.active_tasks() == 0 && builder.background_refreshes() == 0 {
            return;
        }
        tokio::time::sleep(ms(1)).await;
    }
    panic!(
        "storm work never finished: {} tasks, {} refreshes",
        builder.active_tasks(),
        builder.background_refreshes()
    );
}

fn assert_released(builder: &SnapshotBuilder, seed: u64) {
    let capacity = builder.capacity();
    assert_eq!(capacity.global.in_use, 0, "seed {seed}: {capacity:?}");
    assert_eq!(capacity.global.waiting, 0, "seed {seed}: {capacity:?}");
    for (name, limit) in &capacity.sources {
        assert_eq!(limit.in_use, 0, "seed {seed}: {name} in use: {capacity:?}");
        assert_eq!(
            limit.waiting, 0,
            "seed {seed}: {name} waiting: {capacity:?}"
        );
    }
    assert_eq!(builder.in_flight(), 0, "seed {seed}: nothing in flight");
    assert_eq!(builder.background_refreshes(), 0, "seed {seed}");
    assert_eq!(builder.active_tasks(), 0, "seed {seed}");
}

async fn run_storm(seed: u64, with_derived: bool) {
    let chaos = Chaos::new(seed);
    let clock = ManualClock::new(1_000.0);
    let builder = storm_builder(&chaos, &clock, with_derived);
    let pool = key_pool(with_derived);

    // Wall time moves on while the storm runs, so cached keys go stale.
    let ticker = {
        let clock = clock.clone();
        tokio::spawn(async move {
            for _ in 0..320 {
                tokio::time::sleep(ms(10)).await;
                clock.advance(ms(150));
            }
        })
    };

    let mut handles = Vec::with_capacity(BUILDS);
    let mut aborters = Vec::new();
    for plan in plans(seed, &pool) {
        let task_builder = builder.clone();
        let keys = plan.keys.clone();
        let mut options = BuildOptions::new().strict(plan.strict);
        if let Some(deadline) = plan.deadline {
            options = options.deadline(deadline);
        }
        let start = plan.start;
        let cancel = plan.cancel;
        let handle = tokio::spawn(async move {
            tokio::time::sleep(start).await;
            let build = task_builder.build_with(keys, options);
            match cancel {
                Cancel::Select(after) => tokio::select! {
                    result = build => Some(result),
                    () = tokio::time::sleep(after) => None,
                },
                Cancel::None | Cancel::Abort(_) => Some(build.await),
            }
        });
        if let Cancel::Abort(after) = plan.cancel {
            let abort = handle.abort_handle();
            aborters.push(tokio::spawn(async move {
                tokio::time::sleep(start + after).await;
                abort.abort();
            }));
        }
        handles.push((plan, handle));
    }

    let mut tally = Tally::default();
    for (plan, handle) in handles {
        match tokio::time::timeout(Duration::from_secs(600), handle)
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: a build hung: {plan:?}"))
        {
            Err(join) if join.is_cancelled() => tally.aborted += 1,
            Err(join) => panic!("seed {seed}: a build task panicked: {join} ({plan:?})"),
            Ok(None) => tally.dropped += 1,
            Ok(Some(Ok(snapshot))) => {
                tally.completed += 1;
                check_snapshot(&snapshot, &plan.keys);
            }
            Ok(Some(Err(error))) => {
                let build = error
                    .as_build()
                    .unwrap_or_else(|| panic!("seed {seed}: unexpected error {error} ({plan:?})"));
                assert!(
                    plan.strict,
                    "seed {seed}: a non-strict build failed: {error}"
                );
                tally.strict_failures += 1;
                if let Some(partial) = build.snapshot() {
                    check_snapshot(partial, &plan.keys);
                }
            }
        }
    }
    for aborter in aborters {
        aborter.await.expect("aborter task");
    }
    ticker.await.expect("ticker task");

    assert!(
        tally.dropped + tally.aborted >= BUILDS / 10,
        "seed {seed}: the storm cancels builds: {tally:?}"
    );
    assert!(tally.completed >= BUILDS / 2, "seed {seed}: {tally:?}");
    let (queue, source, deadline) = builder.timeout_counts();
    eprintln!(
        "DEBUG seed {seed}: {tally:?} timeouts {:?} rejections {} circuits {:?}",
        builder.timeout_counts(),
        builder.health().circuit_rejection_count,
        builder
            .circuits()
            .values()
            .filter(|s| s.state != coalestra_resilience::CircuitStatus::Closed)
            .count()
    );
    assert!(queue > 0, "seed {seed}: queue timeouts happened");
    assert!(source > 0, "seed {seed}: source timeouts happened");
    assert!(deadline > 0, "seed {seed}: deadlines were exceeded");
    assert!(
        builder.health().circuit_rejection_count > 0,
        "seed {seed}: circuits opened"
    );

    drain(&builder).await;
    assert_released(&builder, seed);

    // The builder still works: a calm, strict build of every key.
    chaos.calm.store(true, Ordering::SeqCst);
    builder.reset_circuits(None);
    clock.advance(Duration::from_secs(60));
    let last = tokio::time::timeout(Duration::from_secs(60), builder.build(pool.clone()))
        .await
        .expect("the final build must not hang")
        .unwrap_or_else(|e| panic!("seed {seed}: the final build fails: {e}"));
    assert_eq!(last.len(), pool.len());
    check_snapshot(&last, &pool);

    builder.close().await;
    assert!(builder.is_closed());
    assert_released(&builder, seed);
    let closed = builder.build([price(0)]).await;
    assert!(
        matches!(&closed, Err(CoalestraError::Closed(_))),
        "a closed builder refuses builds: {closed:?}"
    );
}

// Issue 4: 300 builds over 40 keys from 3 sources (single, batch, single)
// with seeded chaos, ~20 % of build futures dropped or aborted mid-flight.
#[tokio::test(start_paused = true)]
async fn storm_of_builds_leaves_no_capacity_or_work_behind() {
    for seed in [7, 42, 2024] {
        run_storm(seed, false).await;
    }
}

// The same storm with a concurrency-limited derived source on top.
#[tokio::test(start_paused = true)]
async fn storm_with_derived_sources_leaves_no_capacity_or_work_behind() {
    for seed in [11, 99] {
        run_storm(seed, true).await;
    }
}

// Found by the derived storm: build A owns `price:S10` and derives
// `spread:S08` (needs S08, S09); build B owns `price:S08` and derives
// `spread:S09` (needs S09, S10). Each derivation waits for a price the other
// build owns, and a build's shared fetches are completed only when its whole
// chain (derivations included) has finished, so neither ever completes.
#[tokio::test(start_paused = true)]
async fn two_builds_owning_each_others_dependencies_do_not_deadlock() {
    let prices = FnSource::new(
        "prices",
        |key: ResourceKey, _ctx: FetchContext| async move {
            tokio::time::sleep(ms(1)).await;
            Ok(SourceOutput::new(text_for("prices", &key)))
        },
    )
    .with_supports(|k| k.name() == "price");
    let spreads = FnDerivedSource::sync(
        "spread",
        spread_inputs,
        |key: &ResourceKey, deps: &Snapshot, _ctx: &FetchContext| {
            let mut parts = Vec::new();
            for input in spread_inputs(key) {
                let text = deps
                    .value::<String>(&input)
                    .map_err(SourceError::protocol)?;
                parts.push(text.clone());
            }
            Ok(SourceOutput::new(parts.join("|")))
        },
    )
    .with_supports(|k| k.name() == "spread");
    let builder = SnapshotBuilder::builder([prices.into(), spreads.into()])
        .clock(Arc::new(ManualClock::new(1_000.0)))
        .build()
        .expect("valid builder");

    let (a, b) = tokio::time::timeout(Duration::from_secs(60), async {
        tokio::join!(
            builder.build([spread(8), price(10)]),
            builder.build([spread(9), price(8)]),
        )
    })
    .await
    .expect("two builds depending on each other's keys must not deadlock");

    let a = a.expect("build A succeeds");
    let b = b.expect("build B succeeds");
    assert_eq!(
        a.value::<String>(&spread(8)).expect("spread S08"),
        "prices:S08|prices:S09"
    );
    assert_eq!(
        b.value::<String>(&spread(9)).expect("spread S09"),
        "prices:S09|prices:S10"
    );
    drain(&builder).await;
    assert_released(&builder, 0);
}
