//! The non-failing API: `try_*` methods classify a request's outcome as
//! accepted, degraded or rejected instead of returning an error, so a
//! multi-request workload keeps its healthy parts.

use std::num::NonZeroUsize;
use std::sync::Arc;

use coalestra_concurrency::dispatch_bounded;
use coalestra_core::{
    BuildOptions, CoalestraError, Event, RequestDegradationPolicy, Snapshot, SnapshotRequest,
    SnapshotResult,
};

use crate::builder::SnapshotBuilder;
use crate::engine::Engine;
use crate::session::{ResolveOptions, SnapshotSession};

impl Engine {
    pub(crate) fn record_try(&self, result: &SnapshotResult) {
        let state = result.state().as_str();
        self.emit
            .count("snapshot_try_request_total", &[("status", state)]);
        self.emit.event(|| {
            let actions: Vec<&str> = result.allowed_actions().iter().map(|a| &**a).collect();
            Event::new("snapshot_try_request_resolved")
                .field("snapshot_id", result.snapshot().id())
                .field("state", state)
                .field("resources", result.snapshot().len() as i64)
                .field("errors", result.snapshot().errors().len() as i64)
                .field("required_errors", result.required_errors().len() as i64)
                .field("optional_errors", result.optional_errors().len() as i64)
                .field(
                    "acceptance_violations",
                    result.acceptance_violations().len() as i64,
                )
                .field(
                    "consistency_failed",
                    result.consistency_violation().is_some(),
                )
                .field("allowed_actions", actions.join(","))
                .field("reason", result.reason())
        });
    }
}

fn rejected(
    engine: &Engine,
    id: &str,
    request: &SnapshotRequest,
    policy: &RequestDegradationPolicy,
    error: CoalestraError,
) -> SnapshotResult {
    let empty = Snapshot::parts(id.to_owned(), engine.clock.now()).finish();
    SnapshotResult::classify(policy, empty, request, None, Vec::new(), Some(error))
}

impl SnapshotBuilder {
    /// Builds a request and classifies the outcome under `policy`; never
    /// returns an error.
    pub async fn try_build_request(
        &self,
        request: &SnapshotRequest,
        options: BuildOptions,
        policy: &RequestDegradationPolicy,
    ) -> SnapshotResult {
        let engine = self.engine_ref();
        let id = options.snapshot_id.clone();
        let result = match self.resolve_request(request, options).await {
            Ok(evaluated) => SnapshotResult::classify(
                policy,
                evaluated.snapshot,
                request,
                evaluated.consistency,
                evaluated.acceptance,
                None,
            ),
            Err(error) => rejected(engine, id.as_deref().unwrap_or(""), request, policy, error),
        };
        let status = if result.is_accepted() {
            "success"
        } else {
            "error"
        };
        engine
            .emit
            .count("snapshot_build_total", &[("status", status)]);
        engine.record_try(&result);
        result
    }

    /// Builds many requests sharing this builder (for example one per
    /// symbol), at most `max_concurrent` at once (default: the builder's
    /// `max_concurrency`), results in input order. With a snapshot id in
    /// `options`, request `i` gets the id `<id>:<i>`.
    pub async fn try_build_requests(
        &self,
        requests: &[SnapshotRequest],
        options: BuildOptions,
        policy: &RequestDegradationPolicy,
        max_concurrent: Option<NonZeroUsize>,
    ) -> Vec<SnapshotResult> {
        if requests.is_empty() {
            return Vec::new();
        }
        let limit = max_concurrent.unwrap_or_else(|| self.engine_ref().capacity.max_concurrency());
        let prefix: Option<Arc<str>> = options.snapshot_id.clone();
        dispatch_bounded(requests.iter().enumerate(), limit, |(i, request)| {
            let mut options = options.clone();
            if let Some(prefix) = &prefix {
                options.snapshot_id = Some(format!("{prefix}:{i}").into());
            }
            async move { self.try_build_request(request, options, policy).await }
        })
        .await
    }
}

impl SnapshotSession {
    /// Resolves a request in a new stage and classifies the outcome under
    /// `policy`; never returns an error.
    pub async fn try_resolve_request(
        &self,
        request: &SnapshotRequest,
        options: ResolveOptions,
        policy: &RequestDegradationPolicy,
    ) -> SnapshotResult {
        let result = match self.stage(request, options).await {
            Ok(evaluated) => SnapshotResult::classify(
                policy,
                evaluated.snapshot,
                request,
                evaluated.consistency,
                evaluated.acceptance,
                None,
            ),
            Err(error) => rejected(&self.engine, self.id(), request, policy, error),
        };
        self.engine.record_try(&result);
        result
    }
}
