//! [`TracingEventSink`]: forwards events to the `tracing` ecosystem.

use std::fmt;

use coalestra_core::{Event, EventSink, MetadataValue};
use tracing::Level;

/// The `tracing` target every forwarded event carries.
pub const TRACING_TARGET: &str = "coalestra";

/// An [`EventSink`] that turns each [`Event`] into a `tracing` event.
///
/// The tracing event has target [`TRACING_TARGET`], the configured level
/// (`INFO` unless changed), the Coalestra event name as its message and in
/// the `event` field, and the event's fields rendered as space-separated
/// `key=value` pairs in the `fields` field. Text values that are empty or
/// contain spaces, quotes or `=` are quoted.
///
/// ```
/// use coalestra_core::{Event, EventSink};
/// use coalestra_observability::TracingEventSink;
///
/// let sink = TracingEventSink::new().with_level(tracing::Level::DEBUG);
/// // With a `tracing-subscriber` fmt layer this logs roughly:
/// // DEBUG coalestra: cache_hit event="cache_hit" fields=resource=market:price:BTC freshness=fresh
/// sink.emit(
///     Event::new("cache_hit")
///         .field("resource", "market:price:BTC")
///         .field("freshness", "fresh"),
/// );
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TracingEventSink {
    level: Level,
}

impl Default for TracingEventSink {
    fn default() -> Self {
        Self { level: Level::INFO }
    }
}

impl TracingEventSink {
    /// A sink logging at `INFO`.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same sink logging at `level`.
    #[must_use]
    pub fn with_level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }

    /// The level events are logged at.
    pub fn level(&self) -> Level {
        self.level
    }
}

/// Renders event fields as `key=value` pairs separated by spaces.
struct RenderedFields<'a>(&'a [(&'static str, MetadataValue)]);

fn needs_quotes(text: &str) -> bool {
    text.is_empty()
        || text
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '=' || c.is_control())
}

impl fmt::Display for RenderedFields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, (name, value)) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            match value.as_str() {
                Some(text) if needs_quotes(text) => write!(f, "{name}={text:?}")?,
                _ => write!(f, "{name}={value}")?,
            }
        }
        Ok(())
    }
}

macro_rules! forward_at {
    ($level:expr, $event:expr) => {
        tracing::event!(
            target: "coalestra",
            $level,
            event = $event.name,
            fields = %RenderedFields(&$event.fields),
            "{}",
            $event.name
        )
    };
}

impl EventSink for TracingEventSink {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn emit(&self, event: Event) {
        // `tracing` needs the level at compile time, hence one call site per level.
        if self.level == Level::ERROR {
            forward_at!(Level::ERROR, event);
        } else if self.level == Level::WARN {
            forward_at!(Level::WARN, event);
        } else if self.level == Level::INFO {
            forward_at!(Level::INFO, event);
        } else if self.level == Level::DEBUG {
            forward_at!(Level::DEBUG, event);
        } else {
            forward_at!(Level::TRACE, event);
        }
    }
}
