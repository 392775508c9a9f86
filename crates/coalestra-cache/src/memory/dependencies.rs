//! Validity of derived entries: a derived revision may be served only while
//! every revision it was computed from is still the one stored.

use coalestra_core::{ResourceKey, SnapshotValue};

use super::Store;

/// Whether every dependency recorded by `value` is still stored with exactly
/// the recorded version, following derived dependencies transitively.
///
/// A value without dependencies is always valid, and costs one slice length
/// check. Every recorded version is compared, but the dependencies of a
/// derived key are walked only once per call, which both guards against
/// cycles and keeps a shared dependency (a diamond) from being walked twice.
pub(crate) fn dependencies_hold(store: &Store, value: &SnapshotValue) -> bool {
    if value.dependency_versions().is_empty() {
        return true;
    }
    let mut visited: Vec<ResourceKey> = vec![value.key().clone()];
    walk(store, value, &mut visited)
}

fn walk(store: &Store, value: &SnapshotValue, visited: &mut Vec<ResourceKey>) -> bool {
    for (dependency, version) in value.dependency_versions() {
        let Some(stored) = store.get(dependency).map(|slot| slot.value()) else {
            return false;
        };
        if stored.version() != *version {
            return false;
        }
        if stored.dependency_versions().is_empty() || visited.contains(dependency) {
            continue;
        }
        visited.push(dependency.clone());
        if !walk(store, &stored, visited) {
            return false;
        }
    }
    true
}
