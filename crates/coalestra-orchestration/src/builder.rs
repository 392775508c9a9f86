//! [`SnapshotBuilder`]: the long-lived entry point that builds snapshots.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use coalestra_cache::{PublisherConfig, ResourcePublisher};
use coalestra_concurrency::CapacitySnapshot;
use coalestra_core::{
    BuildOptions, CoalestraError, ConfigError, Event, FetchContext, ResourceKey, Snapshot,
    SnapshotCache, SnapshotRequest, SourceRef, Version,
};
use coalestra_resilience::CircuitState;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::BuilderConfig;
use crate::engine::Engine;
use crate::evaluate::Evaluated;
use crate::job::Job;
use crate::resolve::{settle, Resolved};
use crate::session::{SessionOptions, SnapshotSession};
use crate::stats::Skew;

/// Builds consistent, immutable snapshots from prioritized sources.
///
/// One builder is shared by a whole application: clones share the cache,
/// the capacity limits, the circuit breakers and the single-flight table.
///
/// ```
/// use coalestra_core::{FnSource, ResourceKey, SourceOutput};
/// use coalestra_orchestration::SnapshotBuilder;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let rest = FnSource::new("rest", |key: ResourceKey, _ctx| async move {
///     Ok(SourceOutput::new(format!("{} from rest", key.subject())))
/// });
/// let builder = SnapshotBuilder::builder([rest.into()]).build()?;
/// let key = ResourceKey::new("market", "price", "BTCUSDT")?;
/// let snapshot = builder.build([key.clone()]).await?;
/// assert_eq!(snapshot.value::<String>(&key)?, "BTCUSDT from rest");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SnapshotBuilder {
    engine: Arc<Engine>,
}

impl std::fmt::Debug for SnapshotBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotBuilder")
            .field("sources", &self.engine.catalog.names().collect::<Vec<_>>())
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

/// A random snapshot identity.
pub(crate) fn new_snapshot_id() -> Arc<str> {
    let raw = Version::next().as_raw();
    let mut z = (raw as u64) ^ ((raw >> 64) as u64).rotate_left(17);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let z = z ^ (z >> 31);
    // Sixteen lowercase hex digits, written without the formatting machinery.
    let mut hex = [0u8; 16];
    for (i, digit) in hex.iter_mut().enumerate() {
        let nibble = ((z >> (60 - 4 * i)) & 0xF) as u8;
        *digit = if nibble < 10 {
            b'0' + nibble
        } else {
            b'a' + nibble - 10
        };
    }
    Arc::from(std::str::from_utf8(&hex).unwrap_or_default())
}

impl SnapshotBuilder {
    /// Starts configuring a builder over `sources`.
    pub fn builder<I>(sources: I) -> BuilderConfig
    where
        I: IntoIterator<Item = SourceRef>,
    {
        BuilderConfig::new(sources.into_iter().collect())
    }

    pub(crate) fn from_engine(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    pub(crate) fn engine_ref(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Builds a strict snapshot of `keys`: any failure fails the build.
    pub async fn build<I>(&self, keys: I) -> Result<Snapshot, CoalestraError>
    where
        I: IntoIterator<Item = ResourceKey>,
    {
        self.build_with(keys, BuildOptions::default()).await
    }

    /// Builds a snapshot of `keys` (all required) with options.
    pub async fn build_with<I>(
        &self,
        keys: I,
        options: BuildOptions,
    ) -> Result<Snapshot, CoalestraError>
    where
        I: IntoIterator<Item = ResourceKey>,
    {
        self.build_request(&required_request(keys)?, options).await
    }

    /// Builds a snapshot of a request: only required failures fail a strict
    /// build; the error carries the partial snapshot.
    pub async fn build_request(
        &self,
        request: &SnapshotRequest,
        options: BuildOptions,
    ) -> Result<Snapshot, CoalestraError> {
        let strict = options.strict;
        let evaluated = self.resolve_request(request, options).await?;
        let failed = evaluated.fails(strict);
        // A strict build with only optional errors succeeded; a lenient
        // build with any error is reported as an error.
        let status = if failed || (!strict && !evaluated.snapshot.is_complete()) {
            "error"
        } else {
            "success"
        };
        self.engine
            .emit
            .count("snapshot_build_total", &[("status", status)]);
        self.engine.emit.event(|| {
            let s = &evaluated.snapshot;
            Event::new("snapshot_built")
                .field("snapshot_id", s.id())
                .field("resources", (s.len() + s.errors().len()) as i64)
                .field("resolved", s.len() as i64)
                .field("failed", s.errors().len() as i64)
                .field("build_failed", failed)
                .field("strict", strict)
                .field(
                    "diagnostics",
                    s.diagnostics()
                        .map(|d| d.to_json().to_string())
                        .unwrap_or_default(),
                )
        });
        evaluated.into_result(strict)
    }

    /// Resolves a request and evaluates its contracts without deciding.
    pub(crate) async fn resolve_request(
        &self,
        request: &SnapshotRequest,
        options: BuildOptions,
    ) -> Result<Evaluated, CoalestraError> {
        let engine = &self.engine;
        if engine.is_closed() {
            return Err(CoalestraError::Closed("snapshot builder"));
        }
        let started = Instant::now();
        let job = Arc::new(self.new_job(&options, started)?);
        // Without optional keys the request's own slice is the key list.
        let joined: Vec<ResourceKey>;
        let keys: &[ResourceKey] = if request.optional_keys().is_empty() {
            request.required_keys()
        } else {
            joined = request.keys().cloned().collect();
            &joined
        };
        let span = tracing::debug_span!(
            "coalestra.build",
            snapshot_id = %job.ctx.snapshot_id,
            resources = keys.len()
        );
        let resolution = engine
            .resolve_slots(keys, &job, &[])
            .instrument(span)
            .await?;
        let mut parts = Snapshot::parts(job.ctx.snapshot_id.clone(), job.ctx.requested_at)
            .metadata(job.ctx.metadata.clone());
        let mut required_errors = Vec::new();
        let mut resolved = 0u64;
        let mut skew = Skew::default();
        match resolution {
            Resolved::Values(values) => {
                resolved = values.len() as u64;
                values.iter().for_each(|v| skew.note(v.observed_at()));
                parts.push_values(values);
            }
            Resolved::Slots(slots) => {
                parts.reserve(keys.len());
                for (i, (slot, key)) in slots.into_iter().zip(keys).enumerate() {
                    match settle(slot, key) {
                        Ok(value) => {
                            resolved += 1;
                            skew.note(value.observed_at());
                            parts.push_value(value);
                        }
                        Err(error) => {
                            if i < request.required_keys().len() {
                                required_errors.push(error.clone());
                            }
                            parts.push_error(error);
                        }
                    }
                }
            }
        }
        let mut diagnostics = job.stats.diagnostics();
        diagnostics.requested_resources = keys.len() as u64;
        diagnostics.resolved_resources = resolved;
        diagnostics.failed_resources = keys.len() as u64 - resolved;
        diagnostics.duration = started.elapsed();
        diagnostics.observation_skew = skew.spread();
        let snapshot = parts.diagnostics(diagnostics).finish();
        let (consistency, acceptance) = if required_errors.is_empty() || !options.strict {
            engine.evaluate_contracts(request, &snapshot)
        } else {
            (None, Vec::new())
        };
        Ok(Evaluated {
            snapshot,
            required_errors,
            consistency,
            acceptance,
            expired: job.expired(),
        })
    }

    pub(crate) fn new_job(
        &self,
        options: &BuildOptions,
        started: Instant,
    ) -> Result<Job, CoalestraError> {
        let engine = &self.engine;
        let now = engine.clock.now();
        let id = options.snapshot_id.clone().unwrap_or_else(new_snapshot_id);
        let mut ctx = FetchContext::new(id, now).with_metadata(options.metadata.clone());
        let deadline = match options.deadline {
            Some(d) if d.is_zero() => {
                return Err(ConfigError::invalid("deadline", "must be positive").into())
            }
            Some(d) => {
                let at = started + d;
                ctx = ctx.with_deadline(at.into_std(), now + d);
                Some(at)
            }
            None => None,
        };
        Ok(Job::new(engine, ctx, deadline))
    }

    /// Opens a multi-stage session sharing this builder's capacity, circuits
    /// and single-flight table.
    pub fn session(&self, options: SessionOptions) -> Result<SnapshotSession, CoalestraError> {
        SnapshotSession::open(Arc::clone(&self.engine), options)
    }

    /// A publisher writing into this builder's cache with the builder's
    /// clock, authority, observation and freshness rules and sinks.
    pub fn publisher(&self) -> ResourcePublisher {
        let e = &self.engine;
        let config = PublisherConfig {
            clock: Arc::clone(&e.clock),
            authority: e.authority.clone(),
            observation: e.observation,
            policies: e.policies.clone(),
            events: Arc::clone(e.emit.events()),
            metrics: Arc::clone(e.emit.metrics()),
            max_pending_tasks: e.max_pending,
        };
        ResourcePublisher::new(Arc::clone(&e.cache), config)
    }

    /// The cache shared by builds and publications.
    pub fn cache(&self) -> &Arc<dyn SnapshotCache> {
        &self.engine.cache
    }

    /// Waits until no background refresh is pending.
    pub async fn wait_for_refreshes(&self) {
        self.engine.refreshes.wait().await;
    }

    /// Closes the builder: new builds fail with a closed error; pending
    /// refreshes and in-flight shared work are awaited. Idempotent.
    pub async fn close(&self) {
        self.engine.closed.store(true, Ordering::Release);
        self.engine.refreshes.wait().await;
        self.engine.tasks.wait_idle().await;
        // Drain the builder's own buffers last: everything above may emit.
        if let Some(events) = &self.engine.buffers.events {
            let _ = events.close().await;
        }
        if let Some(metrics) = &self.engine.buffers.metrics {
            let _ = metrics.close().await;
        }
    }

    /// Whether the builder is closed.
    pub fn is_closed(&self) -> bool {
        self.engine.is_closed()
    }

    /// Keys currently being fetched.
    pub fn in_flight(&self) -> usize {
        self.engine.flights.len()
    }

    /// Background refreshes pending.
    pub fn background_refreshes(&self) -> usize {
        self.engine.refreshes.len()
    }

    /// Spawned tasks still running (shared fetches and refreshes).
    pub fn active_tasks(&self) -> usize {
        self.engine.tasks.active()
    }

    /// Capacity limits, use and waiters.
    pub fn capacity(&self) -> CapacitySnapshot {
        self.engine.capacity.snapshot()
    }

    /// Circuit states by identity.
    pub fn circuits(&self) -> BTreeMap<String, CircuitState> {
        self.engine.breakers.snapshot()
    }

    /// Resets circuits of one source, or all.
    pub fn reset_circuits(&self, source: Option<&str>) {
        self.engine.breakers.reset(source);
    }

    /// Entries in the `supports` answer cache.
    pub fn support_cache_entries(&self) -> usize {
        self.engine.catalog.support_cache_entries()
    }

    /// Empties the `supports` answer cache.
    pub fn clear_support_cache(&self) {
        self.engine.catalog.clear_support_cache();
    }

    /// Source names in the order they are tried.
    pub fn source_names(&self) -> Vec<String> {
        self.engine.catalog.names().map(str::to_owned).collect()
    }

    /// Cumulative (queue timeouts, source timeouts, deadlines exceeded).
    pub fn timeout_counts(&self) -> (u64, u64, u64) {
        let h = &self.engine.health;
        (
            h.queue_timeouts.load(Ordering::Relaxed),
            h.source_timeouts.load(Ordering::Relaxed),
            h.deadlines.load(Ordering::Relaxed),
        )
    }
}

/// A request of `keys`, all required; an empty list is an invalid request.
pub(crate) fn required_request<I>(keys: I) -> Result<SnapshotRequest, CoalestraError>
where
    I: IntoIterator<Item = ResourceKey>,
{
    SnapshotRequest::required(keys).map_err(|_| no_keys())
}

/// The error of a call given no key.
pub(crate) fn no_keys() -> CoalestraError {
    CoalestraError::InvalidRequest("at least one resource key is required".into())
}

#[cfg(test)]
mod tests {
    use super::new_snapshot_id;

    #[test]
    fn snapshot_ids_are_sixteen_lowercase_hex_digits_and_distinct() {
        let ids: Vec<_> = (0..64).map(|_| new_snapshot_id()).collect();
        for id in &ids {
            assert_eq!(id.len(), 16, "{id}");
            assert!(
                id.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
                "{id}"
            );
        }
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }
}
