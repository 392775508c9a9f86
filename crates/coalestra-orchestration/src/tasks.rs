//! Ownership of spawned work: every task the engine spawns is tracked so that
//! `close` can wait for it.

use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Inner {
    active: AtomicUsize,
    idle: Notify,
}

/// Tracks spawned tasks; `wait_idle` returns once none is running.
#[derive(Debug, Clone, Default)]
pub(crate) struct TaskTracker(Arc<Inner>);

struct ActiveGuard(Arc<Inner>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl TaskTracker {
    /// Spawns a tracked task on the current runtime.
    pub(crate) fn spawn<F>(&self, future: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.active.fetch_add(1, Ordering::AcqRel);
        let guard = ActiveGuard(Arc::clone(&self.0));
        spawn_counted(future, Some(guard))
    }

    /// Tasks still running.
    pub(crate) fn active(&self) -> usize {
        self.0.active.load(Ordering::Acquire)
    }

    /// Waits until no tracked task is running.
    pub(crate) async fn wait_idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.active() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Spawns a future already counted by `guard`.
fn spawn_counted<F>(future: F, guard: Option<ActiveGuard>) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    tokio::spawn(async move {
        let _guard = guard;
        future.await
    })
}

/// Shared work that its first caller drives inline while it waits, and that
/// moves to a tracked task when that caller stops early (dropped, or done
/// waiting at its deadline): the work starts at once, without a task
/// switch, yet cancelling the caller never cancels work others wait for.
///
/// While it lives the work counts as an active task, so
/// [`TaskTracker::wait_idle`] waits for it wherever it runs. A panic inside
/// the work ends the work (its guards then release its waiters), as it would
/// end a spawned task, instead of unwinding through the caller.
pub(crate) struct Detachable {
    work: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    active: Option<ActiveGuard>,
}

impl Detachable {
    pub(crate) fn new(
        tasks: &TaskTracker,
        work: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        tasks.0.active.fetch_add(1, Ordering::AcqRel);
        Self {
            work: Some(Box::pin(work)),
            active: Some(ActiveGuard(Arc::clone(&tasks.0))),
        }
    }

    /// Advances the work; `true` once it has finished.
    pub(crate) fn poll_work(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(work) = self.work.as_mut() else {
            return true;
        };
        match catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
            Ok(Poll::Pending) => false,
            Ok(Poll::Ready(())) | Err(_) => {
                self.work = None;
                self.active = None;
                true
            }
        }
    }
}

impl Drop for Detachable {
    fn drop(&mut self) {
        let Some(work) = self.work.take() else {
            return;
        };
        let guard = self.active.take();
        // Without a runtime (a caller dropped outside one) the work is
        // dropped: its guards release every waiter with an error.
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(spawn_counted(work, guard));
        }
    }
}
