//! Capacity limits, retries, a circuit breaker and the publisher.
//!
//! 1. Capacity: a builder-wide limit of 4 concurrent source calls, 2 for the
//!    pricing API (set on the builder) and 3 for the ledger (declared by the
//!    source). A `capacity()` snapshot is printed while two builds queue.
//! 2. Retries: a flaky source fails the first attempt of every key and
//!    succeeds on the second.
//! 3. A circuit breaker: the risk engine goes down, its circuit opens after
//!    two failures and later calls fail fast; once it is back, the circuit
//!    lets a probe through after its recovery timeout and closes again.
//! 4. The publisher with authority ranks: a WebSocket feed outranks the REST
//!    API and a backfill job, so stale or lower-ranked writes are ignored
//!    unless forced.
//!
//! Run with `cargo run -p coalestra --example capacity_circuit_publisher`.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coalestra::prelude::*;
use coalestra::{
    AuthorityResolver, CapacitySnapshot, CircuitBreakerPolicy, CircuitScope, Payload,
    ResiliencePolicy, ResourceUpdate, RetryPolicy, SourceAuthorityPolicy,
};

fn key(namespace: &str, name: &str, subject: &str) -> ResourceKey {
    ResourceKey::new(namespace, name, subject).expect("valid key")
}

/// Tracks how many calls of one back end run at once.
#[derive(Default)]
struct Gauge {
    current: AtomicUsize,
    peak: AtomicUsize,
}

impl Gauge {
    fn enter(&self) {
        let now = self.current.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
    }
    fn leave(&self) {
        self.current.fetch_sub(1, Ordering::SeqCst);
    }
    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

fn print_capacity(capacity: &CapacitySnapshot) {
    let g = &capacity.global;
    println!(
        "  global        limit={} in_use={} waiting={}",
        g.limit, g.in_use, g.waiting
    );
    for (source, s) in &capacity.sources {
        println!(
            "  {source:<13} limit={} in_use={} waiting={}",
            s.limit, s.in_use, s.waiting
        );
    }
}

fn print_circuits(builder: &SnapshotBuilder) {
    for (identity, state) in builder.circuits() {
        println!(
            "    circuit {identity}: {} (consecutive failures {})",
            state.state, state.failures
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let pricing_gauge = Arc::new(Gauge::default());
    let ledger_gauge = Arc::new(Gauge::default());
    let all_gauge = Arc::new(Gauge::default());

    let (pg, ag) = (Arc::clone(&pricing_gauge), Arc::clone(&all_gauge));
    let pricing = FnSource::new("pricing-api", move |key: ResourceKey, _ctx| {
        let (pg, ag) = (Arc::clone(&pg), Arc::clone(&ag));
        async move {
            pg.enter();
            ag.enter();
            tokio::time::sleep(Duration::from_millis(60)).await;
            pg.leave();
            ag.leave();
            Ok(SourceOutput::new(100.0 + key.subject().len() as f64))
        }
    })
    .with_priority(10)
    .with_supports(|k| k.namespace() == "market");

    let (lg, ag) = (Arc::clone(&ledger_gauge), Arc::clone(&all_gauge));
    let ledger = FnSource::new("ledger", move |_key: ResourceKey, _ctx| {
        let (lg, ag) = (Arc::clone(&lg), Arc::clone(&ag));
        async move {
            lg.enter();
            ag.enter();
            tokio::time::sleep(Duration::from_millis(60)).await;
            lg.leave();
            ag.leave();
            Ok(SourceOutput::new(1_000_i64))
        }
    })
    // The ledger declares its own limit; the builder can still override it.
    .with_max_concurrency(NonZeroUsize::new(3).expect("non-zero"))
    .with_supports(|k| k.namespace() == "account");

    // Fails the first attempt of every key, succeeds on the second.
    let seen = Arc::new(dashset());
    let flaky = FnSource::new("fx-rates", move |key: ResourceKey, _ctx| {
        let seen = Arc::clone(&seen);
        async move {
            let first = seen.lock().expect("lock").insert(key.to_string());
            if first {
                return Err(SourceError::unavailable("connection reset by peer"));
            }
            Ok(SourceOutput::new(1.0843_f64))
        }
    })
    .with_supports(|k| k.namespace() == "fx");

    let risk_up = Arc::new(AtomicBool::new(false));
    let risk_calls = Arc::new(AtomicUsize::new(0));
    let (up, calls) = (Arc::clone(&risk_up), Arc::clone(&risk_calls));
    let risk = FnSource::new("risk-engine", move |_key: ResourceKey, _ctx| {
        let (up, calls) = (Arc::clone(&up), Arc::clone(&calls));
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if up.load(Ordering::SeqCst) {
                Ok(SourceOutput::new(0.42_f64))
            } else {
                Err(SourceError::unavailable("risk engine: connection refused"))
            }
        }
    })
    .with_supports(|k| k.namespace() == "risk");

    let authority = AuthorityResolver::new(SourceAuthorityPolicy::new(
        [("exchange-ws", 100), ("pricing-api", 50), ("backfill", 10)],
        0,
    )?);
    let retry = RetryPolicy::builder()
        .max_attempts(3)
        .initial_backoff(Duration::from_millis(20))
        .max_backoff(Duration::from_millis(100))
        .jitter(0.0)
        .build()?;
    let breaker = CircuitBreakerPolicy::new(CircuitScope::Source, 2, Duration::from_millis(300))?;

    let builder =
        SnapshotBuilder::builder([pricing.into(), ledger.into(), flaky.into(), risk.into()])
            .max_concurrency(4)
            .source_concurrency("pricing-api", 2)
            .resilience(ResiliencePolicy::new(
                retry,
                CircuitBreakerPolicy::default(),
            ))
            // The risk engine is not retried, and its circuit opens quickly.
            .source_resilience(
                "risk-engine",
                ResiliencePolicy::new(RetryPolicy::none(), breaker),
            )
            .authority(authority)
            .default_policy(FreshnessPolicy::new(
                Duration::from_secs(10),
                Duration::from_secs(60),
            )?)
            .build()?;

    // -- 1. Capacity -----------------------------------------------------------
    println!("== 1. capacity: a build of 8 prices and a build of 6 balances, side by side");
    let prices: Vec<ResourceKey> = (0..8)
        .map(|i| key("market", "price", &format!("SYM{i}")))
        .collect();
    let balances: Vec<ResourceKey> = (0..6)
        .map(|i| key("account", "balance", &format!("acct-{i}")))
        .collect();
    let started = Instant::now();
    let running: Vec<_> = [prices, balances]
        .into_iter()
        .map(|keys| {
            let builder = builder.clone();
            tokio::spawn(async move { builder.build(keys).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(30)).await;
    println!("  capacity() while the builds run:");
    print_capacity(&builder.capacity());
    let mut resolved = 0;
    for build in running {
        resolved += build.await??.len();
    }
    println!(
        "  built {resolved} values in {} ms; peak concurrent calls: pricing-api {}, ledger {}, all {}",
        started.elapsed().as_millis(),
        pricing_gauge.peak(),
        ledger_gauge.peak(),
        all_gauge.peak()
    );

    // -- 2. Retries ------------------------------------------------------------
    println!("\n== 2. retries: fx-rates fails every first attempt");
    let eurusd = key("fx", "rate", "EURUSD");
    let started = Instant::now();
    let snapshot = builder.build([eurusd.clone()]).await?;
    let value = snapshot.get(&eurusd).expect("resolved");
    println!(
        "  EURUSD = {} after {} attempts; the build took {} ms including the 20 ms back-off",
        value.value::<f64>()?,
        value.attempts(),
        started.elapsed().as_millis()
    );
    println!("  retries so far: {}", builder.health().retry_count);

    // -- 3. Circuit breaker ----------------------------------------------------
    println!("\n== 3. circuit breaker: the risk engine is down");
    for i in 1..=4 {
        let started = Instant::now();
        let subject = format!("portfolio-{i}");
        let outcome = builder.build([key("risk", "var", &subject)]).await;
        let error = outcome
            .err()
            .and_then(|e| e.as_build().map(|b| b.errors()[0].to_string()))
            .unwrap_or_else(|| "ok".to_owned());
        println!(
            "  build {i}: {:>3} ms  {error}",
            started.elapsed().as_millis()
        );
    }
    print_circuits(&builder);
    println!(
        "  risk-engine was called {} times; open-circuit rejections: {}",
        risk_calls.load(Ordering::SeqCst),
        builder.health().circuit_rejection_count
    );

    println!("  the risk engine recovers; waiting out the 300 ms recovery timeout");
    risk_up.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(350)).await;
    let var = key("risk", "var", "portfolio-1");
    let snapshot = builder.build([var.clone()]).await?;
    println!(
        "  probe build: VaR = {} from {}",
        snapshot.value::<f64>(&var)?,
        snapshot.get(&var).map_or("?", |v| v.source())
    );
    print_circuits(&builder);

    // -- 4. Publisher and authority --------------------------------------------
    println!("\n== 4. publisher: exchange-ws (100) > pricing-api (50) > backfill (10)");
    let btc = key("market", "price", "BTCUSDT");
    let first = builder.build([btc.clone()]).await?;
    println!(
        "  built: BTCUSDT = {} from {} (rank {})",
        first.value::<f64>(&btc)?,
        first.get(&btc).map_or("?", |v| v.source()),
        first.get(&btc).map_or(0, |v| v.authority_rank())
    );
    let publisher = builder.publisher();
    let attempts = [
        ("exchange-ws", 97_310.0, None, false),
        ("backfill", 97_000.0, None, false),
        ("exchange-ws", 97_200.0, Some(-5.0), false),
        ("ops-correction", 97_305.5, None, true),
    ];
    for (source, price, shift, force) in attempts {
        let mut options = PublishOptions::new(source).force(force);
        if let Some(shift) = shift {
            let now = Timestamp::from_system_time(std::time::SystemTime::now());
            options = options.observed_at(Timestamp::from_secs(now.as_secs() + shift));
        }
        let result = publisher
            .publish(btc.clone(), Payload::new(price), options)
            .await?;
        let label = if force {
            format!("{price:.1} (forced)")
        } else {
            format!("{price:.1}")
        };
        println!(
            "  {source:<14} {label:<17} -> {:<24} stored: {} from {}",
            result.status.as_str(),
            result.value.value::<f64>()?,
            result.value.source()
        );
    }

    // A batch from the stream: one write for many keys.
    let updates = ["ETHUSDT", "SOLUSDT"].map(|s| {
        ResourceUpdate::new(
            key("market", "price", s),
            Payload::new(if s == "ETHUSDT" { 3_411.0 } else { 182.6 }),
            PublishOptions::new("exchange-ws"),
        )
    });
    for result in publisher.publish_many(updates.to_vec()).await? {
        println!("  publish_many {}: {}", result.key, result.status);
    }

    // Background publication, bounded by the builder's pending-task limit.
    let handle = publisher
        .spawn_publish(ResourceUpdate::new(
            key("market", "price", "ADAUSDT"),
            Payload::new(0.712_f64),
            PublishOptions::new("exchange-ws"),
        ))
        .await;
    println!("  spawn_publish ADAUSDT: {}", handle.await??.status);

    let snapshot = builder
        .build([btc.clone(), key("market", "price", "ETHUSDT")])
        .await?;
    for value in snapshot.values() {
        println!(
            "  build now serves {} = {} from {} (cached={})",
            value.key(),
            value.value::<f64>()?,
            value.source(),
            value.is_from_cache()
        );
    }
    let removed = publisher.invalidate(&btc, "exchange halted").await?;
    let after = builder.build([btc.clone()]).await?;
    println!(
        "  invalidated BTCUSDT (present: {removed}); next build asks {} again",
        after.get(&btc).map_or("?", |v| v.source())
    );
    let stats = builder.cache().stats();
    println!(
        "  cache: {} entries, {} stored writes, ignored: {} lower-authority, {} older, {} duplicate",
        stats.size, stats.sets, stats.ignored_lower_authority, stats.ignored_older, stats.ignored_duplicate
    );

    builder.close().await;
    Ok(())
}

/// A set of keys already seen by the flaky source.
fn dashset() -> std::sync::Mutex<std::collections::HashSet<String>> {
    std::sync::Mutex::new(std::collections::HashSet::new())
}
