//! A simulated remote backend: every request is answered after a fixed
//! latency, by a thread of its own, as a response arrives from the network.
//!
//! The latency-bound workloads need a source whose calls take the stated
//! latency and no more. A tokio sleep does not: tokio rounds every deadline
//! up to its next millisecond tick, and its driver parks for whole
//! milliseconds counted from the tick it parked in, so a 25 ms sleep lasts
//! 26.0-26.2 ms on this machine before any engine work (the
//! `latency-20-tokio-timer-floor` row of the report). Here a thread sleeps
//! with the operating system's microsecond timers until the earliest
//! response is due and then completes it, which wakes the runtime the way a
//! socket becoming readable does.
//!
//! The thread is owned by the [`Remote`] and joined when it is dropped.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// A backend answering each request after `latency`.
#[derive(Debug)]
pub struct Remote {
    latency: Duration,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct State {
    due: BinaryHeap<Pending>,
    next_sequence: u64,
    closed: bool,
}

/// One request waiting for its response.
#[derive(Debug)]
struct Pending {
    at: Instant,
    sequence: u64,
    reply: oneshot::Sender<()>,
}

impl Remote {
    /// A backend whose responses arrive `latency` after each request.
    ///
    /// # Panics
    ///
    /// When the operating system cannot start its thread.
    pub fn new(latency: Duration) -> Self {
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("bench-remote".to_owned())
            .spawn({
                let shared = Arc::clone(&shared);
                move || shared.respond_until_closed()
            })
            .expect("the remote backend's thread starts");
        Self {
            latency,
            shared,
            thread: Some(thread),
        }
    }

    /// The latency of every response.
    pub fn latency(&self) -> Duration {
        self.latency
    }

    /// Sends a request and waits for its response.
    ///
    /// # Panics
    ///
    /// When the backend was closed while the request waited (it never is
    /// while a [`Remote`] lives).
    pub async fn call(&self) {
        let (reply, response) = oneshot::channel();
        let at = Instant::now() + self.latency;
        {
            let mut state = self.shared.lock();
            let sequence = state.next_sequence;
            state.next_sequence += 1;
            let earliest = state.due.peek().is_none_or(|first| at < first.at);
            state.due.push(Pending {
                at,
                sequence,
                reply,
            });
            if earliest {
                // The thread sleeps until its earliest response: this one
                // comes first now.
                self.shared.changed.notify_one();
            }
        }
        response
            .await
            .expect("the remote backend answers every request");
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.changed.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The backend thread: answers every request when it is due.
    fn respond_until_closed(&self) {
        let mut state = self.lock();
        let mut replies = Vec::new();
        while !state.closed {
            let now = Instant::now();
            while state.due.peek().is_some_and(|first| first.at <= now) {
                replies.extend(state.due.pop().map(|pending| pending.reply));
            }
            if !replies.is_empty() {
                // Responses are sent without the lock, so requests made
                // meanwhile are not held up.
                drop(state);
                for reply in replies.drain(..) {
                    let _ = reply.send(());
                }
                state = self.lock();
                continue;
            }
            state = match state.due.peek().map(|first| first.at - now) {
                Some(wait) => {
                    self.changed
                        .wait_timeout(state, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .changed
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    /// Reversed, so the heap's top is the earliest response (first come
    /// first served at equal times).
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.sequence).cmp(&(self.at, self.sequence))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_earliest_response_is_on_top() {
        let now = Instant::now();
        let pending = |offset_ms: u64, sequence| Pending {
            at: now + Duration::from_millis(offset_ms),
            sequence,
            reply: oneshot::channel().0,
        };
        let mut heap: BinaryHeap<Pending> =
            [pending(5, 0), pending(1, 1), pending(1, 2), pending(3, 3)].into();
        let order: Vec<u64> = std::iter::from_fn(|| heap.pop().map(|p| p.sequence)).collect();
        assert_eq!(order, [1, 2, 3, 0]);
    }

    #[test]
    fn every_request_is_answered_and_the_thread_joins_on_drop() {
        let runtime = crate::runtime();
        let remote = Arc::new(Remote::new(Duration::from_millis(1)));
        let answered = runtime.block_on(async {
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..20 {
                let remote = Arc::clone(&remote);
                calls.spawn(async move { remote.call().await });
            }
            let mut answered = 0;
            while let Some(call) = calls.join_next().await {
                call.expect("call task");
                answered += 1;
            }
            answered
        });
        assert_eq!(answered, 20);
        let remote = Arc::into_inner(remote).expect("no call holds the backend");
        assert!(remote.shared.lock().due.is_empty());
        // Dropping joins the thread: the test would hang otherwise.
        drop(remote);
    }
}
