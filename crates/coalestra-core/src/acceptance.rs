//! [`SnapshotAcceptancePolicy`]: quality rules a snapshot must meet before it
//! is handed out.
//!
//! Per-resource rules bound the current age of a value, forbid stale values
//! and require a minimum source authority. Requirements ask that all, any, or
//! at least N of a group of resources resolved and passed their rules. The
//! evaluation is pure: it looks at a finished [`Snapshot`] at a given time and
//! returns every [`AcceptanceViolation`] found.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::error::ConfigError;
use crate::key::{KeyMap, ResourceKey};
use crate::snapshot::Snapshot;
use crate::value::SnapshotValue;

mod violation;

pub use violation::{AcceptanceReason, AcceptanceViolation};

/// The quality a single resolved value must have.
///
/// The default rule is unconstrained: any age, stale values allowed, any
/// authority.
///
/// ```
/// use coalestra_core::ResourceAcceptanceRule;
/// use std::time::Duration;
///
/// let rule = ResourceAcceptanceRule::unconstrained()
///     .max_age_secs(3.0)?
///     .allow_stale(false)
///     .minimum_authority_rank(100);
/// assert_eq!(rule.max_age, Some(Duration::from_secs(3)));
/// assert!(ResourceAcceptanceRule::unconstrained().max_age_secs(-1.0).is_err());
/// # Ok::<(), coalestra_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResourceAcceptanceRule {
    /// The largest allowed current age (`None`: any age).
    pub max_age: Option<Duration>,
    /// Whether a value that is stale at evaluation time is acceptable
    /// (default `true`).
    pub allow_stale: bool,
    /// The smallest allowed authority rank of the producing source (`None`:
    /// any rank).
    pub minimum_authority_rank: Option<i64>,
}

impl Default for ResourceAcceptanceRule {
    fn default() -> Self {
        Self::unconstrained()
    }
}

impl ResourceAcceptanceRule {
    /// A rule that accepts every resolved value.
    pub const fn unconstrained() -> Self {
        Self {
            max_age: None,
            allow_stale: true,
            minimum_authority_rank: None,
        }
    }

    /// Sets the largest allowed current age.
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Sets the largest allowed current age in fractional seconds; NaN and
    /// infinities are rejected with "must be finite", negative values with
    /// "cannot be negative".
    pub fn max_age_secs(self, max_age: f64) -> Result<Self, ConfigError> {
        const FIELD: &str = "max_age_seconds";
        if !max_age.is_finite() {
            return Err(ConfigError::NotFinite { field: FIELD });
        }
        if max_age < 0.0 {
            return Err(ConfigError::Negative { field: FIELD });
        }
        let max_age = Duration::try_from_secs_f64(max_age)
            .map_err(|e| ConfigError::invalid(FIELD, e.to_string()))?;
        Ok(self.max_age(max_age))
    }

    /// Sets whether stale values are acceptable.
    #[must_use]
    pub fn allow_stale(mut self, allow: bool) -> Self {
        self.allow_stale = allow;
        self
    }

    /// Sets the smallest allowed authority rank.
    #[must_use]
    pub fn minimum_authority_rank(mut self, rank: i64) -> Self {
        self.minimum_authority_rank = Some(rank);
        self
    }

    /// Whether the rule accepts every resolved value.
    pub fn is_unconstrained(&self) -> bool {
        self.max_age.is_none() && self.allow_stale && self.minimum_authority_rank.is_none()
    }

    /// The violations of one resolved value under this rule, in the order
    /// stale, too old, insufficient authority.
    fn check(
        &self,
        value: &SnapshotValue,
        now: Timestamp,
        ttl: Duration,
    ) -> Vec<AcceptanceViolation> {
        let key = value.key();
        let current_age = value.age().max(value.age_at(now));
        let stale = value.is_stale() || current_age > ttl;
        let rank = value.authority_rank();
        let base = AcceptanceViolation {
            reason: AcceptanceReason::Stale,
            keys: vec![key.clone()],
            key: Some(key.clone()),
            message: Arc::from(""),
            requirement_name: None,
            current_age: Some(current_age),
            max_age: self.max_age,
            stale: Some(stale),
            authority_rank: Some(rank),
            minimum_authority_rank: self.minimum_authority_rank,
            accepted_count: None,
            required_count: None,
        };
        let age = current_age.as_secs_f64();
        let mut found = Vec::new();
        if stale && !self.allow_stale {
            found.push(base.with(
                AcceptanceReason::Stale,
                format!("resource {key} is stale at current age {age:.6}s and stale values are not allowed"),
            ));
        }
        if let Some(max_age) = self.max_age.filter(|max| current_age > *max) {
            found.push(base.with(
                AcceptanceReason::TooOld,
                format!(
                    "resource {key} current age {age:.6}s exceeds the allowed {:.6}s",
                    max_age.as_secs_f64()
                ),
            ));
        }
        if let Some(minimum) = self.minimum_authority_rank.filter(|min| rank < *min) {
            found.push(base.with(
                AcceptanceReason::InsufficientAuthority,
                format!(
                    "resource {key} authority rank {rank} is below the required minimum {minimum}"
                ),
            ));
        }
        found
    }
}

/// How many members of a [`SnapshotRequirement`] must be acceptable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequirementKind {
    /// Every member.
    AllOf,
    /// At least one member.
    AnyOf,
    /// At least this many members.
    AtLeast(usize),
}

impl RequirementKind {
    /// A stable label: `all_of`, `any_of` or `at_least`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::AllOf => "all_of",
            Self::AnyOf => "any_of",
            Self::AtLeast(_) => "at_least",
        }
    }
}

/// A group of resources of which enough must resolve and pass their rules.
///
/// A member counts as accepted when it resolved and its rule (resource rule,
/// else default rule, else unconstrained) found nothing wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRequirement {
    name: Option<Arc<str>>,
    kind: RequirementKind,
    keys: Vec<ResourceKey>,
}

impl SnapshotRequirement {
    /// Every key must be acceptable; an empty group is rejected.
    pub fn all_of(keys: impl IntoIterator<Item = ResourceKey>) -> Result<Self, ConfigError> {
        Self::group(RequirementKind::AllOf, keys)
    }

    /// At least one key must be acceptable; an empty group is rejected.
    pub fn any_of(keys: impl IntoIterator<Item = ResourceKey>) -> Result<Self, ConfigError> {
        Self::group(RequirementKind::AnyOf, keys)
    }

    /// At least `count` keys must be acceptable; `count` must be between 1
    /// and the number of (distinct) keys.
    pub fn at_least(
        count: usize,
        keys: impl IntoIterator<Item = ResourceKey>,
    ) -> Result<Self, ConfigError> {
        let requirement = Self::group(RequirementKind::AtLeast(count), keys)?;
        if count == 0 || count > requirement.keys.len() {
            return Err(ConfigError::invalid(
                "snapshot requirement",
                format!(
                    "count {count} must be between 1 and the number of keys ({})",
                    requirement.keys.len()
                ),
            ));
        }
        Ok(requirement)
    }

    fn group(
        kind: RequirementKind,
        keys: impl IntoIterator<Item = ResourceKey>,
    ) -> Result<Self, ConfigError> {
        let mut seen: KeyMap<()> = KeyMap::default();
        let keys: Vec<ResourceKey> = keys
            .into_iter()
            .filter(|key| seen.insert(key.clone(), ()).is_none())
            .collect();
        if keys.is_empty() {
            return Err(ConfigError::invalid(
                "snapshot requirement",
                "requires at least one resource key",
            ));
        }
        Ok(Self {
            name: None,
            kind,
            keys,
        })
    }

    /// The same requirement with a name used in violations.
    #[must_use]
    pub fn named(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The name, if one was given.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// How many members must be acceptable.
    pub fn kind(&self) -> RequirementKind {
        self.kind
    }

    /// The members, de-duplicated, in declaration order.
    pub fn keys(&self) -> &[ResourceKey] {
        &self.keys
    }

    /// The number of members that must be acceptable.
    pub fn required_count(&self) -> usize {
        match self.kind {
            RequirementKind::AllOf => self.keys.len(),
            RequirementKind::AnyOf => 1,
            RequirementKind::AtLeast(count) => count,
        }
    }

    /// The name, or the kind label for an unnamed requirement.
    fn label(&self) -> &str {
        self.name.as_deref().unwrap_or(self.kind.as_str())
    }
}

/// Quality rules and group requirements checked against a finished snapshot.
///
/// Built with [`SnapshotAcceptancePolicy::builder`]; a policy that constrains
/// nothing is rejected.
///
/// Directly enforced resources are the required keys, the optional keys when
/// `include_optional_resources` is set, and every key with its own resource
/// rule. Requirement members that are not directly enforced are checked only
/// to count them, and their own violations are reported only when their
/// requirement is unsatisfied.
///
/// ```
/// use coalestra_core::{ResourceAcceptanceRule, ResourceKey, SnapshotAcceptancePolicy, SnapshotRequirement};
///
/// let (a, b) = (ResourceKey::parse("ns:a")?, ResourceKey::parse("ns:b")?);
/// let policy = SnapshotAcceptancePolicy::builder()
///     .default_rule(ResourceAcceptanceRule::unconstrained().max_age_secs(5.0)?)
///     .requirement(SnapshotRequirement::any_of([a.clone(), b.clone()])?.named("position"))
///     .build()?;
/// assert_eq!(policy.referenced_keys(), vec![a, b]);
/// assert!(SnapshotAcceptancePolicy::builder().build().is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotAcceptancePolicy {
    default_rule: Option<ResourceAcceptanceRule>,
    resource_rules: KeyMap<ResourceAcceptanceRule>,
    requirements: Vec<SnapshotRequirement>,
    include_optional_resources: bool,
}

impl SnapshotAcceptancePolicy {
    /// Starts building a policy.
    pub fn builder() -> SnapshotAcceptancePolicyBuilder {
        SnapshotAcceptancePolicyBuilder::default()
    }

    /// The rule of keys without their own rule.
    pub fn default_rule(&self) -> Option<&ResourceAcceptanceRule> {
        self.default_rule.as_ref()
    }

    /// Per-resource rules, overriding the default rule.
    pub fn resource_rules(&self) -> &KeyMap<ResourceAcceptanceRule> {
        &self.resource_rules
    }

    /// Group requirements, in declaration order.
    pub fn requirements(&self) -> &[SnapshotRequirement] {
        &self.requirements
    }

    /// Whether optional resources are directly enforced.
    pub fn include_optional_resources(&self) -> bool {
        self.include_optional_resources
    }

    /// The effective rule of `key`: its resource rule, else the default
    /// rule, else unconstrained.
    pub fn rule_for(&self, key: &ResourceKey) -> ResourceAcceptanceRule {
        self.resource_rules
            .get(key)
            .or(self.default_rule.as_ref())
            .copied()
            .unwrap_or_default()
    }

    /// Every key named by a resource rule or a requirement, de-duplicated:
    /// requirement members in declaration order, then the other ruled keys
    /// in key order.
    pub fn referenced_keys(&self) -> Vec<ResourceKey> {
        let mut seen: KeyMap<()> = KeyMap::default();
        let mut keys: Vec<ResourceKey> = self
            .requirements
            .iter()
            .flat_map(|requirement| requirement.keys.iter())
            .filter(|key| seen.insert((*key).clone(), ()).is_none())
            .cloned()
            .collect();
        let mut ruled: Vec<&ResourceKey> = self
            .resource_rules
            .keys()
            .filter(|key| !seen.contains_key(*key))
            .collect();
        ruled.sort();
        keys.extend(ruled.into_iter().cloned());
        keys
    }

    /// Every violation of `snapshot` for the request group `required` and
    /// `optional`, evaluated at `now`; `ttl_of` gives the TTL used to decide
    /// whether a value is stale at evaluation time.
    ///
    /// A value's current age is the larger of its delivered age and
    /// `now - observed_at`; it is stale when it was delivered stale or its
    /// current age exceeds its TTL. Directly enforced keys that did not
    /// resolve produce no violation (they surface as resource errors). The
    /// result lists the violations of directly enforced keys in request order
    /// (other ruled keys in key order), then, per unsatisfied requirement,
    /// the own violations of its members that are not directly enforced and
    /// one [`AcceptanceReason::RequirementUnsatisfied`] violation.
    pub fn evaluate(
        &self,
        snapshot: &Snapshot,
        required: &[ResourceKey],
        optional: &[ResourceKey],
        now: Timestamp,
        ttl_of: &dyn Fn(&ResourceKey) -> Duration,
    ) -> Vec<AcceptanceViolation> {
        let enforced = self.directly_enforced(required, optional);
        let own = |key: &ResourceKey| -> Option<Vec<AcceptanceViolation>> {
            snapshot
                .get(key)
                .map(|value| self.rule_for(key).check(value, now, ttl_of(key)))
        };
        let mut violations: Vec<AcceptanceViolation> = Vec::new();
        for key in &enforced {
            violations.extend(own(key).unwrap_or_default());
        }
        let is_enforced: KeyMap<()> = enforced.iter().map(|key| (key.clone(), ())).collect();
        let mut reported: KeyMap<()> = KeyMap::default();
        for requirement in &self.requirements {
            let outcomes: Vec<(&ResourceKey, Option<Vec<AcceptanceViolation>>)> =
                requirement.keys.iter().map(|key| (key, own(key))).collect();
            let accepted = outcomes
                .iter()
                .filter(|(_, found)| found.as_ref().is_some_and(Vec::is_empty))
                .count();
            let needed = requirement.required_count();
            if accepted >= needed {
                continue;
            }
            for (key, found) in outcomes {
                if !is_enforced.contains_key(key) && reported.insert(key.clone(), ()).is_none() {
                    violations.extend(found.unwrap_or_default());
                }
            }
            violations.push(AcceptanceViolation {
                reason: AcceptanceReason::RequirementUnsatisfied,
                keys: requirement.keys.clone(),
                key: None,
                message: format!(
                    "snapshot requirement '{}' accepted {accepted} of {} resource(s), but requires at least {needed}",
                    requirement.label(),
                    requirement.keys.len()
                )
                .into(),
                requirement_name: requirement.name.clone(),
                current_age: None,
                max_age: None,
                stale: None,
                authority_rank: None,
                minimum_authority_rank: None,
                accepted_count: Some(accepted),
                required_count: Some(needed),
            });
        }
        violations
    }

    fn directly_enforced(
        &self,
        required: &[ResourceKey],
        optional: &[ResourceKey],
    ) -> Vec<ResourceKey> {
        let mut seen: KeyMap<()> = KeyMap::default();
        let mut keys: Vec<ResourceKey> = Vec::new();
        for key in required {
            if seen.insert(key.clone(), ()).is_none() {
                keys.push(key.clone());
            }
        }
        for key in optional {
            if (self.include_optional_resources || self.resource_rules.contains_key(key))
                && seen.insert(key.clone(), ()).is_none()
            {
                keys.push(key.clone());
            }
        }
        let mut ruled: Vec<&ResourceKey> = self
            .resource_rules
            .keys()
            .filter(|key| !seen.contains_key(*key))
            .collect();
        ruled.sort();
        keys.extend(ruled.into_iter().cloned());
        keys
    }
}

/// Builds a [`SnapshotAcceptancePolicy`].
#[derive(Debug, Clone, Default)]
pub struct SnapshotAcceptancePolicyBuilder {
    default_rule: Option<ResourceAcceptanceRule>,
    resource_rules: KeyMap<ResourceAcceptanceRule>,
    requirements: Vec<SnapshotRequirement>,
    include_optional_resources: bool,
}

impl SnapshotAcceptancePolicyBuilder {
    /// Sets the rule of keys without their own rule.
    #[must_use]
    pub fn default_rule(mut self, rule: ResourceAcceptanceRule) -> Self {
        self.default_rule = Some(rule);
        self
    }

    /// Sets the rule of one key (replacing an earlier one); the key becomes
    /// directly enforced.
    #[must_use]
    pub fn resource_rule(mut self, key: ResourceKey, rule: ResourceAcceptanceRule) -> Self {
        self.resource_rules.insert(key, rule);
        self
    }

    /// Adds a group requirement.
    #[must_use]
    pub fn requirement(mut self, requirement: SnapshotRequirement) -> Self {
        self.requirements.push(requirement);
        self
    }

    /// Sets whether optional resources are directly enforced (default
    /// `false`).
    #[must_use]
    pub fn include_optional_resources(mut self, include: bool) -> Self {
        self.include_optional_resources = include;
        self
    }

    /// The policy; rejected when it has no requirement and no rule that
    /// constrains anything.
    pub fn build(self) -> Result<SnapshotAcceptancePolicy, ConfigError> {
        let constrains = self
            .default_rule
            .iter()
            .chain(self.resource_rules.values())
            .any(|rule| !rule.is_unconstrained());
        if !constrains && self.requirements.is_empty() {
            return Err(ConfigError::invalid(
                "snapshot acceptance policy",
                "requires at least one constraint or requirement",
            ));
        }
        Ok(SnapshotAcceptancePolicy {
            default_rule: self.default_rule,
            resource_rules: self.resource_rules,
            requirements: self.requirements,
            include_optional_resources: self.include_optional_resources,
        })
    }
}
