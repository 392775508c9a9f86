//! A synchronous application: plain threads, no async runtime of its own.
//!
//! A warehouse service built on `std::thread`:
//!
//! 1. four request threads build snapshots of stock and prices at once;
//! 2. a session resolves a store's assortment, then the stock of exactly
//!    those items, and is revalidated after a stock movement is published;
//! 3. a message-queue consumer thread publishes stock movements with
//!    `submit_publish`, never blocking on the cache, within a bounded
//!    backlog; `flush` waits for what was accepted;
//! 4. `close` drains everything and stops the facade's runtime thread.
//!
//! The inventory database client is synchronous: it is declared as blocking
//! I/O with its own transport timeout, so it runs on the blocking pool and
//! its calls are bounded.
//!
//! Run with `cargo run -p coalestra-blocking --example blocking_app`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use coalestra_blocking::{BlockingOptions, BlockingSnapshotBuilder};
use coalestra_cache::PublishOptions;
use coalestra_core::{
    FnSource, FreshnessPolicy, Payload, ResourceKey, SourceError, SourceOptions, SourceOutput,
};
use coalestra_orchestration::{ResolveOptions, RevalidateOptions, SessionOptions, SnapshotBuilder};

fn key(namespace: &str, name: &str, subject: &str) -> ResourceKey {
    ResourceKey::new(namespace, name, subject).expect("valid key")
}

fn stock(sku: &str) -> ResourceKey {
    key("inventory", "stock", sku)
}

fn price(sku: &str) -> ResourceKey {
    key("catalog", "price", sku)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let db_queries = Arc::new(AtomicUsize::new(0));

    // A synchronous database client: 15 ms per query, 200 ms socket timeout.
    let queries = Arc::clone(&db_queries);
    let inventory_db = FnSource::sync("inventory-db", move |key, _ctx| {
        queries.fetch_add(1, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(15));
        let units = key.subject().bytes().map(i64::from).sum::<i64>() % 50;
        Ok(SourceOutput::new(units))
    })
    .with_blocking_io(Some(Duration::from_millis(200)))
    .with_timeout(Duration::from_millis(500))
    .with_supports(|k| k.namespace() == "inventory");

    // The store service (async HTTP client): assortments per store.
    let stores = FnSource::new("store-service", |key: ResourceKey, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let skus: Vec<String> = match key.subject() {
            "berlin" => vec!["SKU-100".into(), "SKU-200".into(), "SKU-300".into()],
            "lisbon" => vec!["SKU-200".into(), "SKU-400".into()],
            other => return Err(SourceError::unavailable(format!("unknown store {other}"))),
        };
        Ok(SourceOutput::new(skus))
    })
    .with_supports(|k| k.namespace() == "store");

    // The catalog: prices, async.
    let catalog = FnSource::new("catalog", |key: ResourceKey, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let cents = 1_000 + key.subject().len() as i64 * 37;
        Ok(SourceOutput::new(cents))
    })
    .with_supports(|k| k.namespace() == "catalog");

    let builder = SnapshotBuilder::builder([inventory_db.into(), stores.into(), catalog.into()])
        .default_policy(FreshnessPolicy::new(
            Duration::from_secs(30),
            Duration::from_secs(300),
        )?)
        .max_concurrency(8)
        .build()?;
    let facade = BlockingSnapshotBuilder::new(
        builder,
        BlockingOptions::new()
            .max_pending_submissions(8)
            .shutdown_timeout(Duration::from_secs(2)),
    )?;
    println!(
        "facade running on its own runtime thread: {}",
        facade.is_running()
    );

    // -- 1. Request threads --------------------------------------------------
    println!("\n== 1. four request threads build at once");
    let started = Instant::now();
    thread::scope(|scope| {
        for worker in 0..4 {
            let facade = &facade;
            scope.spawn(move || {
                let skus = ["SKU-100", "SKU-200", "SKU-300"];
                let keys: Vec<ResourceKey> =
                    skus.iter().flat_map(|s| [stock(s), price(s)]).collect();
                match facade.build(keys) {
                    Ok(snapshot) => {
                        let units: i64 = skus
                            .iter()
                            .map(|s| *snapshot.value::<i64>(&stock(s)).expect("stock"))
                            .sum();
                        println!(
                            "  thread {worker}: {} values, {units} units in stock",
                            snapshot.len()
                        );
                    }
                    Err(error) => println!("  thread {worker}: failed: {error}"),
                }
            });
        }
    });
    println!(
        "  4 builds in {} ms, {} database queries (concurrent builds share fetches)",
        started.elapsed().as_millis(),
        db_queries.load(Ordering::Relaxed)
    );

    // -- 2. A session ----------------------------------------------------------
    println!("\n== 2. a session: the Lisbon assortment, then its stock");
    let session = facade.session(
        SessionOptions::new()
            .snapshot_id("restock-lisbon")
            .deadline(Duration::from_secs(2)),
    )?;
    let assortment_key = key("store", "assortment", "lisbon");
    let first = session.resolve([assortment_key.clone()], ResolveOptions::new())?;
    let assortment = first.value::<Vec<String>>(&assortment_key)?.clone();
    println!("  stage 1: lisbon sells {assortment:?}");
    let second = session.resolve(assortment.iter().map(|s| stock(s)), ResolveOptions::new())?;
    for sku in &assortment {
        println!(
            "  stage 2: {sku} stock = {}",
            second.value::<i64>(&stock(sku))?
        );
    }

    let publisher = facade.publisher();
    let movement = publisher.publish(
        stock("SKU-400"),
        Payload::new(0_i64),
        PublishOptions::new("warehouse-events").with_metadata("reason", "picked"),
    )?;
    println!(
        "  a stock movement is published: SKU-400 -> 0 ({})",
        movement.status
    );
    let pinned = session.snapshot()?;
    println!(
        "  the session still sees SKU-400 = {} until it revalidates",
        pinned.value::<i64>(&stock("SKU-400"))?
    );
    let revalidated = session.revalidate([stock("SKU-400")], RevalidateOptions::new())?;
    println!(
        "  after revalidate: SKU-400 = {} from {}",
        revalidated.value::<i64>(&stock("SKU-400"))?,
        revalidated
            .get(&stock("SKU-400"))
            .map_or("?", |v| v.source())
    );
    session.close()?;

    // -- 3. A queue consumer submitting without blocking -------------------------
    println!("\n== 3. a queue consumer submits 40 movements (backlog bound 8)");
    let consumer_publisher = facade.publisher();
    let consumer = thread::spawn(move || {
        let mut handles = Vec::new();
        let mut refused = 0;
        for i in 0..40_i64 {
            let sku = format!("SKU-{}", 100 + (i % 4) * 100);
            let options = PublishOptions::new("warehouse-events").with_metadata("offset", i);
            loop {
                match consumer_publisher.submit_publish(
                    stock(&sku),
                    Payload::new(i),
                    options.clone(),
                ) {
                    Ok(handle) => {
                        handles.push(handle);
                        break;
                    }
                    // Never blocked: the consumer decides. Here it waits for
                    // the accepted work to drain, then retries.
                    Err(error) if error.is_backlog_full() => {
                        refused += 1;
                        consumer_publisher.flush(Duration::from_secs(1))?;
                    }
                    Err(error) => return Err(error),
                }
            }
        }
        Ok((handles, refused))
    });
    let (handles, refused) = consumer.join().expect("consumer thread")?;
    facade.flush(Duration::from_secs(2))?;
    let mut published = 0;
    let mut ignored = 0;
    for handle in handles {
        if handle.wait()?.is_published() {
            published += 1;
        } else {
            ignored += 1;
        }
    }
    println!(
        "  submitted 40: {published} published, {ignored} ignored; refused {refused} time(s) while the backlog was full; pending now {}",
        facade.pending_submissions()
    );
    let latest = facade.build([stock("SKU-100"), stock("SKU-400")])?;
    for value in latest.values() {
        println!(
            "  {} = {} (offset {})",
            value.key(),
            value.value::<i64>()?,
            value
                .metadata()
                .get("offset")
                .map_or_else(|| "-".to_owned(), |v| v.to_string())
        );
    }

    // -- 4. Health and shutdown ----------------------------------------------------
    let health = facade.builder().health().with_submissions(
        facade.pending_submissions() as u64,
        facade.max_pending_submissions() as u64,
    );
    let guarantee = &health.source_timeout_guarantees["inventory-db"];
    println!(
        "\n== 4. health: inventory-db is {} (transport {:?}s inside source timeout {:?}s); {} of {} submissions pending",
        guarantee.status.as_str(),
        guarantee.transport_timeout_seconds.unwrap_or_default(),
        guarantee.source_timeout_seconds.unwrap_or_default(),
        health.pending_submissions,
        health.max_pending_submissions.unwrap_or_default()
    );
    facade.close()?;
    println!(
        "closed: facade closed={}, runtime running={}, builder closed={}",
        facade.is_closed(),
        facade.is_running(),
        facade.builder().is_closed()
    );
    match facade.build([stock("SKU-100")]) {
        Ok(_) => println!("unexpected: build after close succeeded"),
        Err(error) => println!("build after close: {error}"),
    }
    Ok(())
}
