//! The batch cache read of a resolution: which keys read the cache, one
//! `lookup_many` for them, and the judging of each hit (fresh, refresh due,
//! stale while revalidating, stale kept as an error fallback, expired).

use std::sync::Arc;

use coalestra_core::{
    CacheError, CacheHit, CacheLookup, Event, Freshness, FreshnessPolicy, RefreshMode, ResourceKey,
    SnapshotValue,
};

use crate::engine::Engine;
use crate::flight::Outcome;
use crate::job::Job;
use crate::resolve::{deadline_outcome, BoxFuture};
use crate::stats::BuildStats;

/// Whether `policy` allows no age at all, so no cached revision can serve it.
pub(crate) fn never_cached(policy: &FreshnessPolicy) -> bool {
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

/// Whether key `i` has no answer yet (`outcomes` may not be allocated yet).
pub(crate) fn unanswered(outcomes: &[Option<Outcome>], i: usize) -> bool {
    outcomes.get(i).is_none_or(Option::is_none)
}

/// Gives every key its (empty) answer slot, if the list is not allocated yet.
pub(crate) fn allocate_answers(outcomes: &mut Vec<Option<Outcome>>, keys: usize) {
    if outcomes.is_empty() {
        outcomes.resize(keys, None);
    }
}

/// What the cache read of a resolution gave.
pub(crate) enum CacheAnswer {
    /// Every key was a fresh hit and no sink observes single hits: the
    /// values in key order, with nothing judged into the outcomes.
    AllFresh(Vec<SnapshotValue>),
    /// The hits were judged into the outcomes and the stale candidates.
    Judged,
}

/// Which keys of a resolution read the cache.
pub(crate) enum Readable {
    /// Every key, in order: none pinned, every policy allows some age.
    All,
    /// Only these positions.
    Only(Vec<usize>),
}

impl Readable {
    /// The keys not answered yet whose policy allows a cached revision
    /// (`outcomes` is empty when no key has an answer yet).
    pub(crate) fn of(outcomes: &[Option<Outcome>], policies: &[FreshnessPolicy]) -> Self {
        let readable = |i: &usize| unanswered(outcomes, *i) && !never_cached(&policies[*i]);
        if (0..policies.len()).all(|i| readable(&i)) {
            Readable::All
        } else {
            Readable::Only((0..policies.len()).filter(readable).collect())
        }
    }

    /// How many of `n` keys read the cache.
    pub(crate) fn count(&self, n: usize) -> usize {
        match self {
            Readable::All => n,
            Readable::Only(indices) => indices.len(),
        }
    }

    /// The key position of the `j`-th read.
    pub(crate) fn position(&self, j: usize) -> usize {
        match self {
            Readable::All => j,
            Readable::Only(indices) => indices[j],
        }
    }
}

impl Engine {
    /// Reads the `readable` keys in one batch and judges the hits into
    /// `outcomes` (sized to the keys first if still empty), unless every key
    /// is a plain fresh hit.
    pub(crate) async fn read_cache(
        self: &Arc<Self>,
        all_keys: &[ResourceKey],
        readable: &Readable,
        policies: &[FreshnessPolicy],
        job: &Arc<Job>,
        outcomes: &mut Vec<Option<Outcome>>,
        stale: &mut Vec<Option<SnapshotValue>>,
    ) -> Result<CacheAnswer, CacheError> {
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
                    allocate_answers(outcomes, all_keys.len());
                    for i in (0..lookups.len()).map(|j| readable.position(j)) {
                        outcomes[i] = Some(deadline_outcome(&all_keys[i], "during cache read"));
                    }
                    return Ok(CacheAnswer::Judged);
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
        let plain = |hit: &Option<CacheHit>| {
            hit.as_ref().is_some_and(|hit| {
                hit.freshness == Freshness::Fresh && !self.needs_dependency_check(hit)
            })
        };
        if matches!(readable, Readable::All) && tally.unobserved() && hits.iter().all(plain) {
            // Every key fresh, nothing to tell a sink: the values move on
            // as they are, in key order, without being judged one by one.
            BuildStats::add(&job.stats.cache_hits, hits.len() as u64);
            let values = hits.into_iter().filter_map(|hit| hit.map(|hit| hit.value));
            return Ok(CacheAnswer::AllFresh(values.collect()));
        }
        allocate_answers(outcomes, all_keys.len());
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
                Some(hit) if self.needs_dependency_check(&hit) => unchecked.push((i, hit)),
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
        Ok(CacheAnswer::Judged)
    }

    /// Whether `hit` carries dependency versions the cache did not check.
    fn needs_dependency_check(&self, hit: &CacheHit) -> bool {
        !self.cache_validates_deps && !hit.value.dependency_versions().is_empty()
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
                tally.miss(self, key);
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
}
