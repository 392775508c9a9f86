//! Catalogue area 10: retry and circuit breakers as seen through builds —
//! the default retry, per-source retry policies, transient classification,
//! deadline-aware back-off, one circuit outcome per attempt chain, circuit
//! scopes (source / namespace / resource / subject) and their identities,
//! open-circuit failures, recovery through a single half-open probe, stale
//! data as a circuit failure, batch grouping by circuit identity, resilience
//! precedence and circuit snapshots (B10.3–B10.31), with the source-timeout
//! rules of area 11 that concern circuits (B10.27, B10.28, B11.4, B11.6).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coalestra_core::{
    BuildOptions, CircuitBreakerPolicy, CircuitScope, Clock, Event, EventSink, FetchContext,
    FnBatchSource, FnSource, FreshnessPolicy, ManualClock, MetadataValue, MetricsSink,
    ResiliencePolicy, ResourceKey, RetryPolicy, Snapshot, SourceError, SourceOptions, SourceOutput,
    SourceRef,
};
use coalestra_orchestration::SnapshotBuilder;
use coalestra_resilience::{CircuitState, CircuitStatus};
use coalestra_test::{key, Gate};

mod support;
use support::{
    batch_calls, build_lenient as build_with, drain, failure_messages, failures, join,
    one_failure as one, settle, single_attempt, spawn_lenient, text, wall_clock_config as config,
    Batches, HANG_GUARD,
};

fn btc_price() -> ResourceKey {
    key("market:price:BTC")
}
fn btc_mark() -> ResourceKey {
    key("market:mark:BTC")
}
fn eth_price() -> ResourceKey {
    key("market:price:ETH")
}
fn eth_mark() -> ResourceKey {
    key("market:mark:ETH")
}

fn retry(attempts: u32) -> RetryPolicy {
    RetryPolicy::new(attempts, Duration::ZERO, Duration::ZERO).expect("valid retry policy")
}

fn circuit(scope: CircuitScope, threshold: u32, recovery: Duration) -> CircuitBreakerPolicy {
    CircuitBreakerPolicy::new(scope, threshold, recovery).expect("valid circuit policy")
}

fn policy(retry: RetryPolicy, circuit: CircuitBreakerPolicy) -> ResiliencePolicy {
    ResiliencePolicy::new(retry, circuit)
}

/// `attempts` attempts per call chain and no circuit breaker.
fn retries_only(attempts: u32) -> ResiliencePolicy {
    policy(retry(attempts), CircuitBreakerPolicy::disabled())
}

/// A single attempt per call under a circuit of `scope` opening after
/// `threshold` failures and recovering after `recovery`.
fn breaker_only(scope: CircuitScope, threshold: u32, recovery: Duration) -> ResiliencePolicy {
    policy(RetryPolicy::none(), circuit(scope, threshold, recovery))
}

/// A builder over `sources` on the manual clock with `resilience`.
fn resilient_builder(sources: Vec<SourceRef>, resilience: ResiliencePolicy) -> SnapshotBuilder {
    config(sources)
        .resilience(resilience)
        .build()
        .expect("valid builder")
}

/// Every call a source received, in order.
#[derive(Clone, Default)]
struct CallLog(Arc<Mutex<Vec<ResourceKey>>>);

impl CallLog {
    /// Records a call and returns how many calls `key` had before.
    fn record(&self, key: &ResourceKey) -> usize {
        let mut calls = self.0.lock().expect("call log lock");
        let before = calls.iter().filter(|k| *k == key).count();
        calls.push(key.clone());
        before
    }
    fn count(&self) -> usize {
        self.0.lock().expect("call log lock").len()
    }
    fn count_for(&self, key: &ResourceKey) -> usize {
        self.0
            .lock()
            .expect("call log lock")
            .iter()
            .filter(|k| *k == key)
            .count()
    }
    fn keys(&self) -> Vec<ResourceKey> {
        self.0.lock().expect("call log lock").clone()
    }
}

/// A single-key source answering `answer(key, previous calls of key)`.
fn scripted<F>(name: &str, log: &CallLog, answer: F) -> FnSource
where
    F: Fn(&ResourceKey, usize) -> Result<String, SourceError> + Send + Sync + 'static,
{
    let log = log.clone();
    let answer = Arc::new(answer);
    FnSource::new(name, move |key: ResourceKey, _ctx: FetchContext| {
        let log = log.clone();
        let answer = Arc::clone(&answer);
        async move {
            let before = log.record(&key);
            answer(&key, before).map(SourceOutput::new)
        }
    })
}

/// A source that always answers `"<text>"`.
fn constant(name: &str, log: &CallLog, text: &'static str) -> FnSource {
    scripted(name, log, move |_, _| Ok(text.to_owned()))
}

/// A source that always fails as unavailable.
fn failing(name: &str, log: &CallLog) -> FnSource {
    scripted(name, log, |key, _| {
        Err(SourceError::unavailable(format!("{key} is down")))
    })
}

/// Builds `keys` non-strictly, failing the test on a hang.
async fn build_lenient(builder: &SnapshotBuilder, keys: &[ResourceKey]) -> Snapshot {
    build_with(builder, keys, BuildOptions::new()).await
}

/// Builds `key` alone non-strictly.
async fn build_one(builder: &SnapshotBuilder, key: &ResourceKey) -> Snapshot {
    build_lenient(builder, std::slice::from_ref(key)).await
}

fn state(builder: &SnapshotBuilder, identity: &str) -> CircuitState {
    builder
        .circuits()
        .get(identity)
        .cloned()
        .unwrap_or_default()
}

/// Asserts that every circuit the builder knows is closed.
fn assert_all_circuits_closed(builder: &SnapshotBuilder) {
    assert!(
        builder
            .circuits()
            .values()
            .all(|s| s.state == CircuitStatus::Closed),
        "{:?}",
        builder.circuits()
    );
}

fn status(builder: &SnapshotBuilder, identity: &str) -> CircuitStatus {
    state(builder, identity).state
}

/// Records metrics and events (the support crate's recording sink).
use coalestra_test::RecordingSink as Recorder;

fn text_field(event: &Event, field: &str) -> Option<String> {
    match event.get(field) {
        Some(MetadataValue::Text(t)) => Some(t.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------- retries

// B10.6: the default resilience retries a transient error: 2 attempts.
#[tokio::test(start_paused = true)]
async fn default_retry_makes_two_attempts() {
    let log = CallLog::default();
    let builder = config(vec![failing("rest", &log).into()])
        .build()
        .expect("valid builder");

    let snapshot = build_lenient(&builder, &[btc_price()]).await;

    assert_eq!(
        failures(&snapshot, &btc_price()),
        one("rest", "SourceUnavailableError", 2)
    );
    assert_eq!(log.count(), 2);
    assert_eq!(snapshot.diagnostics().map(|d| d.retries), Some(1));
}

// B10.7 (success side): a 3-attempt policy with zero back-off succeeds on the
// third call and reports 3 attempts.
#[tokio::test(start_paused = true)]
async fn retry_policy_succeeds_on_the_third_attempt() {
    let log = CallLog::default();
    let flaky = scripted("rest", &log, |_, before| {
        if before < 2 {
            Err(SourceError::unavailable("not yet"))
        } else {
            Ok("third time".to_owned())
        }
    });
    let builder = resilient_builder(vec![flaky.into()], retries_only(3));

    let snapshot = tokio::time::timeout(HANG_GUARD, builder.build([btc_price()]))
        .await
        .expect("build must not hang")
        .expect("the third attempt succeeds");

    let value = snapshot.get(&btc_price()).expect("resolved");
    assert_eq!(value.value::<String>().expect("text"), "third time");
    assert_eq!(value.attempts(), 3);
    assert_eq!(log.count(), 3);
    assert_eq!(snapshot.diagnostics().map(|d| d.retries), Some(2));
}

// B10.7: retry policies per source through the builder's override map.
#[tokio::test(start_paused = true)]
async fn retry_policy_can_be_configured_per_source() {
    let short_log = CallLog::default();
    let long_log = CallLog::default();
    let fallback_log = CallLog::default();
    let fails_twice = |_: &ResourceKey, before: usize| {
        if before < 2 {
            Err(SourceError::unavailable("temporarily down"))
        } else {
            Ok("success".to_owned())
        }
    };
    let short = scripted("short", &short_log, fails_twice)
        .with_priority(10)
        .with_supports(|k| k.subject() == "short");
    let long = scripted("long", &long_log, move |k, before| {
        fails_twice(k, before).map(|_| "long-success".to_owned())
    })
    .with_priority(10)
    .with_supports(|k| k.subject() == "long");
    let fallback = scripted("fallback", &fallback_log, |k, _| {
        Ok(format!("fallback:{}", k.subject()))
    });
    let builder = config(vec![short.into(), long.into(), fallback.into()])
        .resilience(retries_only(2))
        .source_resilience("short", single_attempt())
        .source_resilience("long", retries_only(3))
        .build()
        .expect("valid builder");
    let short_key = key("svc:value:short");
    let long_key = key("svc:value:long");

    let snapshot = build_lenient(&builder, &[short_key.clone(), long_key.clone()]).await;

    assert_eq!(text(&snapshot, &short_key), "fallback:short");
    assert_eq!(text(&snapshot, &long_key), "long-success");
    assert_eq!(snapshot.get(&long_key).map(|v| v.attempts()), Some(3));
    assert_eq!(short_log.count(), 1, "short makes a single attempt");
    assert_eq!(long_log.count(), 3, "long makes three");
    assert_eq!(fallback_log.keys(), vec![short_key]);
}

// B10.4: only transient errors are retried.
#[tokio::test(start_paused = true)]
async fn only_transient_errors_are_retried() {
    type MakeError = fn() -> SourceError;
    let cases: [(&str, MakeError, &str, u32); 5] = [
        (
            "unavailable",
            || SourceError::unavailable("down"),
            "SourceUnavailableError",
            3,
        ),
        (
            "custom-transient",
            || SourceError::custom("ConnectionReset", "reset", true),
            "ConnectionReset",
            3,
        ),
        (
            "protocol",
            || SourceError::protocol("bad payload"),
            "SourceProtocolError",
            1,
        ),
        (
            "custom-permanent",
            || SourceError::custom("AuthError", "denied", false),
            "AuthError",
            1,
        ),
        ("panic", || panic!("source bug"), "SourcePanicError", 1),
    ];
    for (name, make, error_type, attempts) in cases {
        let log = CallLog::default();
        let source = scripted(name, &log, move |_, _| Err(make()));
        let builder = resilient_builder(vec![source.into()], retries_only(3));

        let snapshot = build_lenient(&builder, &[btc_price()]).await;

        assert_eq!(
            failures(&snapshot, &btc_price()),
            one(name, error_type, attempts),
            "case {name}"
        );
        assert_eq!(log.count(), attempts as usize, "calls for case {name}");
    }
}

// B10.3: a back-off that would sleep past the deadline is not slept: the
// first failure is returned at once.
#[tokio::test(start_paused = true)]
async fn retry_does_not_sleep_past_the_deadline() {
    let log = CallLog::default();
    let long_backoff = RetryPolicy::builder()
        .max_attempts(5)
        .initial_backoff(Duration::from_secs(1))
        .max_backoff(Duration::from_secs(1))
        .jitter(0.0)
        .build()
        .expect("valid retry policy");
    let builder = resilient_builder(
        vec![failing("rest", &log).into()],
        policy(long_backoff, CircuitBreakerPolicy::disabled()),
    );

    let started = tokio::time::Instant::now();
    let snapshot = build_with(
        &builder,
        &[btc_price()],
        BuildOptions::new().deadline(Duration::from_millis(500)),
    )
    .await;

    assert_eq!(
        failures(&snapshot, &btc_price()),
        one("rest", "SourceUnavailableError", 1)
    );
    assert_eq!(log.count(), 1, "no second attempt");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the back-off was not slept ({:?})",
        started.elapsed()
    );
    drain(&builder).await;
    assert_eq!(log.count(), 1, "no attempt after the build returned either");
}

// B10.8: an exhausted chain of retries is one circuit outcome.
#[tokio::test(start_paused = true)]
async fn a_chain_of_retries_records_one_circuit_outcome() {
    let log = CallLog::default();
    let builder = config(vec![failing("rest", &log).into()])
        .resilience(policy(
            retry(3),
            circuit(CircuitScope::Source, 2, Duration::from_secs(10)),
        ))
        .build()
        .expect("valid builder");

    let first = build_lenient(&builder, &[btc_price()]).await;
    assert_eq!(
        failures(&first, &btc_price()),
        one("rest", "SourceUnavailableError", 3)
    );
    assert_eq!(log.count(), 3);
    let after_one = state(&builder, "rest[source]");
    assert_eq!(after_one.state, CircuitStatus::Closed, "{after_one:?}");
    assert_eq!(after_one.failures, 1, "three attempts, one circuit failure");

    let second = build_lenient(&builder, &[eth_price()]).await;
    assert_eq!(
        failures(&second, &eth_price()),
        one("rest", "SourceUnavailableError", 3)
    );
    assert_eq!(log.count(), 6);
    assert_eq!(status(&builder, "rest[source]"), CircuitStatus::Open);

    let third = build_lenient(&builder, &[btc_mark()]).await;
    assert_eq!(
        failures(&third, &btc_mark()),
        one("rest", "CircuitOpenError", 0)
    );
    assert_eq!(log.count(), 6);
}

// ------------------------------------------------------- timeouts, circuits

/// A source sleeping `latency` per call with a Coalestra timeout.
fn slow_source(name: &str, log: &CallLog, latency: Duration, timeout: Duration) -> FnSource {
    let log = log.clone();
    FnSource::new(name, move |key: ResourceKey, _ctx: FetchContext| {
        let log = log.clone();
        async move {
            log.record(&key);
            tokio::time::sleep(latency).await;
            Ok(SourceOutput::new("late".to_owned()))
        }
    })
    .with_timeout(timeout)
}

// B10.28, B11.6: a real source timeout charges the circuit and is counted.
#[tokio::test(start_paused = true)]
async fn a_real_source_timeout_trips_the_circuit() {
    let log = CallLog::default();
    let slow = slow_source(
        "slow",
        &log,
        Duration::from_millis(50),
        Duration::from_millis(10),
    );
    let builder = resilient_builder(
        vec![slow.into()],
        breaker_only(CircuitScope::Source, 1, Duration::from_secs(10)),
    );

    let snapshot = build_lenient(&builder, &[btc_price()]).await;

    assert_eq!(
        failures(&snapshot, &btc_price()),
        one("slow", "SourceTimeoutError", 1)
    );
    assert_eq!(
        failure_messages(&snapshot, &btc_price()),
        vec!["source slow timed out after 0.010s while resolving market:price:BTC".to_owned()]
    );
    assert_eq!(
        status(&builder, "slow[source]"),
        CircuitStatus::Open,
        "{:?}",
        builder.circuits()
    );
    assert_eq!(builder.timeout_counts(), (0, 1, 0));
}

// B10.5: a timing-out source with 3 attempts is called 3 times, reports 3
// attempts and 2 retries, and counts one source timeout per exhausted chain.
#[tokio::test(start_paused = true)]
async fn retried_source_timeouts_are_counted_once_per_chain() {
    let log = CallLog::default();
    let slow = slow_source(
        "slow",
        &log,
        Duration::from_millis(50),
        Duration::from_millis(10),
    );
    let builder = resilient_builder(vec![slow.into()], retries_only(3));

    let snapshot = build_lenient(&builder, &[btc_price()]).await;

    assert_eq!(
        failures(&snapshot, &btc_price()),
        one("slow", "SourceTimeoutError", 3)
    );
    assert_eq!(log.count(), 3);
    assert_eq!(snapshot.diagnostics().map(|d| d.retries), Some(2));
    assert_eq!(
        builder.timeout_counts().1,
        1,
        "one timeout per exhausted chain"
    );
}

// B10.27 (deadline side): a deadline hit during the call is not a circuit
// failure and is not retried.
#[tokio::test(start_paused = true)]
async fn a_deadline_during_the_call_does_not_trip_the_circuit() {
    let log = CallLog::default();
    let slow = slow_source(
        "slow",
        &log,
        Duration::from_millis(200),
        Duration::from_secs(1),
    );
    let builder = config(vec![slow.into()])
        .resilience(policy(
            retry(3),
            circuit(CircuitScope::Source, 1, Duration::from_secs(10)),
        ))
        .build()
        .expect("valid builder");

    let snapshot = build_with(
        &builder,
        &[btc_price()],
        BuildOptions::new().deadline(Duration::from_millis(20)),
    )
    .await;

    let found = failures(&snapshot, &btc_price());
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].1, "SnapshotDeadlineExceededError", "{found:?}");
    drain(&builder).await;
    assert_eq!(log.count(), 1, "a deadline is not retried");
    assert_eq!(
        status(&builder, "slow[source]"),
        CircuitStatus::Closed,
        "{:?}",
        builder.circuits()
    );
    assert_eq!(builder.timeout_counts().1, 0, "not a source timeout");
}

/// A primary (priority 10) failing only for `market:price:BTC`, a fallback
/// (priority 0) and a builder with threshold-1 circuits of `scope`.
fn scoped_builder(scope: CircuitScope, primary_log: &CallLog) -> SnapshotBuilder {
    let primary = scripted("primary", primary_log, |k, _| {
        if *k == btc_price() {
            Err(SourceError::unavailable("BTC price feed down"))
        } else {
            Ok("primary".to_owned())
        }
    })
    .with_priority(10);
    let fallback = constant("fallback", &CallLog::default(), "fallback");
    resilient_builder(
        vec![primary.into(), fallback.into()],
        breaker_only(scope, 1, Duration::from_secs(30)),
    )
}

async fn resolve_text(builder: &SnapshotBuilder, key: &ResourceKey) -> String {
    let snapshot = build_one(builder, key).await;
    text(&snapshot, key).to_owned()
}

/// Resolves each `(key, expected text)` in order through a
/// [`scoped_builder`] of `scope`, then checks the keys the primary was
/// called for and the state of the `open` and `closed` circuit identities.
async fn check_scope(
    scope: CircuitScope,
    resolutions: &[(ResourceKey, &str)],
    primary_calls: Vec<ResourceKey>,
    open: &str,
    closed: Option<&str>,
) -> CallLog {
    let log = CallLog::default();
    let builder = scoped_builder(scope, &log);
    for (key, expected) in resolutions {
        assert_eq!(resolve_text(&builder, key).await, *expected, "{key}");
    }
    assert_eq!(log.keys(), primary_calls, "keys the primary was called for");
    assert_eq!(status(&builder, open), CircuitStatus::Open, "{open}");
    if let Some(closed) = closed {
        assert_eq!(status(&builder, closed), CircuitStatus::Closed, "{closed}");
    }
    log
}

// B10.17, B10.21: SUBJECT scope isolates one subject across resource names.
#[tokio::test(start_paused = true)]
async fn subject_scope_isolates_one_subject_across_resource_names() {
    let log = check_scope(
        CircuitScope::Subject,
        &[
            (btc_price(), "fallback"),
            (btc_mark(), "fallback"),
            (eth_price(), "primary"),
        ],
        vec![btc_price(), eth_price()],
        "primary[subject]:BTC",
        Some("primary[subject]:ETH"),
    )
    .await;
    assert_eq!(
        log.count_for(&btc_mark()),
        0,
        "BTC mark never reaches the primary"
    );
}

// B10.18, B10.21: SOURCE scope blocks everything after one failure.
#[tokio::test(start_paused = true)]
async fn source_scope_blocks_all_resources_after_one_failure() {
    check_scope(
        CircuitScope::Source,
        &[
            (btc_price(), "fallback"),
            (eth_price(), "fallback"),
            (key("account:summary:ALICE"), "fallback"),
        ],
        // The primary is not called again.
        vec![btc_price()],
        "primary[source]",
        None,
    )
    .await;
}

// B10.19, B10.21: RESOURCE scope keeps other resources of the subject.
#[tokio::test(start_paused = true)]
async fn resource_scope_keeps_other_resources_for_the_same_subject() {
    let log = CallLog::default();
    let builder = scoped_builder(CircuitScope::Resource, &log);

    assert_eq!(resolve_text(&builder, &btc_price()).await, "fallback");
    assert_eq!(resolve_text(&builder, &btc_mark()).await, "primary");
    builder
        .cache()
        .clear()
        .await
        .expect("clearing the memory cache succeeds");
    assert_eq!(
        resolve_text(&builder, &btc_price()).await,
        "fallback",
        "the failed resource itself stays blocked"
    );

    assert_eq!(log.keys(), vec![btc_price(), btc_mark()]);
    assert_eq!(
        status(&builder, "primary[resource]:market:price:BTC"),
        CircuitStatus::Open,
        "{:?}",
        builder.circuits()
    );
    assert_eq!(
        status(&builder, "primary[resource]:market:mark:BTC"),
        CircuitStatus::Closed
    );
}

// B10.20, B10.21: NAMESPACE scope blocks only the failed namespace.
#[tokio::test(start_paused = true)]
async fn namespace_scope_blocks_only_the_failed_namespace() {
    let summary = key("account:summary:ALICE");
    check_scope(
        CircuitScope::Namespace,
        &[
            (btc_price(), "fallback"),
            (eth_mark(), "fallback"),
            (summary.clone(), "primary"),
        ],
        vec![btc_price(), summary],
        "primary[namespace]:market",
        Some("primary[namespace]:account"),
    )
    .await;
}

// B10.16: an open circuit skips the source with a CircuitOpenError of zero
// attempts, counts a circuit_open fetch, emits an event and tries the next
// source.
#[tokio::test(start_paused = true)]
async fn an_open_circuit_fails_fast_and_the_next_source_is_tried() {
    let log = CallLog::default();
    let fallback_log = CallLog::default();
    let recorder = Arc::new(Recorder::default());
    let rest = failing("rest", &log).with_priority(10);
    let fallback =
        constant("fallback", &fallback_log, "fallback").with_supports(|k| k.subject() == "C");
    let builder = config(vec![rest.into(), fallback.into()])
        .resilience(breaker_only(
            CircuitScope::Source,
            1,
            Duration::from_secs(10),
        ))
        .metrics(Arc::clone(&recorder) as Arc<dyn MetricsSink>)
        .events(Arc::clone(&recorder) as Arc<dyn EventSink>)
        .build()
        .expect("valid builder");
    let a = key("market:price:A");
    let b = key("market:price:B");
    let c = key("market:price:C");

    let first = build_one(&builder, &a).await;
    assert_eq!(
        failures(&first, &a),
        one("rest", "SourceUnavailableError", 1)
    );

    let second = build_one(&builder, &b).await;
    assert_eq!(failures(&second, &b), one("rest", "CircuitOpenError", 0));
    assert_eq!(
        failure_messages(&second, &b),
        vec!["circuit is open for rest[source]".to_owned()]
    );
    assert_eq!(log.count(), 1, "the open circuit prevents the call");
    assert_eq!(
        recorder.counter(
            "source_fetch_total",
            &[("status", "circuit_open"), ("source", "rest")]
        ),
        1
    );
    let events = recorder.events_named("source_circuit_open");
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(text_field(&events[0], "source").as_deref(), Some("rest"));
    assert_eq!(
        text_field(&events[0], "resource").as_deref(),
        Some("market:price:B")
    );
    assert_eq!(
        text_field(&events[0], "error").as_deref(),
        Some("circuit is open for rest[source]")
    );

    let third = build_one(&builder, &c).await;
    assert_eq!(text(&third, &c), "fallback", "the next source is tried");
    assert_eq!(log.count(), 1);
}

/// A builder over a "rest" source whose very first call fails and whose
/// later calls wait at `gate` before answering "recovered", under a
/// threshold-1 source circuit recovering after 5 s.
fn recovering_rest(log: &CallLog, gate: &Gate) -> SnapshotBuilder {
    let log = log.clone();
    let gate = gate.clone();
    let rest = FnSource::new("rest", move |key: ResourceKey, _ctx: FetchContext| {
        let log = log.clone();
        let gate = gate.clone();
        async move {
            if log.record(&key) == 0 && log.count() == 1 {
                return Err(SourceError::unavailable("down"));
            }
            gate.pass().await;
            Ok(SourceOutput::new("recovered".to_owned()))
        }
    });
    resilient_builder(
        vec![rest.into()],
        breaker_only(CircuitScope::Source, 1, Duration::from_secs(5)),
    )
}

// B10.9, B10.11: after the recovery timeout a single half-open probe goes
// through; concurrent callers are refused; a successful probe closes.
#[tokio::test(start_paused = true)]
async fn circuit_recovers_through_a_single_half_open_probe() {
    let log = CallLog::default();
    let probe_gate = Gate::new();
    let builder = recovering_rest(&log, &probe_gate);
    let a = key("market:price:A");
    let b = key("market:price:B");
    let c = key("market:price:C");

    let first = build_one(&builder, &a).await;
    assert_eq!(
        failures(&first, &a),
        one("rest", "SourceUnavailableError", 1)
    );
    assert_eq!(status(&builder, "rest[source]"), CircuitStatus::Open);

    tokio::time::advance(Duration::from_secs(4)).await;
    let early = build_one(&builder, &b).await;
    assert_eq!(failures(&early, &b), one("rest", "CircuitOpenError", 0));
    assert_eq!(log.count(), 1, "no call before the recovery timeout");

    tokio::time::advance(Duration::from_secs(1)).await;
    let probe = spawn_lenient(&builder, vec![b.clone()], BuildOptions::new());
    settle().await;
    let probing = state(&builder, "rest[source]");
    assert_eq!(probing.state, CircuitStatus::HalfOpen, "{probing:?}");
    assert!(probing.half_open_probe_active);
    assert_eq!(log.count(), 2, "the probe called the source");

    let refused = build_one(&builder, &c).await;
    assert_eq!(failures(&refused, &c), one("rest", "CircuitOpenError", 0));
    assert_eq!(
        failure_messages(&refused, &c),
        vec!["half-open probe already active for rest[source]".to_owned()]
    );
    assert_eq!(log.count(), 2, "a single probe");

    probe_gate.open();
    let probed = join(probe).await;
    assert_eq!(text(&probed, &b), "recovered");
    let closed = state(&builder, "rest[source]");
    assert_eq!(closed.state, CircuitStatus::Closed, "{closed:?}");
    assert_eq!(closed.failures, 0);
    let after = build_one(&builder, &c).await;
    assert_eq!(text(&after, &c), "recovered");
}

// B10.12: a failed probe reopens the circuit at once, whatever the threshold.
#[tokio::test(start_paused = true)]
async fn a_failed_probe_reopens_the_circuit_immediately() {
    let log = CallLog::default();
    let builder = resilient_builder(
        vec![failing("rest", &log).into()],
        breaker_only(CircuitScope::Source, 3, Duration::from_secs(5)),
    );
    for i in 0..3 {
        build_lenient(&builder, &[key(&format!("market:price:K{i}"))]).await;
    }
    assert_eq!(status(&builder, "rest[source]"), CircuitStatus::Open);
    assert_eq!(log.count(), 3);

    tokio::time::advance(Duration::from_secs(5)).await;
    let probe_key = key("market:price:PROBE");
    let probe = build_one(&builder, &probe_key).await;
    assert_eq!(
        failures(&probe, &probe_key),
        one("rest", "SourceUnavailableError", 1)
    );
    assert_eq!(log.count(), 4);
    assert_eq!(
        status(&builder, "rest[source]"),
        CircuitStatus::Open,
        "one failed probe reopens a threshold-3 circuit"
    );

    let next = key("market:price:NEXT");
    let refused = build_one(&builder, &next).await;
    assert_eq!(
        failures(&refused, &next),
        one("rest", "CircuitOpenError", 0)
    );
    assert_eq!(log.count(), 4);
}

// B10.13: a probe that ends in a queue timeout records no outcome: the
// circuit stays half-open without an active probe, and the next call probes.
#[tokio::test(start_paused = true)]
async fn a_probe_ending_in_a_queue_timeout_leaves_the_circuit_half_open() {
    let log = CallLog::default();
    let hold_gate = Gate::new();
    let rest = {
        let log = log.clone();
        let gate = hold_gate.clone();
        FnSource::new("rest", move |key: ResourceKey, _ctx: FetchContext| {
            let log = log.clone();
            let gate = gate.clone();
            async move {
                log.record(&key);
                let first_call = log.count() == 1;
                match key.subject() {
                    "BTC" if first_call => Err(SourceError::unavailable("BTC down")),
                    "ETH" => {
                        gate.pass().await;
                        Ok(SourceOutput::new("eth".to_owned()))
                    }
                    _ => Ok(SourceOutput::new("btc".to_owned())),
                }
            }
        })
        .with_max_concurrency(std::num::NonZeroUsize::MIN)
        .with_queue_timeout(Duration::from_millis(10))
    };
    let builder = resilient_builder(
        vec![rest.into()],
        breaker_only(CircuitScope::Subject, 1, Duration::from_secs(5)),
    );

    build_lenient(&builder, &[btc_price()]).await;
    assert_eq!(status(&builder, "rest[subject]:BTC"), CircuitStatus::Open);
    tokio::time::advance(Duration::from_secs(5)).await;

    // ETH (its own closed circuit) holds the only slot of the source.
    let holder = spawn_lenient(&builder, vec![eth_price()], BuildOptions::new());
    settle().await;
    let btc_again = key("market:price2:BTC");
    let skipped = build_one(&builder, &btc_again).await;
    assert_eq!(
        failures(&skipped, &btc_again),
        one("rest", "SourceQueueTimeoutError", 1)
    );
    let after_skip = state(&builder, "rest[subject]:BTC");
    assert_eq!(after_skip.state, CircuitStatus::HalfOpen, "{after_skip:?}");
    assert!(
        !after_skip.half_open_probe_active,
        "the probe flag is released"
    );

    hold_gate.open();
    join(holder).await;
    let probe = build_lenient(&builder, &[btc_mark()]).await;
    assert_eq!(text(&probe, &btc_mark()), "btc", "the next call may probe");
    assert_eq!(status(&builder, "rest[subject]:BTC"), CircuitStatus::Closed);
}

// B10.14: the threshold counts consecutive failures; a success resets it.
#[tokio::test(start_paused = true)]
async fn a_success_resets_the_consecutive_failure_count() {
    let log = CallLog::default();
    let script = Arc::new(AtomicUsize::new(0));
    let rest = {
        let script = Arc::clone(&script);
        scripted("rest", &log, move |_, _| {
            // failure, failure, success, failure, failure, failure
            match script.fetch_add(1, Ordering::SeqCst) {
                2 => Ok("ok".to_owned()),
                _ => Err(SourceError::unavailable("down")),
            }
        })
    };
    let builder = resilient_builder(
        vec![rest.into()],
        breaker_only(CircuitScope::Source, 3, Duration::from_secs(10)),
    );

    for i in 0..5 {
        build_lenient(&builder, &[key(&format!("market:price:K{i}"))]).await;
    }
    let after_five = state(&builder, "rest[source]");
    assert_eq!(
        after_five.state,
        CircuitStatus::Closed,
        "F F S F F: {after_five:?}"
    );
    assert_eq!(after_five.failures, 2);

    build_lenient(&builder, &[key("market:price:K5")]).await;
    assert_eq!(
        status(&builder, "rest[source]"),
        CircuitStatus::Open,
        "the third consecutive failure opens"
    );
}

// B10.15: a disabled breaker never opens.
#[tokio::test(start_paused = true)]
async fn a_disabled_circuit_never_opens() {
    let log = CallLog::default();
    let builder = resilient_builder(vec![failing("rest", &log).into()], single_attempt());

    for i in 0..6 {
        let k = key(&format!("market:price:K{i}"));
        let snapshot = build_one(&builder, &k).await;
        assert_eq!(
            failures(&snapshot, &k),
            one("rest", "SourceUnavailableError", 1)
        );
    }
    assert_eq!(log.count(), 6, "every build calls the source");
    assert_all_circuits_closed(&builder);
}

// B10.24: a stale payload is a circuit failure that opens only its subject.
#[tokio::test(start_paused = true)]
async fn stale_data_opens_only_its_subject_circuit() {
    let clock = ManualClock::new(1_000.0);
    let stream_log = CallLog::default();
    let stream = {
        let log = stream_log.clone();
        let clock = clock.clone();
        FnSource::new("stream", move |key: ResourceKey, _ctx: FetchContext| {
            let log = log.clone();
            let now = clock.now();
            async move {
                log.record(&key);
                if key.subject() == "BTC" {
                    Ok(SourceOutput::new("stale".to_owned())
                        .observed_at(now - Duration::from_secs(10)))
                } else {
                    Ok(SourceOutput::new("fresh".to_owned()).observed_at(now))
                }
            }
        })
        .with_priority(10)
    };
    let rest = scripted("rest", &CallLog::default(), |k, _| {
        Ok(format!("rest:{}", k.subject()))
    });
    let builder = SnapshotBuilder::builder([stream.into(), rest.into()])
        .clock(Arc::new(clock.clone()))
        .default_policy(
            FreshnessPolicy::new(Duration::from_secs(1), Duration::from_secs(30))
                .expect("valid policy"),
        )
        .resilience(breaker_only(
            CircuitScope::Subject,
            1,
            Duration::from_secs(30),
        ))
        .build()
        .expect("valid builder");

    assert_eq!(resolve_text(&builder, &btc_price()).await, "rest:BTC");
    assert_eq!(resolve_text(&builder, &btc_mark()).await, "rest:BTC");
    assert_eq!(resolve_text(&builder, &eth_price()).await, "fresh");

    assert_eq!(
        stream_log.count_for(&btc_mark()),
        0,
        "the stream is skipped for BTC"
    );
    assert_eq!(stream_log.keys(), vec![btc_price(), eth_price()]);
    assert_eq!(status(&builder, "stream[subject]:BTC"), CircuitStatus::Open);
    assert_eq!(
        status(&builder, "stream[subject]:ETH"),
        CircuitStatus::Closed
    );
}

/// A batch source recording its calls in `batches` and answering "batch"
/// for every key except those `omit(call number from 1, key)` selects.
fn omitting_batch<F>(batches: &Batches, omit: F) -> FnBatchSource
where
    F: Fn(usize, &ResourceKey) -> bool + Send + Sync + 'static,
{
    let batches = Arc::clone(batches);
    let omit = Arc::new(omit);
    FnBatchSource::new(
        "batch",
        move |keys: Vec<ResourceKey>, _ctx: FetchContext| {
            let call = {
                let mut log = batches.lock().expect("batch log lock");
                log.push(keys.clone());
                log.len()
            };
            let omit = Arc::clone(&omit);
            async move {
                Ok(keys
                    .into_iter()
                    .filter(|k| !omit(call, k))
                    .map(|k| (k, SourceOutput::new("batch".to_owned())))
                    .collect())
            }
        },
    )
}

/// A builder over `sources` without caching, with threshold-1 subject
/// circuits recovering after 30 s.
fn uncached_subject_circuits(sources: Vec<SourceRef>) -> SnapshotBuilder {
    config(sources)
        .default_policy(FreshnessPolicy::no_cache())
        .resilience(breaker_only(
            CircuitScope::Subject,
            1,
            Duration::from_secs(30),
        ))
        .build()
        .expect("valid builder")
}

// B10.25, B10.26: a batch source groups keys by circuit identity; an open
// group is left out of the call.
#[tokio::test(start_paused = true)]
async fn batch_source_applies_subject_circuits_per_group() {
    let batches = Batches::default();
    // The first call omits BTC mark.
    let batch = omitting_batch(&batches, |call, k| call == 1 && *k == btc_mark()).with_priority(10);
    let fallback =
        constant("fallback", &CallLog::default(), "fallback").with_supports(|k| k.name() == "mark");
    let builder = uncached_subject_circuits(vec![batch.into(), fallback.into()]);
    let keys = [btc_mark(), eth_mark()];

    let first = build_lenient(&builder, &keys).await;
    assert_eq!(text(&first, &btc_mark()), "fallback");
    assert_eq!(text(&first, &eth_mark()), "batch");
    assert_eq!(status(&builder, "batch[subject]:BTC"), CircuitStatus::Open);
    assert_eq!(
        status(&builder, "batch[subject]:ETH"),
        CircuitStatus::Closed
    );

    let second = build_lenient(&builder, &keys).await;
    assert_eq!(text(&second, &btc_mark()), "fallback");
    assert_eq!(text(&second, &eth_mark()), "batch");
    assert_eq!(
        batch_calls(&batches),
        vec![vec![btc_mark(), eth_mark()], vec![eth_mark()]],
        "the second batch call contains only ETH"
    );

    // Without a fallback the open group's failure is visible.
    let third = build_lenient(&builder, &[btc_price()]).await;
    assert_eq!(
        failures(&third, &btc_price()),
        one("batch", "CircuitOpenError", 0)
    );
    assert_eq!(batch_calls(&batches).len(), 2, "no call at all");
}

// B10.26: a group records success when at least one of its keys came back
// fresh, even if another key of the same circuit was omitted.
#[tokio::test(start_paused = true)]
async fn a_batch_group_with_one_fresh_key_is_a_circuit_success() {
    let batches = Batches::default();
    let batch = omitting_batch(&batches, |_, k| *k == btc_mark());
    let builder = uncached_subject_circuits(vec![batch.into()]);
    let keys = [btc_price(), btc_mark()];

    let first = build_lenient(&builder, &keys).await;
    assert_eq!(text(&first, &btc_price()), "batch");
    assert_eq!(
        failures(&first, &btc_mark()),
        one("batch", "SourceUnavailableError", 1)
    );
    let after = state(&builder, "batch[subject]:BTC");
    assert_eq!(after.state, CircuitStatus::Closed, "{after:?}");
    assert_eq!(after.failures, 0);

    let second = build_lenient(&builder, &keys).await;
    assert_eq!(text(&second, &btc_price()), "batch");
    assert_eq!(
        batch_calls(&batches),
        vec![keys.to_vec(), keys.to_vec()],
        "the group is still called as one"
    );
}

// B10.22: SUBJECT scope for a key without a subject uses "namespace:name".
#[tokio::test(start_paused = true)]
async fn subject_scope_without_subject_uses_namespace_and_name() {
    let log = CallLog::default();
    let builder = resilient_builder(
        vec![failing("rest", &log).into()],
        breaker_only(CircuitScope::Subject, 1, Duration::from_secs(30)),
    );
    let status_key = key("market:status");

    build_one(&builder, &status_key).await;

    assert_eq!(
        status(&builder, "rest[subject]:market:status"),
        CircuitStatus::Open,
        "{:?}",
        builder.circuits()
    );
    let other = build_lenient(&builder, &[btc_price()]).await;
    assert_eq!(
        failures(&other, &btc_price()),
        one("rest", "SourceUnavailableError", 1),
        "subject BTC has its own circuit"
    );
}

// B10.30: explicit builder override > source-declared policy > builder
// default (the dynamic resolver tier is not exposed by the builder).
#[tokio::test(start_paused = true)]
async fn resilience_precedence_override_then_declared_then_default() {
    let declared_log = CallLog::default();
    let overridden_log = CallLog::default();
    let plain_log = CallLog::default();
    let declared = failing("declared", &declared_log)
        .with_priority(30)
        .with_resilience(retries_only(3));
    let overridden = failing("overridden", &overridden_log)
        .with_priority(20)
        .with_resilience(retries_only(3));
    let plain = failing("plain", &plain_log).with_priority(10);
    let builder = config(vec![declared.into(), overridden.into(), plain.into()])
        .resilience(retries_only(2))
        .source_resilience("overridden", single_attempt())
        .build()
        .expect("valid builder");

    let snapshot = build_lenient(&builder, &[btc_price()]).await;

    assert_eq!(
        failures(&snapshot, &btc_price()),
        vec![
            (
                "declared".to_owned(),
                "SourceUnavailableError".to_owned(),
                3
            ),
            (
                "overridden".to_owned(),
                "SourceUnavailableError".to_owned(),
                1
            ),
            ("plain".to_owned(), "SourceUnavailableError".to_owned(), 2),
        ]
    );
    assert_eq!(
        (
            declared_log.count(),
            overridden_log.count(),
            plain_log.count()
        ),
        (3, 1, 2)
    );
}

// B10.30: the override also replaces the declared circuit policy.
#[tokio::test(start_paused = true)]
async fn a_builder_override_replaces_the_declared_circuit() {
    let log = CallLog::default();
    let rest = failing("rest", &log).with_resilience(breaker_only(
        CircuitScope::Source,
        1,
        Duration::from_secs(10),
    ));
    let builder = config(vec![rest.into()])
        .source_resilience(
            "rest",
            breaker_only(CircuitScope::Subject, 1, Duration::from_secs(10)),
        )
        .build()
        .expect("valid builder");

    build_lenient(&builder, &[btc_price()]).await;
    let eth = build_lenient(&builder, &[eth_price()]).await;

    assert_eq!(
        failures(&eth, &eth_price()),
        one("rest", "SourceUnavailableError", 1)
    );
    assert_eq!(
        log.count(),
        2,
        "the subject-scoped override keeps ETH callable"
    );
    assert_eq!(status(&builder, "rest[subject]:BTC"), CircuitStatus::Open);
    assert!(!builder.circuits().contains_key("rest[source]"));
}

// B10.31, B10.23: circuit snapshots by identity and resets.
#[tokio::test(start_paused = true)]
async fn circuits_snapshot_and_reset() {
    let rest_log = CallLog::default();
    let other_log = CallLog::default();
    let rest = failing("rest", &rest_log).with_supports(|k| k.namespace() == "market");
    let other = failing("other", &other_log).with_supports(|k| k.namespace() == "account");
    let builder = resilient_builder(
        vec![rest.into(), other.into()],
        breaker_only(CircuitScope::Source, 1, Duration::from_secs(10)),
    );
    build_lenient(&builder, &[btc_price(), key("account:summary:ALICE")]).await;
    tokio::time::advance(Duration::from_secs(2)).await;

    let circuits = builder.circuits();
    let rest_state = circuits.get("rest[source]").expect("rest circuit listed");
    assert_eq!(rest_state.state, CircuitStatus::Open);
    assert_eq!(rest_state.failures, 1);
    assert!(
        rest_state.opened_for >= Some(Duration::from_secs(2)),
        "{rest_state:?}"
    );
    assert!(!rest_state.half_open_probe_active);
    assert_eq!(status(&builder, "other[source]"), CircuitStatus::Open);

    builder.reset_circuits(Some("rest"));
    assert_ne!(status(&builder, "rest[source]"), CircuitStatus::Open);
    assert_eq!(status(&builder, "other[source]"), CircuitStatus::Open);
    let again = build_lenient(&builder, &[eth_price()]).await;
    assert_eq!(
        failures(&again, &eth_price()),
        one("rest", "SourceUnavailableError", 1)
    );
    assert_eq!(rest_log.count(), 2, "a reset circuit lets calls through");

    builder.reset_circuits(None);
    assert_all_circuits_closed(&builder);
}

// B10.10 / B10.29 (Rust form): shared fetches are detached from their
// callers, so cancelling the caller of a half-open probe does not abandon
// the probe: it completes and settles the circuit.
#[tokio::test(start_paused = true)]
async fn cancelling_the_caller_of_a_probe_does_not_abandon_it() {
    let log = CallLog::default();
    let gate = Gate::new();
    let builder = recovering_rest(&log, &gate);
    build_lenient(&builder, &[btc_price()]).await;
    tokio::time::advance(Duration::from_secs(5)).await;

    let probe = spawn_lenient(&builder, vec![eth_price()], BuildOptions::new());
    settle().await;
    assert!(state(&builder, "rest[source]").half_open_probe_active);
    probe.abort();
    let aborted = probe.await;
    assert!(
        aborted.is_err_and(|e| e.is_cancelled()),
        "the caller was cancelled"
    );
    settle().await;
    let during = state(&builder, "rest[source]");
    assert_eq!(during.state, CircuitStatus::HalfOpen, "{during:?}");
    assert!(
        during.half_open_probe_active,
        "the detached probe still runs"
    );

    gate.open();
    drain(&builder).await;
    assert_eq!(status(&builder, "rest[source]"), CircuitStatus::Closed);
    let cached = build_lenient(&builder, &[eth_price()]).await;
    assert_eq!(text(&cached, &eth_price()), "recovered");
    assert!(cached.get(&eth_price()).is_some_and(|v| v.is_from_cache()));
    assert_eq!(log.count(), 2);
}

// Issue 4: policies are validated on construction.
#[test]
fn resilience_policies_are_validated() {
    assert!(RetryPolicy::new(0, Duration::ZERO, Duration::ZERO).is_err());
    assert!(RetryPolicy::new(2, Duration::from_secs(2), Duration::from_secs(1)).is_err());
    assert!(RetryPolicy::from_secs_f64(2, -0.1, 1.0, 0.1).is_err());
    assert!(RetryPolicy::from_secs_f64(2, 0.1, f64::NAN, 0.1).is_err());
    assert!(RetryPolicy::from_secs_f64(2, 0.1, 1.0, 1.5).is_err());
    assert!(CircuitBreakerPolicy::new(CircuitScope::Source, 0, Duration::from_secs(1)).is_err());
    assert!(CircuitBreakerPolicy::from_secs_f64(CircuitScope::Subject, 1, -1.0).is_err());
    let default = RetryPolicy::default();
    assert_eq!(
        default.max_attempts(),
        2,
        "the default retry makes 2 attempts"
    );
    let breaker = CircuitBreakerPolicy::default();
    assert_eq!(breaker.scope(), CircuitScope::Source);
    assert_eq!(breaker.failure_threshold(), 3);
    assert_eq!(breaker.recovery_timeout(), Duration::from_secs(10));
}

/// The builder's dynamic resilience lookup sits between explicit overrides
/// and the source's own declaration.
#[tokio::test(start_paused = true)]
async fn dynamic_resilience_resolver_applies_per_source() {
    use coalestra_core::{CircuitBreakerPolicy, ResiliencePolicy, RetryPolicy};
    let failing = |name: &str| {
        FnSource::new(name, |_k: ResourceKey, _ctx: FetchContext| async move {
            Err::<SourceOutput, _>(SourceError::unavailable("down"))
        })
    };
    let builder = SnapshotBuilder::builder([failing("dynamic").into()])
        .resilience_resolver(|name| {
            (name == "dynamic").then(|| {
                ResiliencePolicy::new(RetryPolicy::none(), CircuitBreakerPolicy::disabled())
            })
        })
        .build()
        .expect("valid builder");
    let key = ResourceKey::new("m", "price", "BTC").expect("key");
    let snapshot = builder
        .build_with([key.clone()], BuildOptions::new().strict(false))
        .await
        .expect("lenient build");
    let error = snapshot.error(&key).expect("failed");
    assert_eq!(
        error.failures()[0].attempts,
        1,
        "the dynamic policy disabled retries"
    );
}
