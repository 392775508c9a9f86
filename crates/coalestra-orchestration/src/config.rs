//! [`BuilderConfig`]: every option of a [`SnapshotBuilder`], validated once by
//! [`BuilderConfig::build`].

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use coalestra_cache::MemoryCache;
use coalestra_concurrency::{CapacityConfig, CapacityController};
use coalestra_core::{
    AuthorityResolver, ConfigError, EventSink, FreshnessPolicy, MetricsSink, NullSink,
    ObservationPolicy, PolicyResolver, ResiliencePolicy, SharedClock, SnapshotCache, SourceRef,
    SystemClock,
};
use coalestra_observability::{BufferConfig, BufferedEventSink, BufferedMetricsSink};
use coalestra_resilience::{CircuitBreakers, ResilienceResolver};

use crate::builder::SnapshotBuilder;
use crate::catalog::SourceCatalog;
use crate::emit::Emitter;
use crate::engine::{Buffers, Engine, HealthCounters};

/// The default builder-wide concurrency limit.
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;
/// The default bound of the `supports` answer cache.
pub const DEFAULT_SUPPORT_CACHE_ENTRIES: usize = 100_000;
/// The default scheduler grace before a late protected call is a violation.
pub const DEFAULT_TRANSPORT_GRACE: Duration = Duration::from_millis(50);

/// Options of a [`SnapshotBuilder`]; start with [`SnapshotBuilder::builder`].
#[must_use]
pub struct BuilderConfig {
    sources: Vec<SourceRef>,
    cache: Option<Arc<dyn SnapshotCache>>,
    clock: SharedClock,
    policies: PolicyResolver,
    observation: ObservationPolicy,
    authority: AuthorityResolver,
    max_concurrency: usize,
    max_pending_tasks: Option<usize>,
    source_limits: HashMap<String, usize>,
    default_resilience: ResiliencePolicy,
    source_resilience: Vec<(String, ResiliencePolicy)>,
    dynamic_resilience: Option<coalestra_resilience::DynamicResiliencePolicy>,
    support_cache: Option<usize>,
    events: Arc<dyn EventSink>,
    metrics: Arc<dyn MetricsSink>,
    allow_unsafe_blocking: bool,
    transport_grace: Duration,
    dispatch_grace: Duration,
    buffering: ObservabilityBuffering,
    buffer: BufferConfig,
}

/// Whether the builder moves sink delivery off the acquisition path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ObservabilityBuffering {
    /// Buffer sinks that do not declare themselves non-blocking (default).
    #[default]
    Auto,
    /// Buffer every enabled sink (never an already buffered one).
    Always,
    /// Never buffer.
    Never,
}

impl BuilderConfig {
    pub(crate) fn new(sources: Vec<SourceRef>) -> Self {
        Self {
            sources,
            cache: None,
            clock: Arc::new(SystemClock),
            policies: PolicyResolver::default(),
            observation: ObservationPolicy::default(),
            authority: AuthorityResolver::default(),
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_pending_tasks: None,
            source_limits: HashMap::new(),
            default_resilience: ResiliencePolicy::default(),
            source_resilience: Vec::new(),
            dynamic_resilience: None,
            support_cache: Some(DEFAULT_SUPPORT_CACHE_ENTRIES),
            events: Arc::new(NullSink),
            metrics: Arc::new(NullSink),
            allow_unsafe_blocking: false,
            transport_grace: DEFAULT_TRANSPORT_GRACE,
            dispatch_grace: Duration::ZERO,
            buffering: ObservabilityBuffering::Auto,
            buffer: BufferConfig::default(),
        }
    }

    /// Adds a source.
    pub fn source(mut self, source: impl Into<SourceRef>) -> Self {
        self.sources.push(source.into());
        self
    }
    /// Uses a cache other than the default bounded [`MemoryCache`].
    pub fn cache(mut self, cache: Arc<dyn SnapshotCache>) -> Self {
        self.cache = Some(cache);
        self
    }
    /// Uses another wall clock (observation times, freshness).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }
    /// Sets the default freshness policy.
    pub fn default_policy(mut self, policy: FreshnessPolicy) -> Self {
        self.policies = PolicyResolver::new(policy);
        self
    }
    /// Sets the freshness policy resolver.
    pub fn policies(mut self, policies: PolicyResolver) -> Self {
        self.policies = policies;
        self
    }
    /// Sets the observation policy.
    pub fn observation(mut self, policy: ObservationPolicy) -> Self {
        self.observation = policy;
        self
    }
    /// Sets the source authority rules.
    pub fn authority(mut self, authority: AuthorityResolver) -> Self {
        self.authority = authority;
        self
    }
    /// Sets the builder-wide concurrency limit (default 8).
    pub fn max_concurrency(mut self, limit: usize) -> Self {
        self.max_concurrency = limit;
        self
    }
    /// Sets the number of workers dispatching keys of one source attempt
    /// (default: `max_concurrency`).
    pub fn max_pending_tasks(mut self, limit: usize) -> Self {
        self.max_pending_tasks = Some(limit);
        self
    }
    /// Limits one source's concurrency (overrides the source's declaration).
    pub fn source_concurrency(mut self, source: &str, limit: usize) -> Self {
        self.source_limits.insert(source.to_owned(), limit);
        self
    }
    /// Sets the default resilience policy.
    pub fn resilience(mut self, policy: ResiliencePolicy) -> Self {
        self.default_resilience = policy;
        self
    }
    /// Overrides one source's resilience policy.
    pub fn source_resilience(mut self, source: &str, policy: ResiliencePolicy) -> Self {
        self.source_resilience.push((source.to_owned(), policy));
        self
    }
    /// Chooses resilience per source name dynamically; consulted after the
    /// explicit per-source overrides and before the source's declaration.
    pub fn resilience_resolver(
        mut self,
        f: impl Fn(&str) -> Option<ResiliencePolicy> + Send + Sync + 'static,
    ) -> Self {
        self.dynamic_resilience = Some(Arc::new(f));
        self
    }
    /// Bounds (or with `None` disables) the cache of `supports` answers.
    pub fn support_cache(mut self, max_entries: Option<usize>) -> Self {
        self.support_cache = max_entries;
        self
    }
    /// Sets the event sink.
    pub fn events(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.events = sink;
        self
    }
    /// Sets the metrics sink.
    pub fn metrics(mut self, sink: Arc<dyn MetricsSink>) -> Self {
        self.metrics = sink;
        self
    }

    /// Accepts blocking sources whose timeout contract is unsafe (health then
    /// reports them as critical).
    pub fn allow_unsafe_blocking_sources(mut self, allow: bool) -> Self {
        self.allow_unsafe_blocking = allow;
        self
    }
    /// How late a protected call may return after its transport timeout
    /// before it counts as a contract violation (default 50 ms).
    pub fn transport_timeout_grace(mut self, grace: Duration) -> Self {
        self.transport_grace = grace;
        self
    }
    /// How far a protected call's transport timeout may exceed the remaining
    /// deadline and still be dispatched (default zero).
    pub fn deadline_dispatch_grace(mut self, grace: Duration) -> Self {
        self.dispatch_grace = grace;
        self
    }

    /// Chooses when sinks are buffered (default: those that may block).
    pub fn observability_buffering(mut self, mode: ObservabilityBuffering) -> Self {
        self.buffering = mode;
        self
    }
    /// Configures the buffers the builder creates.
    pub fn observability_buffer(mut self, config: BufferConfig) -> Self {
        self.buffer = config;
        self
    }

    /// Validates everything and creates the builder.
    pub fn build(self) -> Result<SnapshotBuilder, ConfigError> {
        let max_concurrency = NonZeroUsize::new(self.max_concurrency).ok_or(ConfigError::Zero {
            field: "max_concurrency",
        })?;
        let max_pending = match self.max_pending_tasks {
            None => max_concurrency,
            Some(n) => NonZeroUsize::new(n).ok_or(ConfigError::Zero {
                field: "max_pending_tasks",
            })?,
        };
        if self.support_cache == Some(0) {
            return Err(ConfigError::Zero {
                field: "support_cache",
            });
        }
        let mut resolver = ResilienceResolver::builder().default_policy(self.default_resilience);
        let source_resilience_names: Vec<(String, ())> = self
            .source_resilience
            .iter()
            .map(|(n, _)| (n.clone(), ()))
            .collect();
        for (name, policy) in self.source_resilience {
            resolver = resolver.override_source(name, policy);
        }
        if let Some(dynamic) = self.dynamic_resilience {
            resolver = resolver.dynamic_shared(dynamic);
        }
        let resolver = resolver.build()?;
        let catalog = SourceCatalog::new(
            self.sources,
            &resolver,
            self.support_cache,
            self.allow_unsafe_blocking,
        )?;
        let mut capacity = CapacityConfig::new(max_concurrency);
        for entry in catalog.entries() {
            if let Some(limit) = entry.source.info().max_concurrency() {
                capacity = capacity.with_source_limit(&*entry.name, limit);
            }
        }
        for (name, _) in &source_resilience_names {
            if !catalog.names().any(|n| n == name) {
                return Err(ConfigError::invalid(
                    "source_resilience",
                    format!("unknown source {name:?}"),
                ));
            }
        }
        for (name, limit) in self.source_limits {
            if !catalog.names().any(|n| n == name) {
                return Err(ConfigError::invalid(
                    "source_concurrency",
                    format!("unknown source {name:?}"),
                ));
            }
            let limit = NonZeroUsize::new(limit).ok_or(ConfigError::Zero {
                field: "source_concurrency",
            })?;
            capacity = capacity.with_source_limit(name, limit);
        }
        let capacity = CapacityController::new(capacity)
            .map_err(|e| ConfigError::invalid("max_concurrency", e.to_string()))?;
        let cache: Arc<dyn SnapshotCache> = match self.cache {
            Some(cache) => cache,
            None => Arc::new(MemoryCache::new()),
        };
        let cache_validates_deps = cache.validates_dependency_versions();
        self.buffer.validate()?;
        let wrap = |non_blocking: bool, enabled: bool| match self.buffering {
            ObservabilityBuffering::Never => false,
            ObservabilityBuffering::Always => enabled,
            ObservabilityBuffering::Auto => enabled && !non_blocking,
        };
        let mut buffers = Buffers::default();
        let events: Arc<dyn EventSink> =
            if wrap(self.events.is_non_blocking(), self.events.enabled()) {
                let sink = Arc::new(BufferedEventSink::new(self.events, self.buffer)?);
                buffers.events = Some(Arc::clone(&sink));
                sink
            } else {
                self.events
            };
        let metrics: Arc<dyn MetricsSink> =
            if wrap(self.metrics.is_non_blocking(), self.metrics.enabled()) {
                let sink = Arc::new(BufferedMetricsSink::new(self.metrics, self.buffer)?);
                buffers.metrics = Some(Arc::clone(&sink));
                sink
            } else {
                self.metrics
            };
        let engine = Engine {
            catalog,
            cache,
            cache_validates_deps,
            clock: self.clock,
            policies: self.policies,
            authority: self.authority,
            observation: self.observation,
            capacity,
            breakers: CircuitBreakers::new(),
            max_pending,
            flights: Default::default(),
            refreshes: Default::default(),
            tasks: Default::default(),
            emit: Emitter::new(events, metrics),
            buffers,
            health: HealthCounters::default(),
            transport_grace: self.transport_grace,
            dispatch_grace: self.dispatch_grace,
            closed: AtomicBool::new(false),
            active_workers: Default::default(),
        };
        Ok(SnapshotBuilder::from_engine(Arc::new(engine)))
    }
}
