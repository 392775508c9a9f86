//! Closure adapters: [`FnSource`], [`FnBatchSource`] and [`FnDerivedSource`].
//!
//! Each takes an async closure (`new`) or a synchronous one (`sync`).
//! Synchronous closures run on the runtime's blocking pool by default;
//! [`SourceOptions::inline`] opts a closure that never blocks into running
//! on the caller's task.
//!
//! ```
//! use coalestra_core::{FnSource, SourceOptions, SourceOutput, SourceInfo};
//! use std::time::Duration;
//!
//! let prices = FnSource::new("rest", |key, _ctx| async move {
//!     Ok(SourceOutput::new(format!("price of {}", key.subject())))
//! })
//! .with_priority(10)
//! .with_timeout(Duration::from_secs(2));
//! assert_eq!(prices.name(), "rest");
//! assert_eq!(prices.priority(), 10);
//! ```

use std::fmt;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::context::FetchContext;
use crate::error::SourceError;
use crate::key::ResourceKey;
use crate::resilience::ResiliencePolicy;
use crate::snapshot::Snapshot;
use crate::source::{
    BatchOutput, BatchSource, DerivedSource, Execution, Source, SourceInfo, SourceOutput, SourceRef,
};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Supports = Arc<dyn Fn(&ResourceKey) -> bool + Send + Sync>;

/// The declarations shared by every closure adapter.
#[derive(Clone)]
pub struct Declarations {
    name: Arc<str>,
    priority: i32,
    supports: Option<Supports>,
    cache_supports: bool,
    timeout: Option<Duration>,
    queue_timeout: Option<Duration>,
    max_concurrency: Option<NonZeroUsize>,
    max_batch_size: Option<NonZeroUsize>,
    resilience: Option<ResiliencePolicy>,
    execution: Execution,
    blocking_io: bool,
    transport_timeout: Option<Duration>,
}

impl Declarations {
    fn new(name: &str, execution: Execution) -> Self {
        Self {
            name: name.trim().into(),
            priority: 0,
            supports: None,
            cache_supports: true,
            timeout: None,
            queue_timeout: None,
            max_concurrency: None,
            max_batch_size: None,
            resilience: None,
            execution,
            blocking_io: false,
            transport_timeout: None,
        }
    }
}

impl fmt::Debug for Declarations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Declarations")
            .field("name", &self.name)
            .field("priority", &self.priority)
            .field("execution", &self.execution)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// Builder-style options shared by the closure adapters.
pub trait SourceOptions: Sized {
    /// The adapter's declarations.
    fn declarations_mut(&mut self) -> &mut Declarations;

    /// Sets the priority (higher first).
    #[must_use]
    fn with_priority(mut self, priority: i32) -> Self {
        self.declarations_mut().priority = priority;
        self
    }
    /// Restricts the keys the source supports.
    #[must_use]
    fn with_supports(mut self, f: impl Fn(&ResourceKey) -> bool + Send + Sync + 'static) -> Self {
        self.declarations_mut().supports = Some(Arc::new(f));
        self
    }
    /// Disables caching of `supports` answers.
    #[must_use]
    fn without_support_cache(mut self) -> Self {
        self.declarations_mut().cache_supports = false;
        self
    }
    /// Sets the per-call timeout.
    #[must_use]
    fn with_timeout(mut self, timeout: Duration) -> Self {
        self.declarations_mut().timeout = Some(timeout);
        self
    }
    /// Sets the capacity queue timeout.
    #[must_use]
    fn with_queue_timeout(mut self, timeout: Duration) -> Self {
        self.declarations_mut().queue_timeout = Some(timeout);
        self
    }
    /// Sets a per-source concurrency limit.
    #[must_use]
    fn with_max_concurrency(mut self, limit: NonZeroUsize) -> Self {
        self.declarations_mut().max_concurrency = Some(limit);
        self
    }
    /// Declares a resilience policy.
    #[must_use]
    fn with_resilience(mut self, policy: ResiliencePolicy) -> Self {
        self.declarations_mut().resilience = Some(policy);
        self
    }
    /// Runs a synchronous closure inline instead of on the blocking pool.
    /// Only for closures that never block.
    #[must_use]
    fn inline(mut self) -> Self {
        let d = self.declarations_mut();
        if d.execution == Execution::Blocking {
            d.execution = Execution::Inline;
        }
        self
    }
    /// Declares that calls perform blocking I/O bounded by the transport's
    /// own timeout.
    #[must_use]
    fn with_blocking_io(mut self, transport_timeout: Option<Duration>) -> Self {
        let d = self.declarations_mut();
        d.blocking_io = true;
        d.transport_timeout = transport_timeout;
        self
    }
}

macro_rules! delegate_info {
    ($ty:ident) => {
        impl SourceInfo for $ty {
            fn name(&self) -> &str {
                &self.decl.name
            }
            fn priority(&self) -> i32 {
                self.decl.priority
            }
            fn supports(&self, key: &ResourceKey) -> bool {
                self.decl.supports.as_ref().is_none_or(|f| f(key))
            }
            fn cache_supports(&self) -> bool {
                self.decl.cache_supports
            }
            fn timeout(&self) -> Option<Duration> {
                self.decl.timeout
            }
            fn queue_timeout(&self) -> Option<Duration> {
                self.decl.queue_timeout
            }
            fn max_concurrency(&self) -> Option<NonZeroUsize> {
                self.decl.max_concurrency
            }
            fn resilience(&self) -> Option<ResiliencePolicy> {
                self.decl.resilience.clone()
            }
            fn execution(&self) -> Execution {
                self.decl.execution
            }
            fn blocking_io(&self) -> bool {
                self.decl.blocking_io
            }
            fn transport_timeout(&self) -> Option<Duration> {
                self.decl.transport_timeout
            }
        }

        impl SourceOptions for $ty {
            fn declarations_mut(&mut self) -> &mut Declarations {
                &mut self.decl
            }
        }

        impl fmt::Debug for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("decl", &self.decl)
                    .finish()
            }
        }
    };
}

type AsyncFetch = Arc<
    dyn Fn(ResourceKey, FetchContext) -> BoxFuture<Result<SourceOutput, SourceError>> + Send + Sync,
>;
type SyncFetch =
    Arc<dyn Fn(&ResourceKey, &FetchContext) -> Result<SourceOutput, SourceError> + Send + Sync>;

enum Fetcher<A, S> {
    Async(A),
    Sync(S),
}

/// A single-key source from a closure.
pub struct FnSource {
    decl: Declarations,
    fetch: Fetcher<AsyncFetch, SyncFetch>,
}

impl FnSource {
    /// A source from an async closure.
    pub fn new<F, Fut>(name: &str, f: F) -> Self
    where
        F: Fn(ResourceKey, FetchContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<SourceOutput, SourceError>> + Send + 'static,
    {
        Self {
            decl: Declarations::new(name, Execution::Async),
            fetch: Fetcher::Async(Arc::new(move |k, c| Box::pin(f(k, c)))),
        }
    }

    /// A source from a synchronous closure (run on the blocking pool).
    pub fn sync<F>(name: &str, f: F) -> Self
    where
        F: Fn(&ResourceKey, &FetchContext) -> Result<SourceOutput, SourceError>
            + Send
            + Sync
            + 'static,
    {
        Self {
            decl: Declarations::new(name, Execution::Blocking),
            fetch: Fetcher::Sync(Arc::new(f)),
        }
    }
}

delegate_info!(FnSource);

#[async_trait]
impl Source for FnSource {
    // Written out instead of `async fn`: the closure's future is already
    // boxed, and is returned as it is rather than boxed a second time.
    fn fetch<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        key: &'life1 ResourceKey,
        ctx: &'life2 FetchContext,
    ) -> Pin<Box<dyn Future<Output = Result<SourceOutput, SourceError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        match &self.fetch {
            Fetcher::Async(f) => f(key.clone(), ctx.clone()),
            Fetcher::Sync(f) => Box::pin(async move { f(key, ctx) }),
        }
    }

    fn fetch_blocking(
        &self,
        key: &ResourceKey,
        ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        match &self.fetch {
            Fetcher::Sync(f) => f(key, ctx),
            Fetcher::Async(_) => Err(SourceError::protocol("async closure called synchronously")),
        }
    }
}

impl From<FnSource> for SourceRef {
    fn from(source: FnSource) -> Self {
        SourceRef::single(source)
    }
}

type AsyncBatch = Arc<
    dyn Fn(Vec<ResourceKey>, FetchContext) -> BoxFuture<Result<BatchOutput, SourceError>>
        + Send
        + Sync,
>;
type SyncBatch =
    Arc<dyn Fn(&[ResourceKey], &FetchContext) -> Result<BatchOutput, SourceError> + Send + Sync>;

/// A batch source from a closure.
pub struct FnBatchSource {
    decl: Declarations,
    fetch: Fetcher<AsyncBatch, SyncBatch>,
}

impl FnBatchSource {
    /// A batch source from an async closure.
    pub fn new<F, Fut>(name: &str, f: F) -> Self
    where
        F: Fn(Vec<ResourceKey>, FetchContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<BatchOutput, SourceError>> + Send + 'static,
    {
        Self {
            decl: Declarations::new(name, Execution::Async),
            fetch: Fetcher::Async(Arc::new(move |k, c| Box::pin(f(k, c)))),
        }
    }

    /// A batch source from a synchronous closure (run on the blocking pool).
    pub fn sync<F>(name: &str, f: F) -> Self
    where
        F: Fn(&[ResourceKey], &FetchContext) -> Result<BatchOutput, SourceError>
            + Send
            + Sync
            + 'static,
    {
        Self {
            decl: Declarations::new(name, Execution::Blocking),
            fetch: Fetcher::Sync(Arc::new(f)),
        }
    }

    /// Limits the number of keys per call.
    #[must_use]
    pub fn with_max_batch_size(mut self, size: NonZeroUsize) -> Self {
        self.decl.max_batch_size = Some(size);
        self
    }
}

delegate_info!(FnBatchSource);

#[async_trait]
impl BatchSource for FnBatchSource {
    fn max_batch_size(&self) -> Option<NonZeroUsize> {
        self.decl.max_batch_size
    }

    // Written out instead of `async fn`, as `FnSource::fetch` is.
    fn fetch_many<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        keys: &'life1 [ResourceKey],
        ctx: &'life2 FetchContext,
    ) -> Pin<Box<dyn Future<Output = Result<BatchOutput, SourceError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        match &self.fetch {
            Fetcher::Async(f) => f(keys.to_vec(), ctx.clone()),
            Fetcher::Sync(f) => Box::pin(async move { f(keys, ctx) }),
        }
    }

    fn fetch_many_blocking(
        &self,
        keys: &[ResourceKey],
        ctx: &FetchContext,
    ) -> Result<BatchOutput, SourceError> {
        match &self.fetch {
            Fetcher::Sync(f) => f(keys, ctx),
            Fetcher::Async(_) => Err(SourceError::protocol("async closure called synchronously")),
        }
    }
}

impl From<FnBatchSource> for SourceRef {
    fn from(source: FnBatchSource) -> Self {
        SourceRef::batch(source)
    }
}

type Dependencies = Arc<dyn Fn(&ResourceKey) -> Vec<ResourceKey> + Send + Sync>;
type AsyncDerive = Arc<
    dyn Fn(ResourceKey, Snapshot, FetchContext) -> BoxFuture<Result<SourceOutput, SourceError>>
        + Send
        + Sync,
>;
type SyncDerive = Arc<
    dyn Fn(&ResourceKey, &Snapshot, &FetchContext) -> Result<SourceOutput, SourceError>
        + Send
        + Sync,
>;

/// A derived source from closures: one listing dependencies, one deriving.
pub struct FnDerivedSource {
    decl: Declarations,
    dependencies: Dependencies,
    derive: Fetcher<AsyncDerive, SyncDerive>,
}

impl FnDerivedSource {
    /// A derived source with an async derive closure.
    pub fn new<D, F, Fut>(name: &str, dependencies: D, derive: F) -> Self
    where
        D: Fn(&ResourceKey) -> Vec<ResourceKey> + Send + Sync + 'static,
        F: Fn(ResourceKey, Snapshot, FetchContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<SourceOutput, SourceError>> + Send + 'static,
    {
        Self {
            decl: Declarations::new(name, Execution::Async),
            dependencies: Arc::new(dependencies),
            derive: Fetcher::Async(Arc::new(move |k, s, c| Box::pin(derive(k, s, c)))),
        }
    }

    /// A derived source with a synchronous derive closure. Derivations are
    /// usually cheap computations, so this one runs inline by default; call
    /// [`FnDerivedSource::offload`] for heavy work.
    pub fn sync<D, F>(name: &str, dependencies: D, derive: F) -> Self
    where
        D: Fn(&ResourceKey) -> Vec<ResourceKey> + Send + Sync + 'static,
        F: Fn(&ResourceKey, &Snapshot, &FetchContext) -> Result<SourceOutput, SourceError>
            + Send
            + Sync
            + 'static,
    {
        Self {
            decl: Declarations::new(name, Execution::Inline),
            dependencies: Arc::new(dependencies),
            derive: Fetcher::Sync(Arc::new(derive)),
        }
    }

    /// Runs a synchronous derive closure on the blocking pool.
    #[must_use]
    pub fn offload(mut self) -> Self {
        if self.decl.execution == Execution::Inline {
            self.decl.execution = Execution::Blocking;
        }
        self
    }
}

delegate_info!(FnDerivedSource);

#[async_trait]
impl DerivedSource for FnDerivedSource {
    fn dependencies(&self, key: &ResourceKey) -> Result<Vec<ResourceKey>, SourceError> {
        Ok((self.dependencies)(key))
    }

    async fn derive(
        &self,
        key: &ResourceKey,
        deps: &Snapshot,
        ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        match &self.derive {
            Fetcher::Async(f) => f(key.clone(), deps.clone(), ctx.clone()).await,
            Fetcher::Sync(f) => f(key, deps, ctx),
        }
    }

    fn derive_blocking(
        &self,
        key: &ResourceKey,
        deps: &Snapshot,
        ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        match &self.derive {
            Fetcher::Sync(f) => f(key, deps, ctx),
            Fetcher::Async(_) => Err(SourceError::protocol("async closure called synchronously")),
        }
    }
}

impl From<FnDerivedSource> for SourceRef {
    fn from(source: FnDerivedSource) -> Self {
        SourceRef::derived(source)
    }
}
