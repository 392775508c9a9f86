//! The latency-bound workloads: `coalesce-1000` (1,000 concurrent builds of
//! one key against a 10 ms source, no cache) and `latency-20` (20 keys from
//! a 25 ms source with `max_concurrency` 20, no cache).
//!
//! Their sources wait out their latency on a [`Delay`]: by default a
//! simulated [`Remote`] backend, whose responses arrive after the stated
//! latency as network responses would; the `-tokio-timer` variants wait on
//! a tokio sleep instead, which tokio's millisecond timer makes last about a
//! millisecond longer. The `-floor` functions time the same waits without
//! the engine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra::{FnSource, FreshnessPolicy, ResourceKey, SnapshotBuilder, SourceOutput};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::read_path::check_complete;
use crate::remote::Remote;
use crate::{key, keys, value_for};

/// Concurrent builds in `coalesce-1000`.
pub const COALESCE_BUILDS: usize = 1_000;
/// Source latency in `coalesce-1000`.
pub const COALESCE_LATENCY: Duration = Duration::from_millis(10);
/// Keys in `latency-20`.
pub const LATENCY_KEYS: usize = 20;
/// Source latency in `latency-20`.
pub const LATENCY_SOURCE: Duration = Duration::from_millis(25);

/// How a simulated source waits out its latency.
#[derive(Debug, Clone)]
pub enum Delay {
    /// A request to a simulated remote backend (the default).
    Remote(Arc<Remote>),
    /// A tokio sleep of the latency.
    TokioTimer(Duration),
}

impl Delay {
    /// Waits on a simulated remote backend answering after `latency`.
    pub fn remote(latency: Duration) -> Self {
        Self::Remote(Arc::new(Remote::new(latency)))
    }

    /// Waits on a tokio sleep of `latency`.
    pub fn tokio_timer(latency: Duration) -> Self {
        Self::TokioTimer(latency)
    }

    /// The delay of the latency-bound workload named `workload`: a tokio
    /// sleep for its `-tokio-timer` variants, the simulated remote backend
    /// otherwise.
    pub fn for_workload(workload: &str, latency: Duration) -> Self {
        if workload.contains("-tokio-timer") {
            Self::tokio_timer(latency)
        } else {
            Self::remote(latency)
        }
    }

    /// The stated latency.
    pub fn latency(&self) -> Duration {
        match self {
            Self::Remote(remote) => remote.latency(),
            Self::TokioTimer(latency) => *latency,
        }
    }

    /// Waits out the latency once.
    pub async fn wait(&self) {
        match self {
            Self::Remote(remote) => remote.call().await,
            Self::TokioTimer(latency) => tokio::time::sleep(*latency).await,
        }
    }
}

/// An async source waiting on `delay` per call and counting its calls.
fn delayed_source(name: &str, delay: Delay, calls: Arc<AtomicU64>) -> FnSource {
    FnSource::new(name, move |key: ResourceKey, _ctx| {
        let calls = Arc::clone(&calls);
        let delay = delay.clone();
        async move {
            calls.fetch_add(1, Ordering::Relaxed);
            delay.wait().await;
            Ok(SourceOutput::new(value_for(&key)))
        }
    })
}

/// What one timed run of a latency-bound workload observed.
#[derive(Debug, Clone, Copy)]
pub struct Timed {
    /// Wall time of the run.
    pub wall: Duration,
    /// Source calls made by the run.
    pub calls: u64,
}

impl Timed {
    /// Wall time divided by the source latency (1.0 is the ideal).
    pub fn ratio_to(&self, latency: Duration) -> f64 {
        self.wall.as_secs_f64() / latency.as_secs_f64()
    }
}

/// `coalesce-1000`.
pub struct Coalesce {
    builder: SnapshotBuilder,
    key: ResourceKey,
    calls: Arc<AtomicU64>,
}

impl Default for Coalesce {
    fn default() -> Self {
        Self::new()
    }
}

impl Coalesce {
    /// A builder over one 10 ms source (a simulated remote backend) that
    /// never caches.
    ///
    /// # Panics
    ///
    /// When the builder cannot be created.
    pub fn new() -> Self {
        Self::with_delay(Delay::remote(COALESCE_LATENCY))
    }

    /// The same over a source waiting on `delay`.
    ///
    /// # Panics
    ///
    /// When the builder cannot be created.
    pub fn with_delay(delay: Delay) -> Self {
        let calls = Arc::new(AtomicU64::new(0));
        let source = delayed_source("slow", delay, Arc::clone(&calls));
        let builder = SnapshotBuilder::builder([source.into()])
            .default_policy(FreshnessPolicy::no_cache())
            .build()
            .expect("coalesce builder");
        Self {
            builder,
            key: key("coalesce", "K", 0),
            calls,
        }
    }

    /// 1,000 builds of the key, spawned at once and awaited together.
    /// Must run inside a tokio runtime.
    ///
    /// # Panics
    ///
    /// When a build fails.
    pub async fn run(&self) -> Timed {
        let before = self.calls.load(Ordering::Relaxed);
        let started = Instant::now();
        let mut builds = JoinSet::new();
        for _ in 0..COALESCE_BUILDS {
            let builder = self.builder.clone();
            let key = self.key.clone();
            builds.spawn(async move { builder.build([key]).await });
        }
        while let Some(joined) = builds.join_next().await {
            let snapshot = joined.expect("build task").expect("coalesced build");
            check_complete(&snapshot, 1);
        }
        let wall = started.elapsed();
        Timed {
            wall,
            calls: self.calls.load(Ordering::Relaxed) - before,
        }
    }
}

/// `latency-20`.
pub struct Latency {
    builder: SnapshotBuilder,
    keys: Vec<ResourceKey>,
    calls: Arc<AtomicU64>,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

impl Latency {
    /// A builder over one 25 ms source (a simulated remote backend) with
    /// `max_concurrency` 20, no cache.
    ///
    /// # Panics
    ///
    /// When the builder cannot be created.
    pub fn new() -> Self {
        Self::with_delay(Delay::remote(LATENCY_SOURCE))
    }

    /// The same over a source waiting on `delay`.
    ///
    /// # Panics
    ///
    /// When the builder cannot be created.
    pub fn with_delay(delay: Delay) -> Self {
        let calls = Arc::new(AtomicU64::new(0));
        let source = delayed_source("remote", delay, Arc::clone(&calls));
        let builder = SnapshotBuilder::builder([source.into()])
            .default_policy(FreshnessPolicy::no_cache())
            .max_concurrency(LATENCY_KEYS)
            .build()
            .expect("latency builder");
        Self {
            builder,
            keys: keys("latency", "K", LATENCY_KEYS),
            calls,
        }
    }

    /// One build of the 20 keys.
    ///
    /// # Panics
    ///
    /// When the build fails.
    pub async fn run(&self) -> Timed {
        let before = self.calls.load(Ordering::Relaxed);
        let started = Instant::now();
        let snapshot = self
            .builder
            .build(self.keys.iter().cloned())
            .await
            .expect("latency build");
        let wall = started.elapsed();
        check_complete(&snapshot, LATENCY_KEYS);
        Timed {
            wall,
            calls: self.calls.load(Ordering::Relaxed) - before,
        }
    }
}

/// The floor of `coalesce-1000` without the engine: 1,000 spawned tasks
/// waiting on a watch channel that a task spawned first fires after waiting
/// on `delay` once (the delay plus task wake-ups).
///
/// # Panics
///
/// When a task panics.
pub async fn coalesce_floor(delay: &Delay) -> Duration {
    let started = Instant::now();
    let (tx, rx) = tokio::sync::watch::channel(0u64);
    // The call starts with the first request, as a single-flight owner's does.
    let call = delay.clone();
    tokio::spawn(async move {
        call.wait().await;
        let _ = tx.send(1);
    });
    let mut waiters = JoinSet::new();
    for _ in 0..COALESCE_BUILDS {
        let mut rx = rx.clone();
        waiters.spawn(async move {
            if *rx.borrow_and_update() == 0 {
                let _ = rx.changed().await;
            }
        });
    }
    while let Some(joined) = waiters.join_next().await {
        joined.expect("waiter task");
    }
    started.elapsed()
}

/// The floor of `latency-20` without the engine: 20 spawned tasks each
/// waiting on `delay` once, joined.
///
/// # Panics
///
/// When a task panics.
pub async fn latency_floor(delay: &Delay) -> Duration {
    let started = Instant::now();
    let mut waits = JoinSet::new();
    for _ in 0..LATENCY_KEYS {
        let delay = delay.clone();
        waits.spawn(async move { delay.wait().await });
    }
    while let Some(joined) = waits.join_next().await {
        joined.expect("wait task");
    }
    started.elapsed()
}
