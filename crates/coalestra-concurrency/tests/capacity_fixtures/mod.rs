//! Shared fixtures of the capacity tests: controllers, gauges, gates and a
//! seeded generator.

use std::future::{poll_fn, Future};
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use coalestra_concurrency::{CapacityConfig, CapacityController, LimitSnapshot};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// A non-zero limit; panics on zero.
pub fn nz(value: usize) -> NonZeroUsize {
    NonZeroUsize::new(value).expect("test limits are non-zero")
}

/// A controller with a global limit and the given per-source limits.
pub fn controller(global: usize, sources: &[(&str, usize)]) -> CapacityController {
    let config = sources.iter().fold(
        CapacityConfig::new(nz(global)),
        |config, (source, limit)| config.with_source_limit(*source, nz(*limit)),
    );
    CapacityController::new(config).expect("valid test config")
}

/// The expected snapshot of one limit.
pub fn limit(limit: usize, in_use: usize, waiting: usize) -> LimitSnapshot {
    LimitSnapshot {
        limit,
        in_use,
        waiting,
    }
}

/// Yields to the other tasks until `condition` holds; panics if it never does.
pub async fn wait_until(mut condition: impl FnMut() -> bool) {
    for _ in 0..10_000 {
        if condition() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("condition not reached");
}

/// Polls `future` exactly once.
pub async fn poll_once<F: Future>(mut future: Pin<&mut F>) -> Poll<F::Output> {
    poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
}

/// Counts holders at once and remembers the highest count.
#[derive(Default)]
pub struct Gauge {
    current: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    pub fn enter(self: &Arc<Self>) -> GaugeEntry {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        GaugeEntry(Arc::clone(self))
    }

    pub fn current(&self) -> usize {
        self.current.load(Ordering::SeqCst)
    }

    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

/// Leaves the gauge on drop, so aborted holders are accounted for too.
pub struct GaugeEntry(Arc<Gauge>);

impl Drop for GaugeEntry {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Spawns a task that acquires capacity for `source`, enters `gauge` and
/// holds both until `release` hands it a permit.
pub fn spawn_holder(
    tasks: &mut JoinSet<()>,
    capacity: &CapacityController,
    source: &str,
    gauge: &Arc<Gauge>,
    release: &Arc<Semaphore>,
) {
    let (capacity, source) = (capacity.clone(), source.to_owned());
    let (gauge, release) = (Arc::clone(gauge), Arc::clone(release));
    tasks.spawn(async move {
        let _permit = capacity
            .acquire(source.as_str(), None, None)
            .await
            .expect("no bound");
        let _entry = gauge.enter();
        release.acquire().await.expect("open").forget();
    });
}

/// Awaits every task, failing on any panic.
pub async fn join_all(tasks: &mut JoinSet<()>) {
    while let Some(result) = tasks.join_next().await {
        result.expect("holder task succeeds");
    }
}

/// Asserts that nothing is in use or queued, globally and per source.
pub fn assert_idle(capacity: &CapacityController) {
    let snapshot = capacity.snapshot();
    assert_eq!((snapshot.global.in_use, snapshot.global.waiting), (0, 0));
    for (source, usage) in &snapshot.sources {
        assert_eq!((usage.in_use, usage.waiting), (0, 0), "source {source}");
    }
    assert_eq!((capacity.in_use(), capacity.waiting()), (0, 0));
}

/// Deterministic linear congruential generator (Knuth's MMIX constants).
pub struct Lcg(u64);

impl Lcg {
    pub fn seeded(seed: u64) -> Self {
        Self(seed)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }

    pub fn millis(&mut self, bound: u64) -> Duration {
        Duration::from_millis(self.below(bound))
    }
}
