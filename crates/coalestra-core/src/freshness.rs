//! Freshness: how long a value is fresh, how long it stays usable when stale,
//! and how it is refreshed ([`FreshnessPolicy`], [`PolicyResolver`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::Freshness;
use crate::error::ConfigError;
use crate::key::{KeyMap, ResourceKey};

/// How a value past its TTL is refreshed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefreshMode {
    /// Outside the TTL, wait for a source (the stale value is used only when
    /// every source fails and stale-on-error is allowed).
    #[default]
    Blocking,
    /// Outside the TTL but inside `max_stale`, return the stale value at once
    /// and refresh in the background.
    StaleWhileRevalidate,
    /// Inside the TTL but within `window` of its end, return the fresh value
    /// and refresh in the background.
    RefreshAhead {
        /// How long before the end of the TTL the refresh starts.
        window: Duration,
    },
}

impl RefreshMode {
    /// A stable lowercase name (`blocking`, `stale_while_revalidate`,
    /// `refresh_ahead`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Blocking => "blocking",
            Self::StaleWhileRevalidate => "stale_while_revalidate",
            Self::RefreshAhead { .. } => "refresh_ahead",
        }
    }
}

/// The freshness rules of a resource.
///
/// A value of age `a` is fresh when `a <= ttl` and usable as stale when
/// `a <= max_stale` (both inclusive). [`Duration::MAX`] (see
/// [`FreshnessPolicy::UNBOUNDED`]) is an explicit unbounded window.
///
/// ```
/// use coalestra_core::{FreshnessPolicy, RefreshMode};
/// use std::time::Duration;
///
/// let policy = FreshnessPolicy::new(Duration::from_secs(5), Duration::from_secs(20))?
///     .with_refresh_mode(RefreshMode::StaleWhileRevalidate)?;
/// assert_eq!(policy.ttl(), Duration::from_secs(5));
/// assert!(FreshnessPolicy::new(Duration::from_secs(5), Duration::from_secs(4)).is_err());
/// # Ok::<(), coalestra_core::ConfigError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct FreshnessPolicy {
    ttl: Duration,
    max_stale: Duration,
    allow_stale_on_error: bool,
    refresh_mode: RefreshMode,
}

impl FreshnessPolicy {
    /// An unbounded window.
    pub const UNBOUNDED: Duration = Duration::MAX;

    /// A policy with the given TTL and stale window; `max_stale >= ttl`.
    pub fn new(ttl: Duration, max_stale: Duration) -> Result<Self, ConfigError> {
        if max_stale < ttl {
            return Err(ConfigError::Invalid {
                field: "max_stale",
                reason: "must be greater than or equal to ttl".into(),
            });
        }
        Ok(Self {
            ttl,
            max_stale,
            allow_stale_on_error: true,
            refresh_mode: RefreshMode::Blocking,
        })
    }

    /// A policy whose stale window equals its TTL.
    pub fn fresh_for(ttl: Duration) -> Self {
        Self {
            ttl,
            max_stale: ttl,
            allow_stale_on_error: true,
            refresh_mode: RefreshMode::Blocking,
        }
    }

    /// A policy from fractional seconds, as found in configuration files.
    /// NaN and negative values are rejected; infinity means unbounded.
    pub fn from_secs_f64(ttl: f64, max_stale: f64) -> Result<Self, ConfigError> {
        Self::new(
            window_secs(ttl, "ttl")?,
            window_secs(max_stale, "max_stale")?,
        )
    }

    /// Never cache: every read goes to a source (TTL and stale window zero).
    pub fn no_cache() -> Self {
        Self::fresh_for(Duration::ZERO)
    }

    /// Whether a stale value inside `max_stale` may be served when every
    /// source fails (default: yes).
    #[must_use]
    pub fn with_stale_on_error(mut self, allow: bool) -> Self {
        self.allow_stale_on_error = allow;
        self
    }

    /// Sets the refresh mode; a refresh-ahead window may not exceed a finite TTL.
    pub fn with_refresh_mode(mut self, mode: RefreshMode) -> Result<Self, ConfigError> {
        if let RefreshMode::RefreshAhead { window } = mode {
            if self.ttl != Self::UNBOUNDED && window > self.ttl {
                return Err(ConfigError::Invalid {
                    field: "refresh_ahead",
                    reason: "cannot exceed ttl".into(),
                });
            }
        }
        self.refresh_mode = mode;
        Ok(self)
    }

    /// The time a value stays fresh.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
    /// The time a value stays usable as stale.
    pub fn max_stale(&self) -> Duration {
        self.max_stale
    }
    /// Whether stale values are served when every source fails.
    pub fn allow_stale_on_error(&self) -> bool {
        self.allow_stale_on_error
    }
    /// The refresh mode.
    pub fn refresh_mode(&self) -> RefreshMode {
        self.refresh_mode
    }

    /// Whether a value of this age is fresh.
    pub fn is_fresh(&self, age: Duration) -> bool {
        age <= self.ttl
    }

    /// Whether a value of this age can still be served as stale.
    pub fn is_usable(&self, age: Duration) -> bool {
        age <= self.max_stale
    }

    /// Whether a fresh value of this age is inside the refresh-ahead window.
    pub fn should_refresh_ahead(&self, age: Duration) -> bool {
        match self.refresh_mode {
            RefreshMode::RefreshAhead { window } if self.ttl != Self::UNBOUNDED => {
                age >= self.ttl.saturating_sub(window)
            }
            _ => false,
        }
    }

    /// Classifies a value of this age.
    pub fn classify(&self, age: Duration) -> Freshness {
        if age <= self.ttl {
            if self.should_refresh_ahead(age) {
                Freshness::RefreshDue
            } else {
                Freshness::Fresh
            }
        } else if age <= self.max_stale {
            Freshness::StaleUsable
        } else {
            Freshness::Expired
        }
    }
}

impl Default for FreshnessPolicy {
    /// One second fresh, usable as stale for ten.
    fn default() -> Self {
        Self {
            ttl: Duration::from_secs(1),
            max_stale: Duration::from_secs(10),
            allow_stale_on_error: true,
            refresh_mode: RefreshMode::Blocking,
        }
    }
}

/// Converts a window in seconds: NaN and negative rejected, infinity unbounded.
pub fn window_secs(secs: f64, field: &'static str) -> Result<Duration, ConfigError> {
    if secs.is_nan() {
        return Err(ConfigError::Invalid {
            field,
            reason: "cannot be NaN".into(),
        });
    }
    if secs < 0.0 {
        return Err(ConfigError::Negative { field });
    }
    if secs.is_infinite() {
        return Ok(Duration::MAX);
    }
    Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

type DynamicPolicy = Arc<dyn Fn(&ResourceKey) -> Option<FreshnessPolicy> + Send + Sync>;

/// Chooses the freshness policy of each key: an exact-key override first,
/// then a per resource type (`namespace`, `name`) override, then a dynamic
/// function, then the default.
#[derive(Clone, Default)]
pub struct PolicyResolver {
    default: FreshnessPolicy,
    exact: KeyMap<FreshnessPolicy>,
    /// Namespace, then name: looked up with the key's own strings, without
    /// building an owned pair per lookup.
    by_type: HashMap<Arc<str>, HashMap<Arc<str>, FreshnessPolicy>>,
    dynamic: Option<DynamicPolicy>,
}

impl PolicyResolver {
    /// A resolver returning `default` for every key.
    pub fn new(default: FreshnessPolicy) -> Self {
        Self {
            default,
            ..Self::default()
        }
    }

    /// Adds an exact-key override.
    #[must_use]
    pub fn with_override(mut self, key: ResourceKey, policy: FreshnessPolicy) -> Self {
        self.exact.insert(key, policy);
        self
    }

    /// Adds an override for every key of one resource type.
    #[must_use]
    pub fn with_type_override(
        mut self,
        namespace: &str,
        name: &str,
        policy: FreshnessPolicy,
    ) -> Self {
        self.by_type
            .entry(namespace.into())
            .or_default()
            .insert(name.into(), policy);
        self
    }

    /// Adds a dynamic resolver consulted after the overrides.
    #[must_use]
    pub fn with_dynamic(
        mut self,
        f: impl Fn(&ResourceKey) -> Option<FreshnessPolicy> + Send + Sync + 'static,
    ) -> Self {
        self.dynamic = Some(Arc::new(f));
        self
    }

    /// The default policy.
    pub fn default_policy(&self) -> FreshnessPolicy {
        self.default
    }

    /// The policies of `keys`, in order: what [`resolve`](Self::resolve)
    /// gives each key, in one pass (a resolver without overrides fills the
    /// list without looking at the keys).
    pub fn resolve_all(&self, keys: &[ResourceKey]) -> Vec<FreshnessPolicy> {
        if self.exact.is_empty() && self.by_type.is_empty() && self.dynamic.is_none() {
            return vec![self.default; keys.len()];
        }
        keys.iter().map(|key| self.resolve(key)).collect()
    }

    /// The policy for `key`.
    pub fn resolve(&self, key: &ResourceKey) -> FreshnessPolicy {
        if !self.exact.is_empty() {
            if let Some(p) = self.exact.get(key) {
                return *p;
            }
        }
        if let Some(p) = self
            .by_type
            .get(key.namespace())
            .and_then(|names| names.get(key.name()))
        {
            return *p;
        }
        if let Some(dynamic) = &self.dynamic {
            if let Some(p) = dynamic(key) {
                return p;
            }
        }
        self.default
    }
}

impl fmt::Debug for PolicyResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyResolver")
            .field("default", &self.default)
            .field("exact", &self.exact.len())
            .field(
                "by_type",
                &self.by_type.values().map(HashMap::len).sum::<usize>(),
            )
            .field("dynamic", &self.dynamic.is_some())
            .finish()
    }
}
