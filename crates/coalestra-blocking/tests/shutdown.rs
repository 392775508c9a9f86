//! Closing the facade (B20.2–B20.4, B20.12, B20.13, B20.18, B20.19): close
//! drains accepted work, cancels what outlasts the shutdown timeout, closes
//! the builder, joins the runtime thread, is idempotent, runs on drop, and
//! leaves every later call failing with a closed error.

mod support;

use std::time::Duration;

use coalestra_blocking::{BlockingError, BlockingOptions};
use coalestra_cache::PublishOptions;
use coalestra_core::Payload;
use coalestra_orchestration::{ResolveOptions, SessionOptions};
use coalestra_test::key;

use support::{
    config, facade, facade_with_cache, held_source, source_value, wait_until, Hold, TestCache,
    LIVENESS,
};

fn text(value: &str) -> Payload {
    Payload::new(value.to_owned())
}

/// Short enough to keep cancelling tests quick; the held work never
/// finishes on its own, so the timeout always elapses.
const SHORT_SHUTDOWN: Duration = Duration::from_millis(50);

#[test]
fn close_drains_accepted_submissions_before_stopping() {
    let price = key("market:price:BTC");
    let (cache, hold) = TestCache::held();
    let (source, _) = source_value("rest");
    let facade = facade_with_cache(
        vec![source.into()],
        &cache,
        BlockingOptions::new().shutdown_timeout(LIVENESS),
    );
    let builder = facade.builder().clone();
    let handle = facade
        .publisher()
        .submit_publish(price.clone(), text("v1"), PublishOptions::new("stream"))
        .unwrap();
    hold.wait_for_arrivals(1);

    let closed = std::thread::scope(|scope| {
        let closer = scope.spawn(|| facade.close());
        // Release only once closing has begun: the drain must wait for it.
        wait_until("closing began", || facade.is_closed());
        assert!(!handle.is_finished());
        hold.release();
        closer.join().unwrap()
    });

    closed.unwrap();
    assert!(handle.wait().unwrap().is_published());
    assert!(cache.peek(&price).is_some());
    assert!(facade.is_closed());
    assert!(!facade.is_running());
    assert!(builder.is_closed());
}

#[test]
fn close_cancels_work_that_outlasts_the_shutdown_timeout() {
    let (cache, hold) = TestCache::held();
    let (source, _) = source_value("rest");
    let facade = facade_with_cache(
        vec![source.into()],
        &cache,
        BlockingOptions::new().shutdown_timeout(SHORT_SHUTDOWN),
    );
    let publisher = facade.publisher();
    let handle = publisher
        .submit_publish(
            key("market:price:BTC"),
            text("v1"),
            PublishOptions::new("stream"),
        )
        .unwrap();
    hold.wait_for_arrivals(1);

    let error = facade.close().unwrap_err();

    assert!(error.is_shutdown_timeout(), "{error}");
    assert!(matches!(
        error,
        BlockingError::ShutdownTimeout { timeout, pending: 1 } if timeout == SHORT_SHUTDOWN
    ));
    assert!(handle.is_finished());
    assert!(handle.wait().unwrap_err().is_cancelled());
    assert_eq!(facade.pending_submissions(), 0);
    assert!(facade.is_closed() && !facade.is_running());
    assert!(facade.builder().is_closed());
    // Idempotent: the second close has nothing left to do.
    facade.close().unwrap();
    hold.release();
}

#[test]
fn a_blocking_call_cut_off_by_close_reports_cancellation() {
    let price = key("market:price:BTC");
    let hold = Hold::new();
    let facade = facade(
        config(vec![held_source("slow", &hold).into()])
            .build()
            .unwrap(),
        BlockingOptions::new().shutdown_timeout(SHORT_SHUTDOWN),
    );

    let (built, closed) = std::thread::scope(|scope| {
        let builder = scope.spawn(|| facade.build([price.clone()]));
        hold.wait_for_arrivals(1);
        let closed = facade.close();
        (builder.join().unwrap(), closed)
    });

    assert!(built.unwrap_err().is_cancelled());
    assert!(closed.unwrap_err().is_shutdown_timeout());
    assert!(!facade.is_running());
    hold.release();
}

#[test]
fn close_is_idempotent_and_later_calls_fail_as_closed() {
    let price = key("market:price:BTC");
    let (source, _) = source_value("rest");
    let facade = facade(
        config(vec![source.into()]).build().unwrap(),
        BlockingOptions::new(),
    );
    let publisher = facade.publisher();
    let session = facade.session(SessionOptions::new()).unwrap();
    session
        .resolve([price.clone()], ResolveOptions::new())
        .unwrap();
    assert!(facade.is_running());

    facade.close().unwrap();
    facade.close().unwrap();

    assert!(facade.is_closed() && !facade.is_running());
    assert!(facade.builder().is_closed());
    let build = facade.build([price.clone()]).unwrap_err();
    assert!(matches!(build, BlockingError::Closed));
    assert!(build.to_string().contains("closed"), "{build}");
    assert!(facade
        .session(SessionOptions::new())
        .unwrap_err()
        .is_closed());
    assert!(publisher
        .publish(price.clone(), text("v"), PublishOptions::new("stream"))
        .unwrap_err()
        .is_closed());
    assert!(publisher
        .submit_invalidate(price.clone(), "late")
        .unwrap_err()
        .is_closed());
    assert!(facade.publisher().is_closed());
    assert!(session
        .resolve([price.clone()], ResolveOptions::new())
        .unwrap_err()
        .is_closed());
    assert!(session.is_closed());
    session.close().unwrap();
    facade.flush(LIVENESS).unwrap();
    assert_eq!(facade.pending_submissions(), 0);
}

#[test]
fn close_can_leave_the_builder_open_for_its_other_owners() {
    let price = key("market:price:BTC");
    let (source, _) = source_value("rest");
    let builder = config(vec![source.into()]).build().unwrap();
    let facade = facade(builder.clone(), BlockingOptions::new().close_builder(false));
    facade.build([price]).unwrap();

    facade.close().unwrap();

    assert!(facade.is_closed() && !facade.is_running());
    assert!(!builder.is_closed());
}

#[test]
fn dropping_the_facade_closes_it() {
    let price = key("market:price:BTC");
    let (source, _) = source_value("rest");
    let facade = facade(
        config(vec![source.into()]).build().unwrap(),
        BlockingOptions::new(),
    );
    let builder = facade.builder().clone();
    let publisher = facade.publisher();
    facade.build([price.clone()]).unwrap();

    drop(facade);

    assert!(builder.is_closed());
    assert!(publisher.is_closed());
    assert!(publisher
        .invalidate(&price, "late")
        .unwrap_err()
        .is_closed());
}

#[test]
fn dropping_inside_an_async_runtime_starts_the_shutdown_without_blocking() {
    let (source, _) = source_value("rest");
    let facade = facade(
        config(vec![source.into()]).build().unwrap(),
        BlockingOptions::new(),
    );
    let publisher = facade.publisher();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    runtime.block_on(async move { drop(facade) });

    assert!(publisher.is_closed());
    assert!(publisher
        .submit_invalidate(key("market:price:BTC"), "late")
        .unwrap_err()
        .is_closed());
}
