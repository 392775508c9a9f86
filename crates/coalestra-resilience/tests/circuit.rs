//! Circuit breaker policy validation, identities and the state machine.

use std::time::Duration;

use coalestra_core::{ConfigError, ResourceKey};
use coalestra_resilience::{
    CircuitBreakerPolicy, CircuitBreakers, CircuitIdentity, CircuitOpen, CircuitScope,
    CircuitState, CircuitStatus,
};
use tokio::time::advance;

const RECOVERY: Duration = Duration::from_secs(10);

fn source_identity(source: &str) -> CircuitIdentity {
    CircuitIdentity::new(source, CircuitScope::Source, "")
}

fn policy(threshold: u32) -> CircuitBreakerPolicy {
    CircuitBreakerPolicy::new(CircuitScope::Source, threshold, RECOVERY).expect("valid policy")
}

fn fail(breakers: &CircuitBreakers, identity: &CircuitIdentity, policy: &CircuitBreakerPolicy) {
    breakers
        .before_call(identity, policy)
        .expect("call permitted")
        .failure();
}

fn succeed(breakers: &CircuitBreakers, identity: &CircuitIdentity, policy: &CircuitBreakerPolicy) {
    breakers
        .before_call(identity, policy)
        .expect("call permitted")
        .success();
}

/// Opens the circuit of `identity` with `threshold` failures.
fn trip(breakers: &CircuitBreakers, identity: &CircuitIdentity, policy: &CircuitBreakerPolicy) {
    for _ in 0..policy.failure_threshold() {
        fail(breakers, identity, policy);
    }
    assert_eq!(breakers.state_of(identity).state, CircuitStatus::Open);
}

#[test]
fn policy_defaults_match_the_specification() {
    let policy = CircuitBreakerPolicy::default();
    assert_eq!(policy.scope(), CircuitScope::Source);
    assert_eq!(policy.failure_threshold(), 3);
    assert_eq!(policy.recovery_timeout(), RECOVERY);
    assert!(policy.enabled());
    assert!(!CircuitBreakerPolicy::disabled().enabled());
    assert_eq!(CircuitBreakerPolicy::builder().build(), Ok(policy.clone()));
    let narrowed = policy.with_scope(CircuitScope::Subject).with_enabled(false);
    assert_eq!(narrowed.scope(), CircuitScope::Subject);
    assert!(!narrowed.enabled());
}

#[test]
fn policy_validation() {
    assert_eq!(
        CircuitBreakerPolicy::new(CircuitScope::Source, 0, RECOVERY),
        Err(ConfigError::Zero {
            field: "failure_threshold"
        })
    );
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let error = CircuitBreakerPolicy::from_secs_f64(CircuitScope::Source, 3, bad).unwrap_err();
        assert_eq!(
            error,
            ConfigError::NotFinite {
                field: "recovery_timeout"
            }
        );
        assert_eq!(error.to_string(), "recovery_timeout must be finite");
    }
    assert_eq!(
        CircuitBreakerPolicy::from_secs_f64(CircuitScope::Source, 3, -0.5),
        Err(ConfigError::Negative {
            field: "recovery_timeout"
        })
    );
    let policy = CircuitBreakerPolicy::from_secs_f64(CircuitScope::Resource, 5, 2.5).expect("ok");
    assert_eq!(policy.scope(), CircuitScope::Resource);
    assert_eq!(policy.failure_threshold(), 5);
    assert_eq!(policy.recovery_timeout(), Duration::from_millis(2500));
    assert!(CircuitBreakerPolicy::from_secs_f64(CircuitScope::Source, 1, 0.0).is_ok());
}

#[test]
fn scope_names_are_lowercase() {
    let names: Vec<String> = CircuitScope::ALL.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["source", "namespace", "resource", "subject"]);
    assert_eq!(CircuitScope::default(), CircuitScope::Source);
    assert_eq!(CircuitStatus::HalfOpen.to_string(), "half_open");
}

fn key(text: &str) -> ResourceKey {
    ResourceKey::parse(text).unwrap_or_else(|error| panic!("{text}: {error}"))
}

fn sample_keys() -> Vec<ResourceKey> {
    let mut keys: Vec<ResourceKey> = [
        "market:price:BTCUSDT",
        "market:price:ETHUSDT",
        "market:volume:BTCUSDT",
        "market:price:BTCUSDT?interval=1m",
        "market:price:BTCUSDT?interval=5m",
        "market:depth:BTCUSDT?levels=10",
        "weather:forecast:paris",
        "weather:forecast:lyon",
        "weather:alerts:paris",
        "user:profile:42",
        "user:settings:42",
        "user:profile:43",
        "news:headlines:tech",
        "news:headlines:sports",
        "fx:rate:eurusd",
        "fx:rate:usdjpy?source=ecb",
    ]
    .into_iter()
    .map(key)
    .collect();
    for (namespace, name) in [
        ("market", "status"),
        ("weather", "stations"),
        ("user", "count"),
    ] {
        keys.push(ResourceKey::new(namespace, name, "").expect("subject-less key"));
    }
    keys.push(
        ResourceKey::new("market", "candles", "SOLUSDT")
            .and_then(|key| key.with_qualifier("interval", "1h"))
            .expect("qualified key"),
    );
    keys
}

#[test]
fn identity_matrix_over_scopes_and_keys() {
    let keys = sample_keys();
    assert!(keys.len() >= 20);
    for key in &keys {
        for scope in CircuitScope::ALL {
            let identity = CircuitIdentity::for_key("feed", key, scope);
            assert_eq!(identity.source(), "feed");
            assert_eq!(identity.scope(), scope);
            let expected = match scope {
                CircuitScope::Source => String::new(),
                CircuitScope::Namespace => key.namespace().to_owned(),
                CircuitScope::Resource => key.to_string(),
                CircuitScope::Subject if key.subject().is_empty() => {
                    format!("{}:{}", key.namespace(), key.name())
                }
                CircuitScope::Subject => key.subject().to_owned(),
            };
            assert_eq!(identity.discriminator(), expected, "{key} {scope}");
            let display = if expected.is_empty() {
                format!("feed[{scope}]")
            } else {
                format!("feed[{scope}]:{expected}")
            };
            assert_eq!(identity.to_string(), display);
        }
    }
    // How many distinct circuits each scope yields over the sample.
    let distinct = |scope| {
        let mut names: Vec<String> = keys
            .iter()
            .map(|key| CircuitIdentity::for_key("feed", key, scope).to_string())
            .collect();
        names.sort();
        names.dedup();
        names.len()
    };
    assert_eq!(distinct(CircuitScope::Source), 1);
    assert_eq!(distinct(CircuitScope::Namespace), 5);
    assert_eq!(distinct(CircuitScope::Resource), keys.len());
    // BTCUSDT, ETHUSDT, paris, lyon, 42, 43, tech, sports, eurusd, usdjpy,
    // SOLUSDT and the three namespace:name fallbacks.
    assert_eq!(distinct(CircuitScope::Subject), 14);
}

#[test]
fn identity_display_formats() {
    let priced = key("market:price:BTCUSDT?interval=1m");
    let bare = ResourceKey::new("market", "status", "").expect("key");
    let show =
        |key: &ResourceKey, scope| CircuitIdentity::for_key("binance", key, scope).to_string();
    assert_eq!(show(&priced, CircuitScope::Source), "binance[source]");
    assert_eq!(
        show(&priced, CircuitScope::Namespace),
        "binance[namespace]:market"
    );
    assert_eq!(
        show(&priced, CircuitScope::Subject),
        "binance[subject]:BTCUSDT"
    );
    assert_eq!(
        show(&priced, CircuitScope::Resource),
        "binance[resource]:market:price:BTCUSDT?interval=1m"
    );
    assert_eq!(
        show(&bare, CircuitScope::Subject),
        "binance[subject]:market:status"
    );
    assert_eq!(
        CircuitIdentity::new("a", CircuitScope::Namespace, "x").to_string(),
        "a[namespace]:x"
    );
    assert_eq!(
        CircuitIdentity::for_key("binance", &priced, CircuitScope::Source),
        source_identity("binance")
    );
}

#[tokio::test(start_paused = true)]
async fn opens_after_threshold_and_recovers_through_half_open() {
    let breakers = CircuitBreakers::new();
    let id = source_identity("prices");
    let policy = policy(3);
    fail(&breakers, &id, &policy);
    fail(&breakers, &id, &policy);
    assert_eq!(breakers.state_of(&id).state, CircuitStatus::Closed);
    assert_eq!(breakers.state_of(&id).failures, 2);
    fail(&breakers, &id, &policy);
    assert_eq!(breakers.state_of(&id).state, CircuitStatus::Open);
    assert_eq!(breakers.open_count(), 1);

    let refused = breakers.before_call(&id, &policy).unwrap_err();
    assert!(refused.is_open());
    assert!(!refused.is_probe_active());
    assert_eq!(refused.to_string(), "circuit is open for prices[source]");
    assert_eq!(refused.identity(), &id);
    assert_eq!(refused.retry_after(), Some(RECOVERY));

    advance(Duration::from_secs(4)).await;
    let refused = breakers.before_call(&id, &policy).unwrap_err();
    assert_eq!(refused.retry_after(), Some(Duration::from_secs(6)));
    assert_eq!(
        breakers.state_of(&id).opened_for,
        Some(Duration::from_secs(4))
    );

    advance(Duration::from_secs(6)).await;
    let probe = breakers.before_call(&id, &policy).expect("probe permitted");
    assert!(probe.is_probe());
    assert_eq!(probe.identity(), &id);
    let state = breakers.state_of(&id);
    assert_eq!(state.state, CircuitStatus::HalfOpen);
    assert!(state.half_open_probe_active);
    assert_eq!(breakers.half_open_count(), 1);
    assert_eq!(breakers.open_count(), 0);

    probe.success();
    assert_eq!(breakers.state_of(&id), CircuitState::default());
    assert_eq!(CircuitState::default().state, CircuitStatus::Closed);
    let permit = breakers.before_call(&id, &policy).expect("closed again");
    assert!(!permit.is_probe());
    permit.success();
}

#[tokio::test(start_paused = true)]
async fn only_consecutive_failures_open_the_circuit() {
    let breakers = CircuitBreakers::new();
    let id = source_identity("prices");
    let policy = policy(3);
    fail(&breakers, &id, &policy);
    fail(&breakers, &id, &policy);
    succeed(&breakers, &id, &policy);
    assert_eq!(breakers.state_of(&id).failures, 0);
    fail(&breakers, &id, &policy);
    fail(&breakers, &id, &policy);
    let state = breakers.state_of(&id);
    assert_eq!(state.state, CircuitStatus::Closed);
    assert_eq!(state.failures, 2);
    fail(&breakers, &id, &policy);
    assert_eq!(breakers.state_of(&id).state, CircuitStatus::Open);
}

#[tokio::test(start_paused = true)]
async fn half_open_admits_a_single_probe() {
    let breakers = CircuitBreakers::new();
    let id = source_identity("prices");
    let policy = policy(1);
    trip(&breakers, &id, &policy);
    advance(RECOVERY).await;

    let probe = breakers.before_call(&id, &policy).expect("probe");
    for _ in 0..5 {
        let refused = breakers.before_call(&id, &policy).unwrap_err();
        assert!(refused.is_probe_active());
        assert_eq!(refused.retry_after(), None);
        assert_eq!(
            refused.to_string(),
            "half-open probe already active for prices[source]"
        );
    }
    // A clone shares the same circuits.
    assert!(matches!(
        breakers.clone().before_call(&id, &policy),
        Err(CircuitOpen::ProbeActive { .. })
    ));
    probe.success();
    assert_eq!(breakers.state_of(&id).state, CircuitStatus::Closed);
}

#[tokio::test(start_paused = true)]
async fn probe_failure_reopens_immediately() {
    let breakers = CircuitBreakers::new();
    let id = source_identity("prices");
    let policy = policy(2);
    trip(&breakers, &id, &policy);
    advance(RECOVERY + Duration::from_secs(5)).await;

    breakers.before_call(&id, &policy).expect("probe").failure();
    let state = breakers.state_of(&id);
    assert_eq!(state.state, CircuitStatus::Open);
    assert_eq!(state.opened_for, Some(Duration::ZERO));
    assert!(!state.half_open_probe_active);
    let refused = breakers.before_call(&id, &policy).unwrap_err();
    assert_eq!(refused.retry_after(), Some(RECOVERY));

    advance(RECOVERY).await;
    let probe = breakers.before_call(&id, &policy).expect("second probe");
    assert!(probe.is_probe());
    probe.success();
    assert_eq!(breakers.state_of(&id).state, CircuitStatus::Closed);
}

#[tokio::test(start_paused = true)]
async fn skipped_probe_keeps_half_open_and_releases_the_probe() {
    let breakers = CircuitBreakers::new();
    let id = source_identity("prices");
    let policy = policy(1);
    trip(&breakers, &id, &policy);
    advance(RECOVERY).await;

    breakers.before_call(&id, &policy).expect("probe").skipped();
    let state = breakers.state_of(&id);
    assert_eq!(state.state, CircuitStatus::HalfOpen);
    assert!(!state.half_open_probe_active);

    let probe = breakers.before_call(&id, &policy).expect("next probe");
    assert!(probe.is_probe());
    assert!(breakers.state_of(&id).half_open_probe_active);
    probe.failure();
    assert_eq!(breakers.state_of(&id).state, CircuitStatus::Open);
}

#[tokio::test(start_paused = true)]
async fn skipped_calls_are_not_charged_in_closed_state() {
    let breakers = CircuitBreakers::new();
    let id = source_identity("prices");
    let policy = policy(1);
    for _ in 0..5 {
        breakers
            .before_call(&id, &policy)
            .expect("closed")
            .skipped();
    }
    assert_eq!(breakers.state_of(&id), CircuitState::default());
}

#[tokio::test(start_paused = true)]
async fn abandoned_probe_reopens_the_circuit() {
    let breakers = CircuitBreakers::new();
    let id = source_identity("prices");
    let policy = policy(1);
    trip(&breakers, &id, &policy);
    advance(RECOVERY).await;

    let probe = breakers.before_call(&id, &policy).expect("probe");
    drop(probe);
    let state = breakers.state_of(&id);
    assert_eq!(state.state, CircuitStatus::Open);
    assert_eq!(state.opened_for, Some(Duration::ZERO));
    assert!(breakers.before_call(&id, &policy).unwrap_err().is_open());
}

#[tokio::test(start_paused = true)]
async fn abandoned_calls_change_nothing_in_closed_state() {
    let breakers = CircuitBreakers::new();
    let id = source_identity("prices");
    let policy = policy(2);
    fail(&breakers, &id, &policy);
    drop(breakers.before_call(&id, &policy).expect("closed"));
    let state = breakers.state_of(&id);
    assert_eq!(state.state, CircuitStatus::Closed);
    assert_eq!(state.failures, 1);
}

#[tokio::test(start_paused = true)]
async fn disabled_policy_never_opens() {
    let breakers = CircuitBreakers::new();
    let id = source_identity("prices");
    let policy = CircuitBreakerPolicy::default().with_enabled(false);
    for _ in 0..20 {
        fail(&breakers, &id, &policy);
    }
    assert_eq!(breakers.state_of(&id).state, CircuitStatus::Closed);
    assert_eq!(breakers.state_of(&id).failures, 0);
    assert!(breakers.snapshot().is_empty());
    let permit = breakers.before_call(&id, &policy).expect("permitted");
    assert!(!permit.is_probe());
    drop(permit);
}

#[tokio::test(start_paused = true)]
async fn zero_recovery_timeout_probes_at_once() {
    let breakers = CircuitBreakers::new();
    let id = source_identity("prices");
    let policy = CircuitBreakerPolicy::new(CircuitScope::Source, 1, Duration::ZERO).expect("ok");
    trip(&breakers, &id, &policy);
    let probe = breakers.before_call(&id, &policy).expect("probe");
    assert!(probe.is_probe());
    probe.success();
}

#[tokio::test(start_paused = true)]
async fn outcomes_of_stale_permits_are_ignored() {
    let breakers = CircuitBreakers::new();
    let id = source_identity("prices");
    let policy = policy(2);
    let slow = breakers.before_call(&id, &policy).expect("closed");
    trip(&breakers, &id, &policy);
    // A call started before the circuit opened cannot close it.
    slow.success();
    assert_eq!(breakers.state_of(&id).state, CircuitStatus::Open);

    advance(RECOVERY).await;
    let probe = breakers.before_call(&id, &policy).expect("probe");
    probe.success();
    let old = breakers.before_call(&id, &policy).expect("closed");
    trip(&breakers, &id, &policy);
    advance(RECOVERY).await;
    let probe = breakers.before_call(&id, &policy).expect("probe");
    // A closed-state call from an earlier period does not end the probe.
    old.failure();
    assert!(breakers.state_of(&id).half_open_probe_active);
    probe.success();
    assert_eq!(breakers.state_of(&id).state, CircuitStatus::Closed);
}

#[tokio::test(start_paused = true)]
async fn scoped_circuits_are_independent() {
    let breakers = CircuitBreakers::new();
    let policy = policy(1).with_scope(CircuitScope::Namespace);
    let market = CircuitIdentity::for_key("feed", &key("market:price:BTCUSDT"), policy.scope());
    let weather = CircuitIdentity::for_key("feed", &key("weather:forecast:paris"), policy.scope());
    trip(&breakers, &market, &policy);
    let other_market = CircuitIdentity::for_key("feed", &key("market:volume:ETH"), policy.scope());
    assert!(breakers.before_call(&other_market, &policy).is_err());
    breakers
        .before_call(&weather, &policy)
        .expect("other namespace is closed")
        .success();
    assert_eq!(breakers.open_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn snapshot_reports_every_known_circuit() {
    let breakers = CircuitBreakers::new();
    let policy = policy(2);
    let a = source_identity("alpha");
    let b = CircuitIdentity::new("beta", CircuitScope::Namespace, "market");
    let c = source_identity("gamma");
    trip(&breakers, &a, &policy);
    fail(&breakers, &b, &policy);
    succeed(&breakers, &c, &policy);
    advance(Duration::from_secs(3)).await;

    let snapshot = breakers.snapshot();
    let names: Vec<&str> = snapshot.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        ["alpha[source]", "beta[namespace]:market", "gamma[source]"]
    );
    let alpha = &snapshot["alpha[source]"];
    assert_eq!(alpha.state, CircuitStatus::Open);
    assert_eq!(alpha.failures, 2);
    assert_eq!(alpha.opened_for, Some(Duration::from_secs(3)));
    assert!(!alpha.half_open_probe_active);
    let beta = &snapshot["beta[namespace]:market"];
    assert_eq!(
        (beta.state, beta.failures, beta.opened_for),
        (CircuitStatus::Closed, 1, None)
    );
    assert_eq!(snapshot["gamma[source]"], CircuitState::default());

    advance(RECOVERY).await;
    let probe = breakers.before_call(&a, &policy).expect("probe");
    let alpha = &breakers.snapshot()["alpha[source]"];
    assert_eq!(alpha.state, CircuitStatus::HalfOpen);
    assert!(alpha.half_open_probe_active);
    probe.skipped();
}

#[tokio::test(start_paused = true)]
async fn reset_clears_one_source_or_all() {
    let breakers = CircuitBreakers::new();
    let policy = policy(1);
    let a_source = source_identity("alpha");
    let a_subject = CircuitIdentity::new("alpha", CircuitScope::Subject, "BTC");
    let b = source_identity("beta");
    for id in [&a_source, &a_subject, &b] {
        trip(&breakers, id, &policy);
    }
    assert_eq!(breakers.open_count(), 3);

    breakers.reset(Some("alpha"));
    assert_eq!(breakers.open_count(), 1);
    assert_eq!(breakers.state_of(&a_source).state, CircuitStatus::Closed);
    assert_eq!(breakers.state_of(&a_subject).state, CircuitStatus::Closed);
    assert_eq!(breakers.state_of(&b).state, CircuitStatus::Open);
    breakers.reset(Some("unknown"));
    assert_eq!(breakers.open_count(), 1);

    // A permit taken before a reset does not affect the fresh circuit.
    advance(RECOVERY).await;
    let probe = breakers.before_call(&b, &policy).expect("probe");
    breakers.reset(None);
    assert!(breakers.snapshot().is_empty());
    probe.failure();
    assert!(breakers.snapshot().is_empty());
    succeed(&breakers, &b, &policy);
    assert_eq!(breakers.half_open_count(), 0);
}

#[test]
fn registry_and_permits_are_thread_safe() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<CircuitBreakers>();
    assert_send_sync::<coalestra_resilience::CircuitPermit>();
    assert_send_sync::<CircuitOpen>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_get_exactly_one_probe() {
    let breakers = CircuitBreakers::new();
    let id = source_identity("prices");
    let policy = CircuitBreakerPolicy::new(CircuitScope::Source, 1, Duration::ZERO).expect("ok");
    trip(&breakers, &id, &policy);
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (breakers, id, policy) = (breakers.clone(), id.clone(), policy.clone());
            tokio::spawn(async move { breakers.before_call(&id, &policy).ok() })
        })
        .collect();
    let mut probes = Vec::new();
    for task in tasks {
        if let Some(permit) = task.await.expect("task") {
            probes.push(permit);
        }
    }
    assert_eq!(probes.len(), 1);
    assert!(probes[0].is_probe());
    probes.pop().expect("probe").success();
    assert_eq!(breakers.state_of(&id).state, CircuitStatus::Closed);
}
