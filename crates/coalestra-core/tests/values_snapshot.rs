//! Payloads, snapshot values, snapshots, metadata and requests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use coalestra_core::value::ValueParts;
use coalestra_core::{
    BuildOptions, Metadata, MetadataValue, Payload, ResourceError, ResourceKey, Snapshot,
    SnapshotRequest, SnapshotValue, SourceError, SourceFailure, Timestamp, ValueError, Version,
};

fn key(text: &str) -> ResourceKey {
    ResourceKey::parse(text).unwrap()
}

fn ts(secs: f64) -> Timestamp {
    Timestamp::from_secs(secs)
}

fn value_of<T: std::any::Any + Send + Sync>(k: &str, payload: T, observed: f64) -> SnapshotValue {
    SnapshotValue::from_parts(ValueParts::new(
        key(k),
        Payload::new(payload),
        "rest",
        ts(observed),
    ))
}

fn failed(k: &str) -> ResourceError {
    let failure = SourceFailure::new("rest", SourceError::unavailable("down"), 1);
    ResourceError::unresolved(key(k), vec![failure])
}

#[test]
fn payloads_give_typed_access_and_name_both_types_on_mismatch() {
    let payload = Payload::new(42_i32);
    assert_eq!(*payload.get::<i32>().unwrap(), 42);
    assert!(payload.is::<i32>());
    assert!(!payload.is::<i64>());
    assert_eq!(payload.type_name(), "i32");
    assert_eq!(*payload.get_arc::<i32>().unwrap(), 42);

    let mismatch = payload.get::<String>().unwrap_err();
    assert_eq!(mismatch.found, "i32");
    assert!(
        mismatch.expected.ends_with("String"),
        "{}",
        mismatch.expected
    );
    assert_eq!(mismatch.resource, None);
    let message = mismatch.to_string();
    assert!(
        message.contains("i32") && message.contains("String"),
        "{message}"
    );
    assert!(payload.get_arc::<Vec<u8>>().is_err());
    assert_eq!(format!("{payload:?}"), "Payload<i32>");
}

#[test]
fn payload_access_never_panics_whatever_type_is_asked() {
    let payloads = [
        Payload::new(()),
        Payload::new("text".to_owned()),
        Payload::new(vec![1_u8, 2]),
        Payload::new(BTreeMap::<String, f64>::new()),
    ];
    for payload in &payloads {
        let hits = [
            payload.get::<()>().is_ok(),
            payload.get::<String>().is_ok(),
            payload.get::<Vec<u8>>().is_ok(),
            payload.get::<BTreeMap<String, f64>>().is_ok(),
            payload.get::<&str>().is_ok(),
        ];
        assert_eq!(hits.iter().filter(|hit| **hit).count(), 1, "{payload:?}");
    }
}

#[test]
fn payload_clones_share_one_allocation() {
    let shared = Arc::new(vec![1, 2, 3]);
    let payload = Payload::from_arc(shared.clone());
    let clone = payload.clone();
    assert!(payload.ptr_eq(&clone));
    assert!(Arc::ptr_eq(
        &payload.get_arc::<Vec<i32>>().unwrap(),
        &shared
    ));
    assert!(!payload.ptr_eq(&Payload::new(vec![1, 2, 3])));
}

#[test]
fn snapshot_values_expose_their_parts() {
    let version = Version::from_raw(0xabc);
    let dependency = (key("ns:dep"), Version::from_raw(7));
    let mut parts = ValueParts::new(key("ns:k"), Payload::new(1.5_f64), "rest", ts(100.0));
    parts.fetched_at = Some(ts(102.5));
    parts.metadata = Metadata::new().with("transport", "test");
    parts.authority_rank = 4;
    parts.version = Some(version);
    parts.dependency_versions = vec![dependency.clone()];
    let value = SnapshotValue::from_parts(parts);

    assert_eq!(value.key(), &key("ns:k"));
    assert_eq!(*value.value::<f64>().unwrap(), 1.5);
    assert_eq!(value.source(), "rest");
    assert_eq!(value.observed_at(), ts(100.0));
    assert_eq!(value.fetched_at(), ts(102.5));
    assert_eq!(value.age(), Duration::from_millis(2_500));
    assert_eq!(value.age_at(ts(110.0)), Duration::from_secs(10));
    assert_eq!(value.age_at(ts(90.0)), Duration::ZERO, "never negative");
    assert_eq!(
        value
            .metadata()
            .get("transport")
            .and_then(MetadataValue::as_str),
        Some("test")
    );
    assert_eq!(value.authority_rank(), 4);
    assert_eq!(value.version(), version);
    assert_eq!(value.dependency_versions(), &[dependency]);
    assert!(!value.is_stale() && !value.is_from_cache() && !value.is_coalesced());
    assert_eq!(value.attempts(), 0);
    assert_eq!(value.latency(), Duration::ZERO);

    let mismatch = value.value::<String>().unwrap_err();
    assert_eq!(mismatch.resource.as_deref(), Some("ns:k"));
    assert!(
        mismatch
            .to_string()
            .starts_with("resource ns:k contains f64"),
        "{mismatch}"
    );
}

#[test]
fn defaults_fill_fetch_time_and_a_fresh_version() {
    let a = value_of("ns:a", 1_u8, 50.0);
    let b = value_of("ns:a", 1_u8, 50.0);
    assert_eq!(a.fetched_at(), a.observed_at());
    assert_eq!(a.age(), Duration::ZERO);
    assert_ne!(
        a.version(),
        b.version(),
        "every revision gets its own version"
    );
    assert_eq!(a.version().to_string().len(), 32);
    assert!(!a.same_revision(&b));

    let mut parts = ValueParts::new(key("ns:a"), Payload::new(()), "rest", ts(50.0));
    parts.fetched_at = Some(ts(40.0));
    assert_eq!(
        SnapshotValue::from_parts(parts).age(),
        Duration::ZERO,
        "never negative"
    );
}

#[test]
fn a_cached_copy_keeps_the_revision_and_describes_the_cache_read() {
    let fetched = value_of("ns:k", 9_u32, 100.0)
        .with_call(ts(100.5), Duration::from_millis(30), 2)
        .with_note("refresh", "scheduled");
    assert_eq!(fetched.latency(), Duration::from_millis(30));
    assert_eq!(fetched.attempts(), 2);
    assert_eq!(
        fetched
            .notes()
            .get("refresh")
            .and_then(MetadataValue::as_str),
        Some("scheduled")
    );

    let cached = fetched.as_cached(ts(104.0), true);
    assert!(cached.is_from_cache());
    assert!(cached.is_stale());
    assert_eq!(cached.latency(), Duration::ZERO);
    assert_eq!(cached.attempts(), 0);
    assert_eq!(cached.fetched_at(), ts(104.0));
    assert_eq!(cached.age(), Duration::from_secs(4));
    assert_eq!(cached.version(), fetched.version());
    assert!(cached.same_revision(&fetched));
    assert!(cached.notes().is_empty(), "notes describe one read only");
    assert!(cached.payload().ptr_eq(fetched.payload()));
    assert!(!fetched.is_from_cache(), "the original read is unchanged");

    let marked = cached
        .clone()
        .with_stale(false)
        .with_coalesced(true)
        .with_refresh_scheduled(true);
    assert!(!marked.is_stale() && marked.is_coalesced() && marked.refresh_scheduled());
    assert!(cached.is_stale() && !cached.is_coalesced());
}

fn mixed_snapshot() -> Snapshot {
    Snapshot::parts("snap-1", ts(200.0))
        .value(value_of("ns:z", 1_i32, 199.0))
        .value(value_of("ns:a", "text".to_owned(), 199.0).with_stale(true))
        .error(failed("ns:failed"))
        .value(value_of("ns:m", 3_i32, 199.0))
        .finish()
}

#[test]
fn snapshots_answer_typed_lookups_and_tell_missing_failed_and_mistyped_apart() {
    let s = mixed_snapshot();
    assert_eq!(s.id(), "snap-1");
    assert_eq!(s.created_at(), ts(200.0));
    assert_eq!(*s.value::<i32>(&key("ns:z")).unwrap(), 1);
    assert_eq!(
        s.maybe_value::<String>(&key("ns:a")).map(String::as_str),
        Some("text")
    );
    assert!(s.get(&key("ns:m")).is_some());
    assert!(s.contains(&key("ns:m")));

    let missing = s.value::<i32>(&key("ns:absent")).unwrap_err();
    assert!(missing.is_missing(), "{missing}");
    assert!(
        missing.to_string().contains("not in the snapshot"),
        "{missing}"
    );
    let failure = s.value::<i32>(&key("ns:failed")).unwrap_err();
    assert!(matches!(failure, ValueError::Failed(ref e) if e.key() == &key("ns:failed")));
    assert!(!failure.is_missing() && !failure.is_type_mismatch());
    let mistyped = s.value::<String>(&key("ns:z")).unwrap_err();
    assert!(mistyped.is_type_mismatch(), "{mistyped}");

    assert_eq!(s.maybe_value::<i32>(&key("ns:absent")), None);
    assert_eq!(s.maybe_value::<i32>(&key("ns:failed")), None);
    assert_eq!(s.maybe_value::<String>(&key("ns:z")), None);
    assert!(s.get(&key("ns:failed")).is_none());
    assert!(!s.contains(&key("ns:failed")));
    assert!(s.error(&key("ns:failed")).is_some());
    assert!(s.error(&key("ns:z")).is_none());
    assert!(s.error(&key("ns:absent")).is_none());
}

#[test]
fn snapshots_keep_insertion_order_and_report_stale_keys_and_completeness() {
    let s = mixed_snapshot();
    let keys: Vec<String> = s.keys().map(ToString::to_string).collect();
    assert_eq!(keys, ["ns:z", "ns:a", "ns:m"], "request order, not sorted");
    assert_eq!(s.values().len(), 3);
    assert_eq!(s.len(), 3);
    assert!(!s.is_empty());
    assert_eq!(
        s.stale_keys().cloned().collect::<Vec<_>>(),
        vec![key("ns:a")]
    );
    assert!(!s.is_complete());
    assert_eq!(s.errors().len(), 1);

    let empty = Snapshot::parts("e", ts(0.0)).finish();
    assert!(empty.is_empty() && empty.is_complete());
    assert!(empty.diagnostics().is_none());
}

#[test]
fn a_later_entry_for_a_key_replaces_the_earlier_one() {
    let mut parts = mixed_snapshot().to_parts();
    parts.push_value(value_of("ns:failed", 5_i32, 199.0));
    let recovered = parts.finish();
    assert!(recovered.is_complete(), "the value replaced the error");
    assert_eq!(*recovered.value::<i32>(&key("ns:failed")).unwrap(), 5);

    let mut parts = recovered.to_parts();
    parts.push_value(value_of("ns:z", 10_i32, 199.5));
    parts.push_error(failed("ns:a"));
    let changed = parts.finish();
    let keys: Vec<String> = changed.keys().map(ToString::to_string).collect();
    assert_eq!(keys, ["ns:z", "ns:m", "ns:failed"]);
    assert_eq!(
        *changed.value::<i32>(&key("ns:z")).unwrap(),
        10,
        "replaced in place"
    );
    assert!(changed.error(&key("ns:a")).is_some());
    assert!(changed.stale_keys().next().is_none());
    assert_eq!(
        *changed.value::<i32>(&key("ns:m")).unwrap(),
        3,
        "index rebuilt"
    );

    let mut parts = changed.to_parts();
    parts.remove(&key("ns:m"));
    parts.remove(&key("ns:a"));
    let trimmed = parts.finish();
    assert!(trimmed.value::<i32>(&key("ns:m")).unwrap_err().is_missing());
    assert_eq!(*trimmed.value::<i32>(&key("ns:failed")).unwrap(), 5);
    assert!(trimmed.is_complete());
    assert_eq!(
        *recovered.value::<i32>(&key("ns:z")).unwrap(),
        1,
        "snapshots are immutable"
    );
}

#[test]
fn metadata_changes_produce_new_maps() {
    let original = Metadata::new().with("transport", "test");
    let changed = original.with("attempt", 2_i64).with("transport", "grpc");
    assert_eq!(original.len(), 1);
    assert_eq!(
        original.get("transport").and_then(MetadataValue::as_str),
        Some("test")
    );
    assert_eq!(
        changed.get("transport").and_then(MetadataValue::as_str),
        Some("grpc")
    );
    assert_eq!(
        changed.get("attempt").and_then(MetadataValue::as_f64),
        Some(2.0)
    );
    let names: Vec<&str> = changed.iter().map(|(k, _)| k).collect();
    assert_eq!(names, ["attempt", "transport"], "name order");

    let merged = original.merged(&Metadata::from_iter([("skew", 0.5_f64)]));
    assert_eq!(merged.len(), 2);
    assert_eq!(original.len(), 1);
    assert!(Metadata::new().is_empty());
    assert_eq!(
        Metadata::from_iter(Vec::<(&str, bool)>::new()),
        Metadata::new()
    );
    assert_eq!(MetadataValue::from(true).as_bool(), Some(true));
    assert_eq!(MetadataValue::from("x").to_string(), "x");
    assert_eq!(MetadataValue::from(1.5).as_str(), None);
}

#[test]
fn requests_reject_overlap_and_emptiness_and_drop_duplicates_in_order() {
    let (a, b, c) = (key("ns:a"), key("ns:b"), key("ns:c"));
    let request =
        SnapshotRequest::new([b.clone(), a.clone(), b.clone()], [c.clone(), c.clone()]).unwrap();
    assert_eq!(request.required_keys(), &[b.clone(), a.clone()]);
    assert_eq!(request.optional_keys(), std::slice::from_ref(&c));
    assert_eq!(
        request.keys().cloned().collect::<Vec<_>>(),
        vec![b.clone(), a.clone(), c.clone()]
    );
    assert!(request.is_required(&a));
    assert!(!request.is_required(&c));

    let overlap = SnapshotRequest::new([a.clone()], [b.clone(), a.clone()]).unwrap_err();
    assert!(
        overlap.to_string().contains("both required and optional"),
        "{overlap}"
    );
    let empty = SnapshotRequest::required([]).unwrap_err();
    assert!(
        empty.to_string().contains("at least one resource key"),
        "{empty}"
    );
    let optional_only = SnapshotRequest::new([], [c.clone()]).expect("optional-only is a request");
    assert!(optional_only.required_keys().is_empty());
    assert_eq!(
        optional_only.keys().cloned().collect::<Vec<_>>(),
        vec![c.clone()]
    );
    assert!(!optional_only.is_required(&c));
    let required_only = SnapshotRequest::required([a.clone(), a.clone()]).unwrap();
    assert!(required_only.optional_keys().is_empty());
    assert_eq!(required_only.keys().cloned().collect::<Vec<_>>(), vec![a]);
}

#[test]
fn build_options_default_to_strict_without_deadline() {
    let options = BuildOptions::new();
    assert!(options.strict);
    assert_eq!(options.deadline, None);
    assert_eq!(options.snapshot_id, None);
    let custom = options
        .deadline(Duration::from_secs(2))
        .snapshot_id("s-9")
        .strict(false);
    assert_eq!(custom.deadline, Some(Duration::from_secs(2)));
    assert_eq!(custom.snapshot_id.as_deref(), Some("s-9"));
    assert!(!custom.strict);
}

// Small snapshots find keys by scanning and large ones through an index;
// both must behave the same across replacements, value/error swaps and
// removals, including while a snapshot grows past the scanning limit.
#[test]
fn snapshot_assembly_matches_a_simple_model_at_every_size() {
    enum Op {
        Value(usize, i64),
        Error(usize),
        Remove(usize),
    }
    let mut seed = 0x9E37_79B9_7F4A_7C15_u64;
    let mut next = move |bound: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        (seed >> 33) % bound
    };
    for keys in [2_usize, 5, 8, 9, 12, 30, 100, 300] {
        for round in 0..40 {
            let ops: Vec<Op> = (0..keys * 3)
                .map(|_| {
                    let k = next(keys as u64) as usize;
                    match next(10) {
                        0..=5 => Op::Value(k, next(1_000) as i64),
                        6..=8 => Op::Error(k),
                        _ => Op::Remove(k),
                    }
                })
                .collect();
            let name = |k: usize| format!("ns:k{k}");
            let mut parts = Snapshot::parts("model", ts(10.0));
            if round % 2 == 0 {
                parts.reserve(keys);
            }
            // The model: values and errors in order, as documented.
            let mut values: Vec<(usize, i64)> = Vec::new();
            let mut errors: Vec<usize> = Vec::new();
            for op in &ops {
                match *op {
                    Op::Value(k, v) => {
                        parts.push_value(value_of(&name(k), v, 9.0));
                        if let Some(slot) = values.iter_mut().find(|(key, _)| *key == k) {
                            slot.1 = v;
                        } else {
                            errors.retain(|&e| e != k);
                            values.push((k, v));
                        }
                    }
                    Op::Error(k) => {
                        parts.push_error(failed(&name(k)));
                        if !errors.contains(&k) {
                            values.retain(|&(key, _)| key != k);
                            errors.push(k);
                        }
                    }
                    Op::Remove(k) => {
                        parts.remove(&key(&name(k)));
                        values.retain(|&(key, _)| key != k);
                        errors.retain(|&e| e != k);
                    }
                }
            }
            let snapshot = parts.finish();
            let got: Vec<(String, i64)> = snapshot
                .values()
                .map(|v| (v.key().to_string(), *v.value::<i64>().unwrap()))
                .collect();
            let want: Vec<(String, i64)> = values
                .iter()
                .map(|&(k, v)| (key(&name(k)).to_string(), v))
                .collect();
            assert_eq!(got, want, "values, {keys} keys, round {round}");
            let got_errors: Vec<String> = snapshot
                .errors()
                .iter()
                .map(|e| e.key().to_string())
                .collect();
            let want_errors: Vec<String> =
                errors.iter().map(|&k| key(&name(k)).to_string()).collect();
            assert_eq!(
                got_errors, want_errors,
                "errors, {keys} keys, round {round}"
            );
            for k in 0..keys {
                let key = key(&name(k));
                let value = values.iter().find(|(v, _)| *v == k).map(|(_, v)| *v);
                assert_eq!(snapshot.maybe_value::<i64>(&key).copied(), value);
                assert_eq!(snapshot.error(&key).is_some(), errors.contains(&k));
                assert_eq!(snapshot.contains(&key), value.is_some());
            }
        }
    }
}

// Adding a whole list of values gives the snapshot that adding them one at
// a time gives: same order, same lookups, a later value for a repeated key
// replacing the earlier one, on empty and on non-empty parts, small or large.
#[test]
fn pushing_a_list_of_values_matches_pushing_them_one_at_a_time() {
    let summary = |snapshot: &Snapshot, names: &[String]| {
        let values: Vec<(String, i64)> = snapshot
            .values()
            .map(|v| (v.key().to_string(), *v.value::<i64>().unwrap()))
            .collect();
        let lookups: Vec<Option<i64>> = names
            .iter()
            .map(|n| snapshot.maybe_value::<i64>(&key(n)).copied())
            .collect();
        let errors: Vec<String> = snapshot
            .errors()
            .iter()
            .map(|e| e.key().to_string())
            .collect();
        (values, lookups, errors)
    };
    for count in [0_usize, 1, 5, 8, 9, 40, 300] {
        for repeat in [None, Some(0), Some(count / 2)] {
            for earlier_error in [false, true] {
                let names: Vec<String> = (0..count).map(|i| format!("ns:k{i}")).collect();
                let mut list: Vec<SnapshotValue> = names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| value_of(n, i as i64, 5.0))
                    .collect();
                if let Some(at) = repeat.filter(|_| count > 0) {
                    list.push(value_of(&names[at], -1_i64, 6.0));
                }
                let start = || {
                    let parts = Snapshot::parts("list", ts(10.0));
                    if earlier_error {
                        parts.error(failed("ns:k0")).error(failed("ns:other"))
                    } else {
                        parts
                    }
                };
                let mut one_by_one = start();
                list.iter().for_each(|v| one_by_one.push_value(v.clone()));
                let mut at_once = start();
                at_once.push_values(list);
                let (want, got) = (one_by_one.finish(), at_once.finish());
                let mut probes = names.clone();
                probes.push("ns:other".to_owned());
                assert_eq!(
                    summary(&got, &probes),
                    summary(&want, &probes),
                    "{count} values, repeat {repeat:?}, earlier error {earlier_error}"
                );
            }
        }
    }
}
