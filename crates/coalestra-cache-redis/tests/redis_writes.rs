//! Conditional writes against a real Redis server: the write-rule table,
//! batches in every order and concurrent writers on two clients, each
//! checked against the memory cache (the reference semantics).

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use coalestra_cache::MemoryCache;
use coalestra_core::{CacheWrite, SnapshotCache, SnapshotValue, Version, WriteOutcome};
use common::{
    cache, flagged, forced, forever, key, ranked, server_or_skip, unique_prefix, write, Lcg,
};

/// One row of the write-rule table.
#[derive(Debug, Clone, Copy)]
struct Case {
    previous: Option<(i64, f64)>,
    rank: i64,
    observed_at: f64,
    force: bool,
    replace_equal: bool,
}

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for previous in [None, Some((0, 100.0))] {
        for rank in [-1, 0, 1] {
            for observed_at in [99.0, 100.0, 101.0] {
                for force in [false, true] {
                    for replace_equal in [false, true] {
                        cases.push(Case {
                            previous,
                            rank,
                            observed_at,
                            force,
                            replace_equal,
                        });
                    }
                }
            }
        }
    }
    // Boundaries the script must compare exactly.
    let edge = |previous, rank, observed_at| Case {
        previous: Some(previous),
        rank,
        observed_at,
        force: false,
        replace_equal: false,
    };
    cases.push(edge((i64::MAX, 0.0), i64::MIN, 10.0));
    cases.push(edge((i64::MIN, 10.0), i64::MAX, 0.0));
    cases.push(edge((i64::MIN, 10.0), i64::MIN + 1, 0.0));
    cases.push(edge((0, 0.0), 0, -0.0));
    cases.push(edge((0, -0.0), 0, 0.0));
    cases.push(edge((0, -5.5), 0, -5.25));
    cases.push(edge((3, 1_700_000_000.000_001), 3, 1_700_000_000.000_002));
    cases.push(edge((3, 1_700_000_000.000_002), 3, 1_700_000_000.000_001));
    cases.push(edge((-2, 1.0e-300), -2, 1.0e-300));
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_rule_table_matches_the_memory_cache() {
    let Some(url) = server_or_skip("write_rule_table").await else {
        return;
    };
    let redis = cache(&url, &unique_prefix("rules"));
    let memory = MemoryCache::unbounded();
    let cases = cases();
    let keys: Vec<_> = (0..cases.len())
        .map(|i| key(&format!("rule:item:case{i}")))
        .collect();

    // Previous revisions, forced into both caches (same versions).
    let previous: Vec<Option<SnapshotValue>> = cases
        .iter()
        .zip(&keys)
        .map(|(case, k)| {
            case.previous
                .map(|(rank, at)| ranked(k, -1_i64, "old", rank, at))
        })
        .collect();
    let seed: Vec<CacheWrite> = previous.iter().flatten().cloned().map(forced).collect();
    redis.write_many(seed.clone()).await.unwrap();
    memory.write_many(seed).await.unwrap();

    // Every candidate in one batch.
    let candidates: Vec<CacheWrite> = cases
        .iter()
        .zip(&keys)
        .enumerate()
        .map(|(i, (case, k))| {
            let value = ranked(k, i as i64, "new", case.rank, case.observed_at);
            flagged(value, case.force, case.replace_equal)
        })
        .collect();
    let from_redis = redis.write_many(candidates.clone()).await.unwrap();
    let from_memory = memory.write_many(candidates.clone()).await.unwrap();

    let mut seen = HashSet::new();
    for (i, case) in cases.iter().enumerate() {
        let (r, m) = (&from_redis[i], &from_memory[i]);
        let expected = WriteOutcome::decide(
            &candidates[i].value,
            previous[i].as_ref(),
            case.force,
            case.replace_equal,
        );
        assert_eq!(r.outcome, expected, "case {i}: {case:?}");
        assert_eq!(r.outcome, m.outcome, "case {i}: {case:?}");
        assert_eq!(
            r.previous.as_ref().map(SnapshotValue::version),
            m.previous.as_ref().map(SnapshotValue::version),
            "case {i}"
        );
        assert_eq!(r.current.version(), m.current.version(), "case {i}");
        seen.insert(r.outcome);
    }
    for outcome in [
        WriteOutcome::Stored,
        WriteOutcome::IgnoredLowerAuthority,
        WriteOutcome::IgnoredOlder,
        WriteOutcome::IgnoredDuplicate,
    ] {
        assert!(
            seen.contains(&outcome),
            "the table never produced {outcome:?}"
        );
    }

    // What is stored, read back through Redis, is what memory kept.
    let now = common::at(2_000_000_000.0);
    for k in &keys {
        let hit = redis.get(k, forever(), now).await.unwrap().expect("stored");
        let kept = memory.peek(k).expect("stored");
        assert_eq!(hit.value.version(), kept.version(), "{k}");
        assert_eq!(hit.value.authority_rank(), kept.authority_rank());
        assert_eq!(
            hit.value.observed_at().as_secs().to_bits(),
            kept.observed_at().as_secs().to_bits()
        );
        assert_eq!(
            hit.value.value::<i64>().unwrap(),
            kept.value::<i64>().unwrap()
        );
    }
    let (r, m) = (redis.stats(), memory.stats());
    assert_eq!(
        (
            r.sets,
            r.ignored_lower_authority,
            r.ignored_older,
            r.ignored_duplicate
        ),
        (
            m.sets,
            m.ignored_lower_authority,
            m.ignored_older,
            m.ignored_duplicate
        )
    );
    redis.clear().await.unwrap();
}

/// The candidates of the batch test: ordinary and forced, of every strength.
const BATCH: [(i64, f64, bool, bool); 5] = [
    (0, 101.0, false, false),
    (1, 99.0, false, false),
    (1, 99.0, false, true),
    (0, 50.0, true, false),
    (-1, 200.0, true, false),
];

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for rest in permutations(n - 1) {
        for slot in 0..=rest.len() {
            let mut p = rest.clone();
            p.insert(slot, n - 1);
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_keep_the_winner_in_any_order() {
    let Some(url) = server_or_skip("batch_any_order").await else {
        return;
    };
    let redis = cache(&url, &unique_prefix("batch"));
    let memory = MemoryCache::unbounded();
    let mut winners = HashSet::new();
    for (n, order) in permutations(BATCH.len()).into_iter().enumerate() {
        let k = key(&format!("rule:item:perm{n}"));
        let stored = ranked(&k, -1_i64, "old", 0, 100.0);
        redis.write(write(stored.clone())).await.unwrap();
        memory.write(write(stored)).await.unwrap();
        let candidates: Vec<SnapshotValue> = BATCH
            .iter()
            .enumerate()
            .map(|(i, (rank, at, _, _))| ranked(&k, i as i64, "new", *rank, *at))
            .collect();
        let batch: Vec<CacheWrite> = order
            .iter()
            .map(|&i| flagged(candidates[i].clone(), BATCH[i].2, BATCH[i].3))
            .collect();
        let from_redis = redis.write_many(batch.clone()).await.unwrap();
        let from_memory = memory.write_many(batch).await.unwrap();
        for (position, (r, m)) in from_redis.iter().zip(&from_memory).enumerate() {
            assert_eq!(r.outcome, m.outcome, "order {order:?}, position {position}");
            assert_eq!(r.current.version(), m.current.version(), "order {order:?}");
            assert_eq!(
                r.previous.as_ref().map(SnapshotValue::version),
                m.previous.as_ref().map(SnapshotValue::version),
                "order {order:?}, position {position}"
            );
        }
        let hit = redis
            .get(&k, forever(), common::at(1_000.0))
            .await
            .unwrap()
            .expect("stored");
        winners.insert(*hit.value.value::<i64>().unwrap());
    }
    // The strongest forced candidate wins, whatever the order.
    assert_eq!(winners.into_iter().collect::<Vec<_>>(), vec![3]);
    redis.clear().await.unwrap();
}

const KEYS: usize = 6;
const WRITERS: usize = 8;
const WRITES_PER_WRITER: usize = 120;

fn strength(value: &SnapshotValue) -> (i64, u64) {
    (value.authority_rank(), value.observed_at().as_secs() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_two_clients_keep_the_strongest_candidate() {
    let Some(url) = server_or_skip("concurrent_writers").await else {
        return;
    };
    for round in 0..2_u64 {
        let prefix = unique_prefix("race");
        let clients = [cache(&url, &prefix), cache(&url, &prefix)];
        let keys: Arc<Vec<_>> =
            Arc::new((0..KEYS).map(|i| key(&format!("race:item:K{i}"))).collect());
        let plans: Vec<Vec<(usize, i64, f64)>> = (0..WRITERS)
            .map(|writer| {
                let mut rng = Lcg(round * 1_000 + writer as u64 + 1);
                (0..WRITES_PER_WRITER)
                    .map(|_| {
                        let k = rng.below(KEYS as u64) as usize;
                        let rank = rng.below(3) as i64;
                        (k, rank, 1_000.0 + rng.below(40) as f64)
                    })
                    .collect()
            })
            .collect();
        let mut tasks = Vec::new();
        for (writer, plan) in plans.iter().cloned().enumerate() {
            let client = clients[writer % 2].clone();
            let keys = Arc::clone(&keys);
            tasks.push(tokio::spawn(async move {
                let mut pending = Vec::new();
                for (n, (k, rank, at)) in plan.into_iter().enumerate() {
                    let payload = (writer * WRITES_PER_WRITER + n) as i64;
                    let value = ranked(&keys[k], payload, "w", rank, at);
                    if writer % 4 < 2 {
                        client.write(write(value)).await.unwrap();
                    } else {
                        pending.push(write(value));
                        if pending.len() == 5 {
                            client
                                .write_many(std::mem::take(&mut pending))
                                .await
                                .unwrap();
                        }
                    }
                }
                if !pending.is_empty() {
                    client.write_many(pending).await.unwrap();
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // The shadow model: the strongest candidate ever offered per key.
        let mut expected: Vec<Option<(i64, u64)>> = vec![None; KEYS];
        for &(k, rank, at) in plans.iter().flatten() {
            let offered = (rank, at as u64);
            if expected[k].is_none_or(|held| offered > held) {
                expected[k] = Some(offered);
            }
        }
        let reader = cache(&url, &prefix);
        let now = common::at(5_000.0);
        for (i, k) in keys.iter().enumerate() {
            let stored = reader.get(k, forever(), now).await.unwrap();
            assert_eq!(
                stored.map(|hit| strength(&hit.value)),
                expected[i],
                "round {round}, {k}"
            );
        }
        let decided: u64 = clients
            .iter()
            .map(|client| {
                let s = client.stats();
                s.sets + s.ignored_lower_authority + s.ignored_older + s.ignored_duplicate
            })
            .sum();
        assert_eq!(decided, (WRITERS * WRITES_PER_WRITER) as u64);
        reader.clear().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_forced_writers_and_invalidations_stay_consistent() {
    let Some(url) = server_or_skip("concurrent_forced").await else {
        return;
    };
    let prefix = unique_prefix("forced");
    let clients = [cache(&url, &prefix), cache(&url, &prefix)];
    let k = key("race:item:forced");
    let mut tasks = Vec::new();
    for writer in 0..6_u64 {
        let client = clients[writer as usize % 2].clone();
        let k = k.clone();
        tasks.push(tokio::spawn(async move {
            let mut rng = Lcg(writer + 77);
            let mut stored: Vec<Version> = Vec::new();
            for n in 0..120 {
                let value = ranked(&k, n, "w", 0, 1_000.0 + rng.below(50) as f64);
                let result = if rng.below(4) == 0 {
                    client.write(forced(value.clone())).await.unwrap()
                } else {
                    client.write(write(value.clone())).await.unwrap()
                };
                if result.outcome.is_stored() {
                    assert!(result.current.same_revision(&value));
                    stored.push(value.version());
                } else {
                    let previous = result.previous.expect("an ignored write names the winner");
                    assert_eq!(previous.version(), result.current.version());
                }
                if rng.below(20) == 0 {
                    client.invalidate(&k).await.unwrap();
                }
            }
            stored
        }));
    }
    let mut stored: HashMap<Version, ()> = HashMap::new();
    for task in tasks {
        for version in task.await.unwrap() {
            stored.insert(version, ());
        }
    }
    // Whatever is left is a revision some writer was told it stored.
    if let Some(hit) = clients[0]
        .get(&k, forever(), common::at(9_000.0))
        .await
        .unwrap()
    {
        assert!(stored.contains_key(&hit.value.version()));
    }
    clients[0].clear().await.unwrap();
}
