//! Loom model of the memory cache's conditional write (issue 10, "Loom
//! models": two writers with different ranks and timestamps; an expiry
//! removal racing a write; a replacement racing a removal of the same key).
//!
//! A faithful copy of the per-key critical sections of `MemoryCache`, for one
//! key (line ranges run from an item's doc comment to its closing brace):
//!
//! * `crates/coalestra-cache/src/memory/locks.rs`: `Stripe` (lines 20-23)
//!   and `KeyLocks::lock` (37-49). The key's stripe becomes one mutex
//!   (`Cache::stripe`); the hash that picks it is left out (sharing a stripe
//!   with other keys only adds serialization).
//! * `crates/coalestra-cache/src/memory/slot.rs`: `Slot` (19-23),
//!   `Revision` (25-30), `Slot::new` (33-41), `Slot::revision` (43-52),
//!   `Slot::value` (60-67), `Slot::generation` (69-75), `Slot::write` (77-83)
//!   and `Revision::replace` (87-91); `Slot::with` (54-58) only reads. The slot's `RwLock<Revision>` becomes
//!   a mutex (the `support` facade offers no `RwLock`): its shared (read)
//!   sections only copy the revision out and commute with each other, so
//!   making them exclusive removes no behaviour the properties depend on.
//!   A replacement happens inside the slot and advances its generation.
//! * `crates/coalestra-cache/src/memory/write.rs`: `Applied` (19-24),
//!   `apply_one` (26-75: the single write, which takes the stripe, looks the
//!   slot up, decides with the real [`WriteOutcome::decide`] under the
//!   slot's write lock and replaces in place, or inserts a new slot when the
//!   key has none), `stored_slot` (77-87: `contains_key`, then `get`),
//!   `Decision` (89-94), `apply_batch` (96-123) for a batch whose writes all
//!   carry the key, `decision_order` (145-177) and `apply_key` (179-230: the
//!   batch path, every candidate decided under the stripe and the slot's
//!   write lock, then one replacement in place or one insert). Counters are
//!   left out.
//! * `crates/coalestra-cache/src/memory/mod.rs`: the moka `Store` (33-37)
//!   becomes one mutex around the key's `Option<Arc<Slot>>`
//!   (`Cache::entry`), each moka call (`contains_key`, `get`, `insert`,
//!   `remove`, the `and_compute_with` of `remove_if_current`) one critical
//!   section of it; `remove_keys` (311-321) for the key, an invalidation;
//!   `remove_if_current` (323-341: under the stripe, remove only while the
//!   slot still holds the judged generation and is still the stored
//!   allocation); and the expiry branch of `read_one` (354-380: get the
//!   slot; a usable revision without dependencies is answered under the
//!   slot's read lock and removes nothing; otherwise copy its revision
//!   (value and generation), judge it with the real
//!   [`FreshnessPolicy::classify`], remove it conditionally). The dependency
//!   branch (381-386) calls the same `remove_if_current`. Moka's own
//!   size-bound evictions are not modelled.
//!
//! Properties: whatever the interleaving, the stored revision is the one a
//! sequential model picks (highest authority rank, then newest observation;
//! forced writes excluded); every reported outcome agrees with the revision
//! it was compared with, and the calls' reported revisions chain up in some
//! sequential order; a replacement stays in its slot and advances its
//! generation by one, and only a write to an empty key inserts a slot; an
//! expiry removal never deletes a revision written after the read that
//! judged the old one expired, whether that revision replaced the old one
//! in place (same slot, later generation) or was inserted after a removal
//! (new slot, generation 0 again); a write that stores nothing leaves the
//! judged revision removable.

mod support;

use std::cmp::Ordering;
use std::time::Duration;

use coalestra_core::value::ValueParts;
use coalestra_core::{
    CacheWrite, FreshnessPolicy, Payload, ResourceKey, SnapshotValue, Timestamp, WriteOutcome,
    WriteResult,
};
use support::{lock, model, thread, Arc, Mutex, MutexGuard};

/// slot.rs:19-23.
#[derive(Debug)]
struct Slot {
    revision: Mutex<Revision>,
}

/// slot.rs:25-30.
#[derive(Debug, Clone)]
struct Revision {
    value: SnapshotValue,
    generation: u64,
}

impl Slot {
    /// slot.rs:33-41.
    fn new(value: SnapshotValue) -> Self {
        Self {
            revision: Mutex::new(Revision {
                value,
                generation: 0,
            }),
        }
    }

    /// slot.rs:43-52 (a read lock).
    fn revision(&self) -> Revision {
        lock(&self.revision).clone()
    }

    /// slot.rs:60-67 (a read lock).
    fn value(&self) -> SnapshotValue {
        lock(&self.revision).value.clone()
    }

    /// slot.rs:69-75 (a read lock).
    fn generation(&self) -> u64 {
        lock(&self.revision).generation
    }

    /// slot.rs:77-83 (the write lock); only called with the stripe held.
    fn write(&self) -> MutexGuard<'_, Revision> {
        lock(&self.revision)
    }
}

impl Revision {
    /// slot.rs:87-91.
    fn replace(&mut self, value: SnapshotValue) -> SnapshotValue {
        self.generation += 1;
        std::mem::replace(&mut self.value, value)
    }
}

/// write.rs:19-24.
struct Applied {
    result: WriteResult,
    inserted: bool,
}

/// write.rs:89-94.
struct Decision {
    index: usize,
    outcome: WriteOutcome,
    previous: Option<SnapshotValue>,
}

/// What the expiry branch of `read_one` did.
#[derive(Debug)]
struct Read {
    /// The revision served (usable).
    served: Option<SnapshotValue>,
    /// The revision judged expired, if any.
    judged: Option<SnapshotValue>,
    /// Whether `remove_if_current` removed it (counted as an expiration).
    removed: bool,
}

/// The fields of `MemoryCache` (mod.rs:141-149) for one key: its stripe of
/// `KeyLocks` and its entry in the moka `Store`.
struct Cache {
    /// locks.rs:20-23: the key's stripe (guards no data).
    stripe: Mutex<()>,
    /// mod.rs:33-37: the key's moka entry.
    entry: Mutex<Option<Arc<Slot>>>,
}

impl Cache {
    fn new(initial: Option<SnapshotValue>) -> Arc<Self> {
        Arc::new(Self {
            stripe: Mutex::new(()),
            entry: Mutex::new(initial.map(|value| Arc::new(Slot::new(value)))),
        })
    }

    /// locks.rs:37-49.
    fn lock_key(&self) -> MutexGuard<'_, ()> {
        lock(&self.stripe)
    }

    /// `moka::sync::Cache::contains_key`.
    fn contains_key(&self) -> bool {
        lock(&self.entry).is_some()
    }

    /// `moka::sync::Cache::get`: a clone of the stored `Arc`.
    fn get(&self) -> Option<Arc<Slot>> {
        lock(&self.entry).clone()
    }

    /// `moka::sync::Cache::insert`.
    fn insert(&self, slot: Arc<Slot>) {
        *lock(&self.entry) = Some(slot);
    }

    /// `moka::sync::Cache::remove(..).is_some()`.
    fn remove(&self) -> bool {
        lock(&self.entry).take().is_some()
    }

    /// write.rs:77-87.
    fn stored_slot(&self) -> Option<Arc<Slot>> {
        if self.contains_key() {
            self.get()
        } else {
            None
        }
    }

    /// write.rs:26-75 (the counters left out).
    fn apply_one(&self, write: CacheWrite) -> Applied {
        let CacheWrite {
            value,
            force,
            replace_equal,
        } = write;
        let guard = self.lock_key();
        let (outcome, previous, inserted) = match self.stored_slot() {
            Some(slot) => {
                let mut revision = slot.write();
                let outcome =
                    WriteOutcome::decide(&value, Some(&revision.value), force, replace_equal);
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
                    self.insert(Arc::new(Slot::new(value.clone())));
                }
                (outcome, None, inserted)
            }
        };
        drop(guard);
        let current = match (&previous, outcome.is_stored()) {
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

    /// write.rs:96-123 for a batch whose writes all carry this key (one
    /// group, the counters left out).
    fn apply_batch(&self, writes: &[CacheWrite]) -> (Vec<WriteResult>, bool) {
        let mut results: Vec<Option<WriteResult>> = Vec::with_capacity(writes.len());
        results.resize_with(writes.len(), || None);
        let ordered = decision_order(writes, (0..writes.len()).collect());
        let (decisions, current, added) = self.apply_key(writes, &ordered);
        for decision in decisions {
            results[decision.index] = Some(WriteResult {
                outcome: decision.outcome,
                previous: decision.previous,
                current: current.clone(),
            });
        }
        (results.into_iter().flatten().collect(), added)
    }

    /// write.rs:179-230.
    fn apply_key(
        &self,
        writes: &[CacheWrite],
        ordered: &[usize],
    ) -> (Vec<Decision>, SnapshotValue, bool) {
        let mut decisions = Vec::with_capacity(ordered.len());
        let _guard = self.lock_key();
        let slot = self.stored_slot();
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
                self.insert(Arc::new(Slot::new(after.clone())));
                (decisions, after, true)
            }
            (_, None) => (decisions, writes[ordered[0]].value.clone(), false),
        }
    }

    /// mod.rs:311-321 for this key.
    fn remove_key(&self) -> bool {
        let _guard = self.lock_key();
        self.remove()
    }

    /// mod.rs:323-341.
    fn remove_if_current(&self, slot: &Arc<Slot>, generation: u64) -> bool {
        let _guard = self.lock_key();
        if slot.generation() != generation {
            return false;
        }
        // `and_compute_with`: one moka critical section.
        let mut existing = lock(&self.entry);
        match &*existing {
            Some(current) if Arc::ptr_eq(current, slot) => {
                *existing = None;
                true
            }
            _ => false,
        }
    }

    /// mod.rs:373-399 (the expiry branch of `read_one`).
    fn read_one(&self, policy: &FreshnessPolicy, now: Timestamp) -> Read {
        let Some(slot) = self.get() else {
            return Read {
                served: None,
                judged: None,
                removed: false,
            };
        };
        let stored = slot.revision();
        let age: Duration = stored.value.age_at(now);
        let freshness = policy.classify(age);
        if !freshness.is_usable() {
            let removed = self.remove_if_current(&slot, stored.generation);
            return Read {
                served: None,
                judged: Some(stored.value),
                removed,
            };
        }
        Read {
            served: Some(stored.value),
            judged: None,
            removed: false,
        }
    }

    /// The stored slot, for the final checks (`MemoryCache::peek` reads it
    /// the same way: mod.rs:209-216).
    fn slot(&self) -> Option<Arc<Slot>> {
        self.get()
    }

    fn stored(&self) -> Option<SnapshotValue> {
        self.get().map(|slot| slot.value())
    }
}

/// write.rs:145-177.
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
    indices.sort_by(|a, b| match (writes[*a].force, writes[*b].force) {
        (false, true) => Ordering::Less,
        (true, false) => Ordering::Greater,
        (false, false) => compare(b, a),
        (true, true) => compare(a, b),
    });
    indices
}

fn key() -> ResourceKey {
    ResourceKey::new("loom", "price", "BTC").expect("valid key")
}

/// A revision from `source` with an authority rank and an observation time.
fn revision(source: &str, rank: i64, observed_at: f64) -> SnapshotValue {
    let mut parts = ValueParts::new(
        key(),
        Payload::new(format!("{source}@{observed_at}")),
        source,
        Timestamp::from_secs(observed_at),
    );
    parts.authority_rank = rank;
    SnapshotValue::from_parts(parts)
}

/// The readers' policy: usable up to 50 s old.
fn policy() -> FreshnessPolicy {
    FreshnessPolicy::new(Duration::from_secs(10), Duration::from_secs(50)).expect("valid policy")
}

/// The readers' clock: a revision observed before 160 s is expired.
const NOW: f64 = 210.0;

/// The strength the sequential model orders ordinary writes by.
fn strength(value: &SnapshotValue) -> (i64, f64) {
    (value.authority_rank(), value.observed_at().as_secs())
}

fn stronger(a: &SnapshotValue, b: &SnapshotValue) -> bool {
    let ((rank_a, at_a), (rank_b, at_b)) = (strength(a), strength(b));
    rank_a > rank_b || (rank_a == rank_b && at_a > at_b)
}

fn same(a: Option<&SnapshotValue>, b: Option<&SnapshotValue>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.same_revision(b),
        (None, None) => true,
        _ => false,
    }
}

/// Checks one reported decision against the revision it was compared with.
fn check_decision(write: &CacheWrite, outcome: WriteOutcome, previous: Option<&SnapshotValue>) {
    let Some(previous) = previous else {
        assert_eq!(outcome, WriteOutcome::Stored, "an empty slot stores");
        return;
    };
    let expected = if write.force || stronger(&write.value, previous) {
        WriteOutcome::Stored
    } else if write.value.authority_rank() < previous.authority_rank() {
        WriteOutcome::IgnoredLowerAuthority
    } else if strength(&write.value) == strength(previous) {
        if write.replace_equal {
            WriteOutcome::Stored
        } else {
            WriteOutcome::IgnoredDuplicate
        }
    } else {
        WriteOutcome::IgnoredOlder
    };
    assert_eq!(outcome, expected, "decision against {previous:?}");
}

/// One writer's call: a single write (`apply_one`) or a batch of writes for
/// the key (`apply_batch`).
#[derive(Clone)]
enum Writer {
    One(CacheWrite),
    Batch(Vec<CacheWrite>),
}

/// What one call saw and left: the revision stored when it took the stripe,
/// the revision stored when it let go, and whether it inserted a slot.
#[derive(Debug)]
struct Call {
    before: Option<SnapshotValue>,
    after: SnapshotValue,
    inserted: bool,
}

impl Call {
    /// Whether the call replaced a stored revision (in place).
    fn replaced(&self) -> bool {
        self.before
            .as_ref()
            .is_some_and(|before| !before.same_revision(&self.after))
    }
}

impl Writer {
    fn ordinary(values: &[SnapshotValue]) -> Self {
        match values {
            [one] => Self::One(CacheWrite::new(one.clone())),
            many => Self::Batch(many.iter().cloned().map(CacheWrite::new).collect()),
        }
    }

    fn values(&self) -> Vec<SnapshotValue> {
        match self {
            Self::One(write) => vec![write.value.clone()],
            Self::Batch(writes) => writes.iter().map(|w| w.value.clone()).collect(),
        }
    }

    /// Runs the call and checks every reported decision.
    fn run(self, cache: &Cache) -> Call {
        match self {
            Self::One(write) => {
                let applied = cache.apply_one(write.clone());
                let result = applied.result;
                check_decision(&write, result.outcome, result.previous.as_ref());
                let expected = if result.outcome.is_stored() {
                    &write.value
                } else {
                    result.previous.as_ref().expect("an ignored write saw one")
                };
                assert!(result.current.same_revision(expected), "current");
                assert_eq!(applied.inserted, result.previous.is_none());
                Call {
                    before: result.previous,
                    after: result.current,
                    inserted: applied.inserted,
                }
            }
            Self::Batch(writes) => {
                let (results, inserted) = cache.apply_batch(&writes);
                assert_eq!(results.len(), writes.len(), "one result per write");
                let ordered = decision_order(&writes, (0..writes.len()).collect());
                // Replay the decisions in their order: each one was compared
                // with what the previous ones left.
                let before = results[ordered[0]].previous.clone();
                let mut current = before.clone();
                for &index in &ordered {
                    let result = &results[index];
                    assert!(same(result.previous.as_ref(), current.as_ref()));
                    check_decision(&writes[index], result.outcome, result.previous.as_ref());
                    if result.outcome.is_stored() {
                        current = Some(writes[index].value.clone());
                    }
                }
                let after = current.expect("a batch always leaves a revision");
                assert!(results.iter().all(|r| r.current.same_revision(&after)));
                assert_eq!(inserted, before.is_none());
                Call {
                    before,
                    after,
                    inserted,
                }
            }
        }
    }
}

fn spawn_writer(cache: &Arc<Cache>, writer: Writer) -> thread::JoinHandle<Call> {
    let cache = Arc::clone(cache);
    thread::spawn(move || writer.run(&cache))
}

fn spawn_reader(cache: &Arc<Cache>) -> thread::JoinHandle<Read> {
    let cache = Arc::clone(cache);
    thread::spawn(move || cache.read_one(&policy(), Timestamp::from_secs(NOW)))
}

/// Two writers race on a key holding `initial`; the survivor is the
/// strongest of all revisions, the calls chain up in some order, and the
/// slot and its generation account for every insert and replacement.
fn two_writers(initial: Option<SnapshotValue>, a: &[SnapshotValue], b: &[SnapshotValue]) {
    let (a, b) = (Writer::ordinary(a), Writer::ordinary(b));
    let cache = Cache::new(initial.clone());
    let initial_slot = cache.slot();
    let every: Vec<SnapshotValue> = initial
        .iter()
        .cloned()
        .chain(a.values())
        .chain(b.values())
        .collect();
    let calls = [spawn_writer(&cache, a), spawn_writer(&cache, b)]
        .map(|writer| writer.join().expect("writer thread"));

    let stored = cache.stored().expect("a revision is stored");
    let winner = every.iter().skip(1).fold(
        &every[0],
        |best, v| if stronger(v, best) { v } else { best },
    );
    assert!(
        stored.same_revision(winner),
        "stored {:?}, the sequential model picks {:?}",
        strength(&stored),
        strength(winner)
    );
    let chained = |first: &Call, second: &Call| {
        same(first.before.as_ref(), initial.as_ref())
            && same(second.before.as_ref(), Some(&first.after))
            && second.after.same_revision(&stored)
    };
    assert!(
        chained(&calls[0], &calls[1]) || chained(&calls[1], &calls[0]),
        "the calls chain up in some order: {calls:?}"
    );
    let slot = cache.slot().expect("a slot is stored");
    let inserts = calls.iter().filter(|call| call.inserted).count();
    let replacements = calls.iter().filter(|call| call.replaced()).count();
    match &initial_slot {
        Some(first) => {
            assert!(Arc::ptr_eq(first, &slot), "replacements stay in the slot");
            assert_eq!(inserts, 0);
        }
        None => assert_eq!(inserts, 1, "exactly one write inserts the slot"),
    }
    assert_eq!(slot.generation(), replacements as u64);
}

#[test]
fn higher_authority_wins_over_newer_observation() {
    model(|| {
        two_writers(
            None,
            &[revision("primary", 10, 100.0)],
            &[revision("mirror", 0, 200.0)],
        );
    });
    model(|| {
        two_writers(
            Some(revision("mirror", 0, 150.0)),
            &[revision("primary", 10, 100.0)],
            &[revision("mirror", 0, 200.0)],
        );
    });
}

#[test]
fn a_batch_races_a_single_write() {
    model(|| {
        two_writers(
            Some(revision("mirror", 0, 150.0)),
            &[revision("mirror", 0, 200.0), revision("primary", 10, 100.0)],
            &[revision("primary", 10, 120.0)],
        );
    });
    model(|| {
        two_writers(
            None,
            &[revision("rest", 0, 100.0), revision("stream", 0, 200.0)],
            &[revision("rest", 0, 150.0)],
        );
    });
}

#[test]
fn equal_authority_keeps_the_newest_observation() {
    model(|| {
        two_writers(
            Some(revision("rest", 0, 150.0)),
            &[revision("rest", 0, 100.0)],
            &[revision("stream", 0, 200.0)],
        );
    });
}

#[test]
fn equal_revisions_follow_replace_equal() {
    model(|| {
        let cache = Cache::new(None);
        let writers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|source| {
                let write = CacheWrite {
                    value: revision(source, 0, 100.0),
                    force: false,
                    replace_equal: source == "b",
                };
                let value = write.value.clone();
                let cache = Arc::clone(&cache);
                thread::spawn(move || {
                    let applied = cache.apply_one(write.clone());
                    let result = applied.result;
                    check_decision(&write, result.outcome, result.previous.as_ref());
                    (value, result.outcome)
                })
            })
            .collect();
        let results: Vec<(SnapshotValue, WriteOutcome)> = writers
            .into_iter()
            .map(|writer| writer.join().expect("writer thread"))
            .collect();
        let stored = cache.stored().expect("a revision is stored");
        // "b" replaces an equal revision, "a" does not: "b" always ends
        // stored, and "a" is stored only when it came first.
        assert!(stored.same_revision(&results[1].0), "b survives");
        assert_eq!(results[1].1, WriteOutcome::Stored);
    });
}

/// An expiry read of `old` races `writer`, which stores `fresh`.
fn expiry_races_a_write(writer: Writer, fresh: &SnapshotValue) {
    let old = revision("rest", 0, 100.0);
    let cache = Cache::new(Some(old.clone()));
    let initial_slot = cache.slot().expect("a slot is stored");
    let reader = spawn_reader(&cache);
    let writer = spawn_writer(&cache, writer);
    let read = reader.join().expect("reader thread");
    let call = writer.join().expect("writer thread");

    let slot = cache.slot().expect("the new revision survives the removal");
    assert!(slot.value().same_revision(fresh));
    if let Some(judged) = &read.judged {
        assert!(judged.same_revision(&old), "only the old revision expired");
    }
    if let Some(served) = &read.served {
        assert!(
            served.same_revision(fresh),
            "the old revision is never served"
        );
    }
    if read.removed {
        // The removal came first: the write found an empty key.
        assert!(call.before.is_none() && call.inserted);
        assert!(!Arc::ptr_eq(&slot, &initial_slot));
        assert_eq!(slot.generation(), 0);
    } else {
        // The write came first and replaced the old revision in place.
        assert!(same(call.before.as_ref(), Some(&old)) && !call.inserted);
        assert!(Arc::ptr_eq(&slot, &initial_slot));
        assert_eq!(slot.generation(), 1);
    }
}

#[test]
fn an_expiry_removal_never_deletes_a_newer_write() {
    model(|| {
        let fresh = revision("rest", 0, 200.0);
        expiry_races_a_write(Writer::ordinary(std::slice::from_ref(&fresh)), &fresh);
    });
    model(|| {
        let fresh = revision("rest", 0, 200.0);
        let batch = [revision("rest", 0, 180.0), fresh.clone()];
        expiry_races_a_write(Writer::ordinary(&batch), &fresh);
    });
}

#[test]
fn an_ignored_write_leaves_the_expired_revision_removable() {
    model(|| {
        let old = revision("rest", 0, 100.0);
        let older = revision("rest", 0, 50.0);
        let cache = Cache::new(Some(old.clone()));
        let reader = spawn_reader(&cache);
        let writer = spawn_writer(&cache, Writer::ordinary(std::slice::from_ref(&older)));
        let read = reader.join().expect("reader thread");
        let call = writer.join().expect("writer thread");

        // The ignored write does not advance the generation, so the reader
        // always removes the revision it judged.
        assert!(read.removed, "the expired revision is removed");
        assert!(same(read.judged.as_ref(), Some(&old)));
        if call.inserted {
            // The write came after the removal and found an empty key.
            assert!(same(cache.stored().as_ref(), Some(&older)));
        } else {
            assert!(same(call.before.as_ref(), Some(&old)));
            assert!(call.after.same_revision(&old), "the older write is ignored");
            assert!(cache.stored().is_none());
        }
    });
}

#[test]
fn a_replacement_races_an_invalidation() {
    for batch in [false, true] {
        model(move || {
            let old = revision("rest", 0, 100.0);
            let fresh = revision("rest", 0, 200.0);
            let cache = Cache::new(Some(old.clone()));
            let initial_slot = cache.slot().expect("a slot is stored");
            let values = if batch {
                vec![revision("rest", 0, 150.0), fresh.clone()]
            } else {
                vec![fresh.clone()]
            };
            let writer = spawn_writer(&cache, Writer::ordinary(&values));
            let invalidator = {
                let cache = Arc::clone(&cache);
                thread::spawn(move || cache.remove_key())
            };
            let call = writer.join().expect("writer thread");
            let removed = invalidator.join().expect("invalidator thread");

            // Both orders remove a stored revision; the result tells which
            // came first.
            assert!(removed, "the key had an entry either way");
            assert!(call.after.same_revision(&fresh));
            match cache.slot() {
                // The replacement came first, in place; the invalidation
                // then removed the slot holding it.
                None => {
                    assert!(same(call.before.as_ref(), Some(&old)) && !call.inserted);
                    assert_eq!(initial_slot.generation(), 1);
                    assert!(initial_slot.value().same_revision(&fresh));
                }
                // The invalidation came first; the write inserted a new slot.
                Some(slot) => {
                    assert!(call.before.is_none() && call.inserted);
                    assert!(!Arc::ptr_eq(&slot, &initial_slot));
                    assert_eq!(slot.generation(), 0);
                    assert!(slot.value().same_revision(&fresh));
                    assert_eq!(initial_slot.generation(), 0);
                }
            }
        });
    }
}

#[test]
fn a_stale_removal_never_deletes_a_reinserted_revision() {
    model(|| {
        let old = revision("rest", 0, 100.0);
        let fresh = revision("rest", 0, 200.0);
        let cache = Cache::new(Some(old.clone()));
        let initial_slot = cache.slot().expect("a slot is stored");
        let reader = spawn_reader(&cache);
        // Invalidate, then write again: the new revision lives in a new slot
        // whose generation (0) equals the one the reader judged.
        let rewriter = {
            let (cache, fresh) = (Arc::clone(&cache), fresh.clone());
            thread::spawn(move || {
                let removed = cache.remove_key();
                (removed, Writer::ordinary(&[fresh]).run(&cache))
            })
        };
        let read = reader.join().expect("reader thread");
        let (invalidated, call) = rewriter.join().expect("rewriter thread");

        let slot = cache.slot().expect("the reinserted revision survives");
        assert!(slot.value().same_revision(&fresh));
        assert!(!Arc::ptr_eq(&slot, &initial_slot));
        assert!(call.inserted && call.before.is_none());
        if read.removed {
            assert!(same(read.judged.as_ref(), Some(&old)));
            assert!(!invalidated, "the old revision was removed once");
        }
    });
}
