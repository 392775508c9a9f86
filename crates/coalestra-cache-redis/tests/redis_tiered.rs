//! Two builders in one process, each with its own tiered cache on the same
//! Redis server: publications and invalidations cross between them.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra_cache::PublishOptions;
use coalestra_cache_redis::{RedisCache, TieredCache, TieredCacheConfig};
use coalestra_core::{FnSource, Payload, PolicyResolver, ResourceKey, SnapshotCache, SourceOutput};
use coalestra_orchestration::SnapshotBuilder;
use common::{config, key, minute_policy, server_or_skip, unique_prefix};

const WAIT: Duration = Duration::from_secs(5);

/// One replica: a builder over a counting source and its tiered cache.
struct Replica {
    builder: SnapshotBuilder,
    cache: Arc<TieredCache>,
    calls: Arc<AtomicUsize>,
}

impl Replica {
    async fn start(url: &str, prefix: &str) -> Self {
        let l2 = RedisCache::new(config(url, prefix)).unwrap();
        let cache = Arc::new(TieredCache::new(l2, TieredCacheConfig::new()).unwrap());
        assert!(cache.wait_for_subscription(WAIT).await, "subscribed");
        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let origin = FnSource::new("origin", move |_key: ResourceKey, _| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok(SourceOutput::new(1.0_f64))
            }
        });
        let builder = SnapshotBuilder::builder([origin.into()])
            .cache(cache.clone())
            .policies(PolicyResolver::new(minute_policy()))
            .build()
            .unwrap();
        Self {
            builder,
            cache,
            calls,
        }
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn price(&self, k: &ResourceKey) -> (f64, bool) {
        let snapshot = self.builder.build([k.clone()]).await.unwrap();
        let value = snapshot.get(k).unwrap();
        (*value.value::<f64>().unwrap(), value.is_from_cache())
    }

    async fn publish(&self, k: &ResourceKey, price: f64) {
        let result = self
            .builder
            .publisher()
            .publish(k.clone(), Payload::new(price), PublishOptions::new("feed"))
            .await
            .unwrap();
        assert!(result.is_published(), "{result:?}");
    }

    async fn stop(self) {
        self.builder.close().await;
        self.cache.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publication_in_one_replica_is_served_by_the_other() {
    let Some(url) = server_or_skip("tiered_publication").await else {
        return;
    };
    let prefix = unique_prefix("tiered-pub");
    let a = Replica::start(&url, &prefix).await;
    let b = Replica::start(&url, &prefix).await;
    let k = key("market:price:BTCUSDT");

    a.publish(&k, 64_250.5).await;
    // B hears of the publication (its L1 had nothing to drop); waiting for
    // it keeps the notification from racing with B's L1 fill below.
    assert!(b.cache.wait_for_notifications(1, WAIT).await);
    assert_eq!(b.price(&k).await, (64_250.5, true));
    assert_eq!(
        b.calls(),
        0,
        "served from the shared tier without a source call"
    );
    let stats = b.cache.tiered_stats();
    assert_eq!((stats.l1_hits, stats.l2_hits), (0, 1));

    // The next build is an L1 hit.
    assert_eq!(b.price(&k).await, (64_250.5, true));
    assert_eq!(b.cache.tiered_stats().l1_hits, 1);

    // A newer publication replaces B's view: its L1 entry is dropped.
    let before = b.cache.tiered_stats().notifications_received;
    a.publish(&k, 64_300.0).await;
    assert!(b.cache.wait_for_notifications(before + 1, WAIT).await);
    assert!(b.cache.l1().peek(&k).is_none());
    assert_eq!(b.price(&k).await, (64_300.0, true));
    assert_eq!(b.calls(), 0);

    // A's own announcements are not notifications for A.
    assert_eq!(a.cache.tiered_stats().notifications_received, 0);
    let stats = b.cache.tiered_stats();
    assert!(stats.pubsub_connected && !stats.degraded, "{stats:?}");
    a.cache.clear().await.unwrap();
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalidation_in_one_replica_drops_the_others_l1_entry() {
    let Some(url) = server_or_skip("tiered_invalidation").await else {
        return;
    };
    let prefix = unique_prefix("tiered-inv");
    let a = Replica::start(&url, &prefix).await;
    let b = Replica::start(&url, &prefix).await;
    let k = key("market:price:ETHUSDT");
    let other = key("market:price:SOLUSDT");

    a.publish(&k, 3_100.0).await;
    a.publish(&other, 150.0).await;
    assert!(b.cache.wait_for_notifications(2, WAIT).await);
    assert_eq!(b.price(&k).await, (3_100.0, true));
    assert_eq!(b.price(&other).await, (150.0, true));
    assert!(b.cache.l1().peek(&k).is_some());

    let before = b.cache.tiered_stats().notifications_received;
    assert!(a.cache.invalidate(&k).await.unwrap());
    assert!(b.cache.wait_for_notifications(before + 1, WAIT).await);
    assert!(b.cache.l1().peek(&k).is_none(), "B's L1 entry is dropped");
    assert!(b.cache.l1().peek(&other).is_some(), "other entries stay");

    // B's next build goes to the source.
    assert_eq!(b.price(&k).await, (1.0, false));
    assert_eq!(b.calls(), 1);

    // Namespace invalidation crosses too.
    let before = b.cache.tiered_stats().notifications_received;
    let removed = a.cache.invalidate_namespace("market").await.unwrap();
    assert_eq!(removed.len(), 2);
    assert!(b.cache.wait_for_notifications(before + 1, WAIT).await);
    assert!(b.cache.l1().is_empty());
    assert!(b.cache.tiered_stats().l1_entries_dropped >= 3);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_without_a_codec_stay_in_the_local_tier() {
    let Some(url) = server_or_skip("tiered_local").await else {
        return;
    };
    let prefix = unique_prefix("tiered-local");
    let a = Replica::start(&url, &prefix).await;
    let b = Replica::start(&url, &prefix).await;
    let k = key("local:price:X");

    a.publish(&k, 7.0).await;
    assert_eq!(a.price(&k).await, (7.0, true));
    assert_eq!(
        b.price(&k).await,
        (1.0, false),
        "B never sees A's local value"
    );
    assert_eq!(a.cache.tiered_stats().local_only_writes, 1);
    assert_eq!(a.cache.l2().redis_stats().local_only_writes, 0);
    a.stop().await;
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_joins_the_subscriber_and_keeps_the_cache_usable() {
    let Some(url) = server_or_skip("tiered_close").await else {
        return;
    };
    let prefix = unique_prefix("tiered-close");
    let a = Replica::start(&url, &prefix).await;
    a.cache.close().await;
    a.cache.close().await;
    assert!(!a.cache.is_subscribed());
    assert!(a.cache.tiered_stats().degraded);
    let k = key("market:price:X");
    assert_eq!(a.price(&k).await, (1.0, false));
    assert_eq!(a.price(&k).await, (1.0, true));
    a.cache.clear().await.unwrap();
    a.builder.close().await;
}
