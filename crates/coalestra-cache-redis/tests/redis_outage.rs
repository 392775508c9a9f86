//! Redis stopped in the middle of a test: builds keep succeeding from the
//! sources and the local tier, the cache reports itself degraded, and it
//! recovers by itself once Redis is back.
//!
//! Uses its own `redis-server` process on a free port (skipped when the
//! binary is missing), so stopping it disturbs no other test.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra_cache_redis::{RedisCache, TieredCache, TieredCacheConfig};
use coalestra_core::{
    CircuitBreakerPolicy, CircuitScope, FnSource, PolicyResolver, ResourceKey, SnapshotCache,
    SourceOutput,
};
use coalestra_orchestration::SnapshotBuilder;
use common::{config, forever, key, minute_policy, unique_prefix, OwnServer};

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_survive_a_redis_outage_and_the_cache_recovers() {
    let Some(mut server) = OwnServer::start() else {
        eprintln!("skipping redis outage test: redis-server is not installed");
        return;
    };
    if !server.wait_ready().await {
        eprintln!("skipping redis outage test: redis-server did not start");
        return;
    }
    let url = server.url();
    let prefix = unique_prefix("outage");
    let breaker =
        CircuitBreakerPolicy::new(CircuitScope::Source, 1, Duration::from_millis(300)).unwrap();
    let l2_config = config(&url, &prefix)
        .circuit_breaker(breaker)
        .command_timeout(Duration::from_millis(300))
        .connect_timeout(Duration::from_millis(300));
    let tiered = Arc::new(
        TieredCache::new(
            RedisCache::new(l2_config.clone()).unwrap(),
            TieredCacheConfig::new()
                .reconnect_delay(Duration::from_millis(100))
                .degraded_l1_ttl(Duration::from_millis(200)),
        )
        .unwrap(),
    );
    assert!(tiered.wait_for_subscription(Duration::from_secs(5)).await);
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let origin = FnSource::new("origin", move |_key: ResourceKey, _| {
        let counter = Arc::clone(&counter);
        async move {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            Ok(SourceOutput::new(n as f64))
        }
    });
    let builder = SnapshotBuilder::builder([origin.into()])
        .cache(tiered.clone())
        .policies(PolicyResolver::new(minute_policy()))
        .build()
        .unwrap();
    let k = key("market:price:BTC");
    let build = || async {
        let snapshot = builder.build([k.clone()]).await.expect("builds never fail");
        *snapshot.value::<f64>(&k).unwrap()
    };

    assert_eq!(build().await, 1.0);
    assert_eq!(build().await, 1.0, "cached");
    assert!(!tiered.is_degraded());

    // Redis goes away.
    server.stop();
    wait_for("the subscription is lost", || !tiered.is_subscribed()).await;
    let during = build().await;
    assert_eq!(during, 2.0, "served by the source while L1 was flushed");
    let stats = tiered.tiered_stats();
    assert!(
        stats.degraded && !stats.l2_available && !stats.pubsub_connected,
        "{stats:?}"
    );
    assert!(stats.l2_fallbacks >= 1);
    let health = builder.health();
    assert!(!health.closed);
    assert!(health.cache.degraded, "health reports the degraded cache");
    let assessment = health.assessment.as_ref().expect("assessed");
    assert!(
        assessment.reasons.contains(&"cache_degraded"),
        "{assessment:?}"
    );
    // The breaker is open: further calls are refused without trying.
    for _ in 0..5 {
        build().await;
    }
    assert!(tiered.l2().redis_stats().circuit_rejections >= 1);

    // Redis comes back (empty): the cache recovers by itself.
    assert!(server.restart());
    assert!(server.wait_ready().await, "redis restarted");
    for _ in 0..200 {
        build().await;
        if !tiered.is_degraded() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = tiered.tiered_stats();
    assert!(
        !stats.degraded && stats.l2_available && stats.pubsub_connected,
        "{stats:?}"
    );
    assert!(!builder.health().cache.degraded, "health recovers too");

    // Writes reach Redis again: another process sees the next revision.
    tiered.invalidate(&k).await.unwrap();
    let latest = build().await;
    let other = RedisCache::new(l2_config).unwrap();
    let hit = other
        .get(&k, forever(), coalestra_core::Timestamp::from_secs(4.0e9))
        .await
        .unwrap()
        .expect("written to the restarted server");
    assert_eq!(*hit.value.value::<f64>().unwrap(), latest);

    builder.close().await;
    tiered.close().await;
    server.stop();
}
