//! Builders shared by the publisher tests.

use std::sync::Arc;

use coalestra_cache::{
    MemoryCache, PublishOptions, PublisherConfig, ResourcePublisher, ResourceUpdate,
};
use coalestra_core::{AuthorityResolver, ManualClock, Payload, ResourceKey, SourceAuthorityPolicy};

/// The publisher clock's starting time, in seconds.
pub const NOW: f64 = 10_000.0;

/// A manual clock at [`NOW`].
pub fn clock() -> ManualClock {
    ManualClock::new(NOW)
}

/// A publisher into `cache` with `config`.
pub fn publisher_with(cache: &MemoryCache, config: PublisherConfig) -> ResourcePublisher {
    ResourcePublisher::new(Arc::new(cache.clone()), config)
}

/// A publisher into `cache` on `clock`, otherwise default.
pub fn publisher(cache: &MemoryCache, clock: &ManualClock) -> ResourcePublisher {
    publisher_with(
        cache,
        PublisherConfig {
            clock: Arc::new(clock.clone()),
            ..PublisherConfig::default()
        },
    )
}

/// A configuration ranking `local` (300) over `stream` (200) over `rest` (100).
pub fn ranked_config(clock: &ManualClock) -> PublisherConfig {
    let ranks = SourceAuthorityPolicy::new([("local", 300), ("stream", 200), ("rest", 100)], 0)
        .expect("valid ranks");
    PublisherConfig {
        clock: Arc::new(clock.clone()),
        authority: AuthorityResolver::new(ranks),
        ..PublisherConfig::default()
    }
}

/// Options publishing as `source`.
pub fn opts(source: &str) -> PublishOptions {
    PublishOptions::new(source)
}

/// An update of `key` to an integer payload.
pub fn update(key: &ResourceKey, payload: i64, options: PublishOptions) -> ResourceUpdate {
    ResourceUpdate::new(key.clone(), Payload::new(payload), options)
}
