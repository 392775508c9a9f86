//! Ownership of spawned work: every task the engine spawns is tracked so that
//! `close` can wait for it.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

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
        tokio::spawn(async move {
            let _guard = guard;
            future.await
        })
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
