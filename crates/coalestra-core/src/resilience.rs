//! Resilience policy data: retry back-off and circuit breaker settings.
//!
//! These types only describe *what* should happen when a source fails; the
//! runtime behaviour (sleeping between attempts, tracking circuit state) lives
//! in `coalestra-resilience`, so this module stays free of any async runtime.
//!
//! Every policy is validated on construction: a value of [`RetryPolicy`] or
//! [`CircuitBreakerPolicy`] is always internally consistent. Durations are
//! [`std::time::Duration`]; the `*_secs` builder setters accept `f64` seconds
//! (as configuration files usually carry them) and reject NaN, infinities and
//! negative values with a [`ConfigError`].

use std::fmt;
use std::time::Duration;

use serde::{Serialize, Serializer};

use crate::error::ConfigError;

/// Serializes a [`Duration`] as a floating point number of seconds.
fn serialize_secs<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(value.as_secs_f64())
}

/// Converts `f64` seconds into a [`Duration`], naming `field` on failure.
fn duration_from_secs(field: &'static str, secs: f64) -> Result<Duration, ConfigError> {
    if !secs.is_finite() {
        return Err(ConfigError::NotFinite { field });
    }
    if secs < 0.0 {
        return Err(ConfigError::Negative { field });
    }
    Duration::try_from_secs_f64(secs).map_err(|_| invalid(field, "is too large"))
}

/// A [`ConfigError::Invalid`] with a static reason.
fn invalid(field: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        field,
        reason: reason.to_owned(),
    }
}

/// Which failed attempts a [`RetryPolicy`] retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryOn {
    /// Retry only errors the caller classifies as transient (the default).
    #[default]
    Transient,
    /// Retry every error.
    All,
    /// Never retry.
    Never,
}

impl RetryOn {
    /// Whether an error, classified as transient or not, should be retried.
    #[must_use]
    pub const fn retries(self, transient: bool) -> bool {
        match self {
            Self::Transient => transient,
            Self::All => true,
            Self::Never => false,
        }
    }
}

/// How often, and how patiently, a failed source call is attempted again.
///
/// The default policy makes up to 2 attempts, backs off 50 ms after the first
/// failure, doubles the delay each time up to 1 s, applies ±10 % jitter and
/// retries only transient errors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    max_attempts: u32,
    #[serde(serialize_with = "serialize_secs")]
    initial_backoff: Duration,
    #[serde(serialize_with = "serialize_secs")]
    max_backoff: Duration,
    multiplier: f64,
    jitter: f64,
    retry_on: RetryOn,
}

impl RetryPolicy {
    /// Default number of attempts, the first one included.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 2;
    /// Default delay before the second attempt.
    pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(50);
    /// Default upper bound of the (un-jittered) delay.
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(1);
    /// Default growth factor of the delay between consecutive attempts.
    pub const DEFAULT_MULTIPLIER: f64 = 2.0;
    /// Default jitter ratio.
    pub const DEFAULT_JITTER: f64 = 0.1;

    /// Starts a builder initialised with the default values.
    pub fn builder() -> RetryPolicyBuilder {
        RetryPolicyBuilder::default()
    }

    /// Starts a builder initialised with this policy's values.
    pub fn to_builder(&self) -> RetryPolicyBuilder {
        RetryPolicyBuilder {
            policy: self.clone(),
            error: None,
        }
    }

    /// A policy that makes a single attempt and never retries.
    #[must_use]
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// Builds a policy from durations, with the default multiplier, jitter
    /// and [`RetryOn::Transient`].
    ///
    /// # Errors
    /// Returns a [`ConfigError`] when `max_attempts` is zero or `max_backoff`
    /// is shorter than `initial_backoff`.
    pub fn new(
        max_attempts: u32,
        initial_backoff: Duration,
        max_backoff: Duration,
    ) -> Result<Self, ConfigError> {
        Self::builder()
            .max_attempts(max_attempts)
            .initial_backoff(initial_backoff)
            .max_backoff(max_backoff)
            .build()
    }

    /// Builds a policy from `f64` seconds, as found in configuration files,
    /// with the default multiplier and [`RetryOn::Transient`].
    ///
    /// # Errors
    /// Returns a [`ConfigError`] when a number is NaN, infinite or negative,
    /// when `max_attempts` is zero, when `max_backoff_secs` is smaller than
    /// `initial_backoff_secs`, or when `jitter` is outside `[0, 1]`.
    pub fn from_secs_f64(
        max_attempts: u32,
        initial_backoff_secs: f64,
        max_backoff_secs: f64,
        jitter: f64,
    ) -> Result<Self, ConfigError> {
        Self::builder()
            .max_attempts(max_attempts)
            .initial_backoff_secs(initial_backoff_secs)
            .max_backoff_secs(max_backoff_secs)
            .jitter(jitter)
            .build()
    }

    /// Returns a copy of this policy with a different [`RetryOn`] mode.
    #[must_use]
    pub fn with_retry_on(mut self, retry_on: RetryOn) -> Self {
        self.retry_on = retry_on;
        self
    }

    /// Returns a copy of this policy with a different attempt budget.
    ///
    /// # Errors
    /// Returns [`ConfigError::Zero`] when `max_attempts` is zero.
    pub fn with_max_attempts(self, max_attempts: u32) -> Result<Self, ConfigError> {
        self.to_builder().max_attempts(max_attempts).build()
    }

    /// Maximum number of attempts, the first one included (at least 1).
    #[must_use]
    pub const fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// Delay before the second attempt, before jitter.
    #[must_use]
    pub const fn initial_backoff(&self) -> Duration {
        self.initial_backoff
    }

    /// Upper bound of the delay before jitter.
    #[must_use]
    pub const fn max_backoff(&self) -> Duration {
        self.max_backoff
    }

    /// Growth factor of the delay between consecutive attempts (at least 1).
    #[must_use]
    pub const fn multiplier(&self) -> f64 {
        self.multiplier
    }

    /// Jitter ratio in `[0, 1]`: a delay `d` becomes a value in
    /// `[d * (1 - jitter), d * (1 + jitter)]`.
    #[must_use]
    pub const fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Which errors are retried.
    #[must_use]
    pub const fn retry_on(&self) -> RetryOn {
        self.retry_on
    }

    /// Whether this policy retries an error classified as `transient`.
    ///
    /// This ignores the attempt budget; see [`Self::max_attempts`].
    #[must_use]
    pub const fn retries(&self, transient: bool) -> bool {
        self.retry_on.retries(transient)
    }

    /// The delay to wait after failed attempt number `attempt` (1-based).
    ///
    /// The un-jittered delay is `initial_backoff * multiplier^(attempt - 1)`
    /// capped at `max_backoff`; it is then scaled by
    /// `1 + jitter * (2 * unit_random - 1)`, so `unit_random = 0.5` gives the
    /// exact delay and `0.0` / `1.0` give the two extremes. `unit_random` is
    /// clamped to `[0, 1]` (NaN counts as `0.5`) and `attempt = 0` is treated
    /// as `1`. The function is pure: the caller provides the randomness.
    #[must_use]
    pub fn backoff(&self, attempt: u32, unit_random: f64) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let cap = self.max_backoff.as_secs_f64();
        let grown = self.initial_backoff.as_secs_f64() * self.multiplier.powi(exponent);
        let base = if grown.is_finite() {
            grown.min(cap)
        } else {
            cap
        };
        let unit = if unit_random.is_nan() {
            0.5
        } else {
            unit_random.clamp(0.0, 1.0)
        };
        let scaled = base * (1.0 + self.jitter * (2.0 * unit - 1.0));
        Duration::try_from_secs_f64(scaled.max(0.0)).unwrap_or(self.max_backoff)
    }
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
            initial_backoff: Self::DEFAULT_INITIAL_BACKOFF,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
            multiplier: Self::DEFAULT_MULTIPLIER,
            jitter: Self::DEFAULT_JITTER,
            retry_on: RetryOn::Transient,
        }
    }
}

/// Builder of a validated [`RetryPolicy`]; starts from the defaults.
///
/// Setters never fail; the first invalid input is reported by
/// [`RetryPolicyBuilder::build`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct RetryPolicyBuilder {
    policy: RetryPolicy,
    error: Option<ConfigError>,
}

impl RetryPolicyBuilder {
    /// Sets the maximum number of attempts, the first one included.
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.policy.max_attempts = max_attempts;
        self
    }

    /// Sets the delay before the second attempt.
    pub fn initial_backoff(mut self, initial_backoff: Duration) -> Self {
        self.policy.initial_backoff = initial_backoff;
        self
    }

    /// Sets the delay before the second attempt, in seconds.
    pub fn initial_backoff_secs(mut self, secs: f64) -> Self {
        match duration_from_secs("initial_backoff", secs) {
            Ok(value) => self.policy.initial_backoff = value,
            Err(error) => self.error = self.error.take().or(Some(error)),
        }
        self
    }

    /// Sets the upper bound of the un-jittered delay.
    pub fn max_backoff(mut self, max_backoff: Duration) -> Self {
        self.policy.max_backoff = max_backoff;
        self
    }

    /// Sets the upper bound of the un-jittered delay, in seconds.
    pub fn max_backoff_secs(mut self, secs: f64) -> Self {
        match duration_from_secs("max_backoff", secs) {
            Ok(value) => self.policy.max_backoff = value,
            Err(error) => self.error = self.error.take().or(Some(error)),
        }
        self
    }

    /// Sets the growth factor of the delay (finite, at least 1).
    pub fn multiplier(mut self, multiplier: f64) -> Self {
        self.policy.multiplier = multiplier;
        self
    }

    /// Sets the jitter ratio (in `[0, 1]`).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.policy.jitter = jitter;
        self
    }

    /// Sets which errors are retried.
    pub fn retry_on(mut self, retry_on: RetryOn) -> Self {
        self.policy.retry_on = retry_on;
        self
    }

    /// Validates and returns the policy.
    ///
    /// # Errors
    /// Returns the first invalid seconds value given to a `*_secs` setter,
    /// then checks, in order: `max_attempts >= 1`, `max_backoff >=
    /// initial_backoff`, `multiplier` finite and at least 1, `jitter` finite
    /// and within `[0, 1]`.
    pub fn build(self) -> Result<RetryPolicy, ConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        let (policy, multiplier, jitter) = (self.policy, "multiplier", "jitter");
        let error = if policy.max_attempts == 0 {
            ConfigError::Zero {
                field: "max_attempts",
            }
        } else if policy.max_backoff < policy.initial_backoff {
            invalid("max_backoff", "must not be less than initial_backoff")
        } else if !policy.multiplier.is_finite() {
            ConfigError::NotFinite { field: multiplier }
        } else if policy.multiplier < 1.0 {
            invalid(multiplier, "must be at least 1")
        } else if !policy.jitter.is_finite() {
            ConfigError::NotFinite { field: jitter }
        } else if policy.jitter < 0.0 {
            ConfigError::Negative { field: jitter }
        } else if policy.jitter > 1.0 {
            invalid(jitter, "must be at most 1")
        } else {
            return Ok(policy);
        };
        Err(error)
    }
}

/// What a circuit breaker's state is shared by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CircuitScope {
    /// One circuit per source (the default).
    #[default]
    Source,
    /// One circuit per source and key namespace.
    Namespace,
    /// One circuit per source and full resource key.
    Resource,
    /// One circuit per source and key subject.
    Subject,
}

impl CircuitScope {
    /// Every scope, in declaration order.
    pub const ALL: [Self; 4] = [Self::Source, Self::Namespace, Self::Resource, Self::Subject];

    /// The lowercase name of this scope (`"source"`, `"namespace"`, ...).
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Source => "source",
            Self::Namespace => "namespace",
            Self::Resource => "resource",
            Self::Subject => "subject",
        }
    }
}

impl fmt::Display for CircuitScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a circuit opens and how long it stays open.
///
/// The default opens a per-source circuit after 3 consecutive failures and
/// lets one probe through after 10 s.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CircuitBreakerPolicy {
    scope: CircuitScope,
    failure_threshold: u32,
    #[serde(serialize_with = "serialize_secs")]
    recovery_timeout: Duration,
    enabled: bool,
}

impl CircuitBreakerPolicy {
    /// Default number of consecutive failures that opens the circuit.
    pub const DEFAULT_FAILURE_THRESHOLD: u32 = 3;
    /// Default time an open circuit waits before letting a probe through.
    pub const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(10);

    /// Starts a builder initialised with the default values.
    pub fn builder() -> CircuitBreakerPolicyBuilder {
        CircuitBreakerPolicyBuilder::default()
    }

    /// Starts a builder initialised with this policy's values.
    pub fn to_builder(&self) -> CircuitBreakerPolicyBuilder {
        CircuitBreakerPolicyBuilder {
            policy: self.clone(),
            error: None,
        }
    }

    /// Builds an enabled policy.
    ///
    /// # Errors
    /// Returns [`ConfigError::Zero`] when `failure_threshold` is zero.
    pub fn new(
        scope: CircuitScope,
        failure_threshold: u32,
        recovery_timeout: Duration,
    ) -> Result<Self, ConfigError> {
        Self::builder()
            .scope(scope)
            .failure_threshold(failure_threshold)
            .recovery_timeout(recovery_timeout)
            .build()
    }

    /// Builds an enabled policy with the recovery timeout in `f64` seconds.
    ///
    /// # Errors
    /// Returns a [`ConfigError`] when `failure_threshold` is zero or the
    /// timeout is NaN, infinite or negative.
    pub fn from_secs_f64(
        scope: CircuitScope,
        failure_threshold: u32,
        recovery_timeout_secs: f64,
    ) -> Result<Self, ConfigError> {
        Self::builder()
            .scope(scope)
            .failure_threshold(failure_threshold)
            .recovery_timeout_secs(recovery_timeout_secs)
            .build()
    }

    /// The default policy, switched off: calls are always permitted.
    #[must_use]
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }

    /// Returns a copy of this policy switched on or off.
    #[must_use]
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// Returns a copy of this policy with a different scope.
    #[must_use]
    pub fn with_scope(mut self, scope: CircuitScope) -> Self {
        self.scope = scope;
        self
    }

    /// What the circuit state is shared by.
    #[must_use]
    pub const fn scope(&self) -> CircuitScope {
        self.scope
    }

    /// Consecutive failures that open the circuit (at least 1).
    #[must_use]
    pub const fn failure_threshold(&self) -> u32 {
        self.failure_threshold
    }

    /// Time an open circuit waits before letting a single probe through.
    #[must_use]
    pub const fn recovery_timeout(&self) -> Duration {
        self.recovery_timeout
    }

    /// Whether the breaker is active; a disabled breaker permits every call.
    #[must_use]
    pub const fn enabled(&self) -> bool {
        self.enabled
    }
}

impl Default for CircuitBreakerPolicy {
    fn default() -> Self {
        Self {
            scope: CircuitScope::Source,
            failure_threshold: Self::DEFAULT_FAILURE_THRESHOLD,
            recovery_timeout: Self::DEFAULT_RECOVERY_TIMEOUT,
            enabled: true,
        }
    }
}

/// Builder of a validated [`CircuitBreakerPolicy`]; starts from the defaults.
///
/// Setters never fail; the first invalid input is reported by
/// [`CircuitBreakerPolicyBuilder::build`].
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct CircuitBreakerPolicyBuilder {
    policy: CircuitBreakerPolicy,
    error: Option<ConfigError>,
}

impl CircuitBreakerPolicyBuilder {
    /// Sets what the circuit state is shared by.
    pub fn scope(mut self, scope: CircuitScope) -> Self {
        self.policy.scope = scope;
        self
    }

    /// Sets the number of consecutive failures that opens the circuit.
    pub fn failure_threshold(mut self, failure_threshold: u32) -> Self {
        self.policy.failure_threshold = failure_threshold;
        self
    }

    /// Sets the time an open circuit waits before letting a probe through.
    pub fn recovery_timeout(mut self, recovery_timeout: Duration) -> Self {
        self.policy.recovery_timeout = recovery_timeout;
        self
    }

    /// Sets the recovery timeout in seconds.
    pub fn recovery_timeout_secs(mut self, secs: f64) -> Self {
        match duration_from_secs("recovery_timeout", secs) {
            Ok(value) => self.policy.recovery_timeout = value,
            Err(error) => self.error = self.error.take().or(Some(error)),
        }
        self
    }

    /// Switches the breaker on or off.
    pub fn enabled(mut self, enabled: bool) -> Self {
        self.policy.enabled = enabled;
        self
    }

    /// Validates and returns the policy.
    ///
    /// # Errors
    /// Returns the first invalid seconds value given to
    /// [`Self::recovery_timeout_secs`], or [`ConfigError::Zero`] when the
    /// failure threshold is zero.
    pub fn build(self) -> Result<CircuitBreakerPolicy, ConfigError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        if self.policy.failure_threshold == 0 {
            return Err(ConfigError::Zero {
                field: "failure_threshold",
            });
        }
        Ok(self.policy)
    }
}

/// The complete resilience configuration applied to calls of one source.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct ResiliencePolicy {
    /// How failed calls are retried.
    pub retry: RetryPolicy,
    /// When the source's circuit opens.
    pub circuit: CircuitBreakerPolicy,
}

impl ResiliencePolicy {
    /// Combines a retry policy and a circuit breaker policy.
    #[must_use]
    pub const fn new(retry: RetryPolicy, circuit: CircuitBreakerPolicy) -> Self {
        Self { retry, circuit }
    }
}
