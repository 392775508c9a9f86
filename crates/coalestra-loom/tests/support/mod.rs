//! The synchronization facade of the models: loom under
//! `--cfg coalestra_loom`, std otherwise, plus a `tokio::sync::Notify`
//! stand-in with the same `notify_waiters` semantics.

#![allow(dead_code, unused_imports)]

#[cfg(coalestra_loom)]
pub use loom::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(coalestra_loom)]
pub use loom::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(coalestra_loom)]
pub use loom::thread;

#[cfg(not(coalestra_loom))]
pub use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
#[cfg(not(coalestra_loom))]
pub use std::sync::{Arc, Condvar, Mutex, MutexGuard};
#[cfg(not(coalestra_loom))]
pub use std::thread;

/// How often a plain (std) run repeats each scenario.
#[cfg(not(coalestra_loom))]
const STD_ITERATIONS: usize = 200;

/// Explores every interleaving of `scenario` under loom (bounded by
/// `LOOM_MAX_PREEMPTIONS`, default 3), or runs it [`STD_ITERATIONS`] times
/// on real threads without loom.
pub fn model<F>(scenario: F)
where
    F: Fn() + Sync + Send + 'static,
{
    #[cfg(coalestra_loom)]
    {
        let mut builder = loom::model::Builder::new();
        if builder.preemption_bound.is_none() {
            builder.preemption_bound = Some(3);
        }
        builder.check(scenario);
    }
    #[cfg(not(coalestra_loom))]
    for _ in 0..STD_ITERATIONS {
        scenario();
    }
}

/// Locks a model mutex; the models never panic while holding one, so a
/// poisoned lock is itself a failure worth reporting.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().expect("model mutex poisoned")
}

/// `tokio::sync::Notify` as the flight uses it: `notified()` registers
/// interest at creation (tokio counts `notify_waiters` calls from the moment
/// a `Notified` is created, so a notification after creation is never
/// lost), and `notify_waiters()` wakes every registered waiter without
/// storing a permit for later ones.
#[derive(Default)]
pub struct Notify {
    generation: Mutex<u64>,
    changed: Condvar,
}

/// A registered interest in the next `notify_waiters` call.
pub struct Notified<'a> {
    notify: &'a Notify,
    seen: u64,
}

impl Notify {
    pub fn notified(&self) -> Notified<'_> {
        Notified {
            notify: self,
            seen: *lock(&self.generation),
        }
    }

    pub fn notify_waiters(&self) {
        *lock(&self.generation) += 1;
        self.changed.notify_all();
    }
}

impl Notified<'_> {
    /// Blocks until a `notify_waiters` call made after this interest was
    /// registered (loom reports a deadlock if none ever comes).
    pub fn wait(self) {
        let mut generation = lock(&self.notify.generation);
        while *generation == self.seen {
            generation = self
                .notify
                .changed
                .wait(generation)
                .expect("model mutex poisoned");
        }
    }
}
