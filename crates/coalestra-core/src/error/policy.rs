//! [`BuildError`]s carrying a consistency or acceptance verdict.

use super::{BuildError, BuildErrorKind, PolicyViolation, ResourceError};
use crate::acceptance::AcceptanceViolation;
use crate::consistency::ConsistencyViolation;
use crate::key::KeyMap;
use crate::snapshot::Snapshot;

impl BuildError {
    /// A consistency error: kind [`BuildErrorKind::Consistency`], no
    /// per-resource errors, rendered as the violation's message.
    pub fn consistency(violation: ConsistencyViolation, snapshot: Option<Snapshot>) -> Self {
        Self {
            violation: Some(PolicyViolation::Consistency(Box::new(violation))),
            ..Self::new(BuildErrorKind::Consistency, Vec::new(), snapshot)
        }
    }

    /// An acceptance error: kind [`BuildErrorKind::Acceptance`], one
    /// [`ResourceError::Rejected`] per key the violations mention (in order of
    /// first mention; a requirement violation mentions every member, and a
    /// key takes the reason and message of its first violation), rendered as
    /// `snapshot acceptance failed with N violation(s): <sorted distinct
    /// reasons>`.
    pub fn acceptance(violations: Vec<AcceptanceViolation>, snapshot: Option<Snapshot>) -> Self {
        let mut seen: KeyMap<()> = KeyMap::default();
        let mut errors = Vec::new();
        for violation in &violations {
            for key in violation.keys() {
                if seen.insert(key.clone(), ()).is_none() {
                    errors.push(ResourceError::Rejected {
                        key: key.clone(),
                        reason: violation.reason().as_str().into(),
                        message: violation.message().into(),
                    });
                }
            }
        }
        Self {
            violation: Some(PolicyViolation::Acceptance(violations.into())),
            ..Self::new(BuildErrorKind::Acceptance, errors, snapshot)
        }
    }

    /// The consistency violation, for an error built by
    /// [`BuildError::consistency`].
    pub fn consistency_violation(&self) -> Option<&ConsistencyViolation> {
        match &self.violation {
            Some(PolicyViolation::Consistency(v)) => Some(v),
            _ => None,
        }
    }

    /// The acceptance violations, for an error built by
    /// [`BuildError::acceptance`] (empty otherwise).
    pub fn acceptance_violations(&self) -> &[AcceptanceViolation] {
        match &self.violation {
            Some(PolicyViolation::Acceptance(v)) => v,
            _ => &[],
        }
    }

    /// Whether the snapshot broke its consistency policy.
    pub fn is_consistency(&self) -> bool {
        self.kind == BuildErrorKind::Consistency
    }

    /// Whether the snapshot broke its acceptance policy.
    pub fn is_acceptance(&self) -> bool {
        self.kind == BuildErrorKind::Acceptance
    }
}
