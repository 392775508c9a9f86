//! Catalogue area 7: derived resources — dependency resolution through the
//! engine, shared dependencies fetched once, chains, requested keys that are
//! also dependencies (the self-deadlock risk), fallback after a failed
//! derivation, cycle detection, caching of derived values and version-aware
//! invalidation, dependency versions, observation times, bounded dispatch and
//! diagnostics (B7.1–B7.19).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use coalestra_concurrency::CapacitySnapshot;
use coalestra_core::value::ValueParts;
use coalestra_core::{
    BuildOptions, CacheWrite, Clock, DerivedSource, FetchContext, FnDerivedSource, FnSource,
    FreshnessPolicy, ManualClock, Payload, ResourceKey, Snapshot, SnapshotValue, SourceError,
    SourceInfo, SourceOptions, SourceOutput, SourceRef, Timestamp, Version,
};
use coalestra_orchestration::{BuilderConfig, SnapshotBuilder};
use coalestra_test::key;

mod support;
use support::{
    build_lenient, counted, counter, failure_details, long_ttl, raw, single_attempt, HANG_GUARD,
};

fn value_a() -> ResourceKey {
    key("demo:value_a:x")
}
fn value_b() -> ResourceKey {
    key("demo:value_b:x")
}
fn chain() -> ResourceKey {
    key("demo:chain:x")
}

/// A single-key source for keys named `name`, answering the current value of
/// `value` and counting its calls.
fn value_source(
    source: &str,
    name: &'static str,
    value: Arc<AtomicU64>,
    calls: Arc<AtomicUsize>,
) -> FnSource {
    FnSource::new(source, move |_key: ResourceKey, _ctx: FetchContext| {
        let value = Arc::clone(&value);
        let calls = Arc::clone(&calls);
        async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(SourceOutput::new(value.load(Ordering::SeqCst)))
        }
    })
    .with_supports(move |k| k.name() == name)
}

fn raw_source(value: u64, calls: Arc<AtomicUsize>) -> FnSource {
    value_source("raw", "raw", Arc::new(AtomicU64::new(value)), calls)
}

/// A derived source for keys named `name`: `f(dependency)` where the single
/// dependency is `dep` with the same subject.
fn derived_source(
    source: &str,
    name: &'static str,
    dep_name: &'static str,
    f: fn(u64) -> u64,
    calls: Arc<AtomicUsize>,
) -> FnDerivedSource {
    FnDerivedSource::sync(
        source,
        move |k: &ResourceKey| {
            vec![ResourceKey::new(k.namespace(), dep_name, k.subject()).expect("valid key")]
        },
        move |k: &ResourceKey, deps: &Snapshot, _ctx: &FetchContext| {
            calls.fetch_add(1, Ordering::SeqCst);
            let dep = ResourceKey::new(k.namespace(), dep_name, k.subject()).expect("valid key");
            let v = deps.value::<u64>(&dep).map_err(SourceError::protocol)?;
            Ok(SourceOutput::new(f(*v)))
        },
    )
    .with_supports(move |k| k.name() == name)
}

fn double(v: u64) -> u64 {
    v * 2
}
fn quadruple(v: u64) -> u64 {
    v * 4
}
fn plus_one(v: u64) -> u64 {
    v + 1
}

/// A builder over [`graph_source`] alone, with the default configuration.
fn graph_builder(
    edges: Vec<(ResourceKey, Vec<ResourceKey>)>,
    derivations: Arc<AtomicUsize>,
) -> SnapshotBuilder {
    SnapshotBuilder::builder([graph_source(edges, derivations).into()])
        .build()
        .expect("valid builder")
}

/// The edges of the cycle `a -> b -> a`.
fn two_cycle(a: &ResourceKey, b: &ResourceKey) -> Vec<(ResourceKey, Vec<ResourceKey>)> {
    vec![(a.clone(), vec![b.clone()]), (b.clone(), vec![a.clone()])]
}

/// A builder over `sources` on `clock`, values fresh for ten minutes.
fn long_lived(sources: Vec<SourceRef>, clock: &ManualClock) -> SnapshotBuilder {
    SnapshotBuilder::builder(sources)
        .clock(Arc::new(clock.clone()))
        .default_policy(long_ttl())
        .build()
        .expect("valid builder")
}

/// A derived source (no other source) where every key of `edges` depends on
/// the listed keys; deriving sums the dependencies.
fn graph_source(
    edges: Vec<(ResourceKey, Vec<ResourceKey>)>,
    derivations: Arc<AtomicUsize>,
) -> FnDerivedSource {
    let edges = Arc::new(edges);
    let lookup = Arc::clone(&edges);
    let supported = Arc::clone(&edges);
    FnDerivedSource::sync(
        "graph",
        move |k: &ResourceKey| {
            lookup
                .iter()
                .find(|(from, _)| from == k)
                .map(|(_, to)| to.clone())
                .unwrap_or_default()
        },
        move |_k: &ResourceKey, deps: &Snapshot, _ctx: &FetchContext| {
            derivations.fetch_add(1, Ordering::SeqCst);
            let sum: u64 = deps.values().filter_map(|v| v.value::<u64>().ok()).sum();
            Ok(SourceOutput::new(sum))
        },
    )
    .with_supports(move |k| supported.iter().any(|(from, _)| from == k))
}

fn assert_cycle_error(snapshot: &Snapshot, k: &ResourceKey) {
    let error = snapshot
        .error(k)
        .unwrap_or_else(|| panic!("{k} should have failed: {snapshot:?}"));
    let first = error
        .failures()
        .first()
        .unwrap_or_else(|| panic!("{k} should carry failures: {:?}", failure_details(error)));
    assert_eq!(
        first.error.error_type(),
        "DependencyResolutionError",
        "failures of {k}: {:?}",
        failure_details(error)
    );
    assert!(
        first.error.to_string().to_lowercase().contains("cycle"),
        "message should mention the cycle: {:?}",
        failure_details(error)
    );
}

// B7.1
#[tokio::test(start_paused = true)]
async fn shared_dependency_is_fetched_once_and_not_visible_in_the_snapshot() {
    let raw_calls = counter();
    let builder = SnapshotBuilder::builder([
        raw_source(5, Arc::clone(&raw_calls)).into(),
        derived_source("a", "value_a", "raw", double, counter()).into(),
        derived_source("b", "value_b", "raw", quadruple, counter()).into(),
    ])
    .build()
    .expect("valid builder");

    let snapshot = builder
        .build([value_a(), value_b()])
        .await
        .expect("build succeeds");

    assert_eq!(*snapshot.value::<u64>(&value_a()).expect("value_a"), 10);
    assert_eq!(*snapshot.value::<u64>(&value_b()).expect("value_b"), 20);
    assert_eq!(
        snapshot.len(),
        2,
        "dependencies are not part of the snapshot"
    );
    assert!(!snapshot.contains(&raw()));
    assert!(snapshot.get(&raw()).is_none());
    assert_eq!(
        counted(&raw_calls),
        1,
        "the shared dependency is fetched once"
    );
}

// B7.2
#[tokio::test(start_paused = true)]
async fn derived_resources_can_form_a_chain() {
    let builder = SnapshotBuilder::builder([
        raw_source(5, counter()).into(),
        derived_source("a", "value_a", "raw", double, counter()).into(),
        derived_source("chain", "chain", "value_a", plus_one, counter()).into(),
    ])
    .build()
    .expect("valid builder");

    let snapshot = builder.build([chain()]).await.expect("build succeeds");

    assert_eq!(*snapshot.value::<u64>(&chain()).expect("chain"), 11);
    assert_eq!(snapshot.len(), 1);
}

#[derive(Debug, Clone, Copy)]
enum Layout {
    /// One derived source for VALUE_A, another for CHAIN.
    Separate,
    /// One derived source for both.
    Combined,
}

#[derive(Debug, Clone, Copy)]
enum Limits {
    Default,
    Concurrency1,
    Pending1,
    Both1,
}

/// Builds the CHAIN → VALUE_A → RAW(3) graph in one arrangement.
fn chain_builder(
    layout: Layout,
    order: &[usize],
    priorities: [i32; 3],
    limits: Limits,
    raw_calls: &Arc<AtomicUsize>,
) -> SnapshotBuilder {
    let raw = raw_source(3, Arc::clone(raw_calls)).with_priority(priorities[0]);
    let mut sources: Vec<SourceRef> = match layout {
        Layout::Separate => vec![
            raw.into(),
            derived_source("a", "value_a", "raw", double, counter())
                .with_priority(priorities[1])
                .into(),
            derived_source("chain", "chain", "value_a", plus_one, counter())
                .with_priority(priorities[2])
                .into(),
        ],
        Layout::Combined => vec![
            raw.into(),
            FnDerivedSource::sync(
                "derived",
                |k: &ResourceKey| {
                    let dep = if k.name() == "chain" {
                        "value_a"
                    } else {
                        "raw"
                    };
                    vec![ResourceKey::new(k.namespace(), dep, k.subject()).expect("valid key")]
                },
                |k: &ResourceKey, deps: &Snapshot, _ctx: &FetchContext| {
                    let (dep, f): (&str, fn(u64) -> u64) = if k.name() == "chain" {
                        ("value_a", plus_one)
                    } else {
                        ("raw", double)
                    };
                    let dep = ResourceKey::new(k.namespace(), dep, k.subject()).expect("valid key");
                    let v = deps.value::<u64>(&dep).map_err(SourceError::protocol)?;
                    Ok(SourceOutput::new(f(*v)))
                },
            )
            .with_supports(|k| k.name() == "chain" || k.name() == "value_a")
            .with_priority(priorities[1])
            .into(),
        ],
    };
    let mut ordered: Vec<Option<SourceRef>> = sources.drain(..).map(Some).collect();
    let mut arranged = Vec::new();
    for &i in order {
        if let Some(source) = ordered.get_mut(i).and_then(Option::take) {
            arranged.push(source);
        }
    }
    arranged.extend(ordered.into_iter().flatten());
    let mut config: BuilderConfig = SnapshotBuilder::builder(arranged);
    config = match limits {
        Limits::Default => config,
        Limits::Concurrency1 => config.max_concurrency(1),
        Limits::Pending1 => config.max_pending_tasks(1),
        Limits::Both1 => config.max_concurrency(1).max_pending_tasks(1),
    };
    config.build().expect("valid builder")
}

// B7.7 (the self-deadlock risk): every registration order, priority layout and
// concurrency limit.
#[tokio::test(start_paused = true)]
async fn requested_resource_can_also_be_a_dependency_without_deadlock() {
    let orders: [[usize; 3]; 6] = [
        [0, 1, 2],
        [0, 2, 1],
        [1, 0, 2],
        [1, 2, 0],
        [2, 0, 1],
        [2, 1, 0],
    ];
    let priorities: [[i32; 3]; 4] = [[0, 0, 0], [10, 0, 0], [0, 10, 20], [0, 20, 10]];
    let limits = [
        Limits::Default,
        Limits::Concurrency1,
        Limits::Pending1,
        Limits::Both1,
    ];
    let requests: [Vec<ResourceKey>; 3] = [
        vec![chain(), value_a(), raw()],
        vec![raw(), value_a(), chain()],
        vec![value_a(), chain(), raw()],
    ];
    for layout in [Layout::Separate, Layout::Combined] {
        for order in &orders {
            for prio in priorities {
                for limit in limits {
                    for request in &requests {
                        let case = format!("{layout:?} order={order:?} prio={prio:?} {limit:?} request={request:?}");
                        let raw_calls = counter();
                        let builder = chain_builder(layout, order, prio, limit, &raw_calls);
                        let snapshot =
                            tokio::time::timeout(HANG_GUARD, builder.build(request.clone()))
                                .await
                                .unwrap_or_else(|_| panic!("deadlock: {case}"))
                                .unwrap_or_else(|e| panic!("build failed: {case}: {e}"));
                        assert_eq!(snapshot.value::<u64>(&raw()).ok(), Some(&3), "{case}");
                        assert_eq!(snapshot.value::<u64>(&value_a()).ok(), Some(&6), "{case}");
                        assert_eq!(snapshot.value::<u64>(&chain()).ok(), Some(&7), "{case}");
                        assert_eq!(counted(&raw_calls), 1, "RAW fetched once: {case}");
                        assert_eq!(builder.in_flight(), 0, "{case}");
                    }
                }
            }
        }
    }
}

// B7.7 with concurrent builds sharing the single-flight table: one build asks
// for the chain while another asks for the dependency.
#[tokio::test(start_paused = true)]
async fn concurrent_builds_of_a_chain_and_its_dependencies_do_not_deadlock() {
    for limit in [Limits::Default, Limits::Both1] {
        let raw_calls = counter();
        let builder = chain_builder(Layout::Separate, &[0, 1, 2], [0, 0, 0], limit, &raw_calls);
        let (a, b, c) = tokio::time::timeout(HANG_GUARD, async {
            tokio::join!(
                builder.build([chain()]),
                builder.build([raw(), value_a()]),
                builder.build([value_a(), chain(), raw()]),
            )
        })
        .await
        .unwrap_or_else(|_| panic!("deadlock with {limit:?}"));
        let a = a.expect("chain build");
        let b = b.expect("dependency build");
        let c = c.expect("combined build");
        assert_eq!(a.value::<u64>(&chain()).ok(), Some(&7));
        assert_eq!(b.value::<u64>(&value_a()).ok(), Some(&6));
        assert_eq!(c.value::<u64>(&chain()).ok(), Some(&7));
        assert_eq!(counted(&raw_calls), 1, "RAW fetched once with {limit:?}");
    }
}

// B7.3
#[tokio::test(start_paused = true)]
async fn failed_derivation_falls_back_to_lower_priority_direct_source() {
    let raw_calls = counter();
    let failing_raw = {
        let raw_calls = Arc::clone(&raw_calls);
        FnSource::new("raw", move |_k: ResourceKey, _ctx: FetchContext| {
            let raw_calls = Arc::clone(&raw_calls);
            async move {
                raw_calls.fetch_add(1, Ordering::SeqCst);
                Err::<SourceOutput, _>(SourceError::unavailable("raw backend down"))
            }
        })
        .with_supports(|k| k.name() == "raw")
    };
    let derivations = counter();
    let derived = derived_source(
        "derived",
        "value_a",
        "raw",
        double,
        Arc::clone(&derivations),
    )
    .with_priority(100);
    let fallback = FnSource::new("fallback", |_k: ResourceKey, _ctx: FetchContext| async {
        Ok(SourceOutput::new(77_u64))
    })
    .with_supports(|k| k.name() == "value_a")
    .with_priority(1);
    let builder = SnapshotBuilder::builder([failing_raw.into(), derived.into(), fallback.into()])
        .resilience(single_attempt())
        .build()
        .expect("valid builder");

    let snapshot = builder
        .build([value_a()])
        .await
        .expect("fallback resolves the key");

    let value = snapshot.get(&value_a()).expect("value_a resolved");
    assert_eq!(*value.value::<u64>().expect("u64"), 77);
    assert_eq!(value.source(), "fallback");
    assert_eq!(
        counted(&derivations),
        0,
        "derive never runs without its dependency"
    );
    assert_eq!(counted(&raw_calls), 1);
}

// B7.4
#[tokio::test(start_paused = true)]
async fn direct_dependency_cycle_is_reported_without_deadlock() {
    let a = key("cyc:a:x");
    let b = key("cyc:b:x");
    let derivations = counter();
    let builder = graph_builder(two_cycle(&a, &b), Arc::clone(&derivations));

    let snapshot = build_lenient(&builder, std::slice::from_ref(&a), BuildOptions::new()).await;
    assert_cycle_error(&snapshot, &a);
    assert_eq!(counted(&derivations), 0);

    let strict = tokio::time::timeout(HANG_GUARD, builder.build([a.clone()]))
        .await
        .expect("strict build must not hang");
    let error = strict.expect_err("a cycle fails a strict build");
    let build = error.as_build().expect("a build error");
    assert!(build.error(&a).is_some());
    assert_eq!(builder.in_flight(), 0);
}

// B7.5 self-dependency
#[tokio::test(start_paused = true)]
async fn self_dependency_is_a_cycle() {
    let a = key("cyc:self:x");
    let derivations = counter();
    let builder = graph_builder(vec![(a.clone(), vec![a.clone()])], Arc::clone(&derivations));

    let snapshot = build_lenient(&builder, std::slice::from_ref(&a), BuildOptions::new()).await;
    assert_cycle_error(&snapshot, &a);
    assert_eq!(counted(&derivations), 0);
}

// B7.5 indirect cycle
#[tokio::test(start_paused = true)]
async fn indirect_three_key_cycle_is_reported_without_deadlock() {
    let a = key("cyc:a:x");
    let b = key("cyc:b:x");
    let c = key("cyc:c:x");
    let builder = graph_builder(
        vec![
            (a.clone(), vec![b.clone()]),
            (b.clone(), vec![c.clone()]),
            (c.clone(), vec![a.clone()]),
        ],
        counter(),
    );

    for start in [&a, &b, &c] {
        let snapshot =
            build_lenient(&builder, std::slice::from_ref(start), BuildOptions::new()).await;
        assert_cycle_error(&snapshot, start);
    }
    let all = build_lenient(
        &builder,
        &[a.clone(), b.clone(), c.clone()],
        BuildOptions::new(),
    )
    .await;
    for k in [&a, &b, &c] {
        assert_cycle_error(&all, k);
    }
}

// B7.5: the cycle error carries the path, first key repeated at the end.
#[tokio::test(start_paused = true)]
async fn cycle_error_carries_the_cycle_path() {
    let a = key("cyc:a:x");
    let b = key("cyc:b:x");
    let builder = graph_builder(two_cycle(&a, &b), counter());

    let snapshot = build_lenient(&builder, std::slice::from_ref(&a), BuildOptions::new()).await;
    let error = snapshot.error(&a).expect("a failed");
    let cycle = error
        .failures()
        .iter()
        .find_map(|f| match &f.error {
            SourceError::Dependency { cycle: Some(c), .. } => Some(c.clone()),
            _ => None,
        })
        .unwrap_or_else(|| {
            panic!(
                "a cycle path should be attached: {:?}",
                failure_details(error)
            )
        });
    assert_eq!(&*cycle.path, &[a.clone(), b.clone(), a.clone()]);
    let rendered = cycle.to_string();
    assert!(
        rendered.contains(&format!("{a} -> {b} -> {a}")),
        "rendered cycle: {rendered}"
    );
}

// B7.4 requested together: both members of the cycle at top level.
#[tokio::test(start_paused = true)]
async fn cycle_requested_together_at_top_level_finishes_with_errors() {
    let a = key("cyc:a:x");
    let b = key("cyc:b:x");
    for limit in [
        Limits::Default,
        Limits::Concurrency1,
        Limits::Pending1,
        Limits::Both1,
    ] {
        for request in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
            let mut config =
                SnapshotBuilder::builder([graph_source(two_cycle(&a, &b), counter()).into()]);
            config = match limit {
                Limits::Default => config,
                Limits::Concurrency1 => config.max_concurrency(1),
                Limits::Pending1 => config.max_pending_tasks(1),
                Limits::Both1 => config.max_concurrency(1).max_pending_tasks(1),
            };
            let builder = config.build().expect("valid builder");
            let snapshot = tokio::time::timeout(
                Duration::from_secs(5),
                builder.build_with(request.clone(), BuildOptions::new().strict(false)),
            )
            .await
            .unwrap_or_else(|_| panic!("cycle requested together hangs ({limit:?}, {request:?})"))
            .expect("non-strict build returns a snapshot");
            assert_eq!(snapshot.errors().len(), 2, "{limit:?} {request:?}");
            for k in [&a, &b] {
                assert_cycle_error(&snapshot, k);
            }
            assert_eq!(builder.in_flight(), 0);

            let strict =
                tokio::time::timeout(Duration::from_secs(5), builder.build(request.clone()))
                    .await
                    .unwrap_or_else(|_| panic!("strict cycle build hangs ({limit:?})"));
            assert!(strict.is_err());
        }
    }
}

// B7.16: a cycle is not the derived source's fault.
#[tokio::test(start_paused = true)]
async fn cycle_failure_uses_no_attempt_and_does_not_charge_the_circuit() {
    let a = key("cyc:a:x");
    let b = key("cyc:b:x");
    let builder = graph_builder(two_cycle(&a, &b), counter());

    // More builds than the default failure threshold (3).
    for _ in 0..5 {
        let snapshot = build_lenient(&builder, std::slice::from_ref(&a), BuildOptions::new()).await;
        let error = snapshot.error(&a).expect("a failed");
        for failure in error.failures() {
            assert_eq!(failure.attempts, 0, "{:?}", failure_details(error));
            assert_ne!(failure.error.error_type(), "CircuitOpenError");
        }
    }
    for (identity, state) in builder.circuits() {
        assert_eq!(state.failures, 0, "circuit {identity} charged: {state:?}");
    }
}

// B7.6
#[tokio::test(start_paused = true)]
async fn derived_value_is_cached_across_builds() {
    let derivations = counter();
    let raw_calls = counter();
    let builder = SnapshotBuilder::builder([
        raw_source(2, Arc::clone(&raw_calls)).into(),
        derived_source("a", "value_a", "raw", double, Arc::clone(&derivations)).into(),
    ])
    .default_policy(long_ttl())
    .build()
    .expect("valid builder");

    let first = builder.build([value_a()]).await.expect("first build");
    let second = builder.build([value_a()]).await.expect("second build");

    assert_eq!(first.value::<u64>(&value_a()).ok(), Some(&4));
    assert!(!first.get(&value_a()).expect("value").is_from_cache());
    let cached = second.get(&value_a()).expect("value");
    assert_eq!(cached.value::<u64>().ok(), Some(&4));
    assert!(cached.is_from_cache());
    assert_eq!(counted(&derivations), 1);
    assert_eq!(counted(&raw_calls), 1);
    assert_eq!(
        cached.version(),
        first.get(&value_a()).expect("value").version(),
        "the cached revision is the derived one"
    );
}

/// Writes a newer revision of `key` straight into the builder's cache.
async fn republish(builder: &SnapshotBuilder, clock: &ManualClock, k: ResourceKey, v: u64) {
    let value =
        SnapshotValue::from_parts(ValueParts::new(k, Payload::new(v), "stream", clock.now()));
    let written = builder
        .cache()
        .write(CacheWrite {
            value,
            force: true,
            replace_equal: false,
        })
        .await
        .expect("cache write");
    assert!(
        written.outcome.is_stored(),
        "republish must be stored: {:?}",
        written.outcome
    );
}

// B7.8
#[tokio::test(start_paused = true)]
async fn derived_value_is_recomputed_after_its_dependency_is_republished() {
    let clock = ManualClock::new(1_000.0);
    let derivations = counter();
    let builder = long_lived(
        vec![
            raw_source(2, counter()).into(),
            derived_source("a", "value_a", "raw", double, Arc::clone(&derivations)).into(),
        ],
        &clock,
    );

    let first = builder.build([value_a()]).await.expect("first build");
    assert_eq!(first.value::<u64>(&value_a()).ok(), Some(&4));
    let cached = builder.build([value_a()]).await.expect("cached build");
    assert!(cached.get(&value_a()).expect("value").is_from_cache());

    clock.advance(Duration::from_secs(1));
    republish(&builder, &clock, raw(), 5).await;

    let after = builder
        .build([value_a()])
        .await
        .expect("build after republish");
    let value = after.get(&value_a()).expect("value");
    assert_eq!(value.value::<u64>().ok(), Some(&10));
    assert!(!value.is_from_cache());
    assert_eq!(counted(&derivations), 2);
}

// B7.9
#[tokio::test(start_paused = true)]
async fn nested_derived_cache_recomputes_transitively() {
    let clock = ManualClock::new(1_000.0);
    let a_derivations = counter();
    let chain_derivations = counter();
    let builder = long_lived(
        vec![
            raw_source(2, counter()).into(),
            derived_source("a", "value_a", "raw", double, Arc::clone(&a_derivations)).into(),
            derived_source(
                "chain",
                "chain",
                "value_a",
                plus_one,
                Arc::clone(&chain_derivations),
            )
            .into(),
        ],
        &clock,
    );

    let first = builder.build([chain()]).await.expect("first build");
    assert_eq!(first.value::<u64>(&chain()).ok(), Some(&5));
    let cached = builder.build([chain()]).await.expect("cached build");
    assert!(cached.get(&chain()).expect("value").is_from_cache());
    assert_eq!(
        (counted(&a_derivations), counted(&chain_derivations)),
        (1, 1)
    );

    clock.advance(Duration::from_secs(1));
    republish(&builder, &clock, raw(), 3).await;

    let after = builder
        .build([chain()])
        .await
        .expect("build after republish");
    let value = after.get(&chain()).expect("chain");
    assert_eq!(value.value::<u64>().ok(), Some(&7));
    assert!(!value.is_from_cache());
    assert_eq!(counted(&a_derivations), 2, "VALUE_A re-derived once");
    assert_eq!(counted(&chain_derivations), 2, "CHAIN re-derived once");

    let again = builder.build([chain()]).await.expect("cached again");
    assert!(again.get(&chain()).expect("chain").is_from_cache());
    assert_eq!(
        (counted(&a_derivations), counted(&chain_derivations)),
        (2, 2)
    );
}

// B7.10, B7.12: dependency versions and the dependency snapshot given to the
// deriver.
#[tokio::test(start_paused = true)]
async fn dependency_versions_match_the_dependencies_seen_by_the_deriver() {
    let left = key("dv:left:x");
    let right = key("dv:right:x");
    let sum = key("dv:sum:x");
    type Seen = (
        String,
        Timestamp,
        usize,
        bool,
        Vec<(ResourceKey, Version)>,
        String,
        Timestamp,
    );
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let clock = ManualClock::new(500.0);
    let leaves = FnSource::new("leaves", |k: ResourceKey, _ctx: FetchContext| async move {
        Ok(SourceOutput::new(if k.name() == "left" {
            1_u64
        } else {
            2_u64
        }))
    })
    .with_supports(|k| k.name() != "sum");
    let derived = {
        let (left, right, seen) = (left.clone(), right.clone(), Arc::clone(&seen));
        FnDerivedSource::sync(
            "sum",
            // Duplicates are de-duplicated (B7.13).
            move |_k: &ResourceKey| vec![left.clone(), right.clone(), left.clone()],
            move |_k: &ResourceKey, deps: &Snapshot, ctx: &FetchContext| {
                let versions = deps
                    .values()
                    .map(|v| (v.key().clone(), v.version()))
                    .collect();
                seen.lock().expect("lock").push((
                    deps.id().to_owned(),
                    deps.created_at(),
                    deps.len(),
                    deps.errors().is_empty(),
                    versions,
                    ctx.snapshot_id.to_string(),
                    ctx.requested_at,
                ));
                let total: u64 = deps.values().filter_map(|v| v.value::<u64>().ok()).sum();
                Ok(SourceOutput::new(total))
            },
        )
        .with_supports(|k| k.name() == "sum")
    };
    let builder = long_lived(vec![leaves.into(), derived.into()], &clock);

    let snapshot = builder
        .build_with(
            [sum.clone()],
            BuildOptions::new().snapshot_id("snap-derived"),
        )
        .await
        .expect("build succeeds");
    let value = snapshot.get(&sum).expect("sum");
    assert_eq!(value.value::<u64>().ok(), Some(&3));

    let seen = seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1, "one derivation");
    let (deps_id, deps_created, deps_len, no_errors, versions, ctx_id, ctx_requested) = &seen[0];
    assert_eq!(deps_id, "snap-derived");
    assert_eq!(ctx_id, "snap-derived");
    assert_eq!(deps_created, ctx_requested);
    assert_eq!(*deps_created, Timestamp::from_secs(500.0));
    assert_eq!(
        *deps_len, 2,
        "exactly the declared dependencies, de-duplicated"
    );
    assert!(no_errors);

    let mut recorded: Vec<(ResourceKey, Version)> = value.dependency_versions().to_vec();
    let mut expected = versions.clone();
    recorded.sort_by_key(|x| x.0.to_string());
    expected.sort_by_key(|x| x.0.to_string());
    assert_eq!(
        recorded, expected,
        "dependency_versions == versions the deriver saw"
    );
    assert_eq!(recorded.len(), 2);

    // The versions are those of the revisions stored for the dependencies.
    let unbounded = FreshnessPolicy::fresh_for(FreshnessPolicy::UNBOUNDED);
    for (dep, version) in &recorded {
        let stored = builder
            .cache()
            .get(dep, unbounded, clock.now())
            .await
            .expect("cache read")
            .unwrap_or_else(|| panic!("{dep} cached"));
        assert_eq!(stored.value.version(), *version, "{dep}");
    }
}

// B7.11
#[tokio::test(start_paused = true)]
async fn derived_observed_at_is_the_derivation_time() {
    let clock = ManualClock::new(1_000.0);
    let left = key("obs:left:x");
    let right = key("obs:right:x");
    let implicit = key("obs:implicit:x");
    let explicit = key("obs:explicit:x");
    let leaves = {
        let clock = clock.clone();
        FnSource::new("leaves", move |k: ResourceKey, _ctx: FetchContext| {
            let back = if k.name() == "left" { 5 } else { 3 };
            let at = clock.now() - Duration::from_secs(back);
            async move { Ok(SourceOutput::new(1_u64).observed_at(at)) }
        })
        .with_supports(|k| k.name() == "left" || k.name() == "right")
    };
    let derived = {
        let (left, right) = (left.clone(), right.clone());
        let clock = clock.clone();
        FnDerivedSource::sync(
            "derived",
            move |_k: &ResourceKey| vec![left.clone(), right.clone()],
            move |k: &ResourceKey, _deps: &Snapshot, _ctx: &FetchContext| {
                let out = SourceOutput::new(2_u64);
                Ok(if k.name() == "explicit" {
                    out.observed_at(clock.now() - Duration::from_secs(2))
                } else {
                    out
                })
            },
        )
        .with_supports(|k| k.name() == "implicit" || k.name() == "explicit")
    };
    let builder = long_lived(vec![leaves.into(), derived.into()], &clock);

    let snapshot = builder
        .build([implicit.clone(), explicit.clone()])
        .await
        .expect("build succeeds");

    let now = clock.now();
    let implicit_value = snapshot.get(&implicit).expect("implicit");
    assert_eq!(
        implicit_value.observed_at(),
        now,
        "derivation time, not a dependency's"
    );
    assert_ne!(implicit_value.observed_at(), now - Duration::from_secs(5));
    assert_ne!(implicit_value.observed_at(), now - Duration::from_secs(3));
    assert_eq!(
        snapshot.get(&explicit).expect("explicit").observed_at(),
        now - Duration::from_secs(2),
        "an explicit observed_at from the deriver wins"
    );
}

// B7.14
#[tokio::test(start_paused = true)]
async fn derived_dispatch_is_bounded_by_max_concurrency_and_keeps_input_order() {
    let in_flight = counter();
    let peak = counter();
    let derivations = counter();
    let samples: Arc<Mutex<Vec<CapacitySnapshot>>> = Arc::default();
    let handle: Arc<OnceLock<SnapshotBuilder>> = Arc::new(OnceLock::new());
    let derived = {
        let (in_flight, peak, derivations) = (
            Arc::clone(&in_flight),
            Arc::clone(&peak),
            Arc::clone(&derivations),
        );
        let (samples, handle) = (Arc::clone(&samples), Arc::clone(&handle));
        FnDerivedSource::new(
            "derived",
            |k: &ResourceKey| vec![ResourceKey::new("bulk", "raw", k.subject()).expect("valid key")],
            move |k: ResourceKey, deps: Snapshot, _ctx: FetchContext| {
                let (in_flight, peak, derivations) = (Arc::clone(&in_flight), Arc::clone(&peak), Arc::clone(&derivations));
                let (samples, handle) = (Arc::clone(&samples), Arc::clone(&handle));
                async move {
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    derivations.fetch_add(1, Ordering::SeqCst);
                    if now == 4 {
                        if let Some(builder) = handle.get() {
                            samples.lock().expect("lock").push(builder.capacity());
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    let raw = ResourceKey::new("bulk", "raw", k.subject()).expect("valid key");
                    let v = deps.value::<u64>(&raw).map_err(SourceError::protocol)?;
                    Ok(SourceOutput::new(*v + 1))
                }
            },
        )
        .with_supports(|k| k.name() == "derived")
    };
    let raw = FnSource::new("raw", |k: ResourceKey, _ctx: FetchContext| async move {
        let n: u64 = k.subject().parse().expect("numeric subject");
        Ok(SourceOutput::new(n))
    })
    .with_supports(|k| k.name() == "raw");
    let builder = SnapshotBuilder::builder([raw.into(), derived.into()])
        .max_concurrency(4)
        .build()
        .expect("valid builder");
    handle.set(builder.clone()).expect("set once");

    let keys: Vec<ResourceKey> = (0..100)
        .rev()
        .map(|i| ResourceKey::new("bulk", "derived", i.to_string()).expect("valid key"))
        .collect();
    let snapshot = tokio::time::timeout(HANG_GUARD, builder.build(keys.clone()))
        .await
        .expect("no hang")
        .expect("build succeeds");

    assert_eq!(counted(&derivations), 100);
    assert_eq!(
        counted(&peak),
        4,
        "exactly max_concurrency derivations at once"
    );
    let got: Vec<ResourceKey> = snapshot.keys().cloned().collect();
    assert_eq!(got, keys, "results keep input order");
    for (i, k) in keys.iter().enumerate() {
        let n = 99 - i as u64;
        assert_eq!(snapshot.value::<u64>(k).ok(), Some(&(n + 1)));
    }
    let samples = samples.lock().expect("lock").clone();
    assert!(!samples.is_empty(), "capacity sampled at peak");
    for sample in samples {
        assert_eq!(sample.global.limit, 4);
        assert_eq!(sample.global.in_use, 4, "{sample:?}");
        assert_eq!(
            sample.global.waiting, 0,
            "dispatch does not queue one task per key: {sample:?}"
        );
    }
    assert_eq!(builder.capacity().global.in_use, 0);
}

// B7.15: a derivation holds a capacity slot only while derive runs, so a
// single global slot is enough for a derived key and its dependency.
#[tokio::test(start_paused = true)]
async fn derivation_holds_no_slot_while_its_dependencies_resolve() {
    let builder = SnapshotBuilder::builder([
        raw_source(4, counter()).into(),
        derived_source("a", "value_a", "raw", double, counter()).into(),
        derived_source("chain", "chain", "value_a", plus_one, counter()).into(),
    ])
    .max_concurrency(1)
    .build()
    .expect("valid builder");

    let snapshot = tokio::time::timeout(HANG_GUARD, builder.build([chain()]))
        .await
        .expect("no hang with one slot")
        .expect("build succeeds");
    assert_eq!(snapshot.value::<u64>(&chain()).ok(), Some(&9));
    assert_eq!(builder.capacity().global.in_use, 0);
}

// B7.17
#[tokio::test(start_paused = true)]
async fn derived_and_source_calls_are_counted_in_diagnostics() {
    let a = key("diag:a:x");
    let d = key("diag:d:x");
    let direct = FnSource::new("direct", |_k: ResourceKey, _ctx: FetchContext| async {
        Ok(SourceOutput::new(21_u64))
    })
    .with_supports(|k| k.name() == "a");
    let derived = {
        let a = a.clone();
        let dep = a.clone();
        FnDerivedSource::sync(
            "derived",
            move |_k: &ResourceKey| vec![a.clone()],
            move |_k: &ResourceKey, deps: &Snapshot, _ctx: &FetchContext| {
                let v = deps.value::<u64>(&dep).map_err(SourceError::protocol)?;
                Ok(SourceOutput::new(v * 2))
            },
        )
        .with_supports(|k| k.name() == "d")
    };
    let builder = SnapshotBuilder::builder([direct.into(), derived.into()])
        .build()
        .expect("valid builder");

    let snapshot = builder
        .build([a.clone(), d.clone()])
        .await
        .expect("build succeeds");

    assert_eq!(snapshot.value::<u64>(&a).ok(), Some(&21));
    assert_eq!(snapshot.value::<u64>(&d).ok(), Some(&42));
    let diagnostics = snapshot.diagnostics().expect("diagnostics recorded");
    assert_eq!(diagnostics.derived_calls, 1);
    assert_eq!(
        diagnostics.source_calls, 2,
        "source calls include derivations"
    );
}

// B7.18 [py-only] → Rust: the deriver gets an immutable `&Snapshot`; values
// are shared read-only, and what it derives never alters the dependency.
#[tokio::test(start_paused = true)]
async fn deriver_receives_an_immutable_snapshot_of_its_dependencies() {
    let list = key("iso:list:x");
    let extended = key("iso:extended:x");
    let payload_seen: Arc<Mutex<Option<Payload>>> = Arc::default();
    let direct = FnSource::new("direct", |_k: ResourceKey, _ctx: FetchContext| async {
        Ok(SourceOutput::new(vec![1_u32]))
    })
    .with_supports(|k| k.name() == "list");
    let derived = {
        let (dep, dep2, payload_seen) = (list.clone(), list.clone(), Arc::clone(&payload_seen));
        FnDerivedSource::sync(
            "derived",
            move |_k: &ResourceKey| vec![dep.clone()],
            move |_k: &ResourceKey, deps: &Snapshot, _ctx: &FetchContext| {
                let value = deps
                    .get(&dep2)
                    .ok_or_else(|| SourceError::protocol("missing dependency"))?;
                *payload_seen.lock().expect("lock") = Some(value.payload().clone());
                // The only way to "change" it is a local copy.
                let mut local: Vec<u32> = value
                    .value::<Vec<u32>>()
                    .map_err(SourceError::protocol)?
                    .clone();
                local.push(2);
                Ok(SourceOutput::new(local))
            },
        )
        .with_supports(|k| k.name() == "extended")
    };
    let builder = SnapshotBuilder::builder([direct.into(), derived.into()])
        .build()
        .expect("valid builder");

    let snapshot = builder
        .build([list.clone(), extended.clone()])
        .await
        .expect("build succeeds");

    assert_eq!(
        snapshot.value::<Vec<u32>>(&extended).ok(),
        Some(&vec![1, 2])
    );
    assert_eq!(snapshot.value::<Vec<u32>>(&list).ok(), Some(&vec![1]));
    let seen = payload_seen
        .lock()
        .expect("lock")
        .clone()
        .expect("deriver ran");
    assert!(
        seen.ptr_eq(snapshot.get(&list).expect("list").payload()),
        "the deriver saw the very revision delivered, shared read-only"
    );
}

/// A derived source whose `dependencies` breaks its contract.
struct BrokenDependencies {
    derivations: Arc<AtomicUsize>,
}

impl SourceInfo for BrokenDependencies {
    fn name(&self) -> &str {
        "broken"
    }
    fn supports(&self, k: &ResourceKey) -> bool {
        k.name() == "broken"
    }
}

#[async_trait]
impl DerivedSource for BrokenDependencies {
    fn dependencies(&self, _key: &ResourceKey) -> Result<Vec<ResourceKey>, SourceError> {
        Err(SourceError::protocol(
            "dependency list is not a list of keys",
        ))
    }

    async fn derive(
        &self,
        _key: &ResourceKey,
        _dependencies: &Snapshot,
        _ctx: &FetchContext,
    ) -> Result<SourceOutput, SourceError> {
        self.derivations.fetch_add(1, Ordering::SeqCst);
        Ok(SourceOutput::new(0_u64))
    }
}

// B7.13: an invalid dependency declaration is a protocol error of the derived
// source (one attempt, derive never runs).
#[tokio::test(start_paused = true)]
async fn invalid_dependency_declaration_is_a_protocol_failure() {
    let broken = key("bad:broken:x");
    let derivations = counter();
    let source = BrokenDependencies {
        derivations: Arc::clone(&derivations),
    };
    let builder = SnapshotBuilder::builder([SourceRef::derived(source)])
        .build()
        .expect("valid builder");

    let snapshot =
        build_lenient(&builder, std::slice::from_ref(&broken), BuildOptions::new()).await;
    let error = snapshot.error(&broken).expect("broken failed");
    let failures = failure_details(error);
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert_eq!(failures[0].0, "broken");
    assert_eq!(failures[0].1, "SourceProtocolError");
    assert_eq!(failures[0].3, 1, "one attempt");
    assert_eq!(counted(&derivations), 0);
}

// B7.13: ... and it counts as a circuit failure of that source.
#[tokio::test(start_paused = true)]
async fn invalid_dependency_declaration_charges_the_circuit() {
    let broken = key("bad:broken:x");
    let builder = SnapshotBuilder::builder([SourceRef::derived(BrokenDependencies {
        derivations: counter(),
    })])
    .build()
    .expect("valid builder");

    let _ = build_lenient(&builder, std::slice::from_ref(&broken), BuildOptions::new()).await;
    let charged: u32 = builder
        .circuits()
        .iter()
        .filter(|(identity, _)| identity.starts_with("broken["))
        .map(|(_, state)| state.failures)
        .sum();
    assert_eq!(charged, 1, "circuits: {:?}", builder.circuits());
}

// B7.16: a failed dependency is attributed with zero attempts and does not
// charge the derived source's circuit.
#[tokio::test(start_paused = true)]
async fn failed_dependency_does_not_charge_the_derived_circuit() {
    let failing_raw = FnSource::new("raw", |_k: ResourceKey, _ctx: FetchContext| async {
        Err::<SourceOutput, _>(SourceError::protocol("bad raw"))
    })
    .with_supports(|k| k.name() == "raw")
    .with_resilience(single_attempt());
    let builder = SnapshotBuilder::builder([
        failing_raw.into(),
        derived_source("derived", "value_a", "raw", double, counter()).into(),
    ])
    .build()
    .expect("valid builder");

    for _ in 0..4 {
        let snapshot = build_lenient(&builder, &[value_a()], BuildOptions::new()).await;
        let error = snapshot.error(&value_a()).expect("value_a failed");
        let failures = failure_details(error);
        let derived = failures
            .iter()
            .find(|f| f.0 == "derived")
            .unwrap_or_else(|| panic!("derived failure recorded: {failures:?}"));
        assert_eq!(derived.1, "DependencyResolutionError");
        assert_eq!(derived.3, 0);
    }
    let derived_failures: u32 = builder
        .circuits()
        .iter()
        .filter(|(identity, _)| identity.starts_with("derived["))
        .map(|(_, state)| state.failures)
        .sum();
    assert_eq!(derived_failures, 0, "circuits: {:?}", builder.circuits());
}
