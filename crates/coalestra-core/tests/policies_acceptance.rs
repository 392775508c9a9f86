//! Acceptance policy (catalogue area 15, B12.7, B22.31–B22.33): per-resource
//! quality rules and group requirements.

use std::slice::from_ref;
use std::time::Duration;

use coalestra_core::value::ValueParts;
use coalestra_core::{
    AcceptanceReason, AcceptanceViolation, BuildError, BuildErrorKind, Payload,
    ResourceAcceptanceRule, ResourceError, ResourceKey, Snapshot, SnapshotAcceptancePolicy,
    SnapshotRequirement, SnapshotValue, SourceError, SourceFailure, Timestamp,
};
use serde_json::json;

const NOW: f64 = 100.0;

fn key(text: &str) -> ResourceKey {
    ResourceKey::parse(text).unwrap()
}

/// A value observed at `observed_at` and fetched at the same time.
fn value(key: &ResourceKey, observed_at: f64) -> SnapshotValue {
    SnapshotValue::from_parts(ValueParts::new(
        key.clone(),
        Payload::new(key.to_string()),
        "rest",
        Timestamp::from_secs(observed_at),
    ))
}

fn ranked(key: &ResourceKey, observed_at: f64, rank: i64) -> SnapshotValue {
    let mut parts = ValueParts::new(
        key.clone(),
        Payload::new(key.to_string()),
        "rest",
        Timestamp::from_secs(observed_at),
    );
    parts.authority_rank = rank;
    SnapshotValue::from_parts(parts)
}

fn failure(key: &ResourceKey) -> ResourceError {
    ResourceError::unresolved(
        key.clone(),
        vec![SourceFailure::new(
            "rest",
            SourceError::unavailable("down"),
            1,
        )],
    )
}

fn snapshot(values: Vec<SnapshotValue>, errors: Vec<ResourceError>) -> Snapshot {
    let mut parts = Snapshot::parts("s-1", Timestamp::from_secs(NOW));
    values.into_iter().for_each(|v| parts.push_value(v));
    errors.into_iter().for_each(|e| parts.push_error(e));
    parts.finish()
}

fn max_age(secs: f64) -> ResourceAcceptanceRule {
    ResourceAcceptanceRule::unconstrained()
        .max_age_secs(secs)
        .unwrap()
}

fn with_default(rule: ResourceAcceptanceRule) -> SnapshotAcceptancePolicy {
    SnapshotAcceptancePolicy::builder()
        .default_rule(rule)
        .build()
        .unwrap()
}

fn grouped(
    rule: Option<ResourceAcceptanceRule>,
    requirement: SnapshotRequirement,
) -> SnapshotAcceptancePolicy {
    let builder = SnapshotAcceptancePolicy::builder().requirement(requirement);
    match rule {
        Some(rule) => builder.default_rule(rule).build().unwrap(),
        None => builder.build().unwrap(),
    }
}

fn infinite_ttl(_: &ResourceKey) -> Duration {
    Duration::MAX
}

fn evaluate(
    policy: &SnapshotAcceptancePolicy,
    snap: &Snapshot,
    required: &[ResourceKey],
    optional: &[ResourceKey],
) -> Vec<AcceptanceViolation> {
    policy.evaluate(
        snap,
        required,
        optional,
        Timestamp::from_secs(NOW),
        &infinite_ttl,
    )
}

fn reasons(violations: &[AcceptanceViolation]) -> Vec<(AcceptanceReason, Option<ResourceKey>)> {
    violations
        .iter()
        .map(|v| (v.reason(), v.key().cloned()))
        .collect()
}

#[test]
fn current_age_beyond_the_limit_is_too_old() {
    let a = key("ns:a");
    let snap = snapshot(vec![value(&a, 95.0)], vec![]);
    let violations = evaluate(&with_default(max_age(3.0)), &snap, from_ref(&a), &[]);
    assert_eq!(violations.len(), 1);
    let v = &violations[0];
    assert_eq!(v.reason(), AcceptanceReason::TooOld);
    assert_eq!(v.key(), Some(&a));
    assert_eq!(v.keys(), from_ref(&a));
    assert_eq!(v.current_age(), Some(Duration::from_secs(5)));
    assert_eq!(v.max_age(), Some(Duration::from_secs(3)));
    assert_eq!(v.stale(), Some(false));
    assert_eq!(v.authority_rank(), Some(0));
    assert_eq!(v.minimum_authority_rank(), None);
    assert_eq!(v.requirement_name(), None);
    assert_eq!(v.accepted_count(), None);
    assert_eq!(v.required_count(), None);
    assert_eq!(
        v.message(),
        "resource ns:a current age 5.000000s exceeds the allowed 3.000000s"
    );
    assert_eq!(v.to_string(), v.message());

    let error = BuildError::acceptance(violations.clone(), Some(snap.clone()));
    assert_eq!(error.kind(), BuildErrorKind::Acceptance);
    assert!(error.is_acceptance());
    assert_eq!(error.acceptance_violations(), violations.as_slice());
    assert!(error.consistency_violation().is_none());
    assert_eq!(
        error.snapshot().unwrap().value::<String>(&a).unwrap(),
        "ns:a"
    );
    assert_eq!(
        error.to_string(),
        "snapshot acceptance failed with 1 violation(s): too_old"
    );
    let json = error.to_json();
    assert_eq!(json["error_type"], json!("SnapshotAcceptanceError"));
    assert_eq!(json["schema_version"], json!(1));
    assert_eq!(json["partial_snapshot_available"], json!(true));
    assert_eq!(
        json["errors"][0]["error_type"],
        json!("ResourceAcceptanceError")
    );
    assert_eq!(json["errors"][0]["resource"], json!("ns:a"));
    assert_eq!(json["errors"][0]["failures"], json!([]));
}

#[test]
fn the_age_limit_is_inclusive_and_uses_the_larger_of_both_ages() {
    let a = key("ns:a");
    let snap = snapshot(vec![value(&a, 97.0)], vec![]);
    assert!(evaluate(&with_default(max_age(3.0)), &snap, from_ref(&a), &[]).is_empty());

    // Fetched at 110 (age 10) but evaluated at 100: the delivered age wins.
    let mut parts = ValueParts::new(
        a.clone(),
        Payload::new(1_u8),
        "rest",
        Timestamp::from_secs(100.0),
    );
    parts.fetched_at = Some(Timestamp::from_secs(110.0));
    let snap = snapshot(vec![SnapshotValue::from_parts(parts)], vec![]);
    let violations = evaluate(&with_default(max_age(3.0)), &snap, &[a], &[]);
    assert_eq!(violations[0].current_age(), Some(Duration::from_secs(10)));
}

#[test]
fn staleness_is_recomputed_at_evaluation_time() {
    let a = key("ns:a");
    let snap = snapshot(vec![value(&a, 100.0)], vec![]);
    assert!(!snap.get(&a).unwrap().is_stale(), "delivered fresh");
    let policy = with_default(ResourceAcceptanceRule::unconstrained().allow_stale(false));
    let ttl = |_: &ResourceKey| Duration::from_secs(2);
    let later = Timestamp::from_secs(103.0);
    let violations = policy.evaluate(&snap, from_ref(&a), &[], later, &ttl);
    assert_eq!(
        reasons(&violations),
        vec![(AcceptanceReason::Stale, Some(a.clone()))]
    );
    assert_eq!(violations[0].current_age(), Some(Duration::from_secs(3)));
    assert_eq!(violations[0].stale(), Some(true));

    let generous = |_: &ResourceKey| Duration::from_secs(5);
    assert!(policy
        .evaluate(&snap, from_ref(&a), &[], later, &generous)
        .is_empty());

    let delivered_stale = snapshot(vec![value(&a, 100.0).with_stale(true)], vec![]);
    let violations = policy.evaluate(&delivered_stale, from_ref(&a), &[], later, &generous);
    assert_eq!(
        reasons(&violations),
        vec![(AcceptanceReason::Stale, Some(a.clone()))]
    );

    let allowing = with_default(max_age(60.0));
    assert!(allowing
        .evaluate(&delivered_stale, &[a], &[], later, &ttl)
        .is_empty());
}

#[test]
fn insufficient_authority_reports_both_ranks() {
    let a = key("ns:a");
    let snap = snapshot(vec![ranked(&a, 100.0, 40)], vec![]);
    let policy = with_default(ResourceAcceptanceRule::unconstrained().minimum_authority_rank(100));
    let violations = evaluate(&policy, &snap, from_ref(&a), &[]);
    assert_eq!(violations.len(), 1);
    assert_eq!(
        violations[0].reason(),
        AcceptanceReason::InsufficientAuthority
    );
    assert_eq!(violations[0].authority_rank(), Some(40));
    assert_eq!(violations[0].minimum_authority_rank(), Some(100));

    let snap = snapshot(vec![ranked(&a, 100.0, 100)], vec![]);
    assert!(
        evaluate(&policy, &snap, &[a], &[]).is_empty(),
        "the minimum is inclusive"
    );
}

#[test]
fn one_value_can_break_every_rule_in_a_fixed_order() {
    let a = key("ns:a");
    let snap = snapshot(vec![ranked(&a, 90.0, 1).with_stale(true)], vec![]);
    let rule = max_age(5.0).allow_stale(false).minimum_authority_rank(10);
    let violations = evaluate(&with_default(rule), &snap, from_ref(&a), &[]);
    assert_eq!(
        reasons(&violations),
        vec![
            (AcceptanceReason::Stale, Some(a.clone())),
            (AcceptanceReason::TooOld, Some(a.clone())),
            (AcceptanceReason::InsufficientAuthority, Some(a)),
        ]
    );
    let error = BuildError::acceptance(violations, None);
    assert_eq!(
        error.to_string(),
        "snapshot acceptance failed with 3 violation(s): insufficient_authority, stale, too_old"
    );
    assert_eq!(error.errors().len(), 1, "one error per key");
    assert!(error.snapshot().is_none());
    assert_eq!(error.to_json()["partial_snapshot_available"], json!(false));
}

#[test]
fn any_of_accepts_one_healthy_optional_member() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(vec![value(&a, 100.0)], vec![failure(&b)]);
    let policy = grouped(
        None,
        SnapshotRequirement::any_of([a.clone(), b.clone()])
            .unwrap()
            .named("position"),
    );
    assert!(evaluate(&policy, &snap, &[], &[a, b]).is_empty());
}

#[test]
fn requirements_count_only_members_passing_their_rules() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(vec![value(&a, 90.0), value(&b, 99.0)], vec![]);
    let policy = grouped(
        Some(max_age(5.0)),
        SnapshotRequirement::any_of([a.clone(), b.clone()]).unwrap(),
    );
    assert!(evaluate(&policy, &snap, &[], &[a.clone(), b.clone()]).is_empty());

    let all = grouped(
        Some(max_age(5.0)),
        SnapshotRequirement::all_of([a.clone(), b.clone()]).unwrap(),
    );
    let violations = evaluate(&all, &snap, &[], &[a.clone(), b.clone()]);
    assert_eq!(
        reasons(&violations),
        vec![
            (AcceptanceReason::TooOld, Some(a.clone())),
            (AcceptanceReason::RequirementUnsatisfied, None),
        ]
    );
    assert_eq!(
        violations[1].message(),
        "snapshot requirement 'all_of' accepted 1 of 2 resource(s), but requires at least 2"
    );
}

#[test]
fn a_resource_rule_overrides_the_default_rule() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(vec![value(&a, 50.0), value(&b, 100.0)], vec![]);
    let required = [a.clone(), b.clone()];
    let exempting = SnapshotAcceptancePolicy::builder()
        .default_rule(max_age(2.0))
        .resource_rule(a.clone(), ResourceAcceptanceRule::unconstrained())
        .requirement(SnapshotRequirement::all_of(required.clone()).unwrap())
        .build()
        .unwrap();
    assert!(evaluate(&exempting, &snap, &required, &[]).is_empty());
    assert_eq!(
        exempting.rule_for(&a),
        ResourceAcceptanceRule::unconstrained()
    );
    assert_eq!(exempting.rule_for(&b), max_age(2.0));

    let strict = with_default(max_age(2.0));
    assert_eq!(
        reasons(&evaluate(&strict, &snap, &required, &[])),
        vec![(AcceptanceReason::TooOld, Some(a))]
    );
}

#[test]
fn unsatisfied_requirements_report_group_details() {
    let (a, b, c) = (key("ns:a"), key("ns:b"), key("ns:c"));
    let snap = snapshot(vec![], vec![failure(&a), failure(&b), failure(&c)]);
    let group = [a.clone(), b.clone(), c.clone()];
    let policy = grouped(
        None,
        SnapshotRequirement::at_least(2, group.clone())
            .unwrap()
            .named("quorum"),
    );
    let violations = evaluate(&policy, &snap, &[], &group);
    assert_eq!(violations.len(), 1);
    let v = &violations[0];
    assert_eq!(v.reason(), AcceptanceReason::RequirementUnsatisfied);
    assert_eq!(v.requirement_name(), Some("quorum"));
    assert_eq!(v.accepted_count(), Some(0));
    assert_eq!(v.required_count(), Some(2));
    assert_eq!(v.keys(), &group);
    assert_eq!(v.key(), None);
    assert_eq!(
        v.message(),
        "snapshot requirement 'quorum' accepted 0 of 3 resource(s), but requires at least 2"
    );
    let error = BuildError::acceptance(violations, Some(snap));
    let keys: Vec<&ResourceKey> = error.errors().iter().map(ResourceError::key).collect();
    assert_eq!(
        keys,
        vec![&a, &b, &c],
        "a group violation maps to every member"
    );
    for e in error.errors() {
        assert_eq!(e.error_type(), "ResourceAcceptanceError");
        assert!(
            matches!(e, ResourceError::Rejected { reason, .. } if &**reason == "requirement_unsatisfied")
        );
    }
}

#[test]
fn optional_resources_are_enforced_only_when_included() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(vec![value(&a, 100.0), value(&b, 50.0)], vec![]);
    let lenient = with_default(max_age(2.0));
    assert!(evaluate(&lenient, &snap, from_ref(&a), from_ref(&b)).is_empty());

    let including = SnapshotAcceptancePolicy::builder()
        .default_rule(max_age(2.0))
        .include_optional_resources(true)
        .build()
        .unwrap();
    assert!(including.include_optional_resources());
    let violations = evaluate(&including, &snap, from_ref(&a), from_ref(&b));
    assert_eq!(
        reasons(&violations),
        vec![(AcceptanceReason::TooOld, Some(b.clone()))]
    );

    let ruled = SnapshotAcceptancePolicy::builder()
        .resource_rule(b.clone(), max_age(2.0))
        .build()
        .unwrap();
    let violations = evaluate(&ruled, &snap, &[a], from_ref(&b));
    assert_eq!(
        reasons(&violations),
        vec![(AcceptanceReason::TooOld, Some(b))],
        "a key with its own rule is directly enforced"
    );
}

#[test]
fn unsatisfied_groups_add_own_violations_of_members_not_directly_enforced() {
    let (a, b, c) = (key("ns:a"), key("ns:b"), key("ns:c"));
    let snap = snapshot(
        vec![value(&a, 80.0), value(&b, 90.0), value(&c, 85.0)],
        vec![],
    );
    let policy = SnapshotAcceptancePolicy::builder()
        .default_rule(max_age(5.0))
        .requirement(
            SnapshotRequirement::any_of([a.clone(), b.clone()])
                .unwrap()
                .named("first"),
        )
        .requirement(
            SnapshotRequirement::any_of([b.clone(), c.clone()])
                .unwrap()
                .named("second"),
        )
        .build()
        .unwrap();
    let violations = evaluate(&policy, &snap, from_ref(&a), &[b.clone(), c.clone()]);
    assert_eq!(
        reasons(&violations),
        vec![
            (AcceptanceReason::TooOld, Some(a.clone())),
            (AcceptanceReason::TooOld, Some(b.clone())),
            (AcceptanceReason::RequirementUnsatisfied, None),
            (AcceptanceReason::TooOld, Some(c.clone())),
            (AcceptanceReason::RequirementUnsatisfied, None),
        ],
        "directly enforced first, then per group: new member violations, then the group"
    );
    assert_eq!(violations[2].requirement_name(), Some("first"));
    assert_eq!(violations[4].requirement_name(), Some("second"));
    assert_eq!(violations[4].accepted_count(), Some(0));
    assert_eq!(violations[4].required_count(), Some(1));
}

#[test]
fn unresolved_enforced_keys_produce_no_violation_of_their_own() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(vec![value(&b, 100.0)], vec![failure(&a)]);
    let policy = with_default(max_age(1.0).allow_stale(false).minimum_authority_rank(0));
    assert!(evaluate(&policy, &snap, &[a.clone(), b.clone()], &[]).is_empty());

    let grouped = grouped(
        Some(max_age(1.0)),
        SnapshotRequirement::all_of([a.clone(), b.clone()]).unwrap(),
    );
    let violations = evaluate(&grouped, &snap, &[a, b], &[]);
    assert_eq!(
        reasons(&violations),
        vec![(AcceptanceReason::RequirementUnsatisfied, None)]
    );
    assert_eq!(violations[0].accepted_count(), Some(1));
}

#[test]
fn acceptance_errors_have_one_rejection_per_mentioned_key() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(vec![value(&a, 90.0)], vec![failure(&b)]);
    let policy = grouped(
        Some(max_age(5.0)),
        SnapshotRequirement::all_of([a.clone(), b.clone()]).unwrap(),
    );
    let violations = evaluate(&policy, &snap, from_ref(&a), from_ref(&b));
    assert_eq!(violations.len(), 2);
    let error = BuildError::acceptance(violations.clone(), Some(snap));
    assert_eq!(
        error.to_string(),
        "snapshot acceptance failed with 2 violation(s): requirement_unsatisfied, too_old"
    );
    assert_eq!(error.errors().len(), 2);
    match &error.errors()[0] {
        ResourceError::Rejected {
            key,
            reason,
            message,
        } => {
            assert_eq!(key, &a);
            assert_eq!(&**reason, "too_old");
            assert_eq!(&**message, violations[0].message());
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        matches!(&error.errors()[1], ResourceError::Rejected { key, reason, .. }
        if key == &b && &**reason == "requirement_unsatisfied")
    );
    assert!(!error.is_transient());
    assert!(!error.is_deadline_exceeded());
    let json = error.to_json();
    assert_eq!(json["errors"].as_array().unwrap().len(), 2);
    assert_eq!(json["errors"][1]["resource"], json!("ns:b"));
}

#[test]
fn violations_and_reasons_serialize_with_stable_names() {
    let names: Vec<_> = [
        AcceptanceReason::Stale,
        AcceptanceReason::TooOld,
        AcceptanceReason::InsufficientAuthority,
        AcceptanceReason::RequirementUnsatisfied,
    ]
    .iter()
    .map(|r| (r.as_str(), r.to_string(), serde_json::to_value(r).unwrap()))
    .collect();
    assert_eq!(
        names,
        vec![
            ("stale", "stale".to_owned(), json!("stale")),
            ("too_old", "too_old".to_owned(), json!("too_old")),
            (
                "insufficient_authority",
                "insufficient_authority".to_owned(),
                json!("insufficient_authority")
            ),
            (
                "requirement_unsatisfied",
                "requirement_unsatisfied".to_owned(),
                json!("requirement_unsatisfied")
            ),
        ]
    );

    let a = key("ns:a");
    let snap = snapshot(vec![value(&a, 95.0)], vec![]);
    let violation = evaluate(&with_default(max_age(3.0)), &snap, &[a], &[]).remove(0);
    assert_eq!(
        serde_json::to_value(&violation).unwrap(),
        json!({
            "reason": "too_old",
            "keys": ["ns:a"],
            "key": "ns:a",
            "message": "resource ns:a current age 5.000000s exceeds the allowed 3.000000s",
            "requirement_name": null,
            "current_age_seconds": 5.0,
            "max_age_seconds": 3.0,
            "stale": false,
            "authority_rank": 0,
            "minimum_authority_rank": null,
            "accepted_count": null,
            "required_count": null,
        })
    );
}
