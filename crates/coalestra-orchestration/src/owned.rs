//! Running the keys a job owns.
//!
//! Keys that no derived source supports never wait on other keys, so they
//! run as one chain (batched by level). Keys a derived source may compute can
//! wait on keys owned by other builds; each runs its own chain and
//! completes its single-flight entry as soon as it is final, so two builds
//! owning each other's dependencies can never block each other.

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use coalestra_concurrency::dispatch_bounded;
use coalestra_core::{ResourceKey, SourceRef};

use crate::engine::Engine;
use crate::flight::{Flight, FlightGuard, Outcome};
use crate::job::Job;
use crate::stats::BuildStats;

/// Something to complete when an owned key is final.
pub(crate) enum Owned {
    /// A builder-wide single-flight entry.
    Guard(FlightGuard),
    /// A key of this job claimed by a dependency request.
    Claimed(Arc<Flight>),
}

impl Owned {
    fn flight(&self) -> Arc<Flight> {
        match self {
            Self::Guard(guard) => Arc::clone(guard.flight()),
            Self::Claimed(flight) => Arc::clone(flight),
        }
    }

    fn complete(self, outcome: Outcome) {
        match self {
            Self::Guard(guard) => guard.complete(outcome),
            Self::Claimed(flight) => flight.complete(outcome),
        }
    }
}

impl Engine {
    fn maybe_derived(&self, key: &ResourceKey) -> bool {
        let scratch = BuildStats::default();
        self.catalog.entries().iter().any(|entry| {
            matches!(entry.source, SourceRef::Derived(_))
                && self.catalog.supports(entry, key, &scratch).unwrap_or(true)
        })
    }

    /// Resolves owned keys, completing each as soon as it is final. Results
    /// follow input order.
    pub(crate) async fn run_owned(
        self: &Arc<Self>,
        owned: Vec<(ResourceKey, Owned)>,
        job: &Arc<Job>,
        path: &[ResourceKey],
    ) -> Vec<Outcome> {
        if !self.catalog.has_derived() {
            // No key can wait on another: one chain, completed key by key
            // once it returns.
            let (keys, owned): (Vec<ResourceKey>, Vec<Owned>) = owned.into_iter().unzip();
            let outcomes = self.run_chain(&keys, job, path).await;
            for (slot, outcome) in owned.into_iter().zip(&outcomes) {
                slot.complete(outcome.clone());
            }
            return outcomes;
        }
        let keys: Vec<ResourceKey> = owned.iter().map(|(k, _)| k.clone()).collect();
        let slots: Mutex<Vec<Option<Owned>>> =
            Mutex::new(owned.into_iter().map(|(_, o)| Some(o)).collect());
        let results: Mutex<Vec<Option<Outcome>>> = Mutex::new(vec![None; keys.len()]);
        let finish = |i: usize, outcome: Outcome| {
            let slot = slots.lock().unwrap_or_else(|p| p.into_inner())[i].take();
            if let Some(slot) = slot {
                slot.complete(outcome.clone());
            }
            results.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(outcome);
        };
        let (derived, plain): (Vec<usize>, Vec<usize>) =
            (0..keys.len()).partition(|&i| self.maybe_derived(&keys[i]));
        {
            let slots = slots.lock().unwrap_or_else(|p| p.into_inner());
            for &i in &plain {
                if let Some(owned) = &slots[i] {
                    job.tree.running(&keys[i], owned.flight());
                }
            }
        }
        let plain_run = async {
            if plain.is_empty() {
                return;
            }
            let plain_keys: Vec<ResourceKey> = plain.iter().map(|&i| keys[i].clone()).collect();
            let outcomes = self.run_chain(&plain_keys, job, path).await;
            for (&i, outcome) in plain.iter().zip(outcomes) {
                finish(i, outcome);
            }
        };
        let derived_run = async {
            let Some(width) = NonZeroUsize::new(derived.len()) else {
                return;
            };
            dispatch_bounded(derived.iter().copied(), width, |i| {
                let key = std::slice::from_ref(&keys[i]);
                let finish = &finish;
                async move {
                    if let Some(outcome) = self.run_chain(key, job, path).await.pop() {
                        finish(i, outcome);
                    }
                }
            })
            .await;
        };
        tokio::join!(plain_run, derived_run);
        let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
        results
            .into_iter()
            .zip(&keys)
            .map(|(o, k)| {
                o.unwrap_or_else(|| crate::resolve::deadline_outcome(k, "before resolution"))
            })
            .collect()
    }
}
