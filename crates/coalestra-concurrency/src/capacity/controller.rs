//! The shared controller that hands out capacity permits.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::config::{CapacityConfig, CapacityConfigError};
use super::error::CapacityError;
use super::limiter::Limiter;
use super::permit::CapacityPermit;
use super::snapshot::CapacitySnapshot;

/// Bounds how many fetches run at once, globally and per source.
///
/// Every acquisition takes a global slot; a source with an explicit limit in
/// [`CapacityConfig::source_limits`] must additionally take one of its own
/// slots. Sources without an explicit limit are only bounded globally.
///
/// The controller is cheap to clone: clones share the same limits and
/// counters.
#[derive(Debug, Clone)]
pub struct CapacityController {
    limits: Arc<Limits>,
}

#[derive(Debug)]
struct Limits {
    max_concurrency: NonZeroUsize,
    global: Limiter,
    sources: HashMap<String, Limiter>,
}

impl CapacityController {
    /// Builds a controller from a validated configuration.
    ///
    /// # Errors
    ///
    /// Returns a [`CapacityConfigError`] when a source name is empty or a
    /// limit exceeds [`CapacityConfigError::MAX_LIMIT`].
    pub fn new(config: CapacityConfig) -> Result<Self, CapacityConfigError> {
        config.validate()?;
        let sources = config
            .source_limits
            .into_iter()
            .map(|(source, limit)| (source, Limiter::new(limit.get())))
            .collect();
        Ok(Self {
            limits: Arc::new(Limits {
                max_concurrency: config.max_concurrency,
                global: Limiter::new(config.max_concurrency.get()),
                sources,
            }),
        })
    }

    /// Waits for capacity to fetch from `source`.
    ///
    /// The source slot (when `source` has an explicit limit) is taken
    /// **first**, then the global slot, so callers queued behind their own
    /// source's limit never hold a global slot that other sources could use.
    /// A source without an explicit limit only takes a global slot.
    ///
    /// The wait is bounded by the earlier of `queue_timeout` (measured from
    /// the call) and `deadline`; `None` means no bound of that kind. When both
    /// end at the same instant the deadline is reported. A deadline that has
    /// already been reached fails at once, even when capacity is free. A
    /// queue timeout of zero takes free capacity but never queues.
    ///
    /// The returned future is cancel-safe: dropping it at any point, including
    /// after the source slot was taken while it waits for the global one,
    /// releases everything it held and leaves the waiter counts exact.
    ///
    /// # Errors
    ///
    /// [`CapacityError::DeadlineExceeded`] when the deadline is the bound that
    /// ended the wait, [`CapacityError::QueueTimeout`] when the queue timeout
    /// is.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroUsize;
    /// use std::time::Duration;
    ///
    /// use coalestra_concurrency::{CapacityConfig, CapacityController};
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() {
    ///     let one = NonZeroUsize::MIN;
    ///     let config = CapacityConfig::new(NonZeroUsize::new(8).unwrap())
    ///         .with_source_limit("rates-api", one);
    ///     let capacity = CapacityController::new(config).unwrap();
    ///
    ///     let permit = capacity.acquire("rates-api", None, None).await.unwrap();
    ///     assert_eq!(capacity.in_use(), 1);
    ///
    ///     // The source is saturated: a second caller gives up after its queue timeout.
    ///     let queued = capacity
    ///         .acquire("rates-api", Some(Duration::from_millis(10)), None)
    ///         .await;
    ///     assert!(queued.unwrap_err().is_queue_timeout());
    ///
    ///     drop(permit);
    ///     assert_eq!(capacity.in_use(), 0);
    /// }
    /// ```
    pub async fn acquire(
        &self,
        source: impl Into<Arc<str>>,
        queue_timeout: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Result<CapacityPermit, CapacityError> {
        let source: Arc<str> = source.into();
        if let Some(deadline) = deadline {
            if deadline <= Instant::now() {
                return Err(CapacityError::DeadlineExceeded {
                    source_name: source.to_string(),
                    waited: Duration::ZERO,
                });
            }
        }
        // Free capacity is taken without reading the clock: nothing waited.
        let held_source = self.free_source_slot(&source);
        if held_source.is_some() {
            if let Some(global_slot) = self.limits.global.try_acquire() {
                let source_slot = held_source.flatten();
                return Ok(CapacityPermit::new(
                    source,
                    Duration::ZERO,
                    global_slot,
                    source_slot,
                ));
            }
        }
        let started = Instant::now();
        let slots = self.acquire_slots(&source, held_source);
        let (source_slot, global_slot) = match WaitBound::resolve(started, queue_timeout, deadline)
        {
            None => slots.await,
            Some(bound) => match tokio::time::timeout_at(bound.until, slots).await {
                Ok(slots) => slots,
                Err(_elapsed) => return Err(bound.into_error(&source, started)),
            },
        };
        Ok(CapacityPermit::new(
            source,
            started.elapsed(),
            global_slot,
            source_slot,
        ))
    }

    /// Takes free capacity to fetch from `source` without waiting: the
    /// source slot (when `source` has an explicit limit) and a global slot.
    ///
    /// Returns `None`, holding nothing, when either is taken; callers then
    /// wait with [`acquire`](Self::acquire). Unlike `acquire`, no deadline is
    /// checked: a caller with a deadline checks it before.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::num::NonZeroUsize;
    /// use std::sync::Arc;
    ///
    /// use coalestra_concurrency::{CapacityConfig, CapacityController};
    ///
    /// let config = CapacityConfig::new(NonZeroUsize::new(8).unwrap())
    ///     .with_source_limit("rates-api", NonZeroUsize::MIN);
    /// let capacity = CapacityController::new(config).unwrap();
    /// let source: Arc<str> = Arc::from("rates-api");
    ///
    /// let permit = capacity.try_acquire(&source).expect("free capacity");
    /// // The source's only slot is taken: nothing is held by a second try.
    /// assert!(capacity.try_acquire(&source).is_none());
    /// assert_eq!(capacity.in_use(), 1);
    /// drop(permit);
    /// assert_eq!(capacity.in_use(), 0);
    /// ```
    #[must_use]
    pub fn try_acquire(&self, source: &Arc<str>) -> Option<CapacityPermit> {
        let source_slot = self.free_source_slot(source)?;
        let global_slot = self.limits.global.try_acquire()?;
        Some(CapacityPermit::new(
            Arc::clone(source),
            Duration::ZERO,
            global_slot,
            source_slot,
        ))
    }

    /// The free slot of a limited source (`Some(Some(_))`), no slot needed
    /// (`Some(None)`), or `None` when the source is saturated.
    fn free_source_slot(&self, source: &str) -> Option<Option<OwnedSemaphorePermit>> {
        match self.limits.sources.get(source) {
            Some(limiter) => limiter.try_acquire().map(Some),
            None => Some(None),
        }
    }

    /// Takes the source slot (if the source is limited and `held` does not
    /// already settle it), then the global slot.
    async fn acquire_slots(
        &self,
        source: &str,
        held: Option<Option<OwnedSemaphorePermit>>,
    ) -> (Option<OwnedSemaphorePermit>, OwnedSemaphorePermit) {
        let source_slot = match held {
            Some(slot) => slot,
            None => match self.limits.sources.get(source) {
                Some(limiter) => Some(limiter.acquire().await),
                None => None,
            },
        };
        // If this future is dropped while waiting here, `source_slot` is
        // dropped with it and the source slot is released.
        let global_slot = self.limits.global.acquire().await;
        (source_slot, global_slot)
    }

    /// Current limits, usage and queue lengths, globally and per limited source.
    #[must_use]
    pub fn snapshot(&self) -> CapacitySnapshot {
        CapacitySnapshot {
            global: self.limits.global.snapshot(),
            sources: self
                .limits
                .sources
                .iter()
                .map(|(source, limiter)| (source.clone(), limiter.snapshot()))
                .collect(),
        }
    }

    /// Global slots currently taken.
    #[must_use]
    pub fn in_use(&self) -> usize {
        self.limits.global.in_use()
    }

    /// Acquisitions currently queued, whether for a source slot or for a
    /// global slot.
    #[must_use]
    pub fn waiting(&self) -> usize {
        self.limits
            .sources
            .values()
            .map(Limiter::waiting)
            .fold(self.limits.global.waiting(), usize::saturating_add)
    }

    /// The global concurrency limit.
    #[must_use]
    pub fn max_concurrency(&self) -> NonZeroUsize {
        self.limits.max_concurrency
    }

    /// The explicit limit of `source`, if it has one.
    #[must_use]
    pub fn source_limit(&self, source: &str) -> Option<NonZeroUsize> {
        self.limits
            .sources
            .get(source)
            .and_then(|limiter| NonZeroUsize::new(limiter.limit()))
    }
}

/// The instant an acquisition gives up, and which bound it comes from.
struct WaitBound {
    until: Instant,
    kind: BoundKind,
}

enum BoundKind {
    QueueTimeout(Duration),
    Deadline,
}

impl WaitBound {
    /// The earlier of the two bounds; the deadline wins ties. A queue timeout
    /// too large to represent as an instant counts as no queue timeout.
    fn resolve(
        started: Instant,
        queue_timeout: Option<Duration>,
        deadline: Option<Instant>,
    ) -> Option<Self> {
        let queue_bound = queue_timeout.and_then(|timeout| {
            started.checked_add(timeout).map(|until| Self {
                until,
                kind: BoundKind::QueueTimeout(timeout),
            })
        });
        let deadline_bound = deadline.map(|until| Self {
            until,
            kind: BoundKind::Deadline,
        });
        match (queue_bound, deadline_bound) {
            (Some(queue), Some(deadline)) if queue.until < deadline.until => Some(queue),
            (queue, None) => queue,
            (_, deadline) => deadline,
        }
    }

    fn into_error(self, source: &str, started: Instant) -> CapacityError {
        let source_name = source.to_owned();
        match self.kind {
            BoundKind::QueueTimeout(timeout) => CapacityError::QueueTimeout {
                source_name,
                timeout,
            },
            BoundKind::Deadline => CapacityError::DeadlineExceeded {
                source_name,
                waited: started.elapsed(),
            },
        }
    }
}
