//! One source's attempt at one key (single, derived) or one chunk (batch),
//! with retries and circuit breaking.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use coalestra_core::key::KeyHashing;
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

/// The circuit guarding calls of `entry` for `key`; `None` when circuits are
/// disabled. A source-scoped circuit is the same for every key: it is reused.
fn circuit_of(entry: &SourceEntry, key: &ResourceKey) -> Option<CircuitIdentity> {
    let policy = &entry.resilience.circuit;
    if !policy.enabled() {
        return None;
    }
    match &entry.source_circuit {
        Some(identity) if policy.scope() == CircuitScope::Source => Some(identity.clone()),
        _ => Some(CircuitIdentity::for_key(
            entry.name.clone(),
            key,
            policy.scope(),
        )),
    }
}

impl Engine {
    /// Admits a call through the key's circuit.
    pub(crate) fn admit(
        &self,
        entry: &SourceEntry,
        key: &ResourceKey,
    ) -> Result<Option<CircuitPermit>, SourceError> {
        self.admit_as(entry, circuit_of(entry, key).as_ref(), key)
    }

    /// Admits a call of `key` through `identity` (`None`: circuits disabled).
    fn admit_as(
        &self,
        entry: &SourceEntry,
        identity: Option<&CircuitIdentity>,
        key: &ResourceKey,
    ) -> Result<Option<CircuitPermit>, SourceError> {
        let Some(identity) = identity else {
            return Ok(None);
        };
        match self
            .breakers
            .before_call(identity, &entry.resilience.circuit)
        {
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
                async move {
                    let call = self
                        .invoke(
                            entry,
                            job,
                            Some(key),
                            || source.fetch(key, &ctx),
                            || {
                                let (source, key, ctx) =
                                    (Arc::clone(source), key.clone(), ctx.clone());
                                move || source.fetch_blocking(&key, &ctx)
                            },
                        )
                        .await;
                    self.record_call(entry, job, &call);
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
    /// Each attempt comes with the position of its key in `keys`.
    pub(crate) async fn attempt_batch(
        &self,
        entry: &SourceEntry,
        source: &Arc<dyn BatchSource>,
        keys: Vec<ResourceKey>,
        job: &Job,
    ) -> Vec<(usize, KeyAttempt)> {
        let mut results = Vec::with_capacity(keys.len());
        let (groups, requested) = self.admit_batch(entry, &keys, &mut results);
        if requested.is_empty() {
            return results;
        }
        let requested: Vec<ResourceKey> = if requested.len() == keys.len()
            && requested.iter().enumerate().all(|(n, &i)| n == i)
        {
            keys
        } else {
            requested.iter().map(|&i| keys[i].clone()).collect()
        };
        let requested = Arc::new(requested);
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
                let requested = &requested;
                async move {
                    let call = self
                        .invoke(
                            entry,
                            job,
                            None,
                            || source.fetch_many(requested, &ctx),
                            || {
                                let (source, keys, ctx) =
                                    (Arc::clone(source), Arc::clone(requested), ctx.clone());
                                move || source.fetch_many_blocking(&keys, &ctx)
                            },
                        )
                        .await;
                    self.record_call(entry, job, &call);
                    let (output, elapsed) = call?;
                    let outputs = BatchOutputs::match_up(requested, output).map_err(|extra| {
                        SourceError::protocol(format!(
                            "batch source {} returned unrequested resource {extra}",
                            entry.name
                        ))
                    })?;
                    Ok((outputs, elapsed))
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
        // Positions in `requested` follow the groups, one after the other.
        let mut position = 0;
        match outcome.result {
            Err(error) => {
                self.note_final_error(job, &error);
                let skipped = error.is_skipped_outcome();
                for (permit, members) in groups {
                    for i in members {
                        let key = &requested[position];
                        position += 1;
                        let attempt =
                            self.classify(entry, key, Err(error.clone()), attempts, latency);
                        results.push((i, attempt));
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
            Ok((mut outputs, _)) => {
                for (permit, members) in groups {
                    let mut any_fresh = false;
                    for i in members {
                        let key = &requested[position];
                        let attempt = match outputs.take(position) {
                            Some(out) => {
                                let value = self.to_value(entry, key, out, job, Vec::new());
                                self.classify(entry, key, value, attempts, latency)
                            }
                            None => {
                                let error = SourceError::unavailable(format!(
                                    "batch source {} omitted resource {key}",
                                    entry.name
                                ));
                                self.classify(entry, key, Err(error), attempts, latency)
                            }
                        };
                        position += 1;
                        any_fresh |= matches!(attempt, KeyAttempt::Fresh(_));
                        results.push((i, attempt));
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

    /// Groups a chunk's keys by circuit identity, admitting each group once;
    /// keys of open circuits are answered in `results` at once. Returns the
    /// admitted groups (positions in `keys`) and every admitted position,
    /// group after group: the order of the request.
    #[allow(clippy::type_complexity)]
    fn admit_batch(
        &self,
        entry: &SourceEntry,
        keys: &[ResourceKey],
        results: &mut Vec<(usize, KeyAttempt)>,
    ) -> (Vec<(Option<CircuitPermit>, Vec<usize>)>, Vec<usize>) {
        let mut groups: Vec<(Option<CircuitPermit>, Vec<usize>)> = Vec::new();
        // Identities hash once; disabled circuits (`None`) form one group.
        let mut group_of: HashMap<Option<CircuitIdentity>, usize, KeyHashing> = HashMap::default();
        for (i, key) in keys.iter().enumerate() {
            let identity = circuit_of(entry, key);
            if let Some(&g) = group_of.get(&identity) {
                groups[g].1.push(i);
                continue;
            }
            match self.admit_as(entry, identity.as_ref(), key) {
                Ok(permit) => {
                    group_of.insert(identity, groups.len());
                    groups.push((permit, vec![i]));
                }
                Err(e) => results.push((i, KeyAttempt::failed(entry, e, 0))),
            }
        }
        let requested = groups.iter().flat_map(|(_, m)| m.iter().copied()).collect();
        (groups, requested)
    }
}

/// A batch call's outputs matched to the requested keys by position.
struct BatchOutputs(Vec<Option<SourceOutput>>);

impl BatchOutputs {
    /// Matches `output` to `requested`; a key nobody asked for is an error
    /// naming it. Outputs that mirror the request (same keys, same order,
    /// the usual shape) are matched without hashing.
    fn match_up(
        requested: &[ResourceKey],
        output: Vec<(ResourceKey, SourceOutput)>,
    ) -> Result<Self, ResourceKey> {
        let mirrors = output.len() == requested.len()
            && output.iter().zip(requested).all(|((k, _), r)| k == r);
        if mirrors {
            return Ok(Self(output.into_iter().map(|(_, o)| Some(o)).collect()));
        }
        let position: KeyMap<usize> = requested
            .iter()
            .enumerate()
            .map(|(n, k)| (k.clone(), n))
            .collect();
        let mut slots: Vec<Option<SourceOutput>> = Vec::new();
        slots.resize_with(requested.len(), || None);
        for (key, out) in output {
            match position.get(&key) {
                // A repeated key keeps its last output, as a map would.
                Some(&n) => slots[n] = Some(out),
                None => return Err(key),
            }
        }
        Ok(Self(slots))
    }

    fn take(&mut self, position: usize) -> Option<SourceOutput> {
        self.0.get_mut(position).and_then(Option::take)
    }
}
