//! Resilience policy resolution: override > dynamic > declared > default.

use std::sync::Arc;
use std::time::Duration;

use coalestra_core::ConfigError;
use coalestra_resilience::{
    CircuitBreakerPolicy, CircuitScope, ResiliencePolicy, ResilienceResolver, RetryPolicy,
};

/// A policy recognisable by its attempt budget.
fn tagged(attempts: u32) -> ResiliencePolicy {
    ResiliencePolicy {
        retry: RetryPolicy::default()
            .with_max_attempts(attempts)
            .expect("valid attempts"),
        ..ResiliencePolicy::default()
    }
}

fn attempts(policy: &ResiliencePolicy) -> u32 {
    policy.retry.max_attempts()
}

fn full_resolver() -> ResilienceResolver {
    ResilienceResolver::builder()
        .default_policy(tagged(4))
        .dynamic(|source| match source {
            "dynamic" | "overridden" => Some(tagged(3)),
            _ => None,
        })
        .override_source("overridden", tagged(2))
        .build()
        .expect("valid resolver")
}

#[test]
fn defaults_apply_without_configuration() {
    let resolver = ResilienceResolver::default();
    assert_eq!(resolver.resolve("any", None), ResiliencePolicy::default());
    assert_eq!(resolver.default_policy(), &ResiliencePolicy::default());
    assert!(!resolver.has_dynamic());
    let policy = ResiliencePolicy::default();
    assert_eq!(policy.retry, RetryPolicy::default());
    assert_eq!(policy.circuit, CircuitBreakerPolicy::default());
}

#[test]
fn precedence_over_all_four_levels() {
    let resolver = full_resolver();
    let declared = tagged(1);
    // 1. The explicit override wins over dynamic, declared and default.
    assert_eq!(
        attempts(&resolver.resolve("overridden", Some(&declared))),
        2
    );
    assert_eq!(attempts(&resolver.resolve("overridden", None)), 2);
    // 2. The dynamic lookup wins over declared and default.
    assert_eq!(attempts(&resolver.resolve("dynamic", Some(&declared))), 3);
    assert_eq!(attempts(&resolver.resolve("dynamic", None)), 3);
    // 3. The declared policy wins over the default.
    assert_eq!(attempts(&resolver.resolve("plain", Some(&declared))), 1);
    // 4. The default applies last.
    assert_eq!(attempts(&resolver.resolve("plain", None)), 4);
    assert_eq!(resolver.override_for("overridden").map(attempts), Some(2));
    assert!(resolver.override_for("dynamic").is_none());
    assert!(resolver.has_dynamic());
}

#[test]
fn source_names_match_exactly() {
    let resolver = full_resolver();
    assert_eq!(attempts(&resolver.resolve("Overridden", None)), 4);
    assert_eq!(attempts(&resolver.resolve("overridden ", None)), 4);
}

#[test]
fn dynamic_lookup_sees_the_source_name() {
    let circuit = CircuitBreakerPolicy::new(CircuitScope::Subject, 7, Duration::from_secs(1))
        .expect("valid circuit");
    let expected = ResiliencePolicy::new(RetryPolicy::none(), circuit.clone());
    let resolver = ResilienceResolver::builder()
        .dynamic_shared(Arc::new(move |source: &str| {
            source
                .starts_with("subject-")
                .then(|| ResiliencePolicy::new(RetryPolicy::none(), circuit.clone()))
        }))
        .build()
        .expect("valid resolver");
    assert_eq!(resolver.resolve("subject-feed", None), expected);
    assert_eq!(resolver.resolve("other", None), ResiliencePolicy::default());
}

#[test]
fn later_override_replaces_an_earlier_one() {
    let resolver = ResilienceResolver::builder()
        .override_source("feed", tagged(2))
        .override_source("feed", tagged(5))
        .build()
        .expect("valid resolver");
    assert_eq!(attempts(&resolver.resolve("feed", None)), 5);
}

#[test]
fn empty_override_names_are_rejected() {
    for name in ["", "   "] {
        let error = ResilienceResolver::builder()
            .override_source("feed", tagged(2))
            .override_source(name, tagged(3))
            .build()
            .unwrap_err();
        assert_eq!(
            error,
            ConfigError::Empty {
                field: "source_name"
            }
        );
        assert_eq!(error.to_string(), "source_name cannot be empty");
    }
}

#[test]
fn clones_resolve_alike_and_debug_is_readable() {
    let resolver = full_resolver();
    let clone = resolver.clone();
    for source in ["overridden", "dynamic", "plain"] {
        assert_eq!(clone.resolve(source, None), resolver.resolve(source, None));
    }
    let debug = format!("{resolver:?}");
    assert!(debug.contains("ResilienceResolver"));
    assert!(debug.contains("<fn>"));
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ResilienceResolver>();
}
