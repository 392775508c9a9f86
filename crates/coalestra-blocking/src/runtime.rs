//! [`RuntimeThread`]: the named thread that builds, drives and finally stops
//! the facade's tokio runtime, and the [`Shutdown`] sequence it runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::thread::JoinHandle;

use coalestra_orchestration::SnapshotBuilder;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::backlog::Backlog;
use crate::error::BlockingError;
use crate::options::BlockingOptions;

/// The name of the thread that owns a facade's runtime.
pub const RUNTIME_THREAD_NAME: &str = "coalestra-runtime";

/// The name of the runtime's worker threads.
const WORKER_THREAD_NAME: &str = "coalestra-worker";

/// Worker threads of the runtime: enough for builds, publications and
/// background refreshes to progress while one worker is busy.
const WORKER_THREADS: usize = 2;

/// What the shutdown sequence left undone.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ShutdownReport {
    /// Operations still running when the drain timed out (cancelled).
    pub(crate) cancelled: usize,
    /// Whether the builder's close or refresh wait timed out.
    pub(crate) builder_timed_out: bool,
    /// Background refreshes and engine tasks left when it timed out.
    pub(crate) unfinished: usize,
}

impl ShutdownReport {
    fn timed_out(&self) -> bool {
        self.cancelled > 0 || self.builder_timed_out
    }

    /// Ok when everything finished in time.
    pub(crate) fn into_result(self, options: &BlockingOptions) -> Result<(), BlockingError> {
        if self.timed_out() {
            Err(BlockingError::ShutdownTimeout {
                timeout: options.shutdown_timeout,
                pending: self.cancelled + self.unfinished,
            })
        } else {
            Ok(())
        }
    }
}

/// The steps of closing, run on the runtime thread once signalled.
pub(crate) struct Shutdown {
    pub(crate) backlog: Arc<Backlog>,
    pub(crate) builder: SnapshotBuilder,
    pub(crate) options: BlockingOptions,
}

impl Shutdown {
    /// Drains accepted work up to the timeout, cancels the rest, then waits
    /// for the builder's background work and closes it (when configured).
    async fn run(self) -> ShutdownReport {
        let limit = self.options.shutdown_timeout;
        let mut report = ShutdownReport::default();
        if tokio::time::timeout(limit, self.backlog.drained())
            .await
            .is_err()
        {
            report.cancelled = self.backlog.cancel_all();
        }
        let builder = &self.builder;
        let settle = async {
            if self.options.close_builder {
                builder.close().await;
            } else {
                builder.wait_for_refreshes().await;
            }
        };
        if tokio::time::timeout(limit, settle).await.is_err() {
            report.builder_timed_out = true;
            report.unfinished = builder.background_refreshes() + builder.active_tasks();
        }
        report
    }
}

/// The thread owning the runtime; stopping it joins it.
pub(crate) struct RuntimeThread {
    handle: Handle,
    signal: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<ShutdownReport>>>,
    alive: Arc<AtomicBool>,
}

/// Locks a mutex, recovering the data if a holder panicked.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RuntimeThread {
    /// Starts the thread and waits until its runtime is ready.
    pub(crate) fn start(shutdown: Shutdown) -> Result<Self, BlockingError> {
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<Handle, String>>(1);
        let (signal_tx, signal_rx) = oneshot::channel::<()>();
        let alive = Arc::new(AtomicBool::new(true));
        let thread_alive = Arc::clone(&alive);
        let stop_within = shutdown.options.shutdown_timeout;
        let spawned = std::thread::Builder::new()
            .name(RUNTIME_THREAD_NAME.to_owned())
            .spawn(move || {
                let _alive = AliveFlag(thread_alive);
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(WORKER_THREADS)
                    .thread_name(WORKER_THREAD_NAME)
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error.to_string()));
                        return ShutdownReport::default();
                    }
                };
                let _ = ready_tx.send(Ok(runtime.handle().clone()));
                let report = runtime.block_on(async move {
                    // A dropped sender is a shutdown signal too.
                    let _ = signal_rx.await;
                    shutdown.run().await
                });
                runtime.shutdown_timeout(stop_within);
                report
            });
        let thread = spawned.map_err(|error| BlockingError::RuntimeUnavailable {
            reason: format!("cannot spawn {RUNTIME_THREAD_NAME}: {error}"),
        })?;
        let failure = match ready_rx.recv() {
            Ok(Ok(handle)) => {
                return Ok(Self {
                    handle,
                    signal: Mutex::new(Some(signal_tx)),
                    thread: Mutex::new(Some(thread)),
                    alive,
                })
            }
            Ok(Err(reason)) => format!("cannot build the runtime: {reason}"),
            Err(_) => "the runtime thread stopped while starting".to_owned(),
        };
        let _ = thread.join();
        Err(BlockingError::RuntimeUnavailable { reason: failure })
    }

    /// The runtime's handle.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Whether the thread has not finished yet.
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Signals the shutdown and joins the thread; `None` when it was
    /// already stopped. Concurrent callers wait for the first one.
    pub(crate) fn stop(&self) -> Option<std::thread::Result<ShutdownReport>> {
        let mut thread = lock(&self.thread);
        let joined = thread.take()?;
        lock(&self.signal).take();
        Some(joined.join())
    }

    /// Signals the shutdown without waiting: the thread finishes the
    /// sequence and stops on its own.
    pub(crate) fn stop_detached(&self) {
        lock(&self.signal).take();
        // When another caller holds the lock it is already joining the
        // thread; never wait for it here.
        match self.thread.try_lock() {
            Ok(mut thread) => drop(thread.take()),
            Err(TryLockError::Poisoned(poisoned)) => drop(poisoned.into_inner().take()),
            Err(TryLockError::WouldBlock) => {}
        }
    }
}

impl Drop for RuntimeThread {
    fn drop(&mut self) {
        // Owners stop the thread first; this only guards against leaks.
        self.stop_detached();
    }
}

/// Clears the alive flag when the thread ends, however it ends.
struct AliveFlag(Arc<AtomicBool>);

impl Drop for AliveFlag {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
