//! Replacing a stored revision: recency, counters, batches, and conditional
//! removals that must never remove a revision written after they judged the
//! entry.

mod support;

use std::num::NonZeroU64;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use coalestra_cache::MemoryCache;
use coalestra_core::{CacheRead, PolicyResolver, SnapshotCache, WriteOutcome};
use support::{at, forever, key, payload_of, policy, value, write};

fn bounded(max: u64) -> MemoryCache {
    MemoryCache::with_capacity(NonZeroU64::new(max).expect("non-zero"))
}

#[tokio::test]
async fn a_replaced_entry_counts_as_recently_used() {
    let cache = bounded(2);
    let a = key("lru", "item", "A");
    let b = key("lru", "item", "B");
    let c = key("lru", "item", "C");
    cache.write(write(value(&a, 1, "s", 100.0))).await.unwrap();
    cache.write(write(value(&b, 2, "s", 100.0))).await.unwrap();
    let replaced = cache.write(write(value(&a, 3, "s", 101.0))).await.unwrap();
    assert_eq!(replaced.outcome, WriteOutcome::Stored);
    assert_eq!(payload_of(replaced.previous.as_ref().unwrap()), 1);
    assert_eq!(cache.len(), 2, "a replacement adds no entry");

    cache.write(write(value(&c, 4, "s", 100.0))).await.unwrap();
    let stats = cache.stats();
    assert_eq!(stats.size, 2);
    assert_eq!(stats.evictions, 1);
    assert_eq!(stats.sets, 4);
    assert!(cache.peek(&b).is_none(), "B was the least recently used");
    assert_eq!(payload_of(&cache.peek(&a).unwrap()), 3);
    assert_eq!(payload_of(&cache.peek(&c).unwrap()), 4);
}

#[tokio::test]
async fn an_ignored_write_reports_the_revision_that_beat_it() {
    let cache = MemoryCache::new();
    let k = key("ignored", "item", "K");
    let first = cache.write(write(value(&k, 1, "s", 200.0))).await.unwrap();
    let late = cache.write(write(value(&k, 2, "s", 100.0))).await.unwrap();
    assert_eq!(late.outcome, WriteOutcome::IgnoredOlder);
    assert!(late.current.same_revision(&first.current));
    assert!(late.previous.unwrap().same_revision(&first.current));
    let hit = cache.get(&k, forever(), at(300.0)).await.unwrap().unwrap();
    assert!(hit.value.same_revision(&first.current));
}

#[tokio::test]
async fn a_batch_replaces_an_existing_entry_in_place() {
    let cache = bounded(4);
    let a = key("batch", "item", "A");
    let b = key("batch", "item", "B");
    cache.write(write(value(&a, 1, "s", 100.0))).await.unwrap();
    let results = cache
        .write_many(vec![
            write(value(&a, 2, "s", 150.0)),
            write(value(&b, 3, "s", 100.0)),
            write(value(&a, 4, "s", 120.0)),
        ])
        .await
        .unwrap();
    let outcomes: Vec<WriteOutcome> = results.iter().map(|r| r.outcome).collect();
    assert_eq!(
        outcomes,
        [
            WriteOutcome::Stored,
            WriteOutcome::Stored,
            WriteOutcome::IgnoredOlder
        ]
    );
    assert_eq!(payload_of(results[0].previous.as_ref().unwrap()), 1);
    assert_eq!(payload_of(&results[2].current), 2);
    assert_eq!(payload_of(&cache.peek(&a).unwrap()), 2);
    let stats = cache.stats();
    assert_eq!(stats.size, 2);
    assert_eq!(stats.sets, 3);
    assert_eq!(stats.ignored_older, 1);
}

#[tokio::test]
async fn an_expired_revision_is_removed_but_its_replacement_is_served() {
    let cache = MemoryCache::new();
    let k = key("expiry", "item", "K");
    cache.write(write(value(&k, 1, "s", 100.0))).await.unwrap();
    let read = [CacheRead {
        key: k.clone(),
        policy: policy(1.0, 5.0),
    }];
    assert!(cache.get_many(&read, at(110.0)).await.unwrap()[0].is_none());
    assert_eq!(cache.stats().expirations, 1);
    assert!(cache.peek(&k).is_none());

    cache.write(write(value(&k, 2, "s", 108.0))).await.unwrap();
    cache.write(write(value(&k, 3, "s", 109.0))).await.unwrap();
    let hit = cache.get_many(&read, at(110.0)).await.unwrap()[0]
        .clone()
        .expect("the newest revision is fresh");
    assert_eq!(payload_of(&hit.value), 3);
    let policies = PolicyResolver::new(policy(1.0, 5.0));
    assert!(cache.prune(at(110.0), &policies).is_empty());
    assert_eq!(cache.prune(at(115.0), &policies), vec![k.clone()]);
    assert_eq!(cache.stats().expirations, 2);
}

/// Readers judge a key whose every revision but the newest is expired, and
/// try to remove what they judged, while one writer keeps replacing it. A
/// removal must only ever remove the revision it judged: the newest
/// revision, once written, stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removals_never_remove_a_newer_revision() {
    const WRITES: usize = 2_000;
    for round in 0..4 {
        let cache = MemoryCache::unbounded();
        let k = key("removal", "race", &round.to_string());
        let last = (WRITES - 1) as f64;
        // At `now`, only the last revision is inside the stale window.
        let now = at(last + 0.25);
        let done = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for _ in 0..3 {
            let cache = cache.clone();
            let done = Arc::clone(&done);
            let read = [CacheRead {
                key: k.clone(),
                policy: policy(0.1, 0.5),
            }];
            readers.push(tokio::spawn(async move {
                let mut reads = 0_u64;
                while !done.load(Ordering::Acquire) {
                    let hits = cache.get_many(&read, now).await.unwrap();
                    if let Some(hit) = &hits[0] {
                        assert_eq!(payload_of(&hit.value), (WRITES - 1) as i64);
                    }
                    reads += 1;
                    if reads % 8 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            }));
        }
        let writer = {
            let cache = cache.clone();
            let k = k.clone();
            tokio::spawn(async move {
                for n in 0..WRITES {
                    let written = cache
                        .write(write(value(&k, n as i64, "w", n as f64)))
                        .await
                        .unwrap();
                    assert_eq!(written.outcome, WriteOutcome::Stored);
                    if n % 16 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
            })
        };
        writer.await.unwrap();
        // Let the readers judge the final revision a few more times.
        for _ in 0..64 {
            tokio::task::yield_now().await;
        }
        done.store(true, Ordering::Release);
        for reader in readers {
            reader.await.unwrap();
        }
        let stored = cache.peek(&k).expect("the newest revision stays stored");
        assert_eq!(payload_of(&stored), (WRITES - 1) as i64, "round {round}");
        let stats = cache.stats();
        assert_eq!(stats.sets, WRITES as u64);
        assert_eq!(stats.size, 1);
    }
}
