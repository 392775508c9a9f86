//! Sources of the throw-away consumer projects of the `package` step (see
//! [`crate::packaging`]). They compile against the packaged crates from
//! outside the workspace, so they may use only the public API.

/// `app/src/main.rs`: an application using only `coalestra` (tokio only
/// provides the runtime). Builds a snapshot from an `FnSource`, checks
/// single-flight caching on a second build and prints the values.
pub const APP: &str = r#"//! Consumer check: an application that depends only on `coalestra`.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra::prelude::*;

fn key(subject: &str) -> ResourceKey {
    ResourceKey::new("market", "price", subject).expect("valid key")
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let prices = FnSource::new("prices", move |key: ResourceKey, _ctx| {
        let counter = Arc::clone(&counter);
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            match key.subject() {
                "BTCUSDT" => Ok(SourceOutput::new(97_250.5_f64).with_metadata("venue", "demo")),
                other => Err(SourceError::unavailable(format!("no quote for {other}"))),
            }
        }
    })
    .with_priority(10)
    .with_timeout(Duration::from_secs(2));

    let builder = SnapshotBuilder::builder([prices.into()])
        .default_policy(FreshnessPolicy::new(
            Duration::from_secs(60),
            Duration::from_secs(120),
        )?)
        .build()?;

    let snapshot = builder.build([key("BTCUSDT")]).await?;
    let value = snapshot.get(&key("BTCUSDT")).ok_or("BTCUSDT missing")?;
    let price = *value.value::<f64>()?;
    println!("{} = {price} from {}", value.key(), value.source());
    if price != 97_250.5 {
        return Err(format!("unexpected price {price}").into());
    }

    // The second build is served from the cache.
    let again = builder.build([key("BTCUSDT")]).await?;
    let cached = again.get(&key("BTCUSDT")).ok_or("BTCUSDT missing")?;
    if !cached.is_from_cache() || calls.load(Ordering::SeqCst) != 1 {
        return Err("second build did not come from the cache".into());
    }

    // A failing required key fails the build with a typed error.
    if builder.build([key("DOGEUSDT")]).await.is_ok() {
        return Err("a failing source must fail the build".into());
    }
    builder.close().await;
    println!("consumer app: ok");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
"#;

/// `adapter/src/main.rs`: a custom adapter crate depending only on
/// `coalestra-core` (with async-trait, and tokio for the runner). It
/// implements `Source` and `SnapshotCache` by hand and drives them directly.
pub const ADAPTER: &str = r#"//! Consumer check: a custom adapter that depends only on `coalestra-core`.
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::SystemTime;

use async_trait::async_trait;
use coalestra_core::{
    CacheError, CacheHit, CacheRead, CacheStats, CacheWrite, FetchContext, FreshnessPolicy,
    ResourceKey, SnapshotCache, SnapshotValue, Source, SourceError, SourceInfo, SourceOutput,
    Timestamp, ValueParts, WriteOutcome, WriteResult,
};

/// A source reading simulated thermometers.
struct Thermometers;

impl SourceInfo for Thermometers {
    fn name(&self) -> &str {
        "thermometers"
    }

    fn priority(&self) -> i32 {
        5
    }

    fn supports(&self, key: &ResourceKey) -> bool {
        key.namespace() == "home"
    }
}

#[async_trait]
impl Source for Thermometers {
    async fn fetch(
        &self,
        key: &ResourceKey,
        _ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        match key.subject() {
            "kitchen" => Ok(SourceOutput::new(21.5_f64).with_metadata("sensor", "k-1")),
            other => Err(SourceError::unavailable(format!("no sensor in {other}"))),
        }
    }
}

/// A map-backed cache with conditional writes.
#[derive(Debug, Default)]
struct MapCache {
    entries: Mutex<BTreeMap<ResourceKey, SnapshotValue>>,
    stats: Mutex<(u64, u64, u64)>,
}

#[async_trait]
impl SnapshotCache for MapCache {
    async fn get_many(
        &self,
        reads: &[CacheRead],
        now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        let entries = self.entries.lock().map_err(|_| CacheError::Closed)?;
        let mut stats = self.stats.lock().map_err(|_| CacheError::Closed)?;
        Ok(reads
            .iter()
            .map(|read| {
                let hit = entries.get(&read.key).and_then(|value| {
                    let age = value.age_at(now);
                    let freshness = read.policy.classify(age);
                    freshness.is_usable().then(|| CacheHit {
                        value: value.clone(),
                        freshness,
                        age,
                    })
                });
                if hit.is_some() { stats.0 += 1 } else { stats.1 += 1 }
                hit
            })
            .collect())
    }

    async fn write_many(&self, writes: Vec<CacheWrite>) -> Result<Vec<WriteResult>, CacheError> {
        let mut entries = self.entries.lock().map_err(|_| CacheError::Closed)?;
        let mut results = Vec::with_capacity(writes.len());
        for write in writes {
            let previous = entries.get(write.value.key()).cloned();
            let outcome = WriteOutcome::decide(
                &write.value,
                previous.as_ref(),
                write.force,
                write.replace_equal,
            );
            let current = if outcome.is_stored() {
                entries.insert(write.value.key().clone(), write.value.clone());
                self.stats.lock().map_err(|_| CacheError::Closed)?.2 += 1;
                write.value
            } else {
                previous.clone().unwrap_or(write.value)
            };
            results.push(WriteResult { outcome, previous, current });
        }
        Ok(results)
    }

    async fn invalidate_many(&self, keys: &[ResourceKey]) -> Result<Vec<ResourceKey>, CacheError> {
        let mut entries = self.entries.lock().map_err(|_| CacheError::Closed)?;
        Ok(keys.iter().filter(|k| entries.remove(k).is_some()).cloned().collect())
    }

    async fn invalidate_namespace(&self, namespace: &str) -> Result<Vec<ResourceKey>, CacheError> {
        let mut entries = self.entries.lock().map_err(|_| CacheError::Closed)?;
        let gone: Vec<ResourceKey> =
            entries.keys().filter(|k| k.namespace() == namespace).cloned().collect();
        for key in &gone {
            entries.remove(key);
        }
        Ok(gone)
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        let mut entries = self.entries.lock().map_err(|_| CacheError::Closed)?;
        let count = entries.len() as u64;
        entries.clear();
        Ok(count)
    }

    fn stats(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        stats.size = self.entries.lock().map(|e| e.len() as u64).unwrap_or(0);
        if let Ok(counts) = self.stats.lock() {
            stats.hits = counts.0;
            stats.misses = counts.1;
            stats.sets = counts.2;
        }
        stats
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let now = Timestamp::from_system_time(SystemTime::now());
    let ctx = FetchContext::new("consumer-adapter", now);
    let source = Thermometers;
    let kitchen = ResourceKey::new("home", "temperature", "kitchen")?;
    let garage = ResourceKey::new("home", "temperature", "garage")?;
    if !source.supports(&kitchen) || source.priority() != 5 {
        return Err("SourceInfo answers are wrong".into());
    }

    let output = source.fetch(&kitchen, &ctx).await?;
    if source.fetch(&garage, &ctx).await.is_err() {
        println!("garage: no sensor (as expected)");
    } else {
        return Err("the garage has no sensor".into());
    }

    let value = SnapshotValue::from_parts(ValueParts::new(
        kitchen.clone(),
        output.payload,
        source.name(),
        now,
    ));
    let cache = MapCache::default();
    let stored = cache.write(CacheWrite::new(value.clone())).await?;
    let duplicate = cache.write(CacheWrite::new(value)).await?;
    if !stored.outcome.is_stored() || duplicate.outcome.is_stored() {
        return Err(format!("unexpected outcomes {:?} / {:?}", stored.outcome, duplicate.outcome).into());
    }

    let policy = FreshnessPolicy::fresh_for(std::time::Duration::from_secs(30));
    let hit = cache.get(&kitchen, policy, now).await?.ok_or("cache miss")?;
    let celsius = *hit.value.value::<f64>()?;
    println!("{kitchen} = {celsius} C ({:?}, from {})", hit.freshness, hit.value.source());
    if cache.get(&garage, policy, now).await?.is_some() {
        return Err("garage must miss".into());
    }
    let stats = cache.stats();
    if (stats.size, stats.hits, stats.misses, stats.sets) != (1, 1, 1, 1) {
        return Err(format!("unexpected stats {stats:?}").into());
    }
    if cache.invalidate(&kitchen).await? != true || cache.clear().await? != 0 {
        return Err("invalidation failed".into());
    }
    println!("consumer adapter: ok");
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run())
}
"#;
