//! Resolution of a set of keys for a job: one batch cache read, then
//! single-flight reservation, then the source chain.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use coalestra_core::{
    CacheError, CacheRead, Event, Freshness, FreshnessPolicy, RefreshMode, ResourceError,
    ResourceKey, SnapshotValue, SourceError, SourceFailure,
};

use crate::engine::Engine;
use crate::flight::{Flight, Outcome, Reservation};
use crate::job::{Job, TreeLookup};
use crate::owned::Owned;
use crate::stats::BuildStats;

type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A deadline failure attributed to the snapshot itself.
pub(crate) fn deadline_outcome(key: &ResourceKey, phase: &str) -> Outcome {
    let failure = SourceFailure::new("snapshot", SourceError::deadline(phase), 0);
    Err(ResourceError::unresolved(key.clone(), vec![failure]))
}

impl Engine {
    /// Resolves `keys` (results in input order). `path` is empty for a job's
    /// top level and lists the derived keys being computed otherwise.
    pub(crate) fn resolve<'a>(
        self: &'a Arc<Self>,
        keys: &'a [ResourceKey],
        job: &'a Arc<Job>,
        path: &'a [ResourceKey],
    ) -> BoxFuture<'a, Result<Vec<Outcome>, CacheError>> {
        Box::pin(async move {
            let mut outcomes: Vec<Option<Outcome>> = vec![None; keys.len()];
            let mut stale: Vec<Option<SnapshotValue>> = vec![None; keys.len()];
            let mut policies: Vec<FreshnessPolicy> = Vec::with_capacity(keys.len());
            policies.extend(keys.iter().map(|k| self.policies.resolve(k)));
            if !job.pinned.is_empty() {
                for (slot, key) in outcomes.iter_mut().zip(keys) {
                    if let Some(value) = job.pinned.get(key) {
                        *slot = Some(Ok(value.clone()));
                    }
                }
            }
            let unpinned: Vec<usize> = (0..keys.len()).filter(|&i| outcomes[i].is_none()).collect();
            if unpinned.is_empty() {
                // Everything is pinned by the session.
            } else if !job.bypass_cache {
                self.read_cache(keys, &unpinned, &policies, job, &mut outcomes, &mut stale)
                    .await?;
            } else {
                BuildStats::add(&job.stats.cache_misses, unpinned.len() as u64);
                if let Some(reason) = job.bypass_reason {
                    for &i in &unpinned {
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
            let missing: Vec<usize> = (0..keys.len()).filter(|&i| outcomes[i].is_none()).collect();
            if !missing.is_empty() {
                let wanted: Vec<ResourceKey> = missing.iter().map(|&i| keys[i].clone()).collect();
                let fetched = self.fetch(&wanted, job, path).await;
                for (&i, outcome) in missing.iter().zip(fetched) {
                    outcomes[i] = Some(match (outcome, stale[i].take()) {
                        (Err(error), Some(candidate)) if policies[i].allow_stale_on_error() => {
                            self.stale_fallback(candidate, &error, job)
                        }
                        (outcome, _) => outcome,
                    });
                }
            }
            let outcomes: Vec<Outcome> = outcomes
                .into_iter()
                .zip(keys)
                .map(|(o, k)| o.unwrap_or_else(|| deadline_outcome(k, "before resolution")))
                .collect();
            job.learn(&outcomes);
            Ok(outcomes)
        })
    }

    async fn read_cache(
        self: &Arc<Self>,
        all_keys: &[ResourceKey],
        indices: &[usize],
        policies: &[FreshnessPolicy],
        job: &Arc<Job>,
        outcomes: &mut [Option<Outcome>],
        stale: &mut [Option<SnapshotValue>],
    ) -> Result<(), CacheError> {
        let reads: Vec<CacheRead> = indices
            .iter()
            .map(|&i| CacheRead {
                key: all_keys[i].clone(),
                policy: policies[i],
            })
            .collect();
        let now = self.clock.now();
        let read = self.cache.get_many(&reads, now);
        let hits = match job.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, read).await {
                Ok(hits) => hits?,
                Err(_) => {
                    self.note_deadline(job);
                    for &i in indices {
                        outcomes[i] = Some(deadline_outcome(&all_keys[i], "during cache read"));
                    }
                    return Ok(());
                }
            },
            None => read.await?,
        };
        BuildStats::bump(&job.stats.cache_batch_reads);
        for (&i, hit) in indices.iter().zip(hits) {
            let key = &all_keys[i];
            let Some(hit) = hit else {
                BuildStats::bump(&job.stats.cache_misses);
                self.emit
                    .count_resource("cache_access_total", key, &[("status", "miss")]);
                continue;
            };
            if !self.cache_validates_deps
                && !hit.value.dependency_versions().is_empty()
                && !self.dependencies_current(&hit.value, now).await
            {
                BuildStats::bump(&job.stats.cache_misses);
                let _ = self.cache.invalidate(key).await;
                continue;
            }
            let policy = policies[i];
            match hit.freshness {
                Freshness::Fresh => {
                    BuildStats::bump(&job.stats.cache_hits);
                    self.emit
                        .count_resource("cache_access_total", key, &[("status", "fresh")]);
                    self.emit.event(|| {
                        Event::new("cache_hit")
                            .field("resource", key.to_string())
                            .field("freshness", "fresh")
                    });
                    outcomes[i] = Some(Ok(hit.value));
                }
                Freshness::RefreshDue => {
                    BuildStats::bump(&job.stats.cache_hits);
                    self.emit
                        .count_resource("cache_access_total", key, &[("status", "fresh")]);
                    let scheduled = self.request_refresh(key, "refresh_ahead", job);
                    outcomes[i] = Some(Ok(hit.value.with_refresh_scheduled(scheduled)));
                }
                Freshness::StaleUsable
                    if policy.refresh_mode() == RefreshMode::StaleWhileRevalidate =>
                {
                    BuildStats::bump(&job.stats.cache_hits);
                    BuildStats::bump(&job.stats.stale_values);
                    self.emit.count_resource(
                        "cache_access_total",
                        key,
                        &[("status", "stale_while_revalidate")],
                    );
                    let scheduled = self.request_refresh(key, "stale_while_revalidate", job);
                    let value = hit
                        .value
                        .with_stale(true)
                        .with_refresh_scheduled(scheduled)
                        .with_note("refresh_mode", "stale_while_revalidate");
                    outcomes[i] = Some(Ok(value));
                }
                Freshness::StaleUsable => {
                    BuildStats::bump(&job.stats.cache_misses);
                    self.emit
                        .count_resource("cache_access_total", key, &[("status", "miss")]);
                    stale[i] = Some(hit.value.with_stale(true));
                }
                Freshness::Expired => {
                    BuildStats::bump(&job.stats.cache_misses);
                }
            }
        }
        Ok(())
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
        let mut waits: Vec<(usize, Arc<Flight>, bool)> = Vec::new();
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
                    owned.push((i, guard));
                }
                Reservation::Joined(flight) => waits.push((i, flight, true)),
            }
        }
        if path.is_empty() {
            if !owned.is_empty() {
                let keys: Vec<ResourceKey> = owned.iter().map(|(_, g)| g.key().clone()).collect();
                job.tree.own(&keys);
                for (i, guard) in &owned {
                    waits.push((*i, Arc::clone(guard.flight()), false));
                }
                let work: Vec<(ResourceKey, Owned)> = owned
                    .into_iter()
                    .map(|(_, g)| (g.key().clone(), Owned::Guard(g)))
                    .collect();
                let engine = Arc::clone(self);
                let task_job = Arc::clone(job);
                // The shared work is detached from this caller: cancelling the
                // caller never cancels a fetch other callers may be waiting for.
                self.tasks.spawn(async move {
                    engine.run_owned(work, &task_job, &[]).await;
                });
            }
        } else if !owned.is_empty() || !claimed.is_empty() {
            let mut indices = Vec::new();
            let mut work: Vec<(ResourceKey, Owned)> = Vec::new();
            for (i, guard) in owned {
                indices.push(i);
                work.push((guard.key().clone(), Owned::Guard(guard)));
            }
            for (i, flight) in claimed {
                indices.push(i);
                work.push((keys[i].clone(), Owned::Claimed(flight)));
            }
            let results = self.run_owned(work, job, path).await;
            for (i, outcome) in indices.into_iter().zip(results) {
                outcomes[i] = Some(outcome);
            }
        }
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
        outcomes
            .into_iter()
            .zip(keys)
            .map(|(o, k)| o.unwrap_or_else(|| deadline_outcome(k, "before resolution")))
            .collect()
    }
}
