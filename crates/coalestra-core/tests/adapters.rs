//! Closure adapters, source declarations and their validation.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use coalestra_core::source::validate_declarations;
use coalestra_core::{
    BatchSource, ConfigError, DerivedSource, Execution, FetchContext, FnBatchSource,
    FnDerivedSource, FnSource, Payload, ResiliencePolicy, ResourceKey, Snapshot, Source,
    SourceError, SourceInfo, SourceOptions, SourceOutput, SourceRef, Timestamp,
};

fn key(text: &str) -> ResourceKey {
    ResourceKey::parse(text).unwrap()
}

fn ctx() -> FetchContext {
    FetchContext::new("snap", Timestamp::from_secs(10.0))
}

fn text(output: &SourceOutput) -> &str {
    output.payload.get::<String>().unwrap()
}

#[tokio::test]
async fn an_async_closure_source_fetches_with_the_key_and_context() {
    let source = FnSource::new("rest", |k: ResourceKey, ctx: FetchContext| async move {
        Ok(SourceOutput::new(format!(
            "{} in {} #{}",
            k.subject(),
            ctx.snapshot_id,
            ctx.attempt
        )))
    });
    assert_eq!(source.execution(), Execution::Async);
    let output = source
        .fetch(&key("market:price:BTC"), &ctx())
        .await
        .unwrap();
    assert_eq!(text(&output), "BTC in snap #1");
    let retry = ctx().with_attempt(2);
    let output = source
        .fetch(&key("market:price:ETH"), &retry)
        .await
        .unwrap();
    assert_eq!(text(&output), "ETH in snap #2");

    let error = source.fetch_blocking(&key("a:b"), &ctx()).unwrap_err();
    assert_eq!(error.error_type(), "SourceProtocolError");
}

#[tokio::test]
async fn a_sync_closure_defaults_to_the_blocking_pool_and_can_run_inline() {
    let calls = Arc::new(AtomicUsize::new(0));
    let make = || {
        let calls = calls.clone();
        FnSource::sync("db", move |k: &ResourceKey, _ctx: &FetchContext| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(SourceOutput::new(k.name().to_owned()))
        })
    };
    let blocking = make();
    assert_eq!(blocking.execution(), Execution::Blocking);
    let output = blocking.fetch_blocking(&key("ns:balance"), &ctx()).unwrap();
    assert_eq!(text(&output), "balance");
    let output = blocking.fetch(&key("ns:orders"), &ctx()).await.unwrap();
    assert_eq!(text(&output), "orders");
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    assert_eq!(make().inline().execution(), Execution::Inline);
    let async_source = FnSource::new("rest", |_k, _c| async { Ok(SourceOutput::new(())) });
    assert_eq!(
        async_source.inline().execution(),
        Execution::Async,
        "inline only affects sync closures"
    );
}

#[test]
fn declarations_are_reported_through_source_info() {
    let source = FnSource::new(" rest ", |_k, _c| async { Ok(SourceOutput::new(())) })
        .with_priority(10)
        .with_timeout(Duration::from_secs(2))
        .with_queue_timeout(Duration::from_millis(100))
        .with_max_concurrency(NonZeroUsize::new(3).unwrap())
        .with_resilience(ResiliencePolicy::default())
        .with_supports(|k: &ResourceKey| k.namespace() == "market")
        .without_support_cache();
    assert_eq!(source.name(), "rest", "names are trimmed");
    assert_eq!(source.priority(), 10);
    assert_eq!(source.timeout(), Some(Duration::from_secs(2)));
    assert_eq!(source.queue_timeout(), Some(Duration::from_millis(100)));
    assert_eq!(source.max_concurrency(), NonZeroUsize::new(3));
    assert_eq!(source.resilience(), Some(ResiliencePolicy::default()));
    assert!(source.supports(&key("market:price:BTC")));
    assert!(!source.supports(&key("account:balance:1")));
    assert!(!source.cache_supports());
    assert!(!source.blocking_io());
    assert_eq!(source.transport_timeout(), None);
    assert!(validate_declarations(&source).is_ok());

    let plain = FnSource::new("plain", |_k, _c| async { Ok(SourceOutput::new(())) });
    assert_eq!(plain.priority(), 0);
    assert_eq!(plain.timeout(), None);
    assert!(plain.supports(&key("any:thing")));
    assert!(plain.cache_supports());
}

#[test]
fn blocking_io_declares_the_transport_timeout() {
    let source = FnSource::sync("db", |_k: &ResourceKey, _c: &FetchContext| {
        Ok(SourceOutput::new(()))
    })
    .with_timeout(Duration::from_secs(2))
    .with_blocking_io(Some(Duration::from_secs(1)));
    assert!(source.blocking_io());
    assert_eq!(source.transport_timeout(), Some(Duration::from_secs(1)));
    assert!(validate_declarations(&source).is_ok());
}

#[test]
fn validation_rejects_empty_names_and_zero_timeouts() {
    let nothing = |_k: ResourceKey, _c: FetchContext| async { Ok(SourceOutput::new(())) };
    let error = validate_declarations(&FnSource::new("   ", nothing)).unwrap_err();
    assert_eq!(
        error,
        ConfigError::Empty {
            field: "source name"
        }
    );
    assert_eq!(error.to_string(), "source name cannot be empty");

    let error = validate_declarations(&FnSource::new("a", nothing).with_timeout(Duration::ZERO))
        .unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::Invalid {
                field: "timeout",
                ..
            }
        ),
        "{error}"
    );
    let error =
        validate_declarations(&FnSource::new("a", nothing).with_queue_timeout(Duration::ZERO))
            .unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::Invalid {
                field: "queue_timeout",
                ..
            }
        ),
        "{error}"
    );
    let error =
        validate_declarations(&FnSource::new("a", nothing).with_blocking_io(Some(Duration::ZERO)))
            .unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::Invalid {
                field: "transport_timeout",
                ..
            }
        ),
        "{error}"
    );
}

/// A hand-written source declaring a transport timeout without blocking I/O.
struct Undeclared;

impl SourceInfo for Undeclared {
    fn name(&self) -> &str {
        "custom"
    }
    fn transport_timeout(&self) -> Option<Duration> {
        Some(Duration::from_secs(1))
    }
}

#[async_trait]
impl Source for Undeclared {
    async fn fetch(
        &self,
        _key: &ResourceKey,
        _ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        Ok(SourceOutput::new(()))
    }
}

#[test]
fn a_transport_timeout_requires_blocking_io() {
    let error = validate_declarations(&Undeclared).unwrap_err();
    assert!(
        matches!(
            error,
            ConfigError::Invalid {
                field: "transport_timeout",
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("requires a source declaring blocking_io"),
        "{error}"
    );
}

#[test]
fn a_custom_source_has_defaults_and_no_blocking_entry_point() {
    let source = Undeclared;
    assert_eq!(source.priority(), 0);
    assert!(source.supports(&key("a:b")));
    assert_eq!(source.execution(), Execution::Async);
    assert_eq!(source.max_concurrency(), None);
    assert_eq!(source.resilience(), None);
    let error = source.fetch_blocking(&key("a:b"), &ctx()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("source custom declared synchronous execution"),
        "{error}"
    );
}

#[tokio::test]
async fn batch_closures_answer_many_keys() {
    let source = FnBatchSource::new("bulk", |keys: Vec<ResourceKey>, _c| async move {
        Ok(keys
            .into_iter()
            .filter(|k| k.subject() != "skip")
            .map(|k| {
                let subject = k.subject().to_owned();
                (k, SourceOutput::new(subject))
            })
            .collect())
    })
    .with_max_batch_size(NonZeroUsize::new(50).unwrap());
    assert_eq!(source.max_batch_size(), NonZeroUsize::new(50));
    let keys = [key("ns:p:a"), key("ns:p:skip"), key("ns:p:b")];
    let answer = source.fetch_many(&keys, &ctx()).await.unwrap();
    let returned: Vec<&str> = answer.iter().map(|(k, _)| k.subject()).collect();
    assert_eq!(returned, ["a", "b"]);

    let sync = FnBatchSource::sync("bulk-sync", |keys: &[ResourceKey], _c: &FetchContext| {
        Ok(keys
            .iter()
            .map(|k| (k.clone(), SourceOutput::new(1_u8)))
            .collect())
    });
    assert_eq!(sync.execution(), Execution::Blocking);
    assert_eq!(sync.fetch_many_blocking(&keys, &ctx()).unwrap().len(), 3);
    assert_eq!(sync.max_batch_size(), None);
}

#[tokio::test]
async fn derived_closures_list_dependencies_and_derive_from_a_snapshot() {
    let spread = FnDerivedSource::sync(
        "spread",
        |k: &ResourceKey| vec![key(&format!("market:bid:{}", k.subject()))],
        |k: &ResourceKey, deps: &Snapshot, _c: &FetchContext| {
            let bid = deps
                .value::<f64>(&key(&format!("market:bid:{}", k.subject())))
                .map_err(SourceError::protocol)?;
            Ok(SourceOutput::new(*bid * 2.0))
        },
    );
    assert_eq!(
        spread.execution(),
        Execution::Inline,
        "sync derivations run inline by default"
    );
    assert_eq!(
        spread.dependencies(&key("market:spread:BTC")).unwrap(),
        vec![key("market:bid:BTC")]
    );

    let bid = coalestra_core::SnapshotValue::from_parts(coalestra_core::value::ValueParts::new(
        key("market:bid:BTC"),
        Payload::new(50.0_f64),
        "rest",
        Timestamp::from_secs(1.0),
    ));
    let deps = Snapshot::parts("deps", Timestamp::from_secs(1.0))
        .value(bid)
        .finish();
    let output = spread
        .derive(&key("market:spread:BTC"), &deps, &ctx())
        .await
        .unwrap();
    assert_eq!(*output.payload.get::<f64>().unwrap(), 100.0);
    let blocking = spread
        .derive_blocking(&key("market:spread:BTC"), &deps, &ctx())
        .unwrap();
    assert_eq!(*blocking.payload.get::<f64>().unwrap(), 100.0);
    assert!(spread
        .derive(&key("market:spread:ETH"), &deps, &ctx())
        .await
        .is_err());

    let offloaded = FnDerivedSource::sync(
        "heavy",
        |_k: &ResourceKey| vec![],
        |_k: &ResourceKey, _d: &Snapshot, _c: &FetchContext| Ok(SourceOutput::new(())),
    )
    .offload();
    assert_eq!(offloaded.execution(), Execution::Blocking);
    let async_derived = FnDerivedSource::new(
        "async",
        |_k: &ResourceKey| vec![],
        |_k, _d, _c| async { Ok(SourceOutput::new(())) },
    );
    assert_eq!(async_derived.offload().execution(), Execution::Async);
}

#[test]
fn adapters_register_as_the_matching_source_kind() {
    let single: SourceRef =
        FnSource::new("rest", |_k, _c| async { Ok(SourceOutput::new(())) }).into();
    let batch: SourceRef = FnBatchSource::new("bulk", |_k, _c| async { Ok(Vec::new()) }).into();
    let derived: SourceRef = FnDerivedSource::new(
        "calc",
        |_k: &ResourceKey| vec![],
        |_k, _d, _c| async { Ok(SourceOutput::new(())) },
    )
    .into();
    assert_eq!((single.kind(), single.name()), ("single", "rest"));
    assert_eq!((batch.kind(), batch.name()), ("batch", "bulk"));
    assert_eq!((derived.kind(), derived.name()), ("derived", "calc"));
    assert_eq!(format!("{single:?}"), "SourceRef::single(\"rest\")");
    assert!(matches!(
        SourceRef::from(Arc::new(Undeclared)),
        SourceRef::Single(_)
    ));
}

#[test]
fn source_outputs_carry_observation_time_metadata_and_staleness() {
    let output = SourceOutput::new(5_u8)
        .observed_at(Timestamp::from_secs(3.0))
        .with_metadata("transport", "test")
        .stale();
    assert_eq!(output.observed_at, Some(Timestamp::from_secs(3.0)));
    assert_eq!(
        output.metadata.get("transport").and_then(|v| v.as_str()),
        Some("test")
    );
    assert!(output.stale);
    let plain = SourceOutput::from_payload(Payload::new(5_u8));
    assert!(plain.observed_at.is_none() && !plain.stale && plain.metadata.is_empty());
}
