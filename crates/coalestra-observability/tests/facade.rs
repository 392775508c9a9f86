//! The metrics facade sink, observed through an in-test recorder.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use coalestra_core::MetricsSink;
use coalestra_observability::{CardinalityGuard, MetricsFacadeSink, DEFAULT_METRIC_PREFIX};
use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// A metric identity: the exported name and its labels in order.
type Series = (String, Vec<(String, String)>);

#[derive(Debug, Default)]
struct CounterCell(AtomicU64);

impl CounterFn for CounterCell {
    fn increment(&self, value: u64) {
        self.0.fetch_add(value, Ordering::Relaxed);
    }
    fn absolute(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct HistogramCell(Mutex<Vec<f64>>);

impl HistogramFn for HistogramCell {
    fn record(&self, value: f64) {
        self.0.lock().expect("histogram lock").push(value);
    }
}

/// Keeps one cell per series so repeated registrations accumulate.
#[derive(Debug, Default)]
struct RecordingRecorder {
    counters: Mutex<BTreeMap<Series, Arc<CounterCell>>>,
    histograms: Mutex<BTreeMap<Series, Arc<HistogramCell>>>,
}

fn series(key: &Key) -> Series {
    let labels = key
        .labels()
        .map(|label| (label.key().to_owned(), label.value().to_owned()))
        .collect();
    (key.name().to_owned(), labels)
}

impl RecordingRecorder {
    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
        let wanted = (name.to_owned(), owned(labels));
        let counters = self.counters.lock().expect("counters lock");
        counters
            .get(&wanted)
            .map(|cell| cell.0.load(Ordering::Relaxed))
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Option<Vec<f64>> {
        let wanted = (name.to_owned(), owned(labels));
        let histograms = self.histograms.lock().expect("histograms lock");
        histograms
            .get(&wanted)
            .map(|cell| cell.0.lock().expect("histogram lock").clone())
    }

    fn names(&self) -> Vec<String> {
        let counters = self.counters.lock().expect("counters lock");
        let histograms = self.histograms.lock().expect("histograms lock");
        counters
            .keys()
            .chain(histograms.keys())
            .map(|(name, _)| name.clone())
            .collect()
    }
}

fn owned(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

impl Recorder for RecordingRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().expect("counters lock");
        let cell = counters.entry(series(key)).or_default();
        Counter::from_arc(Arc::clone(cell))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().expect("histograms lock");
        let cell = histograms.entry(series(key)).or_default();
        Histogram::from_arc(Arc::clone(cell))
    }
}

#[test]
fn counters_are_forwarded_with_the_default_prefix_and_labels() {
    let recorder = RecordingRecorder::default();
    let sink = MetricsFacadeSink::new();
    assert_eq!(sink.prefix(), DEFAULT_METRIC_PREFIX);

    metrics::with_local_recorder(&recorder, || {
        sink.increment("snapshot_build_total", &[("status", "success")], 1);
        sink.increment("snapshot_build_total", &[("status", "success")], 2);
        sink.increment("snapshot_build_total", &[("status", "error")], 1);
    });

    assert_eq!(
        recorder.counter("coalestra_snapshot_build_total", &[("status", "success")]),
        Some(3)
    );
    assert_eq!(
        recorder.counter("coalestra_snapshot_build_total", &[("status", "error")]),
        Some(1)
    );
    assert_eq!(
        recorder.counter("snapshot_build_total", &[("status", "success")]),
        None,
        "the unprefixed name is never exported"
    );
}

#[test]
fn observations_become_histogram_records() {
    let recorder = RecordingRecorder::default();
    let sink = MetricsFacadeSink::new();

    metrics::with_local_recorder(&recorder, || {
        sink.observe("source_fetch_latency_ms", &[("source", "rest")], 12.5);
        sink.observe("source_fetch_latency_ms", &[("source", "rest")], 3.0);
    });

    assert_eq!(
        recorder.histogram("coalestra_source_fetch_latency_ms", &[("source", "rest")]),
        Some(vec![12.5, 3.0])
    );
}

#[test]
fn label_order_is_kept() {
    let recorder = RecordingRecorder::default();
    let sink = MetricsFacadeSink::new();
    let labels = [
        ("status", "fresh"),
        ("resource_namespace", "market"),
        ("resource_name", "price"),
    ];

    metrics::with_local_recorder(&recorder, || {
        sink.increment("cache_access_total", &labels, 1);
    });

    assert_eq!(
        recorder.counter("coalestra_cache_access_total", &labels),
        Some(1)
    );
}

#[test]
fn the_prefix_can_be_changed_or_removed() {
    let recorder = RecordingRecorder::default();
    let custom = MetricsFacadeSink::with_prefix("svc_");
    let bare = MetricsFacadeSink::without_prefix();
    assert_eq!(bare.prefix(), "");
    assert_eq!(
        &*custom.exported_name("resource_refresh_total"),
        "svc_resource_refresh_total"
    );

    metrics::with_local_recorder(&recorder, || {
        custom.increment("resource_refresh_total", &[], 1);
        bare.increment("resource_invalidation_total", &[], 1);
        custom.clone().observe("source_batch_size", &[], 2.0);
    });

    assert_eq!(recorder.counter("svc_resource_refresh_total", &[]), Some(1));
    assert_eq!(
        recorder.counter("resource_invalidation_total", &[]),
        Some(1)
    );
    assert_eq!(
        recorder.histogram("svc_source_batch_size", &[]),
        Some(vec![2.0])
    );
}

#[test]
fn a_guarded_facade_never_exports_a_subject() {
    let recorder = RecordingRecorder::default();
    let sink = CardinalityGuard::new(Arc::new(MetricsFacadeSink::new()));

    metrics::with_local_recorder(&recorder, || {
        sink.increment(
            "resource_invalidation_total",
            &[
                ("resource_namespace", "market"),
                ("resource_name", "price"),
                ("subject", "BTCUSDT"),
            ],
            1,
        );
    });

    assert_eq!(
        recorder.counter(
            "coalestra_resource_invalidation_total",
            &[("resource_namespace", "market"), ("resource_name", "price")]
        ),
        Some(1)
    );
    assert_eq!(recorder.names(), ["coalestra_resource_invalidation_total"]);
}

#[test]
fn without_a_recorder_everything_is_discarded() {
    let sink = MetricsFacadeSink::new();
    sink.increment("snapshot_build_total", &[("status", "success")], 1);
    sink.observe("source_batch_size", &[], 1.0);
    assert!(sink.enabled());
}
