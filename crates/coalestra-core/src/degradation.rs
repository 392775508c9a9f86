//! Graceful degradation: [`RequestDegradationPolicy`] classifies the outcome
//! of a request into a [`SnapshotResult`] that is accepted, degraded or
//! rejected, and says which actions the caller may take on it.
//!
//! Classification is pure: it looks at a finished (possibly partial)
//! snapshot, the request, the policy verdicts and the error the build raised,
//! and never fails.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::acceptance::AcceptanceViolation;
use crate::consistency::ConsistencyViolation;
use crate::error::{BuildError, BuildErrorKind, CoalestraError, ConfigError, ResourceError};
use crate::key::ResourceKey;
use crate::metadata::Metadata;
use crate::request::SnapshotRequest;
use crate::snapshot::Snapshot;

mod policy;

pub use policy::{RequestDegradationPolicy, RequestDegradationPolicyBuilder};

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ResultState {
    /// Everything resolved and every policy was met.
    Accepted,
    /// Something went wrong, but the snapshot is usable for some actions.
    Degraded,
    /// The snapshot must not be used.
    Rejected,
}

impl ResultState {
    /// The stable name: `accepted`, `degraded` or `rejected`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Degraded => "degraded",
            Self::Rejected => "rejected",
        }
    }
}

impl fmt::Display for ResultState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ResultState {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "accepted" => Ok(Self::Accepted),
            "degraded" => Ok(Self::Degraded),
            "rejected" => Ok(Self::Rejected),
            other => Err(ConfigError::invalid(
                "result state",
                format!("unknown state {other:?}"),
            )),
        }
    }
}

/// The classified outcome of one request: the (possibly partial) snapshot,
/// what went wrong, the verdict and the actions it allows.
#[derive(Debug, Clone)]
pub struct SnapshotResult {
    state: ResultState,
    snapshot: Snapshot,
    required_errors: Vec<ResourceError>,
    optional_errors: Vec<ResourceError>,
    acceptance_violations: Vec<AcceptanceViolation>,
    consistency_violation: Option<ConsistencyViolation>,
    allowed_actions: Vec<Arc<str>>,
    reason: Arc<str>,
    error: Option<CoalestraError>,
    metadata: Metadata,
}

impl SnapshotResult {
    /// Classifies a request's outcome under `policy`.
    ///
    /// Required and optional errors are the request keys' errors in the
    /// snapshot (or, failing that, in a resolution build `error`); violations
    /// missing from the arguments are taken from a consistency or acceptance
    /// build `error`. The reason joins, with `", "`, the problems present in
    /// the order `required_errors`, `optional_errors`,
    /// `consistency_violation`, `acceptance_violation`, and is `accepted`
    /// when there is none. The result is rejected when the policy is
    /// fail-closed and there is a problem, when fewer request resources or
    /// required resources resolved than the policy's minimums (reason
    /// `insufficient_resolved_resources` if nothing else went wrong), or when
    /// a problem's `reject_on_*` flag is set; otherwise it is degraded when
    /// there is a problem and accepted when there is none. An error other
    /// than a build error always rejects, with its type name as reason. The
    /// error is kept only on a rejected result.
    pub fn classify(
        policy: &RequestDegradationPolicy,
        snapshot: Snapshot,
        request: &SnapshotRequest,
        consistency: Option<ConsistencyViolation>,
        acceptance: Vec<AcceptanceViolation>,
        error: Option<CoalestraError>,
    ) -> SnapshotResult {
        let build = error.as_ref().and_then(CoalestraError::as_build);
        let resolution = build.filter(|b| b.kind() == BuildErrorKind::Resolution);
        let errors_of = |keys: &[ResourceKey]| -> Vec<ResourceError> {
            keys.iter()
                .filter_map(|key| {
                    snapshot
                        .error(key)
                        .or_else(|| resolution.and_then(|b| b.error(key)))
                        .cloned()
                })
                .collect()
        };
        let required_errors = errors_of(request.required_keys());
        let optional_errors = errors_of(request.optional_keys());
        let consistency =
            consistency.or_else(|| build.and_then(|b| b.consistency_violation().cloned()));
        let acceptance = if acceptance.is_empty() {
            build.map_or_else(Vec::new, |b| b.acceptance_violations().to_vec())
        } else {
            acceptance
        };

        let (state, reason): (ResultState, Arc<str>) = match &error {
            Some(other) if build.is_none() => (ResultState::Rejected, error_type(other).into()),
            _ => {
                let problems = [
                    (
                        !required_errors.is_empty(),
                        policy.reject_on_required_error(),
                        "required_errors",
                    ),
                    (
                        !optional_errors.is_empty(),
                        policy.reject_on_optional_error(),
                        "optional_errors",
                    ),
                    (
                        consistency.is_some(),
                        policy.reject_on_consistency_violation(),
                        "consistency_violation",
                    ),
                    (
                        !acceptance.is_empty(),
                        policy.reject_on_acceptance_violation(),
                        "acceptance_violation",
                    ),
                ];
                let present: Vec<&str> = problems
                    .iter()
                    .filter(|(present, _, _)| *present)
                    .map(|(_, _, name)| *name)
                    .collect();
                let resolved = request.keys().filter(|k| snapshot.contains(k)).count();
                let resolved_required = request
                    .required_keys()
                    .iter()
                    .filter(|k| snapshot.contains(k))
                    .count();
                let too_few = resolved < policy.minimum_resolved_resources()
                    || resolved_required < policy.minimum_resolved_required_resources();
                let rejected = (policy.is_fail_closed() && !present.is_empty())
                    || too_few
                    || problems
                        .iter()
                        .any(|(present, reject, _)| *present && *reject);
                let state = if rejected {
                    ResultState::Rejected
                } else if present.is_empty() {
                    ResultState::Accepted
                } else {
                    ResultState::Degraded
                };
                let reason = if !present.is_empty() {
                    present.join(", ")
                } else if rejected {
                    "insufficient_resolved_resources".to_owned()
                } else {
                    "accepted".to_owned()
                };
                (state, reason.into())
            }
        };
        SnapshotResult {
            state,
            snapshot,
            required_errors,
            optional_errors,
            acceptance_violations: acceptance,
            consistency_violation: consistency,
            allowed_actions: policy.actions_for(state).to_vec(),
            reason,
            error: error.filter(|_| state == ResultState::Rejected),
            metadata: policy.metadata().clone(),
        }
    }

    /// The verdict.
    pub fn state(&self) -> ResultState {
        self.state
    }
    /// Whether the result is accepted.
    pub fn is_accepted(&self) -> bool {
        self.state == ResultState::Accepted
    }
    /// Whether the result is degraded.
    pub fn is_degraded(&self) -> bool {
        self.state == ResultState::Degraded
    }
    /// Whether the result is rejected.
    pub fn is_rejected(&self) -> bool {
        self.state == ResultState::Rejected
    }
    /// The (possibly partial, possibly empty) snapshot.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }
    /// Takes the snapshot out, whatever the verdict.
    pub fn into_snapshot(self) -> Snapshot {
        self.snapshot
    }
    /// Errors of required resources, in request order.
    pub fn required_errors(&self) -> &[ResourceError] {
        &self.required_errors
    }
    /// Errors of optional resources, in request order.
    pub fn optional_errors(&self) -> &[ResourceError] {
        &self.optional_errors
    }
    /// Acceptance violations, if the request had an acceptance policy.
    pub fn acceptance_violations(&self) -> &[AcceptanceViolation] {
        &self.acceptance_violations
    }
    /// The consistency violation, if any.
    pub fn consistency_violation(&self) -> Option<&ConsistencyViolation> {
        self.consistency_violation.as_ref()
    }
    /// The actions the verdict allows.
    pub fn allowed_actions(&self) -> &[Arc<str>] {
        &self.allowed_actions
    }
    /// Whether the verdict allows `action`.
    pub fn allows(&self, action: &str) -> bool {
        self.allowed_actions.iter().any(|a| &**a == action)
    }
    /// Why the verdict was reached (`accepted` when nothing went wrong).
    pub fn reason(&self) -> &str {
        &self.reason
    }
    /// The error that rejected the result, if one was raised.
    pub fn error(&self) -> Option<&CoalestraError> {
        self.error.as_ref()
    }
    /// The policy's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The snapshot of an accepted result; otherwise the stored error, or an
    /// error describing what went wrong.
    pub fn require_accepted(self) -> Result<Snapshot, CoalestraError> {
        if self.is_accepted() {
            Ok(self.snapshot)
        } else {
            Err(self.failure())
        }
    }

    /// Fails with the stored error (or one describing what went wrong) when
    /// the result is rejected.
    pub fn raise_for_rejected(&self) -> Result<(), CoalestraError> {
        if self.is_rejected() {
            Err(self.failure())
        } else {
            Ok(())
        }
    }

    /// The stored error, else a consistency error, else an acceptance error,
    /// else a resolution error with the request's errors (or the snapshot's).
    fn failure(&self) -> CoalestraError {
        if let Some(error) = &self.error {
            return error.clone();
        }
        let snapshot = Some(self.snapshot.clone());
        let error = if let Some(violation) = &self.consistency_violation {
            BuildError::consistency(violation.clone(), snapshot)
        } else if !self.acceptance_violations.is_empty() {
            BuildError::acceptance(self.acceptance_violations.clone(), snapshot)
        } else {
            let mut errors: Vec<ResourceError> = self
                .required_errors
                .iter()
                .chain(&self.optional_errors)
                .cloned()
                .collect();
            if errors.is_empty() {
                errors = self.snapshot.errors().to_vec();
            }
            BuildError::new(BuildErrorKind::Resolution, errors, snapshot)
        };
        error.into()
    }

    /// A JSON summary: `state`, `snapshot_id`, `resources` (resolved count),
    /// `errors` (error count), `allowed_actions`, `reason`, `required_errors`
    /// and `optional_errors` (rendered key → error type), `acceptance_violations`,
    /// `consistency_violation` (`null` when none) and `metadata`.
    pub fn to_json(&self) -> serde_json::Value {
        let by_key = |errors: &[ResourceError]| -> serde_json::Map<String, serde_json::Value> {
            errors
                .iter()
                .map(|e| (e.key().to_string(), e.error_type().into()))
                .collect()
        };
        serde_json::json!({
            "state": self.state,
            "snapshot_id": self.snapshot.id(),
            "resources": self.snapshot.len(),
            "errors": self.snapshot.errors().len(),
            "allowed_actions": self.allowed_actions.iter().map(|a| &**a).collect::<Vec<_>>(),
            "reason": &*self.reason,
            "required_errors": by_key(&self.required_errors),
            "optional_errors": by_key(&self.optional_errors),
            "acceptance_violations": self.acceptance_violations,
            "consistency_violation": self.consistency_violation,
            "metadata": self.metadata,
        })
    }
}

/// A stable type name for an error that is not a build error.
fn error_type(error: &CoalestraError) -> String {
    match error {
        CoalestraError::Build(e) => e.kind().error_type().to_owned(),
        CoalestraError::Config(_) => "ConfigError".to_owned(),
        CoalestraError::Key(_) => "KeyError".to_owned(),
        CoalestraError::Cache(_) => "CacheError".to_owned(),
        CoalestraError::Source(e) => e.error_type().to_owned(),
        CoalestraError::Closed(what) if what.ends_with("session") => {
            "SessionClosedError".to_owned()
        }
        CoalestraError::Closed(_) => "ClosedError".to_owned(),
        CoalestraError::InvalidRequest(_) => "InvalidRequestError".to_owned(),
    }
}
