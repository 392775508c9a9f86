//! Shared support for the blocking facade's tests: a hold point whose
//! arrivals plain threads can wait for, a cache whose writes can be held or
//! failed, and small constructors.
//!
//! Every test synchronizes with holds and blocking waits; durations only
//! bound waits that would otherwise hang (liveness), never to let a race
//! settle.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use coalestra_blocking::{BlockingOptions, BlockingSnapshotBuilder};
use coalestra_cache::MemoryCache;
use coalestra_core::{
    CacheError, CircuitBreakerPolicy, FetchContext, FnSource, ResiliencePolicy, ResourceKey,
    RetryPolicy, SnapshotCache, SourceError, SourceOutput, SourceRef,
};
use coalestra_orchestration::{BuilderConfig, SnapshotBuilder};
use coalestra_test::{Gate, ManualClock, ScriptedCache};

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

/// A [`MemoryCache`] behind a [`ScriptedCache`] whose writes can be held at
/// a [`Hold`] or failed. Clones share the cache.
#[derive(Clone)]
pub struct TestCache {
    memory: MemoryCache,
    scripted: Arc<ScriptedCache>,
}

impl TestCache {
    /// Writes pass straight through.
    pub fn passing() -> Self {
        Self::scripted(|cache| cache)
    }

    /// Every write waits at the returned hold until it is released.
    pub fn held() -> (Self, Hold) {
        let hold = Hold::new();
        let waiting = hold.clone();
        let cache = Self::scripted(move |cache| {
            cache.writes_after(move || {
                let hold = waiting.clone();
                async move { hold.pass().await }
            })
        });
        (cache, hold)
    }

    /// Every write fails with "cache write failed".
    pub fn failing() -> Self {
        Self::scripted(|cache| {
            cache.failing_writes(CacheError::Unavailable("cache write failed".into()))
        })
    }

    fn scripted(script: impl FnOnce(ScriptedCache) -> ScriptedCache) -> Self {
        let memory = MemoryCache::new();
        let scripted = Arc::new(script(ScriptedCache::new(memory.clone())));
        Self { memory, scripted }
    }

    /// The cache a builder uses.
    pub fn shared(&self) -> Arc<dyn SnapshotCache> {
        Arc::clone(&self.scripted) as Arc<dyn SnapshotCache>
    }

    /// The stored revision of `key`, if any.
    pub fn peek(&self, key: &ResourceKey) -> Option<coalestra_core::SnapshotValue> {
        self.memory.peek(key)
    }

    pub fn write_calls(&self) -> usize {
        self.scripted.writes()
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
        .cache(cache.shared())
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
