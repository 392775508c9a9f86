//! Observation-time policy, source authority and the conditional write
//! decision.

use std::time::Duration;

use coalestra_core::value::ValueParts;
use coalestra_core::{
    AuthorityResolver, ConfigError, ObservationPolicy, Payload, ResourceKey, SnapshotValue,
    SourceAuthorityPolicy, SourceError, Timestamp, WriteOutcome,
};

const NOW: f64 = 1_000_000.0;

fn at(offset: f64) -> Timestamp {
    Timestamp::from_secs(NOW + offset)
}

#[test]
fn the_default_observation_policy_tolerates_one_second_and_rejects_beyond() {
    let policy = ObservationPolicy::default();
    assert_eq!(policy.future_tolerance(), Duration::from_secs(1));
    assert!(policy.rejects_future());
    assert_eq!(policy, ObservationPolicy::new(Duration::from_secs(1)));
}

#[test]
fn past_and_present_observations_have_no_skew() {
    let policy = ObservationPolicy::default();
    assert_eq!(policy.check(at(-30.0), at(0.0)).unwrap(), None);
    assert_eq!(policy.check(at(0.0), at(0.0)).unwrap(), None);
}

#[test]
fn a_small_future_skew_is_accepted_with_its_value() {
    let policy = ObservationPolicy::default();
    let skew = policy.check(at(0.5), at(0.0)).unwrap().expect("a skew");
    assert!((skew - 0.5).abs() < 1e-9, "{skew}");
    let at_limit = policy.check(at(1.0), at(0.0)).unwrap().expect("a skew");
    assert!((at_limit - 1.0).abs() < 1e-9, "the tolerance is inclusive");
}

#[test]
fn a_skew_beyond_the_tolerance_is_rejected_as_a_protocol_error() {
    let policy = ObservationPolicy::default();
    let error = policy.check(at(1.5), at(0.0)).unwrap_err();
    assert!(matches!(error, SourceError::InvalidTimestamp { .. }));
    assert_eq!(error.error_type(), "SourceProtocolError");
    assert!(error.to_string().contains("in the future"), "{error}");
    assert!(!error.is_transient());

    let strict = ObservationPolicy::new(Duration::ZERO);
    assert!(strict.check(at(60.0), at(0.0)).is_err());
    assert!(strict.check(at(0.001), at(0.0)).is_err());
}

#[test]
fn disabling_rejection_accepts_far_future_observations_with_their_skew() {
    let lenient = ObservationPolicy::new(Duration::ZERO).with_reject_future(false);
    assert!(!lenient.rejects_future());
    let skew = lenient.check(at(60.0), at(0.0)).unwrap().expect("a skew");
    assert!((skew - 60.0).abs() < 1e-9, "{skew}");
}

#[test]
fn tolerance_from_configuration_rejects_non_finite_and_negative_values() {
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let error = ObservationPolicy::from_secs_f64(bad).unwrap_err();
        assert_eq!(
            error,
            ConfigError::NotFinite {
                field: "future_tolerance"
            }
        );
        assert_eq!(error.to_string(), "future_tolerance must be finite");
    }
    let error = ObservationPolicy::from_secs_f64(-0.1).unwrap_err();
    assert_eq!(error.to_string(), "future_tolerance cannot be negative");
    let ok = ObservationPolicy::from_secs_f64(0.25).unwrap();
    assert_eq!(ok.future_tolerance(), Duration::from_millis(250));
    assert!(ok.rejects_future());
}

#[test]
fn authority_policies_reject_empty_and_duplicate_source_names() {
    for blank in ["", "   "] {
        let error = SourceAuthorityPolicy::new([(blank, 1)], 0).unwrap_err();
        assert!(matches!(error, ConfigError::Empty { .. }), "{error}");
        assert!(error.to_string().contains("cannot be empty"), "{error}");
    }
    let error = SourceAuthorityPolicy::new([(" rest ", 1), ("rest", 2)], 0).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("duplicate authority source name"),
        "{error}"
    );
}

#[test]
fn authority_ranks_use_trimmed_names_and_a_default() {
    let policy = SourceAuthorityPolicy::new([(" exchange ", 10), ("cache-mirror", -1)], 3).unwrap();
    assert_eq!(policy.rank_of("exchange"), 10);
    assert_eq!(policy.rank_of("cache-mirror"), -1);
    assert_eq!(policy.rank_of("unknown"), 3);
    assert_eq!(policy.default_rank(), 3);
    assert!(policy.has_rules());

    let none: [(&str, i64); 0] = [];
    assert!(!SourceAuthorityPolicy::new(none, 0).unwrap().has_rules());
    assert!(SourceAuthorityPolicy::new(none, 5).unwrap().has_rules());
    assert!(!SourceAuthorityPolicy::default().has_rules());
}

fn key(text: &str) -> ResourceKey {
    ResourceKey::parse(text).unwrap()
}

#[test]
fn the_authority_resolver_prefers_exact_then_dynamic_then_default() {
    let default = SourceAuthorityPolicy::new([("rest", 1)], 0).unwrap();
    let exact = SourceAuthorityPolicy::new([("rest", 50)], 7).unwrap();
    let resolver = AuthorityResolver::new(default)
        .with_override(key("market:price:BTC"), exact)
        .with_dynamic(|k: &ResourceKey, source: &str| {
            (k.namespace() == "account" && source == "rest").then_some(20)
        });

    assert_eq!(resolver.rank_for(&key("market:price:BTC"), "rest"), 50);
    assert_eq!(
        resolver.rank_for(&key("market:price:BTC"), "other"),
        7,
        "an exact policy answers with its own default"
    );
    assert_eq!(resolver.rank_for(&key("account:balance:1"), "rest"), 20);
    assert_eq!(resolver.rank_for(&key("account:balance:1"), "db"), 0);
    assert_eq!(resolver.rank_for(&key("market:price:ETH"), "rest"), 1);
}

#[test]
fn the_authority_resolver_reports_whether_it_has_rules() {
    assert!(!AuthorityResolver::default().has_rules());
    assert!(!AuthorityResolver::new(SourceAuthorityPolicy::default()).has_rules());
    let ranked = SourceAuthorityPolicy::new([("rest", 1)], 0).unwrap();
    assert!(AuthorityResolver::new(ranked).has_rules());
    assert!(AuthorityResolver::default()
        .with_override(key("a:b"), SourceAuthorityPolicy::default())
        .has_rules());
    assert!(AuthorityResolver::default()
        .with_dynamic(|_: &ResourceKey, _: &str| None)
        .has_rules());
}

fn revision(rank: i64, observed: f64) -> SnapshotValue {
    let mut parts = ValueParts::new(key("ns:k"), Payload::new(observed), "src", at(observed));
    parts.authority_rank = rank;
    SnapshotValue::from_parts(parts)
}

/// (candidate rank, candidate time, previous (rank, time), force,
/// replace_equal, expected outcome).
type Decision = (i64, f64, Option<(i64, f64)>, bool, bool, WriteOutcome);

#[test]
fn the_write_decision_table() {
    use WriteOutcome::*;
    let table: [Decision; 14] = [
        (0, 1.0, None, false, false, Stored),
        (-5, -100.0, None, false, false, Stored),
        (0, 1.0, Some((9, 5.0)), true, false, Stored),
        (0, 1.0, Some((0, 5.0)), true, false, Stored),
        (0, 10.0, Some((1, 5.0)), false, false, IgnoredLowerAuthority),
        (0, 10.0, Some((1, 5.0)), false, true, IgnoredLowerAuthority),
        (2, 1.0, Some((1, 5.0)), false, false, Stored),
        (1, 4.0, Some((1, 5.0)), false, false, IgnoredOlder),
        (1, 4.0, Some((1, 5.0)), false, true, IgnoredOlder),
        (1, 6.0, Some((1, 5.0)), false, false, Stored),
        (1, 5.0, Some((1, 5.0)), false, false, IgnoredDuplicate),
        (1, 5.0, Some((1, 5.0)), false, true, Stored),
        (1, 5.0, Some((1, 5.0)), true, false, Stored),
        (-1, 5.0, Some((-2, 5.0)), false, false, Stored),
    ];
    for (rank, time, previous, force, replace_equal, outcome) in table {
        let candidate = revision(rank, time);
        let previous = previous.map(|(r, t)| revision(r, t));
        assert_eq!(
            WriteOutcome::decide(&candidate, previous.as_ref(), force, replace_equal),
            outcome,
            "candidate ({rank}, {time}) previous {previous:?} force {force} replace_equal {replace_equal}"
        );
    }
}

#[test]
fn write_outcomes_have_stable_names() {
    assert!(WriteOutcome::Stored.is_stored());
    assert!(!WriteOutcome::IgnoredDuplicate.is_stored());
    let names: Vec<&str> = [
        WriteOutcome::Stored,
        WriteOutcome::IgnoredLowerAuthority,
        WriteOutcome::IgnoredOlder,
        WriteOutcome::IgnoredDuplicate,
    ]
    .iter()
    .map(|o| o.as_str())
    .collect();
    assert_eq!(
        names,
        [
            "stored",
            "ignored_lower_authority",
            "ignored_older",
            "ignored_duplicate"
        ]
    );
}
