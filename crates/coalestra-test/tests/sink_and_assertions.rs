//! Behaviour of the recording sink, the key shorthand and the snapshot
//! assertions (including their failure messages).

use std::time::Duration;

use coalestra_core::value::ValueParts;
use coalestra_core::{
    Event, EventSink, MetricsSink, Payload, ResourceError, ResourceKey, Snapshot, SnapshotValue,
    SourceError, SourceFailure,
};
use coalestra_test::{
    assert_failed, assert_fresh, assert_from_cache, assert_not_from_cache, assert_stale,
    assert_value, key, Clock, IntoResourceKey, ManualClock, MetricValue, RecordingSink, Timestamp,
};

#[test]
fn the_sink_records_events_in_order_and_filters_them_by_name() {
    let sink = RecordingSink::new();
    let engine_side = sink.clone();
    engine_side.emit(Event::new("cache_hit").field("resource", "ns:a"));
    engine_side.emit(Event::new("resource_resolved").field("source", "rest"));
    engine_side.emit(Event::new("cache_hit").field("resource", "ns:b"));

    assert_eq!(
        sink.event_names(),
        vec!["cache_hit", "resource_resolved", "cache_hit"]
    );
    let hits = sink.events_named("cache_hit");
    assert_eq!(hits.len(), 2);
    assert_eq!(
        hits[1].get("resource").and_then(|v| v.as_str()),
        Some("ns:b")
    );
    assert!(sink.events_named("missing").is_empty());
    assert!(EventSink::enabled(&sink));
}

#[test]
fn counters_sum_increments_matching_a_label_subset() {
    let sink = RecordingSink::new();
    let labels_ok = [("status", "success"), ("source", "rest")];
    let labels_failed = [("status", "failure"), ("source", "rest")];
    sink.increment("source_fetch_total", &labels_ok, 2);
    sink.increment("source_fetch_total", &labels_failed, 1);
    sink.increment(
        "source_fetch_total",
        &[("status", "success"), ("source", "db")],
        5,
    );
    sink.increment("other_total", &labels_ok, 100);
    sink.observe("source_fetch_total", &labels_ok, 12.5);

    assert_eq!(sink.counter("source_fetch_total", &[]), 8);
    assert_eq!(sink.counter("source_fetch_total", &[("source", "rest")]), 3);
    assert_eq!(
        sink.counter("source_fetch_total", &[("status", "success")]),
        7
    );
    assert_eq!(sink.counter("source_fetch_total", &labels_failed), 1);
    assert_eq!(
        sink.counter("source_fetch_total", &[("source", "nowhere")]),
        0
    );
    assert_eq!(sink.counter("missing_total", &[]), 0);
    assert_eq!(
        sink.metric_names(),
        vec!["source_fetch_total", "other_total"]
    );
    assert_eq!(sink.samples()[4].value, MetricValue::Observation(12.5));
    assert!(MetricsSink::enabled(&sink));
}

#[test]
fn observations_and_label_sets_are_kept_per_metric() {
    let sink = RecordingSink::new();
    sink.observe("source_fetch_latency_ms", &[("source", "rest")], 1.5);
    sink.increment("source_fetch_total", &[("source", "rest")], 1);
    sink.observe("source_fetch_latency_ms", &[("source", "db")], 4.0);

    assert_eq!(sink.observations("source_fetch_latency_ms"), vec![1.5, 4.0]);
    assert!(sink.observations("source_fetch_total").is_empty());
    let labels = sink.metric_labels("source_fetch_latency_ms");
    assert_eq!(
        labels,
        vec![
            vec![("source".to_owned(), "rest".to_owned())],
            vec![("source".to_owned(), "db".to_owned())],
        ]
    );
    assert_eq!(sink.samples()[2].label("source"), Some("db"));
    assert_eq!(sink.samples()[2].label("status"), None);

    sink.clear();
    assert!(sink.samples().is_empty());
    assert!(sink.events().is_empty());
}

#[test]
fn key_parses_rendered_keys_and_accepts_text_where_keys_are_expected() {
    let k = key(" market : candles : BTCUSDT?limit=500&interval=1m");
    assert_eq!(k.namespace(), "market");
    assert_eq!(k.subject(), "BTCUSDT");
    assert_eq!(k.qualifier("limit"), Some("500"));
    let from_text: ResourceKey = "market:candles:BTCUSDT?interval=1m&limit=500".into_resource_key();
    assert_eq!(from_text, k);
    assert_eq!((&k).into_resource_key(), k);
    assert_eq!(String::from("a:b").into_resource_key(), key("a:b"));
}

#[test]
#[should_panic(expected = "invalid resource key \"nocolon\" in test")]
fn key_panics_with_the_offending_text() {
    let _ = key("nocolon");
}

#[test]
fn the_manual_clock_is_re_exported() {
    let clock = ManualClock::new(100.0);
    clock.advance(Duration::from_millis(1500));
    assert_eq!(clock.now(), Timestamp::from_secs(101.5));
}

fn value(k: &ResourceKey, payload: Payload) -> SnapshotValue {
    SnapshotValue::from_parts(ValueParts::new(
        k.clone(),
        payload,
        "rest",
        Timestamp::from_secs(10.0),
    ))
}

/// `ns:fresh` = 1.5 fetched, `ns:cached` = 2.5 from cache and stale,
/// `ns:failed` failed, `ns:text` = "hello".
fn snapshot() -> Snapshot {
    let failure = SourceFailure::new("rest", SourceError::unavailable("down"), 2);
    Snapshot::parts("snap-1", Timestamp::from_secs(11.0))
        .value(value(&key("ns:fresh"), Payload::new(1.5_f64)))
        .value(
            value(&key("ns:cached"), Payload::new(2.5_f64))
                .as_cached(Timestamp::from_secs(20.0), true),
        )
        .value(value(&key("ns:text"), Payload::new("hello".to_owned())))
        .error(ResourceError::unresolved(key("ns:failed"), vec![failure]))
        .finish()
}

#[test]
fn passing_assertions_return_what_they_checked() {
    let s = snapshot();
    assert_value(&s, &key("ns:fresh"), &1.5_f64);
    assert_value(&s, &key("ns:text"), &"hello".to_owned());
    let error = assert_failed(&s, &key("ns:failed"));
    assert_eq!(error.failures()[0].attempts, 2);
    assert!(assert_from_cache(&s, &key("ns:cached")).is_stale());
    assert_eq!(assert_stale(&s, &key("ns:cached")).source(), "rest");
    assert!(!assert_not_from_cache(&s, &key("ns:fresh")).is_from_cache());
    assert!(!assert_fresh(&s, &key("ns:fresh")).is_stale());
}

#[test]
#[should_panic(expected = "expected: 9.0")]
fn assert_value_reports_both_values() {
    assert_value(&snapshot(), &key("ns:fresh"), &9.0_f64);
}

#[test]
#[should_panic(expected = "it holds a f64, expected a u32")]
fn assert_value_reports_both_types() {
    assert_value(&snapshot(), &key("ns:fresh"), &1_u32);
}

#[test]
#[should_panic(expected = "ns:failed did not resolve: unable to resolve ns:failed")]
fn assert_value_reports_the_failure_of_a_failed_key() {
    assert_value(&snapshot(), &key("ns:failed"), &1.5_f64);
}

#[test]
#[should_panic(expected = "resolved [ns:fresh, ns:cached, ns:text], failed [ns:failed]")]
fn assert_value_lists_the_snapshot_for_a_missing_key() {
    assert_value(&snapshot(), &key("ns:absent"), &1.5_f64);
}

#[test]
#[should_panic(expected = "assert_failed failed: ns:fresh resolved from source rest")]
fn assert_failed_rejects_a_resolved_key() {
    assert_failed(&snapshot(), &key("ns:fresh"));
}

#[test]
#[should_panic(expected = "assert_failed failed: ns:absent is not in the snapshot")]
fn assert_failed_rejects_a_missing_key() {
    assert_failed(&snapshot(), &key("ns:absent"));
}

#[test]
#[should_panic(expected = "assert_from_cache failed: ns:fresh was fetched from source rest")]
fn assert_from_cache_rejects_a_fetched_value() {
    assert_from_cache(&snapshot(), &key("ns:fresh"));
}

#[test]
#[should_panic(expected = "assert_not_from_cache failed: ns:cached was served from the cache")]
fn assert_not_from_cache_rejects_a_cached_value() {
    assert_not_from_cache(&snapshot(), &key("ns:cached"));
}

#[test]
#[should_panic(expected = "assert_stale failed: ns:fresh was delivered fresh")]
fn assert_stale_rejects_a_fresh_value() {
    assert_stale(&snapshot(), &key("ns:fresh"));
}

#[test]
#[should_panic(expected = "assert_fresh failed: ns:cached was delivered stale")]
fn assert_fresh_rejects_a_stale_value() {
    assert_fresh(&snapshot(), &key("ns:cached"));
}

#[test]
#[should_panic(expected = "assert_stale failed: ns:failed did not resolve")]
fn value_assertions_report_a_failed_key() {
    assert_stale(&snapshot(), &key("ns:failed"));
}
