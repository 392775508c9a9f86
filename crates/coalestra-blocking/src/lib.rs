//! A blocking facade over Coalestra for applications without an async
//! runtime: plain threads, callbacks from foreign SDKs, command-line tools.
//!
//! [`BlockingSnapshotBuilder`] owns one multi-thread tokio runtime, built and
//! driven by a dedicated thread ([`RUNTIME_THREAD_NAME`]) for the
//! application's lifetime. Its blocking methods (`build`, `build_request`,
//! [`session`](BlockingSnapshotBuilder::session) with a [`BlockingSession`],
//! and the [`BlockingPublisher`]'s `publish` and `invalidate` families) hand
//! their work to that runtime and wait for the outcome.
//!
//! The publisher's `submit_*` methods return a [`SubmissionHandle`] at once.
//! They are bounded: when
//! [`max_pending_submissions`](BlockingOptions::max_pending_submissions)
//! operations are pending, a submission fails immediately with
//! [`BlockingError::BacklogFull`] instead of blocking the producer.
//! [`flush`](BlockingSnapshotBuilder::flush) waits for everything accepted
//! before it, and [`close`](BlockingSnapshotBuilder::close) (also run on
//! drop) drains accepted work up to the shutdown timeout, cancels the rest,
//! closes the builder and joins the runtime thread.
//!
//! Blocking methods called from inside a tokio runtime return
//! [`BlockingError::InsideAsyncContext`] instead of risking a deadlock:
//! async code should use `coalestra-orchestration` directly.
//!
//! ```
//! use coalestra_blocking::{BlockingOptions, BlockingSnapshotBuilder};
//! use coalestra_cache::PublishOptions;
//! use coalestra_core::{FnSource, Payload, ResourceKey, SourceOutput};
//! use coalestra_orchestration::SnapshotBuilder;
//!
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let rest = FnSource::new("rest", |key: ResourceKey, _ctx| async move {
//!         Ok(SourceOutput::new(format!("{} from rest", key.subject())))
//!     });
//!     let builder = SnapshotBuilder::builder([rest.into()]).build()?;
//!     let facade = BlockingSnapshotBuilder::new(builder, BlockingOptions::new())?;
//!
//!     let btc = ResourceKey::new("market", "price", "BTCUSDT")?;
//!     let snapshot = facade.build([btc.clone()])?;
//!     assert_eq!(snapshot.value::<String>(&btc)?, "BTCUSDT from rest");
//!
//!     // A stream callback hands publications over without waiting.
//!     let eth = ResourceKey::new("market", "price", "ETHUSDT")?;
//!     let publisher = facade.publisher();
//!     let handle = publisher.submit_publish(
//!         eth.clone(),
//!         Payload::new("3120".to_owned()),
//!         PublishOptions::new("ticker-stream"),
//!     )?;
//!     assert!(handle.wait()?.is_published());
//!     assert_eq!(facade.build([eth.clone()])?.value::<String>(&eth)?, "3120");
//!
//!     facade.close()?;
//!     assert!(facade.builder().is_closed());
//!     assert!(facade.build([btc]).unwrap_err().is_closed());
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backlog;
mod bridge;
mod completion;
mod error;
mod facade;
mod options;
mod publisher;
mod runtime;
mod session;

pub use completion::SubmissionHandle;
pub use error::{BlockingError, SubmissionBacklogFull, SubmissionError};
pub use facade::BlockingSnapshotBuilder;
pub use options::{BlockingOptions, DEFAULT_MAX_PENDING_SUBMISSIONS, DEFAULT_SHUTDOWN_TIMEOUT};
pub use publisher::BlockingPublisher;
pub use runtime::RUNTIME_THREAD_NAME;
pub use session::BlockingSession;
