//! Bad input, everywhere (issue 10; catalogue areas 1, 2, 4, 10, 12, 15, 16
//! and 22): a table-driven walk over every public constructor and builder
//! option re-exported by the umbrella crate, each fed bad values — NaN,
//! infinities where they are not allowed, negative and zero durations, zero
//! limits, empty names, duplicate source names, a quorum larger than its
//! set, unknown keys in requirement groups, a wrong payload type at read
//! time.
//!
//! Every case must end in a typed error that names the offending field:
//! never a panic (each case runs under `catch_unwind`) and never an object
//! built anyway. Cases the engine still gets wrong are kept in a separate,
//! ignored table that asserts the correct behaviour.

use std::fmt::Debug;
use std::future::Future;
use std::panic::catch_unwind;
use std::str::FromStr;
use std::time::Duration;

use coalestra::{
    BuildOptions, CircuitBreakerPolicy, CircuitScope, CoalestraError, ConfigError, FnSource,
    FreshnessPolicy, HealthAssessmentPolicy, KeyError, KeyNormalizer, ObservationPolicy,
    PublishOptions, RefreshMode, RequestDegradationPolicy, ResourceAcceptanceRule, ResourceKey,
    ResultState, RetryPolicy, RevalidateOptions, SessionOptions, SnapshotAcceptancePolicy,
    SnapshotBuilder, SnapshotConsistencyPolicy, SnapshotRequest, SnapshotRequirement,
    SourceAuthorityPolicy, SourceOptions, SourceOutput, SourceRef, Timestamp, ValueError,
};
use coalestra::{Payload, ResiliencePolicy, ResolveOptions};

/// How a case was rejected.
#[derive(Debug)]
enum Rejected {
    Config(ConfigError),
    Key(KeyError),
    Call(CoalestraError),
    Value(ValueError),
}

/// A case's outcome: the rejection, or what was built although it should
/// not have been.
type Attempt = Result<String, Rejected>;

/// What a case expects.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// A `ConfigError` whose field is exactly this name.
    Field(&'static str),
    /// A `KeyError`, a call error or a value error whose message contains
    /// this text.
    Names(&'static str),
}

struct Case {
    what: &'static str,
    expect: Expect,
    attempt: fn() -> Attempt,
}

fn config<T: Debug>(result: Result<T, ConfigError>) -> Attempt {
    result
        .map(|built| format!("{built:?}"))
        .map_err(Rejected::Config)
}

fn key_result<T: Debug>(result: Result<T, KeyError>) -> Attempt {
    result
        .map(|built| format!("{built:?}"))
        .map_err(Rejected::Key)
}

fn call<T: Debug>(result: Result<T, CoalestraError>) -> Attempt {
    result
        .map(|built| format!("{built:?}"))
        .map_err(|error| match error {
            CoalestraError::Config(inner) => Rejected::Config(inner),
            CoalestraError::Key(inner) => Rejected::Key(inner),
            other => Rejected::Call(other),
        })
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a current-thread runtime")
        .block_on(future)
}

fn k(text: &str) -> ResourceKey {
    ResourceKey::parse(text).expect("valid key")
}

fn rest() -> FnSource {
    FnSource::new("rest", |key: ResourceKey, _ctx| async move {
        Ok(SourceOutput::new(key.subject().len() as f64))
    })
}

fn builder_with(sources: Vec<SourceRef>) -> Attempt {
    config(SnapshotBuilder::builder(sources).build())
}

fn a_builder() -> SnapshotBuilder {
    SnapshotBuilder::builder([rest().into()])
        .build()
        .expect("valid builder")
}

/// The field a configuration error names.
fn field_of(error: &ConfigError) -> &'static str {
    match error {
        ConfigError::NotFinite { field }
        | ConfigError::Negative { field }
        | ConfigError::Zero { field }
        | ConfigError::Empty { field }
        | ConfigError::Invalid { field, .. } => field,
        other => panic!("unknown configuration error variant {other:?}"),
    }
}

/// Runs every case; returns one line per case that broke the contract.
fn walk(cases: &[Case]) -> Vec<String> {
    let mut broken = Vec::new();
    for case in cases {
        let outcome = catch_unwind(case.attempt);
        let problem = match (outcome, case.expect) {
            (Err(_), _) => Some("panicked".to_owned()),
            (Ok(Ok(built)), _) => Some(format!("accepted and built {built}")),
            (Ok(Err(Rejected::Config(error))), Expect::Field(field)) => {
                let named = field_of(&error);
                if named != field {
                    Some(format!(
                        "names field {named:?}, expected {field:?} ({error})"
                    ))
                } else if !error.to_string().contains(field) {
                    Some(format!(
                        "message {:?} does not name {field:?}",
                        error.to_string()
                    ))
                } else {
                    None
                }
            }
            (Ok(Err(rejected)), Expect::Names(text)) => {
                let message = match &rejected {
                    Rejected::Config(error) => error.to_string(),
                    Rejected::Key(error) => error.to_string(),
                    Rejected::Call(error) => error.to_string(),
                    Rejected::Value(error) => error.to_string(),
                };
                (!message.contains(text))
                    .then(|| format!("{rejected:?}: message {message:?} does not name {text:?}"))
            }
            (Ok(Err(rejected)), Expect::Field(field)) => Some(format!(
                "expected a ConfigError naming {field:?}, got {rejected:?}"
            )),
        };
        if let Some(problem) = problem {
            broken.push(format!("{}: {problem}", case.what));
        }
    }
    broken
}

macro_rules! case {
    ($what:expr, $expect:expr, $body:expr) => {
        Case {
            what: $what,
            expect: $expect,
            attempt: || $body,
        }
    };
}

use Expect::{Field, Names};

fn keys_and_policies() -> Vec<Case> {
    vec![
        // Keys.
        case!(
            "key: empty namespace",
            Names("namespace"),
            key_result(ResourceKey::new("", "price", "x"))
        ),
        case!(
            "key: blank name",
            Names("name"),
            key_result(ResourceKey::new("ns", " \t", "x"))
        ),
        case!(
            "key: legacy blank namespace",
            Names("namespace"),
            key_result(ResourceKey::legacy("  ", "price", "x"))
        ),
        case!(
            "key: empty qualifier name",
            Names("qualifier name"),
            key_result(ResourceKey::with_normalizer(
                "ns",
                "n",
                "s",
                [(" ", "v")],
                KeyNormalizer::Preserve
            ))
        ),
        case!(
            "key: duplicate qualifier after case folding",
            Names("duplicate qualifier"),
            key_result(ResourceKey::with_normalizer(
                "ns",
                "n",
                "s",
                [("Limit", 1), ("LIMIT", 2)],
                KeyNormalizer::CaseInsensitive
            ))
        ),
        case!(
            "key: with_qualifier empty name",
            Names("qualifier name"),
            key_result(k("ns:n").with_qualifier("", 1))
        ),
        case!(
            "key: parse without a name",
            Names("namespace:name"),
            key_result(ResourceKey::parse("market"))
        ),
        case!(
            "key: parse qualifier without '='",
            Names("qualifier without '='"),
            key_result(ResourceKey::parse("a:b?limit"))
        ),
        case!(
            "key: parse bad percent-encoding",
            Names("percent-encoding"),
            key_result(ResourceKey::parse("a%zz:b"))
        ),
        case!(
            "key: parse empty namespace",
            Names("namespace"),
            key_result(ResourceKey::parse(":price"))
        ),
        case!(
            "key: parse duplicate qualifier",
            Names("duplicate qualifier"),
            key_result(ResourceKey::parse("a:b?k=1&k=2"))
        ),
        case!(
            "key: FromStr empty",
            Names("namespace"),
            key_result(ResourceKey::from_str(""))
        ),
        // Freshness.
        case!(
            "freshness: max_stale below ttl",
            Field("max_stale"),
            config(FreshnessPolicy::new(
                Duration::from_secs(5),
                Duration::from_secs(4)
            ))
        ),
        case!(
            "freshness: NaN ttl",
            Field("ttl"),
            config(FreshnessPolicy::from_secs_f64(f64::NAN, 1.0))
        ),
        case!(
            "freshness: NaN max_stale",
            Field("max_stale"),
            config(FreshnessPolicy::from_secs_f64(1.0, f64::NAN))
        ),
        case!(
            "freshness: negative ttl",
            Field("ttl"),
            config(FreshnessPolicy::from_secs_f64(-1.0, 1.0))
        ),
        case!(
            "freshness: -inf max_stale",
            Field("max_stale"),
            config(FreshnessPolicy::from_secs_f64(1.0, f64::NEG_INFINITY))
        ),
        case!(
            "freshness: infinite ttl, finite max_stale",
            Field("max_stale"),
            config(FreshnessPolicy::from_secs_f64(f64::INFINITY, 10.0))
        ),
        case!(
            "freshness: refresh-ahead window beyond ttl",
            Field("refresh_ahead"),
            config(
                FreshnessPolicy::fresh_for(Duration::from_secs(1)).with_refresh_mode(
                    RefreshMode::RefreshAhead {
                        window: Duration::from_millis(1_001)
                    }
                )
            )
        ),
        // Observation.
        case!(
            "observation: NaN tolerance",
            Field("future_tolerance"),
            config(ObservationPolicy::from_secs_f64(f64::NAN))
        ),
        case!(
            "observation: infinite tolerance",
            Field("future_tolerance"),
            config(ObservationPolicy::from_secs_f64(f64::INFINITY))
        ),
        case!(
            "observation: negative tolerance",
            Field("future_tolerance"),
            config(ObservationPolicy::from_secs_f64(-0.5))
        ),
        // Retry.
        case!(
            "retry: zero attempts",
            Field("max_attempts"),
            config(RetryPolicy::from_secs_f64(0, 0.05, 1.0, 0.1))
        ),
        case!(
            "retry: NaN initial backoff",
            Field("initial_backoff"),
            config(RetryPolicy::from_secs_f64(2, f64::NAN, 1.0, 0.1))
        ),
        case!(
            "retry: infinite initial backoff",
            Field("initial_backoff"),
            config(RetryPolicy::from_secs_f64(2, f64::INFINITY, 1.0, 0.1))
        ),
        case!(
            "retry: negative max backoff",
            Field("max_backoff"),
            config(RetryPolicy::from_secs_f64(2, 0.05, -1.0, 0.1))
        ),
        case!(
            "retry: max below initial",
            Field("max_backoff"),
            config(RetryPolicy::from_secs_f64(2, 2.0, 1.0, 0.1))
        ),
        case!(
            "retry: NaN jitter",
            Field("jitter"),
            config(RetryPolicy::from_secs_f64(2, 0.05, 1.0, f64::NAN))
        ),
        case!(
            "retry: negative jitter",
            Field("jitter"),
            config(RetryPolicy::from_secs_f64(2, 0.05, 1.0, -0.1))
        ),
        case!(
            "retry: jitter above one",
            Field("jitter"),
            config(RetryPolicy::from_secs_f64(2, 0.05, 1.0, 1.5))
        ),
        case!(
            "retry: huge backoff",
            Field("initial_backoff"),
            config(RetryPolicy::builder().initial_backoff_secs(1e300).build())
        ),
        case!(
            "retry: NaN multiplier",
            Field("multiplier"),
            config(RetryPolicy::builder().multiplier(f64::NAN).build())
        ),
        case!(
            "retry: multiplier below one",
            Field("multiplier"),
            config(RetryPolicy::builder().multiplier(0.5).build())
        ),
        case!(
            "retry: zero attempts from durations",
            Field("max_attempts"),
            config(RetryPolicy::new(
                0,
                Duration::from_millis(50),
                Duration::from_secs(1)
            ))
        ),
        case!(
            "retry: with_max_attempts(0)",
            Field("max_attempts"),
            config(RetryPolicy::default().with_max_attempts(0))
        ),
        // Circuit breaker.
        case!(
            "circuit: zero threshold",
            Field("failure_threshold"),
            config(CircuitBreakerPolicy::new(
                CircuitScope::Source,
                0,
                Duration::from_secs(10)
            ))
        ),
        case!(
            "circuit: NaN recovery",
            Field("recovery_timeout"),
            config(CircuitBreakerPolicy::from_secs_f64(
                CircuitScope::Resource,
                3,
                f64::NAN
            ))
        ),
        case!(
            "circuit: infinite recovery",
            Field("recovery_timeout"),
            config(CircuitBreakerPolicy::from_secs_f64(
                CircuitScope::Subject,
                3,
                f64::INFINITY
            ))
        ),
        case!(
            "circuit: negative recovery",
            Field("recovery_timeout"),
            config(CircuitBreakerPolicy::from_secs_f64(
                CircuitScope::Namespace,
                3,
                -1.0
            ))
        ),
        case!(
            "circuit: huge recovery",
            Field("recovery_timeout"),
            config(
                CircuitBreakerPolicy::builder()
                    .recovery_timeout_secs(1e300)
                    .build()
            )
        ),
        case!(
            "circuit: builder zero threshold",
            Field("failure_threshold"),
            config(CircuitBreakerPolicy::builder().failure_threshold(0).build())
        ),
        // Consistency and acceptance.
        case!(
            "consistency: NaN skew",
            Field("max_observation_skew_seconds"),
            config(SnapshotConsistencyPolicy::from_secs_f64(f64::NAN))
        ),
        case!(
            "consistency: infinite skew",
            Field("max_observation_skew_seconds"),
            config(SnapshotConsistencyPolicy::from_secs_f64(f64::INFINITY))
        ),
        case!(
            "consistency: negative skew",
            Field("max_observation_skew_seconds"),
            config(SnapshotConsistencyPolicy::from_secs_f64(-2.0))
        ),
        case!(
            "consistency: huge skew",
            Field("max_observation_skew_seconds"),
            config(SnapshotConsistencyPolicy::from_secs_f64(1e300))
        ),
        case!(
            "acceptance: NaN max age",
            Field("max_age_seconds"),
            config(ResourceAcceptanceRule::unconstrained().max_age_secs(f64::NAN))
        ),
        case!(
            "acceptance: -inf max age",
            Field("max_age_seconds"),
            config(ResourceAcceptanceRule::unconstrained().max_age_secs(f64::NEG_INFINITY))
        ),
        case!(
            "acceptance: negative max age",
            Field("max_age_seconds"),
            config(ResourceAcceptanceRule::unconstrained().max_age_secs(-3.0))
        ),
        case!(
            "acceptance: huge max age",
            Field("max_age_seconds"),
            config(ResourceAcceptanceRule::unconstrained().max_age_secs(1e300))
        ),
        case!(
            "requirement: empty all_of",
            Field("snapshot requirement"),
            config(SnapshotRequirement::all_of([]))
        ),
        case!(
            "requirement: empty any_of",
            Field("snapshot requirement"),
            config(SnapshotRequirement::any_of([]))
        ),
        case!(
            "requirement: quorum larger than its set",
            Field("snapshot requirement"),
            config(SnapshotRequirement::at_least(3, [k("a:x"), k("a:y")]))
        ),
        case!(
            "requirement: quorum larger than its de-duplicated set",
            Field("snapshot requirement"),
            config(SnapshotRequirement::at_least(2, [k("a:x"), k("a:x")]))
        ),
        case!(
            "requirement: zero quorum",
            Field("snapshot requirement"),
            config(SnapshotRequirement::at_least(0, [k("a:x")]))
        ),
        case!(
            "acceptance policy: nothing constrained",
            Field("snapshot acceptance policy"),
            config(SnapshotAcceptancePolicy::builder().build())
        ),
        case!(
            "acceptance policy: only unconstrained rules",
            Field("snapshot acceptance policy"),
            config(
                SnapshotAcceptancePolicy::builder()
                    .default_rule(ResourceAcceptanceRule::unconstrained())
                    .resource_rule(k("a:x"), ResourceAcceptanceRule::unconstrained())
                    .build()
            )
        ),
        // Authority, timestamps, degradation, health.
        case!(
            "authority: empty source name",
            Field("authority source name"),
            config(SourceAuthorityPolicy::new([("", 1)], 0))
        ),
        case!(
            "authority: duplicate source names after trimming",
            Field("authority source names"),
            config(SourceAuthorityPolicy::new([("rest", 1), (" rest ", 2)], 0))
        ),
        case!(
            "timestamp: NaN",
            Field("observed_at"),
            config(Timestamp::try_from_secs(f64::NAN, "observed_at"))
        ),
        case!(
            "timestamp: infinity",
            Field("observed_at"),
            config(Timestamp::try_from_secs(f64::INFINITY, "observed_at"))
        ),
        case!(
            "degradation: empty accepted action",
            Field("accepted_actions"),
            config(
                RequestDegradationPolicy::builder()
                    .accepted_actions(["trade", ""])
                    .build()
            )
        ),
        case!(
            "degradation: blank degraded action",
            Field("degraded_actions"),
            config(
                RequestDegradationPolicy::builder()
                    .degraded_actions(["  "])
                    .build()
            )
        ),
        case!(
            "degradation: empty rejected action",
            Field("rejected_actions"),
            config(
                RequestDegradationPolicy::builder()
                    .rejected_actions([""])
                    .build()
            )
        ),
        case!(
            "degradation: unknown result state",
            Field("result state"),
            config(ResultState::from_str("maybe"))
        ),
        case!(
            "health: zero capacity waiters",
            Field("capacity_waiting_degraded"),
            config(HealthAssessmentPolicy::default().with_capacity_waiting(0, 1.0))
        ),
        case!(
            "health: NaN capacity ratio",
            Field("capacity_waiting_critical_ratio"),
            config(HealthAssessmentPolicy::default().with_capacity_waiting(1, f64::NAN))
        ),
        case!(
            "health: NaN submission backlog",
            Field("submission_backlog"),
            config(HealthAssessmentPolicy::default().with_submission_backlog(f64::NAN, 0.9))
        ),
        case!(
            "health: degraded above critical backlog",
            Field("submission_backlog"),
            config(HealthAssessmentPolicy::default().with_submission_backlog(0.9, 0.5))
        ),
        case!(
            "health: zero observability backlog",
            Field("observability_backlog"),
            config(HealthAssessmentPolicy::default().with_observability_backlog(0.0, 0.5))
        ),
        case!(
            "health: zero counter delta",
            Field("counter_delta_degraded"),
            config(HealthAssessmentPolicy::default().with_counter_delta(0, 1))
        ),
        case!(
            "health: critical delta below degraded",
            Field("counter_delta_critical"),
            config(HealthAssessmentPolicy::default().with_counter_delta(5, 1))
        ),
    ]
}

fn builder_and_calls() -> Vec<Case> {
    vec![
        // Builder options.
        case!(
            "builder: no source",
            Field("sources"),
            builder_with(Vec::new())
        ),
        case!(
            "builder: duplicate source names",
            Field("sources"),
            builder_with(vec![rest().into(), rest().with_priority(3).into()])
        ),
        case!(
            "builder: duplicate source names after trimming",
            Field("sources"),
            builder_with(vec![
                rest().into(),
                FnSource::new(" rest ", |_k: ResourceKey, _c| async {
                    Ok(SourceOutput::new(1u8))
                })
                .into()
            ])
        ),
        case!(
            "builder: empty source name",
            Field("source name"),
            builder_with(vec![FnSource::new("  ", |_k: ResourceKey, _c| async {
                Ok(SourceOutput::new(1u8))
            })
            .into()])
        ),
        case!(
            "builder: zero source timeout",
            Field("timeout"),
            builder_with(vec![rest().with_timeout(Duration::ZERO).into()])
        ),
        case!(
            "builder: zero queue timeout",
            Field("queue_timeout"),
            builder_with(vec![rest().with_queue_timeout(Duration::ZERO).into()])
        ),
        case!(
            "builder: zero transport timeout",
            Field("transport_timeout"),
            builder_with(vec![rest().with_blocking_io(Some(Duration::ZERO)).into()])
        ),
        case!(
            "builder: unsafe blocking source",
            Field("sources"),
            builder_with(vec![FnSource::sync(
                "jdbc",
                |_k: &ResourceKey, _c: &coalestra::FetchContext| Ok(SourceOutput::new(1u8))
            )
            .with_blocking_io(None)
            .into()])
        ),
        case!(
            "builder: zero max_concurrency",
            Field("max_concurrency"),
            config(
                SnapshotBuilder::builder([rest().into()])
                    .max_concurrency(0)
                    .build()
            )
        ),
        case!(
            "builder: zero max_pending_tasks",
            Field("max_pending_tasks"),
            config(
                SnapshotBuilder::builder([rest().into()])
                    .max_pending_tasks(0)
                    .build()
            )
        ),
        case!(
            "builder: zero support cache",
            Field("support_cache"),
            config(
                SnapshotBuilder::builder([rest().into()])
                    .support_cache(Some(0))
                    .build()
            )
        ),
        case!(
            "builder: concurrency of an unknown source",
            Field("source_concurrency"),
            config(
                SnapshotBuilder::builder([rest().into()])
                    .source_concurrency("grpc", 2)
                    .build()
            )
        ),
        case!(
            "builder: zero source concurrency",
            Field("source_concurrency"),
            config(
                SnapshotBuilder::builder([rest().into()])
                    .source_concurrency("rest", 0)
                    .build()
            )
        ),
        case!(
            "builder: resilience for a blank source name",
            Field("source_name"),
            config(
                SnapshotBuilder::builder([rest().into()])
                    .source_resilience(" ", ResiliencePolicy::default())
                    .build()
            )
        ),
        // Requests.
        case!(
            "request: empty",
            Names("at least one resource key"),
            call(SnapshotRequest::new([], []))
        ),
        case!(
            "request: key both required and optional",
            Names("both required and optional"),
            call(SnapshotRequest::new([k("a:x")], [k("a:x")]))
        ),
        case!(
            "request: requirement group over an unknown key",
            Names("a:unknown"),
            call(SnapshotRequest::new([k("a:x")], []).and_then(|request| {
                let policy = SnapshotAcceptancePolicy::builder()
                    .requirement(SnapshotRequirement::any_of([k("a:x"), k("a:unknown")])?)
                    .build()?;
                request.with_acceptance(policy)
            }))
        ),
        case!(
            "request: resource rule for an unknown key",
            Names("a:other"),
            call(SnapshotRequest::new([k("a:x")], []).and_then(|request| {
                let rule = ResourceAcceptanceRule::unconstrained().allow_stale(false);
                let policy = SnapshotAcceptancePolicy::builder()
                    .resource_rule(k("a:other"), rule)
                    .build()?;
                request.with_acceptance(policy)
            }))
        ),
        // Calls.
        case!(
            "build: zero deadline",
            Field("deadline"),
            call(block_on(a_builder().build_with(
                [k("a:x")],
                BuildOptions::new().deadline(Duration::ZERO)
            )))
        ),
        case!(
            "build: no keys",
            Names("at least one resource key"),
            call(block_on(a_builder().build(Vec::<ResourceKey>::new())))
        ),
        case!(
            "session: zero deadline",
            Field("deadline"),
            call(a_builder().session(SessionOptions::new().deadline(Duration::ZERO)))
        ),
        case!(
            "session: resolve no keys",
            Names("at least one resource key"),
            call(block_on(async {
                let session = a_builder().session(SessionOptions::new())?;
                session
                    .resolve(Vec::<ResourceKey>::new(), ResolveOptions::new())
                    .await
            }))
        ),
        case!(
            "session: revalidate a key it never resolved",
            Names("a:never"),
            call(block_on(async {
                let session = a_builder().session(SessionOptions::new())?;
                session.resolve([k("a:x")], ResolveOptions::new()).await?;
                session
                    .revalidate([k("a:never")], RevalidateOptions::new())
                    .await
            }))
        ),
        case!(
            "session: revalidate nothing",
            Names("at least one resource key"),
            call(block_on(async {
                let session = a_builder().session(SessionOptions::new())?;
                session
                    .revalidate(Vec::<ResourceKey>::new(), RevalidateOptions::new())
                    .await
            }))
        ),
        case!(
            "publish: empty source name",
            Field("source name"),
            call(block_on(a_builder().publisher().publish(
                k("a:x"),
                Payload::new(1.0_f64),
                PublishOptions::new(" ")
            )))
        ),
        case!(
            "publish: observation far in the future",
            Names("in the future"),
            call(block_on(async {
                let builder = a_builder();
                let ahead = Timestamp::from_secs(
                    Timestamp::from_system_time(std::time::SystemTime::now()).as_secs() + 3_600.0,
                );
                builder
                    .publisher()
                    .publish(
                        k("a:x"),
                        Payload::new(1.0_f64),
                        PublishOptions::new("stream").observed_at(ahead),
                    )
                    .await
            }))
        ),
        case!(
            "read: wrong payload type",
            Names("a:x"),
            block_on(async {
                let snapshot = a_builder()
                    .build([k("a:x")])
                    .await
                    .map_err(Rejected::Call)?;
                let wrong = snapshot
                    .value::<u32>(&k("a:x"))
                    .map(|v| format!("{v:?}"))
                    .map_err(Rejected::Value);
                // The failed read leaves the snapshot whole.
                assert_eq!(snapshot.value::<f64>(&k("a:x")).ok(), Some(&0.0));
                wrong
            })
        ),
        case!(
            "read: key outside the snapshot",
            Names("a:y"),
            block_on(async {
                let snapshot = a_builder()
                    .build([k("a:x")])
                    .await
                    .map_err(Rejected::Call)?;
                snapshot
                    .value::<f64>(&k("a:y"))
                    .map(|v| format!("{v:?}"))
                    .map_err(Rejected::Value)
            })
        ),
    ]
}

/// Cases the engine gets wrong today; each asserts the correct behaviour.
fn known_engine_bugs() -> Vec<Case> {
    vec![case!(
        "observation: finite tolerance beyond Duration::MAX",
        Field("future_tolerance"),
        config(ObservationPolicy::from_secs_f64(1e20))
    )]
}

fn assert_walk(table: &str, cases: &[Case]) {
    let broken = walk(cases);
    assert!(
        broken.is_empty(),
        "{table}: {} of {} bad inputs broke the contract:\n  {}",
        broken.len(),
        cases.len(),
        broken.join("\n  ")
    );
}

#[test]
fn keys_and_policies_reject_bad_input_with_typed_errors() {
    assert_walk("keys and policies", &keys_and_policies());
}

#[test]
fn builder_options_and_calls_reject_bad_input_with_typed_errors() {
    assert_walk("builder and calls", &builder_and_calls());
}

#[test]
fn known_engine_bugs_reject_bad_input_with_typed_errors() {
    assert_walk("known engine bugs", &known_engine_bugs());
}

#[test]
fn edge_values_that_are_allowed_stay_allowed() {
    // The walk above must not be satisfied by rejecting everything: the
    // documented edges are accepted.
    assert!(FreshnessPolicy::from_secs_f64(f64::INFINITY, f64::INFINITY).is_ok());
    assert!(FreshnessPolicy::from_secs_f64(0.0, 0.0).is_ok());
    assert!(FreshnessPolicy::from_secs_f64(-0.0, 1.0).is_ok());
    assert!(ObservationPolicy::from_secs_f64(0.0).is_ok());
    assert!(RetryPolicy::from_secs_f64(1, 0.0, 0.0, 0.0).is_ok());
    assert!(RetryPolicy::from_secs_f64(1, 0.0, 0.0, 1.0).is_ok());
    assert!(CircuitBreakerPolicy::from_secs_f64(CircuitScope::Source, 1, 0.0).is_ok());
    assert!(SnapshotConsistencyPolicy::from_secs_f64(0.0).is_ok());
    assert!(SnapshotRequirement::at_least(2, [k("a:x"), k("a:y")]).is_ok());
    assert!(ResourceKey::new("ns", "name", "").is_ok());
    assert!(SnapshotBuilder::builder([rest().into()])
        .max_concurrency(1)
        .max_pending_tasks(1)
        .support_cache(None)
        .build()
        .is_ok());
}
