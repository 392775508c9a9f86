//! [`Gate`]: holds mock source calls until a test releases them.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

struct GateInner {
    open: watch::Sender<bool>,
    arrivals: watch::Sender<usize>,
    waiting: AtomicUsize,
}

/// A barrier inside a mock source's call.
///
/// Every call that reaches the gate is counted as an arrival; while the gate
/// is closed the call waits (counted in [`Gate::waiting`]) until
/// [`Gate::open`]. Tests await [`Gate::wait_for_arrivals`] to know that calls
/// are parked, instead of sleeping. Clones share one gate.
///
/// ```
/// use coalestra_test::Gate;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let gate = Gate::new();
/// let passing = tokio::spawn({
///     let gate = gate.clone();
///     async move { gate.pass().await }
/// });
/// gate.wait_for_arrivals(1).await;
/// assert_eq!(gate.waiting(), 1);
/// gate.open();
/// passing.await.unwrap();
/// assert_eq!(gate.waiting(), 0);
/// # });
/// ```
#[derive(Clone)]
pub struct Gate(Arc<GateInner>);

impl Gate {
    /// A closed gate.
    pub fn new() -> Self {
        Self(Arc::new(GateInner {
            open: watch::Sender::new(false),
            arrivals: watch::Sender::new(0),
            waiting: AtomicUsize::new(0),
        }))
    }

    /// Releases every waiting call; later calls pass straight through.
    pub fn open(&self) {
        self.0.open.send_replace(true);
    }

    /// Closes the gate again: later calls wait until the next [`Gate::open`].
    pub fn close(&self) {
        self.0.open.send_replace(false);
    }

    /// Whether calls currently pass.
    pub fn is_open(&self) -> bool {
        *self.0.open.borrow()
    }

    /// How many calls have reached the gate so far (open or closed).
    pub fn arrivals(&self) -> usize {
        *self.0.arrivals.borrow()
    }

    /// How many calls are waiting at the gate right now.
    pub fn waiting(&self) -> usize {
        self.0.waiting.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` calls have reached the gate.
    pub async fn wait_for_arrivals(&self, n: usize) {
        let mut arrivals = self.0.arrivals.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = arrivals.wait_for(|count| *count >= n).await;
    }

    /// Passes the gate: counts an arrival, then waits while it is closed.
    ///
    /// Mock sources call this inside their fetch; tests may use it to gate
    /// their own futures.
    pub async fn pass(&self) {
        let mut open = self.0.open.subscribe();
        self.0.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = WaitingGuard(&self.0.waiting);
        self.0.arrivals.send_modify(|count| *count += 1);
        let _ = open.wait_for(|is_open| *is_open).await;
    }
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Gate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gate")
            .field("open", &self.is_open())
            .field("arrivals", &self.arrivals())
            .field("waiting", &self.waiting())
            .finish()
    }
}

/// Decrements the waiting count when a call leaves the gate (or is dropped
/// while waiting).
struct WaitingGuard<'a>(&'a AtomicUsize);

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
