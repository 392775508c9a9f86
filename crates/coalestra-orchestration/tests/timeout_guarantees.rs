//! Catalogue area 11, B11.11–B11.28 (blocking-source timeout guarantees):
//! declarations and their classification, builder rejection of unsafe
//! declarations (or their admission with `allow_unsafe_blocking_sources`),
//! the pre-dispatch budget check with its rejection metric and event, the
//! deadline dispatch grace with its pressure event, transport-timeout
//! violations (`completed_late`, `failed_late`, `coalestra_timeout`) and the
//! blocking / protected / unsafe counts of health.
//!
//! Rust decisions: every source declares through `SourceInfo`'s defaults, so
//! there is no "undeclared" source (B11.25/B11.26 become "trait defaults are
//! a non-blocking declaration"). Blocking calls are held with std channels
//! while the test moves tokio's paused clock with `tokio::time::advance`, so
//! elapsed times are exact and no real sleep is involved.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use coalestra_core::{
    BuildOptions, CoalestraError, Event, FetchContext, FnBatchSource, FnDerivedSource, FnSource,
    ResourceKey, Snapshot, Source, SourceError, SourceInfo, SourceOptions, SourceOutput,
};
use coalestra_orchestration::{
    BuilderConfig, BuilderHealth, GuaranteeStatus, HealthAssessmentPolicy, Severity,
    SnapshotBuilder, TimeoutGuarantee,
};
use coalestra_test::{key, RecordingSink};
use tokio::sync::mpsc as tokio_mpsc;

mod support;
use support::{counted, counter, lenient, recording, single_attempt, HANG_GUARD};

fn price() -> ResourceKey {
    key("market:price:BTCUSDT?venue=spot")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A synchronous (offloaded) source answering "ok" and counting calls.
fn blocking_ok(name: &str, calls: Arc<AtomicUsize>) -> FnSource {
    FnSource::sync(name, move |_k: &ResourceKey, _ctx: &FetchContext| {
        calls.fetch_add(1, Ordering::SeqCst);
        Ok(SourceOutput::new("ok".to_owned()))
    })
}

/// A protected blocking source: offloaded, source timeout `timeout`,
/// transport timeout `transport`.
fn protected(
    name: &str,
    calls: Arc<AtomicUsize>,
    timeout: Duration,
    transport: Duration,
) -> FnSource {
    blocking_ok(name, calls)
        .with_timeout(timeout)
        .with_blocking_io(Some(transport))
}

/// A configuration over the protected blocking source "blocking" (source
/// timeout 2 s, transport timeout 1 s, counting into `calls`), reporting to
/// `sink`.
fn protected_blocking(calls: &Arc<AtomicUsize>, sink: &RecordingSink) -> BuilderConfig {
    let source = protected("blocking", Arc::clone(calls), secs(2), secs(1));
    recording(SnapshotBuilder::builder([source.into()]), sink)
}

fn async_ok(name: &str) -> FnSource {
    FnSource::new(name, |_k: ResourceKey, _ctx: FetchContext| async {
        Ok(SourceOutput::new("ok".to_owned()))
    })
}

fn text(event: &Event, field: &str) -> String {
    event
        .get(field)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("{} has no text field {field}: {event:?}", event.name))
        .to_owned()
}

fn number(event: &Event, field: &str) -> f64 {
    event
        .get(field)
        .and_then(|v| v.as_f64())
        .unwrap_or_else(|| panic!("{} has no numeric field {field}: {event:?}", event.name))
}

fn field_names(event: &Event) -> BTreeSet<&'static str> {
    event.fields.iter().map(|(name, _)| *name).collect()
}

fn close_to(actual: f64, expected: f64) -> bool {
    (actual - expected).abs() < 1e-9
}

/// The one event named `name` that `sink` recorded.
fn single_event(sink: &RecordingSink, name: &str) -> Event {
    let mut events = sink.events_named(name);
    assert_eq!(events.len(), 1, "{events:?}");
    events.remove(0)
}

/// Asserts that `event` is about the price key at `source` and carries
/// exactly `source`, `resource` and `fields`.
fn assert_price_event(event: &Event, source: &str, fields: &[&str]) {
    let mut names = BTreeSet::from(["source", "resource"]);
    names.extend(fields);
    assert_eq!(field_names(event), names);
    assert_eq!(text(event, "source"), source);
    assert_eq!(text(event, "resource"), price().to_string());
}

/// Asserts that `event` weighs the 1 s transport timeout of the `blocking`
/// source's call for the price key against `budget` seconds, carrying the
/// budget fields and `extra` ones.
fn assert_budget_event(event: &Event, budget: f64, extra: &[&str]) {
    let fields = ["transport_timeout_seconds", "available_budget_seconds"];
    assert_price_event(event, "blocking", &[&fields[..], extra].concat());
    assert!(close_to(number(event, "transport_timeout_seconds"), 1.0));
    assert!(close_to(number(event, "available_budget_seconds"), budget));
}

/// Asserts that every series of `metric` in `sink` is labelled by exactly
/// `labels`.
fn assert_label_names(sink: &RecordingSink, metric: &str, labels: &[&str]) {
    let all = sink.metric_labels(metric);
    assert!(!all.is_empty(), "no {metric} series recorded");
    for series in all {
        let names: BTreeSet<&str> = series.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, labels.iter().copied().collect::<BTreeSet<&str>>());
    }
}

/// The single failure of `key` in a lenient snapshot: `(error_type, message)`.
fn only_failure(snapshot: &Snapshot, k: &ResourceKey) -> (String, String) {
    let error = snapshot
        .error(k)
        .unwrap_or_else(|| panic!("{k} should have failed: {snapshot:?}"));
    let failures = error.failures();
    assert_eq!(failures.len(), 1, "{error}");
    (
        failures[0].error.error_type().to_owned(),
        failures[0].error.to_string(),
    )
}

fn config_error(result: Result<SnapshotBuilder, coalestra_core::ConfigError>) -> String {
    result
        .expect_err("the builder must reject the declaration")
        .to_string()
}

// ---------------------------------------------------------------------------
// Declarations and classification
// ---------------------------------------------------------------------------

/// B11.11: closure adapters declare non-blocking I/O without a transport
/// timeout by default (single, batch and derived, async and sync).
#[test]
fn adapters_are_non_blocking_by_default() {
    let single_async = async_ok("a");
    let single_sync = blocking_ok("b", counter());
    let batch_async =
        FnBatchSource::new("c", |_keys: Vec<ResourceKey>, _ctx: FetchContext| async {
            Ok(Vec::new())
        });
    let batch_sync = FnBatchSource::sync("d", |_keys: &[ResourceKey], _ctx: &FetchContext| {
        Ok(Vec::new())
    });
    let derived_async = FnDerivedSource::new(
        "e",
        |_k: &ResourceKey| Vec::new(),
        |_k: ResourceKey, _deps: Snapshot, _ctx: FetchContext| async {
            Ok(SourceOutput::new(1_u64))
        },
    );
    let derived_sync = FnDerivedSource::sync(
        "f",
        |_k: &ResourceKey| Vec::new(),
        |_k: &ResourceKey, _deps: &Snapshot, _ctx: &FetchContext| Ok(SourceOutput::new(1_u64)),
    );
    let infos: [&dyn SourceInfo; 6] = [
        &single_async,
        &single_sync,
        &batch_async,
        &batch_sync,
        &derived_async,
        &derived_sync,
    ];
    for info in infos {
        assert!(!info.blocking_io(), "{}", info.name());
        assert_eq!(info.transport_timeout(), None, "{}", info.name());
        let guarantee = TimeoutGuarantee::classify(info);
        assert_eq!(
            guarantee.status,
            GuaranteeStatus::NonBlocking,
            "{}",
            info.name()
        );
        assert!(!guarantee.blocking_io);
        assert!(!guarantee.blocking_io_offloaded);
        assert_eq!(guarantee.transport_timeout_seconds, None);
    }
}

/// B11.15, B11.16: the classification of every declaration.
#[test]
fn declarations_are_classified() {
    let cases: Vec<(FnSource, GuaranteeStatus, bool)> = vec![
        (async_ok("async"), GuaranteeStatus::NonBlocking, false),
        (
            blocking_ok("sync", counter()).with_timeout(secs(2)),
            GuaranteeStatus::NonBlocking,
            false,
        ),
        (
            async_ok("async-blocking")
                .with_timeout(secs(2))
                .with_blocking_io(Some(secs(1))),
            GuaranteeStatus::UnsafeNotOffloaded,
            false,
        ),
        (
            blocking_ok("inline-blocking", counter())
                .inline()
                .with_timeout(secs(2))
                .with_blocking_io(Some(secs(1))),
            GuaranteeStatus::UnsafeNotOffloaded,
            false,
        ),
        (
            blocking_ok("no-transport", counter())
                .with_timeout(secs(2))
                .with_blocking_io(None),
            GuaranteeStatus::UnsafeTimeoutMissing,
            true,
        ),
        (
            protected("equal", counter(), secs(1), secs(1)),
            GuaranteeStatus::UnsafeTimeoutNotWithinSource,
            true,
        ),
        (
            protected("longer", counter(), secs(1), secs(2)),
            GuaranteeStatus::UnsafeTimeoutNotWithinSource,
            true,
        ),
        (
            blocking_ok("no-source-timeout", counter()).with_blocking_io(Some(secs(1))),
            GuaranteeStatus::Protected,
            true,
        ),
        (
            protected("protected", counter(), secs(2), secs(1)),
            GuaranteeStatus::Protected,
            true,
        ),
    ];
    for (source, status, offloaded) in &cases {
        let guarantee = TimeoutGuarantee::classify(source);
        assert_eq!(guarantee.status, *status, "{}", source.name());
        assert_eq!(guarantee.source, source.name());
        assert_eq!(
            guarantee.blocking_io,
            source.blocking_io(),
            "{}",
            source.name()
        );
        assert_eq!(
            guarantee.blocking_io_offloaded,
            *offloaded,
            "{}",
            source.name()
        );
        assert_eq!(
            status.is_unsafe(),
            !matches!(
                status,
                GuaranteeStatus::NonBlocking | GuaranteeStatus::Protected
            )
        );
    }
    let guarantee = TimeoutGuarantee::classify(&protected("p", counter(), secs(2), secs(1)));
    assert_eq!(guarantee.transport_timeout_seconds, Some(1.0));
    assert_eq!(guarantee.source_timeout_seconds, Some(2.0));

    // Derived closures run inline unless offloaded.
    let derived = || {
        FnDerivedSource::sync(
            "derived",
            |_k: &ResourceKey| Vec::new(),
            |_k: &ResourceKey, _deps: &Snapshot, _ctx: &FetchContext| Ok(SourceOutput::new(1_u64)),
        )
        .with_timeout(secs(2))
        .with_blocking_io(Some(secs(1)))
    };
    assert_eq!(
        TimeoutGuarantee::classify(&derived()).status,
        GuaranteeStatus::UnsafeNotOffloaded
    );
    assert_eq!(
        TimeoutGuarantee::classify(&derived().offload()).status,
        GuaranteeStatus::Protected
    );
}

/// B11.12: a blocking source without a transport timeout is rejected.
#[test]
fn builder_rejects_blocking_source_without_transport_timeout() {
    let source = blocking_ok("legacy", counter())
        .with_timeout(secs(2))
        .with_blocking_io(None);
    let message = config_error(SnapshotBuilder::builder([source.into()]).build());
    assert!(message.contains("unsafe_timeout_missing"), "{message}");
    assert!(message.contains("legacy"), "{message}");
}

/// B11.13, B11.16: a blocking source that is not offloaded is rejected
/// (an async closure, or a sync closure run inline).
#[test]
fn builder_rejects_blocking_source_not_offloaded() {
    let asynchronous = async_ok("async-blocking")
        .with_timeout(secs(2))
        .with_blocking_io(Some(secs(1)));
    let message = config_error(SnapshotBuilder::builder([asynchronous.into()]).build());
    assert!(message.contains("unsafe_not_offloaded"), "{message}");

    let inline = blocking_ok("inline-blocking", counter())
        .inline()
        .with_timeout(secs(2))
        .with_blocking_io(Some(secs(1)));
    let message = config_error(SnapshotBuilder::builder([inline.into()]).build());
    assert!(message.contains("unsafe_not_offloaded"), "{message}");
}

/// B11.14: a transport timeout not strictly inside the source timeout is
/// rejected.
#[test]
fn builder_rejects_transport_timeout_not_inside_source_budget() {
    let equal = protected("equal", counter(), secs(1), secs(1));
    let message = config_error(SnapshotBuilder::builder([equal.into()]).build());
    assert!(
        message.contains("unsafe_timeout_not_within_source"),
        "{message}"
    );

    let longer = protected("longer", counter(), secs(1), secs(3));
    let message = config_error(SnapshotBuilder::builder([longer.into()]).build());
    assert!(
        message.contains("unsafe_timeout_not_within_source"),
        "{message}"
    );
}

/// Declarations are validated: a zero transport timeout, and a transport
/// timeout on a source that does not declare blocking I/O, are rejected.
#[test]
fn builder_rejects_invalid_transport_declarations() {
    let zero = blocking_ok("zero", counter()).with_blocking_io(Some(Duration::ZERO));
    let message = config_error(SnapshotBuilder::builder([zero.into()]).build());
    assert!(message.contains("transport_timeout"), "{message}");

    let message = config_error(SnapshotBuilder::builder([TransportOnly.into()]).build());
    assert!(message.contains("transport_timeout"), "{message}");
}

/// A custom source declaring a transport timeout without blocking I/O.
struct TransportOnly;

impl SourceInfo for TransportOnly {
    fn name(&self) -> &str {
        "transport-only"
    }
    fn transport_timeout(&self) -> Option<Duration> {
        Some(secs(1))
    }
}

#[async_trait]
impl Source for TransportOnly {
    async fn fetch(
        &self,
        _key: &ResourceKey,
        _ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        Ok(SourceOutput::new(1_u64))
    }
}

impl From<TransportOnly> for coalestra_core::SourceRef {
    fn from(source: TransportOnly) -> Self {
        coalestra_core::SourceRef::single(source)
    }
}

/// A custom source relying on every `SourceInfo` default.
struct Defaults;

impl SourceInfo for Defaults {
    fn name(&self) -> &str {
        "custom"
    }
}

#[async_trait]
impl Source for Defaults {
    async fn fetch(
        &self,
        _key: &ResourceKey,
        _ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        Ok(SourceOutput::new("ok".to_owned()))
    }
}

/// B11.25, B11.26 (Rust decision): a custom source that overrides nothing
/// declares non-blocking I/O through the trait defaults; nothing is ever
/// "undeclared".
#[tokio::test(start_paused = true)]
async fn custom_source_with_trait_defaults_is_non_blocking() {
    let builder = SnapshotBuilder::builder([coalestra_core::SourceRef::single(Defaults)])
        .build()
        .expect("trait defaults are a valid declaration");
    let snapshot = builder.build([price()]).await.expect("the build succeeds");
    assert_eq!(snapshot.value::<String>(&price()).expect("a value"), "ok");

    let h = builder.health();
    assert_eq!(
        h.source_timeout_guarantees.get("custom").map(|g| g.status),
        Some(GuaranteeStatus::NonBlocking)
    );
    assert_eq!(h.undeclared_source_timeout_count, 0);
    assert_eq!(h.blocking_source_count, 0);
}

// ---------------------------------------------------------------------------
// Health
// ---------------------------------------------------------------------------

/// B11.17: a protected blocking source resolves and is reported protected;
/// the builder is healthy.
#[tokio::test(start_paused = true)]
async fn protected_blocking_source_is_reported_in_health() {
    let calls = counter();
    let builder =
        SnapshotBuilder::builder([protected("db", Arc::clone(&calls), secs(2), secs(1)).into()])
            .build()
            .expect("a protected source is accepted");

    let snapshot = builder.build([price()]).await.expect("the build succeeds");

    assert_eq!(snapshot.value::<String>(&price()).expect("a value"), "ok");
    assert_eq!(counted(&calls), 1);
    let h = builder.health();
    assert_eq!(h.blocking_source_count, 1);
    assert_eq!(h.protected_blocking_source_count, 1);
    assert_eq!(h.unsafe_blocking_source_count, 0);
    let guarantee = h.source_timeout_guarantees.get("db").expect("a guarantee");
    assert_eq!(guarantee.status, GuaranteeStatus::Protected);
    assert!(guarantee.blocking_io_offloaded);
    assert_eq!(
        h.assess(&HealthAssessmentPolicy::default(), None).severity,
        Severity::Healthy
    );
    let json = h.to_json();
    let db = &json["source_timeout_guarantees"]["db"];
    assert_eq!(db["status"], "protected");
    assert_eq!(db["source"], "db");
    assert_eq!(db["blocking_io"], true);
    assert_eq!(db["blocking_io_offloaded"], true);
    assert_eq!(db["transport_timeout_seconds"], 1.0);
    assert_eq!(db["source_timeout_seconds"], 2.0);
    assert_eq!(json["protected_blocking_source_count"], 1);
    assert_eq!(json["source_transport_timeout_violation_count"], 0);
}

/// B11.24: unsafe blocking sources can be allowed; they still work, and
/// health counts them and is critical.
#[tokio::test(start_paused = true)]
async fn unsafe_blocking_source_can_be_allowed_but_health_is_critical() {
    let calls = counter();
    let legacy = blocking_ok("legacy", Arc::clone(&calls))
        .with_timeout(secs(2))
        .with_blocking_io(None);
    let builder = SnapshotBuilder::builder([legacy.into()])
        .allow_unsafe_blocking_sources(true)
        .build()
        .expect("unsafe sources are allowed");

    let snapshot = builder.build([price()]).await.expect("the build succeeds");
    assert_eq!(snapshot.value::<String>(&price()).expect("a value"), "ok");
    assert_eq!(counted(&calls), 1);

    let h = builder.health();
    assert_eq!(h.unsafe_blocking_source_count, 1);
    assert_eq!(h.blocking_source_count, 1);
    assert_eq!(h.protected_blocking_source_count, 0);
    assert_eq!(
        h.source_timeout_guarantees.get("legacy").map(|g| g.status),
        Some(GuaranteeStatus::UnsafeTimeoutMissing)
    );
    let assessment = h.assess(&HealthAssessmentPolicy::default(), None);
    assert_eq!(assessment.severity, Severity::Critical);
    assert_eq!(assessment.reasons, ["unsafe_blocking_source"]);
    assert_eq!(assessment.findings[0].component, "legacy");
    assert_eq!(
        h.to_json()["source_timeout_guarantees"]["legacy"]["status"],
        "unsafe_timeout_missing"
    );
}

/// B11.17, B11.24, B19.14: health counts blocking, protected and unsafe
/// sources over a mixed catalog.
#[tokio::test(start_paused = true)]
async fn health_counts_blocking_protected_and_unsafe_sources() {
    let builder = SnapshotBuilder::builder([
        async_ok("rest").into(),
        protected("db", counter(), secs(2), secs(1)).into(),
        blocking_ok("ftp", counter())
            .with_timeout(secs(2))
            .with_blocking_io(None)
            .into(),
        async_ok("ws")
            .with_timeout(secs(2))
            .with_blocking_io(Some(secs(1)))
            .into(),
        blocking_ok("pure", counter()).into(),
    ])
    .allow_unsafe_blocking_sources(true)
    .build()
    .expect("unsafe sources are allowed");

    let h = builder.health();

    assert_eq!(
        h.blocking_source_count, 3,
        "db, ftp and ws declare blocking I/O"
    );
    assert_eq!(h.protected_blocking_source_count, 1);
    assert_eq!(h.unsafe_blocking_source_count, 2);
    assert_eq!(h.undeclared_source_timeout_count, 0);
    let statuses: Vec<(&str, &str)> = h
        .source_timeout_guarantees
        .iter()
        .map(|(name, g)| (name.as_str(), g.status.as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("db", "protected"),
            ("ftp", "unsafe_timeout_missing"),
            ("pure", "non_blocking"),
            ("rest", "non_blocking"),
            ("ws", "unsafe_not_offloaded"),
        ]
    );
    let assessment = h.assessment.clone().expect("an assessment");
    assert_eq!(assessment.findings[0].reason, "unsafe_blocking_source");
    assert_eq!(assessment.findings[0].component, "ftp,ws");
}

// ---------------------------------------------------------------------------
// Pre-dispatch budget check and dispatch grace
// ---------------------------------------------------------------------------

/// B11.18, B11.19, B11.20: a deadline shorter than the transport timeout
/// rejects the call before it starts, with the budget details, a metric and
/// an event.
#[tokio::test(start_paused = true)]
async fn short_deadline_rejects_a_blocking_call_before_it_starts() {
    let sink = RecordingSink::new();
    let calls = counter();
    let builder = protected_blocking(&calls, &sink)
        .resilience(single_attempt())
        .build()
        .expect("a valid builder");

    let snapshot = builder
        .build_with([price()], lenient().deadline(ms(100)))
        .await
        .expect("a lenient build returns");

    assert_eq!(counted(&calls), 0, "the fetcher is never called");
    let (error_type, message) = only_failure(&snapshot, &price());
    assert_eq!(error_type, "SnapshotDeadlineExceededError");
    assert!(message.contains("transport timeout"), "{message}");
    assert!(message.contains("budget=0.100s"), "{message}");
    assert!(message.contains("transport_timeout=1.000s"), "{message}");
    assert!(message.contains("gap=0.900s"), "{message}");
    assert_eq!(
        sink.counter(
            "source_transport_budget_rejection_total",
            &[("source", "blocking"), ("reason", "snapshot_deadline")]
        ),
        1
    );
    assert_label_names(
        &sink,
        "source_transport_budget_rejection_total",
        &["reason", "source"],
    );
    let event = single_event(&sink, "source_transport_budget_rejected");
    assert_budget_event(&event, 0.1, &[]);
    assert!(sink
        .events_named("source_dispatch_under_deadline_pressure")
        .is_empty());
    assert!(sink
        .events_named("source_transport_timeout_violated")
        .is_empty());
    assert_eq!(builder.health().deadline_exceeded_count, 1);
    assert_eq!(builder.health().source_transport_timeout_violation_count, 0);
}

/// B11.18: an explicit zero dispatch grace keeps the rejection, and the
/// strict build fails with the deadline error.
#[tokio::test(start_paused = true)]
async fn zero_dispatch_grace_preserves_the_rejection() {
    let calls = counter();
    let builder =
        SnapshotBuilder::builder([
            protected("blocking", Arc::clone(&calls), secs(2), secs(1)).into()
        ])
        .deadline_dispatch_grace(Duration::ZERO)
        .resilience(single_attempt())
        .build()
        .expect("a valid builder");

    let error: CoalestraError = builder
        .build_with([price()], BuildOptions::new().deadline(ms(100)))
        .await
        .expect_err("the strict build fails");

    assert_eq!(counted(&calls), 0);
    let build = error.as_build().expect("a build error");
    assert!(build.is_deadline_exceeded(), "{error}");
    let resource = build.error(&price()).expect("an error for the key");
    assert_eq!(
        resource.failures()[0].error.error_type(),
        "SnapshotDeadlineExceededError"
    );
    assert!(
        resource.to_string().contains("transport timeout"),
        "{resource}"
    );
}

/// A protected batch source is checked the same way; its events name no
/// single resource.
#[tokio::test(start_paused = true)]
async fn short_deadline_rejects_a_blocking_batch_call() {
    let sink = RecordingSink::new();
    let calls = counter();
    let batch = FnBatchSource::sync("bulk", {
        let calls = Arc::clone(&calls);
        move |keys: &[ResourceKey], _ctx: &FetchContext| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(keys
                .iter()
                .map(|k| (k.clone(), SourceOutput::new("ok".to_owned())))
                .collect())
        }
    })
    .with_timeout(secs(2))
    .with_blocking_io(Some(secs(1)));
    let builder = recording(SnapshotBuilder::builder([batch.into()]), &sink)
        .resilience(single_attempt())
        .build()
        .expect("a valid builder");
    let other = key("market:price:ETHUSDT?venue=spot");

    let snapshot = builder
        .build_with([price(), other.clone()], lenient().deadline(ms(100)))
        .await
        .expect("a lenient build returns");

    assert_eq!(counted(&calls), 0);
    for k in [price(), other] {
        let (error_type, message) = only_failure(&snapshot, &k);
        assert_eq!(error_type, "SnapshotDeadlineExceededError");
        assert!(message.contains("transport timeout"), "{message}");
    }
    assert_eq!(
        sink.counter(
            "source_transport_budget_rejection_total",
            &[("source", "bulk"), ("reason", "snapshot_deadline")]
        ),
        1,
        "one call, one rejection"
    );
    let events = sink.events_named("source_transport_budget_rejected");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(text(&events[0], "resource"), "");
    assert_eq!(text(&events[0], "source"), "bulk");
}

/// B11.21, B11.22: a dispatch grace lets a call whose transport timeout is
/// within `remaining deadline + grace` start, with one pressure event.
#[tokio::test(start_paused = true)]
async fn dispatch_grace_allows_the_call_and_emits_one_pressure_event() {
    let sink = RecordingSink::new();
    let calls = counter();
    let builder = protected_blocking(&calls, &sink)
        .deadline_dispatch_grace(ms(600))
        .resilience(single_attempt())
        .build()
        .expect("a valid builder");

    let snapshot = builder
        .build_with([price()], BuildOptions::new().deadline(ms(500)))
        .await
        .expect("the call is allowed");

    assert_eq!(counted(&calls), 1);
    assert_eq!(snapshot.value::<String>(&price()).expect("a value"), "ok");
    let event = single_event(&sink, "source_dispatch_under_deadline_pressure");
    assert_budget_event(
        &event,
        0.5,
        &["deadline_dispatch_grace_seconds", "gap_seconds"],
    );
    assert!(close_to(
        number(&event, "deadline_dispatch_grace_seconds"),
        0.6
    ));
    assert!(number(&event, "gap_seconds") > 0.0);
    assert!(close_to(number(&event, "gap_seconds"), 0.5));
    assert!(sink
        .events_named("source_transport_budget_rejected")
        .is_empty());
    assert_eq!(
        sink.counter("source_transport_budget_rejection_total", &[]),
        0
    );
}

/// B11.21 (boundary): the grace must exceed the gap; a transport timeout
/// beyond `remaining + grace` is still rejected.
#[tokio::test(start_paused = true)]
async fn dispatch_grace_smaller_than_the_gap_still_rejects() {
    let sink = RecordingSink::new();
    let calls = counter();
    let builder = protected_blocking(&calls, &sink)
        .deadline_dispatch_grace(ms(400))
        .resilience(single_attempt())
        .build()
        .expect("a valid builder");

    let snapshot = builder
        .build_with([price()], lenient().deadline(ms(500)))
        .await
        .expect("a lenient build returns");

    assert_eq!(counted(&calls), 0);
    let (error_type, _) = only_failure(&snapshot, &price());
    assert_eq!(error_type, "SnapshotDeadlineExceededError");
    assert!(sink
        .events_named("source_dispatch_under_deadline_pressure")
        .is_empty());
    assert_eq!(
        sink.counter(
            "source_transport_budget_rejection_total",
            &[("reason", "snapshot_deadline")]
        ),
        1
    );
}

/// A deadline comfortably above the transport timeout dispatches without
/// any pressure event or rejection.
#[tokio::test(start_paused = true)]
async fn ample_deadline_dispatches_without_pressure() {
    let sink = RecordingSink::new();
    let calls = counter();
    let builder = protected_blocking(&calls, &sink)
        .deadline_dispatch_grace(ms(600))
        .build()
        .expect("a valid builder");

    builder
        .build_with([price()], BuildOptions::new().deadline(secs(5)))
        .await
        .expect("the build succeeds");

    assert_eq!(counted(&calls), 1);
    assert!(sink
        .events_named("source_dispatch_under_deadline_pressure")
        .is_empty());
    assert!(sink
        .events_named("source_transport_budget_rejected")
        .is_empty());
}

// ---------------------------------------------------------------------------
// Transport timeout violations
// ---------------------------------------------------------------------------

/// Holds a synchronous source call until the test releases it.
struct Hold {
    arrived: tokio_mpsc::UnboundedReceiver<()>,
    release: mpsc::Sender<()>,
}

/// A protected blocking source ("slow-transport": source timeout 200 ms,
/// transport timeout 5 ms) whose calls report their arrival and wait for a
/// release before returning `answer`.
fn held_source(answer: fn() -> Result<SourceOutput, SourceError>) -> (FnSource, Hold) {
    let (arrived_tx, arrived) = tokio_mpsc::unbounded_channel();
    let (release, release_rx) = mpsc::channel::<()>();
    let release_rx = Mutex::new(release_rx);
    let source = FnSource::sync(
        "slow-transport",
        move |_k: &ResourceKey, _ctx: &FetchContext| {
            let _ = arrived_tx.send(());
            let released = release_rx
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .recv_timeout(HANG_GUARD);
            assert!(released.is_ok(), "the test never released the call");
            answer()
        },
    )
    .with_timeout(ms(200))
    .with_blocking_io(Some(ms(5)));
    (source, Hold { arrived, release })
}

fn ok_answer() -> Result<SourceOutput, SourceError> {
    Ok(SourceOutput::new("ok".to_owned()))
}

fn failed_answer() -> Result<SourceOutput, SourceError> {
    Err(SourceError::protocol("malformed response"))
}

struct Run {
    result: Result<Snapshot, CoalestraError>,
    before: BuilderHealth,
    after: BuilderHealth,
    sink: RecordingSink,
}

/// Builds `price()` through a held source; the call takes `elapsed` of
/// (paused) tokio time. With `grace` `None` the default grace applies.
async fn run_held(
    answer: fn() -> Result<SourceOutput, SourceError>,
    elapsed: Duration,
    grace: Option<Duration>,
) -> Run {
    let sink = RecordingSink::new();
    let (source, mut hold) = held_source(answer);
    let mut config =
        recording(SnapshotBuilder::builder([source.into()]), &sink).resilience(single_attempt());
    if let Some(grace) = grace {
        config = config.transport_timeout_grace(grace);
    }
    let builder = config.build().expect("a protected source is accepted");
    let before = builder.health();
    let build = tokio::spawn({
        let builder = builder.clone();
        async move { builder.build_with([price()], lenient()).await }
    });
    hold.arrived.recv().await.expect("the call starts");
    tokio::time::advance(elapsed).await;
    let timed_out = elapsed >= ms(200);
    if !timed_out {
        hold.release.send(()).expect("the call is waiting");
    }
    let result = build.await.expect("the build task does not panic");
    if timed_out {
        // Coalestra's timer fired first; let the abandoned call finish.
        hold.release.send(()).expect("the call is still waiting");
    }
    let after = builder.health();
    Run {
        result,
        before,
        after,
        sink,
    }
}

fn assert_violation_event(run: &Run, outcome: &str, elapsed: f64, grace: f64) {
    let event = &single_event(&run.sink, "source_transport_timeout_violated");
    assert_price_event(
        event,
        "slow-transport",
        &[
            "outcome",
            "declared_transport_timeout_seconds",
            "observed_elapsed_seconds",
            "grace_seconds",
        ],
    );
    assert_eq!(text(event, "outcome"), outcome);
    assert!(close_to(
        number(event, "declared_transport_timeout_seconds"),
        0.005
    ));
    let observed = number(event, "observed_elapsed_seconds");
    assert!(
        observed >= elapsed && observed < elapsed + 0.002,
        "observed {observed}, expected {elapsed}"
    );
    assert!(close_to(number(event, "grace_seconds"), grace));
    assert_eq!(
        run.sink.counter(
            "source_transport_timeout_violation_total",
            &[("source", "slow-transport"), ("outcome", outcome)]
        ),
        1
    );
    assert_eq!(
        run.sink
            .counter("source_transport_timeout_violation_total", &[]),
        1
    );
    assert_label_names(
        &run.sink,
        "source_transport_timeout_violation_total",
        &["outcome", "source"],
    );
}

/// B11.27, B11.28: a protected call that returns after its transport
/// timeout (grace 0) is a `completed_late` violation: the value is kept, the
/// violation is counted per source, in JSON, and as a degrading delta.
#[tokio::test(start_paused = true)]
async fn late_completion_is_a_transport_timeout_violation() {
    let run = run_held(ok_answer, ms(30), Some(Duration::ZERO)).await;

    let snapshot = run.result.as_ref().expect("a lenient build returns");
    assert_eq!(
        snapshot
            .value::<String>(&price())
            .expect("the value is kept"),
        "ok"
    );
    assert_eq!(run.after.source_transport_timeout_violation_count, 1);
    assert_eq!(
        run.after
            .source_transport_timeout_violations
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<Vec<_>>(),
        [("slow-transport", 1)]
    );
    let json = run.after.to_json();
    assert_eq!(json["source_transport_timeout_violation_count"], 1);
    assert_eq!(
        json["source_transport_timeout_violations"],
        serde_json::json!({"slow-transport": 1})
    );
    let assessment = run
        .after
        .assess(&HealthAssessmentPolicy::default(), Some(&run.before));
    assert_eq!(assessment.severity, Severity::Degraded);
    assert_eq!(
        assessment.reasons,
        ["source_transport_timeout_violations_increased"]
    );
    assert_violation_event(&run, "completed_late", 0.030, 0.0);
}

/// B11.28: a protected call that fails after its transport timeout is a
/// `failed_late` violation; the failure itself is reported unchanged.
#[tokio::test(start_paused = true)]
async fn late_failure_is_a_transport_timeout_violation() {
    let run = run_held(failed_answer, ms(30), Some(Duration::ZERO)).await;

    let snapshot = run.result.as_ref().expect("a lenient build returns");
    let (error_type, message) = only_failure(snapshot, &price());
    assert_eq!(error_type, "SourceProtocolError");
    assert!(message.contains("malformed response"), "{message}");
    assert_eq!(run.after.source_transport_timeout_violation_count, 1);
    assert_violation_event(&run, "failed_late", 0.030, 0.0);
}

/// B11.28: when Coalestra's own timer fires first, the call is always a
/// `coalestra_timeout` violation, and a source timeout.
#[tokio::test(start_paused = true)]
async fn coalestra_timeout_is_always_a_transport_timeout_violation() {
    let run = run_held(ok_answer, ms(200), None).await;

    let snapshot = run.result.as_ref().expect("a lenient build returns");
    let (error_type, _) = only_failure(snapshot, &price());
    assert_eq!(error_type, "SourceTimeoutError");
    assert_eq!(run.after.source_timeout_count, 1);
    assert_eq!(run.after.source_transport_timeout_violation_count, 1);
    assert_violation_event(&run, "coalestra_timeout", 0.200, 0.050);
}

/// B11.28: a call returning within transport timeout + grace is no
/// violation (default grace 50 ms).
#[tokio::test(start_paused = true)]
async fn completion_within_the_default_grace_is_no_violation() {
    let run = run_held(ok_answer, ms(30), None).await;

    let snapshot = run.result.as_ref().expect("a lenient build returns");
    assert_eq!(snapshot.value::<String>(&price()).expect("a value"), "ok");
    assert_eq!(run.after.source_transport_timeout_violation_count, 0);
    assert!(run.after.source_transport_timeout_violations.is_empty());
    assert!(run
        .sink
        .events_named("source_transport_timeout_violated")
        .is_empty());
    assert_eq!(
        run.sink
            .counter("source_transport_timeout_violation_total", &[]),
        0
    );
}

/// B11.28: a call returning within its transport timeout is no violation
/// even with a zero grace.
#[tokio::test(start_paused = true)]
async fn completion_within_the_transport_timeout_is_no_violation() {
    let run = run_held(failed_answer, ms(4), Some(Duration::ZERO)).await;

    assert!(run.result.is_ok());
    assert_eq!(run.after.source_transport_timeout_violation_count, 0);
    assert!(run
        .sink
        .events_named("source_transport_timeout_violated")
        .is_empty());
}
