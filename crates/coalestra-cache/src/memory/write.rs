//! Conditional writes: one atomic compare-and-store per key, however many
//! candidates a batch carries for it.
//!
//! The candidates of one key are decided while the key's stripe lock is
//! held (see [`KeyLocks`]), from reading the stored revision to storing the
//! winner, so no concurrent writer or conditional removal can interleave.
//! Nothing in here awaits.

use std::cmp::Ordering;
use std::sync::Arc;

use coalestra_core::{CacheWrite, KeyMap, ResourceKey, WriteOutcome, WriteResult};

use super::counters::Counters;
use super::locks::KeyLocks;
use super::{Store, StoredEntry};

/// Applies one conditional write: the single-write path, without the
/// grouping and ordering a batch needs.
pub(crate) fn apply_one(
    store: &Store,
    locks: &KeyLocks,
    counters: &Counters,
    write: CacheWrite,
) -> WriteResult {
    let CacheWrite {
        value,
        force,
        replace_equal,
    } = write;
    let (outcome, stored) = {
        let _guard = locks.lock(value.key());
        let stored = store.get(value.key());
        let outcome = WriteOutcome::decide(
            &value,
            stored.as_ref().map(|entry| &entry.value),
            force,
            replace_equal,
        );
        if outcome.is_stored() {
            let key = value.key().clone();
            store.insert(key, Arc::new(StoredEntry::new(value.clone())));
        }
        (outcome, stored)
    };
    counters.write(outcome);
    let previous = stored.map(|entry| entry.value.clone());
    let current = match (&previous, outcome.is_stored()) {
        // An ignored candidate always has a stored revision that beat it.
        (Some(kept), false) => kept.clone(),
        _ => value,
    };
    WriteResult {
        outcome,
        previous,
        current,
    }
}

/// One candidate's decision, before the key's final revision is known.
struct Decision {
    index: usize,
    outcome: WriteOutcome,
    previous: Option<Arc<StoredEntry>>,
}

/// Applies a batch of conditional writes; results follow input order.
///
/// The second value tells whether any candidate was stored.
pub(crate) fn apply_batch(
    store: &Store,
    locks: &KeyLocks,
    counters: &Counters,
    writes: Vec<CacheWrite>,
) -> (Vec<WriteResult>, bool) {
    let mut stored_any = false;
    let mut results: Vec<Option<WriteResult>> = Vec::with_capacity(writes.len());
    results.resize_with(writes.len(), || None);
    for (key, indices) in group_by_key(&writes) {
        let ordered = decision_order(&writes, indices);
        let (decisions, current) = apply_key(store, locks, key, &writes, &ordered);
        for decision in decisions {
            counters.write(decision.outcome);
            stored_any |= decision.outcome.is_stored();
            results[decision.index] = Some(WriteResult {
                outcome: decision.outcome,
                previous: decision.previous.map(|entry| entry.value.clone()),
                current: current.value.clone(),
            });
        }
    }
    (results.into_iter().flatten().collect(), stored_any)
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
/// decisions with the revision stored afterwards.
fn apply_key(
    store: &Store,
    locks: &KeyLocks,
    key: ResourceKey,
    writes: &[CacheWrite],
    ordered: &[usize],
) -> (Vec<Decision>, Arc<StoredEntry>) {
    let mut decisions = Vec::with_capacity(ordered.len());
    let _guard = locks.lock(&key);
    let original = store.get(&key);
    let mut current = original.clone();
    for &index in ordered {
        let write = &writes[index];
        let outcome = WriteOutcome::decide(
            &write.value,
            current.as_ref().map(|entry| &entry.value),
            write.force,
            write.replace_equal,
        );
        let previous = current.clone();
        if outcome.is_stored() {
            current = Some(Arc::new(StoredEntry::new(write.value.clone())));
        }
        decisions.push(Decision {
            index,
            outcome,
            previous,
        });
    }
    let current = match (original, current) {
        (Some(before), Some(after)) if Arc::ptr_eq(&before, &after) => after,
        (_, Some(after)) => {
            store.insert(key, Arc::clone(&after));
            after
        }
        // Every key here has at least one candidate, and the first decision
        // against an empty slot always stores, so a revision is always
        // present.
        (_, None) => {
            let first = &writes[ordered[0]];
            Arc::new(StoredEntry::new(first.value.clone()))
        }
    };
    (decisions, current)
}
