//! `ScriptedCache`: pass-through, holds, failures, panics and counts, over a
//! small recording cache. Every test runs on paused time and synchronises
//! with gates, never with real sleeps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use coalestra_core::{
    CacheError, CacheHit, CacheLookup, CacheRead, CacheStats, CacheWrite, FreshnessPolicy, Payload,
    ResourceKey, SnapshotCache, SnapshotValue, ValueParts, WriteOutcome, WriteResult,
};
use coalestra_test::{key, Gate, ScriptedCache, Timestamp};

/// Records what reaches it; reads miss, writes are stored.
#[derive(Debug, Default)]
struct Recording {
    calls: Mutex<Vec<&'static str>>,
}

impl Recording {
    fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().clone()
    }

    fn record(&self, call: &'static str) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait]
impl SnapshotCache for Recording {
    async fn get_many(
        &self,
        reads: &[CacheRead],
        _now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        self.record("get_many");
        Ok(vec![None; reads.len()])
    }
    async fn lookup_many(
        &self,
        lookups: &[CacheLookup<'_>],
        _now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        self.record("lookup_many");
        Ok(vec![None; lookups.len()])
    }
    async fn write_many(&self, writes: Vec<CacheWrite>) -> Result<Vec<WriteResult>, CacheError> {
        self.record("write_many");
        Ok(writes
            .into_iter()
            .map(|w| WriteResult {
                outcome: WriteOutcome::Stored,
                previous: None,
                current: w.value,
            })
            .collect())
    }
    async fn invalidate_many(&self, keys: &[ResourceKey]) -> Result<Vec<ResourceKey>, CacheError> {
        self.record("invalidate_many");
        Ok(keys.to_vec())
    }
    async fn invalidate_namespace(&self, _namespace: &str) -> Result<Vec<ResourceKey>, CacheError> {
        self.record("invalidate_namespace");
        Ok(Vec::new())
    }
    async fn clear(&self) -> Result<u64, CacheError> {
        self.record("clear");
        Ok(7)
    }
    fn stats(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        stats.sets = 3;
        stats
    }
    fn validates_dependency_versions(&self) -> bool {
        true
    }
}

fn scripted() -> (Arc<Recording>, ScriptedCache) {
    let inner = Arc::new(Recording::default());
    let cache = ScriptedCache::over(inner.clone());
    (inner, cache)
}

fn write() -> CacheWrite {
    let parts = ValueParts::new(
        key("rates:eur"),
        Payload::new(1.08_f64),
        "rest",
        Timestamp::from_secs(10.0),
    );
    CacheWrite::new(SnapshotValue::from_parts(parts))
}

async fn read(cache: &ScriptedCache) -> Result<Option<CacheHit>, CacheError> {
    let now = Timestamp::from_secs(10.0);
    cache
        .get(&key("rates:eur"), FreshnessPolicy::default(), now)
        .await
}

#[tokio::test(start_paused = true)]
async fn an_unscripted_cache_passes_every_call_through() {
    let (inner, cache) = scripted();
    assert!(read(&cache).await.unwrap().is_none());
    let stored = cache.write(write()).await.unwrap();
    assert_eq!(stored.outcome, WriteOutcome::Stored);
    assert!(cache.invalidate(&key("rates:eur")).await.unwrap());
    assert!(cache
        .invalidate_namespace("rates")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(cache.clear().await.unwrap(), 7);
    assert_eq!(
        inner.calls(),
        [
            "get_many",
            "write_many",
            "invalidate_many",
            "invalidate_namespace",
            "clear"
        ]
    );
    assert_eq!(cache.stats().sets, 3);
    assert!(cache.validates_dependency_versions());
    assert_eq!(
        (cache.reads(), cache.writes(), cache.invalidations()),
        (1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn held_reads_and_writes_wait_for_their_hold() {
    let (inner, cache) = scripted();
    let (reads, writes) = (Gate::new(), Gate::new());
    let cache = Arc::new(cache.reads_at(&reads).writes_at(&writes));
    let reading = tokio::spawn({
        let cache = Arc::clone(&cache);
        async move { read(&cache).await }
    });
    let writing = tokio::spawn({
        let cache = Arc::clone(&cache);
        async move { cache.write(write()).await }
    });
    reads.wait_for_arrivals(1).await;
    writes.wait_for_arrivals(1).await;
    // Both calls are counted but neither reached the inner cache.
    assert_eq!((cache.reads(), cache.writes()), (1, 1));
    assert!(inner.calls().is_empty());

    writes.open();
    assert_eq!(
        writing.await.unwrap().unwrap().outcome,
        WriteOutcome::Stored
    );
    assert_eq!(inner.calls(), ["write_many"]);
    reads.open();
    assert!(reading.await.unwrap().unwrap().is_none());
    assert_eq!(inner.calls(), ["write_many", "get_many"]);
    assert!(format!("{cache:?}").contains("reads: \"held\""));
}

#[tokio::test(start_paused = true)]
async fn failing_calls_never_reach_the_inner_cache() {
    let (inner, cache) = scripted();
    let down = CacheError::Unavailable("replica down".into());
    let cache = cache
        .failing_reads(down.clone())
        .failing_writes(CacheError::Closed)
        // A hold still runs before the failure.
        .reads_after(|| tokio::time::sleep(Duration::from_millis(50)));
    let started = tokio::time::Instant::now();
    assert_eq!(read(&cache).await.unwrap_err(), down);
    assert_eq!(started.elapsed(), Duration::from_millis(50));
    assert_eq!(cache.write(write()).await.unwrap_err(), CacheError::Closed);
    assert!(inner.calls().is_empty());
    assert_eq!((cache.reads(), cache.writes()), (1, 1));
    let debug = format!("{cache:?}");
    assert!(debug.contains("reads: \"held, then fails\""), "{debug}");
}

#[tokio::test(start_paused = true)]
async fn panicking_calls_panic_with_their_message() {
    let (inner, cache) = scripted();
    let cache = Arc::new(
        cache
            .panicking_writes("cache write exploded")
            .panicking_reads("cache read exploded"),
    );
    let writing = tokio::spawn({
        let cache = Arc::clone(&cache);
        async move { cache.write(write()).await }
    });
    let panic = writing.await.unwrap_err().into_panic();
    assert_eq!(
        panic.downcast_ref::<String>().map(String::as_str),
        Some("cache write exploded")
    );
    let reading = tokio::spawn({
        let cache = Arc::clone(&cache);
        async move { read(&cache).await }
    });
    let panic = reading.await.unwrap_err().into_panic();
    assert_eq!(
        panic.downcast_ref::<String>().map(String::as_str),
        Some("cache read exploded")
    );
    assert!(inner.calls().is_empty());
    assert_eq!((cache.reads(), cache.writes()), (1, 1));
    assert!(format!("{cache:?}").contains("writes: \"panics\""));
}

#[tokio::test(start_paused = true)]
async fn borrowed_lookups_are_scripted_and_reach_the_inner_lookup() {
    let (inner, cache) = scripted();
    let gate = Gate::new();
    let cache = Arc::new(cache.reads_at(&gate));
    let looking = tokio::spawn({
        let cache = Arc::clone(&cache);
        async move {
            let (price, policy) = (key("rates:eur"), FreshnessPolicy::default());
            let lookups = [CacheLookup {
                key: &price,
                policy: &policy,
            }];
            cache
                .lookup_many(&lookups, Timestamp::from_secs(10.0))
                .await
        }
    });
    gate.wait_for_arrivals(1).await;
    assert_eq!(cache.reads(), 1);
    assert!(inner.calls().is_empty());
    gate.open();
    assert_eq!(looking.await.unwrap().unwrap().len(), 1);
    // The inner cache's own borrowed read, not its `get_many`.
    assert_eq!(inner.calls(), ["lookup_many"]);
    assert!(Arc::ptr_eq(
        cache.inner(),
        &(Arc::clone(&inner) as Arc<dyn SnapshotCache>)
    ));
}

#[tokio::test(start_paused = true)]
async fn the_debug_form_tells_every_scripted_step() {
    let (_inner, cache) = scripted();
    let passing = format!("{cache:?}");
    assert!(passing.contains("reads: \"passes\""), "{passing}");
    let cache = cache
        .reads_after(|| async {})
        .panicking_reads("boom")
        .writes_after(|| async {})
        .failing_writes(CacheError::Closed);
    let scripted = format!("{cache:?}");
    assert!(
        scripted.contains("reads: \"held, then panics\""),
        "{scripted}"
    );
    assert!(
        scripted.contains("writes: \"held, then fails\""),
        "{scripted}"
    );
}
