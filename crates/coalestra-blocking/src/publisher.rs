//! [`BlockingPublisher`]: blocking and non-blocking publication into the
//! builder's cache.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use coalestra_cache::{PublishOptions, PublishResult, ResourcePublisher, ResourceUpdate};
use coalestra_core::{Payload, ResourceKey};

use crate::bridge::Bridge;
use crate::completion::SubmissionHandle;
use crate::error::BlockingError;

/// A [`ResourcePublisher`] for plain threads, from
/// [`BlockingSnapshotBuilder::publisher`](crate::BlockingSnapshotBuilder::publisher).
///
/// The blocking methods wait for the publication. The `submit_*` methods
/// take ownership of their inputs (collections are materialized before they
/// return, so later changes on the producer's side cannot alter accepted
/// work), hand the operation to the facade's runtime and return a
/// [`SubmissionHandle`] at once. When
/// [`max_pending_submissions`](crate::BlockingOptions::max_pending_submissions)
/// operations are pending, a submission fails immediately with
/// [`BlockingError::BacklogFull`]: the producer is never blocked.
///
/// Every handle reports its own operation's result or error; one failed
/// submission never affects another. Publishers of one facade share its
/// backlog.
#[derive(Clone)]
pub struct BlockingPublisher {
    publisher: ResourcePublisher,
    bridge: Arc<Bridge>,
}

impl BlockingPublisher {
    pub(crate) fn new(publisher: ResourcePublisher, bridge: Arc<Bridge>) -> Self {
        Self { publisher, bridge }
    }

    /// The wrapped async publisher.
    pub fn publisher(&self) -> &ResourcePublisher {
        &self.publisher
    }

    /// Publishes one value and waits for the outcome; see
    /// [`ResourcePublisher::publish`].
    ///
    /// # Errors
    ///
    /// The publication's own error (invalid source name, observation too far
    /// in the future, cache failure), or a facade error.
    pub fn publish(
        &self,
        key: ResourceKey,
        payload: Payload,
        options: PublishOptions,
    ) -> Result<PublishResult, BlockingError> {
        let publisher = self.publisher.clone();
        self.bridge
            .call(async move { publisher.publish(key, payload, options).await })
    }

    /// Publishes several values with one batch write and waits; see
    /// [`ResourcePublisher::publish_many`].
    ///
    /// # Errors
    ///
    /// As [`BlockingPublisher::publish`]; one invalid update fails the call
    /// and nothing is stored.
    pub fn publish_many(
        &self,
        updates: Vec<ResourceUpdate>,
    ) -> Result<Vec<PublishResult>, BlockingError> {
        let publisher = self.publisher.clone();
        self.bridge
            .call(async move { publisher.publish_many(updates).await })
    }

    /// Removes one key from the cache; returns whether it was present. See
    /// [`ResourcePublisher::invalidate`].
    ///
    /// # Errors
    ///
    /// The cache's error, or a facade error.
    pub fn invalidate(&self, key: &ResourceKey, reason: &str) -> Result<bool, BlockingError> {
        let publisher = self.publisher.clone();
        let (key, reason) = (key.clone(), reason.to_owned());
        self.bridge
            .call(async move { publisher.invalidate(&key, &reason).await })
    }

    /// Removes several keys; returns those that were present. See
    /// [`ResourcePublisher::invalidate_many`].
    ///
    /// # Errors
    ///
    /// As [`BlockingPublisher::invalidate`].
    pub fn invalidate_many(
        &self,
        keys: &[ResourceKey],
        reason: &str,
    ) -> Result<Vec<ResourceKey>, BlockingError> {
        let publisher = self.publisher.clone();
        let (keys, reason) = (keys.to_vec(), reason.to_owned());
        self.bridge
            .call(async move { publisher.invalidate_many(&keys, &reason).await })
    }

    /// Submits the publication of one value without waiting.
    ///
    /// # Errors
    ///
    /// [`BlockingError::BacklogFull`] or [`BlockingError::Closed`], at once.
    /// The publication's own errors are reported by the handle.
    pub fn submit_publish(
        &self,
        key: ResourceKey,
        payload: Payload,
        options: PublishOptions,
    ) -> Result<SubmissionHandle<PublishResult>, BlockingError> {
        let publisher = self.publisher.clone();
        self.bridge
            .submit(async move { publisher.publish(key, payload, options).await })
    }

    /// Submits the publication of one prepared update without waiting.
    ///
    /// # Errors
    ///
    /// As [`BlockingPublisher::submit_publish`].
    pub fn submit_publish_update(
        &self,
        update: ResourceUpdate,
    ) -> Result<SubmissionHandle<PublishResult>, BlockingError> {
        let ResourceUpdate {
            key,
            payload,
            options,
        } = update;
        self.submit_publish(key, payload, options)
    }

    /// Submits a batch publication without waiting. The updates are
    /// collected before this returns.
    ///
    /// # Errors
    ///
    /// As [`BlockingPublisher::submit_publish`].
    pub fn submit_publish_many<I>(
        &self,
        updates: I,
    ) -> Result<SubmissionHandle<Vec<PublishResult>>, BlockingError>
    where
        I: IntoIterator<Item = ResourceUpdate>,
    {
        let updates: Vec<ResourceUpdate> = updates.into_iter().collect();
        let publisher = self.publisher.clone();
        self.bridge
            .submit(async move { publisher.publish_many(updates).await })
    }

    /// Submits the invalidation of one key without waiting; the handle
    /// yields whether it was present.
    ///
    /// # Errors
    ///
    /// As [`BlockingPublisher::submit_publish`].
    pub fn submit_invalidate(
        &self,
        key: ResourceKey,
        reason: impl Into<String>,
    ) -> Result<SubmissionHandle<bool>, BlockingError> {
        let publisher = self.publisher.clone();
        let reason = reason.into();
        self.bridge
            .submit(async move { publisher.invalidate(&key, &reason).await })
    }

    /// Submits the invalidation of several keys without waiting; the handle
    /// yields the keys that were present. The keys are collected before this
    /// returns.
    ///
    /// # Errors
    ///
    /// As [`BlockingPublisher::submit_publish`].
    pub fn submit_invalidate_many<I>(
        &self,
        keys: I,
        reason: impl Into<String>,
    ) -> Result<SubmissionHandle<Vec<ResourceKey>>, BlockingError>
    where
        I: IntoIterator<Item = ResourceKey>,
    {
        let keys: Vec<ResourceKey> = keys.into_iter().collect();
        let publisher = self.publisher.clone();
        let reason = reason.into();
        self.bridge
            .submit(async move { publisher.invalidate_many(&keys, &reason).await })
    }

    /// Submissions pending on the facade (shared by all its publishers).
    pub fn pending_submissions(&self) -> usize {
        self.bridge.pending_submissions()
    }

    /// Waits until every submission accepted before this call is over; see
    /// [`BlockingSnapshotBuilder::flush`](crate::BlockingSnapshotBuilder::flush).
    ///
    /// # Errors
    ///
    /// As [`BlockingSnapshotBuilder::flush`](crate::BlockingSnapshotBuilder::flush).
    pub fn flush(&self, timeout: Duration) -> Result<(), BlockingError> {
        self.bridge.flush(timeout)
    }

    /// Whether the facade stopped accepting work.
    pub fn is_closed(&self) -> bool {
        self.bridge.is_closed()
    }
}

impl fmt::Debug for BlockingPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BlockingPublisher")
            .field("pending_submissions", &self.pending_submissions())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}
