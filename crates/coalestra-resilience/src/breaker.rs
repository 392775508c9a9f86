//! Scoped circuit breakers: a registry of circuits keyed by [`CircuitIdentity`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use coalestra_core::key::KeyHashing;
use coalestra_core::CircuitBreakerPolicy;
use serde::{Serialize, Serializer};
use tokio::time::Instant;

use crate::identity::CircuitIdentity;

/// The status of one circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitStatus {
    /// Calls flow normally; consecutive failures are counted.
    #[default]
    Closed,
    /// Calls are refused until the recovery timeout has elapsed.
    Open,
    /// A single probe call decides whether the circuit closes or reopens.
    HalfOpen,
}

impl CircuitStatus {
    /// The snake-case name of this status (`"closed"`, `"open"`, `"half_open"`).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for CircuitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serializes an optional [`Duration`] as an optional number of seconds.
fn serialize_opt_secs<S: Serializer>(
    value: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(duration) => serializer.serialize_some(&duration.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}

/// A point-in-time view of one circuit, as reported by
/// [`CircuitBreakers::snapshot`] and [`CircuitBreakers::state_of`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[non_exhaustive]
pub struct CircuitState {
    /// The circuit's status.
    pub state: CircuitStatus,
    /// Consecutive failures counted so far (reset by a success).
    pub failures: u32,
    /// How long ago the circuit last opened, while it is open or half-open;
    /// serialized as seconds.
    #[serde(serialize_with = "serialize_opt_secs")]
    pub opened_for: Option<Duration>,
    /// Whether a half-open probe call is in flight.
    pub half_open_probe_active: bool,
}

/// Why [`CircuitBreakers::before_call`] refused a call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CircuitOpen {
    /// The circuit is open and its recovery timeout has not elapsed.
    #[error("circuit is open for {identity}")]
    Open {
        /// The refusing circuit.
        identity: CircuitIdentity,
        /// Time left until the circuit lets a probe through.
        retry_after: Duration,
    },
    /// The circuit is half-open and its single probe call is still in flight.
    #[error("half-open probe already active for {identity}")]
    ProbeActive {
        /// The refusing circuit.
        identity: CircuitIdentity,
    },
}

impl CircuitOpen {
    /// Whether the circuit is open and waiting for its recovery timeout.
    #[must_use]
    pub const fn is_open(&self) -> bool {
        matches!(self, Self::Open { .. })
    }

    /// Whether the circuit is half-open with its probe in flight.
    #[must_use]
    pub const fn is_probe_active(&self) -> bool {
        matches!(self, Self::ProbeActive { .. })
    }

    /// The circuit that refused the call.
    #[must_use]
    pub const fn identity(&self) -> &CircuitIdentity {
        match self {
            Self::Open { identity, .. } | Self::ProbeActive { identity } => identity,
        }
    }

    /// Time left until an open circuit lets a probe through; `None` while a
    /// probe is in flight.
    #[must_use]
    pub const fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Open { retry_after, .. } => Some(*retry_after),
            Self::ProbeActive { .. } => None,
        }
    }
}

/// The state of one circuit.
///
/// `epoch` changes on every status transition and every probe start, so an
/// outcome reported through a permit taken in an earlier period is ignored.
#[derive(Debug, Clone)]
struct Circuit {
    status: CircuitStatus,
    failures: u32,
    opened_at: Option<Instant>,
    probe_active: bool,
    epoch: u64,
}

impl Circuit {
    fn view(&self, now: Instant) -> CircuitState {
        CircuitState {
            state: self.status,
            failures: self.failures,
            opened_for: self
                .opened_at
                .map(|opened_at| now.saturating_duration_since(opened_at)),
            half_open_probe_active: self.probe_active,
        }
    }

    fn open(&mut self, now: Instant, epoch: u64) {
        self.status = CircuitStatus::Open;
        self.opened_at = Some(now);
        self.probe_active = false;
        self.epoch = epoch;
    }

    fn close(&mut self, epoch: u64) {
        self.status = CircuitStatus::Closed;
        self.failures = 0;
        self.opened_at = None;
        self.probe_active = false;
        self.epoch = epoch;
    }

    fn start_probe(&mut self, epoch: u64) {
        self.status = CircuitStatus::HalfOpen;
        self.probe_active = true;
        self.epoch = epoch;
    }
}

/// Everything behind the registry's lock.
#[derive(Debug, Default)]
struct Circuits {
    by_identity: HashMap<CircuitIdentity, Circuit, KeyHashing>,
    last_epoch: u64,
}

#[derive(Debug, Default)]
struct Registry {
    circuits: Mutex<Circuits>,
}

impl Registry {
    fn lock(&self) -> MutexGuard<'_, Circuits> {
        // A panic while holding the lock cannot leave a circuit half-updated
        // in a way that matters more than losing the registry, so recover.
        self.circuits.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn settle(&self, ticket: &Ticket, identity: &CircuitIdentity, outcome: Outcome) {
        // The clock is read only when a circuit opens.
        let now = Instant::now;
        let mut guard = self.lock();
        let circuits = &mut *guard;
        let next_epoch = circuits.last_epoch + 1;
        let Some(circuit) = circuits.by_identity.get_mut(identity) else {
            return;
        };
        if circuit.epoch != ticket.epoch {
            return;
        }
        let transitioned = if ticket.probe {
            if circuit.status != CircuitStatus::HalfOpen || !circuit.probe_active {
                return;
            }
            match outcome {
                Outcome::Success => {
                    circuit.close(next_epoch);
                    true
                }
                Outcome::Failure => {
                    circuit.failures = circuit.failures.saturating_add(1);
                    circuit.open(now(), next_epoch);
                    true
                }
                Outcome::Abandoned => {
                    circuit.open(now(), next_epoch);
                    true
                }
                Outcome::Skipped => {
                    circuit.probe_active = false;
                    false
                }
            }
        } else {
            if circuit.status != CircuitStatus::Closed {
                return;
            }
            match outcome {
                Outcome::Success => {
                    circuit.failures = 0;
                    false
                }
                Outcome::Failure => {
                    circuit.failures = circuit.failures.saturating_add(1);
                    if circuit.failures >= ticket.threshold {
                        circuit.open(now(), next_epoch);
                        true
                    } else {
                        false
                    }
                }
                Outcome::Skipped | Outcome::Abandoned => false,
            }
        };
        if transitioned {
            circuits.last_epoch = next_epoch;
        }
    }
}

/// How a permitted call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Skipped,
    Abandoned,
}

/// What a permit needs to report its outcome to the registry.
struct Ticket {
    registry: Arc<Registry>,
    epoch: u64,
    probe: bool,
    threshold: u32,
}

impl fmt::Debug for Ticket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The registry is left out: it holds every circuit.
        f.debug_struct("Ticket")
            .field("epoch", &self.epoch)
            .field("probe", &self.probe)
            .field("threshold", &self.threshold)
            .finish_non_exhaustive()
    }
}

/// Permission for one call, returned by [`CircuitBreakers::before_call`].
///
/// Report the call's outcome with exactly one of [`CircuitPermit::success`],
/// [`CircuitPermit::failure`] or [`CircuitPermit::skipped`]. Dropping the
/// permit without reporting counts as an abandoned call: a half-open probe
/// that is abandoned reopens the circuit, while an abandoned call in a closed
/// circuit changes nothing.
#[derive(Debug)]
#[must_use = "report the call's outcome, or dropping the permit abandons the call"]
pub struct CircuitPermit {
    identity: CircuitIdentity,
    ticket: Option<Ticket>,
}

impl CircuitPermit {
    /// The circuit this permit belongs to.
    #[must_use]
    pub const fn identity(&self) -> &CircuitIdentity {
        &self.identity
    }

    /// Whether this call is the single probe of a half-open circuit.
    #[must_use]
    pub fn is_probe(&self) -> bool {
        self.ticket.as_ref().is_some_and(|ticket| ticket.probe)
    }

    /// Reports a successful call: resets the failure count and closes a
    /// half-open circuit.
    pub fn success(mut self) {
        self.settle(Outcome::Success);
    }

    /// Reports a failed call: counts a consecutive failure (opening the
    /// circuit at the threshold) or reopens a half-open circuit.
    pub fn failure(mut self) {
        self.settle(Outcome::Failure);
    }

    /// Reports a call that produced no outcome (it timed out in a queue or hit
    /// the snapshot deadline): nothing is counted, and a half-open probe is
    /// released so that the next call may probe.
    pub fn skipped(mut self) {
        self.settle(Outcome::Skipped);
    }

    fn settle(&mut self, outcome: Outcome) {
        if let Some(ticket) = self.ticket.take() {
            ticket.registry.settle(&ticket, &self.identity, outcome);
        }
    }
}

impl Drop for CircuitPermit {
    fn drop(&mut self) {
        self.settle(Outcome::Abandoned);
    }
}

/// A shared registry of circuits, one per [`CircuitIdentity`].
///
/// Cloning is cheap and clones share state. Time is read from
/// [`tokio::time::Instant`], so paused-time tests control recovery. The
/// registry keeps one small entry per identity it has guarded (with an
/// enabled policy) until [`CircuitBreakers::reset`] removes it.
#[derive(Debug, Clone, Default)]
pub struct CircuitBreakers {
    registry: Arc<Registry>,
}

impl CircuitBreakers {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks whether a call guarded by `identity` may proceed under `policy`.
    ///
    /// A closed circuit always permits. An open circuit refuses until
    /// `policy.recovery_timeout()` has elapsed since it opened; the first call
    /// after that turns it half-open and becomes its single probe. A disabled
    /// policy permits every call without touching the circuit.
    ///
    /// # Errors
    /// Returns [`CircuitOpen::Open`] while the circuit is open and
    /// [`CircuitOpen::ProbeActive`] while a half-open probe is in flight.
    pub fn before_call(
        &self,
        identity: &CircuitIdentity,
        policy: &CircuitBreakerPolicy,
    ) -> Result<CircuitPermit, CircuitOpen> {
        if !policy.enabled() {
            return Ok(CircuitPermit {
                identity: identity.clone(),
                ticket: None,
            });
        }
        let mut guard = self.registry.lock();
        let circuits = &mut *guard;
        let next_epoch = circuits.last_epoch + 1;
        let circuit = circuits
            .by_identity
            .entry(identity.clone())
            .or_insert_with(|| Circuit {
                status: CircuitStatus::Closed,
                failures: 0,
                opened_at: None,
                probe_active: false,
                epoch: next_epoch,
            });
        if circuit.epoch == next_epoch {
            // The entry was just created with a fresh epoch.
            circuits.last_epoch = next_epoch;
        }
        let probe = match circuit.status {
            CircuitStatus::Closed => false,
            CircuitStatus::Open => {
                let elapsed = circuit.opened_at.map_or(Duration::MAX, |at| {
                    Instant::now().saturating_duration_since(at)
                });
                if elapsed < policy.recovery_timeout() {
                    return Err(CircuitOpen::Open {
                        identity: identity.clone(),
                        retry_after: policy.recovery_timeout() - elapsed,
                    });
                }
                true
            }
            CircuitStatus::HalfOpen if circuit.probe_active => {
                return Err(CircuitOpen::ProbeActive {
                    identity: identity.clone(),
                });
            }
            CircuitStatus::HalfOpen => true,
        };
        if probe {
            circuit.start_probe(next_epoch);
            circuits.last_epoch = next_epoch;
        }
        Ok(CircuitPermit {
            identity: identity.clone(),
            ticket: Some(Ticket {
                registry: Arc::clone(&self.registry),
                epoch: circuit.epoch,
                probe,
                threshold: policy.failure_threshold(),
            }),
        })
    }

    /// The state of one circuit; an unknown identity reports a closed
    /// circuit with no failures.
    #[must_use]
    pub fn state_of(&self, identity: &CircuitIdentity) -> CircuitState {
        let now = Instant::now();
        self.registry
            .lock()
            .by_identity
            .get(identity)
            .map(|circuit| circuit.view(now))
            .unwrap_or_default()
    }

    /// Every known circuit, keyed by the identity's display form.
    ///
    /// Open circuits whose recovery timeout has elapsed are still reported
    /// open: they turn half-open on the next [`Self::before_call`].
    #[must_use]
    pub fn snapshot(&self) -> BTreeMap<String, CircuitState> {
        let now = Instant::now();
        self.registry
            .lock()
            .by_identity
            .iter()
            .map(|(identity, circuit)| (identity.to_string(), circuit.view(now)))
            .collect()
    }

    /// Forgets the circuits of one source, or of every source with `None`.
    ///
    /// Outcomes later reported by permits taken before the reset are ignored.
    pub fn reset(&self, source: Option<&str>) {
        let mut guard = self.registry.lock();
        match source {
            Some(source) => guard
                .by_identity
                .retain(|identity, _| identity.source() != source),
            None => guard.by_identity.clear(),
        }
    }

    /// Number of open circuits.
    #[must_use]
    pub fn open_count(&self) -> usize {
        self.count(CircuitStatus::Open)
    }

    /// Number of half-open circuits.
    #[must_use]
    pub fn half_open_count(&self) -> usize {
        self.count(CircuitStatus::HalfOpen)
    }

    fn count(&self, status: CircuitStatus) -> usize {
        self.registry
            .lock()
            .by_identity
            .values()
            .filter(|circuit| circuit.status == status)
            .count()
    }
}
