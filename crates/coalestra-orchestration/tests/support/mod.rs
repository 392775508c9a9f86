//! Fixtures shared by the orchestration integration tests: common keys,
//! builder configurations on a manual clock, paused-clock synchronisation,
//! builds guarded against hangs, call logs and counters, snapshot
//! inspection.
//!
//! Every test binary compiles this module on its own and uses only part of
//! it, hence the one `dead_code` allowance.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coalestra_core::{
    BuildOptions, CircuitBreakerPolicy, FetchContext, FnSource, FreshnessPolicy, ManualClock,
    ResiliencePolicy, ResourceError, ResourceKey, RetryPolicy, Snapshot, SourceError, SourceOutput,
    SourceRef,
};
use coalestra_orchestration::{BuilderConfig, SnapshotBuilder};
use coalestra_test::{key, MockDerivedSource, RecordingSink};
use tokio::task::JoinHandle;

// ---------------------------------------------------------------- keys

/// `market:price:A`.
pub fn a() -> ResourceKey {
    key("market:price:A")
}

/// `market:price:B`.
pub fn b() -> ResourceKey {
    key("market:price:B")
}

/// `market:price:C`.
pub fn c() -> ResourceKey {
    key("market:price:C")
}

/// `demo:raw:x`, the input of the derived chain.
pub fn raw() -> ResourceKey {
    key("demo:raw:x")
}

/// `demo:doubled:x`, derived from [`raw`].
pub fn doubled() -> ResourceKey {
    key("demo:doubled:x")
}

/// `demo:chained:x`, derived from [`doubled`].
pub fn chained() -> ResourceKey {
    key("demo:chained:x")
}

// ------------------------------------------------------------ policies

/// Upper bound for anything that could deadlock; far beyond any legitimate
/// build on the paused clock. Also bounds real-time waits on blocking
/// threads (timeout_guarantees.rs: a blocking source's `recv_timeout`),
/// where it is a wall-clock minute.
pub const HANG_GUARD: Duration = Duration::from_secs(60);

/// One attempt per source call: no retries, no circuit breaker.
pub fn single_attempt() -> ResiliencePolicy {
    ResiliencePolicy::new(RetryPolicy::none(), CircuitBreakerPolicy::disabled())
}

/// Fresh for ten minutes, usable stale for twenty.
pub fn long_ttl() -> FreshnessPolicy {
    FreshnessPolicy::new(Duration::from_secs(600), Duration::from_secs(1200)).expect("valid policy")
}

/// Non-strict build options: failed keys are reported in the snapshot
/// instead of failing the build.
pub fn lenient() -> BuildOptions {
    BuildOptions::new().strict(false)
}

/// The derived source "derive" over the chain keys: [`doubled`] = [`raw`]
/// * 2 and [`chained`] = [`doubled`] + 1.
pub fn chain_deriver() -> MockDerivedSource {
    MockDerivedSource::new("derive", |key, deps| {
        let (dep, f): (ResourceKey, fn(u64) -> u64) = match key.name() {
            "doubled" => (raw(), |v| v * 2),
            _ => (doubled(), |v| v + 1),
        };
        let v = deps.value::<u64>(&dep).map_err(SourceError::protocol)?;
        Ok(SourceOutput::new(f(*v)))
    })
    .depends_on(doubled(), [raw()])
    .depends_on(chained(), [doubled()])
    .with_supports(|k| k.name() == "doubled" || k.name() == "chained")
}

// ------------------------------------------------------ configurations

/// A builder configuration over `sources` on a manual wall clock at 1000 s,
/// with the default resilience.
pub fn wall_clock_config(sources: Vec<SourceRef>) -> BuilderConfig {
    SnapshotBuilder::builder(sources).clock(Arc::new(ManualClock::new(1_000.0)))
}

/// A builder configuration over `sources` on `clock` with one attempt per
/// source call (no retries, no circuit breaker).
pub fn single_attempt_config(sources: Vec<SourceRef>, clock: &ManualClock) -> BuilderConfig {
    SnapshotBuilder::builder(sources)
        .clock(Arc::new(clock.clone()))
        .resilience(single_attempt())
}

/// `config` reporting its events and metrics to `sink`.
pub fn recording(config: BuilderConfig, sink: &RecordingSink) -> BuilderConfig {
    config
        .events(Arc::new(sink.clone()))
        .metrics(Arc::new(sink.clone()))
}

/// Builds `config` with `sink` as both its event and its metrics sink.
pub fn recorded_by(config: BuilderConfig, sink: &RecordingSink) -> SnapshotBuilder {
    recording(config, sink).build().expect("a valid builder")
}

// ------------------------------------------------- paused-clock helpers

/// Lets every runnable task run until it blocks, without moving the paused
/// clock (tokio defers a yielded task until the other ready tasks ran).
pub async fn settle() {
    for _ in 0..64 {
        tokio::task::yield_now().await;
    }
}

/// Waits (on the paused clock) until no detached work of the builder runs.
pub async fn drain(builder: &SnapshotBuilder) {
    for _ in 0..100_000 {
        if builder.active_tasks() == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    panic!(
        "detached work never finished: {} tasks",
        builder.active_tasks()
    );
}

// ------------------------------------------------------------- builds

/// Builds `keys` non-strictly with `options`, failing the test on a hang.
pub async fn build_lenient(
    builder: &SnapshotBuilder,
    keys: &[ResourceKey],
    options: BuildOptions,
) -> Snapshot {
    tokio::time::timeout(
        HANG_GUARD,
        builder.build_with(keys.to_vec(), options.strict(false)),
    )
    .await
    .expect("build must not hang")
    .expect("non-strict build returns a snapshot")
}

/// Spawns a strict build of `keys` that must succeed without hanging.
pub fn spawn_strict(builder: &SnapshotBuilder, keys: Vec<ResourceKey>) -> JoinHandle<Snapshot> {
    let builder = builder.clone();
    tokio::spawn(async move {
        tokio::time::timeout(HANG_GUARD, builder.build(keys))
            .await
            .expect("build must not hang")
            .expect("strict build succeeds")
    })
}

/// Spawns a non-strict build of `keys` with `options`.
pub fn spawn_lenient(
    builder: &SnapshotBuilder,
    keys: Vec<ResourceKey>,
    options: BuildOptions,
) -> JoinHandle<Snapshot> {
    let builder = builder.clone();
    tokio::spawn(async move { build_lenient(&builder, &keys, options).await })
}

/// Awaits a spawned build, failing the test on a hang or a panic.
pub async fn join(handle: JoinHandle<Snapshot>) -> Snapshot {
    tokio::time::timeout(HANG_GUARD, handle)
        .await
        .expect("build task must finish")
        .expect("build task must not panic")
}

// ------------------------------------------------ snapshot inspection

/// The text value of `key`, failing the test when there is none.
pub fn text<'a>(snapshot: &'a Snapshot, key: &ResourceKey) -> &'a str {
    snapshot
        .value::<String>(key)
        .unwrap_or_else(|e| panic!("{key} should have a text value: {e}"))
}

/// (source, error type, attempts) of every failure of `key`.
pub fn failures(snapshot: &Snapshot, key: &ResourceKey) -> Vec<(String, String, u32)> {
    let error = snapshot
        .error(key)
        .unwrap_or_else(|| panic!("{key} should have failed, got {:?}", snapshot.get(key)));
    failure_details(error)
        .into_iter()
        .map(|(source, error_type, _message, attempts)| (source, error_type, attempts))
        .collect()
}

/// The expected [`failures`] of a key that failed once, at one source.
pub fn one_failure(source: &str, error_type: &str, attempts: u32) -> Vec<(String, String, u32)> {
    vec![(source.to_owned(), error_type.to_owned(), attempts)]
}

/// (source, error type, message, attempts) of every failure in `error`.
pub fn failure_details(error: &ResourceError) -> Vec<(String, String, String, u32)> {
    error
        .failures()
        .iter()
        .map(|f| {
            (
                f.source.to_string(),
                f.error.error_type().to_owned(),
                f.error.to_string(),
                f.attempts,
            )
        })
        .collect()
}

/// The rendered error of every failure of `key` (none when it resolved).
pub fn failure_messages(snapshot: &Snapshot, key: &ResourceKey) -> Vec<String> {
    snapshot
        .error(key)
        .map(|e| e.failures().iter().map(|f| f.error.to_string()).collect())
        .unwrap_or_default()
}

// ----------------------------------------------------------- call logs

/// Entries recorded by test sources, in call order.
pub type Log = Arc<Mutex<Vec<String>>>;

/// An empty [`Log`].
pub fn new_log() -> Log {
    Arc::default()
}

/// Appends `entry` to `log`.
pub fn push(log: &Log, entry: String) {
    log.lock().expect("log lock poisoned").push(entry);
}

/// Everything recorded in `log` so far.
pub fn entries(log: &Log) -> Vec<String> {
    log.lock().expect("log lock poisoned").clone()
}

/// How often `entry` was recorded in `log`.
pub fn count(log: &Log, entry: &str) -> usize {
    entries(log).iter().filter(|e| *e == entry).count()
}

/// The key lists of every batch call, in call order.
pub type Batches = Arc<Mutex<Vec<Vec<ResourceKey>>>>;

/// Every batch call recorded in `batches` so far.
pub fn batch_calls(batches: &Batches) -> Vec<Vec<ResourceKey>> {
    batches.lock().expect("batch log poisoned").clone()
}

/// Calls per rendered key, and the snapshot id each call saw.
#[derive(Default)]
struct CallLog {
    per_key: HashMap<String, usize>,
    ids: Vec<String>,
}

/// Source calls counted per key, shared with test sources such as
/// [`numbered`].
#[derive(Clone, Default)]
pub struct Calls(Arc<Mutex<CallLog>>);

impl Calls {
    /// Counts a call for `key` made with `ctx`: the call's number for `key`.
    pub fn bump(&self, key: &ResourceKey, ctx: &FetchContext) -> usize {
        let mut log = self.0.lock().expect("calls lock");
        log.ids.push(ctx.snapshot_id.to_string());
        let n = log.per_key.entry(key.to_string()).or_default();
        *n += 1;
        *n
    }

    /// The calls counted for `key`.
    pub fn of(&self, key: &ResourceKey) -> usize {
        self.0
            .lock()
            .expect("calls lock")
            .per_key
            .get(&key.to_string())
            .copied()
            .unwrap_or(0)
    }

    /// The calls counted for every key.
    pub fn total(&self) -> usize {
        self.0.lock().expect("calls lock").per_key.values().sum()
    }

    /// The snapshot id of every call, in call order.
    pub fn ids(&self) -> Vec<String> {
        self.0.lock().expect("calls lock").ids.clone()
    }
}

/// A source answering `"<subject>-<n>"` on its n-th call for a key.
pub fn numbered(name: &str, calls: &Calls) -> FnSource {
    let calls = calls.clone();
    FnSource::new(name, move |key: ResourceKey, ctx: FetchContext| {
        let n = calls.bump(&key, &ctx);
        async move { Ok(SourceOutput::new(format!("{}-{n}", key.subject()))) }
    })
}

/// A call counter at zero, shared with a test source.
pub fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

/// The calls `counter` has counted so far.
pub fn counted(counter: &AtomicUsize) -> usize {
    counter.load(Ordering::SeqCst)
}
