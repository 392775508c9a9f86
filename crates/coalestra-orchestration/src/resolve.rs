//! Resolution of a set of keys for a job: one batch cache read, then
//! single-flight reservation, then the source chain.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use coalestra_core::{
    CacheError, CacheHit, CacheLookup, Event, Freshness, FreshnessPolicy, RefreshMode,
    ResourceError, ResourceKey, SnapshotValue, SourceError, SourceFailure,
};

use crate::engine::Engine;
use crate::flight::{Flight, Outcome, Reservation};
use crate::job::{Job, TreeLookup};
use crate::owned::Owned;
use crate::stats::BuildStats;
use crate::tasks::Detachable;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whether `policy` allows no age at all, so no cached revision can serve it.
fn never_cached(policy: &FreshnessPolicy) -> bool {
    policy.ttl().is_zero() && policy.max_stale().is_zero()
}

/// What a batch of cache hits fills in.
struct Taken<'a> {
    keys: &'a [ResourceKey],
    policies: &'a [FreshnessPolicy],
    job: &'a Arc<Job>,
    outcomes: &'a mut [Option<Outcome>],
    stale: &'a mut Vec<Option<SnapshotValue>>,
}

/// Counts of one cache batch, added to the build's counters once.
#[derive(Default)]
struct HitTally {
    hits: u64,
    misses: u64,
    stale: u64,
    metrics_on: bool,
    events_on: bool,
}

impl HitTally {
    /// Whether no sink wants to hear about single hits.
    fn unobserved(&self) -> bool {
        !self.metrics_on && !self.events_on
    }

    fn miss(&mut self, engine: &Engine, key: &ResourceKey) {
        self.misses += 1;
        if self.metrics_on {
            engine
                .emit
                .count_resource("cache_access_total", key, &[("status", "miss")]);
        }
    }
}

/// Which keys of a resolution read the cache.
enum Readable {
    /// Every key, in order: none pinned, every policy allows some age.
    All,
    /// Only these positions.
    Only(Vec<usize>),
}

impl Readable {
    /// The keys not answered yet whose policy allows a cached revision.
    fn of(outcomes: &[Option<Outcome>], policies: &[FreshnessPolicy]) -> Self {
        let readable = |i: &usize| outcomes[*i].is_none() && !never_cached(&policies[*i]);
        if (0..outcomes.len()).all(|i| readable(&i)) {
            Readable::All
        } else {
            Readable::Only((0..outcomes.len()).filter(readable).collect())
        }
    }

    /// How many of `n` keys read the cache.
    fn count(&self, n: usize) -> usize {
        match self {
            Readable::All => n,
            Readable::Only(indices) => indices.len(),
        }
    }

    /// The key position of the `j`-th read.
    fn position(&self, j: usize) -> usize {
        match self {
            Readable::All => j,
            Readable::Only(indices) => indices[j],
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
        let slots = self.resolve_slots(keys, job, path).await?;
        Ok(slots
            .into_iter()
            .zip(keys)
            .map(|(slot, key)| settle(slot, key))
            .collect())
    }

    /// [`resolve`](Self::resolve) without the final pass: a key that no step
    /// reached (a deadline passed first) is `None`; [`settle`] reports it.
    pub(crate) fn resolve_slots<'a>(
        self: &'a Arc<Self>,
        keys: &'a [ResourceKey],
        job: &'a Arc<Job>,
        path: &'a [ResourceKey],
    ) -> BoxFuture<'a, Result<Vec<Option<Outcome>>, CacheError>> {
        Box::pin(async move {
            let mut outcomes: Vec<Option<Outcome>> = vec![None; keys.len()];
            // Stale candidates are rare: the vector grows only when one shows.
            let mut stale: Vec<Option<SnapshotValue>> = Vec::new();
            let policies = self.policies.resolve_all(keys);
            if let Some(pinned) = job.pinned.as_deref().filter(|p| !p.is_empty()) {
                for (slot, key) in outcomes.iter_mut().zip(keys) {
                    if let Some(value) = pinned.get(key) {
                        *slot = Some(Ok(value.clone()));
                    }
                }
            }
            // A policy that allows no age at all never reads the cache: every
            // read goes to a source.
            let readable = Readable::of(&outcomes, &policies);
            let uncached = (0..keys.len())
                .filter(|&i| outcomes[i].is_none() && never_cached(&policies[i]))
                .inspect(|&i| {
                    self.emit
                        .count_resource("cache_access_total", &keys[i], &[("status", "miss")]);
                })
                .count();
            BuildStats::add(&job.stats.cache_misses, uncached as u64);
            let read_count = readable.count(keys.len());
            if read_count == 0 {
                // Everything is pinned by the session or never cached.
            } else if !job.bypass_cache {
                self.read_cache(keys, &readable, &policies, job, &mut outcomes, &mut stale)
                    .await?;
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
            // Usually either every key or none is missing: only a mix needs
            // a list of positions and a key subset.
            let all_missing = !keys.is_empty() && outcomes.iter().all(Option::is_none);
            let missing: Vec<usize> = if all_missing {
                Vec::new()
            } else {
                (0..keys.len()).filter(|&i| outcomes[i].is_none()).collect()
            };
            if all_missing || !missing.is_empty() {
                let fetched = if all_missing {
                    self.fetch(keys, job, path).await
                } else {
                    let wanted: Vec<ResourceKey> =
                        missing.iter().map(|&i| keys[i].clone()).collect();
                    self.fetch(&wanted, job, path).await
                };
                for (j, outcome) in fetched.into_iter().enumerate() {
                    let i = if all_missing { j } else { missing[j] };
                    let candidate = stale.get_mut(i).and_then(Option::take);
                    outcomes[i] = Some(match (outcome, candidate) {
                        (Err(error), Some(candidate)) if policies[i].allow_stale_on_error() => {
                            self.stale_fallback(candidate, &error, job)
                        }
                        (outcome, _) => outcome,
                    });
                }
            }
            job.learn(&outcomes);
            Ok(outcomes)
        })
    }

    async fn read_cache(
        self: &Arc<Self>,
        all_keys: &[ResourceKey],
        readable: &Readable,
        policies: &[FreshnessPolicy],
        job: &Arc<Job>,
        outcomes: &mut [Option<Outcome>],
        stale: &mut Vec<Option<SnapshotValue>>,
    ) -> Result<(), CacheError> {
        let lookup = |i: usize| CacheLookup {
            key: &all_keys[i],
            policy: &policies[i],
        };
        let lookups: Vec<CacheLookup<'_>> = match readable {
            Readable::All => (0..all_keys.len()).map(lookup).collect(),
            Readable::Only(indices) => indices.iter().map(|&i| lookup(i)).collect(),
        };
        let now = self.clock.now();
        let read = self.cache.lookup_many(&lookups, now);
        let hits = match job.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                Ok(hits) => hits?,
                Err(_) => {
                    self.note_deadline(job);
                    for i in (0..lookups.len()).map(|j| readable.position(j)) {
                        outcomes[i] = Some(deadline_outcome(&all_keys[i], "during cache read"));
                    }
                    return Ok(());
                }
            },
            None => read.await?,
        };
        BuildStats::bump(&job.stats.cache_batch_reads);
        let mut tally = HitTally {
            // Sinks are asked once per batch, not once per key.
            metrics_on: self.emit.metrics_enabled(),
            events_on: self.emit.events_enabled(),
            ..HitTally::default()
        };
        let mut taken = Taken {
            keys: all_keys,
            policies,
            job,
            outcomes,
            stale,
        };
        // Judged without an await in the loop; a hit whose dependency versions
        // the cache did not check waits for that check after the batch.
        let mut unchecked: Vec<(usize, CacheHit)> = Vec::new();
        for (j, hit) in hits.into_iter().enumerate() {
            let i = readable.position(j);
            match hit {
                None => tally.miss(self, &all_keys[i]),
                Some(hit)
                    if !self.cache_validates_deps
                        && !hit.value.dependency_versions().is_empty() =>
                {
                    unchecked.push((i, hit));
                }
                // The common case, a fresh hit with no sink to tell, stays
                // in the loop.
                Some(hit) if hit.freshness == Freshness::Fresh && tally.unobserved() => {
                    tally.hits += 1;
                    taken.outcomes[i] = Some(Ok(hit.value));
                }
                Some(hit) => self.take_hit(i, hit, &mut taken, &mut tally),
            }
        }
        for (i, hit) in unchecked {
            if self.dependencies_current(&hit.value, now).await {
                self.take_hit(i, hit, &mut taken, &mut tally);
            } else {
                tally.misses += 1;
                let _ = self.cache.invalidate(&all_keys[i]).await;
            }
        }
        BuildStats::add(&job.stats.cache_hits, tally.hits);
        BuildStats::add(&job.stats.cache_misses, tally.misses);
        BuildStats::add(&job.stats.stale_values, tally.stale);
        Ok(())
    }

    /// Records one usable cache hit for key `i`.
    fn take_hit(
        self: &Arc<Self>,
        i: usize,
        hit: CacheHit,
        taken: &mut Taken<'_>,
        tally: &mut HitTally,
    ) {
        let key = &taken.keys[i];
        match hit.freshness {
            Freshness::Fresh => {
                tally.hits += 1;
                if tally.metrics_on {
                    self.emit
                        .count_resource("cache_access_total", key, &[("status", "fresh")]);
                }
                if tally.events_on {
                    self.emit.event(|| {
                        Event::new("cache_hit")
                            .field("resource", key.to_string())
                            .field("freshness", "fresh")
                    });
                }
                taken.outcomes[i] = Some(Ok(hit.value));
            }
            Freshness::RefreshDue => {
                tally.hits += 1;
                self.emit
                    .count_resource("cache_access_total", key, &[("status", "fresh")]);
                let scheduled = self.request_refresh(key, "refresh_ahead", taken.job);
                taken.outcomes[i] = Some(Ok(hit.value.with_refresh_scheduled(scheduled)));
            }
            Freshness::StaleUsable
                if taken.policies[i].refresh_mode() == RefreshMode::StaleWhileRevalidate =>
            {
                tally.hits += 1;
                tally.stale += 1;
                self.emit.count_resource(
                    "cache_access_total",
                    key,
                    &[("status", "stale_while_revalidate")],
                );
                let scheduled = self.request_refresh(key, "stale_while_revalidate", taken.job);
                let value = hit
                    .value
                    .with_stale(true)
                    .with_refresh_scheduled(scheduled)
                    .with_note("refresh_mode", "stale_while_revalidate");
                taken.outcomes[i] = Some(Ok(value));
            }
            Freshness::StaleUsable => {
                tally.misses += 1;
                self.emit
                    .count_resource("cache_access_total", key, &[("status", "miss")]);
                if taken.stale.is_empty() {
                    taken.stale.resize(taken.keys.len(), None);
                }
                taken.stale[i] = Some(hit.value.with_stale(true));
            }
            Freshness::Expired => tally.misses += 1,
        }
    }

    /// Checks a derived value's recorded dependency versions against the
    /// cache (for caches that do not check them themselves).
    fn dependencies_current<'a>(
        self: &'a Arc<Self>,
        value: &'a SnapshotValue,
        now: coalestra_core::Timestamp,
    ) -> BoxFuture<'a, bool> {
        Box::pin(async move {
            let unbounded = FreshnessPolicy::fresh_for(FreshnessPolicy::UNBOUNDED);
            for (dep, version) in value.dependency_versions() {
                match self.cache.get(dep, unbounded, now).await {
                    Ok(Some(hit)) if hit.value.version() == *version => {
                        if !hit.value.dependency_versions().is_empty()
                            && !self.dependencies_current(&hit.value, now).await
                        {
                            return false;
                        }
                    }
                    _ => return false,
                }
            }
            true
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
    ) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; keys.len()];
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
        let waiting = self.wait_all(keys, waits, job, path, &mut outcomes);
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
        outcomes
            .into_iter()
            .zip(keys)
            .map(|(o, k)| o.unwrap_or_else(|| deadline_outcome(k, "before resolution")))
            .collect()
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
