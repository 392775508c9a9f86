//! [`ScriptedCache`]: a cache tier with scripted trouble, for tests of what
//! the engine does when its cache is slow, failing or panicking.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use coalestra_core::{
    CacheError, CacheHit, CacheLookup, CacheRead, CacheStats, CacheWrite, ResourceKey,
    SnapshotCache, Timestamp, WriteResult,
};

use crate::Gate;

/// Work awaited before a call goes on.
type Hold = Box<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What one kind of call does before (or instead of) reaching the inner
/// cache.
#[derive(Default)]
struct Step {
    hold: Option<Hold>,
    trouble: Option<Trouble>,
}

enum Trouble {
    Fail(CacheError),
    Panic(&'static str),
}

impl Step {
    /// Awaits the hold, then fails or panics as scripted.
    async fn run(&self) -> Result<(), CacheError> {
        if let Some(hold) = &self.hold {
            hold().await;
        }
        match &self.trouble {
            None => Ok(()),
            Some(Trouble::Fail(error)) => Err(error.clone()),
            Some(Trouble::Panic(message)) => panic!("{message}"),
        }
    }

    fn describe(&self) -> &'static str {
        match (self.hold.is_some(), &self.trouble) {
            (false, None) => "passes",
            (true, None) => "held",
            (false, Some(Trouble::Fail(_))) => "fails",
            (true, Some(Trouble::Fail(_))) => "held, then fails",
            (false, Some(Trouble::Panic(_))) => "panics",
            (true, Some(Trouble::Panic(_))) => "held, then panics",
        }
    }
}

/// A [`SnapshotCache`] that delegates to another cache, with scripted
/// trouble on the way.
///
/// Reads (`get_many` and `lookup_many`, and so every read made through the
/// trait's default methods) and writes (`write_many`, and so `write`) can
/// each wait on a
/// hold before going on (a [`Gate`](crate::Gate), a sleep on paused test
/// time, any future), fail with a given [`CacheError`] without reaching
/// the inner cache, or panic. Read, write and invalidation batches are
/// counted. Everything else is passed through unchanged.
///
/// ```
/// use coalestra_core::{CacheError, CacheHit, CacheRead, CacheStats, CacheWrite};
/// use coalestra_core::{FreshnessPolicy, ResourceKey, SnapshotCache, WriteResult};
/// use coalestra_test::{key, ScriptedCache, Timestamp};
///
/// /// A cache that never holds anything.
/// #[derive(Debug)]
/// struct Empty;
///
/// #[async_trait::async_trait]
/// impl SnapshotCache for Empty {
///     async fn get_many(&self, reads: &[CacheRead], _: Timestamp)
///         -> Result<Vec<Option<CacheHit>>, CacheError> {
///         Ok(vec![None; reads.len()])
///     }
///     async fn write_many(&self, writes: Vec<CacheWrite>)
///         -> Result<Vec<WriteResult>, CacheError> {
///         Err(CacheError::Closed)
///     }
///     async fn invalidate_many(&self, _: &[ResourceKey])
///         -> Result<Vec<ResourceKey>, CacheError> {
///         Ok(Vec::new())
///     }
///     async fn invalidate_namespace(&self, _: &str) -> Result<Vec<ResourceKey>, CacheError> {
///         Ok(Vec::new())
///     }
///     async fn clear(&self) -> Result<u64, CacheError> {
///         Ok(0)
///     }
///     fn stats(&self) -> CacheStats {
///         CacheStats::default()
///     }
/// }
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let down = CacheError::Unavailable("replica down".into());
/// let cache = ScriptedCache::new(Empty).failing_reads(down.clone());
/// let now = Timestamp::from_secs(0.0);
/// let read = cache.get(&key("rates:eur"), FreshnessPolicy::default(), now).await;
/// assert_eq!(read.unwrap_err(), down);
/// assert_eq!(cache.reads(), 1);
/// # });
/// ```
pub struct ScriptedCache {
    inner: Arc<dyn SnapshotCache>,
    reads: Step,
    writes: Step,
    read_calls: AtomicUsize,
    write_calls: AtomicUsize,
    invalidation_calls: AtomicUsize,
}

impl ScriptedCache {
    /// Passes every call to `inner` until scripted otherwise.
    pub fn new(inner: impl SnapshotCache + 'static) -> Self {
        Self::over(Arc::new(inner))
    }

    /// Like [`new`](Self::new), over a shared cache.
    pub fn over(inner: Arc<dyn SnapshotCache>) -> Self {
        Self {
            inner,
            reads: Step::default(),
            writes: Step::default(),
            read_calls: AtomicUsize::new(0),
            write_calls: AtomicUsize::new(0),
            invalidation_calls: AtomicUsize::new(0),
        }
    }

    /// Every read batch awaits `hold()` first.
    #[must_use]
    pub fn reads_after<F, Fut>(mut self, hold: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.reads.hold = Some(boxed_hold(hold));
        self
    }

    /// Every write batch awaits `hold()` first.
    #[must_use]
    pub fn writes_after<F, Fut>(mut self, hold: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.writes.hold = Some(boxed_hold(hold));
        self
    }

    /// Every read batch passes `gate` first (counted among its arrivals).
    #[must_use]
    pub fn reads_at(self, gate: &Gate) -> Self {
        let gate = gate.clone();
        self.reads_after(move || {
            let gate = gate.clone();
            async move { gate.pass().await }
        })
    }

    /// Every write batch passes `gate` first (counted among its arrivals).
    #[must_use]
    pub fn writes_at(self, gate: &Gate) -> Self {
        let gate = gate.clone();
        self.writes_after(move || {
            let gate = gate.clone();
            async move { gate.pass().await }
        })
    }

    /// Every read batch fails with `error` (after its hold, if any) without
    /// reaching the inner cache.
    #[must_use]
    pub fn failing_reads(mut self, error: CacheError) -> Self {
        self.reads.trouble = Some(Trouble::Fail(error));
        self
    }

    /// Every write batch fails with `error` (after its hold, if any) without
    /// reaching the inner cache.
    #[must_use]
    pub fn failing_writes(mut self, error: CacheError) -> Self {
        self.writes.trouble = Some(Trouble::Fail(error));
        self
    }

    /// Every read batch panics with `message` (after its hold, if any).
    #[must_use]
    pub fn panicking_reads(mut self, message: &'static str) -> Self {
        self.reads.trouble = Some(Trouble::Panic(message));
        self
    }

    /// Every write batch panics with `message` (after its hold, if any).
    #[must_use]
    pub fn panicking_writes(mut self, message: &'static str) -> Self {
        self.writes.trouble = Some(Trouble::Panic(message));
        self
    }

    /// The cache calls are passed to.
    pub fn inner(&self) -> &Arc<dyn SnapshotCache> {
        &self.inner
    }

    /// Read batches made so far, including held, failed and panicked ones.
    pub fn reads(&self) -> usize {
        self.read_calls.load(Ordering::SeqCst)
    }

    /// Write batches made so far, including held, failed and panicked ones.
    pub fn writes(&self) -> usize {
        self.write_calls.load(Ordering::SeqCst)
    }

    /// Invalidation batches (`invalidate_many`, and so `invalidate`) made so
    /// far.
    pub fn invalidations(&self) -> usize {
        self.invalidation_calls.load(Ordering::SeqCst)
    }
}

fn boxed_hold<F, Fut>(hold: F) -> Hold
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    Box::new(move || Box::pin(hold()))
}

impl fmt::Debug for ScriptedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScriptedCache")
            .field("inner", &self.inner)
            .field("reads", &self.reads.describe())
            .field("writes", &self.writes.describe())
            .field("read_calls", &self.reads())
            .field("write_calls", &self.writes())
            .field("invalidation_calls", &self.invalidations())
            .finish()
    }
}

#[async_trait]
impl SnapshotCache for ScriptedCache {
    async fn get_many(
        &self,
        reads: &[CacheRead],
        now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        self.read_calls.fetch_add(1, Ordering::SeqCst);
        self.reads.run().await?;
        self.inner.get_many(reads, now).await
    }

    async fn lookup_many(
        &self,
        lookups: &[CacheLookup<'_>],
        now: Timestamp,
    ) -> Result<Vec<Option<CacheHit>>, CacheError> {
        self.read_calls.fetch_add(1, Ordering::SeqCst);
        self.reads.run().await?;
        self.inner.lookup_many(lookups, now).await
    }

    async fn write_many(&self, writes: Vec<CacheWrite>) -> Result<Vec<WriteResult>, CacheError> {
        self.write_calls.fetch_add(1, Ordering::SeqCst);
        self.writes.run().await?;
        self.inner.write_many(writes).await
    }

    async fn invalidate_many(&self, keys: &[ResourceKey]) -> Result<Vec<ResourceKey>, CacheError> {
        self.invalidation_calls.fetch_add(1, Ordering::SeqCst);
        self.inner.invalidate_many(keys).await
    }

    async fn invalidate_namespace(&self, namespace: &str) -> Result<Vec<ResourceKey>, CacheError> {
        self.inner.invalidate_namespace(namespace).await
    }

    async fn clear(&self) -> Result<u64, CacheError> {
        self.inner.clear().await
    }

    fn stats(&self) -> CacheStats {
        self.inner.stats()
    }

    fn validates_dependency_versions(&self) -> bool {
        self.inner.validates_dependency_versions()
    }
}
