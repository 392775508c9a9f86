//! Consistency policy (catalogue area 14, B22.30): observation skew across the
//! resources of one request.

use std::slice::from_ref;
use std::time::Duration;

use coalestra_core::value::ValueParts;
use coalestra_core::{
    BuildError, BuildErrorKind, ConfigError, Payload, ResourceError, ResourceKey, Snapshot,
    SnapshotConsistencyPolicy, SnapshotRequest, SnapshotValue, SourceError, SourceFailure,
    Timestamp,
};
use serde_json::json;

fn key(text: &str) -> ResourceKey {
    ResourceKey::parse(text).unwrap()
}

fn value(key: &ResourceKey, text: &str, observed_at: f64) -> SnapshotValue {
    SnapshotValue::from_parts(ValueParts::new(
        key.clone(),
        Payload::new(text.to_owned()),
        "rest",
        Timestamp::from_secs(observed_at),
    ))
}

fn snapshot(values: &[(&ResourceKey, f64)]) -> Snapshot {
    let mut parts = Snapshot::parts("s-1", Timestamp::from_secs(200.0));
    for (k, at) in values {
        parts.push_value(value(k, &k.to_string(), *at));
    }
    parts.finish()
}

fn policy(secs: f64) -> SnapshotConsistencyPolicy {
    SnapshotConsistencyPolicy::from_secs_f64(secs).unwrap()
}

#[test]
fn excessive_required_skew_is_a_violation_naming_oldest_and_newest() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(&[(&a, 100.0), (&b, 104.0)]);
    let violation = policy(2.0)
        .evaluate(&snap, &[a.clone(), b.clone()], &[])
        .expect("4s skew exceeds 2s");
    assert_eq!(violation.keys(), &[a.clone(), b.clone()]);
    assert_eq!(violation.oldest(), &a);
    assert_eq!(violation.newest(), &b);
    assert_eq!(violation.oldest_observed_at().as_secs(), 100.0);
    assert_eq!(violation.newest_observed_at().as_secs(), 104.0);
    assert_eq!(violation.observation_skew(), Duration::from_secs(4));
    assert_eq!(violation.max_observation_skew(), Duration::from_secs(2));

    let error = BuildError::consistency(violation.clone(), Some(snap.clone()));
    assert_eq!(error.kind(), BuildErrorKind::Consistency);
    assert!(error.is_consistency());
    assert!(!error.is_acceptance());
    assert!(error.errors().is_empty());
    assert_eq!(error.consistency_violation(), Some(&violation));
    assert!(error.acceptance_violations().is_empty());
    let partial = error.snapshot().expect("partial snapshot");
    assert_eq!(partial.value::<String>(&a).unwrap(), "ns:a");
    assert_eq!(partial.value::<String>(&b).unwrap(), "ns:b");
    assert_eq!(error.to_string(), violation.to_string());

    let json = error.to_json();
    assert_eq!(json["schema_version"], json!(1));
    assert_eq!(json["error_type"], json!("SnapshotConsistencyError"));
    assert_eq!(json["partial_snapshot_available"], json!(true));
    assert_eq!(json["has_partial_snapshot"], json!(true));
    assert_eq!(json["errors"], json!([]));
    assert_eq!(json["message"], json!(violation.to_string()));
}

#[test]
fn violation_message_and_serialization_are_stable() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(&[(&a, 100.0), (&b, 104.0)]);
    let violation = policy(2.0).evaluate(&snap, &[a, b], &[]).unwrap();
    assert_eq!(
        violation.to_string(),
        "snapshot observation skew 4.000000s exceeds the allowed 2.000000s across 2 resource(s); \
         oldest=ns:a@100.000000, newest=ns:b@104.000000"
    );
    assert_eq!(violation.message(), violation.to_string());
    assert_eq!(
        serde_json::to_value(&violation).unwrap(),
        json!({
            "keys": ["ns:a", "ns:b"],
            "oldest_key": "ns:a",
            "oldest_observed_at": 100.0,
            "newest_key": "ns:b",
            "newest_observed_at": 104.0,
            "observation_skew_seconds": 4.0,
            "max_observation_skew_seconds": 2.0,
            "message": violation.to_string(),
        })
    );
}

#[test]
fn the_skew_boundary_is_inclusive() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(&[(&a, 100.0), (&b, 102.0)]);
    assert_eq!(
        policy(2.0).evaluate(&snap, &[a.clone(), b.clone()], &[]),
        None
    );
    assert!(policy(1.999).evaluate(&snap, &[a, b], &[]).is_some());
}

#[test]
fn optional_resources_are_excluded_by_default() {
    let (a, b, opt) = (key("ns:a"), key("ns:b"), key("ns:optional"));
    let snap = snapshot(&[(&a, 100.0), (&b, 101.0), (&opt, 150.0)]);
    let policy = policy(2.0);
    assert!(!policy.include_optional_resources());
    assert_eq!(
        policy.evaluate(&snap, &[a.clone(), b.clone()], from_ref(&opt)),
        None
    );
}

#[test]
fn optional_only_requests_can_opt_into_the_check() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(&[(&a, 100.0), (&b, 105.0)]);
    let optional = [a.clone(), b.clone()];
    assert_eq!(policy(2.0).evaluate(&snap, &[], &optional), None);
    let violation = policy(2.0)
        .including_optional(true)
        .evaluate(&snap, &[], &optional)
        .expect("optional resources participate");
    assert_eq!(violation.keys(), &[a, b]);
}

#[test]
fn included_optional_resources_participate_in_request_order() {
    let (a, b, opt) = (key("ns:a"), key("ns:b"), key("ns:optional"));
    let snap = snapshot(&[(&opt, 150.0), (&b, 101.0), (&a, 100.0)]);
    let violation = policy(2.0)
        .including_optional(true)
        .evaluate(&snap, &[a.clone(), b.clone()], from_ref(&opt))
        .unwrap();
    assert_eq!(violation.newest(), &opt);
    assert_eq!(violation.oldest(), &a);
    assert_eq!(violation.keys(), &[a, b, opt]);
    assert_eq!(violation.observation_skew(), Duration::from_secs(50));
}

#[test]
fn fewer_than_two_resolved_participants_never_violate() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let failed = ResourceError::unresolved(
        b.clone(),
        vec![SourceFailure::new(
            "rest",
            SourceError::unavailable("down"),
            1,
        )],
    );
    let snap = Snapshot::parts("s-1", Timestamp::from_secs(200.0))
        .value(value(&a, "A", 100.0))
        .error(failed)
        .finish();
    let strict = policy(0.0);
    assert_eq!(strict.evaluate(&snap, &[a.clone(), b.clone()], &[]), None);
    assert_eq!(strict.evaluate(&snap, from_ref(&a), &[]), None);
    assert_eq!(strict.evaluate(&snap, &[], &[a]), None);
}

#[test]
fn only_the_request_group_participates() {
    let (a, b, unrelated) = (key("ns:a"), key("ns:b"), key("ns:unrelated"));
    let snap = snapshot(&[(&unrelated, 10.0), (&a, 100.0), (&b, 101.0)]);
    assert_eq!(policy(2.0).evaluate(&snap, &[a, b], &[]), None);
}

#[test]
fn duplicate_and_equal_observations_do_not_violate() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(&[(&a, 100.0), (&b, 100.0)]);
    let none = policy(0.0).evaluate(&snap, &[a.clone(), b.clone(), a.clone()], from_ref(&a));
    assert_eq!(none, None);
    let snap = snapshot(&[(&a, 100.0), (&b, 100.5)]);
    let violation = policy(0.0)
        .including_optional(true)
        .evaluate(&snap, &[a.clone(), b.clone()], from_ref(&a))
        .unwrap();
    assert_eq!(violation.keys(), &[a, b], "participants are de-duplicated");
}

#[test]
fn skew_limits_reject_negative_and_non_finite_values() {
    assert_eq!(
        SnapshotConsistencyPolicy::from_secs_f64(-0.1),
        Err(ConfigError::Negative {
            field: "max_observation_skew_seconds"
        })
    );
    let negative = SnapshotConsistencyPolicy::from_secs_f64(-0.1).unwrap_err();
    assert!(
        negative.to_string().contains("cannot be negative"),
        "{negative}"
    );
    for bad in [f64::INFINITY, f64::NEG_INFINITY, f64::NAN] {
        let error = SnapshotConsistencyPolicy::from_secs_f64(bad).unwrap_err();
        assert!(
            error.to_string().contains("must be finite"),
            "{bad}: {error}"
        );
    }
    let zero = SnapshotConsistencyPolicy::from_secs_f64(0.0).unwrap();
    assert_eq!(zero.max_observation_skew(), Duration::ZERO);
    let built = SnapshotConsistencyPolicy::new(Duration::from_millis(1500));
    assert_eq!(
        built,
        SnapshotConsistencyPolicy::from_secs_f64(1.5).unwrap()
    );
    assert!(!built.include_optional_resources());
}

#[test]
fn requests_carry_a_consistency_policy() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let request = SnapshotRequest::new([a], [b]).unwrap();
    assert_eq!(request.consistency(), None);
    let with = request.with_consistency(policy(2.0).including_optional(true));
    assert_eq!(
        with.consistency(),
        Some(&policy(2.0).including_optional(true))
    );
    assert_eq!(with.required_keys().len(), 1);
    assert!(with.acceptance().is_none());
}
