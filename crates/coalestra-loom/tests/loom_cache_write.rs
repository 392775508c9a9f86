//! Loom model of the memory cache's conditional write (issue 10, "Loom
//! models": two writers with different ranks and timestamps; an expiry
//! removal racing a write).
//!
//! A faithful copy of the per-key critical sections of `MemoryCache`:
//! `apply_key` in `crates/coalestra-cache/src/memory/write.rs` (lines
//! 113-155: read the stored revision, decide every candidate with the real
//! [`WriteOutcome::decide`], store the survivor, all inside one moka
//! `and_compute_with` call, which moka serializes per key) and
//! `remove_if_current` in `crates/coalestra-cache/src/memory/mod.rs` (lines
//! 305-316: remove only while the entry read earlier is still the stored
//! allocation), with `read_one` (318-345) reading the entry before deciding
//! that it expired. One moka key becomes one mutex around the stored
//! `Arc<StoredEntry>`.
//!
//! Properties: whatever the interleaving, the stored revision is the one a
//! sequential model picks (highest authority rank, then newest observation;
//! forced writes excluded), every reported outcome agrees with the revision
//! it was compared with, and an expiry removal never deletes a revision
//! written after the read that judged the old one expired.

mod support;

use coalestra_core::value::ValueParts;
use coalestra_core::{Payload, ResourceKey, SnapshotValue, Timestamp, WriteOutcome};
use support::{lock, model, thread, Arc, Mutex};

/// memory/mod.rs:35-38.
#[derive(Debug)]
struct StoredEntry {
    value: SnapshotValue,
}

/// One key of the moka store.
struct Store {
    entry: Mutex<Option<Arc<StoredEntry>>>,
}

/// One candidate, as `CacheWrite` carries it.
#[derive(Clone)]
struct Candidate {
    value: SnapshotValue,
    force: bool,
    replace_equal: bool,
}

/// One decision, as `WriteResult` reports it.
#[derive(Debug, Clone)]
struct Decision {
    outcome: WriteOutcome,
    previous: Option<SnapshotValue>,
}

impl Store {
    fn new(initial: Option<SnapshotValue>) -> Arc<Self> {
        Arc::new(Self {
            entry: Mutex::new(initial.map(|value| Arc::new(StoredEntry { value }))),
        })
    }

    /// write.rs:113-155 for one candidate (`and_compute_with` holds the key).
    fn write(&self, candidate: &Candidate) -> Decision {
        let mut slot = lock(&self.entry);
        let original = slot.clone();
        let mut current = original.clone();
        let outcome = WriteOutcome::decide(
            &candidate.value,
            current.as_ref().map(|entry| &entry.value),
            candidate.force,
            candidate.replace_equal,
        );
        let previous = current.clone();
        if outcome.is_stored() {
            current = Some(Arc::new(StoredEntry {
                value: candidate.value.clone(),
            }));
        }
        match (&original, current) {
            (Some(before), Some(after)) if Arc::ptr_eq(before, &after) => {}
            (_, Some(after)) => *slot = Some(after),
            (_, None) => {}
        }
        Decision {
            outcome,
            previous: previous.map(|entry| entry.value.clone()),
        }
    }

    /// `moka::sync::Cache::get`: a clone of the stored `Arc`.
    fn get(&self) -> Option<Arc<StoredEntry>> {
        lock(&self.entry).clone()
    }

    /// memory/mod.rs:305-316.
    fn remove_if_current(&self, entry: &Arc<StoredEntry>) -> bool {
        let mut slot = lock(&self.entry);
        match &*slot {
            Some(current) if Arc::ptr_eq(current, entry) => {
                *slot = None;
                true
            }
            _ => false,
        }
    }

    fn stored(&self) -> Option<SnapshotValue> {
        self.get().map(|entry| entry.value.clone())
    }
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

fn ordinary(value: SnapshotValue) -> Candidate {
    Candidate {
        value,
        force: false,
        replace_equal: false,
    }
}

/// The strength the sequential model orders ordinary writes by.
fn strength(value: &SnapshotValue) -> (i64, f64) {
    (value.authority_rank(), value.observed_at().as_secs())
}

fn stronger(a: &SnapshotValue, b: &SnapshotValue) -> bool {
    let ((rank_a, at_a), (rank_b, at_b)) = (strength(a), strength(b));
    rank_a > rank_b || (rank_a == rank_b && at_a > at_b)
}

/// Checks one reported decision against the revision it was compared with.
fn check_decision(candidate: &Candidate, decision: &Decision) {
    let Some(previous) = &decision.previous else {
        assert_eq!(
            decision.outcome,
            WriteOutcome::Stored,
            "an empty slot stores"
        );
        return;
    };
    let expected = if stronger(&candidate.value, previous) {
        WriteOutcome::Stored
    } else if candidate.value.authority_rank() < previous.authority_rank() {
        WriteOutcome::IgnoredLowerAuthority
    } else if strength(&candidate.value) == strength(previous) {
        if candidate.replace_equal {
            WriteOutcome::Stored
        } else {
            WriteOutcome::IgnoredDuplicate
        }
    } else {
        WriteOutcome::IgnoredOlder
    };
    assert_eq!(decision.outcome, expected, "decision against {previous:?}");
}

/// Two ordinary writers race on a key holding `initial`; the survivor is the
/// strongest of all three.
fn two_writers(initial: Option<SnapshotValue>, a: SnapshotValue, b: SnapshotValue) {
    let store = Store::new(initial.clone());
    let writers: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .map(|value| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let candidate = ordinary(value);
                let decision = store.write(&candidate);
                check_decision(&candidate, &decision);
                decision
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread");
    }
    let mut expected = initial.into_iter().chain([a, b]);
    let first = expected.next().expect("at least one revision");
    let winner = expected.fold(first, |best, v| if stronger(&v, &best) { v } else { best });
    let stored = store.stored().expect("a revision is stored");
    assert!(
        stored.same_revision(&winner),
        "stored {:?}, the sequential model picks {:?}",
        strength(&stored),
        strength(&winner)
    );
}

#[test]
fn higher_authority_wins_over_newer_observation() {
    model(|| {
        two_writers(
            None,
            revision("primary", 10, 100.0),
            revision("mirror", 0, 200.0),
        );
    });
    model(|| {
        two_writers(
            Some(revision("mirror", 0, 150.0)),
            revision("primary", 10, 100.0),
            revision("mirror", 0, 200.0),
        );
    });
}

#[test]
fn equal_authority_keeps_the_newest_observation() {
    model(|| {
        two_writers(
            Some(revision("rest", 0, 150.0)),
            revision("rest", 0, 100.0),
            revision("stream", 0, 200.0),
        );
    });
}

#[test]
fn equal_revisions_follow_replace_equal() {
    model(|| {
        let store = Store::new(None);
        let writers: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|source| {
                let store = Arc::clone(&store);
                thread::spawn(move || {
                    let candidate = Candidate {
                        value: revision(source, 0, 100.0),
                        force: false,
                        replace_equal: source == "b",
                    };
                    let decision = store.write(&candidate);
                    check_decision(&candidate, &decision);
                    (candidate.value, decision.outcome)
                })
            })
            .collect();
        let results: Vec<(SnapshotValue, WriteOutcome)> = writers
            .into_iter()
            .map(|writer| writer.join().expect("writer thread"))
            .collect();
        let stored = store.stored().expect("a revision is stored");
        // "b" replaces an equal revision, "a" does not: "b" always ends
        // stored, and "a" is stored only when it came first.
        assert!(stored.same_revision(&results[1].0), "b survives");
        assert_eq!(results[1].1, WriteOutcome::Stored);
    });
}

#[test]
fn an_expiry_removal_never_deletes_a_newer_write() {
    model(|| {
        let old = revision("rest", 0, 100.0);
        let store = Store::new(Some(old.clone()));
        let reader = {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                // read_one: read, judge the entry expired, remove it only if
                // it is still the stored allocation.
                if let Some(entry) = store.get() {
                    let expired = entry.value.observed_at().as_secs() < 150.0;
                    if expired {
                        store.remove_if_current(&entry);
                    }
                }
            })
        };
        let fresh = revision("rest", 0, 200.0);
        let writer = {
            let (store, fresh) = (Arc::clone(&store), fresh.clone());
            thread::spawn(move || {
                let candidate = ordinary(fresh);
                let decision = store.write(&candidate);
                check_decision(&candidate, &decision);
            })
        };
        reader.join().expect("reader thread");
        writer.join().expect("writer thread");
        let stored = store
            .stored()
            .expect("the new revision survives the removal");
        assert!(stored.same_revision(&fresh));
    });
}
