//! Non-blocking submissions (B20.5–B20.11, B20.14, B20.15): handles carry
//! their own operation's result or error, inputs are captured at submission,
//! the backlog bound fails producers at once and atomically, slots are freed
//! by completion and failure, and flush waits for accepted work without
//! cancelling it.
//!
//! Operations are held inside a cache write until the test releases them;
//! durations only bound waits for liveness.

mod support;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use coalestra_blocking::{BlockingOptions, SubmissionError};
use coalestra_cache::{PublishOptions, ResourceUpdate};
use coalestra_core::{CoalestraError, Payload, Timestamp};
use coalestra_test::key;

use support::{facade_with_cache, source_value, TestCache, LIVENESS, NOW};

fn text(value: &str) -> Payload {
    Payload::new(value.to_owned())
}

#[test]
fn blocking_and_submitted_publications_both_land() {
    let price = key("market:price:BTC");
    let cache = TestCache::passing();
    let (source, _) = source_value("rest");
    let facade = facade_with_cache(vec![source.into()], &cache, BlockingOptions::new());
    let publisher = facade.publisher();

    let first = publisher
        .publish(
            price.clone(),
            text("v1"),
            PublishOptions::new("stream").observed_at(Timestamp::from_secs(NOW - 1.0)),
        )
        .unwrap();
    let handle = publisher
        .submit_publish(
            price.clone(),
            text("v2"),
            PublishOptions::new("stream").observed_at(Timestamp::from_secs(NOW)),
        )
        .unwrap();
    let second = handle.wait().unwrap();

    assert!(first.is_published() && second.is_published());
    let built = facade.build([price.clone()]).unwrap();
    assert_eq!(built.value::<String>(&price).unwrap(), "v2");
}

#[test]
fn each_handle_reports_its_own_outcome() {
    let (good, bad) = (key("market:price:A"), key("market:price:B"));
    let cache = TestCache::passing();
    let (source, _) = source_value("rest");
    let facade = facade_with_cache(vec![source.into()], &cache, BlockingOptions::new());
    let publisher = facade.publisher();

    let accepted = publisher
        .submit_publish(good.clone(), text("ok"), PublishOptions::new("stream"))
        .unwrap();
    let from_the_future = publisher
        .submit_publish(
            bad.clone(),
            text("too early"),
            PublishOptions::new("stream").observed_at(Timestamp::from_secs(NOW + 3_600.0)),
        )
        .unwrap();
    assert!(from_the_future.id() > accepted.id());

    let error = from_the_future.wait().unwrap_err();
    assert!(error.is_failed(), "{error}");
    assert!(matches!(error.as_failed(), Some(CoalestraError::Source(_))));
    assert!(accepted.wait().unwrap().is_published());
    assert!(cache.peek(&good).is_some());
    assert!(cache.peek(&bad).is_none());
    assert_eq!(facade.pending_submissions(), 0);
}

#[test]
fn bulk_publications_and_invalidations_can_be_submitted() {
    let (a, b, c) = (
        key("market:price:A"),
        key("market:price:B"),
        key("market:price:C"),
    );
    let cache = TestCache::passing();
    let (source, _) = source_value("rest");
    let facade = facade_with_cache(vec![source.into()], &cache, BlockingOptions::new());
    let publisher = facade.publisher();

    let published = publisher
        .submit_publish_many([
            ResourceUpdate::new(a.clone(), text("A"), PublishOptions::new("stream")),
            ResourceUpdate::new(b.clone(), text("B"), PublishOptions::new("stream")),
        ])
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(published.len(), 2);
    assert!(published.iter().all(|result| result.is_published()));
    let built = facade.build([a.clone()]).unwrap();
    assert_eq!(built.value::<String>(&a).unwrap(), "A");

    let update = publisher
        .submit_publish_update(ResourceUpdate::new(
            c.clone(),
            text("C"),
            PublishOptions::new("stream"),
        ))
        .unwrap();
    let one = publisher.submit_invalidate(a.clone(), "rotated").unwrap();
    let several = publisher
        .submit_invalidate_many([b.clone(), key("market:price:absent")], "rotated")
        .unwrap();
    publisher.flush(LIVENESS).unwrap();

    assert!(update.is_finished() && one.is_finished() && several.is_finished());
    assert!(update.wait().unwrap().is_published());
    assert!(one.wait().unwrap());
    assert_eq!(several.wait().unwrap(), vec![b.clone()]);
    let rebuilt = facade.build([a.clone(), b.clone()]).unwrap();
    assert_eq!(rebuilt.value::<String>(&a).unwrap(), "source-value");
    assert_eq!(rebuilt.value::<String>(&b).unwrap(), "source-value");
}

#[test]
fn submitting_returns_before_the_operation_runs() {
    let price = key("market:price:BTC");
    let (cache, hold) = TestCache::held();
    let (source, _) = source_value("rest");
    let facade = facade_with_cache(vec![source.into()], &cache, BlockingOptions::new());

    let handle = facade
        .publisher()
        .submit_publish_update(ResourceUpdate::new(
            price.clone(),
            text("v1"),
            PublishOptions::new("stream"),
        ))
        .unwrap();
    hold.wait_for_arrivals(1);

    assert!(!handle.is_finished());
    assert_eq!(facade.pending_submissions(), 1);
    hold.release();
    assert!(handle.wait().unwrap().is_published());
    assert_eq!(facade.pending_submissions(), 0);
}

#[test]
fn a_full_backlog_fails_the_submission_at_once() {
    let (a, b, c) = (
        key("market:price:A"),
        key("market:price:B"),
        key("market:price:C"),
    );
    let (cache, hold) = TestCache::held();
    let (source, _) = source_value("rest");
    let facade = facade_with_cache(
        vec![source.into()],
        &cache,
        BlockingOptions::new().max_pending_submissions(2),
    );
    let publisher = facade.publisher();
    let other_publisher = facade.publisher();

    let first = publisher
        .submit_publish(a.clone(), text("A"), PublishOptions::new("stream"))
        .unwrap();
    let second = publisher
        .submit_publish(b.clone(), text("B"), PublishOptions::new("stream"))
        .unwrap();
    hold.wait_for_arrivals(2);

    let refused = other_publisher
        .submit_publish(c.clone(), text("C"), PublishOptions::new("stream"))
        .unwrap_err();
    assert!(refused.is_backlog_full(), "{refused}");
    let full = refused.as_backlog_full().unwrap();
    assert_eq!((full.limit, full.pending), (2, 2));
    assert!(refused.to_string().contains("2 of 2"), "{refused}");
    assert_eq!(facade.pending_submissions(), 2);
    assert_eq!(publisher.pending_submissions(), 2);
    assert_eq!(facade.max_pending_submissions(), 2);
    // Blocking calls are not submissions: the bound does not refuse them.
    assert!(!publisher.invalidate(&c, "test").unwrap());

    hold.release();
    facade.flush(LIVENESS).unwrap();
    assert_eq!(facade.pending_submissions(), 0);
    assert!(first.wait().unwrap().is_published());
    assert!(second.wait().unwrap().is_published());
    assert!(cache.peek(&c).is_none());
}

#[test]
fn the_backlog_bound_is_atomic_across_producer_threads() {
    const PRODUCERS: usize = 20;
    let (cache, hold) = TestCache::held();
    let (source, _) = source_value("rest");
    let facade = facade_with_cache(
        vec![source.into()],
        &cache,
        BlockingOptions::new().max_pending_submissions(3),
    );
    let start = Arc::new(Barrier::new(PRODUCERS));

    let outcomes: Vec<_> = std::thread::scope(|scope| {
        let producers: Vec<_> = (0..PRODUCERS)
            .map(|i| {
                let (publisher, start) = (facade.publisher(), Arc::clone(&start));
                scope.spawn(move || {
                    start.wait();
                    publisher.submit_publish(
                        key(&format!("market:price:P{i}")),
                        text("x"),
                        PublishOptions::new("stream"),
                    )
                })
            })
            .collect();
        producers.into_iter().map(|p| p.join().unwrap()).collect()
    });

    let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|o| o.as_ref().is_err_and(|e| e.is_backlog_full()))
        .count();
    assert_eq!((accepted, refused), (3, PRODUCERS - 3));
    assert_eq!(facade.pending_submissions(), 3);
    hold.release();
    facade.flush(LIVENESS).unwrap();
    assert_eq!(facade.pending_submissions(), 0);
}

#[test]
fn a_failed_operation_keeps_its_error_and_frees_its_slot() {
    let cache = TestCache::failing();
    let (source, _) = source_value("rest");
    let facade = facade_with_cache(
        vec![source.into()],
        &cache,
        BlockingOptions::new().max_pending_submissions(1),
    );
    let publisher = facade.publisher();

    let handle = publisher
        .submit_publish(
            key("market:price:A"),
            text("A"),
            PublishOptions::new("stream"),
        )
        .unwrap();
    let error = handle.wait_timeout(LIVENESS).unwrap_err();
    assert!(error.to_string().contains("cache write failed"), "{error}");
    // The outcome stays available to later waits.
    assert!(handle.wait().unwrap_err().is_failed());

    facade.flush(LIVENESS).unwrap();
    assert_eq!(facade.pending_submissions(), 0);
    // The freed slot admits the next submission.
    let next = publisher
        .submit_invalidate(key("market:price:A"), "cleanup")
        .unwrap();
    assert!(!next.wait().unwrap());
}

#[test]
fn flush_returns_once_accepted_work_is_over() {
    let price = key("market:price:BTC");
    let (cache, hold) = TestCache::held();
    let (source, _) = source_value("rest");
    let facade = facade_with_cache(vec![source.into()], &cache, BlockingOptions::new());
    let handle = facade
        .publisher()
        .submit_publish(price, text("v1"), PublishOptions::new("stream"))
        .unwrap();
    hold.wait_for_arrivals(1);

    let (flushed, finished_at_return) = std::thread::scope(|scope| {
        let flusher = scope.spawn(|| {
            let flushed = facade.flush(LIVENESS);
            (flushed, handle.is_finished())
        });
        hold.release();
        flusher.join().unwrap()
    });

    flushed.unwrap();
    assert!(finished_at_return);
    assert_eq!(facade.pending_submissions(), 0);
}

#[test]
fn a_flush_timeout_does_not_cancel_the_work() {
    let price = key("market:price:BTC");
    let (cache, hold) = TestCache::held();
    let (source, _) = source_value("rest");
    let facade = facade_with_cache(vec![source.into()], &cache, BlockingOptions::new());
    let handle = facade
        .publisher()
        .submit_publish(price.clone(), text("v1"), PublishOptions::new("stream"))
        .unwrap();
    hold.wait_for_arrivals(1);

    let error = facade.flush(Duration::from_millis(10)).unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(error.to_string().contains("1 submission(s)"), "{error}");
    assert!(!handle.is_finished());
    assert!(facade.flush(Duration::ZERO).unwrap_err().is_config());

    hold.release();
    assert!(handle.wait().unwrap().is_published());
    assert!(cache.peek(&price).is_some());
}

#[test]
fn a_wait_timeout_is_not_a_cancellation() {
    let (cache, hold) = TestCache::held();
    let (source, _) = source_value("rest");
    let facade = facade_with_cache(vec![source.into()], &cache, BlockingOptions::new());
    let handle = facade
        .publisher()
        .submit_publish(
            key("market:price:BTC"),
            text("v1"),
            PublishOptions::new("stream"),
        )
        .unwrap();
    hold.wait_for_arrivals(1);

    let error = handle.wait_timeout(Duration::from_millis(10)).unwrap_err();
    assert!(matches!(error, SubmissionError::Timeout { .. }));
    assert!(error.is_timeout() && !error.is_cancelled());

    hold.release();
    assert!(handle.wait_timeout(LIVENESS).unwrap().is_published());
    assert!(handle.is_finished());
}

#[test]
fn submitted_inputs_are_captured_when_the_call_returns() {
    let (a, b) = (key("market:price:A"), key("market:price:B"));
    let (cache, hold) = TestCache::held();
    let (source, _) = source_value("rest");
    let facade = facade_with_cache(vec![source.into()], &cache, BlockingOptions::new());
    let publisher = facade.publisher();

    // The producer keeps its own collection and submits from a borrow.
    let mut updates = vec![ResourceUpdate::new(
        a.clone(),
        text("original"),
        PublishOptions::new("stream").with_metadata("label", "original"),
    )];
    let handle = publisher
        .submit_publish_many(updates.iter().cloned())
        .unwrap();

    // Later producer-side changes, while the submission is still held.
    hold.wait_for_arrivals(1);
    updates[0].payload = text("changed");
    updates[0].options.metadata = updates[0].options.metadata.with("label", "changed");
    updates.push(ResourceUpdate::new(
        b.clone(),
        text("added later"),
        PublishOptions::new("stream"),
    ));
    drop(updates);
    hold.release();

    let results = handle.wait().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].value.value::<String>().unwrap(), "original");
    assert_eq!(
        results[0]
            .value
            .metadata()
            .get("label")
            .and_then(|label| label.as_str()),
        Some("original")
    );
    assert!(cache.peek(&b).is_none());
    assert_eq!(cache.write_calls(), 1);
}

#[test]
fn many_producer_threads_lose_nothing_and_the_newest_revision_wins() {
    const THREADS: usize = 8;
    const KEYS: usize = 16;
    const PER_THREAD: usize = 60;
    let cache = TestCache::passing();
    let (source, _) = source_value("rest");
    let facade = Arc::new(facade_with_cache(
        vec![source.into()],
        &cache,
        BlockingOptions::new().max_pending_submissions(THREADS * PER_THREAD),
    ));
    let start = Arc::new(Barrier::new(THREADS));
    let producers: Vec<_> = (0..THREADS)
        .map(|t| {
            let facade = Arc::clone(&facade);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                let publisher = facade.publisher();
                start.wait();
                let mut handles = Vec::new();
                for i in 0..PER_THREAD {
                    // Each (thread, i) is a distinct revision; its observation
                    // time is unique across threads.
                    let k = key(&format!("market:price:S{}", (t * 7 + i) % KEYS));
                    let at = NOW - 1_000.0 + (i * THREADS + t) as f64;
                    let options =
                        PublishOptions::new("stream").observed_at(Timestamp::from_secs(at));
                    let handle = publisher
                        .submit_publish(k, Payload::new(at), options)
                        .expect("the backlog has room for every submission");
                    handles.push(handle);
                }
                let mut done = 0;
                for handle in handles {
                    let result = handle.wait().expect("each publication completes");
                    assert!(result.status.is_published() || result.status.is_ignored());
                    done += 1;
                }
                done
            })
        })
        .collect();
    let completed: usize = producers
        .into_iter()
        .map(|p| p.join().expect("producer thread"))
        .sum();
    assert_eq!(completed, THREADS * PER_THREAD, "nothing lost");
    assert_eq!(facade.pending_submissions(), 0);

    // The shadow model: per key, the newest observation ever offered.
    let mut newest = std::collections::HashMap::new();
    for t in 0..THREADS {
        for i in 0..PER_THREAD {
            let k = (t * 7 + i) % KEYS;
            let at = NOW - 1_000.0 + (i * THREADS + t) as f64;
            let entry = newest.entry(k).or_insert(f64::MIN);
            if at > *entry {
                *entry = at;
            }
        }
    }
    for (k, at) in newest {
        let stored = cache
            .peek(&key(&format!("market:price:S{k}")))
            .expect("every key was published");
        assert_eq!(stored.observed_at().as_secs(), at, "key S{k}");
        assert_eq!(*stored.value::<f64>().unwrap(), at);
    }
}
