//! Single-flight: at most one fetch per key in flight across every build,
//! session and refresh of one builder.

use std::sync::{Arc, OnceLock};

use coalestra_core::key::KeyHashing;
use coalestra_core::{ResourceError, ResourceKey, SnapshotValue, SourceError, SourceFailure};
use dashmap::DashMap;
use tokio::sync::Notify;

/// The outcome of resolving one key.
pub(crate) type Outcome = Result<SnapshotValue, ResourceError>;

/// One in-flight resolution that others can wait for.
#[derive(Debug, Default)]
pub(crate) struct Flight {
    result: OnceLock<Outcome>,
    done: Notify,
}

impl Flight {
    /// Waits for the outcome.
    pub(crate) async fn wait(&self) -> Outcome {
        if let Some(outcome) = self.result.get() {
            return outcome.clone();
        }
        loop {
            let notified = self.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(outcome) = self.result.get() {
                return outcome.clone();
            }
            notified.await;
        }
    }

    pub(crate) fn complete(&self, outcome: Outcome) {
        let _ = self.result.set(outcome);
        self.done.notify_waiters();
    }
}

/// The table of in-flight keys.
#[derive(Debug, Default, Clone)]
pub(crate) struct FlightTable(Arc<DashMap<ResourceKey, Arc<Flight>, KeyHashing>>);

/// The result of a reservation.
pub(crate) enum Reservation {
    /// The caller owns the fetch and must complete it.
    Owner(FlightGuard),
    /// Another caller owns it; wait on the flight.
    Joined(Arc<Flight>),
}

impl FlightTable {
    /// Reserves `key`: the first caller owns it, later callers join.
    pub(crate) fn reserve(&self, key: &ResourceKey) -> Reservation {
        match self.0.entry(key.clone()) {
            dashmap::Entry::Occupied(e) => Reservation::Joined(Arc::clone(e.get())),
            dashmap::Entry::Vacant(e) => {
                let flight = Arc::new(Flight::default());
                e.insert(Arc::clone(&flight));
                Reservation::Owner(FlightGuard {
                    table: self.clone(),
                    key: key.clone(),
                    flight,
                    done: false,
                })
            }
        }
    }

    /// Keys currently in flight.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }
}

/// Ownership of one in-flight key; completing it (or dropping it) removes
/// the key from the table and wakes every waiter.
pub(crate) struct FlightGuard {
    table: FlightTable,
    key: ResourceKey,
    flight: Arc<Flight>,
    done: bool,
}

impl FlightGuard {
    /// The owned key.
    pub(crate) fn key(&self) -> &ResourceKey {
        &self.key
    }

    /// The flight waiters observe.
    pub(crate) fn flight(&self) -> &Arc<Flight> {
        &self.flight
    }

    /// Publishes the outcome to every waiter.
    pub(crate) fn complete(mut self, outcome: Outcome) {
        self.finish(outcome);
    }

    fn finish(&mut self, outcome: Outcome) {
        if self.done {
            return;
        }
        self.done = true;
        self.table
            .0
            .remove_if(&self.key, |_, f| Arc::ptr_eq(f, &self.flight));
        self.flight.complete(outcome);
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if !self.done {
            let failure = SourceFailure::new(
                "snapshot",
                SourceError::unavailable(
                    "single-flight owner stopped before completing the resource",
                ),
                0,
            );
            let error = ResourceError::unresolved(self.key.clone(), vec![failure]);
            self.finish(Err(error));
        }
    }
}
