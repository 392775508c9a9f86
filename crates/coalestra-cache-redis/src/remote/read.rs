//! Batch reads: one `MGET`, freshness from the caller's clock, transitive
//! validation of derived entries, and conditional removal of entries that
//! may no longer be served (past `max_stale`, or derived from changed
//! dependencies), as the memory cache does.

use std::collections::{HashMap, HashSet};

use coalestra_core::{
    CacheError, CacheHit, CacheRead, Freshness, ResourceKey, SnapshotCache, Timestamp, Version,
};

use super::Inner;
use crate::record::{self, Record};
use crate::scripts::scripts;
use crate::stats::bump;

/// The deepest chain of derived dependencies followed; deeper entries are
/// treated as invalid.
const MAX_DEPENDENCY_DEPTH: usize = 32;

/// What dependency validation needs to know about a stored revision.
#[derive(Debug, Clone)]
struct StoredVersion {
    version: Version,
    dependencies: Vec<(ResourceKey, Version)>,
}

/// Why an entry read from Redis is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Expired,
    Invalidated,
}

/// One usable record found by the batch.
struct Candidate<'a> {
    slot: usize,
    raw: &'a [u8],
    record: Record<'a>,
    freshness: Freshness,
    age: std::time::Duration,
}

pub(super) async fn get_many(
    inner: &Inner,
    reads: &[CacheRead],
    now: Timestamp,
) -> Result<Vec<Option<CacheHit>>, CacheError> {
    let mut out: Vec<Option<CacheHit>> = vec![None; reads.len()];
    let (local, shared): (Vec<usize>, Vec<usize>) =
        (0..reads.len()).partition(|&i| !inner.codecs.is_shared(&reads[i].key));
    if !local.is_empty() {
        let local_reads: Vec<CacheRead> = local.iter().map(|&i| reads[i].clone()).collect();
        let hits = inner.local.get_many(&local_reads, now).await?;
        for (&i, hit) in local.iter().zip(hits) {
            out[i] = hit;
        }
    }
    if shared.is_empty() {
        return Ok(out);
    }
    let keys: Vec<ResourceKey> = shared.iter().map(|&i| reads[i].key.clone()).collect();
    let raw = fetch(inner, &keys).await?;

    let mut known: HashMap<ResourceKey, Option<StoredVersion>> = HashMap::new();
    let mut candidates: Vec<Candidate<'_>> = Vec::new();
    let mut removals: Vec<(ResourceKey, Vec<u8>, Removal)> = Vec::new();
    for (&slot, bytes) in shared.iter().zip(&raw) {
        let key = &reads[slot].key;
        let Some(bytes) = bytes else {
            known.insert(key.clone(), None);
            inner.counters.miss();
            continue;
        };
        let record = match record::parse(bytes) {
            Ok(record) => record,
            Err(error) => {
                inner.decode_failed(key, &error);
                inner.counters.miss();
                continue;
            }
        };
        let age = now.saturating_since(record.observed_at());
        let freshness = reads[slot].policy.classify(age);
        if !freshness.is_usable() {
            // Removed below: like the memory cache, an expired entry does not
            // count as a stored dependency for the rest of the batch.
            known.insert(key.clone(), None);
            if let Some(signature) = record::signature(bytes) {
                removals.push((key.clone(), signature.to_vec(), Removal::Expired));
            }
            inner.counters.miss();
            continue;
        }
        known.entry(key.clone()).or_insert_with(|| {
            Some(StoredVersion {
                version: record.version(),
                dependencies: record.dependencies().to_vec(),
            })
        });
        candidates.push(Candidate {
            slot,
            raw: bytes,
            record,
            freshness,
            age,
        });
    }

    let needs_dependencies = candidates
        .iter()
        .any(|c| !c.record.dependencies().is_empty());
    if needs_dependencies {
        let roots: Vec<ResourceKey> = candidates
            .iter()
            .flat_map(|c| c.record.dependencies().iter().map(|(key, _)| key.clone()))
            .collect();
        load_dependencies(inner, roots, &mut known).await?;
    }

    for candidate in candidates {
        let key = &reads[candidate.slot].key;
        if !dependencies_hold(key, candidate.record.dependencies(), &known) {
            if let Some(signature) = record::signature(candidate.raw) {
                removals.push((key.clone(), signature.to_vec(), Removal::Invalidated));
            }
            inner.counters.miss();
            continue;
        }
        let Some(codec) = inner.codecs.codec_for(key) else {
            inner.counters.miss();
            continue;
        };
        match candidate.record.into_value(key.clone(), codec.as_ref()) {
            Ok(value) => {
                inner.counters.hit(candidate.freshness);
                let stale = candidate.freshness == Freshness::StaleUsable;
                out[candidate.slot] = Some(CacheHit {
                    value: value.as_cached(now, stale),
                    freshness: candidate.freshness,
                    age: candidate.age,
                });
            }
            Err(error) => {
                inner.decode_failed(key, &error);
                inner.counters.miss();
            }
        }
    }

    if !removals.is_empty() {
        remove_if_unchanged(inner, removals).await;
    }
    Ok(out)
}

/// `MGET` of the revisions of `keys`.
async fn fetch(inner: &Inner, keys: &[ResourceKey]) -> Result<Vec<Option<Vec<u8>>>, CacheError> {
    let names: Vec<String> = keys.iter().map(|key| inner.keys.data(key)).collect();
    let values: Vec<Option<Vec<u8>>> = inner
        .link
        .run("read", |mut connection| async move {
            redis::cmd("MGET")
                .arg(&names)
                .query_async(&mut connection)
                .await
        })
        .await?;
    if values.len() != keys.len() {
        return Err(CacheError::Unavailable(
            "redis read returned an unexpected number of values".into(),
        ));
    }
    Ok(values)
}

/// Loads, level by level, every dependency reachable from `roots` that the
/// batch did not read.
async fn load_dependencies(
    inner: &Inner,
    roots: Vec<ResourceKey>,
    known: &mut HashMap<ResourceKey, Option<StoredVersion>>,
) -> Result<(), CacheError> {
    let mut frontier = roots;
    for _ in 0..MAX_DEPENDENCY_DEPTH {
        let mut seen = HashSet::new();
        let missing: Vec<ResourceKey> = frontier
            .drain(..)
            .filter(|key| !known.contains_key(key) && seen.insert(key.clone()))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        let (local, shared): (Vec<ResourceKey>, Vec<ResourceKey>) = missing
            .into_iter()
            .partition(|key| !inner.codecs.is_shared(key));
        for key in local {
            let stored = inner.local.peek(&key).map(|value| StoredVersion {
                version: value.version(),
                dependencies: value.dependency_versions().to_vec(),
            });
            if let Some(stored) = &stored {
                frontier.extend(stored.dependencies.iter().map(|(k, _)| k.clone()));
            }
            known.insert(key, stored);
        }
        if shared.is_empty() {
            continue;
        }
        let raw = fetch(inner, &shared).await?;
        for (key, bytes) in shared.into_iter().zip(raw) {
            // An unreadable dependency record cannot vouch for anything.
            let stored = bytes
                .as_deref()
                .and_then(|bytes| record::parse(bytes).ok())
                .map(|record| StoredVersion {
                    version: record.version(),
                    dependencies: record.dependencies().to_vec(),
                });
            if let Some(stored) = &stored {
                frontier.extend(stored.dependencies.iter().map(|(k, _)| k.clone()));
            }
            known.insert(key, stored);
        }
    }
    Ok(())
}

/// Whether every recorded dependency is still stored with the recorded
/// version, transitively; each derived dependency is walked once.
fn dependencies_hold(
    key: &ResourceKey,
    dependencies: &[(ResourceKey, Version)],
    known: &HashMap<ResourceKey, Option<StoredVersion>>,
) -> bool {
    if dependencies.is_empty() {
        return true;
    }
    let mut visited = vec![key.clone()];
    walk(dependencies, known, &mut visited)
}

fn walk(
    dependencies: &[(ResourceKey, Version)],
    known: &HashMap<ResourceKey, Option<StoredVersion>>,
    visited: &mut Vec<ResourceKey>,
) -> bool {
    for (dependency, version) in dependencies {
        let Some(Some(stored)) = known.get(dependency) else {
            return false;
        };
        if stored.version != *version {
            return false;
        }
        if stored.dependencies.is_empty() || visited.contains(dependency) {
            continue;
        }
        visited.push(dependency.clone());
        if !walk(&stored.dependencies, known, visited) {
            return false;
        }
    }
    true
}

/// Removes entries whose revision is still the one read; best effort (a
/// failure leaves them to their server TTL).
async fn remove_if_unchanged(inner: &Inner, removals: Vec<(ResourceKey, Vec<u8>, Removal)>) {
    let mut invocation = scripts().invalidate.prepare_invoke();
    invocation
        .arg(inner.publish_channel.as_str())
        .arg(inner.instance_id.as_ref());
    for (key, signature, _) in &removals {
        invocation
            .key(inner.keys.data(key))
            .key(inner.keys.set(key.namespace()));
        invocation.arg(key.to_string()).arg(signature.as_slice());
    }
    let removed: Result<Vec<i64>, CacheError> = inner
        .link
        .run("conditional removal", |mut connection| async move {
            invocation.invoke_async(&mut connection).await
        })
        .await;
    let Ok(removed) = removed else { return };
    for ((_, _, why), removed) in removals.iter().zip(removed) {
        if removed == 1 {
            let counter = match why {
                Removal::Expired => &inner.counters.expirations,
                Removal::Invalidated => &inner.counters.invalidations,
            };
            bump(counter, 1);
        }
    }
}
