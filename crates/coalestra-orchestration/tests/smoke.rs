//! A smoke test across single, batch and derived sources.
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra_core::{
    BuildOptions, FnBatchSource, FnDerivedSource, FnSource, ResourceKey, SourceError,
    SourceOptions, SourceOutput,
};
use coalestra_orchestration::SnapshotBuilder;

fn key(s: &str) -> ResourceKey {
    s.parse().unwrap()
}

#[tokio::test(start_paused = true)]
async fn smoke_single_batch_derived_and_coalescing() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let rest = FnSource::new("rest", move |k: ResourceKey, _| {
        let c = c.clone();
        async move {
            c.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(SourceOutput::new(k.subject().len() as u64))
        }
    })
    .with_supports(|k| k.name() == "price");
    let batch = FnBatchSource::new("batch", |keys: Vec<ResourceKey>, _| async move {
        Ok(keys
            .into_iter()
            .map(|k| (k, SourceOutput::new(7_u64)))
            .collect())
    })
    .with_supports(|k| k.name() == "mark");
    let derived = FnDerivedSource::sync(
        "derived",
        |k: &ResourceKey| vec![ResourceKey::new("market", "price", k.subject()).unwrap()],
        |k, deps, _| {
            let p = ResourceKey::new("market", "price", k.subject()).unwrap();
            Ok(SourceOutput::new(
                deps.value::<u64>(&p).map_err(SourceError::protocol)? * 2,
            ))
        },
    )
    .with_supports(|k| k.name() == "double");
    let builder = SnapshotBuilder::builder([rest.into(), batch.into(), derived.into()])
        .build()
        .unwrap();
    let b2 = builder.clone();
    let (a, b) = tokio::join!(
        builder.build([
            key("market:price:BTC"),
            key("market:mark:BTC"),
            key("market:double:BTC")
        ]),
        b2.build([key("market:price:BTC")])
    );
    let a = a.unwrap();
    let b = b.unwrap();
    assert_eq!(*a.value::<u64>(&key("market:price:BTC")).unwrap(), 3);
    assert_eq!(*a.value::<u64>(&key("market:mark:BTC")).unwrap(), 7);
    assert_eq!(*a.value::<u64>(&key("market:double:BTC")).unwrap(), 6);
    assert_eq!(*b.value::<u64>(&key("market:price:BTC")).unwrap(), 3);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(builder.in_flight(), 0);
    let again = builder.build([key("market:price:BTC")]).await.unwrap();
    assert!(again.get(&key("market:price:BTC")).unwrap().is_from_cache());
    let err = builder
        .build_with([key("other:thing:X")], BuildOptions::new().strict(true))
        .await
        .unwrap_err();
    assert!(err.is_build(), "{err}");
}
