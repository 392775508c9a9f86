//! The default methods of `SnapshotCache`: a cache written against the
//! required methods alone serves every read and write the engine makes.

use std::sync::Mutex;

use coalestra_core::value::ValueParts;
use coalestra_core::{
    async_trait, CacheError, CacheHit, CacheLookup, CacheRead, CacheStats, CacheWrite, Freshness,
    FreshnessPolicy, Payload, ResourceKey, SnapshotCache, SnapshotValue, Timestamp, WriteResult,
};

/// Answers every read with a fresh hit for the key and records the reads.
#[derive(Debug, Default)]
struct EchoCache {
    reads: Mutex<Vec<Vec<(String, FreshnessPolicy)>>>,
}

#[async_trait]
impl SnapshotCache for EchoCache {
    async fn get_many(
        &self,
        reads: &[CacheRead],
        now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        self.reads.lock().unwrap().push(
            reads
                .iter()
                .map(|r| (r.key.to_string(), r.policy))
                .collect(),
        );
        Ok(reads
            .iter()
            .map(|r| {
                let parts = ValueParts::new(r.key.clone(), Payload::new(1_i64), "echo", now);
                Some(CacheHit {
                    value: SnapshotValue::from_parts(parts),
                    freshness: Freshness::Fresh,
                    age: std::time::Duration::ZERO,
                })
            })
            .collect())
    }

    async fn write_many(&self, _: Vec<CacheWrite>) -> Result<Vec<WriteResult>, CacheError> {
        Ok(Vec::new())
    }

    async fn invalidate_many(&self, _: &[ResourceKey]) -> Result<Vec<ResourceKey>, CacheError> {
        Ok(Vec::new())
    }

    async fn invalidate_namespace(&self, _: &str) -> Result<Vec<ResourceKey>, CacheError> {
        Ok(Vec::new())
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        Ok(0)
    }

    fn stats(&self) -> CacheStats {
        CacheStats::default()
    }
}

fn key(subject: &str) -> ResourceKey {
    ResourceKey::new("ns", "item", subject).expect("valid key")
}

#[tokio::test]
async fn lookup_many_defaults_to_one_get_many_with_the_same_keys_and_policies() {
    let cache = EchoCache::default();
    let (a, b) = (key("A"), key("B"));
    let short = FreshnessPolicy::fresh_for(std::time::Duration::from_secs(5));
    let long = FreshnessPolicy::fresh_for(std::time::Duration::from_secs(50));
    let lookups = [
        CacheLookup {
            key: &b,
            policy: &long,
        },
        CacheLookup {
            key: &a,
            policy: &short,
        },
    ];
    let hits = cache
        .lookup_many(&lookups, Timestamp::from_secs(10.0))
        .await
        .expect("echo cache reads");
    let keys: Vec<String> = hits
        .iter()
        .map(|h| h.as_ref().expect("hit").value.key().to_string())
        .collect();
    assert_eq!(keys, vec![b.to_string(), a.to_string()]);
    let reads = cache.reads.lock().unwrap().clone();
    assert_eq!(
        reads,
        vec![vec![(b.to_string(), long), (a.to_string(), short)]],
        "one batch, in input order, with each key's policy"
    );
}

#[test]
fn lookups_and_owned_reads_convert_both_ways() {
    let read = CacheRead {
        key: key("C"),
        policy: FreshnessPolicy::fresh_for(std::time::Duration::from_secs(1)),
    };
    let lookup = CacheLookup::from(&read);
    assert_eq!(lookup.key, &read.key);
    assert_eq!(*lookup.policy, read.policy);
    // And back: an owned read of the same key and policy.
    let owned = CacheRead::from(lookup);
    assert_eq!(owned.key, read.key);
    assert_eq!(owned.policy, read.policy);
}
