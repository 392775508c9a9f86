//! Concurrent writers never leave a losing revision stored.
//!
//! Many tasks on a multi-threaded runtime offer random (seeded) candidates
//! for the same few keys; afterwards each key must hold exactly the strongest
//! candidate ever offered, by (authority rank, observation time). Readers
//! running alongside must never see a key go backwards.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use coalestra_cache::MemoryCache;
use coalestra_core::{CacheRead, ResourceKey, SnapshotCache, Timestamp};
use support::{forever, key, ranked, write};

const KEYS: usize = 4;
const WRITERS: usize = 8;
const WRITES_PER_WRITER: usize = 400;
const ROUNDS: u64 = 12;

/// A small linear congruential generator: deterministic per seed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

/// One offered candidate: key index, rank, observation time.
type Offer = (usize, i64, f64);

fn offers(seed: u64) -> Vec<Offer> {
    let mut rng = Lcg(seed);
    (0..WRITES_PER_WRITER)
        .map(|n| {
            let key_index = rng.below(KEYS as u64) as usize;
            // Mostly equal authority, with a higher rank appearing only in the
            // second half, so both comparisons decide some writes.
            let rank = if n > WRITES_PER_WRITER / 2 && rng.below(10) == 0 {
                100
            } else {
                0
            };
            // Times advance with the writer's progress, with jitter, so many
            // candidates land near the stored one (the contended case), and
            // coarse steps make exact duplicates common.
            let observed_at = 1_000.0 + n as f64 + rng.below(8) as f64;
            (key_index, rank, observed_at)
        })
        .collect()
}

fn strength(rank: i64, observed_at: f64) -> (i64, u64) {
    (rank, observed_at.to_bits())
}

async fn run_round(round: u64) {
    let cache = MemoryCache::unbounded();
    let keys: Arc<Vec<ResourceKey>> = Arc::new(
        (0..KEYS)
            .map(|i| key("race", "item", &format!("K{i}")))
            .collect(),
    );
    let plans: Vec<Vec<Offer>> = (0..WRITERS)
        .map(|writer| offers(round * 1_000 + writer as u64 + 1))
        .collect();

    let done = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..2 {
        let cache = cache.clone();
        let keys = Arc::clone(&keys);
        let done = Arc::clone(&done);
        readers.push(tokio::spawn(async move {
            let reads: Vec<CacheRead> = keys
                .iter()
                .map(|k| CacheRead {
                    key: k.clone(),
                    policy: forever(),
                })
                .collect();
            let mut seen: Vec<Option<(i64, u64)>> = vec![None; KEYS];
            while !done.load(Ordering::Acquire) {
                let hits = cache
                    .get_many(&reads, Timestamp::from_secs(2_000.0))
                    .await
                    .unwrap();
                for (slot, hit) in seen.iter_mut().zip(hits) {
                    let Some(hit) = hit else {
                        assert!(slot.is_none(), "a stored key disappeared");
                        continue;
                    };
                    let now = strength(
                        hit.value.authority_rank(),
                        hit.value.observed_at().as_secs(),
                    );
                    if let Some(before) = *slot {
                        assert!(now >= before, "a key went backwards: {before:?} -> {now:?}");
                    }
                    *slot = Some(now);
                }
                tokio::task::yield_now().await;
            }
        }));
    }

    let mut writers = Vec::new();
    for (writer, plan) in plans.iter().cloned().enumerate() {
        let cache = cache.clone();
        let keys = Arc::clone(&keys);
        writers.push(tokio::spawn(async move {
            let mut pending = Vec::new();
            for (n, (key_index, rank, observed_at)) in plan.into_iter().enumerate() {
                let payload = (writer * WRITES_PER_WRITER + n) as i64;
                let value = ranked(&keys[key_index], payload, "w", rank, observed_at);
                // Alternate single writes with small batches.
                if writer % 2 == 0 {
                    cache.write(write(value)).await.unwrap();
                } else {
                    pending.push(write(value));
                    if pending.len() == 5 {
                        cache
                            .write_many(std::mem::take(&mut pending))
                            .await
                            .unwrap();
                    }
                }
                if n % 16 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            if !pending.is_empty() {
                cache.write_many(pending).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        reader.await.unwrap();
    }

    // The shadow model: the strongest candidate ever offered per key.
    let mut expected: Vec<Option<(i64, u64)>> = vec![None; KEYS];
    for &(key_index, rank, observed_at) in plans.iter().flatten() {
        let offered = strength(rank, observed_at);
        let slot = &mut expected[key_index];
        if slot.is_none_or(|held| offered > held) {
            *slot = Some(offered);
        }
    }
    for (index, k) in keys.iter().enumerate() {
        let stored = cache
            .peek(k)
            .map(|v| strength(v.authority_rank(), v.observed_at().as_secs()));
        assert_eq!(stored, expected[index], "round {round}, key {k}");
    }

    let stats = cache.stats();
    let decided =
        stats.sets + stats.ignored_older + stats.ignored_duplicate + stats.ignored_lower_authority;
    assert_eq!(decided, (WRITERS * WRITES_PER_WRITER) as u64);
    assert_eq!(stats.size, KEYS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_keep_the_strongest_candidate() {
    for round in 0..ROUNDS {
        run_round(round).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_forced_and_invalidating_writers_stay_consistent() {
    // Forced writes and invalidations have no single winner, but every
    // result must still describe what is stored at that moment: a stored
    // result's `current` is the candidate itself.
    let cache = MemoryCache::unbounded();
    let k = key("race", "forced", "K");
    let mut tasks = Vec::new();
    for writer in 0..6_u64 {
        let cache = cache.clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(writer + 77);
            for n in 0..200 {
                let value = ranked(&k, n, "w", 0, 1_000.0 + rng.below(50) as f64);
                let result = if rng.below(4) == 0 {
                    cache.write(support::forced(value.clone())).await.unwrap()
                } else {
                    cache.write(write(value.clone())).await.unwrap()
                };
                if result.outcome.is_stored() {
                    assert!(result.current.same_revision(&value));
                } else {
                    assert!(result.previous.is_some());
                }
                if rng.below(20) == 0 {
                    cache.invalidate(&k).await.unwrap();
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(cache.len() <= 1);
}
