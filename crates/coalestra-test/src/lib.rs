//! Test support for code built on Coalestra, in the spirit of `tower-test`
//! and `tracing-mock`.
//!
//! - [`MockSource`], [`MockBatchSource`] and [`MockDerivedSource`]:
//!   scriptable sources. Each key can answer a value, fail a number of times
//!   or always, return stale or back-dated data, panic, or take time
//!   (`tokio::time::sleep`, so paused test time applies). Every call is
//!   recorded.
//! - [`MockHandle`]: the test's handle on a mock after the mock moved into a
//!   builder: call counts and logs, in-flight and peak concurrency, run-time
//!   re-scripting and [`Gate`]s that hold calls until the test opens them.
//! - [`RecordingSink`]: an event and metrics sink that keeps everything.
//! - [`ScriptedCache`]: a cache tier wrapper whose reads and writes can be
//!   held, failed or made to panic, with its read, write and invalidation
//!   batches counted.
//! - [`key`], [`ManualClock`] and snapshot assertions ([`assert_value`],
//!   [`assert_failed`], [`assert_from_cache`], [`assert_stale`], ...).
//!
//! Synchronize with gates and counters, never with real sleeps:
//!
//! ```
//! use std::time::Duration;
//! use coalestra_core::{FetchContext, Source, Timestamp};
//! use coalestra_test::{key, MockSource};
//!
//! # tokio::runtime::Builder::new_current_thread()
//! #     .enable_time()
//! #     .start_paused(true)
//! #     .build()
//! #     .unwrap()
//! #     .block_on(async {
//! let price = key("market:price:BTC");
//! let source = std::sync::Arc::new(
//!     MockSource::new("rest")
//!         .value(&price, 101.5_f64)
//!         .latency(Duration::from_millis(250)),
//! );
//! let handle = source.handle();
//! let gate = handle.gate();
//!
//! let calls: Vec<_> = (0..3)
//!     .map(|_| {
//!         let (source, price) = (source.clone(), price.clone());
//!         tokio::spawn(async move {
//!             let ctx = FetchContext::new("s-1", Timestamp::from_secs(0.0));
//!             source.fetch(&price, &ctx).await
//!         })
//!     })
//!     .collect();
//!
//! gate.wait_for_arrivals(3).await; // all three calls are parked in the source
//! assert_eq!(handle.in_flight(), 3);
//! gate.open();
//! for call in calls {
//!     let output = call.await.unwrap().unwrap();
//!     assert_eq!(*output.payload.get::<f64>().unwrap(), 101.5);
//! }
//! assert_eq!(handle.calls_for(&price), 3);
//! assert_eq!(handle.max_in_flight(), 3);
//! # });
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod assertions;
mod cache;
mod declare;
mod derived;
mod gate;
mod handle;
mod keys;
mod script;
mod sink;
mod source;

pub use assertions::{
    assert_failed, assert_fresh, assert_from_cache, assert_not_from_cache, assert_stale,
    assert_value,
};
pub use cache::ScriptedCache;
pub use derived::MockDerivedSource;
pub use gate::Gate;
pub use handle::MockHandle;
pub use keys::{key, IntoResourceKey};
pub use script::Script;
pub use sink::{MetricSample, MetricValue, RecordingSink};
pub use source::{MockBatchSource, MockSource};

pub use coalestra_core::{Clock, ManualClock, Timestamp};
