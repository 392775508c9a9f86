//! Derived entries in `MemoryCache`: served only while every dependency
//! revision they were computed from is still stored, checked transitively.

mod support;

use coalestra_cache::MemoryCache;
use coalestra_core::value::ValueParts;
use coalestra_core::{Payload, SnapshotCache, SnapshotValue, Version};
use support::{at, derived, forever, key, value, write};

#[tokio::test]
async fn derived_entry_is_served_until_its_dependency_changes() {
    let cache = MemoryCache::new();
    assert!(cache.validates_dependency_versions());
    let a = key("dep", "base", "A");
    let b = key("dep", "derived", "B");
    let a1 = value(&a, 1, "s", 100.0);
    cache.write(write(a1.clone())).await.unwrap();
    cache
        .write(write(derived(&b, 10, 100.0, &[&a1])))
        .await
        .unwrap();

    assert!(cache.get(&b, forever(), at(101.0)).await.unwrap().is_some());

    cache.write(write(value(&a, 2, "s", 200.0))).await.unwrap();
    assert!(cache.get(&b, forever(), at(201.0)).await.unwrap().is_none());
    assert!(
        cache.peek(&b).is_none(),
        "the invalid derived entry is removed"
    );

    let stats = cache.stats();
    assert_eq!(stats.hits, 1);
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.invalidations, 1);
}

#[tokio::test]
async fn derived_chain_is_invalidated_transitively() {
    let cache = MemoryCache::new();
    let a = key("chain", "base", "A");
    let b = key("chain", "mid", "B");
    let c = key("chain", "top", "C");
    let a1 = value(&a, 1, "s", 100.0);
    let b1 = derived(&b, 2, 100.0, &[&a1]);
    let c1 = derived(&c, 3, 100.0, &[&b1]);
    cache
        .write_many(vec![write(a1), write(b1), write(c1)])
        .await
        .unwrap();
    assert!(cache.get(&c, forever(), at(100.0)).await.unwrap().is_some());

    cache.write(write(value(&a, 9, "s", 150.0))).await.unwrap();
    // C's own dependency (B) is unchanged, but B no longer holds.
    assert!(cache.get(&c, forever(), at(151.0)).await.unwrap().is_none());
    assert!(cache.get(&b, forever(), at(151.0)).await.unwrap().is_none());
    assert_eq!(cache.stats().invalidations, 2);
}

#[tokio::test]
async fn derived_entry_with_a_removed_dependency_is_a_miss() {
    let cache = MemoryCache::new();
    let a = key("gone", "base", "A");
    let b = key("gone", "derived", "B");
    let a1 = value(&a, 1, "s", 100.0);
    cache.write(write(a1.clone())).await.unwrap();
    cache
        .write(write(derived(&b, 2, 100.0, &[&a1])))
        .await
        .unwrap();
    cache.invalidate(&a).await.unwrap();
    assert!(cache.get(&b, forever(), at(100.0)).await.unwrap().is_none());
    let stats = cache.stats();
    assert_eq!(stats.misses, 1);
    assert_eq!(stats.invalidations, 2);
}

#[tokio::test]
async fn derived_entry_survives_cycles_and_diamonds() {
    let cache = MemoryCache::new();
    let a = key("shape", "base", "A");
    let b = key("shape", "left", "B");
    let c = key("shape", "right", "C");
    let d = key("shape", "top", "D");
    let a1 = value(&a, 1, "s", 100.0);
    let b1 = derived(&b, 2, 100.0, &[&a1]);
    let c1 = derived(&c, 3, 100.0, &[&a1, &b1]);
    let d1 = derived(&d, 4, 100.0, &[&b1, &c1]);
    cache
        .write_many(vec![write(a1), write(b1.clone()), write(c1), write(d1)])
        .await
        .unwrap();
    assert!(cache.get(&d, forever(), at(100.0)).await.unwrap().is_some());

    // Two entries recording each other form a cycle: still answered.
    let x = key("shape", "cycle", "X");
    let y = key("shape", "cycle", "Y");
    let y_version = Version::next();
    let mut x_parts = ValueParts::new(x.clone(), Payload::new(5_i64), "derived", at(100.0));
    x_parts.dependency_versions = vec![(y.clone(), y_version)];
    let x1 = SnapshotValue::from_parts(x_parts);
    let mut y_parts = ValueParts::new(y.clone(), Payload::new(6_i64), "derived", at(100.0));
    y_parts.dependency_versions = vec![(x.clone(), x1.version())];
    y_parts.version = Some(y_version);
    let y1 = SnapshotValue::from_parts(y_parts);
    cache.write_many(vec![write(x1), write(y1)]).await.unwrap();
    assert!(cache.get(&x, forever(), at(100.0)).await.unwrap().is_some());
}
