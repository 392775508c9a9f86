//! [`MockHandle`]: the test's view of a mock source after it was registered.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use coalestra_core::{KeyMap, ResourceKey};
use tokio::sync::watch;

use crate::gate::Gate;
use crate::keys::IntoResourceKey;
use crate::script::Script;

#[derive(Default)]
struct CallState {
    batches: Vec<Vec<ResourceKey>>,
    in_flight: usize,
    max_in_flight: usize,
    completed: usize,
}

/// Call records of one mock.
pub(crate) struct Calls {
    state: Mutex<CallState>,
    started: watch::Sender<usize>,
}

impl Calls {
    fn new() -> Self {
        Self {
            state: Mutex::new(CallState::default()),
            started: watch::Sender::new(0),
        }
    }

    fn state(&self) -> MutexGuard<'_, CallState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records the start of a call for `keys`; the guard records its end.
    pub(crate) fn enter(&self, keys: &[ResourceKey]) -> InFlight<'_> {
        let count = {
            let mut state = self.state();
            state.batches.push(keys.to_vec());
            state.in_flight += 1;
            state.max_in_flight = state.max_in_flight.max(state.in_flight);
            state.batches.len()
        };
        self.started.send_replace(count);
        InFlight(self)
    }

    pub(crate) fn count(&self) -> usize {
        self.state().batches.len()
    }
}

/// Marks a call finished when dropped (also on panic or cancellation).
pub(crate) struct InFlight<'a>(&'a Calls);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let mut state = self.0.state();
        state.in_flight -= 1;
        state.completed += 1;
    }
}

#[derive(Default)]
struct Gates {
    all: Option<Gate>,
    by_key: KeyMap<Gate>,
}

/// State shared by a mock source and its handles.
pub(crate) struct Shared {
    name: Arc<str>,
    pub(crate) script: Script,
    pub(crate) calls: Calls,
    gates: Mutex<Gates>,
}

impl Shared {
    pub(crate) fn new(name: &str) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            script: Script::default(),
            calls: Calls::new(),
            gates: Mutex::new(Gates::default()),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn gates(&self) -> MutexGuard<'_, Gates> {
        self.gates
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Passes the gates that apply to a call for `keys`, then sleeps for the
    /// scripted latency.
    pub(crate) async fn hold(&self, keys: &[ResourceKey]) {
        let gates: Vec<Gate> = {
            let gates = self.gates();
            gates
                .all
                .iter()
                .chain(keys.iter().filter_map(|k| gates.by_key.get(k)))
                .cloned()
                .collect()
        };
        for gate in gates {
            gate.pass().await;
        }
        let delay = self.script.delay_for(keys);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
    }
}

/// A cloneable handle on a mock source's script, call records and gates,
/// kept by the test after the source itself moved into a builder.
#[derive(Clone)]
pub struct MockHandle(pub(crate) Arc<Shared>);

impl MockHandle {
    /// The source name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// The source's script, to change answers at run time.
    pub fn script(&self) -> &Script {
        &self.0.script
    }

    /// The number of calls started (batch calls and derivations count once).
    pub fn calls(&self) -> usize {
        self.0.calls.count()
    }

    /// The number of calls that involved `key`.
    pub fn calls_for(&self, key: impl IntoResourceKey) -> usize {
        let key = key.into_resource_key();
        self.0
            .calls
            .state()
            .batches
            .iter()
            .filter(|batch| batch.contains(&key))
            .count()
    }

    /// Every requested key, in call order (batch calls contribute their keys
    /// in request order).
    pub fn call_log(&self) -> Vec<ResourceKey> {
        self.0.calls.state().batches.concat()
    }

    /// The keys of each call, in call order (a single-key call or a
    /// derivation is a one-key list).
    pub fn batches(&self) -> Vec<Vec<ResourceKey>> {
        self.0.calls.state().batches.clone()
    }

    /// Calls running right now (including calls waiting at a gate).
    pub fn in_flight(&self) -> usize {
        self.0.calls.state().in_flight
    }

    /// The highest number of calls that ran at once.
    pub fn max_in_flight(&self) -> usize {
        self.0.calls.state().max_in_flight
    }

    /// Calls that finished (returned, failed, panicked or were cancelled).
    pub fn completed(&self) -> usize {
        self.0.calls.state().completed
    }

    /// Waits until at least `n` calls have started.
    pub async fn wait_for_calls(&self, n: usize) {
        let mut started = self.0.calls.started.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = started.wait_for(|count| *count >= n).await;
    }

    /// Forgets the call records (the peak concurrency restarts from the calls
    /// still running).
    pub fn reset_calls(&self) {
        let mut state = self.0.calls.state();
        state.batches.clear();
        state.completed = 0;
        state.max_in_flight = state.in_flight;
        drop(state);
        self.0.calls.started.send_replace(0);
    }

    /// Installs a new, closed gate in front of every later call and returns
    /// it (replacing any previous all-calls gate).
    pub fn gate(&self) -> Gate {
        let gate = Gate::new();
        self.0.gates().all = Some(gate.clone());
        gate
    }

    /// Installs a new, closed gate in front of later calls involving `key`.
    pub fn gate_for(&self, key: impl IntoResourceKey) -> Gate {
        let gate = Gate::new();
        self.0
            .gates()
            .by_key
            .insert(key.into_resource_key(), gate.clone());
        gate
    }

    /// Removes every gate (calls already waiting keep waiting on theirs).
    pub fn remove_gates(&self) {
        *self.0.gates() = Gates::default();
    }
}

impl fmt::Debug for MockHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MockHandle")
            .field("name", &self.name())
            .field("calls", &self.calls())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}
