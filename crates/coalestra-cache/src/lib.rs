//! The in-process cache tier of Coalestra and the resource publisher.
//!
//! - [`MemoryCache`] implements [`coalestra_core::SnapshotCache`] on moka:
//!   least-recently-used eviction under an entry bound, freshness judged from
//!   the caller's clock and the reader's policy (never from moka's own timers),
//!   atomic per-key compare-and-store writes that respect source authority and
//!   observation order, and transitive validation of derived entries against
//!   the dependency versions they were computed from.
//! - [`ResourcePublisher`] pushes values into any cache tier from outside the
//!   read path (event streams, webhooks, reconciled local state), stamping,
//!   ranking and validating them as a source read would, and reporting each
//!   publication to the configured event and metrics sinks.
//!
//! # Examples
//!
//! A stream consumer publishes prices; a reader later finds them in the cache:
//!
//! ```
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use coalestra_cache::{MemoryCache, PublishOptions, PublisherConfig, ResourcePublisher};
//! use coalestra_core::{
//!     Clock, Freshness, FreshnessPolicy, ManualClock, Payload, ResourceKey, SnapshotCache,
//! };
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let clock = ManualClock::new(5_000.0);
//!     let cache = MemoryCache::new();
//!     let publisher = ResourcePublisher::new(
//!         Arc::new(cache.clone()),
//!         PublisherConfig {
//!             clock: Arc::new(clock.clone()),
//!             ..PublisherConfig::default()
//!         },
//!     );
//!     let key = ResourceKey::new("market", "price", "SOLUSDT")?;
//!     publisher
//!         .publish(key.clone(), Payload::new(142.1_f64), PublishOptions::new("ws-feed"))
//!         .await?;
//!
//!     clock.advance(Duration::from_secs(2));
//!     let policy = FreshnessPolicy::new(Duration::from_secs(5), Duration::from_secs(30))?;
//!     let hit = cache.get(&key, policy, clock.now()).await?.expect("cached");
//!     assert_eq!(hit.freshness, Freshness::Fresh);
//!     assert_eq!(hit.age, Duration::from_secs(2));
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod memory;
pub mod publisher;

pub use memory::{MemoryCache, MemoryCacheConfig};
pub use publisher::{
    PublishOptions, PublishResult, PublishStatus, PublisherConfig, ResourcePublisher,
    ResourceUpdate,
};
