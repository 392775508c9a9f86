//! Freshness policies: inclusive boundaries, refresh-ahead, unbounded
//! windows, validation, defaults and per-key resolution.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra_core::{
    ConfigError, Freshness, FreshnessPolicy, PolicyResolver, RefreshMode, ResourceKey,
};

const NS: Duration = Duration::from_nanos(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn policy(ttl: Duration, max_stale: Duration, mode: RefreshMode) -> FreshnessPolicy {
    FreshnessPolicy::new(ttl, max_stale)
        .and_then(|p| p.with_refresh_mode(mode))
        .expect("a valid policy")
}

fn expected(ttl: Duration, max_stale: Duration, mode: RefreshMode, age: Duration) -> Freshness {
    let refresh_due = match mode {
        RefreshMode::RefreshAhead { window } => age >= ttl.saturating_sub(window),
        _ => false,
    };
    if age <= ttl {
        if refresh_due {
            Freshness::RefreshDue
        } else {
            Freshness::Fresh
        }
    } else if age <= max_stale {
        Freshness::StaleUsable
    } else {
        Freshness::Expired
    }
}

#[test]
fn the_classification_matrix_follows_inclusive_boundaries() {
    let ttls = [ms(0), ms(100), ms(1_000), ms(5_000), ms(30_000)];
    let ages = [ms(0), ms(50), ms(100), ms(500), ms(5_000), ms(31_000)];
    let mut cases = 0;
    let mut refresh_due = 0;
    for ttl in ttls {
        let modes = [
            RefreshMode::Blocking,
            RefreshMode::StaleWhileRevalidate,
            RefreshMode::RefreshAhead { window: ttl / 2 },
        ];
        let max_stale = ttl * 2 + ms(100);
        for mode in modes {
            let p = policy(ttl, max_stale, mode);
            for age in ages {
                let context = format!("ttl {ttl:?} age {age:?} {mode:?}");
                let class = p.classify(age);
                assert_eq!(class, expected(ttl, max_stale, mode, age), "{context}");
                assert_eq!(p.is_fresh(age), age <= ttl, "{context}");
                assert_eq!(p.is_usable(age), age <= max_stale, "{context}");
                let ahead = matches!(mode, RefreshMode::RefreshAhead { .. })
                    && age >= ttl.saturating_sub(ttl / 2);
                assert_eq!(p.should_refresh_ahead(age), ahead, "{context}");
                assert_eq!(class.is_fresh(), age <= ttl, "{context}");
                assert_eq!(class.is_usable(), age <= max_stale, "{context}");
                refresh_due += usize::from(class == Freshness::RefreshDue);
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 90);
    assert!(refresh_due > 0, "the matrix exercises refresh-ahead");
}

#[test]
fn ttl_and_max_stale_boundaries_are_inclusive() {
    let p = policy(ms(1_000), ms(10_000), RefreshMode::Blocking);
    assert_eq!(p.classify(ms(1_000)), Freshness::Fresh);
    assert_eq!(p.classify(ms(1_000) + NS), Freshness::StaleUsable);
    assert_eq!(p.classify(ms(10_000)), Freshness::StaleUsable);
    assert_eq!(p.classify(ms(10_000) + NS), Freshness::Expired);

    let zero = FreshnessPolicy::no_cache();
    assert_eq!(zero.classify(Duration::ZERO), Freshness::Fresh);
    assert_eq!(zero.classify(NS), Freshness::Expired);
}

#[test]
fn refresh_ahead_starts_exactly_at_ttl_minus_window() {
    let p = policy(
        ms(10_000),
        ms(20_000),
        RefreshMode::RefreshAhead { window: ms(2_000) },
    );
    assert_eq!(p.classify(ms(8_000) - NS), Freshness::Fresh);
    assert_eq!(p.classify(ms(8_000)), Freshness::RefreshDue);
    assert_eq!(p.classify(ms(10_000)), Freshness::RefreshDue);
    assert_eq!(p.classify(ms(10_000) + NS), Freshness::StaleUsable);

    let whole_ttl = policy(ms(10), ms(10), RefreshMode::RefreshAhead { window: ms(10) });
    assert!(whole_ttl.should_refresh_ahead(Duration::ZERO));
}

#[test]
fn unbounded_windows_are_allowed_and_never_refresh_ahead() {
    let unbounded = FreshnessPolicy::new(FreshnessPolicy::UNBOUNDED, FreshnessPolicy::UNBOUNDED)
        .unwrap()
        .with_refresh_mode(RefreshMode::RefreshAhead {
            window: Duration::from_secs(3_600),
        })
        .unwrap();
    for age in [
        Duration::ZERO,
        Duration::from_secs(86_400 * 365),
        Duration::MAX,
    ] {
        assert_eq!(unbounded.classify(age), Freshness::Fresh, "{age:?}");
        assert!(!unbounded.should_refresh_ahead(age));
    }

    let from_config = FreshnessPolicy::from_secs_f64(f64::INFINITY, f64::INFINITY).unwrap();
    assert_eq!(from_config.ttl(), FreshnessPolicy::UNBOUNDED);
    assert_eq!(from_config.max_stale(), FreshnessPolicy::UNBOUNDED);

    let stale_forever = FreshnessPolicy::from_secs_f64(5.0, f64::INFINITY).unwrap();
    assert_eq!(stale_forever.ttl(), Duration::from_secs(5));
    assert_eq!(
        stale_forever.classify(Duration::from_secs(1_000_000)),
        Freshness::StaleUsable
    );
}

#[test]
fn a_stale_window_shorter_than_the_ttl_is_rejected() {
    let error = FreshnessPolicy::new(Duration::from_secs(5), Duration::from_secs(4)).unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::Invalid {
                field: "max_stale",
                ..
            }
        ),
        "{error}"
    );
    assert!(FreshnessPolicy::from_secs_f64(5.0, 4.0).is_err());
    assert!(FreshnessPolicy::new(Duration::from_secs(5), Duration::from_secs(5)).is_ok());
}

#[test]
fn nan_and_negative_windows_are_rejected_from_configuration() {
    for (ttl, max_stale) in [(f64::NAN, 1.0), (1.0, f64::NAN)] {
        let error = FreshnessPolicy::from_secs_f64(ttl, max_stale).unwrap_err();
        assert!(error.to_string().contains("cannot be NaN"), "{error}");
    }
    let error = FreshnessPolicy::from_secs_f64(-1.0, 1.0).unwrap_err();
    assert_eq!(error, ConfigError::Negative { field: "ttl" });
    assert_eq!(error.to_string(), "ttl cannot be negative");
    let error = FreshnessPolicy::from_secs_f64(1.0, -0.5).unwrap_err();
    assert_eq!(error, ConfigError::Negative { field: "max_stale" });
    assert!(FreshnessPolicy::from_secs_f64(f64::NEG_INFINITY, 1.0).is_err());

    let ok = FreshnessPolicy::from_secs_f64(0.25, 1.5).unwrap();
    assert_eq!(ok.ttl(), ms(250));
    assert_eq!(ok.max_stale(), ms(1_500));
}

#[test]
fn a_refresh_ahead_window_longer_than_the_ttl_is_rejected() {
    let base = FreshnessPolicy::new(Duration::from_secs(5), Duration::from_secs(10)).unwrap();
    let error = base
        .with_refresh_mode(RefreshMode::RefreshAhead {
            window: Duration::from_secs(6),
        })
        .unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::Invalid {
                field: "refresh_ahead",
                ..
            }
        ),
        "{error}"
    );
    assert!(error.to_string().contains("cannot exceed ttl"), "{error}");
    let at_ttl = base
        .with_refresh_mode(RefreshMode::RefreshAhead {
            window: Duration::from_secs(5),
        })
        .unwrap();
    assert_eq!(
        at_ttl.refresh_mode(),
        RefreshMode::RefreshAhead {
            window: Duration::from_secs(5)
        }
    );
}

#[test]
fn the_default_policy_is_one_second_fresh_and_ten_seconds_stale() {
    let p = FreshnessPolicy::default();
    assert_eq!(p.ttl(), Duration::from_secs(1));
    assert_eq!(p.max_stale(), Duration::from_secs(10));
    assert!(p.allow_stale_on_error());
    assert_eq!(p.refresh_mode(), RefreshMode::Blocking);
}

#[test]
fn shorthand_constructors_and_options() {
    let fresh = FreshnessPolicy::fresh_for(Duration::from_secs(3));
    assert_eq!(fresh.ttl(), Duration::from_secs(3));
    assert_eq!(fresh.max_stale(), Duration::from_secs(3));
    let no_cache = FreshnessPolicy::no_cache();
    assert_eq!(no_cache.ttl(), Duration::ZERO);
    assert_eq!(no_cache.max_stale(), Duration::ZERO);
    assert!(!fresh.with_stale_on_error(false).allow_stale_on_error());
    assert!(fresh.allow_stale_on_error(), "options return a new policy");

    assert_eq!(RefreshMode::Blocking.as_str(), "blocking");
    assert_eq!(
        RefreshMode::StaleWhileRevalidate.as_str(),
        "stale_while_revalidate"
    );
    assert_eq!(
        RefreshMode::RefreshAhead { window: ms(1) }.as_str(),
        "refresh_ahead"
    );
    assert_eq!(RefreshMode::default(), RefreshMode::Blocking);
}

fn key(text: &str) -> ResourceKey {
    ResourceKey::parse(text).unwrap()
}

#[test]
fn the_resolver_prefers_exact_then_type_then_dynamic_then_default() {
    let exact = FreshnessPolicy::fresh_for(Duration::from_secs(1));
    let by_type = FreshnessPolicy::fresh_for(Duration::from_secs(2));
    let dynamic = FreshnessPolicy::fresh_for(Duration::from_secs(3));
    let default = FreshnessPolicy::fresh_for(Duration::from_secs(4));
    let consulted = Arc::new(AtomicUsize::new(0));
    let resolver = PolicyResolver::new(default)
        .with_override(key("market:price:BTC"), exact)
        .with_type_override("market", "price", by_type)
        .with_dynamic({
            let consulted = consulted.clone();
            move |k: &ResourceKey| {
                consulted.fetch_add(1, Ordering::SeqCst);
                (k.namespace() == "account").then_some(dynamic)
            }
        });

    assert_eq!(resolver.resolve(&key("market:price:BTC")), exact);
    assert_eq!(resolver.resolve(&key("market:price:ETH")), by_type);
    assert_eq!(
        consulted.load(Ordering::SeqCst),
        0,
        "overrides win before dynamic"
    );
    assert_eq!(
        resolver.resolve(&key("market:price:BTC?venue=spot")),
        by_type
    );
    assert_eq!(resolver.resolve(&key("account:balance:1")), dynamic);
    assert_eq!(resolver.resolve(&key("market:candles:BTC")), default);
    assert_eq!(consulted.load(Ordering::SeqCst), 2);
    assert_eq!(resolver.default_policy(), default);

    // The batch form gives each key what `resolve` gives it, in order.
    let keys = [
        key("market:candles:BTC"),
        key("market:price:BTC"),
        key("account:balance:1"),
        key("market:price:ETH"),
    ];
    assert_eq!(
        resolver.resolve_all(&keys),
        vec![default, exact, dynamic, by_type]
    );
    assert_eq!(consulted.load(Ordering::SeqCst), 4, "dynamic asked per key");
}

#[test]
fn a_plain_resolver_returns_its_default_for_every_key() {
    let resolver = PolicyResolver::default();
    assert_eq!(resolver.resolve(&key("a:b")), FreshnessPolicy::default());
    let custom = FreshnessPolicy::fresh_for(Duration::from_secs(9));
    assert_eq!(PolicyResolver::new(custom).resolve(&key("a:b:c")), custom);
    let keys = [key("a:b"), key("c:d:e"), key("a:b:f")];
    assert_eq!(
        PolicyResolver::new(custom).resolve_all(&keys),
        vec![custom; 3]
    );
    assert!(resolver.resolve_all(&[]).is_empty());
}
