//! Configuration of [`RedisCache`](crate::RedisCache) and
//! [`TieredCache`](crate::TieredCache), and their construction errors.

use std::sync::Arc;
use std::time::Duration;

use coalestra_cache::MemoryCacheConfig;
use coalestra_core::{CircuitBreakerPolicy, CircuitScope, EventSink, NullSink, PolicyResolver};
use coalestra_resilience::CircuitBreakers;

use crate::codec::CodecRegistry;

/// Why a cache could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedisCacheError {
    /// The Redis URL could not be parsed.
    #[error("invalid redis url: {0}")]
    InvalidUrl(String),
    /// A setting is out of range.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// No tokio runtime is running (the tiered cache spawns its subscriber).
    #[error("no tokio runtime is running")]
    NoRuntime,
}

/// How a [`RedisCache`](crate::RedisCache) connects, names its keys, encodes
/// payloads and protects itself.
///
/// ```
/// use std::time::Duration;
/// use coalestra_cache_redis::{CodecRegistry, RedisCacheConfig};
/// use coalestra_core::{FreshnessPolicy, PolicyResolver};
///
/// let policy = FreshnessPolicy::new(Duration::from_secs(5), Duration::from_secs(60))?;
/// let config = RedisCacheConfig::new("redis://127.0.0.1:6379/")
///     .key_prefix("pricing")
///     .policies(PolicyResolver::new(policy))
///     .codecs(CodecRegistry::new().with_json::<f64>("market", "price"))
///     .command_timeout(Duration::from_millis(250));
/// assert_eq!(config.channel(), "pricing:invalidate");
/// # Ok::<(), coalestra_core::ConfigError>(())
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisCacheConfig {
    /// The server, as a `redis://` URL.
    pub url: String,
    /// The prefix of every key and of the notification channel. Caches that
    /// should share entries use the same prefix.
    pub key_prefix: String,
    /// The freshness policies; each key's `max_stale` becomes its server TTL.
    /// Use the builder's resolver.
    pub policies: PolicyResolver,
    /// The payload codecs; resource types without one stay local.
    pub codecs: CodecRegistry,
    /// The circuit breaker guarding Redis calls.
    pub circuit_breaker: CircuitBreakerPolicy,
    /// The breaker registry (a private one by default); share a registry to
    /// report the `redis` circuit next to others.
    pub breakers: CircuitBreakers,
    /// The longest a command may take before it counts as a failure.
    pub command_timeout: Duration,
    /// The longest a connection attempt may take.
    pub connect_timeout: Duration,
    /// Whether writes and invalidations are announced on the channel.
    pub publish_invalidations: bool,
    /// The bound of the process-local store for values without a codec.
    pub local: MemoryCacheConfig,
    /// Where decode and encode failures are reported.
    pub events: Arc<dyn EventSink>,
}

impl RedisCacheConfig {
    /// The key prefix used unless configured.
    pub const DEFAULT_PREFIX: &'static str = "coalestra";

    /// Defaults for a server at `url`: prefix `coalestra`, the default
    /// freshness policy, no codecs, a breaker opening after 3 consecutive
    /// failures for 5 s, 1 s command and connect timeouts.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            key_prefix: Self::DEFAULT_PREFIX.to_owned(),
            policies: PolicyResolver::default(),
            codecs: CodecRegistry::new(),
            circuit_breaker: CircuitBreakerPolicy::new(
                CircuitScope::Source,
                CircuitBreakerPolicy::DEFAULT_FAILURE_THRESHOLD,
                Duration::from_secs(5),
            )
            .unwrap_or_default(),
            breakers: CircuitBreakers::new(),
            command_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            publish_invalidations: true,
            local: MemoryCacheConfig::default(),
            events: Arc::new(NullSink),
        }
    }

    /// Sets the key prefix.
    #[must_use]
    pub fn key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Sets the freshness policies (server TTLs).
    #[must_use]
    pub fn policies(mut self, policies: PolicyResolver) -> Self {
        self.policies = policies;
        self
    }

    /// Sets the codecs.
    #[must_use]
    pub fn codecs(mut self, codecs: CodecRegistry) -> Self {
        self.codecs = codecs;
        self
    }

    /// Sets the circuit breaker policy.
    #[must_use]
    pub fn circuit_breaker(mut self, policy: CircuitBreakerPolicy) -> Self {
        self.circuit_breaker = policy;
        self
    }

    /// Shares a breaker registry.
    #[must_use]
    pub fn breakers(mut self, breakers: CircuitBreakers) -> Self {
        self.breakers = breakers;
        self
    }

    /// Sets the command timeout.
    #[must_use]
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    #[must_use]
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Turns announcements on the channel on or off.
    #[must_use]
    pub fn publish_invalidations(mut self, publish: bool) -> Self {
        self.publish_invalidations = publish;
        self
    }

    /// Sets the bound of the local store for values without a codec.
    #[must_use]
    pub fn local(mut self, local: MemoryCacheConfig) -> Self {
        self.local = local;
        self
    }

    /// Sets the event sink.
    #[must_use]
    pub fn events(mut self, events: Arc<dyn EventSink>) -> Self {
        self.events = events;
        self
    }

    /// The notification channel: `<prefix>:invalidate`.
    pub fn channel(&self) -> String {
        format!("{}:invalidate", self.key_prefix)
    }

    pub(crate) fn validate(&self) -> Result<(), RedisCacheError> {
        if self.key_prefix.is_empty() {
            return Err(RedisCacheError::Invalid {
                field: "key_prefix",
                reason: "cannot be empty",
            });
        }
        if self.command_timeout.is_zero() {
            return Err(RedisCacheError::Invalid {
                field: "command_timeout",
                reason: "must be positive",
            });
        }
        if self.connect_timeout.is_zero() {
            return Err(RedisCacheError::Invalid {
                field: "connect_timeout",
                reason: "must be positive",
            });
        }
        Ok(())
    }
}

/// How a [`TieredCache`](crate::TieredCache) keeps its L1 in step with the
/// other replicas.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TieredCacheConfig {
    /// The bound of the L1 (moka) tier.
    pub l1: MemoryCacheConfig,
    /// While notifications cannot be received, L1 entries live at most this
    /// long (the L1 is emptied at this period), since another replica's
    /// change would go unnoticed.
    pub degraded_l1_ttl: Duration,
    /// The delay between attempts to restore the notification subscription.
    pub reconnect_delay: Duration,
}

impl TieredCacheConfig {
    /// Defaults: the default L1 bound, a 1 s degraded L1 TTL, 500 ms between
    /// reconnection attempts.
    pub fn new() -> Self {
        Self {
            l1: MemoryCacheConfig::default(),
            degraded_l1_ttl: Duration::from_secs(1),
            reconnect_delay: Duration::from_millis(500),
        }
    }

    /// Sets the L1 bound.
    #[must_use]
    pub fn l1(mut self, l1: MemoryCacheConfig) -> Self {
        self.l1 = l1;
        self
    }

    /// Sets the degraded L1 TTL.
    #[must_use]
    pub fn degraded_l1_ttl(mut self, ttl: Duration) -> Self {
        self.degraded_l1_ttl = ttl;
        self
    }

    /// Sets the reconnection delay.
    #[must_use]
    pub fn reconnect_delay(mut self, delay: Duration) -> Self {
        self.reconnect_delay = delay;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), RedisCacheError> {
        if self.degraded_l1_ttl.is_zero() {
            return Err(RedisCacheError::Invalid {
                field: "degraded_l1_ttl",
                reason: "must be positive",
            });
        }
        if self.reconnect_delay.is_zero() {
            return Err(RedisCacheError::Invalid {
                field: "reconnect_delay",
                reason: "must be positive",
            });
        }
        Ok(())
    }
}

impl Default for TieredCacheConfig {
    fn default() -> Self {
        Self::new()
    }
}
