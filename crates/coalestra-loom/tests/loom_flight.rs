//! Loom model of the single-flight reservation and hand-off (issue 10, "Loom
//! models": the owner finishes, fails or is cancelled while waiters join and
//! leave).
//!
//! A faithful copy of `crates/coalestra-orchestration/src/flight.rs`:
//! `Flight::wait` (lines 23-33), `Flight::complete` (35-38),
//! `FlightTable::reserve` (55-69), `FlightGuard::finish` (102-111) and
//! `Drop for FlightGuard` (114-127). The `DashMap` becomes one mutex (a
//! dashmap `entry`/`remove_if` holds its shard lock for the whole call), the
//! `OnceLock` a mutex-guarded `Option` (first `set` wins), and
//! `tokio::sync::Notify` the facade's `Notify` with the same
//! `notify_waiters` semantics. The callers around it copy
//! `Engine::fetch` in `crates/coalestra-orchestration/src/resolve.rs`
//! (reserve, run the fetch, then wait on the flight like every joiner). The
//! engine runs an owner's fetch inside the first caller until that caller
//! stops waiting and on a tracked task after (`Detachable` in `tasks.rs`);
//! the model runs it on its own thread, the hand-off's end state, where the
//! owner's progress is independent of every waiter.
//!
//! Properties: nobody ever waits forever (loom reports a deadlock when every
//! thread is blocked), a joiner receives the outcome of the flight it joined
//! (or the "owner stopped" failure of a cancelled owner), at most one fetch
//! per key runs at any time, and the table is empty once every caller is
//! done.

mod support;

use std::collections::HashMap;

use support::{lock, model, thread, Arc, AtomicUsize, Mutex, Notify, Ordering};

type Key = u32;

const KEY: Key = 7;

/// What a flight hands to its waiters (`Result<SnapshotValue, ResourceError>`
/// in the engine).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// A value fetched by the caller with this id.
    Value(u32),
    /// The owner's fetch failed.
    Failed(&'static str),
    /// The owner's guard was dropped before completing (flight.rs:120-128).
    OwnerStopped,
}

/// flight.rs:15-19.
struct Flight {
    /// `OnceLock<Outcome>`.
    result: Mutex<Option<Outcome>>,
    done: Notify,
}

impl Flight {
    fn new() -> Self {
        Self {
            result: Mutex::new(None),
            done: Notify::default(),
        }
    }

    /// flight.rs:23-36: a finished flight answers at once; otherwise
    /// register interest first, then look at the result, then sleep; a
    /// completion between the look and the sleep is not lost.
    fn wait(&self) -> Outcome {
        if let Some(outcome) = lock(&self.result).clone() {
            return outcome;
        }
        loop {
            let notified = self.done.notified();
            if let Some(outcome) = lock(&self.result).clone() {
                return outcome;
            }
            notified.wait();
        }
    }

    /// flight.rs:38-41.
    fn complete(&self, outcome: Outcome) {
        {
            let mut result = lock(&self.result);
            if result.is_none() {
                *result = Some(outcome);
            }
        }
        self.done.notify_waiters();
    }
}

/// flight.rs:45-46.
#[derive(Clone)]
struct FlightTable(Arc<Mutex<HashMap<Key, Arc<Flight>>>>);

/// flight.rs:49-54.
enum Reservation {
    Owner(FlightGuard),
    Joined(Arc<Flight>),
}

impl FlightTable {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(HashMap::new())))
    }

    /// flight.rs:58-72.
    fn reserve(&self, key: Key) -> Reservation {
        let mut map = lock(&self.0);
        if let Some(flight) = map.get(&key) {
            return Reservation::Joined(Arc::clone(flight));
        }
        let flight = Arc::new(Flight::new());
        map.insert(key, Arc::clone(&flight));
        Reservation::Owner(FlightGuard {
            table: self.clone(),
            key,
            flight,
            done: false,
        })
    }

    /// flight.rs:75-77.
    fn len(&self) -> usize {
        lock(&self.0).len()
    }
}

/// flight.rs:82-87.
struct FlightGuard {
    table: FlightTable,
    key: Key,
    flight: Arc<Flight>,
    done: bool,
}

impl FlightGuard {
    fn flight(&self) -> &Arc<Flight> {
        &self.flight
    }

    /// flight.rs:101-103.
    fn complete(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    /// flight.rs:105-114: leave the table (only if the entry is still this
    /// flight), then publish.
    fn finish(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        {
            let mut map = lock(&self.table.0);
            if map
                .get(&self.key)
                .is_some_and(|current| Arc::ptr_eq(current, &self.flight))
            {
                map.remove(&self.key);
            }
        }
        self.flight.complete(outcome);
    }
}

/// flight.rs:117-130.
impl Drop for FlightGuard {
    fn drop(&mut self) {
        if !self.done {
            self.finish(Outcome::OwnerStopped);
        }
    }
}

/// The source call of an owner: at most one may run per key at any time.
fn fetch(fetching: &AtomicUsize) {
    let before = fetching.fetch_add(1, Ordering::SeqCst);
    assert_eq!(before, 0, "two fetches of one key were in flight at once");
    fetching.fetch_sub(1, Ordering::SeqCst);
}

/// How one caller's resolution went.
#[derive(Debug)]
struct Resolution {
    owned: bool,
    outcome: Outcome,
}

/// A caller as `Engine::fetch` runs it (resolve.rs): reserve; an owner
/// fetches and completes, then everybody waits on the flight.
fn resolve(table: &FlightTable, fetching: &AtomicUsize, id: u32) -> Resolution {
    match table.reserve(KEY) {
        Reservation::Owner(guard) => {
            let flight = Arc::clone(guard.flight());
            fetch(fetching);
            guard.complete(Outcome::Value(id));
            Resolution {
                owned: true,
                outcome: flight.wait(),
            }
        }
        Reservation::Joined(flight) => Resolution {
            owned: false,
            outcome: flight.wait(),
        },
    }
}

/// A caller cancelled right after reserving: a joiner drops its interest,
/// an owner drops its guard without completing. Returns whether it owned.
fn reserve_and_leave(table: &FlightTable) -> bool {
    match table.reserve(KEY) {
        Reservation::Owner(guard) => {
            drop(guard);
            true
        }
        Reservation::Joined(flight) => {
            drop(flight);
            false
        }
    }
}

/// Runs one owner ending with `end` (a completion, or `None` for a cancelled
/// owner) while one caller joins and waits and another joins and leaves.
fn owner_ends_while_waiters_join_and_leave(end: Option<Outcome>) {
    let table = FlightTable::new();
    let fetching = Arc::new(AtomicUsize::new(0));
    let Reservation::Owner(guard) = table.reserve(KEY) else {
        panic!("the first reservation of an empty table must own the key");
    };
    let first = Arc::clone(guard.flight());
    let expected = end.clone().unwrap_or(Outcome::OwnerStopped);

    // The detached fetch task of the first caller.
    let owner = {
        let fetching = Arc::clone(&fetching);
        thread::spawn(move || match end {
            Some(outcome) => {
                fetch(&fetching);
                guard.complete(outcome);
            }
            None => drop(guard),
        })
    };
    let joiner = {
        let (table, fetching) = (table.clone(), Arc::clone(&fetching));
        thread::spawn(move || resolve(&table, &fetching, 2))
    };
    let leaver = {
        let table = table.clone();
        thread::spawn(move || reserve_and_leave(&table))
    };

    // The first caller waits on its own flight like any joiner.
    assert_eq!(first.wait(), expected);
    owner.join().expect("owner thread");
    let joined = joiner.join().expect("joiner thread");
    let leaver_owned = leaver.join().expect("leaver thread");

    if joined.owned {
        assert_eq!(
            joined.outcome,
            Outcome::Value(2),
            "an owner sees its own result"
        );
    } else if leaver_owned {
        // It joined either the first flight or the leaver's cancelled one.
        assert!(
            joined.outcome == expected || joined.outcome == Outcome::OwnerStopped,
            "joiner got {:?}",
            joined.outcome
        );
    } else {
        assert_eq!(
            joined.outcome, expected,
            "a joiner sees the owner's outcome"
        );
    }
    assert_eq!(
        table.len(),
        0,
        "the single-flight table is empty afterwards"
    );
    assert_eq!(fetching.load(Ordering::SeqCst), 0);
}

#[test]
fn owner_completes_while_waiters_join_and_leave() {
    model(|| owner_ends_while_waiters_join_and_leave(Some(Outcome::Value(1))));
}

#[test]
fn owner_fails_while_waiters_join_and_leave() {
    model(|| owner_ends_while_waiters_join_and_leave(Some(Outcome::Failed("source failed"))));
}

#[test]
fn cancelled_owner_wakes_every_waiter() {
    model(|| owner_ends_while_waiters_join_and_leave(None));
}

#[test]
fn racing_callers_fetch_one_at_a_time_and_all_return() {
    model(|| {
        let table = FlightTable::new();
        let fetching = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (1..=3)
            .map(|id| {
                let (table, fetching) = (table.clone(), Arc::clone(&fetching));
                thread::spawn(move || resolve(&table, &fetching, id))
            })
            .collect();
        let resolutions: Vec<Resolution> = callers
            .into_iter()
            .map(|caller| caller.join().expect("caller thread"))
            .collect();
        let owners = resolutions.iter().filter(|r| r.owned).count();
        assert!(owners >= 1, "somebody fetched");
        for resolution in &resolutions {
            assert!(
                matches!(resolution.outcome, Outcome::Value(1..=3)),
                "every caller got a fetched value, not {:?}",
                resolution.outcome
            );
        }
        assert_eq!(
            table.len(),
            0,
            "the single-flight table is empty afterwards"
        );
    });
}
