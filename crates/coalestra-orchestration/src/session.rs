//! [`SnapshotSession`]: one identity, one deadline and a memo of pinned values
//! across several resolution stages.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra_core::{
    CoalestraError, ConfigError, Event, FetchContext, KeyMap, Metadata, ResourceError, ResourceKey,
    Snapshot, SnapshotDiagnostics, SnapshotRequest, SnapshotValue, Timestamp,
};
use tokio::sync::Mutex;
use tokio::time::Instant;
use tracing::Instrument;

use crate::builder::new_snapshot_id;
use crate::engine::Engine;
use crate::evaluate::Evaluated;
use crate::job::Job;
use crate::stats::Skew;

/// Options of a session.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct SessionOptions {
    /// The session identity (random when `None`).
    pub snapshot_id: Option<Arc<str>>,
    /// One deadline for every stage, counted from the session's creation.
    pub deadline: Option<Duration>,
    /// Metadata passed to every source call.
    pub metadata: Metadata,
}

impl SessionOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the identity.
    #[must_use]
    pub fn snapshot_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.snapshot_id = Some(id.into());
        self
    }
    /// Sets the deadline.
    #[must_use]
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }
    /// Sets the metadata.
    #[must_use]
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }
}

/// Options of one resolution stage.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ResolveOptions {
    /// Fail the stage when a requested (required) key fails (default `true`).
    pub strict: bool,
    /// Try keys that failed in earlier stages again (default `false`).
    pub retry_errors: bool,
}

impl Default for ResolveOptions {
    fn default() -> Self {
        Self {
            strict: true,
            retry_errors: false,
        }
    }
}

impl ResolveOptions {
    /// Default options: strict, failed keys stay failed.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets strictness.
    #[must_use]
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }
    /// Retries earlier failures.
    #[must_use]
    pub fn retry_errors(mut self, retry: bool) -> Self {
        self.retry_errors = retry;
        self
    }
}

pub(crate) struct SessionState {
    /// Shared with the jobs of a stage, so starting a stage copies nothing.
    pub(crate) pinned: Arc<KeyMap<SnapshotValue>>,
    /// The requested keys, in request order, and their index.
    pub(crate) visible_index: KeyMap<()>,
    pub(crate) visible: Vec<ResourceKey>,
    pub(crate) errors: KeyMap<ResourceError>,
    pub(crate) diagnostics: SnapshotDiagnostics,
}

/// A multi-stage snapshot: later stages can depend on earlier results, and a
/// value once resolved stays pinned for the session's lifetime (even past
/// its cache TTL, and even when a newer revision is published meanwhile).
///
/// Sessions share their builder's capacity, circuits and single-flight table.
pub struct SnapshotSession {
    pub(crate) engine: Arc<Engine>,
    pub(crate) id: Arc<str>,
    pub(crate) created_at: Timestamp,
    pub(crate) deadline: Option<Instant>,
    pub(crate) metadata: Metadata,
    pub(crate) state: Mutex<SessionState>,
    pub(crate) closed: AtomicBool,
}

impl std::fmt::Debug for SnapshotSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotSession")
            .field("id", &self.id)
            .field("closed", &self.is_closed())
            .finish_non_exhaustive()
    }
}

impl SnapshotSession {
    pub(crate) fn open(
        engine: Arc<Engine>,
        options: SessionOptions,
    ) -> Result<Self, CoalestraError> {
        if engine.is_closed() {
            return Err(CoalestraError::Closed("snapshot builder"));
        }
        if options.deadline.is_some_and(|d| d.is_zero()) {
            return Err(ConfigError::invalid("deadline", "must be positive").into());
        }
        let created_at = engine.clock.now();
        Ok(Self {
            id: options.snapshot_id.unwrap_or_else(new_snapshot_id),
            created_at,
            deadline: options.deadline.map(|d| Instant::now() + d),
            metadata: options.metadata,
            state: Mutex::new(SessionState {
                pinned: Arc::default(),
                visible_index: KeyMap::default(),
                visible: Vec::new(),
                errors: KeyMap::default(),
                diagnostics: SnapshotDiagnostics::default(),
            }),
            closed: AtomicBool::new(false),
            engine,
        })
    }

    /// The session identity, shared by every stage.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// When the session was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// Whether the session is closed.
    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn ensure_open(&self) -> Result<(), CoalestraError> {
        if self.is_closed() {
            return Err(CoalestraError::Closed("snapshot session"));
        }
        if self.engine.is_closed() {
            return Err(CoalestraError::Closed("snapshot builder"));
        }
        Ok(())
    }

    pub(crate) fn job(&self, pinned: Arc<KeyMap<SnapshotValue>>) -> Job {
        let mut ctx = FetchContext::new(self.id.clone(), self.created_at)
            .with_metadata(self.metadata.clone());
        if let Some(deadline) = self.deadline {
            let remaining = deadline.saturating_duration_since(Instant::now());
            ctx = ctx.with_deadline(deadline.into_std(), self.engine.clock.now() + remaining);
        }
        let mut job = Job::new(&self.engine, ctx, self.deadline);
        job.pinned = Some(pinned);
        job.learned = Some(std::sync::Mutex::new(KeyMap::default()));
        job
    }

    /// Resolves `keys` (all required) in a new stage.
    pub async fn resolve<I>(
        &self,
        keys: I,
        options: ResolveOptions,
    ) -> Result<Snapshot, CoalestraError>
    where
        I: IntoIterator<Item = ResourceKey>,
    {
        self.resolve_request(&crate::builder::required_request(keys)?, options)
            .await
    }

    /// Resolves a request in a new stage: only required failures fail a
    /// strict stage.
    pub async fn resolve_request(
        &self,
        request: &SnapshotRequest,
        options: ResolveOptions,
    ) -> Result<Snapshot, CoalestraError> {
        let evaluated = self.stage(request, options).await?;
        let failed = evaluated.fails(options.strict);
        let status = if failed { "error" } else { "success" };
        self.engine
            .emit
            .count("snapshot_session_resolve_total", &[("status", status)]);
        self.engine.emit.event(|| {
            let s = &evaluated.snapshot;
            Event::new("snapshot_session_resolved")
                .field("snapshot_id", &*self.id)
                .field("requested", request.keys().count() as i64)
                .field("resolved", s.len() as i64)
                .field("failed", s.errors().len() as i64)
                .field("total_resources", (s.len() + s.errors().len()) as i64)
                .field("strict", options.strict)
                .field("retry_errors", options.retry_errors)
        });
        evaluated.into_result(options.strict)
    }

    /// Runs one stage and evaluates the request's contracts.
    pub(crate) async fn stage(
        &self,
        request: &SnapshotRequest,
        options: ResolveOptions,
    ) -> Result<Evaluated, CoalestraError> {
        self.ensure_open()?;
        let started = Instant::now();
        let mut state = self.state.lock().await;
        let keys: Vec<ResourceKey> = request.keys().cloned().collect();
        let mut wanted = Vec::new();
        for key in &keys {
            let pinned = state.pinned.contains_key(key);
            let failed = state.errors.contains_key(key);
            if !pinned && (!failed || options.retry_errors) {
                wanted.push(key.clone());
            }
        }
        let job = Arc::new(self.job(Arc::clone(&state.pinned)));
        let outcomes = if wanted.is_empty() {
            Vec::new()
        } else {
            let span = tracing::debug_span!("coalestra.session.resolve", snapshot_id = %self.id, resources = wanted.len());
            self.engine
                .resolve(&wanted, &job, &[])
                .instrument(span)
                .await?
        };
        for (key, outcome) in wanted.iter().zip(outcomes) {
            if let Err(error) = outcome {
                state.errors.insert(key.clone(), error);
            } else {
                state.errors.remove(key);
            }
        }
        let learned = job.take_learned();
        let stage = job.stats.diagnostics();
        let expired = job.expired();
        // Release the job's share of the pinned map before changing it.
        drop(job);
        if !learned.is_empty() {
            let pinned = Arc::make_mut(&mut state.pinned);
            for (key, value) in learned {
                pinned.entry(key).or_insert(value);
            }
        }
        for key in &keys {
            if state.visible_index.insert(key.clone(), ()).is_none() {
                state.visible.push(key.clone());
            }
        }
        accumulate(&mut state.diagnostics, &stage, started.elapsed());
        let snapshot = self.assemble(&state);
        let required_errors: Vec<ResourceError> = request
            .required_keys()
            .iter()
            .filter_map(|k| state.errors.get(k).cloned())
            .collect();
        let (consistency, acceptance) = if required_errors.is_empty() || !options.strict {
            self.engine.evaluate_contracts(request, &snapshot)
        } else {
            (None, Vec::new())
        };
        Ok(Evaluated {
            snapshot,
            required_errors,
            consistency,
            acceptance,
            expired,
        })
    }

    /// The current snapshot: every requested key so far, pinned values and
    /// errors, with the latest stage's diagnostics.
    pub async fn snapshot(&self) -> Result<Snapshot, CoalestraError> {
        self.ensure_open()?;
        let state = self.state.lock().await;
        Ok(self.assemble(&state))
    }

    pub(crate) fn assemble(&self, state: &SessionState) -> Snapshot {
        let mut diagnostics = state.diagnostics.clone();
        diagnostics.requested_resources = state.visible.len() as u64;
        diagnostics.resolved_resources = state
            .visible
            .iter()
            .filter(|k| state.pinned.contains_key(*k))
            .count() as u64;
        diagnostics.failed_resources =
            diagnostics.requested_resources - diagnostics.resolved_resources;
        let mut parts =
            Snapshot::parts(self.id.clone(), self.created_at).metadata(self.metadata.clone());
        let mut skew = Skew::default();
        for key in &state.visible {
            if let Some(value) = state.pinned.get(key) {
                skew.note(value.observed_at());
                parts.push_value(value.clone());
            } else if let Some(error) = state.errors.get(key) {
                parts.push_error(error.clone());
            }
        }
        diagnostics.observation_skew = skew.spread();
        parts.diagnostics(diagnostics).finish()
    }

    /// Closes the session: pinned values are released and further calls fail
    /// with a closed error. Idempotent.
    pub async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let mut state = self.state.lock().await;
        state.pinned = Arc::default();
        state.visible_index.clear();
        state.errors.clear();
        state.visible.clear();
    }
}

/// Adds one stage's counters to the session's running totals.
pub(crate) fn accumulate(
    total: &mut SnapshotDiagnostics,
    stage: &SnapshotDiagnostics,
    elapsed: std::time::Duration,
) {
    total.duration += elapsed;
    crate::stats::add_counters(total, stage);
    for (source, calls) in &stage.source_calls_by_source {
        *total
            .source_calls_by_source
            .entry(source.clone())
            .or_default() += calls;
    }
    for (source, latency) in &stage.source_latency_by_source {
        *total
            .source_latency_by_source
            .entry(source.clone())
            .or_default() += *latency;
    }
}
