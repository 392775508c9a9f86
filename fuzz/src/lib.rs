//! The fuzz harness of Coalestra, shared by the `cargo fuzz` targets in
//! `fuzz/fuzz_targets/` and by the stable regression test
//! `crates/coalestra-core/tests/fuzz_regressions.rs` (which includes this
//! file as a module), so the corpus is replayed through exactly the same
//! checks on stable Rust.
//!
//! The property is the same for every entry point: any input ends in a
//! value or a typed error naming the offending field, never in a panic, and
//! a value that is returned is internally consistent (a parsed key renders
//! and parses back to itself; a policy holds what it was given).

use std::time::Duration;

use coalestra_core::{
    CircuitBreakerPolicy, CircuitScope, ConfigError, FreshnessPolicy, ObservationPolicy,
    ResourceAcceptanceRule, ResourceKey, RetryPolicy, SnapshotConsistencyPolicy,
};

/// The field a configuration error names; panics on an unknown variant so a
/// new, untyped failure mode is noticed.
pub fn error_field(error: &ConfigError) -> &'static str {
    match error {
        ConfigError::NotFinite { field }
        | ConfigError::Negative { field }
        | ConfigError::Zero { field }
        | ConfigError::Empty { field }
        | ConfigError::Invalid { field, .. } => field,
        other => panic!("unexpected configuration error variant: {other:?}"),
    }
}

/// Asserts that `error` names one of `fields` and renders a message that
/// contains that name.
fn assert_names(error: &ConfigError, fields: &[&str], input: &dyn std::fmt::Debug) {
    let field = error_field(error);
    assert!(
        fields.contains(&field),
        "error {error:?} for {input:?} names {field:?}, expected one of {fields:?}"
    );
    assert!(
        error.to_string().contains(field),
        "message {:?} does not name {field:?}",
        error.to_string()
    );
}

// ---------------------------------------------------------------- keys ----

/// Target `key_parse`: arbitrary bytes, read as (lossy) UTF-8.
pub fn key_parse(data: &[u8]) {
    check_key_text(&String::from_utf8_lossy(data));
}

/// Parses `text`; a parsed key must render to text that parses back to an
/// equal key with the same rendering, and an error must render.
pub fn check_key_text(text: &str) {
    match ResourceKey::parse(text) {
        Ok(key) => {
            assert!(!key.namespace().is_empty(), "{text:?}: empty namespace");
            assert!(!key.name().is_empty(), "{text:?}: empty name");
            let rendered = key.to_string();
            let again = ResourceKey::parse(&rendered).unwrap_or_else(|error| {
                panic!("{text:?} parsed, but its rendering {rendered:?} does not: {error}")
            });
            assert_eq!(
                again, key,
                "{text:?} -> {rendered:?} round trip changed the key"
            );
            assert_eq!(
                again.to_string(),
                rendered,
                "{text:?}: rendering is not stable"
            );
            let names: Vec<&str> = key.qualifiers().map(|(name, _)| name).collect();
            assert!(
                names.windows(2).all(|pair| pair[0] < pair[1]),
                "{text:?}: qualifiers not sorted and unique: {names:?}"
            );
        }
        Err(error) => assert!(!error.to_string().is_empty(), "{text:?}: empty error"),
    }
}

// ------------------------------------------------------------ policies ----

/// Reads little-endian numbers from fuzz input, padding with zeros.
#[derive(Debug)]
pub struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// A reader over `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Self(data)
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut bytes = [0u8; N];
        let n = self.0.len().min(N);
        bytes[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        bytes
    }

    /// The next `f64` (8 bytes).
    pub fn f64(&mut self) -> f64 {
        f64::from_le_bytes(self.take())
    }

    /// The next `u32` (4 bytes).
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }
}

/// Every number one policy input carries, in input order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PolicyInput {
    pub ttl: f64,
    pub max_stale: f64,
    /// Decoded for layout stability; checked by the `observation_f64`
    /// target instead.
    pub future_tolerance: f64,
    pub max_attempts: u32,
    pub initial_backoff: f64,
    pub max_backoff: f64,
    pub jitter: f64,
    pub scope: u8,
    pub failure_threshold: u32,
    pub recovery_timeout: f64,
    pub max_observation_skew: f64,
    pub max_age: f64,
}

impl PolicyInput {
    /// Decodes an input (missing bytes are zeros).
    pub fn decode(data: &[u8]) -> Self {
        let mut r = Reader::new(data);
        Self {
            ttl: r.f64(),
            max_stale: r.f64(),
            future_tolerance: r.f64(),
            max_attempts: r.u32(),
            initial_backoff: r.f64(),
            max_backoff: r.f64(),
            jitter: r.f64(),
            scope: r.u8(),
            failure_threshold: r.u32(),
            recovery_timeout: r.f64(),
            max_observation_skew: r.f64(),
            max_age: r.f64(),
        }
    }

    /// Encodes an input so that [`PolicyInput::decode`] returns it.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(81);
        out.extend(self.ttl.to_le_bytes());
        out.extend(self.max_stale.to_le_bytes());
        out.extend(self.future_tolerance.to_le_bytes());
        out.extend(self.max_attempts.to_le_bytes());
        out.extend(self.initial_backoff.to_le_bytes());
        out.extend(self.max_backoff.to_le_bytes());
        out.extend(self.jitter.to_le_bytes());
        out.push(self.scope);
        out.extend(self.failure_threshold.to_le_bytes());
        out.extend(self.recovery_timeout.to_le_bytes());
        out.extend(self.max_observation_skew.to_le_bytes());
        out.extend(self.max_age.to_le_bytes());
        out
    }
}

/// Target `policy_f64`: every f64 policy constructor but the observation
/// policy's, on one decoded [`PolicyInput`].
pub fn policy_f64(data: &[u8]) {
    check_policies(&PolicyInput::decode(data));
}

/// Target `observation_f64`: `ObservationPolicy::from_secs_f64` on the
/// first eight bytes (a separate target, so that its known crash does not
/// stop the fuzzing of the other constructors).
pub fn observation_f64(data: &[u8]) {
    check_observation(Reader::new(data).f64());
}

/// Every f64 policy constructor of a [`PolicyInput`] but
/// `ObservationPolicy::from_secs_f64` (see [`observation_f64`]).
pub fn check_policies(input: &PolicyInput) {
    check_freshness(input.ttl, input.max_stale);
    check_retry(
        input.max_attempts,
        input.initial_backoff,
        input.max_backoff,
        input.jitter,
    );
    check_circuit(input.scope, input.failure_threshold, input.recovery_timeout);
    check_consistency(input.max_observation_skew);
    check_acceptance(input.max_age);
}

/// Whether a seconds value is a usable non-negative finite number.
fn usable(secs: f64) -> bool {
    secs.is_finite() && secs >= 0.0
}

/// `FreshnessPolicy::from_secs_f64`: NaN and negative windows rejected,
/// infinity (and anything beyond `Duration::MAX`) unbounded, `max_stale >=
/// ttl`.
pub fn check_freshness(ttl: f64, max_stale: f64) {
    let input = (ttl, max_stale);
    match FreshnessPolicy::from_secs_f64(ttl, max_stale) {
        Ok(policy) => {
            assert!(
                !ttl.is_nan() && !max_stale.is_nan(),
                "{input:?} accepted NaN"
            );
            assert!(
                ttl >= 0.0 && max_stale >= 0.0,
                "{input:?} accepted a negative"
            );
            assert!(policy.max_stale() >= policy.ttl(), "{input:?}: {policy:?}");
            if ttl.is_infinite() {
                assert_eq!(policy.ttl(), FreshnessPolicy::UNBOUNDED);
            }
            // Classification never panics, at the edges included.
            for age in [
                Duration::ZERO,
                policy.ttl(),
                policy.max_stale(),
                Duration::MAX,
            ] {
                let _ = policy.classify(age);
            }
        }
        Err(error) => {
            assert_names(&error, &["ttl", "max_stale"], &input);
            let bad_number = ttl.is_nan() || max_stale.is_nan() || ttl < 0.0 || max_stale < 0.0;
            assert!(
                bad_number || max_stale < ttl,
                "{input:?} rejected without a reason: {error}"
            );
        }
    }
}

/// `ObservationPolicy::from_secs_f64`: NaN, infinities and negative values
/// rejected; any other value gives a policy or a typed error.
pub fn check_observation(future_tolerance: f64) {
    match ObservationPolicy::from_secs_f64(future_tolerance) {
        Ok(policy) => {
            assert!(usable(future_tolerance), "{future_tolerance:?} accepted");
            assert!(policy.rejects_future());
        }
        Err(error) => assert_names(&error, &["future_tolerance"], &future_tolerance),
    }
}

/// `RetryPolicy::from_secs_f64`, then the back-off computation of the
/// policy it returns.
pub fn check_retry(max_attempts: u32, initial: f64, max: f64, jitter: f64) {
    let input = (max_attempts, initial, max, jitter);
    match RetryPolicy::from_secs_f64(max_attempts, initial, max, jitter) {
        Ok(policy) => {
            assert!(max_attempts >= 1, "{input:?}: zero attempts accepted");
            assert!(
                usable(initial) && usable(max),
                "{input:?}: bad seconds accepted"
            );
            assert!(
                (0.0..=1.0).contains(&jitter),
                "{input:?}: bad jitter accepted"
            );
            assert!(
                policy.max_backoff() >= policy.initial_backoff(),
                "{input:?}"
            );
            for attempt in [0, 1, 2, 31, u32::MAX] {
                for unit in [0.0, 0.5, 1.0, f64::NAN] {
                    let _ = policy.backoff(attempt, unit);
                }
            }
        }
        Err(error) => assert_names(
            &error,
            &["max_attempts", "initial_backoff", "max_backoff", "jitter"],
            &input,
        ),
    }
}

/// `CircuitBreakerPolicy::from_secs_f64` for one of the four scopes.
pub fn check_circuit(scope: u8, failure_threshold: u32, recovery_timeout: f64) {
    let scope = CircuitScope::ALL[usize::from(scope) % CircuitScope::ALL.len()];
    let input = (scope, failure_threshold, recovery_timeout);
    match CircuitBreakerPolicy::from_secs_f64(scope, failure_threshold, recovery_timeout) {
        Ok(policy) => {
            assert!(failure_threshold >= 1, "{input:?}: zero threshold accepted");
            assert!(usable(recovery_timeout), "{input:?}: bad seconds accepted");
            assert_eq!(policy.scope(), scope);
            assert!(policy.enabled());
        }
        Err(error) => assert_names(&error, &["failure_threshold", "recovery_timeout"], &input),
    }
}

/// `SnapshotConsistencyPolicy::from_secs_f64`.
pub fn check_consistency(max_observation_skew: f64) {
    match SnapshotConsistencyPolicy::from_secs_f64(max_observation_skew) {
        Ok(policy) => {
            assert!(usable(max_observation_skew), "{max_observation_skew:?}");
            assert!(!policy.include_optional_resources());
        }
        Err(error) => assert_names(
            &error,
            &["max_observation_skew_seconds"],
            &max_observation_skew,
        ),
    }
}

/// `ResourceAcceptanceRule::max_age_secs`.
pub fn check_acceptance(max_age: f64) {
    match ResourceAcceptanceRule::unconstrained().max_age_secs(max_age) {
        Ok(rule) => {
            assert!(usable(max_age), "{max_age:?} accepted");
            assert!(rule.max_age.is_some());
        }
        Err(error) => assert_names(&error, &["max_age_seconds"], &max_age),
    }
}
