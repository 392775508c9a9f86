//! Shared builders for the integration tests.
#![allow(dead_code)]

pub mod publishing;

use std::time::Duration;

use coalestra_core::value::ValueParts;
use coalestra_core::{
    CacheWrite, FreshnessPolicy, Payload, ResourceKey, SnapshotValue, Timestamp, Version,
};

/// A key with the given namespace, name and subject.
pub fn key(namespace: &str, name: &str, subject: &str) -> ResourceKey {
    ResourceKey::new(namespace, name, subject).expect("valid key")
}

/// A timestamp `secs` seconds after the epoch.
pub fn at(secs: f64) -> Timestamp {
    Timestamp::from_secs(secs)
}

/// A policy from whole seconds.
pub fn policy(ttl: f64, max_stale: f64) -> FreshnessPolicy {
    FreshnessPolicy::from_secs_f64(ttl, max_stale).expect("valid policy")
}

/// A policy under which nothing ever expires.
pub fn forever() -> FreshnessPolicy {
    FreshnessPolicy::new(Duration::MAX, Duration::MAX).expect("valid policy")
}

/// A plain revision of `key` observed at `observed_at` from `source`.
pub fn value(key: &ResourceKey, payload: i64, source: &str, observed_at: f64) -> SnapshotValue {
    ranked(key, payload, source, 0, observed_at)
}

/// A revision with an explicit authority rank.
pub fn ranked(
    key: &ResourceKey,
    payload: i64,
    source: &str,
    rank: i64,
    observed_at: f64,
) -> SnapshotValue {
    let mut parts = ValueParts::new(key.clone(), Payload::new(payload), source, at(observed_at));
    parts.authority_rank = rank;
    SnapshotValue::from_parts(parts)
}

/// A derived revision computed from `dependencies`.
pub fn derived(
    key: &ResourceKey,
    payload: i64,
    observed_at: f64,
    dependencies: &[&SnapshotValue],
) -> SnapshotValue {
    let mut parts = ValueParts::new(
        key.clone(),
        Payload::new(payload),
        "derived",
        at(observed_at),
    );
    parts.dependency_versions = dependencies
        .iter()
        .map(|dependency| (dependency.key().clone(), dependency.version()))
        .collect::<Vec<(ResourceKey, Version)>>();
    SnapshotValue::from_parts(parts)
}

/// An ordinary write.
pub fn write(value: SnapshotValue) -> CacheWrite {
    CacheWrite::new(value)
}

/// A forced write.
pub fn forced(value: SnapshotValue) -> CacheWrite {
    CacheWrite {
        force: true,
        ..CacheWrite::new(value)
    }
}

/// The integer payload of a value.
pub fn payload_of(value: &SnapshotValue) -> i64 {
    *value.value::<i64>().expect("i64 payload")
}
