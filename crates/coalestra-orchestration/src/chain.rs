//! The source chain: every unresolved key goes through the sources in
//! descending priority until one returns a fresh value.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use coalestra_concurrency::dispatch_bounded;
use coalestra_core::{
    CacheWrite, ResourceError, ResourceKey, SnapshotValue, SourceFailure, SourceRef, WriteOutcome,
};

use crate::attempt::KeyAttempt;
use crate::catalog::SourceEntry;
use crate::engine::Engine;
use crate::flight::Outcome;
use crate::job::Job;
use crate::stats::BuildStats;

#[derive(Default)]
struct KeyState {
    value: Option<SnapshotValue>,
    outcome: Option<Outcome>,
    failures: Vec<SourceFailure>,
    candidate: Option<SnapshotValue>,
    delegated: Option<Arc<crate::flight::Flight>>,
}

impl KeyState {
    fn open(&self) -> bool {
        self.value.is_none() && self.outcome.is_none() && self.delegated.is_none()
    }

    fn absorb(&mut self, attempt: KeyAttempt) {
        match attempt {
            KeyAttempt::Fresh(v) => self.value = Some(v),
            KeyAttempt::Stale(v, failure) => {
                self.failures.push(failure);
                let newer = self
                    .candidate
                    .as_ref()
                    .is_none_or(|c| v.observed_at() > c.observed_at());
                if newer {
                    self.candidate = Some(v);
                }
            }
            KeyAttempt::Failed(failure) => self.failures.push(failure),
        }
    }
}

impl Engine {
    fn workers_for(&self, entry: &SourceEntry) -> NonZeroUsize {
        let mut n = self.max_pending.min(self.capacity.max_concurrency());
        if let Some(limit) = self.capacity.source_limit(&entry.name) {
            n = n.min(limit);
        }
        n
    }

    /// One source's attempt at the keys waiting on it.
    async fn run_level(
        self: &Arc<Self>,
        entry: &SourceEntry,
        supported: Vec<usize>,
        keys: &[ResourceKey],
        job: &Arc<Job>,
        path: &[ResourceKey],
    ) -> Vec<(usize, KeyAttempt)> {
        match &entry.source {
            SourceRef::Single(source) => {
                dispatch_bounded(supported, self.max_pending, |i| {
                    let key = &keys[i];
                    async move {
                        let _slot = job.gate.acquire().await;
                        let _busy = self.worker();
                        (i, self.attempt_single(entry, source, key, job).await)
                    }
                })
                .await
            }
            SourceRef::Batch(source) => {
                let size = source
                    .max_batch_size()
                    .map_or(supported.len(), NonZeroUsize::get)
                    .max(1);
                let chunks: Vec<Vec<usize>> =
                    supported.chunks(size).map(<[usize]>::to_vec).collect();
                let results = dispatch_bounded(chunks, self.workers_for(entry), |chunk| {
                    let chunk_keys: Vec<ResourceKey> =
                        chunk.iter().map(|&i| keys[i].clone()).collect();
                    async move {
                        let _slot = job.gate.acquire().await;
                        let _busy = self.worker();
                        let attempts = self.attempt_batch(entry, source, chunk_keys, job).await;
                        (chunk, attempts)
                    }
                })
                .await;
                let mut out = Vec::with_capacity(supported.len());
                for (chunk, attempts) in results {
                    for (position, attempt) in attempts {
                        out.push((chunk[position], attempt));
                    }
                }
                out
            }
            SourceRef::Derived(source) => {
                dispatch_bounded(supported, self.max_pending, |i| {
                    let key = &keys[i];
                    async move {
                        let _busy = self.worker();
                        (i, self.attempt_derived(entry, source, key, job, path).await)
                    }
                })
                .await
            }
            _ => Vec::new(),
        }
    }

    /// Runs the chain for `keys` and writes fresh results to the cache.
    pub(crate) async fn run_chain(
        self: &Arc<Self>,
        keys: &[ResourceKey],
        job: &Arc<Job>,
        path: &[ResourceKey],
    ) -> Vec<Outcome> {
        let mut states: Vec<KeyState> = keys.iter().map(|_| KeyState::default()).collect();
        let entries = self.catalog.entries();
        // Per key, the index of the next source to consider: every key visits
        // sources in descending priority, but keys waiting on different
        // sources proceed concurrently.
        let mut next: Vec<usize> = vec![0; keys.len()];
        loop {
            if path.is_empty() {
                for (state, key) in states.iter_mut().zip(keys) {
                    if state.open() {
                        match job.tree.delegated(key) {
                            Some(Ok(outcome)) => state.outcome = Some(outcome),
                            Some(Err(flight)) => state.delegated = Some(flight),
                            None => {}
                        }
                    }
                }
            }
            let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for i in 0..keys.len() {
                if !states[i].open() {
                    continue;
                }
                while let Some(entry) = entries.get(next[i]) {
                    let excluded = job
                        .excluded
                        .get(&keys[i])
                        .is_some_and(|names| names.contains(&entry.name));
                    if excluded {
                        next[i] += 1;
                        continue;
                    }
                    match self.catalog.supports(entry, &keys[i], &job.stats) {
                        Ok(true) => break,
                        Ok(false) => next[i] += 1,
                        Err(error) => {
                            states[i].failures.push(SourceFailure::new(
                                entry.name.clone(),
                                error,
                                0,
                            ));
                            next[i] += 1;
                        }
                    }
                }
                if next[i] < entries.len() {
                    groups.entry(next[i]).or_default().push(i);
                    next[i] += 1;
                }
            }
            let Some(width) = NonZeroUsize::new(groups.len()) else {
                break;
            };
            let levels = dispatch_bounded(groups, width, |(e, supported)| {
                self.run_level(&entries[e], supported, keys, job, path)
            })
            .await;
            for results in levels {
                for (i, attempt) in results {
                    states[i].absorb(attempt);
                    // Publish fresh values to the job's tree at once, so
                    // dependencies requested meanwhile reuse them.
                    if let Some(value) = &states[i].value {
                        job.tree.finish(&keys[i], &Ok(value.clone()));
                    }
                }
            }
        }
        for state in &mut states {
            if let Some(flight) = state.delegated.take() {
                state.outcome = Some(flight.wait().await);
            }
        }
        // Stale candidates stand in when nothing fresh came back.
        for (state, key) in states.iter_mut().zip(keys) {
            if state.value.is_none() && state.outcome.is_none() {
                if let Some(candidate) = state.candidate.take() {
                    let policy = self.policies.resolve(key);
                    if policy.allow_stale_on_error() && policy.is_usable(candidate.age()) {
                        BuildStats::bump(&job.stats.stale_values);
                        state.value = Some(candidate);
                    }
                }
            }
        }
        self.write_back(keys, &mut states, job).await;
        let mut outcomes = Vec::with_capacity(keys.len());
        for (state, key) in states.into_iter().zip(keys) {
            let outcome = match (state.outcome, state.value) {
                (Some(outcome), _) => outcome,
                (None, Some(value)) => Ok(value),
                (None, None) => Err(ResourceError::unresolved(key.clone(), state.failures)),
            };
            job.tree.finish(key, &outcome);
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Writes resolved values to the cache in one batch and adopts a
    /// higher-authority revision that landed meanwhile.
    async fn write_back(&self, keys: &[ResourceKey], states: &mut [KeyState], job: &Job) {
        if !job.write_cache {
            return;
        }
        let mut indices = Vec::new();
        let mut writes = Vec::new();
        for (i, state) in states.iter().enumerate() {
            if let Some(value) = &state.value {
                if job.refresh && value.is_stale() {
                    continue;
                }
                let policy = self.policies.resolve(&keys[i]);
                if policy.max_stale().is_zero() {
                    continue;
                }
                indices.push(i);
                writes.push(CacheWrite::new(value.clone()));
            }
        }
        if writes.is_empty() {
            return;
        }
        let write = self.cache.write_many(writes);
        let results = match job.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, write).await {
                Ok(r) => r,
                Err(_) => return,
            },
            None => write.await,
        };
        BuildStats::bump(&job.stats.cache_batch_writes);
        let Ok(results) = results else { return };
        let now = self.clock.now();
        for (i, result) in indices.into_iter().zip(results) {
            if result.outcome == WriteOutcome::IgnoredLowerAuthority {
                if let Some(own) = states[i].value.take() {
                    let stale = !self
                        .policies
                        .resolve(&keys[i])
                        .is_fresh(result.current.age_at(now));
                    let winner = result
                        .current
                        .as_cached(now, stale)
                        .with_note("superseded_source", own.source());
                    states[i].value = Some(winner);
                }
            }
        }
    }
}
