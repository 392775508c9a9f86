//! Resolution of a set of keys for a job: one batch cache read, then
//! single-flight reservation, then the source chain.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use coalestra_core::{
    CacheError, Event, FreshnessPolicy, PolicyResolver, ResourceError, ResourceKey, SnapshotValue,
    SourceError, SourceFailure,
};

use crate::cache_read::{allocate_answers, never_cached, unanswered, CacheAnswer, Readable};
use crate::engine::Engine;
use crate::flight::{Flight, Outcome, Reservation};
use crate::job::{Job, TreeLookup};
use crate::owned::Owned;
use crate::stats::BuildStats;
use crate::tasks::Detachable;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a resolution answered, key by key.
pub(crate) enum Resolved {
    /// Every key resolved to a value, in key order (a build served entirely
    /// from fresh cache hits).
    Values(Vec<SnapshotValue>),
    /// Each key's outcome, or `None` for a key no step reached before the
    /// deadline (see [`settle`]).
    Slots(Vec<Option<Outcome>>),
}

impl Resolved {
    /// One outcome per key of `keys`, in order.
    pub(crate) fn into_outcomes(self, keys: &[ResourceKey]) -> Vec<Outcome> {
        match self {
            Resolved::Values(values) => values.into_iter().map(Ok).collect(),
            Resolved::Slots(slots) => slots
                .into_iter()
                .zip(keys)
                .map(|(slot, key)| settle(slot, key))
                .collect(),
        }
    }
}

/// The freshness policies of a resolution's keys, in key order: a single
/// key's policy is kept inline, without an allocation.
enum Policies {
    One([FreshnessPolicy; 1]),
    Many(Vec<FreshnessPolicy>),
}

impl Policies {
    fn of(resolver: &PolicyResolver, keys: &[ResourceKey]) -> Self {
        match keys {
            [key] => Policies::One([resolver.resolve(key)]),
            _ => Policies::Many(resolver.resolve_all(keys)),
        }
    }
}

impl std::ops::Deref for Policies {
    type Target = [FreshnessPolicy];

    fn deref(&self) -> &[FreshnessPolicy] {
        match self {
            Policies::One(one) => one,
            Policies::Many(many) => many,
        }
    }
}

/// The outcome of a resolved slot: a key no step reached failed its deadline.
#[inline]
pub(crate) fn settle(slot: Option<Outcome>, key: &ResourceKey) -> Outcome {
    slot.unwrap_or_else(|| deadline_outcome(key, "before resolution"))
}

/// A deadline failure attributed to the snapshot itself.
pub(crate) fn deadline_outcome(key: &ResourceKey, phase: &str) -> Outcome {
    let failure = SourceFailure::new("snapshot", SourceError::deadline(phase), 0);
    Err(ResourceError::unresolved(key.clone(), vec![failure]))
}

impl Engine {
    /// Resolves `keys` (results in input order). `path` is empty for a job's
    /// top level and lists the derived keys being computed otherwise.
    pub(crate) async fn resolve(
        self: &Arc<Self>,
        keys: &[ResourceKey],
        job: &Arc<Job>,
        path: &[ResourceKey],
    ) -> Result<Vec<Outcome>, CacheError> {
        Ok(self
            .resolve_slots(keys, job, path)
            .await?
            .into_outcomes(keys))
    }

    /// [`resolve`](Self::resolve) without a final pass over the keys.
    pub(crate) fn resolve_slots<'a>(
        self: &'a Arc<Self>,
        keys: &'a [ResourceKey],
        job: &'a Arc<Job>,
        path: &'a [ResourceKey],
    ) -> BoxFuture<'a, Result<Resolved, CacheError>> {
        Box::pin(async move {
            let n = keys.len();
            let policies = Policies::of(&self.policies, keys);
            // Empty until a key gets an answer other than a fresh cache hit:
            // a build served entirely from the cache never allocates it.
            let mut outcomes: Vec<Option<Outcome>> = Vec::new();
            if let Some(pinned) = job.pinned.as_deref().filter(|p| !p.is_empty()) {
                outcomes = keys
                    .iter()
                    .map(|key| pinned.get(key).map(|value| Ok(value.clone())))
                    .collect();
            }
            // Stale candidates are rare: the vector grows only when one shows.
            let mut stale: Vec<Option<SnapshotValue>> = Vec::new();
            // A policy that allows no age at all never reads the cache: every
            // read goes to a source.
            let readable = Readable::of(&outcomes, &policies);
            let uncached = (0..n)
                .filter(|&i| unanswered(&outcomes, i) && never_cached(&policies[i]))
                .inspect(|&i| {
                    self.emit
                        .count_resource("cache_access_total", &keys[i], &[("status", "miss")]);
                })
                .count();
            BuildStats::add(&job.stats.cache_misses, uncached as u64);
            let read_count = readable.count(n);
            if read_count == 0 {
                // Everything is pinned by the session or never cached.
            } else if !job.bypass_cache {
                let read =
                    self.read_cache(keys, &readable, &policies, job, &mut outcomes, &mut stale);
                if let CacheAnswer::AllFresh(values) = read.await? {
                    job.learn(values.iter());
                    return Ok(Resolved::Values(values));
                }
            } else {
                BuildStats::add(&job.stats.cache_misses, read_count as u64);
                if let Some(reason) = job.bypass_reason {
                    for i in (0..read_count).map(|j| readable.position(j)) {
                        let key = &keys[i];
                        self.emit.count_resource(
                            "cache_access_total",
                            key,
                            &[("status", "revalidation_bypass")],
                        );
                        self.emit.event(|| {
                            Event::new("cache_bypassed")
                                .field("resource", key.to_string())
                                .field("reason", reason)
                        });
                    }
                }
            }
            allocate_answers(&mut outcomes, n);
            // Usually either every key or none is missing: only a mix needs
            // a list of positions and a key subset.
            let all_missing = n > 0 && outcomes.iter().all(Option::is_none);
            let missing: Vec<usize> = if all_missing {
                Vec::new()
            } else {
                (0..n).filter(|&i| outcomes[i].is_none()).collect()
            };
            if all_missing {
                self.fetch(keys, job, path, &mut outcomes).await;
            } else if !missing.is_empty() {
                let wanted: Vec<ResourceKey> = missing.iter().map(|&i| keys[i].clone()).collect();
                let mut fetched = vec![None; wanted.len()];
                self.fetch(&wanted, job, path, &mut fetched).await;
                for (&i, outcome) in missing.iter().zip(fetched) {
                    outcomes[i] = outcome;
                }
            }
            // A key that failed (or that no step reached) falls back to its
            // stale cached revision when its policy allows.
            for (i, candidate) in stale.iter_mut().enumerate() {
                let Some(candidate) = candidate.take() else {
                    continue;
                };
                if !policies[i].allow_stale_on_error() {
                    continue;
                }
                outcomes[i] = Some(match settle(outcomes[i].take(), &keys[i]) {
                    Err(error) => self.stale_fallback(candidate, &error, job),
                    resolved => resolved,
                });
            }
            job.learn(outcomes.iter().flatten().flatten());
            Ok(Resolved::Slots(outcomes))
        })
    }

    fn stale_fallback(
        &self,
        candidate: SnapshotValue,
        error: &ResourceError,
        job: &Job,
    ) -> Outcome {
        let key = candidate.key().clone();
        BuildStats::bump(&job.stats.stale_values);
        self.emit
            .count_resource("cache_access_total", &key, &[("status", "stale_fallback")]);
        self.emit.event(|| {
            Event::new("stale_fallback_used")
                .field("resource", key.to_string())
                .field("error_type", error.error_type())
        });
        Ok(candidate
            .with_note("fallback_error_type", error.error_type())
            .with_note("fallback_error", error.to_string()))
    }

    /// Fetches keys that missed the cache, honouring single-flight.
    async fn fetch(
        self: &Arc<Self>,
        keys: &[ResourceKey],
        job: &Arc<Job>,
        path: &[ResourceKey],
        outcomes: &mut [Option<Outcome>],
    ) {
        let mut owned = Vec::new();
        let mut claimed: Vec<(usize, Arc<Flight>)> = Vec::new();
        let mut waits: Vec<(usize, Arc<Flight>, bool)> = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            if !path.is_empty() {
                match job.tree.lookup(key, path) {
                    TreeLookup::Done(outcome) => {
                        outcomes[i] = Some(outcome);
                        continue;
                    }
                    TreeLookup::Claimed(flight) => {
                        claimed.push((i, flight));
                        continue;
                    }
                    TreeLookup::Wait(flight) => {
                        waits.push((i, flight, false));
                        continue;
                    }
                    TreeLookup::Cycle => {
                        let error = SourceError::Dependency {
                            message: format!(
                                "DependencyCycleError: waiting for {key} would deadlock"
                            )
                            .into(),
                            cycle: None,
                        };
                        let failure = SourceFailure::new("snapshot", error, 0);
                        outcomes[i] =
                            Some(Err(ResourceError::unresolved(key.clone(), vec![failure])));
                        continue;
                    }
                    TreeLookup::Unknown => {}
                }
            }
            match self.flights.reserve(key) {
                Reservation::Owner(guard) => {
                    if !path.is_empty() {
                        job.tree.nested(key, Arc::clone(guard.flight()));
                    }
                    if owned.is_empty() {
                        owned.reserve(keys.len() - i);
                    }
                    owned.push((i, guard));
                }
                Reservation::Joined(flight) => waits.push((i, flight, true)),
            }
        }
        let mut work = None;
        if path.is_empty() {
            if !owned.is_empty() {
                let keys: Vec<ResourceKey> = owned.iter().map(|(_, g)| g.key().clone()).collect();
                job.tree.own(&keys);
                for (i, guard) in &owned {
                    waits.push((*i, Arc::clone(guard.flight()), false));
                }
                let work_items: Vec<(ResourceKey, Owned)> = owned
                    .into_iter()
                    .map(|(_, g)| (g.key().clone(), Owned::Guard(g)))
                    .collect();
                let engine = Arc::clone(self);
                let task_job = Arc::clone(job);
                // The shared work starts here, in this caller's task, and is
                // detached from it: should the caller stop waiting first, the
                // rest runs on as a tracked task, so cancelling one caller
                // never cancels a fetch other callers wait for.
                work = Some(Detachable::new(&self.tasks, async move {
                    engine.run_owned(work_items, &task_job, &[]).await;
                }));
            }
        } else if !owned.is_empty() || !claimed.is_empty() {
            let mut indices = Vec::new();
            let mut work_items: Vec<(ResourceKey, Owned)> = Vec::new();
            for (i, guard) in owned {
                indices.push(i);
                work_items.push((guard.key().clone(), Owned::Guard(guard)));
            }
            for (i, flight) in claimed {
                indices.push(i);
                work_items.push((keys[i].clone(), Owned::Claimed(flight)));
            }
            // Boxed: nested resolutions are rare, and inlining the whole
            // chain would make every top-level resolution's future as large.
            let results = Box::pin(self.run_owned(work_items, job, path)).await;
            for (i, outcome) in indices.into_iter().zip(results) {
                outcomes[i] = Some(outcome);
            }
        }
        let waiting = self.wait_all(keys, waits, job, path, outcomes);
        match work.as_mut() {
            None => waiting.await,
            Some(work) => {
                tokio::pin!(waiting);
                // The waiting side goes first, so a deadline that has passed
                // ends this caller's wait before the work is advanced again.
                std::future::poll_fn(|cx| {
                    if waiting.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(());
                    }
                    work.poll_work(cx);
                    waiting.as_mut().poll(cx)
                })
                .await;
            }
        }
        // Unfinished work moves to a task here.
        drop(work);
    }

    /// Waits for every flight in `waits`, each bounded by the job deadline.
    async fn wait_all(
        &self,
        keys: &[ResourceKey],
        waits: Vec<(usize, Arc<Flight>, bool)>,
        job: &Job,
        path: &[ResourceKey],
        outcomes: &mut [Option<Outcome>],
    ) {
        let waiter = path.last();
        for (i, flight, joined) in waits {
            let key = &keys[i];
            if let Some(from) = waiter {
                job.tree.wait_edge(from, key, true);
            }
            let outcome = match job.deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, flight.wait()).await {
                    Ok(outcome) => outcome,
                    Err(_) => {
                        self.note_deadline(job);
                        deadline_outcome(key, "while waiting for a shared fetch")
                    }
                },
                None => flight.wait().await,
            };
            if let Some(from) = waiter {
                job.tree.wait_edge(from, key, false);
            }
            outcomes[i] = Some(if joined {
                BuildStats::bump(&job.stats.coalesced_requests);
                self.emit
                    .count_resource("singleflight_join_total", key, &[]);
                outcome.map(|v| v.with_coalesced(true))
            } else {
                outcome
            });
        }
    }
}
