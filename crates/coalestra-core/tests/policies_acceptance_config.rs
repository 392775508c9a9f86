//! Acceptance configuration (B12.7, B22.31–B22.33): rule, requirement and
//! policy validation, referenced keys, and requests carrying a policy.

use std::time::Duration;

use coalestra_core::{
    RequirementKind, ResourceAcceptanceRule, ResourceKey, SnapshotAcceptancePolicy,
    SnapshotRequest, SnapshotRequirement,
};

fn key(text: &str) -> ResourceKey {
    ResourceKey::parse(text).unwrap()
}

fn max_age(secs: f64) -> ResourceAcceptanceRule {
    ResourceAcceptanceRule::unconstrained()
        .max_age_secs(secs)
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

#[test]
fn rules_reject_negative_and_non_finite_ages() {
    let negative = ResourceAcceptanceRule::unconstrained()
        .max_age_secs(-1.0)
        .unwrap_err();
    assert!(
        negative.to_string().contains("cannot be negative"),
        "{negative}"
    );
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let error = ResourceAcceptanceRule::unconstrained()
            .max_age_secs(bad)
            .unwrap_err();
        assert!(
            error.to_string().contains("must be finite"),
            "{bad}: {error}"
        );
    }
    let rule = ResourceAcceptanceRule::default();
    assert_eq!(rule, ResourceAcceptanceRule::unconstrained());
    assert!(rule.allow_stale);
    assert_eq!(rule.max_age, None);
    assert_eq!(rule.minimum_authority_rank, None);
    assert!(rule.is_unconstrained());
    let rule = rule
        .max_age(Duration::from_secs(2))
        .allow_stale(false)
        .minimum_authority_rank(7);
    assert_eq!(rule.max_age, Some(Duration::from_secs(2)));
    assert!(!rule.allow_stale);
    assert_eq!(rule.minimum_authority_rank, Some(7));
    assert!(!rule.is_unconstrained());
}

#[test]
fn policies_need_at_least_one_constraint_or_requirement() {
    let empty = SnapshotAcceptancePolicy::builder().build().unwrap_err();
    assert!(
        empty.to_string().contains("at least one constraint"),
        "{empty}"
    );
    let idle = SnapshotAcceptancePolicy::builder()
        .default_rule(ResourceAcceptanceRule::unconstrained())
        .resource_rule(key("ns:a"), ResourceAcceptanceRule::unconstrained())
        .include_optional_resources(true)
        .build()
        .unwrap_err();
    assert!(
        idle.to_string().contains("at least one constraint"),
        "{idle}"
    );
    let grouped = grouped(None, SnapshotRequirement::any_of([key("ns:a")]).unwrap());
    assert_eq!(grouped.default_rule(), None);
    assert!(grouped.resource_rules().is_empty());
    assert_eq!(grouped.requirements().len(), 1);
}

#[test]
fn requirements_validate_their_groups() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let empty = SnapshotRequirement::any_of([]).unwrap_err();
    assert!(
        empty.to_string().contains("at least one resource key"),
        "{empty}"
    );
    assert!(SnapshotRequirement::all_of([]).is_err());
    let too_many = SnapshotRequirement::at_least(3, [a.clone(), b.clone()]).unwrap_err();
    assert!(
        too_many
            .to_string()
            .contains("between 1 and the number of keys"),
        "{too_many}"
    );
    let zero = SnapshotRequirement::at_least(0, [a.clone()]).unwrap_err();
    assert!(
        zero.to_string()
            .contains("between 1 and the number of keys"),
        "{zero}"
    );
    let dup = SnapshotRequirement::at_least(2, [a.clone(), a.clone()]).unwrap_err();
    assert!(
        dup.to_string().contains("between 1"),
        "duplicates count once: {dup}"
    );

    let group = SnapshotRequirement::at_least(2, [a.clone(), b.clone(), a.clone()])
        .unwrap()
        .named("quorum");
    assert_eq!(group.keys(), &[a.clone(), b.clone()]);
    assert_eq!(group.kind(), RequirementKind::AtLeast(2));
    assert_eq!(group.kind().as_str(), "at_least");
    assert_eq!(group.name(), Some("quorum"));
    assert_eq!(group.required_count(), 2);
    assert_eq!(
        SnapshotRequirement::any_of([a.clone(), b.clone()])
            .unwrap()
            .required_count(),
        1
    );
    let all = SnapshotRequirement::all_of([a, b]).unwrap();
    assert_eq!(all.required_count(), 2);
    assert_eq!(all.name(), None);
}

#[test]
fn referenced_keys_cover_rules_and_requirements_once() {
    let (a, b, c) = (key("ns:a"), key("ns:b"), key("ns:c"));
    let policy = SnapshotAcceptancePolicy::builder()
        .resource_rule(c.clone(), max_age(1.0))
        .resource_rule(a.clone(), max_age(1.0))
        .requirement(SnapshotRequirement::any_of([b.clone(), a.clone()]).unwrap())
        .build()
        .unwrap();
    assert_eq!(policy.referenced_keys(), vec![b, a, c]);
}

#[test]
fn requests_reject_acceptance_policies_reaching_outside() {
    let (a, b, outside) = (key("ns:a"), key("ns:b"), key("ns:outside"));
    let request = SnapshotRequest::new([a.clone()], [b.clone()]).unwrap();
    assert!(request.acceptance().is_none());
    let reaching = grouped(
        None,
        SnapshotRequirement::any_of([b.clone(), outside.clone()]).unwrap(),
    );
    let error = request.clone().with_acceptance(reaching).unwrap_err();
    assert!(
        error.to_string().contains("outside the snapshot request"),
        "{error}"
    );
    assert!(error.to_string().contains("ns:outside"), "{error}");
    let ruled = SnapshotAcceptancePolicy::builder()
        .resource_rule(outside, max_age(1.0))
        .build()
        .unwrap();
    assert!(request.clone().with_acceptance(ruled).is_err());

    let inside = SnapshotAcceptancePolicy::builder()
        .default_rule(max_age(1.0))
        .resource_rule(b.clone(), max_age(2.0))
        .requirement(SnapshotRequirement::all_of([a, b]).unwrap())
        .build()
        .unwrap();
    let accepted = request.with_acceptance(inside.clone()).unwrap();
    assert_eq!(accepted.acceptance(), Some(&inside));
}
