//! [`AcceptanceReason`] and [`AcceptanceViolation`]: what an acceptance
//! policy found wrong.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::ser::SerializeStruct;

use crate::key::ResourceKey;

/// Why a snapshot was not acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AcceptanceReason {
    /// A value was stale at evaluation time and stale values are not allowed.
    Stale,
    /// A value's current age exceeded the allowed maximum.
    TooOld,
    /// The producing source's authority rank was below the minimum.
    InsufficientAuthority,
    /// Too few members of a requirement were acceptable.
    RequirementUnsatisfied,
}

impl AcceptanceReason {
    /// The stable name: `stale`, `too_old`, `insufficient_authority` or
    /// `requirement_unsatisfied`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Stale => "stale",
            Self::TooOld => "too_old",
            Self::InsufficientAuthority => "insufficient_authority",
            Self::RequirementUnsatisfied => "requirement_unsatisfied",
        }
    }
}

impl fmt::Display for AcceptanceReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason a snapshot was not acceptable.
///
/// Resource violations carry the key, its current age, staleness and
/// authority with the limits of its rule; requirement violations carry the
/// group, its name and the accepted and required counts. Renders as its
/// message and serializes with rendered keys and durations in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptanceViolation {
    pub(super) reason: AcceptanceReason,
    pub(super) keys: Vec<ResourceKey>,
    pub(super) key: Option<ResourceKey>,
    pub(super) message: Arc<str>,
    pub(super) requirement_name: Option<Arc<str>>,
    pub(super) current_age: Option<Duration>,
    pub(super) max_age: Option<Duration>,
    pub(super) stale: Option<bool>,
    pub(super) authority_rank: Option<i64>,
    pub(super) minimum_authority_rank: Option<i64>,
    pub(super) accepted_count: Option<usize>,
    pub(super) required_count: Option<usize>,
}

impl AcceptanceViolation {
    pub(super) fn with(&self, reason: AcceptanceReason, message: String) -> Self {
        Self {
            reason,
            message: message.into(),
            ..self.clone()
        }
    }

    /// Why the snapshot was not acceptable.
    pub fn reason(&self) -> AcceptanceReason {
        self.reason
    }
    /// The resources concerned: the key, or every member of a requirement.
    pub fn keys(&self) -> &[ResourceKey] {
        &self.keys
    }
    /// The resource, for a resource violation.
    pub fn key(&self) -> Option<&ResourceKey> {
        self.key.as_ref()
    }
    /// A human-readable description.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The requirement's name, for a named requirement.
    pub fn requirement_name(&self) -> Option<&str> {
        self.requirement_name.as_deref()
    }
    /// The value's age at evaluation time.
    pub fn current_age(&self) -> Option<Duration> {
        self.current_age
    }
    /// The rule's maximum age.
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }
    /// Whether the value was stale at evaluation time.
    pub fn stale(&self) -> Option<bool> {
        self.stale
    }
    /// The producing source's authority rank.
    pub fn authority_rank(&self) -> Option<i64> {
        self.authority_rank
    }
    /// The rule's minimum authority rank.
    pub fn minimum_authority_rank(&self) -> Option<i64> {
        self.minimum_authority_rank
    }
    /// How many requirement members were acceptable.
    pub fn accepted_count(&self) -> Option<usize> {
        self.accepted_count
    }
    /// How many requirement members had to be acceptable.
    pub fn required_count(&self) -> Option<usize> {
        self.required_count
    }
}

impl fmt::Display for AcceptanceViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl serde::Serialize for AcceptanceViolation {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let secs = |d: Option<Duration>| d.map(|d| d.as_secs_f64());
        let mut s = serializer.serialize_struct("AcceptanceViolation", 12)?;
        s.serialize_field("reason", &self.reason)?;
        s.serialize_field("keys", &self.keys)?;
        s.serialize_field("key", &self.key)?;
        s.serialize_field("message", &*self.message)?;
        s.serialize_field("requirement_name", &self.requirement_name.as_deref())?;
        s.serialize_field("current_age_seconds", &secs(self.current_age))?;
        s.serialize_field("max_age_seconds", &secs(self.max_age))?;
        s.serialize_field("stale", &self.stale)?;
        s.serialize_field("authority_rank", &self.authority_rank)?;
        s.serialize_field("minimum_authority_rank", &self.minimum_authority_rank)?;
        s.serialize_field("accepted_count", &self.accepted_count)?;
        s.serialize_field("required_count", &self.required_count)?;
        s.end()
    }
}
