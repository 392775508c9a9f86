//! The in-task worker pool behind the dispatch functions.

use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use super::ready::ReadySlots;

/// Runs the futures produced by `start` for each item, at most `max_workers`
/// at a time, inside whichever task polls it.
///
/// Each running future lives in a slot with its own waker, so a wake-up only
/// re-polls the futures that asked for it. A new future is polled as soon as
/// it starts, and a slot keeps its allocation for the next future: items
/// that finish at once (local sources) run one after the other in a single
/// slot, without an allocation per item. Dropping the run drops every future
/// still in flight.
pub(super) struct BoundedRun<It, F, Fut> {
    items: Option<It>,
    start: F,
    max_workers: usize,
    slots: Vec<Slot<Fut>>,
    wakers: Vec<Waker>,
    free: Vec<usize>,
    ready: Arc<ReadySlots>,
    /// The slots taken from `ready` in one pass (kept to reuse its buffer).
    woken: Vec<usize>,
    next_index: usize,
    in_flight: usize,
}

/// One worker slot: the input position of its item and its future, which
/// is `None` between items (the box is kept for the next one).
struct Slot<Fut> {
    index: usize,
    future: Pin<Box<Option<Fut>>>,
}

impl<It, F, Fut> BoundedRun<It, F, Fut>
where
    It: Iterator,
    F: FnMut(It::Item) -> Fut,
    Fut: Future,
{
    pub(super) fn new(items: It, max_workers: NonZeroUsize, start: F) -> Self {
        // As many slots as items can run at once, known up front: the slot
        // lists never grow one push at a time.
        let slots = max_workers.get().min(items.size_hint().0.max(1));
        Self {
            items: Some(items),
            start,
            max_workers: max_workers.get(),
            slots: Vec::with_capacity(slots),
            wakers: Vec::with_capacity(slots),
            free: Vec::with_capacity(slots),
            ready: Arc::new(ReadySlots::with_capacity(slots)),
            woken: Vec::with_capacity(slots),
            next_index: 0,
            in_flight: 0,
        }
    }

    /// A lower bound on the number of items, for pre-sizing outputs.
    pub(super) fn size_hint(&self) -> usize {
        self.items.as_ref().map_or(0, |items| items.size_hint().0)
    }

    /// Drives the run until every item finished or `accept` rejects an output.
    ///
    /// `accept` receives each output with the input position of its item.
    /// When it returns an error, no further item is taken from the input,
    /// every future still in flight is dropped, and the error is returned.
    pub(super) fn poll_run<E>(
        &mut self,
        cx: &mut Context<'_>,
        mut accept: impl FnMut(usize, Fut::Output) -> Result<(), E>,
    ) -> Poll<Result<(), E>> {
        self.ready.register_task(cx.waker());
        loop {
            let mut finished_any = false;
            // Start items while workers are free, polling each at once.
            while self.in_flight < self.max_workers {
                let Some(item) = self.items.as_mut().and_then(Iterator::next) else {
                    self.items = None;
                    break;
                };
                let slot = self.start_in_free_slot(item);
                if let Some((index, output)) = self.poll_slot(slot) {
                    finished_any = true;
                    if let Err(error) = accept(index, output) {
                        self.abort();
                        return Poll::Ready(Err(error));
                    }
                }
            }
            let mut woken = std::mem::take(&mut self.woken);
            self.ready.take_into(&mut woken);
            for &slot in &woken {
                let Some((index, output)) = self.poll_slot(slot) else {
                    continue;
                };
                finished_any = true;
                if let Err(error) = accept(index, output) {
                    self.abort();
                    return Poll::Ready(Err(error));
                }
            }
            self.woken = woken;
            if self.in_flight == 0 && self.items.is_none() {
                return Poll::Ready(Ok(()));
            }
            // A finished item freed a slot: start the next ones right away.
            // Otherwise every in-flight future registered its waker.
            if !finished_any {
                return Poll::Pending;
            }
        }
    }

    /// Starts the future of `item` in a free slot (growing the pool up to
    /// `max_workers` slots on demand) and returns the slot.
    fn start_in_free_slot(&mut self, item: It::Item) -> usize {
        let future = (self.start)(item);
        let index = self.next_index;
        self.next_index += 1;
        self.in_flight += 1;
        if let Some(slot) = self.free.pop() {
            let entry = &mut self.slots[slot];
            entry.index = index;
            entry.future.as_mut().set(Some(future));
            return slot;
        }
        let slot = self.slots.len();
        self.slots.push(Slot {
            index,
            future: Box::pin(Some(future)),
        });
        self.wakers.push(self.ready.waker_for(slot));
        slot
    }

    /// Polls the future in `slot`; on completion drops it in place, frees
    /// the slot and returns the item's input position and output. Wake-ups
    /// of an empty slot (left over from a finished future) are ignored, and
    /// a spurious poll of a newer future in a reused slot is harmless.
    fn poll_slot(&mut self, slot: usize) -> Option<(usize, Fut::Output)> {
        let entry = self.slots.get_mut(slot)?;
        let future = entry.future.as_mut().as_pin_mut()?;
        let mut cx = Context::from_waker(&self.wakers[slot]);
        let Poll::Ready(output) = future.poll(&mut cx) else {
            return None;
        };
        entry.future.as_mut().set(None);
        self.free.push(slot);
        self.in_flight -= 1;
        Some((entry.index, output))
    }

    /// Stops taking items and drops every future in flight.
    fn abort(&mut self) {
        self.items = None;
        self.slots.clear();
        self.wakers.clear();
        self.free.clear();
        self.in_flight = 0;
    }
}
