//! A derived source's attempt: resolve the dependencies (through the cache,
//! single-flight and the job's own tree), then derive.

use std::sync::Arc;

use coalestra_core::{
    CycleError, DerivedSource, KeyMap, ResourceError, ResourceKey, Snapshot, SourceError,
    SourceFailure,
};
use coalestra_resilience::run_with_retry;

use crate::attempt::KeyAttempt;
use crate::catalog::SourceEntry;
use crate::engine::Engine;
use crate::invoke::panic_message;
use crate::job::Job;
use crate::stats::BuildStats;

impl Engine {
    /// One derived source at one key.
    pub(crate) async fn attempt_derived(
        self: &Arc<Self>,
        entry: &SourceEntry,
        source: &Arc<dyn DerivedSource>,
        key: &ResourceKey,
        job: &Arc<Job>,
        path: &[ResourceKey],
    ) -> KeyAttempt {
        let declared =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| source.dependencies(key)))
                .unwrap_or_else(|p| {
                    Err(SourceError::Panicked {
                        message: panic_message(p).into(),
                    })
                });
        let declared = match declared {
            Ok(d) => d,
            Err(e) => {
                // A broken declaration is the source's fault: charge its circuit.
                if let Ok(Some(permit)) = self.admit(entry, key) {
                    permit.failure();
                }
                return KeyAttempt::failed(entry, e, 1);
            }
        };
        let mut seen: KeyMap<()> = KeyMap::default();
        let deps: Vec<ResourceKey> = declared
            .into_iter()
            .filter(|k| seen.insert(k.clone(), ()).is_none())
            .collect();
        let mut child_path = path.to_vec();
        child_path.push(key.clone());
        if let Some(dep) = deps.iter().find(|d| child_path.contains(d)) {
            let start = child_path.iter().position(|k| k == dep).unwrap_or(0);
            let mut cycle: Vec<ResourceKey> = child_path[start..].to_vec();
            cycle.push(dep.clone());
            let cycle = CycleError { path: cycle.into() };
            let error = SourceError::Dependency {
                message: format!("DependencyCycleError: {cycle}").into(),
                cycle: Some(cycle),
            };
            return KeyAttempt::failed(entry, error, 0);
        }
        let resolved = match self.resolve(&deps, job, &child_path).await {
            Ok(r) => r,
            Err(e) => {
                return KeyAttempt::failed(
                    entry,
                    SourceError::unavailable(format!("cache error: {e}")),
                    0,
                )
            }
        };
        let mut parts = Snapshot::parts(job.ctx.snapshot_id.clone(), job.ctx.requested_at);
        let mut versions = Vec::with_capacity(deps.len());
        for outcome in resolved {
            match outcome {
                Ok(value) => {
                    versions.push((value.key().clone(), value.version()));
                    parts.push_value(value);
                }
                Err(error) => return KeyAttempt::failed(entry, dependency_failure(&error), 0),
            }
        }
        let dependencies = parts.finish();
        // Bounded like every attempt of the job, but only now: waiting for
        // dependencies never holds a dispatch slot.
        let _slot = job.gate.acquire().await;
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
                let dependencies = &dependencies;
                let versions = versions.clone();
                async move {
                    let call = self
                        .invoke(
                            entry,
                            job,
                            Some(key),
                            || source.derive(key, dependencies, &ctx),
                            || {
                                let (source, key, deps, ctx) = (
                                    Arc::clone(source),
                                    key.clone(),
                                    dependencies.clone(),
                                    ctx.clone(),
                                );
                                move || source.derive_blocking(&key, &deps, &ctx)
                            },
                        )
                        .await;
                    if self.record_call(entry, job, &call) {
                        BuildStats::bump(&job.stats.derived_calls);
                    }
                    let (output, elapsed) = call?;
                    self.to_value(entry, key, output, job, versions)
                        .map(|v| (v, elapsed))
                }
            },
        )
        .await;
        self.conclude(entry, key, job, outcome, permit)
    }
}

/// A dependency's failure as seen by the derived resource.
fn dependency_failure(error: &ResourceError) -> SourceError {
    let cycle = error.failures().iter().find_map(|f| match &f.error {
        SourceError::Dependency { cycle: Some(c), .. } => Some(c.clone()),
        _ => None,
    });
    let detail = error
        .failures()
        .iter()
        .map(SourceFailure::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    SourceError::Dependency {
        message: format!(
            "dependency {} failed: {}",
            error.key(),
            if detail.is_empty() {
                error.to_string()
            } else {
                detail
            }
        )
        .into(),
        cycle,
    }
}
