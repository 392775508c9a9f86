//! [`SnapshotConsistencyPolicy`]: how far apart in observation time the
//! resources of one request may be.
//!
//! Freshness limits how old one value may be; observation skew limits how far
//! apart a group of values may be. The check is pure: it looks at a finished
//! [`Snapshot`] and reports a [`ConsistencyViolation`] when the newest and the
//! oldest participating observation are more than the allowed skew apart.

use std::fmt;
use std::time::Duration;

use serde::ser::SerializeStruct;

use crate::clock::Timestamp;
use crate::error::ConfigError;
use crate::key::{KeyMap, ResourceKey};
use crate::snapshot::Snapshot;

/// The largest observation skew allowed between the resources of one request.
///
/// Only required resources participate unless optional ones are included
/// explicitly. Resources that did not resolve are ignored, and fewer than two
/// participants never violate the policy. The limit is inclusive: a skew equal
/// to the limit is accepted.
///
/// ```
/// use coalestra_core::SnapshotConsistencyPolicy;
/// use std::time::Duration;
///
/// let policy = SnapshotConsistencyPolicy::from_secs_f64(2.0)?.including_optional(true);
/// assert_eq!(policy.max_observation_skew(), Duration::from_secs(2));
/// assert!(policy.include_optional_resources());
/// assert!(SnapshotConsistencyPolicy::from_secs_f64(-0.1).is_err());
/// # Ok::<(), coalestra_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotConsistencyPolicy {
    max_observation_skew: Duration,
    include_optional_resources: bool,
}

impl SnapshotConsistencyPolicy {
    /// A policy allowing at most `max_observation_skew` between required
    /// resources.
    pub fn new(max_observation_skew: Duration) -> Self {
        Self {
            max_observation_skew,
            include_optional_resources: false,
        }
    }

    /// A policy from fractional seconds; NaN and infinities are rejected with
    /// "must be finite", negative values with "cannot be negative".
    pub fn from_secs_f64(max_observation_skew: f64) -> Result<Self, ConfigError> {
        const FIELD: &str = "max_observation_skew_seconds";
        if !max_observation_skew.is_finite() {
            return Err(ConfigError::NotFinite { field: FIELD });
        }
        if max_observation_skew < 0.0 {
            return Err(ConfigError::Negative { field: FIELD });
        }
        let skew = Duration::try_from_secs_f64(max_observation_skew)
            .map_err(|e| ConfigError::invalid(FIELD, e.to_string()))?;
        Ok(Self::new(skew))
    }

    /// The same policy with optional resources participating or not.
    #[must_use]
    pub fn including_optional(mut self, include: bool) -> Self {
        self.include_optional_resources = include;
        self
    }

    /// The largest allowed observation skew.
    pub fn max_observation_skew(&self) -> Duration {
        self.max_observation_skew
    }

    /// Whether resolved optional resources participate.
    pub fn include_optional_resources(&self) -> bool {
        self.include_optional_resources
    }

    /// Checks `snapshot` for the given request group.
    ///
    /// Participants are the `required` keys, then the `optional` keys when
    /// they are included, that resolved in the snapshot (in that order,
    /// de-duplicated). Other resources held by the snapshot are ignored.
    /// Returns `None` when fewer than two resources participate or the skew
    /// does not exceed the limit.
    pub fn evaluate(
        &self,
        snapshot: &Snapshot,
        required: &[ResourceKey],
        optional: &[ResourceKey],
    ) -> Option<ConsistencyViolation> {
        let optional: &[ResourceKey] = if self.include_optional_resources {
            optional
        } else {
            &[]
        };
        let mut seen: KeyMap<()> = KeyMap::default();
        let participants: Vec<(&ResourceKey, Timestamp)> = required
            .iter()
            .chain(optional)
            .filter(|key| seen.insert((*key).clone(), ()).is_none())
            .filter_map(|key| snapshot.get(key).map(|value| (key, value.observed_at())))
            .collect();
        if participants.len() < 2 {
            return None;
        }
        let (mut oldest, mut newest) = (participants[0], participants[0]);
        for &candidate in &participants[1..] {
            if candidate.1.as_secs() < oldest.1.as_secs() {
                oldest = candidate;
            }
            if candidate.1.as_secs() > newest.1.as_secs() {
                newest = candidate;
            }
        }
        let skew_secs = newest.1.seconds_since(oldest.1);
        if skew_secs <= self.max_observation_skew.as_secs_f64() {
            return None;
        }
        Some(ConsistencyViolation {
            keys: participants.iter().map(|(key, _)| (*key).clone()).collect(),
            oldest: oldest.0.clone(),
            oldest_observed_at: oldest.1,
            newest: newest.0.clone(),
            newest_observed_at: newest.1,
            observation_skew: newest.1.saturating_since(oldest.1),
            max_observation_skew: self.max_observation_skew,
        })
    }
}

/// A request group whose observations are further apart than allowed.
///
/// Renders as `snapshot observation skew 4.000000s exceeds the allowed
/// 2.000000s across 2 resource(s); oldest=ns:a@100.000000,
/// newest=ns:b@104.000000` and serializes with rendered keys and durations in
/// seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct ConsistencyViolation {
    keys: Vec<ResourceKey>,
    oldest: ResourceKey,
    oldest_observed_at: Timestamp,
    newest: ResourceKey,
    newest_observed_at: Timestamp,
    observation_skew: Duration,
    max_observation_skew: Duration,
}

impl ConsistencyViolation {
    /// The participating resources, in request order.
    pub fn keys(&self) -> &[ResourceKey] {
        &self.keys
    }
    /// The resource observed first.
    pub fn oldest(&self) -> &ResourceKey {
        &self.oldest
    }
    /// When the oldest resource was observed.
    pub fn oldest_observed_at(&self) -> Timestamp {
        self.oldest_observed_at
    }
    /// The resource observed last.
    pub fn newest(&self) -> &ResourceKey {
        &self.newest
    }
    /// When the newest resource was observed.
    pub fn newest_observed_at(&self) -> Timestamp {
        self.newest_observed_at
    }
    /// The time between the oldest and the newest observation.
    pub fn observation_skew(&self) -> Duration {
        self.observation_skew
    }
    /// The limit that was exceeded.
    pub fn max_observation_skew(&self) -> Duration {
        self.max_observation_skew
    }
    /// The rendered message.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ConsistencyViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "snapshot observation skew {:.6}s exceeds the allowed {:.6}s across {} resource(s); \
             oldest={}@{}, newest={}@{}",
            self.newest_observed_at
                .seconds_since(self.oldest_observed_at),
            self.max_observation_skew.as_secs_f64(),
            self.keys.len(),
            self.oldest,
            self.oldest_observed_at,
            self.newest,
            self.newest_observed_at,
        )
    }
}

impl serde::Serialize for ConsistencyViolation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("ConsistencyViolation", 8)?;
        s.serialize_field("keys", &self.keys)?;
        s.serialize_field("oldest_key", &self.oldest)?;
        s.serialize_field("oldest_observed_at", &self.oldest_observed_at)?;
        s.serialize_field("newest_key", &self.newest)?;
        s.serialize_field("newest_observed_at", &self.newest_observed_at)?;
        s.serialize_field(
            "observation_skew_seconds",
            &self
                .newest_observed_at
                .seconds_since(self.oldest_observed_at),
        )?;
        s.serialize_field(
            "max_observation_skew_seconds",
            &self.max_observation_skew.as_secs_f64(),
        )?;
        s.serialize_field("message", &self.to_string())?;
        s.end()
    }
}
