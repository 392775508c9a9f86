//! Catalogue area 18 and appendices A and B (events and metrics emitted by
//! the engine): a scenario of success, cache hit, failure, retry, circuit
//! open, stale fallback, refresh (success and failure), publication,
//! ignored publication, invalidation and single-flight join, observed
//! through `coalestra_test::RecordingSink` as both event and metrics sink.
//!
//! Every step checks its events (Appendix B payload fields) and metrics
//! (Appendix A names, label sets and label values); the whole scenario, and
//! a second one with batches, capacity timeouts and transport budget
//! rejections, must obey the label-cardinality rule: for every metric sample,
//! label names ⊆ {resource_namespace, resource_name, source, status, outcome,
//! reason, rule, phase}, and no label value equals a subject, a qualifier
//! value or a rendered key (B18.1–B18.3, B18.25).

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra_cache::{PublishOptions, PublishStatus};
use coalestra_core::{
    BuildOptions, CircuitBreakerPolicy, CircuitScope, Clock, Event, FetchContext, FnBatchSource,
    FnSource, FreshnessPolicy, ManualClock, Payload, PolicyResolver, RefreshMode, ResiliencePolicy,
    ResourceKey, RetryPolicy, Snapshot, SourceError, SourceOptions, SourceOutput, Timestamp,
};
use coalestra_orchestration::{ResolveOptions, RevalidateOptions, SessionOptions, SnapshotBuilder};
use coalestra_test::{key, Gate, MetricSample, MetricValue, RecordingSink};
use support::{build_lenient, join, recorded_by, single_attempt, spawn_strict};

mod support;

// ---------------------------------------------------------------------------
// Appendix A and B
// ---------------------------------------------------------------------------

/// Label names a metric may carry.
const ALLOWED_LABELS: [&str; 8] = [
    "resource_namespace",
    "resource_name",
    "source",
    "status",
    "outcome",
    "reason",
    "rule",
    "phase",
];

const RESOURCE_LABELS: [&str; 2] = ["resource_namespace", "resource_name"];

/// Appendix A: a metric's label names and, for its enumerated label, the
/// allowed values.
struct MetricSpec {
    labels: &'static [&'static str],
    enumerated: Option<(&'static str, &'static [&'static str])>,
}

fn appendix_a(name: &str) -> Option<MetricSpec> {
    let spec = |labels, enumerated| Some(MetricSpec { labels, enumerated });
    const SUCCESS_ERROR: &[&str] = &["success", "error"];
    match name {
        "cache_access_total" => spec(
            &["status", "resource_namespace", "resource_name"],
            Some((
                "status",
                &[
                    "fresh",
                    "stale_while_revalidate",
                    "miss",
                    "stale_fallback",
                    "revalidation_bypass",
                ],
            )),
        ),
        "singleflight_join_total" => spec(&RESOURCE_LABELS, None),
        "source_fetch_total" => spec(
            &["status", "source"],
            Some((
                "status",
                &[
                    "success",
                    "failure",
                    "invalid_timestamp",
                    "stale",
                    "circuit_open",
                    "consistency_excluded",
                ],
            )),
        ),
        "source_fetch_latency_ms" | "source_batch_size" | "source_capacity_wait_ms" => {
            spec(&["source"], None)
        }
        "source_batch_call_total" => spec(
            &["status", "source"],
            Some((
                "status",
                &["success", "failure", "deadline_exceeded", "queue_timeout"],
            )),
        ),
        "source_capacity_timeout_total" => spec(
            &["source", "reason"],
            Some(("reason", &["queue_timeout", "snapshot_deadline"])),
        ),
        "source_transport_budget_rejection_total" => spec(
            &["source", "reason"],
            Some(("reason", &["snapshot_deadline", "source_timeout"])),
        ),
        "source_transport_timeout_violation_total" => spec(
            &["source", "outcome"],
            Some((
                "outcome",
                &["completed_late", "failed_late", "coalestra_timeout"],
            )),
        ),
        "resource_publish_total" => spec(
            &["status", "source", "resource_namespace", "resource_name"],
            Some((
                "status",
                &[
                    "published",
                    "ignored_lower_authority",
                    "ignored_older",
                    "ignored_duplicate",
                ],
            )),
        ),
        "resource_invalidation_total" => spec(&RESOURCE_LABELS, None),
        "resource_refresh_total" => spec(
            &["status", "resource_namespace", "resource_name"],
            Some(("status", &["scheduled", "success", "failure", "cancelled"])),
        ),
        "snapshot_build_total"
        | "snapshot_session_resolve_total"
        | "snapshot_session_revalidate_total"
        | "snapshot_acceptance_total" => spec(&["status"], Some(("status", SUCCESS_ERROR))),
        "snapshot_consistency_total" => spec(&["status", "rule"], Some(("status", &["error"]))),
        "snapshot_consistency_fallback_total" => spec(
            &["status"],
            Some(("status", &["attempt", "success", "exhausted"])),
        ),
        "snapshot_acceptance_violation_total" => spec(
            &["reason"],
            Some((
                "reason",
                &[
                    "stale",
                    "too_old",
                    "insufficient_authority",
                    "requirement_unsatisfied",
                ],
            )),
        ),
        "snapshot_try_request_total" => spec(
            &["status"],
            Some(("status", &["accepted", "degraded", "rejected"])),
        ),
        _ => None,
    }
}

/// Appendix B: the payload fields of an event.
fn appendix_b(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "cache_hit" => &["resource", "freshness"],
        "cache_bypassed" => &["resource", "reason"],
        "stale_fallback_used" => &["resource", "error_type"],
        "resource_resolved" => &[
            "resource",
            "source",
            "latency_ms",
            "attempts",
            "source_kind",
            "authority_rank",
        ],
        "source_failed" => &["resource", "source", "error_type", "error"],
        "source_payload_rejected" => &["resource", "source", "error"],
        "source_excluded" => &["resource", "source", "reason"],
        "source_circuit_open" => &["source", "resource", "error"],
        "source_transport_budget_rejected" => &[
            "source",
            "resource",
            "transport_timeout_seconds",
            "available_budget_seconds",
        ],
        "source_dispatch_under_deadline_pressure" => &[
            "source",
            "resource",
            "transport_timeout_seconds",
            "available_budget_seconds",
            "deadline_dispatch_grace_seconds",
            "gap_seconds",
        ],
        "source_transport_timeout_violated" => &[
            "source",
            "resource",
            "outcome",
            "declared_transport_timeout_seconds",
            "observed_elapsed_seconds",
            "grace_seconds",
        ],
        "resource_published" => &[
            "resource",
            "source",
            "observed_at",
            "replaced",
            "forced",
            "authority_rank",
        ],
        "resource_publish_ignored" => &[
            "resource",
            "source",
            "status",
            "observed_at",
            "cached_observed_at",
            "candidate_authority_rank",
            "cached_authority_rank",
        ],
        "resource_invalidated" => &["resource", "reason"],
        "resource_refresh_scheduled" => &["resource", "reason", "snapshot_id"],
        "resource_refresh_completed" => &["resource", "source", "reason"],
        "resource_refresh_failed" => &["resource", "reason", "error_type", "error"],
        "snapshot_built" => &[
            "snapshot_id",
            "resources",
            "resolved",
            "failed",
            "build_failed",
            "strict",
            "diagnostics",
        ],
        "snapshot_session_resolved" => &[
            "snapshot_id",
            "requested",
            "resolved",
            "failed",
            "total_resources",
            "strict",
            "retry_errors",
        ],
        "snapshot_session_revalidated" => &[
            "snapshot_id",
            "requested",
            "affected",
            "refreshed",
            "failed",
            "committed",
            "retained_previous",
            "strict",
            "force_refresh",
            "consistency_failed",
            "acceptance_failed",
        ],
        "snapshot_consistency_failed" => &[
            "snapshot_id",
            "resources",
            "oldest_resource",
            "newest_resource",
            "observation_skew_ms",
            "max_observation_skew_ms",
        ],
        "snapshot_consistency_fallback_started" => &[
            "snapshot_id",
            "resource",
            "excluded_source",
            "observation_skew_ms",
            "max_observation_skew_ms",
        ],
        "snapshot_consistency_fallback_succeeded" => &[
            "snapshot_id",
            "resource",
            "excluded_source",
            "replacement_source",
            "replacement_observed_at",
        ],
        "snapshot_consistency_fallback_exhausted" => &[
            "snapshot_id",
            "resource",
            "excluded_source",
            "failed_resources",
        ],
        "snapshot_acceptance_failed" => &["snapshot_id", "violations", "reasons"],
        "snapshot_try_request_resolved" => &[
            "snapshot_id",
            "state",
            "resources",
            "errors",
            "required_errors",
            "optional_errors",
            "acceptance_violations",
            "consistency_failed",
            "allowed_actions",
            "reason",
        ],
        _ => return None,
    })
}

// ---------------------------------------------------------------------------
// Keys and helpers
// ---------------------------------------------------------------------------

/// Success and cache hit.
fn btc() -> ResourceKey {
    key("market:price:BTCUSDT?venue=spot")
}
/// A permanent failure.
fn eth() -> ResourceKey {
    key("market:price:ETHUSDT?venue=futures")
}
/// One transient failure, then success.
fn sol() -> ResourceKey {
    key("market:price:SOLUSDT?account=acct-7&venue=spot")
}
/// Served by the circuit-broken source.
fn xrp() -> ResourceKey {
    key("market:quote:XRPUSDT?venue=spot")
}
/// Stale fallback.
fn ada() -> ResourceKey {
    key("market:depth:ADAUSDT?venue=spot")
}
/// Stale-while-revalidate refreshes.
fn dot() -> ResourceKey {
    key("market:book:DOTUSDT?venue=futures")
}
/// Published and invalidated.
fn ltc() -> ResourceKey {
    key("market:price:LTCUSDT?venue=spot")
}
/// Coalesced by single-flight.
fn bnb() -> ResourceKey {
    key("market:ticker:BNBUSDT?venue=spot")
}

fn scenario_keys() -> Vec<ResourceKey> {
    vec![btc(), eth(), sol(), xrp(), ada(), dot(), ltc(), bnb()]
}

/// Values no metric label may carry: subjects, qualifier values and
/// rendered keys.
fn forbidden_label_values(keys: &[ResourceKey]) -> BTreeSet<String> {
    let mut forbidden = BTreeSet::new();
    for k in keys {
        forbidden.insert(k.subject().to_owned());
        forbidden.insert(k.to_string());
        for (_, value) in k.qualifiers() {
            forbidden.insert(value.to_owned());
        }
    }
    forbidden
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn text(event: &Event, field: &str) -> String {
    event
        .get(field)
        .map(ToString::to_string)
        .unwrap_or_else(|| panic!("{} has no field {field}: {event:?}", event.name))
}

fn number(event: &Event, field: &str) -> f64 {
    event
        .get(field)
        .and_then(|v| v.as_f64())
        .unwrap_or_else(|| panic!("{} has no numeric field {field}: {event:?}", event.name))
}

fn flag(event: &Event, field: &str) -> bool {
    event
        .get(field)
        .and_then(|v| v.as_bool())
        .unwrap_or_else(|| panic!("{} has no flag {field}: {event:?}", event.name))
}

/// Asserts the event carries every Appendix B field of its name.
fn assert_payload(event: &Event) {
    let expected = appendix_b(event.name)
        .unwrap_or_else(|| panic!("{} is not an Appendix B event", event.name));
    let fields: BTreeSet<&str> = event.fields.iter().map(|(n, _)| *n).collect();
    let missing: Vec<&&str> = expected.iter().filter(|f| !fields.contains(*f)).collect();
    assert!(
        missing.is_empty(),
        "{} lacks {missing:?}: {event:?}",
        event.name
    );
}

fn resource_labels(k: &ResourceKey) -> [(&'static str, String); 2] {
    [
        ("resource_namespace", k.namespace().to_owned()),
        ("resource_name", k.name().to_owned()),
    ]
}

/// Where the records of a step start.
struct Mark {
    events: usize,
    samples: usize,
}

/// What one step recorded.
struct Recorded {
    events: Vec<Event>,
    samples: Vec<MetricSample>,
}

impl Recorded {
    fn named(&self, name: &str) -> Vec<&Event> {
        self.events.iter().filter(|e| e.name == name).collect()
    }

    fn one(&self, name: &str) -> &Event {
        let found = self.named(name);
        assert_eq!(found.len(), 1, "expected one {name}: {:?}", self.events);
        found[0]
    }

    fn for_resource(&self, name: &str, k: &ResourceKey) -> Vec<&Event> {
        let rendered = k.to_string();
        self.events
            .iter()
            .filter(|e| {
                e.name == name && e.get("resource").and_then(|v| v.as_str()) == Some(&rendered)
            })
            .collect()
    }

    /// The sum of counter `name` over samples whose labels include `labels`.
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        self.samples
            .iter()
            .filter(|s| s.name == name && s.has_labels(labels))
            .map(|s| match s.value {
                MetricValue::Counter(n) => n,
                MetricValue::Observation(_) => 0,
            })
            .sum()
    }

    fn resource_counter(&self, name: &str, k: &ResourceKey, extra: &[(&str, &str)]) -> u64 {
        let resource = resource_labels(k);
        let mut labels: Vec<(&str, &str)> = extra.to_vec();
        labels.extend(resource.iter().map(|(n, v)| (*n, v.as_str())));
        self.counter(name, &labels)
    }

    /// Calls of `source` that ended with fetch status `status`.
    fn fetches(&self, status: &str, source: &str) -> u64 {
        self.counter(
            "source_fetch_total",
            &[("status", status), ("source", source)],
        )
    }

    /// Batch calls of `source` that ended with status `status`.
    fn batch_calls(&self, status: &str, source: &str) -> u64 {
        self.counter(
            "source_batch_call_total",
            &[("status", status), ("source", source)],
        )
    }

    /// Waits for capacity of `source` that timed out for `reason`.
    fn capacity_timeouts(&self, source: &str, reason: &str) -> u64 {
        self.counter(
            "source_capacity_timeout_total",
            &[("source", source), ("reason", reason)],
        )
    }

    /// Builds that ended with status `status`.
    fn builds(&self, status: &str) -> u64 {
        self.counter("snapshot_build_total", &[("status", status)])
    }

    /// Cache reads of `k` with access status `status`.
    fn cache_accesses(&self, k: &ResourceKey, status: &str) -> u64 {
        self.resource_counter("cache_access_total", k, &[("status", status)])
    }

    /// Background refreshes of `k` counted with status `status`.
    fn refreshes(&self, k: &ResourceKey, status: &str) -> u64 {
        self.resource_counter("resource_refresh_total", k, &[("status", status)])
    }

    fn observations(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        self.samples
            .iter()
            .filter(|s| s.name == name && s.has_labels(labels))
            .filter_map(|s| match s.value {
                MetricValue::Observation(x) => Some(x),
                MetricValue::Counter(_) => None,
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------

struct Fixture {
    builder: SnapshotBuilder,
    sink: RecordingSink,
    clock: ManualClock,
    ada_failing: Arc<AtomicBool>,
    dot_failing: Arc<AtomicBool>,
    sol_calls: Arc<AtomicUsize>,
    ltc_calls: Arc<AtomicUsize>,
    bnb_gate: Gate,
}

impl Fixture {
    fn new() -> Self {
        let sink = RecordingSink::new();
        let clock = ManualClock::new(1_000.0);
        let ada_failing = Arc::new(AtomicBool::new(false));
        let dot_failing = Arc::new(AtomicBool::new(false));
        let sol_calls = Arc::new(AtomicUsize::new(0));
        let ltc_calls = Arc::new(AtomicUsize::new(0));
        let bnb_gate = Gate::new();
        let rest = FnSource::new("rest", {
            let (ada_failing, dot_failing) = (Arc::clone(&ada_failing), Arc::clone(&dot_failing));
            let (sol_calls, ltc_calls) = (Arc::clone(&sol_calls), Arc::clone(&ltc_calls));
            let bnb_gate = bnb_gate.clone();
            move |k: ResourceKey, _ctx: FetchContext| {
                let (ada_failing, dot_failing) =
                    (Arc::clone(&ada_failing), Arc::clone(&dot_failing));
                let (sol_calls, ltc_calls) = (Arc::clone(&sol_calls), Arc::clone(&ltc_calls));
                let bnb_gate = bnb_gate.clone();
                async move {
                    match k.subject() {
                        "ETHUSDT" => Err(SourceError::protocol("malformed payload")),
                        "SOLUSDT" if sol_calls.fetch_add(1, Ordering::SeqCst) == 0 => {
                            Err(SourceError::unavailable("connection reset"))
                        }
                        "ADAUSDT" if ada_failing.load(Ordering::SeqCst) => {
                            Err(SourceError::protocol("maintenance"))
                        }
                        "DOTUSDT" if dot_failing.load(Ordering::SeqCst) => {
                            Err(SourceError::protocol("maintenance"))
                        }
                        "BNBUSDT" => {
                            bnb_gate.pass().await;
                            Ok(SourceOutput::new(100_u64))
                        }
                        "LTCUSDT" => {
                            ltc_calls.fetch_add(1, Ordering::SeqCst);
                            Ok(SourceOutput::new(100_u64))
                        }
                        _ => Ok(SourceOutput::new(100_u64)),
                    }
                }
            }
        })
        .with_supports(|k: &ResourceKey| k.name() != "quote");
        let flaky = FnSource::new("flaky", |_k: ResourceKey, _ctx: FetchContext| async {
            Err::<SourceOutput, _>(SourceError::protocol("maintenance window"))
        })
        .with_supports(|k: &ResourceKey| k.name() == "quote");
        let swr = FreshnessPolicy::new(secs(1), secs(10))
            .expect("a valid policy")
            .with_refresh_mode(RefreshMode::StaleWhileRevalidate)
            .expect("a valid refresh mode");
        let policies = PolicyResolver::new(
            FreshnessPolicy::new(secs(1), secs(10))
                .expect("a valid policy")
                .with_stale_on_error(true),
        )
        .with_type_override("market", "book", swr);
        let config = SnapshotBuilder::builder([rest.into(), flaky.into()])
            .clock(Arc::new(clock.clone()))
            .policies(policies)
            .source_resilience(
                "rest",
                ResiliencePolicy::new(RetryPolicy::default(), CircuitBreakerPolicy::disabled()),
            )
            .source_resilience(
                "flaky",
                ResiliencePolicy::new(
                    RetryPolicy::none(),
                    CircuitBreakerPolicy::new(CircuitScope::Source, 1, secs(10))
                        .expect("a valid circuit policy"),
                ),
            );
        let builder = recorded_by(config, &sink);
        Self {
            builder,
            sink,
            clock,
            ada_failing,
            dot_failing,
            sol_calls,
            ltc_calls,
            bnb_gate,
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            events: self.sink.events().len(),
            samples: self.sink.samples().len(),
        }
    }

    fn since(&self, mark: &Mark) -> Recorded {
        Recorded {
            events: self.sink.events().split_off(mark.events),
            samples: self.sink.samples().split_off(mark.samples),
        }
    }

    fn sources(&self) -> BTreeSet<String> {
        ["rest", "flaky", "feed"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------

/// B5.29, B12.11: a resolved key, then a fresh cache hit.
async fn step_success(f: &Fixture) {
    let mark = f.mark();
    let snapshot = f.builder.build([btc()]).await.expect("BTC resolves");
    assert_eq!(*snapshot.value::<u64>(&btc()).expect("a value"), 100);
    let r = f.since(&mark);

    assert_eq!(r.cache_accesses(&btc(), "miss"), 1);
    assert_eq!(r.fetches("success", "rest"), 1);
    assert_eq!(
        r.observations("source_fetch_latency_ms", &[("source", "rest")])
            .len(),
        1
    );
    assert_eq!(
        r.observations("source_capacity_wait_ms", &[("source", "rest")])
            .len(),
        1
    );
    assert_eq!(r.builds("success"), 1);
    let resolved = r.one("resource_resolved");
    assert_payload(resolved);
    assert_eq!(text(resolved, "resource"), btc().to_string());
    assert_eq!(text(resolved, "source"), "rest");
    assert_eq!(text(resolved, "source_kind"), "single");
    assert_eq!(number(resolved, "attempts"), 1.0);
    assert!(number(resolved, "latency_ms") >= 0.0);
    let built = r.one("snapshot_built");
    assert_payload(built);
    assert_eq!(text(built, "snapshot_id"), snapshot.id());
    assert_eq!(number(built, "resources"), 1.0);
    assert_eq!(number(built, "resolved"), 1.0);
    assert_eq!(number(built, "failed"), 0.0);
    assert!(!flag(built, "build_failed"));
    assert!(flag(built, "strict"));

    let mark = f.mark();
    let again = f.builder.build([btc()]).await.expect("BTC from cache");
    assert!(again.get(&btc()).is_some_and(|v| v.is_from_cache()));
    let r = f.since(&mark);
    assert_eq!(r.cache_accesses(&btc(), "fresh"), 1);
    assert_eq!(r.counter("source_fetch_total", &[]), 0);
    let hit = r.one("cache_hit");
    assert_payload(hit);
    assert_eq!(text(hit, "resource"), btc().to_string());
    assert_eq!(text(hit, "freshness"), "fresh");
}

/// B5.30, B12.11: a permanent failure in a lenient build.
async fn step_failure(f: &Fixture) {
    let mark = f.mark();
    let snapshot = build_lenient(&f.builder, &[eth()], BuildOptions::new()).await;
    assert!(snapshot.error(&eth()).is_some());
    let r = f.since(&mark);

    assert_eq!(r.fetches("failure", "rest"), 1);
    assert_eq!(r.builds("error"), 1);
    let failed = r.for_resource("source_failed", &eth());
    assert_eq!(failed.len(), 1, "{:?}", r.events);
    assert_payload(failed[0]);
    assert_eq!(text(failed[0], "source"), "rest");
    assert_eq!(text(failed[0], "error_type"), "SourceProtocolError");
    assert!(text(failed[0], "error").contains("malformed payload"));
    let built = r.one("snapshot_built");
    assert_eq!(number(built, "failed"), 1.0);
    assert_eq!(number(built, "resolved"), 0.0);
    assert!(!flag(built, "strict"));
}

/// B5.29 with retries: one transient failure, then success in the second
/// attempt.
async fn step_retry(f: &Fixture) {
    let mark = f.mark();
    let snapshot = f
        .builder
        .build([sol()])
        .await
        .expect("SOL resolves on retry");
    assert_eq!(snapshot.get(&sol()).map(|v| v.attempts()), Some(2));
    assert_eq!(f.sol_calls.load(Ordering::SeqCst), 2);
    let r = f.since(&mark);

    let resolved = r.for_resource("resource_resolved", &sol());
    assert_eq!(resolved.len(), 1, "{:?}", r.events);
    assert_eq!(number(resolved[0], "attempts"), 2.0);
    assert_eq!(r.fetches("success", "rest"), 1);
    assert_eq!(r.builds("success"), 1);
}

/// B10 / Appendix B: a failure opens the circuit, the next call is refused.
async fn step_circuit_open(f: &Fixture) {
    let mark = f.mark();
    for _ in 0..2 {
        let snapshot = build_lenient(&f.builder, &[xrp()], BuildOptions::new()).await;
        assert!(snapshot.error(&xrp()).is_some());
    }
    let r = f.since(&mark);

    assert_eq!(r.fetches("failure", "flaky"), 1);
    assert_eq!(r.fetches("circuit_open", "flaky"), 1);
    let open = r.one("source_circuit_open");
    assert_payload(open);
    assert_eq!(text(open, "source"), "flaky");
    assert_eq!(text(open, "resource"), xrp().to_string());
    assert!(!text(open, "error").is_empty());
    let failed = r.for_resource("source_failed", &xrp());
    assert!(!failed.is_empty());
    assert_eq!(text(failed[0], "error_type"), "SourceProtocolError");
}

/// B5.11: a stale cached value stands in when the source fails.
async fn step_stale_fallback(f: &Fixture) {
    f.builder.build([ada()]).await.expect("ADA resolves");
    f.clock.advance(secs(2));
    f.ada_failing.store(true, Ordering::SeqCst);
    let mark = f.mark();
    let snapshot = build_lenient(&f.builder, &[ada()], BuildOptions::new()).await;
    assert!(
        snapshot.get(&ada()).is_some_and(|v| v.is_stale()),
        "{snapshot:?}"
    );
    let r = f.since(&mark);

    assert_eq!(r.cache_accesses(&ada(), "stale_fallback"), 1);
    assert_eq!(r.fetches("failure", "rest"), 1);
    let used = r.one("stale_fallback_used");
    assert_payload(used);
    assert_eq!(text(used, "resource"), ada().to_string());
    assert!(!text(used, "error_type").is_empty());
}

/// B8 / Appendix B: stale-while-revalidate schedules a background refresh
/// that succeeds, then one that fails.
async fn step_refresh(f: &Fixture) {
    f.builder.build([dot()]).await.expect("DOT resolves");
    f.clock.advance(secs(2));
    let mark = f.mark();
    let snapshot = f.builder.build([dot()]).await.expect("DOT served stale");
    assert!(snapshot.get(&dot()).is_some_and(|v| v.refresh_scheduled()));
    f.builder.wait_for_refreshes().await;
    let r = f.since(&mark);

    assert_eq!(r.cache_accesses(&dot(), "stale_while_revalidate"), 1);
    assert_eq!(r.refreshes(&dot(), "scheduled"), 1);
    assert_eq!(r.refreshes(&dot(), "success"), 1);
    let scheduled = r.one("resource_refresh_scheduled");
    assert_payload(scheduled);
    assert_eq!(text(scheduled, "resource"), dot().to_string());
    assert_eq!(text(scheduled, "reason"), "stale_while_revalidate");
    assert!(!text(scheduled, "snapshot_id").is_empty());
    let completed = r.one("resource_refresh_completed");
    assert_payload(completed);
    assert_eq!(text(completed, "resource"), dot().to_string());
    assert_eq!(text(completed, "source"), "rest");
    assert_eq!(text(completed, "reason"), "stale_while_revalidate");

    f.clock.advance(secs(2));
    f.dot_failing.store(true, Ordering::SeqCst);
    let mark = f.mark();
    f.builder
        .build([dot()])
        .await
        .expect("DOT served stale again");
    f.builder.wait_for_refreshes().await;
    let r = f.since(&mark);
    assert_eq!(r.refreshes(&dot(), "failure"), 1);
    let failed = r.one("resource_refresh_failed");
    assert_payload(failed);
    assert_eq!(text(failed, "resource"), dot().to_string());
    assert_eq!(text(failed, "reason"), "stale_while_revalidate");
    assert!(!text(failed, "error_type").is_empty());
    assert!(text(failed, "error").contains("maintenance"), "{failed:?}");
}

/// B4 / Appendix B: a publication is stored, an older one is ignored, and
/// builds read the published value.
async fn step_publication(f: &Fixture) {
    let publisher = f.builder.publisher();
    let mark = f.mark();
    let stored = publisher
        .publish(ltc(), Payload::new(42_u64), PublishOptions::new("feed"))
        .await
        .expect("the publication succeeds");
    assert_eq!(stored.status, PublishStatus::Published);
    let older = Timestamp::from_secs(f.clock.now().as_secs() - 5.0);
    let ignored = publisher
        .publish(
            ltc(),
            Payload::new(41_u64),
            PublishOptions::new("feed").observed_at(older),
        )
        .await
        .expect("an ignored publication is not an error");
    assert_eq!(ignored.status, PublishStatus::IgnoredOlder);
    let r = f.since(&mark);

    assert_eq!(
        r.resource_counter(
            "resource_publish_total",
            &ltc(),
            &[("status", "published"), ("source", "feed")]
        ),
        1
    );
    assert_eq!(
        r.resource_counter(
            "resource_publish_total",
            &ltc(),
            &[("status", "ignored_older"), ("source", "feed")]
        ),
        1
    );
    let published = r.one("resource_published");
    assert_payload(published);
    assert_eq!(text(published, "resource"), ltc().to_string());
    assert_eq!(text(published, "source"), "feed");
    assert!(!flag(published, "replaced"));
    assert!(!flag(published, "forced"));
    let dropped = r.one("resource_publish_ignored");
    assert_payload(dropped);
    assert_eq!(text(dropped, "status"), "ignored_older");
    assert!(number(dropped, "observed_at") < number(dropped, "cached_observed_at"));

    let snapshot = f.builder.build([ltc()]).await.expect("LTC from cache");
    assert_eq!(*snapshot.value::<u64>(&ltc()).expect("a value"), 42);
    assert_eq!(f.ltc_calls.load(Ordering::SeqCst), 0);
}

/// B4.20: an invalidation is counted by resource type and reported with the
/// rendered key; the next build goes back to the source.
async fn step_invalidation(f: &Fixture) {
    let publisher = f.builder.publisher();
    publisher
        .publish(
            ltc(),
            Payload::new(43_u64),
            PublishOptions::new("feed").force(true),
        )
        .await
        .expect("the publication succeeds");
    let mark = f.mark();
    let removed = publisher
        .invalidate(&ltc(), "manual")
        .await
        .expect("the invalidation succeeds");
    assert!(removed);
    let r = f.since(&mark);

    assert_eq!(
        r.resource_counter("resource_invalidation_total", &ltc(), &[]),
        1
    );
    let invalidated = r.one("resource_invalidated");
    assert_payload(invalidated);
    assert_eq!(text(invalidated, "resource"), ltc().to_string());
    assert_eq!(text(invalidated, "reason"), "manual");

    let calls = f.ltc_calls.load(Ordering::SeqCst);
    let snapshot = f.builder.build([ltc()]).await.expect("LTC from the source");
    assert_eq!(*snapshot.value::<u64>(&ltc()).expect("a value"), 100);
    assert_eq!(f.ltc_calls.load(Ordering::SeqCst), calls + 1);
}

/// B6 / Appendix A: a build joining another build's fetch is counted by
/// resource type.
async fn step_singleflight(f: &Fixture) {
    let mark = f.mark();
    let first = spawn_strict(&f.builder, vec![bnb()]);
    let second = spawn_strict(&f.builder, vec![bnb()]);
    f.bnb_gate.wait_for_arrivals(1).await;
    f.bnb_gate.open();
    let (first, second) = (join(first).await, join(second).await);
    let coalesced = [&first, &second]
        .iter()
        .filter(|s: &&&Snapshot| s.get(&bnb()).is_some_and(|v| v.is_coalesced()))
        .count();
    assert_eq!(coalesced, 1);
    assert_eq!(f.bnb_gate.arrivals(), 1, "one fetch for both builds");
    let r = f.since(&mark);

    assert_eq!(
        r.resource_counter("singleflight_join_total", &bnb(), &[]),
        1
    );
    for labels in r
        .samples
        .iter()
        .filter(|s| s.name == "singleflight_join_total")
        .map(|s| &s.labels)
    {
        let names: BTreeSet<&str> = labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, BTreeSet::from(RESOURCE_LABELS));
    }
}

// ---------------------------------------------------------------------------
// One test per step
// ---------------------------------------------------------------------------

/// The scenario's steps, in scenario order. Each row is a test that runs its
/// step alone on a fresh fixture; `run_every_step` runs all of them, in this
/// order, on one fixture.
macro_rules! catalogued_steps {
    ($($(#[$attr:meta])* fn $test:ident = $step:ident;)*) => {
        $(
            $(#[$attr])*
            async fn $test() {
                $step(&Fixture::new()).await;
            }
        )*

        /// Runs every step of the scenario on `f`, in table order.
        async fn run_every_step(f: &Fixture) {
            $($step(f).await;)*
        }
    };
}

catalogued_steps! {
    #[tokio::test(start_paused = true)]
    fn success_and_cache_hit_emit_catalogued_records = step_success;
    #[tokio::test(start_paused = true)]
    fn failure_emits_catalogued_records = step_failure;
    #[tokio::test(start_paused = true)]
    fn retry_emits_one_resolution_with_its_attempts = step_retry;
    #[tokio::test(start_paused = true)]
    fn circuit_open_emits_catalogued_records = step_circuit_open;
    #[tokio::test(start_paused = true)]
    fn stale_fallback_emits_catalogued_records = step_stale_fallback;
    #[tokio::test(start_paused = true)]
    fn background_refresh_emits_catalogued_records = step_refresh;
    #[tokio::test(start_paused = true)]
    fn publication_emits_catalogued_records = step_publication;
    #[tokio::test(start_paused = true)]
    fn invalidation_emits_catalogued_records = step_invalidation;
    #[tokio::test(start_paused = true)]
    fn singleflight_join_is_counted_by_resource_type = step_singleflight;
}

// ---------------------------------------------------------------------------
// The whole scenario: catalogue conformance and label cardinality
// ---------------------------------------------------------------------------

/// B18.1–B18.3: every sample's labels are low-cardinality, named and valued
/// per Appendix A.
fn assert_low_cardinality(
    samples: &[MetricSample],
    keys: &[ResourceKey],
    sources: &BTreeSet<String>,
) {
    assert!(!samples.is_empty(), "the scenario recorded metrics");
    let forbidden = forbidden_label_values(keys);
    let namespaces: BTreeSet<&str> = keys.iter().map(|k| k.namespace()).collect();
    let names: BTreeSet<&str> = keys.iter().map(|k| k.name()).collect();
    for sample in samples {
        let label_names: BTreeSet<&str> = sample.labels.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            label_names.len(),
            sample.labels.len(),
            "duplicate label in {sample:?}"
        );
        for (name, value) in &sample.labels {
            assert!(
                ALLOWED_LABELS.contains(&name.as_str()),
                "label {name:?} is not a low-cardinality label: {sample:?}"
            );
            assert!(
                !forbidden.contains(value),
                "label {name}={value:?} identifies a resource instance: {sample:?}"
            );
        }
        let spec = appendix_a(sample.name)
            .unwrap_or_else(|| panic!("{} is not an Appendix A metric", sample.name));
        let expected: BTreeSet<&str> = spec.labels.iter().copied().collect();
        assert_eq!(
            label_names, expected,
            "labels of {}: {sample:?}",
            sample.name
        );
        if let Some((label, values)) = spec.enumerated {
            let value = sample.label(label).unwrap_or_default();
            assert!(
                values.contains(&value),
                "{}{{{label}={value:?}}} is not a catalogued value",
                sample.name
            );
        }
        if let Some(source) = sample.label("source") {
            assert!(sources.contains(source), "unknown source {source:?}");
        }
        if let Some(namespace) = sample.label("resource_namespace") {
            assert!(namespaces.contains(namespace), "{sample:?}");
        }
        if let Some(name) = sample.label("resource_name") {
            assert!(names.contains(name), "{sample:?}");
        }
        if let MetricValue::Observation(x) = sample.value {
            assert!(x.is_finite() && x >= 0.0, "{sample:?}");
        }
    }
}

/// B18.25: events are catalogued, carry their payload, and name resources
/// by their rendered key.
fn assert_events_catalogued(events: &[Event], keys: &[ResourceKey]) {
    let rendered: BTreeSet<String> = keys.iter().map(ToString::to_string).collect();
    for event in events {
        assert_payload(event);
        if let Some(resource) = event.get("resource").and_then(|v| v.as_str()) {
            assert!(
                resource.is_empty() || rendered.contains(resource),
                "{} names {resource:?}, not a rendered scenario key",
                event.name
            );
        }
    }
}

/// The full scenario: every event and every metric sample conforms to
/// appendices A and B, and no metric label identifies a resource instance.
#[tokio::test(start_paused = true)]
async fn full_scenario_respects_the_catalogue_and_label_cardinality() {
    let f = Fixture::new();
    run_every_step(&f).await;

    let samples = f.sink.samples();
    let events = f.sink.events();
    assert_low_cardinality(&samples, &scenario_keys(), &f.sources());
    assert_events_catalogued(&events, &scenario_keys());

    let metric_names: BTreeSet<&str> = samples.iter().map(|s| s.name).collect();
    for name in [
        "cache_access_total",
        "singleflight_join_total",
        "source_fetch_total",
        "source_fetch_latency_ms",
        "source_capacity_wait_ms",
        "resource_publish_total",
        "resource_invalidation_total",
        "resource_refresh_total",
        "snapshot_build_total",
    ] {
        assert!(metric_names.contains(name), "{name} was not recorded");
    }
    let event_names: BTreeSet<&str> = events.iter().map(|e| e.name).collect();
    for name in [
        "cache_hit",
        "stale_fallback_used",
        "resource_resolved",
        "source_failed",
        "source_circuit_open",
        "resource_published",
        "resource_publish_ignored",
        "resource_invalidated",
        "resource_refresh_scheduled",
        "resource_refresh_completed",
        "resource_refresh_failed",
        "snapshot_built",
    ] {
        assert!(event_names.contains(name), "{name} was not emitted");
    }
    // B18.2: two instances of one resource type share one label set.
    let price_labels: Vec<&Vec<(String, String)>> = samples
        .iter()
        .filter(|s| s.name == "cache_access_total" && s.label("resource_name") == Some("price"))
        .map(|s| &s.labels)
        .collect();
    assert!(price_labels.len() >= 3, "BTC, ETH, SOL and LTC were read");
}

/// A second scenario (batches, a capacity queue timeout, a deadline while
/// waiting for capacity, a transport budget rejection, a session) obeys the
/// same label rules.
#[tokio::test(start_paused = true)]
async fn timeouts_batches_and_sessions_respect_label_cardinality() {
    let sink = RecordingSink::new();
    let clock = ManualClock::new(1_000.0);
    let gate = Gate::new();
    let bulk_failing = Arc::new(AtomicBool::new(false));
    let bulk = FnBatchSource::new("bulk", {
        let failing = Arc::clone(&bulk_failing);
        move |keys: Vec<ResourceKey>, _ctx: FetchContext| {
            let failing = failing.load(Ordering::SeqCst);
            async move {
                if failing {
                    return Err(SourceError::protocol("bulk endpoint down"));
                }
                Ok(keys
                    .into_iter()
                    .map(|k| (k, SourceOutput::new(1_u64)))
                    .collect())
            }
        }
    })
    .with_supports(|k: &ResourceKey| k.name() == "bulk");
    let narrow = FnSource::new("narrow", {
        let gate = gate.clone();
        move |k: ResourceKey, _ctx: FetchContext| {
            let gate = gate.clone();
            async move {
                if k.subject() == "HOLD" {
                    gate.pass().await;
                }
                Ok(SourceOutput::new(1_u64))
            }
        }
    })
    .with_supports(|k: &ResourceKey| k.name() == "narrow")
    .with_max_concurrency(NonZeroUsize::MIN)
    .with_queue_timeout(ms(10));
    let blocking = FnSource::sync("blocking", |_k: &ResourceKey, _ctx: &FetchContext| {
        Ok(SourceOutput::new(1_u64))
    })
    .with_supports(|k: &ResourceKey| k.name() == "legacy")
    .with_timeout(secs(2))
    .with_blocking_io(Some(secs(1)));
    let config = SnapshotBuilder::builder([bulk.into(), narrow.into(), blocking.into()])
        .clock(Arc::new(clock))
        .resilience(single_attempt());
    let builder = recorded_by(config, &sink);
    let bulk_a = key("market:bulk:BTCUSDT?venue=spot");
    let bulk_b = key("market:bulk:ETHUSDT?venue=futures");
    let bulk_c = key("market:bulk:SOLUSDT?venue=spot");
    let hold = key("market:narrow:HOLD?desk=alpha");
    let queued = key("market:narrow:QUEUED?desk=beta");
    let late = key("market:narrow:LATE?desk=gamma");
    let legacy = key("market:legacy:ADAUSDT?venue=otc");
    let keys = vec![
        bulk_a.clone(),
        bulk_b.clone(),
        bulk_c.clone(),
        hold.clone(),
        queued.clone(),
        late.clone(),
        legacy.clone(),
    ];

    builder
        .build([bulk_a.clone(), bulk_b.clone()])
        .await
        .expect("the batch succeeds");
    bulk_failing.store(true, Ordering::SeqCst);
    build_lenient(&builder, std::slice::from_ref(&bulk_c), BuildOptions::new()).await;
    let holder = spawn_strict(&builder, vec![hold.clone()]);
    gate.wait_for_arrivals(1).await;
    build_lenient(&builder, std::slice::from_ref(&queued), BuildOptions::new()).await;
    build_lenient(
        &builder,
        std::slice::from_ref(&late),
        BuildOptions::new().deadline(ms(5)),
    )
    .await;
    gate.open();
    join(holder).await;
    build_lenient(
        &builder,
        std::slice::from_ref(&legacy),
        BuildOptions::new().deadline(ms(100)),
    )
    .await;
    let session = builder
        .session(SessionOptions::new())
        .expect("a session opens");
    bulk_failing.store(false, Ordering::SeqCst);
    session
        .resolve([bulk_a.clone()], ResolveOptions::new())
        .await
        .expect("the session resolves");
    session
        .revalidate(
            [bulk_a.clone()],
            RevalidateOptions::new().force_refresh(true),
        )
        .await
        .expect("the revalidation commits");

    let recorded = Recorded {
        events: sink.events(),
        samples: sink.samples(),
    };
    assert_eq!(
        recorded.batch_calls("success", "bulk"),
        2,
        "the first build and the forced revalidation (the session reads the cache)"
    );
    assert_eq!(recorded.batch_calls("failure", "bulk"), 1);
    assert!(recorded
        .observations("source_batch_size", &[("source", "bulk")])
        .contains(&2.0));
    assert_eq!(recorded.capacity_timeouts("narrow", "queue_timeout"), 1);
    assert_eq!(recorded.capacity_timeouts("narrow", "snapshot_deadline"), 1);
    assert_eq!(
        recorded.counter(
            "source_transport_budget_rejection_total",
            &[("source", "blocking"), ("reason", "snapshot_deadline")]
        ),
        1
    );
    assert_eq!(
        recorded.counter("snapshot_session_resolve_total", &[("status", "success")]),
        1
    );
    assert_eq!(
        recorded.counter(
            "snapshot_session_revalidate_total",
            &[("status", "success")]
        ),
        1
    );
    assert_payload(recorded.one("snapshot_session_resolved"));
    assert_payload(recorded.one("snapshot_session_revalidated"));
    let mut sources = BTreeSet::new();
    for name in ["bulk", "narrow", "blocking"] {
        sources.insert(name.to_owned());
    }
    assert_low_cardinality(&recorded.samples, &keys, &sources);
    assert_events_catalogued(&recorded.events, &keys);
}

/// Appendix A: `source_batch_call_total` distinguishes calls that never ran
/// because of a capacity queue timeout or the snapshot deadline from
/// failures of the source.
#[tokio::test(start_paused = true)]
async fn batch_call_status_distinguishes_queue_timeouts_and_deadlines() {
    let sink = RecordingSink::new();
    let gate = Gate::new();
    let bulk = FnBatchSource::new("bulk", {
        let gate = gate.clone();
        move |keys: Vec<ResourceKey>, _ctx: FetchContext| {
            let gate = gate.clone();
            async move {
                if keys.iter().any(|k| k.subject() == "HOLD") {
                    gate.pass().await;
                }
                Ok(keys
                    .into_iter()
                    .map(|k| (k, SourceOutput::new(1_u64)))
                    .collect())
            }
        }
    })
    .with_max_concurrency(NonZeroUsize::MIN)
    .with_queue_timeout(ms(10));
    let config = SnapshotBuilder::builder([bulk.into()]).resilience(single_attempt());
    let builder = recorded_by(config, &sink);
    let holder = spawn_strict(&builder, vec![key("market:bulk:HOLD")]);
    gate.wait_for_arrivals(1).await;
    build_lenient(&builder, &[key("market:bulk:QUEUED")], BuildOptions::new()).await;
    build_lenient(
        &builder,
        &[key("market:bulk:LATE")],
        BuildOptions::new().deadline(ms(5)),
    )
    .await;
    gate.open();
    join(holder).await;

    let statuses: BTreeMap<String, u64> = sink
        .samples()
        .iter()
        .filter(|s| s.name == "source_batch_call_total")
        .fold(BTreeMap::new(), |mut acc, s| {
            *acc.entry(s.label("status").unwrap_or_default().to_owned())
                .or_default() += 1;
            acc
        });
    let expected: BTreeMap<String, u64> = [
        ("deadline_exceeded".to_owned(), 1),
        ("queue_timeout".to_owned(), 1),
        ("success".to_owned(), 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(statuses, expected);
}

/// B13.17 / Appendix B: a forced session revalidation bypasses the shared
/// cache and says so with a metric and a `cache_bypassed` event.
#[tokio::test(start_paused = true)]
async fn forced_revalidation_reports_the_cache_bypass() {
    let f = Fixture::new();
    let session = f
        .builder
        .session(SessionOptions::new())
        .expect("a session opens");
    session
        .resolve([btc()], ResolveOptions::new())
        .await
        .expect("the session resolves");
    let mark = f.mark();
    session
        .revalidate([btc()], RevalidateOptions::new().force_refresh(true))
        .await
        .expect("the revalidation commits");
    let r = f.since(&mark);

    assert_eq!(r.cache_accesses(&btc(), "revalidation_bypass"), 1);
    let bypassed = r.one("cache_bypassed");
    assert_payload(bypassed);
    assert_eq!(text(bypassed, "resource"), btc().to_string());
    assert_eq!(text(bypassed, "reason"), "session_revalidation");
}
