//! Property tests of the core model (issue 10, "Property tests"): resource
//! key rendering and parsing round-trip for arbitrary Unicode parts and
//! qualifiers, equality and hashing independent of qualifier order, every
//! normalizer idempotent, and the freshness classification boundaries
//! (inclusive `ttl` and `max_stale`, refresh-ahead window, age clamped at
//! zero).
//!
//! Runs are deterministic: a fixed proptest seed and no failure-persistence
//! files; a failure prints the minimal counterexample. For a deeper manual
//! run set `COALESTRA_PROPTEST_CASES` (and `COALESTRA_PROPTEST_SEED`).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::time::Duration;

use coalestra_core::value::ValueParts;
use coalestra_core::{
    Freshness, FreshnessPolicy, KeyNormalizer, Payload, RefreshMode, ResourceKey, SnapshotValue,
    Timestamp,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// A deterministic configuration; `COALESTRA_PROPTEST_CASES` scales the
/// number of cases and `COALESTRA_PROPTEST_SEED` picks another sequence for
/// a deeper manual run.
fn config(cases: u32) -> Config {
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    Config {
        cases: env("COALESTRA_PROPTEST_CASES").map_or(cases, |n| n as u32),
        rng_seed: RngSeed::Fixed(env("COALESTRA_PROPTEST_SEED").unwrap_or(0x00C0_A1E5)),
        failure_persistence: None,
        ..Config::default()
    }
}

/// Any Unicode text, biased towards the characters that delimit or escape
/// a rendered key and towards whitespace that normalizers trim.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[a-zA-Z0-9:?&=%+ ~._\\-]{0,12}",
        1 => "[ \t\u{a0}]?[ßẞİıΣσςǅﬀ%:?é日😀]{0,6}[ \u{3000}]?",
    ]
}

/// Text that is not empty once trimmed (namespace and name).
fn required_part() -> impl Strategy<Value = String> {
    text().prop_filter("non-empty after trimming", |t| !t.trim().is_empty())
}

/// Qualifiers with distinct, non-blank (trimmed) names.
fn qualifiers() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::vec((required_part(), text()), 0..5).prop_map(|pairs| {
        let mut seen = std::collections::HashSet::new();
        pairs
            .into_iter()
            .filter(|(name, _)| seen.insert(name.trim().to_owned()))
            .collect()
    })
}

fn hash_of(key: &ResourceKey) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

fn key(
    (ns, name, subject, quals): &(String, String, String, Vec<(String, String)>),
    normalizer: KeyNormalizer,
) -> ResourceKey {
    ResourceKey::with_normalizer(ns, name, subject, quals.clone(), normalizer)
        .unwrap_or_else(|error| panic!("valid parts rejected: {error}"))
}

fn parts() -> impl Strategy<Value = (String, String, String, Vec<(String, String)>)> {
    (required_part(), required_part(), text(), qualifiers())
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn rendering_parses_back_to_an_equal_key(parts in parts()) {
        let key = key(&parts, KeyNormalizer::Preserve);
        let rendered = key.to_string();
        let parsed = ResourceKey::parse(&rendered)
            .unwrap_or_else(|error| panic!("{rendered:?} does not parse: {error}"));
        prop_assert_eq!(&parsed, &key, "rendered as {:?}", rendered);
        prop_assert_eq!(parsed.to_string(), rendered);
        prop_assert_eq!(hash_of(&parsed), hash_of(&key));
        // Every part survives, trimmed.
        prop_assert_eq!(parsed.namespace(), parts.0.trim());
        prop_assert_eq!(parsed.name(), parts.1.trim());
        prop_assert_eq!(parsed.subject(), parts.2.trim());
        for (name, value) in &parts.3 {
            prop_assert_eq!(parsed.qualifier(name), Some(value.trim()));
        }
    }

    #[test]
    fn equality_and_hash_ignore_qualifier_order(
        parts in parts(),
        rotation in 0usize..8,
    ) {
        let forward = key(&parts, KeyNormalizer::Preserve);
        let mut reordered = parts.clone();
        if !reordered.3.is_empty() {
            let by = rotation % reordered.3.len();
            reordered.3.rotate_left(by);
        }
        reordered.3.reverse();
        let backward = key(&reordered, KeyNormalizer::Preserve);
        prop_assert_eq!(&forward, &backward);
        prop_assert_eq!(hash_of(&forward), hash_of(&backward));
        prop_assert_eq!(forward.to_string(), backward.to_string());
        prop_assert_eq!(forward.cmp(&backward), std::cmp::Ordering::Equal);
        // Adding the qualifiers one by one gives the same key too.
        let mut incremental = key(&(parts.0.clone(), parts.1.clone(), parts.2.clone(), Vec::new()), KeyNormalizer::Preserve);
        for (name, value) in reordered.3.iter().rev() {
            incremental = incremental
                .with_qualifier(name, value)
                .unwrap_or_else(|error| panic!("qualifier {name:?} rejected: {error}"));
        }
        prop_assert_eq!(&incremental, &forward);
        prop_assert_eq!(hash_of(&incremental), hash_of(&forward));
    }

    #[test]
    fn every_normalizer_is_idempotent(parts in parts(), which in 0usize..3) {
        let normalizer = [
            KeyNormalizer::Preserve,
            KeyNormalizer::CaseInsensitive,
            KeyNormalizer::Legacy,
        ][which]
            .clone();
        // Normalization can merge qualifier names or empty a part; only
        // inputs that stay valid say anything about idempotence.
        let Ok(once) = ResourceKey::with_normalizer(
            &parts.0,
            &parts.1,
            &parts.2,
            parts.3.clone(),
            normalizer.clone(),
        ) else {
            return Ok(());
        };
        let quals: Vec<(String, String)> = once
            .qualifiers()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let twice = ResourceKey::with_normalizer(
            once.namespace(),
            once.name(),
            once.subject(),
            quals,
            normalizer,
        )
        .unwrap_or_else(|error| panic!("normalized parts of {once} rejected: {error}"));
        prop_assert_eq!(twice.namespace(), once.namespace());
        prop_assert_eq!(twice.name(), once.name());
        prop_assert_eq!(twice.subject(), once.subject());
        prop_assert_eq!(twice.to_string(), once.to_string());
        prop_assert_eq!(&twice, &once);
        // Qualifier lookups normalize the queried name the same way.
        for (name, value) in once.qualifiers() {
            prop_assert_eq!(twice.qualifier(name), Some(value));
        }
    }
}

/// Durations from zero to `Duration::MAX`, dense near zero.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        2 => (0u64..5_000).prop_map(Duration::from_millis),
        2 => (0u64..u64::MAX / 2, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        1 => Just(Duration::ZERO),
        1 => Just(Duration::MAX),
    ]
}

const NANO: Duration = Duration::from_nanos(1);

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn freshness_boundaries_are_inclusive(a in duration(), b in duration()) {
        let (ttl, max_stale) = if a <= b { (a, b) } else { (b, a) };
        let policy = FreshnessPolicy::new(ttl, max_stale).expect("max_stale >= ttl");
        prop_assert_eq!(policy.classify(Duration::ZERO), Freshness::Fresh);
        prop_assert_eq!(policy.classify(ttl), Freshness::Fresh, "age == ttl is fresh");
        prop_assert!(policy.is_fresh(ttl) && policy.is_usable(max_stale));
        if let Some(past_ttl) = ttl.checked_add(NANO) {
            let expected = if past_ttl <= max_stale {
                Freshness::StaleUsable
            } else {
                Freshness::Expired
            };
            prop_assert_eq!(policy.classify(past_ttl), expected);
            prop_assert!(!policy.is_fresh(past_ttl));
        }
        prop_assert!(policy.classify(max_stale).is_usable(), "age == max_stale is usable");
        if let Some(past_stale) = max_stale.checked_add(NANO) {
            prop_assert_eq!(policy.classify(past_stale), Freshness::Expired);
            prop_assert!(!policy.is_usable(past_stale));
        }
        // Classification is monotonic in age.
        let rank = |f: Freshness| match f {
            Freshness::Fresh | Freshness::RefreshDue => 0,
            Freshness::StaleUsable => 1,
            Freshness::Expired => 2,
        };
        let ages = [Duration::ZERO, ttl, ttl.saturating_add(NANO), max_stale, max_stale.saturating_add(NANO), Duration::MAX];
        for pair in ages.windows(2) {
            if pair[0] <= pair[1] {
                prop_assert!(rank(policy.classify(pair[0])) <= rank(policy.classify(pair[1])));
            }
        }
    }

    #[test]
    fn refresh_ahead_window_is_the_end_of_the_ttl(
        ttl in duration().prop_map(|d| d.min(Duration::MAX - NANO)),
        extra in duration(),
        window_fraction in 0u32..=100,
        age in duration(),
    ) {
        let window = (ttl / 100).saturating_mul(window_fraction).min(ttl);
        let policy = FreshnessPolicy::new(ttl, ttl.saturating_add(extra))
            .expect("max_stale >= ttl")
            .with_refresh_mode(RefreshMode::RefreshAhead { window })
            .expect("window <= ttl");
        let expected = if age > ttl {
            if age <= policy.max_stale() { Freshness::StaleUsable } else { Freshness::Expired }
        } else if age >= ttl - window {
            Freshness::RefreshDue
        } else {
            Freshness::Fresh
        };
        prop_assert_eq!(policy.classify(age), expected);
        let too_wide = RefreshMode::RefreshAhead { window: ttl + NANO };
        prop_assert!(policy.with_refresh_mode(too_wide).is_err(), "a window wider than the ttl");
    }

    #[test]
    fn age_is_clamped_at_zero(observed in -1.0e9f64..1.0e9, ahead in 0.0f64..1.0e6, ttl in duration()) {
        let key = ResourceKey::new("props", "age", "x").expect("valid key");
        let at = Timestamp::from_secs(observed);
        let value = SnapshotValue::from_parts(ValueParts::new(key, Payload::new(1u8), "src", at));
        let earlier = Timestamp::from_secs(observed - ahead);
        // A value observed after `now` (clock skew) has age zero: fresh under
        // every policy, never "negative" or wrapped around.
        prop_assert_eq!(value.age_at(earlier), Duration::ZERO);
        prop_assert_eq!(FreshnessPolicy::fresh_for(ttl).classify(value.age_at(earlier)), Freshness::Fresh);
        prop_assert_eq!(value.age_at(at), Duration::ZERO);
        let later = Timestamp::from_secs(observed + ahead);
        let age = value.age_at(later).as_secs_f64();
        prop_assert!((age - ahead).abs() <= 1e-6 * ahead.max(1.0), "age {} for {} s", age, ahead);
    }
}
