//! Loom model of the circuit breaker's half-open single probe (issue 10,
//! "Loom models": two callers race for the probe; the probe is cancelled;
//! outcomes reported through permits of an earlier period are ignored).
//!
//! A faithful copy of `crates/coalestra-resilience/src/breaker.rs`:
//! `Circuit` and its transitions (lines 131-171), `Registry::settle`
//! (192-251), `CircuitBreakers::before_call` (369-431), `CircuitPermit`
//! reporting (311-333) and `Drop for CircuitPermit` (335-339), for one
//! circuit identity. `tokio::time::Instant` becomes a shared millisecond
//! clock read exactly where the original calls `Instant::now()`: under the
//! registry lock, and only when a circuit opens or an open circuit is
//! checked for recovery.
//!
//! Properties: at most one probe is in flight at any time and an open
//! circuit past its recovery timeout admits exactly one probe; a cancelled
//! (dropped) probe never leaves the circuit wedged half-open with a probe
//! marked active; a late outcome of a permit taken before a transition does
//! not undo the transition.

mod support;

use support::{lock, model, thread, Arc, AtomicU64, AtomicUsize, Mutex, Ordering};

const RECOVERY_MS: u64 = 10_000;

/// breaker.rs:18-26.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CircuitStatus {
    Closed,
    Open,
    HalfOpen,
}

/// breaker.rs:77-92.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CircuitOpen {
    Open,
    ProbeActive,
}

/// breaker.rs:131-137.
#[derive(Debug, Clone)]
struct Circuit {
    status: CircuitStatus,
    failures: u32,
    opened_at: Option<u64>,
    probe_active: bool,
    epoch: u64,
}

impl Circuit {
    /// breaker.rs:151-156.
    fn open(&mut self, now: u64, epoch: u64) {
        self.status = CircuitStatus::Open;
        self.opened_at = Some(now);
        self.probe_active = false;
        self.epoch = epoch;
    }

    /// breaker.rs:158-164.
    fn close(&mut self, epoch: u64) {
        self.status = CircuitStatus::Closed;
        self.failures = 0;
        self.opened_at = None;
        self.probe_active = false;
        self.epoch = epoch;
    }

    /// breaker.rs:166-170.
    fn start_probe(&mut self, epoch: u64) {
        self.status = CircuitStatus::HalfOpen;
        self.probe_active = true;
        self.epoch = epoch;
    }
}

/// breaker.rs:174-178, for a single identity (`None`: never guarded or
/// reset).
struct Circuits {
    circuit: Option<Circuit>,
    last_epoch: u64,
}

/// breaker.rs:254-261.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    Skipped,
    Abandoned,
}

/// breaker.rs:264-269.
struct Ticket {
    epoch: u64,
    probe: bool,
    threshold: u32,
}

/// `Registry` plus the clock `Instant::now()` reads.
struct Breaker {
    circuits: Mutex<Circuits>,
    clock_ms: AtomicU64,
}

impl Breaker {
    fn new(circuit: Option<Circuit>, now_ms: u64) -> Arc<Self> {
        let last_epoch = circuit.as_ref().map_or(0, |c| c.epoch);
        Arc::new(Self {
            circuits: Mutex::new(Circuits {
                circuit,
                last_epoch,
            }),
            clock_ms: AtomicU64::new(now_ms),
        })
    }

    fn now(&self) -> u64 {
        self.clock_ms.load(Ordering::SeqCst)
    }

    /// breaker.rs:192-251.
    fn settle(&self, ticket: &Ticket, outcome: Outcome) {
        let now = || self.now();
        let mut guard = lock(&self.circuits);
        let circuits = &mut *guard;
        let next_epoch = circuits.last_epoch + 1;
        let Some(circuit) = circuits.circuit.as_mut() else {
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

    /// breaker.rs:369-431 (enabled policy); `this` is the shared registry.
    fn before_call(
        this: &Arc<Self>,
        threshold: u32,
        recovery_ms: u64,
    ) -> Result<Permit, CircuitOpen> {
        let mut guard = lock(&this.circuits);
        let circuits = &mut *guard;
        let next_epoch = circuits.last_epoch + 1;
        let circuit = circuits.circuit.get_or_insert(Circuit {
            status: CircuitStatus::Closed,
            failures: 0,
            opened_at: None,
            probe_active: false,
            epoch: next_epoch,
        });
        if circuit.epoch == next_epoch {
            circuits.last_epoch = next_epoch;
        }
        let probe = match circuit.status {
            CircuitStatus::Closed => false,
            CircuitStatus::Open => {
                let elapsed = circuit
                    .opened_at
                    .map_or(u64::MAX, |at| this.now().saturating_sub(at));
                if elapsed < recovery_ms {
                    return Err(CircuitOpen::Open);
                }
                true
            }
            CircuitStatus::HalfOpen if circuit.probe_active => {
                return Err(CircuitOpen::ProbeActive);
            }
            CircuitStatus::HalfOpen => true,
        };
        if probe {
            circuit.start_probe(next_epoch);
            circuits.last_epoch = next_epoch;
        }
        Ok(Permit {
            breaker: Arc::clone(this),
            ticket: Some(Ticket {
                epoch: circuit.epoch,
                probe,
                threshold,
            }),
        })
    }

    /// breaker.rs:464-472 (`reset(Some(source))` of this identity's source).
    fn reset(&self) {
        lock(&self.circuits).circuit = None;
    }

    fn state(&self) -> Option<Circuit> {
        lock(&self.circuits).circuit.clone()
    }
}

/// breaker.rs:291-294.
struct Permit {
    breaker: Arc<Breaker>,
    ticket: Option<Ticket>,
}

impl Permit {
    fn is_probe(&self) -> bool {
        self.ticket.as_ref().is_some_and(|ticket| ticket.probe)
    }

    /// breaker.rs:311-333.
    fn report(mut self, outcome: Outcome) {
        self.settle(outcome);
    }

    fn settle(&mut self, outcome: Outcome) {
        if let Some(ticket) = self.ticket.take() {
            self.breaker.settle(&ticket, outcome);
        }
    }
}

/// breaker.rs:335-339.
impl Drop for Permit {
    fn drop(&mut self) {
        self.settle(Outcome::Abandoned);
    }
}

/// A circuit that opened at time zero.
fn open_circuit() -> Circuit {
    Circuit {
        status: CircuitStatus::Open,
        failures: 3,
        opened_at: Some(0),
        probe_active: false,
        epoch: 1,
    }
}

/// Counts probes: how many are in flight now and how many were granted.
#[derive(Default)]
struct Probes {
    active: AtomicUsize,
    granted: AtomicUsize,
}

impl Probes {
    /// Runs a call through `breaker`, ending it with `end` (`None`: the
    /// caller is cancelled and the permit dropped). Returns whether it was
    /// admitted.
    fn call(&self, breaker: &Arc<Breaker>, end: Option<Outcome>) -> Result<bool, CircuitOpen> {
        let permit = Breaker::before_call(breaker, 3, RECOVERY_MS)?;
        let probe = permit.is_probe();
        if probe {
            self.granted.fetch_add(1, Ordering::SeqCst);
            let before = self.active.fetch_add(1, Ordering::SeqCst);
            assert_eq!(before, 0, "two half-open probes were in flight at once");
            self.active.fetch_sub(1, Ordering::SeqCst);
        }
        match end {
            Some(outcome) => permit.report(outcome),
            None => drop(permit),
        }
        Ok(probe)
    }
}

/// Two callers race for the probe of an open circuit past its recovery
/// timeout, ending their calls with `first_end` and `second_end` (`None`:
/// cancelled). Checks that no probe is left marked active and returns how
/// many probes were granted and the final circuit.
fn race_for_probe(first_end: Option<Outcome>, second_end: Option<Outcome>) -> (usize, Circuit) {
    let breaker = Breaker::new(Some(open_circuit()), RECOVERY_MS);
    let probes = Arc::new(Probes::default());
    let callers: Vec<_> = [first_end, second_end]
        .into_iter()
        .map(|end| {
            let (breaker, probes) = (Arc::clone(&breaker), Arc::clone(&probes));
            thread::spawn(move || probes.call(&breaker, end))
        })
        .collect();
    for caller in callers {
        let result = caller.join().expect("caller thread");
        assert!(
            matches!(
                result,
                Ok(_) | Err(CircuitOpen::ProbeActive) | Err(CircuitOpen::Open)
            ),
            "unexpected {result:?}"
        );
    }
    let state = breaker.state().expect("the circuit is known");
    assert!(
        !state.probe_active,
        "no probe is left marked active: {state:?}"
    );
    (probes.granted.load(Ordering::SeqCst), state)
}

/// Time does not move, so a probe that ends (success, failure or
/// cancellation) leaves the circuit closed or freshly reopened, and exactly
/// one probe is ever granted.
fn race_with_a_decisive_probe(first_end: Option<Outcome>, second_end: Option<Outcome>) {
    let (granted, state) = race_for_probe(first_end, second_end);
    assert_eq!(granted, 1, "exactly one probe is admitted: {state:?}");
    assert_ne!(
        state.status,
        CircuitStatus::HalfOpen,
        "not left half-open: {state:?}"
    );
}

#[test]
fn two_callers_race_for_the_half_open_probe() {
    model(|| race_with_a_decisive_probe(Some(Outcome::Success), Some(Outcome::Success)));
    model(|| race_with_a_decisive_probe(Some(Outcome::Failure), Some(Outcome::Success)));
}

#[test]
fn a_cancelled_probe_reopens_the_circuit() {
    model(|| race_with_a_decisive_probe(None, Some(Outcome::Success)));
    model(|| race_with_a_decisive_probe(None, None));
}

#[test]
fn a_skipped_probe_is_released_for_the_next_caller() {
    model(|| {
        // A skipped probe (queue timeout, snapshot deadline) hands the probe
        // on: the other caller may probe next, but never at the same time.
        let (granted, state) = race_for_probe(Some(Outcome::Skipped), None);
        assert!((1..=2).contains(&granted), "granted {granted}: {state:?}");
    });
}

#[test]
fn a_cancelled_probe_lets_a_later_caller_probe_once_recovery_elapses_again() {
    model(|| {
        let breaker = Breaker::new(Some(open_circuit()), RECOVERY_MS);
        let probes = Arc::new(Probes::default());
        let cancelled = {
            let (breaker, probes) = (Arc::clone(&breaker), Arc::clone(&probes));
            thread::spawn(move || probes.call(&breaker, None))
        };
        let clock = {
            let breaker = Arc::clone(&breaker);
            thread::spawn(move || {
                breaker.clock_ms.fetch_add(RECOVERY_MS, Ordering::SeqCst);
            })
        };
        let later = probes.call(&breaker, Some(Outcome::Success));
        cancelled.join().expect("cancelled caller").ok();
        clock.join().expect("clock thread");
        assert!(probes.granted.load(Ordering::SeqCst) <= 2);
        let state = breaker.state().expect("the circuit is known");
        assert!(
            !state.probe_active,
            "no probe is left marked active: {state:?}"
        );
        assert_ne!(
            state.status,
            CircuitStatus::HalfOpen,
            "{state:?} after {later:?}"
        );
        // Once recovery elapsed again, one more caller may probe.
        let after = probes.call(&breaker, Some(Outcome::Success));
        assert!(
            matches!(after, Ok(_) | Err(CircuitOpen::Open)),
            "after the race: {after:?}"
        );
    });
}

#[test]
fn late_outcomes_of_earlier_permits_do_not_undo_a_transition() {
    model(|| {
        // Threshold 1: one failure opens the circuit, and a success reported
        // by a permit taken before that must not close it again.
        let breaker = Breaker::new(None, 0);
        let first = Breaker::before_call(&breaker, 1, RECOVERY_MS).expect("closed circuit");
        let second = Breaker::before_call(&breaker, 1, RECOVERY_MS).expect("closed circuit");
        let failing = thread::spawn(move || first.report(Outcome::Failure));
        let succeeding = thread::spawn(move || second.report(Outcome::Success));
        failing.join().expect("failing caller");
        succeeding.join().expect("succeeding caller");
        let state = breaker.state().expect("the circuit is known");
        assert_eq!(state.status, CircuitStatus::Open, "{state:?}");
    });
}

#[test]
fn a_reset_racing_a_probe_outcome_leaves_a_clean_circuit() {
    model(|| {
        let breaker = Breaker::new(Some(open_circuit()), RECOVERY_MS);
        let probe = Breaker::before_call(&breaker, 3, RECOVERY_MS).expect("recovery elapsed");
        assert!(probe.is_probe());
        let reporter = thread::spawn(move || probe.report(Outcome::Failure));
        let resetter = {
            let breaker = Arc::clone(&breaker);
            thread::spawn(move || breaker.reset())
        };
        reporter.join().expect("reporter");
        resetter.join().expect("resetter");
        // Whatever the order, the next call is admitted (a reset circuit
        // is closed) or refused as freshly reopened, never wedged.
        match Breaker::before_call(&breaker, 3, RECOVERY_MS) {
            Ok(permit) => {
                assert!(!permit.is_probe());
                permit.report(Outcome::Success);
            }
            Err(refused) => assert_eq!(refused, CircuitOpen::Open),
        }
        if let Some(state) = breaker.state() {
            assert!(!state.probe_active, "{state:?}");
        }
    });
}

#[test]
fn a_stale_probe_outcome_never_settles_a_later_probe() {
    model(|| {
        // A probe permit taken before a reset reports success late, while
        // the reset circuit fails again, reopens and admits a new probe
        // that fails. The stale success must not close the circuit (that
        // would admit ordinary calls next to the new probe).
        let breaker = Breaker::new(Some(open_circuit()), RECOVERY_MS);
        let stale = Breaker::before_call(&breaker, 1, RECOVERY_MS).expect("recovery elapsed");
        assert!(stale.is_probe());
        let late = thread::spawn(move || stale.report(Outcome::Success));
        breaker.reset();
        Breaker::before_call(&breaker, 1, RECOVERY_MS)
            .expect("a reset circuit is closed")
            .report(Outcome::Failure);
        breaker.clock_ms.fetch_add(RECOVERY_MS, Ordering::SeqCst);
        if let Ok(probe) = Breaker::before_call(&breaker, 1, RECOVERY_MS) {
            assert!(probe.is_probe());
            probe.report(Outcome::Failure);
        }
        late.join().expect("late reporter");
        let state = breaker.state().expect("the circuit is known");
        assert_eq!(state.status, CircuitStatus::Open, "{state:?}");
    });
}
