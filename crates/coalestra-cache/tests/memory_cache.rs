//! Behaviour of `MemoryCache`: freshness, eviction, batch operations, stats,
//! conditional writes and authority.

mod support;

use std::collections::HashSet;
use std::num::NonZeroU64;
use std::time::Duration;

use coalestra_cache::{MemoryCache, MemoryCacheConfig};
use coalestra_core::{
    CacheLookup, CacheRead, CacheWrite, Freshness, PolicyResolver, ResourceKey, SnapshotCache,
    WriteOutcome,
};
use support::{at, forced, forever, key, payload_of, policy, ranked, value, write};

fn bounded(max: u64) -> MemoryCache {
    MemoryCache::with_capacity(NonZeroU64::new(max).expect("non-zero"))
}

fn read(key: &ResourceKey, ttl: f64, max_stale: f64) -> CacheRead {
    CacheRead {
        key: key.clone(),
        policy: policy(ttl, max_stale),
    }
}

#[tokio::test]
async fn entry_is_fresh_then_stale_then_expired() {
    let cache = MemoryCache::new();
    let k = key("market", "price", "BTC");
    cache
        .write(write(value(&k, 1, "rest", 100.0)))
        .await
        .unwrap();
    let p = policy(5.0, 20.0);

    let fresh = cache.get(&k, p, at(104.0)).await.unwrap().expect("fresh");
    assert_eq!(fresh.freshness, Freshness::Fresh);
    assert_eq!(fresh.age, Duration::from_secs(4));
    assert!(!fresh.value.is_stale());

    let stale = cache.get(&k, p, at(110.0)).await.unwrap().expect("stale");
    assert_eq!(stale.freshness, Freshness::StaleUsable);
    assert_eq!(stale.age, Duration::from_secs(10));
    assert!(stale.value.is_stale());

    assert!(cache.get(&k, p, at(121.0)).await.unwrap().is_none());
    // Removed on access: even a lenient reader no longer finds it.
    assert!(cache.get(&k, forever(), at(121.0)).await.unwrap().is_none());

    let stats = cache.stats();
    assert_eq!(stats.hits, 2);
    assert_eq!(stats.fresh_hits, 1);
    assert_eq!(stats.stale_hits, 1);
    assert_eq!(stats.misses, 2);
    assert_eq!(stats.expirations, 1);
    assert_eq!(stats.size, 0);
}

#[tokio::test]
async fn hit_is_delivered_as_a_cached_read_at_now() {
    let cache = MemoryCache::new();
    let k = key("market", "price", "ETH");
    let stored = value(&k, 7, "rest", 100.0);
    cache.write(write(stored.clone())).await.unwrap();

    let hit = cache
        .get(&k, policy(5.0, 20.0), at(103.5))
        .await
        .unwrap()
        .unwrap();
    assert!(hit.value.is_from_cache());
    assert!(hit.value.same_revision(&stored));
    assert_eq!(hit.value.fetched_at(), at(103.5));
    assert_eq!(hit.value.observed_at(), at(100.0));
    assert_eq!(hit.value.latency(), Duration::ZERO);
    assert_eq!(hit.value.attempts(), 0);
    assert_eq!(payload_of(&hit.value), 7);
}

#[tokio::test]
async fn observation_in_the_future_has_age_zero() {
    let cache = MemoryCache::new();
    let k = key("market", "price", "SKEW");
    cache
        .write(write(value(&k, 1, "rest", 105.0)))
        .await
        .unwrap();
    let hit = cache
        .get(&k, policy(0.0, 0.0), at(100.0))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(hit.age, Duration::ZERO);
    assert_eq!(hit.freshness, Freshness::Fresh);
}

#[tokio::test]
async fn least_recently_used_entry_is_evicted() {
    let cache = bounded(2);
    let a = key("lru", "item", "A");
    let b = key("lru", "item", "B");
    let c = key("lru", "item", "C");
    cache.write(write(value(&a, 1, "s", 100.0))).await.unwrap();
    cache.write(write(value(&b, 2, "s", 100.0))).await.unwrap();
    assert!(cache.get(&a, forever(), at(100.0)).await.unwrap().is_some());
    cache.write(write(value(&c, 3, "s", 100.0))).await.unwrap();

    let stats = cache.stats();
    assert_eq!(stats.size, 2);
    assert_eq!(stats.max_entries, Some(2));
    assert_eq!(stats.evictions, 1);
    assert!(cache.peek(&b).is_none(), "B was the least recently used");
    assert!(cache.peek(&a).is_some());
    assert!(cache.peek(&c).is_some());
}

#[tokio::test]
async fn batch_reads_and_writes_keep_exact_stats() {
    let cache = bounded(2);
    let a = key("batch", "item", "A");
    let b = key("batch", "item", "B");
    let c = key("batch", "item", "C");
    let results = cache
        .write_many(vec![
            write(value(&a, 1, "s", 100.0)),
            write(value(&b, 2, "s", 100.0)),
        ])
        .await
        .unwrap();
    assert!(results.iter().all(|r| r.outcome.is_stored()));

    let hits = cache
        .get_many(&[read(&a, 5.0, 20.0), read(&b, 5.0, 20.0)], at(110.0))
        .await
        .unwrap();
    for hit in &hits {
        let hit = hit.as_ref().expect("stale but usable");
        assert_eq!(hit.freshness, Freshness::StaleUsable);
        assert_eq!(hit.age, Duration::from_secs(10));
    }

    assert!(cache
        .get(&a, policy(5.0, 20.0), at(121.0))
        .await
        .unwrap()
        .is_none());
    cache.write(write(value(&c, 3, "s", 121.0))).await.unwrap();

    let stats = cache.stats();
    assert_eq!(stats.size, 2);
    assert_eq!(stats.sets, 3);
    assert_eq!(stats.expirations, 1);
    assert_eq!(stats.hits, 2);
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.stale_hits, 2);
    assert_eq!(stats.fresh_hits, 0);
    assert_eq!(stats.evictions, 0);
}

#[tokio::test]
async fn get_many_answers_in_input_order_with_misses() {
    let cache = MemoryCache::new();
    let a = key("order", "item", "A");
    let absent = key("order", "item", "ABSENT");
    cache.write(write(value(&a, 1, "s", 100.0))).await.unwrap();
    let hits = cache
        .get_many(&[read(&absent, 5.0, 5.0), read(&a, 5.0, 5.0)], at(101.0))
        .await
        .unwrap();
    assert!(hits[0].is_none());
    assert_eq!(hits[1].as_ref().unwrap().value.key(), &a);
    assert!(cache.write_many(Vec::new()).await.unwrap().is_empty());
    assert!(cache.get_many(&[], at(1.0)).await.unwrap().is_empty());
}

// The borrowed batch read answers exactly as the owned one: same order,
// same classification, and the same counters.
#[tokio::test]
async fn lookup_many_answers_like_get_many_from_borrowed_keys() {
    let cache = MemoryCache::new();
    let fresh = key("order", "item", "FRESH");
    let stale = key("order", "item", "STALE");
    let absent = key("order", "item", "ABSENT");
    cache
        .write(write(value(&fresh, 1, "s", 100.0)))
        .await
        .unwrap();
    cache
        .write(write(value(&stale, 1, "s", 90.0)))
        .await
        .unwrap();
    let window = policy(5.0, 20.0);
    let lookups = [
        CacheLookup {
            key: &absent,
            policy: &window,
        },
        CacheLookup {
            key: &stale,
            policy: &window,
        },
        CacheLookup {
            key: &fresh,
            policy: &window,
        },
    ];
    let borrowed = cache.lookup_many(&lookups, at(101.0)).await.unwrap();
    let owned = cache
        .get_many(
            &[
                read(&absent, 5.0, 20.0),
                read(&stale, 5.0, 20.0),
                read(&fresh, 5.0, 20.0),
            ],
            at(101.0),
        )
        .await
        .unwrap();
    let summary =
        |hits: &[Option<coalestra_core::CacheHit>]| -> Vec<Option<(String, Freshness, Duration)>> {
            hits.iter()
                .map(|h| {
                    h.as_ref()
                        .map(|h| (h.value.key().to_string(), h.freshness, h.age))
                })
                .collect()
        };
    assert_eq!(summary(&borrowed), summary(&owned));
    assert_eq!(
        summary(&borrowed),
        vec![
            None,
            Some((
                stale.to_string(),
                Freshness::StaleUsable,
                Duration::from_secs(11)
            )),
            Some((fresh.to_string(), Freshness::Fresh, Duration::from_secs(1))),
        ]
    );
    let stats = cache.stats();
    assert_eq!(
        (stats.fresh_hits, stats.stale_hits, stats.misses),
        (2, 2, 2)
    );
}

#[tokio::test]
async fn namespace_invalidation_removes_only_present_keys_of_that_namespace() {
    let cache = MemoryCache::new();
    let x = key("alpha", "item", "X");
    let y = key("alpha", "item", "Y");
    let z = key("alpha", "other", "Z");
    let w = key("beta", "item", "W");
    for k in [&x, &y, &z, &w] {
        cache.write(write(value(k, 1, "s", 100.0))).await.unwrap();
    }
    assert!(cache.invalidate(&x).await.unwrap());
    assert!(!cache.invalidate(&x).await.unwrap());

    let removed: HashSet<ResourceKey> = cache
        .invalidate_namespace("alpha")
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(removed, HashSet::from([y.clone(), z.clone()]));
    assert!(cache.peek(&w).is_some());
    assert!(cache
        .invalidate_namespace("alpha")
        .await
        .unwrap()
        .is_empty());

    let stats = cache.stats();
    assert_eq!(stats.invalidations, 3);
    assert_eq!(stats.size, 1);
}

#[tokio::test]
async fn invalidate_many_counts_only_removed_entries() {
    let cache = MemoryCache::new();
    let a = key("inv", "item", "A");
    let b = key("inv", "item", "B");
    let absent = key("inv", "item", "ABSENT");
    cache.write(write(value(&a, 1, "s", 100.0))).await.unwrap();
    cache.write(write(value(&b, 1, "s", 100.0))).await.unwrap();
    let removed = cache
        .invalidate_many(&[a.clone(), absent, a.clone(), b.clone()])
        .await
        .unwrap();
    assert_eq!(removed, vec![a, b]);
    assert_eq!(cache.stats().invalidations, 2);
    assert!(cache.is_empty());
}

#[tokio::test]
async fn freshness_matrix_matches_the_policy_bounds() {
    let policies = [(0.0, 0.0), (0.0, 5.0), (1.0, 1.0), (1.0, 10.0), (5.0, 20.0)];
    for (ttl, max_stale) in policies {
        for step in 0..20 {
            let age = f64::from(step) * 0.75;
            let cache = MemoryCache::new();
            let k = key("matrix", "item", "K");
            cache
                .write(write(value(&k, 1, "s", 1_000.0)))
                .await
                .unwrap();
            let hit = cache
                .get(&k, policy(ttl, max_stale), at(1_000.0 + age))
                .await
                .unwrap();
            let context = format!("ttl {ttl} max_stale {max_stale} age {age}");
            match hit {
                None => assert!(age > max_stale, "expired too early: {context}"),
                Some(hit) => {
                    assert!(age <= max_stale, "served after max_stale: {context}");
                    assert_eq!(hit.freshness.is_fresh(), age <= ttl, "{context}");
                    assert_eq!(hit.value.is_stale(), age > ttl, "{context}");
                }
            }
        }
    }
}

#[tokio::test]
async fn writes_are_monotonic_in_observation_time() {
    let cache = MemoryCache::new();
    let k = key("mono", "item", "K");
    let new = value(&k, 2, "s", 200.0);
    let r = cache.write(write(new.clone())).await.unwrap();
    assert_eq!(r.outcome, WriteOutcome::Stored);
    assert!(r.previous.is_none());
    assert!(r.current.same_revision(&new));

    let r = cache.write(write(value(&k, 1, "s", 100.0))).await.unwrap();
    assert_eq!(r.outcome, WriteOutcome::IgnoredOlder);
    assert!(r.previous.as_ref().unwrap().same_revision(&new));
    assert!(r.current.same_revision(&new));

    let r = cache.write(write(value(&k, 3, "s", 200.0))).await.unwrap();
    assert_eq!(r.outcome, WriteOutcome::IgnoredDuplicate);
    assert!(r.previous.as_ref().unwrap().same_revision(&new));

    assert!(cache.peek(&k).unwrap().same_revision(&new));
    let stats = cache.stats();
    assert_eq!(stats.sets, 1);
    assert_eq!(stats.ignored_older, 1);
    assert_eq!(stats.ignored_duplicate, 1);
}

#[tokio::test]
async fn forced_write_stores_an_older_value() {
    let cache = MemoryCache::new();
    let k = key("force", "item", "K");
    cache.write(write(value(&k, 2, "s", 200.0))).await.unwrap();
    let old = value(&k, 1, "s", 100.0);
    let r = cache.write(forced(old.clone())).await.unwrap();
    assert_eq!(r.outcome, WriteOutcome::Stored);
    assert_eq!(payload_of(r.previous.as_ref().unwrap()), 2);
    assert!(cache.peek(&k).unwrap().same_revision(&old));
}

#[tokio::test]
async fn replace_equal_stores_an_equal_value() {
    let cache = MemoryCache::new();
    let k = key("equal", "item", "K");
    cache.write(write(value(&k, 1, "s", 200.0))).await.unwrap();
    let replacement = value(&k, 2, "s", 200.0);
    let r = cache
        .write(CacheWrite {
            replace_equal: true,
            ..CacheWrite::new(replacement.clone())
        })
        .await
        .unwrap();
    assert_eq!(r.outcome, WriteOutcome::Stored);
    assert!(cache.peek(&k).unwrap().same_revision(&replacement));
}

#[tokio::test]
async fn several_candidates_for_one_key_keep_the_newest_in_any_order() {
    for newest_first in [true, false] {
        let cache = MemoryCache::new();
        let k = key("multi", "item", "K");
        let old = value(&k, 1, "s", 100.0);
        let new = value(&k, 2, "s", 200.0);
        let batch = if newest_first {
            vec![write(new.clone()), write(old.clone())]
        } else {
            vec![write(old.clone()), write(new.clone())]
        };
        let results = cache.write_many(batch).await.unwrap();
        assert_eq!(results.len(), 2);
        for (result, candidate) in results.iter().zip(if newest_first {
            [&new, &old]
        } else {
            [&old, &new]
        }) {
            assert_eq!(result.current.key(), candidate.key());
            assert!(result.current.same_revision(&new));
        }
        let for_old = &results[usize::from(newest_first)];
        assert_eq!(for_old.outcome, WriteOutcome::IgnoredOlder);
        assert!(for_old.previous.as_ref().unwrap().same_revision(&new));
        assert!(cache.peek(&k).unwrap().same_revision(&new));
    }
}

#[tokio::test]
async fn batch_results_follow_input_order_across_keys() {
    let cache = MemoryCache::new();
    let a = key("order", "item", "A");
    let b = key("order", "item", "B");
    let results = cache
        .write_many(vec![
            write(value(&a, 1, "s", 100.0)),
            write(value(&b, 2, "s", 100.0)),
            write(value(&a, 3, "s", 50.0)),
        ])
        .await
        .unwrap();
    let outcomes: Vec<_> = results.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            WriteOutcome::Stored,
            WriteOutcome::Stored,
            WriteOutcome::IgnoredOlder
        ]
    );
    assert_eq!(results[1].current.key(), &b);
}

#[tokio::test]
async fn higher_authority_wins_over_newer_observations() {
    let cache = MemoryCache::new();
    let k = key("auth", "item", "K");
    let rest = ranked(&k, 1, "rest", 100, 200.0);
    let r = cache.write(write(rest.clone())).await.unwrap();
    assert_eq!(r.outcome, WriteOutcome::Stored);

    let local = ranked(&k, 2, "local", 300, 100.0);
    let r = cache.write(write(local.clone())).await.unwrap();
    assert_eq!(r.outcome, WriteOutcome::Stored);
    assert!(r.previous.unwrap().same_revision(&rest));

    let r = cache
        .write(write(ranked(&k, 3, "rest", 100, 300.0)))
        .await
        .unwrap();
    assert_eq!(r.outcome, WriteOutcome::IgnoredLowerAuthority);
    assert!(r.current.same_revision(&local));
    assert!(r.previous.unwrap().same_revision(&local));
    assert_eq!(cache.stats().ignored_lower_authority, 1);
}

#[tokio::test]
async fn force_overrides_higher_authority() {
    let cache = MemoryCache::new();
    let k = key("auth", "item", "FORCE");
    cache
        .write(write(ranked(&k, 1, "local", 300, 100.0)))
        .await
        .unwrap();
    let rest = ranked(&k, 2, "rest", 100, 50.0);
    let r = cache.write(forced(rest.clone())).await.unwrap();
    assert_eq!(r.outcome, WriteOutcome::Stored);
    assert!(cache.peek(&k).unwrap().same_revision(&rest));
}

#[tokio::test]
async fn batch_keeps_the_highest_authority_in_any_order() {
    let k = key("auth", "item", "BATCH");
    let rest = ranked(&k, 1, "rest", 100, 200.0);
    let local = ranked(&k, 2, "local", 300, 100.0);
    let stream = ranked(&k, 3, "stream", 200, 300.0);
    let orders = [
        [&rest, &local, &stream],
        [&local, &rest, &stream],
        [&stream, &rest, &local],
        [&stream, &local, &rest],
    ];
    for order in orders {
        let cache = MemoryCache::new();
        let batch = order.iter().map(|v| write((*v).clone())).collect();
        let results = cache.write_many(batch).await.unwrap();
        assert!(results.iter().all(|r| r.current.same_revision(&local)));
        assert!(cache.peek(&k).unwrap().same_revision(&local));
        let stats = cache.stats();
        assert_eq!(stats.sets, 1, "the winner is decided first");
        assert_eq!(stats.ignored_lower_authority, 2);
    }
}

#[tokio::test]
async fn strongest_forced_candidate_wins_in_any_order() {
    let k = key("force", "item", "BATCH");
    let stored = ranked(&k, 0, "local", 300, 500.0);
    let weak = ranked(&k, 1, "rest", 100, 100.0);
    let strong = ranked(&k, 2, "rest", 100, 200.0);
    let ordinary = ranked(&k, 3, "rest", 100, 400.0);
    for order in [
        vec![
            forced(weak.clone()),
            forced(strong.clone()),
            write(ordinary.clone()),
        ],
        vec![
            write(ordinary.clone()),
            forced(strong.clone()),
            forced(weak.clone()),
        ],
    ] {
        let cache = MemoryCache::new();
        cache.write(write(stored.clone())).await.unwrap();
        cache.write_many(order).await.unwrap();
        assert!(cache.peek(&k).unwrap().same_revision(&strong));
    }
}

#[tokio::test]
async fn equal_ranks_compare_observation_time_only() {
    let cache = MemoryCache::new();
    let k = key("auth", "item", "ZERO");
    cache
        .write(write(ranked(&k, 1, "a", 0, 100.0)))
        .await
        .unwrap();
    let r = cache
        .write(write(ranked(&k, 2, "b", 0, 150.0)))
        .await
        .unwrap();
    assert_eq!(r.outcome, WriteOutcome::Stored);
    let r = cache
        .write(write(ranked(&k, 3, "a", 0, 120.0)))
        .await
        .unwrap();
    assert_eq!(r.outcome, WriteOutcome::IgnoredOlder);
    assert_eq!(payload_of(&cache.peek(&k).unwrap()), 2);
}

#[tokio::test]
async fn size_bound_holds_under_many_distinct_keys() {
    let cache = bounded(10_000);
    let mut batch = Vec::with_capacity(1_000);
    for i in 0..100_000_u32 {
        let k = key("bulk", "item", &i.to_string());
        batch.push(write(value(&k, i64::from(i), "s", 100.0)));
        if batch.len() == 1_000 {
            cache.write_many(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    cache.run_pending_tasks();
    let stats = cache.stats();
    assert!(stats.size <= 10_000, "size {}", stats.size);
    assert!(stats.evictions >= 90_000, "evictions {}", stats.evictions);
    assert_eq!(stats.sets, 100_000);
    assert_eq!(cache.len(), stats.size);
}

#[tokio::test]
async fn clear_and_matching_invalidation_count_removed_entries() {
    let cache = MemoryCache::unbounded();
    assert_eq!(cache.max_entries(), None);
    for i in 0..6 {
        let name = if i % 2 == 0 { "even" } else { "odd" };
        let k = key("bulk", name, &i.to_string());
        cache.write(write(value(&k, i, "s", 100.0))).await.unwrap();
    }
    let removed = cache.invalidate_matching(|k| k.subject() == "0" || k.subject() == "1");
    assert_eq!(removed.len(), 2);
    let removed = cache.invalidate_resource_type("bulk", "even");
    assert_eq!(removed.len(), 2, "subjects 2 and 4");
    assert_eq!(cache.clear().await.unwrap(), 2);
    assert_eq!(cache.clear().await.unwrap(), 0);
    let stats = cache.stats();
    assert_eq!(stats.invalidations, 6);
    assert_eq!(stats.size, 0);
    assert_eq!(stats.max_entries, None);
}

#[tokio::test]
async fn prune_removes_entries_past_their_own_stale_window() {
    let cache = MemoryCache::new();
    let short = key("prune", "short", "S");
    let long = key("prune", "long", "L");
    let default = key("prune", "other", "D");
    for k in [&short, &long, &default] {
        cache.write(write(value(k, 1, "s", 100.0))).await.unwrap();
    }
    let policies = PolicyResolver::new(policy(1.0, 10.0))
        .with_type_override("prune", "short", policy(1.0, 5.0))
        .with_type_override("prune", "long", policy(1.0, 100.0));

    assert!(cache.prune(at(105.0), &policies).is_empty());
    assert_eq!(cache.prune(at(106.0), &policies), vec![short.clone()]);
    assert_eq!(cache.prune(at(111.0), &policies), vec![default.clone()]);
    assert_eq!(cache.len(), 1);
    assert!(cache.peek(&long).is_some());
    assert_eq!(cache.stats().expirations, 2);
}

#[tokio::test]
async fn clones_share_one_store() {
    let cache = MemoryCache::with_config(MemoryCacheConfig::default());
    let clone = cache.clone();
    let k = key("share", "item", "K");
    clone.write(write(value(&k, 1, "s", 100.0))).await.unwrap();
    assert!(cache.peek(&k).is_some());
    assert_eq!(cache.keys(), vec![k]);
    assert_eq!(
        cache.stats().max_entries,
        Some(MemoryCacheConfig::DEFAULT_MAX_ENTRIES.get())
    );
    let rendered = format!("{cache:?}");
    assert!(rendered.starts_with("MemoryCache"), "{rendered}");

    fn assert_shareable<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    assert_shareable::<MemoryCache>();
    let _as_trait: std::sync::Arc<dyn SnapshotCache> = std::sync::Arc::new(cache);
}
