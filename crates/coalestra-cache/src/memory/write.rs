//! Conditional writes: one atomic compare-and-store per key, however many
//! candidates a batch carries for it.
//!
//! The candidates of one key are decided inside a single moka compute call,
//! which moka serializes per key, so no concurrent writer can interleave
//! between reading the stored revision and replacing it. Nothing in here
//! awaits.

use std::cmp::Ordering;
use std::sync::Arc;

use coalestra_core::{CacheWrite, KeyMap, ResourceKey, WriteOutcome, WriteResult};
use moka::ops::compute::Op;

use super::counters::Counters;
use super::{Store, StoredEntry};

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
    counters: &Counters,
    writes: Vec<CacheWrite>,
) -> (Vec<WriteResult>, bool) {
    let mut stored_any = false;
    let mut results: Vec<Option<WriteResult>> = Vec::with_capacity(writes.len());
    results.resize_with(writes.len(), || None);
    for (key, indices) in group_by_key(&writes) {
        let ordered = decision_order(&writes, indices);
        let (decisions, current) = apply_key(store, key, &writes, &ordered);
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

/// Decides every candidate of one key inside one moka compute call and
/// returns the decisions with the revision stored afterwards.
fn apply_key(
    store: &Store,
    key: ResourceKey,
    writes: &[CacheWrite],
    ordered: &[usize],
) -> (Vec<Decision>, Arc<StoredEntry>) {
    let mut decisions = Vec::with_capacity(ordered.len());
    let mut last: Option<Arc<StoredEntry>> = None;
    store.entry(key).and_compute_with(|existing| {
        let original = existing.map(|entry| entry.into_value());
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
        last.clone_from(&current);
        match (&original, current) {
            (Some(before), Some(after)) if Arc::ptr_eq(before, &after) => Op::Nop,
            (_, Some(after)) => Op::Put(after),
            (_, None) => Op::Nop,
        }
    });
    // Every key here has at least one candidate, and the first decision
    // against an empty slot always stores, so a revision is always present.
    let current = last.unwrap_or_else(|| {
        let first = &writes[ordered[0]];
        Arc::new(StoredEntry::new(first.value.clone()))
    });
    (decisions, current)
}
