//! Two replicas of a service, each with its own builder and tiered cache,
//! sharing one Redis server: a price published by replica A is served by
//! replica B's next build without calling B's source; an invalidation in A
//! reaches B's local tier. Then measures the cost of a hit in each tier.
//!
//! ```text
//! redis-server --port 6399 --save '' --appendonly no --daemonize yes
//! cargo run --release -p coalestra-cache-redis --example two_replicas
//! ```
//!
//! `COALESTRA_REDIS_URL` overrides the server (default
//! `redis://127.0.0.1:6399/`).

use std::error::Error;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coalestra_cache::{MemoryCache, PublishOptions};
use coalestra_cache_redis::{
    CodecRegistry, RedisCache, RedisCacheConfig, TieredCache, TieredCacheConfig,
};
use coalestra_core::value::ValueParts;
use coalestra_core::{
    CacheRead, CacheWrite, FnSource, FreshnessPolicy, Payload, PolicyResolver, ResourceKey,
    SnapshotCache, SnapshotValue, SourceOutput, Timestamp,
};
use coalestra_orchestration::SnapshotBuilder;

struct Replica {
    name: &'static str,
    builder: SnapshotBuilder,
    cache: Arc<TieredCache>,
    source_calls: Arc<AtomicUsize>,
}

fn shared_config(url: &str, prefix: &str, policies: &PolicyResolver) -> RedisCacheConfig {
    RedisCacheConfig::new(url)
        .key_prefix(prefix)
        .policies(policies.clone())
        .codecs(CodecRegistry::new().with_json::<f64>("market", "price"))
}

async fn replica(
    name: &'static str,
    url: &str,
    prefix: &str,
    policies: &PolicyResolver,
) -> Result<Replica, Box<dyn Error>> {
    let l2 = RedisCache::new(shared_config(url, prefix, policies))?;
    let cache = Arc::new(TieredCache::new(l2, TieredCacheConfig::new())?);
    cache.wait_for_subscription(Duration::from_secs(5)).await;
    let source_calls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&source_calls);
    let exchange = FnSource::new("exchange", move |_key: ResourceKey, _| {
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(SourceOutput::new(100.0_f64))
        }
    });
    let builder = SnapshotBuilder::builder([exchange.into()])
        .cache(cache.clone())
        .policies(policies.clone())
        .build()?;
    Ok(Replica {
        name,
        builder,
        cache,
        source_calls,
    })
}

impl Replica {
    async fn show(&self, key: &ResourceKey) -> Result<(), Box<dyn Error>> {
        let snapshot = self.builder.build([key.clone()]).await?;
        let value = snapshot.get(key).ok_or("missing value")?;
        println!(
            "replica {}: {key} = {} (source {}, from cache: {}, source calls so far: {})",
            self.name,
            value.value::<f64>()?,
            value.source(),
            value.is_from_cache(),
            self.source_calls.load(Ordering::SeqCst)
        );
        Ok(())
    }
}

async fn reachable(url: &str) -> bool {
    let Ok(cache) = RedisCache::new(RedisCacheConfig::new(url)) else {
        return false;
    };
    cache.ping().await.is_ok()
}

/// Mean time per key of `rounds` batch reads of `keys` from `cache`.
async fn per_key(cache: &dyn SnapshotCache, keys: &[ResourceKey], rounds: u32) -> Duration {
    let policy = FreshnessPolicy::fresh_for(FreshnessPolicy::UNBOUNDED);
    let reads: Vec<CacheRead> = keys
        .iter()
        .map(|key| CacheRead {
            key: key.clone(),
            policy,
        })
        .collect();
    let now = Timestamp::from_secs(2.0e9);
    let started = Instant::now();
    for _ in 0..rounds {
        let hits = cache.get_many(&reads, now).await.unwrap_or_default();
        assert!(hits.iter().all(Option::is_some), "every read is a hit");
    }
    started.elapsed() / (rounds * keys.len() as u32)
}

async fn measure(url: &str, prefix: &str, policies: &PolicyResolver) -> Result<(), Box<dyn Error>> {
    let keys: Vec<ResourceKey> = (0..100)
        .map(|i| ResourceKey::new("market", "price", format!("S{i}")))
        .collect::<Result<_, _>>()?;
    let writes: Vec<CacheWrite> = keys
        .iter()
        .map(|key| {
            let parts = ValueParts::new(
                key.clone(),
                Payload::new(1.5_f64),
                "bench",
                Timestamp::from_secs(1.0e9),
            );
            CacheWrite::new(SnapshotValue::from_parts(parts))
        })
        .collect();
    let memory = MemoryCache::new();
    memory.write_many(writes.clone()).await?;
    let l2 = RedisCache::new(shared_config(url, prefix, policies))?;
    l2.write_many(writes.clone()).await?;
    let tiered = TieredCache::new(
        RedisCache::new(shared_config(url, prefix, policies))?,
        TieredCacheConfig::new(),
    )?;
    tiered.wait_for_subscription(Duration::from_secs(5)).await;
    per_key(&tiered, &keys, 1).await; // fills L1

    println!("\nhit cost per key (100-key batch reads, f64 payload, JSON codec):");
    for (label, cache, rounds) in [
        ("memory cache", &memory as &dyn SnapshotCache, 2_000),
        ("tiered, L1 hit", &tiered as &dyn SnapshotCache, 2_000),
        ("redis L2 hit", &l2 as &dyn SnapshotCache, 200),
    ] {
        per_key(cache, &keys, 10).await; // warm up
        let cost = per_key(cache, &keys, rounds).await;
        println!("  {label:<16} {:>9.3} µs", cost.as_secs_f64() * 1e6);
    }
    let single = per_key(&l2, &keys[..1], 500).await;
    println!(
        "  {:<16} {:>9.3} µs (one round trip)",
        "redis L2, 1 key",
        single.as_secs_f64() * 1e6
    );
    tiered.close().await;
    l2.clear().await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let url = std::env::var("COALESTRA_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6399/".to_owned());
    if !reachable(&url).await {
        println!("no redis server at {url}; start one with `redis-server --port 6399` or set COALESTRA_REDIS_URL");
        return Ok(());
    }
    let prefix = format!("coalestra-example:{}", std::process::id());
    let policies = PolicyResolver::new(FreshnessPolicy::new(
        Duration::from_secs(30),
        Duration::from_secs(120),
    )?);
    let a = replica("A", &url, &prefix, &policies).await?;
    let b = replica("B", &url, &prefix, &policies).await?;
    let key = ResourceKey::new("market", "price", "BTCUSDT")?;

    println!("A publishes {key} from its websocket feed");
    a.builder
        .publisher()
        .publish(
            key.clone(),
            Payload::new(64_250.5_f64),
            PublishOptions::new("ws-feed"),
        )
        .await?;
    b.cache
        .wait_for_notifications(1, Duration::from_secs(5))
        .await;
    b.show(&key).await?; // L2 hit: no source call
    b.show(&key).await?; // L1 hit

    println!("A invalidates {key}");
    a.cache.invalidate(&key).await?;
    b.cache
        .wait_for_notifications(2, Duration::from_secs(5))
        .await;
    b.show(&key).await?; // B's L1 entry is gone: B asks its source
    let stats = b.cache.tiered_stats();
    println!(
        "replica B: l1 hits {}, l2 hits {}, notifications {}, degraded {}",
        stats.l1_hits, stats.l2_hits, stats.notifications_received, stats.degraded
    );

    measure(&url, &prefix, &policies).await?;

    a.cache.clear().await?;
    for replica in [a, b] {
        replica.builder.close().await;
        replica.cache.close().await;
    }
    Ok(())
}
