//! Behaviour of `CapacityController`: limits, acquisition order, timeouts,
//! cancellation and snapshots. Every test runs on paused tokio time and is
//! synchronised with gates and counters, never with wall-clock waits.

mod capacity_fixtures;

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use capacity_fixtures::{
    assert_idle, controller, join_all, limit, nz, poll_once, spawn_holder, wait_until, Gauge, Lcg,
};
use coalestra_concurrency::{
    CapacityConfig, CapacityConfigError, CapacityController, CapacityError, CapacityPermit,
    CapacitySnapshot,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

#[tokio::test(start_paused = true)]
async fn global_limit_is_respected() {
    let capacity = controller(3, &[]);
    let (gauge, release) = (Arc::new(Gauge::default()), Arc::new(Semaphore::new(0)));
    let mut tasks = JoinSet::new();
    for index in 0..10 {
        spawn_holder(
            &mut tasks,
            &capacity,
            &format!("source-{index}"),
            &gauge,
            &release,
        );
    }

    wait_until(|| gauge.current() == 3 && capacity.waiting() == 7).await;
    assert_eq!(capacity.in_use(), 3);
    assert_eq!(capacity.snapshot().global, limit(3, 3, 7));

    release.add_permits(10);
    join_all(&mut tasks).await;
    assert_eq!(gauge.peak(), 3);
    assert_idle(&capacity);
}

#[tokio::test(start_paused = true)]
async fn per_source_limit_is_respected() {
    let capacity = controller(10, &[("a", 2)]);
    let (gauge, release) = (Arc::new(Gauge::default()), Arc::new(Semaphore::new(0)));
    let mut tasks = JoinSet::new();
    for _ in 0..6 {
        spawn_holder(&mut tasks, &capacity, "a", &gauge, &release);
    }

    wait_until(|| gauge.current() == 2 && capacity.waiting() == 4).await;
    let snapshot = capacity.snapshot();
    assert_eq!(snapshot.global, limit(10, 2, 0));
    assert_eq!(snapshot.sources["a"], limit(2, 2, 4));

    release.add_permits(6);
    join_all(&mut tasks).await;
    assert_eq!(gauge.peak(), 2);
    assert_idle(&capacity);
}

#[tokio::test(start_paused = true)]
async fn source_waiters_do_not_hold_global_slots() {
    let capacity = controller(2, &[("slow", 1)]);
    let holder = capacity.acquire("slow", None, None).await.expect("free");
    assert!(holder.holds_source_slot());

    let mut waiters = JoinSet::new();
    for _ in 0..3 {
        let capacity = capacity.clone();
        waiters.spawn(async move {
            drop(
                capacity
                    .acquire("slow", None, None)
                    .await
                    .expect("no bound"),
            );
        });
    }
    wait_until(|| capacity.snapshot().sources["slow"].waiting == 3).await;
    let snapshot = capacity.snapshot();
    assert_eq!(snapshot.global, limit(2, 1, 0));
    assert_eq!(snapshot.sources["slow"], limit(1, 1, 3));

    // The queued "slow" callers left the second global slot free: another
    // source takes it without queueing at all.
    let fast = capacity
        .acquire("fast", Some(Duration::ZERO), None)
        .await
        .expect("a global slot is free");
    assert!(!fast.holds_source_slot());
    assert_eq!(capacity.snapshot().global, limit(2, 2, 0));

    drop(holder);
    drop(fast);
    join_all(&mut waiters).await;
    assert_idle(&capacity);
}

#[tokio::test(start_paused = true)]
async fn unlisted_source_only_takes_a_global_slot() {
    let capacity = controller(2, &[("a", 1)]);
    let permit = capacity
        .acquire("unlisted", None, None)
        .await
        .expect("free");
    assert_eq!(permit.source_name(), "unlisted");
    assert!(!permit.holds_source_slot());
    let snapshot = capacity.snapshot();
    assert_eq!(snapshot.global, limit(2, 1, 0));
    assert_eq!(snapshot.sources.len(), 1);
    assert_eq!(snapshot.sources["a"], limit(1, 0, 0));
    assert_eq!(capacity.source_limit("a"), Some(nz(1)));
    assert_eq!(capacity.source_limit("unlisted"), None);
}

#[tokio::test(start_paused = true)]
async fn queue_timeout_is_reported_when_it_binds() {
    let capacity = controller(1, &[]);
    let _held = capacity.acquire("a", None, None).await.expect("free");

    let started = Instant::now();
    let error = capacity
        .acquire("b", Some(Duration::from_millis(50)), None)
        .await
        .expect_err("saturated");
    assert_eq!(
        error,
        CapacityError::QueueTimeout {
            source_name: "b".into(),
            timeout: Duration::from_millis(50),
        }
    );
    assert!(error.is_queue_timeout() && !error.is_deadline_exceeded());
    assert_eq!(error.source_name(), "b");
    assert_eq!(started.elapsed(), Duration::from_millis(50));

    // A later deadline does not change which bound ends the wait.
    let started = Instant::now();
    let deadline = started + Duration::from_millis(100);
    let error = capacity
        .acquire("b", Some(Duration::from_millis(30)), Some(deadline))
        .await
        .expect_err("saturated");
    assert!(error.is_queue_timeout());
    assert_eq!(started.elapsed(), Duration::from_millis(30));
    assert_eq!(capacity.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn deadline_is_reported_when_it_binds() {
    let capacity = controller(1, &[("b", 1)]);
    let _held = capacity.acquire("a", None, None).await.expect("free");

    let started = Instant::now();
    let error = capacity
        .acquire(
            "b",
            Some(Duration::from_millis(100)),
            Some(started + Duration::from_millis(30)),
        )
        .await
        .expect_err("saturated");
    assert_eq!(
        error,
        CapacityError::DeadlineExceeded {
            source_name: "b".into(),
            waited: Duration::from_millis(30),
        }
    );
    assert!(error.is_deadline_exceeded() && !error.is_queue_timeout());
    assert_eq!(started.elapsed(), Duration::from_millis(30));

    // Without a queue timeout, and on a tie, the deadline is reported too.
    let started = Instant::now();
    let deadline = started + Duration::from_millis(20);
    let error = capacity.acquire("b", None, Some(deadline)).await;
    assert!(error.expect_err("saturated").is_deadline_exceeded());
    let started = Instant::now();
    let deadline = started + Duration::from_millis(20);
    let tie = capacity.acquire("b", Some(Duration::from_millis(20)), Some(deadline));
    assert!(tie.await.expect_err("saturated").is_deadline_exceeded());
    let snapshot = capacity.snapshot();
    assert_eq!(snapshot.global, limit(1, 1, 0));
    assert_eq!(snapshot.sources["b"], limit(1, 0, 0));
}

#[tokio::test(start_paused = true)]
async fn past_deadline_fails_immediately() {
    let capacity = controller(1, &[("a", 1)]);
    let deadline = Instant::now();
    tokio::time::advance(Duration::from_millis(5)).await;

    let before = Instant::now();
    let error = capacity
        .acquire("a", Some(Duration::from_secs(1)), Some(deadline))
        .await
        .expect_err("deadline already passed");
    assert_eq!(
        error,
        CapacityError::DeadlineExceeded {
            source_name: "a".into(),
            waited: Duration::ZERO,
        }
    );
    // A deadline of exactly now has been reached as well.
    let error = capacity.acquire("a", None, Some(Instant::now())).await;
    assert!(error.expect_err("deadline reached").is_deadline_exceeded());
    assert_eq!(Instant::now(), before, "no time passed");
    assert_idle(&capacity);
}

#[tokio::test(start_paused = true)]
async fn cancelled_acquire_releases_the_source_slot_it_took() {
    let capacity = controller(1, &[("a", 1)]);
    let blocker = capacity.acquire("b", None, None).await.expect("free");

    let mut waiting = Box::pin(capacity.acquire("a", None, None));
    assert!(poll_once(waiting.as_mut()).await.is_pending());
    // It holds the source slot and queues for the global one.
    let snapshot = capacity.snapshot();
    assert_eq!(snapshot.sources["a"], limit(1, 1, 0));
    assert_eq!(snapshot.global, limit(1, 1, 1));

    drop(waiting);
    let snapshot = capacity.snapshot();
    assert_eq!(snapshot.sources["a"], limit(1, 0, 0));
    assert_eq!(snapshot.global, limit(1, 1, 0));

    drop(blocker);
    assert_idle(&capacity);
    let permit = capacity.acquire("a", Some(Duration::ZERO), None).await;
    assert!(permit.expect("nothing leaked").holds_source_slot());
}

#[tokio::test(start_paused = true)]
async fn cancelled_acquire_returns_slots_granted_but_not_yet_observed() {
    let capacity = controller(1, &[("a", 1)]);
    let blocker = capacity.acquire("b", None, None).await.expect("free");
    let mut waiting = Box::pin(capacity.acquire("a", None, None));
    assert!(poll_once(waiting.as_mut()).await.is_pending());

    // The released global slot is handed to the queued future, which is
    // dropped before it ever sees it.
    drop(blocker);
    drop(waiting);
    assert_idle(&capacity);
}

#[tokio::test(start_paused = true)]
async fn cancelled_source_waiter_leaves_no_trace() {
    let capacity = controller(4, &[("a", 1)]);
    let held = capacity.acquire("a", None, None).await.expect("free");
    let mut waiting = Box::pin(capacity.acquire("a", None, None));
    assert!(poll_once(waiting.as_mut()).await.is_pending());
    assert_eq!(capacity.snapshot().sources["a"], limit(1, 1, 1));
    assert_eq!(capacity.waiting(), 1);

    drop(waiting);
    assert_eq!(capacity.snapshot().sources["a"], limit(1, 1, 0));
    drop(held);
    assert_idle(&capacity);
}

#[tokio::test(start_paused = true)]
async fn snapshot_reports_contention() {
    let capacity = controller(2, &[("a", 1), ("idle", 3)]);
    let held_a = capacity.acquire("a", None, None).await.expect("free");
    let held_b = capacity.acquire("b", None, None).await.expect("free");

    let mut waiters = JoinSet::new();
    for source in ["c", "a"] {
        let capacity = capacity.clone();
        waiters.spawn(async move {
            drop(
                capacity
                    .acquire(source, None, None)
                    .await
                    .expect("no bound"),
            );
        });
    }
    wait_until(|| capacity.waiting() == 2).await;

    let snapshot = capacity.snapshot();
    let expected = CapacitySnapshot {
        global: limit(2, 2, 1),
        sources: [("a", limit(1, 1, 1)), ("idle", limit(3, 0, 0))]
            .into_iter()
            .map(|(source, usage)| (source.to_owned(), usage))
            .collect(),
    };
    assert_eq!(snapshot, expected);
    assert_eq!(capacity.in_use(), 2);
    assert_eq!(capacity.max_concurrency(), nz(2));

    drop((held_a, held_b));
    join_all(&mut waiters).await;
    assert_idle(&capacity);
}

#[tokio::test(start_paused = true)]
async fn wait_time_measures_the_queueing() {
    let capacity = controller(1, &[]);
    let immediate = capacity.acquire("a", None, None).await.expect("free");
    assert_eq!(immediate.wait_time(), Duration::ZERO);

    let queued = tokio::spawn({
        let capacity = capacity.clone();
        async move {
            capacity
                .acquire("a", None, None)
                .await
                .map(|p| p.wait_time())
        }
    });
    tokio::time::sleep(Duration::from_millis(25)).await;
    drop(immediate);
    let waited = queued.await.expect("task").expect("no bound");
    assert_eq!(waited, Duration::from_millis(25));
}

#[tokio::test(start_paused = true)]
async fn clones_share_limits_and_counters() {
    let capacity = controller(1, &[]);
    let clone = capacity.clone();
    let _held = capacity.acquire("a", None, None).await.expect("free");
    assert_eq!(clone.in_use(), 1);
    let error = clone.acquire("b", Some(Duration::ZERO), None).await;
    assert!(error.expect_err("shared limit").is_queue_timeout());
}

#[derive(Default)]
struct Outcomes {
    acquired: AtomicUsize,
    queue_timeouts: AtomicUsize,
    deadlines: AtomicUsize,
    cancelled: AtomicUsize,
}

#[tokio::test(start_paused = true)]
async fn storm_of_acquisitions_leaves_counts_at_zero() {
    const SOURCES: [(&str, usize); 4] = [("a", 2), ("b", 1), ("c", usize::MAX), ("d", usize::MAX)];
    let capacity = controller(4, &[("a", 2), ("b", 1)]);
    let global = Arc::new(Gauge::default());
    let per_source: Vec<Arc<Gauge>> = SOURCES.iter().map(|_| Arc::default()).collect();
    let outcomes = Arc::new(Outcomes::default());
    let mut rng = Lcg::seeded(0x00C0_A1E5_7A00);
    let mut tasks = JoinSet::new();
    let mut handles = Vec::new();

    for _ in 0..200 {
        let which = usize::try_from(rng.below(4)).expect("small");
        let source = SOURCES[which].0;
        let start_after = rng.millis(40);
        let queue_timeout = (rng.below(3) > 0).then(|| rng.millis(30));
        let deadline_offset = match rng.below(4) {
            0 => Some(None),
            1 => Some(Some(rng.millis(40) + Duration::from_millis(1))),
            _ => None,
        };
        let cancel_after = (rng.below(4) == 0).then(|| rng.millis(25));
        let hold_for = rng.millis(10) + Duration::from_millis(1);
        let (capacity, outcomes) = (capacity.clone(), Arc::clone(&outcomes));
        let (global, local) = (Arc::clone(&global), Arc::clone(&per_source[which]));
        handles.push(tasks.spawn(async move {
            tokio::time::sleep(start_after).await;
            let now = Instant::now();
            // `Some(None)`: a deadline that has already passed.
            let deadline = deadline_offset.map(|offset| offset.map_or(now, |o| now + o));
            let acquire = capacity.acquire(source, queue_timeout, deadline);
            let result = match cancel_after {
                Some(after) => match tokio::time::timeout(after, acquire).await {
                    Ok(result) => result,
                    Err(_) => {
                        outcomes.cancelled.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                },
                None => acquire.await,
            };
            let counter = match &result {
                Ok(_) => &outcomes.acquired,
                Err(CapacityError::QueueTimeout { .. }) => &outcomes.queue_timeouts,
                Err(_) => &outcomes.deadlines,
            };
            counter.fetch_add(1, Ordering::SeqCst);
            if let Ok(_permit) = result {
                // Declared after the permit, so dropped (even on abort) before it.
                let _entries = (global.enter(), local.enter());
                tokio::time::sleep(hold_for).await;
            }
        }));
    }
    // Abort a few tasks at random points: before, during or after acquiring.
    for _ in 0..20 {
        tokio::time::sleep(rng.millis(5)).await;
        let victim = usize::try_from(rng.below(200)).expect("small");
        handles[victim].abort();
    }
    let mut aborted = 0;
    while let Some(result) = tasks.join_next().await {
        match result {
            Ok(()) => {}
            Err(error) if error.is_cancelled() => aborted += 1,
            Err(error) => panic!("storm task failed: {error}"),
        }
    }

    assert_idle(&capacity);
    assert_eq!(global.peak(), 4);
    for ((source, limit), gauge) in SOURCES.iter().zip(&per_source) {
        assert!(
            gauge.peak() <= *limit,
            "source {source} peaked at {}",
            gauge.peak()
        );
    }
    assert_eq!(per_source[1].peak(), 1);
    for (name, count) in [
        ("acquired", &outcomes.acquired),
        ("queue timeouts", &outcomes.queue_timeouts),
        ("deadlines", &outcomes.deadlines),
        ("cancelled", &outcomes.cancelled),
    ] {
        assert!(count.load(Ordering::SeqCst) > 0, "storm produced no {name}");
    }
    assert!(aborted > 0, "storm aborted no task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_hold_across_worker_threads() {
    let capacity = controller(3, &[("a", 2)]);
    let (global, source_a) = (Arc::new(Gauge::default()), Arc::new(Gauge::default()));
    let mut tasks = JoinSet::new();
    for index in 0..64 {
        let source = if index % 2 == 0 { "a" } else { "b" };
        let capacity = capacity.clone();
        let (global, source_a) = (Arc::clone(&global), Arc::clone(&source_a));
        tasks.spawn(async move {
            let _permit = capacity
                .acquire(source, None, None)
                .await
                .expect("no bound");
            let _global = global.enter();
            let _source = (source == "a").then(|| source_a.enter());
            for _ in 0..3 {
                tokio::task::yield_now().await;
            }
        });
    }
    join_all(&mut tasks).await;
    assert!(global.peak() <= 3);
    assert!(source_a.peak() <= 2);
    assert_idle(&capacity);
}

#[test]
fn empty_source_name_is_rejected() {
    let config = CapacityConfig::new(nz(4)).with_source_limit("", nz(1));
    let error = CapacityController::new(config).expect_err("empty name");
    assert!(error.is_empty_source_name());
    assert_eq!(error.to_string(), "source name must not be empty");
}

#[test]
fn oversized_limits_are_rejected() {
    let error = CapacityController::new(CapacityConfig::new(NonZeroUsize::MAX));
    assert!(error.expect_err("too large").is_global_limit_too_large());

    let config = CapacityConfig::new(nz(4)).with_source_limit("a", NonZeroUsize::MAX);
    let error = CapacityController::new(config).expect_err("too large");
    assert!(error.is_source_limit_too_large());
    assert!(matches!(
        &error,
        CapacityConfigError::SourceLimitTooLarge { source_name, .. } if source_name == "a"
    ));

    let largest = nz(CapacityConfigError::MAX_LIMIT);
    assert!(CapacityController::new(CapacityConfig::new(largest)).is_ok());
}

#[test]
fn error_messages_are_lowercase_without_final_period() {
    let messages = [
        CapacityConfigError::EmptySourceName.to_string(),
        CapacityConfigError::GlobalLimitTooLarge { limit: 9, max: 8 }.to_string(),
        CapacityError::QueueTimeout {
            source_name: "a".into(),
            timeout: Duration::from_millis(5),
        }
        .to_string(),
        CapacityError::DeadlineExceeded {
            source_name: "a".into(),
            waited: Duration::ZERO,
        }
        .to_string(),
    ];
    for message in messages {
        assert!(message.starts_with(|c: char| c.is_lowercase()), "{message}");
        assert!(!message.ends_with('.'), "{message}");
    }
}

#[test]
fn public_types_are_thread_safe_and_serializable() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    fn serialize<T: serde::Serialize>() {}
    send_sync::<CapacityController>();
    send_sync::<CapacityPermit>();
    send_sync::<CapacityError>();
    serialize::<CapacitySnapshot>();

    let capacity = controller(1, &[]);
    send(&capacity.acquire("a", None, None));
}

#[tokio::test(start_paused = true)]
async fn try_acquire_takes_free_capacity_without_waiting() {
    let capacity = controller(2, &[("rates", 1)]);
    let rates: Arc<str> = Arc::from("rates");
    let other: Arc<str> = Arc::from("other");

    let first = capacity.try_acquire(&rates).expect("free capacity");
    assert_eq!(first.source_name(), "rates");
    assert!(first.holds_source_slot());
    assert_eq!(first.wait_time(), Duration::ZERO);
    // The source's only slot is taken: a second try holds nothing.
    assert!(capacity.try_acquire(&rates).is_none());
    assert_eq!(capacity.in_use(), 1);
    assert_eq!(capacity.snapshot().sources["rates"], limit(1, 1, 0));

    // An unlisted source takes only the last global slot.
    let second = capacity.try_acquire(&other).expect("a global slot is free");
    assert!(!second.holds_source_slot());
    assert_eq!(capacity.in_use(), 2);

    // Global capacity is exhausted: a source whose own slot is free gives
    // that slot back instead of holding it.
    drop(first);
    let third = capacity.try_acquire(&other).expect("the freed global slot");
    assert!(capacity.try_acquire(&rates).is_none());
    assert_eq!(capacity.snapshot().sources["rates"], limit(1, 0, 0));
    assert_eq!(capacity.waiting(), 0);

    drop((second, third));
    assert!(capacity.try_acquire(&rates).is_some());
    assert_idle(&capacity);
}

#[tokio::test(start_paused = true)]
async fn try_acquire_never_overtakes_queued_waiters() {
    let capacity = controller(1, &[]);
    let source: Arc<str> = Arc::from("s");
    let held = capacity.try_acquire(&source).expect("free capacity");
    let mut queued = Box::pin(capacity.acquire("s", None, None));
    assert!(poll_once(queued.as_mut()).await.is_pending());
    assert_eq!(capacity.waiting(), 1);

    // The released slot goes to the queued caller, not to a later try.
    drop(held);
    assert!(capacity.try_acquire(&source).is_none());
    let permit = queued.await.expect("the queued caller gets the slot");
    assert_eq!(capacity.in_use(), 1);
    drop(permit);
    assert_idle(&capacity);
}
