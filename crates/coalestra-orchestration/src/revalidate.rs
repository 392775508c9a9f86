//! Transactional revalidation of a session's pinned values.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use coalestra_core::{
    AcceptanceViolation, BuildError, BuildErrorKind, CoalestraError, ConsistencyViolation, Event,
    KeyMap, ResourceError, ResourceKey, Snapshot, SnapshotAcceptancePolicy,
    SnapshotConsistencyPolicy, SnapshotRequest, SnapshotValue,
};
use tokio::time::Instant;

use crate::session::SnapshotSession;

/// Options of a revalidation.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RevalidateOptions {
    /// Bypass the cache and ask the source chain (default: read the newest
    /// cached or published revision first).
    pub force_refresh: bool,
    /// Fail when any affected key fails (default `true`); otherwise return
    /// the kept values plus this call's errors, which are not stored.
    pub strict: bool,
    /// A skew limit over the requested keys; a violation keeps the previous
    /// state (even when not strict).
    pub consistency: Option<SnapshotConsistencyPolicy>,
    /// Acceptance rules over the requested keys; a violation keeps the
    /// previous state (even when not strict).
    pub acceptance: Option<SnapshotAcceptancePolicy>,
}

impl RevalidateOptions {
    /// Default options: strict, cache first.
    pub fn new() -> Self {
        Self {
            force_refresh: false,
            strict: true,
            consistency: None,
            acceptance: None,
        }
    }
    /// Sets a consistency policy.
    #[must_use]
    pub fn consistency(mut self, policy: SnapshotConsistencyPolicy) -> Self {
        self.consistency = Some(policy);
        self
    }
    /// Sets an acceptance policy.
    #[must_use]
    pub fn acceptance(mut self, policy: SnapshotAcceptancePolicy) -> Self {
        self.acceptance = Some(policy);
        self
    }
    /// Bypasses the cache.
    #[must_use]
    pub fn force_refresh(mut self, force: bool) -> Self {
        self.force_refresh = force;
        self
    }
    /// Sets strictness.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
}

/// Every pinned key depending (transitively) on one of `roots`.
fn dependents(pinned: &KeyMap<SnapshotValue>, roots: &[ResourceKey]) -> Vec<ResourceKey> {
    let mut affected: Vec<ResourceKey> = roots.to_vec();
    loop {
        let before = affected.len();
        for (key, value) in pinned {
            if !affected.contains(key)
                && value
                    .dependency_versions()
                    .iter()
                    .any(|(dep, _)| affected.contains(dep))
            {
                affected.push(key.clone());
            }
        }
        if affected.len() == before {
            return affected;
        }
    }
}

impl SnapshotSession {
    /// Re-resolves pinned `keys` and every pinned derived value depending on
    /// them, committing all of them together or none.
    pub async fn revalidate<I>(
        &self,
        keys: I,
        options: RevalidateOptions,
    ) -> Result<Snapshot, CoalestraError>
    where
        I: IntoIterator<Item = ResourceKey>,
    {
        self.ensure_open()?;
        let keys: Vec<ResourceKey> = keys.into_iter().collect();
        if keys.is_empty() {
            return Err(crate::builder::no_keys());
        }
        let started = Instant::now();
        let mut state = self.state.lock().await;
        if let Some(missing) = keys.iter().find(|k| !state.pinned.contains_key(*k)) {
            return Err(CoalestraError::InvalidRequest(
                format!("cannot revalidate {missing}: it is not resolved in this session").into(),
            ));
        }
        let health = &self.engine.health;
        health.revalidations.fetch_add(1, Ordering::Relaxed);
        let affected = dependents(&state.pinned, &keys);
        let mut staged = (*state.pinned).clone();
        for key in &affected {
            staged.remove(key);
        }
        // The staged copy is shared with the job, not copied again.
        let mut staged = Arc::new(staged);
        // Re-resolve what callers see: requested keys and visible dependents.
        let wanted: Vec<ResourceKey> = affected
            .iter()
            .filter(|k| keys.contains(k) || state.visible_index.contains_key(*k))
            .cloned()
            .collect();
        let mut job = self.job(Arc::clone(&staged));
        job.bypass_cache = options.force_refresh;
        job.bypass_reason = options.force_refresh.then_some("session_revalidation");
        let job = Arc::new(job);
        let mut outcomes = self.engine.resolve(&wanted, &job, &[]).await?;
        let mut learned = job.take_learned();
        let errors: Vec<ResourceError> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().err().cloned())
            .collect();
        let mut contract_error = None;
        if errors.is_empty() && (options.consistency.is_some() || options.acceptance.is_some()) {
            let mut request = SnapshotRequest::required(keys.iter().cloned())?;
            if let Some(policy) = options.consistency {
                request = request.with_consistency(policy);
            }
            if let Some(policy) = options.acceptance.clone() {
                request = request.with_acceptance(policy)?;
            }
            let (mut consistency, mut acceptance) = self
                .engine
                .evaluate_contracts(&request, &self.candidate(&outcomes));
            if let (Some(violation), true) = (&consistency, options.force_refresh) {
                let retry = Retry {
                    wanted: &wanted,
                    pinned: &state.pinned,
                    staged: &staged,
                    request: &request,
                };
                if let Some(fixed) = self
                    .consistency_fallback(retry, violation.clone(), &mut outcomes, &mut learned)
                    .await?
                {
                    consistency = None;
                    acceptance = fixed;
                }
            }
            let previous = self.assemble(&state);
            if let Some(v) = consistency {
                contract_error = Some(BuildError::consistency(v, Some(previous)));
            } else if !acceptance.is_empty() {
                contract_error = Some(BuildError::acceptance(acceptance, Some(previous)));
            }
        }
        let committed = errors.is_empty() && contract_error.is_none();
        let stats = job.stats.diagnostics();
        drop(job);
        if committed {
            let pinned = Arc::make_mut(&mut staged);
            for (key, value) in learned {
                pinned.insert(key, value);
            }
            state.pinned = staged;
            for key in &wanted {
                state.errors.remove(key);
            }
        } else {
            health.revalidation_failures.fetch_add(1, Ordering::Relaxed);
        }
        crate::session::accumulate(&mut state.diagnostics, &stats, started.elapsed());
        let snapshot = self.assemble(&state);
        let status = if committed { "success" } else { "error" };
        self.engine
            .emit
            .count("snapshot_session_revalidate_total", &[("status", status)]);
        self.engine.emit.event(|| {
            Event::new("snapshot_session_revalidated")
                .field("snapshot_id", &*self.id)
                .field("requested", keys.len() as i64)
                .field("affected", affected.len() as i64)
                .field("refreshed", (wanted.len() - errors.len()) as i64)
                .field("failed", errors.len() as i64)
                .field("committed", committed)
                .field("retained_previous", !committed)
                .field("strict", options.strict)
                .field("force_refresh", options.force_refresh)
                .field(
                    "consistency_failed",
                    contract_error.as_ref().is_some_and(|e| e.is_consistency()),
                )
                .field(
                    "acceptance_failed",
                    contract_error.as_ref().is_some_and(|e| e.is_acceptance()),
                )
        });
        if committed {
            return Ok(snapshot);
        }
        if let Some(error) = contract_error {
            return Err(error.into());
        }
        if options.strict {
            return Err(BuildError::new(BuildErrorKind::Resolution, errors, Some(snapshot)).into());
        }
        let mut parts = snapshot.to_parts();
        for error in errors {
            parts.push_error(error);
        }
        Ok(parts.finish())
    }
}

/// What a consistency fallback works on.
struct Retry<'a> {
    wanted: &'a [ResourceKey],
    pinned: &'a KeyMap<SnapshotValue>,
    staged: &'a KeyMap<SnapshotValue>,
    request: &'a SnapshotRequest,
}

impl SnapshotSession {
    fn candidate(&self, outcomes: &[Result<SnapshotValue, ResourceError>]) -> Snapshot {
        let mut candidate = Snapshot::parts(self.id.clone(), self.created_at);
        for value in outcomes.iter().flatten() {
            candidate.push_value(value.clone());
        }
        candidate.finish()
    }

    /// Re-acquires the oldest value from another source, repeatedly, until
    /// the skew fits or no new (key, source) pair is left. Fallback values
    /// are never written to the shared cache. Returns the acceptance
    /// violations of the fixed candidate, or `None` when exhausted.
    async fn consistency_fallback(
        &self,
        retry: Retry<'_>,
        mut violation: ConsistencyViolation,
        outcomes: &mut [Result<SnapshotValue, ResourceError>],
        learned: &mut KeyMap<SnapshotValue>,
    ) -> Result<Option<Vec<AcceptanceViolation>>, CoalestraError> {
        let emit = &self.engine.emit;
        let mut excluded: KeyMap<Vec<Arc<str>>> = KeyMap::default();
        loop {
            let oldest = violation.oldest().clone();
            let source: Option<Arc<str>> = retry
                .wanted
                .iter()
                .position(|k| *k == oldest)
                .and_then(|i| outcomes[i].as_ref().ok())
                .map(|v| v.source().into());
            let Some(source) = source else {
                return Ok(None);
            };
            let tried = excluded.entry(oldest.clone()).or_default();
            if tried.contains(&source) {
                return Ok(None);
            }
            tried.push(Arc::clone(&source));
            emit.count(
                "snapshot_consistency_fallback_total",
                &[("status", "attempt")],
            );
            emit.count(
                "source_fetch_total",
                &[("status", "consistency_excluded"), ("source", &source)],
            );
            emit.event(|| {
                Event::new("source_excluded")
                    .field("resource", oldest.to_string())
                    .field("source", &*source)
                    .field("reason", "consistency_fallback")
            });
            emit.event(|| {
                Event::new("snapshot_consistency_fallback_started")
                    .field("snapshot_id", &*self.id)
                    .field("resource", oldest.to_string())
                    .field("excluded_source", &*source)
                    .field(
                        "observation_skew_ms",
                        violation.observation_skew().as_secs_f64() * 1000.0,
                    )
                    .field(
                        "max_observation_skew_ms",
                        violation.max_observation_skew().as_secs_f64() * 1000.0,
                    )
            });
            let again: Vec<ResourceKey> = dependents(retry.pinned, std::slice::from_ref(&oldest))
                .into_iter()
                .filter(|k| retry.wanted.contains(k))
                .collect();
            let mut pinned = retry.staged.clone();
            for (key, value) in learned.iter() {
                if !again.contains(key) {
                    pinned.insert(key.clone(), value.clone());
                }
            }
            let mut job = self.job(Arc::new(pinned));
            job.bypass_cache = true;
            job.bypass_reason = Some("session_revalidation");
            job.write_cache = false;
            job.excluded = excluded.clone();
            let job = Arc::new(job);
            let results = self.engine.resolve(&again, &job, &[]).await?;
            let failed: Vec<String> = results
                .iter()
                .filter_map(|r| r.as_ref().err().map(|e| e.key().to_string()))
                .collect();
            if !failed.is_empty() {
                emit.count(
                    "snapshot_consistency_fallback_total",
                    &[("status", "exhausted")],
                );
                emit.event(|| {
                    Event::new("snapshot_consistency_fallback_exhausted")
                        .field("snapshot_id", &*self.id)
                        .field("resource", oldest.to_string())
                        .field("excluded_source", &*source)
                        .field("failed_resources", failed.join(","))
                });
                return Ok(None);
            }
            for (key, result) in again.iter().zip(results) {
                if let Some(i) = retry.wanted.iter().position(|k| k == key) {
                    outcomes[i] = result;
                }
            }
            learned.extend(job.take_learned());
            let (consistency, acceptance) = self
                .engine
                .evaluate_contracts(retry.request, &self.candidate(outcomes));
            match consistency {
                None => {
                    emit.count(
                        "snapshot_consistency_fallback_total",
                        &[("status", "success")],
                    );
                    let replacement = retry
                        .wanted
                        .iter()
                        .position(|k| *k == oldest)
                        .and_then(|i| outcomes[i].as_ref().ok().cloned());
                    emit.event(|| {
                        let (src, at) = replacement
                            .map(|v| (v.source().to_owned(), v.observed_at().as_secs()))
                            .unwrap_or_default();
                        Event::new("snapshot_consistency_fallback_succeeded")
                            .field("snapshot_id", &*self.id)
                            .field("resource", oldest.to_string())
                            .field("excluded_source", &*source)
                            .field("replacement_source", src)
                            .field("replacement_observed_at", at)
                    });
                    return Ok(Some(acceptance));
                }
                Some(next) => violation = next,
            }
        }
    }
}
