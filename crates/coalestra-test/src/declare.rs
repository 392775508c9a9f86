//! Source declarations shared by the mocks (priority, supports filter,
//! timeouts, concurrency, resilience, execution).

use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use coalestra_core::{Execution, ResiliencePolicy, ResourceKey};

pub(crate) type Supports = Arc<dyn Fn(&ResourceKey) -> bool + Send + Sync>;

/// What a mock declares through [`coalestra_core::SourceInfo`].
#[derive(Clone)]
pub(crate) struct Declared {
    pub(crate) priority: i32,
    pub(crate) supports: Option<Supports>,
    pub(crate) cache_supports: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) queue_timeout: Option<Duration>,
    pub(crate) max_concurrency: Option<NonZeroUsize>,
    pub(crate) max_batch_size: Option<NonZeroUsize>,
    pub(crate) resilience: Option<ResiliencePolicy>,
    pub(crate) execution: Execution,
    pub(crate) blocking_io: bool,
    pub(crate) transport_timeout: Option<Duration>,
}

impl Default for Declared {
    fn default() -> Self {
        Self {
            priority: 0,
            supports: None,
            cache_supports: true,
            timeout: None,
            queue_timeout: None,
            max_concurrency: None,
            max_batch_size: None,
            resilience: None,
            execution: Execution::Async,
            blocking_io: false,
            transport_timeout: None,
        }
    }
}

/// A non-zero count, panicking with a clear message on zero.
#[track_caller]
pub(crate) fn non_zero(value: usize, what: &str) -> NonZeroUsize {
    match NonZeroUsize::new(value) {
        Some(n) => n,
        None => panic!("{what} must be at least 1 in a mock source"),
    }
}

/// Builder methods for the declarations of a mock with a `decl` field.
macro_rules! declaration_builders {
    () => {
        /// Sets the priority (higher is tried first; default 0).
        #[must_use]
        pub fn with_priority(mut self, priority: i32) -> Self {
            self.decl.priority = priority;
            self
        }

        /// Restricts the keys the source supports (default: every key).
        #[must_use]
        pub fn with_supports(
            mut self,
            f: impl Fn(&coalestra_core::ResourceKey) -> bool + Send + Sync + 'static,
        ) -> Self {
            self.decl.supports = Some(std::sync::Arc::new(f));
            self
        }

        /// Declares that `supports` answers may not be cached.
        #[must_use]
        pub fn without_support_cache(mut self) -> Self {
            self.decl.cache_supports = false;
            self
        }

        /// Declares a per-call timeout.
        #[must_use]
        pub fn with_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.decl.timeout = Some(timeout);
            self
        }

        /// Declares a capacity queue timeout.
        #[must_use]
        pub fn with_queue_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.decl.queue_timeout = Some(timeout);
            self
        }

        /// Declares a per-source concurrency limit.
        ///
        /// # Panics
        ///
        /// When `limit` is zero.
        #[must_use]
        #[track_caller]
        pub fn with_max_concurrency(mut self, limit: usize) -> Self {
            self.decl.max_concurrency = Some($crate::declare::non_zero(limit, "max_concurrency"));
            self
        }

        /// Declares a resilience policy for this source.
        #[must_use]
        pub fn with_resilience(mut self, policy: coalestra_core::ResiliencePolicy) -> Self {
            self.decl.resilience = Some(policy);
            self
        }

        /// Declares how the engine runs the source (default
        /// [`Execution::Async`](coalestra_core::Execution::Async)). The
        /// synchronous entry points apply the script and record the call but
        /// ignore gates and latency.
        #[must_use]
        pub fn with_execution(mut self, execution: coalestra_core::Execution) -> Self {
            self.decl.execution = execution;
            self
        }

        /// Declares blocking I/O bounded by the transport's own timeout.
        #[must_use]
        pub fn with_blocking_io(mut self, transport_timeout: Option<std::time::Duration>) -> Self {
            self.decl.blocking_io = true;
            self.decl.transport_timeout = transport_timeout;
            self
        }
    };
}

/// Implements `SourceInfo` for a mock with `shared` and `decl` fields.
macro_rules! impl_source_info {
    ($ty:ty) => {
        impl coalestra_core::SourceInfo for $ty {
            fn name(&self) -> &str {
                self.shared.name()
            }
            fn priority(&self) -> i32 {
                self.decl.priority
            }
            fn supports(&self, key: &coalestra_core::ResourceKey) -> bool {
                self.decl.supports.as_ref().is_none_or(|f| f(key))
            }
            fn cache_supports(&self) -> bool {
                self.decl.cache_supports
            }
            fn timeout(&self) -> Option<std::time::Duration> {
                self.decl.timeout
            }
            fn queue_timeout(&self) -> Option<std::time::Duration> {
                self.decl.queue_timeout
            }
            fn max_concurrency(&self) -> Option<std::num::NonZeroUsize> {
                self.decl.max_concurrency
            }
            fn resilience(&self) -> Option<coalestra_core::ResiliencePolicy> {
                self.decl.resilience.clone()
            }
            fn execution(&self) -> coalestra_core::Execution {
                self.decl.execution
            }
            fn blocking_io(&self) -> bool {
                self.decl.blocking_io
            }
            fn transport_timeout(&self) -> Option<std::time::Duration> {
                self.decl.transport_timeout
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    .field("name", &self.shared.name())
                    .field("priority", &self.decl.priority)
                    .field("calls", &self.shared.calls.count())
                    .finish_non_exhaustive()
            }
        }
    };
}

pub(crate) use {declaration_builders, impl_source_info};
