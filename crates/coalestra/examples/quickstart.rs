//! Quickstart: a trading-style read model built from three kinds of source.
//!
//! - `rest`: an async single-key source with 30 ms latency (prices),
//! - `positions-db`: a batch source answering many keys per call,
//! - `exposure`: a derived value computed from a price and a position,
//! - a stream publishing a fresher mark price straight into the cache.
//!
//! Run with `cargo run --example quickstart`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra::prelude::*;
use coalestra::Payload;

fn key(namespace: &str, name: &str, subject: &str) -> ResourceKey {
    ResourceKey::new(namespace, name, subject).expect("valid key")
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rest_calls = Arc::new(AtomicUsize::new(0));
    let calls = Arc::clone(&rest_calls);
    let rest = FnSource::new("rest", move |key: ResourceKey, _ctx| {
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(30)).await;
            let price = match key.subject() {
                "BTCUSDT" => 97_250.5,
                "ETHUSDT" => 3_410.25,
                _ => return Err(SourceError::unavailable(format!("no quote for {key}"))),
            };
            Ok(SourceOutput::new(price).with_metadata("venue", "demo-exchange"))
        }
    })
    .with_priority(10)
    .with_timeout(Duration::from_secs(1))
    .with_supports(|k| k.namespace() == "market" && k.name() == "price");

    let positions = FnBatchSource::new("positions-db", |keys: Vec<ResourceKey>, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(15)).await;
        Ok(keys
            .into_iter()
            .map(|k| {
                let qty = if k.subject() == "BTCUSDT" { 0.75 } else { 12.0 };
                (k, SourceOutput::new(qty))
            })
            .collect())
    })
    .with_supports(|k| k.namespace() == "account" && k.name() == "position");

    let exposure = FnDerivedSource::sync(
        "exposure",
        |k: &ResourceKey| {
            vec![
                key("market", "price", k.subject()),
                key("account", "position", k.subject()),
            ]
        },
        |k, deps, _ctx| {
            let price = deps
                .value::<f64>(&key("market", "price", k.subject()))
                .map_err(SourceError::protocol)?;
            let qty = deps
                .value::<f64>(&key("account", "position", k.subject()))
                .map_err(SourceError::protocol)?;
            Ok(SourceOutput::new(price * qty))
        },
    )
    .with_supports(|k| k.namespace() == "risk");

    let builder = SnapshotBuilder::builder([rest.into(), positions.into(), exposure.into()])
        .default_policy(FreshnessPolicy::new(
            Duration::from_secs(5),
            Duration::from_secs(60),
        )?)
        .max_concurrency(16)
        .build()?;

    let wanted = [
        key("market", "price", "BTCUSDT"),
        key("market", "price", "ETHUSDT"),
        key("account", "position", "BTCUSDT"),
        key("account", "position", "ETHUSDT"),
        key("risk", "exposure", "BTCUSDT"),
        key("risk", "exposure", "ETHUSDT"),
    ];

    // Ten concurrent builds of the same keys: single-flight fetches each once.
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let builder = builder.clone();
            let keys = wanted.to_vec();
            tokio::spawn(async move { builder.build(keys).await })
        })
        .collect();
    let mut snapshots = Vec::new();
    for handle in handles {
        snapshots.push(handle.await??);
    }
    let snapshot = snapshots.swap_remove(0);
    println!("snapshot {} ({} values)", snapshot.id(), snapshot.len());
    for value in snapshot.values() {
        println!(
            "  {:<28} = {:>12.2}  from {:<13} cached={} coalesced={}",
            value.key().to_string(),
            value.value::<f64>()?,
            value.source(),
            value.is_from_cache(),
            value.is_coalesced(),
        );
    }
    println!(
        "rest calls for 10 concurrent builds: {}",
        rest_calls.load(Ordering::Relaxed)
    );

    // A stream publishes a fresher price; the next build serves it from cache.
    let publisher = builder.publisher();
    let result = publisher
        .publish(
            key("market", "price", "BTCUSDT"),
            Payload::new(97_301.0_f64),
            PublishOptions::new("ticker-stream"),
        )
        .await?;
    println!("published BTCUSDT price: {}", result.status);

    let snapshot = builder.build([key("market", "price", "BTCUSDT")]).await?;
    let price = snapshot
        .get(&key("market", "price", "BTCUSDT"))
        .expect("resolved");
    println!(
        "after publication: {} from {} (cached={})",
        price.value::<f64>()?,
        price.source(),
        price.is_from_cache()
    );
    if let Some(d) = snapshot.diagnostics() {
        println!("diagnostics: {}", d.to_json());
    }

    // A failing optional resource does not fail the build.
    let request = SnapshotRequest::new(
        [key("market", "price", "ETHUSDT")],
        [key("market", "price", "DOGEUSDT")],
    )?;
    let partial = builder.build_request(&request, BuildOptions::new()).await?;
    for error in partial.errors() {
        println!("optional failure: {error}");
    }
    builder.close().await;
    Ok(())
}
