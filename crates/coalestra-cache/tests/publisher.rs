//! Behaviour of `ResourcePublisher`: stamping, monotonic and authority-aware
//! publication, batches, validation and invalidation.

mod support;

use std::sync::Arc;
use std::time::Duration;

use coalestra_cache::{MemoryCache, PublishStatus, PublisherConfig, ResourcePublisher};
use coalestra_core::{
    Clock, CoalestraError, ConfigError, ObservationPolicy, Payload, PolicyResolver, ResourceKey,
    SnapshotCache, SourceError, WriteOutcome,
};
use support::publishing::{clock, opts, publisher, publisher_with, ranked_config, update, NOW};
use support::{at, key, payload_of, policy};

#[tokio::test]
async fn published_value_is_stamped_and_readable_from_the_cache() {
    let clock = clock();
    let cache = MemoryCache::new();
    let publisher = publisher(&cache, &clock);
    let k = key("market", "price", "BTC");
    let result = publisher
        .publish(
            k.clone(),
            Payload::new(42_i64),
            opts("  stream  ").with_metadata("partition", 3_i64),
        )
        .await
        .unwrap();
    assert_eq!(result.status, PublishStatus::Published);
    assert!(result.is_published());
    assert!(result.previous.is_none());
    assert!(!result.forced);
    assert_eq!(result.key, k);

    let value = &result.value;
    assert_eq!(value.source(), "stream", "source names are trimmed");
    assert_eq!(value.observed_at(), at(NOW), "observed now by default");
    assert_eq!(value.fetched_at(), at(NOW));
    assert_eq!(
        value.metadata().get("published").unwrap().as_bool(),
        Some(true)
    );
    assert_eq!(
        value.metadata().get("partition").unwrap().as_f64(),
        Some(3.0)
    );
    assert!(value.metadata().get("clock_skew_seconds").is_none());
    assert_eq!(value.authority_rank(), 0);
    assert_eq!(value.attempts(), 0);

    clock.advance(Duration::from_secs(2));
    let hit = cache
        .get(&k, policy(5.0, 10.0), clock.now())
        .await
        .unwrap()
        .unwrap();
    assert!(hit.value.is_from_cache());
    assert!(hit.value.same_revision(value));
    assert_eq!(payload_of(&hit.value), 42);
    assert_eq!(hit.age, Duration::from_secs(2));
}

#[tokio::test]
async fn publication_is_monotonic_unless_forced() {
    let clock = clock();
    let cache = MemoryCache::new();
    let publisher = publisher(&cache, &clock);
    let k = key("mono", "item", "K");

    let new = publisher
        .publish(k.clone(), Payload::new(2_i64), opts("s"))
        .await
        .unwrap();
    assert_eq!(new.status, PublishStatus::Published);

    let old = publisher
        .publish(
            k.clone(),
            Payload::new(1_i64),
            opts("s").observed_at(at(NOW - 1.0)),
        )
        .await
        .unwrap();
    assert_eq!(old.status, PublishStatus::IgnoredOlder);
    assert!(old.value.same_revision(&new.value), "value is the winner");
    assert!(old.previous.unwrap().same_revision(&new.value));

    let duplicate = publisher
        .publish(k.clone(), Payload::new(3_i64), opts("s"))
        .await
        .unwrap();
    assert_eq!(duplicate.status, PublishStatus::IgnoredDuplicate);
    assert_eq!(payload_of(&duplicate.value), 2);

    let forced = publisher
        .publish(
            k.clone(),
            Payload::new(4_i64),
            opts("s").observed_at(at(NOW - 1.0)).force(true),
        )
        .await
        .unwrap();
    assert_eq!(forced.status, PublishStatus::Published);
    assert!(forced.forced);
    assert_eq!(payload_of(&cache.peek(&k).unwrap()), 4);
}

#[tokio::test]
async fn replace_equal_republishes_an_equal_observation() {
    let clock = clock();
    let cache = MemoryCache::new();
    let publisher = publisher(&cache, &clock);
    let k = key("equal", "item", "K");
    publisher
        .publish(k.clone(), Payload::new(1_i64), opts("s"))
        .await
        .unwrap();
    let replaced = publisher
        .publish(
            k.clone(),
            Payload::new(2_i64),
            opts("s").replace_equal(true),
        )
        .await
        .unwrap();
    assert_eq!(replaced.status, PublishStatus::Published);
    assert_eq!(payload_of(&replaced.previous.unwrap()), 1);
    assert_eq!(payload_of(&cache.peek(&k).unwrap()), 2);
}

#[tokio::test]
async fn publish_many_reports_each_key_once_in_first_occurrence_order() {
    let clock = clock();
    let cache = MemoryCache::new();
    let publisher = publisher(&cache, &clock);
    let keys: Vec<ResourceKey> = (0..15)
        .map(|i| key("many", "item", &format!("K{i}")))
        .collect();

    // Key j % 3 == 0 already holds a newer value, j % 3 == 1 an equal one,
    // j % 3 == 2 nothing.
    for (j, k) in keys.iter().enumerate() {
        let observed = match j % 3 {
            0 => NOW,
            1 => NOW - 1.0,
            _ => continue,
        };
        publisher
            .publish(
                k.clone(),
                Payload::new(-1_i64),
                opts("s").observed_at(at(observed)),
            )
            .await
            .unwrap();
    }

    // Three updates per key (observed at now-3, now-2 and now-1), scrambled.
    let mut updates = Vec::new();
    let mut first_seen: Vec<usize> = Vec::new();
    for n in 0..45_usize {
        let j = (n * 7) % 15;
        let generation = n / 15;
        let observed = NOW - 3.0 + ((generation + j) % 3) as f64;
        if !first_seen.contains(&j) {
            first_seen.push(j);
        }
        updates.push(update(
            &keys[j],
            (j * 10 + generation) as i64,
            opts("s").observed_at(at(observed)),
        ));
    }
    let results = publisher.publish_many(updates).await.unwrap();
    assert_eq!(results.len(), 15);
    for (result, &j) in results.iter().zip(&first_seen) {
        assert_eq!(result.key, keys[j]);
        match j % 3 {
            0 => {
                assert_eq!(result.status, PublishStatus::IgnoredOlder);
                assert_eq!(result.value.observed_at(), at(NOW));
            }
            1 => {
                assert_eq!(result.status, PublishStatus::IgnoredDuplicate);
                assert_eq!(payload_of(&result.value), -1);
            }
            _ => {
                assert_eq!(result.status, PublishStatus::Published);
                assert_eq!(result.value.observed_at(), at(NOW - 1.0));
                assert_eq!(payload_of(&cache.peek(&keys[j]).unwrap()) / 10, j as i64);
            }
        }
    }
}

#[tokio::test]
async fn publish_many_keeps_the_newest_update_of_a_key() {
    for newest_first in [true, false] {
        let clock = clock();
        let cache = MemoryCache::new();
        let publisher = publisher(&cache, &clock);
        let k = key("newest", "item", "K");
        let newer = update(&k, 2, opts("s").observed_at(at(NOW - 1.0)));
        let older = update(&k, 1, opts("s").observed_at(at(NOW - 5.0)));
        let batch = if newest_first {
            vec![newer, older]
        } else {
            vec![older, newer]
        };
        let results = publisher.publish_many(batch).await.unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].status, PublishStatus::Published);
        assert_eq!(payload_of(&results[0].value), 2);
        assert_eq!(cache.stats().sets, 1, "losers never reach the cache");
    }
}

#[tokio::test]
async fn publish_many_prefers_authority_over_recency() {
    for rest_first in [true, false] {
        let clock = clock();
        let cache = MemoryCache::new();
        let publisher = publisher_with(&cache, ranked_config(&clock));
        let k = key("auth", "item", "K");
        let rest = update(&k, 1, opts("rest"));
        let local = update(&k, 2, opts("local").observed_at(at(NOW - 5.0)));
        let batch = if rest_first {
            vec![rest, local]
        } else {
            vec![local, rest]
        };
        let results = publisher.publish_many(batch).await.unwrap();
        assert_eq!(results.len(), 1);
        assert_eq!(results[0].value.source(), "local");
        assert_eq!(results[0].value.authority_rank(), 300);
        assert_eq!(cache.peek(&k).unwrap().source(), "local");
    }
}

#[tokio::test]
async fn newer_lower_authority_publication_is_ignored() {
    let clock = clock();
    let cache = MemoryCache::new();
    let publisher = publisher_with(&cache, ranked_config(&clock));
    let k = key("auth", "item", "LOWER");
    let local = publisher
        .publish(
            k.clone(),
            Payload::new(1_i64),
            opts("local").observed_at(at(NOW - 10.0)),
        )
        .await
        .unwrap();
    let rest = publisher
        .publish(k.clone(), Payload::new(2_i64), opts("rest"))
        .await
        .unwrap();
    assert_eq!(rest.status, PublishStatus::IgnoredLowerAuthority);
    assert!(rest.value.same_revision(&local.value));
    assert_eq!(rest.value.authority_rank(), 300);
}

#[tokio::test]
async fn publishers_sharing_a_cache_see_one_atomic_outcome() {
    let clock = clock();
    let cache = MemoryCache::new();
    let first = publisher(&cache, &clock);
    let second = publisher(&cache, &clock);
    let k = key("shared", "item", "K");
    let (a, b) = tokio::join!(
        first.publish(k.clone(), Payload::new(1_i64), opts("a")),
        second.publish(k.clone(), Payload::new(2_i64), opts("b")),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let statuses = [a.status, b.status];
    assert!(statuses.contains(&PublishStatus::Published));
    assert!(statuses.contains(&PublishStatus::IgnoredDuplicate));
    assert!(
        a.value.same_revision(&b.value),
        "both report the stored winner"
    );
    assert!(cache.peek(&k).unwrap().same_revision(&a.value));

    let late = second
        .publish(
            k.clone(),
            Payload::new(3_i64),
            opts("b").observed_at(at(NOW - 1.0)),
        )
        .await
        .unwrap();
    assert_eq!(late.status, PublishStatus::IgnoredOlder);
    assert!(late.value.same_revision(&a.value));
}

#[tokio::test]
async fn empty_source_names_are_rejected() {
    let clock = clock();
    let cache = MemoryCache::new();
    let publisher = publisher(&cache, &clock);
    let k = key("bad", "item", "K");
    for source in ["", "   ", "\t\n"] {
        let error = publisher
            .publish(k.clone(), Payload::new(1_i64), opts(source))
            .await
            .unwrap_err();
        assert!(error.is_config());
        assert!(
            matches!(
                error,
                CoalestraError::Config(ConfigError::Empty {
                    field: "source name"
                })
            ),
            "{error:?}"
        );
        assert_eq!(error.to_string(), "source name cannot be empty");
    }
    // One bad update fails the whole batch before anything is written.
    let error = publisher
        .publish_many(vec![update(&k, 1, opts("good")), update(&k, 2, opts(" "))])
        .await
        .unwrap_err();
    assert!(error.is_config());
    assert!(cache.peek(&k).is_none());
    assert_eq!(cache.stats().sets, 0);
}

#[tokio::test]
async fn source_names_lose_ascii_and_unicode_whitespace_at_either_end() {
    let clock = clock();
    let cache = MemoryCache::new();
    let publisher = publisher(&cache, &clock);
    let cases = [
        ("feed", "feed"),
        ("feed ", "feed"),
        ("\tfeed", "feed"),
        ("\u{b}feed", "feed"),
        ("\u{3000}feed\u{a0}", "feed"),
        ("\u{e9}-feed", "\u{e9}-feed"),
        ("feed \u{2028}", "feed"),
    ];
    for (i, (given, stored)) in cases.into_iter().enumerate() {
        let k = key("trim", "item", &i.to_string());
        let result = publisher
            .publish(k, Payload::new(1_i64), opts(given))
            .await
            .unwrap();
        assert_eq!(result.value.source(), stored, "{given:?}");
    }
    let error = publisher
        .publish(
            key("trim", "item", "blank"),
            Payload::new(1_i64),
            opts("\u{3000}\u{b}"),
        )
        .await
        .unwrap_err();
    assert!(error.is_config(), "{error:?}");
}

#[tokio::test]
async fn observation_beyond_the_future_tolerance_is_rejected() {
    let clock = clock();
    let cache = MemoryCache::new();
    let publisher = publisher(&cache, &clock);
    let k = key("future", "item", "K");
    let error = publisher
        .publish(
            k.clone(),
            Payload::new(1_i64),
            opts("s").observed_at(at(NOW + 5.0)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            CoalestraError::Source(SourceError::InvalidTimestamp { .. })
        ),
        "{error:?}"
    );
    assert!(cache.peek(&k).is_none());
    assert_eq!(cache.stats().sets, 0);
}

#[tokio::test]
async fn small_clock_skew_is_accepted_and_recorded() {
    let clock = clock();
    let cache = MemoryCache::new();
    let publisher = publisher_with(
        &cache,
        PublisherConfig {
            clock: Arc::new(clock.clone()),
            observation: ObservationPolicy::new(Duration::from_secs(2)),
            ..PublisherConfig::default()
        },
    );
    let k = key("skew", "item", "K");
    let result = publisher
        .publish(
            k.clone(),
            Payload::new(1_i64),
            opts("s").observed_at(at(NOW + 1.5)),
        )
        .await
        .unwrap();
    assert!(result.is_published());
    let skew = result
        .value
        .metadata()
        .get("clock_skew_seconds")
        .and_then(|v| v.as_f64())
        .unwrap();
    assert!((skew - 1.5).abs() < 1e-9, "skew {skew}");
    assert_eq!(result.value.observed_at(), at(NOW + 1.5));
    assert_eq!(result.value.fetched_at(), at(NOW));
}

#[tokio::test]
async fn invalidation_removes_published_values() {
    let clock = clock();
    let cache = MemoryCache::new();
    let publisher = publisher(&cache, &clock);
    let a = key("inv", "item", "A");
    let b = key("inv", "item", "B");
    let c = key("inv", "item", "C");
    for k in [&a, &b, &c] {
        publisher
            .publish(k.clone(), Payload::new(1_i64), opts("s"))
            .await
            .unwrap();
    }
    assert!(publisher.invalidate(&a, "deleted upstream").await.unwrap());
    assert!(!publisher.invalidate(&a, "deleted upstream").await.unwrap());
    assert!(cache.peek(&a).is_none());

    let removed = publisher
        .invalidate_many(&[b.clone(), b.clone(), a.clone(), c.clone()], "resync")
        .await
        .unwrap();
    assert_eq!(removed, vec![b, c]);
    assert!(cache.is_empty());
    assert!(publisher
        .invalidate_many(&[], "noop")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn current_reads_with_the_configured_policy_and_clock() {
    let clock = clock();
    let cache = MemoryCache::new();
    let k = key("current", "item", "K");
    let publisher = publisher_with(
        &cache,
        PublisherConfig {
            clock: Arc::new(clock.clone()),
            policies: PolicyResolver::new(policy(1.0, 3.0)),
            ..PublisherConfig::default()
        },
    );
    publisher
        .publish(k.clone(), Payload::new(1_i64), opts("s"))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2));
    let hit = publisher.current(&k).await.unwrap().unwrap();
    assert!(hit.value.is_stale());
    clock.advance(Duration::from_secs(2));
    assert!(publisher.current(&k).await.unwrap().is_none());
}

#[test]
fn statuses_have_stable_names() {
    let names: Vec<&str> = [
        PublishStatus::Published,
        PublishStatus::IgnoredOlder,
        PublishStatus::IgnoredDuplicate,
        PublishStatus::IgnoredLowerAuthority,
    ]
    .iter()
    .map(|s| s.as_str())
    .collect();
    assert_eq!(
        names,
        [
            "published",
            "ignored_older",
            "ignored_duplicate",
            "ignored_lower_authority"
        ]
    );
    assert_eq!(
        PublishStatus::from_outcome(WriteOutcome::IgnoredLowerAuthority),
        PublishStatus::IgnoredLowerAuthority
    );
    assert_eq!(PublishStatus::IgnoredOlder.to_string(), "ignored_older");
    assert!(PublishStatus::IgnoredOlder.is_ignored());

    fn assert_shareable<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    assert_shareable::<ResourcePublisher>();
}
