//! What `ResourcePublisher` reports (events and metrics, and nothing at all
//! to disabled sinks) and how it drives the cache (batching, empty calls,
//! bounded background publication).

mod support;

use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};

use coalestra_cache::{MemoryCache, PublisherConfig, ResourcePublisher};
use coalestra_core::sink::Label;
use coalestra_core::{Event, EventSink, MetricsSink, Payload, ResourceKey};
use coalestra_test::{Gate, ScriptedCache};
use support::publishing::{clock, opts, publisher_with, ranked_config, update, NOW};
use support::{at, forever, key};

/// One recorded counter increment: its name and labels.
type Increment = (&'static str, Vec<(String, String)>);

/// Records every event and counter it receives.
#[derive(Debug, Default)]
struct Recorder {
    events: Mutex<Vec<Event>>,
    counters: Mutex<Vec<Increment>>,
}

impl EventSink for Recorder {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn emit(&self, event: Event) {
        self.events.lock().unwrap().push(event);
    }
}

impl MetricsSink for Recorder {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn increment(&self, name: &'static str, labels: &[Label<'_>], _value: u64) {
        let labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        self.counters.lock().unwrap().push((name, labels));
    }
    fn observe(&self, _name: &'static str, _labels: &[Label<'_>], _value: f64) {}
}

/// Panics when used: proves disabled sinks are never called.
#[derive(Debug)]
struct Disabled;

impl EventSink for Disabled {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn emit(&self, _event: Event) {
        panic!("a disabled event sink was called");
    }
    fn enabled(&self) -> bool {
        false
    }
}

impl MetricsSink for Disabled {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn increment(&self, _name: &'static str, _labels: &[Label<'_>], _value: u64) {
        panic!("a disabled metrics sink was called");
    }
    fn observe(&self, _name: &'static str, _labels: &[Label<'_>], _value: f64) {
        panic!("a disabled metrics sink was called");
    }
    fn enabled(&self) -> bool {
        false
    }
}

#[tokio::test]
async fn events_and_metrics_describe_each_publication() {
    let clock = clock();
    let cache = MemoryCache::new();
    let recorder = Arc::new(Recorder::default());
    let mut config = ranked_config(&clock);
    config.events = recorder.clone();
    config.metrics = recorder.clone();
    let publisher = publisher_with(&cache, config);
    let k = ResourceKey::new("market", "price", "SECRET-SUBJECT")
        .unwrap()
        .with_qualifier("venue", "hidden-venue")
        .unwrap();

    publisher
        .publish(k.clone(), Payload::new(1_i64), opts("local"))
        .await
        .unwrap();
    publisher
        .publish(k.clone(), Payload::new(2_i64), opts("rest"))
        .await
        .unwrap();
    publisher.invalidate(&k, "upstream delete").await.unwrap();

    let events = recorder.events.lock().unwrap().clone();
    let names: Vec<&str> = events.iter().map(|e| e.name).collect();
    assert_eq!(
        names,
        [
            "resource_published",
            "resource_publish_ignored",
            "resource_invalidated"
        ]
    );
    let rendered = k.to_string();
    let published = &events[0];
    assert_eq!(
        published.get("resource").unwrap().as_str(),
        Some(rendered.as_str())
    );
    assert_eq!(published.get("source").unwrap().as_str(), Some("local"));
    assert_eq!(published.get("observed_at").unwrap().as_f64(), Some(NOW));
    assert_eq!(published.get("replaced").unwrap().as_bool(), Some(false));
    assert_eq!(published.get("forced").unwrap().as_bool(), Some(false));
    assert_eq!(
        published.get("authority_rank").unwrap().as_f64(),
        Some(300.0)
    );

    let ignored = &events[1];
    assert_eq!(
        ignored.get("status").unwrap().as_str(),
        Some("ignored_lower_authority")
    );
    assert_eq!(ignored.get("source").unwrap().as_str(), Some("rest"));
    assert_eq!(
        ignored.get("candidate_authority_rank").unwrap().as_f64(),
        Some(100.0)
    );
    assert_eq!(
        ignored.get("cached_authority_rank").unwrap().as_f64(),
        Some(300.0)
    );
    assert_eq!(
        ignored.get("cached_observed_at").unwrap().as_f64(),
        Some(NOW)
    );
    assert_eq!(ignored.get("observed_at").unwrap().as_f64(), Some(NOW));

    let invalidated = &events[2];
    assert_eq!(
        invalidated.get("reason").unwrap().as_str(),
        Some("upstream delete")
    );
    assert_eq!(
        invalidated.get("resource").unwrap().as_str(),
        Some(rendered.as_str())
    );

    let counters = recorder.counters.lock().unwrap().clone();
    let summary: Vec<(&str, Option<&str>)> = counters
        .iter()
        .map(|(name, labels)| {
            let status = labels
                .iter()
                .find(|(k, _)| k == "status")
                .map(|(_, v)| v.as_str());
            (*name, status)
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("resource_publish_total", Some("published")),
            ("resource_publish_total", Some("ignored_lower_authority")),
            ("resource_invalidation_total", None),
        ]
    );
    for (_, labels) in &counters {
        let names: Vec<&str> = labels.iter().map(|(k, _)| k.as_str()).collect();
        assert!(names.contains(&"resource_namespace") && names.contains(&"resource_name"));
        for (_, value) in labels {
            assert!(!value.contains("SECRET-SUBJECT"), "subject leaked: {value}");
            assert!(!value.contains("hidden-venue"), "qualifier leaked: {value}");
            assert_ne!(value, &rendered, "rendered key leaked");
        }
    }
    assert_eq!(counters[0].1[1], ("source".to_owned(), "local".to_owned()));
}

#[tokio::test]
async fn disabled_sinks_are_never_called() {
    let clock = clock();
    let cache = MemoryCache::new();
    let publisher = publisher_with(
        &cache,
        PublisherConfig {
            clock: Arc::new(clock.clone()),
            events: Arc::new(Disabled),
            metrics: Arc::new(Disabled),
            ..PublisherConfig::default()
        },
    );
    let k = key("quiet", "item", "K");
    publisher
        .publish(k.clone(), Payload::new(1_i64), opts("s"))
        .await
        .unwrap();
    publisher
        .publish(k.clone(), Payload::new(1_i64), opts("s"))
        .await
        .unwrap();
    publisher.invalidate(&k, "quiet").await.unwrap();
}

#[tokio::test]
async fn empty_batches_never_reach_the_cache() {
    let cache = Arc::new(ScriptedCache::new(MemoryCache::new()));
    let publisher = ResourcePublisher::new(
        cache.clone(),
        PublisherConfig {
            clock: Arc::new(clock()),
            ..PublisherConfig::default()
        },
    );
    assert!(publisher.publish_many(Vec::new()).await.unwrap().is_empty());
    assert!(publisher
        .invalidate_many(&[], "none")
        .await
        .unwrap()
        .is_empty());
    assert_eq!(cache.writes(), 0);
    assert_eq!(cache.invalidations(), 0);

    let k = key("count", "item", "K");
    publisher
        .publish_many(vec![update(&k, 1, opts("s")), update(&k, 2, opts("s"))])
        .await
        .unwrap();
    assert_eq!(cache.writes(), 1, "one batch write");
}

#[tokio::test]
async fn background_publications_are_bounded() {
    let gate = Gate::new();
    let cache = Arc::new(ScriptedCache::new(MemoryCache::new()).writes_at(&gate));
    let publisher = ResourcePublisher::new(
        cache.clone(),
        PublisherConfig {
            clock: Arc::new(clock()),
            max_pending_tasks: NonZeroUsize::new(2).unwrap(),
            ..PublisherConfig::default()
        },
    );
    let keys: Vec<ResourceKey> = (0..3).map(|i| key("bg", "item", &i.to_string())).collect();
    let first = publisher
        .spawn_publish(update(&keys[0], 0, opts("s")))
        .await;
    let second = publisher
        .spawn_publish(update(&keys[1], 1, opts("s")))
        .await;
    assert_eq!(publisher.available_task_slots(), 0);

    let third = publisher.spawn_publish(update(&keys[2], 2, opts("s")));
    tokio::pin!(third);
    let started = tokio::select! {
        biased;
        handle = &mut third => Some(handle),
        () = std::future::ready(()) => None,
    };
    assert!(started.is_none(), "a third publication waits for a slot");

    gate.open();
    assert!(first.await.unwrap().unwrap().is_published());
    assert!(second.await.unwrap().unwrap().is_published());
    let third = third.await;
    assert!(third.await.unwrap().unwrap().is_published());
    assert_eq!(publisher.available_task_slots(), 2);
    for k in &keys {
        assert!(cache
            .inner()
            .get(k, forever(), at(NOW))
            .await
            .unwrap()
            .is_some());
    }
}
