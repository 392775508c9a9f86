//! The shared Redis tier beside the memory cache: cost of a 100-key batch
//! read that hits the memory cache, the tiered cache's L1, and Redis (L2).
//!
//! Needs a Redis server at `COALESTRA_REDIS_URL` (default
//! `redis://127.0.0.1:6399/`, started by `.ci/run`); without one the bench
//! prints why and measures only the memory cache.
//!
//! `cargo bench -p coalestra-benches --bench redis_tier`

use std::time::Duration;

use coalestra::{
    CacheRead, CacheWrite, FreshnessPolicy, MemoryCache, Payload, PolicyResolver, ResourceKey,
    SnapshotCache, SnapshotValue, Timestamp, ValueParts,
};
use coalestra_cache_redis::{
    CodecRegistry, RedisCache, RedisCacheConfig, TieredCache, TieredCacheConfig,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const KEYS: usize = 100;

fn keys() -> Vec<ResourceKey> {
    (0..KEYS)
        .map(|i| ResourceKey::new("market", "price", format!("S{i}")).expect("valid key"))
        .collect()
}

fn writes(keys: &[ResourceKey]) -> Vec<CacheWrite> {
    keys.iter()
        .map(|key| {
            let parts = ValueParts::new(
                key.clone(),
                Payload::new(1.5_f64),
                "bench",
                Timestamp::from_secs(1.0e9),
            );
            CacheWrite::new(SnapshotValue::from_parts(parts))
        })
        .collect()
}

fn reads(keys: &[ResourceKey]) -> Vec<CacheRead> {
    let policy = FreshnessPolicy::fresh_for(FreshnessPolicy::UNBOUNDED);
    keys.iter()
        .map(|key| CacheRead {
            key: key.clone(),
            policy,
        })
        .collect()
}

fn config(url: &str) -> RedisCacheConfig {
    RedisCacheConfig::new(url)
        .key_prefix(format!("coalestra-bench:{}", std::process::id()))
        .policies(PolicyResolver::new(FreshnessPolicy::fresh_for(
            FreshnessPolicy::UNBOUNDED,
        )))
        .codecs(CodecRegistry::new().with_json::<f64>("market", "price"))
}

fn redis_tier(c: &mut Criterion) {
    // Redis needs the IO driver, which the shared bench runtime leaves off.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let keys = keys();
    let reads = reads(&keys);
    let now = Timestamp::from_secs(2.0e9);
    let memory = MemoryCache::new();
    rt.block_on(memory.write_many(writes(&keys)))
        .expect("memory write");
    let mut group = c.benchmark_group("redis-tier-100");
    group.throughput(Throughput::Elements(KEYS as u64));
    group.bench_function("memory-cache", |b| {
        b.to_async(&rt).iter(|| memory.get_many(&reads, now))
    });
    let url = std::env::var("COALESTRA_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6399/".to_owned());
    let remote = RedisCache::new(config(&url))
        .ok()
        .filter(|cache| rt.block_on(cache.ping()).is_ok());
    let Some(l2) = remote else {
        println!("redis-tier: no Redis server at {url}; only the memory cache was measured");
        group.finish();
        return;
    };
    rt.block_on(l2.write_many(writes(&keys)))
        .expect("redis write");
    // The tiered cache spawns its subscriber on the current runtime.
    let tiered = {
        let _runtime = rt.enter();
        TieredCache::new(
            RedisCache::new(config(&url)).expect("redis config"),
            TieredCacheConfig::new(),
        )
        .expect("tiered cache")
    };
    rt.block_on(async {
        tiered.wait_for_subscription(Duration::from_secs(5)).await;
        tiered.get_many(&reads, now).await.expect("fills L1");
    });
    group.bench_function("tiered-l1-hit", |b| {
        b.to_async(&rt).iter(|| tiered.get_many(&reads, now))
    });
    group.bench_function("redis-l2-hit", |b| {
        b.to_async(&rt).iter(|| l2.get_many(&reads, now))
    });
    group.finish();
    rt.block_on(async {
        tiered.close().await;
        let _ = l2.clear().await;
    });
}

criterion_group!(benches, redis_tier);
criterion_main!(benches);
