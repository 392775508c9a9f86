//! Which worker slots were woken since they were last polled.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Wake, Waker};

/// Slots whose futures asked to be polled again, in wake order, plus the
/// waker of the task running the dispatch.
#[derive(Debug)]
pub(super) struct ReadySlots {
    state: Mutex<ReadyState>,
}

#[derive(Debug)]
struct ReadyState {
    queue: Vec<usize>,
    queued: Vec<bool>,
    task: Option<Waker>,
}

impl ReadySlots {
    /// A waker that marks `slot` ready and wakes the dispatching task.
    pub(super) fn waker_for(self: &Arc<Self>, slot: usize) -> Waker {
        Waker::from(Arc::new(SlotWaker {
            slot,
            ready: Arc::clone(self),
        }))
    }

    /// Remembers the waker of the task polling the dispatch.
    pub(super) fn register_task(&self, waker: &Waker) {
        let mut state = self.lock();
        if !state
            .task
            .as_ref()
            .is_some_and(|task| task.will_wake(waker))
        {
            state.task = Some(waker.clone());
        }
    }

    /// Room for `slots` slots, so marking them never reallocates.
    pub(super) fn with_capacity(slots: usize) -> Self {
        Self {
            state: Mutex::new(ReadyState {
                queue: Vec::with_capacity(slots),
                queued: vec![false; slots],
                task: None,
            }),
        }
    }

    /// Moves every slot marked ready so far, in the order they were marked,
    /// into `out` (cleared first). The two buffers trade places, so neither
    /// side allocates once both have grown.
    pub(super) fn take_into(&self, out: &mut Vec<usize>) {
        out.clear();
        let mut state = self.lock();
        std::mem::swap(&mut state.queue, out);
        let state = &mut *state;
        for &slot in out.iter() {
            state.queued[slot] = false;
        }
    }

    fn lock(&self) -> MutexGuard<'_, ReadyState> {
        // The state stays consistent even if a holder panicked: every update
        // is a single push or flag write.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl ReadyState {
    fn mark(&mut self, slot: usize) -> bool {
        if self.queued.len() <= slot {
            self.queued.resize(slot + 1, false);
        }
        if self.queued[slot] {
            return false;
        }
        self.queued[slot] = true;
        self.queue.push(slot);
        true
    }
}

/// The waker handed to the future running in one slot.
struct SlotWaker {
    slot: usize,
    ready: Arc<ReadySlots>,
}

impl Wake for SlotWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let task = {
            let mut state = self.ready.lock();
            if state.mark(self.slot) {
                state.task.clone()
            } else {
                // Already queued: the task was woken when it was marked.
                None
            }
        };
        if let Some(task) = task {
            task.wake();
        }
    }
}
