//! Conditional writes: one atomic compare-and-store per key, however many
//! candidates a batch carries for it.
//!
//! The candidates of one key are decided while the key's stripe lock is
//! held (see [`KeyLocks`]), from reading the stored revision to storing the
//! winner, so no concurrent writer or conditional removal can interleave.
//! Nothing in here awaits.

use std::cmp::Ordering;
use std::sync::Arc;

use coalestra_core::{CacheWrite, KeyMap, ResourceKey, SnapshotValue, WriteOutcome, WriteResult};

use super::counters::Counters;
use super::locks::KeyLocks;
use super::slot::Slot;
use super::Store;

/// What one conditional write did, and whether it added an entry.
pub(crate) struct Applied {
    pub(crate) result: WriteResult,
    /// The key had no entry and now has one.
    pub(crate) inserted: bool,
}

/// Applies one conditional write: the single-write path, without the
/// grouping and ordering a batch needs.
pub(crate) fn apply_one(
    store: &Store,
    locks: &KeyLocks,
    counters: &Counters,
    write: CacheWrite,
) -> Applied {
    let CacheWrite {
        value,
        force,
        replace_equal,
    } = write;
    let guard = locks.lock(value.key());
    let (outcome, previous, inserted) = match stored_slot(store, value.key()) {
        Some(slot) => {
            let mut revision = slot.write();
            let outcome = WriteOutcome::decide(&value, Some(&revision.value), force, replace_equal);
            let previous = if outcome.is_stored() {
                revision.replace(value.clone())
            } else {
                revision.value.clone()
            };
            (outcome, Some(previous), false)
        }
        None => {
            let outcome = WriteOutcome::decide(&value, None, force, replace_equal);
            let inserted = outcome.is_stored();
            if inserted {
                store.insert(value.key().clone(), Arc::new(Slot::new(value.clone())));
            }
            (outcome, None, inserted)
        }
    };
    drop(guard);
    counters.write(outcome);
    let current = match (&previous, outcome.is_stored()) {
        // An ignored candidate always has a stored revision that beat it.
        (Some(kept), false) => kept.clone(),
        _ => value,
    };
    Applied {
        result: WriteResult {
            outcome,
            previous,
            current,
        },
        inserted,
    }
}

/// The slot of `key`, marked as recently used, if the key has an entry.
///
/// A key without an entry costs one lookup: moka's get would also log a miss
/// for its maintenance to process.
fn stored_slot(store: &Store, key: &ResourceKey) -> Option<Arc<Slot>> {
    if store.contains_key(key) {
        store.get(key)
    } else {
        None
    }
}

/// One candidate's decision, before the key's final revision is known.
struct Decision {
    index: usize,
    outcome: WriteOutcome,
    previous: Option<SnapshotValue>,
}

/// Applies a batch of conditional writes; results follow input order.
///
/// The second value is the number of keys that had no entry and now have
/// one.
pub(crate) fn apply_batch(
    store: &Store,
    locks: &KeyLocks,
    counters: &Counters,
    writes: Vec<CacheWrite>,
) -> (Vec<WriteResult>, u64) {
    let mut inserted = 0;
    let mut results: Vec<Option<WriteResult>> = Vec::with_capacity(writes.len());
    results.resize_with(writes.len(), || None);
    for (key, indices) in group_by_key(&writes) {
        let ordered = decision_order(&writes, indices);
        let (decisions, current, added) = apply_key(store, locks, key, &writes, &ordered);
        inserted += u64::from(added);
        for decision in decisions {
            counters.write(decision.outcome);
            results[decision.index] = Some(WriteResult {
                outcome: decision.outcome,
                previous: decision.previous,
                current: current.clone(),
            });
        }
    }
    (results.into_iter().flatten().collect(), inserted)
}

/// The input indices of each key, keys in first-occurrence order.
fn group_by_key(writes: &[CacheWrite]) -> Vec<(ResourceKey, Vec<usize>)> {
    if let [only] = writes {
        return vec![(only.value.key().clone(), vec![0])];
    }
    let mut slots: KeyMap<usize> = KeyMap::default();
    let mut groups: Vec<(ResourceKey, Vec<usize>)> = Vec::new();
    for (index, write) in writes.iter().enumerate() {
        let key = write.value.key();
        match slots.get(key) {
            Some(&slot) => groups[slot].1.push(index),
            None => {
                slots.insert(key.clone(), groups.len());
                groups.push((key.clone(), vec![index]));
            }
        }
    }
    groups
}

/// The order in which one key's candidates are decided, chosen so that the
/// final revision does not depend on the input order.
///
/// Ordinary candidates go first, strongest (highest authority, then newest)
/// first: the strongest one is compared with the stored revision and every
/// weaker one is then reported against it. Forced candidates follow, weakest
/// first, so the strongest forced candidate is the one left stored. Ties keep
/// their input order.
fn decision_order(writes: &[CacheWrite], mut indices: Vec<usize>) -> Vec<usize> {
    if indices.len() < 2 {
        return indices;
    }
    let strength = |index: &usize| {
        let value = &writes[*index].value;
        (value.authority_rank(), value.observed_at())
    };
    let compare = |a: &usize, b: &usize| {
        let (rank_a, at_a) = strength(a);
        let (rank_b, at_b) = strength(b);
        rank_a.cmp(&rank_b).then_with(|| at_a.total_cmp(&at_b))
    };
    indices.sort_by(|a, b| {
        match (writes[*a].force, writes[*b].force) {
            (false, true) => Ordering::Less,
            (true, false) => Ordering::Greater,
            // Ordinary candidates: strongest first.
            (false, false) => compare(b, a),
            // Forced candidates: weakest first.
            (true, true) => compare(a, b),
        }
    });
    indices
}

/// Decides every candidate of one key under the key's lock and returns the
/// decisions, the revision stored afterwards and whether the key's entry
/// was created.
fn apply_key(
    store: &Store,
    locks: &KeyLocks,
    key: ResourceKey,
    writes: &[CacheWrite],
    ordered: &[usize],
) -> (Vec<Decision>, SnapshotValue, bool) {
    let mut decisions = Vec::with_capacity(ordered.len());
    let _guard = locks.lock(&key);
    let slot = stored_slot(store, &key);
    let mut revision = slot.as_deref().map(Slot::write);
    let mut current = revision.as_ref().map(|stored| stored.value.clone());
    let mut changed = false;
    for &index in ordered {
        let write = &writes[index];
        let outcome = WriteOutcome::decide(
            &write.value,
            current.as_ref(),
            write.force,
            write.replace_equal,
        );
        let previous = current.clone();
        if outcome.is_stored() {
            current = Some(write.value.clone());
            changed = true;
        }
        decisions.push(Decision {
            index,
            outcome,
            previous,
        });
    }
    match (revision.as_mut(), current) {
        (Some(stored), Some(after)) => {
            if changed {
                stored.replace(after.clone());
            }
            (decisions, after, false)
        }
        (None, Some(after)) => {
            store.insert(key, Arc::new(Slot::new(after.clone())));
            (decisions, after, true)
        }
        // Every key here has at least one candidate, and the first decision
        // against an empty slot always stores, so a revision is always
        // present.
        (_, None) => (decisions, writes[ordered[0]].value.clone(), false),
    }
}
