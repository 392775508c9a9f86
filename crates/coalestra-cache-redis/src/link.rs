//! The guarded connection to Redis: one multiplexed connection, opened
//! lazily and replaced after a transport failure, behind a circuit breaker
//! and a per-command timeout.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use coalestra_core::{CacheError, CircuitBreakerPolicy, CircuitScope};
use coalestra_resilience::{CircuitBreakers, CircuitIdentity, CircuitState, CircuitStatus};
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};

/// The circuit source name used for Redis.
pub(crate) const CIRCUIT_SOURCE: &str = "redis";

/// Failure counters of the link.
#[derive(Debug, Default)]
pub(crate) struct LinkCounters {
    pub(crate) unavailable: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

/// A guarded Redis connection shared by every clone of a cache.
#[derive(Debug)]
pub(crate) struct Link {
    client: Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    /// Serializes connection attempts, so a burst of calls after a failure
    /// opens one connection rather than one each. An async gate: it is the
    /// only lock held across an await, and only around the connect itself.
    connecting: tokio::sync::Mutex<()>,
    /// Connection attempts finished so far; a caller that waited at the gate
    /// while another attempt failed fails too instead of trying again.
    attempts: AtomicU64,
    breakers: CircuitBreakers,
    identity: CircuitIdentity,
    policy: CircuitBreakerPolicy,
    command_timeout: Duration,
    connect_timeout: Duration,
    last_failed: AtomicBool,
    pub(crate) counters: LinkCounters,
}

fn unavailable(reason: impl std::fmt::Display) -> CacheError {
    CacheError::Unavailable(format!("redis {reason}"))
}

/// Whether an error means the connection must be replaced.
fn is_transport(error: &RedisError) -> bool {
    error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_timeout()
        || error.is_unrecoverable_error()
}

impl Link {
    pub(crate) fn new(
        client: Client,
        breakers: CircuitBreakers,
        policy: CircuitBreakerPolicy,
        command_timeout: Duration,
        connect_timeout: Duration,
    ) -> Self {
        let identity = CircuitIdentity::new(CIRCUIT_SOURCE, CircuitScope::Source, "");
        Self {
            client,
            connection: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
            attempts: AtomicU64::new(0),
            breakers,
            identity,
            policy,
            command_timeout,
            connect_timeout,
            last_failed: AtomicBool::new(false),
            counters: LinkCounters::default(),
        }
    }

    /// The client, for dedicated (pub/sub) connections.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The connect timeout.
    pub(crate) fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// The circuit's current state.
    pub(crate) fn circuit(&self) -> CircuitState {
        self.breakers.state_of(&self.identity)
    }

    /// Whether the last operation reached Redis and the circuit is closed.
    pub(crate) fn is_available(&self) -> bool {
        !self.last_failed.load(Ordering::Relaxed) && self.circuit().state == CircuitStatus::Closed
    }

    /// Whether a call now would reach Redis rather than be refused by the
    /// open circuit.
    pub(crate) fn probe_due(&self) -> bool {
        let state = self.circuit();
        match state.state {
            CircuitStatus::Closed => true,
            CircuitStatus::HalfOpen => !state.half_open_probe_active,
            CircuitStatus::Open => state
                .opened_for
                .is_none_or(|open| open >= self.policy.recovery_timeout()),
        }
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn forget(&self) {
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
    }

    async fn connect(&self) -> Result<MultiplexedConnection, CacheError> {
        if let Some(connection) = self.cached() {
            return Ok(connection);
        }
        let attempts_before = self.attempts.load(Ordering::SeqCst);
        let _gate = self.connecting.lock().await;
        if let Some(connection) = self.cached() {
            return Ok(connection);
        }
        if self.attempts.load(Ordering::SeqCst) != attempts_before {
            return Err(unavailable("connect failed while this call waited"));
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(self.connect_timeout)
            .set_response_timeout(self.command_timeout);
        let opened = tokio::time::timeout(
            self.connect_timeout,
            self.client
                .get_multiplexed_async_connection_with_config(&config),
        )
        .await;
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let opened = opened
            .map_err(|_| unavailable("connect timed out"))?
            .map_err(|e| unavailable(format_args!("connect failed: {e}")))?;
        self.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        *self
            .connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(opened.clone());
        Ok(opened)
    }

    fn failed(&self, error: CacheError) -> CacheError {
        self.last_failed.store(true, Ordering::Relaxed);
        self.counters.unavailable.fetch_add(1, Ordering::Relaxed);
        error
    }

    /// Runs one command (or pipeline or script call) under the breaker.
    pub(crate) async fn run<T, F, Fut>(&self, what: &'static str, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = RedisResult<T>>,
    {
        let permit = match self.breakers.before_call(&self.identity, &self.policy) {
            Ok(permit) => permit,
            Err(open) => {
                self.counters.rejected.fetch_add(1, Ordering::Relaxed);
                self.last_failed.store(true, Ordering::Relaxed);
                return Err(unavailable(format_args!("{what} refused: {open}")));
            }
        };
        let connection = match self.connect().await {
            Ok(connection) => connection,
            Err(error) => {
                permit.failure();
                return Err(self.failed(error));
            }
        };
        match tokio::time::timeout(self.command_timeout, op(connection)).await {
            Ok(Ok(value)) => {
                permit.success();
                self.last_failed.store(false, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(error)) if is_transport(&error) => {
                self.forget();
                permit.failure();
                Err(self.failed(unavailable(format_args!("{what} failed: {error}"))))
            }
            Ok(Err(error)) => {
                // The server answered: it is reachable, the command is wrong.
                permit.success();
                self.last_failed.store(false, Ordering::Relaxed);
                Err(unavailable(format_args!("{what} rejected: {error}")))
            }
            Err(_) => {
                self.forget();
                permit.failure();
                Err(self.failed(unavailable(format_args!("{what} timed out"))))
            }
        }
    }
}
