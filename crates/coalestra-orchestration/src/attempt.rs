//! One source's attempt at one key (single, derived) or one chunk (batch),
//! with retries and circuit breaking.

use std::sync::Arc;
use std::time::Duration;

use coalestra_core::value::ValueParts;
use coalestra_core::CircuitScope;
use coalestra_core::{
    BatchSource, Event, KeyMap, ResourceKey, SnapshotValue, Source, SourceError, SourceFailure,
    SourceOutput, Version,
};
use coalestra_resilience::{run_with_retry, CircuitIdentity, CircuitPermit, RetryOutcome};

use crate::catalog::SourceEntry;
use crate::engine::Engine;
use crate::job::Job;
use crate::stats::BuildStats;

/// What one source produced for one key.
pub(crate) enum KeyAttempt {
    /// A fresh, valid value.
    Fresh(SnapshotValue),
    /// A value older than the TTL: a failure, kept as a fallback candidate.
    Stale(SnapshotValue, SourceFailure),
    /// A failure.
    Failed(SourceFailure),
}

impl KeyAttempt {
    pub(crate) fn failed(entry: &SourceEntry, error: SourceError, attempts: u32) -> Self {
        Self::Failed(SourceFailure::new(entry.name.clone(), error, attempts))
    }
}

impl Engine {
    /// Admits a call through the key's circuit.
    pub(crate) fn admit(
        &self,
        entry: &SourceEntry,
        key: &ResourceKey,
    ) -> Result<Option<CircuitPermit>, SourceError> {
        let policy = &entry.resilience.circuit;
        if !policy.enabled() {
            return Ok(None);
        }
        // A source-scoped circuit is the same for every key: reuse it.
        let scoped;
        let identity = match &entry.source_circuit {
            Some(identity) if policy.scope() == CircuitScope::Source => identity,
            _ => {
                scoped = CircuitIdentity::for_key(entry.name.clone(), key, policy.scope());
                &scoped
            }
        };
        match self.breakers.before_call(identity, policy) {
            Ok(permit) => Ok(Some(permit)),
            Err(open) => {
                self.health
                    .circuit_rejections
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.emit.count(
                    "source_fetch_total",
                    &[("status", "circuit_open"), ("source", &entry.name)],
                );
                self.emit.event(|| {
                    Event::new("source_circuit_open")
                        .field("source", &*entry.name)
                        .field("resource", key.to_string())
                        .field("error", open.to_string())
                });
                Err(SourceError::CircuitOpen {
                    identity: identity.to_string().into(),
                    message: open.to_string().into(),
                })
            }
        }
    }

    /// Turns a source output into a value: observation-time check, authority
    /// rank, staleness against the key's TTL.
    pub(crate) fn to_value(
        &self,
        entry: &SourceEntry,
        key: &ResourceKey,
        output: SourceOutput,
        job: &Job,
        dependency_versions: Vec<(ResourceKey, Version)>,
    ) -> Result<SnapshotValue, SourceError> {
        let now = self.clock.now();
        let observed_at = output.observed_at.unwrap_or(now);
        let skew = match self.observation.check(observed_at, now) {
            Ok(skew) => skew,
            Err(error) => {
                BuildStats::bump(&job.stats.future_timestamp_rejections);
                self.emit.count(
                    "source_fetch_total",
                    &[("status", "invalid_timestamp"), ("source", &entry.name)],
                );
                self.emit.event(|| {
                    Event::new("source_payload_rejected")
                        .field("resource", key.to_string())
                        .field("source", &*entry.name)
                        .field("error", error.to_string())
                });
                return Err(error);
            }
        };
        let mut metadata = output.metadata;
        if let Some(skew) = skew {
            metadata = metadata.with("clock_skew_seconds", skew);
        }
        let mut parts =
            ValueParts::new(key.clone(), output.payload, entry.name.clone(), observed_at);
        parts.fetched_at = Some(now);
        parts.metadata = metadata;
        parts.authority_rank = self.authority.rank_for(key, &entry.name);
        parts.dependency_versions = dependency_versions;
        let value = SnapshotValue::from_parts(parts);
        let ttl = self.policies.resolve(key).ttl();
        let stale = output.stale || value.age() > ttl;
        Ok(value.with_stale(stale))
    }

    /// Classifies a converted value and records its outcome.
    pub(crate) fn classify(
        &self,
        entry: &SourceEntry,
        key: &ResourceKey,
        result: Result<SnapshotValue, SourceError>,
        attempts: u32,
        latency: Duration,
    ) -> KeyAttempt {
        match result {
            Ok(value) if !value.is_stale() => {
                let fetched_at = value.fetched_at();
                let value = value.with_call(fetched_at, latency, attempts);
                self.emit.count(
                    "source_fetch_total",
                    &[("status", "success"), ("source", &entry.name)],
                );
                self.emit.observe(
                    "source_fetch_latency_ms",
                    &[("source", &entry.name)],
                    latency.as_secs_f64() * 1000.0,
                );
                self.emit.event(|| {
                    Event::new("resource_resolved")
                        .field("resource", key.to_string())
                        .field("source", &*entry.name)
                        .field("latency_ms", latency.as_secs_f64() * 1000.0)
                        .field("attempts", i64::from(attempts))
                        .field("source_kind", entry.source.kind())
                        .field("authority_rank", value.authority_rank())
                });
                KeyAttempt::Fresh(value)
            }
            Ok(value) => {
                let fetched_at = value.fetched_at();
                let value = value.with_call(fetched_at, latency, attempts);
                let ttl = self.policies.resolve(key).ttl();
                let error = SourceError::StaleData {
                    age: value.age(),
                    ttl,
                };
                self.emit.count(
                    "source_fetch_total",
                    &[("status", "stale"), ("source", &entry.name)],
                );
                KeyAttempt::Stale(
                    value,
                    SourceFailure::new(entry.name.clone(), error, attempts),
                )
            }
            Err(error) => {
                if !error.is_circuit_open()
                    && !matches!(error, SourceError::InvalidTimestamp { .. })
                {
                    self.emit.count(
                        "source_fetch_total",
                        &[("status", "failure"), ("source", &entry.name)],
                    );
                }
                self.emit.event(|| {
                    Event::new("source_failed")
                        .field("resource", key.to_string())
                        .field("source", &*entry.name)
                        .field("error_type", error.error_type())
                        .field("error", error.to_string())
                });
                KeyAttempt::failed(entry, error, attempts)
            }
        }
    }

    /// Records a finished attempt chain for one key and settles its circuit.
    pub(crate) fn conclude(
        &self,
        entry: &SourceEntry,
        key: &ResourceKey,
        job: &Job,
        outcome: RetryOutcome<(SnapshotValue, Duration), SourceError>,
        permit: Option<CircuitPermit>,
    ) -> KeyAttempt {
        self.note_retries(job, outcome.attempts);
        let latency = outcome.result.as_ref().map(|(_, l)| *l).unwrap_or_default();
        let result = outcome.result.map(|(v, _)| v);
        if let Err(error) = &result {
            self.note_final_error(job, error);
        }
        let attempt = self.classify(entry, key, result, outcome.attempts, latency);
        Self::settle(permit, &attempt);
        attempt
    }

    /// Settles a circuit permit from an attempt's outcome.
    pub(crate) fn settle(permit: Option<CircuitPermit>, attempt: &KeyAttempt) {
        let Some(permit) = permit else { return };
        match attempt {
            KeyAttempt::Fresh(_) => permit.success(),
            KeyAttempt::Stale(..) => permit.failure(),
            KeyAttempt::Failed(f) if f.error.is_skipped_outcome() => permit.skipped(),
            KeyAttempt::Failed(_) => permit.failure(),
        }
    }

    /// One single-key source at one key.
    pub(crate) async fn attempt_single(
        &self,
        entry: &SourceEntry,
        source: &Arc<dyn Source>,
        key: &ResourceKey,
        job: &Job,
    ) -> KeyAttempt {
        let permit = match self.admit(entry, key) {
            Ok(p) => p,
            Err(e) => return KeyAttempt::failed(entry, e, 0),
        };
        let outcome = run_with_retry(
            &entry.resilience.retry,
            job.deadline,
            SourceError::is_transient,
            |attempt| {
                let ctx = job.ctx.clone().with_attempt(attempt);
                let blocking_source = Arc::clone(source);
                let blocking_key = key.clone();
                let blocking_ctx = ctx.clone();
                async move {
                    let call = self
                        .invoke(
                            entry,
                            job,
                            Some(key),
                            || async { source.fetch(key, &ctx).await },
                            move || blocking_source.fetch_blocking(&blocking_key, &blocking_ctx),
                        )
                        .await;
                    if !matches!(&call, Err(e) if e.is_queue_timeout() || e.is_deadline_exceeded())
                    {
                        let elapsed = call.as_ref().map(|(_, l)| *l).unwrap_or_default();
                        job.stats.source_call(&entry.name, elapsed);
                    }
                    let (output, elapsed) = call?;
                    self.to_value(entry, key, output, job, Vec::new())
                        .map(|v| (v, elapsed))
                }
            },
        )
        .await;
        self.conclude(entry, key, job, outcome, permit)
    }

    /// One batch source at one chunk of keys (one call, one capacity slot).
    pub(crate) async fn attempt_batch(
        &self,
        entry: &SourceEntry,
        source: &Arc<dyn BatchSource>,
        keys: Vec<ResourceKey>,
        job: &Job,
    ) -> Vec<(ResourceKey, KeyAttempt)> {
        let mut results = Vec::with_capacity(keys.len());
        // Group by circuit identity; open groups are left out of the call.
        let mut groups: Vec<(Option<CircuitPermit>, Vec<ResourceKey>)> = Vec::new();
        let mut group_of: std::collections::HashMap<String, usize> =
            std::collections::HashMap::new();
        let policy = &entry.resilience.circuit;
        for key in keys {
            let identity = if policy.enabled() {
                CircuitIdentity::for_key(entry.name.clone(), &key, policy.scope()).to_string()
            } else {
                String::new()
            };
            if let Some(&g) = group_of.get(&identity) {
                groups[g].1.push(key);
                continue;
            }
            match self.admit(entry, &key) {
                Ok(permit) => {
                    group_of.insert(identity, groups.len());
                    groups.push((permit, vec![key]));
                }
                Err(e) => results.push((key, KeyAttempt::failed(entry, e, 0))),
            }
        }
        let requested: Vec<ResourceKey> = groups
            .iter()
            .flat_map(|(_, ks)| ks.iter().cloned())
            .collect();
        if requested.is_empty() {
            return results;
        }
        BuildStats::bump(&job.stats.batch_calls);
        BuildStats::bump(&job.stats.batch_chunks);
        self.emit.observe(
            "source_batch_size",
            &[("source", &entry.name)],
            requested.len() as f64,
        );
        let outcome = run_with_retry(
            &entry.resilience.retry,
            job.deadline,
            SourceError::is_transient,
            |attempt| {
                let ctx = job.ctx.clone().with_attempt(attempt);
                let blocking_source = Arc::clone(source);
                let blocking_keys = requested.clone();
                let blocking_ctx = ctx.clone();
                let requested = &requested;
                async move {
                    let call = self
                        .invoke(
                            entry,
                            job,
                            None,
                            || async { source.fetch_many(requested, &ctx).await },
                            move || {
                                blocking_source.fetch_many_blocking(&blocking_keys, &blocking_ctx)
                            },
                        )
                        .await;
                    if !matches!(&call, Err(e) if e.is_queue_timeout() || e.is_deadline_exceeded())
                    {
                        let elapsed = call.as_ref().map(|(_, l)| *l).unwrap_or_default();
                        job.stats.source_call(&entry.name, elapsed);
                    }
                    let (output, elapsed) = call?;
                    let wanted: KeyMap<()> = requested.iter().map(|k| (k.clone(), ())).collect();
                    if let Some((extra, _)) = output.iter().find(|(k, _)| !wanted.contains_key(k)) {
                        return Err(SourceError::protocol(format!(
                            "batch source {} returned unrequested resource {extra}",
                            entry.name
                        )));
                    }
                    Ok((output, elapsed))
                }
            },
        )
        .await;
        self.note_retries(job, outcome.attempts);
        let attempts = outcome.attempts;
        let latency = outcome.result.as_ref().map(|(_, l)| *l).unwrap_or_default();
        let status = match &outcome.result {
            Ok(_) => "success",
            Err(e) if e.is_queue_timeout() => "queue_timeout",
            Err(e) if e.is_deadline_exceeded() => "deadline_exceeded",
            Err(_) => "failure",
        };
        self.emit.count(
            "source_batch_call_total",
            &[("status", status), ("source", &entry.name)],
        );
        match outcome.result {
            Err(error) => {
                self.note_final_error(job, &error);
                for (permit, keys) in groups {
                    let skipped = error.is_skipped_outcome();
                    for key in keys {
                        let attempt =
                            self.classify(entry, &key, Err(error.clone()), attempts, latency);
                        results.push((key, attempt));
                    }
                    if let Some(p) = permit {
                        if skipped {
                            p.skipped()
                        } else {
                            p.failure()
                        }
                    }
                }
            }
            Ok((output, _)) => {
                let mut by_key: KeyMap<SourceOutput> = output.into_iter().collect();
                for (permit, keys) in groups {
                    let mut any_fresh = false;
                    for key in keys {
                        let attempt = match by_key.remove(&key) {
                            Some(out) => {
                                let value = self.to_value(entry, &key, out, job, Vec::new());
                                self.classify(entry, &key, value, attempts, latency)
                            }
                            None => {
                                let error = SourceError::unavailable(format!(
                                    "batch source {} omitted resource {key}",
                                    entry.name
                                ));
                                self.classify(entry, &key, Err(error), attempts, latency)
                            }
                        };
                        any_fresh |= matches!(attempt, KeyAttempt::Fresh(_));
                        results.push((key, attempt));
                    }
                    if let Some(p) = permit {
                        if any_fresh {
                            p.success()
                        } else {
                            p.failure()
                        }
                    }
                }
            }
        }
        results
    }
}
