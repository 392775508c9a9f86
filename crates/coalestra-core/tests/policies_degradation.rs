//! Degradation (catalogue area 16 without a runtime, B22.34): policies,
//! classification into accepted / degraded / rejected, and result helpers.

use std::sync::Arc;
use std::time::Duration;

use coalestra_core::value::ValueParts;
use coalestra_core::{
    AcceptanceViolation, BuildError, BuildErrorKind, CoalestraError, ConsistencyViolation,
    Metadata, Payload, RequestDegradationPolicy, ResourceAcceptanceRule, ResourceError,
    ResourceKey, ResultState, Snapshot, SnapshotAcceptancePolicy, SnapshotConsistencyPolicy,
    SnapshotRequest, SnapshotResult, SnapshotValue, SourceError, SourceFailure, Timestamp,
};
use serde_json::json;

fn key(text: &str) -> ResourceKey {
    ResourceKey::parse(text).unwrap()
}

fn value(key: &ResourceKey, observed_at: f64) -> SnapshotValue {
    SnapshotValue::from_parts(ValueParts::new(
        key.clone(),
        Payload::new(42_i64),
        "rest",
        Timestamp::from_secs(observed_at),
    ))
}

fn failure(key: &ResourceKey) -> ResourceError {
    ResourceError::unresolved(
        key.clone(),
        vec![SourceFailure::new(
            "rest",
            SourceError::unavailable("down"),
            2,
        )],
    )
}

fn snapshot(values: &[(&ResourceKey, f64)], errors: &[&ResourceKey]) -> Snapshot {
    let mut parts = Snapshot::parts("s-1", Timestamp::from_secs(100.0));
    values
        .iter()
        .for_each(|(k, at)| parts.push_value(value(k, *at)));
    errors.iter().for_each(|k| parts.push_error(failure(k)));
    parts.finish()
}

fn names(actions: &[Arc<str>]) -> Vec<&str> {
    actions.iter().map(|a| &**a).collect()
}

fn skew(snap: &Snapshot, keys: &[ResourceKey]) -> ConsistencyViolation {
    SnapshotConsistencyPolicy::new(Duration::from_secs(1))
        .evaluate(snap, keys, &[])
        .expect("skewed")
}

fn too_old(snap: &Snapshot, keys: &[ResourceKey]) -> Vec<AcceptanceViolation> {
    SnapshotAcceptancePolicy::builder()
        .default_rule(ResourceAcceptanceRule::unconstrained().max_age(Duration::from_secs(1)))
        .build()
        .unwrap()
        .evaluate(snap, keys, &[], Timestamp::from_secs(100.0), &|_| {
            Duration::MAX
        })
}

fn classify(
    policy: &RequestDegradationPolicy,
    snap: &Snapshot,
    request: &SnapshotRequest,
) -> SnapshotResult {
    SnapshotResult::classify(policy, snap.clone(), request, None, Vec::new(), None)
}

#[test]
fn default_policy_values() {
    let policy = RequestDegradationPolicy::default();
    assert_eq!(policy.minimum_resolved_resources(), 1);
    assert_eq!(policy.minimum_resolved_required_resources(), 0);
    assert!(!policy.is_fail_closed());
    assert!(!policy.reject_on_required_error());
    assert!(!policy.reject_on_optional_error());
    assert!(!policy.reject_on_consistency_violation());
    assert!(!policy.reject_on_acceptance_violation());
    assert_eq!(
        names(policy.accepted_actions()),
        ["read", "evaluate", "act"]
    );
    assert_eq!(names(policy.degraded_actions()), ["read", "evaluate"]);
    assert!(policy.rejected_actions().is_empty());
    assert!(policy.metadata().is_empty());
    assert_eq!(RequestDegradationPolicy::builder().build().unwrap(), policy);
    assert_eq!(
        names(policy.actions_for(ResultState::Degraded)),
        ["read", "evaluate"]
    );
}

#[test]
fn action_names_are_trimmed_and_deduplicated_in_order() {
    let policy = RequestDegradationPolicy::builder()
        .accepted_actions(["read", " read ", "act", "read"])
        .degraded_actions(Vec::<String>::new())
        .rejected_actions(["alert".to_owned()])
        .build()
        .unwrap();
    assert_eq!(names(policy.accepted_actions()), ["read", "act"]);
    assert!(policy.degraded_actions().is_empty());
    assert_eq!(names(policy.rejected_actions()), ["alert"]);
}

#[test]
fn empty_action_names_are_rejected() {
    for (empty, field) in [("", "accepted_actions"), ("   ", "accepted_actions")] {
        let error = RequestDegradationPolicy::builder()
            .accepted_actions(["read", empty])
            .build()
            .unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cannot contain empty action names"),
            "{error}"
        );
        assert!(error.to_string().contains(field), "{error}");
    }
    let error = RequestDegradationPolicy::builder()
        .rejected_actions([""])
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("rejected_actions"), "{error}");
}

#[test]
fn policy_metadata_is_read_only_and_copied_into_results() {
    let metadata = Metadata::from_iter([("k", "v")]);
    let policy = RequestDegradationPolicy::builder()
        .metadata(metadata.clone())
        .build()
        .unwrap();
    let changed = policy.metadata().with("k", "changed");
    assert_eq!(policy.metadata().get("k").unwrap().as_str(), Some("v"));
    assert_eq!(changed.get("k").unwrap().as_str(), Some("changed"));
    let a = key("ns:a");
    let result = classify(
        &policy,
        &snapshot(&[(&a, 100.0)], &[]),
        &SnapshotRequest::required([a]).unwrap(),
    );
    assert_eq!(result.metadata(), &metadata);
    assert_eq!(result.to_json()["metadata"], json!({"k": "v"}));
}

#[test]
fn fail_closed_factory_rejects_everything() {
    let policy = RequestDegradationPolicy::fail_closed();
    assert!(policy.is_fail_closed());
    assert!(policy.reject_on_required_error());
    assert!(policy.reject_on_optional_error());
    assert!(policy.reject_on_consistency_violation());
    assert!(policy.reject_on_acceptance_violation());
    assert!(policy.degraded_actions().is_empty());
    assert_eq!(
        names(policy.accepted_actions()),
        ["read", "evaluate", "act"]
    );
}

#[test]
fn read_only_and_risk_reduction_factories() {
    let read_only = RequestDegradationPolicy::read_only_degraded();
    assert!(!read_only.is_fail_closed());
    assert!(!names(read_only.accepted_actions()).contains(&"act"));
    assert!(names(read_only.degraded_actions()).contains(&"read"));

    let risk = RequestDegradationPolicy::risk_reduction();
    assert_eq!(
        names(risk.accepted_actions()),
        ["read", "evaluate", "cancel_orders", "reduce_only_exit"]
    );
    assert_eq!(
        names(risk.degraded_actions()),
        ["read", "cancel_orders", "reduce_only_exit"]
    );
    assert!(!risk.reject_on_consistency_violation());
    let tweaked = risk
        .to_builder()
        .minimum_resolved_required_resources(2)
        .build()
        .unwrap();
    assert_eq!(tweaked.minimum_resolved_required_resources(), 2);
    assert_eq!(tweaked.accepted_actions(), risk.accepted_actions());
}

#[test]
fn result_states_parse_render_and_serialize() {
    for (state, text) in [
        (ResultState::Accepted, "accepted"),
        (ResultState::Degraded, "degraded"),
        (ResultState::Rejected, "rejected"),
    ] {
        assert_eq!(text.parse::<ResultState>().unwrap(), state);
        assert_eq!(state.as_str(), text);
        assert_eq!(state.to_string(), text);
        assert_eq!(serde_json::to_value(state).unwrap(), json!(text));
    }
    assert!("ACCEPTED?".parse::<ResultState>().is_err());
}

#[test]
fn all_resolved_is_accepted() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(&[(&a, 100.0), (&b, 100.0)], &[]);
    let request = SnapshotRequest::new([a.clone()], [b]).unwrap();
    let result = classify(&RequestDegradationPolicy::default(), &snap, &request);
    assert_eq!(result.state(), ResultState::Accepted);
    assert!(result.is_accepted() && !result.is_degraded() && !result.is_rejected());
    assert_eq!(*result.snapshot().value::<i64>(&a).unwrap(), 42);
    assert!(result.allows("read") && result.allows("act"));
    assert!(!result.allows("cancel_orders"));
    assert_eq!(result.reason(), "accepted");
    assert!(result.error().is_none());
    assert!(result.raise_for_rejected().is_ok());
    assert_eq!(result.require_accepted().unwrap().id(), "s-1");
}

#[test]
fn an_optional_failure_degrades() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(&[(&a, 100.0)], &[&b]);
    let request = SnapshotRequest::new([a], [b.clone()]).unwrap();
    let result = classify(&RequestDegradationPolicy::default(), &snap, &request);
    assert_eq!(result.state(), ResultState::Degraded);
    assert!(!result.is_accepted() && result.is_degraded() && !result.is_rejected());
    assert_eq!(result.optional_errors().len(), 1);
    assert_eq!(result.optional_errors()[0].key(), &b);
    assert!(result.required_errors().is_empty());
    assert!(result.allows("read") && !result.allows("act"));
    assert_eq!(result.reason(), "optional_errors");
    assert!(result.raise_for_rejected().is_ok());

    let error = result.require_accepted().unwrap_err();
    let build = error.as_build().expect("a build error");
    assert_eq!(build.kind(), BuildErrorKind::Resolution);
    assert_eq!(build.errors().len(), 1);
    assert!(build.snapshot().is_some());

    let fail_closed = classify(&RequestDegradationPolicy::fail_closed(), &snap, &request);
    assert!(fail_closed.is_rejected());
    assert!(fail_closed.allowed_actions().is_empty());
}

#[test]
fn nothing_resolved_is_rejected() {
    let a = key("ns:a");
    let snap = snapshot(&[], &[&a]);
    let request = SnapshotRequest::required([a.clone()]).unwrap();
    let build = BuildError::new(
        BuildErrorKind::Resolution,
        vec![failure(&a)],
        Some(snap.clone()),
    );
    let result = SnapshotResult::classify(
        &RequestDegradationPolicy::default(),
        snap,
        &request,
        None,
        Vec::new(),
        Some(build.clone().into()),
    );
    assert_eq!(result.state(), ResultState::Rejected);
    assert!(!result.is_accepted() && !result.is_degraded() && result.is_rejected());
    assert!(result.allowed_actions().is_empty());
    assert_eq!(result.reason(), "required_errors");
    assert_eq!(result.required_errors()[0].key(), &a);
    let raised = result.raise_for_rejected().unwrap_err();
    assert_eq!(raised.to_string(), build.to_string());
    assert_eq!(result.error().unwrap().to_string(), build.to_string());
}

#[test]
fn a_required_error_alone_degrades_under_the_default_policy() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(&[(&b, 100.0)], &[&a]);
    let request = SnapshotRequest::new([a.clone()], [b]).unwrap();
    let build = BuildError::new(
        BuildErrorKind::Resolution,
        vec![failure(&a)],
        Some(snap.clone()),
    );
    let result = SnapshotResult::classify(
        &RequestDegradationPolicy::default(),
        snap.clone(),
        &request,
        None,
        Vec::new(),
        Some(build.into()),
    );
    assert_eq!(result.state(), ResultState::Degraded);
    assert_eq!(result.reason(), "required_errors");
    assert!(
        result.error().is_none(),
        "the error is kept only when rejected"
    );

    let rejecting = RequestDegradationPolicy::builder()
        .reject_on_required_error(true)
        .build()
        .unwrap();
    let result = classify(&rejecting, &snap, &request);
    assert!(result.is_rejected());
    assert_eq!(result.required_errors()[0].key(), &a);
    let fallback = result.raise_for_rejected().unwrap_err();
    assert_eq!(
        fallback.as_build().unwrap().kind(),
        BuildErrorKind::Resolution
    );
    assert_eq!(fallback.as_build().unwrap().errors()[0].key(), &a);

    let minimum = RequestDegradationPolicy::builder()
        .minimum_resolved_required_resources(1)
        .build()
        .unwrap();
    assert!(classify(&minimum, &snap, &request).is_rejected());
}

#[test]
fn reasons_join_every_problem_in_a_fixed_order() {
    let (a, b, c, d) = (key("ns:a"), key("ns:b"), key("ns:c"), key("ns:d"));
    let snap = snapshot(&[(&c, 90.0), (&d, 99.5)], &[&a, &b]);
    let request = SnapshotRequest::new([a, c.clone(), d.clone()], [b]).unwrap();
    let consistency = skew(&snap, &[c.clone(), d.clone()]);
    let acceptance = too_old(&snap, &[c, d]);
    let result = SnapshotResult::classify(
        &RequestDegradationPolicy::default(),
        snap,
        &request,
        Some(consistency.clone()),
        acceptance.clone(),
        None,
    );
    assert!(result.is_degraded());
    assert_eq!(
        result.reason(),
        "required_errors, optional_errors, consistency_violation, acceptance_violation"
    );
    assert_eq!(result.consistency_violation(), Some(&consistency));
    assert_eq!(result.acceptance_violations(), acceptance.as_slice());
}

#[test]
fn policy_violations_degrade_or_reject_per_flag() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(&[(&a, 90.0), (&b, 100.0)], &[]);
    let request = SnapshotRequest::required([a.clone(), b.clone()]).unwrap();
    let keys = [a, b];
    let run = |policy: &RequestDegradationPolicy, consistency: bool, acceptance: bool| {
        SnapshotResult::classify(
            policy,
            snap.clone(),
            &request,
            consistency.then(|| skew(&snap, &keys)),
            if acceptance {
                too_old(&snap, &keys)
            } else {
                Vec::new()
            },
            None,
        )
    };
    let default = RequestDegradationPolicy::default();
    assert_eq!(run(&default, true, false).reason(), "consistency_violation");
    assert!(run(&default, true, false).is_degraded());
    assert_eq!(run(&default, false, true).reason(), "acceptance_violation");
    assert!(run(&default, false, true).is_degraded());

    let strict = RequestDegradationPolicy::builder()
        .reject_on_consistency_violation(true)
        .build()
        .unwrap();
    assert!(run(&strict, true, false).is_rejected());
    assert!(run(&strict, false, true).is_degraded());
    let strict = RequestDegradationPolicy::builder()
        .reject_on_acceptance_violation(true)
        .build()
        .unwrap();
    assert!(run(&strict, false, true).is_rejected());
    assert!(run(&RequestDegradationPolicy::risk_reduction(), true, false).is_degraded());
    assert!(run(&RequestDegradationPolicy::fail_closed(), true, false).is_rejected());
    assert!(run(&RequestDegradationPolicy::fail_closed(), false, false).is_accepted());

    // Without a stored error, the fallback follows consistency > acceptance.
    let both = run(&RequestDegradationPolicy::fail_closed(), true, true);
    let error = both.raise_for_rejected().unwrap_err();
    assert_eq!(
        error.as_build().unwrap().kind(),
        BuildErrorKind::Consistency
    );
    let only_acceptance = run(&RequestDegradationPolicy::fail_closed(), false, true);
    let error = only_acceptance.raise_for_rejected().unwrap_err();
    let build = error.as_build().unwrap();
    assert_eq!(build.kind(), BuildErrorKind::Acceptance);
    assert_eq!(
        build.acceptance_violations(),
        only_acceptance.acceptance_violations()
    );
}

#[test]
fn too_few_resolved_resources_reject_even_without_errors() {
    let a = key("ns:a");
    let snap = snapshot(&[(&a, 100.0)], &[]);
    let request = SnapshotRequest::required([a]).unwrap();
    let policy = RequestDegradationPolicy::builder()
        .minimum_resolved_resources(2)
        .build()
        .unwrap();
    let result = classify(&policy, &snap, &request);
    assert!(result.is_rejected());
    assert_eq!(result.reason(), "insufficient_resolved_resources");
    let error = result.require_accepted().unwrap_err();
    assert_eq!(error.as_build().unwrap().kind(), BuildErrorKind::Resolution);
}

#[test]
fn build_errors_supply_missing_details() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let empty = Snapshot::parts("s-2", Timestamp::from_secs(100.0)).finish();
    let request = SnapshotRequest::required([a.clone()]).unwrap();
    let strict = BuildError::new(BuildErrorKind::Resolution, vec![failure(&a)], None);
    let result = SnapshotResult::classify(
        &RequestDegradationPolicy::default(),
        empty,
        &request,
        None,
        Vec::new(),
        Some(strict.into()),
    );
    assert!(result.is_rejected());
    assert_eq!(
        result.required_errors()[0].key(),
        &a,
        "taken from the build error"
    );

    let snap = snapshot(&[(&a, 90.0), (&b, 100.0)], &[]);
    let request = SnapshotRequest::required([a.clone(), b.clone()]).unwrap();
    let violation = skew(&snap, &[a, b]);
    let raised = BuildError::consistency(violation.clone(), Some(snap.clone()));
    let result = SnapshotResult::classify(
        &RequestDegradationPolicy::default(),
        snap,
        &request,
        None,
        Vec::new(),
        Some(raised.into()),
    );
    assert!(result.is_degraded());
    assert_eq!(result.consistency_violation(), Some(&violation));
    assert!(
        result.required_errors().is_empty(),
        "policy rejections are not resource errors"
    );
}

#[test]
fn other_errors_reject_with_their_type_name() {
    let a = key("ns:a");
    let empty = Snapshot::parts("s-3", Timestamp::from_secs(100.0)).finish();
    let request = SnapshotRequest::required([a]).unwrap();
    let result = SnapshotResult::classify(
        &RequestDegradationPolicy::default(),
        empty,
        &request,
        None,
        Vec::new(),
        Some(CoalestraError::Closed("snapshot session")),
    );
    assert!(result.is_rejected());
    assert_eq!(result.reason(), "SessionClosedError");
    assert!(result.snapshot().is_empty());
    assert!(result.error().unwrap().is_closed());
    assert!(result.raise_for_rejected().unwrap_err().is_closed());
    assert!(result.require_accepted().unwrap_err().is_closed());
}

#[test]
fn results_serialize_to_a_summary() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let snap = snapshot(&[(&a, 100.0)], &[&b]);
    let request = SnapshotRequest::new([a], [b]).unwrap();
    let result = classify(&RequestDegradationPolicy::default(), &snap, &request);
    assert_eq!(
        result.to_json(),
        json!({
            "state": "degraded",
            "snapshot_id": "s-1",
            "resources": 1,
            "errors": 1,
            "allowed_actions": ["read", "evaluate"],
            "reason": "optional_errors",
            "required_errors": {},
            "optional_errors": {"ns:b": "ResourceResolutionError"},
            "acceptance_violations": [],
            "consistency_violation": null,
            "metadata": {},
        })
    );

    let (c, d) = (key("ns:c"), key("ns:d"));
    let snap = snapshot(&[(&c, 90.0), (&d, 100.0)], &[]);
    let request = SnapshotRequest::required([c.clone(), d.clone()]).unwrap();
    let violation = skew(&snap, &[c, d]);
    let result = SnapshotResult::classify(
        &RequestDegradationPolicy::default(),
        snap,
        &request,
        Some(violation.clone()),
        Vec::new(),
        None,
    );
    let json = result.to_json();
    assert_eq!(
        json["consistency_violation"],
        serde_json::to_value(&violation).unwrap()
    );
    assert_eq!(json["consistency_violation"]["oldest_key"], json!("ns:c"));
    assert_eq!(result.clone().into_snapshot().len(), 2);
}
