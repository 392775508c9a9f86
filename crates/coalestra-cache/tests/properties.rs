//! Property tests of the memory cache's write rule (issue 10, "Property
//! tests": for any sequence of writes `(rank, observed_at, force,
//! replace_equal)` applied concurrently in any order, the final stored
//! revision equals the one a sequential model picks).
//!
//! The model is written here from the documented rule (`SnapshotCache`:
//! forced writes win; otherwise higher authority wins, then newer
//! observation; equal observations are duplicates unless `replace_equal`),
//! independently of `WriteOutcome::decide`. Writers run on real threads
//! released together by a barrier, each write being one conditional write
//! on one key, so moka's per-key serialization is what is under test.
//!
//! Runs are deterministic in their inputs (fixed proptest seed, no
//! failure-persistence files); thread interleavings vary, which is the
//! point, and every interleaving must satisfy the properties.

use std::sync::{Arc, Barrier};

use coalestra_cache::MemoryCache;
use coalestra_core::value::ValueParts;
use coalestra_core::{
    CacheWrite, Payload, ResourceKey, SnapshotCache, SnapshotValue, Timestamp, WriteOutcome,
    WriteResult,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

fn config() -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    Config {
        cases: env("COALESTRA_PROPTEST_CASES").map_or(192, |n| n as u32),
        rng_seed: RngSeed::Fixed(env("COALESTRA_PROPTEST_SEED").unwrap_or(0x00CA_C4E5)),
        failure_persistence: None,
        ..Config::default()
    }
}

/// One candidate write. Small ranges make ties common.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Spec {
    rank: i64,
    at: u8,
    force: bool,
    replace_equal: bool,
}

impl Spec {
    fn strength(&self) -> (i64, u8) {
        (self.rank, self.at)
    }
}

fn spec(force_weight: f64) -> impl Strategy<Value = Spec> {
    (
        -1i64..3,
        0u8..4,
        proptest::bool::weighted(force_weight),
        any::<bool>(),
    )
        .prop_map(|(rank, at, force, replace_equal)| Spec {
            rank,
            at,
            force,
            replace_equal,
        })
}

fn key() -> ResourceKey {
    ResourceKey::new("props", "write", "k").expect("valid key")
}

/// Revision `id` of the key with the spec's rank and observation time.
fn revision(id: usize, spec: &Spec) -> SnapshotValue {
    let mut parts = ValueParts::new(
        key(),
        Payload::new(id),
        format!("source-{}", spec.rank),
        Timestamp::from_secs(1_000.0 + f64::from(spec.at)),
    );
    parts.authority_rank = spec.rank;
    SnapshotValue::from_parts(parts)
}

fn write_of(id: usize, spec: &Spec) -> CacheWrite {
    CacheWrite {
        value: revision(id, spec),
        force: spec.force,
        replace_equal: spec.replace_equal,
    }
}

fn id_of(value: &SnapshotValue) -> usize {
    *value.value::<usize>().expect("test payloads are ids")
}

/// The documented rule, for a candidate against the revision it finds.
fn model(candidate: &Spec, previous: Option<&Spec>) -> WriteOutcome {
    let Some(previous) = previous else {
        return WriteOutcome::Stored;
    };
    if candidate.force {
        return WriteOutcome::Stored;
    }
    if candidate.rank != previous.rank {
        return if candidate.rank > previous.rank {
            WriteOutcome::Stored
        } else {
            WriteOutcome::IgnoredLowerAuthority
        };
    }
    if candidate.at != previous.at {
        return if candidate.at > previous.at {
            WriteOutcome::Stored
        } else {
            WriteOutcome::IgnoredOlder
        };
    }
    if candidate.replace_equal {
        WriteOutcome::Stored
    } else {
        WriteOutcome::IgnoredDuplicate
    }
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}

/// Writes `initial` (id 0), then every spec (id `i + 1`) concurrently, one
/// thread per write in `order`, all released by one barrier. Returns each
/// write's result by id, and the stored revision.
fn race(
    initial: Option<Spec>,
    specs: &[Spec],
    order: &[usize],
) -> (Vec<WriteResult>, Option<SnapshotValue>) {
    let cache = Arc::new(MemoryCache::unbounded());
    if let Some(initial) = initial {
        block_on(cache.write(write_of(0, &initial))).expect("initial write");
    }
    let barrier = Barrier::new(order.len());
    let mut results: Vec<Option<WriteResult>> = vec![None; specs.len()];
    std::thread::scope(|scope| {
        let handles: Vec<_> = order
            .iter()
            .map(|&i| {
                let (cache, barrier, spec) = (Arc::clone(&cache), &barrier, specs[i]);
                scope.spawn(move || {
                    let write = write_of(i + 1, &spec);
                    barrier.wait();
                    (
                        i,
                        block_on(cache.write(write)).expect("memory writes succeed"),
                    )
                })
            })
            .collect();
        for handle in handles {
            let (i, result) = handle.join().expect("writer thread");
            results[i] = Some(result);
        }
    });
    let results = results
        .into_iter()
        .map(|r| r.expect("every write reported"))
        .collect();
    (results, cache.peek(&key()))
}

/// The spec of revision `id` (0 is the initial one).
fn spec_of(id: usize, initial: Option<Spec>, specs: &[Spec]) -> Spec {
    if id == 0 {
        initial.expect("revision 0 exists only with an initial write")
    } else {
        specs[id - 1]
    }
}

/// Checks that the concurrent run equals a sequential run of the model:
/// every outcome is the model's against the revision it reports as
/// previous, the stored writes form one chain from the initial state to the
/// final revision, and every ignored write was compared with a revision of
/// that chain.
fn assert_linearizable(
    initial: Option<Spec>,
    specs: &[Spec],
    results: &[WriteResult],
    stored: Option<&SnapshotValue>,
) -> Result<(), TestCaseError> {
    let mut successor: std::collections::HashMap<Option<usize>, usize> = Default::default();
    for (i, result) in results.iter().enumerate() {
        let id = i + 1;
        let previous = result.previous.as_ref().map(id_of);
        let expected = model(
            &specs[i],
            previous.map(|p| spec_of(p, initial, specs)).as_ref(),
        );
        prop_assert_eq!(
            result.outcome,
            expected,
            "write {} {:?} against {:?}",
            id,
            specs[i],
            previous
        );
        if result.outcome.is_stored() {
            prop_assert_eq!(id_of(&result.current), id);
            let clash = successor.insert(previous, id);
            prop_assert!(
                clash.is_none(),
                "writes {:?} and {} both replaced {:?}",
                clash,
                id,
                previous
            );
        } else {
            prop_assert_eq!(
                Some(id_of(&result.current)),
                previous,
                "an ignored write keeps the stored revision"
            );
        }
    }
    // Walk the chain of stored writes from the initial state.
    let mut node = initial.map(|_| 0);
    let mut chain = vec![node];
    while let Some(&next) = successor.get(&node) {
        node = Some(next);
        chain.push(node);
    }
    prop_assert_eq!(
        chain.len() - 1,
        successor.len(),
        "every stored write is on one chain: {:?} vs {:?}",
        chain,
        successor
    );
    prop_assert_eq!(
        stored.map(id_of),
        node,
        "the stored revision ends the chain"
    );
    for (i, result) in results.iter().enumerate() {
        if !result.outcome.is_stored() {
            let previous = result.previous.as_ref().map(id_of);
            prop_assert!(
                chain.contains(&previous),
                "write {} saw {:?}, never stored",
                i + 1,
                previous
            );
        }
    }
    Ok(())
}

fn cases(force_weight: f64) -> impl Strategy<Value = (Option<Spec>, Vec<Spec>, Vec<usize>)> {
    (
        proptest::option::of(spec(0.0)),
        proptest::collection::vec(spec(force_weight), 1..10),
    )
        .prop_flat_map(|(initial, specs)| {
            let order: Vec<usize> = (0..specs.len()).collect();
            (Just(initial), Just(specs), Just(order).prop_shuffle())
        })
}

proptest! {
    #![proptest_config(config())]

    /// Without forced writes the survivor does not depend on the order at
    /// all: it is the strongest revision (highest rank, then newest).
    #[test]
    fn concurrent_ordinary_writes_keep_the_strongest_revision(
        (initial, specs, order) in cases(0.0),
    ) {
        let (results, stored) = race(initial, &specs, &order);
        let stored = stored.expect("a revision is stored");
        let strongest = initial
            .iter()
            .chain(&specs)
            .map(Spec::strength)
            .max()
            .expect("at least one write");
        let stored_spec = spec_of(id_of(&stored), initial, &specs);
        prop_assert_eq!(stored_spec.strength(), strongest);
        let holders = initial.iter().chain(&specs).filter(|s| s.strength() == strongest).count();
        if holders == 1 {
            let winner = initial
                .iter()
                .chain(&specs)
                .position(|s| s.strength() == strongest)
                .expect("the strongest exists");
            let winner = if initial.is_some() { winner } else { winner + 1 };
            prop_assert_eq!(id_of(&stored), winner, "the unique strongest revision survives");
        }
        assert_linearizable(initial, &specs, &results, Some(&stored))?;
    }

    /// With forced and replace-equal writes the order matters, and the run
    /// must equal the model applied in the order the cache serialized them.
    #[test]
    fn concurrent_mixed_writes_equal_a_sequential_model_run(
        (initial, specs, order) in cases(0.25),
    ) {
        let (results, stored) = race(initial, &specs, &order);
        assert_linearizable(initial, &specs, &results, stored.as_ref())?;
    }

    /// One batch carrying every candidate keeps the same survivor whatever
    /// the order of the batch: the strongest forced candidate when there is
    /// one, else the strongest of the stored and ordinary revisions.
    #[test]
    fn a_batch_keeps_the_winner_whatever_its_order(
        (initial, specs, order) in cases(0.25),
    ) {
        let run = |order: &[usize]| {
            let cache = MemoryCache::unbounded();
            if let Some(initial) = initial {
                block_on(cache.write(write_of(0, &initial))).expect("initial write");
            }
            let writes = order.iter().map(|&i| write_of(i + 1, &specs[i])).collect();
            let results = block_on(cache.write_many(writes)).expect("memory writes succeed");
            (results, cache.peek(&key()).expect("a revision is stored"))
        };
        let forward: Vec<usize> = (0..specs.len()).collect();
        let (_, in_order) = run(&forward);
        let (results, shuffled) = run(&order);
        prop_assert_eq!(results.len(), specs.len());
        let strongest_forced = specs.iter().filter(|s| s.force).map(Spec::strength).max();
        let expected = strongest_forced.unwrap_or_else(|| {
            initial
                .iter()
                .chain(&specs)
                .map(Spec::strength)
                .max()
                .expect("at least one write")
        });
        for stored in [&in_order, &shuffled] {
            let spec = spec_of(id_of(stored), initial, &specs);
            prop_assert_eq!(spec.strength(), expected, "batch survivor {:?}", spec);
        }
        // Each reported outcome is the model's against its reported previous.
        for (position, result) in results.iter().enumerate() {
            let i = order[position];
            let previous = result.previous.as_ref().map(|p| spec_of(id_of(p), initial, &specs));
            prop_assert_eq!(result.outcome, model(&specs[i], previous.as_ref()));
        }
    }
}
