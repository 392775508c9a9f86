//! Reads, expiry, invalidation, codecs and derived entries against a real
//! Redis server.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use coalestra_cache_redis::{CodecRegistry, RawBytesCodec, RedisCache};
use coalestra_core::value::ValueParts;
use coalestra_core::{
    CacheError, CircuitBreakerPolicy, CircuitScope, Event, EventSink, Freshness, FreshnessPolicy,
    Payload, PolicyResolver, RefreshMode, ResourceKey, SnapshotCache, SnapshotValue,
};
use common::{at, cache, config, forever, key, ranked, server_or_skip, unique_prefix, write};

#[derive(Debug, Default)]
struct RecordingSink(Mutex<Vec<Event>>);

impl RecordingSink {
    fn named(&self, name: &str) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.name == name)
            .count()
    }
}

impl EventSink for RecordingSink {
    fn emit(&self, event: Event) {
        self.0.lock().unwrap().push(event);
    }
}

async fn raw_connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

#[tokio::test]
async fn freshness_is_judged_from_the_callers_clock() {
    let Some(url) = server_or_skip("freshness").await else {
        return;
    };
    let redis = cache(&url, &unique_prefix("fresh"));
    let k = key("market:price:BTC");
    redis
        .write(write(ranked(&k, 1.5_f64, "feed", 0, 1_000.0)))
        .await
        .unwrap();
    let policy = FreshnessPolicy::new(Duration::from_secs(5), Duration::from_secs(20))
        .unwrap()
        .with_refresh_mode(RefreshMode::RefreshAhead {
            window: Duration::from_secs(2),
        })
        .unwrap();

    let fresh = redis.get(&k, policy, at(1_002.0)).await.unwrap().unwrap();
    assert_eq!(fresh.freshness, Freshness::Fresh);
    assert_eq!(fresh.age, Duration::from_secs(2));
    assert!(fresh.value.is_from_cache() && !fresh.value.is_stale());
    assert_eq!(fresh.value.fetched_at(), at(1_002.0));

    let due = redis.get(&k, policy, at(1_004.0)).await.unwrap().unwrap();
    assert_eq!(due.freshness, Freshness::RefreshDue);

    let stale = redis.get(&k, policy, at(1_010.0)).await.unwrap().unwrap();
    assert_eq!(stale.freshness, Freshness::StaleUsable);
    assert!(stale.value.is_stale());
    assert_eq!(*stale.value.value::<f64>().unwrap(), 1.5);

    // Past max_stale: a miss, and the entry is removed like in memory.
    assert!(redis.get(&k, policy, at(1_020.5)).await.unwrap().is_none());
    assert!(redis.get(&k, policy, at(1_002.0)).await.unwrap().is_none());
    let stats = redis.stats();
    assert_eq!((stats.hits, stats.fresh_hits, stats.stale_hits), (3, 2, 1));
    assert_eq!((stats.misses, stats.expirations), (2, 1));
}

#[tokio::test]
async fn entries_expire_on_the_server_at_max_stale() {
    let Some(url) = server_or_skip("server_ttl").await else {
        return;
    };
    let policies = PolicyResolver::new(common::minute_policy()).with_type_override(
        "market",
        "double",
        FreshnessPolicy::fresh_for(FreshnessPolicy::UNBOUNDED),
    );
    let redis = RedisCache::new(config(&url, &unique_prefix("ttl")).policies(policies)).unwrap();
    let bounded = key("market:price:ETH");
    let unbounded = key("market:double:ETH");
    redis
        .write_many(vec![
            write(ranked(&bounded, 1.0_f64, "s", 0, 10.0)),
            write(ranked(&unbounded, 2.0_f64, "s", 0, 10.0)),
        ])
        .await
        .unwrap();
    let mut connection = raw_connection(&url).await;
    let ttl: i64 = redis::cmd("PTTL")
        .arg(redis.redis_key(&bounded))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!((110_000..=120_000).contains(&ttl), "ttl {ttl}");
    let none: i64 = redis::cmd("PTTL")
        .arg(redis.redis_key(&unbounded))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(none, -1, "an unbounded window has no server ttl");
    // The namespace set lives as long as its longest-lived member.
    let set_ttl: i64 = redis::cmd("PTTL")
        .arg(redis.namespace_set("market"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(set_ttl, -1);
    redis.clear().await.unwrap();
}

#[tokio::test]
async fn namespace_invalidation_goes_through_the_key_set() {
    let Some(url) = server_or_skip("namespace").await else {
        return;
    };
    let redis = cache(&url, &unique_prefix("ns"));
    let market = [
        key("market:price:A"),
        key("market:price:B"),
        key("market:double:A"),
    ];
    let other = key("rule:item:A");
    let mut writes: Vec<_> = market
        .iter()
        .map(|k| write(ranked(k, 1.0_f64, "s", 0, 10.0)))
        .collect();
    writes.push(write(ranked(&other, 1_i64, "s", 0, 10.0)));
    redis.write_many(writes).await.unwrap();

    let mut removed = redis.invalidate_namespace("market").await.unwrap();
    removed.sort();
    let mut expected = market.to_vec();
    expected.sort();
    assert_eq!(removed, expected);
    let mut connection = raw_connection(&url).await;
    let members: Vec<String> = redis::cmd("SMEMBERS")
        .arg(redis.namespace_set("market"))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(members.is_empty());
    let now = at(11.0);
    assert!(redis
        .get(&market[0], forever(), now)
        .await
        .unwrap()
        .is_none());
    assert!(redis.get(&other, forever(), now).await.unwrap().is_some());

    assert_eq!(
        redis
            .invalidate_many(&[other.clone(), other.clone()])
            .await
            .unwrap(),
        vec![other.clone()]
    );
    assert!(redis
        .invalidate_many(std::slice::from_ref(&other))
        .await
        .unwrap()
        .is_empty());
    redis
        .write(write(ranked(&other, 2_i64, "s", 0, 10.0)))
        .await
        .unwrap();
    assert_eq!(redis.clear().await.unwrap(), 1);
    assert_eq!(redis.stats().invalidations, 5);
}

#[tokio::test]
async fn values_without_a_codec_stay_local() {
    let Some(url) = server_or_skip("local_only").await else {
        return;
    };
    let prefix = unique_prefix("local");
    let here = cache(&url, &prefix);
    let elsewhere = cache(&url, &prefix);
    let k = key("local:thing:X");
    let result = here
        .write(write(ranked(&k, vec![1_u8, 2], "s", 0, 10.0)))
        .await
        .unwrap();
    assert!(result.outcome.is_stored());
    assert!(!here.is_shared(&k));
    let hit = here.get(&k, forever(), at(11.0)).await.unwrap().unwrap();
    assert_eq!(hit.value.value::<Vec<u8>>().unwrap(), &vec![1, 2]);
    assert!(elsewhere
        .get(&k, forever(), at(11.0))
        .await
        .unwrap()
        .is_none());
    let mut connection = raw_connection(&url).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(here.redis_key(&k))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    let stats = here.redis_stats();
    assert_eq!((stats.local_only_writes, stats.local_entries), (1, 1));
    assert_eq!(stats.cache.size, 1);
}

#[tokio::test]
async fn undecodable_records_are_misses_with_an_event() {
    let Some(url) = server_or_skip("decode_failure").await else {
        return;
    };
    let prefix = unique_prefix("decode");
    let writer = cache(&url, &prefix);
    let k = key("market:price:SOL");
    writer
        .write(write(ranked(&k, 3.5_f64, "s", 0, 10.0)))
        .await
        .unwrap();

    let sink = Arc::new(RecordingSink::default());
    let wrong_type = RedisCache::new(
        config(&url, &prefix)
            .codecs(CodecRegistry::new().with_json::<String>("market", "price"))
            .events(sink.clone()),
    )
    .unwrap();
    assert!(wrong_type
        .get(&k, forever(), at(11.0))
        .await
        .unwrap()
        .is_none());
    let wrong_format = RedisCache::new(
        config(&url, &prefix)
            .codecs(CodecRegistry::new().with_codec("market", "price", Arc::new(RawBytesCodec)))
            .events(sink.clone()),
    )
    .unwrap();
    assert!(wrong_format
        .get(&k, forever(), at(11.0))
        .await
        .unwrap()
        .is_none());

    // Garbage under the key: also a miss, never a panic.
    let mut connection = raw_connection(&url).await;
    let () = redis::cmd("SET")
        .arg(writer.redis_key(&k))
        .arg(b"C1\xff\xfe not a record".as_slice())
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(wrong_type
        .get(&k, forever(), at(11.0))
        .await
        .unwrap()
        .is_none());
    assert_eq!(sink.named("cache_decode_failed"), 3);
    assert_eq!(wrong_type.redis_stats().decode_failures, 2);
    assert_eq!(wrong_format.redis_stats().decode_failures, 1);
    // A write over garbage stores (the script treats it as absent).
    let result = writer
        .write(write(ranked(&k, 4.0_f64, "s", 0, 1.0)))
        .await
        .unwrap();
    assert!(result.outcome.is_stored() && result.previous.is_none());
    writer.clear().await.unwrap();
}

fn derived(key: &ResourceKey, payload: f64, deps: &[&SnapshotValue]) -> SnapshotValue {
    let mut parts = ValueParts::new(key.clone(), Payload::new(payload), "derive", at(10.0));
    parts.dependency_versions = deps
        .iter()
        .map(|d| (d.key().clone(), d.version()))
        .collect();
    SnapshotValue::from_parts(parts)
}

#[tokio::test]
async fn derived_entries_keep_their_dependency_versions_across_processes() {
    let Some(url) = server_or_skip("derived").await else {
        return;
    };
    let prefix = unique_prefix("derived");
    let a = cache(&url, &prefix);
    let b = cache(&url, &prefix);
    assert!(b.validates_dependency_versions());
    let base = key("market:price:BTC");
    let middle = key("market:double:BTC");
    let top = key("market:double:BTC2");
    let base_v1 = ranked(&base, 10.0_f64, "feed", 0, 10.0);
    let middle_v = derived(&middle, 20.0, &[&base_v1]);
    let top_v = derived(&top, 40.0, &[&middle_v]);
    a.write_many(vec![
        write(base_v1),
        write(middle_v.clone()),
        write(top_v.clone()),
    ])
    .await
    .unwrap();

    // Another process sees the derived entries, with their versions.
    let hit = b.get(&top, forever(), at(11.0)).await.unwrap().unwrap();
    assert_eq!(hit.value.dependency_versions(), top_v.dependency_versions());
    assert_eq!(hit.value.version(), top_v.version());

    // A newer base makes both derived entries invalid, transitively.
    a.write(write(ranked(&base, 11.0_f64, "feed", 0, 12.0)))
        .await
        .unwrap();
    assert!(b.get(&top, forever(), at(13.0)).await.unwrap().is_none());
    assert!(b.get(&middle, forever(), at(13.0)).await.unwrap().is_none());
    assert_eq!(b.stats().invalidations, 2);
    let mut connection = raw_connection(&url).await;
    let exists: i64 = redis::cmd("EXISTS")
        .arg(a.redis_key(&top))
        .arg(a.redis_key(&middle))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert_eq!(exists, 0, "invalid derived entries are removed");
    assert!(a.get(&base, forever(), at(13.0)).await.unwrap().is_some());
    a.clear().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_fails_fast_behind_the_breaker() {
    // Needs no server: a closed loopback port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let breaker =
        CircuitBreakerPolicy::new(CircuitScope::Source, 2, Duration::from_secs(60)).unwrap();
    let redis = RedisCache::new(
        config(&format!("redis://127.0.0.1:{port}/"), "unreachable")
            .circuit_breaker(breaker)
            .connect_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let k = key("market:price:X");
    for _ in 0..2 {
        let error = redis.get(&k, forever(), at(1.0)).await.unwrap_err();
        assert!(matches!(error, CacheError::Unavailable(_)), "{error}");
    }
    let error = redis
        .write(write(ranked(&k, 1.0_f64, "s", 0, 1.0)))
        .await
        .unwrap_err();
    assert!(error.is_transient());
    // Refused without trying: the breaker counts a rejection and no new
    // connection attempt fails (no wall-clock measurement needed).
    let stats = redis.redis_stats();
    assert!(!stats.available);
    assert_eq!(
        (stats.unavailable_errors, stats.circuit_rejections),
        (2, 1),
        "refused without trying"
    );
    // Local-only values still work.
    let local = key("local:thing:X");
    assert!(redis
        .write(write(ranked(&local, 1_u8, "s", 0, 1.0)))
        .await
        .unwrap()
        .outcome
        .is_stored());
}
