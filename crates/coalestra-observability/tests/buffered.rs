//! The buffered sinks: ordering, overflow, flush, close and failures.
//!
//! Inner sinks that must block do so on a [`Gate`] the test opens; the test
//! learns that a delivery has started from an `entered` channel. No test
//! sleeps to wait for a race, and none asserts on elapsed time.

use std::num::NonZeroUsize;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use coalestra_core::{ConfigError, Event, EventSink, MetadataValue, MetricsSink, NullSink};
use coalestra_observability::{
    BufferConfig, BufferedEventSink, BufferedMetricsSink, MemoryEventSink, MemoryMetricsSink,
    OverflowPolicy,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

/// A latch: deliveries wait on it until the test opens it.
#[derive(Debug, Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
}

impl Gate {
    fn wait(&self) {
        let open = self.open.lock().expect("gate lock");
        let _open = self
            .opened
            .wait_while(open, |open| !*open)
            .expect("gate lock");
    }

    fn open(&self) {
        *self.open.lock().expect("gate lock") = true;
        self.opened.notify_all();
    }
}

/// Reports each delivery, waits at the gate, then records the event.
#[derive(Debug)]
struct GatedSink {
    gate: Arc<Gate>,
    entered: UnboundedSender<&'static str>,
    record: MemoryEventSink,
}

impl EventSink for GatedSink {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn emit(&self, event: Event) {
        // The test may have stopped listening; delivery goes on regardless.
        let _ = self.entered.send(event.name);
        self.gate.wait();
        self.record.emit(event);
    }
}

/// Panics on events named `boom`, records the others.
#[derive(Debug, Default)]
struct PanickingSink {
    record: MemoryEventSink,
}

impl EventSink for PanickingSink {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn emit(&self, event: Event) {
        assert!(event.name != "boom", "deliberate failure of a test sink");
        self.record.emit(event);
    }
}

/// Tells the test when the delivery thread has released it.
#[derive(Debug)]
struct DropSignal {
    record: MemoryEventSink,
    dropped: Mutex<mpsc::Sender<()>>,
}

impl EventSink for DropSignal {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn emit(&self, event: Event) {
        self.record.emit(event);
    }
}

impl Drop for DropSignal {
    fn drop(&mut self) {
        let _ = self.dropped.lock().expect("signal lock").send(());
    }
}

struct Gated {
    sink: BufferedEventSink,
    gate: Arc<Gate>,
    entered: UnboundedReceiver<&'static str>,
    record: MemoryEventSink,
}

fn gated(config: BufferConfig) -> Gated {
    let gate = Arc::new(Gate::default());
    let (entered_tx, entered) = unbounded_channel();
    let record = MemoryEventSink::new();
    let inner = GatedSink {
        gate: Arc::clone(&gate),
        entered: entered_tx,
        record: record.clone(),
    };
    let sink = BufferedEventSink::new(Arc::new(inner), config).expect("valid config");
    Gated {
        sink,
        gate,
        entered,
        record,
    }
}

fn bounded(max_pending: usize, overflow: OverflowPolicy) -> BufferConfig {
    BufferConfig::default()
        .with_max_pending(NonZeroUsize::new(max_pending).expect("non-zero"))
        .with_overflow(overflow)
}

const NAMES: [&str; 7] = ["e0", "e1", "e2", "e3", "e4", "e5", "e6"];

/// Emits `e0`, waits until it is being delivered, then emits `e1`..`e6`.
async fn emit_behind_a_blocked_delivery(gated: &mut Gated) {
    gated.sink.emit(Event::new(NAMES[0]));
    assert_eq!(gated.entered.recv().await, Some("e0"));
    for name in &NAMES[1..] {
        gated.sink.emit(Event::new(name));
    }
}

#[test]
fn the_default_config_matches_the_documented_values() {
    let config = BufferConfig::default();
    assert_eq!(config.max_pending.get(), 10_000);
    assert_eq!(config.overflow, OverflowPolicy::DropOldest);
    assert_eq!(config.shutdown_timeout, Duration::from_secs(5));
    assert!(config.validate().is_ok());
}

#[test]
fn a_zero_shutdown_timeout_is_rejected() {
    let config = BufferConfig::default().with_shutdown_timeout(Duration::ZERO);
    let error = BufferedEventSink::new(Arc::new(NullSink), config).expect_err("zero timeout");
    assert_eq!(
        error,
        ConfigError::Zero {
            field: "shutdown_timeout"
        }
    );
    assert!(BufferedMetricsSink::new(Arc::new(NullSink), config).is_err());
}

#[tokio::test(start_paused = true)]
async fn events_are_delivered_in_order_and_flush_waits_for_them() {
    let memory = MemoryEventSink::new();
    let sink = BufferedEventSink::new(
        Arc::new(memory.clone()),
        bounded(32, OverflowPolicy::DropOldest),
    )
    .expect("valid config");
    for index in 0..20_i64 {
        sink.emit(Event::new("cache_hit").field("index", index));
    }
    sink.flush().await;

    let stats = sink.stats();
    assert_eq!(stats.enqueued, 20);
    assert_eq!(stats.delivered, 20);
    assert_eq!(stats.pending, 0);
    assert_eq!(stats.dropped, 0);
    let indices: Vec<i64> = memory
        .events()
        .iter()
        .map(|event| match event.get("index") {
            Some(MetadataValue::Int(index)) => *index,
            other => panic!("unexpected index {other:?}"),
        })
        .collect();
    assert_eq!(indices, (0..20).collect::<Vec<_>>());

    sink.close().await.expect("drained");
    let stats = sink.stats();
    assert!(stats.closed);
    assert!(!stats.worker_alive);
}

#[tokio::test(start_paused = true)]
async fn drop_oldest_keeps_the_newest_records_and_counts_drops() {
    let mut gated = gated(bounded(3, OverflowPolicy::DropOldest));
    emit_behind_a_blocked_delivery(&mut gated).await;

    let stats = gated.sink.stats();
    assert_eq!(stats.enqueued, 7);
    assert_eq!(stats.dropped, 3);
    assert_eq!(stats.pending, 4, "three queued plus one in delivery");
    assert_eq!(stats.peak_pending, 4);
    assert_eq!(stats.max_pending, 3);

    gated.gate.open();
    gated.sink.flush().await;
    assert_eq!(gated.record.names(), ["e0", "e4", "e5", "e6"]);
    assert_eq!(gated.sink.stats().delivered, 4);
}

#[tokio::test(start_paused = true)]
async fn drop_newest_keeps_the_oldest_records_and_counts_drops() {
    let mut gated = gated(bounded(3, OverflowPolicy::DropNewest));
    emit_behind_a_blocked_delivery(&mut gated).await;

    let stats = gated.sink.stats();
    assert_eq!(stats.enqueued, 4, "refused records are never enqueued");
    assert_eq!(stats.dropped, 3);
    assert_eq!(stats.pending, 4);

    gated.gate.open();
    gated.sink.flush().await;
    assert_eq!(gated.record.names(), ["e0", "e1", "e2", "e3"]);
}

#[tokio::test(start_paused = true)]
async fn a_single_slot_queue_reports_pending_beyond_its_bound() {
    let mut gated = gated(bounded(1, OverflowPolicy::DropOldest));
    gated.sink.emit(Event::new("e0"));
    assert_eq!(gated.entered.recv().await, Some("e0"));
    gated.sink.emit(Event::new("e1"));
    gated.sink.emit(Event::new("e2"));

    let stats = gated.sink.stats();
    assert_eq!(stats.pending, 2);
    assert_eq!(stats.dropped, 1);
    assert_eq!(stats.peak_pending, 2);
    assert_eq!(stats.max_pending, 1);

    gated.gate.open();
    gated.sink.close().await.expect("drained");
    assert_eq!(gated.record.names(), ["e0", "e2"]);
    let stats = gated.sink.stats();
    assert_eq!(stats.pending, 0);
    assert!(!stats.is_shutdown_incomplete());
}

#[tokio::test(start_paused = true)]
async fn a_blocked_inner_sink_never_blocks_producers() {
    let mut gated = gated(bounded(8, OverflowPolicy::DropOldest));
    gated.sink.emit(Event::new("first"));
    assert_eq!(gated.entered.recv().await, Some("first"));

    // The inner sink is stuck; every emit still returns.
    for _ in 0..1_000 {
        gated.sink.emit(Event::new("more"));
    }
    let stats = gated.sink.stats();
    assert_eq!(stats.enqueued, 1_001);
    assert_eq!(stats.pending, 9);
    assert_eq!(stats.dropped, 992);
    assert_eq!(stats.delivered, 0);

    gated.gate.open();
    gated.sink.flush().await;
    assert_eq!(gated.record.len(), 9);
}

#[tokio::test(start_paused = true)]
async fn flush_waits_for_the_blocked_delivery() {
    let mut gated = gated(BufferConfig::default());
    for name in &NAMES[..3] {
        gated.sink.emit(Event::new(name));
    }
    assert_eq!(gated.entered.recv().await, Some("e0"));

    let sink = gated.sink.clone();
    let flush = tokio::spawn(async move { sink.flush().await });
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!flush.is_finished(), "flush returned while e0 was stuck");
    assert!(gated.record.is_empty());

    gated.gate.open();
    flush.await.expect("flush task");
    assert_eq!(gated.record.names(), ["e0", "e1", "e2"]);
}

#[tokio::test(start_paused = true)]
async fn flush_does_not_wait_for_records_emitted_after_it() {
    // Only `late` blocks: everything before it flows freely.
    #[derive(Debug)]
    struct HoldsLate {
        gate: Arc<Gate>,
        entered: UnboundedSender<&'static str>,
        record: MemoryEventSink,
    }
    impl EventSink for HoldsLate {
        fn is_non_blocking(&self) -> bool {
            true
        }

        fn emit(&self, event: Event) {
            if event.name == "late" {
                let _ = self.entered.send(event.name);
                self.gate.wait();
            }
            self.record.emit(event);
        }
    }

    let gate = Arc::new(Gate::default());
    let (entered_tx, mut entered) = unbounded_channel();
    let record = MemoryEventSink::new();
    let sink = BufferedEventSink::new(
        Arc::new(HoldsLate {
            gate: Arc::clone(&gate),
            entered: entered_tx,
            record: record.clone(),
        }),
        BufferConfig::default(),
    )
    .expect("valid config");

    sink.emit(Event::new("early"));
    let flush = sink.flush();
    sink.emit(Event::new("late"));
    flush.await;
    assert_eq!(entered.recv().await, Some("late"));
    assert_eq!(record.names(), ["early"]);

    gate.open();
    sink.close().await.expect("drained");
    assert_eq!(record.names(), ["early", "late"]);
}

#[tokio::test(start_paused = true)]
async fn close_drains_the_queue_and_stops_the_worker() {
    let mut gated = gated(BufferConfig::default());
    for name in &NAMES[..5] {
        gated.sink.emit(Event::new(name));
    }
    assert_eq!(gated.entered.recv().await, Some("e0"));

    let sink = gated.sink.clone();
    let close = tokio::spawn(async move { sink.close().await });
    // The virtual clock passing the shutdown timeout does not matter: the
    // close waits in real time.
    tokio::task::yield_now().await;
    tokio::time::advance(Duration::from_secs(60)).await;
    gated.gate.open();

    close.await.expect("close task").expect("drained in time");
    assert_eq!(gated.record.names(), NAMES[..5]);
    let stats = gated.sink.stats();
    assert_eq!(stats.delivered, 5);
    assert_eq!(stats.pending, 0);
    assert!(stats.closed);
    assert!(!stats.worker_alive);
    assert_eq!(stats.shutdown_timeout_count, 0);

    // Closing again is harmless.
    gated.sink.close().await.expect("second close");
    assert_eq!(gated.sink.stats().shutdown_timeout_count, 0);
}

#[tokio::test(start_paused = true)]
async fn a_stuck_inner_sink_makes_close_time_out_and_report_it() {
    let config = BufferConfig::default().with_shutdown_timeout(Duration::from_millis(20));
    let mut gated = gated(config);
    for name in &NAMES[..3] {
        gated.sink.emit(Event::new(name));
    }
    assert_eq!(gated.entered.recv().await, Some("e0"));

    let error = gated
        .sink
        .close()
        .await
        .expect_err("the inner sink is stuck");
    assert_eq!(error.timeout, Duration::from_millis(20));
    assert_eq!(error.pending_records, 3);
    assert!(error.is_undelivered());
    assert!(error
        .to_string()
        .starts_with("observability shutdown timed out"));

    let stats = gated.sink.stats();
    assert_eq!(stats.shutdown_timeout_count, 1);
    assert_eq!(stats.dropped, 2, "the queued records were discarded");
    assert_eq!(stats.pending, 1, "e0 is still being delivered");
    assert!(stats.closed);
    assert!(stats.worker_alive);
    assert!(stats.is_shutdown_incomplete());

    // Once the inner sink lets go, a second close completes the shutdown.
    gated.gate.open();
    gated.sink.close().await.expect("worker stopped");
    let stats = gated.sink.stats();
    assert!(!stats.worker_alive);
    assert!(!stats.is_shutdown_incomplete());
    assert_eq!(stats.delivered, 1);
    assert_eq!(stats.shutdown_timeout_count, 1);
    assert_eq!(gated.record.names(), ["e0"]);
}

#[tokio::test(start_paused = true)]
async fn records_after_close_are_dropped_and_counted() {
    let memory = MemoryEventSink::new();
    let sink = BufferedEventSink::new(Arc::new(memory.clone()), BufferConfig::default())
        .expect("valid config");
    sink.emit(Event::new("before"));
    assert!(sink.enabled());
    sink.close().await.expect("drained");

    assert!(sink.is_closed());
    assert!(!sink.enabled());
    sink.emit(Event::new("after"));
    sink.emit(Event::new("after"));
    sink.flush().await;

    let stats = sink.stats();
    assert_eq!(stats.enqueued, 1);
    assert_eq!(stats.delivered, 1);
    assert_eq!(stats.dropped, 2);
    assert_eq!(memory.names(), ["before"]);
}

#[tokio::test(start_paused = true)]
async fn a_panicking_inner_sink_is_counted_and_the_worker_survives() {
    let inner = Arc::new(PanickingSink::default());
    let record = inner.record.clone();
    let sink = BufferedEventSink::new(inner, BufferConfig::default()).expect("valid config");
    for name in ["ok1", "boom", "ok2", "boom"] {
        sink.emit(Event::new(name));
    }
    sink.flush().await;

    let stats = sink.stats();
    assert_eq!(stats.failures, 2);
    assert_eq!(stats.delivered, 2);
    assert!(stats.worker_alive);
    assert!(!stats.is_worker_stopped());

    sink.emit(Event::new("ok3"));
    sink.close().await.expect("drained");
    assert_eq!(record.names(), ["ok1", "ok2", "ok3"]);
}

#[test]
fn enabled_follows_the_inner_sink() {
    let silent =
        BufferedEventSink::new(Arc::new(NullSink), BufferConfig::default()).expect("valid config");
    assert!(!silent.enabled());
    silent.close_blocking().expect("closed");

    let metrics = BufferedMetricsSink::new(Arc::new(NullSink), BufferConfig::default())
        .expect("valid config");
    assert!(!metrics.enabled());
    metrics.close_blocking().expect("closed");
}

#[test]
fn outside_a_runtime_the_blocking_methods_work() {
    let memory = MemoryEventSink::new();
    let sink = BufferedEventSink::new(Arc::new(memory.clone()), BufferConfig::default())
        .expect("valid config");
    sink.emit(Event::new("cache_hit"));
    sink.flush_blocking();
    assert_eq!(memory.names(), ["cache_hit"]);
    sink.close_blocking().expect("drained");
    sink.close_blocking().expect("idempotent");
    assert!(!sink.stats().worker_alive);
}

#[test]
fn dropping_the_last_handle_lets_the_worker_finish_and_release_the_inner_sink() {
    let memory = MemoryEventSink::new();
    let (dropped_tx, dropped_rx) = mpsc::channel();
    let inner = DropSignal {
        record: memory.clone(),
        dropped: Mutex::new(dropped_tx),
    };
    let sink =
        BufferedEventSink::new(Arc::new(inner), BufferConfig::default()).expect("valid config");
    for _ in 0..3 {
        sink.emit(Event::new("resource_published"));
    }
    drop(sink);

    dropped_rx
        .recv()
        .expect("the worker released the inner sink");
    assert_eq!(memory.len(), 3, "queued events were delivered first");
}

#[tokio::test(start_paused = true)]
async fn metrics_are_delivered_with_their_labels_and_values() {
    let memory = MemoryMetricsSink::new();
    let sink = BufferedMetricsSink::new(Arc::new(memory.clone()), BufferConfig::default())
        .expect("valid config");
    sink.increment("requests", &[("status", "ok")], 1);
    sink.observe("latency", &[("source", "test")], 12.5);
    let dynamic = String::from("rest");
    sink.increment(
        "source_fetch_total",
        &[("source", &dynamic), ("status", "success")],
        3,
    );
    drop(dynamic);
    sink.flush().await;

    assert_eq!(memory.counter("requests", &[("status", "ok")]), 1);
    assert_eq!(
        memory.observations_with("latency", &[("source", "test")]),
        [12.5]
    );
    assert_eq!(
        memory.counter(
            "source_fetch_total",
            &[("source", "rest"), ("status", "success")]
        ),
        3
    );
    let stats = sink.stats();
    assert_eq!((stats.enqueued, stats.delivered), (3, 3));

    sink.close().await.expect("drained");
    sink.increment("requests", &[], 1);
    assert_eq!(sink.stats().dropped, 1);
}

#[tokio::test(start_paused = true)]
async fn stats_serialize_with_the_health_schema_field_names() {
    let sink = BufferedEventSink::new(Arc::new(MemoryEventSink::new()), BufferConfig::default())
        .expect("valid config");
    sink.emit(Event::new("cache_hit"));
    sink.flush().await;

    let json = serde_json::to_value(sink.stats()).expect("serializable");
    let mut keys: Vec<_> = json.as_object().expect("object").keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "closed",
            "delivered",
            "dropped",
            "enqueued",
            "failures",
            "max_pending",
            "peak_pending",
            "pending",
            "shutdown_timeout_count",
            "worker_alive",
        ]
    );
    assert_eq!(json["enqueued"], 1);
    assert_eq!(json["max_pending"], 10_000);
    assert_eq!(json["worker_alive"], true);
    sink.close().await.expect("drained");
}
