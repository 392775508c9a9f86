//! Observability: events, metrics in Prometheus text format, and health.
//!
//! - Metrics go through a [`CardinalityGuard`] (no subject ever becomes a
//!   label) to two sinks at once: a [`MemoryMetricsSink`] queried in code,
//!   and the [`MetricsFacadeSink`], which forwards to whatever `metrics`
//!   recorder is installed. A tiny recorder below renders what it receives
//!   in the Prometheus text exposition format, as a `/metrics` endpoint
//!   would serve it.
//! - Events go to a JSON-lines log (standing in for a file). That sink does
//!   not declare itself non-blocking, so the builder puts a bounded buffer
//!   with its own delivery thread in front of it; health reports the buffer.
//! - `builder.health().to_json()` is printed at the end.
//!
//! Run with `cargo run -p coalestra --example observability`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use coalestra::prelude::*;
use coalestra::{
    CardinalityGuard, Event, EventSink, MemoryMetricsSink, MetricsFacadeSink, MetricsSink, Payload,
};

fn key(namespace: &str, name: &str, subject: &str) -> ResourceKey {
    ResourceKey::new(namespace, name, subject).expect("valid key")
}

// ---------------------------------------------------------------------------
// A minimal `metrics` recorder rendering the Prometheus text format.
// ---------------------------------------------------------------------------

type Series = (String, Vec<(String, String)>);

/// Histogram buckets in milliseconds (upper bounds).
const BUCKETS: [f64; 4] = [1.0, 10.0, 50.0, 250.0];

#[derive(Default)]
struct HistogramData {
    state: Mutex<(Vec<u64>, u64, f64)>, // (bucket counts, count, sum)
}

impl metrics::HistogramFn for HistogramData {
    fn record(&self, value: f64) {
        let mut state = self.state.lock().expect("histogram lock");
        if state.0.is_empty() {
            state.0 = vec![0; BUCKETS.len()];
        }
        for (bucket, bound) in state.0.iter_mut().zip(BUCKETS) {
            if value <= bound {
                *bucket += 1;
            }
        }
        state.1 += 1;
        state.2 += value;
    }
}

#[derive(Default)]
struct Registry {
    counters: BTreeMap<Series, Arc<AtomicU64>>,
    histograms: BTreeMap<Series, Arc<HistogramData>>,
}

/// Shares one registry between the installed recorder and the renderer.
#[derive(Clone, Default)]
struct PrometheusRecorder {
    registry: Arc<Mutex<Registry>>,
}

fn series(key: &metrics::Key) -> Series {
    let labels = key
        .labels()
        .map(|l| (l.key().to_owned(), l.value().to_owned()))
        .collect();
    (key.name().to_owned(), labels)
}

impl metrics::Recorder for PrometheusRecorder {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }

    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let mut registry = self.registry.lock().expect("registry lock");
        let counter = registry.counters.entry(series(key)).or_default();
        metrics::Counter::from_arc(Arc::clone(counter))
    }

    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        // Coalestra reports counters and observations only.
        metrics::Gauge::noop()
    }

    fn register_histogram(
        &self,
        key: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        let mut registry = self.registry.lock().expect("registry lock");
        let histogram = registry.histograms.entry(series(key)).or_default();
        metrics::Histogram::from_arc(Arc::clone(histogram))
    }
}

fn render_labels(labels: &[(String, String)], extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

impl PrometheusRecorder {
    /// The registry in the Prometheus text exposition format.
    fn render(&self) -> String {
        let registry = self.registry.lock().expect("registry lock");
        let mut out = String::new();
        let mut last = "";
        for ((name, labels), value) in &registry.counters {
            if name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let _ = writeln!(
                out,
                "{name}{} {}",
                render_labels(labels, None),
                value.load(Ordering::Relaxed)
            );
        }
        let mut last = "";
        for ((name, labels), data) in &registry.histograms {
            if name != last {
                let _ = writeln!(out, "# TYPE {name} histogram");
                last = name;
            }
            let (buckets, count, sum) = &*data.state.lock().expect("histogram lock");
            for (bound, hits) in BUCKETS.iter().zip(buckets) {
                let le = Some(("le", bound.to_string()));
                let _ = writeln!(out, "{name}_bucket{} {hits}", render_labels(labels, le));
            }
            let inf = Some(("le", "+Inf".to_owned()));
            let _ = writeln!(out, "{name}_bucket{} {count}", render_labels(labels, inf));
            let _ = writeln!(out, "{name}_sum{} {sum:.3}", render_labels(labels, None));
            let _ = writeln!(out, "{name}_count{} {count}", render_labels(labels, None));
        }
        out
    }
}

// ---------------------------------------------------------------------------
// Sinks written for this program.
// ---------------------------------------------------------------------------

/// Sends every metric to several sinks.
#[derive(Debug)]
struct FanOut(Vec<Arc<dyn MetricsSink>>);

impl MetricsSink for FanOut {
    fn increment(&self, name: &'static str, labels: &[(&'static str, &str)], value: u64) {
        for sink in &self.0 {
            sink.increment(name, labels, value);
        }
    }
    fn observe(&self, name: &'static str, labels: &[(&'static str, &str)], value: f64) {
        for sink in &self.0 {
            sink.observe(name, labels, value);
        }
    }
    fn is_non_blocking(&self) -> bool {
        self.0.iter().all(|sink| sink.is_non_blocking())
    }
}

/// Appends one JSON object per event to a log "file" (a shared buffer here).
/// It does not claim to be non-blocking, so the builder buffers it.
#[derive(Debug, Clone, Default)]
struct JsonLinesLog {
    lines: Arc<Mutex<Vec<String>>>,
}

impl EventSink for JsonLinesLog {
    fn emit(&self, event: Event) {
        let mut line = format!("{{\"event\":\"{}\"", event.name);
        for (name, value) in &event.fields {
            let rendered = match value {
                coalestra::MetadataValue::Text(text) => format!("{:?}", &**text),
                other => other.to_string(),
            };
            let _ = write!(line, ",\"{name}\":{rendered}");
        }
        line.push('}');
        self.lines.lock().expect("log lock").push(line);
    }
}

// ---------------------------------------------------------------------------

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let recorder = PrometheusRecorder::default();
    metrics::set_global_recorder(recorder.clone()).expect("no other recorder installed");

    let memory = MemoryMetricsSink::new();
    let metrics_sink = CardinalityGuard::new(Arc::new(FanOut(vec![
        Arc::new(memory.clone()),
        Arc::new(MetricsFacadeSink::new()),
    ])));
    let log = JsonLinesLog::default();

    let quotes = FnSource::new("quotes", |key: ResourceKey, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(8)).await;
        match key.subject() {
            "DOGEUSDT" => Err(SourceError::unavailable("upstream 503")),
            s => Ok(SourceOutput::new(100.0 + s.len() as f64)),
        }
    })
    .with_supports(|k| k.namespace() == "market");
    let reference = FnBatchSource::new("reference-db", |keys: Vec<ResourceKey>, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(4)).await;
        Ok(keys
            .into_iter()
            .map(|k| (k, SourceOutput::new(0.01_f64)))
            .collect())
    })
    .with_supports(|k| k.namespace() == "instrument");

    let builder = SnapshotBuilder::builder([quotes.into(), reference.into()])
        .metrics(Arc::new(metrics_sink))
        .events(Arc::new(log.clone()))
        .default_policy(FreshnessPolicy::new(
            Duration::from_secs(5),
            Duration::from_secs(30),
        )?)
        .build()?;

    // A little traffic: misses, hits, a batch, an optional failure and a
    // publication.
    let symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT"];
    let mut keys: Vec<ResourceKey> = symbols.iter().map(|s| key("market", "price", s)).collect();
    keys.extend(symbols.iter().map(|s| key("instrument", "tick_size", s)));
    for _ in 0..3 {
        builder.build(keys.clone()).await?;
    }
    let request = SnapshotRequest::new(
        [key("market", "price", "BTCUSDT")],
        [key("market", "price", "DOGEUSDT")],
    )?;
    let partial = builder.build_request(&request, BuildOptions::new()).await?;
    println!(
        "built {} snapshots; the last one has {} value(s) and {} optional error(s)",
        4,
        partial.len(),
        partial.errors().len()
    );
    builder
        .publisher()
        .publish(
            key("market", "price", "ETHUSDT"),
            Payload::new(3_412.0_f64),
            PublishOptions::new("ticker-stream"),
        )
        .await?;

    // Counters and observations, queried in code.
    println!("\n== in-memory metrics");
    println!(
        "  cache_access_total: fresh={} miss={}",
        memory.counter("cache_access_total", &[("status", "fresh")]),
        memory.counter("cache_access_total", &[("status", "miss")])
    );
    println!(
        "  snapshot_build_total: success={} error={}",
        memory.counter("snapshot_build_total", &[("status", "success")]),
        memory.counter("snapshot_build_total", &[("status", "error")])
    );
    let latencies = memory.observations_with("source_fetch_latency_ms", &[("source", "quotes")]);
    if !latencies.is_empty() {
        let mean = latencies.iter().sum::<f64>() / latencies.len() as f64;
        println!(
            "  quotes latency: {} calls, mean {mean:.1} ms",
            latencies.len()
        );
    }
    println!("  metric names: {}", memory.metric_names().join(", "));

    // Health: an aggregate view, taken without calling any source.
    let health = builder.health();
    println!("\n== builder.health().to_json()");
    println!("{:#}", health.to_json());
    if let Some(assessment) = &health.assessment {
        println!("assessment: {:?}", assessment.severity);
    }

    // Closing drains the event buffer, so the log is complete afterwards.
    builder.close().await;
    let lines = log.lines.lock().expect("log lock").clone();
    println!("\n== event log ({} lines, last 6)", lines.len());
    for line in lines.iter().rev().take(6).rev() {
        println!("  {line}");
    }

    println!("\n== GET /metrics (Prometheus text format)");
    print!("{}", recorder.render());
    Ok(())
}
