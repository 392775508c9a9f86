//! Request contracts applied after resolution: required errors, then
//! temporal consistency, then acceptance (in that precedence).

use coalestra_core::{
    AcceptanceViolation, BuildError, BuildErrorKind, CoalestraError, ConsistencyViolation, Event,
    ResourceError, Snapshot, SnapshotRequest,
};

use crate::engine::Engine;

/// A resolved request before its contracts decide the outcome.
pub(crate) struct Evaluated {
    pub(crate) snapshot: Snapshot,
    pub(crate) required_errors: Vec<ResourceError>,
    pub(crate) consistency: Option<ConsistencyViolation>,
    pub(crate) acceptance: Vec<AcceptanceViolation>,
    /// The deadline had passed: no partial snapshot is delivered on failure.
    pub(crate) expired: bool,
}

impl Evaluated {
    /// Whether the request fails under `strict`.
    pub(crate) fn fails(&self, strict: bool) -> bool {
        (strict && !self.required_errors.is_empty())
            || self.consistency.is_some()
            || !self.acceptance.is_empty()
    }

    /// The outcome: required errors (when strict) first, then consistency,
    /// then acceptance.
    pub(crate) fn into_result(self, strict: bool) -> Result<Snapshot, CoalestraError> {
        if strict && !self.required_errors.is_empty() {
            let partial = (!self.expired).then_some(self.snapshot);
            return Err(
                BuildError::new(BuildErrorKind::Resolution, self.required_errors, partial).into(),
            );
        }
        if let Some(violation) = self.consistency {
            return Err(BuildError::consistency(violation, Some(self.snapshot)).into());
        }
        if !self.acceptance.is_empty() {
            return Err(BuildError::acceptance(self.acceptance, Some(self.snapshot)).into());
        }
        Ok(self.snapshot)
    }
}

impl Engine {
    /// Evaluates a request's consistency and acceptance policies, recording
    /// their metrics and events.
    pub(crate) fn evaluate_contracts(
        &self,
        request: &SnapshotRequest,
        snapshot: &Snapshot,
    ) -> (Option<ConsistencyViolation>, Vec<AcceptanceViolation>) {
        let required = request.required_keys();
        let optional = request.optional_keys();
        let consistency = request
            .consistency()
            .and_then(|policy| policy.evaluate(snapshot, required, optional));
        if let Some(v) = &consistency {
            self.emit.count(
                "snapshot_consistency_total",
                &[("status", "error"), ("rule", "observation_skew")],
            );
            self.emit.event(|| {
                Event::new("snapshot_consistency_failed")
                    .field("snapshot_id", snapshot.id())
                    .field("resources", v.keys().len() as i64)
                    .field("oldest_resource", v.oldest().to_string())
                    .field("newest_resource", v.newest().to_string())
                    .field(
                        "observation_skew_ms",
                        v.observation_skew().as_secs_f64() * 1000.0,
                    )
                    .field(
                        "max_observation_skew_ms",
                        v.max_observation_skew().as_secs_f64() * 1000.0,
                    )
            });
        }
        let acceptance = match request.acceptance() {
            Some(policy) => {
                let now = self.clock.now();
                let ttl_of = |k: &coalestra_core::ResourceKey| self.policies.resolve(k).ttl();
                let violations = policy.evaluate(snapshot, required, optional, now, &ttl_of);
                let status = if violations.is_empty() {
                    "success"
                } else {
                    "error"
                };
                self.emit
                    .count("snapshot_acceptance_total", &[("status", status)]);
                if !violations.is_empty() {
                    let mut reasons: Vec<&str> =
                        violations.iter().map(|v| v.reason().as_str()).collect();
                    reasons.sort_unstable();
                    reasons.dedup();
                    for reason in &reasons {
                        self.emit
                            .count("snapshot_acceptance_violation_total", &[("reason", reason)]);
                    }
                    self.emit.event(|| {
                        Event::new("snapshot_acceptance_failed")
                            .field("snapshot_id", snapshot.id())
                            .field("violations", violations.len() as i64)
                            .field("reasons", reasons.join(","))
                    });
                }
                violations
            }
            None => Vec::new(),
        };
        (consistency, acceptance)
    }
}
