//! The tracing sink, observed through an in-test subscriber.

use std::fmt;
use std::sync::{Arc, Mutex};

use coalestra_core::{Event, EventSink};
use coalestra_observability::{TracingEventSink, TRACING_TARGET};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};

/// What the subscriber saw of one tracing event.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    target: String,
    level: Level,
    fields: Vec<(String, String)>,
}

impl Seen {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

struct FieldCollector<'a>(&'a mut Vec<(String, String)>);

impl Visit for FieldCollector<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
}

/// Records every event at or above `max_level` verbosity.
#[derive(Clone)]
struct RecordingSubscriber {
    max_level: Level,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RecordingSubscriber {
    fn new(max_level: Level) -> Self {
        Self {
            max_level,
            seen: Arc::default(),
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen lock").clone()
    }
}

impl Subscriber for RecordingSubscriber {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> Interest {
        // Ask every time: other tests install subscribers with other levels.
        Interest::sometimes()
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        *metadata.level() <= self.max_level
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Vec::new();
        event.record(&mut FieldCollector(&mut fields));
        self.seen.lock().expect("seen lock").push(Seen {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn capture(max_level: Level, sink: &TracingEventSink, events: Vec<Event>) -> Vec<Seen> {
    let subscriber = RecordingSubscriber::new(max_level);
    let recorded = subscriber.clone();
    tracing::subscriber::with_default(subscriber, || {
        for event in events {
            sink.emit(event);
        }
    });
    recorded.seen()
}

#[test]
fn events_become_info_tracing_events_named_by_the_event() {
    let sink = TracingEventSink::new();
    assert_eq!(sink.level(), Level::INFO);
    assert!(sink.enabled());

    let seen = capture(
        Level::TRACE,
        &sink,
        vec![Event::new("cache_hit")
            .field("resource", "market:price:BTCUSDT?venue=spot")
            .field("freshness", "fresh")],
    );

    assert_eq!(seen.len(), 1);
    let event = &seen[0];
    assert_eq!(event.target, TRACING_TARGET);
    assert_eq!(event.level, Level::INFO);
    assert_eq!(event.field("message"), Some("cache_hit"));
    assert_eq!(event.field("event"), Some("cache_hit"));
    assert_eq!(
        event.field("fields"),
        Some(r#"resource="market:price:BTCUSDT?venue=spot" freshness=fresh"#),
        "a value containing `=` is quoted"
    );
}

#[test]
fn every_value_kind_is_rendered_as_key_value() {
    let seen = capture(
        Level::TRACE,
        &TracingEventSink::new(),
        vec![Event::new("resource_resolved")
            .field("source", "rest")
            .field("attempts", 2_i64)
            .field("latency_ms", 12.5)
            .field("strict", true)
            .field("error", "connection reset by peer")
            .field("reason", "")],
    );

    assert_eq!(
        seen[0].field("fields"),
        Some(
            r#"source=rest attempts=2 latency_ms=12.5 strict=true error="connection reset by peer" reason="""#
        )
    );
}

#[test]
fn an_event_without_fields_renders_an_empty_field_list() {
    let seen = capture(
        Level::TRACE,
        &TracingEventSink::new(),
        vec![Event::new("snapshot_built")],
    );
    assert_eq!(seen[0].field("message"), Some("snapshot_built"));
    assert_eq!(seen[0].field("fields"), Some(""));
}

#[test]
fn the_level_is_configurable() {
    for level in [
        Level::ERROR,
        Level::WARN,
        Level::INFO,
        Level::DEBUG,
        Level::TRACE,
    ] {
        let sink = TracingEventSink::new().with_level(level);
        let seen = capture(Level::TRACE, &sink, vec![Event::new("source_failed")]);
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].level, level);
    }
}

#[test]
fn events_below_the_subscriber_level_are_filtered_by_tracing() {
    let debug = TracingEventSink::new().with_level(Level::DEBUG);
    let warn = TracingEventSink::new().with_level(Level::WARN);

    assert!(capture(Level::INFO, &debug, vec![Event::new("cache_hit")]).is_empty());
    assert_eq!(
        capture(Level::INFO, &warn, vec![Event::new("cache_hit")]).len(),
        1
    );
}

#[test]
fn events_keep_their_emission_order() {
    let seen = capture(
        Level::TRACE,
        &TracingEventSink::new(),
        vec![
            Event::new("resource_refresh_scheduled"),
            Event::new("resource_refresh_completed"),
        ],
    );
    let names: Vec<_> = seen.iter().filter_map(|s| s.field("message")).collect();
    assert_eq!(
        names,
        ["resource_refresh_scheduled", "resource_refresh_completed"]
    );
}
