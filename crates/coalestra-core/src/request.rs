//! [`SnapshotRequest`] and [`BuildOptions`]: what to build and how.

use std::sync::Arc;
use std::time::Duration;

use crate::acceptance::SnapshotAcceptancePolicy;
use crate::consistency::SnapshotConsistencyPolicy;
use crate::error::CoalestraError;
use crate::key::{KeyMap, ResourceKey};
use crate::metadata::Metadata;
use crate::positions::{KeyPositions, MAX_TAG};

/// Required and optional resources of one build.
///
/// Only required failures fail a build; optional failures are reported in the
/// snapshot's errors. A request may carry a consistency policy and an
/// acceptance policy that the finished snapshot must meet.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    required: Arc<[ResourceKey]>,
    /// `None` when empty (most requests): no allocation for it.
    optional: Option<Arc<[ResourceKey]>>,
    consistency: Option<SnapshotConsistencyPolicy>,
    acceptance: Option<Arc<SnapshotAcceptancePolicy>>,
}

impl SnapshotRequest {
    /// A request; duplicates inside each list are dropped, a key in both lists
    /// and an empty request are rejected.
    pub fn new(
        required: impl IntoIterator<Item = ResourceKey>,
        optional: impl IntoIterator<Item = ResourceKey>,
    ) -> Result<Self, CoalestraError> {
        let (required, optional) = (dedup(required), dedup(optional));
        if required.is_none() && optional.is_none() {
            return Err(CoalestraError::InvalidRequest(
                "snapshot request must contain at least one resource key".into(),
            ));
        }
        if let Some(optional) = &optional {
            let mut seen: KeyMap<()> = KeyMap::default();
            let required_keys: &[ResourceKey] = required.as_deref().unwrap_or_default();
            seen.extend(required_keys.iter().map(|k| (k.clone(), ())));
            if let Some(k) = optional.iter().find(|k| seen.contains_key(*k)) {
                return Err(CoalestraError::InvalidRequest(
                    format!("resource {k} is both required and optional").into(),
                ));
            }
        }
        Ok(Self {
            required: required.unwrap_or_else(|| Arc::new([])),
            optional,
            consistency: None,
            acceptance: None,
        })
    }

    /// The same request with an observation-skew limit.
    #[must_use]
    pub fn with_consistency(mut self, policy: SnapshotConsistencyPolicy) -> Self {
        self.consistency = Some(policy);
        self
    }

    /// The same request with an acceptance policy; rejected when the policy
    /// names a key (in a resource rule or a requirement) outside the request.
    pub fn with_acceptance(
        mut self,
        policy: SnapshotAcceptancePolicy,
    ) -> Result<Self, CoalestraError> {
        let mut known: KeyMap<()> = KeyMap::default();
        known.extend(self.keys().map(|k| (k.clone(), ())));
        let outside: Vec<String> = policy
            .referenced_keys()
            .iter()
            .filter(|k| !known.contains_key(*k))
            .map(ToString::to_string)
            .collect();
        if !outside.is_empty() {
            return Err(CoalestraError::InvalidRequest(
                format!(
                    "acceptance policy references resource(s) {} outside the snapshot request",
                    outside.join(", ")
                )
                .into(),
            ));
        }
        self.acceptance = Some(Arc::new(policy));
        Ok(self)
    }

    /// The observation-skew limit, if any.
    pub fn consistency(&self) -> Option<&SnapshotConsistencyPolicy> {
        self.consistency.as_ref()
    }

    /// The acceptance policy, if any.
    pub fn acceptance(&self) -> Option<&SnapshotAcceptancePolicy> {
        self.acceptance.as_deref()
    }

    /// A request where every key is required.
    pub fn required(keys: impl IntoIterator<Item = ResourceKey>) -> Result<Self, CoalestraError> {
        Self::new(keys, [])
    }

    /// The required keys, de-duplicated, in declaration order.
    pub fn required_keys(&self) -> &[ResourceKey] {
        &self.required
    }

    /// The optional keys, de-duplicated, in declaration order.
    pub fn optional_keys(&self) -> &[ResourceKey] {
        self.optional.as_deref().unwrap_or_default()
    }

    /// Required then optional keys.
    pub fn keys(&self) -> impl Iterator<Item = &ResourceKey> {
        self.required.iter().chain(self.optional_keys())
    }

    /// Whether `key` is required.
    pub fn is_required(&self, key: &ResourceKey) -> bool {
        self.required.contains(key)
    }
}

/// The keys without repeats, in order; `None` for no key at all.
fn dedup(keys: impl IntoIterator<Item = ResourceKey>) -> Option<Arc<[ResourceKey]>> {
    let mut keys = keys.into_iter().peekable();
    keys.peek()?;
    // Collected straight into the shared slice: one allocation when the
    // iterator knows its length.
    let keys: Arc<[ResourceKey]> = keys.collect();
    if keys.len() < 2 {
        return Some(keys);
    }
    // Most requests have no duplicate: detect that without copying a key.
    let has_duplicate = match u32::try_from(keys.len()) {
        Ok(n) if n <= MAX_TAG => {
            let mut seen = KeyPositions::default();
            seen.reserve(keys.len());
            (0..n).any(|i| {
                let key = &keys[i as usize];
                seen.find_or_insert(key, i, |j| keys[j as usize] == *key)
                    .is_some()
            })
        }
        _ => true,
    };
    if !has_duplicate {
        return Some(keys);
    }
    let mut seen: KeyMap<()> = KeyMap::default();
    seen.reserve(keys.len());
    Some(
        keys.iter()
            .filter(|k| seen.insert((*k).clone(), ()).is_none())
            .cloned()
            .collect(),
    )
}

/// Options of one build.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildOptions {
    /// A relative deadline covering the whole build.
    pub deadline: Option<Duration>,
    /// The snapshot identity (a random one when `None`).
    pub snapshot_id: Option<Arc<str>>,
    /// Metadata passed to every source call.
    pub metadata: Metadata,
    /// Whether a required failure fails the build (default `true`); when
    /// `false` the snapshot is returned with its errors.
    pub strict: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        Self {
            deadline: None,
            snapshot_id: None,
            metadata: Metadata::new(),
            strict: true,
        }
    }
}

impl BuildOptions {
    /// Default options: strict, no deadline.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the deadline.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }
    /// Sets the snapshot id.
    #[must_use]
    pub fn snapshot_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.snapshot_id = Some(id.into());
        self
    }
    /// Sets the metadata.
    #[must_use]
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
    /// Sets strictness.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
}
