//! A shared Redis cache tier for Coalestra, for services running several
//! replicas that read the same backends.
//!
//! - [`RedisCache`] implements [`coalestra_core::SnapshotCache`] on Redis:
//!   batch reads with `MGET`, batch writes through one Lua script that
//!   compares force, authority rank, `observed_at` and `replace_equal` on the
//!   server exactly like [`coalestra_core::WriteOutcome::decide`], server
//!   TTLs at `max_stale`, namespace invalidation through per-namespace key
//!   sets, derived entries validated against their dependency versions in
//!   any process, and a circuit breaker that makes calls fail fast while
//!   Redis is unreachable.
//! - [`PayloadCodec`] and [`CodecRegistry`] say how the payloads of each
//!   resource type (`namespace`, `name`) cross process boundaries
//!   ([`JsonCodec`] by default). A type without a codec stays local.
//! - [`TieredCache`] puts a moka L1 in front of the Redis L2 and keeps the
//!   replicas' L1s in step through Redis pub/sub; it falls back to L1 alone
//!   while Redis is down and recovers by itself.
//!
//! # Examples
//!
//! Two replicas, each with its own tiered cache on one Redis server:
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use coalestra_cache_redis::{
//!     CodecRegistry, RedisCache, RedisCacheConfig, TieredCache, TieredCacheConfig,
//! };
//! use coalestra_core::{FreshnessPolicy, PolicyResolver, SnapshotCache};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let policies = PolicyResolver::new(FreshnessPolicy::new(
//!     Duration::from_secs(5),
//!     Duration::from_secs(60),
//! )?);
//! let config = RedisCacheConfig::new("redis://127.0.0.1:6379/")
//!     .key_prefix("pricing")
//!     .policies(policies.clone())
//!     .codecs(CodecRegistry::new().with_json::<f64>("market", "price"));
//! let replica = |config: RedisCacheConfig| -> Result<Arc<TieredCache>, Box<dyn std::error::Error>> {
//!     Ok(Arc::new(TieredCache::new(RedisCache::new(config)?, TieredCacheConfig::new())?))
//! };
//! let a = replica(config.clone())?;
//! let b = replica(config)?;
//! // Hand `a` and `b` to two builders with `.cache(a.clone())`, etc.
//! assert!(b.stats().size == 0);
//! a.close().await;
//! b.close().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Layout in Redis
//!
//! With prefix `p`: `p:v:<key>` holds a revision (binary record: strength,
//! version, JSON header, encoded payload), `p:ns:<namespace>` the keys of a
//! namespace, `p:namespaces` the namespaces, and `p:invalidate` is the
//! notification channel. The scripts touch keys they compute from the
//! namespace sets, so a Redis Cluster deployment is not supported.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod config;
mod link;
mod record;
mod remote;
mod scripts;
mod stats;
mod tiered;

pub use codec::{CodecError, CodecRegistry, JsonCodec, PayloadCodec, RawBytesCodec};
pub use config::{RedisCacheConfig, RedisCacheError, TieredCacheConfig};
pub use remote::RedisCache;
pub use stats::{RedisStats, TieredStats};
pub use tiered::TieredCache;
