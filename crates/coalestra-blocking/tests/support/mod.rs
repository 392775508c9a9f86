//! Shared support for the blocking facade's tests: a hold point whose
//! arrivals plain threads can wait for, a cache whose writes can be held or
//! failed, and small constructors.
//!
//! Every test synchronizes with holds and blocking waits; durations only
//! bound waits that would otherwise hang (liveness), never to let a race
//! settle.
#![allow(dead_code)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use coalestra_blocking::{BlockingOptions, BlockingSnapshotBuilder};
use coalestra_cache::MemoryCache;
use coalestra_core::{
    CacheError, CacheHit, CacheRead, CacheStats, CacheWrite, CircuitBreakerPolicy, FetchContext,
    FnSource, ResiliencePolicy, ResourceKey, RetryPolicy, SnapshotCache, SourceError, SourceOutput,
    SourceRef, Timestamp, WriteResult,
};
use coalestra_orchestration::{BuilderConfig, SnapshotBuilder};
use coalestra_test::{Gate, ManualClock};

/// Bounds every wait that would hang if the facade were broken.
pub const LIVENESS: Duration = Duration::from_secs(30);

/// The time on every test clock.
pub const NOW: f64 = 1_000.0;

/// Holds async operations until released; plain threads wait for arrivals.
#[derive(Clone, Default)]
pub struct Hold {
    gate: Gate,
    arrivals: Arc<(Mutex<usize>, Condvar)>,
}

impl Hold {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts an arrival, then waits until released.
    pub async fn pass(&self) {
        {
            let (count, arrived) = &*self.arrivals;
            *count.lock().unwrap() += 1;
            arrived.notify_all();
        }
        self.gate.pass().await;
    }

    /// Blocks until `n` operations arrived (panics after [`LIVENESS`]).
    pub fn wait_for_arrivals(&self, n: usize) {
        let (count, arrived) = &*self.arrivals;
        let guard = count.lock().unwrap();
        let (guard, timeout) = arrived
            .wait_timeout_while(guard, LIVENESS, |count| *count < n)
            .unwrap();
        assert!(
            !timeout.timed_out(),
            "only {} of {n} operations arrived",
            *guard
        );
    }

    pub fn arrivals(&self) -> usize {
        *self.arrivals.0.lock().unwrap()
    }

    /// Lets every held and later operation through.
    pub fn release(&self) {
        self.gate.open();
    }
}

/// Waits (yielding, never sleeping) until `condition` holds; panics after
/// [`LIVENESS`].
pub fn wait_until(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + LIVENESS;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::yield_now();
    }
}

/// What a [`TestCache`] does with batch writes.
#[derive(Clone)]
enum Writes {
    Pass,
    Hold(Hold),
    Fail,
}

/// A [`MemoryCache`] whose writes can be held at a [`Hold`] or failed.
#[derive(Clone)]
pub struct TestCache {
    inner: MemoryCache,
    writes: Writes,
    write_calls: Arc<AtomicUsize>,
}

impl TestCache {
    /// Writes pass straight through.
    pub fn passing() -> Self {
        Self::with(Writes::Pass)
    }

    /// Every write waits at the returned hold until it is released.
    pub fn held() -> (Self, Hold) {
        let hold = Hold::new();
        (Self::with(Writes::Hold(hold.clone())), hold)
    }

    /// Every write fails with "cache write failed".
    pub fn failing() -> Self {
        Self::with(Writes::Fail)
    }

    fn with(writes: Writes) -> Self {
        Self {
            inner: MemoryCache::new(),
            writes,
            write_calls: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The stored revision of `key`, if any.
    pub fn peek(&self, key: &ResourceKey) -> Option<coalestra_core::SnapshotValue> {
        self.inner.peek(key)
    }

    pub fn write_calls(&self) -> usize {
        self.write_calls.load(Ordering::SeqCst)
    }
}

impl fmt::Debug for TestCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestCache").finish_non_exhaustive()
    }
}

type CacheFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, CacheError>> + Send + 'a>>;

// The trait is declared with `async_trait`; this is its expanded form, so the
// tests need no macro dependency.
impl SnapshotCache for TestCache {
    fn get_many<'life0, 'life1, 'async_trait>(
        &'life0 self,
        reads: &'life1 [CacheRead],
        now: Timestamp,
    ) -> CacheFuture<'async_trait, Vec<Option<CacheHit>>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.get_many(reads, now)
    }

    fn write_many<'life0, 'async_trait>(
        &'life0 self,
        writes: Vec<CacheWrite>,
    ) -> CacheFuture<'async_trait, Vec<WriteResult>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        Box::pin(async move {
            self.write_calls.fetch_add(1, Ordering::SeqCst);
            match &self.writes {
                Writes::Pass => {}
                Writes::Hold(hold) => hold.pass().await,
                Writes::Fail => return Err(CacheError::Unavailable("cache write failed".into())),
            }
            self.inner.write_many(writes).await
        })
    }

    fn invalidate_many<'life0, 'life1, 'async_trait>(
        &'life0 self,
        keys: &'life1 [ResourceKey],
    ) -> CacheFuture<'async_trait, Vec<ResourceKey>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.invalidate_many(keys)
    }

    fn invalidate_namespace<'life0, 'life1, 'async_trait>(
        &'life0 self,
        namespace: &'life1 str,
    ) -> CacheFuture<'async_trait, Vec<ResourceKey>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.invalidate_namespace(namespace)
    }

    fn clear<'life0, 'async_trait>(&'life0 self) -> CacheFuture<'async_trait, u64>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        self.inner.clear()
    }

    fn stats(&self) -> CacheStats {
        self.inner.stats()
    }

    fn validates_dependency_versions(&self) -> bool {
        self.inner.validates_dependency_versions()
    }
}

/// One attempt per source call, no circuit breaking: failures surface at
/// once and never trip anything between tests.
pub fn single_attempt() -> ResiliencePolicy {
    ResiliencePolicy::new(RetryPolicy::none(), CircuitBreakerPolicy::disabled())
}

/// A builder configuration with a manual clock at [`NOW`] and single
/// attempts.
pub fn config(sources: Vec<SourceRef>) -> BuilderConfig {
    SnapshotBuilder::builder(sources)
        .clock(Arc::new(ManualClock::new(NOW)))
        .resilience(single_attempt())
}

/// A facade over `builder` with the given options.
pub fn facade(builder: SnapshotBuilder, options: BlockingOptions) -> BlockingSnapshotBuilder {
    BlockingSnapshotBuilder::new(builder, options).expect("the facade starts")
}

/// A facade over a builder of `sources` writing into `cache`.
pub fn facade_with_cache(
    sources: Vec<SourceRef>,
    cache: &TestCache,
    options: BlockingOptions,
) -> BlockingSnapshotBuilder {
    let builder = config(sources)
        .cache(Arc::new(cache.clone()))
        .build()
        .expect("valid builder");
    facade(builder, options)
}

/// A source answering `"source-value"` for every key and counting calls.
pub fn source_value(name: &str) -> (FnSource, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let source = FnSource::new(name, move |_key: ResourceKey, _ctx: FetchContext| {
        counted.fetch_add(1, Ordering::SeqCst);
        async { Ok(SourceOutput::new("source-value".to_owned())) }
    });
    (source, calls)
}

/// A source that waits at `hold` before answering `"held-value"`.
pub fn held_source(name: &str, hold: &Hold) -> FnSource {
    let hold = hold.clone();
    FnSource::new(name, move |_key: ResourceKey, _ctx: FetchContext| {
        let hold = hold.clone();
        async move {
            hold.pass().await;
            Ok::<_, SourceError>(SourceOutput::new("held-value".to_owned()))
        }
    })
}
