//! Fault-storm soak (issue 10, "Fault-storm soak"; catalogue areas 5, 6, 8,
//! 9, 10 and 12 under load): a seeded, deterministic storm on paused time of
//! concurrent builds, sessions (resolve, resolve again, revalidate),
//! publications and invalidations over 200 keys, against mock sources with
//! random latency, 10 % failures, timeouts, stale and future observations,
//! panics, omitted batch keys, and callers cancelled at random points.
//!
//! At checkpoints and at the end, once the storm is drained:
//! - capacity in use and waiters are zero, globally and per source;
//! - the single-flight table is empty, and the mock sources never saw two
//!   fetches of one key in flight at once;
//! - no background refresh is left after `wait_for_refreshes()` and no
//!   spawned task is left running;
//! - per key, the cached revision is the highest (authority rank,
//!   observed_at) offered to the cache since the key was last removed (a
//!   shadow model records every write, invalidation and removal, and checks
//!   every reported write outcome against the documented rule);
//! - every build and session stage returned a snapshot or a typed error
//!   before its deadline plus a small allowance; none hung;
//! - no panic escaped to a caller, no value carried another key's payload,
//!   a session never changed a pinned value, and the builder still builds
//!   every key afterwards.
//!
//! `COALESTRA_SOAK_BUILDS` scales the storm (default 2,000 builds; one
//! million for a manual run), `COALESTRA_SOAK_SEED` replays a seed; a
//! failure prints the seed.

mod soak_support;

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use coalestra_cache::PublishOptions;
use coalestra_core::{
    AuthorityResolver, BuildOptions, CircuitBreakerPolicy, CircuitScope, Clock, CoalestraError,
    FreshnessPolicy, ManualClock, Payload, PolicyResolver, RefreshMode, ResiliencePolicy,
    ResourceKey, RetryPolicy, Snapshot, SourceAuthorityPolicy, SourceOptions, Timestamp,
};
use coalestra_orchestration::{ResolveOptions, RevalidateOptions, SessionOptions, SnapshotBuilder};
use soak_support::{
    batch, derived, lock, payload_names_key, payload_text, single, strength, Chaos, RecordingCache,
    Rng, INJECTED_PANIC,
};
use tokio::task::JoinSet;
use tokio::time::{sleep, Instant};

/// Builds in the default (gate) storm.
const DEFAULT_BUILDS: u64 = 2_000;
/// The default seed.
const DEFAULT_SEED: u64 = 0x50A4_2026_0010;
/// Scheduling allowance past a deadline (paused time is exact, so this only
/// covers work the engine does after noticing the deadline).
const ALLOWANCE: Duration = Duration::from_millis(5);
/// Operations running at once.
const MAX_OUTSTANDING: usize = 48;
/// Checkpoints during the storm (the end is checked too).
const CHECKPOINTS: u64 = 4;

const PRICES: usize = 120;
const BOOKS: usize = 60;
const SPREADS: usize = 20;

fn key(kind: &str, i: usize) -> ResourceKey {
    ResourceKey::new("soak", kind, format!("K{i:03}")).expect("valid key")
}

fn index(key: &ResourceKey) -> usize {
    key.subject()[1..]
        .parse()
        .expect("soak subjects are numbered")
}

/// The two prices a spread is derived from.
fn spread_inputs(spread: &ResourceKey) -> Vec<ResourceKey> {
    let i = index(spread);
    vec![key("price", i), key("price", (i + 1) % PRICES)]
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

fn nz(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("non-zero")
}

/// Injected panics are expected by the thousand; keep them off stderr.
fn quiet_injected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let payload = info.payload();
            let text = payload
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| payload.downcast_ref::<&str>().copied())
                .unwrap_or("");
            if !text.contains(INJECTED_PANIC) {
                default(info);
            }
        }));
    });
}

/// Counters of what the storm did, for the coverage check and the summary.
#[derive(Debug, Default)]
struct Stats {
    builds: AtomicU64,
    builds_ok: AtomicU64,
    builds_failed: AtomicU64,
    cancelled: AtomicU64,
    sessions: AtomicU64,
    stages_ok: AtomicU64,
    stages_failed: AtomicU64,
    revalidations: AtomicU64,
    publications: AtomicU64,
    publications_rejected: AtomicU64,
    invalidations: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// Everything the operations share.
struct Shared {
    seed: u64,
    builder: SnapshotBuilder,
    cache: RecordingCache,
    chaos: Arc<Chaos>,
    keys: Vec<ResourceKey>,
    stats: Stats,
    failures: Mutex<Vec<String>>,
}

impl Shared {
    fn fail(&self, message: String) {
        lock(&self.failures).push(message);
    }

    /// Values must belong to their key; strict snapshots must hold every
    /// requested key; the others must account for every key.
    fn check_snapshot(&self, what: &str, snapshot: &Snapshot, keys: &[ResourceKey], strict: bool) {
        for value in snapshot.values() {
            if !payload_names_key(value) {
                self.fail(format!("{what}: {} carries {value:?}", value.key()));
            }
        }
        for key in keys {
            let value = snapshot.get(key).is_some();
            if strict && !value {
                self.fail(format!("{what}: strict success without {key}"));
            } else if !value && snapshot.error(key).is_none() {
                self.fail(format!("{what}: {key} is neither a value nor an error"));
            }
        }
    }

    /// A failed build must be a typed build error (its partial snapshot, if
    /// any, obeys the snapshot rules).
    fn check_error(&self, what: &str, error: &CoalestraError) {
        match error.as_build() {
            Some(build) => {
                if let Some(partial) = build.snapshot() {
                    for value in partial.values() {
                        if !payload_names_key(value) {
                            self.fail(format!("{what}: partial {} carries {value:?}", value.key()));
                        }
                    }
                }
            }
            None => self.fail(format!("{what}: unexpected error kind: {error:?}")),
        }
    }

    fn check_deadline(&self, what: &str, started: Instant, deadline: Duration) {
        self.check_stage(what, started, started, deadline);
    }

    /// A call made at `called` under a deadline counted from `started`
    /// returns by the deadline (or at once when called after it).
    fn check_stage(&self, what: &str, started: Instant, called: Instant, deadline: Duration) {
        let limit = (started + deadline).max(called) + ALLOWANCE;
        let now = Instant::now();
        if now > limit {
            self.fail(format!(
                "{what} returned {:?} after its start, past its deadline {deadline:?} (+{ALLOWANCE:?}; called at {:?})",
                now - started,
                called - started
            ));
        }
    }
}

/// Runs `work` unless the caller gives up first (the future is dropped
/// mid-flight, as a cancelled request would be).
async fn cancellable<F: std::future::Future>(
    cancel_after: Option<Duration>,
    work: F,
) -> Option<F::Output> {
    match cancel_after {
        None => Some(work.await),
        Some(after) => tokio::select! {
            biased;
            output = work => Some(output),
            () = sleep(after) => None,
        },
    }
}

/// One operation of the storm.
#[derive(Debug)]
enum Op {
    Build {
        keys: Vec<ResourceKey>,
        deadline: Duration,
        strict: bool,
        cancel_after: Option<Duration>,
    },
    Session {
        first: Vec<ResourceKey>,
        second: Vec<ResourceKey>,
        deadline: Duration,
        /// Time between the first and the second stage.
        pause: Duration,
        force_refresh: bool,
        strict: bool,
        cancel_after: Option<Duration>,
    },
    Publish {
        key: ResourceKey,
        source: &'static str,
        offset: f64,
        force: bool,
        replace_equal: bool,
    },
    Invalidate {
        keys: Vec<ResourceKey>,
        namespace: bool,
    },
}

impl Op {
    async fn run(self, shared: Arc<Shared>, id: u64) {
        match self {
            Op::Build {
                keys,
                deadline,
                strict,
                cancel_after,
            } => {
                bump(&shared.stats.builds);
                let started = Instant::now();
                let options = BuildOptions::new().deadline(deadline).strict(strict);
                let outcome = cancellable(
                    cancel_after,
                    shared.builder.build_with(keys.clone(), options),
                )
                .await;
                let what = format!("build #{id} of {} keys", keys.len());
                match outcome {
                    None => bump(&shared.stats.cancelled),
                    Some(result) => {
                        shared.check_deadline(&what, started, deadline);
                        match result {
                            Ok(snapshot) => {
                                bump(&shared.stats.builds_ok);
                                shared.check_snapshot(&what, &snapshot, &keys, strict);
                            }
                            Err(error) => {
                                bump(&shared.stats.builds_failed);
                                shared.check_error(&what, &error);
                            }
                        }
                    }
                }
            }
            Op::Session {
                first,
                second,
                deadline,
                pause,
                force_refresh,
                strict,
                cancel_after,
            } => {
                bump(&shared.stats.sessions);
                let stages = Stages {
                    first,
                    second,
                    deadline,
                    pause,
                    force_refresh,
                    strict,
                };
                let work = session(&shared, id, stages);
                if cancellable(cancel_after, work).await.is_none() {
                    bump(&shared.stats.cancelled);
                }
            }
            Op::Publish {
                key,
                source,
                offset,
                force,
                replace_equal,
            } => {
                let publisher = shared.builder.publisher();
                let now = shared.chaos.clock.now();
                let options = PublishOptions::new(source)
                    .observed_at(Timestamp::from_secs(now.as_secs() - offset))
                    .force(force)
                    .replace_equal(replace_equal);
                if force {
                    shared.cache.allow_force(&key);
                }
                let text = payload_text(&key, source, shared.chaos.serial());
                match publisher
                    .publish(key.clone(), Payload::new(text), options)
                    .await
                {
                    Ok(result) => {
                        bump(&shared.stats.publications);
                        if !payload_names_key(&result.value) {
                            shared
                                .fail(format!("publication #{id}: cache holds {:?}", result.value));
                        }
                    }
                    Err(_) => bump(&shared.stats.publications_rejected),
                }
            }
            Op::Invalidate { keys, namespace } => {
                bump(&shared.stats.invalidations);
                let result = if namespace {
                    shared
                        .builder
                        .cache()
                        .invalidate_namespace("soak")
                        .await
                        .map(|_| ())
                } else {
                    shared
                        .builder
                        .cache()
                        .invalidate_many(&keys)
                        .await
                        .map(|_| ())
                };
                if let Err(error) = result {
                    shared.fail(format!("invalidation #{id} failed: {error}"));
                }
            }
        }
    }
}

/// What one session does.
struct Stages {
    first: Vec<ResourceKey>,
    second: Vec<ResourceKey>,
    deadline: Duration,
    pause: Duration,
    force_refresh: bool,
    strict: bool,
}

/// A session: resolve, wait, resolve again (pinned values must not change
/// even when the cache did meanwhile), revalidate part of what resolved,
/// close. Every stage must end before the session's deadline.
async fn session(shared: &Shared, id: u64, stages: Stages) {
    let Stages {
        first,
        second,
        deadline,
        pause,
        force_refresh,
        strict,
    } = stages;
    let started = Instant::now();
    let what = format!("session #{id}");
    let session = match shared
        .builder
        .session(SessionOptions::new().deadline(deadline))
    {
        Ok(session) => session,
        Err(error) => return shared.fail(format!("{what}: cannot open: {error}")),
    };
    let mut pinned = BTreeMap::new();
    let stage = ResolveOptions::new().strict(strict);
    let called = Instant::now();
    match session.resolve(first.clone(), stage).await {
        Ok(snapshot) => {
            bump(&shared.stats.stages_ok);
            shared.check_snapshot(&what, &snapshot, &first, strict);
            for value in snapshot.values() {
                pinned.insert(value.key().clone(), value.clone());
            }
        }
        Err(error) => {
            bump(&shared.stats.stages_failed);
            shared.check_error(&what, &error);
        }
    }
    shared.check_stage(&format!("{what} stage 1"), started, called, deadline);
    sleep(pause).await;
    let called = Instant::now();
    let mut again = second.clone();
    again.extend(pinned.keys().cloned());
    match session
        .resolve(again.clone(), ResolveOptions::new().strict(false))
        .await
    {
        Ok(snapshot) => {
            bump(&shared.stats.stages_ok);
            shared.check_snapshot(&what, &snapshot, &again, false);
            for (key, value) in &pinned {
                match snapshot.get(key) {
                    Some(now) if now.same_revision(value) => {}
                    other => shared.fail(format!(
                        "{what}: pinned {key} changed within the session: {value:?} -> {other:?}"
                    )),
                }
            }
        }
        Err(error) => {
            bump(&shared.stats.stages_failed);
            shared.check_error(&what, &error);
        }
    }
    shared.check_stage(&format!("{what} stage 2"), started, called, deadline);
    let revalidate: Vec<ResourceKey> = pinned.keys().take(2).cloned().collect();
    if !revalidate.is_empty() {
        bump(&shared.stats.revalidations);
        let options = RevalidateOptions::new()
            .force_refresh(force_refresh)
            .strict(strict);
        let called = Instant::now();
        match session.revalidate(revalidate.clone(), options).await {
            Ok(snapshot) => shared.check_snapshot(&what, &snapshot, &revalidate, strict),
            Err(error) => shared.check_error(&format!("{what} revalidation"), &error),
        }
        shared.check_stage(&format!("{what} revalidation"), started, called, deadline);
    }
    session.close().await;
}

/// Draws the next operation.
fn next_op(rng: &mut Rng, keys: &[ResourceKey]) -> Op {
    let pick_keys = |rng: &mut Rng, max: u64| -> Vec<ResourceKey> {
        let n = 1 + rng.below(max);
        let mut picked: Vec<ResourceKey> = Vec::new();
        for _ in 0..n {
            // Half the picks hit 20 hot keys, so callers coalesce.
            let key = if rng.chance(50) {
                keys[rng.below(20) as usize * (keys.len() / 20)].clone()
            } else {
                rng.pick(keys).clone()
            };
            if !picked.contains(&key) {
                picked.push(key);
            }
        }
        picked
    };
    let cancel = |rng: &mut Rng, deadline: Duration| {
        rng.chance(20)
            .then(|| Duration::from_millis(rng.below(deadline.as_millis() as u64 + 1)))
    };
    match rng.below(100) {
        0..=61 => {
            let deadline = Duration::from_millis(30 + rng.below(1_500));
            Op::Build {
                keys: pick_keys(rng, 6),
                deadline,
                strict: rng.chance(60),
                cancel_after: cancel(rng, deadline),
            }
        }
        62..=73 => {
            let deadline = Duration::from_millis(100 + rng.below(3_000));
            Op::Session {
                first: pick_keys(rng, 4),
                second: pick_keys(rng, 3),
                deadline,
                pause: rng.millis(1_500),
                force_refresh: rng.chance(50),
                strict: rng.chance(50),
                cancel_after: cancel(rng, deadline),
            }
        }
        74..=89 => Op::Publish {
            key: rng.pick(keys).clone(),
            source: ["primary", "stream", "secondary", "batch"][rng.below(4) as usize],
            offset: match rng.below(20) {
                0 => -(rng.below(5_000) as f64) / 1000.0,
                _ => rng.below(3_000) as f64 / 1000.0,
            },
            force: rng.chance(3),
            replace_equal: rng.chance(20),
        },
        _ => Op::Invalidate {
            keys: pick_keys(rng, 3),
            namespace: rng.chance(2),
        },
    }
}

struct Storm {
    shared: Arc<Shared>,
    ops: JoinSet<()>,
    ticker: tokio::task::JoinHandle<()>,
}

impl Storm {
    fn new(seed: u64) -> Self {
        let clock = ManualClock::new(1_700_000_000.0);
        let chaos = Chaos::new(seed, clock.clone());
        let cache = RecordingCache::new();
        let primary = single("primary", &chaos, &["price"], 200)
            .with_priority(10)
            .with_timeout(Duration::from_millis(250))
            .with_max_concurrency(nz(4));
        let secondary = single("secondary", &chaos, &["price", "book"], 120)
            .with_priority(5)
            .with_timeout(Duration::from_millis(300))
            .with_queue_timeout(Duration::from_millis(150))
            .with_max_concurrency(nz(3));
        let batched = batch("batch", &chaos, &["book"], 150)
            .with_priority(1)
            .with_timeout(Duration::from_millis(400))
            .with_max_batch_size(nz(8));
        let spreads = derived("derived", &chaos, spread_inputs);
        let refresh_ahead = FreshnessPolicy::new(Duration::from_secs(1), Duration::from_secs(10))
            .and_then(|p| {
                p.with_refresh_mode(RefreshMode::RefreshAhead {
                    window: Duration::from_millis(300),
                })
            })
            .expect("valid policy");
        let swr = FreshnessPolicy::new(Duration::from_millis(800), Duration::from_secs(8))
            .and_then(|p| p.with_refresh_mode(RefreshMode::StaleWhileRevalidate))
            .expect("valid policy");
        let policies = PolicyResolver::new(FreshnessPolicy::default())
            .with_type_override("soak", "book", swr)
            .with_type_override(
                "soak",
                "spread",
                FreshnessPolicy::new(Duration::from_millis(500), Duration::from_secs(5))
                    .expect("valid policy"),
            )
            .with_dynamic(move |key| {
                (key.name() == "price" && index(key) % 4 == 0).then_some(refresh_ahead)
            });
        let authority = AuthorityResolver::new(
            SourceAuthorityPolicy::new(
                [
                    ("primary", 10),
                    ("stream", 8),
                    ("secondary", 5),
                    ("derived", 3),
                    ("batch", 1),
                ],
                0,
            )
            .expect("valid ranks"),
        );
        let builder = SnapshotBuilder::builder([
            primary.into(),
            secondary.into(),
            batched.into(),
            spreads.into(),
        ])
        .cache(Arc::new(cache.clone()))
        .clock(Arc::new(clock.clone()))
        .policies(policies)
        .authority(authority)
        .max_concurrency(8)
        // Per-key circuits: one failing key must not starve the others.
        .resilience(ResiliencePolicy {
            retry: RetryPolicy::default(),
            circuit: CircuitBreakerPolicy::default().with_scope(CircuitScope::Resource),
        })
        .build()
        .expect("valid builder");
        let keys = (0..PRICES)
            .map(|i| key("price", i))
            .chain((0..BOOKS).map(|i| key("book", i)))
            .chain((0..SPREADS).map(|i| key("spread", i)))
            .collect();
        // Wall time follows the paused tokio clock.
        let ticker = tokio::spawn(async move {
            loop {
                sleep(Duration::from_millis(50)).await;
                clock.advance(Duration::from_millis(50));
            }
        });
        Self {
            shared: Arc::new(Shared {
                seed,
                builder,
                cache,
                chaos,
                keys,
                stats: Stats::default(),
                failures: Mutex::default(),
            }),
            ops: JoinSet::new(),
            ticker,
        }
    }

    fn record(&self, joined: Result<(), tokio::task::JoinError>) {
        if let Err(error) = joined {
            self.shared
                .fail(format!("an operation did not return: {error}"));
        }
    }

    /// Issues operations until `builds` builds were issued, with
    /// checkpoints along the way.
    async fn run(&mut self, builds: u64) {
        let mut rng = Rng::new(self.shared.seed);
        let every = (builds / CHECKPOINTS).max(1);
        let mut next_checkpoint = every;
        let mut id = 0;
        let mut issued = 0;
        while issued < builds {
            if self.ops.len() >= MAX_OUTSTANDING {
                if let Some(joined) = self.ops.join_next().await {
                    self.record(joined);
                }
            }
            sleep(rng.millis(4)).await;
            let op = next_op(&mut rng, &self.shared.keys);
            if matches!(op, Op::Build { .. }) {
                issued += 1;
            }
            id += 1;
            self.ops.spawn(op.run(Arc::clone(&self.shared), id));
            if issued == next_checkpoint && issued < builds {
                next_checkpoint += every;
                self.checkpoint(&format!("checkpoint after {issued} builds"))
                    .await;
            }
        }
        self.checkpoint("end of the storm").await;
    }

    /// Drains every operation, lets detached work finish and checks the
    /// quiescent invariants.
    async fn checkpoint(&mut self, label: &str) {
        while let Some(joined) = self.ops.join_next().await {
            self.record(joined);
        }
        let builder = &self.shared.builder;
        let give_up = Instant::now() + Duration::from_secs(120);
        loop {
            if tokio::time::timeout(Duration::from_secs(60), builder.wait_for_refreshes())
                .await
                .is_err()
            {
                self.shared
                    .fail(format!("{label}: wait_for_refreshes() hung"));
            }
            let idle = builder.active_tasks() == 0
                && builder.in_flight() == 0
                && self.shared.chaos.in_flight.now() == 0;
            if idle {
                break;
            }
            if Instant::now() >= give_up {
                self.shared.fail(format!(
                    "{label}: not idle 120 s after the last operation: {} tasks, {} keys in flight, {} source calls",
                    builder.active_tasks(),
                    builder.in_flight(),
                    self.shared.chaos.in_flight.now()
                ));
                break;
            }
            sleep(Duration::from_millis(10)).await;
        }
        let capacity = builder.capacity();
        if capacity.global.in_use != 0 || capacity.global.waiting != 0 {
            self.shared.fail(format!(
                "{label}: global capacity not released: {:?}",
                capacity.global
            ));
        }
        for (name, limit) in &capacity.sources {
            if limit.in_use != 0 || limit.waiting != 0 {
                self.shared.fail(format!(
                    "{label}: capacity of {name} not released: {limit:?}"
                ));
            }
        }
        if builder.in_flight() != 0 {
            self.shared.fail(format!(
                "{label}: {} keys left in the single-flight table",
                builder.in_flight()
            ));
        }
        if builder.background_refreshes() != 0 {
            self.shared.fail(format!(
                "{label}: {} background refreshes left after wait_for_refreshes()",
                builder.background_refreshes()
            ));
        }
        self.assert_clean(label);
    }

    /// Fails (with the seed) when anything went wrong so far.
    fn assert_clean(&self, label: &str) {
        let shared = &self.shared;
        let mut failures = lock(&shared.failures).clone();
        failures.extend(shared.chaos.in_flight.violations());
        failures.extend(lock(&shared.chaos.lies).iter().cloned());
        failures.extend(shared.cache.model().violations.iter().cloned());
        if !failures.is_empty() {
            let total = failures.len();
            failures.truncate(25);
            panic!(
                "soak seed {seed} (replay with COALESTRA_SOAK_SEED={seed}): {label}: {total} failure(s):\n  {}",
                failures.join("\n  "),
                seed = shared.seed,
            );
        }
    }

    /// The cache against the shadow model, key by key.
    async fn compare_cache_with_model(&self) {
        let shared = &self.shared;
        let unbounded = FreshnessPolicy::fresh_for(FreshnessPolicy::UNBOUNDED);
        let now = shared.chaos.clock.now();
        for key in &shared.keys {
            let stored = shared
                .builder
                .cache()
                .get(key, unbounded, now)
                .await
                .expect("memory reads succeed")
                .map(|hit| strength(&hit.value));
            let expected = shared.cache.expected(key);
            if stored != expected {
                shared.fail(format!(
                    "final cache: {key} holds {stored:?}, the newest/highest-authority offered revision is {expected:?}"
                ));
            }
        }
        self.assert_clean("final cache comparison");
    }

    /// After the storm: calm sources, closed circuits, every key builds.
    async fn still_usable(&self) {
        let shared = &self.shared;
        shared.chaos.calm.store(true, Ordering::SeqCst);
        shared.builder.reset_circuits(None);
        let options = BuildOptions::new().deadline(Duration::from_secs(10));
        match shared
            .builder
            .build_with(shared.keys.clone(), options)
            .await
        {
            Ok(snapshot) => shared.check_snapshot("final build", &snapshot, &shared.keys, true),
            Err(error) => shared.fail(format!("the builder is unusable after the storm: {error}")),
        }
        self.assert_clean("final build");
    }

    fn coverage(&self, builds: u64) {
        let shared = &self.shared;
        let (stats, injected) = (&shared.stats, &shared.chaos.injected);
        let model = shared.cache.model();
        let (queue_timeouts, source_timeouts, deadlines) = shared.builder.timeout_counts();
        let summary = format!(
            "seed {}: {} builds ({} ok, {} failed), {} cancelled, {} sessions ({} stages ok, {} failed, {} revalidations), \
             {} publications ({} rejected), {} invalidations; {} source calls ({} failures, {} panics, {} slow, {} stale, {} future); \
             timeouts: {queue_timeouts} queue, {source_timeouts} source, {deadlines} deadlines; cache: {} writes offered ({} forced), {} removals; \
             max fetches of one key in flight: {}",
            shared.seed,
            get(&stats.builds),
            get(&stats.builds_ok),
            get(&stats.builds_failed),
            get(&stats.cancelled),
            get(&stats.sessions),
            get(&stats.stages_ok),
            get(&stats.stages_failed),
            get(&stats.revalidations),
            get(&stats.publications),
            get(&stats.publications_rejected),
            get(&stats.invalidations),
            shared.chaos.in_flight.total(),
            get(&injected.failures),
            get(&injected.panics),
            get(&injected.slow),
            get(&injected.stale),
            get(&injected.future),
            model.offered,
            model.forced,
            model.removals,
            shared.chaos.in_flight.max_seen(),
        );
        println!("{summary}");
        // A storm that never hit a fault proves nothing: every fault class
        // must have happened (for the default size and up).
        if builds >= DEFAULT_BUILDS {
            let covered = [
                ("successful builds", get(&stats.builds_ok)),
                ("failed builds", get(&stats.builds_failed)),
                ("cancelled callers", get(&stats.cancelled)),
                ("session stages", get(&stats.stages_ok)),
                ("revalidations", get(&stats.revalidations)),
                ("publications", get(&stats.publications)),
                ("invalidations", get(&stats.invalidations)),
                ("source failures", get(&injected.failures)),
                ("source panics", get(&injected.panics)),
                ("stale results", get(&injected.stale)),
                ("source timeouts", source_timeouts),
                ("build deadlines", deadlines),
                ("forced writes", model.forced),
                ("cache removals", model.removals),
            ];
            let missing: Vec<&str> = covered
                .iter()
                .filter(|(_, n)| *n == 0)
                .map(|(what, _)| *what)
                .collect();
            assert!(
                missing.is_empty(),
                "{summary}\nthe storm never produced: {missing:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn fault_storm_keeps_every_invariant() {
    quiet_injected_panics();
    let seed = env_u64("COALESTRA_SOAK_SEED").unwrap_or(DEFAULT_SEED);
    let builds = env_u64("COALESTRA_SOAK_BUILDS")
        .unwrap_or(DEFAULT_BUILDS)
        .max(1);
    println!("soak seed {seed} (replay with COALESTRA_SOAK_SEED={seed}), {builds} builds");
    let mut storm = Storm::new(seed);
    storm.run(builds).await;
    storm.compare_cache_with_model().await;
    storm.still_usable().await;
    storm.coverage(builds);
    let builder = storm.shared.builder.clone();
    builder.close().await;
    assert!(builder.is_closed());
    assert_eq!(
        builder.active_tasks(),
        0,
        "close() left a task running (seed {seed})"
    );
    storm.ticker.abort();
}
