//! `publish`: 10,000 publications through `builder.publisher().publish(..)`,
//! either on 10,000 distinct keys (into a fresh builder each run, so every
//! publication creates an entry) or on one key with increasing
//! `observed_at` (so every publication replaces the previous revision).

use std::sync::Arc;
use std::time::Duration;

use coalestra::{
    Clock, Payload, PublishOptions, ResourceKey, SnapshotBuilder, SystemClock, Timestamp,
};
use tokio::time::Instant;

use crate::keys;
use crate::read_path::local_source;

/// Publications per run.
pub const PUBLICATIONS: usize = 10_000;
/// The source name publications are made as.
pub const PUBLISH_SOURCE: &str = "stream";
/// How far in the past the one-key series starts.
const SERIES_START_AGO_SECS: f64 = 60.0;
/// The step between two observations of the one-key series.
const SERIES_STEP_SECS: f64 = 0.001;

/// The pre-generated keys of the distinct-key workload.
pub struct Publish {
    distinct: Vec<ResourceKey>,
    one: ResourceKey,
    source: Arc<str>,
}

impl Default for Publish {
    fn default() -> Self {
        Self::new()
    }
}

/// A fresh builder (default policy and default 10,000-entry memory cache).
fn fresh_builder() -> SnapshotBuilder {
    SnapshotBuilder::builder([local_source("local").into()])
        .build()
        .expect("publish builder")
}

impl Publish {
    /// Generates the keys once.
    pub fn new() -> Self {
        Self {
            distinct: keys("publish", "P", PUBLICATIONS),
            one: crate::key("publish-one", "P", 0),
            source: PUBLISH_SOURCE.into(),
        }
    }

    /// 10,000 publications on distinct keys into a fresh builder; only the
    /// publications are timed.
    ///
    /// # Panics
    ///
    /// When a publication fails or is ignored.
    pub async fn distinct(&self) -> Duration {
        let builder = fresh_builder();
        let publisher = builder.publisher();
        let started = Instant::now();
        for (i, key) in self.distinct.iter().enumerate() {
            let result = publisher
                .publish(
                    key.clone(),
                    Payload::new(i as f64),
                    PublishOptions::new(Arc::clone(&self.source)),
                )
                .await
                .expect("publication");
            debug_assert!(result.is_published());
        }
        let elapsed = started.elapsed();
        assert_eq!(builder.cache().stats().size, PUBLICATIONS as u64);
        elapsed
    }

    /// 10,000 publications on one key, each observed 1 ms after the
    /// previous one; only the publications are timed.
    ///
    /// # Panics
    ///
    /// When a publication fails or is ignored.
    pub async fn one_key(&self) -> Duration {
        let builder = fresh_builder();
        let publisher = builder.publisher();
        let start = SystemClock.now().as_secs() - SERIES_START_AGO_SECS;
        let started = Instant::now();
        for i in 0..PUBLICATIONS {
            let at = Timestamp::from_secs(start + i as f64 * SERIES_STEP_SECS);
            let result = publisher
                .publish(
                    self.one.clone(),
                    Payload::new(i as f64),
                    PublishOptions::new(Arc::clone(&self.source)).observed_at(at),
                )
                .await
                .expect("publication");
            assert!(result.is_published(), "a newer observation was ignored");
        }
        started.elapsed()
    }
}
