//! Behaviour of `dispatch_bounded` and `try_dispatch_bounded`: ordering,
//! bounded concurrency, in-task execution and cancellation. Synchronised with
//! gates and counters on paused tokio time, never with wall-clock waits.

use std::cell::{Cell, RefCell};
use std::future::{pending, poll_fn, Future};
use std::num::NonZeroUsize;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use coalestra_concurrency::{dispatch_bounded, try_dispatch_bounded};
use tokio::sync::oneshot;

fn nz(value: usize) -> NonZeroUsize {
    NonZeroUsize::new(value).expect("test limits are non-zero")
}

/// Yields to the other futures of the task until `condition` holds.
async fn wait_until(condition: impl Fn() -> bool) {
    for _ in 0..10_000 {
        if condition() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition not reached");
}

/// Polls `future` exactly once.
async fn poll_once<F: Future>(mut future: Pin<&mut F>) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
}

/// Counts running futures and the highest number at once (single task, so
/// plain cells suffice, and the futures are deliberately not `Send`).
#[derive(Default)]
struct LocalGauge {
    current: Cell<usize>,
    peak: Cell<usize>,
    started: Cell<usize>,
}

impl LocalGauge {
    fn enter(&self) -> LocalEntry<'_> {
        self.started.set(self.started.get() + 1);
        self.current.set(self.current.get() + 1);
        self.peak.set(self.peak.get().max(self.current.get()));
        LocalEntry(self)
    }
}

struct LocalEntry<'a>(&'a LocalGauge);

impl Drop for LocalEntry<'_> {
    fn drop(&mut self) {
        self.0.current.set(self.0.current.get() - 1);
    }
}

/// Counts how many item futures were dropped, finished or not.
struct DropCounter(Rc<Cell<usize>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.set(self.0.get() + 1);
    }
}

#[tokio::test(start_paused = true)]
async fn outputs_follow_input_order_when_completion_is_reversed() {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..5).map(|_| oneshot::channel::<()>()).unzip();
    let gauge = LocalGauge::default();
    let finished = RefCell::new(Vec::new());

    let dispatch = dispatch_bounded(receivers.into_iter().enumerate(), nz(5), |(index, gate)| {
        let (gauge, finished) = (&gauge, &finished);
        async move {
            let _entry = gauge.enter();
            gate.await.expect("gate opened");
            finished.borrow_mut().push(index);
            index * 10
        }
    });
    let driver = async {
        wait_until(|| gauge.current.get() == 5).await;
        for (index, sender) in senders.into_iter().enumerate().rev() {
            sender.send(()).expect("item waiting");
            wait_until(|| finished.borrow().contains(&index)).await;
        }
    };
    let (outputs, ()) = tokio::join!(dispatch, driver);

    assert_eq!(outputs, [0, 10, 20, 30, 40]);
    assert_eq!(*finished.borrow(), [4, 3, 2, 1, 0]);
}

#[tokio::test(start_paused = true)]
async fn outputs_follow_input_order_with_staggered_timers() {
    let outputs = dispatch_bounded(0..20u64, nz(3), |index| async move {
        tokio::time::sleep(Duration::from_millis((index * 7) % 5)).await;
        index
    })
    .await;
    assert_eq!(outputs, (0..20).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn hundred_items_with_four_workers_peak_at_exactly_four() {
    let gauge = LocalGauge::default();
    let outputs = dispatch_bounded(0..100usize, nz(4), |index| {
        let gauge = &gauge;
        async move {
            let _entry = gauge.enter();
            for _ in 0..=(index * 31) % 5 {
                tokio::task::yield_now().await;
            }
            index
        }
    })
    .await;

    assert_eq!(outputs, (0..100).collect::<Vec<_>>());
    assert_eq!(gauge.started.get(), 100);
    assert_eq!(gauge.peak.get(), 4);
    assert_eq!(gauge.current.get(), 0);
}

#[tokio::test(start_paused = true)]
async fn next_item_starts_as_soon_as_one_finishes() {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..4).map(|_| oneshot::channel::<()>()).unzip();
    let gauge = LocalGauge::default();

    let dispatch = dispatch_bounded(receivers.into_iter().enumerate(), nz(2), |(index, gate)| {
        let gauge = &gauge;
        async move {
            let _entry = gauge.enter();
            gate.await.expect("gate opened");
            index
        }
    });
    let driver = async {
        let mut senders = senders.into_iter();
        let mut gates: Vec<_> = senders.by_ref().take(2).collect();
        wait_until(|| gauge.started.get() == 2).await;
        // Item 1 finishes while item 0 is still running: item 2 starts
        // without waiting for the whole first batch.
        gates.remove(1).send(()).expect("item 1 waiting");
        wait_until(|| gauge.started.get() == 3).await;
        assert_eq!(gauge.current.get(), 2);
        for sender in gates.into_iter().chain(senders) {
            sender.send(()).expect("item waiting");
        }
    };
    let (outputs, ()) = tokio::join!(dispatch, driver);
    assert_eq!(outputs, [0, 1, 2, 3]);
    assert_eq!(gauge.peak.get(), 2);
}

#[tokio::test(start_paused = true)]
async fn item_futures_may_borrow_local_non_send_data() {
    let names = vec![String::from("a"), String::from("b"), String::from("c")];
    let suffix = String::from("!");
    // `Rc` is neither `Send` nor `'static`-bound here: spawning would not compile.
    let calls = Rc::new(Cell::new(0));
    let outputs = dispatch_bounded(&names, nz(2), |name| {
        let (suffix, calls) = (&suffix, Rc::clone(&calls));
        async move {
            tokio::task::yield_now().await;
            calls.set(calls.get() + 1);
            format!("{name}{suffix}")
        }
    })
    .await;
    assert_eq!(outputs, ["a!", "b!", "c!"]);
    assert_eq!(calls.get(), 3);
}

/// Pending once (after asking to be woken), then ready.
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

#[test]
fn runs_without_any_runtime() {
    // No tokio runtime exists here, so `tokio::spawn` would panic: the items
    // can only be running inside the polling task.
    let base = 100;
    let dispatch = dispatch_bounded(0..10, nz(3), |index| {
        let base = &base;
        async move {
            YieldOnce(false).await;
            base + index
        }
    });
    let mut dispatch = pin!(dispatch);
    let mut cx = Context::from_waker(Waker::noop());
    let outputs = (0..1_000)
        .find_map(|_| match dispatch.as_mut().poll(&mut cx) {
            Poll::Ready(outputs) => Some(outputs),
            Poll::Pending => None,
        })
        .expect("dispatch completes");
    assert_eq!(outputs, (100..110).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_dispatch_drops_in_flight_items() {
    let dropped = Rc::new(Cell::new(0));
    let started = Cell::new(0);
    let mut dispatch = Box::pin(dispatch_bounded(0..10, nz(3), |_| {
        started.set(started.get() + 1);
        let guard = DropCounter(Rc::clone(&dropped));
        async move {
            let _guard = guard;
            pending::<()>().await;
        }
    }));
    assert!(poll_once(dispatch.as_mut()).await.is_pending());
    assert_eq!((started.get(), dropped.get()), (3, 0));

    drop(dispatch);
    assert_eq!((started.get(), dropped.get()), (3, 3));
}

#[tokio::test(start_paused = true)]
async fn timing_out_the_dispatch_cancels_its_items() {
    let dropped = Rc::new(Cell::new(0));
    let gauge = LocalGauge::default();
    let dispatch = dispatch_bounded(0..10, nz(4), |_| {
        let (gauge, guard) = (&gauge, DropCounter(Rc::clone(&dropped)));
        async move {
            let (_entry, _guard) = (gauge.enter(), guard);
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    });
    let timed_out = tokio::time::timeout(Duration::from_secs(1), dispatch).await;
    assert!(timed_out.is_err());
    assert_eq!(gauge.started.get(), 4);
    assert_eq!((gauge.current.get(), dropped.get()), (0, 4));
}

#[tokio::test(start_paused = true)]
async fn try_variant_stops_at_the_first_error() {
    let dropped = Rc::new(Cell::new(0));
    let pulled = Cell::new(0);
    let started = Cell::new(0);
    let items = (0..20).inspect(|_| pulled.set(pulled.get() + 1));
    let result = try_dispatch_bounded(items, nz(3), |index| {
        started.set(started.get() + 1);
        let guard = DropCounter(Rc::clone(&dropped));
        async move {
            let _guard = guard;
            match index {
                0..4 => Ok(index),
                4 => {
                    tokio::task::yield_now().await;
                    Err(format!("item {index} failed"))
                }
                _ => pending().await,
            }
        }
    })
    .await;

    assert_eq!(result, Err(String::from("item 4 failed")));
    // No item was taken from the input without being started, at most two
    // more items than the failing one were ever in flight, and every started
    // future has finished or been dropped by the time the error is returned.
    assert_eq!(pulled.get(), started.get());
    assert!(started.get() <= 4 + 3, "started {}", started.get());
    assert_eq!(dropped.get(), started.get());
}

#[tokio::test(start_paused = true)]
async fn try_variant_returns_outputs_in_order_when_all_succeed() {
    let result = try_dispatch_bounded(0..12u64, nz(5), |index| async move {
        tokio::time::sleep(Duration::from_millis(12 - index)).await;
        Ok::<_, String>(index * 2)
    })
    .await;
    assert_eq!(result, Ok((0..12).map(|index| index * 2).collect()));
}

#[tokio::test(start_paused = true)]
async fn empty_input_and_oversized_pools_are_fine() {
    let none = dispatch_bounded(Vec::<u8>::new(), nz(4), |item| async move { item }).await;
    assert!(none.is_empty());
    let none = try_dispatch_bounded(
        Vec::<u8>::new(),
        nz(4),
        |item| async move { Ok::<_, ()>(item) },
    )
    .await;
    assert_eq!(none, Ok(Vec::new()));
    let few = dispatch_bounded([1, 2], NonZeroUsize::MAX, |item| async move { item }).await;
    assert_eq!(few, [1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatch_of_send_items_can_itself_be_spawned() {
    fn assert_send<T: Send>(value: T) -> T {
        value
    }
    let dispatch = assert_send(dispatch_bounded(0..50u32, nz(8), |index| async move {
        tokio::task::yield_now().await;
        index + 1
    }));
    let outputs = tokio::spawn(dispatch).await.expect("task");
    assert_eq!(outputs, (1..=50).collect::<Vec<_>>());
}

// Items that finish on their first poll (local sources) run one after the
// other: each is polled as soon as it starts and released before the next
// one is created, so a wide pool never holds more than one of them.
#[tokio::test(start_paused = true)]
async fn items_ready_at_once_are_polled_as_they_start_and_never_pile_up() {
    let gauge = LocalGauge::default();
    let dropped = Rc::new(Cell::new(0));
    let outputs = dispatch_bounded(0..100, nz(32), |i| {
        let alive = DropCounter(Rc::clone(&dropped));
        let entry = gauge.enter();
        async move {
            let _alive = alive;
            let _entry = entry;
            i * 2
        }
    })
    .await;
    assert_eq!(outputs, (0..100).map(|i| i * 2).collect::<Vec<_>>());
    assert_eq!(gauge.started.get(), 100);
    assert_eq!(
        gauge.peak.get(),
        1,
        "each finished item was released at once"
    );
    assert_eq!(dropped.get(), 100);
}

// A pending item keeps its worker while later items start in other slots,
// and a slot freed by a finished item serves the next one.
#[tokio::test(start_paused = true)]
async fn a_slot_freed_by_a_finished_item_serves_the_next_item() {
    let (release, hold) = oneshot::channel::<()>();
    let hold = RefCell::new(Some(hold));
    let gauge = LocalGauge::default();
    let run = dispatch_bounded(0..6, nz(2), |i| {
        let entry = gauge.enter();
        let wait = if i == 0 {
            hold.borrow_mut().take()
        } else {
            None
        };
        async move {
            let _entry = entry;
            if let Some(wait) = wait {
                let _ = wait.await;
            }
            i
        }
    });
    let mut run = pin!(run);
    assert!(poll_once(run.as_mut()).await.is_pending());
    // Item 0 waits; items 1..6 went through the second worker one by one.
    assert_eq!(gauge.started.get(), 6);
    assert_eq!(gauge.peak.get(), 2);
    release.send(()).expect("item 0 waits");
    assert_eq!(run.await, vec![0, 1, 2, 3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn a_single_item_runs_in_place_with_the_same_outcomes() {
    // Its output, its error and its cancellation are those of a larger
    // dispatch (a single item runs without a worker slot).
    let out = dispatch_bounded([7], nz(4), |n| async move {
        tokio::task::yield_now().await;
        n * 2
    })
    .await;
    assert_eq!(out, [14]);
    let failed = try_dispatch_bounded(["x"], nz(1), |text| async move { text.parse::<u32>() });
    assert!(failed.await.is_err());

    let dropped = Rc::new(Cell::new(0));
    let mut dispatch = Box::pin(dispatch_bounded(Some(1), nz(1), |_| {
        let guard = DropCounter(Rc::clone(&dropped));
        async move {
            let _guard = guard;
            pending::<()>().await;
        }
    }));
    assert!(poll_once(dispatch.as_mut()).await.is_pending());
    assert_eq!(dropped.get(), 0);
    drop(dispatch);
    assert_eq!(dropped.get(), 1);
}
