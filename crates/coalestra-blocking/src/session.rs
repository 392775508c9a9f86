//! [`BlockingSession`]: a [`SnapshotSession`] driven from plain threads.

use std::fmt;
use std::sync::Arc;

use coalestra_core::{
    RequestDegradationPolicy, ResourceKey, Snapshot, SnapshotRequest, SnapshotResult,
};
use coalestra_orchestration::{ResolveOptions, RevalidateOptions, SnapshotSession};

use crate::bridge::Bridge;
use crate::error::BlockingError;

/// A multi-stage snapshot session with blocking methods; see
/// [`SnapshotSession`]. Opened with
/// [`BlockingSnapshotBuilder::session`](crate::BlockingSnapshotBuilder::session).
///
/// Calls run on the facade's runtime; once the facade is closed they fail
/// with a closed error.
pub struct BlockingSession {
    session: Arc<SnapshotSession>,
    bridge: Arc<Bridge>,
}

impl BlockingSession {
    pub(crate) fn new(session: SnapshotSession, bridge: Arc<Bridge>) -> Self {
        Self {
            session: Arc::new(session),
            bridge,
        }
    }

    /// The session identity, shared by every stage.
    pub fn id(&self) -> &str {
        self.session.id()
    }

    /// The wrapped async session.
    pub fn session(&self) -> &SnapshotSession {
        &self.session
    }

    /// Resolves `keys` (all required) in a new stage; see
    /// [`SnapshotSession::resolve`].
    ///
    /// # Errors
    ///
    /// The stage's own error (closed session, resolution failure of a strict
    /// stage carrying the partial snapshot), or a facade error.
    pub fn resolve<I>(&self, keys: I, options: ResolveOptions) -> Result<Snapshot, BlockingError>
    where
        I: IntoIterator<Item = ResourceKey>,
    {
        let keys: Vec<ResourceKey> = keys.into_iter().collect();
        let session = Arc::clone(&self.session);
        self.bridge
            .call(async move { session.resolve(keys, options).await })
    }

    /// Resolves a request in a new stage; see
    /// [`SnapshotSession::resolve_request`].
    ///
    /// # Errors
    ///
    /// As [`BlockingSession::resolve`].
    pub fn resolve_request(
        &self,
        request: &SnapshotRequest,
        options: ResolveOptions,
    ) -> Result<Snapshot, BlockingError> {
        let request = request.clone();
        let session = Arc::clone(&self.session);
        self.bridge
            .call(async move { session.resolve_request(&request, options).await })
    }

    /// Resolves a request in a new stage and classifies the outcome; see
    /// [`SnapshotSession::try_resolve_request`].
    ///
    /// # Errors
    ///
    /// Only facade errors.
    pub fn try_resolve_request(
        &self,
        request: &SnapshotRequest,
        options: ResolveOptions,
        policy: &RequestDegradationPolicy,
    ) -> Result<SnapshotResult, BlockingError> {
        let request = request.clone();
        let policy = policy.clone();
        let session = Arc::clone(&self.session);
        self.bridge.call(async move {
            Ok(session
                .try_resolve_request(&request, options, &policy)
                .await)
        })
    }

    /// Re-resolves pinned `keys` and their pinned dependents, committing all
    /// or none; see [`SnapshotSession::revalidate`].
    ///
    /// # Errors
    ///
    /// The revalidation's own error (keys not resolved yet, a strict
    /// revalidation failing), or a facade error.
    pub fn revalidate<I>(
        &self,
        keys: I,
        options: RevalidateOptions,
    ) -> Result<Snapshot, BlockingError>
    where
        I: IntoIterator<Item = ResourceKey>,
    {
        let keys: Vec<ResourceKey> = keys.into_iter().collect();
        let session = Arc::clone(&self.session);
        self.bridge
            .call(async move { session.revalidate(keys, options).await })
    }

    /// The session's current snapshot; see [`SnapshotSession::snapshot`].
    ///
    /// # Errors
    ///
    /// A closed error, or a facade error.
    pub fn snapshot(&self) -> Result<Snapshot, BlockingError> {
        let session = Arc::clone(&self.session);
        self.bridge.call(async move { session.snapshot().await })
    }

    /// Closes the session and releases its pinned values. Idempotent; once
    /// the facade is closed the session counts as closed and this does
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`BlockingError::InsideAsyncContext`].
    pub fn close(&self) -> Result<(), BlockingError> {
        let session = Arc::clone(&self.session);
        match self.bridge.call(async move {
            session.close().await;
            Ok(())
        }) {
            Err(error) if error.is_closed() || error.is_cancelled() => Ok(()),
            other => other,
        }
    }

    /// Whether the session was closed (directly, or through the facade).
    pub fn is_closed(&self) -> bool {
        self.session.is_closed() || self.bridge.is_closed()
    }
}

impl fmt::Debug for BlockingSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingSession")
            .field("id", &self.id())
            .field("closed", &self.is_closed())
            .finish()
    }
}
