//! Snapshot assertions with failure messages that say what was found
//! instead.

use std::any::Any;
use std::fmt::{self, Debug};

use coalestra_core::{ResourceError, ResourceKey, Snapshot, SnapshotValue, ValueError};

/// Lists what a snapshot holds, for failure messages.
struct Contents<'a>(&'a Snapshot);

impl fmt::Display for Contents<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let resolved: Vec<String> = self.0.keys().map(ToString::to_string).collect();
        let failed: Vec<String> = self
            .0
            .errors()
            .iter()
            .map(|e| e.key().to_string())
            .collect();
        write!(
            f,
            "snapshot {} resolved [{}], failed [{}]",
            self.0.id(),
            resolved.join(", "),
            failed.join(", ")
        )
    }
}

#[track_caller]
fn resolved<'a>(what: &str, snapshot: &'a Snapshot, key: &ResourceKey) -> &'a SnapshotValue {
    if let Some(value) = snapshot.get(key) {
        return value;
    }
    match snapshot.error(key) {
        Some(error) => panic!("{what} failed: {key} did not resolve: {error}"),
        None => panic!(
            "{what} failed: {key} is not in the snapshot ({})",
            Contents(snapshot)
        ),
    }
}

/// Asserts that `key` resolved to a `T` equal to `expected`.
///
/// ```
/// use coalestra_core::{Payload, Snapshot, Timestamp};
/// use coalestra_core::value::{SnapshotValue, ValueParts};
/// use coalestra_test::{assert_value, key};
///
/// let price = key("market:price:BTC");
/// let value = SnapshotValue::from_parts(ValueParts::new(
///     price.clone(), Payload::new(101.5_f64), "rest", Timestamp::from_secs(1.0)));
/// let snapshot = Snapshot::parts("s", Timestamp::from_secs(1.0)).value(value).finish();
/// assert_value(&snapshot, &price, &101.5_f64);
/// ```
///
/// # Panics
///
/// When the key is missing, failed, holds another type or another value.
#[track_caller]
pub fn assert_value<T: Any + PartialEq + Debug>(
    snapshot: &Snapshot,
    key: &ResourceKey,
    expected: &T,
) {
    match snapshot.value::<T>(key) {
        Ok(found) if found == expected => {}
        Ok(found) => panic!(
            "assert_value failed for {key}:\n  expected: {expected:?}\n     found: {found:?}"
        ),
        Err(ValueError::TypeMismatch(mismatch)) => panic!(
            "assert_value failed for {key}: it holds a {}, expected a {}",
            mismatch.found, mismatch.expected
        ),
        Err(ValueError::Failed(error)) => {
            panic!("assert_value failed: {key} did not resolve: {error}")
        }
        Err(_) => panic!(
            "assert_value failed: {key} is not in the snapshot ({})",
            Contents(snapshot)
        ),
    }
}

/// Asserts that `key` failed and returns its error.
///
/// # Panics
///
/// When the key resolved or is not in the snapshot.
#[track_caller]
pub fn assert_failed<'a>(snapshot: &'a Snapshot, key: &ResourceKey) -> &'a ResourceError {
    if let Some(error) = snapshot.error(key) {
        return error;
    }
    match snapshot.get(key) {
        Some(value) => panic!(
            "assert_failed failed: {key} resolved from source {} ({:?})",
            value.source(),
            value.payload()
        ),
        None => panic!(
            "assert_failed failed: {key} is not in the snapshot ({})",
            Contents(snapshot)
        ),
    }
}

/// Asserts that `key` was served from a cache and returns its value.
///
/// # Panics
///
/// When the key did not resolve or was fetched from a source.
#[track_caller]
pub fn assert_from_cache<'a>(snapshot: &'a Snapshot, key: &ResourceKey) -> &'a SnapshotValue {
    let value = resolved("assert_from_cache", snapshot, key);
    assert!(
        value.is_from_cache(),
        "assert_from_cache failed: {key} was fetched from source {} (attempts {})",
        value.source(),
        value.attempts()
    );
    value
}

/// Asserts that `key` was fetched from a source, not a cache, and returns
/// its value.
///
/// # Panics
///
/// When the key did not resolve or was served from a cache.
#[track_caller]
pub fn assert_not_from_cache<'a>(snapshot: &'a Snapshot, key: &ResourceKey) -> &'a SnapshotValue {
    let value = resolved("assert_not_from_cache", snapshot, key);
    assert!(
        !value.is_from_cache(),
        "assert_not_from_cache failed: {key} was served from the cache (source {})",
        value.source()
    );
    value
}

/// Asserts that `key` was delivered stale and returns its value.
///
/// # Panics
///
/// When the key did not resolve or was delivered fresh.
#[track_caller]
pub fn assert_stale<'a>(snapshot: &'a Snapshot, key: &ResourceKey) -> &'a SnapshotValue {
    let value = resolved("assert_stale", snapshot, key);
    assert!(
        value.is_stale(),
        "assert_stale failed: {key} was delivered fresh (age {:?})",
        value.age()
    );
    value
}

/// Asserts that `key` was delivered fresh (not stale) and returns its value.
///
/// # Panics
///
/// When the key did not resolve or was delivered stale.
#[track_caller]
pub fn assert_fresh<'a>(snapshot: &'a Snapshot, key: &ResourceKey) -> &'a SnapshotValue {
    let value = resolved("assert_fresh", snapshot, key);
    assert!(
        !value.is_stale(),
        "assert_fresh failed: {key} was delivered stale (age {:?})",
        value.age()
    );
    value
}
