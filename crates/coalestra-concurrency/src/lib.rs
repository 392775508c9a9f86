//! Concurrency control for Coalestra: builder-wide capacity and bounded
//! dispatch.
//!
//! - [`CapacityController`] bounds how many fetches run at once, globally and
//!   per source. Acquisitions take their source slot before the global slot,
//!   are bounded by a queue timeout and a deadline, and return an RAII
//!   [`CapacityPermit`] that releases both slots on drop, including when the
//!   acquiring future is cancelled halfway.
//! - [`dispatch_bounded`] and [`try_dispatch_bounded`] run one future per item
//!   with at most N in flight, inside the calling task (nothing is spawned),
//!   and return the outputs in input order.
//!
//! # Examples
//!
//! Fetch from several sources with at most two fetches in flight, each
//! holding capacity while it runs:
//!
//! ```
//! use std::num::NonZeroUsize;
//! use std::time::Duration;
//!
//! use coalestra_concurrency::{dispatch_bounded, CapacityConfig, CapacityController};
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() {
//!     let config = CapacityConfig::new(NonZeroUsize::new(4).unwrap())
//!         .with_source_limit("slow-api", NonZeroUsize::MIN);
//!     let capacity = CapacityController::new(config).unwrap();
//!
//!     let sources = ["slow-api", "fast-api", "slow-api"];
//!     let results = dispatch_bounded(sources, NonZeroUsize::new(2).unwrap(), |source| {
//!         let capacity = &capacity;
//!         async move {
//!             let permit = capacity
//!                 .acquire(source, Some(Duration::from_secs(1)), None)
//!                 .await?;
//!             // ... fetch from `source` while holding `permit` ...
//!             Ok::<_, coalestra_concurrency::CapacityError>(permit.source_name().len())
//!         }
//!     })
//!     .await;
//!
//!     assert!(results.iter().all(Result::is_ok));
//!     assert_eq!(capacity.in_use(), 0);
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod capacity;
pub mod dispatch;

pub use capacity::{
    CapacityConfig, CapacityConfigError, CapacityController, CapacityError, CapacityPermit,
    CapacitySnapshot, LimitSnapshot,
};
pub use dispatch::{dispatch_bounded, try_dispatch_bounded};
