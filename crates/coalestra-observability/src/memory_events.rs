//! [`MemoryEventSink`]: records events in memory for assertions.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use coalestra_core::{Event, EventSink};

/// An [`EventSink`] that keeps every event in memory, in emission order.
///
/// Meant for tests and debugging. Clones share the same recording, so a
/// clone can be handed to a builder while the original is kept for
/// assertions. Recording is unbounded: call [`clear`](Self::clear) between
/// phases of a long test.
///
/// ```
/// use coalestra_core::{Event, EventSink};
/// use coalestra_observability::MemoryEventSink;
///
/// let sink = MemoryEventSink::new();
/// sink.emit(Event::new("cache_hit").field("resource", "market:price:BTC"));
/// assert_eq!(sink.events_named("cache_hit").len(), 1);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemoryEventSink {
    events: Arc<Mutex<Vec<Event>>>,
}

impl MemoryEventSink {
    /// An empty recording.
    pub fn new() -> Self {
        Self::default()
    }

    fn recording(&self) -> MutexGuard<'_, Vec<Event>> {
        self.events.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every recorded event, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.recording().clone()
    }

    /// The recorded events with the given name, oldest first.
    pub fn events_named(&self, name: &str) -> Vec<Event> {
        self.recording()
            .iter()
            .filter(|event| event.name == name)
            .cloned()
            .collect()
    }

    /// The names of the recorded events, oldest first.
    pub fn names(&self) -> Vec<&'static str> {
        self.recording().iter().map(|event| event.name).collect()
    }

    /// The number of recorded events.
    pub fn len(&self) -> usize {
        self.recording().len()
    }

    /// Whether nothing has been recorded.
    pub fn is_empty(&self) -> bool {
        self.recording().is_empty()
    }

    /// Forgets every recorded event.
    pub fn clear(&self) {
        self.recording().clear();
    }
}

impl EventSink for MemoryEventSink {
    fn is_non_blocking(&self) -> bool {
        true
    }

    fn emit(&self, event: Event) {
        self.recording().push(event);
    }
}
