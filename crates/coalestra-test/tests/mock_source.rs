//! Behaviour of the mock sources themselves: scripting, call records,
//! latency on paused time, gates, batch omissions and extras, derivations.

use std::sync::Arc;
use std::time::Duration;

use coalestra_core::{
    source::validate_declarations, BatchSource, DerivedSource, Execution, FetchContext, Payload,
    ResiliencePolicy, ResourceKey, Snapshot, Source, SourceError, SourceInfo, SourceOutput,
    SourceRef, Timestamp,
};
use coalestra_test::{key, Gate, MockBatchSource, MockDerivedSource, MockSource};
use tokio::time::Instant;

fn ctx() -> FetchContext {
    FetchContext::new("test", Timestamp::from_secs(1_000.0))
}

async fn fetch(source: &MockSource, k: &ResourceKey) -> Result<SourceOutput, SourceError> {
    source.fetch(k, &ctx()).await
}

fn text(output: &SourceOutput) -> String {
    output
        .payload
        .get::<String>()
        .expect("a String payload")
        .clone()
}

#[tokio::test]
async fn scripted_and_default_values_answer_and_calls_are_recorded_in_order() {
    let (a, b, c) = (key("ns:a:1"), key("ns:b:1"), key("ns:c:1"));
    let source = MockSource::new("rest")
        .value(&a, "alpha".to_owned())
        .default_value(|k: &ResourceKey| format!("default {}", k.name()));
    let handle = source.handle();

    assert_eq!(text(&fetch(&source, &a).await.unwrap()), "alpha");
    assert_eq!(text(&fetch(&source, &b).await.unwrap()), "default b");
    assert_eq!(text(&fetch(&source, &a).await.unwrap()), "alpha");

    assert_eq!(handle.name(), "rest");
    assert_eq!(handle.calls(), 3);
    assert_eq!(handle.calls_for(&a), 2);
    assert_eq!(handle.calls_for(&b), 1);
    assert_eq!(handle.calls_for(&c), 0);
    assert_eq!(handle.call_log(), vec![a.clone(), b.clone(), a.clone()]);
    assert_eq!(handle.batches(), vec![vec![a.clone()], vec![b], vec![a]]);
    assert_eq!(handle.completed(), 3);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test]
async fn a_key_without_any_script_fails_permanently() {
    let source = MockSource::new("rest");
    let error = fetch(&source, &key("ns:a")).await.unwrap_err();
    assert_eq!(error.error_type(), "MockNoValue");
    assert!(!error.is_transient());
    assert!(error.to_string().contains("ns:a"), "{error}");
}

#[tokio::test]
async fn fail_times_fails_the_first_calls_then_answers() {
    let k = key("ns:price:BTC");
    let source = MockSource::new("rest").value(&k, 7_u32).fail_times(
        &k,
        2,
        SourceError::unavailable("reset by peer"),
    );
    for _ in 0..2 {
        let error = fetch(&source, &k).await.unwrap_err();
        assert_eq!(error.error_type(), "SourceUnavailableError");
        assert_eq!(error.to_string(), "reset by peer");
    }
    let output = fetch(&source, &k).await.unwrap();
    assert_eq!(*output.payload.get::<u32>().unwrap(), 7);
    assert!(fetch(&source, &k).await.is_ok());
    assert_eq!(source.handle().calls_for(&k), 4);
}

#[tokio::test]
async fn always_fail_lasts_until_recover() {
    let k = key("ns:price:BTC");
    let source = MockSource::new("rest")
        .value(&k, 1_u8)
        .always_fail(&k, SourceError::custom("ConnectTimeout", "tls", true));
    for _ in 0..3 {
        assert_eq!(
            fetch(&source, &k).await.unwrap_err().error_type(),
            "ConnectTimeout"
        );
    }
    source.handle().script().recover(&k);
    assert!(fetch(&source, &k).await.is_ok());
}

#[tokio::test]
async fn stale_observed_at_and_metadata_shape_the_output() {
    let (old, plain) = (key("ns:old"), key("ns:plain"));
    let at = Timestamp::from_secs(900.0);
    let source = MockSource::new("rest")
        .value(&old, 1_i32)
        .stale(&old)
        .observed_at(&old, at)
        .metadata(&old, "transport", "test")
        .value(&plain, 2_i32);

    let output = fetch(&source, &old).await.unwrap();
    assert!(output.stale);
    assert_eq!(output.observed_at, Some(at));
    assert_eq!(
        output.metadata.get("transport").and_then(|v| v.as_str()),
        Some("test")
    );

    let output = fetch(&source, &plain).await.unwrap();
    assert!(!output.stale);
    assert_eq!(output.observed_at, None);
    assert!(output.metadata.is_empty());
}

#[tokio::test]
async fn panic_on_panics_inside_the_call_and_still_ends_the_call() {
    let k = key("ns:boom");
    let source = Arc::new(MockSource::new("rest").value(&k, 1_u8).panic_on(&k));
    let handle = source.handle();
    let joined = tokio::spawn({
        let (source, k) = (source.clone(), k.clone());
        async move { source.fetch(&k, &ctx()).await }
    })
    .await;
    let panic = joined.unwrap_err();
    assert!(panic.is_panic());
    assert_eq!(handle.calls(), 1);
    assert_eq!(handle.in_flight(), 0);
    assert_eq!(handle.completed(), 1);
}

#[tokio::test(start_paused = true)]
async fn latency_sleeps_on_tokio_time_and_per_key_latency_wins() {
    let (slow, normal) = (key("ns:slow"), key("ns:normal"));
    let source = MockSource::new("rest")
        .default_value(|_: &ResourceKey| ())
        .latency(Duration::from_millis(250))
        .latency_for(&slow, Duration::from_secs(3));

    let start = Instant::now();
    fetch(&source, &normal).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_millis(250));

    let start = Instant::now();
    fetch(&source, &slow).await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn latency_can_be_cut_short_by_a_timeout() {
    let k = key("ns:slow");
    let source = MockSource::new("rest")
        .value(&k, ())
        .latency(Duration::from_secs(10));
    let result = tokio::time::timeout(Duration::from_secs(1), fetch(&source, &k)).await;
    assert!(result.is_err(), "the 10 s call must not finish within 1 s");
    let handle = source.handle();
    assert_eq!(
        handle.in_flight(),
        0,
        "a cancelled call is no longer in flight"
    );
    assert_eq!(handle.completed(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_closed_gate_holds_every_call_until_opened() {
    let k = key("ns:price:BTC");
    let source = Arc::new(MockSource::new("rest").value(&k, 5_u64));
    let handle = source.handle();
    let gate = handle.gate();
    assert!(!gate.is_open());

    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let (source, k) = (source.clone(), k.clone());
            tokio::spawn(async move { source.fetch(&k, &ctx()).await })
        })
        .collect();

    gate.wait_for_arrivals(3).await;
    assert_eq!(gate.arrivals(), 3);
    assert_eq!(gate.waiting(), 3);
    assert_eq!(handle.in_flight(), 3);
    assert_eq!(handle.completed(), 0);
    assert!(tasks.iter().all(|t| !t.is_finished()));

    gate.open();
    for task in tasks {
        let output = task.await.unwrap().unwrap();
        assert_eq!(*output.payload.get::<u64>().unwrap(), 5);
    }
    assert_eq!(gate.waiting(), 0);
    assert_eq!(handle.max_in_flight(), 3);
    assert_eq!(handle.in_flight(), 0);

    // An open gate lets later calls straight through, still counting them.
    fetch(&source, &k).await.unwrap();
    assert_eq!(gate.arrivals(), 4);
}

#[tokio::test(start_paused = true)]
async fn a_key_gate_holds_only_calls_for_that_key() {
    let (held, free) = (key("ns:held"), key("ns:free"));
    let source = Arc::new(MockSource::new("rest").default_value(|_: &ResourceKey| 1_u8));
    let handle = source.handle();
    let gate = handle.gate_for(&held);

    let task = tokio::spawn({
        let (source, held) = (source.clone(), held.clone());
        async move { source.fetch(&held, &ctx()).await }
    });
    gate.wait_for_arrivals(1).await;

    fetch(&source, &free).await.unwrap();
    assert_eq!(gate.arrivals(), 1, "the other key does not pass this gate");
    assert!(!task.is_finished());
    assert_eq!(handle.in_flight(), 1);

    gate.open();
    task.await.unwrap().unwrap();
    assert_eq!(handle.max_in_flight(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_call_dropped_while_waiting_leaves_the_gate_and_the_in_flight_count() {
    let k = key("ns:k");
    let source = Arc::new(MockSource::new("rest").value(&k, ()));
    let handle = source.handle();
    let gate = handle.gate();
    let task = tokio::spawn({
        let (source, k) = (source.clone(), k.clone());
        async move { source.fetch(&k, &ctx()).await }
    });
    gate.wait_for_arrivals(1).await;
    assert_eq!(gate.waiting(), 1);
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(gate.waiting(), 0);
    assert_eq!(handle.in_flight(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_gate_can_be_closed_again() {
    let gate = Gate::new();
    gate.open();
    gate.pass().await;
    gate.close();
    let task = tokio::spawn({
        let gate = gate.clone();
        async move { gate.pass().await }
    });
    gate.wait_for_arrivals(2).await;
    assert_eq!(gate.waiting(), 1);
    assert!(!task.is_finished());
    gate.open();
    task.await.unwrap();
    assert_eq!(gate.waiting(), 0);
}

#[tokio::test(start_paused = true)]
async fn wait_for_calls_returns_once_enough_calls_started() {
    let k = key("ns:k");
    let source = Arc::new(MockSource::new("rest").value(&k, ()));
    let handle = source.handle();
    let gate = handle.gate();
    for _ in 0..2 {
        let (source, k) = (source.clone(), k.clone());
        tokio::spawn(async move { source.fetch(&k, &ctx()).await });
    }
    handle.wait_for_calls(2).await;
    assert_eq!(handle.calls(), 2);
    gate.open();
}

#[tokio::test]
async fn a_handle_rescripts_the_source_after_it_was_moved() {
    let k = key("ns:k");
    let source = MockSource::new("rest").value(&k, 1_i32);
    let handle = source.handle();
    let registered = SourceRef::from(source);
    let SourceRef::Single(source) = registered else {
        panic!("a MockSource registers as a single-key source");
    };
    let first = source.fetch(&k, &ctx()).await.unwrap();
    handle.script().value(&k, 2_i32);
    let second = source.fetch(&k, &ctx()).await.unwrap();
    assert_eq!(*first.payload.get::<i32>().unwrap(), 1);
    assert_eq!(*second.payload.get::<i32>().unwrap(), 2);
    assert_eq!(handle.calls(), 2);

    handle.reset_calls();
    assert_eq!(handle.calls(), 0);
    assert!(handle.call_log().is_empty());
    handle.script().forget(&k);
    assert!(source.fetch(&k, &ctx()).await.is_err());
}

#[test]
fn declarations_are_reported_through_source_info() {
    let source = MockSource::new("rest")
        .with_priority(7)
        .with_supports(|k| k.namespace() == "market")
        .without_support_cache()
        .with_timeout(Duration::from_secs(2))
        .with_queue_timeout(Duration::from_millis(50))
        .with_max_concurrency(4)
        .with_resilience(ResiliencePolicy::default())
        .with_execution(Execution::Inline)
        .with_blocking_io(Some(Duration::from_secs(1)));
    assert_eq!(source.name(), "rest");
    assert_eq!(source.priority(), 7);
    assert!(source.supports(&key("market:price:BTC")));
    assert!(!source.supports(&key("account:balance")));
    assert!(!source.cache_supports());
    assert_eq!(source.timeout(), Some(Duration::from_secs(2)));
    assert_eq!(source.queue_timeout(), Some(Duration::from_millis(50)));
    assert_eq!(source.max_concurrency().map(|n| n.get()), Some(4));
    assert_eq!(source.resilience(), Some(ResiliencePolicy::default()));
    assert_eq!(source.execution(), Execution::Inline);
    assert!(source.blocking_io());
    assert_eq!(source.transport_timeout(), Some(Duration::from_secs(1)));
    assert!(validate_declarations(&source).is_ok());

    let plain = MockSource::new("plain");
    assert_eq!(plain.priority(), 0);
    assert!(plain.supports(&key("any:thing")));
    assert_eq!(plain.timeout(), None);
    assert_eq!(plain.execution(), Execution::Async);
}

#[test]
#[should_panic(expected = "max_concurrency must be at least 1")]
fn a_zero_concurrency_limit_is_refused() {
    let _ = MockSource::new("rest").with_max_concurrency(0);
}

#[test]
fn the_blocking_entry_point_follows_the_script_and_is_recorded() {
    let k = key("ns:k");
    let source = MockSource::new("rest")
        .value(&k, 3_u8)
        .fail_times(&k, 1, SourceError::unavailable("down"))
        .with_execution(Execution::Blocking);
    assert!(source.fetch_blocking(&k, &ctx()).is_err());
    let output = source.fetch_blocking(&k, &ctx()).unwrap();
    assert_eq!(*output.payload.get::<u8>().unwrap(), 3);
    assert_eq!(source.handle().calls_for(&k), 2);
}

#[tokio::test]
async fn a_batch_source_omits_unscripted_and_omitted_keys() {
    let (a, b, c, d) = (key("ns:a"), key("ns:b"), key("ns:c"), key("ns:d"));
    let source = MockBatchSource::new("bulk")
        .value(&a, 1_i32)
        .value(&b, 2_i32)
        .value(&d, 4_i32)
        .omit(&d);
    let keys = [a.clone(), b.clone(), c.clone(), d.clone()];
    let answer = source.fetch_many(&keys, &ctx()).await.unwrap();
    let returned: Vec<&ResourceKey> = answer.iter().map(|(k, _)| k).collect();
    assert_eq!(returned, vec![&a, &b]);
    assert_eq!(*answer[1].1.payload.get::<i32>().unwrap(), 2);

    let handle = source.handle();
    assert_eq!(handle.calls(), 1);
    assert_eq!(handle.batches(), vec![keys.to_vec()]);
    assert_eq!(handle.calls_for(&c), 1);
    assert_eq!(handle.call_log(), keys.to_vec());
}

#[tokio::test]
async fn a_batch_source_can_answer_an_unrequested_key() {
    let (a, extra) = (key("ns:a"), key("ns:extra"));
    let source = MockBatchSource::new("bulk")
        .value(&a, 1_i32)
        .value(&extra, 9_i32)
        .inject_extra(&extra);
    let answer = source
        .fetch_many(std::slice::from_ref(&a), &ctx())
        .await
        .unwrap();
    assert_eq!(answer.len(), 2);
    assert_eq!(answer[1].0, extra);
    assert_eq!(*answer[1].1.payload.get::<i32>().unwrap(), 9);
    assert_eq!(
        source.handle().calls_for(&extra),
        0,
        "it was never requested"
    );
}

#[tokio::test]
async fn a_failure_scripted_for_one_key_fails_the_whole_batch() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let source = MockBatchSource::new("bulk")
        .value(&a, 1_i32)
        .value(&b, 2_i32)
        .fail_times(&b, 1, SourceError::protocol("bad shape"));
    let error = source
        .fetch_many(&[a.clone(), b.clone()], &ctx())
        .await
        .unwrap_err();
    assert_eq!(error.error_type(), "SourceProtocolError");
    let answer = source.fetch_many(&[a, b], &ctx()).await.unwrap();
    assert_eq!(answer.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_batch_call_waits_for_its_slowest_key_and_its_key_gates() {
    let (a, b) = (key("ns:a"), key("ns:b"));
    let source = Arc::new(
        MockBatchSource::new("bulk")
            .default_value(|_: &ResourceKey| ())
            .latency_for(&a, Duration::from_millis(100))
            .latency_for(&b, Duration::from_millis(700))
            .with_max_batch_size(2),
    );
    assert_eq!(source.max_batch_size().map(|n| n.get()), Some(2));
    let handle = source.handle();
    let gate = handle.gate_for(&b);
    let task = tokio::spawn({
        let source = source.clone();
        let keys = [a.clone(), b.clone()];
        async move {
            let start = Instant::now();
            source.fetch_many(&keys, &ctx()).await.map(|_| start)
        }
    });
    gate.wait_for_arrivals(1).await;
    assert_eq!(handle.in_flight(), 1);
    let opened = Instant::now();
    gate.open();
    let started = task.await.unwrap().unwrap();
    assert_eq!(opened.elapsed(), Duration::from_millis(700));
    assert!(started <= opened);
}

fn bid() -> ResourceKey {
    key("market:bid:BTC")
}

fn spread_source() -> MockDerivedSource {
    MockDerivedSource::new("spread", |k, deps: &Snapshot| {
        let bid = deps.value::<f64>(&bid()).map_err(SourceError::protocol)?;
        Ok(SourceOutput::new(format!("{} {bid}", k.subject())))
    })
}

#[tokio::test]
async fn a_derived_source_lists_dependencies_and_derives_from_the_snapshot() {
    let spread = key("market:spread:BTC");
    let other = key("market:spread:ETH");
    let source = spread_source()
        .depends_on(&spread, [bid()])
        .dependencies_fn(|k| vec![key(&format!("market:bid:{}", k.subject()))]);
    assert_eq!(source.dependencies(&spread).unwrap(), vec![bid()]);
    assert_eq!(
        source.dependencies(&other).unwrap(),
        vec![key("market:bid:ETH")]
    );

    let value = coalestra_core::SnapshotValue::from_parts(coalestra_core::value::ValueParts::new(
        bid(),
        Payload::new(99.5_f64),
        "rest",
        Timestamp::from_secs(1.0),
    ));
    let deps = Snapshot::parts("deps", Timestamp::from_secs(1.0))
        .value(value)
        .finish();
    let output = source.derive(&spread, &deps, &ctx()).await.unwrap();
    assert_eq!(output.payload.get::<String>().unwrap(), "BTC 99.5");

    let empty = Snapshot::parts("deps", Timestamp::from_secs(1.0)).finish();
    assert!(source.derive(&spread, &empty, &ctx()).await.is_err());

    let handle = source.handle();
    assert_eq!(handle.calls(), 2);
    assert_eq!(handle.calls_for(&spread), 2);
}

#[tokio::test]
async fn a_derived_source_applies_scripted_failures_before_deriving() {
    let spread = key("market:spread:BTC");
    let source = spread_source().fail_times(&spread, 1, SourceError::unavailable("later"));
    let empty = Snapshot::parts("deps", Timestamp::from_secs(1.0)).finish();
    let first = source.derive(&spread, &empty, &ctx()).await.unwrap_err();
    assert_eq!(first.error_type(), "SourceUnavailableError");
    let second = source.derive(&spread, &empty, &ctx()).await.unwrap_err();
    assert_eq!(second.error_type(), "SourceProtocolError", "derive ran");
    assert!(source.dependencies(&spread).unwrap().is_empty());
}
