//! [`BlockingSnapshotBuilder`]: the blocking entry point.

use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use coalestra_core::{
    BuildOptions, CoalestraError, RequestDegradationPolicy, ResourceKey, Snapshot, SnapshotRequest,
    SnapshotResult,
};
use coalestra_orchestration::{BuilderHealth, SessionOptions, SnapshotBuilder};

use crate::bridge::Bridge;
use crate::error::{inside_async_context, BlockingError};
use crate::options::BlockingOptions;
use crate::publisher::BlockingPublisher;
use crate::session::BlockingSession;

/// A [`SnapshotBuilder`] for code without an async runtime: threads,
/// callbacks from foreign SDKs, command-line tools.
///
/// The facade owns one multi-thread tokio runtime, built and driven by a
/// dedicated thread named [`RUNTIME_THREAD_NAME`](crate::RUNTIME_THREAD_NAME)
/// for the facade's whole life. Blocking methods hand their work to that
/// runtime and wait for it; the publisher's `submit_*` methods hand work over
/// and return at once, within a bound on pending submissions.
///
/// Blocking methods refuse to run on a thread that is inside a tokio runtime
/// (they return [`BlockingError::InsideAsyncContext`]): async code should
/// await the [`SnapshotBuilder`] directly.
///
/// [`close`](Self::close) (also run on drop) stops accepting work, drains
/// what was accepted up to the shutdown timeout, cancels the rest, waits for
/// the builder's background refreshes, closes the builder and joins the
/// runtime thread.
pub struct BlockingSnapshotBuilder {
    bridge: Arc<Bridge>,
}

impl BlockingSnapshotBuilder {
    /// Starts a facade over `builder`.
    ///
    /// # Errors
    ///
    /// A configuration error for invalid `options`,
    /// [`BlockingError::InsideAsyncContext`] when called inside a tokio
    /// runtime, or [`BlockingError::RuntimeUnavailable`] when the runtime
    /// thread cannot start.
    pub fn new(builder: SnapshotBuilder, options: BlockingOptions) -> Result<Self, BlockingError> {
        Ok(Self {
            bridge: Arc::new(Bridge::start(builder, options)?),
        })
    }

    /// The wrapped builder, for its non-blocking accessors (capacity,
    /// circuits, in-flight keys, ...).
    pub fn builder(&self) -> &SnapshotBuilder {
        self.bridge.builder()
    }

    /// The facade's options.
    pub fn options(&self) -> &BlockingOptions {
        self.bridge.options()
    }

    /// Builds a strict snapshot of `keys`; see [`SnapshotBuilder::build`].
    ///
    /// # Errors
    ///
    /// The build's own error, or a facade error (closed, inside an async
    /// runtime, cancelled by a shutdown).
    pub fn build<I>(&self, keys: I) -> Result<Snapshot, BlockingError>
    where
        I: IntoIterator<Item = ResourceKey>,
    {
        self.build_with(keys, BuildOptions::default())
    }

    /// Builds a snapshot of `keys` with options; see
    /// [`SnapshotBuilder::build_with`].
    ///
    /// # Errors
    ///
    /// As [`BlockingSnapshotBuilder::build`].
    pub fn build_with<I>(&self, keys: I, options: BuildOptions) -> Result<Snapshot, BlockingError>
    where
        I: IntoIterator<Item = ResourceKey>,
    {
        let keys: Vec<ResourceKey> = keys.into_iter().collect();
        self.execute(move |builder| async move { builder.build_with(keys, options).await })
    }

    /// Builds a snapshot of a request; see [`SnapshotBuilder::build_request`].
    ///
    /// # Errors
    ///
    /// As [`BlockingSnapshotBuilder::build`]; a strict build's error
    /// carries the partial snapshot.
    pub fn build_request(
        &self,
        request: &SnapshotRequest,
        options: BuildOptions,
    ) -> Result<Snapshot, BlockingError> {
        let request = request.clone();
        self.execute(move |builder| async move { builder.build_request(&request, options).await })
    }

    /// Builds a request and classifies the outcome; see
    /// [`SnapshotBuilder::try_build_request`].
    ///
    /// # Errors
    ///
    /// Only facade errors (closed, inside an async context); build problems
    /// are reported in the result.
    pub fn try_build_request(
        &self,
        request: &SnapshotRequest,
        options: BuildOptions,
        policy: &RequestDegradationPolicy,
    ) -> Result<SnapshotResult, BlockingError> {
        let request = request.clone();
        let policy = policy.clone();
        self.execute(move |builder| async move {
            Ok(builder.try_build_request(&request, options, &policy).await)
        })
    }

    /// Builds many requests and classifies each; see
    /// [`SnapshotBuilder::try_build_requests`].
    ///
    /// # Errors
    ///
    /// Only facade errors.
    pub fn try_build_requests(
        &self,
        requests: &[SnapshotRequest],
        options: BuildOptions,
        policy: &RequestDegradationPolicy,
        max_concurrent: Option<NonZeroUsize>,
    ) -> Result<Vec<SnapshotResult>, BlockingError> {
        let requests = requests.to_vec();
        let policy = policy.clone();
        self.execute(move |builder| async move {
            Ok(builder
                .try_build_requests(&requests, options, &policy, max_concurrent)
                .await)
        })
    }

    /// The builder's health with this facade's submission backlog.
    pub fn health(&self) -> BuilderHealth {
        self.builder().health().with_submissions(
            self.pending_submissions() as u64,
            self.max_pending_submissions() as u64,
        )
    }

    /// Runs any async operation of the builder on the facade's runtime and
    /// blocks until it is over.
    ///
    /// The facade's own blocking methods run this way; it also reaches any
    /// builder operation without a dedicated blocking method, with the same
    /// closed, cancellation and async-context rules.
    ///
    /// ```
    /// # use coalestra_blocking::{BlockingOptions, BlockingSnapshotBuilder};
    /// # use coalestra_core::{FnSource, SourceOutput, ResourceKey};
    /// # use coalestra_orchestration::SnapshotBuilder;
    /// # let source = FnSource::new("rest", |_key: ResourceKey, _ctx| async { Ok(SourceOutput::new(1_u32)) });
    /// # let builder = SnapshotBuilder::builder([source.into()]).build().unwrap();
    /// let facade = BlockingSnapshotBuilder::new(builder, BlockingOptions::new())?;
    /// let sources = facade.execute(|builder| async move {
    ///     builder.wait_for_refreshes().await;
    ///     Ok(builder.source_names())
    /// })?;
    /// assert_eq!(sources, ["rest"]);
    /// # Ok::<(), coalestra_blocking::BlockingError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// The operation's own error, or a facade error.
    pub fn execute<T, F, Fut>(&self, operation: F) -> Result<T, BlockingError>
    where
        F: FnOnce(SnapshotBuilder) -> Fut,
        Fut: Future<Output = Result<T, CoalestraError>> + Send + 'static,
        T: Send + 'static,
    {
        self.bridge.call(operation(self.builder().clone()))
    }

    /// Opens a multi-stage session; see [`SnapshotBuilder::session`].
    ///
    /// # Errors
    ///
    /// The builder's error (closed, invalid options), or a facade error.
    pub fn session(&self, options: SessionOptions) -> Result<BlockingSession, BlockingError> {
        let session = self.execute(move |builder| async move { builder.session(options) })?;
        Ok(BlockingSession::new(session, Arc::clone(&self.bridge)))
    }

    /// A publisher into the builder's cache with blocking and non-blocking
    /// operations. Publishers share this facade's runtime and backlog.
    pub fn publisher(&self) -> BlockingPublisher {
        BlockingPublisher::new(self.builder().publisher(), Arc::clone(&self.bridge))
    }

    /// Waits until no background refresh of the builder is pending.
    ///
    /// # Errors
    ///
    /// A facade error.
    pub fn wait_for_refreshes(&self) -> Result<(), BlockingError> {
        self.execute(|builder| async move {
            builder.wait_for_refreshes().await;
            Ok(())
        })
    }

    /// Non-blocking submissions accepted and not yet completed, failed or
    /// cancelled.
    pub fn pending_submissions(&self) -> usize {
        self.bridge.pending_submissions()
    }

    /// The bound on pending submissions.
    pub fn max_pending_submissions(&self) -> usize {
        self.bridge.max_pending_submissions()
    }

    /// Waits until every submission accepted before this call is over
    /// (completed, failed or cancelled). Later submissions are not awaited;
    /// nothing is cancelled on timeout.
    ///
    /// # Errors
    ///
    /// [`BlockingError::Timeout`] with the count still pending, a
    /// configuration error for a zero `timeout`, or
    /// [`BlockingError::InsideAsyncContext`] when it would have to wait
    /// inside an async runtime.
    pub fn flush(&self, timeout: Duration) -> Result<(), BlockingError> {
        self.bridge.flush(timeout)
    }

    /// Closes the facade: stops accepting work, drains accepted work up to
    /// the shutdown timeout, cancels the rest (their handles report
    /// cancellation), waits for background refreshes, closes the builder
    /// (unless configured otherwise) and joins the runtime thread.
    ///
    /// Idempotent: later calls return `Ok(())`; a concurrent call returns
    /// once the first one finished.
    ///
    /// # Errors
    ///
    /// [`BlockingError::ShutdownTimeout`] when work had to be cancelled or
    /// abandoned (the facade is closed all the same), or
    /// [`BlockingError::InsideAsyncContext`] (nothing is closed then).
    pub fn close(&self) -> Result<(), BlockingError> {
        self.bridge.close()
    }

    /// Whether the facade stopped accepting work (closing or closed).
    pub fn is_closed(&self) -> bool {
        self.bridge.is_closed()
    }

    /// Whether the runtime thread is still running; `false` once
    /// [`close`](Self::close) returned.
    pub fn is_running(&self) -> bool {
        self.bridge.is_running()
    }
}

impl Drop for BlockingSnapshotBuilder {
    /// Closes the facade. Inside an async runtime the shutdown is started
    /// but not awaited: the runtime thread finishes it and stops on its own.
    fn drop(&mut self) {
        if inside_async_context() {
            self.bridge.close_detached();
        } else {
            // The outcome of an implicit close has no caller to report to.
            let _ = self.bridge.close();
        }
    }
}

impl fmt::Debug for BlockingSnapshotBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingSnapshotBuilder")
            .field("builder", self.builder())
            .field("pending_submissions", &self.pending_submissions())
            .field("closed", &self.is_closed())
            .field("running", &self.is_running())
            .finish()
    }
}
