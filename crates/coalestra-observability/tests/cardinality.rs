//! The cardinality guard: only low-cardinality labels reach a metric.

use std::sync::Arc;

use coalestra_core::{MetricsSink, NullSink, ResourceKey};
use coalestra_observability::{
    allowed_metric_labels, is_allowed_metric_label, resource_metric_labels, CardinalityGuard,
    MemoryMetricsSink,
};

fn guarded() -> (MemoryMetricsSink, CardinalityGuard) {
    let memory = MemoryMetricsSink::new();
    let guard = CardinalityGuard::new(Arc::new(memory.clone()));
    (memory, guard)
}

#[test]
fn the_allow_list_is_exactly_the_low_cardinality_labels() {
    let mut allowed = allowed_metric_labels().to_vec();
    allowed.sort_unstable();
    assert_eq!(
        allowed,
        [
            "outcome",
            "phase",
            "reason",
            "resource_name",
            "resource_namespace",
            "rule",
            "source",
            "status"
        ]
    );
    for label in ["subject", "resource", "key", "qualifiers", "venue"] {
        assert!(
            !is_allowed_metric_label(label),
            "{label} must not be allowed"
        );
    }
}

#[test]
fn subject_resource_and_key_labels_are_dropped_and_counted() {
    let (memory, guard) = guarded();
    guard.increment(
        "resource_publish_total",
        &[
            ("status", "published"),
            ("source", "feed"),
            ("resource_namespace", "market"),
            ("resource_name", "price"),
            ("subject", "BTCUSDT"),
            ("resource", "market:price:BTCUSDT?venue=spot"),
            ("key", "market:price:BTCUSDT"),
        ],
        1,
    );

    assert_eq!(
        memory.label_names("resource_publish_total"),
        ["resource_name", "resource_namespace", "source", "status"]
    );
    assert_eq!(
        memory.counter("resource_publish_total", &[("status", "published")]),
        1
    );
    assert_eq!(guard.dropped_labels(), 3);
    assert_eq!(guard.dropped_label_names(), ["key", "resource", "subject"]);
}

#[test]
fn observations_are_guarded_too() {
    let (memory, guard) = guarded();
    guard.observe(
        "source_fetch_latency_ms",
        &[("source", "rest"), ("subject", "ETHUSDT")],
        3.5,
    );
    assert_eq!(
        memory.observation_series("source_fetch_latency_ms"),
        vec![(vec![("source", "rest".to_owned())], 3.5)]
    );
    assert_eq!(guard.dropped_labels(), 1);
}

#[test]
fn allowed_labels_pass_untouched() {
    let (memory, guard) = guarded();
    let labels = [
        ("status", "queue_timeout"),
        ("source", "rest"),
        ("reason", "snapshot_deadline"),
        ("outcome", "completed_late"),
        ("rule", "observation_skew"),
        ("phase", "session_resolve"),
    ];
    guard.increment("source_batch_call_total", &labels, 2);

    assert_eq!(
        memory.counter("source_batch_call_total", &labels),
        2,
        "every allowed label is kept with its value"
    );
    assert_eq!(guard.dropped_labels(), 0);
    assert!(guard.dropped_label_names().is_empty());
}

#[test]
fn no_label_value_carries_a_subject_or_qualifier() {
    let (memory, guard) = guarded();
    for text in [
        "market:price:BTCUSDT?venue=spot&account=a",
        "market:price:ETHUSDT?venue=futures",
    ] {
        let key = ResourceKey::parse(text).expect("valid key");
        let mut labels = resource_metric_labels(&key).to_vec();
        labels.push(("status", "miss"));
        labels.push(("subject", key.subject()));
        guard.increment("cache_access_total", &labels, 1);
    }

    let series = memory.series("cache_access_total");
    assert_eq!(series.len(), 1, "both subjects share one series");
    let (labels, total) = &series[0];
    assert_eq!(*total, 2);
    for (_, value) in labels {
        for forbidden in ["BTCUSDT", "ETHUSDT", "spot", "futures"] {
            assert!(
                !value.contains(forbidden),
                "label value {value} leaks {forbidden}"
            );
        }
    }
}

#[test]
fn resource_labels_are_namespace_and_name_only() {
    let btc = ResourceKey::parse("market:price:BTCUSDT?venue=spot&account=a").expect("key");
    let eth = ResourceKey::parse("market:price:ETHUSDT").expect("key");
    let expected = [("resource_namespace", "market"), ("resource_name", "price")];
    assert_eq!(resource_metric_labels(&btc), expected);
    assert_eq!(resource_metric_labels(&eth), expected);
}

#[test]
fn the_guard_reports_the_inner_sink_enabled_state() {
    let (_, guard) = guarded();
    assert!(guard.enabled());
    let silent = CardinalityGuard::new(Arc::new(NullSink));
    assert!(!silent.enabled());
}

#[test]
fn clones_share_the_dropped_counts() {
    let (_, guard) = guarded();
    let clone = guard.clone();
    clone.increment("resource_refresh_total", &[("subject", "x")], 1);
    assert_eq!(guard.dropped_labels(), 1);
    assert!(Arc::ptr_eq(guard.inner(), clone.inner()));
}
