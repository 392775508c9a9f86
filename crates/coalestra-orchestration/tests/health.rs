//! Catalogue area 19 (health snapshot, JSON schema, assessment severities and
//! reasons). The [py-only] payload-copy items (B19.17–B19.20) have no Rust
//! counterpart and are not covered.
//!
//! `SnapshotBuilder::health()` reads the runtime state without calling any
//! source; `BuilderHealth::to_json()` is versioned and its key set is pinned
//! by `tests/golden/health_v1_keys.json`; `BuilderHealth::assess()` reports
//! every reason with its severity, judging cumulative counters only as
//! deltas against a previous snapshot.

use std::collections::BTreeSet;
use std::num::{NonZeroU64, NonZeroUsize};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra_cache::MemoryCache;
use coalestra_concurrency::LimitSnapshot;
use coalestra_core::{
    BuildOptions, CircuitBreakerPolicy, CircuitScope, FetchContext, FnSource, FreshnessPolicy,
    ManualClock, RefreshMode, ResiliencePolicy, ResourceAcceptanceRule, ResourceKey, RetryPolicy,
    SnapshotAcceptancePolicy, SnapshotRequest, SourceError, SourceOptions, SourceOutput,
};
use coalestra_orchestration::{
    BufferHealth, BuilderHealth, GuaranteeStatus, HealthAssessment, HealthAssessmentPolicy,
    ResolveOptions, RevalidateOptions, SessionOptions, Severity, SnapshotBuilder,
    ASSESSMENT_SCHEMA, HEALTH_SCHEMA, HEALTH_SCHEMA_VERSION,
};
use coalestra_resilience::{CircuitState, CircuitStatus};
use coalestra_test::{key, Gate};
use serde_json::Value;

mod support;
use support::{counted, counter, lenient, single_attempt};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/health_v1_keys.json"
);
/// Set to regenerate the golden key list instead of comparing with it.
const BLESS_VAR: &str = "COALESTRA_BLESS_GOLDEN";

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A source answering 1 and counting calls.
fn counting(name: &str, calls: Arc<AtomicUsize>) -> FnSource {
    FnSource::new(name, move |_k: ResourceKey, _ctx: FetchContext| {
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(SourceOutput::new(1_u64))
        }
    })
}

/// A source that waits at `gate` before answering 1.
fn gated(name: &str, gate: Gate) -> FnSource {
    FnSource::new(name, move |_k: ResourceKey, _ctx: FetchContext| {
        let gate = gate.clone();
        async move {
            gate.pass().await;
            Ok(SourceOutput::new(1_u64))
        }
    })
}

/// A source that sleeps `delay` (tokio time) before answering 1.
fn sleeping(name: &str, delay: Duration) -> FnSource {
    FnSource::new(
        name,
        move |_k: ResourceKey, _ctx: FetchContext| async move {
            tokio::time::sleep(delay).await;
            Ok(SourceOutput::new(1_u64))
        },
    )
}

/// Yields until `condition` holds (bounded, so a broken engine fails the
/// test instead of hanging it).
async fn until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if condition() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("timed out waiting until {what}");
}

fn idle_builder() -> SnapshotBuilder {
    SnapshotBuilder::builder([counting("rest", counter()).into()])
        .max_concurrency(4)
        .build()
        .expect("a valid builder")
}

/// The health of an idle builder over one source, with a global limit of 4.
fn base() -> BuilderHealth {
    idle_builder().health()
}

fn reasons(assessment: &HealthAssessment) -> Vec<&'static str> {
    assessment.reasons.clone()
}

fn circuit(state: CircuitStatus) -> CircuitState {
    let mut circuit = CircuitState::default();
    circuit.state = state;
    circuit
}

fn buffer(pending: u64, max_pending: u64) -> BufferHealth {
    let mut buffer = BufferHealth::default();
    buffer.pending = pending;
    buffer.max_pending = max_pending;
    buffer.worker_alive = true;
    buffer
}

fn limit(limit: usize, in_use: usize, waiting: usize) -> LimitSnapshot {
    LimitSnapshot {
        limit,
        in_use,
        waiting,
    }
}

// ---------------------------------------------------------------------------
// The snapshot of a real builder
// ---------------------------------------------------------------------------

/// B19.1, B19.14, B19.15: a new builder's health is idle and taking it calls
/// no source.
#[tokio::test(start_paused = true)]
async fn idle_builder_health_reports_state_without_calling_any_source() {
    let calls = counter();
    let builder = SnapshotBuilder::builder([counting("rest", Arc::clone(&calls)).into()])
        .max_concurrency(4)
        .build()
        .expect("a valid builder");

    let h = builder.health();

    assert_eq!(counted(&calls), 0, "health() must not call a source");
    assert_eq!(h.schema, HEALTH_SCHEMA);
    assert_eq!(h.schema, "coalestra.builder-health");
    assert_eq!(h.schema_version, HEALTH_SCHEMA_VERSION);
    assert_eq!(h.schema_version, 1);
    assert!(!h.closed);
    assert_eq!(h.background_refreshes, 0);
    assert_eq!(h.singleflight_in_flight, 0);
    assert_eq!(h.source_support_cache_entries, 0);
    assert_eq!(h.capacity.global, limit(4, 0, 0));
    assert!(h.capacity.sources.is_empty(), "{:?}", h.capacity.sources);
    assert!(h.circuits.is_empty(), "{:?}", h.circuits);
    assert_eq!(h.active_dispatch_workers, 0);
    assert_eq!(h.waiting_for_capacity, 0);
    assert_eq!(h.queue_timeout_count, 0);
    assert_eq!(h.source_timeout_count, 0);
    assert_eq!(h.deadline_exceeded_count, 0);
    assert_eq!(h.revalidation_attempt_count, 0);
    assert_eq!(h.revalidation_failure_count, 0);
    assert_eq!(h.retry_count, 0);
    assert_eq!(h.circuit_rejection_count, 0);
    assert_eq!(h.cache.size, 0);
    assert_eq!(h.cache.sets, 0);
    let guarantee = h
        .source_timeout_guarantees
        .get("rest")
        .expect("a timeout guarantee for every source");
    assert_eq!(guarantee.status, GuaranteeStatus::NonBlocking);
    assert_eq!(h.blocking_source_count, 0);
    assert_eq!(h.protected_blocking_source_count, 0);
    assert_eq!(h.unsafe_blocking_source_count, 0);
    assert_eq!(h.undeclared_source_timeout_count, 0);
    assert_eq!(h.source_transport_timeout_violation_count, 0);
    assert!(h.source_transport_timeout_violations.is_empty());
    // B19.15: an async builder has no submission backlog.
    assert_eq!(h.pending_submissions, 0);
    assert_eq!(h.max_pending_submissions, None);
    assert!(h.observability_buffers.is_empty());
    assert_eq!(h.observability_pending, 0);
    assert_eq!(h.observability_dropped_count, 0);
    assert_eq!(h.observability_failure_count, 0);
    assert_eq!(h.observability_shutdown_timeout_count, 0);

    let assessment = h.assessment.clone().expect("health carries its assessment");
    assert_eq!(assessment.schema, ASSESSMENT_SCHEMA);
    assert_eq!(assessment.schema, "coalestra.builder-health-assessment");
    assert_eq!(assessment.schema_version, 1);
    assert_eq!(assessment.severity, Severity::Healthy);
    assert!(!assessment.baseline_used);
    assert!(assessment.reasons.is_empty());
    assert!(assessment.findings.is_empty());
    assert_eq!(
        assessment,
        h.assess(&HealthAssessmentPolicy::default(), None),
        "the embedded assessment uses the default policy without a baseline"
    );

    // Taking it again still calls nothing, and a clone reports the same state.
    assert_eq!(builder.clone().health(), builder.health());
    assert_eq!(counted(&calls), 0);
}

/// B19.7 (the part a builder can reach): a closed builder is reported closed
/// and assessed critical.
#[tokio::test(start_paused = true)]
async fn closed_builder_is_reported_and_assessed_critical() {
    let builder = idle_builder();
    builder.close().await;

    let h = builder.health();

    assert!(h.closed);
    let assessment = h.assessment.clone().expect("an assessment");
    assert_eq!(assessment.severity, Severity::Critical);
    assert_eq!(reasons(&assessment), ["builder_closed"]);
    assert_eq!(assessment.findings[0].severity, Severity::Critical);
}

/// B19.2, B19.4: the JSON form is versioned, complete, JSON-safe, and holds
/// only aggregates (no subject, qualifier value or rendered key).
#[tokio::test(start_paused = true)]
async fn health_json_is_versioned_json_safe_and_holds_only_aggregates() {
    let calls = counter();
    let cache = MemoryCache::with_capacity(NonZeroU64::new(100).expect("100 is not zero"));
    let builder = SnapshotBuilder::builder([counting("rest", Arc::clone(&calls)).into()])
        .max_concurrency(4)
        .cache(Arc::new(cache))
        .build()
        .expect("a valid builder");
    let btc = key("market:price:BTCUSDT?venue=spot");
    builder
        .build([btc.clone()])
        .await
        .expect("the build succeeds");
    assert_eq!(counted(&calls), 1);

    let json = builder.health().to_json();

    assert_eq!(json["schema"], "coalestra.builder-health");
    assert_eq!(json["schema_version"], 1);
    assert_eq!(json["closed"], false);
    assert_eq!(
        json["capacity"]["global"],
        serde_json::json!({"limit": 4, "in_use": 0, "waiting": 0})
    );
    assert_eq!(json["cache"]["max_entries"], 100);
    assert_eq!(json["cache"]["size"], 1);
    assert_eq!(json["cache"]["sets"], 1);
    let rest = &json["circuits"]["rest[source]"];
    assert_eq!(rest["state"], "closed", "circuits: {}", json["circuits"]);
    assert_eq!(rest["failures"], 0);
    assert_eq!(rest["half_open_probe_active"], false);
    assert_eq!(
        json["source_timeout_guarantees"]["rest"]["status"],
        "non_blocking"
    );
    assert_eq!(json["pending_submissions"], 0);
    assert_eq!(json["max_pending_submissions"], Value::Null);
    assert_eq!(
        json["observability_buffers"],
        serde_json::json!({}),
        "no builder-owned buffer for the default sinks"
    );
    let assessment = &json["assessment"];
    assert_eq!(assessment["schema"], "coalestra.builder-health-assessment");
    assert_eq!(assessment["schema_version"], 1);
    assert_eq!(assessment["severity"], "healthy");
    assert_eq!(assessment["baseline_used"], false);
    assert_eq!(assessment["reasons"], serde_json::json!([]));
    assert_eq!(assessment["findings"], serde_json::json!([]));

    // Lossless JSON round trip.
    let text = serde_json::to_string(&json).expect("health encodes");
    let back: Value = serde_json::from_str(&text).expect("health decodes");
    assert_eq!(back, json);

    // serde_json encodes a non-finite float as null: nulls may appear only
    // where the schema has optional fields.
    let mut nulls = Vec::new();
    null_paths(&json, "", &mut nulls);
    let allowed = ["max_pending_submissions", "circuits.*.opened_for"];
    for path in &nulls {
        assert!(
            allowed.contains(&path.as_str())
                || path.starts_with("source_timeout_guarantees.*.")
                    && (path.ends_with(".transport_timeout_seconds")
                        || path.ends_with(".source_timeout_seconds")),
            "unexpected null at {path} in {json}"
        );
    }

    // Only aggregates: nothing identifies a resource instance.
    for needle in ["BTCUSDT", "spot", &btc.to_string()] {
        assert!(
            !text.contains(needle),
            "health JSON must not contain {needle:?}: {text}"
        );
    }
}

/// Maps keyed by data (source names, circuit identities, buffer names); their
/// keys become `*` in key paths.
const DATA_MAPS: &[&str] = &[
    "capacity.sources",
    "circuits",
    "source_timeout_guarantees",
    "source_transport_timeout_violations",
    "observability_buffers",
];

fn child_path(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// Every key path of `value`: `a`, `a.b`, `list[].field`, with `*` for the
/// keys of [`DATA_MAPS`].
fn key_paths(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) => {
            let dynamic = DATA_MAPS.contains(&prefix);
            for (name, child) in map {
                let path = child_path(prefix, if dynamic { "*" } else { name });
                out.insert(path.clone());
                key_paths(child, &path, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                key_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

fn null_paths(value: &Value, prefix: &str, out: &mut Vec<String>) {
    match value {
        Value::Null => out.push(prefix.to_owned()),
        Value::Object(map) => {
            let dynamic = DATA_MAPS.contains(&prefix);
            for (name, child) in map {
                null_paths(
                    child,
                    &child_path(prefix, if dynamic { "*" } else { name }),
                    out,
                );
            }
        }
        Value::Array(items) => {
            for item in items {
                null_paths(item, &format!("{prefix}[]"), out);
            }
        }
        _ => {}
    }
}

/// The key list of an idle builder with one source (with a per-source limit,
/// so the shape of `capacity.sources` is pinned too).
fn golden_key_list() -> Vec<String> {
    let health = SnapshotBuilder::builder([counting("rest", counter()).into()])
        .source_concurrency("rest", 2)
        .build()
        .expect("a valid builder")
        .health();
    let mut paths = BTreeSet::new();
    key_paths(&health.to_json(), "", &mut paths);
    paths.into_iter().collect()
}

/// The JSON schema is stable: its key set is compared with a reviewed golden
/// file, so any schema change shows up as a diff. Regenerate with
/// `COALESTRA_BLESS_GOLDEN=1 cargo test -p coalestra-orchestration --test health`.
#[test]
fn health_json_key_set_matches_the_golden_file() {
    let actual = golden_key_list();
    if std::env::var_os(BLESS_VAR).is_some() {
        let text = serde_json::to_string_pretty(&actual).expect("a list of strings encodes");
        std::fs::write(GOLDEN, format!("{text}\n")).expect("the golden file can be written");
        return;
    }
    let text = std::fs::read_to_string(GOLDEN)
        .unwrap_or_else(|e| panic!("cannot read {GOLDEN} ({e}); set {BLESS_VAR}=1 to create it"));
    let expected: Vec<String> =
        serde_json::from_str(&text).expect("the golden file is a JSON list");
    let expected_set: BTreeSet<&String> = expected.iter().collect();
    let actual_set: BTreeSet<&String> = actual.iter().collect();
    let added: Vec<_> = actual_set.difference(&expected_set).collect();
    let removed: Vec<_> = expected_set.difference(&actual_set).collect();
    assert!(
        added.is_empty() && removed.is_empty(),
        "the builder-health schema changed: added {added:?}, removed {removed:?}; \
         bump schema_version if it is incompatible and re-bless the golden file"
    );
    assert_eq!(actual, expected, "the golden file is sorted");
    // The golden list pins the top-level fields a consumer relies on.
    for field in [
        "schema",
        "schema_version",
        "closed",
        "background_refreshes",
        "singleflight_in_flight",
        "capacity.global.in_use",
        "capacity.sources.*.waiting",
        "cache.size",
        "active_dispatch_workers",
        "waiting_for_capacity",
        "queue_timeout_count",
        "source_timeout_count",
        "deadline_exceeded_count",
        "revalidation_attempt_count",
        "revalidation_failure_count",
        "retry_count",
        "circuit_rejection_count",
        "source_timeout_guarantees.*.status",
        "source_transport_timeout_violation_count",
        "pending_submissions",
        "observability_dropped_count",
        "assessment.severity",
        "assessment.reasons",
    ] {
        assert!(
            expected.iter().any(|p| p == field),
            "{field} is missing from the golden file"
        );
    }
}

/// Issue proof: while work is held, health shows the capacity in use, the
/// waiters, the busy dispatch workers and the keys in flight; once released,
/// everything is back to zero.
#[tokio::test(start_paused = true)]
async fn health_follows_a_held_workload_and_returns_to_idle() {
    let gate = Gate::new();
    let builder = SnapshotBuilder::builder([gated("slow", gate.clone())
        .with_max_concurrency(NonZeroUsize::MIN)
        .into()])
    .max_concurrency(4)
    .resilience(single_attempt())
    .build()
    .expect("a valid builder");
    let first = tokio::spawn({
        let builder = builder.clone();
        async move { builder.build([key("market:price:AAA")]).await }
    });
    let second = tokio::spawn({
        let builder = builder.clone();
        async move { builder.build([key("market:price:BBB")]).await }
    });
    gate.wait_for_arrivals(1).await;
    until("the second call waits for the source slot", || {
        builder
            .capacity()
            .sources
            .get("slow")
            .is_some_and(|s| s.waiting == 1)
    })
    .await;

    let busy = builder.health();

    assert_eq!(busy.singleflight_in_flight, 2);
    assert_eq!(busy.capacity.sources.get("slow"), Some(&limit(1, 1, 1)));
    assert_eq!(busy.capacity.global, limit(4, 1, 0));
    assert_eq!(busy.waiting_for_capacity, 1);
    assert_eq!(
        busy.active_dispatch_workers, 2,
        "one worker calls the source, one waits for its slot"
    );
    let assessment = busy.assessment.clone().expect("an assessment");
    assert_eq!(reasons(&assessment), ["source_capacity_waiting"]);
    assert_eq!(
        assessment.severity,
        Severity::Critical,
        "one waiter on a limit of one is a ratio of 1.0"
    );

    gate.open();
    first.await.expect("no panic").expect("first build");
    second.await.expect("no panic").expect("second build");
    let idle = builder.health();
    assert_eq!(idle.singleflight_in_flight, 0);
    assert_eq!(idle.capacity.sources.get("slow"), Some(&limit(1, 0, 0)));
    assert_eq!(idle.capacity.global, limit(4, 0, 0));
    assert_eq!(idle.waiting_for_capacity, 0);
    assert_eq!(idle.active_dispatch_workers, 0);
    assert_eq!(idle.queue_timeout_count, 0);
    assert_eq!(idle.assessment.map(|a| a.severity), Some(Severity::Healthy));
}

/// Issue proof: a pending background refresh is visible in health, with its
/// key in flight, and disappears once it completes.
#[tokio::test(start_paused = true)]
async fn health_reports_pending_background_refreshes() {
    let clock = ManualClock::new(1_000.0);
    let gate = Gate::new();
    let calls = counter();
    let source = FnSource::new("rest", {
        let (gate, calls) = (gate.clone(), Arc::clone(&calls));
        move |_k: ResourceKey, _ctx: FetchContext| {
            let (gate, calls) = (gate.clone(), Arc::clone(&calls));
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) > 0 {
                    gate.pass().await;
                }
                Ok(SourceOutput::new(1_u64))
            }
        }
    });
    let policy = FreshnessPolicy::new(Duration::from_secs(1), Duration::from_secs(10))
        .expect("a valid policy")
        .with_refresh_mode(RefreshMode::StaleWhileRevalidate)
        .expect("a valid refresh mode");
    let builder = SnapshotBuilder::builder([source.into()])
        .clock(Arc::new(clock.clone()))
        .default_policy(policy)
        .resilience(single_attempt())
        .build()
        .expect("a valid builder");
    let k = key("market:price:BTC");
    builder.build([k.clone()]).await.expect("first build");
    clock.advance(Duration::from_secs(2));
    let snapshot = builder.build([k.clone()]).await.expect("stale build");
    assert!(snapshot.get(&k).is_some_and(|v| v.refresh_scheduled()));
    gate.wait_for_arrivals(1).await;

    let refreshing = builder.health();

    assert_eq!(refreshing.background_refreshes, 1);
    assert_eq!(refreshing.singleflight_in_flight, 1);
    assert_eq!(refreshing.active_dispatch_workers, 1);
    assert_eq!(refreshing.capacity.global.in_use, 1);

    gate.open();
    builder.wait_for_refreshes().await;
    let done = builder.health();
    assert_eq!(done.background_refreshes, 0);
    assert_eq!(done.singleflight_in_flight, 0);
    assert_eq!(done.active_dispatch_workers, 0);
    assert_eq!(done.capacity.global.in_use, 0);
    assert_eq!(counted(&calls), 2);
}

fn supports_name(source: FnSource, name: &'static str) -> FnSource {
    source.with_supports(move |k: &ResourceKey| k.name() == name)
}

/// Issue proof: after a controlled workload (one retry, one source timeout,
/// one deadline, one queue timeout, one circuit rejection) the cumulative
/// counters are exact, capacity is back to zero, and the assessment against
/// the snapshot taken before reports exactly the counters that moved.
#[tokio::test(start_paused = true)]
async fn health_counters_are_exact_after_a_controlled_workload() {
    let flaky_calls = counter();
    let flaky = FnSource::new("flaky", {
        let calls = Arc::clone(&flaky_calls);
        move |_k: ResourceKey, _ctx: FetchContext| {
            let calls = Arc::clone(&calls);
            async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    Err(SourceError::unavailable("connection reset"))
                } else {
                    Ok(SourceOutput::new(1_u64))
                }
            }
        }
    });
    let gate = Gate::new();
    let narrow = FnSource::new("narrow", {
        let gate = gate.clone();
        move |k: ResourceKey, _ctx: FetchContext| {
            let gate = gate.clone();
            async move {
                if k.subject() == "hold" {
                    gate.pass().await;
                }
                Ok(SourceOutput::new(1_u64))
            }
        }
    })
    .with_max_concurrency(NonZeroUsize::MIN)
    .with_queue_timeout(ms(10));
    let broken = FnSource::new("broken", |_k: ResourceKey, _ctx: FetchContext| async {
        Err::<SourceOutput, _>(SourceError::protocol("bad payload"))
    });
    let open_after_one = ResiliencePolicy::new(
        RetryPolicy::none(),
        CircuitBreakerPolicy::new(CircuitScope::Source, 1, Duration::from_secs(10))
            .expect("a valid circuit policy"),
    );
    let builder = SnapshotBuilder::builder([
        supports_name(flaky, "retry").into(),
        supports_name(sleeping("sluggish", ms(50)).with_timeout(ms(10)), "timeout").into(),
        supports_name(sleeping("glacial", Duration::from_secs(1)), "deadline").into(),
        supports_name(narrow, "queue").into(),
        supports_name(broken, "circuit").into(),
    ])
    .max_concurrency(8)
    .resilience(single_attempt())
    .source_resilience("flaky", ResiliencePolicy::default())
    .source_resilience("broken", open_after_one)
    .build()
    .expect("a valid builder");
    let before = builder.health();

    // One retry, then success.
    let retried = builder
        .build([key("market:retry:A")])
        .await
        .expect("the retry succeeds");
    assert_eq!(
        retried.get(&key("market:retry:A")).map(|v| v.attempts()),
        Some(2)
    );
    // One source timeout.
    let timed_out = builder
        .build_with([key("market:timeout:A")], lenient())
        .await
        .expect("a lenient build returns");
    assert!(timed_out.error(&key("market:timeout:A")).is_some());
    // One snapshot deadline.
    let late = builder
        .build_with([key("market:deadline:A")], lenient().deadline(ms(20)))
        .await
        .expect("a lenient build returns");
    assert!(late.error(&key("market:deadline:A")).is_some());
    // One queue timeout, while another call holds the only slot.
    let holder = tokio::spawn({
        let builder = builder.clone();
        async move { builder.build([key("market:queue:hold")]).await }
    });
    gate.wait_for_arrivals(1).await;
    let queued = builder
        .build_with([key("market:queue:other")], lenient())
        .await
        .expect("a lenient build returns");
    assert!(queued.error(&key("market:queue:other")).is_some());
    gate.open();
    holder
        .await
        .expect("no panic")
        .expect("the holder succeeds");
    // One failure opens the circuit, the next call is rejected by it.
    for _ in 0..2 {
        let failed = builder
            .build_with([key("market:circuit:A")], lenient())
            .await
            .expect("a lenient build returns");
        assert!(failed.error(&key("market:circuit:A")).is_some());
    }

    let after = builder.health();

    assert_eq!(after.retry_count, 1, "retries");
    assert_eq!(after.source_timeout_count, 1, "source timeouts");
    assert_eq!(after.deadline_exceeded_count, 1, "deadlines");
    assert_eq!(after.queue_timeout_count, 1, "queue timeouts");
    assert_eq!(after.circuit_rejection_count, 1, "circuit rejections");
    assert_eq!(after.revalidation_attempt_count, 0);
    assert_eq!(after.revalidation_failure_count, 0);
    assert_eq!(builder.timeout_counts(), (1, 1, 1));
    assert_eq!(after.circuits_in(CircuitStatus::Open), 1);
    assert_eq!(
        after.circuits.get("broken[source]").map(|c| c.state),
        Some(CircuitStatus::Open),
        "{:?}",
        after.circuits
    );
    assert_eq!(after.capacity.global, limit(8, 0, 0));
    assert_eq!(after.capacity.sources.get("narrow"), Some(&limit(1, 0, 0)));
    assert_eq!(after.waiting_for_capacity, 0);
    assert_eq!(after.active_dispatch_workers, 0);
    assert_eq!(after.singleflight_in_flight, 0);

    let assessment = after.assess(&HealthAssessmentPolicy::default(), Some(&before));
    assert!(assessment.baseline_used);
    assert_eq!(assessment.severity, Severity::Degraded);
    assert_eq!(
        reasons(&assessment),
        [
            "circuit_open",
            "queue_timeouts_increased",
            "source_timeouts_increased",
            "deadlines_exceeded_increased",
        ]
    );
    // Without a baseline only the current state counts.
    assert_eq!(
        after.assessment.as_ref().map(reasons),
        Some(vec!["circuit_open"])
    );
}

/// Issue proof: session revalidations are counted, and those that keep the
/// previous state are counted as failures.
#[tokio::test(start_paused = true)]
async fn health_counts_revalidation_attempts_and_failures() {
    let failing = Arc::new(AtomicBool::new(false));
    let source = FnSource::new("rest", {
        let failing = Arc::clone(&failing);
        move |_k: ResourceKey, _ctx: FetchContext| {
            let failing = failing.load(Ordering::SeqCst);
            async move {
                if failing {
                    Err(SourceError::unavailable("down"))
                } else {
                    Ok(SourceOutput::new(1_u64))
                }
            }
        }
    });
    let builder = SnapshotBuilder::builder([source.into()])
        .resilience(single_attempt())
        .build()
        .expect("a valid builder");
    let k = key("market:price:BTC");
    let session = builder
        .session(SessionOptions::new())
        .expect("a session opens");
    session
        .resolve([k.clone()], ResolveOptions::new())
        .await
        .expect("the key resolves");
    let before = builder.health();

    session
        .revalidate([k.clone()], RevalidateOptions::new().force_refresh(true))
        .await
        .expect("the revalidation commits");
    failing.store(true, Ordering::SeqCst);
    // Whether a failed lenient revalidation returns the error or a snapshot
    // is area 13's business; here only the counters matter.
    let _ = session
        .revalidate(
            [k.clone()],
            RevalidateOptions::new().force_refresh(true).strict(false),
        )
        .await;

    let after = builder.health();
    assert_eq!(after.revalidation_attempt_count, 2);
    assert_eq!(after.revalidation_failure_count, 1);
    let assessment = after.assess(&HealthAssessmentPolicy::default(), Some(&before));
    assert_eq!(reasons(&assessment), ["revalidation_failures_increased"]);
    assert_eq!(assessment.severity, Severity::Degraded);
    assert_eq!(
        assessment.findings[0].metric,
        "delta_revalidation_failure_count"
    );
}

/// B19.16: the integration contract smoke test: an inline local source, a
/// request with an acceptance policy, then a healthy, versioned health.
#[tokio::test(start_paused = true)]
async fn integration_contract_smoke_test() {
    let clock = ManualClock::new(1_000.0);
    let local = FnSource::sync("local", |_k: &ResourceKey, _ctx: &FetchContext| {
        Ok(SourceOutput::new(1_u64))
    })
    .inline();
    let builder = SnapshotBuilder::builder([local.into()])
        .clock(Arc::new(clock))
        .build()
        .expect("a valid builder");
    let k = key("market:price:BTC");
    let acceptance = SnapshotAcceptancePolicy::builder()
        .default_rule(
            ResourceAcceptanceRule::unconstrained()
                .max_age(Duration::from_secs(1))
                .allow_stale(false),
        )
        .build()
        .expect("a valid acceptance policy");
    let request = SnapshotRequest::required([k.clone()])
        .expect("a valid request")
        .with_acceptance(acceptance)
        .expect("the policy names no outside key");

    let snapshot = builder
        .build_request(&request, BuildOptions::new())
        .await
        .expect("the request is accepted");

    assert!(snapshot.is_complete());
    let json = builder.health().to_json();
    assert_eq!(json["schema"], "coalestra.builder-health");
    assert_eq!(json["assessment"]["severity"], "healthy");
    assert_eq!(json["undeclared_source_timeout_count"], 0);
    assert_eq!(json["unsafe_blocking_source_count"], 0);
}

// ---------------------------------------------------------------------------
// assess(): severities and reasons
// ---------------------------------------------------------------------------

/// B19.5: large cumulative counters without a baseline are healthy.
#[test]
fn assessment_without_a_baseline_ignores_cumulative_counters() {
    let mut h = base();
    h.queue_timeout_count = 100;
    h.source_timeout_count = 100;
    h.deadline_exceeded_count = 100;
    h.revalidation_failure_count = 100;
    h.source_transport_timeout_violation_count = 100;
    h.observability_dropped_count = 100;
    h.observability_failure_count = 100;
    h.observability_shutdown_timeout_count = 100;
    h.retry_count = 100;
    h.circuit_rejection_count = 100;

    let assessment = h.assess(&HealthAssessmentPolicy::default(), None);

    assert_eq!(assessment.severity, Severity::Healthy);
    assert!(assessment.findings.is_empty(), "{:?}", assessment.findings);
    assert!(assessment.reasons.is_empty());
    assert!(!assessment.baseline_used);
}

/// B19.6: one capacity waiter below the limit and an open circuit are
/// degraded, in that order; the JSON carries the reason names.
#[test]
fn capacity_waiting_and_open_circuit_are_degraded() {
    let mut h = base();
    h.capacity.global = limit(4, 1, 1);
    h.waiting_for_capacity = 1;
    h.circuits
        .insert("rest[source]".to_owned(), circuit(CircuitStatus::Open));

    let assessment = h.assess(&HealthAssessmentPolicy::default(), None);

    assert_eq!(assessment.severity, Severity::Degraded);
    assert_eq!(
        reasons(&assessment),
        ["source_capacity_waiting", "circuit_open"]
    );
    let waiting = &assessment.findings[0];
    assert_eq!(waiting.severity, Severity::Degraded);
    assert_eq!(waiting.metric, "waiting_for_capacity");
    assert_eq!(waiting.observed, 1.0);
    assert_eq!(waiting.threshold, 1.0);
    let open = &assessment.findings[1];
    assert_eq!(open.severity, Severity::Degraded);
    assert_eq!(open.observed, 1.0);
    let json = serde_json::to_value(&assessment).expect("an assessment encodes");
    assert_eq!(
        json["reasons"],
        serde_json::json!(["source_capacity_waiting", "circuit_open"])
    );
    assert_eq!(json["severity"], "degraded");
    for finding in json["findings"].as_array().expect("a findings list") {
        let mut fields: Vec<&str> = finding
            .as_object()
            .expect("a finding is an object")
            .keys()
            .map(String::as_str)
            .collect();
        fields.sort_unstable();
        assert_eq!(
            fields,
            [
                "component",
                "metric",
                "observed",
                "reason",
                "severity",
                "threshold"
            ]
        );
    }
}

/// B19.10: capacity waiting is critical once the waiters of one limiter
/// reach the critical ratio of its limit (global or per source).
#[test]
fn capacity_waiting_is_critical_when_waiters_reach_a_limit() {
    let mut global = base();
    global.capacity.global = limit(4, 4, 4);
    global.waiting_for_capacity = 4;
    let assessment = global.assess(&HealthAssessmentPolicy::default(), None);
    assert_eq!(reasons(&assessment), ["source_capacity_waiting"]);
    assert_eq!(assessment.severity, Severity::Critical);

    let mut per_source = base();
    per_source
        .capacity
        .sources
        .insert("rest".to_owned(), limit(2, 2, 2));
    per_source.waiting_for_capacity = 2;
    let assessment = per_source.assess(&HealthAssessmentPolicy::default(), None);
    assert_eq!(assessment.severity, Severity::Critical);

    // A custom policy: degraded from 2 waiters, critical at half a limit.
    let policy = HealthAssessmentPolicy::default()
        .with_capacity_waiting(2, 0.5)
        .expect("a valid policy");
    let mut one = base();
    one.capacity.global = limit(4, 4, 1);
    one.waiting_for_capacity = 1;
    assert_eq!(one.assess(&policy, None).severity, Severity::Healthy);
    let mut two = base();
    two.capacity.global = limit(4, 4, 2);
    two.waiting_for_capacity = 2;
    let assessment = two.assess(&policy, None);
    assert_eq!(assessment.severity, Severity::Critical);
    assert_eq!(assessment.findings[0].threshold, 2.0);
}

/// B19.7 (without the [py-only] copy items), B19.15: a closed builder and a
/// submission backlog at 90 % are critical; `with_submissions` overlays the
/// backlog and re-assesses.
#[test]
fn closed_builder_and_full_submission_backlog_are_critical() {
    let mut h = base();
    h.closed = true;
    let h = h.with_submissions(9, 10);

    assert_eq!(h.pending_submissions, 9);
    assert_eq!(h.max_pending_submissions, Some(10));
    let assessment = h.assessment.clone().expect("with_submissions re-assesses");
    assert_eq!(
        assessment,
        h.assess(&HealthAssessmentPolicy::default(), None)
    );
    assert_eq!(assessment.severity, Severity::Critical);
    assert_eq!(
        reasons(&assessment),
        ["builder_closed", "submission_backlog_high"]
    );
    let backlog = &assessment.findings[1];
    assert_eq!(backlog.severity, Severity::Critical);
    assert_eq!(backlog.metric, "pending_submissions");
    assert!((backlog.observed - 0.9).abs() < 1e-9, "{backlog:?}");
    assert!((backlog.threshold - 0.9).abs() < 1e-9, "{backlog:?}");
    let json = h.to_json();
    assert_eq!(json["pending_submissions"], 9);
    assert_eq!(json["max_pending_submissions"], 10);
    assert_eq!(json["assessment"]["severity"], "critical");
}

/// B19.9: submission backlog thresholds are configurable.
#[test]
fn submission_backlog_thresholds_follow_the_policy() {
    let h = base().with_submissions(4, 10);
    assert_eq!(
        h.assess(&HealthAssessmentPolicy::default(), None).severity,
        Severity::Healthy,
        "40 % is below the default 50 %"
    );
    let h = base().with_submissions(5, 10);
    let assessment = h.assess(&HealthAssessmentPolicy::default(), None);
    assert_eq!(assessment.severity, Severity::Degraded);
    assert_eq!(reasons(&assessment), ["submission_backlog_high"]);

    let strict = HealthAssessmentPolicy::default()
        .with_submission_backlog(0.3, 0.4)
        .expect("a valid policy");
    let h = base().with_submissions(4, 10);
    let assessment = h.assess(&strict, None);
    assert_eq!(assessment.severity, Severity::Critical);
    assert_eq!(reasons(&assessment), ["submission_backlog_high"]);
    let degraded = HealthAssessmentPolicy::default()
        .with_submission_backlog(0.3, 0.5)
        .expect("a valid policy");
    assert_eq!(h.assess(&degraded, None).severity, Severity::Degraded);
}

/// B19.8: counters are compared with the previous snapshot: a delta of 1 is
/// degraded, a delta of 5 critical.
#[test]
fn counter_deltas_against_the_previous_snapshot() {
    let previous = base();
    let mut current = base();
    current.source_timeout_count = 1;

    let assessment = current.assess(&HealthAssessmentPolicy::default(), Some(&previous));
    assert_eq!(assessment.severity, Severity::Degraded);
    assert!(assessment.baseline_used);
    assert_eq!(reasons(&assessment), ["source_timeouts_increased"]);

    current.source_timeout_count = 5;
    let assessment = current.assess(&HealthAssessmentPolicy::default(), Some(&previous));
    assert_eq!(assessment.severity, Severity::Critical);
    assert_eq!(assessment.findings[0].observed, 5.0);
    assert_eq!(assessment.findings[0].threshold, 5.0);
    assert_eq!(assessment.findings[0].metric, "delta_source_timeout_count");

    // An unchanged counter, even a high one, is healthy against a baseline.
    let assessment = current.assess(&HealthAssessmentPolicy::default(), Some(&current));
    assert_eq!(assessment.severity, Severity::Healthy);
    assert!(assessment.baseline_used);
}

type Setter = fn(&mut BuilderHealth, u64);

/// B19.11: every cumulative counter the assessment follows, with its reason
/// and metric; a counter that went down (a new builder) is not a finding.
#[test]
fn every_counter_delta_has_its_reason_and_severities() {
    let table: [(&str, &str, Setter); 8] = [
        ("queue_timeouts_increased", "queue_timeout_count", |h, n| {
            h.queue_timeout_count = n
        }),
        (
            "source_timeouts_increased",
            "source_timeout_count",
            |h, n| h.source_timeout_count = n,
        ),
        (
            "source_transport_timeout_violations_increased",
            "source_transport_timeout_violation_count",
            |h, n| h.source_transport_timeout_violation_count = n,
        ),
        (
            "deadlines_exceeded_increased",
            "deadline_exceeded_count",
            |h, n| h.deadline_exceeded_count = n,
        ),
        (
            "revalidation_failures_increased",
            "revalidation_failure_count",
            |h, n| h.revalidation_failure_count = n,
        ),
        (
            "observability_drops_increased",
            "observability_dropped_count",
            |h, n| h.observability_dropped_count = n,
        ),
        (
            "observability_shutdown_timeouts_increased",
            "observability_shutdown_timeout_count",
            |h, n| h.observability_shutdown_timeout_count = n,
        ),
        (
            "observability_failures_increased",
            "observability_failure_count",
            |h, n| h.observability_failure_count = n,
        ),
    ];
    let policy = HealthAssessmentPolicy::default();
    for (reason, field, set) in table {
        let mut previous = base();
        set(&mut previous, 10);
        let with = |n: u64| {
            let mut h = base();
            set(&mut h, n);
            h.assess(&policy, Some(&previous))
        };
        for (now, severity) in [
            (11, Some(Severity::Degraded)),
            (14, Some(Severity::Degraded)),
            (15, Some(Severity::Critical)),
            (40, Some(Severity::Critical)),
            (10, None),
            (3, None),
        ] {
            let assessment = with(now);
            match severity {
                None => assert!(
                    assessment.findings.is_empty(),
                    "{field} 10 -> {now}: {:?}",
                    assessment.findings
                ),
                Some(severity) => {
                    assert_eq!(reasons(&assessment), [reason], "{field} 10 -> {now}");
                    let finding = &assessment.findings[0];
                    assert_eq!(finding.severity, severity, "{field} 10 -> {now}");
                    assert_eq!(assessment.severity, severity);
                    assert_eq!(finding.metric, format!("delta_{field}"));
                    assert_eq!(finding.observed, (now - 10) as f64);
                    let threshold = if severity == Severity::Critical {
                        5.0
                    } else {
                        1.0
                    };
                    assert_eq!(finding.threshold, threshold, "{field}");
                    assert_eq!(finding.component, "");
                }
            }
        }
    }
}

/// B19.9: counter delta thresholds are configurable.
#[test]
fn counter_delta_thresholds_follow_the_policy() {
    let policy = HealthAssessmentPolicy::default()
        .with_counter_delta(2, 3)
        .expect("a valid policy");
    let previous = base();
    let mut current = base();
    current.queue_timeout_count = 1;
    assert_eq!(
        current.assess(&policy, Some(&previous)).severity,
        Severity::Healthy
    );
    current.queue_timeout_count = 2;
    assert_eq!(
        current.assess(&policy, Some(&previous)).severity,
        Severity::Degraded
    );
    current.queue_timeout_count = 3;
    assert_eq!(
        current.assess(&policy, Some(&previous)).severity,
        Severity::Critical
    );
}

/// Policy thresholds are validated.
#[test]
fn assessment_policy_rejects_invalid_thresholds() {
    let p = HealthAssessmentPolicy::default;
    assert!(p().with_submission_backlog(0.0, 0.5).is_err(), "zero ratio");
    assert!(
        p().with_submission_backlog(0.6, 0.5).is_err(),
        "degraded > critical"
    );
    assert!(
        p().with_submission_backlog(0.5, 1.1).is_err(),
        "ratio above 1"
    );
    assert!(p().with_submission_backlog(f64::NAN, 0.5).is_err(), "NaN");
    assert!(
        p().with_submission_backlog(0.5, f64::INFINITY).is_err(),
        "infinite"
    );
    assert!(p().with_submission_backlog(0.5, 0.5).is_ok());
    assert!(
        p().with_observability_backlog(-0.1, 0.5).is_err(),
        "negative"
    );
    assert!(
        p().with_observability_backlog(0.9, 0.5).is_err(),
        "degraded > critical"
    );
    assert!(
        p().with_observability_backlog(0.2, f64::NAN).is_err(),
        "NaN"
    );
    assert!(p().with_observability_backlog(0.2, 1.0).is_ok());
    assert!(p().with_counter_delta(0, 5).is_err(), "zero delta");
    assert!(
        p().with_counter_delta(5, 4).is_err(),
        "critical below degraded"
    );
    assert!(p().with_counter_delta(2, 2).is_ok());
    assert!(p().with_capacity_waiting(0, 1.0).is_err(), "zero waiters");
    assert!(p().with_capacity_waiting(1, 0.0).is_err(), "zero ratio");
    assert!(p().with_capacity_waiting(1, f64::NAN).is_err(), "NaN");
    assert!(
        p().with_capacity_waiting(1, f64::INFINITY).is_err(),
        "infinite"
    );
    assert!(p().with_capacity_waiting(3, 0.5).is_ok());
}

/// B19.10, B19.14, B18.16: buffered sinks add their counters to the
/// aggregates; a backlog is degraded from 50 % and critical from 90 % of the
/// bound, per buffer (component = buffer name); a dead worker of an open
/// buffer and a closed buffer whose worker still runs are critical.
#[test]
fn observability_buffers_are_aggregated_and_assessed() {
    let mut events = buffer(5, 10);
    events.dropped = 2;
    events.failures = 1;
    events.shutdown_timeout_count = 1;
    let mut metrics = buffer(1, 10);
    metrics.dropped = 3;
    metrics.failures = 4;
    let h = base()
        .with_buffer("events", events.clone())
        .with_buffer("metrics", metrics);

    assert_eq!(h.observability_buffers.len(), 2);
    assert_eq!(h.observability_buffers.get("events"), Some(&events));
    assert_eq!(h.observability_pending, 6);
    assert_eq!(h.observability_dropped_count, 5);
    assert_eq!(h.observability_failure_count, 5);
    assert_eq!(h.observability_shutdown_timeout_count, 1);
    let assessment = h.assessment.clone().expect("with_buffer re-assesses");
    assert_eq!(reasons(&assessment), ["observability_backlog_high"]);
    assert_eq!(assessment.severity, Severity::Degraded);
    assert_eq!(assessment.findings[0].component, "events");
    assert_eq!(h.to_json()["observability_buffers"]["events"]["pending"], 5);

    let critical = base().with_buffer("events", buffer(9, 10));
    let assessment = critical.assess(&HealthAssessmentPolicy::default(), None);
    assert_eq!(assessment.severity, Severity::Critical);
    assert_eq!(reasons(&assessment), ["observability_backlog_high"]);

    let mut dead = buffer(0, 10);
    dead.worker_alive = false;
    let assessment = base()
        .with_buffer("metrics", dead)
        .assess(&HealthAssessmentPolicy::default(), None);
    assert_eq!(reasons(&assessment), ["observability_worker_stopped"]);
    assert_eq!(assessment.severity, Severity::Critical);
    assert_eq!(assessment.findings[0].component, "metrics");

    let mut closing = buffer(0, 10);
    closing.closed = true;
    let assessment = base()
        .with_buffer("events", closing)
        .assess(&HealthAssessmentPolicy::default(), None);
    assert_eq!(reasons(&assessment), ["observability_shutdown_incomplete"]);
    assert_eq!(assessment.severity, Severity::Critical);

    let mut finished = buffer(0, 10);
    finished.closed = true;
    finished.worker_alive = false;
    let assessment = base()
        .with_buffer("events", finished)
        .assess(&HealthAssessmentPolicy::default(), None);
    assert_eq!(
        assessment.severity,
        Severity::Healthy,
        "a closed buffer whose worker stopped shut down cleanly"
    );
}

/// B19.10: a half-open circuit is degraded.
#[test]
fn half_open_circuit_is_degraded() {
    let mut h = base();
    h.circuits
        .insert("rest[source]".to_owned(), circuit(CircuitStatus::HalfOpen));
    h.circuits
        .insert("ws[source]".to_owned(), circuit(CircuitStatus::HalfOpen));

    let assessment = h.assess(&HealthAssessmentPolicy::default(), None);

    assert_eq!(reasons(&assessment), ["circuit_half_open"]);
    assert_eq!(assessment.severity, Severity::Degraded);
    assert_eq!(assessment.findings[0].observed, 2.0);
}

/// B19.10: unsafe blocking sources are critical; the component lists their
/// names sorted.
#[tokio::test(start_paused = true)]
async fn unsafe_blocking_sources_are_critical_with_sorted_names() {
    let zeta = FnSource::sync("zeta", |_k: &ResourceKey, _ctx: &FetchContext| {
        Ok(SourceOutput::new(1_u64))
    })
    .with_blocking_io(None);
    let alpha = counting("alpha", counter()).with_blocking_io(Some(Duration::from_secs(1)));
    let builder = SnapshotBuilder::builder([zeta.into(), alpha.into()])
        .allow_unsafe_blocking_sources(true)
        .build()
        .expect("unsafe sources are allowed");

    let h = builder.health();

    assert_eq!(h.unsafe_blocking_source_count, 2);
    let assessment = h.assessment.clone().expect("an assessment");
    assert_eq!(assessment.severity, Severity::Critical);
    assert_eq!(reasons(&assessment), ["unsafe_blocking_source"]);
    assert_eq!(assessment.findings[0].component, "alpha,zeta");
    assert_eq!(assessment.findings[0].observed, 2.0);
}

/// B19.10, B19.12: findings follow a fixed order, reasons are unique in
/// finding order, and the overall severity is the worst finding's.
#[tokio::test(start_paused = true)]
async fn findings_follow_the_fixed_order_with_unique_reasons() {
    let unsafe_source = FnSource::sync("legacy", |_k: &ResourceKey, _ctx: &FetchContext| {
        Ok(SourceOutput::new(1_u64))
    })
    .with_blocking_io(None);
    let builder = SnapshotBuilder::builder([unsafe_source.into()])
        .max_concurrency(4)
        .allow_unsafe_blocking_sources(true)
        .build()
        .expect("unsafe sources are allowed");
    let previous = builder.health();
    let mut h = builder.health();
    h.closed = true;
    h.capacity.global = limit(4, 4, 1);
    h.waiting_for_capacity = 1;
    h.circuits
        .insert("a[source]".to_owned(), circuit(CircuitStatus::Open));
    h.circuits
        .insert("b[source]".to_owned(), circuit(CircuitStatus::HalfOpen));
    h.queue_timeout_count = 1;
    h.observability_failure_count = 1;
    let mut stalled = buffer(9, 10);
    stalled.worker_alive = false;
    let mut closing = buffer(6, 10);
    closing.closed = true;
    let h = h
        .with_submissions(6, 10)
        .with_buffer("events", stalled)
        .with_buffer("metrics", closing);

    let assessment = h.assess(&HealthAssessmentPolicy::default(), Some(&previous));

    let found: Vec<(&str, Severity, &str)> = assessment
        .findings
        .iter()
        .map(|f| (f.reason, f.severity, f.component.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("builder_closed", Severity::Critical, ""),
            ("unsafe_blocking_source", Severity::Critical, "legacy"),
            ("source_capacity_waiting", Severity::Degraded, ""),
            ("submission_backlog_high", Severity::Degraded, ""),
            ("observability_backlog_high", Severity::Critical, "events"),
            ("observability_backlog_high", Severity::Degraded, "metrics"),
            ("observability_worker_stopped", Severity::Critical, "events"),
            ("circuit_open", Severity::Degraded, ""),
            ("circuit_half_open", Severity::Degraded, ""),
            (
                "observability_shutdown_incomplete",
                Severity::Critical,
                "metrics"
            ),
            ("queue_timeouts_increased", Severity::Degraded, ""),
            ("observability_failures_increased", Severity::Degraded, ""),
        ]
    );
    assert_eq!(
        reasons(&assessment),
        [
            "builder_closed",
            "unsafe_blocking_source",
            "source_capacity_waiting",
            "submission_backlog_high",
            "observability_backlog_high",
            "observability_worker_stopped",
            "circuit_open",
            "circuit_half_open",
            "observability_shutdown_incomplete",
            "queue_timeouts_increased",
            "observability_failures_increased",
        ]
    );
    assert_eq!(assessment.severity, Severity::Critical);
}
