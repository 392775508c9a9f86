//! Catalogue area 20 through the blocking facade: builds, requests, sessions,
//! blocking publication and invalidation, option validation, error
//! propagation, and the refusal to block inside an async runtime.
//!
//! Plain `#[test]` functions: the facade brings its own runtime.

mod support;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use coalestra_blocking::{BlockingError, BlockingOptions, BlockingSnapshotBuilder};
use coalestra_cache::{PublishOptions, ResourceUpdate};
use coalestra_core::{BuildOptions, Payload, SnapshotRequest, SourceError, Timestamp};
use coalestra_orchestration::{ResolveOptions, RevalidateOptions, SessionOptions};
use coalestra_test::{assert_from_cache, assert_not_from_cache, key, MockSource};

use support::{config, facade, facade_with_cache, source_value, TestCache, NOW};

#[test]
fn build_fetches_once_then_reuses_the_cache() {
    let price = key("market:price:BTC");
    let source = MockSource::new("rest").value(&price, 99_i64);
    let handle = source.handle();
    let facade = facade(
        config(vec![source.into()]).build().unwrap(),
        BlockingOptions::new(),
    );

    let first = facade.build([price.clone()]).unwrap();
    let second = facade.build([price.clone()]).unwrap();

    assert_eq!(*first.value::<i64>(&price).unwrap(), 99);
    assert_eq!(*second.value::<i64>(&price).unwrap(), 99);
    assert_not_from_cache(&first, &price);
    assert_from_cache(&second, &price);
    assert_eq!(handle.calls_for(&price), 1);
    facade.close().unwrap();
}

#[test]
fn build_with_and_build_request_pass_options_and_optional_keys() {
    let present = key("market:price:BTC");
    let missing = key("market:price:DOGE");
    let source = MockSource::new("rest")
        .value(&present, 7_i64)
        .always_fail(&missing, SourceError::unavailable("no such market"));
    let facade = facade(
        config(vec![source.into()]).build().unwrap(),
        BlockingOptions::new(),
    );

    let named = facade
        .build_with([present.clone()], BuildOptions::new().snapshot_id("snap-1"))
        .unwrap();
    assert_eq!(named.id(), "snap-1");

    let request = SnapshotRequest::new([present.clone()], [missing.clone()]).unwrap();
    let partial = facade.build_request(&request, BuildOptions::new()).unwrap();
    assert_eq!(*partial.value::<i64>(&present).unwrap(), 7);
    assert!(!partial.contains(&missing));
    assert_eq!(partial.errors().len(), 1);
    assert_eq!(partial.errors()[0].key(), &missing);
}

#[test]
fn build_errors_reach_the_calling_thread() {
    let missing = key("market:price:DOGE");
    let source =
        MockSource::new("rest").always_fail(&missing, SourceError::unavailable("no such market"));
    let facade = facade(
        config(vec![source.into()]).build().unwrap(),
        BlockingOptions::new(),
    );

    let error = facade.build([missing.clone()]).unwrap_err();

    assert!(error.is_coalestra());
    let build = error.as_coalestra().and_then(|e| e.as_build()).unwrap();
    assert!(build.error(&missing).is_some());
    assert!(!error.is_closed() && !error.is_cancelled());
}

#[test]
fn session_resolves_in_stages_revalidates_and_closes() {
    let (a, b) = (key("market:price:A"), key("market:price:B"));
    let cache = TestCache::passing();
    let (source, calls) = source_value("rest");
    let facade = facade_with_cache(vec![source.into()], &cache, BlockingOptions::new());
    let publisher = facade.publisher();

    let session = facade
        .session(SessionOptions::new().snapshot_id("session-1"))
        .unwrap();
    assert_eq!(session.id(), "session-1");
    let first = session.resolve([a.clone()], ResolveOptions::new()).unwrap();
    assert_eq!(first.value::<String>(&a).unwrap(), "source-value");

    // A newer revision published meanwhile stays invisible to the session
    // until it revalidates.
    publisher
        .publish(
            a.clone(),
            Payload::new("published".to_owned()),
            PublishOptions::new("stream").observed_at(Timestamp::from_secs(NOW + 0.5)),
        )
        .unwrap();
    let second = session.resolve([b.clone()], ResolveOptions::new()).unwrap();
    assert_eq!(second.value::<String>(&a).unwrap(), "source-value");
    assert_eq!(second.value::<String>(&b).unwrap(), "source-value");

    let revalidated = session
        .revalidate([a.clone()], RevalidateOptions::new())
        .unwrap();
    assert_eq!(revalidated.value::<String>(&a).unwrap(), "published");
    let current = session.snapshot().unwrap();
    assert_eq!(current.value::<String>(&a).unwrap(), "published");
    assert_eq!(current.len(), 2);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    let request = SnapshotRequest::required([a.clone()]).unwrap();
    let by_request = session
        .resolve_request(&request, ResolveOptions::new())
        .unwrap();
    assert_eq!(by_request.value::<String>(&a).unwrap(), "published");

    session.close().unwrap();
    session.close().unwrap();
    assert!(session.is_closed());
    let error = session.resolve([a], ResolveOptions::new()).unwrap_err();
    assert!(error.is_closed());
    assert!(error.to_string().contains("session is closed"), "{error}");
    assert!(session.snapshot().unwrap_err().is_closed());
}

#[test]
fn revalidation_of_unresolved_keys_is_the_sessions_own_error() {
    let (source, _) = source_value("rest");
    let facade = facade(
        config(vec![source.into()]).build().unwrap(),
        BlockingOptions::new(),
    );
    let session = facade.session(SessionOptions::new()).unwrap();

    let error = session
        .revalidate([key("market:price:A")], RevalidateOptions::new())
        .unwrap_err();

    assert!(error.is_coalestra());
    assert!(error.to_string().contains("not resolved"), "{error}");
}

#[test]
fn blocking_publication_and_invalidation_change_what_builds_see() {
    let (a, b, c) = (
        key("market:price:A"),
        key("market:price:B"),
        key("market:price:C"),
    );
    let cache = TestCache::passing();
    let (source, calls) = source_value("rest");
    let facade = facade_with_cache(vec![source.into()], &cache, BlockingOptions::new());
    let publisher = facade.publisher();

    let one = publisher
        .publish(
            a.clone(),
            Payload::new("v1".to_owned()),
            PublishOptions::new("stream"),
        )
        .unwrap();
    assert!(one.is_published());
    let many = publisher
        .publish_many(vec![
            ResourceUpdate::new(
                b.clone(),
                Payload::new("v1".to_owned()),
                PublishOptions::new("stream"),
            ),
            ResourceUpdate::new(
                c.clone(),
                Payload::new("v1".to_owned()),
                PublishOptions::new("stream"),
            ),
        ])
        .unwrap();
    assert_eq!(many.len(), 2);
    let built = facade.build([a.clone(), b.clone(), c.clone()]).unwrap();
    assert_eq!(built.value::<String>(&a).unwrap(), "v1");
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    assert!(publisher.invalidate(&a, "test").unwrap());
    assert!(!publisher.invalidate(&a, "test").unwrap());
    let removed = publisher
        .invalidate_many(&[b.clone(), c.clone()], "test")
        .unwrap();
    assert_eq!(removed.len(), 2);
    let rebuilt = facade.build([a.clone(), b.clone()]).unwrap();
    assert_eq!(rebuilt.value::<String>(&a).unwrap(), "source-value");
    assert_eq!(rebuilt.value::<String>(&b).unwrap(), "source-value");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[test]
fn execute_reaches_any_async_builder_operation() {
    let (source, _) = source_value("rest");
    let facade = facade(
        config(vec![source.into()]).build().unwrap(),
        BlockingOptions::new(),
    );

    let names = facade
        .execute(|builder| async move { Ok(builder.source_names()) })
        .unwrap();

    assert_eq!(names, ["rest"]);
    facade.wait_for_refreshes().unwrap();
}

#[test]
fn invalid_options_are_configuration_errors() {
    let build = || {
        let (source, _) = source_value("rest");
        config(vec![source.into()]).build().unwrap()
    };

    let zero_backlog =
        BlockingSnapshotBuilder::new(build(), BlockingOptions::new().max_pending_submissions(0))
            .unwrap_err();
    assert!(zero_backlog.is_config());
    assert!(zero_backlog.to_string().contains("max_pending_submissions"));

    let zero_timeout = BlockingSnapshotBuilder::new(
        build(),
        BlockingOptions::new().shutdown_timeout(std::time::Duration::ZERO),
    )
    .unwrap_err();
    assert!(zero_timeout.is_config());
    assert!(zero_timeout.to_string().contains("shutdown_timeout"));

    let defaults = BlockingOptions::default();
    assert_eq!(defaults.max_pending_submissions, 256);
    assert_eq!(defaults.shutdown_timeout, std::time::Duration::from_secs(5));
}

#[test]
fn blocking_calls_inside_an_async_runtime_fail_instead_of_deadlocking() {
    let price = key("market:price:BTC");
    let (source, calls) = source_value("rest");
    let facade = facade(
        config(vec![source.into()]).build().unwrap(),
        BlockingOptions::new(),
    );
    let publisher = facade.publisher();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    runtime.block_on(async {
        let build = facade.build([price.clone()]).unwrap_err();
        assert!(build.is_inside_async_context(), "{build}");
        assert!(facade
            .session(SessionOptions::new())
            .unwrap_err()
            .is_inside_async_context());
        assert!(publisher
            .invalidate(&price, "test")
            .unwrap_err()
            .is_inside_async_context());
        assert!(facade.close().unwrap_err().is_inside_async_context());
        let (again, _) = source_value("rest");
        let start = BlockingSnapshotBuilder::new(
            config(vec![again.into()]).build().unwrap(),
            BlockingOptions::new(),
        )
        .unwrap_err();
        assert!(start.is_inside_async_context());
    });

    // Nothing was closed or run: the facade still serves plain threads.
    assert!(!facade.is_closed());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let built = facade.build([price.clone()]).unwrap();
    assert_eq!(built.value::<String>(&price).unwrap(), "source-value");
}

#[test]
fn a_facade_serves_many_threads_at_once() {
    let (source, _) = source_value("rest");
    let facade = Arc::new(facade(
        config(vec![source.into()]).build().unwrap(),
        BlockingOptions::new(),
    ));

    std::thread::scope(|scope| {
        for i in 0..8 {
            let facade = &facade;
            scope.spawn(move || {
                let k = key(&format!("market:price:T{i}"));
                let built = facade.build([k.clone()]).unwrap();
                assert_eq!(built.value::<String>(&k).unwrap(), "source-value");
            });
        }
    });

    assert!(matches!(facade.close(), Ok(())));
    assert!(matches!(
        facade.build([key("market:price:T0")]),
        Err(BlockingError::Closed)
    ));
}

#[test]
fn try_apis_and_health_through_the_facade() {
    use coalestra_core::RequestDegradationPolicy;

    let ok = key("market:price:BTC");
    let bad = key("market:price:DOGE");
    let source = MockSource::new("rest")
        .value(&ok, 7_i64)
        .always_fail(&bad, SourceError::unavailable("no such market"));
    let facade = facade(
        config(vec![source.into()]).build().unwrap(),
        BlockingOptions::new().max_pending_submissions(10),
    );
    let policy = RequestDegradationPolicy::default();
    let accepted = SnapshotRequest::required([ok.clone()]).unwrap();
    let rejected = SnapshotRequest::required([bad.clone()]).unwrap();

    let result = facade
        .try_build_request(&accepted, BuildOptions::new(), &policy)
        .unwrap();
    assert!(result.is_accepted(), "{}", result.reason());
    assert_eq!(*result.snapshot().value::<i64>(&ok).unwrap(), 7);

    let results = facade
        .try_build_requests(
            &[accepted.clone(), rejected],
            BuildOptions::new(),
            &policy,
            None,
        )
        .unwrap();
    assert_eq!(results.len(), 2);
    assert!(results[0].is_accepted());
    assert!(results[1].is_rejected());

    let session = facade.session(SessionOptions::new()).unwrap();
    let staged = session
        .try_resolve_request(&accepted, ResolveOptions::new(), &policy)
        .unwrap();
    assert!(staged.is_accepted());

    let health = facade.health();
    assert_eq!(health.pending_submissions, 0);
    assert_eq!(health.max_pending_submissions, Some(10));
    facade.close().unwrap();
}
