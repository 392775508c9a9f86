//! The in-memory sinks: recording, filtering and clearing.

use std::sync::Arc;
use std::thread;

use coalestra_core::{Event, EventSink, MetadataValue, MetricsSink};
use coalestra_observability::{MemoryEventSink, MemoryMetricsSink};

#[test]
fn event_sink_records_events_in_emission_order() {
    let sink = MemoryEventSink::new();
    assert!(sink.is_empty());
    sink.emit(Event::new("cache_hit").field("resource", "market:price:BTC"));
    sink.emit(Event::new("source_failed").field("source", "rest"));
    sink.emit(Event::new("cache_hit").field("resource", "market:price:ETH"));

    assert_eq!(sink.len(), 3);
    assert_eq!(sink.names(), ["cache_hit", "source_failed", "cache_hit"]);
    let hits = sink.events_named("cache_hit");
    assert_eq!(hits.len(), 2);
    assert_eq!(
        hits[1].get("resource"),
        Some(&MetadataValue::from("market:price:ETH"))
    );
    assert!(sink.events_named("snapshot_built").is_empty());
    assert!(sink.enabled());
}

#[test]
fn event_sink_clones_share_the_recording_and_clear_forgets_it() {
    let sink = MemoryEventSink::new();
    let handed_out: Arc<dyn EventSink> = Arc::new(sink.clone());
    handed_out.emit(Event::new("resource_invalidated"));
    assert_eq!(sink.names(), ["resource_invalidated"]);

    sink.clear();
    assert!(sink.is_empty());
    assert!(sink.events().is_empty());
}

#[test]
fn event_sink_is_shared_safely_between_threads() {
    let sink = MemoryEventSink::new();
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let sink = sink.clone();
            thread::spawn(move || {
                for _ in 0..250 {
                    sink.emit(Event::new("cache_hit"));
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().expect("writer thread");
    }
    assert_eq!(sink.len(), 1_000);
}

#[test]
fn counters_sum_per_label_set_and_match_label_subsets() {
    let metrics = MemoryMetricsSink::new();
    let fresh = [
        ("status", "fresh"),
        ("resource_namespace", "market"),
        ("resource_name", "price"),
    ];
    let miss = [
        ("status", "miss"),
        ("resource_namespace", "market"),
        ("resource_name", "price"),
    ];
    metrics.increment("cache_access_total", &fresh, 1);
    metrics.increment("cache_access_total", &fresh, 2);
    metrics.increment("cache_access_total", &miss, 4);
    metrics.increment("snapshot_build_total", &[("status", "success")], 1);

    assert_eq!(metrics.counter("cache_access_total", &[]), 7);
    assert_eq!(
        metrics.counter("cache_access_total", &[("status", "fresh")]),
        3
    );
    assert_eq!(
        metrics.counter(
            "cache_access_total",
            &[("resource_name", "price"), ("status", "miss")]
        ),
        4
    );
    assert_eq!(
        metrics.counter("cache_access_total", &[("status", "stale")]),
        0
    );
    assert_eq!(
        metrics.counter("cache_access_total", &[("source", "rest")]),
        0
    );
    assert_eq!(metrics.counter("never_recorded", &[]), 0);
}

#[test]
fn label_order_does_not_split_a_series() {
    let metrics = MemoryMetricsSink::new();
    metrics.increment(
        "source_fetch_total",
        &[("status", "success"), ("source", "rest")],
        1,
    );
    metrics.increment(
        "source_fetch_total",
        &[("source", "rest"), ("status", "success")],
        1,
    );

    let series = metrics.series("source_fetch_total");
    assert_eq!(series.len(), 1);
    let (labels, total) = &series[0];
    assert_eq!(
        labels,
        &vec![
            ("source", "rest".to_owned()),
            ("status", "success".to_owned())
        ]
    );
    assert_eq!(*total, 2);
}

#[test]
fn series_lists_every_label_set_of_a_counter() {
    let metrics = MemoryMetricsSink::new();
    metrics.increment("snapshot_build_total", &[("status", "success")], 3);
    metrics.increment("snapshot_build_total", &[("status", "error")], 1);

    let series = metrics.series("snapshot_build_total");
    assert_eq!(
        series,
        vec![
            (vec![("status", "error".to_owned())], 1),
            (vec![("status", "success".to_owned())], 3),
        ]
    );
    assert!(metrics.series("cache_access_total").is_empty());
}

#[test]
fn observations_keep_every_value_in_order() {
    let metrics = MemoryMetricsSink::new();
    metrics.observe("source_fetch_latency_ms", &[("source", "rest")], 12.5);
    metrics.observe("source_fetch_latency_ms", &[("source", "cache")], 0.5);
    metrics.observe("source_fetch_latency_ms", &[("source", "rest")], 7.0);
    metrics.observe("source_batch_size", &[("source", "rest")], 3.0);

    assert_eq!(
        metrics.observations("source_fetch_latency_ms"),
        [12.5, 0.5, 7.0]
    );
    assert_eq!(
        metrics.observations_with("source_fetch_latency_ms", &[("source", "rest")]),
        [12.5, 7.0]
    );
    assert_eq!(
        metrics.observation_series("source_batch_size"),
        vec![(vec![("source", "rest".to_owned())], 3.0)]
    );
    // Observations are not counters.
    assert_eq!(metrics.counter("source_fetch_latency_ms", &[]), 0);
}

#[test]
fn label_names_and_metric_names_are_sorted_and_unique() {
    let metrics = MemoryMetricsSink::new();
    metrics.increment(
        "resource_publish_total",
        &[("status", "published"), ("source", "feed")],
        1,
    );
    metrics.increment(
        "resource_publish_total",
        &[("status", "ignored_older"), ("resource_name", "price")],
        1,
    );
    metrics.observe("source_capacity_wait_ms", &[("source", "feed")], 1.0);

    assert_eq!(
        metrics.label_names("resource_publish_total"),
        ["resource_name", "source", "status"]
    );
    assert_eq!(metrics.label_names("source_capacity_wait_ms"), ["source"]);
    assert!(metrics.label_names("unknown").is_empty());
    assert_eq!(
        metrics.metric_names(),
        ["resource_publish_total", "source_capacity_wait_ms"]
    );
}

#[test]
fn metrics_clones_share_the_recording_and_clear_forgets_it() {
    let metrics = MemoryMetricsSink::new();
    let handed_out: Arc<dyn MetricsSink> = Arc::new(metrics.clone());
    handed_out.increment("resource_invalidation_total", &[], 2);
    handed_out.observe("source_batch_size", &[], 4.0);
    assert_eq!(metrics.counter("resource_invalidation_total", &[]), 2);
    assert!(metrics.enabled());

    metrics.clear();
    assert_eq!(metrics.counter("resource_invalidation_total", &[]), 0);
    assert!(metrics.observations("source_batch_size").is_empty());
    assert!(metrics.metric_names().is_empty());
}

#[test]
fn counters_saturate_instead_of_overflowing() {
    let metrics = MemoryMetricsSink::new();
    metrics.increment("snapshot_build_total", &[], u64::MAX);
    metrics.increment("snapshot_build_total", &[], 1);
    assert_eq!(metrics.counter("snapshot_build_total", &[]), u64::MAX);
}
