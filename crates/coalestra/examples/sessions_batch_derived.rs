//! Sessions, batch and derived sources, revalidation and request policies.
//!
//! A pre-trade check for one account, in three parts:
//!
//! 1. a session resolves in stages: first the account's holdings, then the
//!    prices, positions (one batch call) and exposures (derived) of exactly
//!    those symbols, all under one identity and one deadline;
//! 2. a stream publishes a new price: the session keeps its pinned value
//!    until it is revalidated, which re-resolves the price and the exposure
//!    derived from it together, or keeps the previous state when the
//!    exchange is down;
//! 3. a scan builds one request per symbol with consistency and acceptance
//!    policies and classifies each outcome as accepted, degraded or
//!    rejected instead of failing.
//!
//! Run with `cargo run -p coalestra --example sessions_batch_derived`.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coalestra::prelude::*;
use coalestra::{
    AuthorityResolver, Payload, RequestDegradationPolicy, ResolveOptions, ResourceAcceptanceRule,
    RevalidateOptions, SessionOptions, SnapshotAcceptancePolicy, SnapshotConsistencyPolicy,
    SnapshotResult, SourceAuthorityPolicy, SourceRef,
};

fn key(namespace: &str, name: &str, subject: &str) -> ResourceKey {
    ResourceKey::new(namespace, name, subject).expect("valid key")
}

fn price(symbol: &str) -> ResourceKey {
    key("market", "price", symbol)
}

fn position(symbol: &str) -> ResourceKey {
    key("account", "position", symbol)
}

fn exposure(symbol: &str) -> ResourceKey {
    key("risk", "exposure", symbol)
}

fn funding(symbol: &str) -> ResourceKey {
    key("market", "funding", symbol)
}

/// The simulated back ends and a few counters to show what they were asked.
#[derive(Default)]
struct Backends {
    exchange_down: AtomicBool,
    quote_calls: AtomicUsize,
    db_batches: AtomicUsize,
    replica_batches: AtomicUsize,
}

fn sources(backends: &Arc<Backends>) -> Vec<SourceRef> {
    // The account service: which symbols an account holds.
    let portfolio = FnSource::new("portfolio", |_key: ResourceKey, _ctx| async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Ok(SourceOutput::new(vec![
            "BTCUSDT".to_owned(),
            "ETHUSDT".to_owned(),
        ]))
    })
    .with_supports(|k| k.namespace() == "account" && k.name() == "holdings");

    // The exchange's REST API: one price per call, 20 ms each.
    let b = Arc::clone(backends);
    let quotes = FnSource::new("quotes", move |key: ResourceKey, ctx| {
        let b = Arc::clone(&b);
        async move {
            b.quote_calls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            if b.exchange_down.load(Ordering::Relaxed) {
                return Err(SourceError::unavailable("exchange API returned 503"));
            }
            let (value, lag) = match key.subject() {
                "BTCUSDT" => (97_250.5, 0.0),
                "ETHUSDT" => (3_410.25, 0.0),
                "SOLUSDT" => (182.4, 0.0),
                // This market's feed lags three seconds behind the others.
                "ADAUSDT" => (0.71, 3.0),
                _ => return Err(SourceError::unavailable(format!("no market for {key}"))),
            };
            let observed = Timestamp::from_secs(ctx.requested_at.as_secs() - lag);
            Ok(SourceOutput::new(value).observed_at(observed))
        }
    })
    .with_priority(10)
    .with_timeout(Duration::from_millis(500))
    .with_supports(|k| k.namespace() == "market" && k.name() == "price");

    // The positions database answers many keys per query, but its
    // SOLUSDT book lives elsewhere: omitted keys fall through to the replica.
    let b = Arc::clone(backends);
    let positions_db = FnBatchSource::new("positions-db", move |keys: Vec<ResourceKey>, _ctx| {
        let b = Arc::clone(&b);
        async move {
            b.db_batches.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(15)).await;
            Ok(keys
                .into_iter()
                .filter(|k| k.subject() != "SOLUSDT")
                .map(|k| {
                    let qty = quantity(k.subject());
                    (k, SourceOutput::new(qty))
                })
                .collect())
        }
    })
    .with_priority(10)
    .with_supports(|k| k.namespace() == "account" && k.name() == "position");

    // A read replica with every position, ranked below the database.
    let b = Arc::clone(backends);
    let positions_replica =
        FnBatchSource::new("positions-replica", move |keys: Vec<ResourceKey>, _ctx| {
            let b = Arc::clone(&b);
            async move {
                b.replica_batches.fetch_add(1, Ordering::Relaxed);
                Ok(keys
                    .into_iter()
                    .map(|k| {
                        let qty = quantity(k.subject());
                        (k, SourceOutput::new(qty).with_metadata("replica", true))
                    })
                    .collect())
            }
        })
        .with_supports(|k| k.namespace() == "account" && k.name() == "position");

    // Funding rates come from a flaky third party that has no ETHUSDT data.
    let funding_rates = FnSource::new("funding-rates", |key: ResourceKey, _ctx| async move {
        match key.subject() {
            "ETHUSDT" => Err(SourceError::unavailable("funding provider timed out")),
            _ => Ok(SourceOutput::new(0.0001_f64)),
        }
    })
    .with_supports(|k| k.namespace() == "market" && k.name() == "funding");

    // Exposure is computed from a price and a position, never fetched.
    let exposure_source = FnDerivedSource::sync(
        "exposure",
        |k: &ResourceKey| vec![price(k.subject()), position(k.subject())],
        |k, deps, _ctx| {
            let p = deps
                .value::<f64>(&price(k.subject()))
                .map_err(SourceError::protocol)?;
            let q = deps
                .value::<f64>(&position(k.subject()))
                .map_err(SourceError::protocol)?;
            Ok(SourceOutput::new(p * q))
        },
    )
    .with_supports(|k| k.namespace() == "risk" && k.name() == "exposure");

    vec![
        portfolio.into(),
        quotes.into(),
        positions_db.into(),
        positions_replica.into(),
        funding_rates.into(),
        exposure_source.into(),
    ]
}

fn quantity(symbol: &str) -> f64 {
    match symbol {
        "BTCUSDT" => 0.75,
        "ETHUSDT" => 12.0,
        "SOLUSDT" => 140.0,
        _ => 5_000.0,
    }
}

fn print_values(snapshot: &Snapshot) {
    for value in snapshot.values() {
        let shown = match value.value::<f64>() {
            Ok(v) => format!("{v:>12.2}"),
            Err(_) => format!("{:>12}", "(list)"),
        };
        println!(
            "    {:<26} = {shown}  from {}",
            value.key().to_string(),
            value.source()
        );
    }
}

fn print_result(symbol: &str, result: &SnapshotResult) {
    let actions: Vec<&str> = result.allowed_actions().iter().map(|a| &**a).collect();
    println!(
        "  {symbol:<8} {:<9} reason={:<40} actions=[{}]",
        result.state().as_str(),
        result.reason(),
        actions.join(", ")
    );
    for error in result
        .required_errors()
        .iter()
        .chain(result.optional_errors())
    {
        println!("           - {error}");
    }
    if let Some(violation) = result.consistency_violation() {
        println!("           - {violation}");
    }
    for violation in result.acceptance_violations() {
        println!("           - {violation}");
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let backends = Arc::new(Backends::default());
    let authority = AuthorityResolver::new(SourceAuthorityPolicy::new(
        [
            ("positions-db", 100),
            ("positions-replica", 10),
            ("quotes", 50),
            ("ticker-stream", 50),
        ],
        0,
    )?);
    let builder = SnapshotBuilder::builder(sources(&backends))
        .default_policy(FreshnessPolicy::new(
            Duration::from_secs(30),
            Duration::from_secs(120),
        )?)
        .authority(authority)
        .max_concurrency(8)
        .build()?;

    // -- 1. A session resolving in stages ------------------------------------
    println!("== 1. session: holdings first, then what they need");
    let session = builder.session(
        SessionOptions::new()
            .snapshot_id("pretrade-acct-42")
            .deadline(Duration::from_secs(3)),
    )?;
    let holdings = key("account", "holdings", "acct-42");
    let stage1 = session
        .resolve([holdings.clone()], ResolveOptions::new())
        .await?;
    let symbols: Vec<String> = stage1.value::<Vec<String>>(&holdings)?.clone();
    println!("  stage 1: acct-42 holds {symbols:?}");

    let stage2_keys: Vec<ResourceKey> = symbols
        .iter()
        .flat_map(|s| [price(s), position(s), exposure(s)])
        .collect();
    let stage2 = session.resolve(stage2_keys, ResolveOptions::new()).await?;
    println!(
        "  stage 2: session {} now holds {} values",
        stage2.id(),
        stage2.len()
    );
    print_values(&stage2);
    if let Some(d) = stage2.diagnostics() {
        println!(
            "  stage 2 diagnostics: {} source calls, {} batch call(s), {} derived, skew {:.1} ms",
            d.source_calls,
            d.batch_calls,
            d.derived_calls,
            d.observation_skew_ms()
        );
    }

    // -- 2. A publication, then revalidation ---------------------------------
    println!("\n== 2. a stream publishes a new BTCUSDT price");
    let publisher = builder.publisher();
    let published = publisher
        .publish(
            price("BTCUSDT"),
            Payload::new(98_100.0_f64),
            PublishOptions::new("ticker-stream").with_metadata("sequence", 81_733_i64),
        )
        .await?;
    println!("  publication: {}", published.status);

    let pinned = session.snapshot().await?;
    println!(
        "  session still sees BTCUSDT = {:.2} (pinned), exposure = {:.2}",
        pinned.value::<f64>(&price("BTCUSDT"))?,
        pinned.value::<f64>(&exposure("BTCUSDT"))?
    );
    let fresh = builder.build([price("BTCUSDT")]).await?;
    println!(
        "  a new build sees  BTCUSDT = {:.2} from {}",
        fresh.value::<f64>(&price("BTCUSDT"))?,
        fresh.get(&price("BTCUSDT")).map_or("?", |v| v.source())
    );

    let revalidated = session
        .revalidate(
            [price("BTCUSDT")],
            RevalidateOptions::new()
                .consistency(SnapshotConsistencyPolicy::new(Duration::from_secs(5))),
        )
        .await?;
    println!(
        "  after revalidate: BTCUSDT = {:.2}, exposure = {:.2} (price and its derived value move together)",
        revalidated.value::<f64>(&price("BTCUSDT"))?,
        revalidated.value::<f64>(&exposure("BTCUSDT"))?
    );

    println!("  the exchange goes down; a forced revalidation of ETHUSDT fails:");
    backends.exchange_down.store(true, Ordering::Relaxed);
    let failed = session
        .revalidate(
            [price("ETHUSDT")],
            RevalidateOptions::new().force_refresh(true),
        )
        .await;
    match failed {
        Ok(_) => println!("    unexpectedly succeeded"),
        Err(error) => println!("    error: {error}"),
    }
    let kept = session.snapshot().await?;
    println!(
        "    the session kept its previous state: ETHUSDT = {:.2}, exposure = {:.2}",
        kept.value::<f64>(&price("ETHUSDT"))?,
        kept.value::<f64>(&exposure("ETHUSDT"))?
    );
    backends.exchange_down.store(false, Ordering::Relaxed);
    session.close().await;

    // -- 3. One request per symbol, classified -------------------------------
    println!("\n== 3. a scan: one request per symbol, never failing");
    let symbols = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "ADAUSDT", "DOGEUSDT"];
    let mut requests = Vec::new();
    for symbol in symbols {
        // Price and position are required; funding is nice to have.
        let request = SnapshotRequest::new([price(symbol), position(symbol)], [funding(symbol)])?
            // Price and position must be observed within 2 s of each other.
            .with_consistency(SnapshotConsistencyPolicy::new(Duration::from_secs(2)))
            .with_acceptance(
                SnapshotAcceptancePolicy::builder()
                    .default_rule(ResourceAcceptanceRule::unconstrained().max_age_secs(10.0)?)
                    // Positions must come from the system of record.
                    .resource_rule(
                        position(symbol),
                        ResourceAcceptanceRule::unconstrained().minimum_authority_rank(100),
                    )
                    .build()?,
            )?;
        requests.push(request);
    }
    // A missing required value rejects; anything else degrades.
    let policy = RequestDegradationPolicy::builder()
        .reject_on_required_error(true)
        .build()?;
    let results = builder
        .try_build_requests(
            &requests,
            BuildOptions::new()
                .snapshot_id("scan")
                .deadline(Duration::from_secs(2)),
            &policy,
            NonZeroUsize::new(3),
        )
        .await;
    for (symbol, result) in symbols.iter().zip(&results) {
        print_result(symbol, result);
    }
    let tradeable: Vec<&str> = symbols
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.allows("act"))
        .map(|(s, _)| *s)
        .collect();
    println!("  symbols the strategy may act on: {tradeable:?}");

    println!(
        "\nback-end calls: quotes={}, positions-db batches={}, replica batches={}",
        backends.quote_calls.load(Ordering::Relaxed),
        backends.db_batches.load(Ordering::Relaxed),
        backends.replica_batches.load(Ordering::Relaxed)
    );
    builder.close().await;
    Ok(())
}
